//! `nexus workspace connect`: the workspace's ssh entry with its pinned host key, the service ports
//! forwarded in the background, and the editor opened on the repository over SSH.

use std::time::Duration;

use nexus_types::state::WorkspaceStatus;

use super::{configure_ssh, find, forwards_of, home, ssh_files, start, wait_ready};
use crate::client::Client;
use crate::commands::load_config;
use crate::config::Editor;
use crate::editor::{self, EditorChoice, Opened};
use crate::error::{Error, Result};
use crate::forward::{self, PortForward};
use crate::opener::{Opener, Programs};
use crate::system::System;
use crate::ui::{Report, Ui};

/// `nexus workspace connect` options.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Workspace name (default: the only one).
    pub workspace: Option<String>,
    /// `cursor`, `code` or `none` (default: config, then Cursor).
    pub editor: Option<String>,
    /// Don't start port forwards.
    pub no_forward: bool,
    /// The server to use instead of the configured one (`--server`).
    pub server: Option<String>,
}

/// What `connect` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Connected {
    /// The workspace connected to.
    pub workspace: String,
    /// The `Host` alias in the ssh config (`nexus-<name>`), which the editor connects to.
    pub ssh_alias: String,
    /// The command that gets a shell.
    pub ssh_command: String,
    /// Forwarded ports.
    pub forwards: Vec<PortForward>,
    /// How the editor was opened: `cli`, `url` or `none`.
    pub editor: String,
    /// The folder opened.
    pub folder: String,
}

impl Report for Connected {
    fn text(&self, ui: &Ui) {
        ui.result(&format!("Ready to design! Your files are in {} on {}", self.folder, self.ssh_alias));
    }
}

/// Sets up ssh, starts the forwards and opens the editor.
pub async fn run(
    opts: &ConnectOptions,
    ui: &Ui,
    sys: &dyn System,
    programs: &dyn Programs,
    opener: &dyn Opener,
) -> Result<Connected> {
    let loaded = load_config(ui)?;
    let cfg = &loaded.config;
    let client = Client::from_config(opts.server.clone(), cfg)?;
    let mut view = find(&client, opts.workspace.as_deref()).await?;
    if view.status == WorkspaceStatus::Stopped {
        start(&client, &view, ui).await?;
        view = wait_ready(&client, &view.workspace_id, ui).await?;
    }
    if view.status != WorkspaceStatus::Running {
        return Err(Error::new(
            format!("workspace {} is {}, not running", view.name, view.status),
            view.hint.clone().unwrap_or_else(|| format!("wait for it: `nexus workspace status {}`", view.name)),
        ));
    }
    let files = ssh_files()?;
    let alias = configure_ssh(&files, &view, cfg)?;
    let ssh_command = format!("ssh -F {} {alias}", files.user_config.display());
    ui.ok(&format!("SSH configured: ssh {alias}"));

    let forwards = forwards_of(&view);
    if !opts.no_forward && !forwards.is_empty() {
        let home = home()?;
        let _ = forward::stop(&home, &view.name);
        let args: Vec<String> = ["workspace", "ports", "run", &view.name].iter().map(|s| s.to_string()).collect();
        let exe = std::env::current_exe().map_err(|e| {
            Error::new(format!("cannot find this program's path: {e}"), "run nexus from its installed path")
        })?;
        forward::spawn_supervisor(&exe, &args, &home, &view.name).map_err(|e| {
            Error::new(format!("could not start the port forwards: {e}"), "run `nexus workspace ports` to check")
        })?;
        let step = ui.step("Forwarding service ports");
        let missing = forward::wait_listening(&forwards, Duration::from_secs(20)).await;
        if missing.is_empty() {
            step.ok("Ports forwarded");
        } else {
            step.fail("Some ports are not forwarded yet");
            ui.warn(&format!(
                "local ports {missing:?} are not answering yet; the forwarder keeps retrying (log: {})",
                forward::log_path(&home, &view.name).display()
            ));
        }
        for f in &forwards {
            ui.info(&format!("  - {}: http://localhost:{}", f.service, f.local));
        }
    }

    let choice = match &opts.editor {
        Some(e) => EditorChoice::parse(e)
            .map_err(|m| Error::new(m, "pass `--editor cursor`, `--editor code` or `--editor none`"))?,
        None => EditorChoice::Open(cfg.editor.unwrap_or(Editor::Cursor)),
    };
    let folder = editor::repo_path(Some(&view.repo.path), &view.repo.name);
    let editor_name = match choice {
        EditorChoice::Open(Editor::Cursor) => "Cursor",
        EditorChoice::Open(Editor::Code) => "VS Code",
        EditorChoice::None => "no editor",
    };
    if choice != EditorChoice::None {
        ui.ok(&format!("Opening {editor_name}..."));
    }
    let how = match editor::open(choice, &alias, &folder, sys, programs, opener) {
        Opened::Cli(_) => "cli",
        Opened::Url(url) => {
            ui.info(&format!("Opened {url}"));
            "url"
        }
        Opened::Nothing { why } => {
            if choice != EditorChoice::None {
                ui.warn(&format!("could not open {editor_name}: {why}"));
            }
            ui.info(&format!("Connect with: {ssh_command}  (folder {folder})"));
            "none"
        }
    };
    Ok(Connected { workspace: view.name.clone(), ssh_alias: alias, ssh_command, forwards, editor: how.into(), folder })
}
