//! A small client for the server's REST API, returning status codes and raw JSON so tests can
//! assert on exactly what goes over the wire.

use std::time::Duration;

use serde_json::{json, Value};

/// A client bound to a base URL and optionally a bearer token.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    /// A client without a token.
    pub fn new(base: &str) -> Api {
        Api { base: base.trim_end_matches('/').to_string(), token: None, http: reqwest::Client::new() }
    }

    /// The same client sending `token`.
    pub fn with_token(&self, token: &str) -> Api {
        Api { token: Some(token.to_string()), ..self.clone() }
    }

    /// The bearer token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Sends a request; returns (status, JSON body or `null`).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("server answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Sends a raw body with a content type (for malformed-input tests).
    pub async fn raw(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let mut req =
            self.http.post(format!("{}{path}", self.base)).header("content-type", content_type).body(body.to_string());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("server answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Registers a user with the operator token (no GitHub needed); returns a client with their token.
    pub async fn register_as_operator(&self, operator_token: &str, login: &str, id: i64, pubkey: &str) -> Api {
        let (status, body) = self
            .with_token(operator_token)
            .call(
                "POST",
                "/api/v1/users/register",
                Some(json!({"github_username": login, "github_id": id, "ssh_pubkey": pubkey})),
            )
            .await;
        assert_eq!(status, 201, "register {login}: {body}");
        self.with_token(body["api_token"].as_str().unwrap())
    }

    /// `POST /api/v1/workspaces/create` with a name and repo.
    pub async fn create(&self, name: &str, repo: &str) -> (u16, Value) {
        self.call("POST", "/api/v1/workspaces/create", Some(json!({"workspace_name": name, "repo": repo}))).await
    }

    /// `GET .../status`; panics unless 200.
    pub async fn status(&self, id: &str) -> Value {
        let (code, body) = self.call("GET", &format!("/api/v1/workspaces/{id}/status"), None).await;
        assert_eq!(code, 200, "status of {id}: {body}");
        body
    }

    /// Polls status until it is one of `want`; panics on timeout or on `failed` when not wanted.
    pub async fn wait_status(&self, id: &str, want: &[&str], timeout: Duration) -> Value {
        let start = std::time::Instant::now();
        loop {
            let body = self.status(id).await;
            let status = body["status"].as_str().unwrap_or("").to_string();
            if want.contains(&status.as_str()) {
                return body;
            }
            assert!(status != "failed", "workspace {id} failed: {body}");
            assert!(start.elapsed() < timeout, "workspace {id} still {status} after {timeout:?}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
