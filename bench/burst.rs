//! Benchmark: a burst of creates on one node — 10 users × 3 workspaces requested at the same moment —
//! with the server's per-node bound on creates in flight (`--parallel-starts-per-node`) at several
//! values (0 = no bound). For each: failures, wall time, and create → `running` and create → first
//! `ssh … true` p50/p95.
//!
//! Run: `cargo bench -p nexus --bench burst` (needs a node prepared by `sudo nexus node init`).
//! Env: `BENCH_BOUNDS` (default `0,2,4,8`), `BENCH_USERS` (10), `BENCH_PER_USER` (3).
//! Prints a Markdown table for BENCHMARKS.md.

use std::process::Command;
use std::time::{Duration, Instant};

use nexus_testkit::api::Api;
use nexus_testkit::git::GitServer;
use nexus_testkit::process::{AgentProcess, ServerOpts, ServerProcess};
use nexus_testkit::ssh::{self, TestKey};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((xs.len() as f64 - 1.0) * p).round() as usize;
    xs[idx.min(xs.len() - 1)]
}

/// One workspace's times, or why it failed.
type Outcome = Result<(f64, f64), String>;

async fn one(api: Api, name: String, key: std::sync::Arc<TestKey>, t0: Instant) -> Outcome {
    let (code, body) = api.create(&name, "bench/hello").await;
    if code != 201 {
        return Err(format!("create {code}: {body}"));
    }
    let id = body["workspace_id"].as_str().unwrap().to_string();
    let port = body["ssh_port"].as_u64().unwrap() as u16;
    let running = loop {
        let s = api.status(&id).await;
        match s["status"].as_str() {
            Some("running") => break t0.elapsed().as_secs_f64(),
            Some("failed") => return Err(format!("failed: {} / {}", s["message"], s["hint"])),
            _ if t0.elapsed() > Duration::from_secs(600) => return Err(format!("not running after 600 s: {s}")),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let ssh_ok = tokio::task::spawn_blocking(move || {
        while ssh::run("127.0.0.1", port, &key, "true").code != 0 {
            if t0.elapsed() > Duration::from_secs(600) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(t0.elapsed().as_secs_f64())
    })
    .await
    .unwrap();
    match ssh_ok {
        Some(t) => Ok((running, t)),
        None => Err("ssh never succeeded".into()),
    }
}

#[tokio::main]
async fn main() {
    let bounds: Vec<usize> = std::env::var("BENCH_BOUNDS")
        .unwrap_or_else(|_| "0,2,4,8".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    let users: usize = env_or("BENCH_USERS", 10);
    let per_user: usize = env_or("BENCH_PER_USER", 3);
    let total = users * per_user;
    // A copy: a rebuild of the work tree while this runs (minutes) must not change the binary under it.
    let frozen = tempfile::tempdir().unwrap();
    let bin = frozen.path().join("nexus");
    std::fs::copy(env!("CARGO_BIN_EXE_nexus"), &bin).unwrap();
    let bridge = Command::new("lxc").args(["network", "get", "nexusbr0", "ipv4.address"]).output().unwrap();
    let ip = String::from_utf8_lossy(&bridge.stdout).trim().split('/').next().unwrap().to_string();
    let git = GitServer::start(&ip);
    git.create_repo("bench", "hello", &[("README.md", "hello\n")]);
    let key = std::sync::Arc::new(TestKey::generate("bench"));

    println!("| bound (creates in flight per node) | workspaces | failures | wall (s) | create → running p50 / p95 (s) | create → ssh p50 / p95 (s) |");
    println!("|---|---|---|---|---|---|");
    for bound in bounds {
        let server = ServerProcess::start_with_args(
            &bin,
            ServerOpts {
                github_api_url: "http://127.0.0.1:9".into(),
                git_base_url: git.base_url.clone(),
                ssh_ports: nexus_testkit::free_port_range(total as u16 + 2),
                node_timeout_secs: 60,
            },
            &[
                "--parallel-starts-per-node",
                &bound.to_string(),
                "--max-workspaces-per-user",
                &per_user.max(5).to_string(),
            ],
        );
        let project = format!("burst-{}-{bound}", std::process::id());
        let _ = Command::new("lxc")
            .args(["project", "create", &project, "-c", "features.images=false", "-c", "features.profiles=false"])
            .output();
        let agent = AgentProcess::start(&bin, &server, "burst-node", &project, &[]);
        let mut apis = Vec::new();
        for u in 0..users {
            let login = format!("user{u}");
            apis.push(
                Api::new(&server.url)
                    .register_as_operator(&server.operator_token(), &login, 100 + u as i64, &key.public)
                    .await,
            );
        }
        // `/ready` says the node is connected and heartbeating.
        let started = Instant::now();
        while Api::new(&server.url).call("GET", "/ready", None).await.0 != 200 {
            assert!(started.elapsed() < Duration::from_secs(60), "the node never became ready:\n{}", agent.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Warm-up (the agent's image template, the first id-map shift): one workspace, not counted.
        let warm = one(apis[0].clone(), "warm".into(), key.clone(), Instant::now()).await;
        warm.expect("the warm-up workspace runs");

        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for (u, api) in apis.iter().enumerate() {
            for w in 0..per_user {
                let name = if u == 0 && w == 0 { "w-0b".to_string() } else { format!("w-{w}") };
                tasks.push(tokio::spawn(one(api.clone(), name, key.clone(), t0)));
            }
        }
        let mut running = Vec::new();
        let mut ssh_ok = Vec::new();
        let mut failures = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok((r, s)) => {
                    running.push(r);
                    ssh_ok.push(s);
                }
                Err(e) => failures.push(e),
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        for f in &failures {
            eprintln!("bound {bound}: {f}");
        }
        let (r50, r95) = if running.is_empty() {
            (0.0, 0.0)
        } else {
            (percentile(&mut running, 0.5), percentile(&mut running, 0.95))
        };
        let (s50, s95) =
            if ssh_ok.is_empty() { (0.0, 0.0) } else { (percentile(&mut ssh_ok, 0.5), percentile(&mut ssh_ok, 0.95)) };
        println!(
            "| {} | {total} | {} | {wall:.1} | {r50:.1} / {r95:.1} | {s50:.1} / {s95:.1} |",
            if bound == 0 { "none".to_string() } else { bound.to_string() },
            failures.len()
        );
        drop(agent);
        drop(server);
        let names =
            Command::new("lxc").args(["list", "--project", &project, "--format", "csv", "-c", "n"]).output().unwrap();
        for name in String::from_utf8_lossy(&names.stdout).lines().filter(|l| !l.is_empty()) {
            let _ = Command::new("lxc").args(["delete", "--force", "--project", &project, name]).output();
        }
        let _ = Command::new("lxc").args(["project", "delete", &project]).output();
    }
}
