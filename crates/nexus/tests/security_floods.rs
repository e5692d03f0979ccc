//! Connection floods against the SSH forwarder and the API (issue 11 item 2), on real LXD: the
//! attacker opens hundreds of connections that never speak, and the owner's `ssh` and `/health`
//! must keep working.
//!
//! Needs a node prepared by `nexus node init`, like `e2e.rs`; without LXD the tests fail with a hint
//! (`NEXUS_SKIP_E2E=1` skips them explicitly). `NEXUS_E2E_BIN` runs them against another build.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nexus_testkit::api::Api;
use nexus_testkit::git::GitServer;
use nexus_testkit::github::FakeGithub;
use nexus_testkit::lxd::{host_ip as lxd_host_ip, ProjectGuard};
use nexus_testkit::process::{AgentProcess, ServerOpts, ServerProcess};
use nexus_testkit::ssh::{self, TestKey};

const READY: Duration = Duration::from_secs(180);

fn bin() -> PathBuf {
    std::env::var_os("NEXUS_E2E_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nexus")))
}

struct Env {
    _git: GitServer,
    _github: FakeGithub,
    server: ServerProcess,
}

async fn env(ssh_ports: u16) -> Option<Env> {
    let ip = lxd_host_ip()?;
    let git = GitServer::start(&ip);
    git.create_repo("acme", "hello", &[("README.md", "hello from nexus\n")]);
    let github = FakeGithub::start().await;
    let server = ServerProcess::start(
        &bin(),
        ServerOpts {
            github_api_url: github.api_url.clone(),
            git_base_url: git.base_url.clone(),
            ssh_ports: nexus_testkit::free_port_range(ssh_ports),
            node_timeout_secs: 30,
        },
    );
    Some(Env { _git: git, _github: github, server })
}

async fn wait_nodes(operator: &Api, n: usize) {
    nexus_testkit::eventually(Duration::from_secs(30), "nodes joined", || async {
        let (_, body) = operator.call("GET", "/api/v1/nodes", None).await;
        (body["nodes"].as_array().map(|x| x.iter().filter(|x| x["status"] == "ok").count()) == Some(n)).then_some(())
    })
    .await;
}

/// Opens a TCP connection to `to` from source address `from` (any 127.x address works on Linux).
async fn connect_from(from: &str, to: SocketAddr) -> Option<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4().ok()?;
    s.bind(format!("{from}:0").parse().ok()?).ok()?;
    tokio::time::timeout(Duration::from_secs(2), s.connect(to)).await.ok()?.ok()
}

/// Opens `n` TCP connections to `to` from source address `from` that never send a byte.
async fn idle_connections(from: &str, to: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        if let Some(s) = connect_from(from, to).await {
            held.push(s);
        }
    }
    held
}

/// sshd connections the workspace has, counted inside it (each is one the forwarder tunnelled).
fn sshd_connections(project: &ProjectGuard, id: &str) -> usize {
    let out = project.lxc(&[
        "exec",
        id,
        "--",
        "sh",
        "-c",
        "awk '$2 ~ /:0016$/ && $4 == \"01\"' /proc/net/tcp /proc/net/tcp6 | wc -l",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(usize::MAX)
}

/// Item 2 of issue 11: 400 idle connections to a workspace's SSH port; the owner's `ssh` must
/// still get in, and the workspace's sshd must not see the idle ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_ssh_port_open_no_tunnels_and_the_owner_still_gets_in() {
    let Some(env) = env(1).await else { return };
    let project = ProjectGuard::new("flood");
    let _agent = AgentProcess::start(&bin(), &env.server, "node-flood", &project.0, &[]);
    wait_nodes(&Api::new(&env.server.url).with_token(&env.server.operator_token()), 1).await;
    let key = TestKey::generate("alice");
    let api = Api::new(&env.server.url);
    let alice = api.register_as_operator(&env.server.operator_token(), "alice", 4001, &key.public).await;
    let (code, created) = alice.create("hello", "acme/hello").await;
    assert_eq!(code, 201, "{created}");
    let id = created["workspace_id"].as_str().unwrap().to_string();
    let port = created["ssh_port"].as_u64().unwrap() as u16;
    alice.wait_status(&id, &["running"], READY).await;

    // The attacker: 400 connections from 127.0.0.2 that never send their identification line.
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    let held = idle_connections("127.0.0.2", target, 400).await;
    std::thread::sleep(Duration::from_secs(3));
    let tunnelled = sshd_connections(&project, &id);
    eprintln!("{} idle connections accepted in {:?}; sshd has {tunnelled} connections", held.len(), t0.elapsed());

    // The owner, meanwhile, from 127.0.0.1.
    let t = Instant::now();
    let out = tokio::task::block_in_place(|| ssh::run("127.0.0.1", port, &key, "echo in"));
    eprintln!("owner's ssh during the flood: {out:?} after {:?}", t.elapsed());
    // Still open from the attacker's side? (dropped ones read EOF at once)
    let still_open = held
        .iter()
        .filter(|s| matches!(s.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count();
    eprintln!("{still_open} of the attacker's connections still open");
    drop(held);

    assert_eq!(out.code, 0, "the owner's ssh was refused during the flood: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "in");
    assert!(tunnelled <= 1, "{tunnelled} sshd connections for connections that never sent an SSH line");
    assert!(still_open <= 16, "one address holds {still_open} connections open");
}

/// A connection that never completes its request must not keep `/health` from answering: 1100
/// half-sent requests, then `/health`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_do_not_starve_health() {
    let github = FakeGithub::start().await;
    let server = ServerProcess::start(
        &bin(),
        ServerOpts {
            github_api_url: github.api_url.clone(),
            git_base_url: github.web_url.clone(),
            ssh_ports: nexus_testkit::free_port_range(1),
            node_timeout_secs: 30,
        },
    );
    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    for i in 0..1100 {
        let from = format!("127.0.{}.{}", 1 + i / 200, 2 + i % 200);
        if let Some(s) = connect_from(&from, addr).await {
            let _ = s.try_write(b"GET /health HTTP/1.1\r\nHost: x\r\n");
            held.push(s);
        }
    }
    eprintln!("{} half-sent requests open", held.len());
    let t = Instant::now();
    let answered = tokio::task::block_in_place(|| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        use std::io::{Read, Write};
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        Some(buf)
    });
    eprintln!(
        "/health during the flood after {:?}: {:?}",
        t.elapsed(),
        answered.as_deref().map(|b| &b[..b.len().min(40)])
    );
    // Past the header-read timeout the server has closed every half-sent request.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let open = held
        .iter()
        .filter(|s| matches!(s.try_read(&mut [0u8; 64]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count();
    eprintln!("{open} of {} half-sent requests still open after 12 s", held.len());
    drop(held);
    assert!(answered.is_some_and(|b| b.starts_with("HTTP/1.1 200")), "/health did not answer during the flood");
    assert_eq!(open, 0, "half-sent requests hold their connections past the header-read timeout");
}
