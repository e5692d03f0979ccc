//! Random tokens, their hashes, and the token files kept in the data dir.

use std::io::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Result, ServerError};

/// `prefix` + 64 hex characters of OS randomness.
pub(crate) fn random_token(prefix: &str) -> String {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    format!("{prefix}{}", hex(&buf))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a token, hex; what the database stores. Tokens carry 256 random bits, so a fast hash
/// is enough: there is nothing to brute-force.
pub(crate) fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Compares two secrets without leaking where they differ (compares their hashes).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// Reads the token in `path`, or creates it (mode 0600) with a fresh random one.
pub(crate) fn load_or_create(path: &Path, prefix: &str) -> Result<String> {
    let io = |source| ServerError::Io { path: path.display().to_string(), source };
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let token = random_token(prefix);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(format!("{token}\n").as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_persist_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        let a = load_or_create(&p, "x_").unwrap();
        assert!(a.starts_with("x_") && a.len() == 66);
        assert_eq!(load_or_create(&p, "x_").unwrap(), a);
        assert_ne!(random_token(""), random_token(""));
        assert_eq!(hash_token("a"), hash_token("a"));
        assert!(same_secret("a", "a") && !same_secret("a", "b"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
