//! Nodes: their enrolment (a credential, stored hashed, bound to the name), liveness, the join
//! tokens that enrol them, and the kind of command last issued to each workspace (what a node's
//! report may answer).

use rusqlite::{params, OptionalExtension};

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
    /// Of those, the ones pending, creating or running (what uses its memory and LXD).
    pub active: u32,
    /// RFC 3339; `None` for a node from before enrolment existed.
    pub enrolled_at: Option<String>,
    /// RFC 3339; set once the operator revoked its credential.
    pub revoked_at: Option<String>,
}

/// An operator-made (or the revoked default) join token, without the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinTokenRow {
    pub id: String,
    /// SHA-256 of the token.
    pub token_hash: String,
    pub single_use: bool,
    pub created_at: String,
    pub used_at: Option<String>,
    pub used_by: Option<String>,
    pub revoked_at: Option<String>,
}

/// Why a join token enrols nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinTokenUse {
    /// Neither an operator-made token nor the default one.
    Unknown,
    /// Revoked by the operator.
    Revoked,
    /// Single-use, and used already.
    Spent,
}

/// Why a name cannot be enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameRefusal {
    /// The name already has a live (unrevoked) credential.
    Taken,
    /// The name was revoked; it stays so (whoever holds a join token must not get it back).
    Revoked,
}

/// What became of an enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Enrolment {
    /// The name is bound to the new credential; `by_default` when the default join token did it.
    Bound { by_default: bool },
    /// The join token enrols nothing (never [`JoinTokenUse::Accepted`]).
    TokenRefused(JoinTokenUse),
    /// The name cannot be enrolled; the join token was not spent.
    NameRefused(NameRefusal),
}

impl Store {
    /// Records that a node said hello (its project and the time).
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

    /// Enrols `name` with the join token hashed `token_hash` (`is_default`: it is the default token):
    /// checks the token, binds the name to the credential hashed `credential_hash` unless it has a
    /// live one or was revoked (a name that joined before enrolment existed can be enrolled once),
    /// and marks the token used — all in one transaction, so two enrolments cannot share a
    /// single-use token or a name, and a refused name does not spend the token.
    pub(crate) async fn enrol(
        &self,
        token_hash: &str,
        is_default: bool,
        name: &str,
        lxd_project: &str,
        credential_hash: &str,
    ) -> Result<Enrolment> {
        let token = token_hash.to_owned();
        let (name, project, hash) = (name.to_owned(), lxd_project.to_owned(), credential_hash.to_owned());
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let row: Option<(bool, Option<String>, Option<String>)> = tx
                .query_row("SELECT single_use, used_at, revoked_at FROM join_tokens WHERE token_hash = ?1", [&token], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let by_default = match row {
                None if is_default => true,
                None => return Ok(Enrolment::TokenRefused(JoinTokenUse::Unknown)),
                Some((_, _, Some(_))) => return Ok(Enrolment::TokenRefused(JoinTokenUse::Revoked)),
                Some((true, Some(_), None)) => return Ok(Enrolment::TokenRefused(JoinTokenUse::Spent)),
                Some(_) => false,
            };
            let bound = tx.execute(
                "INSERT INTO nodes (name, lxd_project, joined_at, credential_hash, enrolled_at) VALUES (?1, ?2, ?3, ?4, ?3)
                 ON CONFLICT(name) DO UPDATE SET lxd_project = excluded.lxd_project,
                     credential_hash = excluded.credential_hash, enrolled_at = excluded.enrolled_at
                 WHERE nodes.credential_hash IS NULL AND nodes.revoked_at IS NULL",
                params![name, project, now(), hash],
            )?;
            if bound == 0 {
                let revoked: Option<String> =
                    tx.query_row("SELECT revoked_at FROM nodes WHERE name = ?1", [&name], |r| r.get(0))?;
                let why = if revoked.is_some() { NameRefusal::Revoked } else { NameRefusal::Taken };
                return Ok(Enrolment::NameRefused(why));
            }
            if row.is_some() {
                tx.execute(
                    "UPDATE join_tokens SET used_at = ?2, used_by = ?3 WHERE token_hash = ?1",
                    params![token, now(), name],
                )?;
            }
            tx.commit()?;
            Ok(Enrolment::Bound { by_default })
        })
        .await
    }

    /// The node a live credential belongs to.
    pub(crate) async fn node_by_credential(&self, credential_hash: &str) -> Result<Option<String>> {
        let hash = credential_hash.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row("SELECT name FROM nodes WHERE credential_hash = ?1 AND revoked_at IS NULL", [hash], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    /// Revokes a node's credential; false if there is no such node.
    pub(crate) async fn revoke_node(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.run(move |conn| {
            let changed = conn.execute(
                "UPDATE nodes SET credential_hash = NULL, revoked_at = ?2 WHERE name = ?1",
                params![name, now()],
            )?;
            Ok(changed == 1)
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
                "SELECT n.name, n.lxd_project, n.last_heartbeat, (SELECT COUNT(*) FROM workspaces w WHERE w.node_name = n.name),
                        n.enrolled_at, n.revoked_at,
                        (SELECT COUNT(*) FROM workspaces w WHERE w.node_name = n.name
                            AND w.status IN ('pending', 'creating', 'running'))
                 FROM nodes n ORDER BY n.name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(NodeRow {
                    name: r.get(0)?,
                    lxd_project: r.get(1)?,
                    last_heartbeat: r.get(2)?,
                    workspaces: r.get(3)?,
                    enrolled_at: r.get(4)?,
                    revoked_at: r.get(5)?,
                    active: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    // ---- join tokens ----------------------------------------------------------------------------

    /// Stores an operator-made join token (its hash).
    pub(crate) async fn add_join_token(&self, id: &str, token_hash: &str, single_use: bool) -> Result<()> {
        let (id, hash) = (id.to_owned(), token_hash.to_owned());
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO join_tokens (id, token_hash, single_use, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, hash, single_use, now()],
            )?;
            Ok(())
        })
        .await
    }

    /// Revokes join token `id`; `token_hash` (the default token's) inserts the row if it is not
    /// there yet. False if there is no such token.
    pub(crate) async fn revoke_join_token(&self, id: &str, token_hash: Option<&str>) -> Result<bool> {
        let (id, hash) = (id.to_owned(), token_hash.map(str::to_owned));
        self.run(move |conn| {
            let changed = match hash {
                Some(hash) => conn.execute(
                    "INSERT INTO join_tokens (id, token_hash, single_use, created_at, revoked_at) VALUES (?1, ?2, 0, ?3, ?3)
                     ON CONFLICT(id) DO UPDATE SET token_hash = excluded.token_hash, revoked_at = excluded.revoked_at",
                    params![id, hash, now()],
                )?,
                None => conn.execute(
                    "UPDATE join_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                    params![id, now()],
                )?,
            };
            Ok(changed == 1)
        })
        .await
    }

    /// Every join token in the table, oldest first.
    pub(crate) async fn list_join_tokens(&self) -> Result<Vec<JoinTokenRow>> {
        self.run(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, single_use, created_at, used_at, used_by, revoked_at, token_hash FROM join_tokens ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(JoinTokenRow {
                    id: r.get(0)?,
                    single_use: r.get(1)?,
                    created_at: r.get(2)?,
                    used_at: r.get(3)?,
                    used_by: r.get(4)?,
                    revoked_at: r.get(5)?,
                    token_hash: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    // ---- what a report may answer ---------------------------------------------------------------

    /// Issues a workspace's next generation for a command of kind `op` (`ensure`, `stop`,
    /// `delete`) and remembers the kind, so the node's report can be checked against it.
    pub(crate) async fn issue_generation(&self, id: &str, op: &'static str) -> Result<i64> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn.query_row(
                "UPDATE workspaces SET generation = generation + 1, last_op = ?2 WHERE id = ?1 RETURNING generation",
                params![id, op],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// The kind of command issued as `generation` of workspace `id`, if that is its latest.
    pub(crate) async fn op_at(&self, id: &str, generation: i64) -> Result<Option<String>> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT last_op FROM workspaces WHERE id = ?1 AND generation = ?2",
                    params![id, generation],
                    |r| r.get::<_, Option<String>>(0),
                )
                .optional()?
                .flatten())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "default-hash";

    /// Enrols as the tests' default token does when `token` is [`DEFAULT`].
    async fn enrol(s: &Store, token: &str, name: &str, credential: &str) -> Enrolment {
        s.enrol(token, token == DEFAULT, name, "p", credential).await.unwrap()
    }

    #[tokio::test]
    async fn a_name_with_a_live_credential_cannot_be_enrolled_again_nor_a_revoked_one() {
        let s = Store::in_memory().unwrap();
        let bound = Enrolment::Bound { by_default: true };
        assert_eq!(enrol(&s, DEFAULT, "n1", "h1").await, bound);
        assert_eq!(enrol(&s, DEFAULT, "n1", "h2").await, Enrolment::NameRefused(NameRefusal::Taken));
        assert_eq!(s.node_by_credential("h1").await.unwrap().as_deref(), Some("n1"));
        assert_eq!(s.node_by_credential("h2").await.unwrap(), None);
        assert!(s.revoke_node("n1").await.unwrap());
        assert_eq!(s.node_by_credential("h1").await.unwrap(), None, "a revoked credential opens nothing");
        let again = enrol(&s, DEFAULT, "n1", "h3").await;
        assert_eq!(again, Enrolment::NameRefused(NameRefusal::Revoked), "a revoked name stays revoked");
        assert_eq!(s.node_by_credential("h3").await.unwrap(), None);
        assert!(!s.revoke_node("nope").await.unwrap());
    }

    #[tokio::test]
    async fn a_node_from_before_enrolment_can_enrol_once() {
        let s = Store::in_memory().unwrap();
        s.upsert_node("old", "p").await.unwrap();
        assert_eq!(enrol(&s, DEFAULT, "old", "h").await, Enrolment::Bound { by_default: true });
        assert_eq!(enrol(&s, DEFAULT, "old", "h2").await, Enrolment::NameRefused(NameRefusal::Taken));
        s.upsert_node("old", "p").await.unwrap();
        assert_eq!(s.node_by_credential("h").await.unwrap().as_deref(), Some("old"), "hello keeps the credential");
    }

    #[tokio::test]
    async fn single_use_join_tokens_are_spent_once_and_revoked_ones_never_work() {
        let s = Store::in_memory().unwrap();
        s.add_join_token("jt-1", "once", true).await.unwrap();
        s.add_join_token("jt-2", "many", false).await.unwrap();
        let ok = Enrolment::Bound { by_default: false };
        let refused = |why| Enrolment::TokenRefused(why);
        // A refused name does not spend a single-use token.
        enrol(&s, DEFAULT, "a", "h0").await;
        assert_eq!(enrol(&s, "once", "a", "h1").await, Enrolment::NameRefused(NameRefusal::Taken));
        assert_eq!(enrol(&s, "once", "b", "h2").await, ok);
        assert_eq!(enrol(&s, "once", "c", "h3").await, refused(JoinTokenUse::Spent));
        assert_eq!(enrol(&s, "many", "c", "h3").await, ok);
        assert_eq!(enrol(&s, "many", "d", "h4").await, ok);
        assert_eq!(enrol(&s, "other", "e", "h5").await, refused(JoinTokenUse::Unknown));
        assert!(s.revoke_join_token("jt-2", None).await.unwrap());
        assert_eq!(enrol(&s, "many", "e", "h5").await, refused(JoinTokenUse::Revoked));
        assert!(s.revoke_join_token("default", Some(DEFAULT)).await.unwrap());
        assert_eq!(enrol(&s, DEFAULT, "e", "h5").await, refused(JoinTokenUse::Revoked));
        assert!(!s.revoke_join_token("jt-9", None).await.unwrap());
        let tokens = s.list_join_tokens().await.unwrap();
        assert_eq!(tokens.len(), 3);
        let once = tokens.iter().find(|t| t.id == "jt-1").unwrap();
        assert_eq!(once.used_by.as_deref(), Some("b"));
    }
}
