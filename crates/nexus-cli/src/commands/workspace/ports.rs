//! `nexus workspace ports`: the background port forwards `connect` starts — list them, stop a
//! workspace's, and (hidden) run one supervisor in the foreground.

use super::{forwards_of, home, ssh_files};
use crate::client::Client;
use crate::config::UserConfig;
use crate::error::{Error, Result};
use crate::forward::{self, ForwardState};
use crate::ssh_config;
use crate::ui::{Report, Ui};

/// The running forward supervisors.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct Forwards(pub Vec<ForwardState>);

impl Report for Forwards {
    fn text(&self, ui: &Ui) {
        if self.0.is_empty() {
            ui.info("no port forwards are running (start them with `nexus workspace connect`)");
        }
        for st in &self.0 {
            let up = st.ssh_pid.is_some_and(forward::alive);
            ui.result(&format!(
                "{} (pid {}, {}, {} connect(s))",
                st.workspace,
                st.pid,
                if up { "connected" } else { "reconnecting" },
                st.connects
            ));
            for p in &st.ports {
                ui.result(&format!("  {:12} http://localhost:{} → workspace port {}", p.service, p.local, p.remote));
            }
        }
    }
}

/// Every running forward supervisor of this user.
pub fn list() -> Result<Forwards> {
    Ok(Forwards(forward::all_running(&home()?)))
}

/// What `nexus workspace ports stop` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stopped {
    /// The workspace whose forwards were asked to stop.
    pub workspace: String,
    /// False when none were running.
    pub stopped: bool,
}

impl Report for Stopped {
    fn text(&self, ui: &Ui) {
        if self.stopped {
            ui.info(&format!("✓ stopped the port forwards of {}", self.workspace));
        } else {
            ui.info(&format!("no port forwards were running for {}", self.workspace));
        }
    }
}

/// Stops a workspace's forward supervisor and its ssh.
pub fn stop(workspace: &str) -> Result<Stopped> {
    let stopped = forward::stop(&home()?, workspace).map_err(|e| {
        Error::new(
            format!("could not stop the port forwards of {workspace}: {e}"),
            "see them with `nexus workspace ports`",
        )
    })?;
    Ok(Stopped { workspace: workspace.to_string(), stopped })
}

/// The forward supervisor's body (`nexus workspace ports run <ws>`, what `connect` starts in the
/// background), until stopped.
pub async fn run(workspace: &str, server: Option<String>) -> Result<()> {
    let home = home()?;
    let cfg = UserConfig::load()?.config;
    let client = Client::from_config(server, &cfg)?;
    let files = ssh_files()?;
    let alias = ssh_config::alias(workspace);
    let name = workspace.to_string();
    forward::supervise(&home, workspace, &alias, &files.user_config, || {
        let client = &client;
        let name = name.clone();
        async move { client.workspace(&name).await.ok().map(|v| forwards_of(&v)) }
    })
    .await
    .map_err(|e| Error::new(format!("port forwarding stopped: {e}"), "run `nexus workspace connect` again"))
}
