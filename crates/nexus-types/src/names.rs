//! Validation of every name a user or agent sends: workspace names, repos, GitHub logins, SSH keys.
//!
//! These values end up in container names, file paths, git arguments and SQL, so each is checked
//! against a strict allow-list here, once, before anything is created.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Why a value was refused, with the next step for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidName {
    /// What is wrong, naming the field.
    pub message: String,
    /// What to do instead.
    pub hint: String,
}

fn invalid(message: impl Into<String>, hint: impl Into<String>) -> InvalidName {
    InvalidName { message: message.into(), hint: hint.into() }
}

/// Longest workspace name; container and DNS labels need room for a prefix.
pub const MAX_WORKSPACE_NAME: usize = 40;

/// Checks a workspace name: 1-40 of `a-z 0-9 -`, starting with a letter or digit, not ending in `-`.
pub fn workspace_name(name: &str) -> Result<(), InvalidName> {
    let hint = "use 1-40 lowercase letters, digits and '-', e.g. `my-project-feature`";
    if name.is_empty() {
        return Err(invalid("workspace_name is empty", hint));
    }
    if name.len() > MAX_WORKSPACE_NAME {
        return Err(invalid(
            format!("workspace_name is {} characters long; the limit is {MAX_WORKSPACE_NAME}", name.len()),
            hint,
        ));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(invalid(format!("workspace_name contains {bad:?}, which is not allowed"), hint));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(invalid("workspace_name must not start or end with '-'", hint));
    }
    Ok(())
}

/// Turns any text (a repo name, say) into a valid workspace name, or `None` if nothing usable is left.
pub fn slug(text: &str) -> Option<String> {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.truncate(MAX_WORKSPACE_NAME);
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

/// Checks a GitHub login: 1-39 of `A-Z a-z 0-9 -`, no leading, trailing or double hyphen.
pub fn github_login(login: &str) -> Result<(), InvalidName> {
    let hint = "send the GitHub login exactly as GitHub shows it, e.g. `octocat`";
    let ok = !login.is_empty()
        && login.len() <= 39
        && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !login.starts_with('-')
        && !login.ends_with('-')
        && !login.contains("--");
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("github_username {login:?} is not a valid GitHub login"), hint))
    }
}

/// A repository the workspace clones: where from, and what to call the checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    /// Owner (user or org) when known: from `owner/name`, or the URL's second-to-last path segment.
    pub owner: String,
    /// Repository name, without `.git`; also the checkout directory under `/home/dev`.
    pub name: String,
    /// The URL git clones from.
    pub url: String,
}

fn repo_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && !s.starts_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses `owner/name` (resolved against `git_base_url`) or a full `https://`, `http://`, `git://` or
/// `ssh://` URL.
pub fn repo(input: &str, git_base_url: &str) -> Result<RepoRef, InvalidName> {
    let hint =
        "use `owner/name` (e.g. `my-org/my-project`) or a full URL like `https://github.com/my-org/my-project.git`";
    let input = input.trim();
    if input.is_empty() {
        return Err(invalid("repo is empty", hint));
    }
    if input.chars().any(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"' | '`' | '\\' | ';' | '|' | '&' | '$' | '<' | '>')
    }) {
        return Err(invalid(format!("repo {input:?} contains characters a repository reference never has"), hint));
    }
    let known_scheme = ["https://", "http://", "git://", "ssh://"].iter().any(|p| input.starts_with(p));
    if input.contains("://") && !known_scheme {
        return Err(invalid(format!("repo {input:?} uses an unsupported URL scheme"), hint));
    }
    if known_scheme {
        let after_scheme = &input[input.find("://").map(|i| i + 3).unwrap_or(0)..];
        let path = after_scheme.split_once('/').map(|(_, p)| p).unwrap_or("");
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let Some(last) = segments.last() else {
            return Err(invalid(format!("repo URL {input:?} has no repository path"), hint));
        };
        let name = last.strip_suffix(".git").unwrap_or(last);
        let owner = if segments.len() >= 2 { segments[segments.len() - 2] } else { "" };
        if !repo_segment(name) || (!owner.is_empty() && !repo_segment(owner)) {
            return Err(invalid(format!("repo URL {input:?} has an invalid owner or name"), hint));
        }
        return Ok(RepoRef { owner: owner.to_string(), name: name.to_string(), url: input.to_string() });
    }
    let Some((owner, name)) = input.split_once('/') else {
        return Err(invalid(format!("repo {input:?} is neither `owner/name` nor a URL"), hint));
    };
    let name = name.strip_suffix(".git").unwrap_or(name);
    if !repo_segment(owner) || !repo_segment(name) {
        return Err(invalid(format!("repo {input:?} has an invalid owner or name"), hint));
    }
    let base = git_base_url.trim_end_matches('/');
    Ok(RepoRef { owner: owner.to_string(), name: name.to_string(), url: format!("{base}/{owner}/{name}.git") })
}

/// Checks a branch name the way `git check-ref-format --branch` would, minus the rarely used corners.
pub fn branch(name: &str) -> Result<(), InvalidName> {
    let hint = "use an existing branch name such as `main`, or leave it out for the repo's default branch";
    let bad = name.is_empty()
        || name.len() > 200
        || name.starts_with('-')
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with(".lock")
        || name.ends_with('.')
        || name.contains("..")
        || name.contains("@{")
        || name.contains("//")
        || name.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\' | '\'' | '"' | '`' | '$' | ';' | '|' | '&')
        });
    if bad {
        return Err(invalid(format!("branch {name:?} is not a valid branch name"), hint));
    }
    Ok(())
}

/// Bytes in a memory size as LXD writes them (`4GB`, `512MiB`, `1073741824`); `None` if unreadable.
/// The server and the config parser both use this, so a config the server would refuse fails early.
pub fn memory_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// Key types sshd in the workspace accepts.
const KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
];

/// A parsed OpenSSH public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// `type base64` without the comment: what goes into `authorized_keys`.
    pub authorized_line: String,
    /// `SHA256:...`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
}

/// Parses one `authorized_keys`-style public key line and computes its SHA256 fingerprint.
pub fn ssh_public_key(line: &str) -> Result<PublicKey, InvalidName> {
    let hint = "send the contents of your `~/.ssh/id_ed25519.pub` (one line starting with `ssh-ed25519`)";
    let line = line.trim();
    if line.contains('\n') || line.contains('\r') {
        return Err(invalid("ssh_pubkey must be a single line", hint));
    }
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(invalid("ssh_pubkey is not in `type base64 [comment]` form", hint));
    };
    if !KEY_TYPES.contains(&kind) {
        return Err(invalid(format!("ssh_pubkey type {kind:?} is not supported"), hint));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| invalid("ssh_pubkey's key data is not valid base64", hint))?;
    // The blob starts with the key type as an SSH string; a mismatch means a mangled paste.
    let declared =
        blob.get(..4).map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize).and_then(|n| blob.get(4..4 + n));
    if declared != Some(kind.as_bytes()) {
        return Err(invalid("ssh_pubkey's key data does not match its type", hint));
    }
    let digest = Sha256::digest(&blob);
    let fingerprint = format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest));
    Ok(PublicKey { authorized_line: format!("{kind} {b64}"), fingerprint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_names() {
        for ok in ["a", "my-project", "ws1", &"a".repeat(40)] {
            assert!(workspace_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../etc", "a/b", "a;rm -rf", "$(id)", "UPPER", "-x", "x-", &"a".repeat(41), "a b", "a\n"] {
            let err = workspace_name(bad).unwrap_err();
            assert!(!err.hint.is_empty(), "{bad}");
        }
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("My_Project.js").as_deref(), Some("my-project-js"));
        assert_eq!(slug("---").as_deref(), None);
        assert_eq!(slug(&"x".repeat(60)).unwrap().len(), 40);
    }

    #[test]
    fn repos() {
        let r = repo("my-org/my-project", "https://github.com/").unwrap();
        assert_eq!(r.url, "https://github.com/my-org/my-project.git");
        assert_eq!((r.owner.as_str(), r.name.as_str()), ("my-org", "my-project"));
        let r = repo("http://10.0.0.1:9000/git/acme/site.git", "x").unwrap();
        assert_eq!((r.owner.as_str(), r.name.as_str()), ("acme", "site"));
        for bad in [
            "",
            "noslash",
            "a/../b",
            "-x/y",
            "x/-y",
            "file:///etc/passwd",
            "a/b c",
            "a/b;id",
            "ext::sh -c id",
            "https://host",
            "../x",
        ] {
            assert!(repo(bad, "https://github.com").is_err(), "{bad}");
        }
    }

    #[test]
    fn branches() {
        assert!(branch("main").is_ok());
        assert!(branch("feature/x-1").is_ok());
        for bad in ["", "-f", "a..b", "a b", "x.lock", "a:b", "$(id)"] {
            assert!(branch(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_keys() {
        // Made by `ssh-keygen -t ed25519`; fingerprint from `ssh-keygen -lf`.
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl alice@laptop";
        let key = ssh_public_key(line).unwrap();
        assert_eq!(
            key.authorized_line,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl"
        );
        assert_eq!(key.fingerprint, "SHA256:rrPEsjiQhadoqhv4u823F0yTD/cbmZqRlQWgPlO46ns");
        assert!(ssh_public_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl").is_err());
        assert!(ssh_public_key("ssh-ed25519 !!!").is_err());
        assert!(ssh_public_key("ssh-ed25519 AAAA\nssh-ed25519 BBBB").is_err());
        assert!(ssh_public_key("garbage").is_err());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(memory_bytes("4GB"), Some(4_000_000_000));
        assert_eq!(memory_bytes("512MiB"), Some(512 << 20));
        assert_eq!(memory_bytes("1073741824"), Some(1 << 30));
        assert_eq!(memory_bytes("lots"), None);
        assert_eq!(memory_bytes("4 TB"), None);
    }

    #[test]
    fn logins() {
        assert!(github_login("octo-cat").is_ok());
        for bad in ["", "-a", "a-", "a--b", "a_b", &"a".repeat(40)] {
            assert!(github_login(bad).is_err(), "{bad}");
        }
    }
}
