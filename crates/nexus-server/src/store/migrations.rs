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
    // 6: node identity. A node's credential (only its hash) is bound to its name; join tokens only
    // enrol; each workspace remembers the kind of the last command issued, so a report can only
    // answer what was asked (a host key only a create/start, `deleted` only a delete).
    r#"
ALTER TABLE nodes ADD COLUMN credential_hash TEXT;
ALTER TABLE nodes ADD COLUMN enrolled_at TEXT;
ALTER TABLE nodes ADD COLUMN revoked_at TEXT;
CREATE UNIQUE INDEX nodes_by_credential ON nodes(credential_hash);
ALTER TABLE workspaces ADD COLUMN last_op TEXT;
CREATE TABLE join_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    single_use  INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    used_at     TEXT,
    used_by     TEXT,
    revoked_at  TEXT
);
"#,
    // 7: accounts. A user may have several SSH keys (each machine they registered from); API tokens
    // expire and can be revoked. Tokens issued before this migration expire 30 days after it.
    r#"
CREATE TABLE user_keys (
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    ssh_pubkey      TEXT NOT NULL,
    ssh_fingerprint TEXT NOT NULL,
    added_at        TEXT NOT NULL,
    PRIMARY KEY (user_id, ssh_fingerprint)
);
INSERT INTO user_keys (user_id, ssh_pubkey, ssh_fingerprint, added_at)
    SELECT id, ssh_pubkey, ssh_fingerprint, created_at FROM users;
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN revoked_at TEXT;
UPDATE api_tokens SET expires_at = CAST(strftime('%s', 'now') AS INTEGER) + 30 * 86400;
"#,
    // 8: idle auto-stop. Set when the server stopped a workspace for lack of use: its SSH port stays
    // open, and the next connection starts it again. Cleared by any other status change.
    r#"
ALTER TABLE workspaces ADD COLUMN stopped_idle INTEGER NOT NULL DEFAULT 0;
"#,
];
