//! Nodes that joined.

use rusqlite::params;

use super::{now, Store};
use crate::error::Result;

/// A node that joined at least once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRow {
    pub name: String,
    pub lxd_project: String,
    /// RFC 3339.
    pub last_heartbeat: Option<String>,
    /// Workspaces placed on it.
    pub workspaces: u32,
}

impl Store {
    /// Records that a node joined (or re-joined).
    pub(crate) async fn upsert_node(&self, name: &str, lxd_project: &str) -> Result<()> {
        let (name, project) = (name.to_owned(), lxd_project.to_owned());
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO nodes (name, lxd_project, joined_at, last_heartbeat) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT(name) DO UPDATE SET lxd_project = excluded.lxd_project, last_heartbeat = excluded.last_heartbeat",
                params![name, project, now()],
            )?;
            Ok(())
        })
        .await
    }

    /// Records a heartbeat's time, for `GET /nodes`.
    pub(crate) async fn touch_node(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.run(move |conn| {
            conn.execute("UPDATE nodes SET last_heartbeat = ?2 WHERE name = ?1", params![name, now()])?;
            Ok(())
        })
        .await
    }

    /// Every node that ever joined, with how many workspaces it holds.
    pub(crate) async fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        self.run(|conn| {
            let mut stmt = conn.prepare(
                "SELECT n.name, n.lxd_project, n.last_heartbeat, (SELECT COUNT(*) FROM workspaces w WHERE w.node_name = n.name)
                 FROM nodes n ORDER BY n.name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(NodeRow { name: r.get(0)?, lxd_project: r.get(1)?, last_heartbeat: r.get(2)?, workspaces: r.get(3)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}
