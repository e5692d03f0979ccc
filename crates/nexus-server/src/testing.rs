//! In-memory stand-ins for the server's outside world (GitHub's identity check, the git probe), for
//! this crate's unit tests and, with the `testing` feature, other crates' tests. Not in release builds.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use nexus_types::diagnostics::lock;

use crate::error::{Result, ServerError};
use crate::github::{GithubIdentity, GithubUser};
use crate::repo_probe::RepoProbe;

/// Token → user; any other token is invalid.
#[derive(Default)]
pub struct FakeGithub {
    users: Mutex<HashMap<String, GithubUser>>,
}

impl FakeGithub {
    /// Makes `token` belong to `login` (GitHub id `id`).
    pub fn add_token(&self, token: &str, login: &str, id: i64) {
        lock(&self.users).insert(token.to_string(), GithubUser { login: login.to_string(), id });
    }
}

impl GithubIdentity for FakeGithub {
    fn user(&self, token: &str) -> BoxFuture<'_, Result<Option<GithubUser>>> {
        let found = lock(&self.users).get(token).cloned();
        Box::pin(async move { Ok(found) })
    }
}

/// Repositories by clone URL: a default branch and each branch's files.
#[derive(Default)]
pub struct FakeRepos {
    repos: Mutex<HashMap<String, FakeRepo>>,
}

struct FakeRepo {
    default_branch: String,
    branches: HashMap<String, HashMap<String, String>>,
}

impl FakeRepos {
    /// Adds (or replaces) the repository at `url` with one branch, `main`, holding `files`.
    pub fn add(&self, url: &str, files: &[(&str, &str)]) {
        let files = files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
        let repo = FakeRepo { default_branch: "main".into(), branches: HashMap::from([("main".to_string(), files)]) };
        lock(&self.repos).insert(url.to_string(), repo);
    }
}

fn not_found(url: &str) -> ServerError {
    ServerError::RepoNotFound { message: format!("repository {url} not found"), hint: "check the name".into() }
}

impl RepoProbe for FakeRepos {
    fn resolve_branch<'a>(
        &'a self,
        url: &'a str,
        branch: Option<&'a str>,
        _token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String>> {
        let found = lock(&self.repos).get(url).map(|r| match branch {
            Some(b) => r.branches.contains_key(b).then(|| b.to_string()),
            None => Some(r.default_branch.clone()),
        });
        Box::pin(async move {
            match found {
                Some(Some(b)) => Ok(b),
                Some(None) => Err(ServerError::RepoNotFound {
                    message: format!("branch {:?} does not exist", branch.unwrap_or_default()),
                    hint: "check the branch name".into(),
                }),
                None => Err(not_found(url)),
            }
        })
    }

    fn plan_files<'a>(
        &'a self,
        url: &'a str,
        branch: &'a str,
        _token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<HashMap<String, String>>> {
        let files = lock(&self.repos).get(url).and_then(|r| r.branches.get(branch)).map(|files| {
            files
                .iter()
                .filter(|(p, _)| nexus_project::PLAN_FILES.contains(&p.as_str()))
                .map(|(p, t)| (p.clone(), t.clone()))
                .collect()
        });
        Box::pin(async move { files.ok_or_else(|| not_found(url)) })
    }
}
