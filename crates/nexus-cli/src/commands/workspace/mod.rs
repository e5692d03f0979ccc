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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nexus_types::api::WorkspaceView;
use nexus_types::state::{ServiceStatus, WorkspaceStatus};

use crate::client::Client;
use crate::config::UserConfig;
use crate::error::{Error, Result};
use crate::forward::PortForward;
use crate::github::{GithubClient, GithubEndpoints};
use crate::ssh_config::{self, SshEntry, SshFiles};
use crate::ui::{Report, Ui};

/// How long `create` waits for the workspace and its services.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(400);

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

/// Polls until the workspace runs and its services settle, with a spinner saying what it waits for.
pub async fn wait_ready(client: &Client, id: &str, ui: &Ui) -> Result<WorkspaceView> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let step = ui.step("Creating workspace (estimated 45s)");
    let view = loop {
        let view = client.status(id).await?;
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
            return Err(Error::new(
                format!("the workspace was not ready within {} s", READY_TIMEOUT.as_secs()),
                format!("check `nexus workspace status {}`; it may still finish", view.name),
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    step.ok("Container ready");
    ui.ok("SSH configured");
    if view.services.is_empty() && view.services_source.is_empty() {
        return Ok(view);
    }
    let step = ui.step("Services starting...");
    let mut view = view;
    loop {
        let settled = view.services.iter().all(|s| s.status.is_settled());
        if settled || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
        view = client.status(id).await?;
    }
    let bad: Vec<_> = view.services.iter().filter(|s| s.status != ServiceStatus::Running).collect();
    if bad.is_empty() {
        step.ok("Services ready");
    } else {
        step.fail("Some services are not running");
        for s in bad {
            ui.warn(&format!(
                "{}: {}{}",
                s.name,
                s.message.as_deref().unwrap_or(s.status.as_str()),
                s.hint.as_deref().map(|h| format!(" (hint: {h})")).unwrap_or_default()
            ));
        }
    }
    Ok(view)
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
            let url = s.mapped_port.map(|p| format!("http://localhost:{p}")).unwrap_or_else(|| "(no port)".into());
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
