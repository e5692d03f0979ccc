//! `nexus audit`: the server's audit log — who registered, changed a key, created, started,
//! stopped or deleted a workspace, enrolled or revoked a node; when and from where (operator).

use nexus_types::api::AuditEntry;

use super::node::{operator_error, OperatorOptions};
use crate::error::Result;
use crate::ui::{Report, Ui};

/// Audit entries, oldest first.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct AuditEntries(pub Vec<AuditEntry>);

impl Report for AuditEntries {
    fn text(&self, ui: &Ui) {
        if self.0.is_empty() {
            ui.info("the audit log has no entries (of that action)");
            return;
        }
        ui.result(&format!(
            "{:20} {:16} {:18} {:16} {:15} {}",
            "TIME (UTC)", "ACTOR", "ACTION", "TARGET", "SOURCE", "DETAIL"
        ));
        for e in &self.0 {
            ui.result(&format!(
                "{:20} {:16} {:18} {:16} {:15} {}",
                e.at,
                e.actor,
                e.action,
                e.target,
                e.source.as_deref().unwrap_or("-"),
                e.detail.as_deref().unwrap_or("")
            ));
        }
    }
}

/// Reads the newest `limit` entries, optionally of one action (`workspace.delete`) or group (`node`).
pub async fn run(opts: &OperatorOptions, limit: u32, action: Option<&str>) -> Result<AuditEntries> {
    let entries = opts.client()?.audit(limit, action).await.map_err(operator_error)?;
    Ok(AuditEntries(entries))
}
