//! `nexus workspace delete`: delete a workspace (container, disk, SSH port), its port forwards and
//! its ssh entry. Unpushed work in it is lost.

use std::time::Instant;

use super::{home, open, Changed};
use crate::error::Result;
use crate::forward;
use crate::ssh_config::SshFiles;
use crate::ui::Ui;

/// Deletes the workspace named (or with the id) `workspace`.
pub async fn run(workspace: &str, server: Option<String>, ui: &Ui) -> Result<Changed> {
    let (client, ws) = open(workspace, server).await?;
    let started = Instant::now();
    ui.info(&format!("delete: {} ...", ws.name));
    let answer = client.delete(&ws.workspace_id).await?;
    // Forwards to a deleted workspace would only retry forever.
    if let Ok(home) = home() {
        let _ = forward::stop(&home, &ws.name);
        forward::forget_moved_ports(&home, &ws.name);
    }
    if let Ok(files) = SshFiles::from_env() {
        let _ = files.remove(&ws.name, &ws.workspace_id);
    }
    Ok(Changed::new(&answer, &ws.name, "deleted", started))
}
