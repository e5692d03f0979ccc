//! `nexus server`: the coordination server, until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::shutdown_signal;
use crate::cli::ServerArgs;

/// `/var/lib/nexus` as root, else `~/.nexus/server`.
fn default_data_dir() -> PathBuf {
    let is_root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    match std::env::var_os("HOME") {
        Some(home) if !is_root => PathBuf::from(home).join(".nexus/server"),
        _ => PathBuf::from("/var/lib/nexus"),
    }
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let addr = nexus_server::config::parse_listen(&args.listen).map_err(anyhow::Error::msg).context("--listen")?;
    let ssh_ports = nexus_server::config::parse_port_range(&args.ssh_port_range)
        .map_err(anyhow::Error::msg)
        .context("--ssh-port-range")?;
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut config = nexus_server::ServerConfig::new(data_dir.clone());
    config.github_api_url = args.github_api_url;
    config.git_base_url = args.git_base_url;
    config.github_client_id = args.github_client_id;
    config.ssh_ports = ssh_ports;
    config.ssh_bind_ip = addr.ip();
    config.public_host = args.public_host;
    config.node_timeout = Duration::from_secs(args.node_timeout);
    config.op_timeout = Duration::from_secs(args.op_timeout);
    config.binaries_dir = args.binaries_dir;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is another server running? (pick another with --listen)"))?;
    let local = listener.local_addr()?;
    // Scripts and tests read this line to learn the port when binding to :0.
    println!("nexus server listening on http://{local}");
    eprintln!("data dir: {}  (join token for agents: {}/join-token)", data_dir.display(), data_dir.display());
    nexus_server::serve(config, listener, shutdown_signal()).await?;
    Ok(())
}
