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
    let mut settings = nexus_agent::provision::Settings::new(&args.base_image);
    settings.network = nexus_agent::network::Network::from_env(args.ca_certificates);
    let runtimes = nexus_agent::runtimes::RuntimeConfig {
        dir: args.runtime_dir,
        node_source: args.node_source,
        npm_registry: args.npm_registry,
        pypi: args.pypi_url,
    };
    settings.runtimes = Some(Arc::new(nexus_agent::runtimes::RuntimeStore::new(runtimes, &settings.network)));
    settings.caches = Some(args.cache_dir);
    let budget =
        nexus_agent::prebuilds::Budget { max_bytes: args.prebuild_budget_gib << 30, max_count: args.prebuild_count };
    settings.prebuilds = (args.prebuild_budget_gib > 0 && args.prebuild_count > 0).then_some(budget);
    let config = nexus_agent::AgentConfig {
        server_url: args.server,
        join_token: args.join_token,
        node_name,
        lxd_project: args.lxd_project,
        base_image: args.base_image,
        heartbeat: Duration::from_secs(args.heartbeat.max(1)),
    };
    nexus_agent::run_with_settings(config, settings, Arc::new(provider), shutdown_signal())
        .await
        .map_err(Failure::hinted)
}
