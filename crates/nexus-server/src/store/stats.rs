//! Counts for the metrics endpoint.

use std::collections::HashMap;

use super::Store;
use crate::error::Result;

impl Store {
    /// How many workspaces are in each status (statuses with none are absent).
    pub(crate) async fn workspace_counts_by_status(&self) -> Result<HashMap<String, u64>> {
        self.run(|conn| {
            let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM workspaces GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}
