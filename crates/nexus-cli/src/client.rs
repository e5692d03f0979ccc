//! The CLI's view of a coordination server: where it is, the caller's token, and one typed call per
//! endpoint the CLI uses. Every API path is written here and nowhere else; the server's error body
//! comes back as [`Error::Api`] with its `code`, so callers decide on the code, not on message text.

use nexus_types::api::{
    ClientConfig, CreateWorkspaceRequest, CreateWorkspaceResponse, Deleted, ErrorBody, Health, LogoutResponse,
    NodeList, NodeView, RegisterRequest, RegisterResponse, StatusChange, UserInfo, WorkspaceList, WorkspaceView,
};
use nexus_types::api::{CreateJoinTokenRequest, JoinTokenCreated, JoinTokenList, JoinTokenView, NodeRevoked};
use reqwest::Method;

use crate::config::UserConfig;
use crate::error::{Error, ErrorCode, Result};

/// Where the server is and who the caller is.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    /// Why no request may be sent (plain HTTP to another machine without `--insecure`, an unreadable
    /// `--ca-cert`): every call fails with it before any token leaves.
    refusal: Option<(String, String)>,
}

/// `--insecure` (or NEXUS_INSECURE) for this process.
static INSECURE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// `--ca-cert FILE` (or NEXUS_CA_CERT) for this process.
static EXTRA_CA: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);

/// Sets, for every client this process makes, whether plain HTTP to another machine is allowed
/// (`--insecure`) and which extra CA certificate (PEM, may hold several) is trusted besides the
/// system's (`--ca-cert`). The environment (NEXUS_INSECURE, NEXUS_CA_CERT) counts too.
pub fn configure_transport(insecure: bool, ca_cert: Option<std::path::PathBuf>) {
    INSECURE.store(insecure, std::sync::atomic::Ordering::Relaxed);
    *nexus_types::diagnostics::lock(&EXTRA_CA) = ca_cert;
}

fn insecure_allowed() -> bool {
    INSECURE.load(std::sync::atomic::Ordering::Relaxed) || nexus_types::transport::env_flag("NEXUS_INSECURE")
}

fn extra_ca() -> Option<std::path::PathBuf> {
    nexus_types::diagnostics::lock(&EXTRA_CA)
        .clone()
        .or_else(|| std::env::var_os("NEXUS_CA_CERT").filter(|v| !v.is_empty()).map(Into::into))
}

/// A reqwest client trusting the system's roots plus `--ca-cert`'s; the error is (message, hint).
fn http_client() -> std::result::Result<reqwest::Client, (String, String)> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("nexus-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(180));
    if let Some(path) = extra_ca() {
        let hint =
            "pass the PEM file of the CA that signed the server's certificate (`--ca-cert FILE` or NEXUS_CA_CERT)";
        let pem = std::fs::read(&path)
            .map_err(|e| (format!("cannot read the CA certificate {}: {e}", path.display()), hint.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| (format!("{} holds no PEM certificate", path.display()), hint.to_string()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build().expect("static client settings are valid"))
}

/// `host`, `host:port` or a URL → `http(s)://host:port` (3001 unless given).
pub(crate) fn base_url(server: &str) -> String {
    let cfg = UserConfig { server: Some(server.to_string()), ..Default::default() };
    cfg.server_url().unwrap_or_else(|| server.to_string())
}

impl Client {
    /// A client for `base` with `token` (empty for the calls that need none).
    /// Plain `http://` to a host other than this machine is refused (every call fails) unless
    /// [`configure_transport`] allowed it: tokens would cross the network readable.
    pub fn new(base: &str, token: &str) -> Client {
        let mut refusal = None;
        if !insecure_allowed() {
            refusal = nexus_types::transport::plain_http_refusal(base)
                .map(|why| (why, nexus_types::transport::PLAIN_HTTP_HINT.to_string()));
        }
        let http = match http_client() {
            Ok(http) => http,
            Err(e) => {
                refusal = refusal.or(Some(e));
                reqwest::Client::new()
            }
        };
        Client { base: base.trim_end_matches('/').to_string(), token: token.to_string(), http, refusal }
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

    /// `POST /api/v1/auth/logout`: revokes this client's API token.
    pub async fn logout(&self) -> Result<LogoutResponse> {
        self.call(Method::POST, "/api/v1/auth/logout", None::<&()>).await
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

    /// The newest `limit` audit entries, optionally of one action or group (operator token only).
    pub async fn audit(&self, limit: u32, action: Option<&str>) -> Result<Vec<nexus_types::api::AuditEntry>> {
        let mut path = format!("/api/v1/audit?limit={limit}");
        if let Some(a) = action {
            // Actions are `group.verb` names; anything else is refused here rather than sent.
            if !a.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_') {
                return Err(Error::new(
                    format!("{a:?} is not an audit action"),
                    "use a group (`workspace`, `user`, `node`) or an action (`workspace.delete`)",
                ));
            }
            path.push_str(&format!("&action={a}"));
        }
        Ok(self.call::<nexus_types::api::AuditLog>(Method::GET, &path, None::<&()>).await?.entries)
    }

    /// Every node that ever joined (operator token only).
    pub async fn nodes(&self) -> Result<Vec<NodeView>> {
        Ok(self.call::<NodeList>(Method::GET, "/api/v1/nodes", None::<&()>).await?.nodes)
    }

    /// Revokes a node's credential and closes its connection (operator token only).
    pub async fn revoke_node(&self, name: &str) -> Result<NodeRevoked> {
        self.call(Method::POST, &format!("/api/v1/nodes/{name}/revoke"), None::<&()>).await
    }

    /// Makes a join token (operator token only).
    pub async fn create_join_token(&self, single_use: bool) -> Result<JoinTokenCreated> {
        self.call(Method::POST, "/api/v1/join-tokens", Some(&CreateJoinTokenRequest { single_use })).await
    }

    /// The join tokens, without the tokens (operator token only).
    pub async fn join_tokens(&self) -> Result<JoinTokenList> {
        self.call(Method::GET, "/api/v1/join-tokens", None::<&()>).await
    }

    /// Revokes a join token; `default` is `<data-dir>/join-token` (operator token only).
    pub async fn revoke_join_token(&self, id: &str) -> Result<JoinTokenView> {
        self.call(Method::POST, &format!("/api/v1/join-tokens/{id}/revoke"), None::<&()>).await
    }

    /// Sends a request (with a JSON body when given) and parses the JSON answer or the API's error.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T> {
        if let Some((message, hint)) = &self.refusal {
            return Err(Error::new(message.clone(), hint.clone()));
        }
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

    /// Issue 10 item 6: the CLI sent its API token over plain HTTP to any host.
    #[tokio::test]
    async fn plain_http_to_another_machine_is_refused_before_any_token_is_sent() {
        // 192.0.2.1 (TEST-NET-1) answers nobody: a refusal must come from the CLI itself, at once.
        let err = Client::new("http://192.0.2.1:3001", "nxt_secret").me().await.unwrap_err();
        assert!(err.to_string().contains("plain HTTP"), "{err}");
        assert!(nexus_types::diagnostics::Hint::hint(&err).unwrap().contains("--insecure"), "{err}");
        assert!(Client::new("http://127.0.0.1:9", "t").refusal.is_none(), "loopback is fine");
        assert!(Client::new("https://192.0.2.1", "t").refusal.is_none());
    }

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
