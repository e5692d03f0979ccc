//! `nexus agent`: the node agent driving this host's LXD for a server, until Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use nexus_agent::AgentError;
use nexus_cli::ui::Ui;
use nexus_types::diagnostics::{error_chain, Hint};

use super::shutdown_signal;
use crate::cli::AgentArgs;
use crate::Failure;

/// Exit status when the server refuses this node's identity (a revoked credential, a refused
/// enrolment, a credential for another node): restarting cannot help, so the systemd unit stops
/// restarting on it (`RestartPreventExitStatus=`). 78 is `EX_CONFIG` of sysexits.h.
pub(crate) const EXIT_IDENTITY_REFUSED: u8 = 78;

pub(crate) async fn run(args: AgentArgs) -> Result<ExitCode, Failure> {
    let node_name = match args.name {
        Some(n) => n,
        None => {
            std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "node".into())
        }
    };
    let socket = nexus_agent::lxd::LxdProvider::default_socket().map_err(Failure::hinted)?;
    let hardening = nexus_agent::limits::Hardening {
        processes: args.workspace_processes,
        disk: args.workspace_disk,
        ingress: args.workspace_ingress,
        egress: args.workspace_egress,
        isolate: true,
    };
    hardening.validate().map_err(Failure::hinted)?;
    let provider = nexus_agent::lxd::LxdProvider::new(socket, &args.lxd_project).with_hardening(hardening);
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
    // The join token only enrols; a file keeps it out of the process list.
    let join_token = match (args.join_token, &args.join_token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => std::fs::read_to_string(path).map(|t| t.trim().to_string()).map_err(|e| Failure {
            message: format!("cannot read the join token file `{}`: {e}", path.display()),
            hint: Some("pass the file holding the join token the operator gave you (`--join-token-file FILE`)".into()),
        })?,
        (None, None) => String::new(),
    };
    let config = nexus_agent::AgentConfig {
        server_url: args.server,
        join_token,
        credential: None,
        state_dir: Some(args.state_dir),
        node_name,
        lxd_project: args.lxd_project,
        base_image: args.base_image,
        heartbeat: Duration::from_secs(args.heartbeat.max(1)),
        provider_restart: lxd_restart(args.lxd_restart_command.as_deref()),
        max_workspaces: args.max_workspaces.or_else(|| {
            let holds = nexus_node::check::memory_holds(&nexus_cli::system::HostSystem)?;
            Some(u32::try_from(holds).unwrap_or(u32::MAX))
        }),
    };
    match nexus_agent::run_with_settings(config, settings, Arc::new(provider), shutdown_signal()).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(
            e @ (AgentError::Unauthorized { .. }
            | AgentError::Enrol { .. }
            | AgentError::CredentialMismatch { .. }
            | AgentError::NoJoinToken),
        ) => {
            Ui::new(false).error(&error_chain(&e), &e.hint().unwrap_or_default());
            Ok(ExitCode::from(EXIT_IDENTITY_REFUSED))
        }
        Err(e) => Err(Failure::hinted(e)),
    }
}

/// The command that brings LXD back, as argv: the operator's (run by `sh -c`), else this
/// binary's `nexus node restart-lxd` (systemd's unit where systemd runs the host, else the daemon
/// as node init starts it, after clearing the firewall state LXD 5.0 leaves behind).
fn lxd_restart(flag: Option<&str>) -> Option<Vec<String>> {
    match flag.map(str::trim) {
        Some("none") | Some("") => None,
        Some(cmd) => Some(vec!["sh".into(), "-c".into(), cmd.into()]),
        None => {
            let me = std::env::current_exe().ok()?;
            Some(vec![me.display().to_string(), "node".into(), "restart-lxd".into()])
        }
    }
}
