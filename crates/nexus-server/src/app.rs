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

#[cfg(test)]
mod tests;

/// Who is calling.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// A registered user.
    User(User),
    /// Whoever holds the operator token.
    Operator,
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
    /// Requests waiting for the node's answer to a command, keyed by (workspace, generation).
    waiters: Mutex<HashMap<(String, i64), oneshot::Sender<Outcome>>>,
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
        Ok(Arc::new(App {
            store,
            hub: Hub::new(config.node_timeout),
            ssh_ports: SshPorts::new(config.ssh_ports, config.ssh_bind_ip),
            config,
            github,
            probe,
            operator_token,
            join_token,
            waiters: Mutex::new(HashMap::new()),
        }))
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Reopens the SSH listeners of every workspace that should have one (after a restart).
    pub(crate) async fn restore(self: &Arc<Self>) -> Result<()> {
        let _reserved = self.ssh_ports.reserve().await;
        for ws in self.store.all_workspaces().await? {
            if !matches!(ws.status, WorkspaceStatus::Stopped | WorkspaceStatus::Failed) {
                if let Err(e) = self.listen(ws.ssh_port, &ws.id).await {
                    tracing::error!(workspace = %ws.id, port = ws.ssh_port, error = %e, "could not reopen SSH port");
                }
            }
        }
        Ok(())
    }

    // ---- identity -------------------------------------------------------------------------------

    /// Resolves a bearer token to a caller.
    pub(crate) async fn authenticate(&self, bearer: Option<&str>) -> Result<Caller> {
        let hint = "run `nexus ssh setup` to register and get a token, then send it as `Authorization: Bearer <token>`";
        let Some(token) = bearer else {
            return Err(ServerError::unauthorized("this endpoint needs an API token", hint));
        };
        if secret::same_secret(token, &self.operator_token) {
            return Ok(Caller::Operator);
        }
        match self.store.user_by_token(&secret::hash_token(token)).await? {
            Some(u) => Ok(Caller::User(u)),
            None => Err(ServerError::unauthorized("the API token is not valid", hint)),
        }
    }

    pub(crate) fn is_join_token(&self, token: &str) -> bool {
        secret::same_secret(token, &self.join_token)
    }

    /// Registers (or re-registers) a user and issues a new API token.
    pub(crate) async fn register(&self, bearer: Option<&str>, req: RegisterRequest) -> Result<RegisterResponse> {
        names::github_login(&req.github_username)?;
        let key = names::ssh_public_key(&req.ssh_pubkey)?;
        if let Some(fp) = &req.ssh_pubkey_fingerprint {
            if fp != &key.fingerprint {
                return Err(ServerError::bad_request(
                    "fingerprint_mismatch",
                    format!(
                        "ssh_pubkey_fingerprint {fp} does not match the key (its fingerprint is {})",
                        key.fingerprint
                    ),
                    "send the fingerprint `ssh-keygen -lf <key>.pub` prints, or leave the field out",
                ));
            }
        }
        let by_operator = bearer.is_some_and(|t| secret::same_secret(t, &self.operator_token));
        if !by_operator {
            let Some(gh_token) = req.github_token.as_deref().filter(|t| !t.is_empty()) else {
                return Err(ServerError::unauthorized(
                    "registration needs a GitHub token (github_token) to prove who you are",
                    "run `nexus auth github` first, then `nexus ssh setup`",
                ));
            };
            let Some(gh) = self.github.user(gh_token).await? else {
                return Err(ServerError::unauthorized(
                    "GitHub rejected the token (it is invalid, expired or revoked)",
                    "run `nexus auth github` to sign in again",
                ));
            };
            if !gh.login.eq_ignore_ascii_case(&req.github_username) || gh.id != req.github_id {
                return Err(ServerError::unauthorized(
                    format!(
                        "the GitHub token belongs to {} (id {}), not {} (id {})",
                        gh.login, gh.id, req.github_username, req.github_id
                    ),
                    "register as the account the token belongs to, or sign in to GitHub as the right user",
                ));
            }
        }
        let user_id =
            self.store.upsert_user(&req.github_username, req.github_id, &key.authorized_line, &key.fingerprint).await?;
        let api_token = secret::random_token("nxs_");
        self.store.add_token(user_id, &secret::hash_token(&api_token)).await?;
        Ok(RegisterResponse {
            github_username: req.github_username,
            ssh_pubkey_fingerprint: key.fingerprint,
            api_token,
        })
    }

    /// The calling user.
    pub(crate) fn me(&self, caller: &Caller) -> Result<UserInfo> {
        let user = require_user(caller)?;
        Ok(UserInfo {
            github_username: user.github_username.clone(),
            github_id: user.github_id,
            ssh_pubkey_fingerprint: user.ssh_fingerprint.clone(),
        })
    }

    /// What the CLI needs to sign in to the GitHub this server trusts.
    pub(crate) fn client_config(&self) -> ClientConfig {
        ClientConfig {
            github_url: self.config.git_base_url.trim_end_matches('/').to_string(),
            github_api_url: self.config.github_api_url.trim_end_matches('/').to_string(),
            github_client_id: self.config.github_client_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    // ---- workspaces -----------------------------------------------------------------------------

    async fn owned(&self, user: &User, id: &str) -> Result<WorkspaceRow> {
        // Another user's workspace looks exactly like a missing one: no existence leak.
        match self.store.workspace(id).await? {
            Some(ws) if ws.owner_id == user.id => Ok(ws),
            _ => Err(ServerError::WorkspaceNotFound(id.to_string())),
        }
    }

    /// Creates a workspace, or returns the caller's existing one of that name for the same repo.
    pub(crate) async fn create(
        self: &Arc<Self>,
        caller: &Caller,
        req: CreateWorkspaceRequest,
    ) -> Result<CreateWorkspaceResponse> {
        let user = require_user(caller)?;
        if let Some(login) = &req.github_username {
            if !login.eq_ignore_ascii_case(&user.github_username) {
                return Err(ServerError::Forbidden {
                    message: format!(
                        "github_username {login} does not match the token's user {}",
                        user.github_username
                    ),
                    hint: "leave github_username out, or use that user's token".into(),
                });
            }
        }
        names::workspace_name(&req.workspace_name)?;
        let repo = names::repo(&req.repo, &self.config.git_base_url)?;
        if let Some(b) = &req.branch {
            names::branch(b)?;
        }
        let provider = req.provider.as_deref().unwrap_or("lxc");
        if provider != "lxc" {
            return Err(ServerError::bad_request(
                "unsupported_provider",
                format!("provider {provider:?} is not supported"),
                "use `lxc` (or leave provider out)",
            ));
        }
        let res = req.resources.clone().unwrap_or(Resources { cpu: None, memory: None });
        // Fail fast on the request's own values, before any git traffic.
        check_limits(req.image.as_deref(), res.cpu, res.memory.as_deref(), "invalid_field", "")?;

        if let Some(existing) = self.store.workspace_by_name(user.id, &req.workspace_name).await? {
            return existing_response(existing, &repo.url);
        }

        let upstream_url = match req.upstream.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(u) => Some(names::repo(u, &self.config.git_base_url)?.url),
            None => None,
        };
        let token = req.git_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if token.is_some_and(|t| t.len() > 512 || t.chars().any(|c| c.is_whitespace() || c.is_control())) {
            return Err(ServerError::bad_request(
                "invalid_field",
                "git_token is not a token (it has spaces or is too long)",
                "send the GitHub token as it is, or leave git_token out",
            ));
        }
        let branch = self.probe.resolve_branch(&repo.url, req.branch.as_deref(), token).await?;
        let files = self.probe.plan_files(&repo.url, &branch, token).await?;
        let resolved = nexus_project::resolve(&nexus_project::MapFiles(files)).map_err(|e| {
            ServerError::BadRequest { code: "invalid_config", message: e.to_string(), hint: e.hint.clone() }
        })?;
        // The request's values win over the repo's `providers.lxc`, which win over the defaults.
        check_limits(
            resolved.image.as_deref(),
            resolved.cpu,
            resolved.memory.as_deref(),
            "invalid_config",
            " in .nexus/config.yaml",
        )?;
        let image = req.image.clone().or(resolved.image).unwrap_or_default();
        let cpu = res.cpu.or(resolved.cpu).unwrap_or(self.config.default_cpu);
        let memory = res.memory.clone().or(resolved.memory).unwrap_or_else(|| self.config.default_memory.clone());
        let plan = resolved.plan;
        let node = self.pick_node().await?;

        let id = format!("ws-{}", &secret::random_token("")[..12]);
        {
            let _reserved = self.ssh_ports.reserve().await;
            let used = self.store.used_ports().await?;
            let (port, listener) = self.ssh_ports.bind_free(&used).await?;
            let repo_url = repo.url.clone();
            let inserted = self
                .store
                .insert_workspace(NewWorkspace {
                    id: id.clone(),
                    owner_id: user.id,
                    name: req.workspace_name.clone(),
                    image,
                    cpu,
                    memory,
                    repo_owner: repo.owner,
                    repo_name: repo.name,
                    repo_url: repo.url,
                    branch,
                    ssh_port: port,
                    node,
                    plan: serde_json::to_string(&plan).expect("plans serialize"),
                    git_token: token.map(str::to_string),
                    upstream_url,
                })
                .await;
            if let Err(e) = inserted {
                // A concurrent create of the same name won the race: answer like a repeat request.
                if let Some(existing) = self.store.workspace_by_name(user.id, &req.workspace_name).await? {
                    return existing_response(existing, &repo_url);
                }
                return Err(e);
            }
            self.serve_listener(port, &id, listener);
        }
        // The planned services are listed (`starting`, local ports assigned) from the start, so a
        // client that sees `running` before the node's first services report still knows what to wait for.
        let planned: Vec<ServiceRow> = plan
            .services
            .iter()
            .map(|s| ServiceRow {
                name: s.name.clone(),
                port: s.port,
                mapped_port: 0,
                status: ServiceStatus::Starting,
                discovered: false,
                message: None,
                hint: None,
                last_logs: None,
            })
            .collect();
        self.store.replace_services(&id, user.id, planned, None).await?;
        let ws = self.workspace(&id).await?;
        // Only this first ensure may start from a prebuild: the probe above read the repo with the
        // caller's token (or without one, so it is public). A command re-sent later is built from
        // the stored row and says neither, so the node clones afresh.
        let spec = WorkspaceSpec { no_prebuild: req.no_prebuild, repo_access_verified: true, ..self.spec_of(&ws) };
        self.send_command(&ws, Op::Ensure(Box::new(spec))).await?;
        // Re-read: the node may have taken the command (`creating`) or even answered already.
        let ws = self.workspace(&id).await?;
        Ok(CreateWorkspaceResponse {
            workspace_id: id.clone(),
            status: ws.status,
            ssh_port: ws.ssh_port,
            polling_url: polling_path(&id),
            created: true,
        })
    }

    async fn workspace(&self, id: &str) -> Result<WorkspaceRow> {
        self.store.workspace(id).await?.ok_or_else(|| ServerError::WorkspaceNotFound(id.to_string()))
    }

    /// The least-loaded responsive node.
    async fn pick_node(&self) -> Result<String> {
        self.store
            .list_nodes()
            .await?
            .into_iter()
            .filter(|n| self.hub.is_responsive(&n.name))
            .min_by_key(|n| (n.workspaces, n.name.clone()))
            .map(|n| n.name)
            .ok_or_else(|| {
                ServerError::unavailable(
                    "no_nodes",
                    "no node is available to run the workspace",
                    "ask the operator to start a node agent (`nexus agent --server <url> --join-token <token>`), then retry",
                )
            })
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
            authorized_key: ws.owner_key.clone(),
            repo_url: ws.repo_url.clone(),
            repo_dir: ws.repo_name.clone(),
            branch: ws.branch.clone(),
            plan: plan_of(ws),
            git_token: ws.git_token.clone(),
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
        let generation = self.store.next_generation(&ws.id).await?;
        self.dispatch(ws, generation, op).await
    }

    /// Hands a command to the node; an ensure it took is `Dispatched` (a workspace still waiting
    /// for its node becomes `creating`). Otherwise it stays put; the node gets the command again
    /// when it reconnects.
    async fn dispatch(&self, ws: &WorkspaceRow, generation: i64, op: Op) -> Result<bool> {
        let ensure = matches!(op, Op::Ensure(_));
        let sent =
            self.hub.send(&ws.node, ServerMessage::Command(Command { workspace_id: ws.id.clone(), generation, op }));
        if sent && ensure {
            // A fast node may have answered already; the conditional write then keeps its newer status.
            self.transition(ws, Event::Dispatched, StatusDetails::default()).await?;
        }
        Ok(sent)
    }

    /// Sends a command and waits for the node's answer to it (or the op timeout).
    async fn send_and_wait(&self, ws: &WorkspaceRow, op: Op) -> Result<Outcome> {
        let generation = self.store.next_generation(&ws.id).await?;
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

    /// One of the caller's workspaces.
    pub(crate) async fn view(&self, caller: &Caller, id: &str, host: &str) -> Result<WorkspaceView> {
        let user = require_user(caller)?;
        let ws = self.owned(user, id).await?;
        let services = self.store.services_of(&ws.id).await?;
        let setup = self.store.setup_of(&ws.id).await?;
        Ok(self.to_view(&ws, services, setup, host))
    }

    /// All of the caller's workspaces.
    pub(crate) async fn list(&self, caller: &Caller, host: &str) -> Result<WorkspaceList> {
        let user = require_user(caller)?;
        let rows = self.store.workspaces_of(user.id).await?;
        Ok(WorkspaceList {
            workspaces: rows
                .into_iter()
                .map(|(ws, services, setup)| self.to_view(&ws, services, setup, host))
                .collect(),
        })
    }

    fn to_view(
        &self,
        ws: &WorkspaceRow,
        services: Vec<ServiceRow>,
        setup: Option<SetupRow>,
        host: &str,
    ) -> WorkspaceView {
        let host = self.config.public_host.clone().unwrap_or_else(|| host.to_string());
        let node_status = self.hub.node_status(&ws.node);
        let (mut message, mut hint) = (ws.message.clone(), ws.hint.clone());
        if ws.status != WorkspaceStatus::Stopped && message.is_none() {
            let timeout = self.config.node_timeout.as_secs();
            match node_status {
                NodeStatus::Ok => {}
                NodeStatus::Unresponsive => {
                    message = Some(format!("node {} is unresponsive (no heartbeat within {timeout}s)", ws.node));
                    hint = Some(
                        "the workspace is unreachable until its node is back; ask the operator to check `nexus agent` there"
                            .into(),
                    );
                }
                NodeStatus::Connecting => {
                    message = Some(format!(
                        "waiting for node {} to reconnect (the server started {}s ago)",
                        ws.node,
                        self.hub.uptime().as_secs()
                    ));
                    hint = Some(format!(
                        "nodes reconnect within seconds of a server restart; if it is not back after {timeout}s, \
                         ask the operator to check `nexus agent` there"
                    ));
                }
            }
        }
        let running = ws.status == WorkspaceStatus::Running;
        let plan = plan_of(ws);
        let setup = setup_view(ws, &plan, setup, now_ms());
        WorkspaceView {
            workspace_id: ws.id.clone(),
            name: ws.name.clone(),
            owner: ws.owner.clone(),
            status: ws.status,
            message,
            hint,
            provider: ws.provider.clone(),
            image: ws.image.clone(),
            ssh: SshInfo {
                command: format!("ssh -p {} dev@{host}", ws.ssh_port),
                host,
                port: ws.ssh_port,
                user: "dev".into(),
                host_key: ws.host_key.clone(),
            },
            services: services
                .into_iter()
                .map(|r| ServiceInfo {
                    url: Some(format!("http://localhost:{}", r.mapped_port)),
                    name: r.name,
                    port: r.port,
                    mapped_port: Some(r.mapped_port),
                    status: if running { r.status } else { ServiceStatus::Stopped },
                    discovered: r.discovered,
                    message: match (running, r.status) {
                        (true, ServiceStatus::Starting) => Some(starting_message(r.message, setup.as_ref())),
                        _ => r.message,
                    },
                    hint: r.hint,
                    last_logs: r.last_logs,
                })
                .collect(),
            setup,
            services_source: plan.source,
            repo: RepoInfo {
                owner: ws.repo_owner.clone(),
                name: ws.repo_name.clone(),
                url: ws.repo_url.clone(),
                branch: ws.branch.clone(),
                commit: ws.commit.clone(),
                path: format!("/home/dev/{}", ws.repo_name),
            },
            node: Some(NodeRef { name: ws.node.clone(), status: node_status }),
            resources: Resources { cpu: Some(ws.cpu), memory: Some(ws.memory.clone()) },
            created_at: ws.created_at.clone(),
            updated_at: ws.updated_at.clone(),
        }
    }

    async fn current_status(&self, id: &str) -> Result<StatusChange> {
        let ws = self.workspace(id).await?;
        Ok(StatusChange { workspace_id: ws.id, status: ws.status })
    }

    /// Stops a workspace and waits for the node to confirm. Stopping a stopped one is a no-op.
    pub(crate) async fn stop(self: &Arc<Self>, caller: &Caller, id: &str) -> Result<StatusChange> {
        let ws = self.owned(require_user(caller)?, id).await?;
        if ws.status == WorkspaceStatus::Stopped {
            return Ok(StatusChange { workspace_id: ws.id, status: ws.status });
        }
        if !self.hub.is_responsive(&ws.node) {
            return Err(self.node_unavailable(&ws));
        }
        self.send_and_wait(&ws, Op::Stop).await?;
        self.current_status(id).await
    }

    /// Starts a stopped (or retries a failed) workspace and waits until it runs or fails.
    pub(crate) async fn start(self: &Arc<Self>, caller: &Caller, id: &str) -> Result<StatusChange> {
        let ws = self.owned(require_user(caller)?, id).await?;
        let to = ws.status.apply(Event::StartRequested).map_err(|e| ServerError::Conflict {
            code: "invalid_state",
            message: e.to_string(),
            hint: "check `nexus workspace status`".into(),
        })?;
        if to == Transition::Unchanged {
            return Ok(StatusChange { workspace_id: ws.id, status: ws.status });
        }
        if !self.hub.is_responsive(&ws.node) {
            return Err(self.node_unavailable(&ws));
        }
        {
            let _reserved = self.ssh_ports.reserve().await;
            self.listen(ws.ssh_port, &ws.id).await.map_err(|e| {
                ServerError::unavailable(
                    "ssh_port_busy",
                    format!("SSH port {} of this workspace is taken by another program: {e}", ws.ssh_port),
                    "ask the operator to free the port, then start the workspace again",
                )
            })?;
        }
        let Applied::To(pending) = self.transition(&ws, Event::StartRequested, StatusDetails::default()).await? else {
            // A concurrent start (or a report) moved it first; that one carries on.
            return self.current_status(id).await;
        };
        let ws = WorkspaceRow { status: pending, message: None, hint: None, ..ws };
        let spec = self.spec_of(&ws);
        self.send_and_wait(&ws, Op::Ensure(Box::new(spec))).await?;
        self.current_status(id).await
    }

    /// Deletes a workspace: the node removes the container, then the record and port are freed.
    pub(crate) async fn delete(self: &Arc<Self>, caller: &Caller, id: &str) -> Result<Deleted> {
        let ws = self.owned(require_user(caller)?, id).await?;
        if !self.hub.is_responsive(&ws.node) {
            return Err(self.node_unavailable(&ws));
        }
        match self.send_and_wait(&ws, Op::Delete).await? {
            Outcome::Failed { message, hint } => Err(ServerError::unavailable("delete_failed", message, hint)),
            _ => Ok(Deleted { workspace_id: id.to_string(), deleted: true }),
        }
    }

    /// Every node (operator only).
    pub(crate) async fn nodes(&self, caller: &Caller) -> Result<NodeList> {
        if !matches!(caller, Caller::Operator) {
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
                name: n.name,
                lxd_project: n.lxd_project,
                workspaces: n.workspaces,
                last_heartbeat: n.last_heartbeat,
            })
            .collect();
        Ok(NodeList { nodes })
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

    /// Hands a tunnel WebSocket an agent dialled back to the connection waiting for it; false if
    /// none waits (it gave up).
    pub(crate) fn tunnel_arrived(&self, tunnel_id: &str, socket: WebSocket) -> bool {
        self.hub.complete_tunnel(tunnel_id, socket)
    }

    // ---- agents ---------------------------------------------------------------------------------

    /// A node said hello on a new control connection: greet it and route its commands to `tx`
    /// (replacing an older connection of the node). Returns the connection id to leave with.
    pub(crate) fn node_connected(&self, node: &str, tx: mpsc::UnboundedSender<ServerMessage>) -> u64 {
        let _ = tx.send(ServerMessage::Welcome { heartbeat_secs: self.config.heartbeat.as_secs().max(1) });
        self.hub.attach(node, tx)
    }

    /// A node's control connection `conn_id` closed.
    pub(crate) fn node_left(&self, node: &str, conn_id: u64) {
        self.hub.detach(node, conn_id);
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
        if !self.store.replace_services(&ws.id, ws.owner_id, rows, Some(generation)).await? {
            tracing::debug!(workspace = %ws.id, generation, "stale services report ignored");
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
    async fn apply_report(&self, ws: &WorkspaceRow, report: Report) -> Result<()> {
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
                Applied::To(WorkspaceStatus::Stopped | WorkspaceStatus::Failed) => {
                    // Refuse SSH outright rather than accept and drop: clients then say "connection refused".
                    self.ssh_ports.close(ws.ssh_port);
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

/// The answer to a create for a name the user already has: the same workspace if it is for the
/// same repo (creates are idempotent), a conflict otherwise.
fn existing_response(existing: WorkspaceRow, repo_url: &str) -> Result<CreateWorkspaceResponse> {
    if existing.repo_url != repo_url {
        return Err(ServerError::Conflict {
            code: "name_taken",
            message: format!("you already have a workspace named {} for {}", existing.name, existing.repo_url),
            hint: "pick another name with --name, or delete the old workspace first".into(),
        });
    }
    Ok(CreateWorkspaceResponse {
        polling_url: polling_path(&existing.id),
        workspace_id: existing.id,
        status: existing.status,
        ssh_port: existing.ssh_port,
        created: false,
    })
}

/// Checks an image alias, CPU count and memory size, wherever they came from (`source` says where).
fn check_limits(
    image: Option<&str>,
    cpu: Option<u32>,
    memory: Option<&str>,
    code: &'static str,
    source: &str,
) -> Result<()> {
    if let Some(image) = image {
        if image.is_empty()
            || !image.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
        {
            return Err(ServerError::bad_request(
                code,
                format!("image {image:?}{source} is not a valid image alias"),
                "leave image out to use the node's base image",
            ));
        }
    }
    if let Some(cpu) = cpu.filter(|c| !(1..=64).contains(c)) {
        return Err(ServerError::bad_request(code, format!("cpu {cpu}{source} is out of range"), "use 1 to 64 CPUs"));
    }
    if let Some(memory) = memory.filter(|m| names::memory_bytes(m).is_none_or(|b| b < 128 << 20)) {
        return Err(ServerError::bad_request(
            code,
            format!("memory {memory:?}{source} is not a size of at least 128MiB"),
            "use a size like `4GB` or `512MiB`",
        ));
    }
    Ok(())
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// `12 s`, `3 min 5 s`, `15 min`.
fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 60, s % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// The setup as the API shows it at `now_ms`: the stored report, with the time elapsed so far while it
/// runs; `pending` while the plan's setup has not reported yet, or when a run was cut short by a stop
/// (it runs again at the next start). `None` for a plan without setup steps.
fn setup_view(ws: &WorkspaceRow, plan: &ProjectPlan, row: Option<SetupRow>, now_ms: i64) -> Option<SetupView> {
    let pending = |message: Option<&str>| SetupView {
        status: SetupStatus::Pending,
        step: None,
        step_number: None,
        steps: plan.setup.len() as u32,
        started_at: None,
        elapsed_ms: 0,
        last_line: None,
        message: message.map(str::to_string),
        hint: None,
        last_logs: None,
    };
    let Some(row) = row else {
        return (!plan.setup.is_empty()).then(|| pending(None));
    };
    if !row.status.is_settled() && row.generation < ws.generation {
        let message = (ws.status != WorkspaceStatus::Running)
            .then_some("the workspace stopped before setup finished; setup runs again when it starts");
        return Some(pending(message));
    }
    let elapsed_ms = match row.status {
        SetupStatus::Running => row.elapsed_ms.max(u64::try_from(now_ms - row.started_at_ms).unwrap_or(0)),
        _ => row.elapsed_ms,
    };
    let started =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(row.started_at_ms).unwrap_or(0));
    Some(SetupView {
        status: row.status,
        step: row.step,
        step_number: row.step_number,
        steps: row.steps,
        started_at: Some(humantime::format_rfc3339_seconds(started).to_string()),
        elapsed_ms,
        last_line: row.last_line,
        message: row.message,
        hint: row.hint,
        last_logs: row.last_logs,
    })
}

/// What a `starting` service in a running workspace waits for: the setup while it runs (with its step
/// and time, which only the server knows to the second), else what the node said, else its first report.
fn starting_message(reported: Option<String>, setup: Option<&SetupView>) -> String {
    match setup {
        Some(s) if s.status == SetupStatus::Running => {
            let step = match (&s.step, s.step_number) {
                (Some(step), Some(n)) if s.steps > 1 => format!("`{step}`, step {n} of {}, ", s.steps),
                (Some(step), _) => format!("`{step}`, "),
                (None, _) => String::new(),
            };
            format!("waiting for setup ({step}{})", human_ms(s.elapsed_ms))
        }
        Some(s) if s.status == SetupStatus::Pending => "waiting for setup to start".into(),
        _ => reported.unwrap_or_else(|| "waiting for the node to report on it".into()),
    }
}

/// The stored service plan of a workspace (empty for workspaces made before plans existed).
fn plan_of(ws: &WorkspaceRow) -> ProjectPlan {
    serde_json::from_str(&ws.plan).unwrap_or_default()
}

fn require_user(caller: &Caller) -> Result<&User> {
    match caller {
        Caller::User(u) => Ok(u),
        Caller::Operator => Err(ServerError::Forbidden {
            message: "the operator token cannot own workspaces".into(),
            hint: "register a user (`POST /api/v1/users/register`) and use that user's token".into(),
        }),
    }
}
