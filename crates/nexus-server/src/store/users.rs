//! Users, their SSH keys and their API tokens.

use rusqlite::{params, OptionalExtension, Row};

use super::{now, Store};
use crate::error::Result;

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub id: i64,
    pub github_username: String,
    pub github_id: i64,
    /// `authorized_keys` line of the key registered first.
    pub ssh_pubkey: String,
    /// `SHA256:...` of that key.
    pub ssh_fingerprint: String,
}

/// An API token as stored, with the user it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenRecord {
    pub user: User,
    /// Unix seconds after which the token no longer authenticates.
    pub expires_at: i64,
    /// Revoked (`POST /api/v1/auth/logout`); never authenticates again.
    pub revoked: bool,
}

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

const USER_COLUMNS: &str = "u.id, u.github_username, u.github_id, u.ssh_pubkey, u.ssh_fingerprint";

impl Store {
    /// Creates a user with their first key; returns the row id. The caller has checked that
    /// neither the login nor the GitHub id is taken (the UNIQUE constraints still guard a race).
    pub(crate) async fn create_user(
        &self,
        github_username: &str,
        github_id: i64,
        ssh_pubkey: &str,
        fingerprint: &str,
    ) -> Result<i64> {
        let (login, key, fp) = (github_username.to_owned(), ssh_pubkey.to_owned(), fingerprint.to_owned());
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let at = now();
            tx.execute(
                "INSERT INTO users (github_username, github_id, ssh_pubkey, ssh_fingerprint, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![login, github_id, key, fp, at],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO user_keys (user_id, ssh_pubkey, ssh_fingerprint, added_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, key, fp, at],
            )?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    /// Adds a key to a user (a no-op when they have it) and records their current login (GitHub
    /// users can rename themselves; the id stays). True when the key is new.
    pub(crate) async fn add_user_key(
        &self,
        user_id: i64,
        github_username: &str,
        ssh_pubkey: &str,
        fingerprint: &str,
    ) -> Result<bool> {
        let (login, key, fp) = (github_username.to_owned(), ssh_pubkey.to_owned(), fingerprint.to_owned());
        self.run(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("UPDATE users SET github_username = ?2 WHERE id = ?1", params![user_id, login])?;
            let added = tx.execute(
                "INSERT INTO user_keys (user_id, ssh_pubkey, ssh_fingerprint, added_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(user_id, ssh_fingerprint) DO NOTHING",
                params![user_id, key, fp, now()],
            )?;
            tx.commit()?;
            Ok(added > 0)
        })
        .await
    }

    /// The user with this login (any case), if any.
    pub(crate) async fn user_by_login(&self, github_username: &str) -> Result<Option<User>> {
        let login = github_username.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.github_username = ?1"),
                    [login],
                    user_from_row,
                )
                .optional()?)
        })
        .await
    }

    /// The user with this GitHub id, if any.
    pub(crate) async fn user_by_github_id(&self, github_id: i64) -> Result<Option<User>> {
        self.run(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.github_id = ?1"),
                    [github_id],
                    user_from_row,
                )
                .optional()?)
        })
        .await
    }

    /// Every key of a user, as `authorized_keys` lines, oldest first (workspaces read them joined,
    /// in `WORKSPACE_COLUMNS`).
    #[cfg(test)]
    pub(crate) async fn user_keys(&self, user_id: i64) -> Result<Vec<String>> {
        self.run(move |conn| {
            let mut stmt =
                conn.prepare("SELECT ssh_pubkey FROM user_keys WHERE user_id = ?1 ORDER BY added_at, rowid")?;
            let rows = stmt.query_map([user_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Stores the hash of a new API token for a user, valid until `expires_at` (unix seconds).
    pub(crate) async fn add_api_token(&self, user_id: i64, token_hash: &str, expires_at: i64) -> Result<()> {
        let hash = token_hash.to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO api_tokens (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, user_id, now(), expires_at],
            )?;
            Ok(())
        })
        .await
    }

    /// The token with this hash and its user, whether or not it is still valid.
    pub(crate) async fn token(&self, token_hash: &str) -> Result<Option<TokenRecord>> {
        let hash = token_hash.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {USER_COLUMNS}, t.expires_at, t.revoked_at IS NOT NULL
                         FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1"
                    ),
                    [hash],
                    |r| Ok(TokenRecord { user: user_from_row(r)?, expires_at: r.get(5)?, revoked: r.get(6)? }),
                )
                .optional()?)
        })
        .await
    }

    /// Revokes a token; false when it was already revoked (or unknown).
    pub(crate) async fn revoke_token(&self, token_hash: &str) -> Result<bool> {
        let hash = token_hash.to_owned();
        self.run(move |conn| {
            let n = conn.execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
                params![hash, now()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    /// Creates the user, or adds the key to the user with this GitHub id (store tests' shorthand).
    #[cfg(test)]
    pub(crate) async fn upsert_user(&self, login: &str, github_id: i64, key: &str, fp: &str) -> Result<i64> {
        match self.user_by_github_id(github_id).await? {
            Some(u) => {
                self.add_user_key(u.id, login, key, fp).await?;
                Ok(u.id)
            }
            None => self.create_user(login, github_id, key, fp).await,
        }
    }

    /// A token valid for a year (store tests' shorthand).
    #[cfg(test)]
    pub(crate) async fn add_token(&self, user_id: i64, token_hash: &str) -> Result<()> {
        self.add_api_token(user_id, token_hash, unix_now() + 365 * 86400).await
    }

    /// The user of a valid token (store tests' shorthand).
    #[cfg(test)]
    pub(crate) async fn user_by_token(&self, token_hash: &str) -> Result<Option<User>> {
        Ok(self.token(token_hash).await?.filter(|t| !t.revoked && t.expires_at > unix_now()).map(|t| t.user))
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
