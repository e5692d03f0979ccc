//! The CLI's GitHub client: the OAuth device flow (`nexus auth github`), the signed-in user, SSH
//! keys, repositories, forks and pull requests, against github.com or a GitHub Enterprise host.
//!
//! Transient failures (network errors, 5xx) are retried with exponential backoff; every other
//! answer becomes one [`GithubError`] whose [`Hint`] tells the user what to do next.
//! Tests run it against `nexus_testkit::github::FakeGithub`, which checks every request against
//! GitHub's OpenAPI description.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use nexus_types::diagnostics::Hint;

/// REST API version the client is written against (`X-GitHub-Api-Version`).
const API_VERSION: &str = "2022-11-28";

const USER_AGENT: &str = concat!("nexus-cli/", env!("CARGO_PKG_VERSION"));
const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const HINT_SIGN_IN: &str = "your GitHub sign-in expired or was revoked: run `nexus auth github`";

/// Where a GitHub installation serves its web pages (and OAuth) and its REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubEndpoints {
    /// Web and OAuth base, e.g. `https://github.com`.
    pub web: String,
    /// REST API base, e.g. `https://api.github.com`.
    pub api: String,
}

impl GithubEndpoints {
    /// `github.com` → `https://github.com` + `https://api.github.com`; another host (GitHub
    /// Enterprise) → `https://<host>` + `https://<host>/api/v3`; a URL with a scheme (e.g. a test
    /// server `http://10.87.0.1:4567`) → that URL + `/api/v3`.
    pub fn for_host(host: &str) -> GithubEndpoints {
        let host = host.trim().trim_end_matches('/');
        if host.is_empty() || host.eq_ignore_ascii_case("github.com") || host.eq_ignore_ascii_case("https://github.com")
        {
            return GithubEndpoints { web: "https://github.com".into(), api: "https://api.github.com".into() };
        }
        let web = if host.contains("://") { host.to_string() } else { format!("https://{host}") };
        GithubEndpoints { api: format!("{web}/api/v3"), web }
    }
}

/// What the user must enter, and where, to finish the device sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeviceCode {
    /// Secret the client polls with.
    pub device_code: String,
    /// Code the user types in the browser, e.g. `WDJB-MJHT`.
    pub user_code: String,
    /// Page where the user enters it.
    pub verification_uri: String,
    /// Seconds until both codes expire.
    pub expires_in: u64,
    /// Minimum seconds between polls.
    pub interval: u64,
}

/// The signed-in GitHub account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    /// The account's login, e.g. `alice`.
    pub login: String,
    /// Numeric id (stable across renames).
    pub id: i64,
}

/// An SSH key on the signed-in account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Key {
    /// GitHub's key id.
    pub id: i64,
    /// Title given at upload.
    #[serde(default)]
    pub title: String,
    /// `type base64` (GitHub drops the comment).
    pub key: String,
}

/// Outcome of uploading an SSH key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddKey {
    /// Uploaded.
    Added(Key),
    /// GitHub already has this key, on this account or another (`key is already in use`).
    AlreadyInUse,
}

/// A repository as the signed-in user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
    /// Name without owner.
    pub name: String,
    /// Owner login.
    pub owner_login: String,
    /// Private (or internal) repository.
    pub private: bool,
    /// Is a fork.
    pub fork: bool,
    /// HTTPS clone URL.
    pub clone_url: String,
    /// Web page.
    pub html_url: String,
    /// Default branch.
    pub default_branch: String,
    /// The signed-in user may push (`permissions.push`); false when anonymous.
    pub can_push: bool,
    /// `owner/name` of the repository this is a fork of.
    pub parent_full_name: Option<String>,
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pull {
    /// Number within the base repository.
    pub number: u64,
    /// Web page.
    pub html_url: String,
}

/// One entry of a 422 answer's `errors` list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ValidationDetail {
    /// Resource, e.g. `PullRequest`.
    #[serde(default)]
    pub resource: Option<String>,
    /// Field, e.g. `head`.
    #[serde(default)]
    pub field: Option<String>,
    /// Code, e.g. `invalid`, `missing_field`, `custom`.
    #[serde(default)]
    pub code: Option<String>,
    /// Message (for `custom` codes).
    #[serde(default)]
    pub message: Option<String>,
}

impl std::fmt::Display for ValidationDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.message, &self.field, &self.code) {
            (Some(m), _, _) => write!(f, "{m}"),
            (None, Some(field), Some(code)) => write!(f, "`{field}` is {}", code.replace('_', " ")),
            (None, _, Some(code)) => write!(f, "{code}"),
            _ => write!(f, "invalid"),
        }
    }
}

/// Everything that can go wrong talking to GitHub. `Display` says what happened;
/// [`Hint`] says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// No answer: DNS, connection, TLS or timeout.
    #[error("cannot reach GitHub at {url}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The call needs a token and the client has none.
    #[error("not signed in to GitHub")]
    NotSignedIn,
    /// 401: the token is unknown, expired or revoked.
    #[error("GitHub rejected the sign-in token ({message})")]
    Unauthorized {
        /// GitHub's message, e.g. `Bad credentials`.
        message: String,
    },
    /// The token lacks a scope the call needs (GitHub answers 404 or 403).
    #[error("GitHub refused to {action}: the sign-in lacks the `{scope}` scope")]
    MissingScope {
        /// What was attempted, e.g. `add an SSH key`.
        action: String,
        /// Scope that would allow it.
        scope: String,
    },
    /// 403 for another reason.
    #[error("GitHub refused to {action}: {message}")]
    Forbidden {
        /// What was attempted.
        action: String,
        /// GitHub's message.
        message: String,
    },
    /// 403/429 with the rate limit exhausted.
    #[error("GitHub's API rate limit is used up")]
    RateLimited {
        /// When it resets (Unix seconds), from `X-RateLimit-Reset`.
        reset_at: Option<u64>,
    },
    /// 404: missing, or private and invisible to this account.
    #[error("{what} was not found on GitHub")]
    NotFound {
        /// E.g. `repository acme/hello`.
        what: String,
    },
    /// 422: GitHub understood the request and refused it.
    #[error("GitHub refused to {action}: {message}")]
    Rejected {
        /// What was attempted.
        action: String,
        /// GitHub's message and details, joined.
        message: String,
        /// The `errors` list.
        details: Vec<ValidationDetail>,
    },
    /// 5xx, still failing after the retries.
    #[error("GitHub failed to {action}: HTTP {status} on each of {attempts} attempts")]
    ServerError {
        /// What was attempted.
        action: String,
        /// Last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// An answer the client does not understand.
    #[error("unexpected answer from GitHub when trying to {action}: {detail}")]
    Unexpected {
        /// What was attempted.
        action: String,
        /// Status and body excerpt, or the parse error.
        detail: String,
    },
    /// The device code expired before the user approved it.
    #[error("the GitHub sign-in code expired before it was approved")]
    DeviceCodeExpired,
    /// The user declined the authorization in the browser.
    #[error("the GitHub sign-in was declined in the browser")]
    AccessDenied,
    /// Another device-flow error (`device_flow_disabled`, `incorrect_client_credentials`, ...).
    #[error("GitHub refused the device sign-in: {code} ({description})")]
    DeviceFlow {
        /// GitHub's `error`.
        code: String,
        /// GitHub's `error_description`.
        description: String,
    },
    /// A repository (e.g. a new fork) did not answer in time.
    #[error("{what} did not appear on GitHub within {} s", waited.as_secs())]
    Timeout {
        /// E.g. `fork bob/hello`.
        what: String,
        /// How long the client waited.
        waited: Duration,
    },
    /// A repository argument that is not `owner/repo` or a GitHub URL.
    #[error("`{input}` is not a GitHub repository")]
    InvalidRepo {
        /// What the user typed.
        input: String,
    },
}

impl Hint for GithubError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            GithubError::Unreachable { .. } => {
                "check your network; GitHub Enterprise users set `github.host` in ~/.nexus/config.yaml".into()
            }
            GithubError::NotSignedIn => "sign in with `nexus auth github`".into(),
            GithubError::Unauthorized { .. } => HINT_SIGN_IN.into(),
            GithubError::MissingScope { scope, .. } => {
                format!("run `nexus auth github` again to grant the `{scope}` scope")
            }
            GithubError::Forbidden { .. } => {
                "ask the repository's owner for access, or sign in as another account with `nexus auth github`".into()
            }
            GithubError::RateLimited { reset_at } => match reset_at {
                Some(t) => format!("wait until the limit resets (Unix time {t}, within the hour) and try again"),
                None => "wait a few minutes for the rate limit to reset and try again".into(),
            },
            GithubError::NotFound { .. } => "check the spelling of owner/repo; for a private repository make sure \
                                             your GitHub account can see it"
                .into(),
            GithubError::Rejected { details, .. } => {
                let field = |f: &str| details.iter().any(|d| d.field.as_deref() == Some(f));
                if field("head") {
                    "push the branch to GitHub first (`git push`), then open the pull request again".into()
                } else if field("base") {
                    "check the base branch: it must exist in the repository you open the pull request on".into()
                } else if details.iter().any(|d| d.field.as_deref() == Some("key")) {
                    "check that the file is an OpenSSH public key (`~/.ssh/id_ed25519.pub`), then try again".into()
                } else {
                    "correct what GitHub reports above and try again".into()
                }
            }
            GithubError::ServerError { .. } => {
                "GitHub is having trouble: try again in a few minutes (see https://www.githubstatus.com)".into()
            }
            GithubError::Unexpected { .. } => "try again; if it keeps failing, check that `github.host` in \
                                               ~/.nexus/config.yaml names a GitHub server"
                .into(),
            GithubError::DeviceCodeExpired => {
                "run `nexus auth github` again and enter the new code before it expires".into()
            }
            GithubError::AccessDenied => "run `nexus auth github` again and choose \"Authorize\" in the browser".into(),
            GithubError::DeviceFlow { code, .. } if code == "device_flow_disabled" => {
                "the GitHub OAuth app has the device flow turned off: ask your Nexus operator to enable it".into()
            }
            GithubError::DeviceFlow { .. } => "check `github.host` and the OAuth client id in ~/.nexus/config.yaml, \
                                               then run `nexus auth github` again"
                .into(),
            GithubError::Timeout { .. } => {
                "GitHub may still be creating it: wait a minute and run the command again".into()
            }
            GithubError::InvalidRepo { .. } => {
                "write it as `owner/repo`, `https://github.com/owner/repo` or `git@github.com:owner/repo.git`".into()
            }
        })
    }
}

/// How the client waits between polls and retries (tests inject one that records and returns).
pub type SleepFn = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A GitHub REST and OAuth client.
pub struct GithubClient {
    endpoints: GithubEndpoints,
    token: Option<String>,
    http: reqwest::Client,
    retries: u32,
    base_delay: Duration,
    sleep: SleepFn,
}

/// A non-retryable answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json<T: serde::de::DeserializeOwned>(&self, action: &str) -> Result<T, GithubError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| GithubError::Unexpected { action: action.into(), detail: format!("unreadable JSON: {e}") })
    }

    fn value(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn message(&self) -> String {
        let v = self.value();
        v.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&self.body);
            text.chars().take(200).collect::<String>().trim().to_string()
        })
    }
}

#[derive(Deserialize)]
struct RawOwner {
    login: String,
}

#[derive(Deserialize)]
struct RawPermissions {
    #[serde(default)]
    push: bool,
}

#[derive(Deserialize)]
struct RawParent {
    full_name: String,
}

#[derive(Deserialize)]
struct RawRepo {
    full_name: String,
    name: String,
    owner: RawOwner,
    private: bool,
    fork: bool,
    clone_url: String,
    html_url: String,
    default_branch: String,
    permissions: Option<RawPermissions>,
    parent: Option<RawParent>,
}

impl From<RawRepo> for Repository {
    fn from(r: RawRepo) -> Repository {
        Repository {
            full_name: r.full_name,
            name: r.name,
            owner_login: r.owner.login,
            private: r.private,
            fork: r.fork,
            clone_url: r.clone_url,
            html_url: r.html_url,
            default_branch: r.default_branch,
            can_push: r.permissions.is_some_and(|p| p.push),
            parent_full_name: r.parent.map(|p| p.full_name),
        }
    }
}

fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        Some(part[start..end].to_string())
    })
}

impl GithubClient {
    /// A client for `endpoints`, signed in with `token` if given (anonymous calls can read public
    /// repositories). Retries 3 times (0.5 s, 1 s, 2 s).
    pub fn new(endpoints: GithubEndpoints, token: Option<String>) -> GithubClient {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("static client settings are valid");
        GithubClient {
            endpoints,
            token,
            http,
            retries: 3,
            base_delay: Duration::from_millis(500),
            sleep: Arc::new(|d| Box::pin(tokio::time::sleep(d))),
        }
    }

    /// Retries transient failures `retries` times, waiting `base_delay`, then twice that, ...
    pub fn with_retries(mut self, retries: u32, base_delay: Duration) -> GithubClient {
        self.retries = retries;
        self.base_delay = base_delay;
        self
    }

    /// Replaces how the client waits (device-flow polls, retries, waiting for forks).
    pub fn with_sleep(mut self, sleep: SleepFn) -> GithubClient {
        self.sleep = sleep;
        self
    }

    /// The endpoints this client talks to.
    pub fn endpoints(&self) -> &GithubEndpoints {
        &self.endpoints
    }

    /// Sends with retries on transport errors and 5xx; returns the first other answer.
    async fn send(
        &self,
        action: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Answer, GithubError> {
        let mut delay = self.base_delay;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt > self.retries;
            match build().send().await {
                Err(source) if last => return Err(GithubError::Unreachable { url: url.to_string(), source }),
                Err(_) => {}
                Ok(resp) if resp.status().is_server_error() => {
                    if last {
                        return Err(GithubError::ServerError {
                            action: action.into(),
                            status: resp.status().as_u16(),
                            attempts: attempt,
                        });
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = resp
                        .bytes()
                        .await
                        .map_err(|source| GithubError::Unreachable { url: url.to_string(), source })?
                        .to_vec();
                    return Ok(Answer { status, headers, body });
                }
            }
            (self.sleep)(delay).await;
            delay *= 2;
        }
    }

    /// Calls the REST API with the token; `body` is sent as JSON.
    async fn api(&self, action: &str, method: Method, path: &str, body: Option<&Value>) -> Result<Answer, GithubError> {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.endpoints.api) };
        let token = self.token.as_deref();
        let answer = self
            .send(
                action,
                || {
                    let mut rb = self
                        .http
                        .request(method.clone(), &url)
                        .header(ACCEPT, "application/vnd.github+json")
                        .header("X-GitHub-Api-Version", API_VERSION);
                    if let Some(t) = token {
                        rb = rb.bearer_auth(t);
                    }
                    if let Some(b) = body {
                        rb = rb.json(b);
                    }
                    rb
                },
                &url,
            )
            .await?;
        Ok(answer)
    }

    /// The error for a non-success answer.
    fn error(&self, action: &str, what: &str, a: &Answer) -> GithubError {
        let message = a.message();
        let remaining = a.headers.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok());
        match a.status {
            StatusCode::UNAUTHORIZED if self.token.is_none() => GithubError::NotSignedIn,
            StatusCode::UNAUTHORIZED => GithubError::Unauthorized { message },
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
                if remaining == Some("0") || a.status == StatusCode::TOO_MANY_REQUESTS =>
            {
                let reset_at =
                    a.headers.get("x-ratelimit-reset").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                GithubError::RateLimited { reset_at }
            }
            StatusCode::FORBIDDEN => GithubError::Forbidden { action: action.into(), message },
            StatusCode::NOT_FOUND => GithubError::NotFound { what: what.into() },
            StatusCode::UNPROCESSABLE_ENTITY => {
                let details: Vec<ValidationDetail> =
                    a.value().get("errors").and_then(|e| serde_json::from_value(e.clone()).ok()).unwrap_or_default();
                let mut text = message;
                if !details.is_empty() {
                    let list: Vec<String> = details.iter().map(ToString::to_string).collect();
                    text = format!("{text}: {}", list.join("; "));
                }
                GithubError::Rejected { action: action.into(), message: text, details }
            }
            s => GithubError::Unexpected { action: action.into(), detail: format!("HTTP {}: {message}", s.as_u16()) },
        }
    }

    /// Starts the device flow: GitHub returns the code the user enters at `verification_uri`.
    pub async fn request_device_code(&self, client_id: &str, scope: &str) -> Result<DeviceCode, GithubError> {
        let action = "start the device sign-in";
        let url = format!("{}/login/device/code", self.endpoints.web);
        let a = self
            .send(
                action,
                || {
                    self.http
                        .post(&url)
                        .header(ACCEPT, "application/json")
                        .form(&[("client_id", client_id), ("scope", scope)])
                },
                &url,
            )
            .await?;
        let v = a.value();
        if let Some(code) = v.get("error").and_then(Value::as_str) {
            let description = v.get("error_description").and_then(Value::as_str).unwrap_or("").to_string();
            return Err(GithubError::DeviceFlow { code: code.into(), description });
        }
        if a.status != StatusCode::OK {
            // GitHub answers 404 for an unknown client id or a server without the device flow.
            return Err(GithubError::DeviceFlow {
                code: "unavailable".into(),
                description: format!("HTTP {} from {url}", a.status.as_u16()),
            });
        }
        a.json(action)
    }

    /// Polls until the user approves (the token), declines, or the code expires. Waits `interval`
    /// seconds between polls and 5 more after each `slow_down`, as GitHub requires.
    pub async fn poll_device_token(&self, client_id: &str, code: &DeviceCode) -> Result<String, GithubError> {
        let action = "finish the device sign-in";
        let url = format!("{}/login/oauth/access_token", self.endpoints.web);
        let deadline = Instant::now() + Duration::from_secs(code.expires_in);
        let mut interval = Duration::from_secs(code.interval);
        loop {
            (self.sleep)(interval).await;
            if Instant::now() >= deadline {
                return Err(GithubError::DeviceCodeExpired);
            }
            let a = self
                .send(
                    action,
                    || {
                        self.http.post(&url).header(ACCEPT, "application/json").form(&[
                            ("client_id", client_id),
                            ("device_code", code.device_code.as_str()),
                            ("grant_type", DEVICE_GRANT_TYPE),
                        ])
                    },
                    &url,
                )
                .await?;
            let v = a.value();
            if let Some(token) = v.get("access_token").and_then(Value::as_str) {
                return Ok(token.to_string());
            }
            // GitHub answers 200 with `error`; RFC 8628 servers answer 400. Accept both.
            match v.get("error").and_then(Value::as_str) {
                Some("authorization_pending") => {}
                Some("slow_down") => {
                    let given = v.get("interval").and_then(Value::as_u64).map(Duration::from_secs);
                    interval =
                        given.unwrap_or(interval + Duration::from_secs(5)).max(interval + Duration::from_secs(5));
                }
                Some("expired_token") => return Err(GithubError::DeviceCodeExpired),
                Some("access_denied") => return Err(GithubError::AccessDenied),
                Some(other) => {
                    let description = v.get("error_description").and_then(Value::as_str).unwrap_or("").to_string();
                    return Err(GithubError::DeviceFlow { code: other.into(), description });
                }
                None => {
                    return Err(GithubError::Unexpected {
                        action: action.into(),
                        detail: format!("HTTP {} without `access_token` or `error`", a.status.as_u16()),
                    })
                }
            }
        }
    }

    async fn user_answer(&self) -> Result<Answer, GithubError> {
        let action = "identify the signed-in user";
        let a = self.api(action, Method::GET, "/user", None).await?;
        if a.status != StatusCode::OK {
            return Err(self.error(action, "the signed-in user", &a));
        }
        Ok(a)
    }

    /// The account the token belongs to.
    pub async fn user(&self) -> Result<User, GithubError> {
        self.user_answer().await?.json("identify the signed-in user")
    }

    /// The token's OAuth scopes (`X-OAuth-Scopes`); `None` for tokens without scopes, such as
    /// fine-grained personal access tokens and GitHub App tokens.
    pub async fn token_scopes(&self) -> Result<Option<Vec<String>>, GithubError> {
        let a = self.user_answer().await?;
        Ok(a.headers
            .get("x-oauth-scopes")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()))
    }

    /// The SSH keys on the signed-in account (all pages).
    pub async fn list_keys(&self) -> Result<Vec<Key>, GithubError> {
        let action = "list your SSH keys";
        let mut keys = Vec::new();
        let mut next = Some("/user/keys?per_page=100".to_string());
        while let Some(path) = next.take() {
            let a = self.api(action, Method::GET, &path, None).await?;
            match a.status {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND | StatusCode::FORBIDDEN if self.error(action, "", &a).is_not_rate_limit() => {
                    return Err(GithubError::MissingScope { action: action.into(), scope: "write:public_key".into() })
                }
                _ => return Err(self.error(action, "your SSH keys", &a)),
            }
            keys.extend(a.json::<Vec<Key>>(action)?);
            next = next_link(&a.headers);
        }
        Ok(keys)
    }

    /// Uploads an SSH public key to the signed-in account.
    pub async fn add_key(&self, title: &str, key: &str) -> Result<AddKey, GithubError> {
        let action = "add an SSH key";
        let body = serde_json::json!({"title": title, "key": key.trim()});
        let a = self.api(action, Method::POST, "/user/keys", Some(&body)).await?;
        match a.status {
            StatusCode::CREATED => Ok(AddKey::Added(a.json(action)?)),
            // GitHub hides endpoints a token's scopes do not cover (404); fine-grained tokens get 403.
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN if self.error(action, "", &a).is_not_rate_limit() => {
                Err(GithubError::MissingScope { action: action.into(), scope: "write:public_key".into() })
            }
            _ => match self.error(action, "", &a) {
                GithubError::Rejected { details, .. }
                    if details.iter().any(|d| d.message.as_deref().is_some_and(|m| m.contains("already in use"))) =>
                {
                    Ok(AddKey::AlreadyInUse)
                }
                e => Err(e),
            },
        }
    }

    /// A repository, with whether the signed-in user may push to it.
    pub async fn repo(&self, owner: &str, name: &str) -> Result<Repository, GithubError> {
        let action = format!("look up {owner}/{name}");
        let a = self.api(&action, Method::GET, &format!("/repos/{owner}/{name}"), None).await?;
        if a.status != StatusCode::OK {
            return Err(self.error(&action, &format!("repository {owner}/{name}"), &a));
        }
        Ok(a.json::<RawRepo>(&action)?.into())
    }

    /// Forks a repository into the signed-in account (or returns the existing fork). GitHub
    /// creates forks asynchronously: use [`GithubClient::wait_for_repo`] before cloning.
    pub async fn fork(&self, owner: &str, name: &str) -> Result<Repository, GithubError> {
        let action = format!("fork {owner}/{name}");
        let a = self.api(&action, Method::POST, &format!("/repos/{owner}/{name}/forks"), None).await?;
        if a.status != StatusCode::ACCEPTED && a.status != StatusCode::OK {
            return Err(self.error(&action, &format!("repository {owner}/{name}"), &a));
        }
        Ok(a.json::<RawRepo>(&action)?.into())
    }

    /// Polls [`GithubClient::repo`] while GitHub answers 404, up to `timeout`, waiting the retry
    /// base delay at first and doubling up to 5 s (GitHub documents forks may take minutes).
    pub async fn wait_for_repo(&self, owner: &str, name: &str, timeout: Duration) -> Result<Repository, GithubError> {
        let start = Instant::now();
        let mut delay = self.base_delay.max(Duration::from_millis(1));
        loop {
            match self.repo(owner, name).await {
                Err(GithubError::NotFound { .. }) if start.elapsed() < timeout => {
                    (self.sleep)(delay.min(timeout.saturating_sub(start.elapsed()))).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(GithubError::NotFound { .. }) => {
                    return Err(GithubError::Timeout { what: format!("repository {owner}/{name}"), waited: timeout })
                }
                other => return other,
            }
        }
    }

    /// Opens a pull request on `owner/name` from `head` (`branch`, or `user:branch` from a fork)
    /// into `base`. Idempotent: when one is already open for `head`, that one is returned.
    pub async fn create_pull(
        &self,
        owner: &str,
        name: &str,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
    ) -> Result<Pull, GithubError> {
        let action = format!("open a pull request on {owner}/{name}");
        let req = serde_json::json!({"title": title, "head": head, "base": base, "body": body});
        let a = self.api(&action, Method::POST, &format!("/repos/{owner}/{name}/pulls"), Some(&req)).await?;
        if a.status == StatusCode::CREATED {
            return a.json(&action);
        }
        let err = self.error(&action, &format!("repository {owner}/{name}"), &a);
        if let GithubError::Rejected { details, .. } = &err {
            let exists =
                details.iter().any(|d| d.message.as_deref().is_some_and(|m| m.contains("pull request already exists")));
            if exists {
                if let Some(p) = self.find_open_pull(owner, name, head).await? {
                    return Ok(p);
                }
            }
        }
        Err(err)
    }

    /// The open pull request on `owner/name` whose head is `head` (`user:branch`, or `branch` in
    /// `owner/name` itself), if any.
    pub async fn find_open_pull(&self, owner: &str, name: &str, head: &str) -> Result<Option<Pull>, GithubError> {
        let action = format!("list pull requests of {owner}/{name}");
        let head = if head.contains(':') { head.to_string() } else { format!("{owner}:{head}") };
        let path = format!("/repos/{owner}/{name}/pulls?state=open&head={}", encode_query(&head));
        let a = self.api(&action, Method::GET, &path, None).await?;
        if a.status != StatusCode::OK {
            return Err(self.error(&action, &format!("repository {owner}/{name}"), &a));
        }
        Ok(a.json::<Vec<Pull>>(&action)?.into_iter().next())
    }
}

impl GithubError {
    fn is_not_rate_limit(&self) -> bool {
        !matches!(self, GithubError::RateLimited { .. })
    }
}

fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn valid_owner(s: &str) -> bool {
    (1..=39).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn valid_repo_name(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s != "."
        && s != ".."
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses `owner/repo`, `https://github.com/owner/repo(.git)` (any host) or
/// `git@github.com:owner/repo.git` into `(owner, repo)`.
pub(crate) fn parse_repo_arg(input: &str) -> Result<(String, String), GithubError> {
    let bad = || GithubError::InvalidRepo { input: input.to_string() };
    let s = input.trim();
    let path = if let Some((_, rest)) = s.split_once("://") {
        // https://host/owner/repo, ssh://git@host/owner/repo.git
        rest.split_once('/').map(|(_, p)| p).ok_or_else(bad)?
    } else if let Some((user_host, p)) = s.split_once(':') {
        // scp-like: git@host:owner/repo.git
        if !user_host.contains('@') && !user_host.contains('.') {
            return Err(bad());
        }
        p
    } else {
        s
    };
    let path = path.trim_matches('/');
    let mut parts = path.split('/');
    let (Some(owner), Some(repo), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    if !valid_owner(owner) || !valid_repo_name(repo) {
        return Err(bad());
    }
    Ok((owner.to_string(), repo.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_for_hosts() {
        let gh = GithubEndpoints::for_host("github.com");
        assert_eq!((gh.web.as_str(), gh.api.as_str()), ("https://github.com", "https://api.github.com"));
        let ghe = GithubEndpoints::for_host("ghe.example.com");
        assert_eq!((ghe.web.as_str(), ghe.api.as_str()), ("https://ghe.example.com", "https://ghe.example.com/api/v3"));
        let test = GithubEndpoints::for_host("http://10.87.0.1:4567/");
        assert_eq!((test.web.as_str(), test.api.as_str()), ("http://10.87.0.1:4567", "http://10.87.0.1:4567/api/v3"));
    }

    #[test]
    fn repo_arguments() {
        let ok = |s: &str| parse_repo_arg(s).unwrap();
        let want = ("acme".to_string(), "hello.world".to_string());
        assert_eq!(ok("acme/hello.world"), want);
        assert_eq!(ok("https://github.com/acme/hello.world"), want);
        assert_eq!(ok("https://github.com/acme/hello.world.git"), want);
        assert_eq!(ok("https://ghe.example.com/acme/hello.world/"), want);
        assert_eq!(ok("git@github.com:acme/hello.world.git"), want);
        assert_eq!(ok("ssh://git@github.com/acme/hello.world.git"), want);
        for bad in
            ["acme", "acme/", "/hello", "acme/hello/extra", "ac me/hello", "acme/..", "https://github.com/acme", ""]
        {
            let e = parse_repo_arg(bad).unwrap_err();
            assert!(matches!(e, GithubError::InvalidRepo { .. }), "{bad}: {e:?}");
            assert!(e.hint().unwrap().contains("owner/repo"));
        }
    }

    #[test]
    fn every_error_says_what_to_do_next() {
        let errors = [
            GithubError::NotSignedIn,
            GithubError::Unauthorized { message: "Bad credentials".into() },
            GithubError::MissingScope { action: "add an SSH key".into(), scope: "write:public_key".into() },
            GithubError::Forbidden { action: "x".into(), message: "y".into() },
            GithubError::RateLimited { reset_at: Some(1) },
            GithubError::NotFound { what: "repository a/b".into() },
            GithubError::Rejected { action: "x".into(), message: "y".into(), details: vec![] },
            GithubError::ServerError { action: "x".into(), status: 502, attempts: 4 },
            GithubError::Unexpected { action: "x".into(), detail: "y".into() },
            GithubError::DeviceCodeExpired,
            GithubError::AccessDenied,
            GithubError::DeviceFlow { code: "device_flow_disabled".into(), description: String::new() },
            GithubError::Timeout { what: "x".into(), waited: Duration::from_secs(1) },
            GithubError::InvalidRepo { input: "x".into() },
        ];
        for e in errors {
            assert!(!e.to_string().is_empty());
            assert!(e.hint().unwrap().len() > 20, "{e:?} has no useful hint");
        }
        assert!(GithubError::MissingScope { action: "a".into(), scope: "write:public_key".into() }
            .hint()
            .unwrap()
            .contains("`nexus auth github`"));
    }

    #[test]
    fn link_header_next_page() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            "<https://api.github.com/user/keys?page=2>; rel=\"next\", <https://api.github.com/user/keys?page=5>; rel=\"last\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://api.github.com/user/keys?page=2"));
    }
}
