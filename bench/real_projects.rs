//! Benchmark: create → dev page served for real projects (the Vite and Next.js generators'
//! fixtures), split into container, runtime + install, and dev server; on a cold node, with warm
//! caches, and the repeat of the same repository.
//!
//! Run: `cargo bench --bench real_projects` (needs a node prepared by `sudo nexus node init` and the
//! npm registry reachable from it). Env: `BENCH_N` runs of the warm and repeat cases (default 3);
//! `BENCH_PROJECTS` comma-separated fixture names (default `vite-react-ts,next-app`).
//! Each project gets its own agent with an empty runtime store and empty caches (temporary
//! `--runtime-dir` and `--cache-dir`), so its first workspace is a cold node's.
//! Prints a Markdown table for BENCHMARKS.md.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nexus_testkit::api::Api;
use nexus_testkit::git::GitServer;
use nexus_testkit::process::{AgentProcess, ServerOpts, ServerProcess};
use nexus_testkit::ssh::{self, TestKey};
use serde_json::{json, Value};

fn lxc(args: &[&str]) -> String {
    let out = Command::new("lxc").args(args).output().expect("lxc runs");
    assert!(out.status.success(), "lxc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// Seconds from the create request to each milestone.
#[derive(Debug, Clone, Copy)]
struct Split {
    /// The workspace is `running` (container up, repo cloned).
    container: f64,
    /// Setup (runtime provisioning and the install) is `done`.
    setup: f64,
    /// The detected service is `running` (its port answers).
    service: f64,
    /// `curl` inside the workspace returns the framework's dev page.
    page: f64,
}

/// What the dev page at `/` contains, by fixture.
fn page_marker(fixture: &str) -> &'static str {
    match fixture {
        "next-app" => "/_next/",
        _ => "/@vite/client",
    }
}

fn main_service(view: &Value) -> Option<&Value> {
    view["services"].as_array()?.iter().find(|s| !s["discovered"].as_bool().unwrap_or(false))
}

/// Creates a workspace of `acme/<fixture>` and times it to the dev page; deletes it afterwards.
/// Creates workspace `name` of `fixture`, times it, deletes it. With `keep_in`, the deletion waits
/// until the node has kept a prebuild in that LXD project: the node copies the workspace in the
/// background after its setup, and deleting the workspace under the copy loses the prebuild.
async fn measure(
    api: &Api,
    key: &TestKey,
    fixture: &str,
    name: &str,
    no_prebuild: bool,
    keep_in: Option<&str>,
) -> Split {
    let t0 = Instant::now();
    let (code, body) = api
        .call(
            "POST",
            "/api/v1/workspaces/create",
            Some(json!({"workspace_name": name, "repo": format!("acme/{fixture}"), "no_prebuild": no_prebuild})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let id = body["workspace_id"].as_str().unwrap().to_string();
    let (mut container, mut setup) = (None, None);
    let view = loop {
        let v = api.status(&id).await;
        let secs = t0.elapsed().as_secs_f64();
        if container.is_none() && v["status"] == "running" {
            container = Some(secs);
        }
        if setup.is_none() && v["setup"]["status"] == "done" {
            setup = Some(secs);
        }
        let failed = v["status"] == "failed"
            || matches!(v["setup"]["status"].as_str(), Some("failed" | "timed_out"))
            || main_service(&v).is_some_and(|s| s["status"] == "failed");
        assert!(!failed, "{name} failed: {v:#}");
        if main_service(&v).is_some_and(|s| s["status"] == "running") {
            break v;
        }
        assert!(t0.elapsed() < Duration::from_secs(900), "{name} not running after 15 min: {v:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let service = t0.elapsed().as_secs_f64();
    let ssh_port = view["ssh"]["port"].as_u64().unwrap() as u16;
    let port = main_service(&view).unwrap()["port"].as_u64().unwrap();
    let cmd = format!("curl -s --max-time 120 http://127.0.0.1:{port}/");
    loop {
        let out = ssh::run("127.0.0.1", ssh_port, key, &cmd);
        if out.stdout.contains(page_marker(fixture)) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(900), "{name}: no dev page: {}", out.stdout);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = t0.elapsed().as_secs_f64();
    // A setup that was skipped (a prebuild) may never be seen as `done` by a 100 ms poll.
    let split = Split { container: container.unwrap_or(service), setup: setup.unwrap_or(service), service, page };
    eprintln!(
        "{name}: container {:.1}s, setup done {:.1}s (setup said {} ms), service {:.1}s, page {:.1}s",
        split.container, split.setup, view["setup"]["elapsed_ms"], split.service, split.page
    );
    if let Some(project) = keep_in {
        let t = Instant::now();
        // Kept: a prebuild carries its key (`user.nexus.prebuild`) once its copy is finished and scrubbed.
        let kept = || {
            lxc(&["list", "--project", project, "--format", "csv", "-c", "n"])
                .lines()
                .filter(|l| l.starts_with("pb-"))
                .any(|pb| !lxc(&["config", "get", "--project", project, pb, "user.nexus.prebuild"]).trim().is_empty())
        };
        while !kept() {
            assert!(t.elapsed() < Duration::from_secs(120), "no prebuild was kept for {fixture}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let (code, body) = api.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
    assert_eq!(code, 200, "{body}");
    split
}

fn row(project: &str, case: &str, runs: &[Split]) -> String {
    let m = |f: fn(&Split) -> f64| median(runs.iter().map(f).collect());
    format!(
        "| {project} | {case} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        runs.len(),
        m(|s| s.container),
        m(|s| s.setup),
        m(|s| s.service),
        m(|s| s.page)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let projects = std::env::var("BENCH_PROJECTS").unwrap_or_else(|_| "vite-react-ts,next-app".into());
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_nexus"));
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/projects");
    let bridge = lxc(&["network", "get", "nexusbr0", "ipv4.address"]);
    let ip = bridge.trim().split('/').next().unwrap().to_string();
    let git = GitServer::start(&ip);
    git.create_repo("acme", "warmup", &[("README.md", "warm-up\n")]);
    let mut rows = Vec::new();
    for fixture in projects.split(',') {
        git.create_repo_from_dir("acme", fixture, &fixtures.join(fixture));
        let server = ServerProcess::start(
            &bin,
            ServerOpts {
                github_api_url: "http://127.0.0.1:9".into(),
                git_base_url: git.base_url.clone(),
                ssh_ports: nexus_testkit::free_port_range(4),
                node_timeout_secs: 30,
            },
        );
        let project = format!("bench-real-{}", std::process::id());
        let _ = Command::new("lxc")
            .args(["project", "create", &project, "-c", "features.images=false", "-c", "features.profiles=false"])
            .output();
        let runtimes = tempfile::tempdir().unwrap();
        let caches = tempfile::tempdir().unwrap();
        let agent = AgentProcess::start(
            &bin,
            &server,
            "bench-node",
            &project,
            &["--runtime-dir", runtimes.path().to_str().unwrap(), "--cache-dir", caches.path().to_str().unwrap()],
        );
        let key = TestKey::generate("bench");
        let api = Api::new(&server.url).register_as_operator(&server.operator_token(), "bench", 1, &key.public).await;
        // The node's first container also makes the agent's image template: not a project's cost.
        let (code, body) = loop {
            let (code, body) = api.create("warmup", "acme/warmup").await;
            if code != 503 {
                break (code, body);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(code, 201, "{body}");
        let id = body["workspace_id"].as_str().unwrap().to_string();
        api.wait_status(&id, &["running"], Duration::from_secs(180)).await;
        let (code, body) = api.call("DELETE", &format!("/api/v1/workspaces/{id}"), None).await;
        assert_eq!(code, 200, "{body}");

        let cold = vec![measure(&api, &key, fixture, "cold", true, None).await];
        let mut warm = Vec::new();
        for i in 0..n {
            warm.push(measure(&api, &key, fixture, &format!("warm{i}"), true, None).await);
        }
        // Repeats may start from the prebuild the runs above left (when the node keeps prebuilds).
        measure(&api, &key, fixture, "seed", false, Some(&project)).await;
        let mut repeat = Vec::new();
        for i in 0..n {
            repeat.push(measure(&api, &key, fixture, &format!("repeat{i}"), false, None).await);
        }
        rows.push(row(fixture, "cold node (empty runtime store and caches)", &cold));
        rows.push(row(fixture, "first with warm caches (`--no-prebuild`)", &warm));
        rows.push(row(fixture, "repeat of the same repo", &repeat));
        drop(agent);
        for name in lxc(&["list", "--project", &project, "--format", "csv", "-c", "n"]).lines() {
            let _ = Command::new("lxc").args(["delete", "--force", "--project", &project, name]).output();
        }
        let _ = Command::new("lxc").args(["project", "delete", &project]).output();
    }
    println!(
        "| project | case | n | workspace running (s) | setup done (s) | service running (s) | dev page served (s) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
