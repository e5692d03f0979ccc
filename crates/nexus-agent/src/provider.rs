//! The container operations the agent needs, as a trait: LXD implements it for real
//! ([`crate::lxd::LxdProvider`]), an in-memory fake (`FakeProvider`, feature `testing`) for tests.
//!
//! Operations are low level and idempotent where that makes retries safe (create, start, stop and
//! delete are no-ops when already done). Decisions about what a workspace needs live in
//! [`crate::provision`], not here. Everything backend-specific stays behind the trait: its
//! syntax for limits, its errors and the commands a person on the node would use (hints).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use nexus_types::diagnostics::Hint;

use crate::lxd::LxdError;

/// Why a provider operation failed.
///
/// The agent decides on the backend-neutral variants; a backend's own failures travel in its
/// variant and carry their own hint.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The named instance does not exist.
    #[error("instance `{0}` does not exist")]
    NoSuchInstance(String),
    /// The instance exists but is stopped, and the operation needs it running.
    #[error("instance `{0}` is not running")]
    NotRunning(String),
    /// A value from a workspace spec that this backend cannot use.
    #[error("invalid {field}: {message}")]
    InvalidSpec {
        /// The spec field (`memory`, ...).
        field: &'static str,
        /// What is wrong with the value.
        message: String,
        /// A value that would work.
        hint: String,
    },
    /// LXD failed.
    #[error(transparent)]
    Lxd(#[from] LxdError),
}

impl Hint for ProviderError {
    fn hint(&self) -> Option<String> {
        match self {
            ProviderError::NoSuchInstance(_) => Some("delete the workspace and create it again".into()),
            ProviderError::NotRunning(_) => Some("start the workspace again".into()),
            ProviderError::InvalidSpec { hint, .. } => Some(hint.clone()),
            ProviderError::Lxd(e) => e.hint(),
        }
    }
}

/// One workspace instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Container name, which is the workspace id (`ws-...`).
    pub name: String,
    /// Whether it is running.
    pub running: bool,
}

/// A directory of the node made visible inside an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Name of the mount on the instance (LXD: the disk device's name), so it can be updated.
    pub device: String,
    /// The directory on the node.
    pub source: PathBuf,
    /// Where it appears inside the instance.
    pub path: String,
    /// Whether the instance may only read it.
    pub readonly: bool,
}

/// How [`Provider::copy`] makes an instance from another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopySpec {
    /// Whether the copy is a workspace ([`Provider::list`] reports it) or a stopped keeper (a
    /// prebuild) that only the agent's prebuild code looks at.
    pub workspace: bool,
    /// CPU limit of the copy (0: none).
    pub cpu: u32,
    /// Memory limit of the copy (empty: none).
    pub memory: String,
    /// Root disk size of a workspace copy (empty: the provider's own default); see [`Provider::create`].
    pub disk: String,
    /// Instance config set on the copy; an empty value removes the key the source had.
    pub config: Vec<(String, String)>,
    /// Mounts ([`Mount::device`]) of the source the copy does not keep.
    pub drop_mounts: Vec<String>,
    /// Files (absolute paths inside) removed from the copy before anything starts it; missing
    /// ones are fine.
    pub remove_files: Vec<String>,
}

/// What a command run inside an instance produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status (LXD reports signals as 128 + signal number).
    pub code: i32,
    /// Standard output, lossily decoded as UTF-8.
    pub stdout: String,
    /// Standard error, lossily decoded as UTF-8.
    pub stderr: String,
}

impl ExecOutput {
    /// A successful run printing `stdout`.
    pub fn ok(stdout: impl Into<String>) -> Self {
        ExecOutput { code: 0, stdout: stdout.into(), stderr: String::new() }
    }

    /// A failed run with exit status `code` printing `stderr`.
    pub fn failed(code: i32, stderr: impl Into<String>) -> Self {
        ExecOutput { code, stdout: String::new(), stderr: stderr.into() }
    }

    /// The last non-empty line of stderr (where tools like git put the reason), or `""`.
    pub fn last_stderr_line(&self) -> &str {
        self.stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
    }
}

/// Container operations, all scoped to the provider's own namespace (LXD: one project).
///
/// Generic rather than `dyn` (async fns in traits); every future is `Send` so callers can
/// `tokio::spawn` work that uses a provider.
pub trait Provider: Send + Sync + 'static {
    /// Creates the provider's namespace (LXD: project) if it does not exist.
    fn ensure_project(&self) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Prepares `image` so later [`Provider::create`] calls are fast (LXD: builds a pre-shifted
    /// template container). Optional; the default does nothing.
    fn warm(&self, image: &str) -> impl Future<Output = Result<(), ProviderError>> + Send {
        let _ = image;
        async { Ok(()) }
    }

    /// The Nexus workspace instances.
    fn list(&self) -> impl Future<Output = Result<Vec<InstanceInfo>, ProviderError>> + Send;

    /// Refuses limits [`Provider::create`] could not apply, before anything is created. `memory`
    /// is a size such as `4GB`, `512MiB` or `50%` (empty: no limit); `cpu == 0` means no limit.
    fn check_limits(&self, cpu: u32, memory: &str) -> Result<(), ProviderError>;

    /// Creates a stopped container from image `image` with the limits [`Provider::check_limits`]
    /// accepts; a no-op if an instance of that name exists. `disk` is the root disk size asked for
    /// (`20GB`; empty: the provider's default); the provider applies at most its own maximum, and
    /// its per-workspace hardening (process limit, network limits and filtering) always.
    fn create(
        &self,
        name: &str,
        image: &str,
        cpu: u32,
        memory: &str,
        disk: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Makes `name` a stopped copy of instance `source` (running or not) as `spec` says; on a
    /// copy-on-write pool this costs next to nothing. Fails if `name` exists.
    fn copy(&self, source: &str, name: &str, spec: &CopySpec)
        -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// What identifies the image `image` names now (LXD: the alias's fingerprint), so state made
    /// from one image is not reused with the next; by default the name itself.
    fn image_id(&self, image: &str) -> impl Future<Output = Result<String, ProviderError>> + Send {
        let id = image.to_string();
        async { Ok(id) }
    }

    /// Every instance (workspace or not) whose config `key` is set, with its value.
    fn list_with(&self, key: &str) -> impl Future<Output = Result<Vec<(String, String)>, ProviderError>> + Send;

    /// Bytes the instance's root disk uses on the node, when the provider can tell.
    fn disk_usage(&self, name: &str) -> impl Future<Output = Result<Option<u64>, ProviderError>> + Send {
        let _ = name;
        async { Ok(None) }
    }

    /// Starts the instance; a no-op if it is running.
    fn start(&self, name: &str) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Stops the instance; a no-op if it is stopped.
    fn stop(&self, name: &str) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Stops and deletes the instance and its disk; a no-op if it does not exist.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Whether the instance exists and whether it runs (`None`: it does not exist).
    fn state(&self, name: &str) -> impl Future<Output = Result<Option<InstanceInfo>, ProviderError>> + Send;

    /// What the instance's console printed during its last or current boot (init's messages),
    /// empty when there is nothing; for saying why an instance stopped or never came up.
    fn console_log(&self, name: &str) -> impl Future<Output = Result<String, ProviderError>> + Send;

    /// eth0's global IPv4 address, once it has one.
    fn ipv4(&self, name: &str) -> impl Future<Output = Result<Option<Ipv4Addr>, ProviderError>> + Send;

    /// Where to open a TCP connection to reach `port` inside the instance (LXD: `ipv4:port`).
    fn endpoint(&self, name: &str, port: u16)
        -> impl Future<Output = Result<Option<SocketAddr>, ProviderError>> + Send;

    /// Runs `argv` in the running instance and waits for it. `user` is `(uid, gid)` (root when
    /// `None`); `env` is added to the provider's default environment.
    fn exec(
        &self,
        name: &str,
        argv: &[String],
        user: Option<(u32, u32)>,
        env: &[(String, String)],
        cwd: Option<&str>,
    ) -> impl Future<Output = Result<ExecOutput, ProviderError>> + Send;

    /// Makes each of `mounts` visible in the instance, adding or updating it by its device name;
    /// a no-op for mounts already as asked. Works on stopped instances (applied at the next start)
    /// and running ones (at once).
    fn mount(&self, name: &str, mounts: &[Mount]) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// The node's `(uid, gid)` that `(uid, gid)` inside the instance are (an unprivileged container
    /// maps its ids to a range on the node), so files the node prepares for a mount can belong to a
    /// user inside. `None` when the provider cannot say; then ownership is left alone.
    fn host_ids(
        &self,
        name: &str,
        uid: u32,
        gid: u32,
    ) -> impl Future<Output = Result<Option<(u32, u32)>, ProviderError>> + Send {
        let _ = (name, uid, gid);
        async { Ok(None) }
    }

    /// Sets instance config `key` (meant for `user.nexus.*` markers).
    fn set_config(&self, name: &str, key: &str, value: &str) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Reads instance config `key`; `None` when unset.
    fn get_config(&self, name: &str, key: &str) -> impl Future<Output = Result<Option<String>, ProviderError>> + Send;

    /// For hints: how a person on the node runs `command` inside instance `name`.
    fn exec_hint(&self, name: &str, command: &str) -> String {
        let _ = name;
        format!("`{command}` inside the workspace")
    }

    /// For hints: where a person on the node reads why instance `name` did not start or stopped.
    fn log_hint(&self, name: &str) -> String {
        let _ = name;
        "the container's console log on the node".into()
    }

    /// For hints: how a person on the node checks the network the instances get addresses from.
    fn network_hint(&self) -> String {
        "check the node's container network and its DHCP".into()
    }
}
