//! Integration tests: the real server (in process, real HTTP, real SQLite, real `git ls-remote`
//! against a real `git daemon`, real GitHub client against the GitHub stand-in) with simulated
//! nodes: the real agent code driving the in-memory `FakeProvider`. No LXD needed.

use std::sync::Arc;
use std::time::Duration;

use nexus_agent::fake::FakeProvider;
use nexus_server::github::GithubApi;
use nexus_server::repo_probe::GitLsRemote;
use nexus_server::{App, ServerConfig};
use nexus_testkit::api::Api;
use nexus_testkit::git::GitServer;
use nexus_testkit::github::FakeGithub;
use nexus_types::protocol::{Outcome, Report};
use serde_json::json;
use tokio::sync::oneshot;

const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl alice@laptop";
const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILkyiBTpa4pk8TTXfcuRbznJ8N9+nfdr5slGEePzD1Pq bob@laptop";
const T: Duration = Duration::from_secs(20);

struct Cluster {
    app: Arc<App>,
    api: Api,
    url: String,
    operator: String,
    join: String,
    github: FakeGithub,
    git: GitServer,
    ssh_ports: (u16, u16),
    _data: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
    agents: Vec<(FakeProvider, oneshot::Sender<()>)>,
}

async fn cluster(ssh_ports: u16) -> Cluster {
    let git = GitServer::start("127.0.0.1");
    git.create_repo("acme", "hello", &[("README.md", "hello\n")]);
    git.create_repo("acme", "other", &[("README.md", "other\n")]);
    let github = FakeGithub::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(data.path().to_path_buf());
    config.github_api_url = github.api_url.clone();
    config.git_base_url = git.base_url.clone();
    // The dumb-HTTP git host of one test listens on a port picked after the server starts.
    config.allowed_git_hosts = vec!["http://127.0.0.1:*".into()];
    let ssh_ports = nexus_testkit::free_port_range(ssh_ports);
    config.ssh_ports = ssh_ports;
    config.ssh_bind_ip = "127.0.0.1".parse().unwrap();
    config.op_timeout = Duration::from_secs(10);
    let app = App::new(
        config,
        Box::new(GithubApi::new(&github.api_url)),
        Box::new(GitLsRemote { timeout: Duration::from_secs(10) }),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(nexus_server::serve_app(app.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let operator = std::fs::read_to_string(data.path().join("operator-token")).unwrap().trim().to_string();
    let join = std::fs::read_to_string(data.path().join("join-token")).unwrap().trim().to_string();
    Cluster {
        app,
        api: Api::new(&url),
        url,
        operator,
        join,
        github,
        git,
        ssh_ports,
        _data: data,
        _stop: stop,
        agents: Vec::new(),
    }
}

impl Cluster {
    fn add_agent(&mut self, name: &str, token: &str) -> FakeProvider {
        self.add_agent_with(name, token, None)
    }

    /// [`Cluster::add_agent`] whose agent runs `provider_restart` when its provider stops answering.
    fn add_agent_with(&mut self, name: &str, token: &str, provider_restart: Option<Vec<String>>) -> FakeProvider {
        let fake = FakeProvider::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let mut config = nexus_agent::AgentConfig::new(self.url.clone(), token, name);
        config.lxd_project = format!("sim-{name}");
        config.heartbeat = Duration::from_millis(200);
        config.provider_restart = provider_restart;
        let provider = Arc::new(fake.clone());
        tokio::spawn(nexus_agent::run(config, provider, async move {
            let _ = stopped.await;
        }));
        self.agents.push((fake.clone(), stop));
        fake
    }

    async fn wait_nodes(&self, n: usize) {
        let op = self.api.with_token(&self.operator);
        nexus_testkit::eventually(T, "nodes joined", || async {
            let (_, b) = op.call("GET", "/api/v1/nodes", None).await;
            (b["nodes"].as_array().map(|x| x.iter().filter(|x| x["status"] == "ok").count()) == Some(n)).then_some(())
        })
        .await;
    }

    async fn user(&self, login: &str, id: i64, key: &str) -> Api {
        self.api.register_as_operator(&self.operator, login, id, key).await
    }

    /// How many ports of the SSH range the server listens on (one per workspace that has one).
    fn ssh_ports_listening(&self) -> usize {
        let (lo, hi) = self.ssh_ports;
        (lo..=hi).filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err()).count()
    }
}

#[tokio::test]
async fn every_endpoint_needs_a_valid_token_and_users_only_see_their_own() {
    let mut c = cluster(4).await;
    c.add_agent("n1", &c.join.clone());
    c.wait_nodes(1).await;
    let endpoints = [
        ("GET", "/api/v1/users/me"),
        ("GET", "/api/v1/workspaces"),
        ("POST", "/api/v1/workspaces/create"),
        ("GET", "/api/v1/workspaces/ws-x/status"),
        ("POST", "/api/v1/workspaces/ws-x/stop"),
        ("POST", "/api/v1/workspaces/ws-x/start"),
        ("DELETE", "/api/v1/workspaces/ws-x"),
        ("GET", "/api/v1/nodes"),
    ];
    for (m, p) in endpoints {
        for api in [c.api.clone(), c.api.with_token("nxs_forged")] {
            let (code, body) = api.call(m, p, Some(json!({}))).await;
            assert_eq!(code, 401, "{m} {p}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized");
            assert!(body["error"]["hint"].as_str().unwrap().contains("nexus ssh setup"));
        }
    }
    let (code, body) = c.api.call("GET", "/health", None).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")));
    let (code, schema) = c.api.call("GET", "/schemas/nexus-config.schema.json", None).await;
    assert_eq!(code, 200, "the config schema is public");
    assert!(schema["properties"]["services"].is_object(), "{schema}");

    // GitHub proves identity: right token → 201; wrong, revoked or someone else's → 401.
    c.github.add_token("gho_a", "alice", 11);
    c.github.add_token("gho_m", "mallory", 66);
    let reg =
        |tok: &str| json!({"github_username": "alice", "github_id": 11, "ssh_pubkey": KEY_A, "github_token": tok});
    let (code, body) = c.api.call("POST", "/api/v1/users/register", Some(reg("gho_a"))).await;
    assert_eq!(code, 201, "{body}");
    let alice = c.api.with_token(body["api_token"].as_str().unwrap());
    for bad in ["gho_nope", "gho_m", ""] {
        let (code, body) = c.api.call("POST", "/api/v1/users/register", Some(reg(bad))).await;
        assert_eq!(code, 401, "token {bad:?}: {body}");
    }
    c.github.revoke("gho_a");
    let (code, _) = c.api.call("POST", "/api/v1/users/register", Some(reg("gho_a"))).await;
    assert_eq!(code, 401, "revoked token");
    let (code, me) = alice.call("GET", "/api/v1/users/me", None).await;
    assert_eq!((code, me["github_username"].as_str()), (200, Some("alice")));

    let bob = c.user("bob", 22, KEY_B).await;
    let (code, ws) = alice.create("proj", "acme/hello").await;
    assert_eq!(code, 201, "{ws}");
    let id = ws["workspace_id"].as_str().unwrap();
    alice.wait_status(id, &["running"], T).await;
    for (m, p) in [
        ("GET", format!("/api/v1/workspaces/{id}/status")),
        ("POST", format!("/api/v1/workspaces/{id}/stop")),
        ("POST", format!("/api/v1/workspaces/{id}/start")),
        ("DELETE", format!("/api/v1/workspaces/{id}")),
    ] {
        let (code, body) = bob.call(m, &p, None).await;
        assert_eq!(code, 404, "{m} {p}: {body}");
    }
    let (_, list) = bob.call("GET", "/api/v1/workspaces", None).await;
    assert_eq!(list["workspaces"].as_array().unwrap().len(), 0);
    // Same name for Bob is fine: names are per user.
    let (code, _) = bob.create("proj", "acme/hello").await;
    assert_eq!(code, 201);
    // The operator token manages nodes, not workspaces.
    let (code, body) = c.api.with_token(&c.operator).create("x", "acme/hello").await;
    assert_eq!(code, 403, "{body}");
    // A user token cannot list nodes.
    let (code, _) = alice.call("GET", "/api/v1/nodes", None).await;
    assert_eq!(code, 403);
    assert_eq!(alice.status(id).await["status"], "running");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_hint_and_creates_nothing() {
    let mut c = cluster(4).await;
    let fake = c.add_agent("n1", &c.join.clone());
    c.wait_nodes(1).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let long = "a".repeat(41);
    for name in [
        "../../etc/passwd",
        "a;rm -rf /",
        "$(reboot)",
        "`id`",
        long.as_str(),
        "Has Space",
        "UPPER",
        "",
        "-lead",
        "a\nb",
    ] {
        let (code, body) = alice.create(name, "acme/hello").await;
        assert_eq!(code, 400, "name {name:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field");
        assert!(!body["error"]["hint"].as_str().unwrap().is_empty());
    }
    for repo in ["acme/missing", "nobody/hello"] {
        let (code, body) = alice.create("ok-name", repo).await;
        assert_eq!(code, 422, "repo {repo}: {body}");
        assert_eq!(body["error"]["code"], "repo_not_found");
    }
    for repo in ["file:///etc", "acme/hello;id", "--upload-pack=x/y", "ext::sh"] {
        let (code, body) = alice.create("ok-name", repo).await;
        assert_eq!(code, 400, "repo {repo}: {body}");
    }
    let (code, body) = alice
        .call(
            "POST",
            "/api/v1/workspaces/create",
            Some(json!({"workspace_name": "ok", "repo": "acme/hello", "branch": "nope"})),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
    let (code, body) = alice.raw("/api/v1/workspaces/create", "application/json", "{\"workspace_name\": ").await;
    assert_eq!((code, body["error"]["code"].as_str()), (400, Some("invalid_body")), "{body}");
    let (code, body) = alice.raw("/api/v1/workspaces/create", "text/plain", "{}").await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"]["hint"].as_str().unwrap().contains("Content-Type"));
    let (code, body) = alice
        .call(
            "POST",
            "/api/v1/workspaces/create",
            Some(json!({"workspace_name": "ok", "repo": "acme/hello", "colour": "red"})),
        )
        .await;
    assert_eq!(code, 400, "unknown fields are refused: {body}");
    let (code, body) = alice
        .call(
            "POST",
            "/api/v1/workspaces/create",
            Some(json!({"workspace_name": "ok", "repo": "acme/hello", "resources": {"cpu": 0}})),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = c
        .api
        .with_token(&c.operator)
        .call(
            "POST",
            "/api/v1/users/register",
            Some(json!({"github_username": "eve", "github_id": 5, "ssh_pubkey": "ssh-ed25519 notbase64!"})),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = c.api.call("GET", "/api/v1/nope", None).await;
    assert_eq!((code, body["error"]["code"].as_str()), (404, Some("not_found")));

    // Nothing was created anywhere.
    let (_, list) = alice.call("GET", "/api/v1/workspaces", None).await;
    assert_eq!(list["workspaces"].as_array().unwrap().len(), 0);
    assert!(fake.instances().is_empty());
    assert_eq!(c.ssh_ports_listening(), 0);
}

#[tokio::test]
async fn a_port_range_of_two_refuses_the_third_workspace_clearly() {
    let mut c = cluster(2).await;
    c.add_agent("n1", &c.join.clone());
    c.wait_nodes(1).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let (c1, w1) = alice.create("one", "acme/hello").await;
    let (c2, _) = alice.create("two", "acme/hello").await;
    assert_eq!((c1, c2), (201, 201));
    let (code, body) = alice.create("three", "acme/hello").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "ssh_ports_exhausted");
    assert!(body["error"]["message"].as_str().unwrap().contains("2 SSH ports"));
    assert!(body["error"]["hint"].as_str().unwrap().contains("nexus workspace delete"));
    let (_, list) = alice.call("GET", "/api/v1/workspaces", None).await;
    assert_eq!(list["workspaces"].as_array().unwrap().len(), 2, "the refused create left nothing behind");
    // Freeing one makes room again.
    let id = w1["workspace_id"].as_str().unwrap();
    alice.wait_status(id, &["running"], T).await;
    let (code, body) = alice.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = alice.create("three", "acme/hello").await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["ssh_port"], w1["ssh_port"]);
}

#[tokio::test]
async fn lifecycle_is_idempotent_and_stale_reports_are_ignored() {
    let mut c = cluster(4).await;
    let fake = c.add_agent("n1", &c.join.clone());
    c.wait_nodes(1).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let (code, ws) = alice.create("proj", "acme/hello").await;
    assert_eq!(code, 201);
    let id = ws["workspace_id"].as_str().unwrap().to_string();
    let running = alice.wait_status(&id, &["running"], T).await;
    assert_eq!(running["repo"]["branch"], "main");
    assert_eq!(running["repo"]["path"], "/home/dev/hello");
    assert_eq!(running["node"]["status"], "ok");
    assert!(running["ssh"]["command"].as_str().unwrap().starts_with("ssh -p "));
    assert_eq!(
        fake.authorized_keys(&id).unwrap().trim(),
        KEY_A.rsplit_once(' ').unwrap().0,
        "only the owner's key, no comment"
    );

    for _ in 0..2 {
        let (code, body) = alice.call("POST", &format!("/api/v1/workspaces/{id}/stop"), None).await;
        assert_eq!((code, body["status"].as_str()), (200, Some("stopped")), "{body}");
    }
    // A late "ready" for an older command must not revive the stopped workspace.
    c.app
        .on_report(
            "n1",
            Report {
                workspace_id: id.clone(),
                generation: 1,
                outcome: Outcome::Ready { commit: None, host_key: None },
            },
        )
        .await
        .unwrap();
    assert_eq!(alice.status(&id).await["status"], "stopped");
    for _ in 0..2 {
        let (code, body) = alice.call("POST", &format!("/api/v1/workspaces/{id}/start"), None).await;
        assert_eq!((code, body["status"].as_str()), (200, Some("running")), "{body}");
    }
    let (code, _) = alice.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
    assert_eq!(code, 200);
    assert!(!fake.exists(&id));
    let (code, _) = alice.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
    assert_eq!(code, 404, "deleting twice says it is gone");
}

#[tokio::test]
async fn a_failed_clone_says_why_and_start_retries() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut c = cluster(4).await;
    let fake = c.add_agent("n1", &c.join.clone());
    c.wait_nodes(1).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    fake.on_exec(move |_, argv| {
        (flag.load(Ordering::SeqCst) && argv.iter().any(|a| a == nexus_agent::provision::STEP_CLONE))
            .then(|| nexus_agent::provider::ExecOutput::failed(128, "fatal: could not read from remote repository"))
    });
    let (_, ws) = alice.create("proj", "acme/hello").await;
    let id = ws["workspace_id"].as_str().unwrap().to_string();
    let failed = alice.wait_status(&id, &["failed"], T).await;
    assert!(failed["message"].as_str().unwrap().contains("could not read from remote repository"), "{failed}");
    assert!(!failed["hint"].as_str().unwrap().is_empty(), "{failed}");
    // The cause is fixed; start retries provisioning and the workspace comes up.
    broken.store(false, Ordering::SeqCst);
    let (code, body) = alice.call("POST", &format!("/api/v1/workspaces/{id}/start"), None).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("running")), "{body}");
    assert!(fake.is_cloned(&id));
}

#[tokio::test]
async fn no_node_means_a_clear_503_and_a_wrong_join_token_never_joins() {
    let mut c = cluster(4).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let (code, body) = alice.create("proj", "acme/hello").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "no_nodes");
    assert!(body["error"]["hint"].as_str().unwrap().contains("nexus agent"));
    c.add_agent("intruder", "nxj_wrong");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, nodes) = c.api.with_token(&c.operator).call("GET", "/api/v1/nodes", None).await;
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 0, "{nodes}");
    assert_eq!(c.ssh_ports_listening(), 0);
}

#[tokio::test]
async fn workspaces_spread_over_nodes_and_a_lost_node_shows() {
    let mut c = cluster(6).await;
    c.add_agent("n1", &c.join.clone());
    c.add_agent("n2", &c.join.clone());
    c.wait_nodes(2).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let mut nodes = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let (code, ws) = alice.create(name, "acme/hello").await;
        assert_eq!(code, 201);
        let s = alice.wait_status(ws["workspace_id"].as_str().unwrap(), &["running"], T).await;
        nodes.push(s["node"]["name"].as_str().unwrap().to_string());
    }
    nodes.sort();
    assert_eq!(nodes, ["n1", "n1", "n2", "n2"], "least-loaded placement alternates");
    // Stop agent n2 (drop its shutdown sender): its node turns unresponsive.
    let (_, stop) = c.agents.remove(1);
    drop(stop);
    let (_, list) = alice.call("GET", "/api/v1/workspaces", None).await;
    let on_n2 = list["workspaces"].as_array().unwrap().iter().find(|w| w["node"]["name"] == "n2").unwrap()
        ["workspace_id"]
        .as_str()
        .unwrap()
        .to_string();
    let view = nexus_testkit::eventually(T, "n2 unresponsive", || async {
        let v = alice.status(&on_n2).await;
        (v["node"]["status"] == "unresponsive").then_some(v)
    })
    .await;
    assert!(view["message"].as_str().unwrap().contains("unresponsive"));
    let (code, body) = alice.call("POST", &format!("/api/v1/workspaces/{on_n2}/stop"), None).await;
    assert_eq!((code, body["error"]["code"].as_str()), (503, Some("node_unresponsive")), "{body}");
    drop(c.git);
}

#[tokio::test]
async fn concurrent_creates_of_one_name_make_one_workspace() {
    let mut c = cluster(8).await;
    let fake = c.add_agent("n1", &c.join.clone());
    c.wait_nodes(1).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let alice = alice.clone();
        set.spawn(async move { alice.create("race", "acme/hello").await });
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    while let Some(r) = set.join_next().await {
        let (code, body) = r.unwrap();
        assert!(code == 201 || code == 200, "{code} {body}");
        created += usize::from(code == 201);
        ids.insert(body["workspace_id"].as_str().unwrap().to_string());
    }
    assert_eq!((ids.len(), created), (1, 1), "one workspace, created once");
    let id = ids.into_iter().next().unwrap();
    alice.wait_status(&id, &["running"], T).await;
    assert_eq!(fake.instances().len(), 1);
    assert_eq!(c.ssh_ports_listening(), 1, "no port leaked by the losers");
    // The same name for another repo is a conflict, not a silent reuse.
    let (code, body) = alice.create("race", "acme/other").await;
    assert_eq!((code, body["error"]["code"].as_str()), (409, Some("name_taken")), "{body}");
}

#[tokio::test]
async fn planned_services_are_listed_with_local_ports_from_the_create_on() {
    let mut c = cluster(4).await;
    c.git.create_repo(
        "acme",
        "svc",
        &[(".nexus/config.yaml", "services:\n  web:\n    command: \"python3 -m http.server 3000\"\n    port: 3000\n")],
    );
    c.add_agent("node-a", &c.join.clone());
    c.wait_nodes(1).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let (code, body) = alice.create("svc", "acme/svc").await;
    assert_eq!(code, 201, "{body}");
    // Before the node has said anything about services, the plan's are there, with their local port.
    let view = alice.status(body["workspace_id"].as_str().unwrap()).await;
    let services = view["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{view}");
    assert_eq!(services[0]["name"], "web");
    assert_eq!(services[0]["port"], 3000);
    assert_eq!(services[0]["mapped_port"], 23000);
}

/// Regression (bug a): the server read the plan from a list of files of its own that missed
/// `.devcontainer.json` at the repo root, so such a repo got no services.
#[tokio::test]
async fn a_root_devcontainer_json_gives_the_workspace_its_services() {
    let mut c = cluster(4).await;
    c.git.create_repo("acme", "dc", &[(".devcontainer.json", r#"{"postStartCommand": "make watch"}"#)]);
    c.add_agent("node-a", &c.join.clone());
    c.wait_nodes(1).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let (code, body) = alice.create("dc", "acme/dc").await;
    assert_eq!(code, 201, "{body}");
    let view = alice.status(body["workspace_id"].as_str().unwrap()).await;
    assert_eq!(view["services"][0]["name"], "post-start", "{view}");
}

/// Regression (bug g): a git host that serves "dumb" HTTP (static files) cannot do the shallow
/// fetch the server reads the plan with; it said "check the spelling" instead of fetching in full.
#[tokio::test]
async fn a_repo_on_a_dumb_http_host_can_be_used() {
    let mut c = cluster(4).await;
    let dumb = nexus_testkit::git_dumb_http::DumbGitServer::start().await;
    let url = dumb.create_repo("acme", "static", &[("index.html", "<h1>hi</h1>\n")]);
    c.add_agent("node-a", &c.join.clone());
    c.wait_nodes(1).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let (code, body) = alice.create("static", &url).await;
    assert_eq!(code, 201, "{body}");
    let view = alice.wait_status(body["workspace_id"].as_str().unwrap(), &["running"], T).await;
    assert_eq!(view["services"][0]["name"], "web", "index.html was read: {view}");
    // A repository the host does not have is still "not found", with the hint for a typo.
    let (code, body) = alice.create("nope", &format!("{}/acme/nope.git", dumb.base_url)).await;
    assert_eq!((code, body["error"]["code"].as_str()), (422, Some("repo_not_found")), "{body}");
    assert!(body["error"]["hint"].as_str().unwrap().contains("spelling"), "{body}");
}

/// Issue 9 (setup you can see): while the setup runs, the status API shows its step, time and last
/// output line, and the service says it waits for it; a failed setup fails the service with the log's
/// last lines and a hint by cause (here a TLS-inspecting proxy whose CA the workspace lacks).
#[tokio::test]
async fn setup_shows_in_the_status_while_it_runs_and_fails_its_services_with_the_cause() {
    use nexus_agent::fake::{STEP_SETUP_LOG, STEP_SETUP_POLL};
    use nexus_agent::provider::ExecOutput;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut c = cluster(4).await;
    let config = "setup: npm ci\nservices:\n  web:\n    command: npm run dev\n    port: 3000\n";
    c.git.create_repo("acme", "app", &[(".nexus/config.yaml", config)]);
    let fake = c.add_agent("node-a", &c.join.clone());
    let failed = Arc::new(AtomicBool::new(false));
    let flag = failed.clone();
    let log = "$ npm ci\nnpm error code SELF_SIGNED_CERT_IN_CHAIN\nnpm error request to https://registry.npmjs.org/react failed, reason: self-signed certificate in certificate chain\n";
    fake.on_exec(move |_, argv| match argv.get(3).map(String::as_str) {
        Some(STEP_SETUP_POLL) if flag.load(Ordering::SeqCst) => Some(ExecOutput::ok(format!("exit 1\n{log}"))),
        Some(STEP_SETUP_POLL) => {
            Some(ExecOutput::ok("running\n$ npm ci\nnpm http fetch GET 200 https://registry.npmjs.org/react 40ms\n"))
        }
        Some(STEP_SETUP_LOG) => Some(ExecOutput::ok(log)),
        _ => None,
    });
    c.wait_nodes(1).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let (code, body) = alice.create("app", "acme/app").await;
    assert_eq!(code, 201, "{body}");
    let id = body["workspace_id"].as_str().unwrap().to_string();

    let view = nexus_testkit::eventually(T, "setup running with its last line", || async {
        let v = alice.status(&id).await;
        (v["setup"]["status"] == "running" && v["setup"]["last_line"].is_string()).then_some(v)
    })
    .await;
    let setup = &view["setup"];
    assert_eq!(
        (setup["step"].as_str(), setup["step_number"].as_u64(), setup["steps"].as_u64()),
        (Some("npm ci"), Some(1), Some(1)),
        "{view}"
    );
    assert_eq!(setup["last_line"], "npm http fetch GET 200 https://registry.npmjs.org/react 40ms");
    assert!(setup["started_at"].is_string() && setup["elapsed_ms"].is_u64(), "{setup}");
    assert_eq!(view["status"], "running");
    let web = &view["services"][0];
    assert_eq!(web["status"], "starting");
    assert!(web["message"].as_str().unwrap().starts_with("waiting for setup (`npm ci`, "), "{web}");

    failed.store(true, Ordering::SeqCst);
    let view = nexus_testkit::eventually(T, "setup failed", || async {
        let v = alice.status(&id).await;
        (v["setup"]["status"] == "failed" && v["services"][0]["status"] == "failed").then_some(v)
    })
    .await;
    let setup = &view["setup"];
    assert!(setup["message"].as_str().unwrap().starts_with("setup step `npm ci` failed (exit 1) after "), "{setup}");
    let hint = setup["hint"].as_str().unwrap();
    assert!(hint.starts_with("the workspace does not trust the TLS certificate of registry.npmjs.org"), "{hint}");
    assert_eq!(setup["last_logs"].as_str(), Some(log.trim_end()));
    let web = &view["services"][0];
    assert!(web["message"].as_str().unwrap().starts_with("not started: setup step `npm ci` failed"), "{web}");
    assert_eq!((web["hint"].as_str(), web["last_logs"].as_str()), (Some(hint), Some(log.trim_end())));
    assert_eq!(view["status"], "running", "the workspace itself is up: the user can get in and fix it");
}

/// Issue 12 item 5: `/metrics` is a valid OpenMetrics exposition (read by a strict parser) whose
/// numbers follow what happened — requests by route template and status, the create→running and
/// create→services-ready times, workspaces and nodes by status, SSH ports used; `/ready` says 503
/// with the reason until a node is there.
#[tokio::test]
async fn metrics_follow_what_happened_and_ready_waits_for_a_node() {
    let mut c = cluster(4).await;
    let (code, body) = c.api.call("GET", "/ready", None).await;
    assert_eq!(code, 503, "no node yet: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no node"), "{body}");

    let join = c.join.clone();
    c.add_agent("n1", &join);
    c.wait_nodes(1).await;
    let (code, _) = c.api.call("GET", "/ready", None).await;
    assert_eq!(code, 200);

    let alice = c.user("alice", 11, KEY_A).await;
    let (code, body) = alice.create("proj", "acme/hello").await;
    assert_eq!(code, 201, "{body}");
    let id = body["workspace_id"].as_str().unwrap().to_string();
    alice.wait_status(&id, &["running"], T).await;
    let (code, _) = alice.call("GET", "/api/v1/workspaces/ws-nope/status", None).await;
    assert_eq!(code, 404);
    // Something that is not SSH at the workspace's SSH port is counted, not tunnelled.
    let port = body["ssh_port"].as_u64().unwrap() as u16;
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut probe = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        probe.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(T, probe.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the forwarder closes a non-SSH connection");
    }

    let (code, text) = c.api.call("GET", "/metrics", None).await;
    assert_eq!(code, 200);
    let text = text.as_str().expect("metrics are text").to_string();
    let m = nexus_testkit::openmetrics::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let requests = |route: &str, status: &str| {
        m.find("nexus_http_requests_total", &[("route", route), ("status", status)]).unwrap_or(0.0)
    };
    assert_eq!(requests("/api/v1/workspaces/create", "201"), 1.0, "{text}");
    assert_eq!(requests("/api/v1/workspaces/{id}/status", "404"), 1.0, "by route template, not path: {text}");
    assert_eq!(requests("/ready", "503"), 1.0);
    assert!(m.value("nexus_http_request_duration_seconds_count", &[("route", "/api/v1/workspaces/create")]) >= 1.0);
    assert_eq!(m.value("nexus_workspace_create_to_running_seconds_count", &[]), 1.0, "{text}");
    assert_eq!(m.value("nexus_workspaces", &[("status", "running")]), 1.0);
    assert_eq!(m.value("nexus_workspaces", &[("status", "failed")]), 0.0, "every status is exported");
    assert_eq!(m.value("nexus_node_up", &[("node", "n1"), ("status", "ok")]), 1.0);
    assert_eq!(m.value("nexus_node_workspaces", &[("node", "n1")]), 1.0);
    assert_eq!(m.value("nexus_node_queued_starts", &[("node", "n1")]), 0.0, "{text}");
    assert_eq!(m.value("nexus_forwarder_connections_total", &[("outcome", "not_ssh")]), 1.0, "{text}");
    assert_eq!(m.value("nexus_forwarder_open_connections", &[]), 0.0);
    assert_eq!((m.value("nexus_ssh_ports", &[]), m.value("nexus_ssh_ports_used", &[])), (4.0, 1.0));
    assert!(!text.contains("alice") && !text.contains(&id), "no user data in metrics");
}

/// Issue 12 item 4 (the decisions; `tests/lxd_outage.rs` kills the real daemon): a node whose
/// provider stops answering turns `degraded` with the cause, runs its restart command, takes no
/// creates (which say why), and is `ok` again — reconnected and reconciled — once it answers.
#[tokio::test]
async fn a_node_whose_lxd_stops_answering_is_degraded_with_the_cause_then_ok_again() {
    let mut c = cluster(4).await;
    let marker = tempfile::tempdir().unwrap();
    let restarted = marker.path().join("restarted");
    let join = c.join.clone();
    let fake = c.add_agent_with("n1", &join, Some(vec!["touch".into(), restarted.to_str().unwrap().to_string()]));
    c.wait_nodes(1).await;
    let alice = c.user("alice", 11, KEY_A).await;
    let (code, body) = alice.create("proj", "acme/hello").await;
    assert_eq!(code, 201, "{body}");
    let id = body["workspace_id"].as_str().unwrap().to_string();
    alice.wait_status(&id, &["running"], T).await;

    fake.fail(
        "list",
        "Get \"http://unix.socket/1.0/instances\": dial unix /var/lib/lxd/unix.socket: connect: connection refused",
    );
    let op = c.api.with_token(&c.operator);
    let node = nexus_testkit::eventually(T, "the node is degraded", || async {
        let (_, b) = op.call("GET", "/api/v1/nodes", None).await;
        (b["nodes"][0]["status"] == "degraded").then(|| b["nodes"][0].clone())
    })
    .await;
    assert!(node["degraded"].as_str().unwrap().contains("connection refused"), "{node}");
    let (code, body) = alice.create("during", "acme/hello").await;
    assert_eq!((code, body["error"]["code"].as_str()), (503, Some("nodes_degraded")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("node n1: LXD does not answer"), "{body}");
    let view = alice.status(&id).await;
    assert_eq!(view["status"], "running", "a degraded node's workspaces are not failed: {view}");
    nexus_testkit::eventually(T, "the restart command ran", || async { restarted.exists().then_some(()) }).await;
    let (code, body) = alice.call("POST", &format!("/api/v1/workspaces/{id}/stop"), None).await;
    assert_eq!((code, body["error"]["code"].as_str()), (503, Some("node_degraded")), "{body}");

    fake.fail("list", "");
    c.wait_nodes(1).await;
    let (code, body) = alice.create("after", "acme/hello").await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(alice.status(&id).await["status"], "running");
}
