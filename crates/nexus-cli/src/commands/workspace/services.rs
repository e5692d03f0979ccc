//! `nexus workspace services`: what runs in a workspace — each service's status, port and URL, and
//! for failures the message, last log lines and hint.

use nexus_types::api::{ServiceInfo, WorkspaceView};

use super::open;
use crate::error::Result;
use crate::ui::{Report, Ui};

/// A workspace's services: JSON is the list, text the table.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct Services {
    services: Vec<ServiceInfo>,
    #[serde(skip)]
    view: WorkspaceView,
}

impl Report for Services {
    fn text(&self, ui: &Ui) {
        let table = render(&self.view);
        ui.result(table.strip_suffix('\n').unwrap_or(&table));
    }
}

/// The services of one of the caller's workspaces, by name or id.
pub async fn run(workspace: &str, server: Option<String>) -> Result<Services> {
    let view = open(workspace, server).await?.1;
    Ok(Services { services: view.services.clone(), view })
}

/// The services table for people: name, status, port, URL; failures with their message, hint and logs.
pub(crate) fn render(ws: &WorkspaceView) -> String {
    let mut out = format!("Services of {} ({}; from {})\n", ws.name, ws.status, ws.services_source);
    if ws.services.is_empty() {
        out.push_str("  none yet (add .nexus/config.yaml, or start something that listens on a port)\n");
        return out;
    }
    let width = ws.services.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
    for s in &ws.services {
        let port = s.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let url = s.url.clone().unwrap_or_default();
        let tag = if s.discovered { "  (discovered)" } else { "" };
        out.push_str(&format!("  {:width$}  {:9}  {:>5}  {url}{tag}\n", s.name, s.status.as_str(), port));
        if let Some(m) = &s.message {
            out.push_str(&format!("      {m}\n"));
        }
        if let Some(logs) = &s.last_logs {
            for line in logs.lines() {
                out.push_str(&format!("      | {line}\n"));
            }
        }
        if let Some(h) = &s.hint {
            out.push_str(&format!("      hint: {h}\n"));
        }
    }
    out.push_str("URLs work on your machine while `nexus workspace connect` forwards the ports.\n");
    out
}
