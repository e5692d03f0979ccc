//! Messages between the server and a node agent over the agent's outbound WebSocket.
//!
//! The agent dials the server (so nodes behind NAT work) and keeps one control connection; SSH
//! traffic goes over a separate WebSocket per TCP connection, dialed by the agent on request.

use serde::{Deserialize, Serialize};

/// Path of the control WebSocket.
pub const CONNECT_PATH: &str = "/api/v1/agent/connect";
/// Path prefix of tunnel WebSockets; the tunnel id follows.
pub const TUNNEL_PATH: &str = "/api/v1/agent/tunnel";
/// Where an agent enrols with a join token for its own credential (`POST`, HTTP, not a WebSocket).
pub const ENROL_PATH: &str = "/api/v1/nodes/enrol";

/// Agent → server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// First message after connecting.
    Hello {
        /// Node name, unique per server.
        node_name: String,
        /// LXD project this agent's workspaces live in.
        lxd_project: String,
        /// Agent version.
        version: String,
        /// Workspaces the node has, so the server can reconcile after either side restarts.
        inventory: Vec<InventoryItem>,
        /// Most workspaces the node runs at once (its operator's `--max-workspaces`, else what its
        /// memory holds); the server places no more there. `None`: no bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_workspaces: Option<u32>,
    },
    /// Sent every heartbeat interval.
    Heartbeat,
    /// Progress or outcome of a command.
    Report(Report),
    /// The current state of a workspace's services (sent on every change).
    Services {
        /// `ws-...`.
        workspace_id: String,
        /// Generation of the ensure command that started them.
        generation: i64,
        /// Every service, configured and discovered.
        services: Vec<ServiceState>,
    },
    /// Progress of a workspace's setup steps: sent when it starts, when its step, state or last output
    /// line changes (at most about once a second while output flows), and when it ends. Not sent when
    /// the setup already ran (the last report stands) or the plan has no setup steps.
    Setup {
        /// `ws-...`.
        workspace_id: String,
        /// Generation of the ensure command that started it.
        generation: i64,
        /// Where the setup is.
        setup: SetupState,
    },
    /// The node's container provider stopped answering (`degraded` says why) or answers again
    /// (`None`); sent on each change. Meanwhile the server places nothing there.
    Health {
        /// Why the node cannot run workspace operations now; `None`: it can.
        degraded: Option<String>,
    },
}

/// A workspace container found on the node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InventoryItem {
    /// `ws-...`.
    pub workspace_id: String,
    /// Whether the container is running.
    pub running: bool,
}

/// What happened to a workspace, tagged with the generation of the command it answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// `ws-...`.
    pub workspace_id: String,
    /// Generation of the command this answers; the server drops reports older than its current one.
    pub generation: i64,
    /// The outcome.
    pub outcome: Outcome,
}

/// Outcome of a command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Container up, sshd answering, repo checked out.
    Ready {
        /// Commit checked out.
        commit: Option<String>,
        /// sshd's public host key line.
        host_key: Option<String>,
    },
    /// Container stopped.
    Stopped,
    /// Container and its disk are gone.
    Deleted,
    /// The command failed.
    Failed {
        /// What happened.
        message: String,
        /// What to do next.
        hint: String,
    },
}

/// Server → agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to `Hello`.
    Welcome {
        /// Seconds between heartbeats.
        heartbeat_secs: u64,
    },
    /// Do something to a workspace.
    Command(Command),
    /// Connect to a workspace port and dial `TUNNEL_PATH/<tunnel_id>` to carry the bytes.
    OpenTunnel {
        /// Id to dial back with.
        tunnel_id: String,
        /// `ws-...`.
        workspace_id: String,
        /// Port inside the workspace (22 for sshd).
        port: u16,
    },
}

/// A command for one workspace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Command {
    /// `ws-...`; also the container name.
    pub workspace_id: String,
    /// Increases with every command the server issues for this workspace.
    pub generation: i64,
    /// What to do.
    pub op: Op,
}

/// The operations a node performs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Make the workspace exist and run (idempotent: picks up where an earlier attempt stopped).
    Ensure(Box<WorkspaceSpec>),
    /// Stop the container.
    Stop,
    /// Remove the container and its disk.
    Delete,
}

/// Everything a node needs to build a workspace. Its `Debug` leaves the git token out.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkspaceSpec {
    /// LXD image alias; empty means the node's base image.
    pub image: String,
    /// CPU limit.
    pub cpu: u32,
    /// Memory limit in LXD syntax (`4GB`).
    pub memory: String,
    /// Root disk size (`20GB`), the server's `--max-disk`; empty: the node's own `--workspace-disk`.
    /// The node applies the smaller of the two.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub disk: String,
    /// The owner's `authorized_keys` lines, one per registered key (`\n`-separated); the only keys
    /// allowed in.
    pub authorized_key: String,
    /// Clone URL.
    pub repo_url: String,
    /// Directory name under `/home/dev`.
    pub repo_dir: String,
    /// Branch to check out.
    pub branch: String,
    /// What to run after the clone: setup steps and services (from `.nexus/config.yaml` or detected).
    #[serde(default)]
    pub plan: ProjectPlan,
    /// Git credentials for `repo_url`'s host (the owner's GitHub token), so private repos clone and
    /// `git push` / `gh` work as the owner inside the workspace. See docs/architecture.md for the risk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_token: Option<String>,
    /// The repository `repo_url` was forked from, added as the `upstream` remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<String>,
    /// `user.name` / `user.email` for commits made in the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_author: Option<GitAuthor>,
    /// A stable id of the workspace's owner (the GitHub user id), which the node keys the owner's
    /// dependency caches by (`[A-Za-z0-9_-]`, at most 64 characters); `None`: the workspace gets no
    /// cache from the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The owner asked not to start from a prebuilt workspace (`--no-prebuild`): the node clones
    /// and runs setup afresh, and keeps no prebuild of this workspace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_prebuild: bool,
    /// The server checked, at this create, that the owner can read `repo_url` (its probe succeeded
    /// with the owner's token, or without one for a public repository). The node starts a new
    /// workspace from a prebuild of the repository only when this is set; `false` (an older server,
    /// a command re-sent later) means no prebuild.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repo_access_verified: bool,
}

impl std::fmt::Debug for WorkspaceSpec {
    /// Every field but the token's value: a spec in a log line or a panic message must not carry
    /// the owner's GitHub token. The destructuring is exhaustive, so a new field must be added here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let WorkspaceSpec {
            image,
            cpu,
            memory,
            disk,
            authorized_key,
            repo_url,
            repo_dir,
            branch,
            plan,
            git_token,
            upstream_url,
            git_author,
            owner_id,
            no_prebuild,
            repo_access_verified,
        } = self;
        f.debug_struct("WorkspaceSpec")
            .field("image", image)
            .field("cpu", cpu)
            .field("memory", memory)
            .field("disk", disk)
            .field("authorized_key", authorized_key)
            .field("repo_url", repo_url)
            .field("repo_dir", repo_dir)
            .field("branch", branch)
            .field("plan", plan)
            .field("git_token", &git_token.as_ref().map(|_| "<redacted>"))
            .field("upstream_url", upstream_url)
            .field("git_author", git_author)
            .field("owner_id", owner_id)
            .field("no_prebuild", no_prebuild)
            .field("repo_access_verified", repo_access_verified)
            .finish()
    }
}

/// Who commits in a workspace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitAuthor {
    /// `user.name`.
    pub name: String,
    /// `user.email` (GitHub's noreply address by default).
    pub email: String,
}

/// The resolved services of a project: what the node runs, in what order, and how it checks them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProjectPlan {
    /// Where the plan came from, for people: `.nexus/config.yaml`, `detected: node (npm)`, ...
    pub source: String,
    /// Shell commands run once, in order, as `dev` in the repo after the first clone.
    pub setup: Vec<String>,
    /// Services, in the order they were declared.
    pub services: Vec<ServicePlan>,
    /// The Node, package manager and Python the repo asks for; the node provisions them before setup.
    #[serde(default)]
    pub runtime: RuntimePlan,
    /// Milliseconds all setup steps together may take before the running one is killed and the setup
    /// is `timed_out` (`setup_timeout` in `.nexus/config.yaml`); `None`: [`DEFAULT_SETUP_TIMEOUT_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_timeout_ms: Option<u64>,
}

/// How long setup may take when the project does not say: long enough for a cold install of a large
/// project on a slow network, short enough that a hung install is reported the same day.
pub const DEFAULT_SETUP_TIMEOUT_MS: u64 = 15 * 60 * 1000;

impl ProjectPlan {
    /// The setup timeout in force: the project's, or [`DEFAULT_SETUP_TIMEOUT_MS`].
    pub fn setup_timeout_ms(&self) -> u64 {
        self.setup_timeout_ms.unwrap_or(DEFAULT_SETUP_TIMEOUT_MS)
    }
}

/// One long-running service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServicePlan {
    /// Name, unique in the project: `[a-z0-9-]`, used in unit names.
    pub name: String,
    /// Shell command (run with `bash -lc` as `dev`).
    pub command: String,
    /// Port it listens on inside the workspace; exported to it as `PORT`.
    pub port: Option<u16>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Directory relative to the repo root ("" = the root).
    pub working_dir: String,
    /// Services that must be healthy before this one starts.
    pub depends_on: Vec<String>,
    /// How to tell it is healthy.
    pub health: HealthCheck,
}

/// A health check with its timing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthCheck {
    /// What to check.
    pub kind: HealthKind,
    /// Milliseconds between checks.
    pub interval_ms: u64,
    /// Milliseconds one check may take.
    pub timeout_ms: u64,
    /// Consecutive failures (after the service first came up) before it is `unhealthy`.
    pub retries: u32,
    /// Milliseconds a starting service has to become healthy before it is `failed`.
    pub start_timeout_ms: u64,
}

/// The kinds of health check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HealthKind {
    /// `GET http://<workspace>:<port><path>` answers with a status below 500.
    Http {
        /// Port to ask (the service's port by default).
        port: u16,
        /// Path, starting with `/`.
        path: String,
    },
    /// A TCP connect to the port succeeds.
    Tcp {
        /// Port to connect to.
        port: u16,
    },
    /// A shell command in the workspace exits 0.
    Command {
        /// The command (run with `bash -lc` as `dev` in the repo).
        command: String,
    },
    /// No check: running means healthy.
    None,
}

impl HealthCheck {
    /// The defaults: every 1 s, 2 s timeout, 3 retries, 60 s to come up.
    pub fn new(kind: HealthKind) -> Self {
        HealthCheck { kind, interval_ms: 1000, timeout_ms: 2000, retries: 3, start_timeout_ms: 60_000 }
    }
}

/// Per-service status the node reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceState {
    /// Service name (for discovered ports: `port-<n>`).
    pub name: String,
    /// Port inside the workspace.
    pub port: Option<u16>,
    /// `starting`, `running`, `unhealthy` or `failed`.
    pub status: crate::ServiceStatus,
    /// True for ports found listening that no config announced.
    pub discovered: bool,
    /// For `failed`/`unhealthy`: what happened.
    pub message: Option<String>,
    /// For `failed`/`unhealthy`: what to do.
    pub hint: Option<String>,
    /// The last log lines, for failures.
    pub last_logs: Option<String>,
}

/// Where a workspace's setup steps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetupStatus {
    /// Not started yet: the workspace is still being created or provisioned.
    Pending,
    /// A step runs.
    Running,
    /// Every step exited 0.
    Done,
    /// A step exited with an error (or could not be started).
    Failed,
    /// The steps took longer than the setup timeout; the running one was killed.
    TimedOut,
}

impl SetupStatus {
    /// Every status, for exhaustive tests and docs.
    pub const ALL: [SetupStatus; 5] =
        [SetupStatus::Pending, SetupStatus::Running, SetupStatus::Done, SetupStatus::Failed, SetupStatus::TimedOut];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SetupStatus::Pending => "pending",
            SetupStatus::Running => "running",
            SetupStatus::Done => "done",
            SetupStatus::Failed => "failed",
            SetupStatus::TimedOut => "timed_out",
        }
    }

    /// Parses the name stored in the database.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Over: waiting longer changes nothing by itself.
    pub fn is_settled(self) -> bool {
        matches!(self, SetupStatus::Done | SetupStatus::Failed | SetupStatus::TimedOut)
    }
}

impl std::fmt::Display for SetupStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workspace's setup as its node reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SetupState {
    /// Where it is.
    pub status: SetupStatus,
    /// The step running, or the one that failed or timed out; `None` before the first and once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// 1-based position of `step` among the setup steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_number: Option<u32>,
    /// How many setup steps there are.
    pub steps: u32,
    /// Milliseconds since the setup started, when this was sent (the whole time once it is over).
    pub elapsed_ms: u64,
    /// The last line the steps printed (ANSI colours and progress redraws removed, shortened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_line: Option<String>,
    /// For `failed`/`timed_out`: what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `failed`/`timed_out`: what to do, by the cause read from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// For `failed`/`timed_out`: the setup log's last lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_logs: Option<String>,
}

/// The language runtimes and package managers a project asks for, read from its files by nexus-project
/// (`.nvmrc`, `engines.node`, `packageManager`, lock files, `.python-version`, `requires-python`). The
/// node provisions them before the setup steps run; it picks concrete versions, because only it knows
/// which versions its source has.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimePlan {
    /// Node and its package manager, for a project with a `package.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeRuntime>,
    /// Python and its installer, for a project with Python dependency files or `manage.py`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonRuntime>,
}

/// Node for a project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRuntime {
    /// What the project asks for; `None`: the newest LTS the node's source has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionRequest>,
    /// How dependencies are installed.
    pub package_manager: PackageManager,
}

/// A version requirement as the project wrote it, and where, so that a version the node cannot
/// provide is reported at the line that asked for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionRequest {
    /// As written: `20`, `lts/iron`, `^20.19 || >=22.12` (Node); `3.12`, `>=3.10` (Python).
    pub spec: String,
    /// The file it is in: `.nvmrc`, `package.json`, `pyproject.toml`, ...
    pub file: String,
    /// The key inside that file (`engines.node`, `requires-python`, `nodejs`); `None` for files that
    /// hold only a version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// 1-based line of the value.
    pub line: usize,
    /// 1-based column of the value.
    pub column: usize,
}

/// A Node package manager and how it installs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackageManager {
    /// Which one.
    pub kind: PackageManagerKind,
    /// The exact version `packageManager` names (`9.15.0`); `None`: whichever the node provides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Corepack's hash of that version (`sha512.<hex>`), to check the download against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Why this one: `package.json packageManager`, a lock file's name, or `default`.
    pub source: String,
    /// The lock file the install keeps to; `None` when there is none (or it is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_file: Option<String>,
    /// The install command, run in the repo: `npm ci --no-audit --no-fund`, `pnpm install
    /// --frozen-lockfile`, ...
    pub install: String,
}

/// The Node package managers a project can name.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PackageManagerKind {
    /// npm, which ships with Node.
    Npm,
    /// pnpm.
    Pnpm,
    /// Yarn 1 (`yarn.lock` starting `# yarn lockfile v1`).
    YarnClassic,
    /// Yarn 2 and later ("berry").
    YarnBerry,
    /// Bun: recognised so it can be refused clearly; Nexus does not provision it.
    Bun,
}

/// Python for a project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PythonRuntime {
    /// What the project asks for; `None`: the node's newest interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionRequest>,
    /// What installs the dependencies.
    pub installer: PythonInstaller,
    /// The install command, run in the repo, which leaves a virtualenv in `.venv`; `None` when there is
    /// nothing to install. It runs `uv`, and uses the interpreter `UV_PYTHON` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<String>,
}

/// How a Python project's dependencies get installed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PythonInstaller {
    /// `uv.lock`: `uv sync`.
    UvSync,
    /// `poetry.lock` or `[tool.poetry]`: Poetry, run through uv.
    Poetry,
    /// `requirements.txt`: `uv pip install -r` into a fresh virtualenv.
    Requirements,
    /// A `pyproject.toml` with a `[project]` table: `uv pip install -e .` into a fresh virtualenv.
    Pyproject,
    /// No dependency file.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_tagged() {
        let m = ServerMessage::Command(Command { workspace_id: "ws-1".into(), generation: 3, op: Op::Stop });
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["type"], "command");
        assert_eq!(json["op"]["op"], "stop");
        let back: ServerMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        let r = AgentMessage::Report(Report {
            workspace_id: "ws-1".into(),
            generation: 2,
            outcome: Outcome::Failed { message: "m".into(), hint: "h".into() },
        });
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<AgentMessage>(&json).unwrap(), r);
    }

    #[test]
    fn a_specs_debug_output_leaves_the_git_token_out() {
        let spec = WorkspaceSpec {
            image: String::new(),
            cpu: 2,
            memory: "4GB".into(),
            disk: String::new(),
            authorized_key: "ssh-ed25519 AAAA k".into(),
            repo_url: "https://github.com/acme/site.git".into(),
            repo_dir: "site".into(),
            branch: "main".into(),
            plan: ProjectPlan::default(),
            git_token: Some("gho_SECRET_value".into()),
            upstream_url: None,
            git_author: None,
            owner_id: None,
            no_prebuild: false,
            repo_access_verified: true,
        };
        let shown = format!("{:?}", Op::Ensure(Box::new(spec)));
        assert!(!shown.contains("gho_SECRET_value") && shown.contains("<redacted>"), "{shown}");
    }
}
