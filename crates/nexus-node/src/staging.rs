//! `nexus up` / `nexus down`: a complete local staging environment on this machine — the node set-up,
//! a coordination server, a node agent, a git server with the shipped demo project, a demo user and
//! a running demo workspace with its services forwarded — and stopping it again with data kept.
//!
//! No GitHub is needed: the demo user is registered with the server's operator token and the demo
//! repository is served by `git daemon` on the LXD bridge, where containers can clone it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nexus_types::api::{CreateWorkspaceRequest, RegisterRequest, WorkspaceView};
use nexus_types::state::WorkspaceStatus;

use nexus_cli::client::Client;
use nexus_cli::config::UserConfig;
use nexus_cli::error::ErrorCode;
use nexus_cli::system::System;
use nexus_cli::ui::Ui;

use crate::error::{Error, Result};

/// The demo project shipped in the binary (`examples/demo-site`).
const DEMO_FILES: &[(&str, &str)] = &[
    ("index.html", include_str!("../../../examples/demo-site/index.html")),
    ("README.md", include_str!("../../../examples/demo-site/README.md")),
];
const DEMO_WORKSPACE: &str = "demo";
/// Staging's own LXD project, so its workspaces never mix with a node agent's on the same host.
const STAGING_LXD_PROJECT: &str = "nexus-staging";
/// Default port of the demo's `git daemon`.
pub const DEFAULT_GIT_PORT: u16 = 9418;

fn err(message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::new(message, hint)
}

/// `nexus up` options.
#[derive(Debug, Clone)]
pub(crate) struct UpOptions {
    /// Where everything lives (server data, demo repo, demo user's home, logs, pids).
    pub(crate) dir: PathBuf,
    /// The port the staging server's API listens on.
    pub(crate) port: u16,
    /// Port of the demo repository's `git daemon` (on the LXD bridge).
    pub(crate) git_port: u16,
    /// This executable (started as server and agent).
    pub(crate) exe: PathBuf,
}

/// The default state directory: `/var/lib/nexus-staging` as root, else `~/.nexus/staging`.
pub(crate) fn default_dir(is_root: bool) -> PathBuf {
    if is_root {
        return PathBuf::from("/var/lib/nexus-staging");
    }
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".nexus/staging")
}

/// Whether this process runs as root (`id -u` is 0).
pub(crate) fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn pid_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.pid"))
}

/// The pid recorded for `name`, if that process still runs.
fn running_pid(dir: &Path, name: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file(dir, name)).ok()?.trim().parse().ok()?;
    nexus_cli::forward::alive(pid).then_some(pid)
}

/// Starts `argv` detached (own process group, output to `<dir>/<name>.log`) unless it already runs.
fn ensure_process(dir: &Path, name: &str, argv: &[String], env: &[(&str, &Path)]) -> Result<bool> {
    use std::os::unix::process::CommandExt as _;
    if running_pid(dir, name).is_some() {
        return Ok(false);
    }
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| err(format!("cannot write {}: {e}", log_path.display()), "check the permissions of --dir"))?;
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| err(e.to_string(), "retry"))?)
        .stderr(log)
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().map_err(|e| {
        err(format!("could not start {name} ({}): {e}", argv[0]), "check that the program is installed")
    })?;
    std::fs::write(pid_file(dir, name), child.id().to_string())
        .map_err(|e| err(format!("cannot write the pid file: {e}"), "check the permissions of --dir"))?;
    Ok(true)
}

fn run_ok(sys: &dyn System, argv: &[&str], hint: &str) -> Result<String> {
    let out = sys.run(argv, None).map_err(|e| err(format!("could not run {}: {e}", argv[0]), hint.to_string()))?;
    if !out.ok() {
        let last = out.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(err(format!("`{}` failed: {last}", argv.join(" ")), hint.to_string()));
    }
    Ok(out.stdout)
}

/// The bare demo repository, made once from the shipped files.
fn ensure_demo_repo(sys: &dyn System, git_root: &Path) -> Result<()> {
    let bare = git_root.join("demo/site.git");
    if bare.join("HEAD").exists() {
        return Ok(());
    }
    let hint = "install git (`apt-get install git`)";
    let work = tempfile::tempdir().map_err(|e| err(format!("no temp dir: {e}"), "check /tmp"))?;
    for (name, text) in DEMO_FILES {
        std::fs::write(work.path().join(name), text).map_err(|e| err(e.to_string(), "check /tmp"))?;
    }
    let w = work.path().display().to_string();
    std::fs::create_dir_all(&bare).map_err(|e| err(e.to_string(), "check the permissions of --dir"))?;
    let b = bare.display().to_string();
    run_ok(sys, &["git", "init", "-q", "--bare", "-b", "main", &b], hint)?;
    run_ok(sys, &["git", "-C", &w, "init", "-q", "-b", "main"], hint)?;
    run_ok(sys, &["git", "-C", &w, "add", "-A"], hint)?;
    run_ok(
        sys,
        &[
            "git",
            "-C",
            &w,
            "-c",
            "user.name=Nexus",
            "-c",
            "user.email=demo@nexus.invalid",
            "commit",
            "-q",
            "-m",
            "Demo site",
        ],
        hint,
    )?;
    run_ok(sys, &["git", "-C", &w, "push", "-q", &b, "main"], hint)?;
    Ok(())
}

async fn wait_health(base: &str, dir: &Path) -> Result<()> {
    let server = Client::new(base, "");
    for _ in 0..150 {
        if server.health().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(err(
        format!("the server did not answer on {base} within 15 s"),
        format!("read {}; another program may hold the port (pass --port)", dir.join("server.log").display()),
    ))
}

/// Brings everything up and returns the demo workspace, ready.
pub(crate) async fn up(opts: &UpOptions, ui: &Ui, sys: &dyn System) -> Result<(WorkspaceView, String)> {
    let dir = &opts.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| err(format!("cannot create {}: {e}", dir.display()), "pass a writable --dir"))?;
    let dir = dir.canonicalize().map_err(|e| err(e.to_string(), "pass a writable --dir"))?;
    let bridge =
        run_ok(sys, &["lxc", "network", "get", crate::init::BRIDGE, "ipv4.address"], "run `nexus node init` first")?;
    let bridge_ip = bridge.trim().split('/').next().unwrap_or("").to_string();

    ui.section("📦 Demo repository");
    let git_port = opts.git_port;
    let git_root = dir.join("git");
    ensure_demo_repo(sys, &git_root)?;
    let git = [
        "git".to_string(),
        "daemon".into(),
        "--reuseaddr".into(),
        "--export-all".into(),
        "--enable=receive-pack".into(),
        format!("--base-path={}", git_root.display()),
        format!("--listen={bridge_ip}"),
        format!("--port={git_port}"),
        git_root.display().to_string(),
    ];
    let started = ensure_process(&dir, "git", &git, &[])?;
    ui.ok(&format!("git://{bridge_ip}:{git_port}/demo/site {}", if started { "(started)" } else { "(running)" }));

    ui.section("🖥  Coordination server and node agent");
    let base = format!("http://127.0.0.1:{}", opts.port);
    let exe = opts.exe.display().to_string();
    let server = [
        exe.clone(),
        "server".into(),
        "--listen".into(),
        format!("0.0.0.0:{}", opts.port),
        "--data-dir".into(),
        dir.join("server").display().to_string(),
        "--git-base-url".into(),
        format!("git://{bridge_ip}:{git_port}"),
    ];
    let started = ensure_process(&dir, "server", &server, &[])?;
    wait_health(&base, &dir).await?;
    ui.ok(&format!("server {base} {}", if started { "(started)" } else { "(running)" }));
    let read = |name: &str| {
        std::fs::read_to_string(dir.join("server").join(name))
            .map(|s| s.trim().to_string())
            .map_err(|e| err(format!("cannot read the server's {name}: {e}"), "run `nexus down` and `nexus up` again"))
    };
    // Named after the host, like any node; the same name across runs keeps its workspaces attached.
    let node_name = run_ok(sys, &["hostname"], "install hostname (`apt-get install hostname`)")?.trim().to_string();
    let agent = [
        exe.clone(),
        "agent".into(),
        "--server".into(),
        base.clone(),
        // The join token only enrols; the agent keeps the credential it gets next to the server's
        // data, so both last exactly as long as the staging dir.
        "--join-token-file".into(),
        dir.join("server").join("join-token").display().to_string(),
        "--state-dir".into(),
        dir.join("agent-state").display().to_string(),
        "--lxd-project".into(),
        STAGING_LXD_PROJECT.into(),
        "--name".into(),
        node_name.clone(),
    ];
    let started = ensure_process(&dir, "agent", &agent, &[])?;
    ui.ok(&format!("agent {node_name} {}", if started { "(started)" } else { "(running)" }));

    // Until the agent has said hello, the server only knows what the workspace was doing before:
    // wait for the node, so the reconciliation it triggers is what we read next.
    let operator = Client::new(&base, &read("operator-token")?);
    wait_node(&operator, &node_name, &dir).await?;

    ui.section("👤 Demo user");
    let home = dir.join("home");
    // Kept where earlier versions of staging put it, so an existing demo user keeps working.
    let key = dir.join("demo_key");
    let outcome = nexus_cli::keys::ensure_key(sys, &key, "demo@nexus-staging")?;
    let config_path = home.join(".nexus/config.yaml");
    let mut cfg = UserConfig::load_from(&config_path)?.config;
    cfg.server = Some(base.clone());
    cfg.ssh.key_path = key.display().to_string();
    // Registering again is an upsert: it keeps the server's key for `demo` equal to the key on disk
    // (a new key reaches the workspace the next time it starts) and hands out a fresh token.
    let resp = operator
        .register(&RegisterRequest {
            github_username: "demo".into(),
            github_id: 1,
            ssh_pubkey: outcome.key().authorized_line(),
            ssh_pubkey_fingerprint: None,
            github_token: None,
        })
        .await?;
    cfg.api_token = Some(resp.api_token);
    cfg.save_to(&config_path)?;
    ui.ok(&format!("demo (HOME={})", home.display()));

    ui.section("🔨 Demo workspace");
    let client = Client::new(&base, cfg.api_token.as_deref().unwrap_or_default());
    let existing = client.list().await?.into_iter().find(|w| w.name == DEMO_WORKSPACE);
    let id = match existing {
        Some(w) => {
            if matches!(w.status, WorkspaceStatus::Stopped | WorkspaceStatus::Failed) {
                // Agent just started: give it a moment to join before asking it to start the container.
                retry_no_nodes(|| async { client.start(&w.workspace_id).await }).await?;
            }
            w.workspace_id
        }
        None => {
            let req = CreateWorkspaceRequest {
                github_username: None,
                workspace_name: DEMO_WORKSPACE.into(),
                repo: "demo/site".into(),
                branch: None,
                provider: None,
                image: None,
                services: None,
                resources: None,
                git_token: None,
                upstream: None,
                no_prebuild: false,
            };
            retry_no_nodes(|| async { client.create(&req).await }).await?.workspace_id
        }
    };
    let view = nexus_cli::commands::workspace::wait_ready(&client, &id, ui).await?;

    // The designer-side pieces: ssh config with the pinned key and the forwarded service ports.
    let alias = nexus_cli::ssh_config::alias(&view.name);
    let files = nexus_cli::ssh_config::SshFiles::under(&home);
    files
        .upsert(&nexus_cli::ssh_config::SshEntry {
            name: view.name.clone(),
            id: view.workspace_id.clone(),
            host: "127.0.0.1".into(),
            port: view.ssh.port,
            user: view.ssh.user.clone(),
            identity_file: key.clone(),
            host_key: view.ssh.host_key.clone(),
            forward_agent: false,
        })
        .map_err(|e| err(format!("cannot write the demo's ssh config: {e}"), "check the permissions of --dir"))?;
    let forwards = nexus_cli::commands::workspace::forwards_of(&view);
    if !forwards.is_empty() {
        // The forwarder (with this HOME) makes the same choice, and keeps it while it runs.
        let forwards = nexus_cli::forward::choose_local_ports(&home, &view.name, &forwards, |n| ui.warn(&n));
        let args = [exe, "workspace".into(), "ports".into(), "run".into(), view.name.clone()];
        ensure_process(&dir, "forwards", &args, &[("HOME", home.as_path())])?;
        let missing = nexus_cli::forward::wait_listening(&forwards, Duration::from_secs(20)).await;
        if !missing.is_empty() {
            ui.warn(&format!(
                "local ports {missing:?} are not forwarded yet; see {}",
                dir.join("forwards.log").display()
            ));
        }
    }
    let ssh = format!("ssh -F {} {alias}", files.user_config.display());
    Ok((nexus_cli::commands::workspace::with_local_urls(view, &home), ssh))
}

async fn wait_node(operator: &Client, name: &str, dir: &Path) -> Result<()> {
    for _ in 0..150 {
        if let Ok(nodes) = operator.nodes().await {
            if nodes.iter().any(|n| n.name == name && n.status == nexus_types::api::NodeStatus::Ok) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(err(
        format!("the node agent {name} did not join the server within 15 s"),
        format!("read {}", dir.join("agent.log").display()),
    ))
}

/// Retries while the server says no node has joined yet (the agent was just started).
async fn retry_no_nodes<T, F, Fut>(mut call: F) -> Result<T, nexus_cli::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, nexus_cli::Error>>,
{
    let mut last = None;
    for _ in 0..100 {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if matches!(e.code(), Some(ErrorCode::NoNodes | ErrorCode::NodeUnresponsive)) => last = Some(e),
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.expect("tried"))
}

/// Stops the demo workspace (its disk is kept), the forwards, agent, server and git daemon.
pub(crate) async fn down(dir: &Path, port: u16, ui: &Ui) -> Result<()> {
    let config_path = dir.join("home/.nexus/config.yaml");
    if let Ok(loaded) = UserConfig::load_from(&config_path) {
        if let Some(token) = &loaded.config.api_token {
            let client = Client::new(&format!("http://127.0.0.1:{port}"), token);
            if let Ok(all) = client.list().await {
                for w in all.iter().filter(|w| w.status == WorkspaceStatus::Running) {
                    match client.stop(&w.workspace_id).await {
                        Ok(_) => ui.ok(&format!("stopped workspace {} (its disk is kept)", w.name)),
                        Err(e) => ui.warn(&format!("could not stop workspace {}: {}", w.name, e)),
                    }
                }
            }
        }
    }
    for name in ["forwards", "agent", "server", "git"] {
        match running_pid(dir, name) {
            Some(pid) => {
                let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
                for _ in 0..50 {
                    if !nexus_cli::forward::alive(pid) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                ui.ok(&format!("stopped {name}"));
            }
            None => ui.info(&format!("{name} was not running")),
        }
        let _ = std::fs::remove_file(pid_file(dir, name));
    }
    Ok(())
}
