//! Benchmark: create → SSH-ready latency of workspaces against the raw LXD floor, and the cost of
//! the SSH forwarder against SSH straight to the container, measured in the same run.
//!
//! Run: `cargo bench --bench create_ready` (needs a node prepared by `sudo nexus node init`).
//! Env: `BENCH_N` workspaces (default 10), `BENCH_SSH_N` ssh round trips per path (default 30),
//! `BENCH_SVC_N` runs of the npm sample with the spec's two services (default 5).
//! Prints a Markdown table for BENCHMARKS.md.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nexus_testkit::api::Api;
use nexus_testkit::git::GitServer;
use nexus_testkit::process::{AgentProcess, ServerOpts, ServerProcess};
use nexus_testkit::ssh::{self, TestKey};

fn lxc(args: &[&str]) -> String {
    let out = Command::new("lxc").args(args).output().expect("lxc runs");
    assert!(out.status.success(), "lxc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(mut xs: Vec<f64>) -> (f64, f64, f64, f64) {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&xs, 0.5), percentile(&xs, 0.95), xs[0], xs[xs.len() - 1])
}

fn banner_answers(ip: &str) -> bool {
    use std::io::Read;
    let Ok(mut s) =
        std::net::TcpStream::connect_timeout(&format!("{ip}:22").parse().unwrap(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

fn container_ip(project: &str, name: &str) -> Option<String> {
    let out = lxc(&["list", "--project", project, name, "--format", "csv", "-c", "4"]);
    out.split_whitespace().next().filter(|s| s.contains('.')).map(str::to_string)
}

/// `lxc launch` of the base image until sshd sends its banner: what LXD alone costs.
fn floor_once(project: &str, i: usize) -> f64 {
    let name = format!("floor-{i}");
    let t0 = Instant::now();
    lxc(&["launch", "nexus-base", &name, "--project", project]);
    loop {
        if let Some(ip) = container_ip(project, &name) {
            if banner_answers(&ip) {
                break;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "floor container never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t0.elapsed().as_secs_f64();
    lxc(&["delete", "--force", "--project", project, &name]);
    secs
}

fn time_ssh(host: &str, port: u16, key: &TestKey) -> f64 {
    let t0 = Instant::now();
    let out = ssh::run(host, port, key, "true");
    assert_eq!(out.code, 0, "ssh {host}:{port} failed: {}", out.stderr);
    t0.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let n: usize = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let ssh_n: usize = std::env::var("BENCH_SSH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_nexus"));
    let bridge = lxc(&["network", "get", "nexusbr0", "ipv4.address"]);
    let ip = bridge.trim().split('/').next().unwrap().to_string();
    let git = GitServer::start(&ip);
    git.create_repo("bench", "hello", &[("README.md", "hello\n")]);
    // The spec's sample: web on 3000, api on 4000 after web is healthy; no installs needed.
    let web = r#"require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT);"#;
    git.create_repo(
        "bench",
        "npm-sample",
        &[
            ("package.json", r#"{"name":"s","version":"1.0.0","scripts":{"dev":"node web.js","server":"node api.js"}}"#),
            ("web.js", web),
            ("api.js", web),
            (
                ".nexus/config.yaml",
                "services:\n  web:\n    command: \"npm run dev\"\n    port: 3000\n    health_check: {type: http, path: /}\n  api:\n    command: \"npm run server\"\n    port: 4000\n    depends_on: [web]\n",
            ),
        ],
    );
    let server = ServerProcess::start(
        &bin,
        ServerOpts {
            github_api_url: "http://127.0.0.1:9".into(),
            git_base_url: git.base_url.clone(),
            ssh_ports: nexus_testkit::free_port_range(4),
            node_timeout_secs: 30,
        },
    );
    let project = format!("bench-{}", std::process::id());
    let _ = Command::new("lxc")
        .args(["project", "create", &project, "-c", "features.images=false", "-c", "features.profiles=false"])
        .output();
    let _agent = AgentProcess::start(&bin, &server, "bench-node", &project, &[]);
    let key = TestKey::generate("bench");
    let api = Api::new(&server.url).register_as_operator(&server.operator_token(), "bench", 1, &key.public).await;

    let mut ready = Vec::new();
    let mut first_ssh = Vec::new();
    let mut floor = Vec::new();
    // Round 0 warms the node (image cache, first id-map shift) and is not counted.
    for i in 0..=n {
        let t0 = Instant::now();
        let (code, body) = loop {
            let (code, body) = api.create(&format!("b{i}"), "bench/hello").await;
            if code != 503 {
                break (code, body);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(code, 201, "{body}");
        let id = body["workspace_id"].as_str().unwrap().to_string();
        let port = body["ssh_port"].as_u64().unwrap() as u16;
        loop {
            let s = api.status(&id).await;
            match s["status"].as_str() {
                Some("running") => break,
                Some("failed") => panic!("workspace failed: {s}"),
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        let t_ready = t0.elapsed().as_secs_f64();
        while ssh::run("127.0.0.1", port, &key, "true").code != 0 {
            assert!(t0.elapsed() < Duration::from_secs(120));
        }
        let t_ssh = t0.elapsed().as_secs_f64();
        let (code, body) = api.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
        assert_eq!(code, 200, "{body}");
        let t_floor = floor_once(&project, i);
        if i > 0 {
            ready.push(t_ready);
            first_ssh.push(t_ssh);
            floor.push(t_floor);
        }
        eprintln!("round {i}: running {t_ready:.2}s, first ssh ok {t_ssh:.2}s, lxd floor {t_floor:.2}s");
    }

    // The npm sample: create → every service `running` (health checks passed, in dependency order).
    let svc_n: usize = std::env::var("BENCH_SVC_N").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut services_ready = Vec::new();
    for i in 0..svc_n {
        let t0 = Instant::now();
        let (code, body) = api.create(&format!("svc{i}"), "bench/npm-sample").await;
        assert_eq!(code, 201, "{body}");
        let id = body["workspace_id"].as_str().unwrap().to_string();
        loop {
            let s = api.status(&id).await;
            let svcs = s["services"].as_array().cloned().unwrap_or_default();
            if svcs.len() >= 2 && svcs.iter().filter(|x| x["discovered"] == false).all(|x| x["status"] == "running") {
                break;
            }
            assert!(svcs.iter().all(|x| x["status"] != "failed"), "service failed: {s}");
            assert!(t0.elapsed() < Duration::from_secs(120), "services never came up: {s}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t = t0.elapsed().as_secs_f64();
        eprintln!("services run {i}: all running after {t:.2}s");
        services_ready.push(t);
        let (code, body) = api.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
        assert_eq!(code, 200, "{body}");
    }

    // SSH through the forwarder vs straight to the container, interleaved to share the noise.
    let (code, body) = api.create("ssh-bench", "bench/hello").await;
    assert_eq!(code, 201, "{body}");
    let id = body["workspace_id"].as_str().unwrap().to_string();
    let port = body["ssh_port"].as_u64().unwrap() as u16;
    api.wait_status(&id, &["running"], Duration::from_secs(120)).await;
    let cip = container_ip(&project, &id).expect("container has an address");
    let (mut fwd, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        time_ssh("127.0.0.1", port, &key);
        time_ssh(&cip, 22, &key);
    }
    for _ in 0..ssh_n {
        fwd.push(time_ssh("127.0.0.1", port, &key));
        direct.push(time_ssh(&cip, 22, &key));
    }
    let _ = api.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
    // The agent's image template lives in the project too; remove everything, then the project.
    drop(_agent);
    for name in lxc(&["list", "--project", &project, "--format", "csv", "-c", "n"]).lines().filter(|l| !l.is_empty()) {
        let _ = Command::new("lxc").args(["delete", "--force", "--project", &project, name]).output();
    }
    let _ = Command::new("lxc").args(["project", "delete", &project]).output();

    let (r50, r95, rmin, rmax) = summary(ready);
    let (s50, s95, smin, smax) = summary(first_ssh);
    let (f50, f95, fmin, fmax) = summary(floor);
    let (w50, w95, _, _) = summary(fwd);
    let (d50, d95, _, _) = summary(direct);
    println!("| measurement (n={n}) | p50 | p95 | min | max |");
    println!("|---|---|---|---|---|");
    println!("| create → status `running` | {r50:.2} s | {r95:.2} s | {rmin:.2} s | {rmax:.2} s |");
    println!("| create → first `ssh … true` succeeds | {s50:.2} s | {s95:.2} s | {smin:.2} s | {smax:.2} s |");
    println!("| raw LXD floor: `lxc launch` → sshd banner | {f50:.2} s | {f95:.2} s | {fmin:.2} s | {fmax:.2} s |");
    println!("| ratio create→running / floor (p50) | {:.2} | | | |", r50 / f50);
    let (v50, v95, vmin, vmax) = summary(services_ready);
    println!("| npm sample (web, then api): create → all services `running` (n={svc_n}) | {v50:.2} s | {v95:.2} s | {vmin:.2} s | {vmax:.2} s |");
    println!();
    println!("| `ssh … true` (n={ssh_n}, interleaved) | p50 | p95 |");
    println!("|---|---|---|");
    println!("| through the forwarder (server → agent tunnel) | {:.1} ms | {:.1} ms |", w50 * 1e3, w95 * 1e3);
    println!("| straight to the container's sshd | {:.1} ms | {:.1} ms |", d50 * 1e3, d95 * 1e3);
    println!("| forwarder overhead (p50) | {:+.1}% | |", (w50 / d50 - 1.0) * 100.0);
}
