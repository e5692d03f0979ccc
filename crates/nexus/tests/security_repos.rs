//! Attack tests for issue 10 items 3 (repo URLs: server-side request forgery) and 4 (probe
//! limits): each performs the attack against the real server (in process, real HTTP, real git) and
//! fails on the code before the defence.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexus_agent::fake::FakeProvider;
use nexus_server::github::GithubApi;
use nexus_server::repo_probe::GitLsRemote;
use nexus_server::{App, ServerConfig};
use nexus_testkit::api::Api;
use nexus_testkit::git::GitServer;
use tokio::sync::oneshot;

const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl alice@laptop";
const T: Duration = Duration::from_secs(20);

struct Server {
    api: Api,
    url: String,
    operator: String,
    join: String,
    _data: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
    _agents: Vec<oneshot::Sender<()>>,
}

/// A server whose git host is `git_base_url`, with the documented defaults otherwise.
async fn server(git_base_url: &str) -> Server {
    server_with(git_base_url, |_| {}).await
}

/// [`server`] with `tune` applied to its config.
async fn server_with(git_base_url: &str, tune: impl FnOnce(&mut ServerConfig)) -> Server {
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(data.path().to_path_buf());
    config.github_api_url = "http://127.0.0.1:9".into();
    config.git_base_url = git_base_url.into();
    config.ssh_ports = nexus_testkit::free_port_range(4);
    config.ssh_bind_ip = "127.0.0.1".parse().unwrap();
    tune(&mut config);
    let app = App::new(
        config,
        Box::new(GithubApi::new("http://127.0.0.1:9")),
        Box::new(GitLsRemote { timeout: Duration::from_secs(10) }),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(nexus_server::serve_app(app, listener, async move {
        let _ = stopped.await;
    }));
    let operator = std::fs::read_to_string(data.path().join("operator-token")).unwrap().trim().to_string();
    let join = std::fs::read_to_string(data.path().join("join-token")).unwrap().trim().to_string();
    Server { api: Api::new(&url), url, operator, join, _data: data, _stop: stop, _agents: Vec::new() }
}

impl Server {
    async fn add_node(&mut self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let mut config = nexus_agent::AgentConfig::new(self.url.clone(), self.join.clone(), "node-a");
        config.lxd_project = "sim-node-a".into();
        config.heartbeat = Duration::from_millis(200);
        tokio::spawn(nexus_agent::run(config, Arc::new(FakeProvider::new()), async move {
            let _ = stopped.await;
        }));
        self._agents.push(stop);
        let op = self.api.with_token(&self.operator);
        nexus_testkit::eventually(T, "node joined", || async {
            let (_, b) = op.call("GET", "/api/v1/nodes", None).await;
            (b["nodes"].as_array().map(|x| x.iter().filter(|x| x["status"] == "ok").count()) == Some(1)).then_some(())
        })
        .await;
    }

    async fn user(&self, login: &str, id: i64) -> Api {
        self.api.register_as_operator(&self.operator, login, id, KEY_A).await
    }
}

/// A TCP listener that records every byte sent to it and answers with an HTTP 404.
fn recording_listener() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 4096];
            if let Ok(n) = conn.read(&mut buf) {
                record.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

/// Issue 10 item 3: a repo URL made the server fetch from any address: a listener on 127.0.0.1
/// received `GET /latest/meta-data/...`; the error told an open port from a closed one; `ssh://` made
/// the server run `ssh` with its own `~/.ssh`.
#[tokio::test]
async fn a_repo_url_cannot_make_the_server_fetch_from_an_address_of_the_users_choosing() {
    let git = GitServer::start("127.0.0.1");
    git.create_repo("acme", "hello", &[("README.md", "hello\n")]);
    let mut s = server(&git.base_url).await;
    s.add_node().await;
    let alice = s.user("alice", 11).await;
    let (open_port, seen) = recording_listener();
    let closed_port = nexus_testkit::free_port();

    let metadata = format!("http://127.0.0.1:{open_port}/latest/meta-data/iam?x=/a/b");
    let (code, open) = alice.create("ssrf-open", &metadata).await;
    assert_eq!(code, 400, "a URL off the configured git host is refused: {open}");
    assert_eq!(open["error"]["code"], "invalid_field", "{open}");
    let (code, closed) = alice.create("ssrf-closed", &format!("git://127.0.0.1:{closed_port}/a/b.git")).await;
    assert_eq!(code, 400, "{closed}");
    for (what, body) in [("open", &open), ("closed", &closed)] {
        let text = body.to_string().to_lowercase();
        assert!(
            !text.contains("refused") && !text.contains("connect") && !text.contains("unable to access"),
            "the {what} port's answer must not echo the network error: {body}"
        );
    }
    let (code, body) = alice.create("ssrf-ssh", "ssh://git@127.0.0.1/a/b.git").await;
    assert_eq!(code, 400, "ssh is refused unless the operator configured it: {body}");
    let (code, body) = alice.create("ssrf-meta", "http://169.254.169.254/latest/meta-data/x/y.git").await;
    assert_eq!(code, 400, "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        seen.lock().unwrap().is_empty(),
        "the server sent a request to the listener: {}",
        String::from_utf8_lossy(&seen.lock().unwrap())
    );

    // The configured host still works, by name and by URL.
    let (code, body) = alice.create("ok", "acme/hello").await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = alice.create("ok-url", &format!("{}/acme/hello.git", git.base_url)).await;
    assert_eq!(code, 201, "{body}");
    // A repository the host lacks: the cause, not git's stderr.
    let (code, body) = alice.create("missing", "acme/missing").await;
    assert_eq!(code, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("acme/missing"), "{body}");
    assert!(!message.contains("fatal:"), "git's stderr is not echoed: {body}");
}

/// Highest resident set size of this process since the last [`reset_peak_rss`], in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn reset_peak_rss() {
    // Linux: writing 5 resets the peak RSS to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// Issue 10 item 4: a small repo holding a huge zero-filled `package-lock.json` (it compresses to
/// almost nothing) made the server read the whole blob into memory: 17 MB → 1.58 GB in one request.
#[tokio::test]
async fn a_huge_plan_file_is_not_read_into_the_servers_memory() {
    const BIG: u64 = 300 << 20;
    let git = GitServer::start("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("package.json"), r#"{"scripts": {"dev": "vite"}}"#).unwrap();
    let mut lock = std::fs::File::create(dir.path().join("package-lock.json")).unwrap();
    std::io::copy(&mut std::io::repeat(0).take(BIG), &mut lock).unwrap();
    drop(lock);
    git.create_repo_from_dir("acme", "bomb", dir.path());
    drop(dir);
    let mut s = server(&git.base_url).await;
    s.add_node().await;
    let alice = s.user("alice", 11).await;

    reset_peak_rss();
    let before = peak_rss();
    let (code, body) = alice.create("bomb", "acme/bomb").await;
    let grew = peak_rss().saturating_sub(before);
    assert!(code == 201 || code == 422, "{code} {body}");
    assert!(grew < 64 << 20, "the server's memory grew by {} MiB reading one repo: {body}", grew >> 20);
}

/// A TCP listener that accepts and never answers (a silent git host).
fn silent_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    (port, accepted)
}

/// Issue 10 item 4: a silent git host held a git process for 20 s per request, with no limit on
/// how many. Now at most `--max-concurrent-probes` (8) run at once; the rest wait in line (30 s by
/// default, 2 s here) and are then told the server is busy.
#[tokio::test]
async fn concurrent_probes_are_capped_and_the_rest_are_told_to_retry() {
    let (port, accepted) = silent_listener();
    // A short wait in line, so the ones that cannot get a slot are answered within the test.
    let mut s = server_with(&format!("git://127.0.0.1:{port}"), |c| c.probe_queue_wait = Duration::from_secs(2)).await;
    s.add_node().await;
    let mut users = Vec::new();
    for i in 0..14 {
        users.push(s.user(&format!("user{i}"), 100 + i).await);
    }
    let started = Instant::now();
    let mut answers = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let u = u.clone();
        answers.push(tokio::spawn(async move {
            let (code, body) = u.create(&format!("w{i}"), "acme/slow").await;
            (code, body, started.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = accepted.load(Ordering::SeqCst);
    assert!(held <= 8, "{held} connections to the silent host at once; the cap is 8 probes");
    let mut busy = 0;
    for a in answers {
        let (code, body, took) = a.await.unwrap();
        if code == 503 && body["error"]["code"] == "busy" {
            assert!(took < Duration::from_secs(8), "told busy only after {took:?}");
            assert!(body["error"]["hint"].as_str().unwrap().contains("retry"), "{body}");
            busy += 1;
        }
    }
    assert!(busy >= 4, "only {busy} of 14 concurrent probes of a silent host were turned away");
}

/// Issue 10 item 4: one user could start git work as fast as they could send requests.
#[tokio::test]
async fn one_user_cannot_start_git_work_without_limit() {
    let git = GitServer::start("127.0.0.1");
    let mut s = server(&git.base_url).await;
    s.add_node().await;
    let alice = s.user("alice", 11).await;
    let mut limited = 0;
    for i in 0..40 {
        let (code, body) = alice.create(&format!("m{i}"), &format!("acme/missing{i}")).await;
        if code == 429 && body["error"]["code"] == "rate_limited" {
            assert!(body["error"]["hint"].as_str().unwrap().contains("retry"), "{body}");
            limited += 1;
        } else {
            assert_eq!(code, 422, "{body}");
        }
    }
    assert!(limited >= 10, "40 creates in a row, {limited} limited");
    // Another user has their own allowance.
    let bob = s.user("bob", 22).await;
    let (code, body) = bob.create("b", "acme/missing").await;
    assert_eq!(code, 422, "{body}");
}

/// Issue 10 item 4: with no node to run the workspace, the server still did the git work first.
#[tokio::test]
async fn no_git_work_happens_when_no_node_can_take_the_workspace() {
    let (port, accepted) = silent_listener();
    let s = server(&format!("git://127.0.0.1:{port}")).await;
    let alice = s.user("alice", 11).await;
    let started = Instant::now();
    let (code, body) = alice.create("w", "acme/app").await;
    assert_eq!((code, body["error"]["code"].as_str()), (503, Some("no_nodes")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "git contacted the host before the node check");
}
