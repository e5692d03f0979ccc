//! `nexus auth logout`: forget the saved GitHub and server tokens.

use crate::commands::{load_config, save};
use crate::error::Result;
use crate::ui::{Report, Ui};

/// What `nexus auth logout` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoggedOut {
    /// There was a token to forget.
    pub was_signed_in: bool,
}

impl Report for LoggedOut {
    fn text(&self, ui: &Ui) {
        if self.was_signed_in {
            ui.ok("Signed out: the GitHub and server tokens are removed from your config");
            ui.info("To revoke the GitHub token itself: GitHub → Settings → Applications");
        } else {
            ui.info("You were not signed in");
        }
    }
}

/// Forgets the GitHub and server tokens (the rest of the config stays).
pub fn run(ui: &Ui) -> Result<LoggedOut> {
    let mut loaded = load_config(ui)?;
    let had = loaded.config.github.auth_token.is_some() || loaded.config.api_token.is_some();
    loaded.config.github.auth_token = None;
    loaded.config.api_token = None;
    if loaded.exists {
        save(&loaded)?;
    }
    Ok(LoggedOut { was_signed_in: had })
}
