//! `nexus workspace start`: start a stopped workspace, or retry a failed one, waiting for the node.

use std::time::Instant;

use super::{open, Changed};
use crate::error::Result;
use crate::ui::Ui;

/// Starts the workspace named (or with the id) `workspace`.
pub async fn run(workspace: &str, server: Option<String>, ui: &Ui) -> Result<Changed> {
    let (client, ws) = open(workspace, server).await?;
    let started = Instant::now();
    ui.info(&format!("start: {} ...", ws.name));
    let answer = client.start(&ws.workspace_id).await?;
    Ok(Changed::new(&answer, &ws.name, answer.status, started))
}
