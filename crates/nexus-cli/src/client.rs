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
}

fn err(message: impl Into<String>, hint: impl Into<String>) -> ClientError {
    ClientError { message: message.into(), hint: hint.into() }
}

/// Where the server is and who the caller is.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// From `--server`/`NEXUS_SERVER` and `NEXUS_TOKEN`.
    pub fn from_env(server: Option<String>) -> Result<Client, ClientError> {
        let server = server.or_else(|| std::env::var("NEXUS_SERVER").ok()).ok_or_else(|| {
            err("no Nexus server is configured", "pass `--server http://<host>:3001` or set NEXUS_SERVER")
        })?;
        let token = std::env::var("NEXUS_TOKEN").map_err(|_| {
            err("no API token is configured", "set NEXUS_TOKEN to the `api_token` your registration returned")
        })?;
        let base = if server.contains("://") { server } else { format!("http://{server}") };
        let base = if base.rsplit(':').next().is_some_and(|p| p.chars().all(|c| c.is_ascii_digit())) {
            base
        } else {
            format!("{base}:3001")
        };
        Ok(Client { base: base.trim_end_matches('/').to_string(), token, http: reqwest::Client::new() })
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
                    err(
                        format!("cannot reach the Nexus server at {}: {e}", self.base),
                        "check the address and that `nexus server` runs there",
                    )
                },
            )?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(match serde_json::from_str::<ErrorBody>(&text) {
                Ok(b) => err(b.error.message, b.error.hint),
                Err(_) => err(format!("the server answered {status}"), "retry; if it persists, tell the operator"),
            });
        }
        serde_json::from_str(&text)
            .map_err(|e| err(format!("unexpected answer from the server: {e}"), "is the CLI as new as the server?"))
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
