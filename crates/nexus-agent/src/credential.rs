//! The node's own credential: got once by enrolling with a join token, kept in the agent's state
//! dir (mode 0600), and sent on every WebSocket the agent dials. The join token only enrols; a
//! stolen join token cannot act as an enrolled node.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use nexus_types::api::{EnrolRequest, EnrolResponse, ErrorBody};
use nexus_types::protocol::ENROL_PATH;
use serde::{Deserialize, Serialize};

use crate::AgentError;

/// Where `nexus agent` keeps its state (the credential) unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/nexus/agent";

/// File name of the credential in the state dir.
pub const CREDENTIAL_FILE: &str = "credential";

/// What the state dir keeps: which server and name the credential is for, and the credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    /// The server's base URL it was enrolled with.
    pub server_url: String,
    /// The node name the server bound it to.
    pub node_name: String,
    /// `nxn_...`.
    pub credential: String,
}

/// Path of the credential file in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(CREDENTIAL_FILE)
}

fn io_error(path: &Path, source: std::io::Error) -> AgentError {
    AgentError::Credential { path: path.display().to_string(), source }
}

/// The credential kept in `state_dir`, if any. A file for another server or node name is an
/// error: silently enrolling again would leave the old identity behind unexplained.
pub fn load(state_dir: &Path, server_url: &str, node_name: &str) -> Result<Option<String>, AgentError> {
    let path = path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path, e)),
    };
    let stored: Stored = serde_json::from_str(&text).map_err(|e| AgentError::CredentialMismatch {
        path: path.display().to_string(),
        reason: format!("it is not a credential file this agent wrote ({e})"),
    })?;
    if stored.node_name != node_name || !same_server(&stored.server_url, server_url) {
        return Err(AgentError::CredentialMismatch {
            path: path.display().to_string(),
            reason: format!(
                "it is node {}'s credential for {}, and this agent runs as node {node_name} for {server_url}",
                stored.node_name, stored.server_url
            ),
        });
    }
    Ok(Some(stored.credential))
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

/// Writes the credential to `state_dir` (created 0700), mode 0600, replacing the file atomically.
pub fn save(state_dir: &Path, stored: &Stored) -> Result<(), AgentError> {
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(state_dir).map_err(|e| io_error(state_dir, e))?;
    let path = path(state_dir);
    let tmp = state_dir.join(format!(".{CREDENTIAL_FILE}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let json = serde_json::to_string_pretty(stored).expect("a credential serializes");
    let mut f = opts.open(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(format!("{json}\n").as_bytes()).map_err(|e| io_error(&tmp, e))?;
    f.sync_all().map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))
}

/// Enrols this node with the join token; the server answers with the node's credential.
pub async fn enrol(
    server_url: &str,
    join_token: &str,
    node_name: &str,
    lxd_project: &str,
) -> Result<String, AgentError> {
    let url = format!("{}{ENROL_PATH}", server_url.trim().trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| AgentError::Enrol { url: url.clone(), status: 0, message: e.to_string(), hint: None })?;
    let body = EnrolRequest { node_name: node_name.to_string(), lxd_project: lxd_project.to_string() };
    let resp = http
        .post(&url)
        .bearer_auth(join_token)
        .json(&body)
        .send()
        .await
        .map_err(|e| AgentError::EnrolUnreachable { url: url.clone(), source: Box::new(e) })?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if status == 201 {
        let answer: EnrolResponse = serde_json::from_str(&text).map_err(|e| AgentError::Enrol {
            url: url.clone(),
            status,
            message: format!("unreadable answer: {e}"),
            hint: None,
        })?;
        return Ok(answer.credential);
    }
    let (message, hint) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => (b.error.message, Some(b.error.hint)),
        Err(_) => (text.chars().take(300).collect(), None),
    };
    Err(AgentError::Enrol { url, status, message, hint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_is_kept_private_and_bound_to_server_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("agent");
        assert_eq!(load(&state, "http://s:3001", "n1").unwrap(), None);
        let stored = Stored { server_url: "http://s:3001/".into(), node_name: "n1".into(), credential: "nxn_x".into() };
        save(&state, &stored).unwrap();
        assert_eq!(load(&state, "http://s:3001", "n1").unwrap().as_deref(), Some("nxn_x"));
        assert!(matches!(load(&state, "http://s:3001", "n2"), Err(AgentError::CredentialMismatch { .. })));
        assert!(matches!(load(&state, "http://other:3001", "n1"), Err(AgentError::CredentialMismatch { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(path(&state)).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
        }
    }
}
