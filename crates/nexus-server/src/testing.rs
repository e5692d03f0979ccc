//! In-memory stand-ins for the server's outside world (GitHub's identity check, the git probe), for
//! this crate's unit tests and, with the `testing` feature, other crates' tests. Not in release builds.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use nexus_types::diagnostics::lock;

use crate::error::{Result, ServerError};
use crate::github::{GithubIdentity, GithubUser, OauthApp};
use crate::repo_probe::{GitTarget, RepoProbe};

/// Token → user; any other token is invalid. Tokens belong to the app [`FakeGithub::APP`] unless
/// added with [`FakeGithub::add_token_of_app`]; org memberships are set with [`FakeGithub::add_member`].
#[derive(Default)]
pub struct FakeGithub {
    users: Mutex<HashMap<String, (GithubUser, String)>>,
    /// (org, login), lower case.
    members: Mutex<Vec<(String, String)>>,
}

impl FakeGithub {
    /// The client id tokens are issued to by default.
    pub const APP: &'static str = "Iv1.fake-app";

    /// Makes `token` belong to `login` (GitHub id `id`), issued to [`FakeGithub::APP`].
    pub fn add_token(&self, token: &str, login: &str, id: i64) {
        self.add_token_of_app(token, login, id, Self::APP);
    }

    /// Makes `token` belong to `login`, issued to the OAuth app `client_id`.
    pub fn add_token_of_app(&self, token: &str, login: &str, id: i64, client_id: &str) {
        let user = GithubUser { login: login.to_string(), id };
        lock(&self.users).insert(token.to_string(), (user, client_id.to_string()));
    }

    /// Makes `login` an active member of `org`.
    pub fn add_member(&self, org: &str, login: &str) {
        lock(&self.members).push((org.to_ascii_lowercase(), login.to_ascii_lowercase()));
    }
}

impl GithubIdentity for FakeGithub {
    fn user(&self, token: &str) -> BoxFuture<'_, Result<Option<GithubUser>>> {
        let found = lock(&self.users).get(token).map(|(u, _)| u.clone());
        Box::pin(async move { Ok(found) })
    }

    fn is_org_member<'a>(&'a self, token: &'a str, org: &'a str) -> BoxFuture<'a, Result<bool>> {
        let login = lock(&self.users).get(token).map(|(u, _)| u.login.to_ascii_lowercase());
        let member = login.is_some_and(|l| lock(&self.members).contains(&(org.to_ascii_lowercase(), l)));
        Box::pin(async move { Ok(member) })
    }

    fn issued_to_app<'a>(&'a self, token: &'a str, app: &'a OauthApp) -> BoxFuture<'a, Result<bool>> {
        let ours = lock(&self.users).get(token).is_some_and(|(_, client)| client == &app.client_id);
        Box::pin(async move { Ok(ours) })
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
        target: &'a GitTarget,
        branch: Option<&'a str>,
        _token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String>> {
        let url = target.url.as_str();
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
        target: &'a GitTarget,
        branch: &'a str,
        _token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<HashMap<String, String>>> {
        let url = target.url.as_str();
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
