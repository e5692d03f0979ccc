//! `nexus node list`: every node that ever joined, its liveness and whether it is enrolled or revoked.

use nexus_types::api::{NodeStatus, NodeView};

use super::{operator_error, OperatorOptions};
use crate::error::Result;
use crate::ui::{Report, Ui};

/// The server's nodes, by name.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct Nodes(pub Vec<NodeView>);

/// What a node's credential is: enrolled, revoked, or from before enrolment existed.
fn credential(n: &NodeView) -> &'static str {
    match (&n.enrolled_at, &n.revoked_at) {
        (_, Some(_)) => "revoked",
        (Some(_), None) => "enrolled",
        (None, None) => "not enrolled",
    }
}

fn status(s: NodeStatus) -> &'static str {
    match s {
        NodeStatus::Ok => "ok",
        NodeStatus::Unresponsive => "unresponsive",
        NodeStatus::Connecting => "connecting",
        NodeStatus::Degraded => "degraded",
    }
}

impl Report for Nodes {
    fn text(&self, ui: &Ui) {
        if self.0.is_empty() {
            ui.info("no node has joined yet (start `nexus agent` on a node)");
            return;
        }
        ui.result(&format!(
            "{:24} {:13} {:13} {:>10}  {}",
            "NODE", "STATUS", "CREDENTIAL", "WORKSPACES", "LAST HEARTBEAT"
        ));
        for n in &self.0 {
            ui.result(&format!(
                "{:24} {:13} {:13} {:>10}  {}",
                n.name,
                status(n.status),
                credential(n),
                n.workspaces,
                n.last_heartbeat.as_deref().unwrap_or("-")
            ));
            if let Some(why) = &n.degraded {
                ui.info(&format!("  {}: {why}", n.name));
            }
        }
    }
}

/// Lists the nodes (operator only).
pub async fn run(opts: &OperatorOptions) -> Result<Nodes> {
    let nodes = opts.client()?.nodes().await.map_err(operator_error)?;
    Ok(Nodes(nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(enrolled: bool, revoked: bool) -> NodeView {
        NodeView {
            name: "n1".into(),
            lxd_project: "nexus".into(),
            status: NodeStatus::Ok,
            workspaces: 2,
            last_heartbeat: None,
            enrolled_at: enrolled.then(|| "2026-01-01T00:00:00Z".into()),
            revoked_at: revoked.then(|| "2026-01-02T00:00:00Z".into()),
            degraded: None,
        }
    }

    #[test]
    fn the_credential_column_says_enrolled_revoked_or_neither() {
        assert_eq!(credential(&node(true, false)), "enrolled");
        assert_eq!(credential(&node(true, true)), "revoked");
        assert_eq!(credential(&node(false, false)), "not enrolled");
    }
}
