//! `nexus workspace status`: one workspace — its status (with the reason when it failed), how to SSH
//! in, the repository and the services.

use nexus_types::api::WorkspaceView;

use super::open;
use super::services::render;
use crate::error::Result;
use crate::ui::{Report, Ui};

/// A workspace as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct Status(pub WorkspaceView);

impl Report for Status {
    fn text(&self, ui: &Ui) {
        let ws = &self.0;
        ui.result(&format!("{} ({}): {}", ws.name, ws.workspace_id, ws.status));
        if let (Some(m), Some(h)) = (&ws.message, &ws.hint) {
            ui.result(&format!("  {m}\n  hint: {h}"));
        }
        ui.result(&format!("  SSH:  {}", ws.ssh.command));
        let commit = ws.repo.commit.as_deref().map(|c| &c[..c.len().min(12)]).unwrap_or("not cloned yet");
        ui.result(&format!("  Repo: {}/{} @ {} ({commit})", ws.repo.owner, ws.repo.name, ws.repo.branch));
        let services = render(ws);
        ui.result(services.strip_suffix('\n').unwrap_or(&services));
    }
}

/// One of the caller's workspaces by name or id.
pub async fn run(workspace: &str, server: Option<String>) -> Result<Status> {
    Ok(Status(open(workspace, server).await?.1))
}
