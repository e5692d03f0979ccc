//! End-to-end tests against real LXD: real `nexus server` and `nexus agent` processes, real
//! containers from the node's base image, real git, real `ssh`.
//!
//! They need a node prepared by `nexus node init` (`.ci/run` does that). Without LXD they fail with
//! a hint; they never skip silently. `NEXUS_SKIP_E2E=1` is the only, explicit, way to skip.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nexus_testkit::api::Api;
use nexus_testkit::git::GitServer;
use nexus_testkit::github::FakeGithub;
use nexus_testkit::lxd::{host_ip as lxd_host_ip, ProjectGuard};
use nexus_testkit::process::{AgentProcess, ServerOpts, ServerProcess};
use nexus_testkit::ssh::{self, TestKey};
use serde_json::json;

const READY: Duration = Duration::from_secs(180);

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nexus"))
}

struct Env {
    git: GitServer,
    github: FakeGithub,
    server: ServerProcess,
    commit: String,
}

async fn env(ssh_ports: u16, node_timeout_secs: u64) -> Option<Env> {
    let ip = lxd_host_ip()?;
    let git = GitServer::start(&ip);
    let commit =
        git.create_repo("acme", "hello", &[("README.md", "hello from nexus\n"), ("src/index.html", "<h1>hi</h1>\n")]);
    let github = FakeGithub::start().await;
    let server = ServerProcess::start(
        &bin(),
        ServerOpts {
            github_api_url: github.api_url.clone(),
            git_base_url: git.base_url.clone(),
            ssh_ports: nexus_testkit::free_port_range(ssh_ports),
            node_timeout_secs,
        },
    );
    Some(Env { git, github, server, commit })
}

/// Waits until `n` nodes are connected and responsive.
async fn wait_nodes(operator: &Api, n: usize) {
    nexus_testkit::eventually(Duration::from_secs(30), "nodes joined", || async {
        let (_, body) = operator.call("GET", "/api/v1/nodes", None).await;
        (body["nodes"].as_array().map(|x| x.iter().filter(|x| x["status"] == "ok").count()) == Some(n)).then_some(())
    })
    .await;
}

fn ssh_ok(port: u16, key: &TestKey, cmd: &str) -> String {
    let out = ssh::run("127.0.0.1", port, key, cmd);
    assert_eq!(out.code, 0, "ssh -p {port} {cmd:?} failed: {}", out.stderr);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_lifecycle_over_ssh_with_isolation() {
    // A range of two ports: the test fills it and checks the third create is refused clearly.
    let Some(env) = env(2, 30).await else { return };
    let project = ProjectGuard::new("life");
    let _agent = AgentProcess::start(&bin(), &env.server, "node-a", &project.0, &[]);
    let api = Api::new(&env.server.url);

    // Alice proves her GitHub identity; Bob is registered by the operator.
    let alice_key = TestKey::generate("alice");
    let bob_key = TestKey::generate("bob");
    env.github.add_token("gho_alice", "alice", 1001);
    let (code, body) = api
        .call("POST", "/api/v1/users/register", Some(json!({"github_username": "alice", "github_id": 1001, "ssh_pubkey": alice_key.public, "github_token": "gho_alice"})))
        .await;
    assert_eq!(code, 201, "{body}");
    let alice = api.with_token(body["api_token"].as_str().unwrap());
    let bob = api.register_as_operator(&env.server.operator_token(), "bob", 1002, &bob_key.public).await;

    // A bad GitHub token is refused.
    let (code, body) = api
        .call("POST", "/api/v1/users/register", Some(json!({"github_username": "alice", "github_id": 1001, "ssh_pubkey": alice_key.public, "github_token": "gho_wrong"})))
        .await;
    assert_eq!(code, 401, "{body}");
    assert!(body["error"]["hint"].as_str().unwrap().contains("nexus auth github"));

    wait_nodes(&api.with_token(&env.server.operator_token()), 1).await;

    let t0 = Instant::now();
    let (code, created) = alice.create("hello", "acme/hello").await;
    assert_eq!(code, 201, "{created}");
    let id = created["workspace_id"].as_str().unwrap().to_string();
    let port = created["ssh_port"].as_u64().unwrap() as u16;
    assert_eq!(created["polling_url"], format!("/api/v1/workspaces/{id}/status"));
    let running = alice.wait_status(&id, &["running"], READY).await;
    eprintln!("create → running took {:?}", t0.elapsed());
    assert_eq!(running["repo"]["commit"], env.commit.as_str());
    assert_eq!(running["ssh"]["port"], port);
    assert!(running["ssh"]["host_key"].as_str().unwrap().starts_with("ssh-ed25519 "));

    // Creating again is idempotent.
    let (code, again) = alice.create("hello", "acme/hello").await;
    assert_eq!((code, again["workspace_id"].as_str()), (200, Some(id.as_str())));

    // The owner's key gets in and sees the repo; Bob's key is refused.
    assert_eq!(ssh_ok(port, &alice_key, "cat hello/README.md"), "hello from nexus\n");
    assert_eq!(ssh_ok(port, &alice_key, "cd hello && git rev-parse HEAD").trim(), env.commit);
    let sshd = ssh_ok(port, &alice_key, "sudo sshd -T");
    for setting in ["passwordauthentication no", "permitrootlogin no", "pubkeyauthentication yes"] {
        assert!(sshd.lines().any(|l| l == setting), "sshd must have `{setting}`");
    }
    let keys = ssh_ok(port, &alice_key, "cat ~/.ssh/authorized_keys");
    assert_eq!(keys.lines().count(), 1, "only the owner's key: {keys}");
    let refused = ssh::run("127.0.0.1", port, &bob_key, "true");
    assert_eq!(refused.code, 255, "bob must not get in: {refused:?}");
    assert!(refused.stderr.contains("Permission denied"), "{}", refused.stderr);

    // Bob sees nothing of Alice's workspace.
    for (method, path) in [
        ("GET", format!("/api/v1/workspaces/{id}/status")),
        ("POST", format!("/api/v1/workspaces/{id}/stop")),
        ("DELETE", format!("/api/v1/workspaces/{id}")),
    ] {
        let (code, body) = bob.call(method, &path, None).await;
        assert_eq!(code, 404, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "workspace_not_found");
    }
    let (code, _) = api.call("GET", &format!("/api/v1/workspaces/{id}/status"), None).await;
    assert_eq!(code, 401);
    assert_eq!(alice.status(&id).await["status"], "running", "bob's attempts changed nothing");

    // Stop: SSH refused. Stop again: no-op.
    let (code, body) = alice.call("POST", &format!("/api/v1/workspaces/{id}/stop"), None).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("stopped")), "{body}");
    let (code, body) = alice.call("POST", &format!("/api/v1/workspaces/{id}/stop"), None).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("stopped")), "{body}");
    let out = ssh::run("127.0.0.1", port, &alice_key, "true");
    assert_eq!(out.code, 255);
    assert!(out.stderr.contains("refused"), "{}", out.stderr);

    // Start: SSH works again, same repo.
    let (code, body) = alice.call("POST", &format!("/api/v1/workspaces/{id}/start"), None).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("running")), "{body}");
    assert_eq!(ssh_ok(port, &alice_key, "cat hello/README.md"), "hello from nexus\n");

    // Fill the two-port range: the next create is refused with a clear error and leaves nothing.
    let (code, other) = bob.create("other", "acme/hello").await;
    assert_eq!(code, 201, "{other}");
    let (code, body) = alice.create("third", "acme/hello").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "ssh_ports_exhausted");
    assert!(body["error"]["hint"].as_str().unwrap().contains("delete"));
    bob.wait_status(other["workspace_id"].as_str().unwrap(), &["running"], READY).await;
    assert_eq!(project.instances().len(), 2, "the refused create made no container");

    // Delete: container gone, port reusable.
    let (code, body) = alice.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
    assert_eq!(code, 200, "{body}");
    assert!(!project.instances().contains(&id), "container {id} still exists");
    let (code, _) = alice.call("GET", &format!("/api/v1/workspaces/{id}/status"), None).await;
    assert_eq!(code, 404);
    let (code, next) = alice.create("third", "acme/hello").await;
    assert_eq!(code, 201, "{next}");
    assert_eq!(next["ssh_port"].as_u64(), Some(port as u64), "the freed port is handed out again");
    drop(env.git);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kill9_mid_create_recovers_workspaces_and_ports() {
    let Some(mut env) = env(3, 30).await else {
        return;
    };
    let project = ProjectGuard::new("kill9");
    let _agent = AgentProcess::start(&bin(), &env.server, "node-k", &project.0, &[]);
    let key = TestKey::generate("carol");
    let api = Api::new(&env.server.url);
    let carol = api.register_as_operator(&env.server.operator_token(), "carol", 2001, &key.public).await;
    wait_nodes(&api.with_token(&env.server.operator_token()), 1).await;

    // A full git URL, a non-default branch and explicit limits.
    let feature = env.git.add_branch("acme", "hello", "feature", &[("README.md", "feature branch\n")]);
    let url = format!("{}/acme/hello.git", env.git.base_url);
    let (code, created) = carol
        .call(
            "POST",
            "/api/v1/workspaces/create",
            Some(json!({"workspace_name": "hello", "repo": url, "branch": "feature", "resources": {"cpu": 1, "memory": "1GiB"}})),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["workspace_id"].as_str().unwrap().to_string();
    let port = created["ssh_port"].as_u64().unwrap() as u16;
    // Kill the server while the node is still building the container.
    env.server.kill9();
    env.server.restart();
    let running = carol.wait_status(&id, &["running"], READY).await;
    assert_eq!(running["ssh"]["port"], port, "allocation survived");
    assert_eq!(running["repo"]["branch"], "feature");
    assert_eq!(running["repo"]["commit"], feature.as_str());
    assert_eq!(ssh_ok(port, &key, "cat hello/README.md"), "feature branch\n");
    assert_eq!(ssh_ok(port, &key, "cd hello && git branch --show-current"), "feature\n");
    // The limits are the container's: one CPU, 1 GiB. LXD pins the CPU count asynchronously,
    // shortly after start, so the CPU check waits for it.
    nexus_testkit::eventually(Duration::from_secs(15), "one CPU", || async {
        (ssh::run("127.0.0.1", port, &key, "nproc").stdout == "1\n").then_some(())
    })
    .await;
    let mem = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes";
    assert_eq!(ssh_ok(port, &key, mem), "1073741824\n");

    // And once more while running: the listener comes back.
    env.server.kill9();
    let out = ssh::run("127.0.0.1", port, &key, "true");
    assert_ne!(out.code, 0, "nothing listens while the server is down");
    env.server.restart();
    nexus_testkit::eventually(Duration::from_secs(30), "SSH after restart", || async {
        (ssh::run("127.0.0.1", port, &key, "cat hello/README.md").stdout == "feature branch\n").then_some(())
    })
    .await;
    let (code, list) = carol.call("GET", "/api/v1/workspaces", None).await;
    assert_eq!(code, 200);
    assert_eq!(list["workspaces"].as_array().unwrap().len(), 1);
    assert_eq!(project.instances(), vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_load_and_a_dead_one_is_marked_unresponsive() {
    // The server's default node timeout (15 s), so this checks what operators get.
    let Some(env) = env(4, 15).await else { return };
    let pa = ProjectGuard::new("two-a");
    let pb = ProjectGuard::new("two-b");
    let _a = AgentProcess::start(&bin(), &env.server, "node-a", &pa.0, &[]);
    let b = AgentProcess::start(&bin(), &env.server, "node-b", &pb.0, &[]);
    let op = Api::new(&env.server.url).with_token(&env.server.operator_token());
    wait_nodes(&op, 2).await;
    let key = TestKey::generate("dave");
    let dave =
        Api::new(&env.server.url).register_as_operator(&env.server.operator_token(), "dave", 3001, &key.public).await;
    let (c1, w1) = dave.create("one", "acme/hello").await;
    let (c2, w2) = dave.create("two", "acme/hello").await;
    assert_eq!((c1, c2), (201, 201), "{w1} {w2}");
    let s1 = dave.wait_status(w1["workspace_id"].as_str().unwrap(), &["running"], READY).await;
    let s2 = dave.wait_status(w2["workspace_id"].as_str().unwrap(), &["running"], READY).await;
    let nodes = [s1["node"]["name"].as_str().unwrap(), s2["node"]["name"].as_str().unwrap()];
    assert!(nodes.contains(&"node-a") && nodes.contains(&"node-b"), "workspaces were not spread: {nodes:?}");
    assert_eq!(pa.instances().len() + pb.instances().len(), 2);

    // Each workspace is reachable through its own node's agent.
    for s in [&s1, &s2] {
        assert_eq!(
            ssh_ok(s["ssh"]["port"].as_u64().unwrap() as u16, &key, "cat hello/README.md"),
            "hello from nexus\n"
        );
    }

    let on_b = if nodes[0] == "node-b" { &s1 } else { &s2 };
    let id_b = on_b["workspace_id"].as_str().unwrap();
    // Freeze rather than kill: the connection stays open, so only the missed heartbeats can tell.
    let frozen = Instant::now();
    b.freeze();
    let view = nexus_testkit::eventually(Duration::from_secs(30), "node-b unresponsive", || async {
        let v = dave.status(id_b).await;
        (v["node"]["status"] == "unresponsive").then_some(v)
    })
    .await;
    eprintln!("node-b marked unresponsive {:?} after its agent was frozen", frozen.elapsed());
    assert!(frozen.elapsed() < Duration::from_secs(30));
    assert!(view["message"].as_str().unwrap().contains("unresponsive"), "{view}");
    assert!(view["hint"].as_str().is_some());
    // New workspaces go to the live node.
    let (c3, w3) = dave.create("three", "acme/hello").await;
    assert_eq!(c3, 201, "{w3}");
    let s3 = dave.status(w3["workspace_id"].as_str().unwrap()).await;
    assert_eq!(s3["node"]["name"], "node-a");
}

// ---- services ---------------------------------------------------------------------------------

const WEB_JS: &str = r#"require('http').createServer((q, s) => s.end('web ok\n')).listen(process.env.PORT);"#;
/// Records whether `web` answered when `api` started, then serves.
const API_JS: &str = r#"const fs = require('fs');
fetch('http://127.0.0.1:3000/').then(r => String(r.status)).catch(() => 'down')
  .then(seen => { fs.writeFileSync(process.env.HOME + '/api-saw-web.txt', seen);
    require('http').createServer((q, s) => s.end('api ok\n')).listen(process.env.PORT); });"#;
const SPEC_CONFIG: &str = r#"name: my-project
provider: lxc

services:
  web:
    command: "npm run dev"
    port: 3000
    health_check: {type: "http", path: "/"}

  api:
    command: "npm run server"
    port: 4000
    depends_on: ["web"]

providers:
  lxc:
    image: "nexus-base"
    cpu: 2
    memory: "2GB"
"#;

fn service<'a>(view: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    view["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {view}"))
}

/// Polls until every listed service has `status`, returning the view.
async fn wait_services(api: &Api, id: &str, names: &[&str], status: &str) -> serde_json::Value {
    nexus_testkit::eventually(READY, &format!("services {names:?} {status}"), || async {
        let v = api.status(id).await;
        let services = v["services"].as_array().cloned().unwrap_or_default();
        let done = names.iter().all(|n| services.iter().any(|s| s["name"] == *n && s["status"] == status));
        done.then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_start_in_order_are_detected_and_failures_explain_themselves() {
    let Some(env) = env(8, 30).await else { return };
    let g = &env.git;
    g.create_repo(
        "acme",
        "spec",
        &[
            (
                "package.json",
                r#"{"name":"spec","version":"1.0.0","scripts":{"dev":"node web.js","server":"node api.js"}}"#,
            ),
            ("web.js", WEB_JS),
            ("api.js", API_JS),
            (".nexus/config.yaml", SPEC_CONFIG),
        ],
    );
    g.create_repo(
        "acme",
        "node-auto",
        &[
            ("package.json", r#"{"name":"auto","version":"1.0.0","scripts":{"dev":"node server.js"}}"#),
            ("server.js", WEB_JS),
        ],
    );
    g.create_repo(
        "acme",
        "py-auto",
        &[
            ("requirements.txt", "# no dependencies\n"),
            (
                "app.py",
                "import http.server, os\nhttp.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler).serve_forever()\n",
            ),
        ],
    );
    g.create_repo("acme", "static", &[("index.html", "<h1>static ok</h1>\n")]);
    g.create_repo(
        "acme",
        "crash",
        &[(".nexus/config.yaml", "services:\n  boom:\n    command: \"echo boom-started; exit 3\"\n    port: 5000\n")],
    );
    let project = ProjectGuard::new("svc");
    let _agent = AgentProcess::start(&bin(), &env.server, "node-s", &project.0, &[]);
    let key = TestKey::generate("erin");
    let api = Api::new(&env.server.url);
    wait_nodes(&api.with_token(&env.server.operator_token()), 1).await;
    let erin = api.register_as_operator(&env.server.operator_token(), "erin", 4001, &key.public).await;

    let mut ids = std::collections::HashMap::new();
    for repo in ["spec", "node-auto", "py-auto", "static", "crash"] {
        let (code, body) = erin.create(repo, &format!("acme/{repo}")).await;
        assert_eq!(code, 201, "{repo}: {body}");
        ids.insert(repo, body["workspace_id"].as_str().unwrap().to_string());
    }

    // The spec's own config: web then api, api only after web was healthy.
    let spec = wait_services(&erin, &ids["spec"], &["web", "api"], "running").await;
    assert_eq!(spec["services_source"], ".nexus/config.yaml");
    assert_eq!(spec["status"], "running");
    let port = spec["ssh"]["port"].as_u64().unwrap() as u16;
    assert_eq!(ssh_ok(port, &key, "cat ~/api-saw-web.txt"), "200", "api started before web was healthy");
    assert_eq!(ssh_ok(port, &key, "curl -s localhost:4000"), "api ok\n");
    assert_eq!(spec["resources"]["memory"], "2GB", "providers.lxc applies");
    let (web, apis) = (service(&spec, "web"), service(&spec, "api"));
    assert_eq!((web["port"].as_u64(), apis["port"].as_u64()), (Some(3000), Some(4000)));
    assert_ne!(web["mapped_port"], apis["mapped_port"]);
    assert!(web["mapped_port"].as_u64().unwrap() >= 23000);
    assert_eq!(web["url"], format!("http://localhost:{}", web["mapped_port"]));

    // The CLI shows the same, and reads the service's journal over SSH.
    let cli = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .env("NEXUS_SERVER", &env.server.url)
            .env("NEXUS_TOKEN", erin.token().unwrap())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "nexus {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let table = cli(&["workspace", "services", "spec"]);
    for expected in ["web", "api", "running", &format!("http://localhost:{}", web["mapped_port"])] {
        assert!(table.contains(expected), "`nexus workspace services` lacks {expected:?}:\n{table}");
    }
    let listed: serde_json::Value = serde_json::from_str(&cli(&["workspace", "services", "spec", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let key_path = key.path.to_string_lossy().to_string();
    let logs = cli(&["workspace", "logs", "spec", "web", "-n", "50", "--identity", &key_path]);
    assert!(logs.contains("node web.js"), "web's journal: {logs}");

    // No config: detected and started.
    let node = wait_services(&erin, &ids["node-auto"], &["web"], "running").await;
    assert!(node["services_source"].as_str().unwrap().contains("node"), "{node}");
    let py = nexus_testkit::eventually(READY, "python service running", || async {
        let v = erin.status(&ids["py-auto"]).await;
        let svc = v["services"].as_array().cloned().unwrap_or_default();
        svc.iter().any(|s| s["status"] == "running" && !s["discovered"].as_bool().unwrap_or(false)).then_some(v)
    })
    .await;
    assert!(py["services_source"].as_str().unwrap().contains("python"), "{py}");
    let py_port = py["ssh"]["port"].as_u64().unwrap() as u16;
    assert_eq!(ssh_ok(py_port, &key, "test -x ~/py-auto/.venv/bin/python && echo venv"), "venv\n");
    let st = wait_services(&erin, &ids["static"], &["web"], "running").await;
    let st_port = st["ssh"]["port"].as_u64().unwrap() as u16;
    let served = ssh_ok(st_port, &key, &format!("curl -s localhost:{}", service(&st, "web")["port"]));
    assert_eq!(served, "<h1>static ok</h1>\n");

    // A crashing service: the workspace runs, the service failed, with its logs and a hint.
    let crash = wait_services(&erin, &ids["crash"], &["boom"], "failed").await;
    assert_eq!(crash["status"], "running");
    let boom = service(&crash, "boom");
    assert!(boom["last_logs"].as_str().unwrap().contains("boom-started"), "{boom}");
    assert!(boom["hint"].as_str().unwrap().contains("nexus workspace logs"), "{boom}");

    // The lifecycle commands work by name, with --json for scripts.
    let stopped: serde_json::Value = serde_json::from_str(&cli(&["workspace", "stop", "crash", "--json"])).unwrap();
    assert_eq!(stopped["status"], "stopped");
    let status: serde_json::Value = serde_json::from_str(&cli(&["workspace", "status", "crash", "--json"])).unwrap();
    assert_eq!(status["status"], "stopped");
    assert!(status["services"].as_array().unwrap().iter().all(|s| s["status"] == "stopped"), "{status}");
    let deleted: serde_json::Value = serde_json::from_str(&cli(&["workspace", "delete", "crash", "--json"])).unwrap();
    assert_eq!(deleted["deleted"], true);
    assert!(!cli(&["workspace", "list"]).contains("crash"));

    // A port opened by hand shows up as discovered.
    ssh_ok(st_port, &key, "nohup python3 -m http.server 8765 >/dev/null 2>&1 &");
    let found = wait_services(&erin, &ids["static"], &["port-8765"], "running").await;
    assert_eq!(service(&found, "port-8765")["discovered"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_fails_the_create_at_once_with_its_location() {
    let Some(env) = env(4, 30).await else { return };
    let cases = [
        ("bad-yaml", "services:\n  web:\n    command: \"npm run dev\n", ".nexus/config.yaml:"),
        ("unknown-key", "services:\n  web:\n    comand: \"npm run dev\"\n", ".nexus/config.yaml:3:5"),
        (
            "cycle",
            "services:\n  a:\n    command: x\n    depends_on: [b]\n  b:\n    command: y\n    depends_on: [a]\n",
            ".nexus/config.yaml:",
        ),
    ];
    for (name, yaml, _) in &cases {
        env.git.create_repo("acme", name, &[(".nexus/config.yaml", yaml)]);
    }
    let project = ProjectGuard::new("badcfg");
    let _agent = AgentProcess::start(&bin(), &env.server, "node-c", &project.0, &[]);
    let key = TestKey::generate("finn");
    let api = Api::new(&env.server.url);
    wait_nodes(&api.with_token(&env.server.operator_token()), 1).await;
    let finn = api.register_as_operator(&env.server.operator_token(), "finn", 5001, &key.public).await;
    for (name, _, location) in cases {
        let t0 = Instant::now();
        let (code, body) = finn.create(name, &format!("acme/{name}")).await;
        assert_eq!(code, 400, "{name}: {body}");
        assert_eq!(body["error"]["code"], "invalid_config", "{name}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().starts_with(location), "{name}: {body}");
        assert!(!body["error"]["hint"].as_str().unwrap().is_empty());
        assert!(t0.elapsed() < Duration::from_secs(10), "refused at once");
        if name == "unknown-key" {
            assert!(body["error"]["hint"].as_str().unwrap().contains("command"), "nearest key: {body}");
        }
    }
    let (_, list) = finn.call("GET", "/api/v1/workspaces", None).await;
    assert_eq!(list["workspaces"].as_array().unwrap().len(), 0);
    assert!(project.instances().is_empty(), "no container left behind");
}

/// A server that trusts the GitHub test server and clones from it.
fn server_for(github: &FakeGithub) -> ServerProcess {
    ServerProcess::for_github(&bin(), github, 4)
}

/// Runs the CLI the installer put in place, as the designer whose HOME is `home`.
fn installed_cli(installed: &std::path::Path, home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(installed)
        .args(args)
        .env("HOME", home)
        .env_remove("NEXUS_SERVER")
        .env_remove("NEXUS_TOKEN")
        .env_remove("NEXUS_CONFIG")
        .output()
        .unwrap()
}

/// A stand-in `cursor` in `dir` that saves its arguments; returns where they are saved.
fn recording_cursor(dir: &std::path::Path) -> PathBuf {
    let record = dir.join("cursor-args");
    let cursor = dir.join("cursor");
    std::fs::write(&cursor, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", record.display())).unwrap();
    std::fs::set_permissions(&cursor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    record
}

/// `acme/site` on the GitHub test server: an npm project whose `dev` script serves `web ok`.
fn create_site_repo(github: &FakeGithub, extra: &[(&str, &str)]) {
    let mut files = vec![
        ("package.json", r#"{"name":"site","version":"1.0.0","scripts":{"dev":"node server.js"}}"#),
        ("server.js", WEB_JS),
    ];
    files.extend_from_slice(extra);
    github.create_repo("acme", "site", false, &files);
}

/// Runs the `nexus` CLI as the designer: their HOME, no browser, the stand-in editor first on PATH.
fn designer(home: &std::path::Path, bin_dir: &std::path::Path) -> Command {
    let mut c = Command::new(bin());
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    c.env("HOME", home)
        .env("PATH", path)
        .env("NEXUS_BROWSER", "none")
        .env("NO_COLOR", "1")
        .env_remove("NEXUS_SERVER")
        .env_remove("NEXUS_TOKEN")
        .env_remove("NEXUS_CONFIG")
        .stdin(std::process::Stdio::null());
    c
}

fn run_ok(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn http_get(url: &str) -> Option<String> {
    let resp = reqwest::Client::new().get(url).timeout(Duration::from_secs(3)).send().await.ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}

/// Tests that forward services to this machine's localhost take turns: each user's first service
/// gets local port 23000, whatever server it is on.
static LOCAL_FORWARDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn designer_journey_auth_ssh_fork_connect_forward_push_pr() {
    let Some(ip) = lxd_host_ip() else { return };
    let _local = LOCAL_FORWARDS.lock().await;
    let github = FakeGithub::start_on(&ip).await;
    github.add_account("alice", 1001);
    github.add_account("acme", 2001);
    github.set_device_interval(1);
    create_site_repo(&github, &[("README.md", "acme site\n")]);
    let server = server_for(&github);
    let project = ProjectGuard::new("designer");
    let _agent = AgentProcess::start(&bin(), &server, "node-a", &project.0, &[]);
    wait_nodes(&Api::new(&server.url).with_token(&server.operator_token()), 1).await;

    let home = tempfile::tempdir().unwrap();
    let bin_dir = tempfile::tempdir().unwrap();
    let record = recording_cursor(bin_dir.path());
    let h = home.path();

    // 1. GitHub device flow: the test plays the designer approving the code in the browser.
    let mut auth = designer(h, bin_dir.path());
    auth.args(["auth", "github", "--server", &server.url]).stderr(std::process::Stdio::piped());
    let child = auth.spawn().unwrap();
    let code = nexus_testkit::eventually(Duration::from_secs(20), "device code requested", || async {
        github.pending_user_codes().into_iter().next()
    })
    .await;
    github.approve_device(&code, "alice");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "auth github failed: {stderr}");
    assert!(stderr.contains(&code), "the code is shown to the designer: {stderr}");
    assert!(stderr.contains("Authenticated as: alice"), "{stderr}");
    let config_path = h.join(".nexus/config.yaml");
    let mode = std::fs::metadata(&config_path).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains("username: alice") && config.contains("auth_token:"), "{config}");

    // 2. SSH key: generated, uploaded once (a re-run detects it), registered with the server.
    let mut setup = designer(h, bin_dir.path());
    setup.args(["ssh", "setup"]);
    run_ok(setup, "ssh setup");
    assert!(h.join(".ssh/id_ed25519").exists() && h.join(".ssh/id_ed25519.pub").exists());
    let key_before = std::fs::read(h.join(".ssh/id_ed25519")).unwrap();
    let mut again = designer(h, bin_dir.path());
    again.args(["ssh", "setup", "--json"]);
    let second: serde_json::Value = serde_json::from_str(&run_ok(again, "ssh setup again")).unwrap();
    assert_eq!(second["generated"], false, "{second}");
    assert_eq!(second["uploaded"], false, "{second}");
    assert_eq!(github.keys("alice").len(), 1, "uploaded exactly once");
    assert_eq!(std::fs::read(h.join(".ssh/id_ed25519")).unwrap(), key_before, "the key is never overwritten");

    // 3. Create: alice can't push to acme/site, so it is forked and the fork cloned.
    let mut create = designer(h, bin_dir.path());
    create.args(["workspace", "create", "acme/site"]);
    let ready = run_ok(create, "workspace create");
    assert!(ready.contains("Workspace Ready") && ready.contains("SSH: ssh -p"), "{ready}");
    assert!(ready.contains("  - web: http://localhost:"), "{ready}");
    assert!(github.bare_repo_path("alice", "site").exists(), "fork made");
    // Running it again offers the same workspace instead of a second one.
    let mut create_again = designer(h, bin_dir.path());
    create_again.args(["workspace", "create", "acme/site", "--json"]);
    let view: serde_json::Value = serde_json::from_str(&run_ok(create_again, "create again")).unwrap();
    assert_eq!(view["name"], "site");
    let mut list = designer(h, bin_dir.path());
    list.args(["workspace", "list", "--json"]);
    let all: serde_json::Value = serde_json::from_str(&run_ok(list, "list")).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    let mapped = view["services"][0]["mapped_port"].as_u64().expect("web has a local port");

    // 4. Connect: ssh config with the pinned key, forwards in the background, Cursor's CLI.
    let mut connect = designer(h, bin_dir.path());
    connect.args(["workspace", "connect", "site", "--editor", "cursor"]);
    run_ok(connect, "connect");
    let args = std::fs::read_to_string(&record).unwrap();
    assert_eq!(args.trim(), "--folder-uri=vscode-remote://ssh-remote+nexus-site/home/dev/site");
    let local = format!("http://localhost:{mapped}/");
    assert_eq!(http_get(&local).await.as_deref(), Some("web ok\n"), "service reachable on the designer's side");

    // The forward heals after its ssh connection is killed.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.join(".nexus/forwards/site.json")).unwrap()).unwrap();
    let ssh_pid = state["ssh_pid"].as_u64().unwrap();
    Command::new("kill").args(["-9", &ssh_pid.to_string()]).status().unwrap();
    nexus_testkit::eventually(Duration::from_secs(30), "forward reconnected", || async {
        let st: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(h.join(".nexus/forwards/site.json")).ok()?).ok()?;
        (st["connects"].as_u64()? >= 2).then_some(())?;
        http_get(&local).await
    })
    .await;

    // The forwards are visible, and `workspace ssh` runs commands in the workspace.
    let mut ports = designer(h, bin_dir.path());
    ports.args(["workspace", "ports", "list", "--json"]);
    let ports: serde_json::Value = serde_json::from_str(&run_ok(ports, "ports list")).unwrap();
    assert_eq!(ports[0]["workspace"], "site", "{ports}");
    assert_eq!(ports[0]["ports"][0]["local"].as_u64(), Some(mapped), "{ports}");
    let mut in_ws = designer(h, bin_dir.path());
    in_ws.args(["workspace", "ssh", "site", "--", "cat", "site/README.md"]);
    assert_eq!(run_ok(in_ws, "workspace ssh").trim(), "acme site");

    // 5. The designer commits and pushes from inside the workspace, as themselves, to the fork.
    let ssh_config = h.join(".ssh/config");
    let push = "cd ~/site && git remote get-url upstream && git switch -q -c tweak && echo more >> README.md \
                && git commit -qam 'Designer tweak' && git push -q -u origin tweak && git log -1 --format=%ae";
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&ssh_config)
        .args(["-o", "BatchMode=yes", "nexus-site", push])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "push from the workspace failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&github.clone_url("acme", "site")), "upstream remote: {text}");
    assert!(text.contains("1001+alice@users.noreply.github.com"), "commits as alice: {text}");
    let pushed = Command::new("git")
        .args([
            "--git-dir",
            &github.bare_repo_path("alice", "site").display().to_string(),
            "log",
            "-1",
            "--format=%s",
            "tweak",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&pushed.stdout).trim(), "Designer tweak");

    // 6. The PR goes from alice:tweak to acme/site.
    let mut pr = designer(h, bin_dir.path());
    pr.args(["workspace", "pr", "site", "--json"]);
    let pr: serde_json::Value = serde_json::from_str(&run_ok(pr, "workspace pr")).unwrap();
    let pulls = github.pulls("acme", "site");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!((pulls[0].head_owner.as_str(), pulls[0].head_ref.as_str()), ("alice", "tweak"));
    assert_eq!(pulls[0].title, "Designer tweak");
    assert!(pr["url"].as_str().unwrap().ends_with("/acme/site/pull/1"), "{pr}");

    // A private repository of alice's own: no fork (she can push), cloned with her token.
    github.create_repo("alice", "secret", true, &[("NOTES.md", "private notes\n")]);
    let mut private = designer(h, bin_dir.path());
    private.args(["workspace", "create", "alice/secret", "--json"]);
    let secret: serde_json::Value = serde_json::from_str(&run_ok(private, "create a private repo")).unwrap();
    assert_eq!(secret["status"], "running", "{secret}");
    assert!(!github.bare_repo_path("alice", "secret-1").exists());
    let mut read = designer(h, bin_dir.path());
    read.args(["workspace", "ssh", "secret", "--", "cat", "secret/NOTES.md"]);
    assert_eq!(run_ok(read, "read the private checkout").trim(), "private notes");
    let mut delete = designer(h, bin_dir.path());
    delete.args(["workspace", "delete", "secret"]);
    run_ok(delete, "delete the private workspace");

    // Deleting the workspace stops its forwards and removes its ssh entry.
    let mut delete = designer(h, bin_dir.path());
    delete.args(["workspace", "delete", "site"]);
    run_ok(delete, "delete");
    assert!(!h.join(".nexus/forwards/site.json").exists());
    assert!(!std::fs::read_to_string(h.join(".nexus/ssh/config")).unwrap().contains("nexus-site"));
    github.assert_conformant();
}

/// `nexus up` in a directory of its own, on ports of its own; `down` stops it, keeping data.
struct Staging {
    dir: tempfile::TempDir,
    port: u16,
    git_port: u16,
}

impl Staging {
    fn cmd(&self, verb: &str) -> Command {
        let mut c = Command::new(bin());
        c.arg(verb).arg("--dir").arg(self.dir.path()).args(["--port", &self.port.to_string()]);
        if verb == "up" {
            c.args(["--git-port", &self.git_port.to_string()]);
        }
        c.env("NO_COLOR", "1").stdin(std::process::Stdio::null());
        c
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = self.cmd("down").output();
        // The demo workspace lives in the staging project; remove it with the test's data.
        let out =
            Command::new("lxc").args(["list", "--project", "nexus-staging", "--format", "csv", "-c", "n"]).output();
        let db = std::fs::read(self.dir.path().join("server/nexus.sqlite3")).unwrap_or_default();
        let db = String::from_utf8_lossy(&db);
        if let Ok(o) = out {
            for name in String::from_utf8_lossy(&o.stdout).lines().filter(|n| db.contains(*n)) {
                let _ = Command::new("lxc").args(["delete", "--force", "--project", "nexus-staging", name]).output();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_up_gives_a_working_ssh_command_and_service_url_and_down_keeps_data() {
    if lxd_host_ip().is_none() {
        return;
    }
    let _local = LOCAL_FORWARDS.lock().await;
    let staging = Staging {
        dir: tempfile::tempdir().unwrap(),
        port: nexus_testkit::free_port(),
        git_port: nexus_testkit::free_port(),
    };
    let ready = run_ok(staging.cmd("up"), "nexus up");
    assert!(ready.contains("Workspace Ready"), "{ready}");
    let ssh_line = ready.lines().find_map(|l| l.strip_prefix("SSH: ")).expect("an SSH line").to_string();
    let url = ready.lines().find_map(|l| l.trim().strip_prefix("- web: ")).and_then(|l| l.split_whitespace().next());
    let url = url.expect("a web service URL").to_string();

    // The printed ssh command works as printed.
    let mut words: Vec<&str> = ssh_line.split_whitespace().collect();
    words.extend(["-o", "BatchMode=yes", "cat site/index.html"]);
    let out = Command::new(words[0]).args(&words[1..]).output().unwrap();
    assert!(out.status.success(), "{ssh_line}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nexus demo"));
    // And so does the service URL, on this machine.
    let page = nexus_testkit::eventually(Duration::from_secs(30), "demo page", || http_get(&url)).await;
    assert!(page.contains("Nexus demo"), "{page}");

    // Changes made in the workspace survive down + up.
    let mut mark = Command::new(words[0]);
    mark.args(&words[1..words.len() - 1]).arg("echo kept > site/note.txt");
    run_ok(mark, "write a file in the workspace");
    run_ok(staging.cmd("down"), "nexus down");
    assert!(http_get(&url).await.is_none(), "the forward stops with down");
    let again = run_ok(staging.cmd("up"), "nexus up again");
    assert!(again.contains("Workspace Ready"), "{again}");
    let mut read = Command::new(words[0]);
    read.args(&words[1..words.len() - 1]).arg("cat site/note.txt");
    assert_eq!(run_ok(read, "read the file back").trim(), "kept");
    let page = nexus_testkit::eventually(Duration::from_secs(30), "demo page after up", || http_get(&url)).await;
    assert!(page.contains("Nexus demo"));
}

/// The whole journey from the one install line on real LXD: `curl <server>/install.sh | bash -s --
/// --repo … --server …` with an empty HOME and no terminal; the test approves the device code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_journey_from_the_install_line_to_the_editor() {
    let Some(ip) = lxd_host_ip() else { return };
    let _local = LOCAL_FORWARDS.lock().await;
    let github = std::sync::Arc::new(FakeGithub::start_on(&ip).await);
    github.add_account("alice", 1001);
    github.add_account("acme", 2001);
    github.set_device_interval(1);
    create_site_repo(&github, &[]);
    let server = server_for(&github);
    let project = ProjectGuard::new("journey");
    let _agent = AgentProcess::start(&bin(), &server, "node-a", &project.0, &[]);
    wait_nodes(&Api::new(&server.url).with_token(&server.operator_token()), 1).await;
    let approver = github.auto_approve("alice");

    let home = tempfile::tempdir().unwrap();
    let bin_dir = tempfile::tempdir().unwrap();
    let record = recording_cursor(bin_dir.path());
    let prefix = home.path().join(".local/bin");
    let path = format!("{}:{}", bin_dir.path().display(), std::env::var("PATH").unwrap());
    let line = "set -o pipefail; curl -fsSL \"$0/install.sh\" | bash -s -- \"$@\"";
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let (server_url, home, prefix) = (server.url.clone(), home.path().to_path_buf(), prefix.clone());
        move || {
            Command::new("setsid")
                .args(["-w", "bash", "-c", line, &server_url, "--repo", "acme/site", "--server", &server_url])
                .args(["--editor", "cursor", "--prefix"])
                .arg(&prefix)
                .env_clear()
                .env("HOME", &home)
                .env("PATH", path)
                .env("NO_COLOR", "1")
                .env("NEXUS_BROWSER", "none")
                .env("LANG", "C.UTF-8")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let took = started.elapsed();
    approver.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install line failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("whole journey took {:.1}s\n{stderr}\n{stdout}", took.as_secs_f64());
    assert!(stdout.contains("Workspace Ready"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&record).expect("the editor was invoked").trim(),
        "--folder-uri=vscode-remote://ssh-remote+nexus-site/home/dev/site"
    );
    let installed = prefix.join("nexus");
    let list = installed_cli(&installed, home.path(), &["workspace", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["status"], "running", "{list}");
    let mapped = list[0]["services"][0]["mapped_port"].as_u64().expect("the web service has a local port");
    let page = http_get(&format!("http://localhost:{mapped}/")).await;
    assert_eq!(page.as_deref(), Some("web ok\n"), "the service answers on the designer's side");

    let delete = installed_cli(&installed, home.path(), &["workspace", "delete", "site"]);
    assert!(delete.status.success(), "{}", String::from_utf8_lossy(&delete.stderr));
    github.assert_conformant();
}

// ---- real projects ----------------------------------------------------------------------------

/// First installs come from the public registries through this machine's network; generous.
const INSTALL: Duration = Duration::from_secs(900);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/projects").join(name)
}

/// The first service that is not a discovered port, of a status view.
fn main_service(view: &serde_json::Value) -> Option<&serde_json::Value> {
    view["services"].as_array()?.iter().find(|s| !s["discovered"].as_bool().unwrap_or(false))
}

/// Whether the view says something failed: the workspace, its setup or a service.
fn failed(view: &serde_json::Value) -> bool {
    view["status"] == "failed"
        || matches!(view["setup"]["status"].as_str(), Some("failed" | "timed_out"))
        || view["services"].as_array().is_some_and(|s| s.iter().any(|s| s["status"] == "failed"))
}

/// Polls until the workspace's detected service is `running`; panics with the view if anything fails.
async fn wait_detected_running(api: &Api, id: &str, what: &str) -> serde_json::Value {
    let t0 = Instant::now();
    let view = nexus_testkit::eventually(INSTALL, &format!("{what}'s service running"), || async {
        let v = api.status(id).await;
        assert!(!failed(&v), "{what} failed: {v:#}");
        main_service(&v).is_some_and(|s| s["status"] == "running").then_some(v)
    })
    .await;
    eprintln!("{what}: service running {:.1}s after the wait began", t0.elapsed().as_secs_f64());
    view
}

/// Polls until the workspace, its setup or a service failed, returning the view.
async fn wait_failed(api: &Api, id: &str, timeout: Duration) -> serde_json::Value {
    nexus_testkit::eventually(timeout, "a failure", || async {
        let v = api.status(id).await;
        failed(&v).then_some(v)
    })
    .await
}

/// `curl` inside the workspace until its output contains `want` (dev servers compile on first request
/// and reload after edits), returning that output.
fn curl_until(port: u16, key: &TestKey, url: &str, want: &str, timeout: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let out = ssh::run("127.0.0.1", port, key, &format!("curl -s --max-time 120 {url}"));
        if out.stdout.contains(want) {
            return out.stdout;
        }
        assert!(
            t0.elapsed() < timeout,
            "{url} inside the workspace never showed {want:?} in {timeout:?}; last answer: {}\n{}",
            out.stdout.chars().take(2000).collect::<String>(),
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A project as its framework's generator made it, the edit to make over SSH and what shows it.
struct RealProject {
    repo: &'static str,
    /// What the dev page at `/` must contain.
    page_marker: &'static str,
    /// Shell run in the project's folder over SSH.
    edit: &'static str,
    /// The path fetched after the edit, and what it must then contain.
    edited_path: &'static str,
    edited_marker: &'static str,
}

const REAL_PROJECTS: [RealProject; 4] = [
    RealProject {
        repo: "vite-react-ts",
        page_marker: "/@vite/client",
        edit: "sed -i 's/Explore Vite/Explore Nexus edit/' src/App.tsx",
        edited_path: "/src/App.tsx",
        edited_marker: "Explore Nexus edit",
    },
    RealProject {
        repo: "django-site",
        page_marker: "The install worked successfully!",
        edit: "printf '%s\\n' 'from django.http import HttpResponse' \
               'urlpatterns += [path(\"nexus/\", lambda request: HttpResponse(\"Django edited by Nexus\"))]' \
               >> mysite/urls.py",
        edited_path: "/nexus/",
        edited_marker: "Django edited by Nexus",
    },
    RealProject {
        repo: "next-app",
        page_marker: "/_next/",
        edit: "sed -i 's/To get started, edit the/Next edited by Nexus/' app/page.tsx",
        edited_path: "/",
        edited_marker: "Next edited by Nexus",
    },
    RealProject {
        repo: "astro-site",
        page_marker: "/@vite/client",
        edit: "sed -i 's/Astro site/Astro edited by Nexus/' src/pages/index.astro",
        edited_path: "/",
        edited_marker: "Astro edited by Nexus",
    },
];

/// The four generators' projects, unmodified and without `.nexus/config.yaml`, on one node: each is
/// detected, set up (runtime, install) and served, and an edit over SSH shows in the served page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_projects_serve_their_dev_pages_and_show_edits_made_over_ssh() {
    let Some(env) = env(8, 30).await else { return };
    for p in &REAL_PROJECTS {
        env.git.create_repo_from_dir("acme", p.repo, &fixture(p.repo));
    }
    let project = ProjectGuard::new("real");
    let _agent = AgentProcess::start(&bin(), &env.server, "node-r", &project.0, &[]);
    let key = TestKey::generate("gail");
    let api = Api::new(&env.server.url);
    wait_nodes(&api.with_token(&env.server.operator_token()), 1).await;
    let gail = api.register_as_operator(&env.server.operator_token(), "gail", 6001, &key.public).await;

    // All at once: the node installs them side by side, and the test waits for the slowest only once.
    let mut ids = Vec::new();
    for p in &REAL_PROJECTS {
        let (code, body) = gail.create(p.repo, &format!("acme/{}", p.repo)).await;
        assert_eq!(code, 201, "{}: {body}", p.repo);
        ids.push(body["workspace_id"].as_str().unwrap().to_string());
    }
    for (p, id) in REAL_PROJECTS.iter().zip(&ids) {
        let view = wait_detected_running(&gail, id, p.repo).await;
        assert_eq!(view["status"], "running", "{view:#}");
        assert_eq!(view["setup"]["status"], "done", "{}: setup {:#}", p.repo, view["setup"]);
        let ssh_port = view["ssh"]["port"].as_u64().unwrap() as u16;
        let port = main_service(&view).unwrap()["port"].as_u64().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        curl_until(ssh_port, &key, &format!("{base}/"), p.page_marker, Duration::from_secs(180));
        ssh_ok(ssh_port, &key, &format!("cd ~/{} && {}", p.repo, p.edit));
        let url = format!("{base}{}", p.edited_path);
        curl_until(ssh_port, &key, &url, p.edited_marker, Duration::from_secs(180));
        eprintln!("{}: dev page served and the edit shown", p.repo);
    }

    // The second workspace of the same repo starts from the prebuild the first one's setup left
    // (kept in the background a few seconds after setup is done), so its setup does not run again.
    // A prebuild carries its key (`user.nexus.prebuild`) once its copy is finished and scrubbed.
    let lxc = |args: &[&str]| {
        let out = std::process::Command::new("lxc").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    nexus_testkit::eventually(Duration::from_secs(120), "a prebuild kept on the node", || async {
        let names = lxc(&["list", "--project", &project.0, "-c", "n", "-f", "csv"]);
        names
            .lines()
            .filter(|l| l.starts_with("pb-"))
            .any(|pb| !lxc(&["config", "get", "--project", &project.0, pb, "user.nexus.prebuild"]).is_empty())
            .then_some(())
    })
    .await;
    let vite = &REAL_PROJECTS[0];
    let (code, body) = gail.create("vite-again", &format!("acme/{}", vite.repo)).await;
    assert_eq!(code, 201, "{body}");
    let view = wait_detected_running(&gail, body["workspace_id"].as_str().unwrap(), "vite-again").await;
    let message = view["setup"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("from prebuild pb-"),
        "the second workspace came from the prebuild: {:#}",
        view["setup"]
    );
    let port = main_service(&view).unwrap()["port"].as_u64().unwrap();
    let ssh_port = view["ssh"]["port"].as_u64().unwrap() as u16;
    curl_until(ssh_port, &key, &format!("http://127.0.0.1:{port}/"), vite.page_marker, Duration::from_secs(180));
    eprintln!("vite-again: from the prebuild, dev page served");
}

/// A project whose `engines.node` no Node release satisfies fails, naming the version it asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_version_the_source_does_not_have_fails_naming_it() {
    let Some(env) = env(4, 30).await else { return };
    env.git.create_repo(
        "acme",
        "future-node",
        &[
            (
                "package.json",
                r#"{"name":"future-node","version":"1.0.0","engines":{"node":">=99"},"scripts":{"dev":"node server.js"}}"#,
            ),
            ("server.js", WEB_JS),
        ],
    );
    let project = ProjectGuard::new("engines");
    let _agent = AgentProcess::start(&bin(), &env.server, "node-e", &project.0, &[]);
    let key = TestKey::generate("hana");
    let api = Api::new(&env.server.url);
    wait_nodes(&api.with_token(&env.server.operator_token()), 1).await;
    let hana = api.register_as_operator(&env.server.operator_token(), "hana", 7001, &key.public).await;
    let (code, body) = hana.create("future-node", "acme/future-node").await;
    assert_eq!(code, 201, "{body}");
    let view = wait_failed(&hana, body["workspace_id"].as_str().unwrap(), READY).await;
    eprintln!("engines >=99: {view:#}");
    assert!(view.to_string().contains(">=99"), "the failure names the version asked for: {view:#}");
}

/// With a registry the node cannot reach, a project that needs installing fails within seconds, and
/// says which address it could not reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_fails_fast_with_the_cause() {
    let Some(env) = env(4, 30).await else { return };
    env.git.create_repo_from_dir("acme", "vite-react-ts", &fixture("vite-react-ts"));
    let project = ProjectGuard::new("noreg");
    let runtimes = tempfile::tempdir().unwrap();
    let caches = tempfile::tempdir().unwrap();
    let _agent = AgentProcess::start(
        &bin(),
        &env.server,
        "node-n",
        &project.0,
        &[
            "--npm-registry",
            "http://127.0.0.1:9",
            "--runtime-dir",
            runtimes.path().to_str().unwrap(),
            "--cache-dir",
            caches.path().to_str().unwrap(),
        ],
    );
    let key = TestKey::generate("ivan");
    let api = Api::new(&env.server.url);
    wait_nodes(&api.with_token(&env.server.operator_token()), 1).await;
    let ivan = api.register_as_operator(&env.server.operator_token(), "ivan", 8001, &key.public).await;
    let t0 = Instant::now();
    let (code, body) = ivan.create("vite", "acme/vite-react-ts").await;
    assert_eq!(code, 201, "{body}");
    let view = wait_failed(&ivan, body["workspace_id"].as_str().unwrap(), READY).await;
    let took = t0.elapsed();
    eprintln!("unreachable registry: failed after {:.1}s: {view:#}", took.as_secs_f64());
    assert!(view.to_string().contains("127.0.0.1:9"), "the failure names the registry: {view:#}");
    assert!(took < Duration::from_secs(30), "failed only after {took:?}: {view:#}");
}

/// Issue 12 item 6 on real LXD: a workspace nobody is connected to stops after `--idle-stop`
/// (its files kept, its SSH port still open), and the next plain `ssh` to it starts it and gets in
/// on that same connection; an open SSH session keeps a workspace running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_workspace_stops_and_the_next_ssh_connection_wakes_it_and_gets_in() {
    let Some(ip) = lxd_host_ip() else { return };
    let git = GitServer::start(&ip);
    git.create_repo("acme", "hello", &[("README.md", "hello from nexus\n")]);
    let server = ServerProcess::start_with_args(
        &bin(),
        ServerOpts {
            github_api_url: "http://127.0.0.1:9".into(),
            git_base_url: git.base_url.clone(),
            ssh_ports: nexus_testkit::free_port_range(2),
            node_timeout_secs: 30,
        },
        &["--idle-stop", "8s"],
    );
    let project = ProjectGuard::new("idle");
    let _agent = AgentProcess::start(&bin(), &server, "node-idle", &project.0, &[]);
    let key = TestKey::generate("idle");
    let api = Api::new(&server.url).register_as_operator(&server.operator_token(), "ida", 4001, &key.public).await;
    wait_nodes(&Api::new(&server.url).with_token(&server.operator_token()), 1).await;
    let (code, created) = api.create("idle", "acme/hello").await;
    assert_eq!(code, 201, "{created}");
    let id = created["workspace_id"].as_str().unwrap().to_string();
    let port = created["ssh_port"].as_u64().unwrap() as u16;
    api.wait_status(&id, &["running"], READY).await;

    // A session held open keeps it running past the allowance.
    let mut held = ssh::command("127.0.0.1", port, &key, &[], "echo kept > ~/kept && sleep 20").spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(api.status(&id).await["status"], "running", "an open SSH session keeps the workspace running");
    let _ = held.wait();

    // Nobody connected: it stops, and says why.
    let stopped = api.wait_status(&id, &["stopped"], Duration::from_secs(60)).await;
    assert!(
        stopped["message"].as_str().unwrap().starts_with("stopped after 8 s without an SSH connection"),
        "{stopped}"
    );
    let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(listening, "the SSH port stays open to wake it");

    // A plain ssh starts it; the same connection gets in and finds the file it left.
    let t = Instant::now();
    // The connection waits while the workspace starts.
    let out = ssh::command("127.0.0.1", port, &key, &["ConnectTimeout=120"], "cat ~/kept").output().unwrap();
    assert!(out.status.success(), "ssh to the idle-stopped workspace: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\n");
    eprintln!("ssh to an idle-stopped workspace got in after {:?}", t.elapsed());
    assert_eq!(api.status(&id).await["status"], "running");
    let (code, body) = api.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
    assert_eq!(code, 200, "{body}");
}

/// Issue 12 item 1: `nexus node check` on this node, prepared by `nexus node init` alone, says it
/// holds 200 running workspaces; a plan beyond its memory fails with the limit named and exit 1.
#[test]
fn node_check_says_this_prepared_node_holds_200_workspaces_and_names_the_bound_past_it() {
    if lxd_host_ip().is_none() {
        return;
    }
    let out = Command::new(bin()).args(["node", "check", "--workspaces", "200", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert!(report["holds"].as_u64().unwrap() >= 200, "{report}");
    let inotify = report["findings"].as_array().unwrap().iter().find(|f| f["what"] == "fs.inotify.max_user_instances");
    assert_eq!(inotify.unwrap()["level"], "ok", "{report}");

    let out = Command::new(bin()).args(["node", "check", "--workspaces", "1000000", "--json"]).output().unwrap();
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let memory = report["findings"].as_array().unwrap().iter().find(|f| f["what"] == "memory").unwrap();
    assert_eq!(memory["level"], "fail", "{report}");
    assert!(memory["fix"].as_str().unwrap().contains("add memory or nodes"), "{report}");
}
