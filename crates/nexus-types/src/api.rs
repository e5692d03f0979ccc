//! Request and response bodies of the coordination server's REST API (`/api/v1/...`).
//!
//! Field names follow the product spec (`github_username`, `ssh_pubkey`, `workspace_id`, ...) so the
//! documented contract and the wire format are the same thing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::protocol::SetupStatus;
use crate::{ServiceStatus, WorkspaceStatus};

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The server's version.
    pub version: String,
}

/// `GET /api/v1/client-config`: what the CLI needs before the user has signed in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientConfig {
    /// GitHub's web URL the server clones `owner/name` repos from (`https://github.com`, a GitHub
    /// Enterprise host, or a test server); the CLI signs in there.
    pub github_url: String,
    /// GitHub's API base URL the server checks identities with.
    pub github_api_url: String,
    /// OAuth app client id for the device flow, when the operator configured one.
    pub github_client_id: Option<String>,
    /// The server's version.
    pub version: String,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// What went wrong and what to do next.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `workspace_not_found`.
    pub code: String,
    /// One sentence for people.
    pub message: String,
    /// The next step.
    pub hint: String,
}

/// `POST /api/v1/users/register`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// GitHub login.
    pub github_username: String,
    /// GitHub numeric user id.
    pub github_id: i64,
    /// OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
    pub ssh_pubkey: String,
    /// `SHA256:...` fingerprint of `ssh_pubkey`; checked against the key when given.
    #[serde(default)]
    pub ssh_pubkey_fingerprint: Option<String>,
    /// GitHub token proving the identity (checked with `GET /user`, and with
    /// `POST /applications/{client_id}/token` when the server has its OAuth app's secret). Not
    /// needed when the request is made with the operator token. Registering a login that is
    /// already registered also needs `Authorization: Bearer <api_token>` of that user: the key is
    /// then added to the user's keys.
    #[serde(default)]
    pub github_token: Option<String>,
}

/// Answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    /// GitHub login the token is bound to.
    pub github_username: String,
    /// Fingerprint of the registered key.
    pub ssh_pubkey_fingerprint: String,
    /// Bearer token for every other call. Shown once; the server keeps only its hash.
    pub api_token: String,
}

/// Answer to `POST /api/v1/auth/logout`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogoutResponse {
    /// The calling token was revoked now (false: it already was).
    pub revoked: bool,
}

/// The signed-in user, `GET /api/v1/users/me`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    /// GitHub login.
    pub github_username: String,
    /// GitHub numeric user id.
    pub github_id: i64,
    /// Fingerprint of the registered key.
    pub ssh_pubkey_fingerprint: String,
}

/// CPU and memory limits of a workspace container.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU count (default 2).
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Memory limit such as `4GB` or `512MiB` (default `4GB`).
    #[serde(default)]
    pub memory: Option<String>,
}

/// `POST /api/v1/workspaces/create`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceRequest {
    /// Must match the token's user when given (the spec sends it; the token decides).
    #[serde(default)]
    pub github_username: Option<String>,
    /// Name, unique per user: 1-40 of `a-z 0-9 -`.
    pub workspace_name: String,
    /// `owner/name` (resolved against the server's git base URL) or a full git URL.
    pub repo: String,
    /// Branch to check out; the repo's default branch when left out.
    #[serde(default)]
    pub branch: Option<String>,
    /// Only `lxc` today.
    #[serde(default)]
    pub provider: Option<String>,
    /// LXD image alias; the node's base image when left out.
    #[serde(default)]
    pub image: Option<String>,
    /// Service definitions (reserved; the services feature reads them from the repo's config).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub services: Option<serde_json::Value>,
    /// CPU and memory limits (the spec's `providers.lxc`).
    #[serde(default)]
    pub resources: Option<Resources>,
    /// The caller's GitHub token, used to clone a private repository and, inside the workspace, to push
    /// and open pull requests as the caller. Kept by the server until the workspace is deleted; never
    /// returned by the API.
    #[serde(default)]
    pub git_token: Option<String>,
    /// The repository `repo` was forked from (`owner/name` or a git URL); the workspace's clone gets it
    /// as its `upstream` remote.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Don't start from a prebuilt workspace of the repository: clone and run setup afresh
    /// (`nexus workspace create --no-prebuild`).
    #[serde(default)]
    pub no_prebuild: bool,
}

/// Answer to a create.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateWorkspaceResponse {
    /// `ws-...`.
    pub workspace_id: String,
    /// Status right after the call (usually `creating`).
    pub status: WorkspaceStatus,
    /// Port on the server that forwards to the workspace's sshd.
    pub ssh_port: u16,
    /// Where to poll for progress.
    pub polling_url: String,
    /// False when a workspace of that name already existed and was returned as is.
    pub created: bool,
}

/// How to reach a workspace over SSH.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SshInfo {
    /// Host name or address of the server.
    pub host: String,
    /// Forwarded port.
    pub port: u16,
    /// Login user inside the workspace.
    pub user: String,
    /// The workspace's sshd host key (`ssh-ed25519 AAAA...`), for pinning; known once running.
    pub host_key: Option<String>,
    /// Ready-to-paste command.
    pub command: String,
}

/// A service running in the workspace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Service name from the config (or `port-<n>` for a discovered port).
    pub name: String,
    /// Port inside the workspace.
    pub port: Option<u16>,
    /// Port on the user's machine the CLI forwards to it (unique among the user's workspaces).
    pub mapped_port: Option<u16>,
    /// `starting`, `running`, `unhealthy`, `failed`, or `stopped` while the workspace is not running.
    pub status: ServiceStatus,
    /// Where the user opens it once `nexus workspace connect` forwards the port.
    pub url: Option<String>,
    /// True when found listening in the workspace without being configured.
    pub discovered: bool,
    /// For `failed`/`unhealthy`: what happened.
    pub message: Option<String>,
    /// For `failed`/`unhealthy`: what to do next.
    pub hint: Option<String>,
    /// For failures: the service's last log lines.
    pub last_logs: Option<String>,
}

/// Where a workspace's setup is: the install steps that run before its services start.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SetupView {
    /// `pending`, `running`, `done`, `failed` or `timed_out`.
    pub status: SetupStatus,
    /// The step running, or the one that failed or timed out (`npm ci --no-audit --no-fund`).
    pub step: Option<String>,
    /// 1-based position of `step` among the steps.
    pub step_number: Option<u32>,
    /// How many setup steps there are.
    pub steps: u32,
    /// RFC 3339 time the setup started, as the server saw it; null while pending.
    pub started_at: Option<String>,
    /// Milliseconds since it started (while running: up to now), or how long it took.
    pub elapsed_ms: u64,
    /// The last line the steps printed.
    pub last_line: Option<String>,
    /// For `failed`/`timed_out`: what happened.
    pub message: Option<String>,
    /// For `failed`/`timed_out`: what to do next (by the cause found in the log).
    pub hint: Option<String>,
    /// For `failed`/`timed_out`: the setup log's last lines.
    pub last_logs: Option<String>,
}

/// The repository a workspace holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RepoInfo {
    /// Owner part of `owner/name`.
    pub owner: String,
    /// Repository name; also the directory under `/home/dev`.
    pub name: String,
    /// Clone URL.
    pub url: String,
    /// Checked-out branch.
    pub branch: String,
    /// Checked-out commit, known once cloned.
    pub commit: Option<String>,
    /// Absolute path of the checkout inside the workspace.
    pub path: String,
}

/// The node a workspace lives on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NodeRef {
    /// Node name.
    pub name: String,
    /// `ok`, `connecting` (not reconnected yet since the server started) or `unresponsive`.
    pub status: NodeStatus,
}

/// Liveness of a node.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Connected and heartbeating.
    Ok,
    /// No heartbeat within the timeout, or disconnected.
    Unresponsive,
    /// Not heard from since the server started, which was less than the node timeout ago: after a
    /// server restart every node reconnects within a few seconds, so this is no cause for alarm yet.
    Connecting,
    /// Connected, but its container provider (LXD) does not answer: running workspaces keep
    /// running and their SSH keeps working; nothing can be created, started or stopped there.
    Degraded,
}

/// `GET /api/v1/workspaces/{id}/status` and the items of the list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceView {
    /// `ws-...`.
    pub workspace_id: String,
    /// Name given at create.
    pub name: String,
    /// GitHub login of the owner.
    pub owner: String,
    /// Lifecycle status.
    pub status: WorkspaceStatus,
    /// For `failed` (and an unresponsive node): what happened.
    pub message: Option<String>,
    /// For `failed` (and an unresponsive node): what to do next.
    pub hint: Option<String>,
    /// `lxc`.
    pub provider: String,
    /// Image the container was made from.
    pub image: String,
    /// SSH access.
    pub ssh: SshInfo,
    /// Services and their ports.
    pub services: Vec<ServiceInfo>,
    /// The project's setup steps (installing dependencies): `pending` until the node starts them, then
    /// their progress and outcome; null when the project has no setup steps.
    #[serde(default)]
    pub setup: Option<SetupView>,
    /// Where the service list came from: `.nexus/config.yaml`, `detected: node (npm)`, ...
    pub services_source: String,
    /// The repository.
    pub repo: RepoInfo,
    /// Where it runs.
    pub node: Option<NodeRef>,
    /// CPU and memory limits in force.
    pub resources: Resources,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last status change.
    pub updated_at: String,
}

/// `GET /api/v1/workspaces`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceList {
    /// The caller's workspaces, oldest first.
    pub workspaces: Vec<WorkspaceView>,
}

/// Answer to stop and start.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusChange {
    /// `ws-...`.
    pub workspace_id: String,
    /// Status after the call.
    pub status: WorkspaceStatus,
}

/// Answer to a delete.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// `ws-...`.
    pub workspace_id: String,
    /// Always true.
    pub deleted: bool,
}

/// A driver node, `GET /api/v1/nodes` (operator only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// LXD project the node's workspaces live in.
    pub lxd_project: String,
    /// Liveness.
    pub status: NodeStatus,
    /// Workspaces placed on the node.
    pub workspaces: u32,
    /// RFC 3339 time of the last heartbeat.
    pub last_heartbeat: Option<String>,
    /// RFC 3339 time the node enrolled (got its credential); none for a node from before enrolment.
    #[serde(default)]
    pub enrolled_at: Option<String>,
    /// RFC 3339 time the operator revoked its credential; a revoked node cannot connect.
    #[serde(default)]
    pub revoked_at: Option<String>,
    /// Why the node is `degraded` (what its agent saw of LXD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// `GET /api/v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    /// Every node that ever joined.
    pub nodes: Vec<NodeView>,
}

/// `POST /api/v1/nodes/enrol` (a join token as bearer): a node asks for its own credential.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The name the node will have, unique per server.
    pub node_name: String,
    /// LXD project its workspaces live in.
    pub lxd_project: String,
}

/// Answer to an enrolment; the credential is shown once (the server keeps only its hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrolResponse {
    /// The node's name, now bound to the credential.
    pub node_name: String,
    /// `nxn_` + 64 hex: the node's bearer token for `/api/v1/agent/*`.
    pub credential: String,
}

/// Answer to `POST /api/v1/nodes/{name}/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeRevoked {
    /// The node.
    pub node_name: String,
    /// Whether it was connected (the connection has been closed).
    pub was_connected: bool,
}

/// `POST /api/v1/join-tokens` (operator only).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinTokenRequest {
    /// The token enrols one node only.
    #[serde(default)]
    pub single_use: bool,
}

/// A new join token; shown once (the server keeps only its hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenCreated {
    /// `jt-...`, what `revoke` takes.
    pub id: String,
    /// `nxj_` + 64 hex.
    pub token: String,
    /// Enrols one node only.
    pub single_use: bool,
}

/// A join token, without the token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenView {
    /// `default` (the server's `<data-dir>/join-token`) or `jt-...`.
    pub id: String,
    /// Enrols one node only.
    pub single_use: bool,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// RFC 3339 time of its last use.
    pub used_at: Option<String>,
    /// The node it last enrolled.
    pub used_by: Option<String>,
    /// RFC 3339; a revoked token enrols nothing.
    pub revoked_at: Option<String>,
}

/// `GET /api/v1/join-tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenList {
    /// The default token first, then the operator's, oldest first.
    pub tokens: Vec<JoinTokenView>,
}

/// One audit log entry: who did what to what, when and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Increasing with time.
    pub id: i64,
    /// RFC 3339 UTC.
    pub at: String,
    /// A GitHub login, `operator`, or `node:<name>`.
    pub actor: String,
    /// `user.register`, `user.key_add`, `user.logout`, `workspace.create|start|stop|delete`,
    /// `node.enrol`, `node.revoke`.
    pub action: String,
    /// A login, a workspace id, a node name.
    pub target: String,
    /// The peer address of the request, where there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Anything else the entry keeps (a key fingerprint, a repo URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `GET /api/v1/audit`: the newest entries, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    /// Oldest first.
    pub entries: Vec<AuditEntry>,
}
