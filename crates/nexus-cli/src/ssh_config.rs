//! Our own ssh config and known_hosts files, and the one `Include` line that hooks them into `~/.ssh/config`.
//!
//! Each workspace gets a marked block (`Host nexus-<name>`) so it can be replaced or removed without
//! touching anything the user wrote. The host key the server reported is pinned under a
//! `HostKeyAlias` named after the workspace id, so a port handed to another workspace later can
//! never match an old key, and designers never see a trust-on-first-use prompt.

use std::path::{Path, PathBuf};

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
    /// Control sockets for connection sharing.
    pub control_dir: PathBuf,
}

impl SshFiles {
    /// The files under `home`.
    pub fn under(home: &Path) -> SshFiles {
        SshFiles {
            user_config: home.join(".ssh/config"),
            config: home.join(".nexus/ssh/config"),
            known_hosts: home.join(".nexus/ssh/known_hosts"),
            control_dir: home.join(".nexus/ssh/cm"),
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
    pub fn upsert(&self, entry: &SshEntry) -> std::io::Result<()> {
        create_private_dir(self.config.parent().expect("has a parent"))?;
        create_private_dir(&self.control_dir)?;
        let current = read_or_empty(&self.config)?;
        write_private(&self.config, &upsert_block(&current, &entry.name, &render_block(entry, self)))?;
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

/// A workspace's block, between markers.
pub fn render_block(e: &SshEntry, files: &SshFiles) -> String {
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
    b.push_str("  ControlMaster auto\n");
    b.push_str(&format!("  ControlPath \"{}/%C\"\n", files.control_dir.display()));
    b.push_str("  ControlPersist 10m\n");
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
        let user = "Host mine\n  User me\n";
        let one = upsert_block(user, "site", &render_block(&entry("site", "ws-1", 2222), &files));
        assert!(one.starts_with(user) && one.contains("Host nexus-site\n  HostName staging.example.com\n  Port 2222"));
        let two = upsert_block(&one, "site", &render_block(&entry("site", "ws-1", 2230), &files));
        assert_eq!(two.matches("Host nexus-site").count(), 1, "{two}");
        assert!(two.contains("Port 2230") && !two.contains("Port 2222"));
        let other = upsert_block(&two, "blog", &render_block(&entry("blog", "ws-2", 2231), &files));
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
}
