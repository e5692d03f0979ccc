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
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod lxd;
pub mod network;
pub mod prebuilds;
pub mod provider;
pub mod provision;
pub mod runtimes;
mod services;
mod setup_failure;

pub use connection::{run, run_with_settings, AgentConfig};

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
    /// The join token cannot be sent in an HTTP header.
    #[error("the join token contains characters not allowed in an HTTP header")]
    JoinToken,
    /// The server refused the join token.
    #[error("the server at `{url}` refused the join token (HTTP 401)")]
    Unauthorized {
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
            AgentError::JoinToken | AgentError::Unauthorized { .. } => Some(
                "wrong join token; copy it from `<data-dir>/join-token` on the server into this agent's configuration"
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
