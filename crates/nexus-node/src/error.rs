//! The host set-up's one error type; the binary prints its chain and its [`Hint`].

use nexus_types::diagnostics::Hint;

/// What went wrong setting up the host or staging.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step of `nexus node init` failed.
    #[error("{step}: {message}")]
    Step {
        /// Which step (`packages`, `storage`, `image`, ...).
        step: &'static str,
        /// What happened.
        message: String,
        /// What to do next.
        hint: String,
    },
    /// Staging could not do something on this machine.
    #[error("{message}")]
    Failed {
        /// What happened.
        message: String,
        /// What to do next.
        hint: String,
    },
    /// A call to the staging server, or the demo user's config or key, failed.
    #[error(transparent)]
    Cli(#[from] nexus_cli::Error),
}

impl Error {
    pub(crate) fn new(message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::Failed { message: message.into(), hint: hint.into() }
    }
}

impl From<nexus_cli::config::ConfigError> for Error {
    fn from(e: nexus_cli::config::ConfigError) -> Error {
        Error::Cli(e.into())
    }
}

impl From<nexus_cli::keys::KeyError> for Error {
    fn from(e: nexus_cli::keys::KeyError) -> Error {
        Error::Cli(e.into())
    }
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Step { hint, .. } | Error::Failed { hint, .. } => Some(hint.clone()),
            Error::Cli(e) => e.hint(),
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
