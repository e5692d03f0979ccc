//! `nexus node list | revoke | token ...`: the operator's view of the nodes and of the join tokens
//! that enrol them. Every verb needs the operator token: `--operator-token-file`, else
//! `NEXUS_OPERATOR_TOKEN`, else `<data-dir>/operator-token` (when run on the server host).

pub mod list;
pub mod revoke;
pub mod token;

use std::path::PathBuf;

use crate::client::{base_url, Client};
use crate::error::{Error, Result};

/// The server the operator commands talk to when none is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:3001";

/// How an operator command reaches the server and proves it is the operator.
#[derive(Debug, Clone, Default)]
pub struct OperatorOptions {
    /// `--server` / `NEXUS_SERVER`; [`DEFAULT_SERVER`] when unset.
    pub server: Option<String>,
    /// `--operator-token-file`.
    pub operator_token_file: Option<PathBuf>,
    /// `NEXUS_OPERATOR_TOKEN`.
    pub operator_token: Option<String>,
    /// The server's data dir, holding `operator-token`.
    pub data_dir: PathBuf,
}

impl OperatorOptions {
    /// A client for the server carrying the operator token.
    pub(crate) fn client(&self) -> Result<Client> {
        let token = match (&self.operator_token_file, &self.operator_token) {
            (Some(file), _) => read_token(file)?,
            (None, Some(token)) if !token.trim().is_empty() => token.trim().to_string(),
            _ => read_token(&self.data_dir.join("operator-token"))?,
        };
        let server = self.server.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| DEFAULT_SERVER.into());
        Ok(Client::new(&base_url(&server), &token))
    }
}

fn read_token(path: &std::path::Path) -> Result<String> {
    let token = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            format!("cannot read the operator token `{}`: {e}", path.display()),
            "run this on the server host (as the user the server runs as, or root) with `--data-dir` if it is not \
             the default, or pass `--operator-token-file FILE` or set NEXUS_OPERATOR_TOKEN",
        )
    })?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(Error::new(
            format!("the operator token file `{}` is empty", path.display()),
            "pass the server's `<data-dir>/operator-token`",
        ));
    }
    Ok(token)
}

/// The API's refusals of the operator token, said for the operator (the client's own hint is for
/// designers signing in).
pub(crate) fn operator_error(e: Error) -> Error {
    match e {
        Error::Api { status: 401 | 403, message, .. } => Error::new(
            message,
            "these commands need the server's operator token: run them on the server host, or pass \
             `--operator-token-file <data-dir>/operator-token`",
        ),
        other => other,
    }
}
