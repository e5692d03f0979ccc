//! `nexus workspace stop`: stop a workspace, keeping its disk and SSH port, and its port forwards.

use std::time::Instant;

use super::{home, open, Changed};
use crate::error::Result;
use crate::forward;
use crate::ui::Ui;

/// Stops the workspace named (or with the id) `workspace`.
pub async fn run(workspace: &str, server: Option<String>, ui: &Ui) -> Result<Changed> {
    let (client, ws) = open(workspace, server).await?;
    let started = Instant::now();
    ui.info(&format!("stop: {} ...", ws.name));
    let answer = client.stop(&ws.workspace_id).await?;
    // Forwards to a stopped workspace would only retry forever.
    if let Ok(home) = home() {
        let _ = forward::stop(&home, &ws.name);
    }
    Ok(Changed::new(&answer, &ws.name, answer.status, started))
}
