//! Benchmark: density — how a node behaves with 0/50/100/200 running workspaces: memory per idle
//! workspace (the drop in `MemAvailable`), create → `running` latency at each level, and the API's
//! p95 while that many run. Failures are counted, not hidden.
//!
//! Run: `cargo bench -p nexus --bench density` (needs a node prepared by `sudo nexus node init`).
//! Env: `BENCH_LEVELS` (default `0,50,100,200`), `BENCH_PROBES` timed creates per level (5),
//! `BENCH_API_N` status requests per level (200). Prints a Markdown table for BENCHMARKS.md.

use std::process::Command;
use std::time::{Duration, Instant};

use nexus_testkit::api::Api;
use nexus_testkit::git::GitServer;
use nexus_testkit::process::{AgentProcess, ServerOpts, ServerProcess};
use nexus_testkit::ssh::TestKey;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[(((xs.len() as f64 - 1.0) * p).round() as usize).min(xs.len() - 1)]
}

/// `MemAvailable`, MiB.
fn mem_available_mib() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = text
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0
}

/// Creates `name` and waits until it runs; its id and the seconds it took, or why it failed.
async fn create_running(api: &Api, name: &str) -> Result<(String, f64), String> {
    let t0 = Instant::now();
    let (code, body) = api.create(name, "bench/hello").await;
    if code != 201 {
        return Err(format!("create {code}: {body}"));
    }
    let id = body["workspace_id"].as_str().unwrap().to_string();
    loop {
        let s = api.status(&id).await;
        match s["status"].as_str() {
            Some("running") => return Ok((id, t0.elapsed().as_secs_f64())),
            Some("failed") => return Err(format!("{id} failed: {}", s["message"])),
            _ if t0.elapsed() > Duration::from_secs(600) => return Err(format!("{id} not running after 600 s")),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::main]
async fn main() {
    let levels: Vec<usize> = std::env::var("BENCH_LEVELS")
        .unwrap_or_else(|_| "0,50,100,200".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let probes: usize = env_or("BENCH_PROBES", 5);
    let api_n: usize = env_or("BENCH_API_N", 200);
    let top = levels.iter().copied().max().unwrap_or(0) + probes + 4;
    let frozen = tempfile::tempdir().unwrap();
    let bin = frozen.path().join("nexus");
    std::fs::copy(env!("CARGO_BIN_EXE_nexus"), &bin).unwrap();
    let bridge = Command::new("lxc").args(["network", "get", "nexusbr0", "ipv4.address"]).output().unwrap();
    let ip = String::from_utf8_lossy(&bridge.stdout).trim().split('/').next().unwrap().to_string();
    let git = GitServer::start(&ip);
    git.create_repo("bench", "hello", &[("README.md", "hello\n")]);
    let server = ServerProcess::start_with_args(
        &bin,
        ServerOpts {
            github_api_url: "http://127.0.0.1:9".into(),
            git_base_url: git.base_url.clone(),
            ssh_ports: nexus_testkit::free_port_range(top as u16),
            node_timeout_secs: 60,
        },
        &["--max-workspaces-per-user", &top.to_string(), "--creates-per-minute", "100000", "--idle-stop", "off"],
    );
    let project = format!("density-{}", std::process::id());
    let _ = Command::new("lxc")
        .args(["project", "create", &project, "-c", "features.images=false", "-c", "features.profiles=false"])
        .output();
    let agent = AgentProcess::start(&bin, &server, "density-node", &project, &[]);
    let key = TestKey::generate("bench");
    let api = Api::new(&server.url).register_as_operator(&server.operator_token(), "dora", 1, &key.public).await;
    let started = Instant::now();
    while Api::new(&server.url).call("GET", "/ready", None).await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(60), "the node never became ready:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (warm, _) = create_running(&api, "warm").await.expect("the warm-up workspace runs");
    let _ = api.call("DELETE", &format!("/api/v1/workspaces/{warm}"), None).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let base_mem = mem_available_mib();

    println!("| running workspaces | fill failures | MemAvailable drop per workspace (MiB) | create → running p50 / max (s) | probe failures | API status p50 / p95 (ms) |");
    println!("|---|---|---|---|---|---|");
    let mut running: Vec<String> = Vec::new();
    let mut fill_failures = 0;
    for level in levels {
        // Fill up to `level`, 16 requests at a time (the server's burst bound paces the node).
        while running.len() < level {
            let batch = (level - running.len()).min(16);
            let mut tasks = Vec::new();
            for _ in 0..batch {
                let api = api.clone();
                let name = format!("d{}", running.len() + tasks.len() + fill_failures);
                tasks.push(tokio::spawn(async move { create_running(&api, &name).await }));
            }
            for t in tasks {
                match t.await.unwrap() {
                    Ok((id, _)) => running.push(id),
                    Err(e) => {
                        fill_failures += 1;
                        eprintln!("fill: {e}");
                    }
                }
            }
            eprintln!("{} running", running.len());
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let per_ws = if running.is_empty() { 0.0 } else { (base_mem - mem_available_mib()) / running.len() as f64 };
        let mut times = Vec::new();
        let mut probe_failures = 0;
        for i in 0..probes {
            match create_running(&api, &format!("p{level}-{i}")).await {
                Ok((id, t)) => {
                    times.push(t);
                    let _ = api.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
                }
                Err(e) => {
                    probe_failures += 1;
                    eprintln!("probe: {e}");
                }
            }
        }
        let mut lat = Vec::new();
        let probe_id = running.first().cloned().unwrap_or_else(|| "ws-none".into());
        for _ in 0..api_n {
            let t = Instant::now();
            let _ = api.call("GET", &format!("/api/v1/workspaces/{probe_id}/status"), None).await;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let max = times.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {fill_failures} | {per_ws:.0} | {:.1} / {max:.1} | {probe_failures} | {:.1} / {:.1} |",
            running.len(),
            percentile(&mut times, 0.5),
            percentile(&mut lat.clone(), 0.5),
            percentile(&mut lat, 0.95)
        );
    }
    drop(agent);
    drop(server);
    let names =
        Command::new("lxc").args(["list", "--project", &project, "--format", "csv", "-c", "n"]).output().unwrap();
    for name in String::from_utf8_lossy(&names.stdout).lines().filter(|l| !l.is_empty()) {
        let _ = Command::new("lxc").args(["delete", "--force", "--project", &project, name]).output();
    }
    let _ = Command::new("lxc").args(["project", "delete", &project]).output();
}
