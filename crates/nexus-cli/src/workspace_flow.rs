//! The designer's workspace commands: `create` (fork when needed, wait with progress, the "Workspace
//! Ready" block), `connect` (ssh config, background port forwards, editor), `ssh` and `pr`.

use std::time::Duration;

use nexus_types::api::{CreateWorkspaceRequest, WorkspaceView};
use nexus_types::state::{ServiceStatus, WorkspaceStatus};

use crate::account::load_config;
use crate::client::Client;
use crate::config::{Editor, UserConfig};
use crate::editor::{self, EditorChoice, Opened};
use crate::error::Error;
use crate::forward::{self, PortForward};
use crate::github::{parse_repo_arg, GithubClient, GithubEndpoints, Repository};
use crate::opener::{Opener, Programs};
use crate::ssh_config::{self, SshEntry, SshFiles};
use crate::system::System;
use crate::ui::Ui;

fn err(message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::new(message, hint)
}

/// How long `create` waits for the workspace and its services.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(400);

/// `nexus workspace create` options.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `owner/repo` or a GitHub URL.
    pub repo: String,
    /// Branch (default: the repo's default branch).
    pub branch: Option<String>,
    /// Workspace name (default: the repo's name).
    pub name: Option<String>,
    /// Server override.
    pub server: Option<String>,
}

fn github_of(cfg: &UserConfig) -> Result<(GithubClient, String), Error> {
    let (Some(login), Some(token)) = (cfg.github.username.clone(), cfg.github.auth_token.clone()) else {
        return Err(err("you are not signed in to GitHub yet", "run `nexus auth github`, then `nexus ssh setup`"));
    };
    Ok((GithubClient::new(GithubEndpoints::for_host(&cfg.github.host), Some(token)), login))
}

fn same_repo_url(a: &str, b: &str) -> bool {
    let norm = |u: &str| u.trim().trim_end_matches('/').trim_end_matches(".git").to_ascii_lowercase();
    norm(a) == norm(b)
}

/// The repo to clone and its upstream: the repo itself when the user can push, else their fork.
async fn repo_to_clone(
    gh: &GithubClient,
    login: &str,
    owner: &str,
    name: &str,
    ui: &Ui,
) -> Result<(Repository, Option<Repository>), Error> {
    ui.section("📦 Repository Setup");
    let repo = gh.repo(owner, name).await?;
    if repo.can_push {
        ui.ok(&format!("You can push to {}: working on it directly", repo.full_name));
        return Ok((repo, None));
    }
    // A fork from an earlier run is reused rather than made again.
    if let Ok(fork) = gh.repo(login, &repo.name).await {
        if fork.fork && fork.parent_full_name.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(&repo.full_name)) {
            ui.ok(&format!("Using your fork {}", fork.full_name));
            return Ok((fork, Some(repo)));
        }
    }
    let step = ui.step(&format!("Forking {} to your account", repo.full_name));
    let fork = match gh.fork(owner, name).await {
        Ok(f) => f,
        Err(e) => {
            step.fail("Fork failed");
            return Err(e.into());
        }
    };
    let fork_owner = fork.owner_login.clone();
    let fork = match gh.wait_for_repo(&fork_owner, &fork.name, Duration::from_secs(120)).await {
        Ok(f) => f,
        Err(e) => {
            step.fail("The fork did not become ready");
            return Err(e.into());
        }
    };
    step.ok(&format!("Repository forked to {}", fork.full_name));
    Ok((fork, Some(repo)))
}

/// Creates (or reuses) the workspace for a repo and waits until it and its services are ready.
pub async fn create(opts: &CreateOptions, ui: &Ui) -> Result<WorkspaceView, Error> {
    let loaded = load_config(ui)?;
    let cfg = &loaded.config;
    let client = Client::from_config(opts.server.clone(), cfg)?;
    let (gh, login) = github_of(cfg)?;
    let (owner, name) = parse_repo_arg(&opts.repo)?;
    let (target, upstream) = repo_to_clone(&gh, &login, &owner, &name, ui).await?;

    // Running create again for the same repo offers the workspace that exists.
    let mine = client.list().await?;
    let existing = mine.iter().find(|w| match &opts.name {
        Some(n) => &w.name == n,
        None => same_repo_url(&w.repo.url, &target.clone_url),
    });
    if let Some(w) = existing {
        if !same_repo_url(&w.repo.url, &target.clone_url) {
            return Err(err(
                format!("you already have a workspace named {} for {}/{}", w.name, w.repo.owner, w.repo.name),
                "pick another name with `--name`, or delete that one with `nexus workspace delete`",
            ));
        }
        ui.info(&format!("You already have workspace {} for {} ({})", w.name, target.full_name, w.status));
        if !ui.confirm("Use it instead of making another?", true) {
            return Err(err(
                "not creating a second workspace for the same repository without a new name",
                format!("run `nexus workspace create {} --name <another-name>`", opts.repo),
            ));
        }
        ui.section("🔨 Workspace Initialization");
        if w.status == WorkspaceStatus::Stopped {
            start(&client, w, ui).await?;
        }
        return wait_ready(&client, &w.workspace_id, ui).await;
    }

    let workspace_name = match &opts.name {
        Some(n) => n.clone(),
        None => nexus_types::names::slug(&target.name).ok_or_else(|| {
            err(
                format!("cannot make a workspace name from {:?}", target.name),
                format!("pass a name: `nexus workspace create {} --name <name>`", opts.repo),
            )
        })?,
    };
    ui.section("🔨 Workspace Initialization");
    let req = CreateWorkspaceRequest {
        github_username: Some(login),
        workspace_name,
        repo: target.clone_url.clone(),
        branch: opts.branch.clone(),
        provider: None,
        image: None,
        services: None,
        resources: None,
        git_token: cfg.github.auth_token.clone(),
        upstream: upstream.map(|u| u.clone_url),
    };
    let created = client.create(&req).await?;
    wait_ready(&client, &created.workspace_id, ui).await
}

fn require_running(view: &WorkspaceView) -> Result<(), Error> {
    if view.status == WorkspaceStatus::Running {
        return Ok(());
    }
    Err(err(
        format!("workspace {} is {}, not running", view.name, view.status),
        format!("start it with `nexus workspace start {}`", view.name),
    ))
}

/// Starts a stopped workspace, with a spinner.
async fn start(client: &Client, view: &WorkspaceView, ui: &Ui) -> Result<(), Error> {
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
pub async fn wait_ready(client: &Client, id: &str, ui: &Ui) -> Result<WorkspaceView, Error> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let step = ui.step("Creating workspace (estimated 45s)");
    let view = loop {
        let view = client.status(id).await?;
        match view.status {
            WorkspaceStatus::Running => break view,
            WorkspaceStatus::Failed => {
                step.fail("Workspace failed");
                return Err(err(
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
            return Err(err(
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
pub async fn find(client: &Client, name: Option<&str>) -> Result<WorkspaceView, Error> {
    if let Some(n) = name {
        return client.workspace(n).await;
    }
    let mut all = client.list().await?;
    match all.len() {
        0 => Err(err("you have no workspaces yet", "create one with `nexus workspace create <owner/repo>`")),
        1 => Ok(all.remove(0)),
        _ => Err(err(
            format!(
                "you have {} workspaces: {}",
                all.len(),
                all.iter().map(|w| w.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
            "name the one you mean, e.g. `nexus workspace connect <name>`",
        )),
    }
}

/// Writes the workspace's ssh entry and pinned host key; returns the alias.
pub fn configure_ssh(view: &WorkspaceView, cfg: &UserConfig) -> Result<String, Error> {
    let files = SshFiles::from_env().map_err(|e| err(format!("cannot find your home directory: {e}"), "set HOME"))?;
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
        err(
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

/// `nexus workspace connect` options.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Workspace name (default: the only one).
    pub workspace: Option<String>,
    /// `cursor`, `code` or `none` (default: config, then Cursor).
    pub editor: Option<String>,
    /// Don't start port forwards.
    pub no_forward: bool,
    /// Server override.
    pub server: Option<String>,
}

/// What `connect` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Connected {
    /// Workspace name.
    pub workspace: String,
    /// ssh alias.
    pub ssh_alias: String,
    /// The command that gets a shell.
    pub ssh_command: String,
    /// Forwarded ports.
    pub forwards: Vec<PortForward>,
    /// How the editor was opened: `cli`, `url` or `none`.
    pub editor: String,
    /// The folder opened.
    pub folder: String,
}

/// Sets up ssh, starts the forwards and opens the editor.
pub async fn connect(
    opts: &ConnectOptions,
    ui: &Ui,
    sys: &dyn System,
    programs: &dyn Programs,
    opener: &dyn Opener,
    exe: &std::path::Path,
) -> Result<Connected, Error> {
    let loaded = load_config(ui)?;
    let cfg = &loaded.config;
    let client = Client::from_config(opts.server.clone(), cfg)?;
    let mut view = find(&client, opts.workspace.as_deref()).await?;
    if view.status == WorkspaceStatus::Stopped {
        start(&client, &view, ui).await?;
        view = wait_ready(&client, &view.workspace_id, ui).await?;
    }
    if view.status != WorkspaceStatus::Running {
        return Err(err(
            format!("workspace {} is {}, not running", view.name, view.status),
            view.hint.clone().unwrap_or_else(|| format!("wait for it: `nexus workspace status {}`", view.name)),
        ));
    }
    let alias = configure_ssh(&view, cfg)?;
    let files = SshFiles::from_env().map_err(|e| err(e.to_string(), "set HOME"))?;
    let ssh_command = format!("ssh -F {} {alias}", files.user_config.display());
    ui.ok(&format!("SSH configured: ssh {alias}"));

    let forwards = forwards_of(&view);
    if !opts.no_forward && !forwards.is_empty() {
        let home = home()?;
        let _ = forward::stop(&home, &view.name);
        let args: Vec<String> = ["workspace", "ports", "run", &view.name].iter().map(|s| s.to_string()).collect();
        forward::spawn_supervisor(exe, &args, &home, &view.name).map_err(|e| {
            err(format!("could not start the port forwards: {e}"), "run `nexus workspace ports` to check")
        })?;
        let step = ui.step("Forwarding service ports");
        let missing = forward::wait_listening(&forwards, Duration::from_secs(20)).await;
        if missing.is_empty() {
            step.ok("Ports forwarded");
        } else {
            step.fail("Some ports are not forwarded yet");
            ui.warn(&format!(
                "local ports {missing:?} are not answering yet; the forwarder keeps retrying (log: {})",
                forward::log_path(&home, &view.name).display()
            ));
        }
        for f in &forwards {
            ui.info(&format!("  - {}: http://localhost:{}", f.service, f.local));
        }
    }

    let choice = match &opts.editor {
        Some(e) => {
            EditorChoice::parse(e).map_err(|m| err(m, "pass `--editor cursor`, `--editor code` or `--editor none`"))?
        }
        None => EditorChoice::Open(cfg.editor.unwrap_or(Editor::Cursor)),
    };
    let folder = editor::repo_path(Some(&view.repo.path), &view.repo.name);
    let editor_name = match choice {
        EditorChoice::Open(Editor::Cursor) => "Cursor",
        EditorChoice::Open(Editor::Code) => "VS Code",
        EditorChoice::None => "no editor",
    };
    if choice != EditorChoice::None {
        ui.ok(&format!("Opening {editor_name}..."));
    }
    let how = match editor::open(choice, &alias, &folder, sys, programs, opener) {
        Opened::Cli(_) => "cli",
        Opened::Url(url) => {
            ui.info(&format!("Opened {url}"));
            "url"
        }
        Opened::NotOpened { why } => {
            if choice != EditorChoice::None {
                ui.warn(&format!("could not open {editor_name}: {why}"));
            }
            ui.info(&format!("Connect with: {ssh_command}  (folder {folder})"));
            "none"
        }
    };
    Ok(Connected { workspace: view.name.clone(), ssh_alias: alias, ssh_command, forwards, editor: how.into(), folder })
}

fn home() -> Result<std::path::PathBuf, Error> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| err("HOME is not set", "set HOME to your home directory"))
}

/// The forward supervisor's body (`nexus workspace ports run <ws>`), until stopped.
pub async fn run_forwards(workspace: &str, server: Option<String>) -> Result<(), Error> {
    let home = home()?;
    let cfg = UserConfig::load()?.config;
    let client = Client::from_config(server, &cfg)?;
    let files = SshFiles::from_env().map_err(|e| err(e.to_string(), "set HOME"))?;
    let alias = ssh_config::alias(workspace);
    let name = workspace.to_string();
    forward::supervise(&home, workspace, &alias, &files.user_config, || {
        let client = &client;
        let name = name.clone();
        async move { client.workspace(&name).await.ok().map(|v| forwards_of(&v)) }
    })
    .await
    .map_err(|e| err(format!("port forwarding stopped: {e}"), "run `nexus workspace connect` again"))
}

/// Runs `ssh <alias> [command]` with the terminal attached; returns its exit code.
pub async fn ssh(workspace: Option<&str>, command: &[String], server: Option<String>, ui: &Ui) -> Result<i32, Error> {
    let cfg = load_config(ui)?.config;
    let client = Client::from_config(server, &cfg)?;
    let view = find(&client, workspace).await?;
    require_running(&view)?;
    let alias = configure_ssh(&view, &cfg)?;
    let files = SshFiles::from_env().map_err(|e| err(e.to_string(), "set HOME"))?;
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-F").arg(&files.user_config);
    if command.is_empty() {
        // A shell in the repo, like the editor opens.
        cmd.args(["-t", &alias, &format!("cd {} && exec $SHELL -l", view.repo.path)]);
    } else {
        cmd.arg(&alias).args(command);
    }
    let status = cmd.status().map_err(|e| err(format!("could not run ssh: {e}"), "install OpenSSH's client"))?;
    Ok(status.code().unwrap_or(255))
}

/// `nexus workspace pr` options.
#[derive(Debug, Clone, Default)]
pub struct PrOptions {
    /// Workspace name.
    pub workspace: Option<String>,
    /// Title (default: the last commit's subject).
    pub title: Option<String>,
    /// Body.
    pub body: Option<String>,
    /// Base branch upstream (default: its default branch).
    pub base: Option<String>,
    /// Server override.
    pub server: Option<String>,
}

/// The pull request opened (or found).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PrOutcome {
    /// Its URL.
    pub url: String,
    /// Its number.
    pub number: u64,
    /// False when one was already open for the branch.
    pub created: bool,
    /// `owner:branch`.
    pub head: String,
    /// `owner/repo:branch` it targets.
    pub base: String,
}

fn remote(sys: &dyn System, files: &SshFiles, alias: &str, script: &str) -> Result<String, Error> {
    let config = files.user_config.display().to_string();
    let out = sys
        .run(&["ssh", "-F", &config, "-o", "BatchMode=yes", alias, script], None)
        .map_err(|e| err(format!("could not run ssh: {e}"), "install OpenSSH's client"))?;
    if !out.ok() {
        let last = out.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(err(
            format!("in the workspace, `{script}` failed: {last}"),
            format!("open a shell with `nexus workspace ssh` and run it yourself to see why ({alias})"),
        ));
    }
    Ok(out.stdout)
}

/// Pushes the workspace's current branch to its repo and opens a PR to upstream.
pub async fn pr(opts: &PrOptions, ui: &Ui, sys: &dyn System) -> Result<PrOutcome, Error> {
    let cfg = load_config(ui)?.config;
    let client = Client::from_config(opts.server.clone(), &cfg)?;
    let (gh, _login) = github_of(&cfg)?;
    let view = find(&client, opts.workspace.as_deref()).await?;
    require_running(&view)?;
    let alias = configure_ssh(&view, &cfg)?;
    let files = SshFiles::from_env().map_err(|e| err(e.to_string(), "set HOME"))?;
    let path = &view.repo.path;
    let info = remote(
        sys,
        &files,
        &alias,
        &format!("cd {path} && git rev-parse --abbrev-ref HEAD && git log -1 --format=%s"),
    )?;
    let mut lines = info.lines();
    let branch = lines.next().unwrap_or("").trim().to_string();
    let subject = lines.next().unwrap_or("").trim().to_string();
    if branch.is_empty() || branch == "HEAD" {
        return Err(err(
            "the workspace's checkout is not on a branch",
            format!("in the workspace run `git -C {path} switch -c my-change`, then `nexus workspace pr` again"),
        ));
    }
    let step = ui.step(&format!("Pushing {branch} to {}/{}", view.repo.owner, view.repo.name));
    if let Err(e) = remote(sys, &files, &alias, &format!("cd {path} && git push --quiet -u origin HEAD")) {
        step.fail("Push failed");
        return Err(e);
    }
    step.ok(&format!("Pushed {branch}"));

    let repo = gh.repo(&view.repo.owner, &view.repo.name).await?;
    let (base_owner, base_name) = match repo.parent_full_name.as_deref().and_then(|p| p.split_once('/')) {
        Some((o, n)) => (o.to_string(), n.to_string()),
        None => (view.repo.owner.clone(), view.repo.name.clone()),
    };
    let base_repo = gh.repo(&base_owner, &base_name).await?;
    let base_branch = opts.base.clone().unwrap_or_else(|| base_repo.default_branch.clone());
    let head = format!("{}:{branch}", view.repo.owner);
    let base_label = format!("{base_owner}/{base_name}:{base_branch}");
    if let Some(p) = gh.find_open_pull(&base_owner, &base_name, &head).await? {
        ui.ok(&format!("A pull request is already open: {}", p.html_url));
        return Ok(PrOutcome { url: p.html_url, number: p.number, created: false, head, base: base_label });
    }
    let title = opts.title.clone().unwrap_or(if subject.is_empty() { branch.clone() } else { subject });
    let body = opts.body.clone().unwrap_or_else(|| format!("Opened from Nexus workspace `{}`.", view.name));
    let step = ui.step(&format!("Opening a pull request to {base_label}"));
    let pull = match gh.create_pull(&base_owner, &base_name, &title, &head, &base_branch, &body).await {
        Ok(p) => p,
        Err(e) => {
            step.fail("GitHub refused the pull request");
            return Err(e.into());
        }
    };
    step.ok(&format!("Pull request #{} opened", pull.number));
    Ok(PrOutcome { url: pull.html_url, number: pull.number, created: true, head, base: base_label })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_urls_compare_loosely() {
        assert!(same_repo_url("https://github.com/Alice/Site.git", "https://github.com/alice/site"));
        assert!(!same_repo_url("https://github.com/alice/site", "https://github.com/acme/site"));
    }
}
