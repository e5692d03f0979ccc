//! The CLI's view of a coordination server: where it is, the caller's token, and one typed call per
//! endpoint the CLI uses. Every API path is written here and nowhere else; the server's error body
//! comes back as [`Error::Api`] with its `code`, so callers decide on the code, not on message text.

use nexus_types::api::{
    ClientConfig, CreateWorkspaceRequest, CreateWorkspaceResponse, Deleted, ErrorBody, Health, NodeList, NodeView,
    RegisterRequest, RegisterResponse, StatusChange, UserInfo, WorkspaceList, WorkspaceView,
};
use reqwest::Method;

use crate::config::UserConfig;
use crate::error::{Error, ErrorCode, Result};

/// Where the server is and who the caller is.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// `host`, `host:port` or a URL → `http(s)://host:port` (3001 unless given).
pub(crate) fn base_url(server: &str) -> String {
    let cfg = UserConfig { server: Some(server.to_string()), ..Default::default() };
    cfg.server_url().unwrap_or_else(|| server.to_string())
}

impl Client {
    /// A client for `base` with `token` (empty for the calls that need none).
    pub fn new(base: &str, token: &str) -> Client {
        let http = reqwest::Client::builder()
            .user_agent(concat!("nexus-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(180))
            .build()
            .expect("static client settings are valid");
        Client { base: base.trim_end_matches('/').to_string(), token: token.to_string(), http }
    }

    /// From `--server`/`NEXUS_SERVER` and `NEXUS_TOKEN`, falling back to `~/.nexus/config.yaml`.
    pub fn from_env(server: Option<String>) -> Result<Client> {
        let loaded = UserConfig::load()?;
        Client::from_config(server, &loaded.config)
    }

    /// Flag/env first, then the config file.
    pub(crate) fn from_config(server: Option<String>, cfg: &UserConfig) -> Result<Client> {
        let base = match server.or_else(|| std::env::var("NEXUS_SERVER").ok()).filter(|s| !s.trim().is_empty()) {
            Some(s) => base_url(&s),
            None => cfg.server_url().ok_or_else(|| {
                Error::new(
                    "no Nexus server is configured",
                    "pass `--server <host>`, set NEXUS_SERVER, or set `server:` in ~/.nexus/config.yaml",
                )
            })?,
        };
        let token = std::env::var("NEXUS_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| cfg.api_token.clone());
        let token = token.ok_or_else(|| {
            Error::new(
                "you are not registered with the Nexus server yet",
                "run `nexus auth github`, then `nexus ssh setup`",
            )
        })?;
        Ok(Client::new(&base, &token))
    }

    /// `GET /health`: the server is up (no token needed).
    pub async fn health(&self) -> Result<Health> {
        self.call(Method::GET, "/health", None::<&()>).await
    }

    /// `GET /api/v1/client-config` (no token needed).
    pub async fn client_config(&self) -> Result<ClientConfig> {
        self.call(Method::GET, "/api/v1/client-config", None::<&()>).await
    }

    /// Registers the user and key; the answer carries the API token.
    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse> {
        self.call(Method::POST, "/api/v1/users/register", Some(req)).await
    }

    /// The user the token belongs to.
    pub async fn me(&self) -> Result<UserInfo> {
        self.call(Method::GET, "/api/v1/users/me", None::<&()>).await
    }

    /// Creates a workspace (or gets the existing one of that name).
    pub async fn create(&self, req: &CreateWorkspaceRequest) -> Result<CreateWorkspaceResponse> {
        self.call(Method::POST, "/api/v1/workspaces/create", Some(req)).await
    }

    /// A workspace's status by id.
    pub async fn status(&self, id: &str) -> Result<WorkspaceView> {
        self.call(Method::GET, &format!("/api/v1/workspaces/{id}/status"), None::<&()>).await
    }

    /// All of the caller's workspaces.
    pub async fn list(&self) -> Result<Vec<WorkspaceView>> {
        Ok(self.call::<WorkspaceList>(Method::GET, "/api/v1/workspaces", None::<&()>).await?.workspaces)
    }

    /// A workspace by name or id.
    pub async fn workspace(&self, name_or_id: &str) -> Result<WorkspaceView> {
        self.list().await?.into_iter().find(|w| w.name == name_or_id || w.workspace_id == name_or_id).ok_or_else(|| {
            Error::new(format!("you have no workspace named {name_or_id:?}"), "list yours with `nexus workspace list`")
        })
    }

    /// Starts a stopped (or retries a failed) workspace, waiting for the node like the API does.
    pub async fn start(&self, id: &str) -> Result<StatusChange> {
        self.call(Method::POST, &format!("/api/v1/workspaces/{id}/start"), None::<&()>).await
    }

    /// Stops a workspace; its disk and SSH port are kept.
    pub async fn stop(&self, id: &str) -> Result<StatusChange> {
        self.call(Method::POST, &format!("/api/v1/workspaces/{id}/stop"), None::<&()>).await
    }

    /// Deletes a workspace: container, disk and SSH port.
    pub async fn delete(&self, id: &str) -> Result<Deleted> {
        self.call(Method::DELETE, &format!("/api/v1/workspaces/{id}"), None::<&()>).await
    }

    /// Every node that ever joined (operator token only).
    pub async fn nodes(&self) -> Result<Vec<NodeView>> {
        Ok(self.call::<NodeList>(Method::GET, "/api/v1/nodes", None::<&()>).await?.nodes)
    }

    /// Sends a request (with a JSON body when given) and parses the JSON answer or the API's error.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(body);
        }
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        let resp =
            req.send().await.map_err(|e| Error::Unreachable { server: self.base.clone(), reason: short_reason(&e) })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(api_error(status, &text));
        }
        serde_json::from_str(&text).map_err(|e| {
            Error::new(format!("unexpected answer from the server: {e}"), "is the CLI as new as the server?")
        })
    }
}

/// The server's error body as [`Error::Api`]; an answer that is not one (a proxy's page) keeps its status.
fn api_error(status: reqwest::StatusCode, text: &str) -> Error {
    let body = serde_json::from_str::<ErrorBody>(text).ok().map(|b| b.error);
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Error::Api {
            status: status.as_u16(),
            code: ErrorCode::Unauthorized,
            message: body.map(|b| b.message).unwrap_or_else(|| "the server did not accept your API token".into()),
            hint: "sign in again: `nexus auth github`, then `nexus ssh setup`".into(),
        };
    }
    match body {
        Some(b) => {
            Error::Api { status: status.as_u16(), code: ErrorCode::parse(&b.code), message: b.message, hint: b.hint }
        }
        None => Error::Api {
            status: status.as_u16(),
            code: ErrorCode::Other(String::new()),
            message: format!("the server answered {status}"),
            hint: "retry; if it persists, tell the operator".into(),
        },
    }
}

/// The innermost cause of a request error, which is the part that says what happened (the outer
/// layers repeat the URL the message already names).
fn short_reason(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_code_is_kept() {
        let body = r#"{"error": {"code": "no_nodes", "message": "no node is available", "hint": "start one"}}"#;
        let e = api_error(reqwest::StatusCode::SERVICE_UNAVAILABLE, body);
        assert_eq!(e.code(), Some(&ErrorCode::NoNodes));
        assert_eq!(e.to_string(), "no node is available");
        assert!(!e.retryable(), "503 is the server saying no, not a blip");
        let e = api_error(reqwest::StatusCode::BAD_GATEWAY, "<html>bad gateway</html>");
        assert_eq!(e.code(), Some(&ErrorCode::Other(String::new())));
        assert!(e.retryable());
        let e = api_error(reqwest::StatusCode::UNAUTHORIZED, "");
        assert_eq!(e.code(), Some(&ErrorCode::Unauthorized));
        assert!(nexus_types::diagnostics::Hint::hint(&e).unwrap().contains("nexus auth github"));
    }
}
