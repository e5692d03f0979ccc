//! [`FakeProvider`]: an in-memory [`Provider`] for tests here and in other crates (the simulated
//! node in server tests), so nothing but the e2e suite needs LXD. Compiled only for this crate's
//! tests and with the `testing` feature, so it never ships in the binary.
//!
//! It keeps a map of instances, records every call, and answers the provisioning steps of
//! [`crate::provision`] the way a healthy base image would (by the step name that is `$0` of their
//! `sh -c` scripts): the clone marks the instance as cloned, `HEAD` is a fixed commit, the host key
//! is made up. Tests can script other exec results, inject errors, make boots fail with a console
//! log, add latency, and point [`Provider::endpoint`] at a local TCP server. Without such a target
//! every endpoint is a shared in-process "sshd" on `127.0.0.1` that sends an `SSH-2.0` banner and
//! then echoes what it gets.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexus_types::diagnostics::lock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::lxd::LxdError;
use crate::provider::{CopySpec, ExecOutput, InstanceInfo, Mount, Provider, ProviderError};
use crate::provision;

/// `$0` of the setup scripts tests answer: the poll of a running step (print `running` or
/// `exit <code>`, then the log's end) and the log's last lines (after a failure).
pub use crate::services::{STEP_SETUP_LOG, STEP_SETUP_POLL};

/// The commit every fake clone checks out.
pub const FAKE_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// The banner of the built-in fake sshd.
pub const FAKE_SSH_BANNER: &str = "SSH-2.0-NexusFake\r\n";

/// One recorded provider call: each variant is named after the [`Provider`] method and holds
/// its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // the arguments are documented on the trait
pub enum Call {
    EnsureProject,
    Warm(String),
    List,
    Create { name: String, image: String, cpu: u32, memory: String, disk: String },
    Start(String),
    Stop(String),
    Delete(String),
    State(String),
    ConsoleLog(String),
    Ipv4(String),
    Endpoint(String, u16),
    Exec { name: String, argv: Vec<String>, user: Option<(u32, u32)>, env: Vec<(String, String)>, cwd: Option<String> },
    SetConfig(String, String, String),
    GetConfig(String, String),
    Mount { name: String, mounts: Vec<Mount> },
    HostIds(String),
    Copy { source: String, name: String, spec: CopySpec },
    ListWith(String),
    DiskUsage(String),
}

impl Call {
    /// The instance the call is about, if any.
    pub fn instance(&self) -> Option<&str> {
        match self {
            Call::EnsureProject | Call::Warm(_) | Call::List | Call::ListWith(_) => None,
            Call::Copy { name, .. } | Call::DiskUsage(name) => Some(name),
            Call::Create { name, .. } | Call::Exec { name, .. } => Some(name),
            Call::Start(n) | Call::Stop(n) | Call::Delete(n) | Call::State(n) | Call::ConsoleLog(n) => Some(n),
            Call::Ipv4(n) => Some(n),
            Call::Endpoint(n, _) | Call::SetConfig(n, _, _) | Call::GetConfig(n, _) => Some(n),
            Call::Mount { name, .. } | Call::HostIds(name) => Some(name),
        }
    }

    /// For exec calls of a provisioning script, its step name (`$0`, e.g. [`provision::STEP_CLONE`]).
    pub fn step(&self) -> Option<&str> {
        match self {
            Call::Exec { argv, .. } => exec_step(argv),
            _ => None,
        }
    }

    /// A short label: the method name, or the step name for provisioning execs.
    pub fn label(&self) -> String {
        match self {
            Call::EnsureProject => "ensure_project".into(),
            Call::Warm(_) => "warm".into(),
            Call::List => "list".into(),
            Call::Create { .. } => "create".into(),
            Call::Start(_) => "start".into(),
            Call::Stop(_) => "stop".into(),
            Call::Delete(_) => "delete".into(),
            Call::State(_) => "state".into(),
            Call::ConsoleLog(_) => "console_log".into(),
            Call::Ipv4(_) => "ipv4".into(),
            Call::Endpoint(..) => "endpoint".into(),
            Call::Exec { argv, .. } => exec_step(argv).map(str::to_string).unwrap_or_else(|| "exec".into()),
            Call::SetConfig(..) => "set_config".into(),
            Call::GetConfig(..) => "get_config".into(),
            Call::Mount { .. } => "mount".into(),
            Call::HostIds(_) => "host_ids".into(),
            Call::Copy { .. } => "copy".into(),
            Call::ListWith(_) => "list_with".into(),
            Call::DiskUsage(_) => "disk_usage".into(),
        }
    }
}

/// `$0` of an `sh -c SCRIPT NAME args...` command line.
fn exec_step(argv: &[String]) -> Option<&str> {
    match argv {
        [sh, c, _script, name, ..] if (sh == "sh" || sh == "/bin/sh") && c == "-c" => Some(name),
        _ => None,
    }
}

/// A scripted exec answer: gets the instance name and argv, returns `Some` to answer.
type ExecHandler = Arc<dyn Fn(&str, &[String]) -> Option<ExecOutput> + Send + Sync>;

#[derive(Debug, Clone)]
struct Instance {
    image: String,
    running: bool,
    config: BTreeMap<String, String>,
    ip: Ipv4Addr,
    cloned: bool,
    authorized_keys: Option<String>,
    console: String,
    mounts: BTreeMap<String, Mount>,
    /// Not a workspace (a prebuild): `list` leaves it out.
    keeper: bool,
    /// What `disk_usage` answers.
    disk: Option<u64>,
}

impl Default for Instance {
    fn default() -> Self {
        Instance {
            image: String::new(),
            running: false,
            config: BTreeMap::new(),
            ip: Ipv4Addr::UNSPECIFIED,
            cloned: false,
            authorized_keys: None,
            console: String::new(),
            mounts: BTreeMap::new(),
            keeper: false,
            disk: None,
        }
    }
}

#[derive(Default)]
struct State {
    instances: BTreeMap<String, Instance>,
    calls: Vec<Call>,
    handlers: Vec<ExecHandler>,
    /// Method label → error message, for every call with that label.
    failures: HashMap<String, String>,
    endpoints: HashMap<(String, u16), SocketAddr>,
    /// How many `ipv4` polls return `None` after a start.
    ipv4_delay_polls: u32,
    pending_ipv4_polls: HashMap<String, u32>,
    next_ip: u8,
    latency: Duration,
    fake_sshd: Option<SocketAddr>,
    /// Console log of a boot that fails: every start then leaves the instance stopped.
    failing_boot: Option<String>,
    /// What `host_ids` answers for every instance: an offset added to the ids inside.
    id_offset: Option<u32>,
}

/// An in-memory provider; cheap to clone (clones share state).
#[derive(Clone, Default)]
pub struct FakeProvider {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("FakeProvider").field("instances", &s.instances.keys().collect::<Vec<_>>()).finish()
    }
}

impl FakeProvider {
    /// An empty provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }

    /// The labels ([`Call::label`]) of the calls about `name`, in order.
    pub fn labels_for(&self, name: &str) -> Vec<String> {
        self.calls().iter().filter(|c| c.instance() == Some(name)).map(Call::label).collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        lock(&self.state).calls.clear();
    }

    /// Names of existing workspace instances (not prebuilds) with their running state.
    pub fn instances(&self) -> Vec<InstanceInfo> {
        let s = lock(&self.state);
        s.instances
            .iter()
            .filter(|(_, i)| !i.keeper)
            .map(|(n, i)| InstanceInfo { name: n.clone(), running: i.running })
            .collect()
    }

    /// Whether `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        lock(&self.state).instances.contains_key(name)
    }

    /// Whether `name` has been cloned into (by a successful clone step).
    pub fn is_cloned(&self, name: &str) -> bool {
        lock(&self.state).instances.get(name).is_some_and(|i| i.cloned)
    }

    /// The `authorized_keys` content the key step wrote into `name`.
    pub fn authorized_keys(&self, name: &str) -> Option<String> {
        lock(&self.state).instances.get(name).and_then(|i| i.authorized_keys.clone())
    }

    /// The mounts `name` has, by device name.
    pub fn mounts(&self, name: &str) -> Vec<Mount> {
        lock(&self.state).instances.get(name).map(|i| i.mounts.values().cloned().collect()).unwrap_or_default()
    }

    /// Makes `host_ids` map ids inside every instance to the node's by adding `offset` (as an
    /// unprivileged container's id map does); `None` (the default): the fake cannot say.
    pub fn set_id_offset(&self, offset: Option<u32>) {
        lock(&self.state).id_offset = offset;
    }

    /// Makes `disk_usage` of `name` answer `bytes`.
    pub fn set_disk_usage(&self, name: &str, bytes: Option<u64>) {
        if let Some(i) = lock(&self.state).instances.get_mut(name) {
            i.disk = bytes;
        }
    }

    /// Names of every instance, workspaces and prebuilds.
    pub fn all_instances(&self) -> Vec<String> {
        lock(&self.state).instances.keys().cloned().collect()
    }

    /// `name`'s config.
    pub fn config(&self, name: &str) -> BTreeMap<String, String> {
        lock(&self.state).instances.get(name).map(|i| i.config.clone()).unwrap_or_default()
    }

    /// The image `name` was created from.
    pub fn image_of(&self, name: &str) -> Option<String> {
        lock(&self.state).instances.get(name).map(|i| i.image.clone())
    }

    /// Adds an instance directly, as if it existed before the agent started.
    pub fn insert_instance(&self, name: &str, running: bool) {
        let mut s = lock(&self.state);
        let ip = next_ip(&mut s);
        s.instances.insert(name.to_string(), Instance { running, ip, ..Default::default() });
    }

    /// Consults `handler` first for every exec (latest registered first); `None` falls through
    /// to earlier handlers and finally to the built-in behaviour.
    pub fn on_exec(&self, handler: impl Fn(&str, &[String]) -> Option<ExecOutput> + Send + Sync + 'static) {
        lock(&self.state).handlers.push(Arc::new(handler));
    }

    /// Answers every exec whose argv contains an element equal to `arg` (a step name such as
    /// [`provision::STEP_CLONE`], or a program name) with `output`.
    pub fn set_exec_result(&self, arg: &str, output: ExecOutput) {
        let arg = arg.to_string();
        self.on_exec(move |_, argv| argv.contains(&arg).then(|| output.clone()));
    }

    /// Makes every call labelled `label` ([`Call::label`]: `create`, `start`, a step name...) fail
    /// with an LXD-style error carrying `message`. An empty message clears the failure.
    pub fn fail(&self, label: &str, message: &str) {
        let mut s = lock(&self.state);
        if message.is_empty() {
            s.failures.remove(label);
        } else {
            s.failures.insert(label.to_string(), message.to_string());
        }
    }

    /// Makes every later start fail the way a container whose init exits does: the start
    /// succeeds, the instance stops at once, and its console log is `console`. `None` heals.
    pub fn fail_boot(&self, console: Option<&str>) {
        lock(&self.state).failing_boot = console.map(str::to_string);
    }

    /// Sets what `console_log(name)` returns until the next start.
    pub fn set_console_log(&self, name: &str, console: &str) {
        if let Some(i) = lock(&self.state).instances.get_mut(name) {
            i.console = console.to_string();
        }
    }

    /// Makes `ipv4` report no address for the first `polls` calls after each start, like DHCP.
    pub fn set_ipv4_delay(&self, polls: u32) {
        lock(&self.state).ipv4_delay_polls = polls;
    }

    /// Delays every call by `latency` (to observe ordering and concurrency).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state).latency = latency;
    }

    /// Points `endpoint(name, 22)` at `addr`.
    pub fn set_ssh_target(&self, name: &str, addr: SocketAddr) {
        self.set_endpoint(name, 22, addr);
    }

    /// Points `endpoint(name, port)` at `addr`.
    pub fn set_endpoint(&self, name: &str, port: u16, addr: SocketAddr) {
        lock(&self.state).endpoints.insert((name.to_string(), port), addr);
    }

    /// Records the call, applies latency and injected failures.
    async fn enter(&self, call: Call) -> Result<(), ProviderError> {
        let label = call.label();
        let (latency, failure) = {
            let mut s = lock(&self.state);
            s.calls.push(call);
            (s.latency, s.failures.get(&label).cloned())
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match failure {
            Some(message) => Err(LxdError::Api { method: "FAKE".into(), path: label, status: 500, message }.into()),
            None => Ok(()),
        }
    }

    fn with_instance<T>(&self, name: &str, f: impl FnOnce(&mut Instance) -> T) -> Result<T, ProviderError> {
        let mut s = lock(&self.state);
        s.instances.get_mut(name).map(f).ok_or_else(|| ProviderError::NoSuchInstance(name.to_string()))
    }

    /// The shared fake sshd, started on first use.
    async fn fake_sshd(&self) -> SocketAddr {
        if let Some(addr) = lock(&self.state).fake_sshd {
            return addr;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the fake sshd");
        let addr = listener.local_addr().expect("the fake sshd's address");
        {
            let mut s = lock(&self.state);
            if let Some(existing) = s.fake_sshd {
                return existing; // lost a race; drop ours
            }
            s.fake_sshd = Some(addr);
        }
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if conn.write_all(FAKE_SSH_BANNER.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 4096];
                    loop {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    /// What a healthy base image answers.
    fn builtin_exec(&self, name: &str, argv: &[String]) -> Result<ExecOutput, ProviderError> {
        let step = exec_step(argv).unwrap_or("");
        let arg = |i: usize| argv.get(4 + i).cloned().unwrap_or_default();
        self.with_instance(name, |inst| match step {
            provision::STEP_WRITE_KEY => {
                inst.authorized_keys = Some(format!("{}\n", arg(0)));
                ExecOutput::ok("")
            }
            provision::STEP_HEAD if inst.cloned => ExecOutput::ok(format!("{FAKE_COMMIT}\n")),
            provision::STEP_HEAD => ExecOutput::failed(provision::NOT_CLONED_EXIT, ""),
            provision::STEP_CLONE => {
                inst.cloned = true;
                ExecOutput::ok(format!("{FAKE_COMMIT}\n"))
            }
            crate::prebuilds::STEP_LOCK_HASH => ExecOutput::ok("fake-lock-hash\n"),
            crate::prebuilds::STEP_SYNC => {
                inst.cloned = true;
                ExecOutput::ok(format!("{FAKE_COMMIT}\n"))
            }
            provision::STEP_HOST_KEY => ExecOutput::ok(format!("{} root@{name}\n", fake_host_key(name))),
            // Debian bookworm's interpreter.
            crate::runtimes::STEP_PYTHONS => ExecOutput::ok("3.11.2\t/usr/bin/python3.11\n"),
            crate::network::STEP_NETWORK => ExecOutput::ok("updated\n"),
            // Setup steps finish at once, successfully.
            crate::services::STEP_SETUP_POLL => ExecOutput::ok("exit 0\n"),
            _ => ExecOutput::ok(""),
        })
    }
}

/// The host key the fake reports for `name`: an `ssh-ed25519` line unique per instance name.
pub fn fake_host_key(name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    // Not a real key; stable and distinct per instance is all tests need.
    format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{:016x}{:016x}", h.finish(), h.finish().rotate_left(17))
}

fn next_ip(s: &mut State) -> Ipv4Addr {
    s.next_ip = s.next_ip.wrapping_add(1).max(2);
    Ipv4Addr::new(10, 87, 0, s.next_ip)
}

impl Provider for FakeProvider {
    async fn ensure_project(&self) -> Result<(), ProviderError> {
        self.enter(Call::EnsureProject).await
    }

    async fn warm(&self, image: &str) -> Result<(), ProviderError> {
        self.enter(Call::Warm(image.to_string())).await
    }

    async fn list(&self) -> Result<Vec<InstanceInfo>, ProviderError> {
        self.enter(Call::List).await?;
        Ok(self.instances())
    }

    fn check_limits(&self, _cpu: u32, memory: &str) -> Result<(), ProviderError> {
        // What LXD accepts, so specs behave here as they would on a node.
        if !memory.trim().is_empty() {
            crate::lxd::memory_limit(memory)?;
        }
        Ok(())
    }

    async fn create(&self, name: &str, image: &str, cpu: u32, memory: &str, disk: &str) -> Result<(), ProviderError> {
        let call =
            Call::Create { name: name.into(), image: image.into(), cpu, memory: memory.into(), disk: disk.into() };
        self.enter(call).await?;
        let mut s = lock(&self.state);
        if !s.instances.contains_key(name) {
            let ip = next_ip(&mut s);
            let mut config = BTreeMap::new();
            config.insert(crate::lxd::WORKSPACE_KEY.to_string(), "true".to_string());
            s.instances
                .insert(name.to_string(), Instance { image: image.to_string(), ip, config, ..Default::default() });
        }
        Ok(())
    }

    async fn start(&self, name: &str) -> Result<(), ProviderError> {
        self.enter(Call::Start(name.into())).await?;
        let (polls, failing_boot) = {
            let s = lock(&self.state);
            (s.ipv4_delay_polls, s.failing_boot.clone())
        };
        let was_running = self.with_instance(name, |i| {
            let was = i.running;
            if !was {
                // A new boot writes a new console log.
                i.running = failing_boot.is_none();
                i.console = failing_boot.unwrap_or_default();
            }
            was
        })?;
        if !was_running {
            lock(&self.state).pending_ipv4_polls.insert(name.to_string(), polls);
        }
        Ok(())
    }

    async fn stop(&self, name: &str) -> Result<(), ProviderError> {
        self.enter(Call::Stop(name.into())).await?;
        self.with_instance(name, |i| i.running = false)
    }

    async fn delete(&self, name: &str) -> Result<(), ProviderError> {
        self.enter(Call::Delete(name.into())).await?;
        lock(&self.state).instances.remove(name);
        Ok(())
    }

    async fn state(&self, name: &str) -> Result<Option<InstanceInfo>, ProviderError> {
        self.enter(Call::State(name.into())).await?;
        let s = lock(&self.state);
        Ok(s.instances.get(name).map(|i| InstanceInfo { name: name.to_string(), running: i.running }))
    }

    async fn console_log(&self, name: &str) -> Result<String, ProviderError> {
        self.enter(Call::ConsoleLog(name.into())).await?;
        self.with_instance(name, |i| i.console.clone())
    }

    async fn ipv4(&self, name: &str) -> Result<Option<Ipv4Addr>, ProviderError> {
        self.enter(Call::Ipv4(name.into())).await?;
        let mut s = lock(&self.state);
        let inst = s.instances.get(name).cloned().ok_or_else(|| ProviderError::NoSuchInstance(name.to_string()))?;
        if !inst.running {
            return Ok(None);
        }
        if let Some(n) = s.pending_ipv4_polls.get_mut(name) {
            if *n > 0 {
                *n -= 1;
                return Ok(None);
            }
        }
        Ok(Some(inst.ip))
    }

    async fn endpoint(&self, name: &str, port: u16) -> Result<Option<SocketAddr>, ProviderError> {
        self.enter(Call::Endpoint(name.into(), port)).await?;
        let (running, target) = {
            let s = lock(&self.state);
            (s.instances.get(name).is_some_and(|i| i.running), s.endpoints.get(&(name.to_string(), port)).copied())
        };
        if !running {
            return Ok(None);
        }
        match target {
            Some(addr) => Ok(Some(addr)),
            None => Ok(Some(self.fake_sshd().await)),
        }
    }

    async fn exec(
        &self,
        name: &str,
        argv: &[String],
        user: Option<(u32, u32)>,
        env: &[(String, String)],
        cwd: Option<&str>,
    ) -> Result<ExecOutput, ProviderError> {
        self.enter(Call::Exec {
            name: name.into(),
            argv: argv.to_vec(),
            user,
            env: env.to_vec(),
            cwd: cwd.map(str::to_string),
        })
        .await?;
        let running = self.with_instance(name, |i| i.running)?;
        if !running {
            return Err(ProviderError::NotRunning(name.to_string()));
        }
        let handlers = lock(&self.state).handlers.clone();
        for h in handlers.iter().rev() {
            if let Some(out) = h(name, argv) {
                return Ok(out);
            }
        }
        self.builtin_exec(name, argv)
    }

    async fn mount(&self, name: &str, mounts: &[Mount]) -> Result<(), ProviderError> {
        self.enter(Call::Mount { name: name.into(), mounts: mounts.to_vec() }).await?;
        self.with_instance(name, |i| {
            for m in mounts {
                i.mounts.insert(m.device.clone(), m.clone());
            }
        })
    }

    async fn host_ids(&self, name: &str, uid: u32, gid: u32) -> Result<Option<(u32, u32)>, ProviderError> {
        self.enter(Call::HostIds(name.into())).await?;
        let offset = lock(&self.state).id_offset;
        self.with_instance(name, |_| offset.map(|o| (uid + o, gid + o)))
    }

    async fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), ProviderError> {
        self.enter(Call::SetConfig(name.into(), key.into(), value.into())).await?;
        self.with_instance(name, |i| {
            i.config.insert(key.to_string(), value.to_string());
        })
    }

    async fn get_config(&self, name: &str, key: &str) -> Result<Option<String>, ProviderError> {
        self.enter(Call::GetConfig(name.into(), key.into())).await?;
        self.with_instance(name, |i| i.config.get(key).cloned())
    }

    async fn copy(&self, source: &str, name: &str, spec: &CopySpec) -> Result<(), ProviderError> {
        self.enter(Call::Copy { source: source.into(), name: name.into(), spec: spec.clone() }).await?;
        let mut s = lock(&self.state);
        let mut inst = s.instances.get(source).cloned().ok_or_else(|| ProviderError::NoSuchInstance(source.into()))?;
        if s.instances.contains_key(name) {
            return Err(LxdError::Unexpected { what: "copy".into(), detail: format!("{name} already exists") }.into());
        }
        inst.running = false;
        inst.keeper = !spec.workspace;
        inst.ip = next_ip(&mut s);
        for (k, v) in &spec.config {
            if v.is_empty() {
                inst.config.remove(k);
            } else {
                inst.config.insert(k.clone(), v.clone());
            }
        }
        for d in &spec.drop_mounts {
            inst.mounts.remove(d);
        }
        if spec.remove_files.iter().any(|f| f.ends_with("/.ssh/authorized_keys")) {
            inst.authorized_keys = None;
        }
        s.instances.insert(name.to_string(), inst);
        Ok(())
    }

    async fn list_with(&self, key: &str) -> Result<Vec<(String, String)>, ProviderError> {
        self.enter(Call::ListWith(key.into())).await?;
        let s = lock(&self.state);
        Ok(s.instances
            .iter()
            .filter_map(|(n, i)| Some((n.clone(), i.config.get(key).filter(|v| !v.is_empty())?.clone())))
            .collect())
    }

    async fn disk_usage(&self, name: &str) -> Result<Option<u64>, ProviderError> {
        self.enter(Call::DiskUsage(name.into())).await?;
        self.with_instance(name, |i| i.disk)
    }
}
