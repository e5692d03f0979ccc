//! `nexus node check`: whether this node holds the planned running workspaces, and what limits it.

use nexus_cli::ui::{Report, Ui};

use crate::check::{Level, NodeCheck};

impl Report for NodeCheck {
    fn text(&self, ui: &Ui) {
        for f in &self.findings {
            let line = format!("{}: {}", f.what, f.detail);
            match f.level {
                Level::Ok => ui.ok(&line),
                Level::Warn | Level::Fail => ui.warn(&line),
            }
            if let Some(fix) = &f.fix {
                ui.info(&format!("  → {fix}"));
            }
        }
        let verdict = format!("this node holds about {} running workspaces; planned: {}", self.holds, self.planned);
        if self.ok() {
            ui.ok(&verdict);
        } else {
            ui.warn(&verdict);
        }
    }
}

impl Report for crate::lxd_restart::Restarted {
    fn text(&self, ui: &Ui) {
        for c in &self.cleared {
            ui.info(&format!("cleared stale firewall state: {c}"));
        }
        ui.ok(&format!("LXD answers (started with {})", self.started_with));
    }
}
