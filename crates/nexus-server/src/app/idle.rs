//! Idle auto-stop and wake: a running workspace with no SSH connection through the server for
//! `--idle-stop` is stopped (data kept; its SSH port stays open), and the next SSH connection to
//! that port — or `nexus workspace connect`, which starts a stopped workspace — starts it again,
//! the connection waiting for it instead of failing.
//!
//! Activity is what users count: an open SSH connection (a terminal, the editor's remote session,
//! forwarded ports to the dev servers — they all ride on SSH), not keystrokes; a workspace with
//! the editor attached and idle stays up. Until preview URLs exist, SSH is all traffic there is.

use std::time::{Duration, Instant};

use super::*;

/// How long a connection that woke a workspace waits for it to run.
const WAKE_TIMEOUT: Duration = Duration::from_secs(180);

/// SSH connections open to one workspace, and when the last one closed (or it started running).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Activity {
    open: usize,
    since: Instant,
}

/// An open SSH connection to a workspace, counted while it lives.
pub(crate) struct SshSession {
    app: Arc<App>,
    workspace_id: String,
}

impl Drop for SshSession {
    fn drop(&mut self) {
        let mut activity = lock(&self.app.activity);
        if let Some(a) = activity.get_mut(&self.workspace_id) {
            a.open = a.open.saturating_sub(1);
            a.since = Instant::now();
        }
    }
}

impl App {
    /// Counts an SSH connection to `workspace_id` until the returned guard drops.
    pub(crate) fn ssh_session(self: &Arc<Self>, workspace_id: &str) -> SshSession {
        let mut activity = lock(&self.activity);
        let a = activity.entry(workspace_id.to_string()).or_insert(Activity { open: 0, since: Instant::now() });
        a.open += 1;
        SshSession { app: self.clone(), workspace_id: workspace_id.to_string() }
    }

    /// The workspace (re)started running: its idle time starts now.
    pub(super) fn became_active(&self, workspace_id: &str) {
        let mut activity = lock(&self.activity);
        let a = activity.entry(workspace_id.to_string()).or_insert(Activity { open: 0, since: Instant::now() });
        a.since = Instant::now();
    }

    /// Stops every running workspace idle for `config.idle_stop`, every `idle_check_every`, until
    /// the app is dropped. A workspace this server has not seen run since it started counts as
    /// active from the start (a restart does not stop everything at once).
    pub(crate) async fn stop_idle_workspaces_forever(self: Arc<Self>) {
        let Some(limit) = self.config.idle_stop else {
            return;
        };
        let started = Instant::now();
        loop {
            tokio::time::sleep(self.config.idle_check_every).await;
            if let Err(e) = self.stop_idle_once(limit, started).await {
                tracing::error!(error = %nexus_types::diagnostics::error_chain(&e), "could not look for idle workspaces");
            }
        }
    }

    async fn stop_idle_once(self: &Arc<Self>, limit: Duration, started: Instant) -> Result<()> {
        for ws in self.store.all_workspaces().await? {
            if ws.status != WorkspaceStatus::Running || !self.hub.is_responsive(&ws.node) {
                continue;
            }
            let activity = lock(&self.activity).get(&ws.id).copied();
            let idle_for = match activity {
                Some(a) if a.open > 0 => continue,
                Some(a) => a.since.elapsed(),
                None => started.elapsed(),
            };
            if idle_for < limit || !self.store.mark_idle_stop(&ws.id).await? {
                continue;
            }
            tracing::info!(workspace = %ws.id, idle_secs = idle_for.as_secs(), "stopping an idle workspace");
            self.audit_as(
                "system".into(),
                None,
                "workspace.idle_stop",
                &ws.id,
                Some(format!("no SSH connection for {}", super::workspaces::human_ms(limit.as_millis() as u64))),
            )
            .await;
            let app = self.clone();
            // Each stop waits for its node; one slow node must not hold up the others' stops.
            tokio::spawn(async move {
                if let Err(e) = app.send_and_wait(&ws, Op::Stop).await {
                    tracing::warn!(workspace = %ws.id, error = %e, "idle stop did not finish");
                }
            });
        }
        Ok(())
    }

    /// An SSH connection arrived for `workspace_id`: if the server stopped it for lack of use,
    /// start it and wait until it runs. Errors are for the server log (an SSH client can only be
    /// told by closing the connection).
    pub(crate) async fn wake_for_ssh(self: &Arc<Self>, workspace_id: &str) -> std::result::Result<(), String> {
        let ws = self.store.workspace(workspace_id).await.map_err(|e| e.to_string())?.ok_or("workspace is gone")?;
        if !(ws.status == WorkspaceStatus::Stopped && ws.stopped_idle) {
            return Ok(());
        }
        tracing::info!(workspace = %ws.id, "an SSH connection wakes an idle-stopped workspace");
        self.audit_as("system".into(), None, "workspace.wake", &ws.id, Some("an SSH connection arrived".into())).await;
        // A concurrent wake may have moved it on; either way, wait for `running`.
        if let Err(e) = self.start_row(ws).await {
            tracing::info!(workspace = %workspace_id, error = %e, "wake: start did not finish here");
        }
        let deadline = Instant::now() + WAKE_TIMEOUT;
        loop {
            let ws = self.store.workspace(workspace_id).await.map_err(|e| e.to_string())?.ok_or("workspace is gone")?;
            match ws.status {
                WorkspaceStatus::Running => return Ok(()),
                WorkspaceStatus::Failed => return Err(format!("waking it failed: {}", ws.message.unwrap_or_default())),
                _ if Instant::now() > deadline => return Err("it did not start in time".into()),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}
