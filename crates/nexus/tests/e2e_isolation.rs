//! Attack tests against real LXD (issue 11): one workspace tries to starve or reach its neighbours
//! on the same node, and the neighbour must keep working.
//!
//! Like `e2e.rs` they need a node prepared by `nexus node init`; without LXD they fail with a hint
//! (`NEXUS_SKIP_E2E=1` is the only, explicit, way to skip). `NEXUS_E2E_BIN` runs them against
//! another `nexus` build (how the "before" runs in docs/security/nodes-hardening.md were made).

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
/// The process limit the agent gets in these tests (`--workspace-processes`, via its env).
const PROCESSES: u32 = 1000;
/// The root disk every workspace gets here (the server's `--max-disk`, via its env).
const DISK_BYTES: u64 = 2_000_000_000;

fn bin() -> PathBuf {
    std::env::var_os("NEXUS_E2E_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nexus")))
}

struct Env {
    git: GitServer,
    github: FakeGithub,
    server: ServerProcess,
}

async fn env(ssh_ports: u16) -> Option<Env> {
    let ip = lxd_host_ip()?;
    // Settings go through the environment, so an older build without the flags still starts.
    std::env::set_var("NEXUS_MAX_DISK", "2GB");
    std::env::set_var("NEXUS_WORKSPACE_PROCESSES", PROCESSES.to_string());
    std::env::set_var("NEXUS_MAX_WORKSPACES_PER_USER", "1");
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
    Some(Env { git, github, server })
}

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

/// A running workspace of a freshly registered user: `(id, ssh port, key, api)`.
async fn workspace(
    env: &Env,
    login: &str,
    github_id: i64,
    resources: serde_json::Value,
) -> (String, u16, TestKey, Api) {
    let key = TestKey::generate(login);
    let api = Api::new(&env.server.url);
    let user = api.register_as_operator(&env.server.operator_token(), login, github_id, &key.public).await;
    let (code, created) = user
        .call(
            "POST",
            "/api/v1/workspaces/create",
            Some(json!({"workspace_name": "hello", "repo": "acme/hello", "resources": resources})),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["workspace_id"].as_str().unwrap().to_string();
    let port = created["ssh_port"].as_u64().unwrap() as u16;
    user.wait_status(&id, &["running"], READY).await;
    (id, port, key, user)
}

/// Item 1 of issue 11: a disk filler, a process flood and a fork bomb in workspace A; workspace B on
/// the same node must still take SSH logins, start processes and write files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_and_disk_filler_in_one_workspace_leave_the_neighbour_working() {
    let Some(env) = env(2).await else { return };
    let project = ProjectGuard::new("bomb");
    let _agent = AgentProcess::start(&bin(), &env.server, "node-bomb", &project.0, &[]);
    wait_nodes(&Api::new(&env.server.url).with_token(&env.server.operator_token()), 1).await;
    let _ = &env.github;
    // A gets one CPU so its bomb cannot take both of this host's cores from B.
    let (a, port_a, key_a, user_a) = workspace(&env, "mallory", 3001, json!({"cpu": 1, "memory": "1GB"})).await;
    let (b, port_b, key_b, _) = workspace(&env, "bob", 3002, json!({"cpu": 1, "memory": "1GB"})).await;

    // The operator's maxima and the per-user quota refuse before anything reaches LXD.
    let mallory = Api::new(&env.server.url)
        .register_as_operator(&env.server.operator_token(), "mallory2", 3003, &TestKey::generate("m2").public)
        .await;
    let create = |name: &str, resources: serde_json::Value| json!({"workspace_name": name, "repo": "acme/hello", "resources": resources});
    let path = "/api/v1/workspaces/create";
    let (code, body) = mallory.call("POST", path, Some(create("big", json!({"cpu": 64})))).await;
    assert_eq!((code, body["error"]["code"].as_str()), (400, Some("over_limit")), "{body}");
    let (code, body) = mallory.call("POST", path, Some(create("big", json!({"memory": "999999GB"})))).await;
    assert_eq!((code, body["error"]["code"].as_str()), (400, Some("over_limit")), "{body}");
    assert!(body["error"]["hint"].as_str().unwrap().contains("at most"), "{body}");
    let (code, body) = user_a.call("POST", path, Some(create("second", json!({})))).await;
    assert_eq!(code, 403, "the second workspace of a user over a quota of 1: {body}");
    assert!(body["error"]["hint"].as_str().unwrap().contains("delete"), "{body}");
    assert_eq!(project.all_instances().iter().filter(|n| n.starts_with("ws-")).count(), 2, "nothing reached LXD");

    // 1. Disk filler: 2.6 GB of zeros into A's 2 GB root disk. Bounded, so a node without the quota
    //    (the "before") only loses 2.6 GB of its pool, not all of it.
    let fill = ssh::run(
        "127.0.0.1",
        port_a,
        &key_a,
        "dd if=/dev/zero of=$HOME/fill bs=1M count=2600 conv=fsync 2>&1 | tail -4; sync; du -sb $HOME/fill",
    );
    eprintln!("disk filler in A: {fill:?}");
    let written: u64 = fill.stdout.lines().last().and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    let quota_hit = fill.stdout.contains("Disk quota exceeded") || fill.stdout.contains("No space left");

    // 2. Process flood: up to 3000 sleepers (bounded for the same reason), for at most 20 s; the
    //    peak is counted from the node while it runs.
    let flood = {
        let key = key_a.path.clone();
        std::thread::spawn(move || {
            let cmd = "timeout 20 bash -c 'for i in $(seq 3000); do sleep 600 >/dev/null 2>&1 & done' 2>&1 | tail -1";
            let out = Command::new("ssh")
                .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
                .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-i"])
                .arg(&key)
                .args(["-p", &port_a.to_string(), "dev@127.0.0.1", cmd])
                .output();
            out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
        })
    };
    let mut peak = 0u64;
    let t0 = Instant::now();
    while !flood.is_finished() && t0.elapsed() < Duration::from_secs(40) {
        let now: u64 = project.pids_file(&a, "pids.current").and_then(|s| s.parse().ok()).unwrap_or(0);
        peak = peak.max(now);
        std::thread::sleep(Duration::from_millis(200));
    }
    let flood_said = flood.join().unwrap_or_default();
    let pids_max = project.pids_file(&a, "pids.max").unwrap_or_default();
    eprintln!("process flood in A: peak {peak} tasks, pids.max {pids_max:?}, it said {flood_said:?}");

    // 3. A real fork bomb, only where a limit contains it (without one it would take the whole node).
    let limited = pids_max.parse::<u32>().is_ok_and(|m| m <= PROCESSES);
    if limited {
        let _ =
            project.lxc(&["exec", &a, "--", "su", "-", "dev", "-c", "nohup bash -c ':(){ :|:& };:' >/dev/null 2>&1 &"]);
        std::thread::sleep(Duration::from_secs(5));
        let during: u64 = project.pids_file(&a, "pids.current").and_then(|s| s.parse().ok()).unwrap_or(0);
        eprintln!("fork bomb in A: {during} tasks after 5 s (limit {PROCESSES})");
        peak = peak.max(during);
    }

    // 4. B, meanwhile: SSH in, run a command, start processes, write a file.
    let t = Instant::now();
    let alive = ssh_ok(
        port_b,
        &key_b,
        "for i in $(seq 100); do sleep 30 >/dev/null 2>&1 & done; echo procs-ok; head -c 100000000 /dev/zero > $HOME/f && echo write-ok; cat hello/README.md",
    );
    eprintln!("B answered in {:?}: {alive:?}", t.elapsed());
    assert!(alive.contains("procs-ok") && alive.contains("write-ok"), "{alive}");
    assert!(alive.contains("hello from nexus"), "{alive}");

    // The verdicts, after B was checked so the log shows both.
    assert!(
        quota_hit && written <= DISK_BYTES,
        "A wrote {written} bytes into a {DISK_BYTES}-byte disk without hitting a quota: {fill:?}"
    );
    assert!(peak <= PROCESSES as u64, "A ran {peak} tasks; the limit is {PROCESSES} (pids.max {pids_max:?})");
    assert!(limited, "A has no process limit (pids.max {pids_max:?})");
    let _ = project.lxc(&["stop", "--force", &a]);
    let _ = b;
}

/// The first line a forwarded port answers with after an SSH identification line ("" when none).
fn banner(port: u16) -> String {
    use std::io::{BufRead, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(8)));
    let _ = s.write_all(b"SSH-2.0-nexus-test\r\n");
    let mut line = String::new();
    let _ = std::io::BufReader::new(s).read_line(&mut line);
    line.trim().to_string()
}

/// Item 3 of issue 11: workspace A tries to reach workspace B's sshd, to send from an address the
/// node did not give it, and to point its own public SSH port at the node by claiming the node's
/// bridge address (where this test listens on port 22 as a stand-in for a node service).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_cannot_reach_its_neighbour_spoof_or_redirect_its_tunnel() {
    let Some(env) = env(2).await else { return };
    let gateway = lxd_host_ip().unwrap();
    let node_sshd = std::net::TcpListener::bind((gateway.as_str(), 22)).expect("port 22 on the bridge address is free");
    std::thread::spawn(move || {
        use std::io::Write;
        for mut c in node_sshd.incoming().flatten() {
            let _ = c.write_all(b"SSH-2.0-THE-NODE-ITSELF\r\n");
        }
    });
    let project = ProjectGuard::new("iso");
    let _agent = AgentProcess::start(&bin(), &env.server, "node-iso", &project.0, &[]);
    wait_nodes(&Api::new(&env.server.url).with_token(&env.server.operator_token()), 1).await;
    let (a, port_a, key_a, _) = workspace(&env, "mallory", 5001, json!({"cpu": 1, "memory": "1GB"})).await;
    let (b, _port_b, _key_b, _) = workspace(&env, "bob", 5002, json!({"cpu": 1, "memory": "1GB"})).await;
    let b_ip = String::from_utf8_lossy(&project.lxc(&["exec", &b, "--", "hostname", "-I"]).stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let before = banner(port_a);
    assert!(before.starts_with("SSH-2.0-OpenSSH"), "A's port answers with A's sshd: {before:?}");

    // 1. A → B's sshd over the bridge.
    let probe = format!("timeout 3 bash -c '</dev/tcp/{b_ip}/22' 2>/dev/null && echo reached || echo blocked");
    let to_b = ssh_ok(port_a, &key_a, &probe);
    eprintln!("A → B {b_ip}:22: {to_b:?}");

    // 1b. A → the node: its port-22 stand-in, and link-local metadata; DNS must stay open.
    let to_node = ssh_ok(
        port_a,
        &key_a,
        &format!(
            "for t in {gateway}/22 169.254.169.254/80 {gateway}/53; do \
             timeout 3 bash -c \"</dev/tcp/$t\" 2>/dev/null && echo \"$t reached\" || echo \"$t blocked\"; done"
        ),
    );
    eprintln!("A → node and metadata: {to_node:?}");

    // 2. Root in A sends from B's address.
    let spoofed = project.lxc(&[
        "exec",
        &a,
        "--",
        "sh",
        "-c",
        &format!(
            "ip addr add {b_ip}/32 dev eth0 && timeout 3 bash -c 'exec 3<>/dev/tcp/{gateway}/53' 2>/dev/null; \
             ip addr del {b_ip}/32 dev eth0; \
             ip -4 addr flush dev eth0 && ip addr add {b_ip}/24 dev eth0 && \
             (timeout 3 bash -c '</dev/tcp/{gateway}/53' 2>/dev/null && echo reached || echo blocked)"
        ),
    ]);
    let spoofed = String::from_utf8_lossy(&spoofed.stdout).trim().to_string();
    eprintln!("A, sending from B's address to the node's DNS: {spoofed:?}");

    // 3. Root in A claims the node's bridge address: where does A's public SSH port lead now?
    let claim = project.lxc(&[
        "exec",
        &a,
        "--",
        "sh",
        "-c",
        &format!("ip -4 addr flush dev eth0 && ip addr add {gateway}/24 dev eth0 && ip -4 addr show eth0 | grep inet"),
    ]);
    eprintln!("A now reports: {}", String::from_utf8_lossy(&claim.stdout).trim());
    std::thread::sleep(Duration::from_secs(3));
    let after = banner(port_a);
    eprintln!("A's public port now answers {after:?}");

    assert_eq!(to_b.trim(), "blocked", "A reached B's sshd over the bridge");
    assert!(to_node.contains(&format!("{gateway}/22 blocked")), "A reached the node's port 22: {to_node}");
    assert!(to_node.contains("169.254.169.254/80 blocked"), "{to_node}");
    assert!(to_node.contains(&format!("{gateway}/53 reached")), "DNS on the node must stay open: {to_node}");
    assert_eq!(spoofed, "blocked", "A's packets from B's address got through");
    assert!(!after.contains("THE-NODE-ITSELF"), "A's public SSH port leads to the node's port 22: {after:?}");
}

/// The agent's peak resident memory in bytes (`VmHWM`), found by its node name.
fn agent_peak_memory(node: &str) -> u64 {
    let out = Command::new("pgrep").args(["-f", &format!("agent .*--name {node}")]).output().unwrap();
    let pid = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Item 4 of issue 11: a workspace's setup prints one 300 MB line and fails; the agent reads the
/// log's last lines back to explain the failure, and must not hold 300 MB for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_setup_log_line_does_not_blow_up_the_agent() {
    let Some(env) = env(1).await else { return };
    env.git.create_repo(
        "acme",
        "loud",
        &[(".nexus/config.yaml", "setup: head -c 300000000 /dev/zero | tr '\\0' x; exit 1\n")],
    );
    let project = ProjectGuard::new("loud");
    let _agent = AgentProcess::start(&bin(), &env.server, "node-loud", &project.0, &[]);
    wait_nodes(&Api::new(&env.server.url).with_token(&env.server.operator_token()), 1).await;
    let key = TestKey::generate("loud");
    let user =
        Api::new(&env.server.url).register_as_operator(&env.server.operator_token(), "loud", 6001, &key.public).await;
    let before = agent_peak_memory("node-loud");
    let (code, created) = user.create("loud", "acme/loud").await;
    assert_eq!(code, 201, "{created}");
    let id = created["workspace_id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    let status = loop {
        let s = user.status(&id).await;
        if s["setup"]["status"] == "failed" || t0.elapsed() > READY {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = agent_peak_memory("node-loud");
    let logs = status["setup"]["last_logs"].as_str().or(status["setup"]["message"].as_str()).unwrap_or("").len();
    eprintln!(
        "agent peak memory {} MB before, {} MB after the setup failed; setup: {} ({logs} bytes of log shown)",
        before >> 20,
        peak >> 20,
        status["setup"]["status"]
    );
    assert_eq!(status["setup"]["status"], "failed", "{status}");
    assert!(
        peak < before + (100 << 20),
        "the agent grew from {} MB to {} MB reading one log line",
        before >> 20,
        peak >> 20
    );
}
