//! What the server asks GitHub about a registering user's token: who it belongs to (`GET /user`),
//! whether the user is in an organization the operator allows
//! (`GET /user/memberships/orgs/{org}`), and whether it was issued to this server's OAuth app
//! (`POST /applications/{client_id}/token`).
//!
//! Behind a trait so unit tests use a fake (`testing::FakeGithub`); integration tests point the real
//! client at a local GitHub-compatible server via the configurable API base URL. Tokens are only
//! ever sent to GitHub; no log line here carries one.

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

/// The OAuth app whose tokens the server accepts as proof of identity.
#[derive(Clone)]
pub struct OauthApp {
    /// The app's client id (what the CLI's device flow uses).
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
}

impl std::fmt::Debug for OauthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OauthApp").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// Asks GitHub about a token.
pub trait GithubIdentity: Send + Sync {
    /// `Ok(None)` when GitHub says the token is invalid (401).
    fn user(&self, token: &str) -> BoxFuture<'_, Result<Option<GithubUser>>>;

    /// Whether the token's user is an active member of `org` (a pending invitation is not). Needs
    /// the `read:org` scope; without it GitHub answers 403/404, which reads as "not a member".
    fn is_org_member<'a>(&'a self, token: &'a str, org: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Whether GitHub says `token` was issued to `app` (200), rather than to another app or not
    /// at all (404).
    fn issued_to_app<'a>(&'a self, token: &'a str, app: &'a OauthApp) -> BoxFuture<'a, Result<bool>>;
}

/// Asks the GitHub REST API.
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

    fn unreachable(&self, source: reqwest::Error) -> ServerError {
        ServerError::GithubUnreachable { url: self.base.clone(), source }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }
}

/// `GET /user/memberships/orgs/{org}`'s answer, the part the check reads.
#[derive(Deserialize)]
struct Membership {
    /// `active` or `pending`.
    state: String,
}

/// Path segment: organization logins are `[A-Za-z0-9-]`, anything else cannot be one.
fn org_segment(org: &str) -> Option<&str> {
    (!org.is_empty() && org.len() <= 39 && org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then_some(org)
}

impl GithubIdentity for GithubApi {
    fn user(&self, token: &str) -> BoxFuture<'_, Result<Option<GithubUser>>> {
        let token = token.to_string();
        Box::pin(async move {
            let resp = self
                .request(reqwest::Method::GET, "/user")
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| self.unreachable(e))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED || resp.status() == reqwest::StatusCode::FORBIDDEN {
                return Ok(None);
            }
            let resp = resp.error_for_status().map_err(|e| self.unreachable(e))?;
            Ok(Some(resp.json::<GithubUser>().await.map_err(|e| self.unreachable(e))?))
        })
    }

    fn is_org_member<'a>(&'a self, token: &'a str, org: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some(org) = org_segment(org) else { return Ok(false) };
            let resp = self
                .request(reqwest::Method::GET, &format!("/user/memberships/orgs/{org}"))
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| self.unreachable(e))?;
            // 404: not a member (or the org does not exist); 403: the token may not see the
            // membership (no `read:org`, or the org restricts OAuth apps); 401: token invalid.
            if matches!(resp.status().as_u16(), 401 | 403 | 404) {
                return Ok(false);
            }
            let resp = resp.error_for_status().map_err(|e| self.unreachable(e))?;
            let m = resp.json::<Membership>().await.map_err(|e| self.unreachable(e))?;
            Ok(m.state == "active")
        })
    }

    fn issued_to_app<'a>(&'a self, token: &'a str, app: &'a OauthApp) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let client_id: String =
                app.client_id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).collect();
            let resp = self
                .request(reqwest::Method::POST, &format!("/applications/{client_id}/token"))
                .basic_auth(&app.client_id, Some(&app.client_secret))
                .json(&serde_json::json!({ "access_token": token }))
                .send()
                .await
                .map_err(|e| self.unreachable(e))?;
            // 404: not a token of this app (another app's, or none). 401: the client id and secret
            // are wrong, an operator error, reported as such rather than as "not ours".
            if matches!(resp.status().as_u16(), 404 | 422) {
                return Ok(false);
            }
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
                tracing::error!(client_id = %app.client_id, "GitHub refused this server's OAuth app credentials");
                return Err(ServerError::unavailable(
                    "github_app_credentials",
                    "GitHub refused this server's OAuth app credentials, so sign-ins cannot be checked",
                    "tell the operator: check --github-client-id and the secret in --github-client-secret-file",
                ));
            }
            resp.error_for_status().map_err(|e| self.unreachable(e))?;
            Ok(true)
        })
    }
}
