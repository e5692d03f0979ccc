//! `nexus auth logout`: revoke the server's API token, then forget it and the GitHub token.

use crate::client::Client;
use crate::commands::{load_config, save};
use crate::error::Result;
use crate::ui::{Report, Ui};

/// What `nexus auth logout` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoggedOut {
    /// There was a token to forget.
    pub was_signed_in: bool,
    /// The server revoked the API token (it no longer works anywhere, even in a copy of the config).
    pub server_token_revoked: bool,
    /// Why the server could not be asked to revoke it, if it could not.
    pub revoke_problem: Option<String>,
}

impl Report for LoggedOut {
    fn text(&self, ui: &Ui) {
        if let Some(problem) = &self.revoke_problem {
            ui.warn(&format!("The server did not revoke the API token ({problem}); it stays valid until it expires"));
        } else if self.server_token_revoked {
            ui.ok("The server revoked this machine's API token");
        }
        if self.was_signed_in {
            ui.ok("Signed out: the GitHub and server tokens are removed from your config");
            ui.info("To revoke the GitHub token itself: GitHub → Settings → Applications");
            ui.info("To sign in again here, run `nexus ssh setup` from a machine still signed in, or ask the operator");
        } else {
            ui.info("You were not signed in");
        }
    }
}

/// Asks the server to revoke the API token (`POST /api/v1/auth/logout`), then forgets the GitHub
/// and server tokens (the rest of the config stays). The local tokens are forgotten even when the
/// server cannot be reached; the report says the server token then lives on until it expires.
pub async fn run(ui: &Ui) -> Result<LoggedOut> {
    let mut loaded = load_config(ui)?;
    let had = loaded.config.github.auth_token.is_some() || loaded.config.api_token.is_some();
    let (mut revoked, mut problem) = (false, None);
    if let (Some(server), Some(token)) = (loaded.config.server_url(), loaded.config.api_token.clone()) {
        match Client::new(&server, &token).logout().await {
            Ok(r) => revoked = r.revoked,
            // Already revoked or expired: nothing left to revoke.
            Err(e) if e.code() == Some(&crate::error::ErrorCode::Unauthorized) => {}
            Err(e) => problem = Some(e.to_string()),
        }
    }
    loaded.config.github.auth_token = None;
    loaded.config.api_token = None;
    if loaded.exists {
        save(&loaded)?;
    }
    Ok(LoggedOut { was_signed_in: had, server_token_revoked: revoked, revoke_problem: problem })
}
