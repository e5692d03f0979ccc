//! One module per command, `commands/<group>/<verb>.rs` (uv's layout). Each takes its options, does
//! the work through the API client and the `System`/`Opener` traits, and returns a typed output that
//! [`Ui::report`](crate::ui::Ui::report) prints as text or JSON; failures are [`crate::Error`]s.

pub mod audit;
pub mod auth;
pub mod config;
pub mod node;
pub mod ssh;
pub mod workspace;

use crate::config::{Loaded, UserConfig};
use crate::error::Result;
use crate::ui::Ui;

/// The user's config, or an error saying how to fix the file; warns when others can read it.
pub(crate) fn load_config(ui: &Ui) -> Result<Loaded> {
    let loaded = UserConfig::load()?;
    if let Some((message, hint)) = loaded.permission_warning() {
        ui.warn(&format!("{message} ({hint})"));
    }
    Ok(loaded)
}

pub(crate) fn save(loaded: &Loaded) -> Result<()> {
    Ok(loaded.config.save_to(&loaded.path)?)
}
