//! Proves a registering user's GitHub identity by asking GitHub's `GET /user` with their token.
//!
//! Behind a trait so unit tests use a fake (`testing::FakeGithub`); integration tests point the real
//! client at a local GitHub-compatible server via the configurable API base URL.

use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::error::{Result, ServerError};

/// The identity GitHub reports for a token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GithubUser {
    /// The login, as GitHub spells it now (users can rename themselves).
    pub login: String,
    /// The numeric id, which stays the same across renames.
    pub id: i64,
}

/// Asks GitHub who a token belongs to.
pub trait GithubIdentity: Send + Sync {
    /// `Ok(None)` when GitHub says the token is invalid (401).
    fn user(&self, token: &str) -> BoxFuture<'_, Result<Option<GithubUser>>>;
}

/// Asks the GitHub REST API (`GET /user`).
pub struct GithubApi {
    base: String,
    http: reqwest::Client,
}

impl GithubApi {
    /// A client for the API at `base` (e.g. `https://api.github.com`).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("nexus-server/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .expect("static client settings are valid");
        GithubApi { base: base.trim_end_matches('/').to_string(), http }
    }
}

impl GithubIdentity for GithubApi {
    fn user(&self, token: &str) -> BoxFuture<'_, Result<Option<GithubUser>>> {
        let token = token.to_string();
        Box::pin(async move {
            let unreachable = |source| ServerError::GithubUnreachable { url: self.base.clone(), source };
            let resp = self
                .http
                .get(format!("{}/user", self.base))
                .bearer_auth(token)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .send()
                .await
                .map_err(unreachable)?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED || resp.status() == reqwest::StatusCode::FORBIDDEN {
                return Ok(None);
            }
            let resp = resp.error_for_status().map_err(unreachable)?;
            Ok(Some(resp.json::<GithubUser>().await.map_err(unreachable)?))
        })
    }
}
