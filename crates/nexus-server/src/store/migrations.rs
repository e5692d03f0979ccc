//! The schema, as numbered migrations; append new ones at the end, never edit a shipped one.

/// Migrations, in order; index + 1 is the schema version after applying it.
pub(super) const MIGRATIONS: &[&str] = &[
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
    r#"
CREATE TABLE setup (
    workspace_id  TEXT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    generation    INTEGER NOT NULL,
    status        TEXT NOT NULL,
    step          TEXT,
    step_number   INTEGER,
    steps         INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    elapsed_ms    INTEGER NOT NULL,
    last_line     TEXT,
    message       TEXT,
    hint          TEXT,
    last_logs     TEXT
);
"#,
    // 5: the audit log. Append-only: the triggers refuse any change or removal of a written entry.
    r#"
CREATE TABLE audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    source TEXT,
    detail TEXT
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
    // 6: reserved for node identity (enrolment, per-node credentials).
    // 7: reserved for accounts (keys, token expiry) and secrets at rest.
];
