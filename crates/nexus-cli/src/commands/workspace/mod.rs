//! `nexus workspace`: the designer's workspaces. One module per verb; what several verbs share —
//! finding a workspace, waiting until it is ready, the "Workspace Ready" block, its ssh entry and port
//! forwards — is here.

pub mod connect;
pub mod create;
pub mod delete;
pub mod list;
pub mod logs;
pub mod ports;
pub mod pr;
pub mod services;
pub mod ssh;
pub mod start;
pub mod status;
pub mod stop;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nexus_types::api::{NodeStatus, SetupView, WorkspaceView};
use nexus_types::protocol::SetupStatus;
use nexus_types::state::{ServiceStatus, WorkspaceStatus};

use crate::client::Client;
use crate::config::UserConfig;
use crate::error::{Error, Result};
use crate::forward::{self, PortForward};
use crate::github::{GithubClient, GithubEndpoints};
use crate::ssh_config::{self, SshEntry, SshFiles};
use crate::ui::{Report, Ui};

/// How long `create`, `connect` and `nexus up` wait for the workspace to run, and for its services to
/// settle once its setup is over. A setup that is running is never cut short here: it has its own
/// timeout on the node (`setup_timeout`, 15 min by default) and reports when it hits it.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(400);
/// How much of a setup step's last output line the spinner shows.
const LAST_LINE_CHARS: usize = 100;

/// The signed-in GitHub user and a client for them; `owner/repo` arguments and pull requests need it.
pub(crate) fn github_of(cfg: &UserConfig) -> Result<(GithubClient, String)> {
    let (Some(login), Some(token)) = (cfg.github.username.clone(), cfg.github.auth_token.clone()) else {
        return Err(Error::new(
            "you are not signed in to GitHub yet",
            "run `nexus auth github`, then `nexus ssh setup`",
        ));
    };
    Ok((GithubClient::new(GithubEndpoints::for_host(&cfg.github.host), Some(token)), login))
}

pub(crate) fn require_running(view: &WorkspaceView) -> Result<()> {
    if view.status == WorkspaceStatus::Running {
        return Ok(());
    }
    Err(Error::new(
        format!("workspace {} is {}, not running", view.name, view.status),
        format!("start it with `nexus workspace start {}`", view.name),
    ))
}

/// Starts a stopped workspace, with a spinner.
pub(crate) async fn start(client: &Client, view: &WorkspaceView, ui: &Ui) -> Result<()> {
    let step = ui.step(&format!("Starting {}", view.name));
    match client.start(&view.workspace_id).await {
        Ok(_) => {
            step.ok("Started");
            Ok(())
        }
        Err(e) => {
            step.fail("Start failed");
            Err(e)
        }
    }
}

/// Polls until the workspace runs, its setup is over and its services settle, with a spinner saying
/// what it waits for (the setup's step, time and last output line while it runs).
pub async fn wait_ready(client: &Client, id: &str, ui: &Ui) -> Result<WorkspaceView> {
    wait_until_ready(|| client.status(id), ui, POLL, READY_TIMEOUT).await
}

/// [`wait_ready`] over any source of the workspace's status, polled every `poll`, giving up `timeout`
/// after the start or after the setup was last seen running.
async fn wait_until_ready<F, Fut>(mut status: F, ui: &Ui, poll: Duration, timeout: Duration) -> Result<WorkspaceView>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<WorkspaceView>>,
{
    let mut deadline = tokio::time::Instant::now() + timeout;
    let timed_out = |view: &WorkspaceView| {
        Error::new(
            format!("the workspace was not ready within {} s", timeout.as_secs()),
            format!("check `nexus workspace status {}`; it may still finish", view.name),
        )
    };
    let step = ui.step("Creating workspace (estimated 45s)");
    let view = loop {
        let view = status().await?;
        match view.status {
            WorkspaceStatus::Running => break view,
            WorkspaceStatus::Failed => {
                step.fail("Workspace failed");
                return Err(Error::new(
                    view.message.clone().unwrap_or_else(|| "the workspace failed".into()),
                    view.hint.clone().unwrap_or_else(|| "see `nexus workspace logs`".into()),
                ));
            }
            WorkspaceStatus::Pending => step.set_message("Waiting for a node to take the workspace"),
            WorkspaceStatus::Stopped => step.set_message("Starting the workspace"),
            WorkspaceStatus::Creating => step.set_message("Creating workspace (estimated 45s)"),
        }
        if tokio::time::Instant::now() >= deadline {
            step.fail("Timed out");
            return Err(timed_out(&view));
        }
        tokio::time::sleep(poll).await;
    };
    step.ok("Container ready");
    ui.ok("SSH configured");
    let mut view = view;
    if view.setup.as_ref().is_some_and(|s| !s.status.is_settled()) {
        let step = ui.step(&view.setup.as_ref().map(setup_progress).unwrap_or_default());
        let mut phase = None;
        while let Some(setup) = view.setup.as_ref().filter(|s| !s.status.is_settled()) {
            let now = tokio::time::Instant::now();
            // The node times a running setup out itself; only a node that went silent can leave it
            // running for ever.
            if setup.status == SetupStatus::Running && !node_unresponsive(&view) {
                deadline = deadline.max(now + timeout);
            }
            if now >= deadline || view.status != WorkspaceStatus::Running {
                step.fail("Setup did not finish");
                let check = format!("check `nexus workspace status {}`", view.name);
                let message = if view.status != WorkspaceStatus::Running {
                    format!("workspace {} is {} before its setup finished", view.name, view.status)
                } else if node_unresponsive(&view) {
                    let node = view.node.as_ref().map(|n| n.name.as_str()).unwrap_or("its node");
                    format!("node {node} stopped answering while the setup of {} ran", view.name)
                } else {
                    format!("the setup of {} did not start within {} s", view.name, timeout.as_secs())
                };
                let hint = if view.status == WorkspaceStatus::Running {
                    format!("{check}; it may still finish")
                } else {
                    check
                };
                return Err(Error::new(message, hint));
            }
            // A new step (or the start) gets its own line in a log; the time and last line only now and then.
            let progress = setup_progress(setup);
            if phase.replace((setup.status, setup.step_number)) != Some((setup.status, setup.step_number)) {
                step.set_message(&progress);
            } else {
                step.set_progress(&progress);
            }
            tokio::time::sleep(poll).await;
            view = status().await?;
        }
        match &view.setup {
            Some(s) if matches!(s.status, SetupStatus::Failed | SetupStatus::TimedOut) => {
                step.fail(if s.status == SetupStatus::Failed { "Setup failed" } else { "Setup timed out" });
                ui.warn(s.message.as_deref().unwrap_or("the setup did not finish"));
                for line in s.last_logs.iter().flat_map(|l| l.lines()) {
                    ui.info(&format!("  | {line}"));
                }
                if let Some(hint) = &s.hint {
                    ui.info(&format!("hint: {hint}"));
                }
                ui.info(&format!("The whole log: `nexus workspace logs {} --setup`", view.name));
            }
            _ => step.ok("Setup done"),
        }
    }
    if view.services.is_empty() && view.services_source.is_empty() {
        return Ok(view);
    }
    let step = ui.step("Services starting...");
    loop {
        let settled = view.services.iter().all(|s| s.status.is_settled());
        if settled || tokio::time::Instant::now() >= deadline {
            break;
        }
        if let Some(s) = view.services.iter().find(|s| !s.status.is_settled()) {
            let waits = s.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
            step.set_progress(&format!("Services starting: {}{waits}", s.name));
        }
        tokio::time::sleep(poll).await;
        view = status().await?;
    }
    let bad: Vec<_> = view.services.iter().filter(|s| s.status != ServiceStatus::Running).collect();
    if bad.is_empty() {
        step.ok("Services ready");
    } else {
        step.fail("Some services are not running");
        // A failed setup's hint was given above; each service failed because of it.
        let setup_hint = view.setup.as_ref().and_then(|s| s.hint.as_deref());
        for s in bad {
            let hint = s.hint.as_deref().filter(|h| Some(*h) != setup_hint);
            ui.warn(&format!(
                "{}: {}{}",
                s.name,
                s.message.as_deref().unwrap_or(s.status.as_str()),
                hint.map(|h| format!(" (hint: {h})")).unwrap_or_default()
            ));
        }
    }
    Ok(view)
}

fn node_unresponsive(view: &WorkspaceView) -> bool {
    view.node.as_ref().is_some_and(|n| n.status == NodeStatus::Unresponsive)
}

/// A duration as the server writes it in its messages: `12 s`, `1 min`, `1 min 5 s`.
pub(crate) fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 60, s % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// What the spinner says while the setup is not over, e.g. "Installing dependencies: `npm ci`
/// (step 1 of 2, 12 s) — added 210 packages".
pub(crate) fn setup_progress(setup: &SetupView) -> String {
    if setup.status == SetupStatus::Pending {
        return match &setup.message {
            Some(m) => format!("Waiting for setup to start ({m})"),
            None => "Waiting for setup to start".into(),
        };
    }
    let mut text = String::from("Installing dependencies");
    if let Some(step) = &setup.step {
        text.push_str(&format!(": `{step}`"));
    }
    match setup.step_number {
        Some(n) if setup.steps > 1 => {
            text.push_str(&format!(" (step {n} of {}, {})", setup.steps, human_ms(setup.elapsed_ms)))
        }
        _ => text.push_str(&format!(" ({})", human_ms(setup.elapsed_ms))),
    }
    if let Some(line) = setup.last_line.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        text.push_str(&format!(" — {}", shorten(line, LAST_LINE_CHARS)));
    }
    text
}

/// `text` cut to `max` characters, with `…` where it was cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// `view` with each service's `url` on the port it is forwarded from on this machine: the server
/// only knows the mapped port, which [`forward::choose_local_ports`] moves off when something else
/// listens there (recorded under `home`). `mapped_port` stays the server's.
pub fn with_local_urls(mut view: WorkspaceView, home: &Path) -> WorkspaceView {
    let moved = forward::moved_ports(home, &view.name);
    if moved.is_empty() {
        return view;
    }
    for s in &mut view.services {
        if let Some(mapped) = s.mapped_port {
            let local = forward::local_port(&moved, &s.name, mapped);
            if local != mapped {
                s.url = Some(format!("http://localhost:{local}"));
            }
        }
    }
    view
}

/// [`with_local_urls`] for the designer's own `HOME` (the view as it is without one).
pub(crate) fn local_urls(view: WorkspaceView) -> WorkspaceView {
    match home() {
        Ok(home) => with_local_urls(view, &home),
        Err(_) => view,
    }
}

/// The spec's "Workspace Ready" block; `ssh` replaces the server's plain `ssh -p` command (e.g. with
/// one that names the key and pinned host key).
pub fn render_ready(view: &WorkspaceView, ssh: Option<&str>) -> String {
    let mut out = String::from("✅ Workspace Ready\n");
    out.push_str(&format!("Workspace: {}\n", view.name));
    out.push_str(&format!("Server: {}\n", view.ssh.host));
    out.push_str(&format!("SSH: {}\n", ssh.unwrap_or(&view.ssh.command)));
    out.push_str(&format!(
        "Repository: {}/{} ({}) in {}\n",
        view.repo.owner, view.repo.name, view.repo.branch, view.repo.path
    ));
    if !view.services.is_empty() {
        out.push_str("Services:\n");
        for s in &view.services {
            let url = match (&s.url, s.mapped_port) {
                (Some(url), _) => url.clone(),
                (None, Some(p)) => format!("http://localhost:{p}"),
                (None, None) => "(no port)".into(),
            };
            out.push_str(&format!("  - {}: {url} ({})\n", s.name, s.status));
        }
    }
    if ssh.is_none() {
        out.push_str(&format!("Next: nexus workspace connect {}\n", view.name));
    }
    out
}

/// Finds one of the caller's workspaces: by name or id, or the only one.
pub(crate) async fn find(client: &Client, name: Option<&str>) -> Result<WorkspaceView> {
    if let Some(n) = name {
        return client.workspace(n).await;
    }
    let mut all = client.list().await?;
    match all.len() {
        0 => Err(Error::new("you have no workspaces yet", "create one with `nexus workspace create <owner/repo>`")),
        1 => Ok(all.remove(0)),
        _ => Err(Error::new(
            format!(
                "you have {} workspaces: {}",
                all.len(),
                all.iter().map(|w| w.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
            "name the one you mean, e.g. `nexus workspace connect <name>`",
        )),
    }
}

/// Our ssh files under `$HOME`.
pub(crate) fn ssh_files() -> Result<SshFiles> {
    SshFiles::from_env().map_err(|e| Error::new(format!("cannot find your home directory: {e}"), "set HOME"))
}

/// Writes the workspace's ssh entry (the configured key, the pinned host key) into `files`; returns
/// the alias. Every ssh the CLI runs goes through it, so all of them log in the same way.
pub(crate) fn configure_ssh(files: &SshFiles, view: &WorkspaceView, cfg: &UserConfig) -> Result<String> {
    let key = cfg.key_path()?;
    let entry = SshEntry {
        name: view.name.clone(),
        id: view.workspace_id.clone(),
        host: view.ssh.host.clone(),
        port: view.ssh.port,
        user: view.ssh.user.clone(),
        identity_file: key,
        host_key: view.ssh.host_key.clone(),
        forward_agent: cfg.forward_agent,
    };
    files.upsert(&entry).map_err(|e| {
        Error::new(
            format!("could not write ssh settings to {}: {e}", files.config.display()),
            "check that you own ~/.ssh and ~/.nexus",
        )
    })?;
    Ok(ssh_config::alias(&view.name))
}

/// The port forwards a workspace needs: services with a port and a local (mapped) port.
pub fn forwards_of(view: &WorkspaceView) -> Vec<PortForward> {
    view.services
        .iter()
        .filter_map(|s| Some(PortForward { service: s.name.clone(), local: s.mapped_port?, remote: s.port? }))
        .collect()
}

pub(crate) fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| Error::new("HOME is not set", "set HOME to your home directory"))
}

/// The client for `--server` (or the config's) and one of the caller's workspaces by name or id.
pub(crate) async fn open(workspace: &str, server: Option<String>) -> Result<(Client, WorkspaceView)> {
    let client = Client::from_env(server)?;
    let view = client.workspace(workspace).await?;
    Ok((client, view))
}

/// What `start`, `stop` and `delete` answer: the server's answer as JSON, a `✓` line as text.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct Changed {
    answer: serde_json::Value,
    #[serde(skip)]
    name: String,
    #[serde(skip)]
    now: String,
    #[serde(skip)]
    took: Duration,
}

impl Changed {
    fn new(answer: &impl serde::Serialize, name: &str, now: impl std::fmt::Display, started: Instant) -> Changed {
        Changed {
            answer: serde_json::to_value(answer).unwrap_or_default(),
            name: name.to_string(),
            now: now.to_string(),
            took: started.elapsed(),
        }
    }
}

impl Report for Changed {
    fn text(&self, ui: &Ui) {
        ui.info(&format!("✓ {}: {} ({:.1}s)", self.name, self.now, self.took.as_secs_f64()));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::ui::Settings;

    /// A running workspace `site` with the services and setup given as the API's JSON.
    pub(crate) fn view(services: serde_json::Value, setup: serde_json::Value) -> WorkspaceView {
        serde_json::from_value(serde_json::json!({
            "workspace_id": "ws-1", "name": "site", "owner": "alice", "status": "running",
            "message": null, "hint": null, "provider": "lxc", "image": "nexus-base",
            "ssh": {"host": "nexus.example", "port": 2201, "user": "dev", "host_key": null,
                    "command": "ssh -p 2201 dev@nexus.example"},
            "services": services, "setup": setup, "services_source": ".nexus/config.yaml",
            "node": {"name": "node-a", "status": "ok"}, "resources": {"cpu": null, "memory": null},
            "repo": {"owner": "acme", "name": "site", "url": "https://github.com/acme/site", "branch": "main",
                     "commit": "0123456789abcdef", "path": "/home/dev/site"},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    /// A service `name` on workspace port `port`, mapped to `mapped`.
    pub(crate) fn service(
        name: &str,
        port: u16,
        mapped: u16,
        status: &str,
        message: Option<&str>,
    ) -> serde_json::Value {
        serde_json::json!({
            "name": name, "port": port, "mapped_port": mapped, "status": status,
            "url": format!("http://localhost:{mapped}"), "discovered": false,
            "message": message, "hint": null, "last_logs": null
        })
    }

    /// A setup's JSON: `status`, at `step` (1-based) of two steps, `elapsed_s` in, with `last_line`.
    pub(crate) fn setup(status: &str, step: Option<u32>, elapsed_s: u64, last_line: Option<&str>) -> serde_json::Value {
        let steps = ["npm ci", "npm run build"];
        serde_json::json!({
            "status": status, "step": step.map(|n| steps[n as usize - 1]), "step_number": step, "steps": 2,
            "started_at": (status != "pending").then_some("2026-01-01T00:00:00Z"),
            "elapsed_ms": elapsed_s * 1000, "last_line": last_line,
            "message": null, "hint": null, "last_logs": null
        })
    }

    #[test]
    fn what_the_spinner_says_while_the_setup_runs() {
        let progress = |s: serde_json::Value| setup_progress(&serde_json::from_value(s).unwrap());
        assert_eq!(progress(setup("pending", None, 0, None)), "Waiting for setup to start");
        assert_eq!(
            progress(setup("running", Some(1), 12, Some("added 210 packages in 11s"))),
            "Installing dependencies: `npm ci` (step 1 of 2, 12 s) — added 210 packages in 11s"
        );
        let mut one_step = setup("running", Some(1), 65, None);
        one_step["steps"] = 1.into();
        assert_eq!(progress(one_step), "Installing dependencies: `npm ci` (1 min 5 s)");
        let long = "x".repeat(300);
        let shown = progress(setup("running", Some(2), 0, Some(&long)));
        assert!(shown.ends_with(&format!(" — {}…", "x".repeat(LAST_LINE_CHARS - 1))), "{shown}");
        assert_eq!(
            (human_ms(999), human_ms(60_000), human_ms(3_725_000)),
            ("0 s".into(), "1 min".into(), "62 min 5 s".into())
        );
    }

    /// Regression (bug c): the URLs printed for a workspace were the server's mapped ports, also for a
    /// service forwarded from another port because something else on this machine listens on its own.
    #[test]
    fn printed_urls_are_the_ports_the_services_are_forwarded_from() {
        let home = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let free = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
        let ws = view(
            serde_json::json!([
                service("web", 3000, taken_port, "running", None),
                service("api", 4000, free, "running", None)
            ]),
            serde_json::Value::Null,
        );
        assert_eq!(with_local_urls(ws.clone(), home.path()).services, ws.services, "nothing moved yet");
        let chosen = forward::choose_local_ports(home.path(), "site", &forwards_of(&ws), |_| {});
        let moved = chosen[0].local;
        assert_ne!(moved, taken_port);

        let local = with_local_urls(ws, home.path());
        let url = |i: usize| local.services[i].url.clone().unwrap();
        assert_eq!((url(0), url(1)), (format!("http://localhost:{moved}"), format!("http://localhost:{free}")));
        assert_eq!(local.services[0].mapped_port, Some(taken_port), "the server's mapping stays as it is");
        let ready = render_ready(&local, None);
        assert!(ready.contains(&format!("  - web: http://localhost:{moved} (running)\n")), "{ready}");
        assert!(ready.contains(&format!("  - api: http://localhost:{free} (running)\n")), "{ready}");
        let table = services::render(&local);
        assert!(
            table.contains(&format!("http://localhost:{moved}")) && !table.contains(&format!(":{taken_port}")),
            "{table}"
        );
        drop(taken);
    }

    /// A status source answering `views` in turn (the last one from then on), moving `clock` on by
    /// `step` per answer.
    fn scripted(
        views: Vec<WorkspaceView>,
        cap: &crate::ui::Captured,
        step: Duration,
    ) -> impl FnMut() -> std::future::Ready<Result<WorkspaceView>> {
        let views = Arc::new(Mutex::new(views.into_iter().collect::<std::collections::VecDeque<_>>()));
        let clock = cap.clock.clone();
        move || {
            clock.advance(step);
            let mut views = views.lock().unwrap();
            let view = if views.len() > 1 { views.pop_front().unwrap() } else { views[0].clone() };
            std::future::ready(Ok(view))
        }
    }

    #[tokio::test]
    async fn waiting_shows_the_setup_step_its_time_and_last_line() {
        let (ui, cap) = Ui::capture(Settings::default(), "");
        let web =
            |status: &str, message: Option<&str>| serde_json::json!([service("web", 5173, 23000, status, message)]);
        let mut creating = view(web("stopped", None), setup("pending", None, 0, None));
        creating.status = WorkspaceStatus::Creating;
        let views = vec![
            creating,
            view(web("starting", Some("waiting for setup to start")), setup("pending", None, 0, None)),
            view(web("starting", None), setup("running", Some(1), 1, Some("npm http fetch GET 200 react"))),
            view(web("starting", None), setup("running", Some(1), 6, Some("npm http fetch GET 200 vite"))),
            view(web("starting", None), setup("running", Some(1), 11, Some("added 210 packages in 11s"))),
            view(web("starting", None), setup("running", Some(2), 16, Some("vite v7.1.0 building for production..."))),
            view(web("starting", Some("waiting for its health check")), setup("done", None, 20, None)),
            view(web("running", None), setup("done", None, 20, None)),
        ];
        let status = scripted(views, &cap, Duration::from_secs(5));
        let ready = wait_until_ready(status, &ui, Duration::ZERO, READY_TIMEOUT).await.unwrap();
        assert_eq!(ready.services[0].status, ServiceStatus::Running);
        assert_eq!(
            cap.stderr(),
            "Creating workspace (estimated 45s)...
ok: Container ready (10.0s)
ok: SSH configured
Waiting for setup to start...
Installing dependencies: `npm ci` (step 1 of 2, 1 s) — npm http fetch GET 200 react...
Installing dependencies: `npm ci` (step 1 of 2, 11 s) — added 210 packages in 11s...
Installing dependencies: `npm run build` (step 2 of 2, 16 s) — vite v7.1.0 building for production...
ok: Setup done (25.0s)
Services starting...
ok: Services ready (5.0s)
"
        );
    }

    #[tokio::test]
    async fn a_failed_setup_is_explained_once() {
        let (ui, cap) = Ui::capture(Settings::default(), "");
        let hint = "the workspace does not trust the TLS certificate of registry.npmjs.org";
        let logs = "$ npm ci\nnpm error code SELF_SIGNED_CERT_IN_CHAIN";
        let mut failed = setup("failed", Some(1), 3, None);
        failed["message"] = "setup step `npm ci` failed (exit 1) after 3 s".into();
        failed["hint"] = hint.into();
        failed["last_logs"] = logs.into();
        let mut web =
            service("web", 5173, 23000, "failed", Some("not started: setup step `npm ci` failed (exit 1) after 3 s"));
        web["hint"] = hint.into();
        web["last_logs"] = logs.into();
        let views = vec![
            view(
                serde_json::json!([service("web", 5173, 23000, "starting", None)]),
                setup("running", Some(1), 1, None),
            ),
            view(serde_json::json!([web]), failed),
        ];
        let ready = wait_until_ready(scripted(views, &cap, Duration::ZERO), &ui, Duration::ZERO, READY_TIMEOUT).await;
        assert_eq!(ready.unwrap().status, WorkspaceStatus::Running, "the workspace is there to fix it in");
        assert_eq!(
            cap.stderr(),
            format!(
                "Creating workspace (estimated 45s)...
ok: Container ready
ok: SSH configured
Installing dependencies: `npm ci` (step 1 of 2, 1 s)...
failed: Setup failed
warning: setup step `npm ci` failed (exit 1) after 3 s
  | $ npm ci
  | npm error code SELF_SIGNED_CERT_IN_CHAIN
hint: {hint}
The whole log: `nexus workspace logs site --setup`
Services starting...
failed: Some services are not running
warning: web: not started: setup step `npm ci` failed (exit 1) after 3 s
"
            )
        );
    }

    /// The setup has its own timeout on the node; the CLI does not give up on one that runs.
    #[tokio::test]
    async fn a_running_setup_outlasts_the_wait_but_a_silent_node_does_not() {
        let web = || serde_json::json!([service("web", 5173, 23000, "starting", None)]);
        let mut views = vec![view(web(), setup("running", Some(1), 1, None)); 8];
        views.push(view(
            serde_json::json!([service("web", 5173, 23000, "running", None)]),
            setup("done", None, 9, None),
        ));
        let (ui, cap) = Ui::capture(Settings::default(), "");
        let timeout = Duration::from_millis(150);
        let ready =
            wait_until_ready(scripted(views, &cap, Duration::ZERO), &ui, Duration::from_millis(50), timeout).await;
        assert!(ready.is_ok(), "{}", cap.stderr());

        let mut silent = view(web(), setup("running", Some(1), 1, None));
        silent.node.as_mut().unwrap().status = NodeStatus::Unresponsive;
        let (ui, cap) = Ui::capture(Settings::default(), "");
        let err =
            wait_until_ready(scripted(vec![silent], &cap, Duration::ZERO), &ui, Duration::from_millis(20), timeout)
                .await
                .unwrap_err();
        assert!(err.to_string().contains("node node-a stopped answering while the setup of site ran"), "{err}");
    }
}
