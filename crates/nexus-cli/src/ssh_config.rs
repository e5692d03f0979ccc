//! Our own ssh config and known_hosts files, and the one `Include` line that hooks them into `~/.ssh/config`.
//!
//! Each workspace gets a marked block (`Host nexus-<name>`) so it can be replaced or removed without
//! touching anything the user wrote. The host key the server reported is pinned under a
//! `HostKeyAlias` named after the workspace id, so a port handed to another workspace later can
//! never match an old key, and designers never see a trust-on-first-use prompt.
//!
//! Connections are shared (`ControlMaster`) through a socket whose path must fit a Unix socket
//! address, or every ssh through the config fails ("path ... too long for Unix domain socket"). So the
//! path is written out in full, with a short name, in the first private directory where it fits:
//! `~/.nexus/ssh/cm`, else `$XDG_RUNTIME_DIR`; where neither fits, connections are not shared.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Longest control socket path that works on every system: a socket address holds 104 bytes on macOS
/// (108 on Linux) with the final NUL, and ssh first binds `<path>.<16 random characters>`.
pub const MAX_CONTROL_PATH: usize = 104 - 1 - 17;

/// One workspace's ssh entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshEntry {
    /// Workspace name; the alias is `nexus-<name>`.
    pub name: String,
    /// Workspace id, used as the host key alias.
    pub id: String,
    /// Host to connect to.
    pub host: String,
    /// Forwarded SSH port.
    pub port: u16,
    /// User inside the workspace.
    pub user: String,
    /// Private key file.
    pub identity_file: PathBuf,
    /// `ssh-ed25519 AAAA...` host key, when the server knows it.
    pub host_key: Option<String>,
    /// Opt-in agent forwarding.
    pub forward_agent: bool,
}

impl SshEntry {
    /// Checks every field the server supplied before it goes into ssh's config: each is written on
    /// a line of its own, so a newline or a stray word in one (`host\n  ProxyCommand ...`) would add
    /// an option ssh obeys, and `ProxyCommand` runs on this machine. Only plain syntax passes:
    /// a host name or IP address, a non-zero port, a Unix user name, a workspace name and id, a
    /// `type base64` host key.
    pub fn check(&self) -> Result<(), String> {
        let refuse = |field: &str, value: &str| {
            format!(
                "the server sent a {field} that is not safe to write into the ssh config: {value:?}; nothing was \
                 written (hint: check that `server:` in ~/.nexus/config.yaml is your Nexus server, and tell its operator)"
            )
        };
        if nexus_types::names::workspace_name(&self.name).is_err() {
            return Err(refuse("workspace name", &self.name));
        }
        let plain = |v: &str, max: usize| {
            !v.is_empty()
                && v.len() <= max
                && !v.starts_with('-')
                && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !plain(&self.id, 64) {
            return Err(refuse("workspace id", &self.id));
        }
        if !is_host(&self.host) {
            return Err(refuse("host", &self.host));
        }
        if self.port == 0 {
            return Err(refuse("port", "0"));
        }
        if !plain(&self.user, 32) || self.user.contains('.') {
            return Err(refuse("user", &self.user));
        }
        if let Some(key) = &self.host_key {
            let mut parts = key.split(' ');
            let kind_ok = parts
                .next()
                .is_some_and(|k| plain(k, 64) || k.ends_with("@openssh.com") && plain(&k.replace('@', "."), 64));
            let data_ok = parts.next().is_some_and(|d| {
                !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
            });
            // A comment may follow; it is not written, but a line break in it would still mean a second key.
            if !kind_ok || !data_ok || key.chars().any(|c| c.is_control()) {
                return Err(refuse("host key", key));
            }
        }
        let identity = self.identity_file.display().to_string();
        if identity.chars().any(|c| c.is_control() || c == '"') {
            return Err(format!("the key path {identity:?} cannot be written into the ssh config; use a path without quotes or line breaks"));
        }
        Ok(())
    }
}

/// Whether `host` is an IP address or a DNS name (letters, digits, `-`, `_`, dot-separated), and
/// nothing else.
fn is_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        })
}

/// The ssh host alias of a workspace.
pub fn alias(name: &str) -> String {
    format!("nexus-{name}")
}

/// Where our files live, under a home directory.
#[derive(Debug, Clone)]
pub struct SshFiles {
    /// `~/.ssh/config`.
    pub user_config: PathBuf,
    /// Our config file, included from the user's.
    pub config: PathBuf,
    /// Our known_hosts file.
    pub known_hosts: PathBuf,
    /// Control sockets for connection sharing, when their paths fit here.
    pub control_dir: PathBuf,
    /// Where control sockets go when they do not fit in `control_dir`: the session's private runtime
    /// directory (`$XDG_RUNTIME_DIR`), which exists while the user is logged in.
    pub runtime_dir: Option<PathBuf>,
}

impl SshFiles {
    /// The files under `home`, with `$XDG_RUNTIME_DIR` for control sockets that do not fit there.
    pub fn under(home: &Path) -> SshFiles {
        let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()).map(PathBuf::from);
        SshFiles::with_runtime_dir(home, runtime_dir)
    }

    /// The files under `home`, with `runtime_dir` as the second place for control sockets.
    pub fn with_runtime_dir(home: &Path, runtime_dir: Option<PathBuf>) -> SshFiles {
        SshFiles {
            user_config: home.join(".ssh/config"),
            config: home.join(".nexus/ssh/config"),
            known_hosts: home.join(".nexus/ssh/known_hosts"),
            control_dir: home.join(".nexus/ssh/cm"),
            runtime_dir,
        }
    }

    /// The files under `$HOME`.
    pub fn from_env() -> std::io::Result<SshFiles> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "HOME is not set"))?;
        Ok(SshFiles::under(Path::new(&home)))
    }

    /// Writes (or replaces) a workspace's entry and its pinned host key, and makes sure the user's
    /// config includes ours.
    /// Refuses an entry whose fields are not what they claim to be (see [`SshEntry::check`]),
    /// writing nothing.
    pub fn upsert(&self, entry: &SshEntry) -> std::io::Result<()> {
        entry.check().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let dir = self.config.parent().expect("has a parent");
        create_private_dir(dir)?;
        let control = self.control_path(entry, std::fs::metadata(dir)?.uid())?;
        let current = read_or_empty(&self.config)?;
        let block = render_block(entry, self, control.as_deref());
        write_private(&self.config, &upsert_block(&current, &entry.name, &block))?;
        let hosts = read_or_empty(&self.known_hosts)?;
        let hosts = pin_host_key(&hosts, &entry.id, entry.host_key.as_deref());
        write_private(&self.known_hosts, &hosts)?;
        self.ensure_include()
    }

    /// Removes a workspace's entry and pinned key; a no-op when there is none.
    pub fn remove(&self, name: &str, id: &str) -> std::io::Result<()> {
        if self.config.exists() {
            let current = read_or_empty(&self.config)?;
            write_private(&self.config, &remove_block(&current, name))?;
        }
        if self.known_hosts.exists() {
            let hosts = read_or_empty(&self.known_hosts)?;
            write_private(&self.known_hosts, &pin_host_key(&hosts, id, None))?;
        }
        Ok(())
    }

    /// The control socket for `entry`: in the first of [`SshFiles::control_dir`] and
    /// [`SshFiles::runtime_dir`] where the whole path fits ([`MAX_CONTROL_PATH`]) and the directory is
    /// private to `uid` (creating `control_dir`); `None` when there is no such place.
    pub fn control_path(&self, entry: &SshEntry, uid: u32) -> std::io::Result<Option<PathBuf>> {
        let name = socket_name(entry);
        if let Some(path) = usable(&self.control_dir, &name) {
            create_private_dir(&self.control_dir)?;
            if is_private_dir(&self.control_dir, uid) {
                return Ok(Some(path));
            }
        }
        // Not created here: it belongs to the login session, and a missing one means there is none.
        let runtime = self.runtime_dir.as_deref().filter(|d| d.is_absolute() && is_private_dir(d, uid));
        Ok(runtime.and_then(|d| usable(d, &name)))
    }

    /// Adds `Include <our config>` at the top of `~/.ssh/config` unless it is there. It must come
    /// before any `Host` line: an `Include` inside a `Host` block only applies to that host.
    pub fn ensure_include(&self) -> std::io::Result<()> {
        create_private_dir(self.user_config.parent().expect("has a parent"))?;
        let current = read_or_empty(&self.user_config)?;
        let line = include_line(&self.config);
        if current.lines().any(|l| l.trim() == line) {
            return Ok(());
        }
        let updated =
            format!("# Added by nexus: workspaces' ssh settings live in the included file.\n{line}\n\n{current}");
        write_private(&self.user_config, &updated)
    }
}

fn include_line(config: &Path) -> String {
    format!("Include {}", config.display())
}

fn begin_marker(name: &str) -> String {
    format!("# >>> nexus workspace {name}")
}

fn end_marker(name: &str) -> String {
    format!("# <<< nexus workspace {name}")
}

/// The control socket's file name: short, and different for every host, port and user (as ssh's own
/// `%C` is, at 40 characters), so a workspace that moved never reuses a connection to its old address.
fn socket_name(e: &SshEntry) -> String {
    let hash = Sha256::digest(format!("{}\n{}\n{}\n{}", e.id, e.host, e.port, e.user));
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("nexus-{hex}")
}

/// `dir/name` when that path fits a socket address and ssh reads it back as written: `%` is escaped
/// below, but ssh would expand `${...}`, and a `"` would end the quoted value.
fn usable(dir: &Path, name: &str) -> Option<PathBuf> {
    let path = dir.join(name);
    let text = path.to_str()?;
    (text.len() <= MAX_CONTROL_PATH && !text.contains("${") && !text.contains('"')).then_some(path)
}

/// A directory only `uid` can enter: owned by it, not a symlink, no access for group or others.
fn is_private_dir(dir: &Path, uid: u32) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0)
}

/// A workspace's block, between markers; `control_path` is the socket for connection sharing (see
/// [`SshFiles::control_path`]), `None` to not share.
pub fn render_block(e: &SshEntry, files: &SshFiles, control_path: Option<&Path>) -> String {
    let mut b = String::new();
    b.push_str(&begin_marker(&e.name));
    b.push('\n');
    b.push_str(&format!("Host {}\n", alias(&e.name)));
    b.push_str(&format!("  HostName {}\n", e.host));
    b.push_str(&format!("  Port {}\n", e.port));
    b.push_str(&format!("  User {}\n", e.user));
    b.push_str(&format!("  IdentityFile \"{}\"\n", e.identity_file.display()));
    b.push_str("  IdentitiesOnly yes\n");
    b.push_str(&format!("  HostKeyAlias {}\n", e.id));
    b.push_str(&format!("  UserKnownHostsFile \"{}\"\n", files.known_hosts.display()));
    if e.host_key.is_some() {
        b.push_str("  StrictHostKeyChecking yes\n");
    } else {
        // Older servers may not know the key yet; accept it once rather than fail.
        b.push_str("  StrictHostKeyChecking accept-new\n");
    }
    match control_path {
        Some(path) => {
            b.push_str("  ControlMaster auto\n");
            // Written out in full (no `%C`): its length is then known to fit. `%` would start a token.
            b.push_str(&format!("  ControlPath \"{}\"\n", path.display().to_string().replace('%', "%%")));
            b.push_str("  ControlPersist 10m\n");
        }
        None => {
            // Nowhere private has room for the socket; without sharing, every ssh still works.
            b.push_str("  ControlMaster no\n");
            b.push_str("  ControlPath none\n");
        }
    }
    b.push_str("  ServerAliveInterval 15\n");
    b.push_str("  ServerAliveCountMax 4\n");
    b.push_str(&format!("  ForwardAgent {}\n", if e.forward_agent { "yes" } else { "no" }));
    b.push_str(&end_marker(&e.name));
    b.push('\n');
    b
}

/// `text` with the block for `name` replaced by `block` (appended when absent).
pub fn upsert_block(text: &str, name: &str, block: &str) -> String {
    let without = remove_block(text, name);
    let mut out = without.trim_end().to_string();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(block);
    out
}

/// `text` without the block for `name`.
pub fn remove_block(text: &str, name: &str) -> String {
    let (begin, end) = (begin_marker(name), end_marker(name));
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.trim() == begin {
            inside = true;
            continue;
        }
        if inside {
            if line.trim() == end {
                inside = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    // Collapse the blank lines a removed block leaves behind.
    while out.contains("\n\n\n") {
        out = out.replace("\n\n\n", "\n\n");
    }
    out
}

/// known_hosts text with `alias`'s entry set to `key` (or removed when `None`).
pub fn pin_host_key(text: &str, alias: &str, key: Option<&str>) -> String {
    let mut out: String =
        text.lines().filter(|l| l.split_whitespace().next() != Some(alias)).map(|l| format!("{l}\n")).collect();
    if let Some(k) = key {
        // Only the key type and data: the comment (`root@host`) means nothing here.
        let mut parts = k.split_whitespace();
        if let (Some(kind), Some(data)) = (parts.next(), parts.next()) {
            out.push_str(&format!("{alias} {kind} {data}\n"));
        }
    }
    out
}

fn read_or_empty(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes via a temporary file and a rename, so ssh never reads half a file; mode 0600 (ssh refuses
/// config files others can write).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("nexus-tmp");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, id: &str, port: u16) -> SshEntry {
        SshEntry {
            name: name.into(),
            id: id.into(),
            host: "staging.example.com".into(),
            port,
            user: "dev".into(),
            identity_file: "/home/a/.ssh/id_ed25519".into(),
            host_key: Some("ssh-ed25519 AAAAC3Nza root@ws".into()),
            forward_agent: false,
        }
    }

    #[test]
    fn blocks_are_replaced_and_removed_without_touching_the_rest() {
        let files = SshFiles::under(Path::new("/home/a"));
        let render = |e: &SshEntry| render_block(e, &files, Some(Path::new("/home/a/.nexus/ssh/cm/nexus-0")));
        let user = "Host mine\n  User me\n";
        let one = upsert_block(user, "site", &render(&entry("site", "ws-1", 2222)));
        assert!(one.starts_with(user) && one.contains("Host nexus-site\n  HostName staging.example.com\n  Port 2222"));
        let two = upsert_block(&one, "site", &render(&entry("site", "ws-1", 2230)));
        assert_eq!(two.matches("Host nexus-site").count(), 1, "{two}");
        assert!(two.contains("Port 2230") && !two.contains("Port 2222"));
        let other = upsert_block(&two, "blog", &render(&entry("blog", "ws-2", 2231)));
        let back = remove_block(&remove_block(&other, "site"), "blog");
        assert_eq!(back.trim_end(), user.trim_end());
    }

    #[test]
    fn host_keys_are_pinned_by_workspace_id() {
        let hosts = pin_host_key("github.com ssh-ed25519 GH\n", "ws-1", Some("ssh-ed25519 KEY1 root@x"));
        assert_eq!(hosts, "github.com ssh-ed25519 GH\nws-1 ssh-ed25519 KEY1\n");
        let hosts = pin_host_key(&hosts, "ws-1", Some("ssh-ed25519 KEY2"));
        assert_eq!(hosts, "github.com ssh-ed25519 GH\nws-1 ssh-ed25519 KEY2\n");
        assert_eq!(pin_host_key(&hosts, "ws-1", None), "github.com ssh-ed25519 GH\n");
    }

    #[test]
    fn upsert_writes_private_files_and_one_include_at_the_top() {
        use std::os::unix::fs::PermissionsExt as _;
        let home = tempfile::tempdir().unwrap();
        let files = SshFiles::under(home.path());
        std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
        std::fs::write(&files.user_config, "Host mine\n  User me\n").unwrap();
        files.upsert(&entry("site", "ws-1", 2222)).unwrap();
        files.upsert(&entry("site", "ws-1", 2222)).unwrap();
        let user = std::fs::read_to_string(&files.user_config).unwrap();
        let include = format!("Include {}", files.config.display());
        assert_eq!(user.matches(&include).count(), 1, "{user}");
        assert!(user.find(&include).unwrap() < user.find("Host mine").unwrap(), "{user}");
        assert!(user.ends_with("Host mine\n  User me\n"));
        for f in [&files.config, &files.known_hosts, &files.user_config] {
            assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
        }
        files.remove("site", "ws-1").unwrap();
        assert!(!std::fs::read_to_string(&files.config).unwrap().contains("nexus-site"));
        assert!(!std::fs::read_to_string(&files.known_hosts).unwrap().contains("ws-1"));
    }

    #[test]
    fn real_ssh_parses_the_block() {
        // `ssh -G` prints the settings ssh would use: proof the file is valid ssh syntax.
        let home = tempfile::tempdir().unwrap();
        let files = SshFiles::under(home.path());
        files.upsert(&entry("site", "ws-1", 2222)).unwrap();
        let out = std::process::Command::new("ssh")
            .args(["-G", "-F"])
            .arg(&files.user_config)
            .arg("nexus-site")
            .output()
            .expect("ssh is installed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for want in ["hostname staging.example.com", "port 2222", "user dev", "hostkeyalias ws-1", "controlmaster auto"]
        {
            assert!(text.lines().any(|l| l == want), "missing {want:?} in\n{text}");
        }
    }

    /// A home directory whose path is `len` characters long.
    fn home_of_length(len: usize) -> (tempfile::TempDir, PathBuf) {
        let base = tempfile::tempdir().unwrap();
        let pad = len - base.path().as_os_str().len() - 1;
        let home = base.path().join("h".repeat(pad));
        std::fs::create_dir(&home).unwrap();
        assert_eq!(home.as_os_str().len(), len);
        (base, home)
    }

    /// A directory like `$XDG_RUNTIME_DIR`: private to the user.
    fn private_tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    /// The `ControlPath` in our config file (of its one workspace), or `None` when it shares no connections.
    fn control_path_in(files: &SshFiles) -> Option<String> {
        let config = std::fs::read_to_string(&files.config).unwrap();
        let line = config.lines().find_map(|l| l.trim().strip_prefix("ControlPath "))?;
        (line != "none").then(|| line.trim_matches('"').to_string())
    }

    /// Regression: with a HOME of 38 characters or more, `<home>/.nexus/ssh/cm/%C` was too long for a
    /// socket address and every ssh through the config failed.
    #[test]
    fn control_sockets_fit_a_socket_address_under_a_60_character_home() {
        let (_base, home) = home_of_length(60);
        let runtime = private_tempdir();
        let files = SshFiles::with_runtime_dir(&home, Some(runtime.path().to_path_buf()));
        files.upsert(&entry("site", "ws-1", 2222)).unwrap();
        let path = control_path_in(&files).expect("a runtime dir with room: connections are shared");
        assert!(path.starts_with(runtime.path().to_str().unwrap()), "{path}");
        // ssh binds `<path>.<16 random>` and needs a final NUL, in macOS's 104 bytes.
        assert!(path.len() + 17 < 104, "{path} is {} bytes", path.len());

        // No room anywhere: no sharing rather than a broken ssh.
        let files = SshFiles::with_runtime_dir(&home, None);
        files.upsert(&entry("site", "ws-1", 2222)).unwrap();
        assert_eq!(control_path_in(&files), None);
        assert!(std::fs::read_to_string(&files.config).unwrap().contains("  ControlMaster no\n"));

        // A runtime dir others can enter is not used.
        std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let files = SshFiles::with_runtime_dir(&home, Some(runtime.path().to_path_buf()));
        files.upsert(&entry("site", "ws-1", 2222)).unwrap();
        assert_eq!(control_path_in(&files), None);
    }

    #[test]
    fn control_sockets_stay_under_a_short_home_and_differ_by_address() {
        let home = tempfile::tempdir().unwrap();
        let files = SshFiles::with_runtime_dir(home.path(), None);
        files.upsert(&entry("site", "ws-1", 2222)).unwrap();
        let first = control_path_in(&files).unwrap();
        assert!(Path::new(&first).starts_with(&files.control_dir), "{first}");
        assert_eq!(std::fs::metadata(&files.control_dir).unwrap().permissions().mode() & 0o777, 0o700);
        files.upsert(&entry("site", "ws-1", 2230)).unwrap();
        assert_ne!(control_path_in(&files).unwrap(), first, "a new port gets its own socket");
    }

    /// Regression, end to end: a real ssh through the config Nexus writes, with a 60-character HOME,
    /// to a real sshd; the second ssh goes through the shared connection.
    #[test]
    fn ssh_through_the_config_works_with_a_60_character_home() {
        let key = nexus_testkit::ssh::TestKey::generate("nexus-test");
        let sshd = nexus_testkit::ssh::Sshd::start(&key);
        let (_base, home) = home_of_length(60);
        let runtime = private_tempdir();
        for runtime_dir in [Some(runtime.path().to_path_buf()), None] {
            let shared = runtime_dir.is_some();
            let files = SshFiles::with_runtime_dir(&home, runtime_dir);
            let e = SshEntry {
                host: "127.0.0.1".into(),
                port: sshd.port,
                user: sshd.user.clone(),
                identity_file: key.path.clone(),
                host_key: Some(sshd.host_key.clone()),
                ..entry("site", "ws-1", 0)
            };
            files.upsert(&e).unwrap();
            let ssh = |args: &[&str]| {
                std::process::Command::new("ssh")
                    .arg("-F")
                    .arg(&files.user_config)
                    .args(["-o", "BatchMode=yes"])
                    .args(args)
                    .env("HOME", &home)
                    .output()
                    .expect("ssh is installed")
            };
            for _ in 0..2 {
                let out = ssh(&["nexus-site", "echo", "hello"]);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "ssh failed: {stderr}\nsshd: {}", sshd.log());
                assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
            }
            // A master is running only where connections are shared; stop it (ControlPersist).
            assert_eq!(ssh(&["-O", "check", "nexus-site"]).status.success(), shared);
            if shared {
                assert!(ssh(&["-O", "exit", "nexus-site"]).status.success());
            }
        }
    }

    /// Issue 10 item 6: the host, port, user, id and host key come from the server, and went into
    /// the ssh config as they came: a server could add `ProxyCommand`, which ssh runs on the laptop.
    #[test]
    fn a_malicious_server_cannot_inject_ssh_options() {
        let home = tempfile::tempdir().unwrap();
        let files = SshFiles::with_runtime_dir(home.path(), None);
        let attacks = [
            SshEntry { host: "host\n  ProxyCommand touch /tmp/pwned".into(), ..entry("site", "ws-1", 2222) },
            SshEntry { host: "-oProxyCommand=touch".into(), ..entry("site", "ws-1", 2222) },
            SshEntry { user: "dev\nProxyCommand touch /tmp/pwned".into(), ..entry("site", "ws-1", 2222) },
            SshEntry { id: "ws-1\n  LocalCommand touch /tmp/pwned".into(), ..entry("site", "ws-1", 2222) },
            SshEntry { name: "site\nHost *\n  ProxyCommand x".into(), ..entry("site", "ws-1", 2222) },
            SshEntry {
                host_key: Some("ssh-ed25519 AAAA\nevil ssh-ed25519 BBBB".into()),
                ..entry("site", "ws-1", 2222)
            },
            SshEntry { port: 0, ..entry("site", "ws-1", 2222) },
        ];
        for attack in attacks {
            let err = files.upsert(&attack).expect_err(&format!("{attack:?}"));
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains("server sent"), "{err}");
            let written = std::fs::read_to_string(&files.config).unwrap_or_default();
            assert!(!written.contains("ProxyCommand") && !written.contains("LocalCommand"), "{written}");
        }
        for ok in ["staging.example.com", "10.0.0.5", "::1", "fe80::1", "my_host-1"] {
            files.upsert(&SshEntry { host: ok.into(), ..entry("site", "ws-1", 2222) }).unwrap();
        }
    }
}
