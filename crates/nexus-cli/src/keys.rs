//! The user's SSH key: use the one they have, or make one, and read its public half.
//!
//! A private key is never overwritten or rewritten: an existing key is only read (its `.pub`, or the
//! public half derived by `ssh-keygen -y`). Everything runs through [`System`] so the decisions are unit
//! tested with [`crate::system::FakeSystem`].

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nexus_types::diagnostics::Hint;

use crate::config::KeyType;
use crate::system::System;

/// An OpenSSH public key line, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The whole line, comment included, as written to the `.pub` file and sent to GitHub.
    pub line: String,
    /// Key type, e.g. `ssh-ed25519`.
    pub kind: String,
    /// The key data.
    pub base64: String,
}

impl PublicKey {
    /// Parses and checks one `type base64 [comment]` line (types the workspace's sshd accepts only).
    pub fn parse(line: &str) -> Result<PublicKey, nexus_types::names::InvalidName> {
        let line = line.trim();
        nexus_types::names::ssh_public_key(line)?;
        let mut parts = line.split_whitespace();
        let kind = parts.next().unwrap_or_default().to_string();
        let base64 = parts.next().unwrap_or_default().to_string();
        Ok(PublicKey { line: line.to_string(), kind, base64 })
    }

    /// Same key, whatever the comments say (GitHub drops or replaces them).
    pub(crate) fn same_key(&self, other: &PublicKey) -> bool {
        self.kind == other.kind && self.base64 == other.base64
    }

    /// The comment after the key data, if any.
    pub fn comment(&self) -> Option<&str> {
        let mut parts = self.line.splitn(3, char::is_whitespace);
        parts.nth(2).map(str::trim).filter(|c| !c.is_empty())
    }

    /// `type base64`, without the comment: what goes into `authorized_keys`.
    pub fn authorized_line(&self) -> String {
        format!("{} {}", self.kind, self.base64)
    }

    /// `SHA256:...`, as `ssh-keygen -lf` and GitHub show it.
    pub fn fingerprint(&self) -> String {
        nexus_types::names::ssh_public_key(&self.line).map(|k| k.fingerprint).unwrap_or_default()
    }
}

/// What [`ensure_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// The key was already there.
    Existing(PublicKey),
    /// A new key was generated.
    Generated(PublicKey),
}

impl KeyOutcome {
    /// The public key, either way.
    pub fn key(&self) -> &PublicKey {
        match self {
            KeyOutcome::Existing(k) | KeyOutcome::Generated(k) => k,
        }
    }

    /// Whether the key is new.
    pub fn generated(&self) -> bool {
        matches!(self, KeyOutcome::Generated(_))
    }
}

/// Why the key could not be used or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `ssh-keygen` is not installed.
    #[error("ssh-keygen is not installed")]
    NoSshKeygen,
    /// The private key is passphrase-protected and has no `.pub` to read instead.
    #[error("{} is protected by a passphrase and has no public key file next to it", path.display())]
    Encrypted {
        /// The private key.
        path: PathBuf,
    },
    /// `ssh-keygen` failed.
    #[error("`ssh-keygen` could not {action} {}: {stderr}", path.display())]
    Keygen {
        /// What we asked of it: "generate" or "read".
        action: &'static str,
        /// The private key.
        path: PathBuf,
        /// What it printed.
        stderr: String,
    },
    /// The public key file or the derived key is not a usable OpenSSH public key.
    #[error("{} is not a usable public key: {}", path.display(), reason.message)]
    BadPublicKey {
        /// The file (or the private key it was derived from).
        path: PathBuf,
        /// What is wrong.
        reason: nexus_types::names::InvalidName,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// "read", "write" or "create".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Hint for KeyError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            KeyError::NoSshKeygen => {
                "install OpenSSH: `sudo apt-get install openssh-client` (Linux) or `brew install openssh` (macOS)"
                    .to_string()
            }
            KeyError::Encrypted { path } => format!(
                "write the public key once with `ssh-keygen -y -f {p} > {p}.pub` (it asks for the passphrase), \
                 then run this again; or set `ssh.key_path` in ~/.nexus/config.yaml to a new path and Nexus makes a key",
                p = path.display()
            ),
            KeyError::Keygen { path, .. } | KeyError::BadPublicKey { path, .. } => format!(
                "check `{}`, or set `ssh.key_path` in ~/.nexus/config.yaml to a new path and Nexus makes a key",
                path.display()
            ),
            KeyError::Io { path, .. } => format!("check the owner and mode of `{}` (`ls -l`)", path.display()),
        })
    }
}

/// `path` with `.pub` appended (`id_ed25519` → `id_ed25519.pub`).
fn public_key_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".pub");
    PathBuf::from(name)
}

/// Makes sure an ed25519 key exists at `path` and returns its public half; see [`ensure_key_of_type`].
pub fn ensure_key(sys: &dyn System, path: &Path, comment: &str) -> Result<KeyOutcome, KeyError> {
    ensure_key_of_type(sys, path, comment, KeyType::Ed25519)
}

/// Makes sure a key exists at `path`: an existing one is read (from `path.pub`, else derived with
/// `ssh-keygen -y` and saved as `path.pub`), otherwise a `kind` key without passphrase is generated with
/// `comment`, creating its directory with mode 0700.
pub(crate) fn ensure_key_of_type(
    sys: &dyn System,
    path: &Path,
    comment: &str,
    kind: KeyType,
) -> Result<KeyOutcome, KeyError> {
    let pub_path = public_key_path(path);
    // `symlink_metadata` so a dangling symlink counts as "there": we must not write through it.
    if std::fs::symlink_metadata(path).is_ok() {
        if pub_path.exists() {
            return read_public_key(&pub_path).map(KeyOutcome::Existing);
        }
        let line = derive_public_key(sys, path)?;
        let key =
            PublicKey::parse(&line).map_err(|reason| KeyError::BadPublicKey { path: path.to_path_buf(), reason })?;
        write_public_key(&pub_path, &key.line)?;
        return Ok(KeyOutcome::Existing(key));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| KeyError::Io {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let path_text = path.to_string_lossy();
    let mut argv = vec!["ssh-keygen"];
    argv.extend_from_slice(kind.keygen_args());
    argv.extend_from_slice(&["-N", "", "-C", comment, "-f", &path_text, "-q"]);
    let out = sys.run(&argv, None).map_err(|e| keygen_spawn_error(e, path))?;
    if !out.ok() {
        return Err(KeyError::Keygen { action: "generate", path: path.to_path_buf(), stderr: printed(&out.stderr) });
    }
    read_public_key(&pub_path).map(KeyOutcome::Generated)
}

fn read_public_key(pub_path: &Path) -> Result<PublicKey, KeyError> {
    let text = std::fs::read_to_string(pub_path).map_err(|source| KeyError::Io {
        action: "read",
        path: pub_path.to_path_buf(),
        source,
    })?;
    PublicKey::parse(text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default())
        .map_err(|reason| KeyError::BadPublicKey { path: pub_path.to_path_buf(), reason })
}

/// The public half of an existing private key. `-P ""` makes ssh-keygen fail on a protected key
/// instead of prompting for its passphrase in the middle of our output.
fn derive_public_key(sys: &dyn System, path: &Path) -> Result<String, KeyError> {
    let path_text = path.to_string_lossy();
    let out =
        sys.run(&["ssh-keygen", "-y", "-P", "", "-f", &path_text], None).map_err(|e| keygen_spawn_error(e, path))?;
    if out.ok() {
        return Ok(out.stdout.trim().to_string());
    }
    let stderr = printed(&out.stderr);
    if stderr.contains("passphrase") {
        return Err(KeyError::Encrypted { path: path.to_path_buf() });
    }
    Err(KeyError::Keygen { action: "read", path: path.to_path_buf(), stderr })
}

/// Writes a derived `.pub` (0644, like ssh-keygen), never replacing a file that appeared meanwhile.
fn write_public_key(pub_path: &Path, line: &str) -> Result<(), KeyError> {
    use std::io::Write as _;
    let err = |source| KeyError::Io { action: "write", path: pub_path.to_path_buf(), source };
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(pub_path).map_err(err)?;
    file.write_all(format!("{line}\n").as_bytes()).map_err(err)
}

/// ssh-keygen's complaint, for the error message.
fn printed(stderr: &str) -> String {
    match stderr.trim() {
        "" => "it printed no reason".to_string(),
        s => s.to_string(),
    }
}

fn keygen_spawn_error(e: std::io::Error, path: &Path) -> KeyError {
    if e.kind() == std::io::ErrorKind::NotFound {
        KeyError::NoSshKeygen
    } else {
        KeyError::Io { action: "run ssh-keygen for", path: path.to_path_buf(), source: e }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::system::{FakeSystem, HostSystem, Output};

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl alice@laptop";

    #[test]
    fn public_keys_compare_without_comments() {
        let a = PublicKey::parse(KEY).unwrap();
        assert_eq!(a.kind, "ssh-ed25519");
        assert_eq!(a.comment(), Some("alice@laptop"));
        assert_eq!(a.fingerprint(), "SHA256:rrPEsjiQhadoqhv4u823F0yTD/cbmZqRlQWgPlO46ns");
        let b = PublicKey::parse(&a.authorized_line()).unwrap();
        assert_eq!(b.comment(), None);
        assert!(a.same_key(&b) && a != b);
        let other = PublicKey::parse(&KEY.replace("Bl alice", "Bk alice")).unwrap();
        assert!(!a.same_key(&other));
        assert!(PublicKey::parse("ssh-ed25519 !!!").is_err());
    }

    #[test]
    fn an_existing_pub_file_is_read_without_running_anything() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "PRIVATE").unwrap();
        std::fs::write(public_key_path(&key), format!("{KEY}\n")).unwrap();
        let sys = FakeSystem::default();
        let outcome = ensure_key(&sys, &key, "nexus").unwrap();
        assert_eq!(outcome, KeyOutcome::Existing(PublicKey::parse(KEY).unwrap()));
        assert!(!outcome.generated());
        assert!(sys.calls().is_empty());
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "PRIVATE");
    }

    #[test]
    fn a_missing_pub_file_is_derived_and_saved() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "PRIVATE").unwrap();
        let sys = FakeSystem::default().on("ssh-keygen -y", 0, &format!("{KEY}\n"));
        let outcome = ensure_key(&sys, &key, "nexus").unwrap();
        assert_eq!(outcome.key().line, KEY);
        assert_eq!(sys.calls(), [format!("ssh-keygen -y -P  -f {}", key.display())]);
        assert_eq!(std::fs::read_to_string(public_key_path(&key)).unwrap(), format!("{KEY}\n"));
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "PRIVATE");
    }

    #[test]
    fn a_protected_key_without_pub_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "PRIVATE").unwrap();
        let mut sys = FakeSystem::default();
        let stderr = "Load key \"x\": incorrect passphrase supplied to decrypt private key";
        sys.rules.push(("ssh-keygen -y".into(), Output { code: 255, stdout: String::new(), stderr: stderr.into() }));
        let err = ensure_key(&sys, &key, "nexus").unwrap_err();
        assert!(matches!(err, KeyError::Encrypted { .. }), "{err:?}");
        assert!(err.hint().unwrap().contains(&format!("ssh-keygen -y -f {}", key.display())), "{:?}", err.hint());
        assert!(!public_key_path(&key).exists());
    }

    #[test]
    fn a_missing_key_is_generated_in_a_new_0700_directory() {
        let home = tempfile::tempdir().unwrap();
        let key = home.path().join(".ssh/id_ed25519");
        let sys = FakeSystem::default().on("ssh-keygen -t ed25519", 0, "");
        // The fake writes no files, so the first run cannot find the new .pub.
        let err = ensure_key(&sys, &key, "alice@nexus").unwrap_err();
        assert!(matches!(err, KeyError::Io { action: "read", .. }), "{err:?}");
        assert_eq!(sys.calls(), [format!("ssh-keygen -t ed25519 -N  -C alice@nexus -f {} -q", key.display())]);
        let mode = std::fs::metadata(home.path().join(".ssh")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        // With a .pub standing in for what ssh-keygen would write (and still no private key), it works.
        std::fs::write(public_key_path(&key), KEY).unwrap();
        let outcome = ensure_key(&sys, &key, "alice@nexus").unwrap();
        assert!(outcome.generated());
        assert_eq!(outcome.key().line, KEY);
    }

    #[test]
    fn keygen_failures_and_a_missing_keygen_have_hints() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        let sys = FakeSystem::default().on("ssh-keygen", 1, "");
        let err = ensure_key(&sys, &key, "c").unwrap_err();
        assert!(matches!(err, KeyError::Keygen { action: "generate", .. }), "{err:?}");
        struct Missing;
        impl System for Missing {
            fn run(&self, _: &[&str], _: Option<&str>) -> std::io::Result<Output> {
                Err(std::io::ErrorKind::NotFound.into())
            }
            fn run_visible(&self, _: &[&str]) -> std::io::Result<i32> {
                Err(std::io::ErrorKind::NotFound.into())
            }
            fn spawn_detached(&self, _: &[&str], _: &str) -> std::io::Result<i32> {
                Err(std::io::ErrorKind::NotFound.into())
            }
        }
        let err = ensure_key(&Missing, &key, "c").unwrap_err();
        assert!(matches!(err, KeyError::NoSshKeygen));
        assert!(err.hint().unwrap().contains("sudo apt-get install openssh-client"));
        assert!(err.hint().unwrap().contains("brew install openssh"));
    }

    #[test]
    fn real_ssh_keygen_generates_then_reuses_and_never_overwrites() {
        if crate::opener::find_on_path("ssh-keygen").is_none() {
            eprintln!("skipped: ssh-keygen is not installed");
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let key = home.path().join(".ssh/id_ed25519");
        let first = ensure_key(&HostSystem, &key, "alice@nexus-test").unwrap();
        assert!(first.generated());
        assert_eq!(first.key().kind, "ssh-ed25519");
        assert_eq!(first.key().comment(), Some("alice@nexus-test"));
        // ssh refuses a private key others can read ("UNPROTECTED PRIVATE KEY FILE").
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o077, 0);
        let private = std::fs::read(&key).unwrap();

        let second = ensure_key(&HostSystem, &key, "other").unwrap();
        assert_eq!(second, KeyOutcome::Existing(first.key().clone()));

        // Without the .pub, the public half is derived from the private key, which stays untouched.
        std::fs::remove_file(public_key_path(&key)).unwrap();
        let third = ensure_key(&HostSystem, &key, "other").unwrap();
        assert!(!third.generated() && third.key().same_key(first.key()));
        assert_eq!(std::fs::read(&key).unwrap(), private);

        // A passphrase-protected key without .pub is reported, not prompted for.
        let locked = home.path().join(".ssh/locked");
        let out = HostSystem
            .run(&["ssh-keygen", "-t", "ed25519", "-N", "secret-pass", "-q", "-f", locked.to_str().unwrap()], None)
            .unwrap();
        assert!(out.ok(), "{out:?}");
        std::fs::remove_file(public_key_path(&locked)).unwrap();
        let err = ensure_key(&HostSystem, &locked, "x").unwrap_err();
        assert!(matches!(err, KeyError::Encrypted { .. }), "{err:?}");
    }
}
