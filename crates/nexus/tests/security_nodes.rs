//! Node identity attacks (issue 10, item 1): each test performs an attack a holder of the join
//! token, or a compromised node, could mount, and checks the server refuses it.
//!
//! The attacker is a raw WebSocket client speaking the agent protocol (so it can send what no real
//! agent would); the honest side is the real server in process over real HTTP and SQLite. Where a
//! node needs a credential the test enrols it the way an agent does; against a server without
//! enrolment (before the fix) it falls back to the join token, which is what made the attacks work.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nexus_server::github::GithubApi;
use nexus_server::repo_probe::GitLsRemote;
use nexus_server::{App, ServerConfig};
use nexus_testkit::api::Api;
use nexus_testkit::git::GitServer;
use nexus_testkit::github::FakeGithub;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl alice@laptop";
const T: Duration = Duration::from_secs(20);
const GOOD_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoodGoodGoodGoodGoodGoodGoodGoodGoodGoodGood";
const EVIL_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvilEvilEvilEvilEvilEvilEvilEvilEvilEvilEvil";

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Cluster {
    api: Api,
    url: String,
    operator: String,
    join: String,
    _github: FakeGithub,
    _git: GitServer,
    data: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
    agents: Vec<oneshot::Sender<()>>,
}

async fn cluster() -> Cluster {
    let git = GitServer::start("127.0.0.1");
    git.create_repo("acme", "hello", &[("README.md", "hello\n")]);
    let github = FakeGithub::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(data.path().to_path_buf());
    config.github_api_url = github.api_url.clone();
    config.git_base_url = git.base_url.clone();
    config.ssh_ports = nexus_testkit::free_port_range(4);
    config.ssh_bind_ip = "127.0.0.1".parse().unwrap();
    config.op_timeout = Duration::from_secs(10);
    let app: Arc<App> = App::new(
        config,
        Box::new(GithubApi::new(&github.api_url)),
        Box::new(GitLsRemote { timeout: Duration::from_secs(10) }),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(nexus_server::serve_app(app, listener, async move {
        let _ = stopped.await;
    }));
    let read = |name: &str| std::fs::read_to_string(data.path().join(name)).unwrap().trim().to_string();
    let (operator, join) = (read("operator-token"), read("join-token"));
    Cluster {
        api: Api::new(&url),
        url,
        operator,
        join,
        _github: github,
        _git: git,
        data,
        _stop: stop,
        agents: Vec::new(),
    }
}

impl Cluster {
    /// A real agent (fake provider) named `name`, enrolled with the join token.
    fn add_agent(&mut self, name: &str) {
        let fake = nexus_agent::fake::FakeProvider::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let mut config = nexus_agent::AgentConfig::new(self.url.clone(), self.join.clone(), name);
        config.lxd_project = format!("sim-{name}");
        config.heartbeat = Duration::from_millis(200);
        tokio::spawn(nexus_agent::run(config, Arc::new(fake), async move {
            let _ = stopped.await;
        }));
        self.agents.push(stop);
    }

    fn operator(&self) -> Api {
        self.api.with_token(&self.operator)
    }

    async fn wait_node_ok(&self, name: &str) {
        let op = self.operator();
        nexus_testkit::eventually(T, "node joined", || async {
            let (_, b) = op.call("GET", "/api/v1/nodes", None).await;
            b["nodes"].as_array()?.iter().any(|n| n["name"] == name && n["status"] == "ok").then_some(())
        })
        .await;
    }

    /// What a node authenticates with: the credential enrolment gives it, or (on a server without
    /// enrolment) the join token itself.
    async fn node_token(&self, name: &str, join: &str) -> (u16, String) {
        let (code, body) = self
            .api
            .with_token(join)
            .call("POST", "/api/v1/nodes/enrol", Some(json!({"node_name": name, "lxd_project": "sim"})))
            .await;
        match code {
            201 => (code, body["credential"].as_str().unwrap().to_string()),
            404 | 405 => (code, join.to_string()),
            _ => (code, String::new()),
        }
    }

    /// Dials an agent WebSocket at `path` with `token`; the HTTP status when refused.
    async fn dial(&self, path: &str, token: &str) -> Result<Ws, u16> {
        let url = format!("{}{path}", self.url.replace("http://", "ws://"));
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("dial {path}: {e}"),
        }
    }

    /// Connects as node `name` with `token` and says hello with an empty inventory.
    async fn raw_node(&self, name: &str, token: &str) -> Result<Ws, u16> {
        let mut ws = self.dial("/api/v1/agent/connect", token).await?;
        send(
            &mut ws,
            json!({"type": "hello", "node_name": name, "lxd_project": "sim", "version": "0", "inventory": []}),
        )
        .await;
        Ok(ws)
    }
}

async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::text(msg.to_string())).await.unwrap();
}

/// The next JSON message within `wait`, skipping pings; `None` on timeout or close.
async fn next_json(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()??.ok()?;
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Reads messages until a command arrives (heartbeating meanwhile); panics after `T`.
async fn next_command(ws: &mut Ws) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no command arrived");
        send(ws, json!({"type": "heartbeat"})).await;
        if let Some(m) = next_json(ws, Duration::from_millis(300)).await {
            if m["type"] == "command" {
                return m;
            }
        }
    }
}

/// Answers the next ensure on `ws` with `ready` and `host_key`; returns the command.
async fn answer_ensure(ws: &mut Ws, host_key: &str) -> Value {
    let cmd = next_command(ws).await;
    assert_eq!(cmd["op"]["op"], "ensure", "expected an ensure: {cmd}");
    report(ws, &cmd["workspace_id"], cmd["generation"].as_i64().unwrap(), ready(host_key)).await;
    cmd
}

fn ready(host_key: &str) -> Value {
    json!({"kind": "ready", "commit": null, "host_key": host_key})
}

async fn report(ws: &mut Ws, id: &Value, generation: i64, outcome: Value) {
    send(ws, json!({"type": "report", "workspace_id": id, "generation": generation, "outcome": outcome})).await;
}

/// Alice, and her workspace `site` on the (raw) node `ws`, running with the good host key.
async fn alice_with_workspace(c: &Cluster, ws: &mut Ws) -> (Api, String) {
    let alice = c.api.register_as_operator(&c.operator, "alice", 11, KEY_A).await;
    let (code, body) = alice.create("site", "acme/hello").await;
    assert_eq!(code, 201, "{body}");
    let id = body["workspace_id"].as_str().unwrap().to_string();
    answer_ensure(ws, GOOD_KEY).await;
    let view = alice.wait_status(&id, &["running"], T).await;
    assert_eq!(view["ssh"]["host_key"], GOOD_KEY);
    (alice, id)
}

#[tokio::test]
async fn a_rogue_agent_with_the_join_token_cannot_take_an_existing_nodes_name() {
    let mut c = cluster().await;
    c.add_agent("n1");
    c.wait_node_ok("n1").await;
    let alice = c.api.register_as_operator(&c.operator, "alice", 11, KEY_A).await;
    let (code, body) = alice.create("site", "acme/hello").await;
    assert_eq!(code, 201, "{body}");
    let id = body["workspace_id"].as_str().unwrap().to_string();
    alice.wait_status(&id, &["running"], T).await;

    // The rogue holds the join token and claims n1's name: first as an agent would (enrol), then
    // with the join token straight on the control connection.
    let (enrol, token) = c.node_token("n1", &c.join).await;
    assert_ne!(enrol, 201, "enrolling an enrolled node's name must be refused");
    let token = if token.is_empty() { c.join.clone() } else { token };
    if let Ok(mut rogue) = c.raw_node("n1", &token).await {
        // Whatever it is sent in the next seconds must carry nothing of the owner's.
        while let Some(msg) = next_json(&mut rogue, Duration::from_secs(2)).await {
            assert_ne!(msg["type"], "command", "the rogue was sent a command: {msg}");
            assert_ne!(msg["type"], "open_tunnel", "the rogue was sent a tunnel: {msg}");
        }
    }
    let view = alice.status(&id).await;
    assert_eq!(view["status"], "running", "the rogue's empty inventory must not fail n1's workspaces: {view}");
}

#[tokio::test]
async fn the_join_token_alone_opens_no_control_connection_or_tunnel() {
    let c = cluster().await;
    assert_eq!(c.dial("/api/v1/agent/connect", &c.join).await.err(), Some(401));
    assert_eq!(c.dial("/api/v1/agent/tunnel/tun_x", &c.join).await.err(), Some(401));
}

#[tokio::test]
async fn a_report_with_a_forged_generation_cannot_replace_the_pinned_host_key() {
    let c = cluster().await;
    let (_, token) = c.node_token("n1", &c.join).await;
    let mut n1 = c.raw_node("n1", &token).await.unwrap();
    let (alice, id) = alice_with_workspace(&c, &mut n1).await;
    report(&mut n1, &json!(id), i64::MAX, ready(EVIL_KEY)).await;
    // The report after it shows the forged one was handled (reports on a connection run in order).
    send(&mut n1, json!({"type": "heartbeat"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let view = alice.status(&id).await;
    assert_eq!(view["ssh"]["host_key"], GOOD_KEY, "the pinned host key was replaced: {view}");
}

#[tokio::test]
async fn a_ready_report_in_answer_to_a_stop_cannot_replace_the_host_key() {
    let c = cluster().await;
    let (_, token) = c.node_token("n1", &c.join).await;
    let mut n1 = c.raw_node("n1", &token).await.unwrap();
    let (alice, id) = alice_with_workspace(&c, &mut n1).await;
    let stop = {
        let alice = alice.clone();
        let id = id.clone();
        tokio::spawn(async move { alice.call("POST", &format!("/api/v1/workspaces/{id}/stop"), None).await })
    };
    let cmd = next_command(&mut n1).await;
    assert_eq!(cmd["op"]["op"], "stop", "{cmd}");
    let generation = cmd["generation"].as_i64().unwrap();
    report(&mut n1, &json!(id), generation, ready(EVIL_KEY)).await;
    report(&mut n1, &json!(id), generation, json!({"kind": "stopped"})).await;
    let (code, body) = stop.await.unwrap();
    assert_eq!(code, 200, "{body}");
    let view = alice.status(&id).await;
    assert_eq!(view["ssh"]["host_key"], GOOD_KEY, "a host key not in answer to create/start was accepted: {view}");
}

#[tokio::test]
async fn a_deleted_report_without_a_delete_keeps_the_workspace() {
    let c = cluster().await;
    let (_, token) = c.node_token("n1", &c.join).await;
    let mut n1 = c.raw_node("n1", &token).await.unwrap();
    let (alice, id) = alice_with_workspace(&c, &mut n1).await;
    // The ensure was generation 1; its own generation, the next and the largest are all tried.
    for g in [1, 2, i64::MAX] {
        report(&mut n1, &json!(id), g, json!({"kind": "deleted"})).await;
    }
    send(&mut n1, json!({"type": "heartbeat"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, body) = alice.call("GET", &format!("/api/v1/workspaces/{id}/status"), None).await;
    assert_eq!(code, 200, "a deleted report nobody asked for removed the workspace: {body}");
}

#[tokio::test]
async fn another_node_cannot_answer_a_tunnel_meant_for_the_workspaces_node() {
    let c = cluster().await;
    let (_, t1) = c.node_token("n1", &c.join).await;
    let (_, t2) = c.node_token("n2", &c.join).await;
    let mut n1 = c.raw_node("n1", &t1).await.unwrap();
    let (alice, id) = alice_with_workspace(&c, &mut n1).await;
    let mut n2 = c.raw_node("n2", &t2).await.unwrap();
    send(&mut n2, json!({"type": "heartbeat"})).await;
    let port = alice.status(&id).await["ssh"]["port"].as_u64().unwrap() as u16;
    // A user's SSH connection makes the server ask n1 for a tunnel.
    let mut user = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // The forwarder opens a tunnel only once the client has said it speaks SSH.
    tokio::io::AsyncWriteExt::write_all(&mut user, b"SSH-2.0-victim\r\n").await.unwrap();
    let tunnel_id = loop {
        send(&mut n1, json!({"type": "heartbeat"})).await;
        match next_json(&mut n1, T).await {
            Some(m) if m["type"] == "open_tunnel" => break m["tunnel_id"].as_str().unwrap().to_string(),
            Some(_) => continue,
            None => panic!("n1 was not asked for a tunnel"),
        }
    };
    // n2 learnt the id (a leak, a log) and dials it with its own credential.
    let path = format!("/api/v1/agent/tunnel/{tunnel_id}");
    if let Ok(mut stolen) = c.dial(&path, &t2).await {
        tokio::io::AsyncWriteExt::write_all(&mut user, b"key exchange bytes").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), stolen.next()).await;
        assert!(!matches!(got, Ok(Some(Ok(Message::Binary(_))))), "the user's SSH bytes went to another node: {got:?}");
    }
}

#[tokio::test]
async fn a_second_live_connection_for_a_node_is_refused() {
    let c = cluster().await;
    let (_, token) = c.node_token("n1", &c.join).await;
    let mut first = c.raw_node("n1", &token).await.unwrap();
    assert_eq!(next_json(&mut first, T).await.unwrap()["type"], "welcome");
    send(&mut first, json!({"type": "heartbeat"})).await;
    match c.raw_node("n1", &token).await {
        Err(code) => assert_eq!(code, 409, "a second connection is refused as a conflict"),
        Ok(mut second) => {
            let got = next_json(&mut second, Duration::from_secs(2)).await;
            assert!(got.is_none(), "a second live connection for n1 was accepted: {got:?}");
        }
    }
    // The first connection is still the node's.
    send(&mut first, json!({"type": "heartbeat"})).await;
    c.wait_node_ok("n1").await;
}

#[tokio::test]
async fn a_revoked_node_is_disconnected_and_refused() {
    let c = cluster().await;
    let (_, token) = c.node_token("n1", &c.join).await;
    let mut n1 = c.raw_node("n1", &token).await.unwrap();
    assert_eq!(next_json(&mut n1, T).await.unwrap()["type"], "welcome");
    let (code, body) = c.operator().call("POST", "/api/v1/nodes/n1/revoke", None).await;
    assert_eq!(code, 200, "{body}");
    // The live connection is closed...
    let deadline = tokio::time::Instant::now() + T;
    while next_json(&mut n1, Duration::from_millis(200)).await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the revoked node's connection stayed open");
    }
    // ...and the credential opens nothing again.
    assert_eq!(c.raw_node("n1", &token).await.err(), Some(401));
    let (_, log) = c.operator().call("GET", "/api/v1/audit?action=node", None).await;
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["node.enrol", "node.revoke"], "{log}");
}

#[tokio::test]
async fn a_single_use_join_token_enrols_once_and_a_revoked_one_never() {
    let c = cluster().await;
    let (code, body) = c.operator().call("POST", "/api/v1/join-tokens", Some(json!({"single_use": true}))).await;
    assert_eq!(code, 201, "{body}");
    let once = body["token"].as_str().unwrap().to_string();
    assert_eq!(c.node_token("n3", &once).await.0, 201);
    let (code, _) = c.node_token("n4", &once).await;
    assert_eq!(code, 401, "a single-use join token enrolled a second node");
    // The default join token can be revoked; enrolled nodes keep working.
    let (code, body) = c.operator().call("POST", "/api/v1/join-tokens/default/revoke", None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(c.node_token("n5", &c.join).await.0, 401);
}

/// Runs the real `nexus` binary with `args`; (exit code, stdout, stderr).
async fn nexus(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(args)
        .env_remove("NEXUS_SERVER")
        .env_remove("NEXUS_OPERATOR_TOKEN")
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[tokio::test]
async fn the_operator_lists_and_revokes_nodes_and_join_tokens_from_the_cli() {
    let mut c = cluster().await;
    c.add_agent("n1");
    c.wait_node_ok("n1").await;
    let token_file = c.data.path().join("operator-token").display().to_string();
    let op = ["--server", c.url.as_str(), "--operator-token-file", token_file.as_str()];
    let with = |verb: &[&'static str], more: &[&str]| -> Vec<String> {
        verb.iter().map(|s| s.to_string()).chain(op.iter().chain(more).map(|s| s.to_string())).collect()
    };
    let run = |args: Vec<String>| async move { nexus(&args.iter().map(String::as_str).collect::<Vec<_>>()).await };

    let (code, out, err) = run(with(&["node", "list"], &["--json"])).await;
    assert_eq!(code, 0, "{err}");
    let nodes: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(nodes[0]["name"], "n1", "{out}");
    assert!(nodes[0]["enrolled_at"].is_string(), "{out}");

    let (code, out, err) = run(with(&["node", "token", "create"], &["--single-use"])).await;
    assert_eq!(code, 0, "{err}");
    let token = out.trim().to_string();
    assert!(token.starts_with("nxj_") && !token.contains('\n'), "only the token on stdout: {out:?}");
    assert_eq!(c.node_token("n2", &token).await.0, 201);
    assert_eq!(c.node_token("n3", &token).await.0, 401, "single-use");

    let (code, _, err) = run(with(&["node", "revoke", "n1"], &[])).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("node n1 revoked"), "{err}");
    let (_, out, _) = run(with(&["node", "list"], &[])).await;
    let n1 = out.lines().find(|l| l.starts_with("n1 ")).unwrap_or_default().to_string();
    assert!(n1.contains("revoked"), "{out}");

    let (code, _, err) = run(with(&["node", "token", "revoke", "default"], &[])).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(c.node_token("n4", &c.join).await.0, 401);

    // Without the operator token: a clear refusal with the next step.
    let (code, _, err) =
        nexus(&["node", "list", "--server", &c.url, "--operator-token-file", "/nonexistent/token"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot read the operator token") && err.contains("hint:"), "{err}");
    let user_token = c.data.path().join("user-token");
    std::fs::write(&user_token, "nxs_not_the_operator").unwrap();
    let (code, _, err) =
        nexus(&["node", "list", "--server", &c.url, "--operator-token-file", user_token.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("operator token"), "{err}");
}

/// A real agent on `c` named `name` keeping its credential in `state`; returns its stop switch and task.
fn agent_with_state(
    c: &Cluster,
    name: &str,
    join: &str,
    state: &std::path::Path,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), nexus_agent::AgentError>>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let mut config = nexus_agent::AgentConfig::new(c.url.clone(), join, name);
    config.lxd_project = format!("sim-{name}");
    config.heartbeat = Duration::from_millis(200);
    config.state_dir = Some(state.to_path_buf());
    let fake = nexus_agent::fake::FakeProvider::new();
    let task = tokio::spawn(nexus_agent::run(config, Arc::new(fake), async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

#[tokio::test]
async fn an_agent_keeps_its_identity_across_restarts_and_a_copy_cannot_enrol_its_name() {
    let c = cluster().await;
    let state = tempfile::tempdir().unwrap();
    let (stop, task) = agent_with_state(&c, "n1", &c.join, state.path());
    c.wait_node_ok("n1").await;
    let saved = std::fs::read_to_string(state.path().join("credential")).unwrap();
    assert!(saved.contains("nxn_") && !saved.contains(&c.join), "the credential, never the join token, is kept");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.path().join("credential")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Another agent claiming n1 with the join token (no credential of its own) is refused and ends.
    let other = tempfile::tempdir().unwrap();
    let (_keep, rogue) = agent_with_state(&c, "n1", &c.join, other.path());
    let err = tokio::time::timeout(T, rogue).await.unwrap().unwrap().unwrap_err();
    assert!(err.to_string().contains("HTTP 409"), "{err:?}");
    assert!(!other.path().join("credential").exists());
    // Restarted without any join token, n1 connects again with the credential it kept.
    stop.send(()).unwrap();
    tokio::time::timeout(T, task).await.unwrap().unwrap().unwrap();
    let op = c.operator();
    nexus_testkit::eventually(T, "n1 gone", || async {
        let (_, b) = op.call("GET", "/api/v1/nodes", None).await;
        (b["nodes"][0]["status"] != "ok").then_some(())
    })
    .await;
    let (_stop, _task) = agent_with_state(&c, "n1", "", state.path());
    c.wait_node_ok("n1").await;
}
