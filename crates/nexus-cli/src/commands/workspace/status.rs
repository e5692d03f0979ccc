//! `nexus workspace status`: one workspace — its status (with the reason when it failed), how to SSH
//! in, the repository, its setup and its services.

use nexus_types::api::WorkspaceView;

use super::services::render;
use super::{local_urls, open};
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
    Ok(Status(local_urls(open(workspace, server).await?.1)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{service, setup, view};
    use super::*;
    use crate::ui::Settings;

    #[test]
    fn status_shows_the_setup_and_json_has_it_as_the_api_does() {
        let ws = view(
            json!([service("web", 5173, 23000, "starting", Some("waiting for setup (`npm ci`, 12 s)"))]),
            setup("running", Some(1), 12, Some("added 210 packages")),
        );
        let (ui, cap) = Ui::capture(Settings::default(), "");
        ui.report(&Status(ws.clone()));
        assert_eq!(
            cap.stdout(),
            "site (ws-1): running
  SSH:  ssh -p 2201 dev@nexus.example
  Repo: acme/site @ main (0123456789ab)
Services of site (running; from .nexus/config.yaml)
  setup  running 1/2 `npm ci` · 12 s · added 210 packages
  web    starting    5173  http://localhost:23000 — waiting for setup (`npm ci`, 12 s)
URLs work on your machine while `nexus workspace connect` forwards the ports.
"
        );
        let (ui, cap) = Ui::capture(Settings { json: true, ..Settings::default() }, "");
        ui.report(&Status(ws));
        let json: serde_json::Value = serde_json::from_str(&cap.stdout()).unwrap();
        assert_eq!(json["setup"], setup("running", Some(1), 12, Some("added 210 packages")));
    }
}
