//! The audit log: who did what to which user, workspace or node, when and from where.

use rusqlite::params;

use super::{now, Store};
use crate::error::Result;

/// One entry, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditRow {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// A GitHub login, `operator`, or `node:<name>`.
    pub actor: String,
    /// `user.register`, `workspace.create`, `node.enrol`, ...
    pub action: String,
    /// What it was done to: a login, a workspace id, a node name.
    pub target: String,
    /// The peer address of the request.
    pub source: Option<String>,
    /// Anything else worth keeping (a key fingerprint, a repo).
    pub detail: Option<String>,
}

/// What to append; the time is the store's.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewAudit {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub source: Option<String>,
    pub detail: Option<String>,
}

impl Store {
    /// Appends an entry.
    pub(crate) async fn append_audit(&self, entry: NewAudit) -> Result<()> {
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO audit (at, actor, action, target, source, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![now(), entry.actor, entry.action, entry.target, entry.source, entry.detail],
            )?;
            Ok(())
        })
        .await
    }

    /// The newest `limit` entries (optionally of actions starting with `action`), oldest first.
    pub(crate) async fn audit_log(&self, limit: u32, action: Option<String>) -> Result<Vec<AuditRow>> {
        self.run(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, at, actor, action, target, source, detail FROM (
                     SELECT * FROM audit WHERE ?1 IS NULL OR action = ?1 OR action LIKE ?1 || '.%'
                     ORDER BY id DESC LIMIT ?2)
                 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![action, limit], |r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    source: r.get(5)?,
                    detail: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &'static str, target: &str) -> NewAudit {
        NewAudit { actor: "alice".into(), action, target: target.into(), source: Some("10.0.0.9".into()), detail: None }
    }

    #[tokio::test]
    async fn entries_come_back_in_order_filtered_by_action_and_cannot_be_changed_or_removed() {
        let store = Store::in_memory().unwrap();
        store.append_audit(entry("user.register", "alice")).await.unwrap();
        store.append_audit(entry("workspace.create", "ws-1")).await.unwrap();
        store.append_audit(entry("workspace.delete", "ws-1")).await.unwrap();
        let all = store.audit_log(10, None).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
            ["user.register", "workspace.create", "workspace.delete"]
        );
        assert_eq!(all[0].source.as_deref(), Some("10.0.0.9"));
        let ws = store.audit_log(10, Some("workspace".into())).await.unwrap();
        assert_eq!(ws.len(), 2);
        assert_eq!(store.audit_log(1, None).await.unwrap()[0].action, "workspace.delete", "the newest when limited");
        // Append-only, even for someone holding the database connection.
        let tamper = store.run(|conn| Ok(conn.execute("DELETE FROM audit", [])?)).await;
        assert!(tamper.is_err(), "deleting audit entries must fail");
        let rewrite = store.run(|conn| Ok(conn.execute("UPDATE audit SET actor = 'mallory'", [])?)).await;
        assert!(rewrite.is_err(), "rewriting audit entries must fail");
        assert_eq!(store.audit_log(10, None).await.unwrap(), all);
    }
}
