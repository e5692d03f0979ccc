//! Tests of the control loop against a minimal WebSocket server on `127.0.0.1:0`, with the
//! [`FakeProvider`] behind the agent.

use std::sync::atomic::{AtomicU32, Ordering};

use nexus_types::protocol::WorkspaceSpec;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::*;
use crate::fake::{FakeProvider, FAKE_COMMIT, FAKE_SSH_BANNER};

type ServerWs = WebSocketStream<TcpStream>;

/// A WebSocket the agent dialed, with the request's path and `Authorization` header.
struct Incoming {
    path: String,
    auth: Option<String>,
    ws: ServerWs,
}

/// Accepts agent connections; answers the first `reject_401` upgrades with 401.
struct TestServer {
    url: String,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    rejected: Arc<AtomicU32>,
}

impl TestServer {
    // The handshake callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    async fn start(reject_401: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, incoming) = mpsc::unbounded_channel();
        let rejected = Arc::new(AtomicU32::new(0));
        let counter = rejected.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let seen = Arc::new(Mutex::new((String::new(), None::<String>)));
                    let seen2 = seen.clone();
                    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                        let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_string());
                        *lock(&seen2) = (req.uri().path().to_string(), auth);
                        if counter.fetch_add(1, Ordering::SeqCst) < reject_401 {
                            let mut err = ErrorResponse::new(Some("bad token".into()));
                            *err.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                            return Err(err);
                        }
                        Ok(resp)
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await {
                        let (path, auth) = lock(&seen).clone();
                        let _ = tx.send(Incoming { path, auth, ws });
                    }
                });
            }
        });
        TestServer { url, incoming, rejected }
    }

    async fn next(&mut self) -> Incoming {
        tokio::time::timeout(Duration::from_secs(10), self.incoming.recv()).await.expect("no connection").unwrap()
    }

    /// Accepts the control connection, checks the `Hello` and welcomes the agent.
    async fn accept_agent(&mut self) -> (ServerWs, AgentMessage) {
        let mut inc = self.next().await;
        assert_eq!(inc.path, CONNECT_PATH);
        assert_eq!(inc.auth.as_deref(), Some("Bearer join-secret"));
        let hello = recv(&mut inc.ws).await;
        assert!(matches!(hello, AgentMessage::Hello { .. }), "{hello:?}");
        send_server(&mut inc.ws, &ServerMessage::Welcome { heartbeat_secs: 5 }).await;
        (inc.ws, hello)
    }
}

async fn send_server(ws: &mut ServerWs, msg: &ServerMessage) {
    ws.send(Message::text(serde_json::to_string(msg).unwrap())).await.unwrap();
}

/// The next agent message, skipping heartbeats.
async fn recv(ws: &mut ServerWs) -> AgentMessage {
    loop {
        let msg =
            tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("agent silent").unwrap().unwrap();
        if let Message::Text(t) = msg {
            let m: AgentMessage = serde_json::from_str(&t).unwrap();
            if m != AgentMessage::Heartbeat {
                return m;
            }
        }
    }
}

async fn recv_report(ws: &mut ServerWs) -> Report {
    match recv(ws).await {
        AgentMessage::Report(r) => r,
        other => panic!("expected a report, got {other:?}"),
    }
}

/// An agent that has its credential (`join-secret`) already, so it dials the WebSockets at once.
fn config(url: &str) -> AgentConfig {
    AgentConfig {
        provider_restart: None,
        max_workspaces: None,
        heartbeat: Duration::from_millis(50),
        credential: Some("join-secret".into()),
        ..AgentConfig::new(url, "", "node-1")
    }
}

fn spec() -> WorkspaceSpec {
    WorkspaceSpec {
        image: String::new(),
        cpu: 2,
        memory: "4GB".into(),
        disk: String::new(),
        authorized_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl".into(),
        repo_url: "https://git.example.com/acme/site.git".into(),
        repo_dir: "site".into(),
        branch: "main".into(),
        plan: Default::default(),
        git_token: None,
        upstream_url: None,
        git_author: None,
        owner_id: None,
        no_prebuild: false,
        repo_access_verified: false,
    }
}

fn command(id: &str, generation: i64, op: Op) -> ServerMessage {
    ServerMessage::Command(Command { workspace_id: id.into(), generation, op })
}

/// Starts the agent; returns the shutdown trigger and its join handle.
fn start_agent(
    url: &str,
    fake: &FakeProvider,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), AgentError>>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run(config(url), Arc::new(fake.clone()), async {
        let _ = stop_rx.await;
    }));
    (stop_tx, agent)
}

#[test]
fn websocket_urls() {
    assert_eq!(ws_url("http://127.0.0.1:8080", CONNECT_PATH).unwrap(), "ws://127.0.0.1:8080/api/v1/agent/connect");
    assert_eq!(ws_url("https://h/", CONNECT_PATH).unwrap(), "wss://h/api/v1/agent/connect");
    assert_eq!(ws_url("https://h/nexus", "/x").unwrap(), "wss://h/nexus/x");
    assert_eq!(ws_url(" ws://localhost:1 ", "/x").unwrap(), "ws://localhost:1/x");
    // Plain HTTP to another machine (issue 10 item 6): the join token and credential would be readable.
    let plain_to_another_machine = ["http://h:8080", "ws://10.0.0.5:1"];
    for bad in ["", "h:8080", "ftp://h", "http://", "http:///x", "http://h/?a=b", "http://h x"]
        .into_iter()
        .chain(plain_to_another_machine)
    {
        assert!(ws_url(bad, "/x").is_err(), "{bad}");
    }
}

#[test]
fn heartbeat_follows_the_shorter_interval() {
    assert_eq!(heartbeat_interval(Duration::from_secs(2), 5), Duration::from_secs(2));
    assert_eq!(heartbeat_interval(Duration::from_secs(2), 1), Duration::from_secs(1));
    assert_eq!(heartbeat_interval(Duration::from_secs(2), 0), Duration::from_secs(2));
    assert_eq!(heartbeat_interval(Duration::ZERO, 0), DEFAULT_HEARTBEAT);
}

#[tokio::test]
async fn hello_heartbeat_commands_and_clean_shutdown() {
    let mut server = TestServer::start(0).await;
    let fake = FakeProvider::new();
    fake.insert_instance("ws-old", true);
    let (stop, agent) = start_agent(&server.url, &fake);

    let (mut ws, hello) = server.accept_agent().await;
    let AgentMessage::Hello { node_name, lxd_project, version, inventory, .. } = hello else { unreachable!() };
    assert_eq!((node_name.as_str(), lxd_project.as_str()), ("node-1", "nexus"));
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(inventory, vec![InventoryItem { workspace_id: "ws-old".into(), running: true }]);

    // Heartbeats flow at the configured interval.
    let first = tokio::time::timeout(Duration::from_secs(2), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(serde_json::from_str::<AgentMessage>(first.to_text().unwrap()).unwrap(), AgentMessage::Heartbeat);

    send_server(&mut ws, &command("ws-a", 7, Op::Ensure(Box::new(spec())))).await;
    let report = recv_report(&mut ws).await;
    assert_eq!(report.workspace_id, "ws-a");
    assert_eq!(report.generation, 7);
    let Outcome::Ready { commit, host_key } = report.outcome else { panic!("{report:?}") };
    assert_eq!(commit.as_deref(), Some(FAKE_COMMIT));
    assert!(host_key.unwrap().starts_with("ssh-ed25519 "));

    send_server(&mut ws, &command("ws-a", 8, Op::Stop)).await;
    assert_eq!(recv_report(&mut ws).await.outcome, Outcome::Stopped);
    send_server(&mut ws, &command("ws-a", 9, Op::Delete)).await;
    let r = recv_report(&mut ws).await;
    assert_eq!((r.generation, r.outcome), (9, Outcome::Deleted));
    assert!(!fake.exists("ws-a"));

    // A failing command reports Failed with the command's generation.
    send_server(&mut ws, &command("ws-gone", 3, Op::Stop)).await;
    let r = recv_report(&mut ws).await;
    assert_eq!(r.generation, 3);
    assert!(matches!(r.outcome, Outcome::Failed { .. }), "{r:?}");

    // Unknown messages are ignored, not fatal.
    ws.send(Message::text(r#"{"type":"from_the_future"}"#)).await.unwrap();
    send_server(&mut ws, &command("ws-b", 1, Op::Delete)).await;
    assert_eq!(recv_report(&mut ws).await.outcome, Outcome::Deleted);

    stop.send(()).unwrap();
    // The agent closes the WebSocket cleanly...
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("unclean close: {e}"),
        }
    }
    // ...and returns Ok.
    tokio::time::timeout(Duration::from_secs(5), agent).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn commands_for_one_workspace_run_in_order_others_concurrently() {
    let mut server = TestServer::start(0).await;
    let fake = FakeProvider::new();
    fake.set_latency(Duration::from_millis(15));
    let (_stop, _agent) = start_agent(&server.url, &fake);
    let (mut ws, _) = server.accept_agent().await;

    send_server(&mut ws, &command("ws-a", 1, Op::Ensure(Box::new(spec())))).await;
    send_server(&mut ws, &command("ws-a", 2, Op::Stop)).await;
    send_server(&mut ws, &command("ws-a", 3, Op::Ensure(Box::new(spec())))).await;
    send_server(&mut ws, &command("ws-a", 4, Op::Delete)).await;
    send_server(&mut ws, &command("ws-b", 1, Op::Ensure(Box::new(spec())))).await;

    let mut reports = Vec::new();
    for _ in 0..5 {
        reports.push(recv_report(&mut ws).await);
    }
    let a: Vec<(i64, &Outcome)> =
        reports.iter().filter(|r| r.workspace_id == "ws-a").map(|r| (r.generation, &r.outcome)).collect();
    assert_eq!(a.iter().map(|(g, _)| *g).collect::<Vec<_>>(), [1, 2, 3, 4], "{reports:?}");
    assert!(matches!(a[0].1, Outcome::Ready { .. }));
    assert_eq!(a[1].1, &Outcome::Stopped);
    assert!(matches!(a[2].1, Outcome::Ready { .. }));
    assert_eq!(a[3].1, &Outcome::Deleted);
    // ws-b did not wait for ws-a's queue.
    let b_pos = reports.iter().position(|r| r.workspace_id == "ws-b").unwrap();
    assert!(b_pos < 3, "ws-b finished only after ws-a's queue: {reports:?}");

    // In the provider, ws-a's operations never interleave: stop after the first ensure's last
    // step, the second ensure's create after the stop, delete last.
    let labels = fake.labels_for("ws-a");
    let stop = labels.iter().position(|l| l == "stop").unwrap();
    let delete = labels.iter().position(|l| l == "delete").unwrap();
    let host_keys: Vec<usize> =
        labels.iter().enumerate().filter(|(_, l)| *l == provision::STEP_HOST_KEY).map(|(i, _)| i).collect();
    let creates: Vec<usize> = labels.iter().enumerate().filter(|(_, l)| *l == "create").map(|(i, _)| i).collect();
    assert_eq!(host_keys.len(), 2, "{labels:?}");
    assert!(host_keys[0] < stop && stop < creates[1] && host_keys[1] < delete, "{labels:?}");
    assert_eq!(delete, labels.len() - 1, "{labels:?}");
}

#[tokio::test]
async fn tunnel_carries_bytes_both_ways() {
    let mut server = TestServer::start(0).await;
    let fake = FakeProvider::new();
    fake.insert_instance("ws-a", true);
    let (_stop, _agent) = start_agent(&server.url, &fake);
    let (mut ws, _) = server.accept_agent().await;

    send_server(
        &mut ws,
        &ServerMessage::OpenTunnel { tunnel_id: "tun-1".into(), workspace_id: "ws-a".into(), port: 22 },
    )
    .await;
    let mut tun = server.next().await;
    assert_eq!(tun.path, format!("{TUNNEL_PATH}/tun-1"));
    assert_eq!(tun.auth.as_deref(), Some("Bearer join-secret"));

    // The fake sshd greets, then echoes.
    let mut got = Vec::new();
    while got.len() < FAKE_SSH_BANNER.len() {
        match tun.ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, FAKE_SSH_BANNER.as_bytes());
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    tun.ws.send(Message::binary(payload.clone())).await.unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < payload.len() {
        match tun.ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => echoed.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(echoed, payload);
    // Closing from the server side ends the tunnel cleanly.
    tun.ws.close(None).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), tun.ws.next()).await.unwrap();
    assert!(matches!(end, None | Some(Ok(Message::Close(_)))), "{end:?}");
}

#[tokio::test]
async fn tunnel_to_an_unreachable_port_closes_at_once() {
    let mut server = TestServer::start(0).await;
    let fake = FakeProvider::new();
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    fake.insert_instance("ws-a", true);
    fake.set_endpoint("ws-a", 8080, closed);
    let (_stop, _agent) = start_agent(&server.url, &fake);
    let (mut ws, _) = server.accept_agent().await;

    for (id, ws_id, port) in [("t-missing", "ws-nope", 22), ("t-closed", "ws-a", 8080)] {
        send_server(&mut ws, &ServerMessage::OpenTunnel { tunnel_id: id.into(), workspace_id: ws_id.into(), port })
            .await;
        let mut tun = server.next().await;
        assert!(tun.path.ends_with(id));
        match tokio::time::timeout(Duration::from_secs(5), tun.ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::Error);
                assert!(frame.reason.starts_with("unreachable"), "{frame}");
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn reconnects_and_resends_hello_after_the_server_drops() {
    let mut server = TestServer::start(0).await;
    let fake = FakeProvider::new();
    let (_stop, _agent) = start_agent(&server.url, &fake);
    let (ws, _) = server.accept_agent().await;
    drop(ws);
    let started = Instant::now();
    let (_ws, hello) = server.accept_agent().await;
    assert!(matches!(hello, AgentMessage::Hello { .. }));
    assert!(started.elapsed() < Duration::from_secs(2), "slow reconnect: {:?}", started.elapsed());
}

#[tokio::test]
async fn reports_survive_a_reconnect() {
    let mut server = TestServer::start(0).await;
    let fake = FakeProvider::new();
    fake.set_latency(Duration::from_millis(30));
    let (_stop, _agent) = start_agent(&server.url, &fake);
    let (mut ws, _) = server.accept_agent().await;
    send_server(&mut ws, &command("ws-a", 5, Op::Ensure(Box::new(spec())))).await;
    // Drop the connection while the command runs; its report arrives on the next one.
    drop(ws);
    let (mut ws, _) = server.accept_agent().await;
    let r = recv_report(&mut ws).await;
    assert_eq!((r.workspace_id.as_str(), r.generation), ("ws-a", 5));
    assert!(matches!(r.outcome, Outcome::Ready { .. }));
}

#[tokio::test]
async fn a_refused_credential_ends_the_agent_with_a_hint() {
    let server = TestServer::start(u32::MAX).await;
    let fake = FakeProvider::new();
    let (_stop, agent) = start_agent(&server.url, &fake);
    let err = tokio::time::timeout(Duration::from_secs(5), agent).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(err, AgentError::Unauthorized { .. }), "{err:?}");
    assert!(err.hint().unwrap().contains("revoked"), "{:?}", err.hint());
    assert_eq!(server.rejected.load(Ordering::SeqCst), 1, "a revoked credential is not retried");
}

#[tokio::test]
async fn without_a_credential_or_join_token_the_agent_says_what_to_pass() {
    let cfg = AgentConfig { credential: None, ..config("http://127.0.0.1:1") };
    let err = run(cfg, Arc::new(FakeProvider::new()), std::future::pending()).await.unwrap_err();
    assert!(matches!(err, AgentError::NoJoinToken), "{err:?}");
    assert!(err.hint().unwrap().contains("--join-token-file"));
}

#[tokio::test]
async fn server_down_is_retried_and_shutdown_still_works() {
    // Reserve a port, then free it: connections are refused.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let fake = FakeProvider::new();
    let (stop, agent) = start_agent(&format!("http://{addr}"), &fake);
    // Several attempts happen (each lists the inventory first).
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.calls().iter().filter(|c| c.label() == "list").count() < 3 {
        assert!(Instant::now() < deadline, "the agent stopped retrying");
        assert!(!agent.is_finished());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), agent).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn bad_server_url_is_an_error() {
    let fake = FakeProvider::new();
    let err = run(config("localhost:8080"), Arc::new(fake), std::future::pending()).await.unwrap_err();
    assert!(matches!(err, AgentError::ServerUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn wss_goes_through_tls() {
    // A plain TCP server: the TLS handshake must fail with an error (TLS is compiled in and has
    // a crypto provider), not with "TLS support not enabled" and not with a panic.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let auth = HeaderValue::from_static("Bearer x");
    let err = dial(&format!("wss://{addr}/x"), &auth, false).await.expect_err("a plain TCP server cannot speak TLS");
    let chain = error_chain(&err);
    assert!(matches!(err, AgentError::Connect { .. }), "{chain}");
    assert!(!chain.contains("not enabled"), "{chain}");
}

#[test]
fn run_with_lxd_is_send() {
    // The binary spawns `run`; this fails to compile if a future in the LXD path is not Send.
    fn assert_send<T: Send>(_: &T) {}
    let provider = Arc::new(crate::lxd::LxdProvider::new("/nonexistent", "nexus"));
    let fut = run(config("http://127.0.0.1:1"), provider, std::future::pending());
    assert_send(&fut);
}

#[tokio::test]
async fn malformed_join_token_is_an_error() {
    let cfg = AgentConfig { join_token: "a\nb".into(), credential: None, ..config("http://127.0.0.1:1") };
    let err = run(cfg, Arc::new(FakeProvider::new()), std::future::pending()).await.unwrap_err();
    assert!(matches!(err, AgentError::JoinToken), "{err:?}");
}

#[tokio::test]
async fn the_state_dirs_credential_is_what_the_agent_dials_with() {
    let mut server = TestServer::start(0).await;
    let state = tempfile::tempdir().unwrap();
    let stored = crate::credential::Stored {
        server_url: server.url.clone(),
        node_name: "node-1".into(),
        credential: "join-secret".into(),
    };
    crate::credential::save(state.path(), &stored).unwrap();
    // No join token and no credential in the config: only the state dir's can open the connection.
    let cfg = AgentConfig { credential: None, state_dir: Some(state.path().to_path_buf()), ..config(&server.url) };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run(cfg, Arc::new(FakeProvider::new()), async {
        let _ = stop_rx.await;
    }));
    let (_ws, hello) = server.accept_agent().await;
    assert!(matches!(hello, AgentMessage::Hello { ref node_name, .. } if node_name == "node-1"), "{hello:?}");
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), agent).await.unwrap().unwrap().unwrap();
}
