//! `nexus server`: the coordination server, until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::shutdown_signal;
use crate::cli::ServerArgs;

/// `/var/lib/nexus` as root, else `~/.nexus/server`.
pub(crate) fn default_data_dir() -> PathBuf {
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
    if let Some(path) = &args.github_client_secret_file {
        let secret = std::fs::read_to_string(path)
            .with_context(|| format!("--github-client-secret-file {}: cannot read it", path.display()))?;
        let secret = secret.trim();
        if secret.is_empty() {
            anyhow::bail!(
                "--github-client-secret-file {} is empty; put the OAuth app's client secret in it",
                path.display()
            );
        }
        if config.github_client_id.is_none() {
            anyhow::bail!("--github-client-secret-file needs --github-client-id (the app the secret belongs to)");
        }
        config.github_client_secret = Some(nexus_server::config::ClientSecret(secret.to_string()));
    }
    config.allow_github_orgs = args.allow_github_orgs;
    config.allow_github_users = args.allow_github_users;
    if args.api_token_ttl_days == 0 {
        anyhow::bail!("--api-token-ttl-days must be at least 1");
    }
    config.api_token_ttl = Duration::from_secs(args.api_token_ttl_days.saturating_mul(86400));
    config.secrets_key_file = args.secrets_key_file;
    for (flag, size) in [("--max-memory", &args.max_memory), ("--max-disk", &args.max_disk)] {
        if nexus_types::names::memory_bytes(size).is_none() {
            anyhow::bail!("{flag} {size:?} is not a size; use e.g. `16GB` or `512MiB`");
        }
    }
    config.max_workspaces_per_user = args.max_workspaces_per_user;
    config.parallel_starts_per_node = args.parallel_starts_per_node;
    config.idle_stop = args.idle_stop.0;
    // Looked for often enough that a workspace stops within a tenth of its allowance past it.
    if let Some(idle) = config.idle_stop {
        config.idle_check_every =
            (idle / 10).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60));
    }
    config.max_cpu = args.max_cpu;
    config.max_memory = args.max_memory;
    config.max_disk = args.max_disk;
    config.allowed_git_hosts = args.allow_git_hosts;
    config.allow_private_git_hosts = args.allow_private_git_hosts;
    config.max_concurrent_probes = args.max_concurrent_probes;
    config.creates_per_minute = args.creates_per_minute;
    nexus_types::names::GitHosts::new(&config.git_base_url, &config.allowed_git_hosts)
        .map_err(|e| anyhow::anyhow!("{e}\nhint: {}", e.hint))
        .context("--git-base-url / --allow-git-host")?;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        let files = nexus_server::config::TlsFiles { cert, key };
        nexus_server::check_tls(&files).context("--tls-cert / --tls-key")?;
        config.tls = Some(files);
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is another server running? (pick another with --listen)"))?;
    let local = listener.local_addr()?;
    // Scripts and tests read this line to learn the port when binding to :0.
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    println!("nexus server listening on {scheme}://{local}");
    eprintln!("data dir: {}  (join token for agents: {}/join-token)", data_dir.display(), data_dir.display());
    // Ready for systemd (`Type=notify`) once the socket listens: connections made while the app
    // opens its database wait in the listen backlog rather than being refused. Without
    // NOTIFY_SOCKET (not under systemd) this does nothing.
    if let Err(e) = sd_notify::notify(true, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell systemd the server is ready");
    }
    nexus_server::serve(config, listener, shutdown_signal()).await?;
    Ok(())
}
