//! `nexus workspace create`: make a workspace for a repository and wait with progress until it and its
//! services are ready. `owner/repo` (or a URL on the designer's GitHub) goes through GitHub, forking
//! the repository first when the designer can't push to it; any other git URL is cloned as given,
//! with no GitHub sign-in needed (another git host, or `nexus up`'s staging).

use std::time::Duration;

use nexus_types::api::{CreateWorkspaceRequest, WorkspaceView};
use nexus_types::state::WorkspaceStatus;

use super::{github_of, local_urls, render_ready, start, wait_ready};
use crate::client::Client;
use crate::commands::load_config;
use crate::config::UserConfig;
use crate::error::{Error, Result};
use crate::github::{parse_repo_arg, GithubClient, GithubEndpoints, Repository};
use crate::ui::{Report, Ui};

/// `nexus workspace create` options.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `owner/repo` on GitHub, or a git URL.
    pub repo: String,
    /// Branch (default: the repo's default branch).
    pub branch: Option<String>,
    /// Workspace name (default: the repo's name).
    pub name: Option<String>,
    /// The server to use instead of the configured one (`--server`).
    pub server: Option<String>,
    /// Clone and run setup afresh instead of starting from a prebuilt workspace (`--no-prebuild`).
    pub no_prebuild: bool,
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

/// What the workspace clones, as the server is asked to.
struct Source {
    /// The URL the server clones.
    url: String,
    /// How messages name it: `acme/site`, or the URL.
    label: String,
    /// The repository's name: the default workspace name.
    name: String,
    /// The repository `url` was forked from.
    upstream: Option<String>,
    /// The GitHub login, when the repository is on the user's GitHub.
    login: Option<String>,
    /// The GitHub token the workspace clones and pushes with, likewise.
    git_token: Option<String>,
}

/// `arg` when it is a git URL to clone as given, which needs no GitHub: anything but `owner/repo` or a
/// URL on the GitHub the user is signed in to (there the repository may need forking first).
fn direct_url(arg: &str, cfg: &UserConfig) -> Option<String> {
    let arg = arg.trim();
    let host = url_host(arg)?;
    let signed_in = cfg.github.username.is_some() && cfg.github.auth_token.is_some();
    let github = url_host(&GithubEndpoints::for_host(&cfg.github.host).web);
    if signed_in && github.is_some_and(|g| g.eq_ignore_ascii_case(&host)) {
        return None;
    }
    Some(arg.to_string())
}

/// The `host[:port]` of a git URL — `scheme://[user@]host[:port]/path` or scp-like `user@host:path` —
/// and `None` for anything else, such as `owner/repo`.
fn url_host(s: &str) -> Option<String> {
    let host = match s.split_once("://") {
        Some((_, rest)) => {
            let authority = rest.split('/').next().unwrap_or_default();
            authority.rsplit_once('@').map_or(authority, |(_, h)| h)
        }
        None => {
            let (user_host, path) = s.split_once(':')?;
            if user_host.contains('/') || path.is_empty() {
                return None;
            }
            let (_, host) = user_host.rsplit_once('@')?;
            host
        }
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// The last part of a git URL's path without `.git`: `git://host/team/site.git` → `site`.
fn repo_name_of(url: &str) -> String {
    let path = url.trim_end_matches('/');
    let last = path.rsplit(['/', ':']).next().unwrap_or(path);
    last.strip_suffix(".git").unwrap_or(last).to_string()
}

/// Creates (or reuses) the workspace for a repo and waits until it and its services are ready.
pub async fn run(opts: &CreateOptions, ui: &Ui) -> Result<Created> {
    let loaded = load_config(ui)?;
    let cfg = &loaded.config;
    let client = Client::from_config(opts.server.clone(), cfg)?;
    let source = match direct_url(&opts.repo, cfg) {
        Some(url) => {
            ui.section("📦 Repository Setup");
            ui.ok(&format!("Cloning {url} as given"));
            Source { name: repo_name_of(&url), label: url.clone(), url, upstream: None, login: None, git_token: None }
        }
        None => {
            let (gh, login) = github_of(cfg)?;
            let (owner, name) = parse_repo_arg(&opts.repo)?;
            let (target, upstream) = repo_to_clone(&gh, &login, &owner, &name, ui).await?;
            Source {
                url: target.clone_url,
                label: target.full_name,
                name: target.name,
                upstream: upstream.map(|u| u.clone_url),
                login: Some(login),
                git_token: cfg.github.auth_token.clone(),
            }
        }
    };

    // Running create again for the same repo offers the workspace that exists.
    let mine = client.list().await?;
    let existing = mine.iter().find(|w| match &opts.name {
        Some(n) => &w.name == n,
        None => same_repo_url(&w.repo.url, &source.url),
    });
    if let Some(w) = existing {
        if !same_repo_url(&w.repo.url, &source.url) {
            return Err(Error::new(
                format!("you already have a workspace named {} for {}/{}", w.name, w.repo.owner, w.repo.name),
                "pick another name with `--name`, or delete that one with `nexus workspace delete`",
            ));
        }
        ui.info(&format!("You already have workspace {} for {} ({})", w.name, source.label, w.status));
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
        return Ok(Created(local_urls(wait_ready(&client, &w.workspace_id, ui).await?)));
    }

    let workspace_name = match &opts.name {
        Some(n) => n.clone(),
        None => nexus_types::names::slug(&source.name).ok_or_else(|| {
            Error::new(
                format!("cannot make a workspace name from {:?}", source.name),
                format!("pass a name: `nexus workspace create {} --name <name>`", opts.repo),
            )
        })?,
    };
    ui.section("🔨 Workspace Initialization");
    let req = CreateWorkspaceRequest {
        github_username: source.login,
        workspace_name,
        repo: source.url,
        branch: opts.branch.clone(),
        provider: None,
        image: None,
        services: None,
        resources: None,
        git_token: source.git_token,
        upstream: source.upstream,
        no_prebuild: opts.no_prebuild,
    };
    let created = client.create(&req).await?;
    Ok(Created(local_urls(wait_ready(&client, &created.workspace_id, ui).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_repo_and_urls_on_the_signed_in_github_need_github() {
        let mut cfg = UserConfig::default();
        assert_eq!(direct_url("acme/site", &cfg), None);
        for url in
            ["git://10.87.0.1:9418/demo/site", "https://git.example.com/team/site.git", "git@gitlab.com:team/site.git"]
        {
            assert_eq!(direct_url(url, &cfg).as_deref(), Some(url));
        }
        // Not signed in: a GitHub URL is cloned as given too (public repositories need no sign-in).
        assert!(direct_url("https://github.com/acme/site", &cfg).is_some());
        cfg.github.username = Some("alice".into());
        cfg.github.auth_token = Some("gho_x".into());
        assert_eq!(direct_url("https://github.com/acme/site", &cfg), None, "signed in: may fork");
        assert_eq!(direct_url("git@github.com:acme/site.git", &cfg), None);
        assert!(direct_url("https://git.example.com/team/site.git", &cfg).is_some());
    }

    #[test]
    fn a_urls_repository_name() {
        assert_eq!(repo_name_of("git://10.87.0.1:9418/demo/site.git"), "site");
        assert_eq!(repo_name_of("https://git.example.com/team/My.Site/"), "My.Site");
        assert_eq!(repo_name_of("git@gitlab.com:site.git"), "site");
        assert_eq!(url_host("ssh://git@host.example:2222/a/b.git").as_deref(), Some("host.example:2222"));
        assert_eq!(url_host("acme/site"), None);
    }

    #[test]
    fn repo_urls_compare_loosely() {
        assert!(same_repo_url("https://github.com/Alice/Site.git", "https://github.com/alice/site"));
        assert!(!same_repo_url("https://github.com/alice/site", "https://github.com/acme/site"));
    }
}
