//! `nexus node service install server|agent`: the process as a systemd service, in one command.

use nexus_cli::system::System;
use nexus_cli::ui::{Report, Ui};

use crate::error::Result;
use crate::service::{Installed, Role, ServiceSpec};

impl Report for Installed {
    fn text(&self, ui: &Ui) {
        let unit = self.role.unit_name();
        let what = if self.changed { "wrote" } else { "unchanged:" };
        ui.ok(&format!("{what} {}", self.unit_path.display()));
        if self.systemd {
            ui.ok(&format!("{unit} enabled (starts at boot, restarts on failure) and running"));
            ui.info(&format!("logs: journalctl -u {unit} -f"));
        } else {
            ui.warn("systemd is not running this host (PID 1 is something else): the unit is written, not started");
            ui.info(&format!(
                "on a systemd host: `systemctl daemon-reload && systemctl enable --now {unit}`; here, run `nexus {}` under your supervisor",
                self.role.command()
            ));
        }
    }
}

/// Installs (or updates) the unit; see [`crate::service::install`].
pub fn install(spec: &ServiceSpec, sys: &dyn System) -> Result<Installed> {
    crate::service::install(spec, sys)
}

/// The role named on the command line.
pub fn role(server: bool) -> Role {
    if server {
        Role::Server
    } else {
        Role::Agent
    }
}
