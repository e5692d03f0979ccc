//! `nexus workspace ssh`: a shell in the workspace's repository, or one command, with the terminal
//! attached, through the same ssh entry the editor uses.

use super::{configure_ssh, find, require_running, ssh_files};
use crate::client::Client;
use crate::commands::load_config;
use crate::error::{Error, Result};
use crate::ui::Ui;

/// Runs `ssh <alias> [command]` with the terminal attached; returns its exit code.
pub async fn run(workspace: Option<&str>, command: &[String], server: Option<String>, ui: &Ui) -> Result<i32> {
    let cfg = load_config(ui)?.config;
    let client = Client::from_config(server, &cfg)?;
    let view = find(&client, workspace).await?;
    require_running(&view)?;
    let files = ssh_files()?;
    let alias = configure_ssh(&files, &view, &cfg)?;
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-F").arg(&files.user_config);
    if command.is_empty() {
        // A shell in the repo, like the editor opens.
        cmd.args(["-t", &alias, &format!("cd {} && exec $SHELL -l", view.repo.path)]);
    } else {
        cmd.arg(&alias).args(command);
    }
    let status = cmd.status().map_err(|e| Error::new(format!("could not run ssh: {e}"), "install OpenSSH's client"))?;
    Ok(status.code().unwrap_or(255))
}
