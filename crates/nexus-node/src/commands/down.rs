//! `nexus down`: stop local staging (the demo workspace, its forwards, agent, server, git daemon);
//! every piece of data stays for the next `nexus up`.

use std::path::PathBuf;

use nexus_cli::ui::{Report, Ui};

use crate::error::Result;
use crate::staging;

/// Staging is down; its data is kept in `dir`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Down {
    /// The staging data directory.
    pub dir: PathBuf,
}

impl Report for Down {
    fn text(&self, ui: &Ui) {
        ui.info(&format!("Data kept in {}; `nexus up` brings it back", self.dir.display()));
    }
}

/// Stops what `nexus up` started in `dir` (the default directory when `None`) on API port `port`.
pub async fn run(dir: Option<PathBuf>, port: u16, ui: &Ui) -> Result<Down> {
    let dir = dir.unwrap_or_else(|| staging::default_dir(staging::is_root()));
    staging::down(&dir, port, ui).await?;
    Ok(Down { dir })
}
