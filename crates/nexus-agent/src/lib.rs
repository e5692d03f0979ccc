//! The Nexus node agent as a library: it drives LXD (behind the [`provider::Provider`] trait),
//! turns workspace specs into running containers and keeps the control connection to the server.
//!
//! Layering: [`connection`] speaks the wire protocol and schedules commands, [`provision`] decides
//! what a workspace needs, and a [`provider::Provider`] ([`lxd::LxdProvider`] for real, or
//! [`fake::FakeProvider`] in tests) performs the container operations.

pub mod connection;
pub mod fake;
pub mod lxd;
pub mod provider;
pub mod provision;
pub mod services;

pub use connection::{run, AgentConfig};

use std::path::PathBuf;

/// Everything that can go wrong inside the agent.
///
/// `Display` never repeats the source; print the whole chain (see [`error_chain`]).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Neither the Debian nor the snap LXD socket exists.
    #[error("no LXD socket found (tried {tried})")]
    LxdSocketNotFound {
        /// The paths that were tried.
        tried: String,
    },
    /// The LXD socket exists but cannot be connected to.
    #[error("cannot connect to LXD at `{path}`")]
    LxdConnect {
        /// Socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange with LXD broke off.
    #[error("HTTP exchange with LXD failed ({method} {path})")]
    LxdHttp {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// LXD answered with an error.
    #[error("LXD: {message} ({method} {path}, HTTP {status})")]
    Lxd {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status (404 when something does not exist).
        status: u16,
        /// LXD's `error` text.
        message: String,
    },
    /// An LXD background operation ended in failure.
    #[error("LXD operation `{description}` failed: {message}")]
    LxdOperation {
        /// LXD's description of the operation (`Creating instance`, ...).
        description: String,
        /// LXD's `err` text.
        message: String,
    },
    /// LXD answered with something this agent does not understand.
    #[error("unexpected answer from LXD to {what}: {detail}")]
    LxdUnexpected {
        /// The request.
        what: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The named instance does not exist.
    #[error("instance `{0}` does not exist")]
    NoSuchInstance(String),
    /// A value from a workspace spec cannot be used.
    #[error("invalid {field}: {message}")]
    InvalidSpec {
        /// The spec field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Something did not happen in time.
    #[error("{what} did not finish within {secs} s")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// `server_url` is not an `http(s)://` or `ws(s)://` URL.
    #[error("invalid server URL `{url}`: {reason}")]
    ServerUrl {
        /// The configured URL.
        url: String,
        /// What is wrong.
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
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// Dialing the server failed.
    #[error("cannot connect to the server at `{url}`")]
    Connect {
        /// The URL dialed.
        url: String,
        /// Why.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The WebSocket broke while connected.
    #[error("WebSocket connection failed")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server broke the protocol (or closed the connection).
    #[error("protocol: {0}")]
    Protocol(String),
    /// A local I/O operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    /// True when LXD said the thing asked about does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, AgentError::NoSuchInstance(_) | AgentError::Lxd { status: 404, .. })
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for AgentError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        AgentError::WebSocket(Box::new(e))
    }
}

/// Renders an error and all its sources on one line, `outer: inner: innermost`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        // Some libraries repeat their source in Display; skip exact repeats.
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}
