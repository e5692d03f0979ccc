//! systemd units for `nexus server` and `nexus agent`: rendered from the flags the operator gives
//! (checked by the same parser as the commands themselves), installed, enabled and started in one
//! command, with restart on failure, start at boot and a readiness signal (the server notifies
//! systemd once it listens: `Type=notify`).
//!
//! Where systemd is not PID 1 (containers, these CI machines) the unit is still written, and the
//! command says how to start the process instead of pretending it did.

use std::path::{Path, PathBuf};

use nexus_cli::system::System;

use crate::error::{Error, Result};

/// Where units go by default.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";

/// Which process the unit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `nexus server`.
    Server,
    /// `nexus agent`.
    Agent,
}

impl Role {
    /// The subcommand, and the unit's name without `.service`.
    pub fn command(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }

    /// `nexus-server.service`, `nexus-agent.service`.
    pub fn unit_name(self) -> String {
        format!("nexus-{}.service", self.command())
    }
}

/// What to install.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Server or agent.
    pub role: Role,
    /// The `nexus` binary the unit runs (absolute).
    pub binary: PathBuf,
    /// The role's flags, already checked by its parser.
    pub args: Vec<String>,
    /// Directory the unit file goes to.
    pub unit_dir: PathBuf,
    /// Enable and start it now (when systemd runs this host).
    pub start: bool,
}

/// Quotes one argument for `ExecStart=`: systemd splits on whitespace and honours double quotes
/// and backslash escapes; `%` and `$` are specifiers and variables there, so they are doubled.
fn quote(arg: &str) -> String {
    let escaped = arg.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%").replace('$', "$$");
    if !escaped.is_empty() && !escaped.chars().any(|c| c.is_whitespace() || c == '\'' || c == ';') && escaped == arg {
        escaped
    } else {
        format!("\"{escaped}\"")
    }
}

/// The unit file's text.
pub fn render(role: Role, binary: &Path, args: &[String]) -> String {
    let exec: Vec<String> = std::iter::once(binary.display().to_string())
        .chain(std::iter::once(role.command().to_string()))
        .chain(args.iter().cloned())
        .map(|a| quote(&a))
        .collect();
    let exec = exec.join(" ");
    match role {
        Role::Server => format!(
            "# Installed by `nexus node service install server`; re-run it to change the flags.\n\
             [Unit]\n\
             Description=Nexus coordination server\n\
             After=network-online.target\n\
             Wants=network-online.target\n\
             # Restarts are unlimited but spaced: a crash loop costs little and heals by itself.\n\
             StartLimitIntervalSec=0\n\
             \n\
             [Service]\n\
             # The server tells systemd when it listens (READY=1), so units ordered after it wait for a working API.\n\
             Type=notify\n\
             NotifyAccess=main\n\
             ExecStart={exec}\n\
             Restart=always\n\
             RestartSec=2\n\
             TimeoutStartSec=60\n\
             # Every SSH session to a workspace is two sockets on the server.\n\
             LimitNOFILE=1048576\n\
             UMask=0077\n\
             NoNewPrivileges=yes\n\
             PrivateTmp=yes\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n"
        ),
        Role::Agent => format!(
            "# Installed by `nexus node service install agent`; re-run it to change the flags.\n\
             [Unit]\n\
             Description=Nexus node agent (drives this host's LXD)\n\
             After=network-online.target lxd.service lxd.socket nexus-server.service\n\
             Wants=network-online.target lxd.service\n\
             StartLimitIntervalSec=0\n\
             \n\
             [Service]\n\
             Type=exec\n\
             ExecStart={exec}\n\
             Restart=always\n\
             RestartSec=2\n\
             # 78: the server refused this node's identity (revoked, or enrolment refused); restarting cannot help.\n\
             RestartPreventExitStatus=78\n\
             # Workspaces are LXD's containers, not the agent's children: stopping the agent leaves them running.\n\
             KillMode=process\n\
             LimitNOFILE=1048576\n\
             UMask=0077\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n"
        ),
    }
}

/// What the install did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed {
    /// Server or agent.
    pub role: Role,
    /// The unit file written.
    pub unit_path: PathBuf,
    /// Whether systemd runs this host (and so whether the unit was enabled and started).
    pub systemd: bool,
    /// Whether the unit changed (a re-run with the same flags changes nothing).
    pub changed: bool,
}

/// Writes the unit and, where systemd runs the host and `start` is set, reloads systemd and
/// enables and (re)starts the unit (and, for an agent, LXD's own units). Idempotent.
pub fn install(spec: &ServiceSpec, sys: &dyn System) -> Result<Installed> {
    if !spec.binary.is_absolute() {
        return Err(Error::new(
            format!("the binary path {} is not absolute", spec.binary.display()),
            "pass --binary /usr/local/bin/nexus (systemd needs an absolute path)",
        ));
    }
    let text = render(spec.role, &spec.binary, &spec.args);
    let unit_path = spec.unit_dir.join(spec.role.unit_name());
    let io = |e: std::io::Error| {
        Error::new(
            format!("could not write {}: {e}", unit_path.display()),
            "run it as root (`sudo nexus node service install ...`), or pass --unit-dir",
        )
    };
    let changed = std::fs::read_to_string(&unit_path).ok().as_deref() != Some(text.as_str());
    if changed {
        std::fs::create_dir_all(&spec.unit_dir).map_err(io)?;
        std::fs::write(&unit_path, &text).map_err(io)?;
    }
    let systemd = sys.run(&["test", "-d", "/run/systemd/system"], None).is_ok_and(|o| o.ok());
    if systemd && spec.start {
        let unit = spec.role.unit_name();
        let mut steps: Vec<Vec<&str>> = vec![vec!["systemctl", "daemon-reload"]];
        if spec.role == Role::Agent {
            // LXD's own units, so the daemon the agent drives comes back at boot and after a crash.
            steps.push(vec!["systemctl", "enable", "--now", "lxd.socket", "lxd.service"]);
        }
        steps.push(vec!["systemctl", "enable", &unit]);
        steps.push(vec!["systemctl", if changed { "restart" } else { "start" }, &unit]);
        for argv in steps {
            let out = sys
                .run(&argv, None)
                .map_err(|e| Error::new(format!("could not run {}: {e}", argv.join(" ")), "is systemd installed?"))?;
            if !out.ok() {
                return Err(Error::new(
                    format!("`{}` failed: {}", argv.join(" "), out.stderr.trim()),
                    format!("see `journalctl -u {unit} -n 50` and `systemctl status {unit}`"),
                ));
            }
        }
    }
    Ok(Installed { role: spec.role, unit_path, systemd, changed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_survive_systemd_quoting() {
        assert_eq!(quote("--data-dir"), "--data-dir");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("50%"), "\"50%%\"");
        assert_eq!(quote("$HOME"), "\"$$HOME\"");
        assert_eq!(quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn the_units_restart_start_at_boot_and_the_server_signals_readiness() {
        let server =
            render(Role::Server, Path::new("/usr/local/bin/nexus"), &["--data-dir".into(), "/var/lib/nexus".into()]);
        assert!(server.contains("ExecStart=/usr/local/bin/nexus server --data-dir /var/lib/nexus\n"), "{server}");
        for line in ["Type=notify", "Restart=always", "WantedBy=multi-user.target", "LimitNOFILE=1048576"] {
            assert!(server.lines().any(|l| l == line), "{line} missing:\n{server}");
        }
        let agent = render(Role::Agent, Path::new("/usr/local/bin/nexus"), &[]);
        for line in ["Restart=always", "KillMode=process", "Wants=network-online.target lxd.service"] {
            assert!(agent.lines().any(|l| l == line), "{line} missing:\n{agent}");
        }
    }

    /// systemd's own checker accepts both units as rendered (it warns, exit 0, on a bad directive,
    /// so any remark about our file fails the test).
    #[test]
    fn systemd_analyze_verify_accepts_both_units() {
        let dir = tempfile::tempdir().unwrap();
        let binary = std::env::current_exe().unwrap();
        for role in [Role::Server, Role::Agent] {
            let path = dir.path().join(role.unit_name());
            let args = ["--data-dir".to_string(), "/var/lib/nexus".into(), "--public-host".into(), "a b%".into()];
            std::fs::write(&path, render(role, &binary, &args)).unwrap();
            let out = std::process::Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&path)
                .output()
                .expect("systemd-analyze runs (scripts/prereqs.sh installs systemd)");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let about_ours: Vec<&str> = stderr.lines().filter(|l| l.contains(&role.unit_name())).collect();
            assert!(out.status.success() && about_ours.is_empty(), "{role:?}: {stderr}");
        }
    }
}
