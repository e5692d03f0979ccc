//! Benchmark: the designer's whole journey, from the install line to the editor being invoked, on a
//! warm node, with the time of each step; and a repeat workspace for the same repo.
//!
//! Run: `cargo bench --bench journey` (needs a node prepared by `sudo nexus node init`).
//! Env: `BENCH_RUNS` journeys (default 3), each with a fresh HOME and a GitHub account of its own,
//! so every run installs, signs in, uploads a key, forks and creates from scratch.
//! The human's browser step is excluded: the GitHub test server's device-flow interval is 0 and the
//! bench approves each code as soon as it appears. Prints Markdown for BENCHMARKS.md.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexus_testkit::github::FakeGithub;
use nexus_testkit::process::{AgentProcess, ServerProcess};

/// Section headers the installer and the CLI print, in journey order: each step runs from its header
/// to the next one.
const STEPS: &[(&str, &str)] = &[
    ("Checking dependencies", "check git/ssh/curl"),
    ("Downloading nexus CLI", "download + verify + install binary"),
    ("GitHub Authentication", "GitHub sign-in (device flow, approval instant)"),
    ("SSH Key Setup", "SSH key: generate, upload, register"),
    ("Repository Setup", "fork on GitHub"),
    ("Workspace Initialization", "workspace create → running → services ready"),
    ("SSH configured: ssh", "connect: ssh config, port forwards, editor"),
];

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn lxc_ip() -> String {
    let out = Command::new("lxc").args(["network", "get", "nexusbr0", "ipv4.address"]).output().expect("lxc runs");
    assert!(out.status.success(), "needs a node prepared by `sudo nexus node init`");
    String::from_utf8_lossy(&out.stdout).trim().split('/').next().unwrap().to_string()
}

fn release_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new("cargo")
        .args(["build", "--release", "--bin", "nexus"])
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(status.success());
    root.join("target/release/nexus")
}

/// One journey: returns (total seconds, per-step seconds in [`STEPS`] order).
fn journey(server: &str, home: &Path, path: &str, record: &Path) -> (f64, Vec<f64>) {
    let line = "set -o pipefail; curl -fsSL \"$0/install.sh\" | bash -s -- \"$@\"";
    let prefix = home.join(".local/bin");
    let started = Instant::now();
    let mut child = Command::new("setsid")
        .args(["-w", "bash", "-c", line, server, "--repo", "acme/site", "--server", server, "--editor", "cursor"])
        .arg("--prefix")
        .arg(&prefix)
        .env_clear()
        .env("HOME", home)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("NEXUS_BROWSER", "none")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let mut marks = vec![None; STEPS.len()];
    let mut log = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        for (i, (header, _)) in STEPS.iter().enumerate() {
            if marks[i].is_none() && line.contains(header) {
                marks[i] = Some(started.elapsed().as_secs_f64());
            }
        }
        log.push_str(&line);
        log.push('\n');
    }
    let status = child.wait().unwrap();
    let total = started.elapsed().as_secs_f64();
    assert!(status.success(), "journey failed:\n{log}");
    assert!(record.exists(), "the editor was not invoked:\n{log}");
    let marks: Vec<f64> =
        marks.into_iter().map(|m| m.unwrap_or_else(|| panic!("a step header is missing:\n{log}"))).collect();
    let mut steps = Vec::new();
    for i in 0..marks.len() {
        let end = if i + 1 < marks.len() { marks[i + 1] } else { total };
        steps.push(end - marks[i]);
    }
    (total, steps)
}

fn cli(bin: &Path, home: &Path, args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("NEXUS_BROWSER", "none")
        .env_remove("NEXUS_SERVER")
        .env_remove("NEXUS_TOKEN")
        .env_remove("NEXUS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "nexus {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let bin = release_bin();
    let ip = lxc_ip();
    let github = Arc::new(FakeGithub::start_on(&ip).await);
    github.add_account("acme", 2001);
    github.set_device_interval(0);
    github.create_repo(
        "acme",
        "site",
        false,
        &[
            ("package.json", r#"{"name":"site","version":"1.0.0","scripts":{"dev":"node server.js"}}"#),
            ("server.js", r#"require('http').createServer((q, s) => s.end('web ok\n')).listen(process.env.PORT);"#),
        ],
    );
    let server = ServerProcess::for_github(&bin, &github, 16);
    let project = format!("bench-journey-{}", std::process::id());
    let ok = Command::new("lxc")
        .args(["project", "create", &project, "-c", "features.images=false", "-c", "features.profiles=false"])
        .status()
        .unwrap();
    assert!(ok.success());
    let agent = AgentProcess::start(&bin, &server, "bench-node", &project, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut totals = Vec::new();
    let mut per_step: Vec<Vec<f64>> = vec![Vec::new(); STEPS.len()];
    let mut reuse = Vec::new();
    let mut recreate = Vec::new();
    for run in 0..=runs {
        // Run 0 warms the node's image template and is not counted.
        let login = format!("designer{run}");
        github.add_account(&login, 5000 + run as i64);
        let approver = github.auto_approve(&login);
        let home = tempfile::tempdir().unwrap();
        let tools = tempfile::tempdir().unwrap();
        let record = tools.path().join("cursor-args");
        let cursor = tools.path().join("cursor");
        std::fs::write(&cursor, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", record.display())).unwrap();
        std::fs::set_permissions(&cursor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", tools.path().display(), std::env::var("PATH").unwrap());
        let (server_url, h, p, r) = (server.url.clone(), home.path().to_path_buf(), path.clone(), record.clone());
        let (total, steps) = tokio::task::spawn_blocking(move || journey(&server_url, &h, &p, &r)).await.unwrap();
        approver.abort();
        let installed = home.path().join(".local/bin/nexus");
        // Repeat for the same repo: create again (offers the running one), then delete and create anew.
        let t_reuse = cli(&installed, home.path(), &["workspace", "create", "acme/site"]);
        cli(&installed, home.path(), &["workspace", "delete", "site"]);
        let t_recreate = cli(&installed, home.path(), &["workspace", "create", "acme/site"]);
        cli(&installed, home.path(), &["workspace", "delete", "site"]);
        eprintln!("run {run}: total {total:.2}s steps {steps:.2?} reuse {t_reuse:.2}s recreate {t_recreate:.2}s");
        if run == 0 {
            continue;
        }
        totals.push(total);
        for (i, s) in steps.into_iter().enumerate() {
            per_step[i].push(s);
        }
        reuse.push(t_reuse);
        recreate.push(t_recreate);
    }
    drop(agent);
    // The agent's image template lives in the project too: empty it, then remove it.
    let out = Command::new("lxc").args(["list", "--project", &project, "--format", "csv", "-c", "n"]).output().unwrap();
    for name in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
        let _ = Command::new("lxc").args(["delete", "--force", "--project", &project, name]).status();
    }
    let _ = Command::new("lxc").args(["project", "delete", &project]).status();

    println!("| step (median of {runs} runs) | seconds |");
    println!("|---|---|");
    for (i, (_, name)) in STEPS.iter().enumerate() {
        println!("| {name} | {:.2} |", median(per_step[i].clone()));
    }
    println!("| **whole journey: install line → editor invoked** | **{:.2}** |", median(totals.clone()));
    println!();
    println!("| repeat for the same repo (median of {runs}) | seconds |");
    println!("|---|---|");
    println!("| `workspace create` again (offers the running workspace) | {:.2} |", median(reuse));
    println!("| `workspace delete` then `workspace create` (fork exists, new container) | {:.2} |", median(recreate));
    println!();
    println!("all journeys (s): {totals:.2?}");
}
