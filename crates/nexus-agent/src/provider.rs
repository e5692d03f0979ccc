//! The container operations the agent needs, as a trait: LXD implements it for real
//! ([`crate::lxd::LxdProvider`]), an in-memory fake ([`crate::fake::FakeProvider`]) for tests.
//!
//! Operations are low level and idempotent where that makes retries safe (create, start, stop and
//! delete are no-ops when already done); all are scoped to the provider's LXD project. Decisions
//! about what a workspace needs live in [`crate::provision`], not here.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use crate::AgentError;

/// One instance in the provider's project that belongs to Nexus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Container name, which is the workspace id (`ws-...`).
    pub name: String,
    /// Whether it is running.
    pub running: bool,
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

/// Container operations, all scoped to one LXD project.
///
/// Generic rather than `dyn` (async fns in traits); every future is `Send` so callers can
/// `tokio::spawn` work that uses a provider.
pub trait Provider: Send + Sync + 'static {
    /// Creates the provider's project if it does not exist.
    fn ensure_project(&self) -> impl Future<Output = Result<(), AgentError>> + Send;

    /// Prepares `image` so later [`Provider::create`] calls are fast (LXD: builds a pre-shifted
    /// template container). Optional; the default does nothing.
    fn warm(&self, image: &str) -> impl Future<Output = Result<(), AgentError>> + Send {
        let _ = image;
        async { Ok(()) }
    }

    /// The Nexus workspace instances in the project.
    fn list(&self) -> impl Future<Output = Result<Vec<InstanceInfo>, AgentError>> + Send;

    /// Creates a stopped container from image alias `image` with the given limits; a no-op if an
    /// instance of that name exists. `memory` is LXD syntax (`4GB`, `512MiB`); empty means no limit,
    /// as does `cpu == 0`.
    fn create(
        &self,
        name: &str,
        image: &str,
        cpu: u32,
        memory: &str,
    ) -> impl Future<Output = Result<(), AgentError>> + Send;

    /// Starts the instance; a no-op if it is running.
    fn start(&self, name: &str) -> impl Future<Output = Result<(), AgentError>> + Send;

    /// Stops the instance; a no-op if it is stopped.
    fn stop(&self, name: &str) -> impl Future<Output = Result<(), AgentError>> + Send;

    /// Stops and deletes the instance and its disk; a no-op if it does not exist.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), AgentError>> + Send;

    /// Whether the instance exists and whether it runs (`None`: it does not exist).
    fn state(&self, name: &str) -> impl Future<Output = Result<Option<InstanceInfo>, AgentError>> + Send;

    /// eth0's global IPv4 address, once it has one.
    fn ipv4(&self, name: &str) -> impl Future<Output = Result<Option<Ipv4Addr>, AgentError>> + Send;

    /// Where to open a TCP connection to reach `port` inside the instance (LXD: `ipv4:port`).
    fn endpoint(&self, name: &str, port: u16) -> impl Future<Output = Result<Option<SocketAddr>, AgentError>> + Send;

    /// Runs `argv` in the running instance and waits for it. `user` is `(uid, gid)` (root when
    /// `None`); `env` is added to LXD's default environment.
    fn exec(
        &self,
        name: &str,
        argv: &[String],
        user: Option<(u32, u32)>,
        env: &[(String, String)],
        cwd: Option<&str>,
    ) -> impl Future<Output = Result<ExecOutput, AgentError>> + Send;

    /// Sets instance config `key` (meant for `user.nexus.*` markers).
    fn set_config(&self, name: &str, key: &str, value: &str) -> impl Future<Output = Result<(), AgentError>> + Send;

    /// Reads instance config `key`; `None` when unset.
    fn get_config(&self, name: &str, key: &str) -> impl Future<Output = Result<Option<String>, AgentError>> + Send;
}
