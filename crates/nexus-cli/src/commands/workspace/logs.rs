//! `nexus workspace logs`: a workspace's setup log and service journals, read (or followed) over SSH.

use std::path::PathBuf;

use super::open;
use crate::error::{Error, Result};

/// `nexus workspace logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    /// Workspace name or id.
    pub workspace: String,
    /// A service name, or `setup`; every service and the setup log when `None`.
    pub service: Option<String>,
    /// Keep printing new lines.
    pub follow: bool,
    /// How many lines of history.
    pub lines: u32,
    /// The private key to log in with, instead of the configured one.
    pub identity: Option<PathBuf>,
    /// Server override.
    pub server: Option<String>,
}

/// Prints the logs over SSH, with the terminal's stdout; returns once ssh ends.
pub async fn run(opts: &LogsOptions) -> Result<()> {
    let (_, ws) = open(&opts.workspace, opts.server.clone()).await?;
    let key = opts
        .identity
        .clone()
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".ssh/id_ed25519"));
    // Pin the host key the server reported: no trust-on-first-use prompt.
    let known = tempfile::NamedTempFile::new()
        .map_err(|e| Error::new(format!("cannot make a temporary known_hosts file: {e}"), "check $TMPDIR"))?;
    if let Some(hk) = &ws.ssh.host_key {
        std::fs::write(known.path(), format!("[{}]:{} {hk}\n", ws.ssh.host, ws.ssh.port))
            .map_err(|e| Error::new(format!("cannot write {}: {e}", known.path().display()), "check $TMPDIR"))?;
    }
    let strict =
        if ws.ssh.host_key.is_some() { "StrictHostKeyChecking=yes" } else { "StrictHostKeyChecking=accept-new" };
    let remote = log_command(opts.service.as_deref(), opts.follow, opts.lines);
    let status = std::process::Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o", strict])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.path().display()))
        .arg("-i")
        .arg(&key)
        .args(["-p", &ws.ssh.port.to_string(), &format!("{}@{}", ws.ssh.user, ws.ssh.host), &remote])
        .status()
        .map_err(|e| Error::new(format!("could not run ssh: {e}"), "install an OpenSSH client (`ssh`)"))?;
    if !status.success() {
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
    use super::*;

    #[test]
    fn log_commands() {
        assert_eq!(
            log_command(Some("web"), true, 50),
            "sudo journalctl -u nexus-svc-web.service -n 50 -f --no-pager -o short-iso"
        );
        assert_eq!(log_command(Some("setup"), false, 10), "tail -n 10 ~/.nexus/logs/setup.log");
        assert!(log_command(None, false, 5).contains("nexus-svc-*"));
    }
}
