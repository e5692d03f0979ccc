//! SQLite persistence: one method per question the app asks; no HTTP or agent types in here.
//!
//! WAL mode with `synchronous=FULL`, so a write the API acknowledged survives `kill -9` and power loss.
//! Schema changes are numbered migrations run at start-up (tracked in `PRAGMA user_version`).
//!
//! Every method runs its SQL on tokio's blocking pool (`spawn_blocking`), never on an async worker:
//! a `synchronous=FULL` commit waits for the disk, and a worker stuck there stalls every request
//! and tunnel it serves. `spawn_blocking` rather than one dedicated database thread because the
//! connection mutex already serializes the work, and the pool needs no channel, reply routing or
//! shutdown of its own; the mutex is only ever taken on pool threads.
//!
//! Status writes are conditional on the status the app read (and, for agent reports, on no newer
//! command having been issued), so a late or racing write never overwrites a newer one; they say
//! whether they changed the row.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use nexus_types::diagnostics::lock;
use nexus_types::protocol::SetupStatus;
use nexus_types::{ServiceStatus, WorkspaceStatus};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{Result, ServerError};

mod audit;
mod migrations;
pub(crate) mod nodes;
mod stats;
mod users;

pub(crate) use audit::NewAudit;
use migrations::MIGRATIONS;
pub(crate) use users::{unix_now, User};

/// First port handed out for a user's local forwards to services.
pub(crate) const FIRST_MAPPED_PORT: u16 = 23000;

/// A service as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceRow {
    pub name: String,
    /// Port inside the workspace.
    pub port: Option<u16>,
    /// Port on the user's machine, unique among the user's workspaces.
    pub mapped_port: u16,
    pub status: ServiceStatus,
    /// Found listening, not configured.
    pub discovered: bool,
    pub message: Option<String>,
    pub hint: Option<String>,
    pub last_logs: Option<String>,
}

/// A workspace's setup as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetupRow {
    /// Generation of the ensure that ran it.
    pub generation: i64,
    pub status: SetupStatus,
    pub step: Option<String>,
    /// 1-based.
    pub step_number: Option<u32>,
    pub steps: u32,
    /// Unix milliseconds it started, by the server's clock (the node's clock may differ).
    pub started_at_ms: i64,
    /// As of the last report.
    pub elapsed_ms: u64,
    pub last_line: Option<String>,
    pub message: Option<String>,
    pub hint: Option<String>,
    pub last_logs: Option<String>,
}

/// A workspace as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkspaceRow {
    /// `ws-...`.
    pub id: String,
    pub owner_id: i64,
    /// Owner's GitHub login.
    pub owner: String,
    /// Owner's `authorized_keys` lines, one per registered key, `\n`-separated.
    pub owner_key: String,
    pub name: String,
    /// `lxc`.
    pub provider: String,
    /// Image alias ("" = the node's base image).
    pub image: String,
    pub cpu: u32,
    pub memory: String,
    pub repo_owner: String,
    pub repo_name: String,
    /// Clone URL.
    pub repo_url: String,
    pub branch: String,
    /// Checked-out commit.
    pub commit: Option<String>,
    pub status: WorkspaceStatus,
    /// Why it failed.
    pub message: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// Forwarded SSH port.
    pub ssh_port: u16,
    /// sshd host key.
    pub host_key: Option<String>,
    pub node: String,
    /// The service plan, JSON (`nexus_types::protocol::ProjectPlan`).
    pub plan: String,
    /// The owner's GitHub token for the repo's host, when they sent one, sealed
    /// (`crate::sealed`; clear only in a database an older server wrote, until the start-up reseal).
    pub git_token: Option<String>,
    /// The repo this one was forked from.
    pub upstream_url: Option<String>,
    pub owner_github_id: i64,
    /// Stopped by the server for lack of use (its SSH port stays open to wake it).
    pub stopped_idle: bool,
    /// Generation of the newest command.
    pub generation: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// What a new workspace starts with (it starts `pending`, at generation 1).
#[derive(Debug, Clone)]
pub(crate) struct NewWorkspace {
    pub id: String,
    pub owner_id: i64,
    pub name: String,
    pub image: String,
    pub cpu: u32,
    pub memory: String,
    pub repo_owner: String,
    pub repo_name: String,
    pub repo_url: String,
    pub branch: String,
    pub ssh_port: u16,
    pub node: String,
    /// The service plan, JSON.
    pub plan: String,
    /// Sealed by the app (`crate::sealed`) before it gets here.
    pub git_token: Option<String>,
    pub upstream_url: Option<String>,
}

/// What a status change records besides the status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StatusDetails {
    /// Replaces the stored message (`None` clears it).
    pub message: Option<String>,
    /// Replaces the stored hint (`None` clears it).
    pub hint: Option<String>,
    /// Replaces the stored commit; `None` keeps it.
    pub commit: Option<String>,
    /// Replaces the stored host key; `None` keeps it.
    pub host_key: Option<String>,
    /// For an agent's report: the generation it answers. The write is refused once a newer command
    /// has been issued, since the report no longer describes what the workspace is asked to be.
    pub generation: Option<i64>,
}

/// The SQLite database, one connection shared by every request.
pub(crate) struct Store {
    conn: Arc<Mutex<Connection>>,
}

/// Current time as RFC 3339 UTC, second precision.
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

const WORKSPACE_COLUMNS: &str =
    "w.id, w.owner_id, u.github_username, \
     COALESCE((SELECT group_concat(k.ssh_pubkey, char(10)) FROM user_keys k WHERE k.user_id = u.id), u.ssh_pubkey), w.name, w.provider, w.image, w.cpu, w.memory, \
     w.repo_owner, w.repo_name, w.repo_url, w.branch, w.commit_sha, w.status, w.message, w.hint, w.ssh_port, \
     w.host_key, w.node_name, w.generation, w.created_at, w.updated_at, w.plan, \
     w.git_token, w.upstream_url, u.github_id, w.stopped_idle";

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
        stopped_idle: r.get(27)?,
    })
}

/// The database and its `-wal`/`-shm` files readable by the server's user only, whatever the umask:
/// they hold users' data and (sealed) tokens. Creates the database file 0600 if it is missing.
fn private_files(db: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let io = |path: &Path, source| ServerError::Io { path: path.display().to_string(), source };
        std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(db).map_err(|e| io(db, e))?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path, e)),
                _ => {}
            }
        }
    }
    Ok(())
}

fn query_workspaces(conn: &Connection, filter: &str, args: impl rusqlite::Params) -> Result<Vec<WorkspaceRow>> {
    let sql = format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspaces w JOIN users u ON u.id = w.owner_id {filter} ORDER BY w.created_at, w.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(args, workspace_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

impl Store {
    /// Opens (creating if needed) the database and runs pending migrations. Blocking; called once
    /// while the server starts, before it serves anything.
    pub(crate) fn open(path: &Path) -> Result<Store> {
        private_files(path)?;
        let conn = Connection::open(path)?;
        let store = Self::init(conn)?;
        // WAL mode made the -wal and -shm files; SQLite gives them the database's mode.
        private_files(path)?;
        Ok(store)
    }

    /// Rewrites every workspace's stored GitHub token with `reseal(workspace id, stored)` where it
    /// answers `Some` (a clear value from an older server, or one sealed under a retired key).
    /// Returns how many changed.
    pub(crate) async fn reseal_git_tokens<F>(&self, reseal: F) -> Result<usize>
    where
        F: Fn(&str, &str) -> Option<String> + Send + 'static,
    {
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let rows: Vec<(String, String)> = {
                let mut stmt = tx.prepare("SELECT id, git_token FROM workspaces WHERE git_token IS NOT NULL")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut changed = 0;
            for (id, stored) in rows {
                if let Some(new) = reseal(&id, &stored) {
                    changed += tx.execute("UPDATE workspaces SET git_token = ?2 WHERE id = ?1", params![id, new])?;
                }
            }
            tx.commit()?;
            // The clear values may linger in free pages and the WAL: overwrite and fold them in.
            if changed > 0 {
                conn.pragma_update(None, "secure_delete", "ON")?;
                conn.execute_batch("VACUUM")?;
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            Ok(changed)
        })
        .await
    }

    /// An in-memory database, for unit tests.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Result<Store> {
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
        Ok(Store { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` with the connection on the blocking pool (see the module doc for why).
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        // A panic while holding the lock leaves SQLite itself consistent (statements are atomic).
        match tokio::task::spawn_blocking(move || f(&mut lock(&conn))).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(ServerError::Task(e)),
        }
    }

    /// SSH ports held by any workspace.
    pub(crate) async fn used_ports(&self) -> Result<HashSet<u16>> {
        self.run(|conn| {
            let mut stmt = conn.prepare("SELECT ssh_port FROM workspaces")?;
            let rows = stmt.query_map([], |r| r.get::<_, u16>(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Inserts a workspace in `pending` with generation 1.
    pub(crate) async fn insert_workspace(&self, w: NewWorkspace) -> Result<()> {
        self.run(move |conn| {
            let now = now();
            conn.execute(
                "INSERT INTO workspaces (id, owner_id, name, provider, image, cpu, memory, repo_owner, repo_name, repo_url,
                     branch, status, ssh_port, node_name, generation, created_at, updated_at, plan, git_token, upstream_url)
                 VALUES (?1, ?2, ?3, 'lxc', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1, ?14, ?14, ?15, ?16, ?17)",
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
                    WorkspaceStatus::Pending.as_str(),
                    w.ssh_port,
                    w.node,
                    now,
                    w.plan,
                    w.git_token,
                    w.upstream_url
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// One workspace by id, whoever owns it.
    pub(crate) async fn workspace(&self, id: &str) -> Result<Option<WorkspaceRow>> {
        let id = id.to_owned();
        self.run(move |conn| Ok(query_workspaces(conn, "WHERE w.id = ?1", [id])?.into_iter().next())).await
    }

    pub(crate) async fn workspace_by_name(&self, owner_id: i64, name: &str) -> Result<Option<WorkspaceRow>> {
        let name = name.to_owned();
        self.run(move |conn| {
            Ok(query_workspaces(conn, "WHERE w.owner_id = ?1 AND w.name = ?2", params![owner_id, name])?
                .into_iter()
                .next())
        })
        .await
    }

    /// A user's workspaces, oldest first, each with its services and setup.
    pub(crate) async fn workspaces_of(
        &self,
        owner_id: i64,
    ) -> Result<Vec<(WorkspaceRow, Vec<ServiceRow>, Option<SetupRow>)>> {
        self.run(move |conn| {
            let rows = query_workspaces(conn, "WHERE w.owner_id = ?1", [owner_id])?;
            rows.into_iter()
                .map(|w| {
                    let services = services_of(conn, &w.id)?;
                    let setup = setup_of(conn, &w.id)?;
                    Ok((w, services, setup))
                })
                .collect()
        })
        .await
    }

    pub(crate) async fn workspaces_on(&self, node: &str) -> Result<Vec<WorkspaceRow>> {
        let node = node.to_owned();
        self.run(move |conn| query_workspaces(conn, "WHERE w.node_name = ?1", [node])).await
    }

    pub(crate) async fn all_workspaces(&self) -> Result<Vec<WorkspaceRow>> {
        self.run(|conn| query_workspaces(conn, "", [])).await
    }

    /// Writes `from` → `to` (a change the state machine allowed) if the row still has `from` and,
    /// for a report, no newer command was issued; false when it did not, i.e. something newer got
    /// there first.
    pub(crate) async fn write_status(
        &self,
        id: &str,
        from: WorkspaceStatus,
        to: WorkspaceStatus,
        details: StatusDetails,
    ) -> Result<bool> {
        let id = id.to_owned();
        self.run(move |conn| {
            let changed = conn.execute(
                "UPDATE workspaces SET status = ?2, message = ?3, hint = ?4, commit_sha = COALESCE(?5, commit_sha),
                     host_key = COALESCE(?6, host_key), updated_at = ?7,
                     stopped_idle = CASE WHEN ?2 = 'stopped' THEN stopped_idle ELSE 0 END
                 WHERE id = ?1 AND status = ?8 AND (?9 IS NULL OR generation <= ?9)",
                params![
                    id,
                    to.as_str(),
                    details.message,
                    details.hint,
                    details.commit,
                    details.host_key,
                    now(),
                    from.as_str(),
                    details.generation
                ],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    /// Marks a running workspace as being stopped for lack of use; false if it is not running now.
    pub(crate) async fn mark_idle_stop(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn.execute("UPDATE workspaces SET stopped_idle = 1 WHERE id = ?1 AND status = 'running'", [id])? == 1)
        })
        .await
    }

    /// Increments and returns the workspace's command generation (the app issues commands with
    /// `issue_generation`, which also records their kind).
    #[cfg(test)]
    pub(crate) async fn next_generation(&self, id: &str) -> Result<i64> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn.query_row(
                "UPDATE workspaces SET generation = generation + 1 WHERE id = ?1 RETURNING generation",
                [id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Removes a workspace; its SSH port becomes free.
    pub(crate) async fn delete_workspace(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.execute("DELETE FROM workspaces WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    /// Replaces a workspace's services with `services`, keeping each known service's mapped port and
    /// giving new ones the lowest free port from [`FIRST_MAPPED_PORT`] among the owner's services.
    ///
    /// With `generation` (an agent's report), nothing is written once a newer command was issued;
    /// returns whether it wrote.
    pub(crate) async fn replace_services(
        &self,
        workspace_id: &str,
        owner_id: i64,
        services: Vec<ServiceRow>,
        generation: Option<i64>,
    ) -> Result<bool> {
        let workspace_id = workspace_id.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            if let Some(generation) = generation {
                let current: Option<i64> = tx
                    .query_row("SELECT generation FROM workspaces WHERE id = ?1", [&workspace_id], |r| r.get(0))
                    .optional()?;
                if current.is_none_or(|g| g > generation) {
                    return Ok(false);
                }
            }
            let known: HashMap<String, u16> = {
                let mut stmt = tx.prepare("SELECT name, mapped_port FROM services WHERE workspace_id = ?1")?;
                let rows = stmt.query_map([&workspace_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u16>(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            tx.execute("DELETE FROM services WHERE workspace_id = ?1", [&workspace_id])?;
            let mut used: HashSet<u16> = {
                let mut stmt = tx.prepare("SELECT mapped_port FROM services WHERE owner_id = ?1")?;
                let rows = stmt.query_map([owner_id], |r| r.get::<_, u16>(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            // Services that keep their name keep their port, so a user's bookmarks stay valid.
            used.extend(services.iter().filter_map(|s| known.get(&s.name)));
            for s in &services {
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
                    params![workspace_id, owner_id, s.name, s.port, mapped, s.status.as_str(), s.discovered, s.message, s.hint, s.last_logs],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Marks every service of a workspace `status` (keeping ports), e.g. `starting` once it stopped,
    /// so a restarted workspace does not show the last run's `running` before its node reports.
    pub(crate) async fn set_services_status(&self, workspace_id: &str, status: ServiceStatus) -> Result<()> {
        let workspace_id = workspace_id.to_owned();
        self.run(move |conn| {
            conn.execute(
                "UPDATE services SET status = ?2, message = NULL, hint = NULL WHERE workspace_id = ?1",
                params![workspace_id, status.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    /// Records a node's report of a workspace's setup, unless a newer command was issued since (or a
    /// newer setup is stored). A report of the setup already stored keeps its start time, so the
    /// elapsed time shown does not jump with each report's transit time. Returns whether it wrote.
    pub(crate) async fn record_setup(&self, workspace_id: &str, setup: SetupRow) -> Result<bool> {
        let workspace_id = workspace_id.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let current: Option<i64> = tx
                .query_row("SELECT generation FROM workspaces WHERE id = ?1", [&workspace_id], |r| r.get(0))
                .optional()?;
            if current.is_none_or(|g| g > setup.generation) {
                return Ok(false);
            }
            let stored: Option<(i64, i64)> = tx
                .query_row("SELECT generation, started_at_ms FROM setup WHERE workspace_id = ?1", [&workspace_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let started_at_ms = match stored {
                Some((g, _)) if g > setup.generation => return Ok(false),
                Some((g, started)) if g == setup.generation => started,
                _ => setup.started_at_ms,
            };
            tx.execute(
                "INSERT OR REPLACE INTO setup (workspace_id, generation, status, step, step_number, steps, started_at_ms,
                     elapsed_ms, last_line, message, hint, last_logs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    workspace_id,
                    setup.generation,
                    setup.status.as_str(),
                    setup.step,
                    setup.step_number,
                    setup.steps,
                    started_at_ms,
                    i64::try_from(setup.elapsed_ms).unwrap_or(i64::MAX),
                    setup.last_line,
                    setup.message,
                    setup.hint,
                    setup.last_logs
                ],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// A workspace's setup as last reported.
    pub(crate) async fn setup_of(&self, workspace_id: &str) -> Result<Option<SetupRow>> {
        let workspace_id = workspace_id.to_owned();
        self.run(move |conn| setup_of(conn, &workspace_id)).await
    }

    /// A workspace's services: configured ones first (in report order), then discovered.
    pub(crate) async fn services_of(&self, workspace_id: &str) -> Result<Vec<ServiceRow>> {
        let workspace_id = workspace_id.to_owned();
        self.run(move |conn| services_of(conn, &workspace_id)).await
    }
}

fn services_of(conn: &Connection, workspace_id: &str) -> Result<Vec<ServiceRow>> {
    let mut stmt = conn.prepare(
        "SELECT name, port, mapped_port, status, discovered, message, hint, last_logs FROM services
         WHERE workspace_id = ?1 ORDER BY discovered, rowid",
    )?;
    let rows = stmt.query_map([workspace_id], |r| {
        Ok(ServiceRow {
            name: r.get(0)?,
            port: r.get(1)?,
            mapped_port: r.get(2)?,
            status: service_status(r.get::<_, String>(3)?),
            discovered: r.get(4)?,
            message: r.get(5)?,
            hint: r.get(6)?,
            last_logs: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn setup_of(conn: &Connection, workspace_id: &str) -> Result<Option<SetupRow>> {
    Ok(conn
        .query_row(
            "SELECT generation, status, step, step_number, steps, started_at_ms, elapsed_ms, last_line, message, hint,
                 last_logs FROM setup WHERE workspace_id = ?1",
            [workspace_id],
            |r| {
                Ok(SetupRow {
                    generation: r.get(0)?,
                    // Only a newer server's database has other names; failed is the safe reading.
                    status: SetupStatus::parse(&r.get::<_, String>(1)?).unwrap_or(SetupStatus::Failed),
                    step: r.get(2)?,
                    step_number: r.get(3)?,
                    steps: r.get(4)?,
                    started_at_ms: r.get(5)?,
                    elapsed_ms: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                    last_line: r.get(7)?,
                    message: r.get(8)?,
                    hint: r.get(9)?,
                    last_logs: r.get(10)?,
                })
            },
        )
        .optional()?)
}

/// An unknown service status can only come from a newer server's database; `failed` is the safe reading.
fn service_status(s: String) -> ServiceStatus {
    ServiceStatus::parse(&s).unwrap_or(ServiceStatus::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sample(store: &Store, owner_id: i64, id: &str, name: &str, port: u16) -> NewWorkspace {
        store.upsert_node("n1", "p1").await.unwrap();
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

    async fn status(s: &Store, id: &str) -> WorkspaceStatus {
        s.workspace(id).await.unwrap().unwrap().status
    }

    #[tokio::test]
    async fn users_and_tokens() {
        let s = Store::in_memory().unwrap();
        let id = s.upsert_user("alice", 1, "ssh-ed25519 A", "SHA256:a").await.unwrap();
        // Re-registering after a GitHub rename keeps the same user.
        let again = s.upsert_user("alice2", 1, "ssh-ed25519 B", "SHA256:b").await.unwrap();
        assert_eq!(id, again);
        s.add_token(id, "h1").await.unwrap();
        let u = s.user_by_token("h1").await.unwrap().unwrap();
        // The second key is added, not swapped in: both machines keep working.
        assert_eq!((u.github_username.as_str(), u.ssh_pubkey.as_str()), ("alice2", "ssh-ed25519 A"));
        assert_eq!(s.user_keys(id).await.unwrap(), ["ssh-ed25519 A", "ssh-ed25519 B"]);
        assert!(s.user_by_token("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn workspaces_are_scoped_and_ports_unique() {
        let s = Store::in_memory().unwrap();
        let a = s.upsert_user("alice", 1, "k", "f").await.unwrap();
        let b = s.upsert_user("bob", 2, "k", "f").await.unwrap();
        s.insert_workspace(sample(&s, a, "ws-1", "one", 2222).await).await.unwrap();
        s.insert_workspace(sample(&s, b, "ws-2", "one", 2223).await).await.unwrap();
        assert!(s.insert_workspace(sample(&s, b, "ws-3", "two", 2222).await).await.is_err(), "port reused");
        assert!(s.insert_workspace(sample(&s, a, "ws-4", "one", 2224).await).await.is_err(), "name reused");
        assert_eq!(s.workspaces_of(a).await.unwrap().len(), 1);
        assert_eq!(s.used_ports().await.unwrap(), HashSet::from([2222, 2223]));
        assert_eq!(s.next_generation("ws-1").await.unwrap(), 2);
        assert_eq!(s.workspace("ws-1").await.unwrap().unwrap().plan, "{}");
        let mut with_plan = sample(&s, a, "ws-9", "nine", 2229).await;
        with_plan.plan = r#"{"source":"x"}"#.into();
        s.insert_workspace(with_plan).await.unwrap();
        assert_eq!(s.workspace("ws-9").await.unwrap().unwrap().plan, r#"{"source":"x"}"#, "the plan is stored");
        s.delete_workspace("ws-9").await.unwrap();
        let ready =
            StatusDetails { commit: Some("abc".into()), host_key: Some("ssh-ed25519 H".into()), ..Default::default() };
        assert!(s.write_status("ws-1", WorkspaceStatus::Pending, WorkspaceStatus::Running, ready).await.unwrap());
        let w = s.workspace("ws-1").await.unwrap().unwrap();
        assert_eq!((w.status, w.commit.as_deref(), w.owner.as_str()), (WorkspaceStatus::Running, Some("abc"), "alice"));
        s.delete_workspace("ws-1").await.unwrap();
        assert_eq!(s.used_ports().await.unwrap(), HashSet::from([2223]));
        assert_eq!(s.list_nodes().await.unwrap()[0].workspaces, 1);
    }

    #[tokio::test]
    async fn a_status_write_on_a_stale_read_is_refused() {
        use WorkspaceStatus as S;
        let s = Store::in_memory().unwrap();
        let a = s.upsert_user("alice", 1, "k", "f").await.unwrap();
        s.insert_workspace(sample(&s, a, "ws-1", "one", 2222).await).await.unwrap();
        let none = StatusDetails::default;
        // Two writers read `pending`; the first moves it on, the second's decision is now stale.
        assert!(s.write_status("ws-1", S::Pending, S::Creating, none()).await.unwrap());
        let failed = StatusDetails { message: Some("late".into()), ..none() };
        assert!(!s.write_status("ws-1", S::Pending, S::Failed, failed).await.unwrap(), "the row is no longer pending");
        let w = s.workspace("ws-1").await.unwrap().unwrap();
        assert_eq!((w.status, w.message), (S::Creating, None));

        // A report for generation 1 after a command of generation 2 was issued is refused too.
        s.next_generation("ws-1").await.unwrap();
        let late = StatusDetails { generation: Some(1), ..none() };
        assert!(!s.write_status("ws-1", S::Creating, S::Running, late).await.unwrap());
        assert_eq!(status(&s, "ws-1").await, S::Creating);
        let current = StatusDetails { generation: Some(2), ..none() };
        assert!(s.write_status("ws-1", S::Creating, S::Running, current).await.unwrap());
        assert_eq!(status(&s, "ws-1").await, S::Running);
        assert!(!s.write_status("ws-9", S::Running, S::Stopped, none()).await.unwrap(), "no such row");
    }

    fn svc(name: &str) -> ServiceRow {
        ServiceRow {
            name: name.into(),
            port: Some(3000),
            mapped_port: 0,
            status: ServiceStatus::Running,
            discovered: false,
            message: None,
            hint: None,
            last_logs: None,
        }
    }

    #[tokio::test]
    async fn mapped_ports_are_stable_and_unique_per_user() {
        let s = Store::in_memory().unwrap();
        let a = s.upsert_user("alice", 1, "k", "f").await.unwrap();
        let b = s.upsert_user("bob", 2, "k", "f").await.unwrap();
        s.insert_workspace(sample(&s, a, "ws-1", "one", 2222).await).await.unwrap();
        s.insert_workspace(sample(&s, a, "ws-2", "two", 2223).await).await.unwrap();
        s.insert_workspace(sample(&s, b, "ws-3", "one", 2224).await).await.unwrap();
        s.replace_services("ws-1", a, vec![svc("web"), svc("api")], None).await.unwrap();
        s.replace_services("ws-2", a, vec![svc("web")], None).await.unwrap();
        s.replace_services("ws-3", b, vec![svc("web")], None).await.unwrap();
        let ports = |id: &'static str| {
            let s = &s;
            async move { s.services_of(id).await.unwrap().iter().map(|r| r.mapped_port).collect::<Vec<_>>() }
        };
        assert_eq!(ports("ws-1").await, [23000, 23001]);
        assert_eq!(ports("ws-2").await, [23002], "unique among one user's workspaces");
        assert_eq!(ports("ws-3").await, [23000], "other users start from 23000 again");
        // A re-report keeps ports; a vanished service frees its port.
        s.replace_services("ws-1", a, vec![svc("api")], None).await.unwrap();
        assert_eq!(ports("ws-1").await, [23001]);
        s.replace_services("ws-1", a, vec![svc("api"), svc("docs")], None).await.unwrap();
        assert_eq!(ports("ws-1").await, [23001, 23000]);
        s.delete_workspace("ws-1").await.unwrap();
        assert!(s.services_of("ws-1").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_services_report_older_than_the_newest_command_is_refused() {
        let s = Store::in_memory().unwrap();
        let a = s.upsert_user("alice", 1, "k", "f").await.unwrap();
        s.insert_workspace(sample(&s, a, "ws-1", "one", 2222).await).await.unwrap();
        assert!(s.replace_services("ws-1", a, vec![svc("web")], Some(1)).await.unwrap());
        s.next_generation("ws-1").await.unwrap();
        assert!(!s.replace_services("ws-1", a, vec![svc("api")], Some(1)).await.unwrap());
        assert_eq!(s.services_of("ws-1").await.unwrap()[0].name, "web");
        assert!(!s.replace_services("ws-9", a, vec![svc("api")], Some(1)).await.unwrap(), "no such workspace");
    }

    fn setup(generation: i64, status: SetupStatus, started_at_ms: i64) -> SetupRow {
        SetupRow {
            generation,
            status,
            step: Some("npm ci".into()),
            step_number: Some(1),
            steps: 1,
            started_at_ms,
            elapsed_ms: 1000,
            last_line: Some("added 1 package".into()),
            message: None,
            hint: None,
            last_logs: None,
        }
    }

    #[tokio::test]
    async fn a_setup_report_older_than_the_newest_command_is_refused_and_its_start_time_kept() {
        let s = Store::in_memory().unwrap();
        let a = s.upsert_user("alice", 1, "k", "f").await.unwrap();
        s.insert_workspace(sample(&s, a, "ws-1", "one", 2222).await).await.unwrap();
        assert_eq!(s.setup_of("ws-1").await.unwrap(), None);
        assert!(s.record_setup("ws-1", setup(1, SetupStatus::Running, 5_000)).await.unwrap());
        // A later report of the same run keeps the start time the first one set.
        assert!(s.record_setup("ws-1", setup(1, SetupStatus::Done, 5_400)).await.unwrap());
        let stored = s.setup_of("ws-1").await.unwrap().unwrap();
        assert_eq!((stored.status, stored.started_at_ms), (SetupStatus::Done, 5_000));
        // Once a newer command was issued, a late report of the old run is dropped...
        s.next_generation("ws-1").await.unwrap();
        assert!(!s.record_setup("ws-1", setup(1, SetupStatus::Failed, 5_000)).await.unwrap());
        assert_eq!(s.setup_of("ws-1").await.unwrap().unwrap().status, SetupStatus::Done);
        // ...and the new run's report replaces the old one, with its own start.
        assert!(s.record_setup("ws-1", setup(2, SetupStatus::Running, 9_000)).await.unwrap());
        let stored = s.setup_of("ws-1").await.unwrap().unwrap();
        assert_eq!((stored.generation, stored.status, stored.started_at_ms), (2, SetupStatus::Running, 9_000));
        assert!(!s.record_setup("ws-9", setup(2, SetupStatus::Running, 9_000)).await.unwrap(), "no such workspace");
        assert_eq!(s.workspaces_of(a).await.unwrap()[0].2, Some(stored));
        s.delete_workspace("ws-1").await.unwrap();
        assert_eq!(s.setup_of("ws-1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = Store::open(&path).unwrap();
            let id = s.upsert_user("alice", 1, "k", "f").await.unwrap();
            s.add_token(id, "h1").await.unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.user_by_token("h1").await.unwrap().unwrap().github_username, "alice");
        assert!(s.upsert_user("ALICE", 2, "k", "f").await.is_err(), "logins compare case-insensitively");
    }
}
