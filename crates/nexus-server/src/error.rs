//! The server crate's error type; the HTTP edge maps each variant to a status, a code and a hint.

use nexus_types::names::InvalidName;

/// Everything that can go wrong in the server's logic.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The request is malformed or a field is invalid.
    #[error("{message}")]
    BadRequest {
        /// The API's `error.code`, stable for clients to match on.
        code: &'static str,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// No or unknown bearer token.
    #[error("{message}")]
    Unauthorized {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The caller may not do this (e.g. a user token on an operator endpoint).
    #[error("{message}")]
    Forbidden {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// No such workspace for this user (also what another user's workspace looks like).
    #[error("workspace {0:?} not found")]
    WorkspaceNotFound(String),
    /// The request conflicts with existing state.
    #[error("{message}")]
    Conflict {
        /// The API's `error.code`, stable for clients to match on.
        code: &'static str,
        /// What conflicts.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The repository or branch cannot be read: missing, private, or on a host the server cannot
    /// reach or talk to. The API code is `repo_not_found` whatever the cause; the hint fits the cause.
    #[error("{message}")]
    RepoNotFound {
        /// What git said, shortened.
        message: String,
        /// What to do about that cause.
        hint: String,
    },
    /// Something the server depends on is missing or busy: no node, no free port, node unresponsive.
    #[error("{message}")]
    Unavailable {
        /// The API's `error.code`, stable for clients to match on.
        code: &'static str,
        /// What is missing.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The caller sent more requests of a kind than its allowance (HTTP 429, with `Retry-After`).
    #[error("{message}")]
    TooManyRequests {
        /// What was limited.
        message: String,
        /// When to retry.
        hint: String,
        /// Seconds until the allowance has room again.
        retry_after_secs: u64,
    },
    /// The node did not finish in time.
    #[error("{message}")]
    Timeout {
        /// What timed out.
        message: String,
        /// What to do.
        hint: String,
    },
    /// GitHub could not be asked.
    #[error("could not reach the GitHub API at {url}")]
    GithubUnreachable {
        /// API base URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The database failed.
    #[error("database error")]
    Store(#[from] rusqlite::Error),
    /// Work handed to a blocking thread (database, checksums) did not finish: the runtime shut down.
    #[error("a background task was cancelled")]
    Task(#[source] tokio::task::JoinError),
    /// A file in the data dir could not be read or written.
    #[error("could not use {path}")]
    Io {
        /// The file (or what stands in for one).
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ServerError {
    /// A 400 with a code, message and hint.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ServerError::BadRequest { code, message: message.into(), hint: hint.into() }
    }

    /// A 503 with a code, message and hint.
    pub(crate) fn unavailable(code: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ServerError::Unavailable { code, message: message.into(), hint: hint.into() }
    }

    /// A 401 with message and hint.
    pub(crate) fn unauthorized(message: impl Into<String>, hint: impl Into<String>) -> Self {
        ServerError::Unauthorized { message: message.into(), hint: hint.into() }
    }
}

impl From<InvalidName> for ServerError {
    fn from(e: InvalidName) -> Self {
        ServerError::BadRequest { code: "invalid_field", message: e.message, hint: e.hint }
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
