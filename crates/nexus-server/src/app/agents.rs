//! Node agents: their connections, heartbeats, hellos (reconciliation) and reports.
//!
//! A report counts only when it comes from the node the workspace is placed on, answers a
//! generation the server issued (never a later one), and fits the command issued at that
//! generation: `ready` (which pins the host key) only an ensure, `stopped` only a stop, `deleted`
//! only a delete. So a node can only ever answer what it was asked.

use super::*;

impl App {
    /// Every node (operator only).
    pub(crate) async fn nodes(&self, caller: &Caller) -> Result<NodeList> {
        if !caller.is_operator() {
            return Err(ServerError::Forbidden {
                message: "listing nodes needs the operator token".into(),
                hint: "use the token in `<data-dir>/operator-token` on the server".into(),
            });
        }
        let nodes = self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| NodeView {
                status: self.hub.node_status(&n.name),
                degraded: self.hub.degraded(&n.name),
                name: n.name,
                lxd_project: n.lxd_project,
                workspaces: n.workspaces,
                last_heartbeat: n.last_heartbeat,
                enrolled_at: n.enrolled_at,
                revoked_at: n.revoked_at,
            })
            .collect();
        Ok(NodeList { nodes })
    }

    // ---- agents ---------------------------------------------------------------------------------

    /// A node said hello on a new control connection: route its commands to `tx` and greet it.
    /// `None` (and no welcome) while another connection of the node is live.
    pub(crate) fn node_connected(
        &self,
        node: &str,
        tx: mpsc::UnboundedSender<ServerMessage>,
    ) -> Option<crate::hub::Attached> {
        let attached = self.hub.attach(node, tx)?;
        self.hub.send(node, ServerMessage::Welcome { heartbeat_secs: self.config.heartbeat.as_secs().max(1) });
        Some(attached)
    }

    /// A node's control connection `conn_id` closed.
    pub(crate) fn node_left(&self, node: &str, conn_id: u64) {
        if self.hub.detach(node, conn_id) {
            self.burst.node_gone(node);
        }
    }

    /// A node said in its hello how many workspaces it runs at most.
    pub(crate) fn node_capacity(&self, node: &str, max_workspaces: Option<u32>) {
        self.hub.set_capacity(node, max_workspaces);
    }

    /// A node said whether its container provider answers; `Some(why)` when it does not.
    pub(crate) fn on_health(&self, node: &str, degraded: Option<String>) {
        match &degraded {
            Some(why) => tracing::warn!(%node, cause = %why, "node degraded: its container provider does not answer"),
            None => tracing::info!(%node, "node healthy again"),
        }
        self.hub.set_degraded(node, degraded);
    }

    /// A node's heartbeat: it is alive, and `GET /nodes` shows when it last said so.
    pub(crate) async fn node_heartbeat(&self, node: &str) -> Result<()> {
        self.hub.heartbeat(node);
        self.store.touch_node(node).await
    }

    /// Records a (re)connected node and reconciles its workspaces with what it has (`inventory`),
    /// re-sending whatever they still need.
    pub(crate) async fn on_hello(&self, node: &str, lxd_project: &str, inventory: &[InventoryItem]) -> Result<()> {
        self.store.upsert_node(node, lxd_project).await?;
        let found: HashMap<&str, bool> = inventory.iter().map(|i| (i.workspace_id.as_str(), i.running)).collect();
        for ws in self.store.workspaces_on(node).await? {
            match (ws.status, found.get(ws.id.as_str())) {
                (WorkspaceStatus::Pending | WorkspaceStatus::Creating, _) => {
                    self.send_command(&ws, Op::Ensure(Box::new(self.spec_of(&ws)))).await?;
                }
                (WorkspaceStatus::Running, None) => {
                    let details = StatusDetails {
                        message: Some(format!("the container of workspace {} is missing on node {node}", ws.name)),
                        hint: Some("delete the workspace and create it again".into()),
                        ..StatusDetails::default()
                    };
                    if let Applied::To(_) = self.transition(&ws, Event::Failed, details).await? {
                        self.ssh_ports.close(ws.ssh_port);
                    }
                }
                (WorkspaceStatus::Running, Some(false)) => {
                    // Desired state is running (e.g. the host rebooted): bring it back.
                    self.send_command(&ws, Op::Ensure(Box::new(self.spec_of(&ws)))).await?;
                }
                (WorkspaceStatus::Stopped, Some(true)) => {
                    self.send_command(&ws, Op::Stop).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Records a node's report of a workspace's services, unless it is stale or from the wrong node.
    pub(crate) async fn on_services(
        &self,
        node: &str,
        workspace_id: &str,
        generation: i64,
        services: &[ServiceState],
    ) -> Result<()> {
        let Some(ws) = self.store.workspace(workspace_id).await? else {
            return Ok(());
        };
        if ws.node != node {
            tracing::warn!(workspace = %ws.id, from = node, owner_node = %ws.node, "services report from the wrong node ignored");
            return Ok(());
        }
        if generation > ws.generation {
            tracing::warn!(workspace = %ws.id, from = node, generation, issued = ws.generation, "services report for a generation never issued ignored");
            return Ok(());
        }
        let rows: Vec<ServiceRow> = services
            .iter()
            .map(|s| ServiceRow {
                name: s.name.clone(),
                port: s.port,
                mapped_port: 0,
                status: s.status,
                discovered: s.discovered,
                message: s.message.clone(),
                hint: s.hint.clone(),
                last_logs: s.last_logs.clone(),
            })
            .collect();
        let all_running = !services.is_empty() && services.iter().all(|s| s.status == ServiceStatus::Running);
        if !self.store.replace_services(&ws.id, ws.owner_id, rows, Some(generation)).await? {
            tracing::debug!(workspace = %ws.id, generation, "stale services report ignored");
        } else if all_running {
            self.metrics.services_ready(&ws.id);
        }
        Ok(())
    }

    /// Records a node's report of a workspace's setup, unless it is stale or from the wrong node.
    pub(crate) async fn on_setup(
        &self,
        node: &str,
        workspace_id: &str,
        generation: i64,
        setup: &SetupState,
    ) -> Result<()> {
        let Some(ws) = self.store.workspace(workspace_id).await? else {
            return Ok(());
        };
        if ws.node != node {
            tracing::warn!(workspace = %ws.id, from = node, owner_node = %ws.node, "setup report from the wrong node ignored");
            return Ok(());
        }
        if generation > ws.generation {
            tracing::warn!(workspace = %ws.id, from = node, generation, issued = ws.generation, "setup report for a generation never issued ignored");
            return Ok(());
        }
        let row = SetupRow {
            generation,
            status: setup.status,
            step: setup.step.clone(),
            step_number: setup.step_number,
            steps: setup.steps,
            // The node's clock may differ from ours; its elapsed time does not.
            started_at_ms: now_ms().saturating_sub(i64::try_from(setup.elapsed_ms).unwrap_or(i64::MAX)),
            elapsed_ms: setup.elapsed_ms,
            last_line: setup.last_line.clone(),
            message: setup.message.clone(),
            hint: setup.hint.clone(),
            last_logs: setup.last_logs.clone(),
        };
        if self.store.record_setup(&ws.id, row).await? {
            if setup.status.is_settled() {
                tracing::info!(workspace = %ws.id, generation, status = %setup.status, elapsed_ms = setup.elapsed_ms, "setup ended");
            }
        } else {
            tracing::debug!(workspace = %ws.id, generation, "stale setup report ignored");
        }
        Ok(())
    }

    /// Applies an agent's report, ignoring stale ones and ones from the wrong node.
    pub async fn on_report(&self, node: &str, report: Report) -> Result<()> {
        self.hub.heartbeat(node);
        // Any answer from this node ends its ensure's turn (the lane is this node's own, so no
        // other node's report can free a slot here), and the next waiting one goes out.
        self.burst.finished(node, &report.workspace_id, report.generation);
        let result = self.apply_node_report(node, report).await;
        self.dispatch_waiting(node).await?;
        result
    }

    /// [`App::on_report`] once the report's slot is freed.
    async fn apply_node_report(&self, node: &str, report: Report) -> Result<()> {
        let Some(ws) = self.store.workspace(&report.workspace_id).await? else {
            return Ok(());
        };
        if ws.node != node {
            tracing::warn!(workspace = %ws.id, from = node, owner_node = %ws.node, "report from the wrong node ignored");
            return Ok(());
        }
        if report.generation < ws.generation {
            tracing::debug!(workspace = %ws.id, got = report.generation, current = ws.generation, "stale report ignored");
            return Ok(());
        }
        if report.generation > ws.generation {
            tracing::warn!(workspace = %ws.id, from = node, got = report.generation, issued = ws.generation, "report for a generation never issued ignored");
            return Ok(());
        }
        let asked = self.store.op_at(&ws.id, report.generation).await?;
        if !answers(asked.as_deref(), &report.outcome) {
            tracing::warn!(workspace = %ws.id, from = node, generation = report.generation, asked = asked.as_deref().unwrap_or("nothing"),
                outcome = outcome_kind(&report.outcome), "report does not answer the command issued; ignored");
            return Ok(());
        }
        let waiter = lock(&self.waiters).remove(&(ws.id.clone(), report.generation));
        let outcome = report.outcome.clone();
        self.apply_report(&ws, report).await?;
        if let Some(tx) = waiter {
            // Answer after the store reflects the outcome, so the caller reads the new status.
            let _ = tx.send(outcome);
        }
        Ok(())
    }

    /// Applies a report to the workspace as read in `ws`.
    pub(super) async fn apply_report(&self, ws: &WorkspaceRow, report: Report) -> Result<()> {
        let (event, details) = match report.outcome {
            Outcome::Ready { commit, host_key } => {
                (Event::Ready, StatusDetails { commit, host_key, ..Default::default() })
            }
            Outcome::Stopped => (Event::Halted, StatusDetails::default()),
            Outcome::Failed { message, hint } => {
                (Event::Failed, StatusDetails { message: Some(message), hint: Some(hint), ..Default::default() })
            }
            Outcome::Deleted => {
                self.store.delete_workspace(&ws.id).await?;
                self.ssh_ports.close(ws.ssh_port);
                return Ok(());
            }
        };
        let details = StatusDetails { generation: Some(report.generation), ..details };
        let mut ws = ws.clone();
        // Another writer may move the workspace between our read and our write (the server marking
        // it `creating` as a fast node reports it ready); the report is then decided again on what
        // is there now, until it lands, no longer fits, or a newer command makes it stale.
        for _ in 0..MAX_REDECIDE {
            match self.transition(&ws, event, details.clone()).await? {
                Applied::To(to @ (WorkspaceStatus::Stopped | WorkspaceStatus::Failed)) => {
                    // Refuse SSH outright rather than accept and drop: clients then say "connection
                    // refused". An idle stop keeps the port open: the next connection wakes it.
                    if !(to == WorkspaceStatus::Stopped && ws.stopped_idle) {
                        self.ssh_ports.close(ws.ssh_port);
                    }
                    // The node stopped them with the container; they start again with it.
                    self.store.set_services_status(&ws.id, ServiceStatus::Starting).await?;
                    return Ok(());
                }
                Applied::To(_) => return Ok(()),
                Applied::Refused(e) => {
                    tracing::warn!(workspace = %ws.id, error = %e, "report does not fit the workspace's status; ignored");
                    return Ok(());
                }
                Applied::Superseded => match self.store.workspace(&ws.id).await? {
                    Some(now) if now.generation <= report.generation => ws = now,
                    _ => return Ok(()),
                },
            }
        }
        tracing::warn!(workspace = %ws.id, ?event, "report kept losing to other writes; ignored");
        Ok(())
    }
}

/// The kind of a command, as `issue_generation` records it.
pub(super) fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Ensure(_) => "ensure",
        Op::Stop => "stop",
        Op::Delete => "delete",
    }
}

fn outcome_kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ready { .. } => "ready",
        Outcome::Stopped => "stopped",
        Outcome::Deleted => "deleted",
        Outcome::Failed { .. } => "failed",
    }
}

/// Whether `outcome` answers a command of kind `asked`: a host key (`ready`) only a create or
/// start, `deleted` only a delete; any command may fail. Nothing answers a generation whose kind
/// is unknown (issued before kinds were recorded; the node's next hello re-issues what is pending).
fn answers(asked: Option<&str>, outcome: &Outcome) -> bool {
    matches!(
        (asked, outcome),
        (Some("ensure"), Outcome::Ready { .. })
            | (Some("stop"), Outcome::Stopped)
            | (Some("delete"), Outcome::Deleted)
            | (Some(_), Outcome::Failed { .. })
    )
}

#[cfg(test)]
mod report_rules {
    use super::*;

    #[test]
    fn a_report_answers_only_the_command_issued() {
        let ready = Outcome::Ready { commit: None, host_key: Some("k".into()) };
        let failed = Outcome::Failed { message: "m".into(), hint: "h".into() };
        for (asked, outcome, ok) in [
            (Some("ensure"), &ready, true),
            (Some("stop"), &ready, false),
            (Some("delete"), &ready, false),
            (None, &ready, false),
            (Some("stop"), &Outcome::Stopped, true),
            (Some("ensure"), &Outcome::Stopped, false),
            (Some("delete"), &Outcome::Deleted, true),
            (Some("ensure"), &Outcome::Deleted, false),
            (Some("stop"), &Outcome::Deleted, false),
            (None, &Outcome::Deleted, false),
            (Some("ensure"), &failed, true),
            (Some("delete"), &failed, true),
            (None, &failed, false),
        ] {
            assert_eq!(answers(asked, outcome), ok, "{asked:?} answered by {}", outcome_kind(outcome));
        }
        assert_eq!(op_kind(&Op::Delete), "delete");
        assert_eq!(op_kind(&Op::Stop), "stop");
    }
}
