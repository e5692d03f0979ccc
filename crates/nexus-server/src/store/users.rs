//! Users and their API tokens.

use rusqlite::{params, OptionalExtension, Row};

use super::{now, Store};
use crate::error::Result;

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub id: i64,
    pub github_username: String,
    pub github_id: i64,
    /// `authorized_keys` line.
    pub ssh_pubkey: String,
    /// `SHA256:...`.
    pub ssh_fingerprint: String,
}

impl Store {
    /// Creates or updates the user with this GitHub id; returns the row id.
    pub(crate) async fn upsert_user(
        &self,
        github_username: &str,
        github_id: i64,
        ssh_pubkey: &str,
        fingerprint: &str,
    ) -> Result<i64> {
        let (login, key, fp) = (github_username.to_owned(), ssh_pubkey.to_owned(), fingerprint.to_owned());
        self.run(move |conn| {
            // A user renamed on GitHub keeps their id, so the id is the identity.
            conn.execute(
                "INSERT INTO users (github_username, github_id, ssh_pubkey, ssh_fingerprint, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(github_id) DO UPDATE SET github_username = excluded.github_username,
                     ssh_pubkey = excluded.ssh_pubkey, ssh_fingerprint = excluded.ssh_fingerprint",
                params![login, github_id, key, fp, now()],
            )?;
            Ok(conn.query_row("SELECT id FROM users WHERE github_id = ?1", [github_id], |r| r.get(0))?)
        })
        .await
    }

    /// Stores the hash of a new API token for a user.
    pub(crate) async fn add_token(&self, user_id: i64, token_hash: &str) -> Result<()> {
        let hash = token_hash.to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO api_tokens (token_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
                params![hash, user_id, now()],
            )?;
            Ok(())
        })
        .await
    }

    /// The user a token hash belongs to.
    pub(crate) async fn user_by_token(&self, token_hash: &str) -> Result<Option<User>> {
        let hash = token_hash.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT u.id, u.github_username, u.github_id, u.ssh_pubkey, u.ssh_fingerprint
                     FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1",
                    [hash],
                    user_from_row,
                )
                .optional()?)
        })
        .await
    }
}

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        github_username: r.get(1)?,
        github_id: r.get(2)?,
        ssh_pubkey: r.get(3)?,
        ssh_fingerprint: r.get(4)?,
    })
}
