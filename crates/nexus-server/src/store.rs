//! SQLite persistence: one method per question the app asks; no HTTP or agent types in here.
//!
//! WAL mode with `synchronous=FULL`, so a write the API acknowledged survives `kill -9` and power loss.
//! Schema changes are numbered migrations run at start-up (tracked in `PRAGMA user_version`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use nexus_types::WorkspaceStatus;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Result;

/// Migrations, in order; index + 1 is the schema version after applying it.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    github_username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    github_id       INTEGER NOT NULL UNIQUE,
    ssh_pubkey      TEXT NOT NULL,
    ssh_fingerprint TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);
CREATE TABLE nodes (
    name           TEXT PRIMARY KEY,
    lxd_project    TEXT NOT NULL,
    joined_at      TEXT NOT NULL,
    last_heartbeat TEXT
);
CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    owner_id    INTEGER NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL,
    provider    TEXT NOT NULL,
    image       TEXT NOT NULL,
    cpu         INTEGER NOT NULL,
    memory      TEXT NOT NULL,
    repo_owner  TEXT NOT NULL,
    repo_name   TEXT NOT NULL,
    repo_url    TEXT NOT NULL,
    branch      TEXT NOT NULL,
    commit_sha  TEXT,
    status      TEXT NOT NULL,
    message     TEXT,
    hint        TEXT,
    ssh_port    INTEGER NOT NULL UNIQUE,
    host_key    TEXT,
    node_name   TEXT NOT NULL REFERENCES nodes(name),
    generation  INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (owner_id, name)
);
CREATE INDEX workspaces_by_node ON workspaces(node_name);
"#,
    r#"
ALTER TABLE workspaces ADD COLUMN plan TEXT NOT NULL DEFAULT '{}';
CREATE TABLE services (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    owner_id     INTEGER NOT NULL REFERENCES users(id),
    name         TEXT NOT NULL,
    port         INTEGER,
    mapped_port  INTEGER NOT NULL,
    status       TEXT NOT NULL,
    discovered   INTEGER NOT NULL,
    message      TEXT,
    hint         TEXT,
    last_logs    TEXT,
    PRIMARY KEY (workspace_id, name),
    UNIQUE (owner_id, mapped_port)
);
"#,
    r#"
ALTER TABLE workspaces ADD COLUMN git_token TEXT;
ALTER TABLE workspaces ADD COLUMN upstream_url TEXT;
"#,
];

/// First port handed out for a user's local forwards to services.
pub const FIRST_MAPPED_PORT: u16 = 23000;

/// A service as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRow {
    /// Name.
    pub name: String,
    /// Port inside the workspace.
    pub port: Option<u16>,
    /// Port on the user's machine, unique among the user's workspaces.
    pub mapped_port: u16,
    /// `starting`, `running`, `unhealthy`, `failed`.
    pub status: String,
    /// Found listening, not configured.
    pub discovered: bool,
    /// Failure message.
    pub message: Option<String>,
    /// Failure hint.
    pub hint: Option<String>,
    /// Last log lines.
    pub last_logs: Option<String>,
}

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// GitHub login.
    pub github_username: String,
    /// GitHub numeric id.
    pub github_id: i64,
    /// `authorized_keys` line.
    pub ssh_pubkey: String,
    /// `SHA256:...`.
    pub ssh_fingerprint: String,
}

/// A node that joined at least once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Name.
    pub name: String,
    /// LXD project.
    pub lxd_project: String,
    /// RFC 3339.
    pub last_heartbeat: Option<String>,
    /// Workspaces placed on it.
    pub workspaces: u32,
}

/// A workspace as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRow {
    /// `ws-...`.
    pub id: String,
    /// Owner's row id.
    pub owner_id: i64,
    /// Owner's GitHub login.
    pub owner: String,
    /// Owner's `authorized_keys` line.
    pub owner_key: String,
    /// Name.
    pub name: String,
    /// `lxc`.
    pub provider: String,
    /// Image alias ("" = the node's base image).
    pub image: String,
    /// CPU limit.
    pub cpu: u32,
    /// Memory limit.
    pub memory: String,
    /// Repo owner.
    pub repo_owner: String,
    /// Repo name.
    pub repo_name: String,
    /// Clone URL.
    pub repo_url: String,
    /// Branch.
    pub branch: String,
    /// Checked-out commit.
    pub commit: Option<String>,
    /// Status.
    pub status: WorkspaceStatus,
    /// Failure message.
    pub message: Option<String>,
    /// Failure hint.
    pub hint: Option<String>,
    /// Forwarded SSH port.
    pub ssh_port: u16,
    /// sshd host key.
    pub host_key: Option<String>,
    /// Node name.
    pub node: String,
    /// The service plan, JSON (`nexus_types::protocol::ProjectPlan`).
    pub plan: String,
    /// The owner's GitHub token for the repo's host, when they sent one.
    pub git_token: Option<String>,
    /// The repo this one was forked from.
    pub upstream_url: Option<String>,
    /// Owner's GitHub numeric id.
    pub owner_github_id: i64,
    /// Generation of the newest command.
    pub generation: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// What a new workspace starts with.
#[derive(Debug, Clone)]
pub struct NewWorkspace {
    /// `ws-...`.
    pub id: String,
    /// Owner's row id.
    pub owner_id: i64,
    /// Name.
    pub name: String,
    /// Image alias.
    pub image: String,
    /// CPU limit.
    pub cpu: u32,
    /// Memory limit.
    pub memory: String,
    /// Repo owner.
    pub repo_owner: String,
    /// Repo name.
    pub repo_name: String,
    /// Clone URL.
    pub repo_url: String,
    /// Branch.
    pub branch: String,
    /// Forwarded SSH port.
    pub ssh_port: u16,
    /// Node name.
    pub node: String,
    /// The service plan, JSON.
    pub plan: String,
    /// The owner's GitHub token for the repo's host.
    pub git_token: Option<String>,
    /// The repo this one was forked from.
    pub upstream_url: Option<String>,
}

/// The database.
pub struct Store {
    conn: Mutex<Connection>,
}

/// Current time as RFC 3339 UTC, second precision.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

const WORKSPACE_COLUMNS: &str =
    "w.id, w.owner_id, u.github_username, u.ssh_pubkey, w.name, w.provider, w.image, w.cpu, w.memory, \
     w.repo_owner, w.repo_name, w.repo_url, w.branch, w.commit_sha, w.status, w.message, w.hint, w.ssh_port, \
     w.host_key, w.node_name, w.generation, w.created_at, w.updated_at, w.plan, \
     w.git_token, w.upstream_url, u.github_id";

fn workspace_from_row(r: &Row<'_>) -> rusqlite::Result<WorkspaceRow> {
    let status: String = r.get(14)?;
    Ok(WorkspaceRow {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        owner: r.get(2)?,
        owner_key: r.get(3)?,
        name: r.get(4)?,
        provider: r.get(5)?,
        image: r.get(6)?,
        cpu: r.get(7)?,
        memory: r.get(8)?,
        repo_owner: r.get(9)?,
        repo_name: r.get(10)?,
        repo_url: r.get(11)?,
        branch: r.get(12)?,
        commit: r.get(13)?,
        // An unknown status can only come from a newer server's database; failing is the safe reading.
        status: WorkspaceStatus::parse(&status).unwrap_or(WorkspaceStatus::Failed),
        message: r.get(15)?,
        hint: r.get(16)?,
        ssh_port: r.get(17)?,
        host_key: r.get(18)?,
        node: r.get(19)?,
        generation: r.get(20)?,
        created_at: r.get(21)?,
        updated_at: r.get(22)?,
        plan: r.get(23)?,
        git_token: r.get(24)?,
        upstream_url: r.get(25)?,
        owner_github_id: r.get(26)?,
    })
}

impl Store {
    /// Opens (creating if needed) the database and runs pending migrations.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory database, for unit tests.
    pub fn in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (statements are atomic).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates or updates the user with this GitHub id; returns the row id.
    pub fn upsert_user(
        &self,
        github_username: &str,
        github_id: i64,
        ssh_pubkey: &str,
        fingerprint: &str,
    ) -> Result<i64> {
        let conn = self.conn();
        // A user renamed on GitHub keeps their id, so the id is the identity.
        conn.execute(
            "INSERT INTO users (github_username, github_id, ssh_pubkey, ssh_fingerprint, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(github_id) DO UPDATE SET github_username = excluded.github_username,
                 ssh_pubkey = excluded.ssh_pubkey, ssh_fingerprint = excluded.ssh_fingerprint",
            params![github_username, github_id, ssh_pubkey, fingerprint, now()],
        )?;
        Ok(conn.query_row("SELECT id FROM users WHERE github_id = ?1", [github_id], |r| r.get(0))?)
    }

    /// The user holding this login, if any.
    pub fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, github_username, github_id, ssh_pubkey, ssh_fingerprint FROM users WHERE github_username = ?1",
                [login],
                user_from_row,
            )
            .optional()?)
    }

    /// Stores the hash of a new API token for a user.
    pub fn add_token(&self, user_id: i64, token_hash: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO api_tokens (token_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
            params![token_hash, user_id, now()],
        )?;
        Ok(())
    }

    /// The user a token hash belongs to.
    pub fn user_by_token(&self, token_hash: &str) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT u.id, u.github_username, u.github_id, u.ssh_pubkey, u.ssh_fingerprint
                 FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1",
                [token_hash],
                user_from_row,
            )
            .optional()?)
    }

    /// Records that a node joined (or re-joined).
    pub fn upsert_node(&self, name: &str, lxd_project: &str) -> Result<()> {
        let now = now();
        self.conn().execute(
            "INSERT INTO nodes (name, lxd_project, joined_at, last_heartbeat) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(name) DO UPDATE SET lxd_project = excluded.lxd_project, last_heartbeat = excluded.last_heartbeat",
            params![name, lxd_project, now],
        )?;
        Ok(())
    }

    /// Records a heartbeat.
    pub fn touch_node(&self, name: &str) -> Result<()> {
        self.conn().execute("UPDATE nodes SET last_heartbeat = ?2 WHERE name = ?1", params![name, now()])?;
        Ok(())
    }

    /// Every node with its workspace count.
    pub fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT n.name, n.lxd_project, n.last_heartbeat, (SELECT COUNT(*) FROM workspaces w WHERE w.node_name = n.name)
             FROM nodes n ORDER BY n.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(NodeRow { name: r.get(0)?, lxd_project: r.get(1)?, last_heartbeat: r.get(2)?, workspaces: r.get(3)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Ports held by any workspace.
    pub fn used_ports(&self) -> Result<HashSet<u16>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT ssh_port FROM workspaces")?;
        let rows = stmt.query_map([], |r| r.get::<_, u16>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Inserts a workspace in `pending` with generation 1.
    pub fn insert_workspace(&self, w: &NewWorkspace) -> Result<()> {
        let now = now();
        self.conn().execute(
            "INSERT INTO workspaces (id, owner_id, name, provider, image, cpu, memory, repo_owner, repo_name, repo_url,
                 branch, status, ssh_port, node_name, generation, created_at, updated_at, plan, git_token, upstream_url)
             VALUES (?1, ?2, ?3, 'lxc', ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?12, 1, ?13, ?13, ?14, ?15, ?16)",
            params![
                w.id,
                w.owner_id,
                w.name,
                w.image,
                w.cpu,
                w.memory,
                w.repo_owner,
                w.repo_name,
                w.repo_url,
                w.branch,
                w.ssh_port,
                w.node,
                now,
                w.plan,
                w.git_token,
                w.upstream_url
            ],
        )?;
        Ok(())
    }

    fn query_workspaces(&self, filter: &str, args: impl rusqlite::Params) -> Result<Vec<WorkspaceRow>> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspaces w JOIN users u ON u.id = w.owner_id {filter} ORDER BY w.created_at, w.id"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(args, workspace_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One workspace by id, whoever owns it.
    pub fn workspace(&self, id: &str) -> Result<Option<WorkspaceRow>> {
        Ok(self.query_workspaces("WHERE w.id = ?1", [id])?.into_iter().next())
    }

    /// One workspace by owner and name.
    pub fn workspace_by_name(&self, owner_id: i64, name: &str) -> Result<Option<WorkspaceRow>> {
        Ok(self.query_workspaces("WHERE w.owner_id = ?1 AND w.name = ?2", params![owner_id, name])?.into_iter().next())
    }

    /// A user's workspaces, oldest first.
    pub fn workspaces_of(&self, owner_id: i64) -> Result<Vec<WorkspaceRow>> {
        self.query_workspaces("WHERE w.owner_id = ?1", [owner_id])
    }

    /// The workspaces placed on a node.
    pub fn workspaces_on(&self, node: &str) -> Result<Vec<WorkspaceRow>> {
        self.query_workspaces("WHERE w.node_name = ?1", [node])
    }

    /// Every workspace.
    pub fn all_workspaces(&self) -> Result<Vec<WorkspaceRow>> {
        self.query_workspaces("", [])
    }

    /// Sets status, message and hint.
    pub fn set_status(
        &self,
        id: &str,
        status: WorkspaceStatus,
        message: Option<&str>,
        hint: Option<&str>,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE workspaces SET status = ?2, message = ?3, hint = ?4, updated_at = ?5 WHERE id = ?1",
            params![id, status.as_str(), message, hint, now()],
        )?;
        Ok(())
    }

    /// Records what the node reported when the workspace came up.
    pub fn set_ready(&self, id: &str, commit: Option<&str>, host_key: Option<&str>) -> Result<()> {
        self.conn().execute(
            "UPDATE workspaces SET status = 'running', message = NULL, hint = NULL,
                 commit_sha = COALESCE(?2, commit_sha), host_key = COALESCE(?3, host_key), updated_at = ?4
             WHERE id = ?1",
            params![id, commit, host_key, now()],
        )?;
        Ok(())
    }

    /// Increments and returns the workspace's command generation.
    pub fn next_generation(&self, id: &str) -> Result<i64> {
        Ok(self.conn().query_row(
            "UPDATE workspaces SET generation = generation + 1 WHERE id = ?1 RETURNING generation",
            [id],
            |r| r.get(0),
        )?)
    }

    /// Removes a workspace; its SSH port becomes free.
    pub fn delete_workspace(&self, id: &str) -> Result<()> {
        self.conn().execute("DELETE FROM workspaces WHERE id = ?1", [id])?;
        Ok(())
    }
}

impl Store {
    /// Replaces a workspace's services with `services` (name, port, status, discovered, message,
    /// hint, logs), keeping each known service's mapped port and giving new ones the lowest free
    /// port from [`FIRST_MAPPED_PORT`] among the owner's services.
    pub fn replace_services(&self, workspace_id: &str, owner_id: i64, services: &[ServiceRow]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let known: std::collections::HashMap<String, u16> = {
            let mut stmt = tx.prepare("SELECT name, mapped_port FROM services WHERE workspace_id = ?1")?;
            let rows = stmt.query_map([workspace_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u16>(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        tx.execute("DELETE FROM services WHERE workspace_id = ?1", [workspace_id])?;
        let mut used: HashSet<u16> = {
            let mut stmt = tx.prepare("SELECT mapped_port FROM services WHERE owner_id = ?1")?;
            let rows = stmt.query_map([owner_id], |r| r.get::<_, u16>(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        // Services that keep their name keep their port, so a user's bookmarks stay valid.
        used.extend(services.iter().filter_map(|s| known.get(&s.name)));
        for s in services {
            let mapped = match known.get(&s.name) {
                Some(p) => *p,
                None => {
                    let p = (FIRST_MAPPED_PORT..=u16::MAX).find(|p| !used.contains(p)).unwrap_or(u16::MAX);
                    used.insert(p);
                    p
                }
            };
            tx.execute(
                "INSERT INTO services (workspace_id, owner_id, name, port, mapped_port, status, discovered, message, hint, last_logs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![workspace_id, owner_id, s.name, s.port, mapped, s.status, s.discovered, s.message, s.hint, s.last_logs],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks every service of a workspace `status` (keeping ports), e.g. `starting` once it stopped,
    /// so a restarted workspace does not show the last run's `running` before its node reports.
    pub fn set_services_status(&self, workspace_id: &str, status: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE services SET status = ?2, message = NULL, hint = NULL WHERE workspace_id = ?1",
            params![workspace_id, status],
        )?;
        Ok(())
    }

    /// A workspace's services: configured ones first (in report order), then discovered.
    pub fn services_of(&self, workspace_id: &str) -> Result<Vec<ServiceRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, port, mapped_port, status, discovered, message, hint, last_logs FROM services
             WHERE workspace_id = ?1 ORDER BY discovered, rowid",
        )?;
        let rows = stmt.query_map([workspace_id], |r| {
            Ok(ServiceRow {
                name: r.get(0)?,
                port: r.get(1)?,
                mapped_port: r.get(2)?,
                status: r.get(3)?,
                discovered: r.get(4)?,
                message: r.get(5)?,
                hint: r.get(6)?,
                last_logs: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(store: &Store, owner_id: i64, id: &str, name: &str, port: u16) -> NewWorkspace {
        store.upsert_node("n1", "p1").unwrap();
        NewWorkspace {
            id: id.into(),
            owner_id,
            name: name.into(),
            image: String::new(),
            cpu: 2,
            memory: "4GB".into(),
            repo_owner: "o".into(),
            repo_name: "r".into(),
            repo_url: "http://x/o/r.git".into(),
            branch: "main".into(),
            ssh_port: port,
            node: "n1".into(),
            plan: "{}".into(),
            git_token: None,
            upstream_url: None,
        }
    }

    #[test]
    fn users_and_tokens() {
        let s = Store::in_memory().unwrap();
        let id = s.upsert_user("alice", 1, "ssh-ed25519 A", "SHA256:a").unwrap();
        // Re-registering after a GitHub rename keeps the same user.
        let again = s.upsert_user("alice2", 1, "ssh-ed25519 B", "SHA256:b").unwrap();
        assert_eq!(id, again);
        s.add_token(id, "h1").unwrap();
        let u = s.user_by_token("h1").unwrap().unwrap();
        assert_eq!((u.github_username.as_str(), u.ssh_pubkey.as_str()), ("alice2", "ssh-ed25519 B"));
        assert!(s.user_by_token("nope").unwrap().is_none());
    }

    #[test]
    fn workspaces_are_scoped_and_ports_unique() {
        let s = Store::in_memory().unwrap();
        let a = s.upsert_user("alice", 1, "k", "f").unwrap();
        let b = s.upsert_user("bob", 2, "k", "f").unwrap();
        s.insert_workspace(&sample(&s, a, "ws-1", "one", 2222)).unwrap();
        s.insert_workspace(&sample(&s, b, "ws-2", "one", 2223)).unwrap();
        assert!(s.insert_workspace(&sample(&s, b, "ws-3", "two", 2222)).is_err(), "port reused");
        assert!(s.insert_workspace(&sample(&s, a, "ws-4", "one", 2224)).is_err(), "name reused");
        assert_eq!(s.workspaces_of(a).unwrap().len(), 1);
        assert_eq!(s.used_ports().unwrap(), HashSet::from([2222, 2223]));
        assert_eq!(s.next_generation("ws-1").unwrap(), 2);
        assert_eq!(s.workspace("ws-1").unwrap().unwrap().plan, "{}");
        let mut with_plan = sample(&s, a, "ws-9", "nine", 2229);
        with_plan.plan = r#"{"source":"x"}"#.into();
        s.insert_workspace(&with_plan).unwrap();
        assert_eq!(s.workspace("ws-9").unwrap().unwrap().plan, r#"{"source":"x"}"#, "the plan is stored");
        s.delete_workspace("ws-9").unwrap();
        s.set_ready("ws-1", Some("abc"), Some("ssh-ed25519 H")).unwrap();
        let w = s.workspace("ws-1").unwrap().unwrap();
        assert_eq!((w.status, w.commit.as_deref(), w.owner.as_str()), (WorkspaceStatus::Running, Some("abc"), "alice"));
        s.delete_workspace("ws-1").unwrap();
        assert_eq!(s.used_ports().unwrap(), HashSet::from([2223]));
        assert_eq!(s.list_nodes().unwrap()[0].workspaces, 1);
    }

    #[test]
    fn mapped_ports_are_stable_and_unique_per_user() {
        let s = Store::in_memory().unwrap();
        let a = s.upsert_user("alice", 1, "k", "f").unwrap();
        let b = s.upsert_user("bob", 2, "k", "f").unwrap();
        s.insert_workspace(&sample(&s, a, "ws-1", "one", 2222)).unwrap();
        s.insert_workspace(&sample(&s, a, "ws-2", "two", 2223)).unwrap();
        s.insert_workspace(&sample(&s, b, "ws-3", "one", 2224)).unwrap();
        let svc = |name: &str| ServiceRow {
            name: name.into(),
            port: Some(3000),
            mapped_port: 0,
            status: "running".into(),
            discovered: false,
            message: None,
            hint: None,
            last_logs: None,
        };
        s.replace_services("ws-1", a, &[svc("web"), svc("api")]).unwrap();
        s.replace_services("ws-2", a, &[svc("web")]).unwrap();
        s.replace_services("ws-3", b, &[svc("web")]).unwrap();
        let ports = |id| s.services_of(id).unwrap().iter().map(|r| r.mapped_port).collect::<Vec<_>>();
        assert_eq!(ports("ws-1"), [23000, 23001]);
        assert_eq!(ports("ws-2"), [23002], "unique among one user's workspaces");
        assert_eq!(ports("ws-3"), [23000], "other users start from 23000 again");
        // A re-report keeps ports; a vanished service frees its port.
        s.replace_services("ws-1", a, &[svc("api")]).unwrap();
        assert_eq!(ports("ws-1"), [23001]);
        s.replace_services("ws-1", a, &[svc("api"), svc("docs")]).unwrap();
        assert_eq!(ports("ws-1"), [23001, 23000]);
        s.delete_workspace("ws-1").unwrap();
        assert!(s.services_of("ws-1").unwrap().is_empty());
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = Store::open(&path).unwrap();
            s.upsert_user("alice", 1, "k", "f").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert!(s.user_by_login("ALICE").unwrap().is_some(), "logins compare case-insensitively");
    }
}
