//! [`LxdProvider`]: the real [`Provider`], speaking LXD's REST API over its unix socket.
//!
//! One HTTP/1 connection per request (connecting to a unix socket costs microseconds, and it keeps
//! long `.../wait` polls from blocking other requests). Every request carries `?project=`.
//! Background operations are awaited with `GET /1.0/operations/{id}/wait`.
//!
//! Containers are created by copying a *template*: on LXD 5.0 with btrfs the first start of a
//! container made from an image rewrites the owner of every file in its rootfs into the
//! container's uid range, which costs ~3 s for the base image. A template is a container made from
//! the image once and started with `lxc.init.cmd = /bin/true` (so it shifts its rootfs and stops
//! at once without running any first-boot step); copies of it are btrfs snapshots that are already
//! shifted and start in ~0.2 s. Templates are named after the image fingerprint and rebuilt when
//! the alias moves to a new image.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use nexus_types::diagnostics::{error_chain, lock, Hint};
use serde_json::{json, Value};
use tokio::net::UnixStream;

use crate::limits::Hardening;
use crate::provider::{CopySpec, ExecOutput, InstanceInfo, Mount, Provider, ProviderError};

/// Where the Debian/Ubuntu package puts LXD's socket.
const DEBIAN_SOCKET: &str = "/var/lib/lxd/unix.socket";
/// Where the snap puts LXD's socket.
const SNAP_SOCKET: &str = "/var/snap/lxd/common/lxd/unix.socket";

/// Config key marking an instance as a Nexus workspace; [`Provider::list`] only reports these.
pub(crate) const WORKSPACE_KEY: &str = "user.nexus.workspace";
/// Config key on template containers naming the image alias they were built from.
const TEMPLATE_KEY: &str = "user.nexus.template";
/// Config key set on a template once its rootfs is shifted and it is usable.
const TEMPLATE_READY_KEY: &str = "user.nexus.template-ready";
/// Makes a template's init exit at once: the start shifts the rootfs, nothing boots.
const TEMPLATE_RAW_LXC: &str = "lxc.init.cmd = /bin/true";

/// How long a request refused with "instance is busy" is retried.
const BUSY_RETRY: Duration = Duration::from_secs(15);
/// How long after a failed template build creates use the image directly before trying again.
const TEMPLATE_RETRY: Duration = Duration::from_secs(600);

/// How long one `.../wait` request may block before we ask again.
const WAIT_SLICE_SECS: u64 = 30;
/// Graceful shutdown budget before a stop turns into a forced one.
const STOP_TIMEOUT_SECS: u64 = 5;

/// The most of one exec's stdout (and of its stderr) the agent reads: a workspace decides what its
/// commands print, and the agent serves every tenant of the node from one process.
pub const MAX_EXEC_OUTPUT: usize = 1 << 20;
/// Marker appended to output cut at [`MAX_EXEC_OUTPUT`].
pub const TRUNCATED: &str = "\n[output truncated by the Nexus agent]\n";
/// How long one exec may run inside the container before `timeout` kills it. Long work (setup
/// steps, services) runs detached; what the agent waits for is short, except a big clone.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Where `timeout` is in every Debian/Ubuntu image (coreutils), by absolute path so nothing in
/// the container's `PATH` decides what runs as root.
const TIMEOUT_BIN: &str = "/usr/bin/timeout";

/// What went wrong talking to LXD. Converted into [`ProviderError::Lxd`] at the trait, except
/// for what the agent decides on (a missing or stopped instance, a limit LXD cannot apply).
#[derive(Debug, thiserror::Error)]
pub enum LxdError {
    /// Neither the Debian nor the snap LXD socket exists.
    #[error("no LXD socket found (tried `{}`, `{}`)", DEBIAN_SOCKET, SNAP_SOCKET)]
    SocketNotFound,
    /// The LXD socket exists but cannot be connected to.
    #[error("cannot connect to LXD at `{path}`")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Why the connect failed (permissions, LXD not listening).
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange with LXD broke off.
    #[error("HTTP exchange with LXD failed ({method} {path})")]
    Http {
        /// Request method.
        method: String,
        /// Request path, without the project.
        path: String,
        /// Why the exchange broke.
        #[source]
        source: hyper::Error,
    },
    /// LXD answered with an error.
    #[error("LXD: {message} ({method} {path}, HTTP {status})")]
    Api {
        /// Request method.
        method: String,
        /// Request path, without the project.
        path: String,
        /// HTTP status (404 when something does not exist).
        status: u16,
        /// LXD's `error` text.
        message: String,
    },
    /// An LXD background operation ended in failure.
    #[error("LXD operation `{description}` failed: {message}")]
    Operation {
        /// LXD's description of the operation (`Creating instance`, ...).
        description: String,
        /// LXD's `err` text.
        message: String,
    },
    /// LXD answered with something this agent does not understand.
    #[error("unexpected answer from LXD to {what}: {detail}")]
    Unexpected {
        /// The request.
        what: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The image alias a container was to be made from does not exist.
    #[error("image `{image}` is not on this node")]
    ImageNotFound {
        /// The alias.
        image: String,
        /// LXD's refusal, when it came from a create.
        #[source]
        source: Option<Box<LxdError>>,
    },
    /// A template container did not stop after its first start.
    #[error("template {name} did not stop within {secs} s of its first start")]
    TemplateTimeout {
        /// The template container.
        name: String,
        /// The limit in seconds.
        secs: u64,
    },
    /// [`LxdProvider::delete_project`] on the `default` project.
    #[error("refusing to empty LXD's default project")]
    DefaultProject,
}

impl LxdError {
    /// True when LXD said the thing asked about does not exist.
    fn is_not_found(&self) -> bool {
        matches!(self, LxdError::Api { status: 404, .. })
    }

    /// LXD's own error text, for the few refusals that are decided on by their text.
    fn lxd_message(&self) -> &str {
        match self {
            LxdError::Api { message, .. } | LxdError::Operation { message, .. } => message,
            _ => "",
        }
    }
}

impl Hint for LxdError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            LxdError::SocketNotFound => {
                "prepare this host with `sudo nexus node init`, which installs and starts LXD".into()
            }
            LxdError::Connect { .. } => {
                "check that LXD runs (`lxc info`) and that the agent may use its socket (run it as root)".into()
            }
            LxdError::ImageNotFound { image, .. } => format!(
                "image `{image}` is missing on the node: run `sudo nexus node init` there (it builds the base image), or pick one `lxc image list` shows"
            ),
            LxdError::DefaultProject => "give the agent a project of its own (`--lxd-project`)".into(),
            _ => "check LXD on the node (`lxc info`, `lxc list`, `lxc storage list`) and its log, then retry".into(),
        })
    }
}

/// LXD over its unix socket, scoped to one project.
#[derive(Debug)]
pub struct LxdProvider {
    socket: PathBuf,
    project: String,
    /// Serializes template builds: concurrent creates wait for one build instead of racing.
    template_lock: tokio::sync::Mutex<()>,
    /// Image fingerprint → when its template build failed; used directly until [`TEMPLATE_RETRY`].
    template_failed: std::sync::Mutex<HashMap<String, Instant>>,
    /// Limits and filtering every workspace gets.
    hardening: Hardening,
    /// Set once LXD could not start a NIC with `limits.egress` (the kernel lacks `act_police`):
    /// later workspaces go without it instead of failing to start.
    egress_unsupported: std::sync::atomic::AtomicBool,
}

impl LxdProvider {
    /// A provider talking to the LXD socket at `socket`, working in `project`.
    pub fn new(socket: impl Into<PathBuf>, project: impl Into<String>) -> Self {
        LxdProvider {
            socket: socket.into(),
            project: project.into(),
            template_lock: tokio::sync::Mutex::new(()),
            template_failed: std::sync::Mutex::new(HashMap::new()),
            hardening: Hardening::default(),
            egress_unsupported: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The same provider giving workspaces `hardening` instead of [`Hardening::default`].
    pub fn with_hardening(mut self, hardening: Hardening) -> Self {
        self.hardening = hardening;
        self
    }

    /// The config keys and devices (root disk with its size, filtered and limited NIC) a
    /// workspace gets, from the default profile's devices.
    async fn hardened(&self, disk: &str) -> Result<(serde_json::Map<String, Value>, Value), ProviderError> {
        let size = self.hardening.disk_size(disk)?;
        let profile = self.call(Method::GET, "/1.0/profiles/default", None).await?;
        let egress = !self.egress_unsupported.load(std::sync::atomic::Ordering::Relaxed);
        let devices = self.hardening.devices(&profile["devices"], &size, egress);
        let config = self.hardening.config().into_iter().map(|(k, v)| (k, Value::from(v))).collect();
        Ok((config, Value::Object(devices)))
    }

    /// Has btrfs recount its quota groups when the workspace disks live on a btrfs pool. Snapshots
    /// and deletes (prebuild copies, removed workspaces) leave the counts marked inconsistent, and
    /// then the kernel stops enforcing root disk sizes (seen on this project's CI node: a 2 GB root
    /// took 2.7 GB). A rescan takes under a second on a node's pool and runs in the background.
    async fn rescan_quotas(&self, devices: &Value) {
        let Some(pool) = devices.as_object().into_iter().flat_map(|d| d.values()).find_map(|d| {
            (d["type"] == "disk" && d["path"] == "/" && d["size"].is_string()).then(|| d["pool"].as_str()).flatten()
        }) else {
            return;
        };
        match self.call(Method::GET, &format!("/1.0/storage-pools/{}", encode(pool)), None).await {
            Ok(p) if p["driver"] == "btrfs" => {}
            _ => return,
        }
        // The pool is mounted under LXD's directory, next to its socket.
        let Some(lxd_dir) = self.socket.parent() else { return };
        let mount = lxd_dir.join("storage-pools").join(pool);
        let out = tokio::process::Command::new("btrfs").arg("quota").arg("rescan").arg(&mount).output().await;
        match out {
            Ok(o) if o.status.success() => tracing::debug!(pool, "btrfs quota rescan started"),
            // "already running" is as good; anything else leaves the sizes to the next rescan.
            Ok(o) => {
                tracing::debug!(pool, stderr = %String::from_utf8_lossy(&o.stderr).trim(), "btrfs quota rescan refused")
            }
            Err(e) => {
                tracing::warn!(pool, error = %e, "cannot run `btrfs quota rescan`; root disk sizes may go unenforced")
            }
        }
    }

    /// Drops `limits.egress` from `name`'s NIC after LXD could not start it with one, and
    /// remembers that the kernel cannot police egress. True when there was one to drop.
    async fn drop_egress_limit(&self, name: &str) -> Result<bool, LxdError> {
        let Some(inst) = self.instance(name).await? else { return Ok(false) };
        let Some(mut nic) = inst["devices"].get("eth0").cloned() else { return Ok(false) };
        if nic.as_object_mut().and_then(|n| n.remove("limits.egress")).is_none() {
            return Ok(false);
        }
        if !self.egress_unsupported.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "this kernel cannot limit a workspace's outgoing bandwidth (no `act_police` tc action); \
                 workspaces go without `limits.egress` (see docs/security/nodes-hardening.md)"
            );
        }
        let body = json!({"devices": {"eth0": nic}});
        self.call(Method::PATCH, &format!("/1.0/instances/{}", encode(name)), Some(body)).await?;
        Ok(true)
    }

    /// The first LXD socket that exists: the Debian package's, then the snap's.
    pub fn default_socket() -> Result<PathBuf, LxdError> {
        [DEBIAN_SOCKET, SNAP_SOCKET].iter().map(PathBuf::from).find(|p| p.exists()).ok_or(LxdError::SocketNotFound)
    }

    /// Deletes every instance in the project (workspaces and templates), then the project itself.
    /// For tests and for decommissioning a node; refuses the `default` project.
    pub async fn delete_project(&self) -> Result<(), LxdError> {
        if self.project == "default" {
            return Err(LxdError::DefaultProject);
        }
        let all = match self.call(Method::GET, "/1.0/instances?recursion=1", None).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        for name in all.as_array().into_iter().flatten().filter_map(|i| i["name"].as_str()) {
            self.force_delete(name).await?;
        }
        match self.call(Method::DELETE, &format!("/1.0/projects/{}", encode(&self.project)), None).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// `path` with `project=` appended to its query.
    fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}project={}", encode(&self.project))
    }

    /// One GET-style request whose body is read up to `cap` bytes; the rest is never read (the
    /// connection closes). Returns the status, the body and whether it was cut.
    async fn raw_capped(&self, method: Method, path: &str, cap: usize) -> Result<(u16, Vec<u8>, bool), LxdError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| LxdError::Connect { path: self.socket.clone(), source })?;
        let http_err = |source| LxdError::Http { method: method.to_string(), path: path.to_string(), source };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http_err)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(method.clone())
            .uri(self.url(path))
            .header(hyper::header::HOST, "lxd")
            .body(Full::new(Bytes::new()))
            .map_err(|e| LxdError::Unexpected {
                what: format!("{method} {path}"),
                detail: format!("cannot build request: {e}"),
            })?;
        let resp = sender.send_request(req).await.map_err(http_err)?;
        let status = resp.status().as_u16();
        let (bytes, truncated) = read_capped(resp.into_body(), cap).await.map_err(http_err)?;
        Ok((status, bytes, truncated))
    }

    /// One request; returns the status and the raw body.
    async fn raw(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Bytes), LxdError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| LxdError::Connect { path: self.socket.clone(), source })?;
        let http_err = |source| LxdError::Http { method: method.to_string(), path: path.to_string(), source };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http_err)?;
        // The connection task ends when `sender` is dropped after this one request.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder().method(method.clone()).uri(self.url(path)).header(hyper::header::HOST, "lxd");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| LxdError::Unexpected {
            what: format!("{method} {path}"),
            detail: format!("cannot build request: {e}"),
        })?;
        let resp = sender.send_request(req).await.map_err(http_err)?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map_err(http_err)?.to_bytes();
        Ok((status, bytes))
    }

    /// A request expecting LXD's JSON envelope. Waits for background operations and returns the
    /// operation's metadata for those, the response metadata otherwise.
    ///
    /// Retries for a while when LXD says the instance is busy: its own operations (the stop after
    /// an init exits, say) can still be finishing when the state already reads `Stopped`.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, LxdError> {
        let deadline = Instant::now() + BUSY_RETRY;
        loop {
            let result = match self.call_once(method.clone(), path, body.clone()).await {
                Ok(Answer::Sync(meta)) => Ok(meta),
                Ok(Answer::Async(op)) => self.wait(&op).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "LXD instance busy; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// One request, decoding LXD's envelope and its errors.
    async fn call_once(&self, method: Method, path: &str, body: Option<Value>) -> Result<Answer, LxdError> {
        let what = || format!("{method} {path}");
        let (status, bytes) = self.raw(method.clone(), path, body.map(|b| b.to_string().into_bytes())).await?;
        let env: Value = serde_json::from_slice(&bytes).map_err(|e| LxdError::Unexpected {
            what: what(),
            detail: format!(
                "HTTP {status}, body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        })?;
        if status >= 400 || env["type"] == "error" {
            let code = env["error_code"].as_u64().filter(|c| *c >= 400).map(|c| c as u16).unwrap_or(status);
            return Err(LxdError::Api {
                method: method.to_string(),
                path: path.to_string(),
                status: code,
                message: env["error"].as_str().unwrap_or("(no error text)").to_string(),
            });
        }
        if env["type"] == "async" {
            let op = env["operation"].as_str().ok_or_else(|| LxdError::Unexpected {
                what: what(),
                detail: "async answer without an operation".into(),
            })?;
            return Ok(Answer::Async(op.to_string()));
        }
        Ok(Answer::Sync(env["metadata"].clone()))
    }

    /// Waits for operation `op` (`/1.0/operations/<id>`) and returns its metadata on success.
    async fn wait(&self, op: &str) -> Result<Value, LxdError> {
        loop {
            let op_meta = match self
                .call_once(Method::GET, &format!("{op}/wait?timeout={WAIT_SLICE_SECS}"), None)
                .await?
            {
                Answer::Sync(meta) => meta,
                Answer::Async(_) => {
                    return Err(LxdError::Unexpected { what: format!("GET {op}/wait"), detail: "async answer".into() })
                }
            };
            let code = op_meta["status_code"].as_u64().unwrap_or(0);
            if code < 200 {
                continue; // still running after this wait slice
            }
            if code == 200 {
                return Ok(op_meta["metadata"].clone());
            }
            return Err(LxdError::Operation {
                description: op_meta["description"].as_str().unwrap_or(op).to_string(),
                message: op_meta["err"].as_str().filter(|s| !s.is_empty()).unwrap_or("(no error text)").to_string(),
            });
        }
    }

    /// `GET /1.0/instances/{name}`, `None` on 404.
    async fn instance(&self, name: &str) -> Result<Option<Value>, LxdError> {
        match self.call(Method::GET, &format!("/1.0/instances/{}", encode(name)), None).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn set_state(&self, name: &str, body: Value) -> Result<(), LxdError> {
        self.call(Method::PUT, &format!("/1.0/instances/{}/state", encode(name)), Some(body)).await.map(drop)
    }

    async fn force_delete(&self, name: &str) -> Result<(), LxdError> {
        let Some(inst) = self.instance(name).await? else {
            return Ok(());
        };
        if inst["status"] != "Stopped" {
            match self.set_state(name, json!({"action": "stop", "force": true, "timeout": -1})).await {
                // Raced with something else stopping it.
                Err(e) if !e.lxd_message().contains("not running") => return Err(e),
                _ => {}
            }
        }
        match self.call(Method::DELETE, &format!("/1.0/instances/{}", encode(name)), None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The fingerprint alias `image` points to, `None` if there is no such alias.
    async fn image_fingerprint(&self, image: &str) -> Result<Option<String>, LxdError> {
        match self.call(Method::GET, &format!("/1.0/images/aliases/{}", encode(image)), None).await {
            Ok(v) => Ok(v["target"].as_str().map(str::to_string)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Name of the usable template for `image`, building it first if needed. `Ok(None)` when the
    /// image cannot be templated (not an alias) or a recent build failed; `Err` when this build
    /// failed. Callers then create from the image.
    async fn template_for(&self, image: &str) -> Result<Option<String>, LxdError> {
        let Some(fp) = self.image_fingerprint(image).await? else {
            return Ok(None);
        };
        let recently_failed =
            |fp: &str| lock(&self.template_failed).get(fp).is_some_and(|at| at.elapsed() < TEMPLATE_RETRY);
        if recently_failed(&fp) {
            return Ok(None);
        }
        let _guard = self.template_lock.lock().await;
        if recently_failed(&fp) {
            return Ok(None); // the build we waited for failed
        }
        // Instance names must be unique on a bridge shared by all projects, hence the project tag.
        let name = format!("nexus-tmpl-{}-{:08x}", &fp[..fp.len().min(12)], fnv32(&self.project));
        if let Some(inst) = self.instance(&name).await? {
            if inst["config"][TEMPLATE_READY_KEY] == "true" && inst["status"] == "Stopped" {
                return Ok(Some(name));
            }
            // Left half-built by a crash, or started by someone: start over.
            self.force_delete(&name).await?;
        }
        let started = Instant::now();
        match self.build_template(&name, image).await {
            Ok(()) => {
                tracing::info!(template = %name, image, elapsed_ms = started.elapsed().as_millis() as u64, "built LXD template");
                lock(&self.template_failed).remove(&fp);
                self.drop_stale_templates(image, &name).await;
                Ok(Some(name))
            }
            Err(e) => {
                lock(&self.template_failed).insert(fp, Instant::now());
                let _ = self.force_delete(&name).await;
                Err(e)
            }
        }
    }

    async fn build_template(&self, name: &str, image: &str) -> Result<(), LxdError> {
        let body = json!({
            "name": name,
            "type": "container",
            "profiles": ["default"],
            "source": {"type": "image", "alias": image},
            "config": {"raw.lxc": TEMPLATE_RAW_LXC, TEMPLATE_KEY: image},
        });
        self.call(Method::POST, "/1.0/instances", Some(body)).await?;
        // The start shifts the rootfs; init then exits and the container stops by itself. A start
        // error is judged by the result below rather than trusted.
        if let Err(e) = self.set_state(name, json!({"action": "start"})).await {
            tracing::debug!(template = %name, error = %error_chain(&e), "template start reported an error");
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let inst = self.instance(name).await?.ok_or_else(|| LxdError::Unexpected {
                what: format!("template {name}"),
                detail: "it disappeared while it was being built".into(),
            })?;
            if inst["status"] == "Stopped" {
                let idmap = inst["config"]["volatile.last_state.idmap"].as_str().unwrap_or("");
                if idmap.is_empty() || idmap == "[]" {
                    return Err(LxdError::Unexpected {
                        what: format!("template {name}"),
                        detail: "the rootfs was not shifted by its first start".into(),
                    });
                }
                break;
            }
            if Instant::now() > deadline {
                return Err(LxdError::TemplateTimeout { name: name.to_string(), secs: 120 });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.patch_config(name, TEMPLATE_READY_KEY, "true").await
    }

    async fn patch_config(&self, name: &str, key: &str, value: &str) -> Result<(), LxdError> {
        let body = json!({"config": {key: value}});
        self.call(Method::PATCH, &format!("/1.0/instances/{}", encode(name)), Some(body)).await.map(drop)
    }

    /// The copy of [`Provider::copy`] from `source` (or its snapshot `snapshot`).
    async fn copy_from(
        &self,
        source: &str,
        snapshot: Option<&str>,
        name: &str,
        spec: &CopySpec,
    ) -> Result<(), ProviderError> {
        let mut config = serde_json::Map::new();
        config.insert(WORKSPACE_KEY.into(), if spec.workspace { "true" } else { "" }.into());
        config.insert("limits.cpu".into(), if spec.cpu > 0 { spec.cpu.to_string() } else { String::new() }.into());
        let memory = if spec.memory.trim().is_empty() { String::new() } else { memory_limit(&spec.memory)? };
        config.insert("limits.memory".into(), memory.into());
        let mut devices = Value::Null;
        if spec.workspace {
            let (hardened, hardened_devices) = self.hardened(&spec.disk).await?;
            config.extend(hardened);
            devices = hardened_devices;
        }
        for (k, v) in &spec.config {
            config.insert(k.clone(), v.clone().into());
        }
        let from = match snapshot {
            Some(s) => format!("{source}/{s}"),
            None => source.to_string(),
        };
        let body = json!({
            "name": name,
            "type": "container",
            "profiles": ["default"],
            "source": {"type": "copy", "source": from, "instance_only": true},
            "config": config,
        });
        let mut body = body;
        if !devices.is_null() {
            // Replaces the source's devices of those names (a prebuild keeps the workspace's).
            body["devices"] = devices;
        }
        let devices = body["devices"].clone();
        self.call(Method::POST, "/1.0/instances", Some(body)).await?;
        tracing::debug!(source, name, "copy: instance created");
        self.rescan_quotas(&devices).await;
        if !spec.drop_mounts.is_empty() {
            // A copy keeps the source's devices whatever the request says; PUT the instance back
            // without them.
            let mut inst = self.instance(name).await?.unwrap_or_default();
            if let Some(devices) = inst["devices"].as_object_mut() {
                for d in &spec.drop_mounts {
                    devices.remove(d);
                }
            }
            let body = json!({
                "architecture": inst["architecture"],
                "config": inst["config"],
                "devices": inst["devices"],
                "ephemeral": inst["ephemeral"],
                "profiles": inst["profiles"],
                "description": inst["description"],
            });
            self.call(Method::PUT, &format!("/1.0/instances/{}", encode(name)), Some(body)).await?;
        }
        // Each file request on a stopped container mounts its rootfs; side by side they overlap.
        let removals = spec.remove_files.iter().map(|path| async move {
            let url = format!("/1.0/instances/{}/files?path={}", encode(name), encode(path));
            match self.call(Method::DELETE, &url, None).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() || e.lxd_message().to_ascii_lowercase().contains("no such file") => Ok(()),
                Err(e) => Err(e),
            }
        });
        futures_util::future::try_join_all(removals).await?;
        Ok(())
    }

    /// Deletes templates of `image` other than `keep` (built from the image the alias used to name).
    async fn drop_stale_templates(&self, image: &str, keep: &str) {
        let all = match self.call(Method::GET, "/1.0/instances?recursion=1", None).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "listing instances for template clean-up failed");
                return;
            }
        };
        for inst in all.as_array().into_iter().flatten() {
            let name = inst["name"].as_str().unwrap_or("");
            if name != keep && inst["config"][TEMPLATE_KEY] == image {
                match self.force_delete(name).await {
                    Ok(()) => tracing::info!(template = name, "deleted stale LXD template"),
                    Err(e) => {
                        tracing::warn!(template = name, error = %error_chain(&e), "deleting stale LXD template failed")
                    }
                }
            }
        }
    }
}

impl Provider for LxdProvider {
    async fn ensure_project(&self) -> Result<(), ProviderError> {
        if self.project == "default" {
            return Ok(());
        }
        match self.call(Method::GET, &format!("/1.0/projects/{}", encode(&self.project)), None).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let body = json!({
            "name": self.project,
            "description": "Nexus workspaces",
            // Share the default project's images and profiles: the base image is imported once
            // and the default profile carries the NIC and root disk.
            "config": {"features.images": "false", "features.profiles": "false"},
        });
        match self.call(Method::POST, "/1.0/projects", Some(body)).await {
            Ok(_) => Ok(()),
            // Another agent (or a retry) created it meanwhile.
            Err(e) if e.lxd_message().contains("already exists") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn warm(&self, image: &str) -> Result<(), ProviderError> {
        match self.template_for(image).await? {
            Some(_) => Ok(()),
            None if self.image_fingerprint(image).await?.is_none() => {
                Err(LxdError::ImageNotFound { image: image.to_string(), source: None }.into())
            }
            None => Ok(()), // a recent build failed and was reported then
        }
    }

    async fn list(&self) -> Result<Vec<InstanceInfo>, ProviderError> {
        let all = self.call(Method::GET, "/1.0/instances?recursion=1", None).await?;
        let items = all.as_array().ok_or_else(|| LxdError::Unexpected {
            what: "GET /1.0/instances".into(),
            detail: "metadata is not a list".into(),
        })?;
        Ok(items
            .iter()
            .filter(|i| i["config"][WORKSPACE_KEY] == "true")
            .filter_map(|i| {
                Some(InstanceInfo { name: i["name"].as_str()?.to_string(), running: i["status"] == "Running" })
            })
            .collect())
    }

    fn check_limits(&self, _cpu: u32, memory: &str) -> Result<(), ProviderError> {
        if !memory.trim().is_empty() {
            memory_limit(memory)?;
        }
        Ok(())
    }

    async fn create(&self, name: &str, image: &str, cpu: u32, memory: &str, disk: &str) -> Result<(), ProviderError> {
        if self.instance(name).await?.is_some() {
            return Ok(());
        }
        let (mut config, devices) = self.hardened(disk).await?;
        config.insert(WORKSPACE_KEY.into(), "true".into());
        if cpu > 0 {
            config.insert("limits.cpu".into(), cpu.to_string().into());
        }
        if !memory.trim().is_empty() {
            config.insert("limits.memory".into(), memory_limit(memory)?.into());
        }
        let template = match self.template_for(image).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(image, error = %error_chain(&e), "no LXD template; creating from the image (first start ~3 s slower)");
                None
            }
        };
        let source = match &template {
            Some(t) => {
                // Copies inherit the template's config; an empty value removes a key.
                config.insert("raw.lxc".into(), "".into());
                config.insert(TEMPLATE_KEY.into(), "".into());
                config.insert(TEMPLATE_READY_KEY.into(), "".into());
                json!({"type": "copy", "source": t, "instance_only": true})
            }
            None => json!({"type": "image", "alias": image}),
        };
        let body = json!({
            "name": name,
            "type": "container",
            // Copies get no profiles unless asked; the default profile has the NIC and root disk.
            "profiles": ["default"],
            "source": source,
            "config": config,
            "devices": devices,
        });
        let devices = body["devices"].clone();
        match self.call(Method::POST, "/1.0/instances", Some(body)).await {
            Ok(_) => {
                self.rescan_quotas(&devices).await;
                Ok(())
            }
            Err(e) if e.lxd_message().contains("already exists") => Ok(()),
            Err(e) if e.is_not_found() || e.lxd_message().contains("not found") => {
                Err(LxdError::ImageNotFound { image: image.to_string(), source: Some(Box::new(e)) }.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn copy(&self, source: &str, name: &str, spec: &CopySpec) -> Result<(), ProviderError> {
        let src = self.instance(source).await?.ok_or_else(|| ProviderError::NoSuchInstance(source.to_string()))?;
        // A running source is copied from a snapshot (on btrfs: a subvolume snapshot), so the copy
        // is one consistent point in time; the snapshot goes again at once.
        let snapshot = (src["status"] != "Stopped").then(|| format!("nexus-copy-{name}"));
        if let Some(snap) = &snapshot {
            let body = json!({"name": snap, "stateful": false});
            self.call(Method::POST, &format!("/1.0/instances/{}/snapshots", encode(source)), Some(body)).await?;
        }
        tracing::debug!(source, name, "copy: source ready");
        let result = self.copy_from(source, snapshot.as_deref(), name, spec).await;
        tracing::debug!(source, name, "copy: copied and scrubbed");
        if let Some(snap) = &snapshot {
            let path = format!("/1.0/instances/{}/snapshots/{}", encode(source), encode(snap));
            if let Err(e) = self.call(Method::DELETE, &path, None).await {
                tracing::warn!(instance = source, snapshot = %snap, error = %error_chain(&e), "deleting a copy's snapshot failed");
            }
        }
        if result.is_err() {
            let _ = self.force_delete(name).await;
        }
        result
    }

    async fn image_id(&self, image: &str) -> Result<String, ProviderError> {
        Ok(self.image_fingerprint(image).await?.unwrap_or_else(|| image.to_string()))
    }

    async fn list_with(&self, key: &str) -> Result<Vec<(String, String)>, ProviderError> {
        let all = self.call(Method::GET, "/1.0/instances?recursion=1", None).await?;
        Ok(all
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                let value = i["config"][key].as_str().filter(|v| !v.is_empty())?;
                Some((i["name"].as_str()?.to_string(), value.to_string()))
            })
            .collect())
    }

    async fn disk_usage(&self, name: &str) -> Result<Option<u64>, ProviderError> {
        // LXD reports it where the pool can count (btrfs with quotas, zfs, lvm); else no `usage`.
        match self.call(Method::GET, &format!("/1.0/instances/{}/state", encode(name)), None).await {
            Ok(state) => Ok(state["disk"]["root"]["usage"].as_u64().filter(|u| *u > 0)),
            Err(e) if e.is_not_found() => Err(ProviderError::NoSuchInstance(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    async fn start(&self, name: &str) -> Result<(), ProviderError> {
        let inst = self.instance(name).await?.ok_or_else(|| ProviderError::NoSuchInstance(name.to_string()))?;
        if inst["status"] == "Running" {
            return Ok(());
        }
        match self.set_state(name, json!({"action": "start"})).await {
            Err(e) if e.lxd_message().contains("already running") => Ok(()),
            // LXD polices a NIC's egress with tc's `police` action, which some kernels lack.
            Err(e) if e.lxd_message().contains("tc filter") && self.drop_egress_limit(name).await? => {
                match self.set_state(name, json!({"action": "start"})).await {
                    Err(e) if e.lxd_message().contains("already running") => Ok(()),
                    other => Ok(other?),
                }
            }
            other => Ok(other?),
        }
    }

    async fn stop(&self, name: &str) -> Result<(), ProviderError> {
        let Some(inst) = self.instance(name).await? else {
            return Err(ProviderError::NoSuchInstance(name.to_string()));
        };
        if inst["status"] == "Stopped" {
            return Ok(());
        }
        let graceful = self.set_state(name, json!({"action": "stop", "timeout": STOP_TIMEOUT_SECS})).await;
        match graceful {
            Ok(()) => Ok(()),
            Err(e) if e.lxd_message().contains("not running") => Ok(()),
            Err(e) => {
                tracing::info!(instance = name, error = %error_chain(&e), "clean shutdown failed; forcing");
                match self.set_state(name, json!({"action": "stop", "force": true, "timeout": -1})).await {
                    Err(e) if e.lxd_message().contains("not running") => Ok(()),
                    other => Ok(other?),
                }
            }
        }
    }

    async fn delete(&self, name: &str) -> Result<(), ProviderError> {
        Ok(self.force_delete(name).await?)
    }

    async fn state(&self, name: &str) -> Result<Option<InstanceInfo>, ProviderError> {
        Ok(self
            .instance(name)
            .await?
            .map(|i| InstanceInfo { name: name.to_string(), running: i["status"] == "Running" }))
    }

    async fn console_log(&self, name: &str) -> Result<String, ProviderError> {
        // Not LXD's JSON envelope: the log itself (the ring buffer while running, the file it
        // was dumped to at the last stop otherwise).
        let path = format!("/1.0/instances/{}/console", encode(name));
        let (status, bytes) = self.raw(Method::GET, &path, None).await?;
        if status < 400 {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        // A container that never started has no log file yet.
        if status == 404 {
            return match self.instance(name).await? {
                Some(_) => Ok(String::new()),
                None => Err(ProviderError::NoSuchInstance(name.to_string())),
            };
        }
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned());
        Err(LxdError::Api { method: "GET".into(), path, status, message }.into())
    }

    async fn ipv4(&self, name: &str) -> Result<Option<Ipv4Addr>, ProviderError> {
        let inst = self.instance(name).await?.ok_or_else(|| ProviderError::NoSuchInstance(name.to_string()))?;
        let nic = &inst["expanded_devices"]["eth0"];
        let hwaddr = inst["config"]["volatile.eth0.hwaddr"].as_str().unwrap_or("");
        if let (Some(network), false) = (nic["network"].as_str(), hwaddr.is_empty()) {
            // Root in the container sets what eth0 reports; the node's own DHCP lease for the MAC
            // LXD gave the NIC (and filters on) is what the tunnel may trust.
            let net = self.call(Method::GET, &format!("/1.0/networks/{}", encode(network)), None).await?;
            let leases = self.call(Method::GET, &format!("/1.0/networks/{}/leases", encode(network)), None).await?;
            return Ok(leased_ipv4(&leases, hwaddr, net["config"]["ipv4.address"].as_str().unwrap_or("")));
        }
        // A NIC on an unmanaged bridge has no lease LXD knows of: what the container reports.
        let state = match self.call(Method::GET, &format!("/1.0/instances/{}/state", encode(name)), None).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Err(ProviderError::NoSuchInstance(name.to_string())),
            Err(e) => return Err(e.into()),
        };
        Ok(global_ipv4(&state))
    }

    async fn endpoint(&self, name: &str, port: u16) -> Result<Option<SocketAddr>, ProviderError> {
        Ok(self.ipv4(name).await?.map(|ip| SocketAddr::from((ip, port))))
    }

    async fn exec(
        &self,
        name: &str,
        argv: &[String],
        user: Option<(u32, u32)>,
        env: &[(String, String)],
        cwd: Option<&str>,
    ) -> Result<ExecOutput, ProviderError> {
        let environment: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let command = with_timeout(argv, EXEC_TIMEOUT);
        let mut body = json!({
            "command": command,
            "environment": environment,
            "wait-for-websocket": false,
            "interactive": false,
            "record-output": true,
        });
        if let Some((uid, gid)) = user {
            body["user"] = uid.into();
            body["group"] = gid.into();
        }
        if let Some(cwd) = cwd {
            body["cwd"] = cwd.into();
        }
        let path = format!("/1.0/instances/{}/exec", encode(name));
        // `timeout` ends the command; this ends the wait should LXD itself hang.
        let waited =
            tokio::time::timeout(EXEC_TIMEOUT + Duration::from_secs(60), self.call(Method::POST, &path, Some(body)));
        let answer = waited.await.map_err(|_| LxdError::Unexpected {
            what: format!("exec in {name}"),
            detail: format!("no answer within {} s", (EXEC_TIMEOUT + Duration::from_secs(60)).as_secs()),
        })?;
        let meta = match answer {
            Err(e) if e.is_not_found() => return Err(ProviderError::NoSuchInstance(name.to_string())),
            Err(e) if e.lxd_message().contains("not running") => {
                return Err(ProviderError::NotRunning(name.to_string()))
            }
            other => other?,
        };
        let code = meta["return"].as_i64().ok_or_else(|| LxdError::Unexpected {
            what: format!("exec in {name}"),
            detail: format!("no exit status in {meta}"),
        })? as i32;
        let log = |fd: &str| meta["output"][fd].as_str().map(str::to_string);
        let (stdout, stderr) = tokio::join!(self.take_log(log("1")), self.take_log(log("2")));
        Ok(ExecOutput { code, stdout: stdout?, stderr: stderr? })
    }

    async fn mount(&self, name: &str, mounts: &[Mount]) -> Result<(), ProviderError> {
        let inst = self.instance(name).await?.ok_or_else(|| ProviderError::NoSuchInstance(name.to_string()))?;
        let mut changed = serde_json::Map::new();
        for m in mounts {
            let want = disk_device(m);
            if inst["devices"][&m.device] != want {
                changed.insert(m.device.clone(), want);
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        // PATCH merges devices by name: the instance's other devices stay.
        let body = json!({"devices": changed});
        match self.call(Method::PATCH, &format!("/1.0/instances/{}", encode(name)), Some(body)).await {
            Err(e) if e.is_not_found() => Err(ProviderError::NoSuchInstance(name.to_string())),
            other => Ok(other.map(drop)?),
        }
    }

    async fn host_ids(&self, name: &str, uid: u32, gid: u32) -> Result<Option<(u32, u32)>, ProviderError> {
        let inst = self.instance(name).await?.ok_or_else(|| ProviderError::NoSuchInstance(name.to_string()))?;
        Ok(map_ids(&inst["config"], uid, gid))
    }

    async fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), ProviderError> {
        match self.patch_config(name, key, value).await {
            Err(e) if e.is_not_found() => Err(ProviderError::NoSuchInstance(name.to_string())),
            other => Ok(other?),
        }
    }

    async fn get_config(&self, name: &str, key: &str) -> Result<Option<String>, ProviderError> {
        let inst = self.instance(name).await?.ok_or_else(|| ProviderError::NoSuchInstance(name.to_string()))?;
        Ok(inst["config"][key].as_str().map(str::to_string))
    }

    fn exec_hint(&self, name: &str, command: &str) -> String {
        format!("`lxc exec {name} --project {} -- {command}`", self.project)
    }

    fn log_hint(&self, name: &str) -> String {
        let p = &self.project;
        format!("`lxc console {name} --project {p} --show-log` and `lxc info {name} --project {p} --show-log`")
    }

    fn network_hint(&self) -> String {
        "check the LXD bridge and its DHCP on the node (`lxc network list`, `lxc network info <bridge>`)".into()
    }
}

impl LxdProvider {
    /// Reads and deletes one recorded exec output file.
    async fn take_log(&self, path: Option<String>) -> Result<String, LxdError> {
        let Some(path) = path else {
            return Ok(String::new());
        };
        let (status, bytes, truncated) = self.raw_capped(Method::GET, &path, MAX_EXEC_OUTPUT).await?;
        if status >= 400 {
            return Err(LxdError::Api {
                method: "GET".into(),
                path,
                status,
                message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            });
        }
        // Leaving it would pile up files under the instance's log directory.
        if let Err(e) = self.raw(Method::DELETE, &path, None).await {
            tracing::debug!(path, error = %error_chain(&e), "deleting exec output failed");
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if truncated {
            tracing::warn!(path, max = MAX_EXEC_OUTPUT, "exec output cut at the agent's limit");
            text.push_str(TRUNCATED);
        }
        Ok(text)
    }
}

/// Reads `body` up to `cap` bytes; true when there was more (left unread).
async fn read_capped<B>(mut body: B, cap: usize) -> Result<(Vec<u8>, bool), B::Error>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        let room = cap - out.len();
        if data.len() > room {
            out.extend_from_slice(&data[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&data);
    }
    Ok((out, false))
}

/// `argv` run under coreutils' `timeout`, which kills it (and, after 10 s more, KILLs it) once
/// `limit` has passed, so no command a workspace can slow down holds an exec open for ever.
fn with_timeout(argv: &[String], limit: Duration) -> Vec<String> {
    let mut command = vec![TIMEOUT_BIN.to_string(), "--kill-after=10".into(), format!("{}s", limit.as_secs())];
    command.extend(argv.iter().cloned());
    command
}

/// The disk device LXD needs for `m`.
fn disk_device(m: &Mount) -> Value {
    let mut device = json!({"type": "disk", "source": m.source.to_string_lossy(), "path": m.path});
    if m.readonly {
        device["readonly"] = "true".into();
    }
    device
}

/// The node's ids for `(uid, gid)` inside an instance with `config`: a privileged container's are
/// the same; an unprivileged one's come from the id map LXD chose for its next (or current, or
/// last) start. `None` when the config holds no map.
fn map_ids(config: &Value, uid: u32, gid: u32) -> Option<(u32, u32)> {
    if config["security.privileged"] == "true" {
        return Some((uid, gid));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Range {
        isuid: bool,
        isgid: bool,
        hostid: u64,
        nsid: u64,
        maprange: u64,
    }
    let map = |ranges: &[Range], id: u32, user: bool| {
        let id = u64::from(id);
        ranges
            .iter()
            .filter(|r| if user { r.isuid } else { r.isgid })
            .find(|r| r.nsid <= id && id < r.nsid + r.maprange)
            .and_then(|r| u32::try_from(r.hostid + (id - r.nsid)).ok())
    };
    ["volatile.idmap.next", "volatile.idmap.current", "volatile.last_state.idmap"].iter().find_map(|key| {
        let ranges: Vec<Range> = serde_json::from_str(config[*key].as_str()?).ok()?;
        Some((map(&ranges, uid, true)?, map(&ranges, gid, false)?))
    })
}

/// LXD refused because another operation on the instance is still running.
fn is_busy(e: &LxdError) -> bool {
    e.lxd_message().contains("is busy running")
}

/// A decoded LXD answer.
enum Answer {
    /// Done; the metadata.
    Sync(Value),
    /// A background operation's path.
    Async(String),
}

/// eth0's first global IPv4 address in an instance state document.
fn global_ipv4(state: &Value) -> Option<Ipv4Addr> {
    state["network"]["eth0"]["addresses"]
        .as_array()?
        .iter()
        .filter(|a| a["family"] == "inet" && a["scope"] == "global")
        .find_map(|a| a["address"].as_str()?.parse().ok())
}

/// The address the bridge's DHCP leased to `hwaddr`, if it lies in the bridge's subnet `cidr`
/// (`10.87.0.1/24`) and is not the bridge's own.
fn leased_ipv4(leases: &Value, hwaddr: &str, cidr: &str) -> Option<Ipv4Addr> {
    let (gateway, prefix) = cidr.split_once('/')?;
    let gateway: Ipv4Addr = gateway.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| (8..=30).contains(p))?;
    let mask = u32::MAX << (32 - prefix);
    leases
        .as_array()?
        .iter()
        .filter(|l| l["hwaddr"].as_str().is_some_and(|h| h.eq_ignore_ascii_case(hwaddr)))
        .filter_map(|l| l["address"].as_str()?.parse::<Ipv4Addr>().ok())
        .find(|ip| {
            let (ip, gw) = (u32::from(*ip), u32::from(gateway));
            ip & mask == gw & mask && ip != gw && ip & !mask != 0 && ip & !mask != !mask
        })
}

/// Normalizes a memory limit (`4GB`, `4 gb`, `512Mi`, `2GiB`, `50%`) into LXD's syntax.
///
/// Decimal suffixes (`kB MB GB TB`) stay decimal, `Ki Mi Gi Ti` (with or without a trailing `B`)
/// are binary, as in Kubernetes; a bare number is bytes.
pub(crate) fn memory_limit(input: &str) -> Result<String, ProviderError> {
    let s: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    let bad = |why: &str| ProviderError::InvalidSpec {
        field: "memory",
        message: format!("{input:?} {why}"),
        hint: "use a memory limit such as `4GB`, `512MiB` or `50%`".into(),
    };
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad("does not start with a number"))?;
    if value <= 0.0 {
        return Err(bad("is not positive"));
    }
    let unit = match unit.to_ascii_lowercase().as_str() {
        "%" => "%",
        "" | "b" => "B",
        "k" | "kb" => "kB",
        "m" | "mb" => "MB",
        "g" | "gb" => "GB",
        "t" | "tb" => "TB",
        "ki" | "kib" => "KiB",
        "mi" | "mib" => "MiB",
        "gi" | "gib" => "GiB",
        "ti" | "tib" => "TiB",
        _ => return Err(bad("has an unknown unit")),
    };
    if unit == "B" && num.contains('.') {
        return Err(bad("is a fractional number of bytes"));
    }
    Ok(format!("{num}{unit}"))
}

/// Percent-encodes everything but unreserved characters (names go into paths and queries).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// FNV-1a, for a short stable tag derived from the project name.
fn fnv32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits() {
        for (input, want) in [
            ("4GB", "4GB"),
            ("4gb", "4GB"),
            ("4 GB", "4GB"),
            ("4G", "4GB"),
            ("512MiB", "512MiB"),
            ("512Mi", "512MiB"),
            ("1.5GiB", "1.5GiB"),
            ("50%", "50%"),
            ("1048576", "1048576B"),
        ] {
            assert_eq!(memory_limit(input).unwrap(), want, "{input}");
        }
        for bad in ["", "GB", "4XB", "-1GB", "0GB", "1.5", "4GB;rm"] {
            assert!(memory_limit(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn exec_output_is_read_up_to_the_cap() {
        let body = Full::new(Bytes::from(vec![b'x'; 5000]));
        let (read, cut) = read_capped(body, 1000).await.unwrap();
        assert_eq!((read.len(), cut), (1000, true));
        let (read, cut) = read_capped(Full::new(Bytes::from_static(b"short")), 1000).await.unwrap();
        assert_eq!((read, cut), (b"short".to_vec(), false));
        let (read, cut) = read_capped(Full::new(Bytes::from(vec![b'y'; 1000])), 1000).await.unwrap();
        assert_eq!((read.len(), cut), (1000, false));
    }

    #[test]
    fn execs_run_under_an_absolute_timeout() {
        let argv = vec!["sh".to_string(), "-c".into(), "true".into()];
        assert_eq!(
            with_timeout(&argv, Duration::from_secs(90)),
            ["/usr/bin/timeout", "--kill-after=10", "90s", "sh", "-c", "true"]
        );
    }

    #[test]
    fn the_tunnel_target_is_the_leased_address_inside_the_bridge_subnet() {
        let leases = json!([
            {"hostname": "nexusbr0.gw", "hwaddr": "", "address": "10.87.0.1", "type": "gateway"},
            {"hostname": "ws-a", "hwaddr": "00:16:3e:aa:bb:cc", "address": "10.87.0.23", "type": "dynamic"},
            {"hostname": "ws-b", "hwaddr": "00:16:3e:11:22:33", "address": "192.168.1.1", "type": "dynamic"},
        ]);
        let cidr = "10.87.0.1/24";
        assert_eq!(leased_ipv4(&leases, "00:16:3E:AA:BB:CC", cidr), Some(Ipv4Addr::new(10, 87, 0, 23)));
        assert_eq!(leased_ipv4(&leases, "00:16:3e:11:22:33", cidr), None, "outside the bridge subnet");
        assert_eq!(leased_ipv4(&leases, "00:16:3e:00:00:00", cidr), None, "no lease yet");
        assert_eq!(leased_ipv4(&leases, "", cidr), None, "the gateway entry has no MAC to match");
    }

    #[test]
    fn urls_carry_the_project() {
        let p = LxdProvider::new("/nonexistent", "nexus test");
        assert_eq!(p.url("/1.0/instances"), "/1.0/instances?project=nexus%20test");
        assert_eq!(p.url("/1.0/instances?recursion=1"), "/1.0/instances?recursion=1&project=nexus%20test");
        assert_eq!(encode("ws-1/../x"), "ws-1%2F..%2Fx");
    }

    #[test]
    fn finds_the_global_ipv4() {
        let state = json!({"network": {"eth0": {"addresses": [
            {"family": "inet6", "address": "fe80::1", "scope": "link"},
            {"family": "inet", "address": "10.87.0.5", "scope": "global"},
        ]}}});
        assert_eq!(global_ipv4(&state), Some(Ipv4Addr::new(10, 87, 0, 5)));
        assert_eq!(global_ipv4(&json!({"network": null})), None);
    }

    #[test]
    fn hints_name_lxc_commands_in_the_project() {
        let p = LxdProvider::new("/nonexistent", "node-b");
        assert_eq!(p.exec_hint("ws-1", "git --version"), "`lxc exec ws-1 --project node-b -- git --version`");
        assert!(p.log_hint("ws-1").contains("lxc console ws-1 --project node-b --show-log"));
        let missing = ProviderError::from(LxdError::ImageNotFound { image: "nexus-base".into(), source: None });
        assert!(missing.hint().unwrap().contains("nexus node init"));
        assert!(p.check_limits(2, "4 GB").is_ok());
        let bad = p.check_limits(2, "lots").unwrap_err();
        assert!(bad.hint().unwrap().contains("`4GB`"), "{bad}");
    }

    #[test]
    fn container_ids_map_through_the_idmap() {
        // What LXD 5.0.2 put on a fresh copy of the template (`volatile.idmap.base` said "0").
        let map = r#"[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":10000001},{"Isuid":false,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":10000001}]"#;
        let config = json!({"volatile.idmap.base": "0", "volatile.idmap.next": map, "volatile.last_state.idmap": "[]"});
        assert_eq!(map_ids(&config, 1000, 1000), Some((101000, 101000)));
        let split = r#"[{"Isuid":true,"Isgid":false,"Hostid":200000,"Nsid":0,"Maprange":65536},{"Isuid":false,"Isgid":true,"Hostid":300000,"Nsid":0,"Maprange":65536}]"#;
        assert_eq!(map_ids(&json!({"volatile.last_state.idmap": split}), 1000, 1001), Some((201000, 301001)));
        assert_eq!(map_ids(&json!({"security.privileged": "true"}), 1000, 1000), Some((1000, 1000)));
        assert_eq!(map_ids(&json!({"volatile.idmap.next": "[]"}), 1000, 1000), None);
        assert_eq!(map_ids(&json!({}), 1000, 1000), None);
    }

    #[test]
    fn mounts_are_disk_devices() {
        let m = Mount { device: "d".into(), source: "/var/lib/x".into(), path: "/opt/x".into(), readonly: true };
        assert_eq!(
            disk_device(&m),
            json!({"type": "disk", "source": "/var/lib/x", "path": "/opt/x", "readonly": "true"})
        );
        let rw = Mount { readonly: false, ..m };
        assert_eq!(disk_device(&rw), json!({"type": "disk", "source": "/var/lib/x", "path": "/opt/x"}));
    }

    #[tokio::test]
    async fn missing_socket_is_a_clear_error() {
        let p = LxdProvider::new("/nonexistent/lxd.socket", "x");
        let err = p.list().await.unwrap_err();
        assert!(matches!(err, ProviderError::Lxd(LxdError::Connect { .. })), "{err:?}");
    }
}
