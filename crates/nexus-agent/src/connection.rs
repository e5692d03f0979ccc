//! The agent's control loop: one outbound WebSocket to the server carrying `Hello`, heartbeats and
//! reports up, and commands and tunnel requests down; reconnects with backoff until shut down.
//!
//! Commands for one workspace run one after another in arrival order (a queue per workspace with a
//! worker that exits when its queue is empty); different workspaces run concurrently. Commands
//! keep running across reconnects, and reports that could not be sent wait for the next
//! connection (the server drops stale ones by generation).
//!
//! Each `OpenTunnel` gets its own task: TCP to the workspace port, a second WebSocket to
//! `TUNNEL_PATH/<id>`, bytes copied both ways as binary frames.
//!
//! Every WebSocket carries the node's own credential, never the join token: without one (none in
//! the config, none in the state dir) the agent first enrols with the join token (`credential`).
//! A refused credential (the operator revoked the node) ends the agent; a second agent for the
//! same node is refused while the first is connected, and retries until it is gone.

mod tunnel;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nexus_types::diagnostics::{error_chain, lock, Hint};
use nexus_types::protocol::{
    AgentMessage, Command, InventoryItem, Op, Outcome, Report, ServerMessage, CONNECT_PATH, TUNNEL_PATH,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::provider::Provider;
use crate::provision::{self, Settings};
use crate::AgentError;

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);

/// First reconnect delay; doubles per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Reconnect delay after the server refused a second connection for this node: the first one
/// has to go (or go silent) first.
const CONFLICT_RETRY: Duration = Duration::from_secs(10);
/// Limit for the TCP + TLS + upgrade exchange, and for the `Welcome`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The WebSocket type of both the control connection and tunnels.
type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How the agent reaches the server and what it tells it.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `http://host:port` or `https://host:port` (WebSocket URLs are derived: `ws`/`wss`).
    pub server_url: String,
    /// Enrols the node when it has no credential yet (never sent on a WebSocket); may be empty
    /// when it has one.
    pub join_token: String,
    /// The node's credential, when known already (skips the state dir and enrolment).
    pub credential: Option<String>,
    /// Where the credential is kept across restarts (`<dir>/credential`, mode 0600); `None` keeps
    /// the one enrolment gives in memory for this run only (tests, embedded agents).
    pub state_dir: Option<PathBuf>,
    /// This node's name, unique per server.
    pub node_name: String,
    /// LXD project the workspaces live in (reported in `Hello`).
    pub lxd_project: String,
    /// Image alias used when a spec names none.
    pub base_image: String,
    /// Heartbeat interval (default 2 s); the server's `Welcome` can shorten it.
    pub heartbeat: Duration,
    /// Run when the container provider stops answering, to bring it back (`systemctl restart
    /// lxd`, say); `None`: only report it. At most once per [`PROVIDER_RESTART_EVERY`].
    pub provider_restart: Option<Vec<String>>,
    /// Most workspaces this node runs at once (told to the server in the hello); `None`: no bound.
    pub max_workspaces: Option<u32>,
}

impl AgentConfig {
    /// A config with the default project (`nexus`), base image and heartbeat.
    pub fn new(server_url: impl Into<String>, join_token: impl Into<String>, node_name: impl Into<String>) -> Self {
        AgentConfig {
            server_url: server_url.into(),
            join_token: join_token.into(),
            credential: None,
            state_dir: None,
            node_name: node_name.into(),
            lxd_project: nexus_types::defaults::LXD_PROJECT.into(),
            base_image: nexus_types::defaults::BASE_IMAGE_ALIAS.into(),
            heartbeat: DEFAULT_HEARTBEAT,
            provider_restart: None,
            max_workspaces: None,
        }
    }
}

/// How long the provider has to answer that question.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed questions in a row before the node says it is degraded: a busy LXD (a burst of creates)
/// answers slowly now and then, which is no outage.
const HEALTH_FAILURES: u32 = 3;
/// Least time between two runs of [`AgentConfig::provider_restart`].
pub const PROVIDER_RESTART_EVERY: Duration = Duration::from_secs(30);

/// The container provider's health as this session last saw it, and when it last tried a restart.
#[derive(Default)]
struct Health {
    degraded: Option<String>,
    failures: u32,
    restarted: Option<Instant>,
}

/// Whether the provider answers; `Some(why)` when it does not.
async fn provider_problem<P: Provider>(provider: &P) -> Option<String> {
    match tokio::time::timeout(HEALTH_TIMEOUT, provider.list()).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("LXD does not answer: {}", error_chain(&e))),
        Err(_) => Some(format!("LXD did not answer within {} s", HEALTH_TIMEOUT.as_secs())),
    }
}

/// Runs the operator's restart command for the provider in the background (heartbeats go on
/// meanwhile); what it printed goes to the log.
fn restart_provider(argv: Vec<String>) {
    tokio::spawn(async move { run_restart(&argv).await });
}

async fn run_restart(argv: &[String]) {
    let Some((program, args)) = argv.split_first() else { return };
    tracing::warn!(command = %argv.join(" "), "LXD does not answer: running the restart command");
    let run = tokio::process::Command::new(program).args(args).stdin(std::process::Stdio::null()).output();
    match tokio::time::timeout(Duration::from_secs(60), run).await {
        Ok(Ok(out)) if out.status.success() => tracing::info!("the LXD restart command finished"),
        Ok(Ok(out)) => {
            tracing::error!(code = ?out.status.code(), stderr = %String::from_utf8_lossy(&out.stderr).trim(), "the LXD restart command failed")
        }
        Ok(Err(e)) => tracing::error!(error = %e, "could not run the LXD restart command"),
        Err(_) => tracing::error!("the LXD restart command did not finish within 60 s"),
    }
}

/// Whether `http://`/`ws://` to a host other than this machine is allowed (`nexus agent --insecure`).
static PLAIN_HTTP_ALLOWED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Allows (`--insecure`) plain `http://` to a server on another machine for every agent in this
/// process; refused by default, since the join token and the node's credential would cross the
/// network readable. Loopback is always allowed.
pub fn allow_plain_http(allowed: bool) {
    PLAIN_HTTP_ALLOWED.store(allowed, std::sync::atomic::Ordering::Relaxed);
}

/// Derives the WebSocket URL of `path` from the server's base URL; plain HTTP to another machine
/// is refused unless [`allow_plain_http`].
fn ws_url(server_url: &str, path: &str) -> Result<String, AgentError> {
    let bad = |reason: &str| AgentError::ServerUrl { url: server_url.to_string(), reason: reason.to_string() };
    let url = server_url.trim().trim_end_matches('/');
    let (scheme, rest) = [("http://", "ws://"), ("https://", "wss://"), ("ws://", "ws://"), ("wss://", "wss://")]
        .iter()
        .find_map(|(from, to)| url.strip_prefix(from).map(|rest| (*to, rest)))
        .ok_or_else(|| bad("it must start with `http://` or `https://`"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("it has no host"));
    }
    if rest.contains(['?', '#']) || rest.contains(char::is_whitespace) {
        return Err(bad("it must be a plain base URL without query, fragment or spaces"));
    }
    // The join token and the node's credential travel on these connections (issue 10, item 6).
    let insecure = PLAIN_HTTP_ALLOWED.load(std::sync::atomic::Ordering::Relaxed)
        || nexus_types::transport::env_flag("NEXUS_INSECURE");
    if !insecure {
        if let Some(why) = nexus_types::transport::plain_http_refusal(url) {
            return Err(bad(&format!("{why}; {}", nexus_types::transport::PLAIN_HTTP_HINT)));
        }
    }
    Ok(format!("{scheme}{rest}{path}"))
}

/// What every task of a running agent shares.
struct Shared<P> {
    config: AgentConfig,
    provider: Arc<P>,
    settings: Settings,
    auth: HeaderValue,
    tunnel_base: String,
    /// Messages for the server: command reports and service states.
    reports: mpsc::UnboundedSender<AgentMessage>,
    /// (Workspace id, port) → address tunnels last reached it at; dropped on every command for the
    /// workspace, since a restart can bring a new DHCP lease.
    endpoints: Mutex<HashMap<(String, u16), std::net::SocketAddr>>,
    /// Workspace id → its service supervisor, aborted when the workspace is stopped or deleted.
    supervisors: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Workspace id → its command queue, present while the queue's worker runs.
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Command>>>,
}

/// Runs the agent until `shutdown` resolves: connects, serves commands and tunnels, reconnects.
///
/// Returns an error only for configuration that can never work (a malformed `server_url` or join
/// token); everything else is logged and retried. On shutdown the WebSocket is closed cleanly and
/// running commands and tunnels are dropped (commands are idempotent; the server re-sends them).
pub async fn run<P: Provider>(
    config: AgentConfig,
    provider: Arc<P>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let settings = Settings::new(config.base_image.clone());
    run_with_settings(config, settings, provider, shutdown).await
}

/// [`run`] with the caller's provisioning settings: the node's CA certificates, runtime store and
/// caches as the agent's flags give them (see [`Settings`]). `config.base_image` replaces
/// `settings.base_image`.
pub async fn run_with_settings<P: Provider>(
    config: AgentConfig,
    mut settings: Settings,
    provider: Arc<P>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    settings.base_image = config.base_image.clone();
    let connect_url = ws_url(&config.server_url, CONNECT_PATH)?;
    let tunnel_base = ws_url(&config.server_url, TUNNEL_PATH)?;
    let mut shutdown = Box::pin(shutdown);
    let Some(credential) = credential(&config, &mut shutdown).await? else {
        tracing::info!("agent shut down");
        return Ok(());
    };
    let auth = HeaderValue::from_str(&format!("Bearer {credential}")).map_err(|_| AgentError::JoinToken)?;
    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        settings,
        config,
        provider,
        auth,
        tunnel_base,
        reports: reports_tx,
        supervisors: Mutex::new(HashMap::new()),
        endpoints: Mutex::new(HashMap::new()),
        queues: Mutex::new(HashMap::new()),
    });
    // Dropping the set on return aborts command workers and tunnels.
    let mut tasks = JoinSet::new();
    {
        // Build the base image's template ahead of the first create (slow once, fast after).
        let shared = shared.clone();
        tasks.spawn(async move {
            let image = &shared.config.base_image;
            let result = async {
                shared.provider.ensure_project().await?;
                shared.provider.warm(image).await
            };
            match result.await {
                Ok(()) => tracing::debug!(image, "base image ready"),
                Err(e) => tracing::warn!(image, error = %error_chain(&e), hint = e.hint().unwrap_or_default(), "preparing the base image failed; creates will be slower"),
            }
        });
    }
    let mut pending = VecDeque::new();
    let mut backoff = MIN_BACKOFF;
    let mut last_failure: Option<String> = None;
    loop {
        let end = session(&shared, &connect_url, &mut tasks, &mut reports_rx, &mut pending, &mut shutdown).await;
        let (error, welcomed) = match end {
            End::Shutdown => {
                tracing::info!("agent shut down");
                return Ok(());
            }
            End::Lost { error, welcomed } => (error, welcomed),
        };
        if welcomed {
            backoff = MIN_BACKOFF;
            last_failure = None;
        }
        let chain = error_chain(&error);
        let hint = error.hint().unwrap_or_default();
        let delay = if let AgentError::Unauthorized { .. } = error {
            // The credential was good when enrolled: the operator revoked it. Nothing to retry.
            return Err(error);
        } else if let AgentError::AlreadyConnected { .. } = error {
            if last_failure.as_deref() != Some(chain.as_str()) {
                tracing::error!(error = %chain, hint, "the server refused this agent");
            }
            CONFLICT_RETRY
        } else {
            if last_failure.as_deref() != Some(chain.as_str()) {
                if welcomed {
                    tracing::warn!(error = %chain, "lost the connection to the server; reconnecting");
                } else {
                    tracing::warn!(error = %chain, hint, "cannot connect to the server; retrying with backoff");
                }
            } else {
                tracing::debug!(error = %chain, "still cannot connect");
            }
            let d = backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            d
        };
        last_failure = Some(chain);
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("agent shut down");
                return Ok(());
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The node's credential: the config's, the state dir's, or a new one from enrolling with the
/// join token (kept in the state dir). Enrolment is retried while the server is unreachable;
/// `None` when `shutdown` came first. A refused enrolment is an error: an operator has to act.
async fn credential<S: Future<Output = ()> + Unpin>(
    config: &AgentConfig,
    shutdown: &mut S,
) -> Result<Option<String>, AgentError> {
    if let Some(c) = &config.credential {
        return Ok(Some(c.clone()));
    }
    if let Some(dir) = &config.state_dir {
        if let Some(c) = crate::credential::load(dir, &config.server_url, &config.node_name)? {
            return Ok(Some(c));
        }
    }
    let join_token = config.join_token.trim();
    if join_token.is_empty() {
        return Err(AgentError::NoJoinToken);
    }
    HeaderValue::from_str(&format!("Bearer {join_token}")).map_err(|_| AgentError::JoinToken)?;
    let mut backoff = MIN_BACKOFF;
    let mut logged = false;
    loop {
        let attempt = crate::credential::enrol(&config.server_url, join_token, &config.node_name, &config.lxd_project);
        let result = tokio::select! {
            _ = &mut *shutdown => return Ok(None),
            r = attempt => r,
        };
        match result {
            Ok(credential) => {
                if let Some(dir) = &config.state_dir {
                    let stored = crate::credential::Stored {
                        server_url: config.server_url.clone(),
                        node_name: config.node_name.clone(),
                        credential: credential.clone(),
                    };
                    crate::credential::save(dir, &stored)?;
                }
                tracing::info!(node = %config.node_name, "enrolled with the server; this node has its own credential now");
                return Ok(Some(credential));
            }
            Err(e @ AgentError::EnrolUnreachable { .. }) => {
                if !logged {
                    tracing::warn!(error = %error_chain(&e), hint = e.hint().unwrap_or_default(), "cannot reach the server to enrol; retrying with backoff");
                    logged = true;
                }
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = &mut *shutdown => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How one connection ended.
enum End {
    /// `shutdown` resolved; the WebSocket was closed.
    Shutdown,
    /// The connection failed or broke; `welcomed` if it got as far as the `Welcome`.
    Lost { error: AgentError, welcomed: bool },
}

fn lost(error: AgentError, welcomed: bool) -> End {
    End::Lost { error, welcomed }
}

/// One connection, from dialing to its end.
async fn session<P: Provider, S: Future<Output = ()> + Unpin>(
    shared: &Arc<Shared<P>>,
    url: &str,
    tasks: &mut JoinSet<()>,
    reports: &mut mpsc::UnboundedReceiver<AgentMessage>,
    pending: &mut VecDeque<AgentMessage>,
    shutdown: &mut S,
) -> End {
    let setup = async {
        // Report the real inventory or nothing: an empty list from a broken provider would make the
        // server think every workspace vanished.
        shared.provider.ensure_project().await?;
        let inventory: Vec<InventoryItem> = shared
            .provider
            .list()
            .await?
            .into_iter()
            .map(|i| InventoryItem { workspace_id: i.name, running: i.running })
            .collect();
        let mut ws = dial(url, &shared.auth, false).await?;
        let hello = AgentMessage::Hello {
            node_name: shared.config.node_name.clone(),
            lxd_project: shared.config.lxd_project.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            inventory,
            max_workspaces: shared.config.max_workspaces,
        };
        send(&mut ws, &hello).await?;
        let heartbeat_secs =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, expect_welcome(&mut ws)).await.map_err(|_| {
                AgentError::Timeout {
                    what: "waiting for the server's welcome".into(),
                    secs: HANDSHAKE_TIMEOUT.as_secs(),
                }
            })??;
        Ok::<_, AgentError>((ws, heartbeat_secs))
    };
    let (mut ws, heartbeat_secs) = tokio::select! {
        _ = &mut *shutdown => return End::Shutdown,
        r = setup => match r {
            Ok(v) => v,
            Err(e) => return lost(e, false),
        },
    };
    tracing::info!(url, node = %shared.config.node_name, "connected to the server");

    let mut interval = heartbeat_interval(shared.config.heartbeat, heartbeat_secs);
    let mut tick = new_ticker(interval);
    let mut last_rx = Instant::now();
    let mut health = Health::default();
    loop {
        // Reports from before a reconnect, or queued while sending others.
        while let Some(msg) = pending.front() {
            if let Err(e) = send(&mut ws, msg).await {
                return lost(e, true);
            }
            pending.pop_front();
        }
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                if e.is_panic() {
                    tracing::error!(error = %e, "an agent task panicked");
                }
            }
        }
        tokio::select! {
            biased;
            _ = &mut *shutdown => {
                close(&mut ws, None).await;
                return End::Shutdown;
            }
            Some(msg) = reports.recv() => pending.push_back(msg),
            _ = tick.tick() => {
                // Pongs (answered by any WebSocket server that reads) prove the server is alive
                // even when it has nothing to say; a half-open TCP connection shows no error.
                let dead_after = (interval * 6).max(Duration::from_secs(15));
                if last_rx.elapsed() > dead_after {
                    return lost(AgentError::Protocol(format!("nothing heard from the server for {} s", dead_after.as_secs())), true);
                }
                if let Err(e) = send(&mut ws, &AgentMessage::Heartbeat).await {
                    return lost(e, true);
                }
                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                    return lost(e.into(), true);
                }
                // Asked at every heartbeat (a cheap list): an outage shows within seconds.
                let mut problem = provider_problem(shared.provider.as_ref()).await;
                health.failures = if problem.is_some() { health.failures + 1 } else { 0 };
                if problem.is_some() && health.failures < HEALTH_FAILURES && health.degraded.is_none() {
                    problem = None;
                }
                if problem.is_some() && health.degraded.is_some() {
                    // Still down: keep the first cause rather than resend on every wording change.
                    problem.clone_from(&health.degraded);
                }
                if problem != health.degraded {
                    let recovered = problem.is_none();
                    if let Err(e) = send(&mut ws, &AgentMessage::Health { degraded: problem.clone() }).await {
                        return lost(e, true);
                    }
                    health.degraded = problem;
                    if recovered {
                        // What LXD did while it was away is unknown: a fresh hello makes the
                        // server reconcile every workspace with what is there now.
                        tracing::info!("LXD answers again; reconnecting so the server reconciles this node's workspaces");
                        close(&mut ws, None).await;
                        return lost(AgentError::Protocol("reconnecting after LXD came back".into()), true);
                    }
                }
                if let (Some(why), Some(cmd)) = (&health.degraded, &shared.config.provider_restart) {
                    if health.restarted.is_none_or(|t| t.elapsed() >= PROVIDER_RESTART_EVERY) {
                        tracing::warn!(cause = %why, "node degraded");
                        health.restarted = Some(Instant::now());
                        restart_provider(cmd.clone());
                    }
                }
            }
            msg = ws.next() => {
                last_rx = Instant::now();
                let text = match msg {
                    None => return lost(AgentError::Protocol("the server closed the connection".into()), true),
                    Some(Err(e)) => return lost(e.into(), true),
                    Some(Ok(Message::Close(frame))) => {
                        answer_close(&mut ws).await;
                        let why = frame.map(|f| format!(" ({}: {})", f.code, f.reason)).unwrap_or_default();
                        return lost(AgentError::Protocol(format!("the server closed the connection{why}")), true);
                    }
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                };
                match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(ServerMessage::Welcome { heartbeat_secs }) => {
                        interval = heartbeat_interval(shared.config.heartbeat, heartbeat_secs);
                        tick = new_ticker(interval);
                    }
                    Ok(ServerMessage::Command(cmd)) => dispatch(shared, tasks, cmd),
                    Ok(ServerMessage::OpenTunnel { tunnel_id, workspace_id, port }) => {
                        tasks.spawn(tunnel::serve(shared.clone(), tunnel_id, workspace_id, port));
                    }
                    Err(e) => tracing::warn!(error = %e, message = %truncate(&text, 200), "ignoring a server message this agent does not understand"),
                }
            }
        }
    }
}

/// The interval actually used: ours, or the server's when that is shorter.
fn heartbeat_interval(ours: Duration, server_secs: u64) -> Duration {
    let ours = if ours.is_zero() { DEFAULT_HEARTBEAT } else { ours };
    if server_secs == 0 {
        ours
    } else {
        ours.min(Duration::from_secs(server_secs))
    }
}

fn new_ticker(every: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

async fn expect_welcome(ws: &mut Ws) -> Result<u64, AgentError> {
    loop {
        match ws.next().await {
            None => return Err(AgentError::Protocol("the server closed the connection before its welcome".into())),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(t))) => {
                return match serde_json::from_str::<ServerMessage>(&t) {
                    Ok(ServerMessage::Welcome { heartbeat_secs }) => Ok(heartbeat_secs),
                    _ => Err(AgentError::Protocol(format!("expected a welcome, got {}", truncate(&t, 200)))),
                };
            }
            Some(Ok(Message::Close(frame))) => {
                let why = frame.map(|f| format!(" ({}: {})", f.code, f.reason)).unwrap_or_default();
                return Err(AgentError::Protocol(format!("the server closed the connection before its welcome{why}")));
            }
            Some(Ok(_)) => {}
        }
    }
}

async fn send(ws: &mut Ws, msg: &AgentMessage) -> Result<(), AgentError> {
    let json = serde_json::to_string(msg).map_err(|e| AgentError::Protocol(format!("cannot encode a message: {e}")))?;
    ws.send(Message::text(json)).await.map_err(Into::into)
}

/// Dials a WebSocket with the bearer token, mapping the server's refusals to clear errors.
async fn dial(url: &str, auth: &HeaderValue, nodelay: bool) -> Result<Ws, AgentError> {
    if url.starts_with("wss://") {
        // rustls picks a provider from its crate features only when exactly one is enabled;
        // installing ring explicitly works whatever else the final binary links. An `Err` means
        // one is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let connect_err = |e| AgentError::Connect { url: url.to_string(), source: Box::new(e) };
    let mut req = url.into_client_request().map_err(connect_err)?;
    req.headers_mut().insert("authorization", auth.clone());
    let attempt = tokio_tungstenite::connect_async_with_config(req, None, nodelay);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
        Err(_) => {
            Err(AgentError::Timeout { what: format!("connecting to `{url}`"), secs: HANDSHAKE_TIMEOUT.as_secs() })
        }
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            if status == 401 {
                return Err(AgentError::Unauthorized { url: url.to_string() });
            }
            if status == 409 {
                return Err(AgentError::AlreadyConnected { url: url.to_string() });
            }
            let body = resp.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            Err(AgentError::Rejected { url: url.to_string(), status, body: truncate(&body, 300) })
        }
        Ok(Err(e)) => Err(connect_err(e)),
    }
}

/// Sends a close frame and waits briefly for the peer's answer, so both sides see a clean close.
async fn close(ws: &mut Ws, frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) {
    if ws.close(frame).await.is_err() {
        return;
    }
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// After the peer's close frame: sends tungstenite's queued reply and reads to the end.
async fn answer_close(ws: &mut Ws) {
    // `close()` refuses to send once the peer closed; a flush sends the queued reply.
    let _ = ws.flush().await;
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Queues `cmd` behind earlier commands for the same workspace, starting a worker if none runs.
fn dispatch<P: Provider>(shared: &Arc<Shared<P>>, tasks: &mut JoinSet<()>, cmd: Command) {
    let mut queues = lock(&shared.queues);
    let cmd = match queues.get(&cmd.workspace_id) {
        // A worker whose receiver is gone (it panicked) gives the command back.
        Some(tx) => match tx.send(cmd) {
            Ok(()) => return,
            Err(mpsc::error::SendError(cmd)) => cmd,
        },
        None => cmd,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let id = cmd.workspace_id.clone();
    tx.send(cmd).expect("receiver is alive");
    queues.insert(id.clone(), tx);
    tasks.spawn(worker(shared.clone(), id, rx));
}

/// Runs one workspace's commands in order; exits (and unregisters) when its queue is empty.
async fn worker<P: Provider>(shared: Arc<Shared<P>>, id: String, mut rx: mpsc::UnboundedReceiver<Command>) {
    loop {
        let cmd = match rx.try_recv() {
            Ok(cmd) => cmd,
            Err(_) => {
                // Senders only send while holding this lock, so an empty queue seen under it
                // stays empty: nothing can be lost between the check and the removal.
                let mut queues = lock(&shared.queues);
                match rx.try_recv() {
                    Ok(cmd) => cmd,
                    Err(_) => {
                        queues.remove(&id);
                        return;
                    }
                }
            }
        };
        let report = execute(&shared, cmd).await;
        // The receiver lives as long as `run`; if it is gone, so is everything else.
        let _ = shared.reports.send(AgentMessage::Report(report));
    }
}

/// Performs one command and says how it went.
async fn execute<P: Provider>(shared: &Shared<P>, cmd: Command) -> Report {
    let started = Instant::now();
    let provider = &*shared.provider;
    let id = cmd.workspace_id.as_str();
    if !matches!(cmd.op, Op::Ensure(_)) {
        stop_supervisor(shared, id);
    }
    lock(&shared.endpoints).retain(|(ws, _), _| ws != id);
    let (op, result) = match &cmd.op {
        Op::Ensure(spec) => {
            let result = provision::ensure(provider, id, spec, &shared.settings).await;
            if result.is_ok() {
                start_supervisor(shared, id, cmd.generation, spec);
            }
            ("ensure", result.map(|r| Outcome::Ready { commit: r.commit, host_key: r.host_key }))
        }
        Op::Stop => ("stop", provision::stop(provider, id).await.map(|()| Outcome::Stopped)),
        Op::Delete => ("delete", provision::delete(provider, id).await.map(|()| Outcome::Deleted)),
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let outcome = match result {
        Ok(outcome) => {
            tracing::info!(workspace = id, generation = cmd.generation, op, elapsed_ms, "command done");
            outcome
        }
        Err(f) => {
            tracing::warn!(workspace = id, generation = cmd.generation, op, elapsed_ms, error = %f.message, hint = %f.hint, "command failed");
            Outcome::Failed { message: f.message, hint: f.hint }
        }
    };
    Report { workspace_id: cmd.workspace_id, generation: cmd.generation, outcome }
}

/// (Re)starts the supervisor of a workspace's services; the workspace is up by now.
fn start_supervisor<P: Provider>(
    shared: &Shared<P>,
    id: &str,
    generation: i64,
    spec: &nexus_types::protocol::WorkspaceSpec,
) {
    stop_supervisor(shared, id);
    if spec.plan.services.is_empty() && spec.plan.setup.is_empty() {
        return;
    }
    let supervisor = crate::services::Supervisor::new(
        shared.provider.clone(),
        id.to_string(),
        generation,
        spec.repo_dir.clone(),
        spec.plan.clone(),
        shared.reports.clone(),
    )
    .with_prebuild(crate::prebuilds::SaveFrom::of(spec, &shared.settings.base_image, shared.settings.prebuilds));
    // Not part of the session's task set: services are watched across reconnects.
    let task = tokio::spawn(supervisor.run());
    lock(&shared.supervisors).insert(id.to_string(), task.abort_handle());
}

fn stop_supervisor<P>(shared: &Shared<P>, id: &str) {
    if let Some(task) = lock(&shared.supervisors).remove(id) {
        task.abort();
    }
}

#[cfg(test)]
mod tests;
