//! `nexus workspace pr`: push the workspace's branch and open a pull request to the repository it
//! was forked from (or the repository itself), or find the one already open.

use super::{configure_ssh, find, github_of, require_running, ssh_files};
use crate::client::Client;
use crate::commands::load_config;
use crate::error::{Error, Result};
use crate::ssh_config::SshFiles;
use crate::system::System;
use crate::ui::{Report, Ui};

/// `nexus workspace pr` options.
#[derive(Debug, Clone, Default)]
pub struct PrOptions {
    /// The workspace [default: the caller's only one].
    pub workspace: Option<String>,
    /// Title (default: the last commit's subject).
    pub title: Option<String>,
    /// Description [default: a line naming the workspace].
    pub body: Option<String>,
    /// Base branch upstream (default: its default branch).
    pub base: Option<String>,
    /// The server to use instead of the configured one (`--server`).
    pub server: Option<String>,
}

/// The pull request opened (or found).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PrOutcome {
    /// Where the pull request is on GitHub; the text output prints it.
    pub url: String,
    /// GitHub's number for it (`#12`).
    pub number: u64,
    /// False when one was already open for the branch.
    pub created: bool,
    /// `owner:branch`.
    pub head: String,
    /// `owner/repo:branch` it targets.
    pub base: String,
}

impl Report for PrOutcome {
    fn text(&self, ui: &Ui) {
        ui.result(&self.url);
    }
}

fn remote(sys: &dyn System, files: &SshFiles, alias: &str, script: &str) -> Result<String> {
    let config = files.user_config.display().to_string();
    let out = sys
        .run(&["ssh", "-F", &config, "-o", "BatchMode=yes", alias, script], None)
        .map_err(|e| Error::new(format!("could not run ssh: {e}"), "install OpenSSH's client"))?;
    if !out.ok() {
        let last = out.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(Error::new(
            format!("in the workspace, `{script}` failed: {last}"),
            format!("open a shell with `nexus workspace ssh` and run it yourself to see why ({alias})"),
        ));
    }
    Ok(out.stdout)
}

/// Pushes the workspace's current branch to its repo and opens a PR to upstream.
pub async fn run(opts: &PrOptions, ui: &Ui, sys: &dyn System) -> Result<PrOutcome> {
    let cfg = load_config(ui)?.config;
    let client = Client::from_config(opts.server.clone(), &cfg)?;
    let (gh, _login) = github_of(&cfg)?;
    let view = find(&client, opts.workspace.as_deref()).await?;
    require_running(&view)?;
    let files = ssh_files()?;
    let alias = configure_ssh(&files, &view, &cfg)?;
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
        return Err(Error::new(
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
