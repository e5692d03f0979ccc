//! The Nexus node agent as a library: it drives containers (behind the [`provider::Provider`]
//! trait), turns workspace specs into running containers and keeps the control connection to the
//! server.
//!
//! Layering: `connection` speaks the wire protocol and schedules commands, [`provision`] decides
//! what a workspace needs, and a [`provider::Provider`] ([`lxd::LxdProvider`] for real, or
//! `fake::FakeProvider` with the `testing` feature) performs the container operations. Nothing
//! above the trait knows it is LXD.

mod boot;
pub mod caches;
mod clone;
mod connection;
pub mod credential;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod limits;
pub mod lxd;
pub mod network;
pub mod prebuilds;
pub mod provider;
pub mod provision;
pub mod runtimes;
mod services;
mod setup_failure;

pub use connection::{allow_plain_http, run, run_with_settings, AgentConfig};

use nexus_types::diagnostics::Hint;

use crate::provider::ProviderError;

/// Why the agent cannot run or lost its server: the container provider failed, or the connection.
///
/// `Display` never repeats the source; print the whole chain
/// (`nexus_types::diagnostics::error_chain`).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The container provider failed (LXD is unreachable, say).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// `server_url` is not an `http(s)://` or `ws(s)://` URL.
    #[error("invalid server URL `{url}`: {reason}")]
    ServerUrl {
        /// The configured URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The join token (or credential) cannot be sent in an HTTP header.
    #[error("the join token or credential contains characters not allowed in an HTTP header")]
    JoinToken,
    /// The node has no credential and no join token to enrol with.
    #[error("this node has no credential yet and no join token to enrol with")]
    NoJoinToken,
    /// The server refused to enrol the node (a wrong, used or revoked join token; a name taken).
    #[error("the server at `{url}` refused to enrol this node (HTTP {status}): {message}")]
    Enrol {
        /// The enrolment URL.
        url: String,
        /// HTTP status of the refusal (0: the request could not be made).
        status: u16,
        /// The server's message.
        message: String,
        /// The server's hint, when it sent one.
        hint: Option<String>,
    },
    /// The enrolment request did not reach the server (retried).
    #[error("cannot reach the server at `{url}` to enrol")]
    EnrolUnreachable {
        /// The enrolment URL.
        url: String,
        /// What the HTTP client reported.
        #[source]
        source: Box<reqwest::Error>,
    },
    /// The credential file cannot be read or written.
    #[error("cannot read or write the node credential `{path}`")]
    Credential {
        /// The file or state dir.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The credential file is for another node or server, or not one at all.
    #[error("the node credential `{path}` does not fit: {reason}")]
    CredentialMismatch {
        /// The file.
        path: String,
        /// What does not fit.
        reason: String,
    },
    /// The server refused the node's credential (it was revoked, or the server forgot it).
    #[error("the server at `{url}` refused this node's credential (HTTP 401)")]
    Unauthorized {
        /// The URL dialed.
        url: String,
    },
    /// The server refused a second connection for this node (another agent with its credential
    /// is connected).
    #[error("the server at `{url}` refused the connection: this node is connected already (HTTP 409)")]
    AlreadyConnected {
        /// The URL dialed.
        url: String,
    },
    /// The server answered the WebSocket upgrade with another HTTP error.
    #[error("the server at `{url}` refused the connection (HTTP {status}): {body}")]
    Rejected {
        /// The URL dialed.
        url: String,
        /// HTTP status of the refusal.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// Dialing the server failed.
    #[error("cannot connect to the server at `{url}`")]
    Connect {
        /// The URL dialed.
        url: String,
        /// What the WebSocket client reported.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The WebSocket broke while connected.
    #[error("WebSocket connection failed")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server broke the protocol (or closed the connection).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server did not answer in time.
    #[error("{what} did not finish within {secs} s")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The limit in seconds.
        secs: u64,
    },
}

impl Hint for AgentError {
    fn hint(&self) -> Option<String> {
        match self {
            AgentError::Provider(e) => e.hint(),
            AgentError::ServerUrl { .. } => Some("give the server's base URL, e.g. `http://staging:3001`".into()),
            AgentError::JoinToken | AgentError::NoJoinToken => Some(
                "pass a join token with `--join-token-file FILE` (the operator makes one with `nexus node token create`, \
                 or copies `<data-dir>/join-token` from the server)"
                    .into(),
            ),
            AgentError::Enrol { hint, .. } => Some(hint.clone().unwrap_or_else(|| {
                "check the join token with the operator (`nexus node token list` on the server)".into()
            })),
            AgentError::EnrolUnreachable { .. } => {
                Some("check that the server runs and that this node can reach its URL".into())
            }
            AgentError::Credential { .. } => {
                Some("the agent keeps its credential in `--state-dir`; check that directory's owner and mode".into())
            }
            AgentError::CredentialMismatch { .. } => Some(
                "run the agent with the `--name` and `--server` it enrolled with, or give each node its own `--state-dir`"
                    .into(),
            ),
            AgentError::Unauthorized { .. } => Some(
                "the operator may have revoked this node (`nexus node list` on the server); a revoked name never enrols \
                 again: remove the `credential` file from the agent's `--state-dir` and start it with another `--name` \
                 and a join token"
                    .into(),
            ),
            AgentError::AlreadyConnected { .. } => Some(
                "another `nexus agent` runs with this node's credential; stop it (this one retries and takes over once \
                 it is gone)"
                    .into(),
            ),
            AgentError::Rejected { .. } => Some("check that the URL is the Nexus server's, not a proxy's".into()),
            AgentError::Connect { .. } | AgentError::Timeout { .. } => {
                Some("check that the server runs and that this node can reach its URL".into())
            }
            AgentError::WebSocket(_) | AgentError::Protocol(_) => None,
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for AgentError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        AgentError::WebSocket(Box::new(e))
    }
}
