//! `nexus workspace create`: make a workspace for a repository — forking it first when the designer
//! can't push to it — and wait with progress until it and its services are ready.

use std::time::Duration;

use nexus_types::api::{CreateWorkspaceRequest, WorkspaceView};
use nexus_types::state::WorkspaceStatus;

use super::{github_of, render_ready, start, wait_ready};
use crate::client::Client;
use crate::commands::load_config;
use crate::error::{Error, Result};
use crate::github::{parse_repo_arg, GithubClient, Repository};
use crate::ui::{Report, Ui};

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

/// The workspace, ready: JSON as the API shows it, text as the "Workspace Ready" block.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct Created(pub WorkspaceView);

impl Report for Created {
    fn text(&self, ui: &Ui) {
        ui.result(render_ready(&self.0, None).trim_end());
    }
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
) -> Result<(Repository, Option<Repository>)> {
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
pub async fn run(opts: &CreateOptions, ui: &Ui) -> Result<Created> {
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
            return Err(Error::new(
                format!("you already have a workspace named {} for {}/{}", w.name, w.repo.owner, w.repo.name),
                "pick another name with `--name`, or delete that one with `nexus workspace delete`",
            ));
        }
        ui.info(&format!("You already have workspace {} for {} ({})", w.name, target.full_name, w.status));
        if !ui.confirm("Use it instead of making another?", true) {
            return Err(Error::new(
                "not creating a second workspace for the same repository without a new name",
                format!("run `nexus workspace create {} --name <another-name>`", opts.repo),
            ));
        }
        ui.section("🔨 Workspace Initialization");
        if w.status == WorkspaceStatus::Stopped {
            start(&client, w, ui).await?;
        }
        return Ok(Created(wait_ready(&client, &w.workspace_id, ui).await?));
    }

    let workspace_name = match &opts.name {
        Some(n) => n.clone(),
        None => nexus_types::names::slug(&target.name).ok_or_else(|| {
            Error::new(
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
    Ok(Created(wait_ready(&client, &created.workspace_id, ui).await?))
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
