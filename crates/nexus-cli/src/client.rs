//! The CLI's view of a coordination server: where it is, the caller's token, and typed calls
//! that turn the server's JSON errors back into a message plus a `hint:`.

use nexus_types::api::{ErrorBody, WorkspaceList, WorkspaceView};

/// A failed call, ready to print: one line and the next step.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    /// What went wrong.
    pub message: String,
    /// What to do next.
    pub hint: String,
    /// A network error or 5xx: the same call may succeed later.
    pub retryable: bool,
}

impl ClientError {
    /// An error that retrying won't fix.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> ClientError {
        ClientError { message: message.into(), hint: hint.into(), retryable: false }
    }
}

fn err(message: impl Into<String>, hint: impl Into<String>) -> ClientError {
    ClientError::new(message, hint)
}

fn transient(message: impl Into<String>, hint: impl Into<String>) -> ClientError {
    ClientError { retryable: true, ..ClientError::new(message, hint) }
}

/// Where the server is and who the caller is.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// `host`, `host:port` or a URL → `http(s)://host:port` (3001 unless given).
pub fn base_url(server: &str) -> String {
    let cfg = crate::config::UserConfig { server: Some(server.to_string()), ..Default::default() };
    cfg.server_url().unwrap_or_else(|| server.to_string())
}

impl Client {
    /// A client for `base` with `token` (may be empty for the unauthenticated calls).
    pub fn new(base: &str, token: &str) -> Client {
        let http = reqwest::Client::builder()
            .user_agent(concat!("nexus-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(180))
            .build()
            .expect("static client settings are valid");
        Client { base: base.trim_end_matches('/').to_string(), token: token.to_string(), http }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// From `--server`/`NEXUS_SERVER` and `NEXUS_TOKEN`, falling back to `~/.nexus/config.yaml`.
    pub fn from_env(server: Option<String>) -> Result<Client, ClientError> {
        let loaded = crate::config::UserConfig::load().map_err(|e| err(e.to_string(), e.hint()))?;
        Client::from_config(server, &loaded.config)
    }

    /// Flag/env first, then the config file.
    pub fn from_config(server: Option<String>, cfg: &crate::config::UserConfig) -> Result<Client, ClientError> {
        let base = match server.or_else(|| std::env::var("NEXUS_SERVER").ok()).filter(|s| !s.trim().is_empty()) {
            Some(s) => base_url(&s),
            None => cfg.server_url().ok_or_else(|| {
                err(
                    "no Nexus server is configured",
                    "pass `--server <host>`, set NEXUS_SERVER, or set `server:` in ~/.nexus/config.yaml",
                )
            })?,
        };
        let token = std::env::var("NEXUS_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| cfg.api_token.clone());
        let token = token.ok_or_else(|| {
            err("you are not registered with the Nexus server yet", "run `nexus auth github`, then `nexus ssh setup`")
        })?;
        Ok(Client::new(&base, &token))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(reqwest::Method::GET, path).await
    }

    /// Sends a body-less request and parses the JSON answer (or the API's error).
    pub async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<T, ClientError> {
        let resp =
            self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.map_err(
                |e| {
                    transient(
                        format!("cannot reach the Nexus server at {}: {}", self.base, short_reason(&e)),
                        "check the address (`server:` in ~/.nexus/config.yaml) and that `nexus server` runs there",
                    )
                },
            )?;
        self.answer(resp).await
    }

    async fn answer<T: serde::de::DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, ClientError> {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let message = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| "the server did not accept your API token".into());
            return Err(err(message, "sign in again: `nexus auth github`, then `nexus ssh setup`"));
        }
        if !status.is_success() {
            let mut e = match serde_json::from_str::<ErrorBody>(&text) {
                Ok(b) => err(b.error.message, b.error.hint),
                Err(_) => err(format!("the server answered {status}"), "retry; if it persists, tell the operator"),
            };
            e.retryable = status.is_server_error() && status != reqwest::StatusCode::SERVICE_UNAVAILABLE;
            return Err(e);
        }
        serde_json::from_str(&text)
            .map_err(|e| err(format!("unexpected answer from the server: {e}"), "is the CLI as new as the server?"))
    }

    /// Sends a JSON body and parses the JSON answer (or the API's error).
    pub async fn send_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).json(body);
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        let resp = req.send().await.map_err(|e| {
            transient(
                format!("cannot reach the Nexus server at {}: {}", self.base, short_reason(&e)),
                "check the address (`server:` in ~/.nexus/config.yaml) and that `nexus server` runs there",
            )
        })?;
        self.answer(resp).await
    }

    /// `GET /api/v1/client-config` (no token needed).
    pub async fn client_config(&self) -> Result<nexus_types::api::ClientConfig, ClientError> {
        self.send(reqwest::Method::GET, "/api/v1/client-config").await
    }

    /// Registers the user and key; returns the API token.
    pub async fn register(
        &self,
        req: &nexus_types::api::RegisterRequest,
    ) -> Result<nexus_types::api::RegisterResponse, ClientError> {
        self.send_json(reqwest::Method::POST, "/api/v1/users/register", req).await
    }

    /// Creates a workspace (or gets the existing one of that name).
    pub async fn create(
        &self,
        req: &nexus_types::api::CreateWorkspaceRequest,
    ) -> Result<nexus_types::api::CreateWorkspaceResponse, ClientError> {
        self.send_json(reqwest::Method::POST, "/api/v1/workspaces/create", req).await
    }

    /// A workspace's status by id.
    pub async fn status(&self, id: &str) -> Result<WorkspaceView, ClientError> {
        self.send(reqwest::Method::GET, &format!("/api/v1/workspaces/{id}/status")).await
    }

    /// All of the caller's workspaces.
    pub async fn workspaces(&self) -> Result<Vec<WorkspaceView>, ClientError> {
        Ok(self.get::<WorkspaceList>("/api/v1/workspaces").await?.workspaces)
    }

    /// A workspace by name or id.
    pub async fn workspace(&self, name_or_id: &str) -> Result<WorkspaceView, ClientError> {
        let list: WorkspaceList = self.get("/api/v1/workspaces").await?;
        list.workspaces.into_iter().find(|w| w.name == name_or_id || w.workspace_id == name_or_id).ok_or_else(|| {
            err(format!("you have no workspace named {name_or_id:?}"), "list yours with `nexus workspace list`")
        })
    }
}

/// The innermost cause of a request error, which is the part that says what happened.
fn short_reason(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}
