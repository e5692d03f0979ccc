//! Application logic: every decision the server makes, between the HTTP edge and the store.
//!
//! Handlers and the agent session call one method here; methods validate, consult the state
//! machine, write the store, and talk to node agents through the hub. Every workspace status change
//! goes through [`App::transition`]: the state machine decides, the store writes only if the row
//! still has the status the decision was made on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::WebSocket;
use nexus_types::api::{
    ClientConfig, CreateWorkspaceRequest, CreateWorkspaceResponse, Deleted, NodeList, NodeRef, NodeStatus, NodeView,
    RegisterRequest, RegisterResponse, RepoInfo, Resources, ServiceInfo, SetupView, SshInfo, StatusChange, UserInfo,
    WorkspaceList, WorkspaceView,
};
use nexus_types::diagnostics::lock;
use nexus_types::names;
use nexus_types::protocol::{
    Command, GitAuthor, InventoryItem, Op, Outcome, ProjectPlan, Report, ServerMessage, ServiceState, SetupState,
    SetupStatus, WorkspaceSpec,
};
use nexus_types::state::Event;
use nexus_types::{ServiceStatus, Transition, TransitionError, WorkspaceStatus};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::config::ServerConfig;
use crate::error::{Result, ServerError};
use crate::github::GithubIdentity;
use crate::hub::Hub;
use crate::repo_probe::RepoProbe;
use crate::secret;
use crate::ssh_ports::SshPorts;
use crate::store::{NewWorkspace, ServiceRow, SetupRow, StatusDetails, Store, User, WorkspaceRow};

mod agents;
mod audit;
mod burst;
mod identity;
mod idle;
mod nodes;
mod observability;
mod workspaces;

use workspaces::plan_of;
#[cfg(test)]
use workspaces::{setup_view, starting_message};
#[cfg(test)]
mod tests;

/// Who is calling, and from where.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub who: Who,
    /// The peer address of the request (not a forwarded-for header: nothing here vouches for one).
    pub source: Option<std::net::IpAddr>,
}

/// The identity behind a request.
#[derive(Debug, Clone)]
pub(crate) enum Who {
    /// A registered user.
    User(User),
    /// Whoever holds the operator token.
    Operator,
}

impl Caller {
    /// The operator, calling from `source`.
    pub(crate) fn operator(source: Option<std::net::IpAddr>) -> Caller {
        Caller { who: Who::Operator, source }
    }

    /// A user, calling from `source`.
    pub(crate) fn user(user: User, source: Option<std::net::IpAddr>) -> Caller {
        Caller { who: Who::User(user), source }
    }

    pub(crate) fn is_operator(&self) -> bool {
        matches!(self.who, Who::Operator)
    }

    /// How the audit log names this caller: the GitHub login, or `operator`.
    pub(crate) fn label(&self) -> String {
        match &self.who {
            Who::User(u) => u.github_username.clone(),
            Who::Operator => "operator".into(),
        }
    }
}

/// How often a report whose write lost to another writer is decided again on the fresh row. Each
/// loss means someone else moved the workspace on, so this is only reached under a write storm.
const MAX_REDECIDE: usize = 5;

/// What became of a status change the app asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// Written: the workspace is now in this status.
    To(WorkspaceStatus),
    /// The state machine refuses the event in the status the workspace was read in.
    Refused(TransitionError),
    /// The row changed since it was read (another request or a report got there first), or a newer
    /// command was issued than the report answers; nothing was written.
    Superseded,
}

/// The server's state and logic.
pub struct App {
    store: Store,
    hub: Hub,
    ssh_ports: SshPorts,
    config: ServerConfig,
    github: Box<dyn GithubIdentity>,
    probe: Box<dyn RepoProbe>,
    operator_token: String,
    join_token: String,
    /// Seals the GitHub tokens workspaces keep in the database.
    sealer: crate::sealed::Sealer,
    /// Requests waiting for the node's answer to a command, keyed by (workspace, generation).
    waiters: Mutex<HashMap<(String, i64), oneshot::Sender<Outcome>>>,
    /// SSH connections per workspace and when it was last in use (idle auto-stop).
    activity: Mutex<HashMap<String, idle::Activity>>,
    /// Where repo URLs may point: the git base URL's host and the operator's allow-list.
    git_hosts: names::GitHosts,
    /// Slots for repository probes: git runs for creates, bounded (issue 10, item 4).
    probe_slots: tokio::sync::Semaphore,
    /// Creates that reach git, per user.
    create_limiter: crate::rate_limit::PerKeyLimiter,
    metrics: crate::metrics::Metrics,
    /// Ensures per node in flight and waiting (burst scheduling).
    burst: burst::BurstQueue,
}

/// Path of a workspace's status endpoint.
fn polling_path(id: &str) -> String {
    format!("/api/v1/workspaces/{id}/status")
}

impl App {
    /// Builds the app: opens the store in the config's data dir, and loads or creates the operator
    /// and join tokens there. `github` proves registering users' identities; `probe` reads repos.
    pub fn new(config: ServerConfig, github: Box<dyn GithubIdentity>, probe: Box<dyn RepoProbe>) -> Result<Arc<App>> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| ServerError::Io { path: config.data_dir.display().to_string(), source })?;
        // The data dir holds the database, the tokens and (by default) the sealing key: this user
        // only, whatever the umask the server was started with.
        #[cfg(unix)]
        std::fs::set_permissions(&config.data_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|source| ServerError::Io { path: config.data_dir.display().to_string(), source })?;
        // Blocking, once, before anything is served: migrations must finish before the first request.
        let store = Store::open(&config.db_path())?;
        Self::with_store(config, store, github, probe)
    }

    /// Builds the app over `store` (unit tests use an in-memory one); the tokens live in the data
    /// dir, which must exist.
    pub(crate) fn with_store(
        config: ServerConfig,
        store: Store,
        github: Box<dyn GithubIdentity>,
        probe: Box<dyn RepoProbe>,
    ) -> Result<Arc<App>> {
        let operator_token = secret::load_or_create(&config.data_dir.join("operator-token"), "nxo_")?;
        let join_token = secret::load_or_create(&config.data_dir.join("join-token"), "nxj_")?;
        let git_hosts = names::GitHosts::new(&config.git_base_url, &config.allowed_git_hosts)?;
        let probe_slots = tokio::sync::Semaphore::new(config.max_concurrent_probes.max(1));
        let create_limiter = crate::rate_limit::PerKeyLimiter::per_minute(config.creates_per_minute);
        let sealer = crate::sealed::Sealer::load_or_create(&config.secrets_key_path())?;
        Ok(Arc::new(App {
            burst: burst::BurstQueue::new(config.parallel_starts_per_node),
            store,
            hub: Hub::new(config.node_timeout),
            ssh_ports: SshPorts::new(config.ssh_ports, config.ssh_bind_ip),
            config,
            github,
            probe,
            operator_token,
            join_token,
            sealer,
            waiters: Mutex::new(HashMap::new()),
            activity: Mutex::new(HashMap::new()),
            git_hosts,
            probe_slots,
            create_limiter,
            metrics: crate::metrics::Metrics::default(),
        }))
    }

    /// The process's metrics (the forwarder counts its connections there).
    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Reopens the SSH listeners of every workspace that should have one (after a restart).
    pub(crate) async fn restore(self: &Arc<Self>) -> Result<()> {
        self.reseal_secrets().await?;
        let _reserved = self.ssh_ports.reserve().await;
        for ws in self.store.all_workspaces().await? {
            let wakes = ws.status == WorkspaceStatus::Stopped && ws.stopped_idle;
            if wakes || !matches!(ws.status, WorkspaceStatus::Stopped | WorkspaceStatus::Failed) {
                if let Err(e) = self.listen(ws.ssh_port, &ws.id).await {
                    tracing::error!(workspace = %ws.id, port = ws.ssh_port, error = %e, "could not reopen SSH port");
                }
            }
        }
        Ok(())
    }

    /// Applies `event` to the workspace as it was read and writes the outcome with `details`, only
    /// if the row still has that status (and, for a report, no newer command was issued). The one
    /// way a workspace's status changes.
    async fn transition(&self, ws: &WorkspaceRow, event: Event, details: StatusDetails) -> Result<Applied> {
        let to = match ws.status.apply(event) {
            Ok(Transition::To(to)) => to,
            // A repeat still records what it carries (a new host key, a newer failure message).
            Ok(Transition::Unchanged) => ws.status,
            Err(e) => return Ok(Applied::Refused(e)),
        };
        if self.store.write_status(&ws.id, ws.status, to, details).await? {
            match to {
                WorkspaceStatus::Running => {
                    self.metrics.reached_running(&ws.id);
                    self.became_active(&ws.id);
                }
                WorkspaceStatus::Failed | WorkspaceStatus::Stopped => self.metrics.forget(&ws.id),
                _ => {}
            }
            Ok(Applied::To(to))
        } else {
            tracing::debug!(workspace = %ws.id, from = %ws.status, %to, ?event, "superseded by a newer write");
            Ok(Applied::Superseded)
        }
    }

    fn spec_of(&self, ws: &WorkspaceRow) -> WorkspaceSpec {
        WorkspaceSpec {
            image: ws.image.clone(),
            cpu: ws.cpu,
            memory: ws.memory.clone(),
            disk: self.config.max_disk.clone(),
            authorized_key: ws.owner_key.clone(),
            repo_url: ws.repo_url.clone(),
            repo_dir: ws.repo_name.clone(),
            branch: ws.branch.clone(),
            plan: plan_of(ws),
            git_token: ws.git_token.as_deref().and_then(|stored| self.open_git_token(&ws.id, stored)),
            upstream_url: ws.upstream_url.clone(),
            git_author: Some(GitAuthor {
                name: ws.owner.clone(),
                email: format!("{}+{}@users.noreply.github.com", ws.owner_github_id, ws.owner),
            }),
            owner_id: Some(ws.owner_github_id.to_string()),
            no_prebuild: false,
            repo_access_verified: false,
        }
    }

    /// Issues `op` as the workspace's next command; false when its node is not connected.
    async fn send_command(&self, ws: &WorkspaceRow, op: Op) -> Result<bool> {
        let generation = self.store.issue_generation(&ws.id, agents::op_kind(&op)).await?;
        self.dispatch(ws, generation, op).await
    }

    /// Hands a command to the node; an ensure it took is `Dispatched` (a workspace still waiting
    /// for its node becomes `creating`). Otherwise it stays put; the node gets the command again
    /// when it reconnects.
    async fn dispatch(&self, ws: &WorkspaceRow, generation: i64, op: Op) -> Result<bool> {
        let ensure = matches!(op, Op::Ensure(_));
        let op = if ensure {
            if !self.hub.is_responsive(&ws.node) {
                // Not queued: the node gets its ensures again when it says hello.
                return Ok(false);
            }
            match self.burst.admit(&ws.node, &ws.id, generation, op) {
                Some(op) => op,
                // Waits its turn; `pending` shows its place in the queue.
                None => return Ok(true),
            }
        } else {
            op
        };
        let sent =
            self.hub.send(&ws.node, ServerMessage::Command(Command { workspace_id: ws.id.clone(), generation, op }));
        if ensure && !sent {
            self.burst.finished(&ws.node, &ws.id, generation);
        }
        if sent && ensure {
            // A fast node may have answered already; the conditional write then keeps its newer status.
            self.transition(ws, Event::Dispatched, StatusDetails::default()).await?;
        }
        Ok(sent)
    }

    /// Sends `node` the ensures that waited for the slots now free; ones a newer command made
    /// stale (or whose workspace is gone) give their slot on.
    async fn dispatch_waiting(&self, node: &str) -> Result<()> {
        while let Some(next) = self.burst.next(node) {
            let current = self.store.workspace(&next.workspace_id).await?;
            let Some(ws) = current.filter(|ws| ws.generation == next.generation && ws.node == node) else {
                self.burst.finished(node, &next.workspace_id, next.generation);
                continue;
            };
            let cmd = Command { workspace_id: ws.id.clone(), generation: next.generation, op: next.op };
            if !self.hub.send(node, ServerMessage::Command(cmd)) {
                self.burst.node_gone(node);
                break;
            }
            self.transition(&ws, Event::Dispatched, StatusDetails::default()).await?;
        }
        Ok(())
    }

    /// Sends a command and waits for the node's answer to it (or the op timeout).
    async fn send_and_wait(&self, ws: &WorkspaceRow, op: Op) -> Result<Outcome> {
        let generation = self.store.issue_generation(&ws.id, agents::op_kind(&op)).await?;
        let (tx, rx) = oneshot::channel();
        let key = (ws.id.clone(), generation);
        lock(&self.waiters).insert(key.clone(), tx);
        let sent = self.dispatch(ws, generation, op).await;
        let answer = match sent {
            Ok(true) => tokio::time::timeout(self.config.op_timeout, rx).await.ok().and_then(|r| r.ok()),
            _ => None,
        };
        lock(&self.waiters).remove(&key);
        match (sent?, answer) {
            (_, Some(outcome)) => Ok(outcome),
            (false, None) => Err(self.node_unavailable(ws)),
            (true, None) => Err(ServerError::Timeout {
                message: format!("node {} did not answer within {}s", ws.node, self.config.op_timeout.as_secs()),
                hint: "check `nexus workspace status` in a minute; the node may still finish the operation".into(),
            }),
        }
    }

    fn node_unavailable(&self, ws: &WorkspaceRow) -> ServerError {
        if let Some(why) = self.hub.degraded(&ws.node) {
            return ServerError::unavailable(
                "node_degraded",
                format!("node {} that runs workspace {} cannot run operations right now: {why}", ws.node, ws.name),
                "its agent is bringing it back (running workspaces keep working over SSH); retry in a minute, \
                 or ask the operator to check LXD on that node",
            );
        }
        if self.hub.node_status(&ws.node) == NodeStatus::Connecting {
            return ServerError::unavailable(
                "node_unresponsive",
                format!(
                    "node {} that runs workspace {} has not reconnected since the server restarted",
                    ws.node, ws.name
                ),
                "nodes reconnect within a few seconds of a server restart; retry shortly",
            );
        }
        ServerError::unavailable(
            "node_unresponsive",
            format!("node {} that runs workspace {} is not responding", ws.node, ws.name),
            "try again in a minute; if it persists, ask the operator to check `nexus agent` on that node",
        )
    }

    // ---- SSH ports ------------------------------------------------------------------------------

    /// Listens on a workspace's SSH port unless it already does. Call under `ssh_ports.reserve()`.
    async fn listen(self: &Arc<Self>, port: u16, id: &str) -> std::io::Result<()> {
        if let Some(listener) = self.ssh_ports.bind(port).await? {
            self.serve_listener(port, id, listener);
        }
        Ok(())
    }

    fn serve_listener(self: &Arc<Self>, port: u16, id: &str, listener: TcpListener) {
        let task = tokio::spawn(crate::forwarder::serve_port(self.clone(), listener, id.to_string()));
        self.ssh_ports.serving(port, task.abort_handle());
    }

    /// A tunnel to `port` inside a running workspace, through its node.
    pub(crate) async fn tunnel_to(&self, id: &str, port: u16) -> std::result::Result<WebSocket, String> {
        let ws = self.store.workspace(id).await.map_err(|e| e.to_string())?.ok_or("workspace is gone")?;
        if ws.status != WorkspaceStatus::Running {
            return Err(format!("workspace is {}", ws.status));
        }
        self.hub.open_tunnel(&ws.node, id, port).await.map_err(|e| e.to_string())
    }

    /// Hands a tunnel WebSocket node `node` dialled back to the connection waiting for it; false
    /// if none waits (it gave up) or the tunnel was asked of another node.
    pub(crate) fn tunnel_arrived(&self, tunnel_id: &str, node: &str, socket: WebSocket) -> bool {
        self.hub.complete_tunnel(tunnel_id, node, socket)
    }
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn require_user(caller: &Caller) -> Result<&User> {
    match &caller.who {
        Who::User(u) => Ok(u),
        Who::Operator => Err(ServerError::Forbidden {
            message: "the operator token cannot own workspaces".into(),
            hint: "register a user (`POST /api/v1/users/register`) and use that user's token".into(),
        }),
    }
}
