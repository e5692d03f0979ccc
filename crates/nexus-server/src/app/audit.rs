//! The audit log: every change to who may do what (registrations, keys, tokens, nodes) and to
//! workspaces, appended as it happens; the operator reads it.

use nexus_types::api::{AuditEntry, AuditLog};

use super::*;
use crate::store::NewAudit;

/// Most entries one read returns.
pub(crate) const MAX_AUDIT_READ: u32 = 1000;

impl App {
    /// Appends an entry. The action already happened, so a failed write is logged, not returned:
    /// refusing a delete that is done would lie to the caller.
    pub(crate) async fn audit(&self, caller: &Caller, action: &'static str, target: &str, detail: Option<String>) {
        self.audit_as(caller.label(), caller.source, action, target, detail).await;
    }

    /// [`App::audit`] for actors that are not API callers (a node, a registering user).
    pub(crate) async fn audit_as(
        &self,
        actor: String,
        source: Option<std::net::IpAddr>,
        action: &'static str,
        target: &str,
        detail: Option<String>,
    ) {
        let entry =
            NewAudit { actor, action, target: target.to_string(), source: source.map(|a| a.to_string()), detail };
        if let Err(e) = self.store.append_audit(entry).await {
            tracing::error!(action, target, error = %nexus_types::diagnostics::error_chain(&e), "could not write the audit log");
        }
    }

    /// The newest `limit` entries, optionally of one action or group (`workspace`). Operator only.
    pub(crate) async fn audit_log(
        &self,
        caller: &Caller,
        limit: Option<u32>,
        action: Option<String>,
    ) -> Result<AuditLog> {
        if !caller.is_operator() {
            return Err(ServerError::Forbidden {
                message: "reading the audit log needs the operator token".into(),
                hint: "use the token in `<data-dir>/operator-token` on the server (`nexus audit` reads it there)"
                    .into(),
            });
        }
        let limit = limit.unwrap_or(100).clamp(1, MAX_AUDIT_READ);
        let entries = self
            .store
            .audit_log(limit, action.filter(|a| !a.is_empty()))
            .await?
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at: r.at,
                actor: r.actor,
                action: r.action,
                target: r.target,
                source: r.source,
                detail: r.detail,
            })
            .collect();
        Ok(AuditLog { entries })
    }
}
