//! `nexus agent`: the node agent driving this host's LXD for a server, until Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use super::shutdown_signal;
use crate::cli::AgentArgs;
use crate::Failure;

pub(crate) async fn run(args: AgentArgs) -> Result<(), Failure> {
    let node_name = match args.name {
        Some(n) => n,
        None => {
            std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "node".into())
        }
    };
    let socket = nexus_agent::lxd::LxdProvider::default_socket().map_err(Failure::hinted)?;
    let provider = nexus_agent::lxd::LxdProvider::new(socket, &args.lxd_project);
    let config = nexus_agent::AgentConfig {
        server_url: args.server,
        join_token: args.join_token,
        node_name,
        lxd_project: args.lxd_project,
        base_image: args.base_image,
        heartbeat: Duration::from_secs(args.heartbeat.max(1)),
    };
    nexus_agent::run(config, Arc::new(provider), shutdown_signal()).await.map_err(Failure::hinted)
}
