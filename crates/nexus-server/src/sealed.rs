//! Secrets the database keeps (users' GitHub tokens) are sealed with ChaCha20-Poly1305 under a key
//! kept in a file outside the database, so a copy of the database (a backup, a stray `cp`, another
//! local user reading it) does not give away the tokens.
//!
//! The key file holds one key per line, 64 hex characters each: the first line seals, every line
//! opens. That is the whole rotation procedure (docs/security/accounts.md): put a new key on the
//! first line, keep the old one below it, restart (the server reseals every value under the first
//! key at start), then drop the old line.
//!
//! A sealed value is `nxsealed1:<key id>:<base64(nonce ‖ ciphertext)>`; the key id (the first 8 hex
//! characters of the key's SHA-256) says which key opens it. The associated data binds a value to
//! the row it was written for, so a sealed token copied into another row does not open there.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use sha2::{Digest, Sha256};

use crate::error::{Result, ServerError};
use crate::secret;

/// Prefix of every sealed value; a stored value without it was written in clear by an older server.
const PREFIX: &str = "nxsealed1:";
const NONCE_LEN: usize = 12;

#[derive(Clone)]
struct SealingKey {
    id: String,
    cipher: ChaCha20Poly1305,
}

impl SealingKey {
    fn from_bytes(bytes: &[u8; 32]) -> SealingKey {
        let id = secret::hex(&Sha256::digest(bytes)[..4]);
        SealingKey { id, cipher: ChaCha20Poly1305::new(bytes.into()) }
    }
}

/// Seals and opens the secrets the database keeps.
#[derive(Clone)]
pub(crate) struct Sealer {
    /// Seals; also opens.
    current: SealingKey,
    /// Open values sealed before a rotation.
    previous: Vec<SealingKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: the keys never go into a log line.
        f.debug_struct("Sealer").field("current", &self.current.id).finish_non_exhaustive()
    }
}

/// Why a stored value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Sealed under a key the key file no longer holds.
    UnknownKey(String),
    /// Not valid under its key: damaged, or moved from another row.
    Damaged,
}

impl Sealer {
    /// Reads the key file, or creates it (mode 0600) with one fresh random key.
    pub(crate) fn load_or_create(path: &Path) -> Result<Sealer> {
        let io = |source| ServerError::Io { path: path.display().to_string(), source };
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => return Sealer::parse(&text).map_err(io),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random source is available");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(format!("{}\n", secret::hex(&key)).as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(Sealer { current: SealingKey::from_bytes(&key), previous: Vec::new() })
    }

    /// Keys, one per line (64 hex characters); `#` comments and blank lines are skipped.
    fn parse(text: &str) -> std::io::Result<Sealer> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = parse_hex_key(line).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("line {} is not a key (64 hex characters); make one with `openssl rand -hex 32`", n + 1),
                )
            })?;
            keys.push(SealingKey::from_bytes(&bytes));
        }
        let mut keys = keys.into_iter();
        let current = keys.next().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the key file holds no key; delete it to get a new one",
            )
        })?;
        Ok(Sealer { current, previous: keys.collect() })
    }

    /// A sealer with a fixed key, for tests.
    #[cfg(test)]
    pub(crate) fn for_tests(byte: u8) -> Sealer {
        Sealer { current: SealingKey::from_bytes(&[byte; 32]), previous: Vec::new() }
    }

    /// Seals `plain` for the row named by `context`.
    pub(crate) fn seal(&self, plain: &str, context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let sealed = self
            .current
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: context.as_bytes() })
            .expect("ChaCha20-Poly1305 seals any message under 256 GiB");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.current.id, base64::engine::general_purpose::STANDARD.encode(blob))
    }

    /// Whether `stored` is a sealed value (rather than clear text from an older server).
    #[cfg(test)]
    pub(crate) fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// Whether `stored` is sealed under the key that seals now (nothing to reseal).
    pub(crate) fn is_current(&self, stored: &str) -> bool {
        stored.strip_prefix(PREFIX).and_then(|rest| rest.split_once(':')).is_some_and(|(id, _)| id == self.current.id)
    }

    /// Opens a sealed value written for `context`. A value without the prefix is returned as it is:
    /// it was stored in clear before sealing existed, and the start-up reseal has not reached it.
    pub(crate) fn open(&self, stored: &str, context: &str) -> std::result::Result<String, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let (id, b64) = rest.split_once(':').ok_or(OpenError::Damaged)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_string()))?;
        let blob = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| OpenError::Damaged)?;
        if blob.len() < NONCE_LEN {
            return Err(OpenError::Damaged);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: context.as_bytes() })
            .map_err(|_| OpenError::Damaged)?;
        String::from_utf8(plain).map_err(|_| OpenError::Damaged)
    }

    /// The value to store instead of `stored` so it is sealed under the current key; `None` when it
    /// already is. Clear values get sealed; values under an older key get resealed.
    pub(crate) fn reseal(&self, stored: &str, context: &str) -> std::result::Result<Option<String>, OpenError> {
        if self.is_current(stored) {
            return Ok(None);
        }
        Ok(Some(self.seal(&self.open(stored, context)?, context)))
    }
}

/// The associated data for a workspace's GitHub token: the row it belongs to.
pub(crate) fn git_token_context(workspace_id: &str) -> String {
    format!("workspaces.git_token:{workspace_id}")
}

fn parse_hex_key(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_row_and_hide_the_text() {
        let s = Sealer::for_tests(7);
        let sealed = s.seal("ghp_secret", "workspaces.git_token:ws-a");
        assert!(Sealer::is_sealed(&sealed) && s.is_current(&sealed));
        assert!(!sealed.contains("ghp_secret"));
        assert_ne!(sealed, s.seal("ghp_secret", "workspaces.git_token:ws-a"), "fresh nonce each time");
        assert_eq!(s.open(&sealed, "workspaces.git_token:ws-a").unwrap(), "ghp_secret");
        assert_eq!(s.open(&sealed, "workspaces.git_token:ws-b"), Err(OpenError::Damaged));
        assert_eq!(
            Sealer::for_tests(8).open(&sealed, "workspaces.git_token:ws-a"),
            Err(OpenError::UnknownKey(s.current.id.clone()))
        );
        // A clear value from an older server opens as itself and is resealed.
        assert_eq!(s.open("ghp_old", "c").unwrap(), "ghp_old");
        let resealed = s.reseal("ghp_old", "c").unwrap().unwrap();
        assert_eq!(s.open(&resealed, "c").unwrap(), "ghp_old");
        assert_eq!(s.reseal(&resealed, "c").unwrap(), None);
    }

    #[test]
    fn key_file_is_created_private_and_rotation_keeps_old_values_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let first = Sealer::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let old_line = std::fs::read_to_string(&path).unwrap();
        let sealed = first.seal("ghp_x", "c");
        assert_eq!(Sealer::load_or_create(&path).unwrap().open(&sealed, "c").unwrap(), "ghp_x");

        // Rotation: a new key on the first line, the old one kept below it.
        let new_key = "ab".repeat(32);
        std::fs::write(&path, format!("# rotated\n{new_key}\n{old_line}")).unwrap();
        let rotated = Sealer::load_or_create(&path).unwrap();
        assert!(!rotated.is_current(&sealed));
        let resealed = rotated.reseal(&sealed, "c").unwrap().unwrap();
        assert!(rotated.is_current(&resealed));
        // Once the old line is gone, only resealed values open.
        std::fs::write(&path, format!("{new_key}\n")).unwrap();
        let after = Sealer::load_or_create(&path).unwrap();
        assert_eq!(after.open(&resealed, "c").unwrap(), "ghp_x");
        assert!(matches!(after.open(&sealed, "c"), Err(OpenError::UnknownKey(_))));

        std::fs::write(&path, "not a key\n").unwrap();
        let err = Sealer::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("secrets.key"), "{err}");
    }
}
