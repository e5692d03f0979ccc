//! `nexus workspace list`: the caller's workspaces, one line each.

use nexus_types::api::WorkspaceView;

use crate::client::Client;
use crate::error::Result;
use crate::ui::{Report, Ui};

/// The caller's workspaces, oldest first.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct Workspaces(pub Vec<WorkspaceView>);

impl Report for Workspaces {
    fn text(&self, ui: &Ui) {
        if self.0.is_empty() {
            ui.info("no workspaces yet");
        }
        for w in &self.0 {
            let repo = format!("{}/{}", w.repo.owner, w.repo.name);
            ui.result(&format!("{:24} {:9} {:28} {}", w.name, w.status, repo, w.ssh.command));
        }
    }
}

/// Lists the workspaces of the caller (`--server`, else the config's).
pub async fn run(server: Option<String>) -> Result<Workspaces> {
    Ok(Workspaces(Client::from_env(server)?.list().await?))
}
