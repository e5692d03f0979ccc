//! [`FakeProvider`]: an in-memory [`Provider`] for tests here and in other crates (the simulated
//! node in server tests), so nothing but the e2e suite needs LXD.
//!
//! It keeps a map of instances, records every call, and answers the provisioning steps of
//! [`crate::provision`] the way a healthy base image would (by the step name that is `$0` of their
//! `sh -c` scripts): the clone marks the instance as cloned, `HEAD` is a fixed commit, the host key
//! is made up. Tests can script other exec results, inject errors, add latency, and point
//! [`Provider::endpoint`] at a local TCP server. Without such a target every endpoint is a shared
//! in-process "sshd" on `127.0.0.1` that sends an `SSH-2.0` banner and then echoes what it gets.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::provider::{ExecOutput, InstanceInfo, Provider};
use crate::provision;
use crate::AgentError;

/// The commit every fake clone checks out.
pub const FAKE_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// The banner of the built-in fake sshd.
pub const FAKE_SSH_BANNER: &str = "SSH-2.0-NexusFake\r\n";

/// One recorded provider call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `ensure_project()`.
    EnsureProject,
    /// `warm(image)`.
    Warm(String),
    /// `list()`.
    List,
    /// `create(..)`.
    Create {
        /// Instance name.
        name: String,
        /// Image alias.
        image: String,
        /// CPU limit.
        cpu: u32,
        /// Memory limit.
        memory: String,
    },
    /// `start(name)`.
    Start(String),
    /// `stop(name)`.
    Stop(String),
    /// `delete(name)`.
    Delete(String),
    /// `state(name)`.
    State(String),
    /// `ipv4(name)`.
    Ipv4(String),
    /// `endpoint(name, port)`.
    Endpoint(String, u16),
    /// `exec(..)`.
    Exec {
        /// Instance name.
        name: String,
        /// The command line.
        argv: Vec<String>,
        /// `(uid, gid)`.
        user: Option<(u32, u32)>,
        /// Extra environment.
        env: Vec<(String, String)>,
        /// Working directory.
        cwd: Option<String>,
    },
    /// `set_config(name, key, value)`.
    SetConfig(String, String, String),
    /// `get_config(name, key)`.
    GetConfig(String, String),
}

impl Call {
    /// The instance the call is about, if any.
    pub fn instance(&self) -> Option<&str> {
        match self {
            Call::EnsureProject | Call::Warm(_) | Call::List => None,
            Call::Create { name, .. } | Call::Exec { name, .. } => Some(name),
            Call::Start(n) | Call::Stop(n) | Call::Delete(n) | Call::State(n) | Call::Ipv4(n) => Some(n),
            Call::Endpoint(n, _) | Call::SetConfig(n, _, _) | Call::GetConfig(n, _) => Some(n),
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
            Call::Ipv4(_) => "ipv4".into(),
            Call::Endpoint(..) => "endpoint".into(),
            Call::Exec { argv, .. } => exec_step(argv).map(str::to_string).unwrap_or_else(|| "exec".into()),
            Call::SetConfig(..) => "set_config".into(),
            Call::GetConfig(..) => "get_config".into(),
        }
    }
}

/// `$0` of an `sh -c SCRIPT NAME args...` command line.
fn exec_step(argv: &[String]) -> Option<&str> {
    match argv {
        [sh, c, _script, name, ..] if sh == "sh" && c == "-c" => Some(name),
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
}

/// An in-memory provider; cheap to clone (clones share state).
#[derive(Clone, Default)]
pub struct FakeProvider {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock().unwrap();
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
        self.state.lock().unwrap().calls.clone()
    }

    /// The labels ([`Call::label`]) of the calls about `name`, in order.
    pub fn labels_for(&self, name: &str) -> Vec<String> {
        self.calls().iter().filter(|c| c.instance() == Some(name)).map(Call::label).collect()
    }

    /// The argv of every exec so far.
    pub fn exec_argvs(&self) -> Vec<Vec<String>> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Exec { argv, .. } => Some(argv),
                _ => None,
            })
            .collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// Names of existing instances with their running state.
    pub fn instances(&self) -> Vec<InstanceInfo> {
        let s = self.state.lock().unwrap();
        s.instances.iter().map(|(n, i)| InstanceInfo { name: n.clone(), running: i.running }).collect()
    }

    /// Whether `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        self.state.lock().unwrap().instances.contains_key(name)
    }

    /// Whether `name` has been cloned into (by a successful clone step).
    pub fn is_cloned(&self, name: &str) -> bool {
        self.state.lock().unwrap().instances.get(name).is_some_and(|i| i.cloned)
    }

    /// The `authorized_keys` content the key step wrote into `name`.
    pub fn authorized_keys(&self, name: &str) -> Option<String> {
        self.state.lock().unwrap().instances.get(name).and_then(|i| i.authorized_keys.clone())
    }

    /// The image `name` was created from.
    pub fn image_of(&self, name: &str) -> Option<String> {
        self.state.lock().unwrap().instances.get(name).map(|i| i.image.clone())
    }

    /// Adds an instance directly, as if it existed before the agent started.
    pub fn insert_instance(&self, name: &str, running: bool) {
        let mut s = self.state.lock().unwrap();
        let ip = next_ip(&mut s);
        s.instances.insert(name.to_string(), Instance { running, ip, ..Default::default() });
    }

    /// Consults `handler` first for every exec (latest registered first); `None` falls through
    /// to earlier handlers and finally to the built-in behaviour.
    pub fn on_exec(&self, handler: impl Fn(&str, &[String]) -> Option<ExecOutput> + Send + Sync + 'static) {
        self.state.lock().unwrap().handlers.push(Arc::new(handler));
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
        let mut s = self.state.lock().unwrap();
        if message.is_empty() {
            s.failures.remove(label);
        } else {
            s.failures.insert(label.to_string(), message.to_string());
        }
    }

    /// Makes `ipv4` report no address for the first `polls` calls after each start, like DHCP.
    pub fn set_ipv4_delay(&self, polls: u32) {
        self.state.lock().unwrap().ipv4_delay_polls = polls;
    }

    /// Delays every call by `latency` (to observe ordering and concurrency).
    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().unwrap().latency = latency;
    }

    /// Points `endpoint(name, 22)` at `addr`.
    pub fn set_ssh_target(&self, name: &str, addr: SocketAddr) {
        self.set_endpoint(name, 22, addr);
    }

    /// Points `endpoint(name, port)` at `addr`.
    pub fn set_endpoint(&self, name: &str, port: u16, addr: SocketAddr) {
        self.state.lock().unwrap().endpoints.insert((name.to_string(), port), addr);
    }

    /// Records the call, applies latency and injected failures.
    async fn enter(&self, call: Call) -> Result<(), AgentError> {
        let label = call.label();
        let (latency, failure) = {
            let mut s = self.state.lock().unwrap();
            s.calls.push(call);
            (s.latency, s.failures.get(&label).cloned())
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match failure {
            Some(message) => Err(AgentError::Lxd { method: "FAKE".into(), path: label, status: 500, message }),
            None => Ok(()),
        }
    }

    fn with_instance<T>(&self, name: &str, f: impl FnOnce(&mut Instance) -> T) -> Result<T, AgentError> {
        let mut s = self.state.lock().unwrap();
        s.instances.get_mut(name).map(f).ok_or_else(|| AgentError::NoSuchInstance(name.to_string()))
    }

    /// The shared fake sshd, started on first use.
    async fn fake_sshd(&self) -> Result<SocketAddr, AgentError> {
        if let Some(addr) = self.state.lock().unwrap().fake_sshd {
            return Ok(addr);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| AgentError::Io { what: "binding the fake sshd".into(), source })?;
        let addr =
            listener.local_addr().map_err(|source| AgentError::Io { what: "fake sshd address".into(), source })?;
        {
            let mut s = self.state.lock().unwrap();
            if let Some(existing) = s.fake_sshd {
                return Ok(existing); // lost a race; drop ours
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
        Ok(addr)
    }

    /// What a healthy base image answers.
    fn builtin_exec(&self, name: &str, argv: &[String]) -> Result<ExecOutput, AgentError> {
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
            provision::STEP_HOST_KEY => ExecOutput::ok(format!("{} root@{name}\n", fake_host_key(name))),
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
    async fn ensure_project(&self) -> Result<(), AgentError> {
        self.enter(Call::EnsureProject).await
    }

    async fn warm(&self, image: &str) -> Result<(), AgentError> {
        self.enter(Call::Warm(image.to_string())).await
    }

    async fn list(&self) -> Result<Vec<InstanceInfo>, AgentError> {
        self.enter(Call::List).await?;
        Ok(self.instances())
    }

    async fn create(&self, name: &str, image: &str, cpu: u32, memory: &str) -> Result<(), AgentError> {
        self.enter(Call::Create { name: name.into(), image: image.into(), cpu, memory: memory.into() }).await?;
        let mut s = self.state.lock().unwrap();
        if !s.instances.contains_key(name) {
            let ip = next_ip(&mut s);
            let mut config = BTreeMap::new();
            config.insert(crate::lxd::WORKSPACE_KEY.to_string(), "true".to_string());
            s.instances
                .insert(name.to_string(), Instance { image: image.to_string(), ip, config, ..Default::default() });
        }
        Ok(())
    }

    async fn start(&self, name: &str) -> Result<(), AgentError> {
        self.enter(Call::Start(name.into())).await?;
        let polls = self.state.lock().unwrap().ipv4_delay_polls;
        let was_running = self.with_instance(name, |i| std::mem::replace(&mut i.running, true))?;
        if !was_running {
            self.state.lock().unwrap().pending_ipv4_polls.insert(name.to_string(), polls);
        }
        Ok(())
    }

    async fn stop(&self, name: &str) -> Result<(), AgentError> {
        self.enter(Call::Stop(name.into())).await?;
        self.with_instance(name, |i| i.running = false)
    }

    async fn delete(&self, name: &str) -> Result<(), AgentError> {
        self.enter(Call::Delete(name.into())).await?;
        self.state.lock().unwrap().instances.remove(name);
        Ok(())
    }

    async fn state(&self, name: &str) -> Result<Option<InstanceInfo>, AgentError> {
        self.enter(Call::State(name.into())).await?;
        let s = self.state.lock().unwrap();
        Ok(s.instances.get(name).map(|i| InstanceInfo { name: name.to_string(), running: i.running }))
    }

    async fn ipv4(&self, name: &str) -> Result<Option<Ipv4Addr>, AgentError> {
        self.enter(Call::Ipv4(name.into())).await?;
        let mut s = self.state.lock().unwrap();
        let inst = s.instances.get(name).cloned().ok_or_else(|| AgentError::NoSuchInstance(name.to_string()))?;
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

    async fn endpoint(&self, name: &str, port: u16) -> Result<Option<SocketAddr>, AgentError> {
        self.enter(Call::Endpoint(name.into(), port)).await?;
        let (running, target) = {
            let s = self.state.lock().unwrap();
            (s.instances.get(name).is_some_and(|i| i.running), s.endpoints.get(&(name.to_string(), port)).copied())
        };
        if !running {
            return Ok(None);
        }
        match target {
            Some(addr) => Ok(Some(addr)),
            None => self.fake_sshd().await.map(Some),
        }
    }

    async fn exec(
        &self,
        name: &str,
        argv: &[String],
        user: Option<(u32, u32)>,
        env: &[(String, String)],
        cwd: Option<&str>,
    ) -> Result<ExecOutput, AgentError> {
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
            return Err(AgentError::Lxd {
                method: "POST".into(),
                path: format!("/1.0/instances/{name}/exec"),
                status: 400,
                message: "Instance is not running".into(),
            });
        }
        let handlers = self.state.lock().unwrap().handlers.clone();
        for h in handlers.iter().rev() {
            if let Some(out) = h(name, argv) {
                return Ok(out);
            }
        }
        self.builtin_exec(name, argv)
    }

    async fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), AgentError> {
        self.enter(Call::SetConfig(name.into(), key.into(), value.into())).await?;
        self.with_instance(name, |i| {
            i.config.insert(key.to_string(), value.to_string());
        })
    }

    async fn get_config(&self, name: &str, key: &str) -> Result<Option<String>, AgentError> {
        self.enter(Call::GetConfig(name.into(), key.into())).await?;
        self.with_instance(name, |i| i.config.get(key).cloned())
    }
}
