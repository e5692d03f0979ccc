//! `nexus workspace logs`: a workspace's setup log and service journals, read (or followed) over SSH.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use nexus_types::api::WorkspaceView;

use super::{configure_ssh, ssh_files};
use crate::client::Client;
use crate::commands::load_config;
use crate::config::UserConfig;
use crate::error::{Error, Result};
use crate::ssh_config::SshFiles;
use crate::ui::Ui;

/// `nexus workspace logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    /// Workspace name or id.
    pub workspace: String,
    /// A service name, or `setup`; every service and the setup log when `None`.
    pub service: Option<String>,
    /// Only the setup log (`--setup`, the same as the service name `setup`).
    pub setup: bool,
    /// Keep printing new lines.
    pub follow: bool,
    /// How many lines of history.
    pub lines: u32,
    /// A private key to try before the configured one (`ssh.key_path`).
    pub identity: Option<PathBuf>,
    /// The server to use instead of the configured one (`--server`).
    pub server: Option<String>,
}

/// Prints the logs over SSH, with the terminal's stdout; returns once ssh ends.
pub async fn run(opts: &LogsOptions, ui: &Ui) -> Result<()> {
    let cfg = load_config(ui)?.config;
    let client = Client::from_config(opts.server.clone(), &cfg)?;
    let view = client.workspace(&opts.workspace).await?;
    let service = if opts.setup { Some("setup") } else { opts.service.as_deref() };
    let remote = log_command(service, opts.follow, opts.lines);
    let status = ssh(&ssh_files()?, &view, &cfg, opts.identity.as_deref(), &remote)?;
    if !status.success() {
        let key = match &opts.identity {
            Some(key) => key.clone(),
            None => cfg.key_path()?,
        };
        return Err(Error::new(
            format!("reading the logs over SSH failed (exit {})", status.code().unwrap_or(-1)),
            format!(
                "check `nexus workspace status {}` and that {} is the key you registered",
                opts.workspace,
                key.display()
            ),
        ));
    }
    Ok(())
}

/// Runs `remote` in the workspace through its ssh entry — the same key, pinned host key and shared
/// connection `connect` uses — with `identity` tried first when given.
fn ssh(
    files: &SshFiles,
    view: &WorkspaceView,
    cfg: &UserConfig,
    identity: Option<&Path>,
    remote: &str,
) -> Result<ExitStatus> {
    let alias = configure_ssh(files, view, cfg)?;
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-F").arg(&files.user_config).args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]);
    if let Some(key) = identity {
        cmd.arg("-i").arg(key);
    }
    cmd.arg(&alias).arg(remote);
    cmd.status().map_err(|e| Error::new(format!("could not run ssh: {e}"), "install an OpenSSH client (`ssh`)"))
}

/// The remote command that prints (or follows) a service's journal, or the setup log.
fn log_command(service: Option<&str>, follow: bool, lines: u32) -> String {
    let f = if follow { " -f" } else { "" };
    match service {
        Some("setup") => format!("tail -n {lines}{f} ~/.nexus/logs/setup.log"),
        Some(name) => format!("sudo journalctl -u nexus-svc-{name}.service -n {lines}{f} --no-pager -o short-iso"),
        None => format!(
            "{{ test -f ~/.nexus/logs/setup.log && tail -n {lines} ~/.nexus/logs/setup.log; }}; sudo journalctl -u 'nexus-svc-*' -n {lines}{f} --no-pager -o short-iso"
        ),
    }
}

#[cfg(test)]
mod tests {
    use nexus_testkit::ssh::{Sshd, TestKey};

    use super::*;

    fn workspace_on(sshd: &Sshd) -> WorkspaceView {
        serde_json::from_value(serde_json::json!({
            "workspace_id": "ws-logs", "name": "site", "owner": "demo", "status": "running",
            "message": null, "hint": null, "provider": "lxc", "image": "nexus-base",
            "ssh": {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user, "host_key": sshd.host_key, "command": ""},
            "services": [], "services_source": "", "node": null, "resources": {"cpu": null, "memory": null},
            "repo": {"owner": "demo", "name": "site", "url": "git://127.0.0.1/demo/site", "branch": "main",
                     "commit": null, "path": "/home/dev/site"},
            "created_at": "", "updated_at": ""
        }))
        .unwrap()
    }

    #[test]
    fn logs_log_in_with_the_configured_key() {
        // Regression (bug d): logs always used ~/.ssh/id_ed25519, so with `ssh.key_path` elsewhere (as in
        // `nexus up`'s demo home) it failed "Permission denied" where `connect` and `ssh` got in.
        let key = TestKey::generate("designer");
        let sshd = Sshd::start(&key);
        let home = tempfile::tempdir().unwrap();
        let files = SshFiles::with_runtime_dir(home.path(), None);
        let mut cfg = UserConfig::default();
        cfg.ssh.key_path = key.path.display().to_string();
        let status = ssh(&files, &workspace_on(&sshd), &cfg, None, "true").unwrap();
        assert!(status.success(), "ssh exited {status}; sshd: {}", sshd.log());
    }

    #[test]
    fn log_commands() {
        assert_eq!(
            log_command(Some("web"), true, 50),
            "sudo journalctl -u nexus-svc-web.service -n 50 -f --no-pager -o short-iso"
        );
        assert_eq!(log_command(Some("setup"), false, 10), "tail -n 10 ~/.nexus/logs/setup.log");
        assert_eq!(log_command(Some("setup"), true, 200), "tail -n 200 -f ~/.nexus/logs/setup.log");
        assert!(log_command(None, false, 5).contains("nexus-svc-*"));
    }
}
