//! The designer CLI's one error type. Every command returns it; the binary prints its chain on one
//! line and its [`Hint`] below, so no error string carries a `hint:` of its own.

use nexus_types::diagnostics::Hint;

use crate::config::ConfigError;
use crate::github::GithubError;
use crate::keys::KeyError;

/// A stable error code from the server's `{"error": {"code", ...}}` body. The CLI decides on these,
/// never on the message text; codes it does not act on are kept as they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// `no_nodes`: no node agent is connected to take a new workspace.
    NoNodes,
    /// `node_unresponsive`: the workspace's node has not been heard from lately.
    NodeUnresponsive,
    /// `workspace_not_found`.
    WorkspaceNotFound,
    /// `unauthorized`: no or unknown API token.
    Unauthorized,
    /// Any other code, or empty when the answer was not the API's error body.
    Other(String),
}

impl ErrorCode {
    /// The code as the server sends it.
    pub(crate) fn parse(code: &str) -> ErrorCode {
        match code {
            "no_nodes" => ErrorCode::NoNodes,
            "node_unresponsive" => ErrorCode::NodeUnresponsive,
            "workspace_not_found" => ErrorCode::WorkspaceNotFound,
            "unauthorized" => ErrorCode::Unauthorized,
            other => ErrorCode::Other(other.to_string()),
        }
    }
}

/// What went wrong in a designer command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Nexus server did not answer (network error, nothing listening, timeout).
    #[error("cannot reach the Nexus server at {server}: {reason}")]
    Unreachable {
        /// The server's base URL.
        server: String,
        /// The innermost cause, which is the part that says what happened.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
        /// The server's next step (or the CLI's, when the body was not the API's).
        hint: String,
    },
    /// GitHub refused or could not be reached.
    #[error(transparent)]
    Github(#[from] GithubError),
    /// The SSH key could not be read or made.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// `~/.nexus/config.yaml` could not be read or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Anything else a command found wrong, with the next step.
    #[error("{message}")]
    Failed {
        /// What happened.
        message: String,
        /// What to do next.
        hint: String,
    },
}

impl Error {
    /// A failure that is neither the server's, GitHub's nor a file's: what happened and what to do.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::Failed { message: message.into(), hint: hint.into() }
    }

    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A network error or a 5xx other than 503: the same call may succeed if made again.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Api { status, .. } => *status >= 500 && *status != 503,
            _ => false,
        }
    }
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        let hint = match self {
            Error::Unreachable { .. } => {
                "check the address (`server:` in ~/.nexus/config.yaml) and that `nexus server` runs there".to_string()
            }
            Error::Api { hint, .. } | Error::Failed { hint, .. } => hint.clone(),
            Error::Github(e) => return e.hint(),
            Error::Key(e) => return e.hint(),
            Error::Config(e) => e.hint(),
        };
        Some(hint).filter(|h| !h.trim().is_empty())
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
