//! What the server says about its own health: `/metrics`' state snapshot and `/ready`.

use super::*;
use crate::metrics::Snapshot;

/// Every workspace status, so each is exported even at zero (an alert on `failed` needs the series).
const STATUSES: [WorkspaceStatus; 5] = [
    WorkspaceStatus::Pending,
    WorkspaceStatus::Creating,
    WorkspaceStatus::Running,
    WorkspaceStatus::Stopped,
    WorkspaceStatus::Failed,
];

impl App {
    /// The OpenMetrics exposition, with the state read now.
    pub(crate) async fn metrics_text(&self) -> Result<String> {
        let counts = self.store.workspace_counts_by_status().await?;
        let workspaces_by_status =
            STATUSES.iter().map(|s| (s.to_string(), counts.get(s.as_str()).copied().unwrap_or(0))).collect();
        let nodes = self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| {
                let status = serde_json::to_value(self.hub.node_status(&n.name))
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                (n.name, status, u64::from(n.workspaces))
            })
            .collect();
        let (lo, hi) = self.config.ssh_ports;
        let snapshot = Snapshot {
            workspaces_by_status,
            nodes,
            ssh_ports_total: u64::from(hi - lo) + 1,
            ssh_ports_used: self.store.used_ports().await?.len() as u64,
            queues: self.burst.depths().into_iter().map(|(n, w, f)| (n, w as u64, f as u64)).collect(),
        };
        Ok(self.metrics.render(&snapshot))
    }

    /// One API request answered (the HTTP layer's hook).
    pub(crate) fn record_request(&self, route: &str, method: &str, status: u16, took: std::time::Duration) {
        self.metrics.http(route, method, status, took);
    }

    /// Ready to serve users: the database answers and at least one node is responsive. The reasons
    /// it is not, otherwise.
    pub(crate) async fn readiness(&self) -> std::result::Result<(), Vec<String>> {
        let mut problems = Vec::new();
        match self.store.list_nodes().await {
            Ok(nodes) if nodes.iter().any(|n| self.hub.is_responsive(&n.name)) => {}
            Ok(nodes) if nodes.is_empty() => problems.push("no node has joined".to_string()),
            Ok(_) => problems.push("no node is responsive".to_string()),
            Err(e) => problems.push(format!("the database does not answer: {e}")),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
