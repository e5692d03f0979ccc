//! `nexus workspace connect`: the workspace's ssh entry with its pinned host key, the service ports
//! forwarded in the background, and the editor opened on the repository over SSH.

use std::path::Path;
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

/// (Re)starts a workspace's forwards with `start_supervisor` and waits until they listen; prints the
/// URL of each service. `forwards` are the mapped ports; a service whose mapped port something else
/// on this machine listens on is forwarded from another free one ([`forward::choose_local_ports`],
/// which the supervisor asks too and so agrees with), and that is what is printed and returned.
async fn forward_ports(
    home: &Path,
    workspace: &str,
    forwards: &[PortForward],
    ui: &Ui,
    start_supervisor: impl FnOnce() -> std::io::Result<()>,
) -> Result<Vec<PortForward>> {
    let _ = forward::stop(home, workspace);
    let forwards = forward::choose_local_ports(home, workspace, forwards, |n| ui.warn(&n));
    start_supervisor().map_err(|e| {
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
            forward::log_path(home, workspace).display()
        ));
    }
    for f in &forwards {
        ui.info(&format!("  - {}: http://localhost:{}", f.service, f.local));
    }
    Ok(forwards)
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

    let mut forwards = forwards_of(&view);
    if !opts.no_forward && !forwards.is_empty() {
        let home = home()?;
        let exe = std::env::current_exe().map_err(|e| {
            Error::new(format!("cannot find this program's path: {e}"), "run nexus from its installed path")
        })?;
        let args: Vec<String> = ["workspace", "ports", "run", &view.name].iter().map(|s| s.to_string()).collect();
        forwards = forward_ports(&home, &view.name, &forwards, ui, || {
            forward::spawn_supervisor(&exe, &args, &home, &view.name).map(drop)
        })
        .await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::tests::{answer, answering, site_behind_sshd};
    use crate::ui::Settings;

    /// Regression (bug c): connect forwarded each service from its mapped port even when another
    /// program on the designer's machine listened there, so ssh could not forward it and the URL it
    /// printed showed the other program. Here the supervisor runs in-process (as `nexus workspace
    /// ports run` would) on a real ssh to a real sshd.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connect_prints_a_url_that_answers_when_the_mapped_port_is_taken() {
        let (_key, sshd, home, files) = site_behind_sshd();
        // The "workspace" is this machine: sshd forwards to the service's port here.
        let service = answering("the workspace's web service\n");
        let taken = answering("other program\n");
        let mapped = vec![PortForward { service: "web".into(), local: taken, remote: service }];
        let (ui, cap) = Ui::capture(Settings::default(), "");
        let mut supervisor = None;
        let chosen = forward_ports(home.path(), "site", &mapped, &ui, || {
            let (home, config, wanted) = (home.path().to_path_buf(), files.user_config.clone(), mapped.clone());
            supervisor = Some(tokio::spawn(async move {
                forward::supervise(&home, "site", "nexus-site", &config, || {
                    let wanted = wanted.clone();
                    async move { Some(wanted) }
                })
                .await
            }));
            Ok(())
        })
        .await
        .unwrap();
        let local = chosen[0].local;
        let err = cap.stderr();
        assert_ne!(local, taken, "{err}");
        assert!(
            err.contains(&format!("warning: {taken} is in use on this machine; web is on http://localhost:{local}\n")),
            "{err}"
        );
        assert!(err.contains("ok: Ports forwarded\n"), "{err}\nsshd: {}", sshd.log());
        assert!(err.contains(&format!("  - web: http://localhost:{local}\n")), "{err}");
        assert_eq!(tokio::task::block_in_place(|| answer(local)), "the workspace's web service\n", "{err}");
        assert_eq!(
            tokio::task::block_in_place(|| answer(taken)),
            "other program\n",
            "the other program keeps its port"
        );
        supervisor.expect("the supervisor was started").abort();
    }
}
