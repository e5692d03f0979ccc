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

/// One place repositories may be fetched from: a scheme, a host and a port (`None`: any port, the
/// operator wrote `:*`). Written `[scheme://]host[:port|:*]`; the scheme is `https` when left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHost {
    /// `https`, `http`, `git` or `ssh`.
    pub scheme: String,
    /// Lower-case host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port; `None` means any.
    pub port: Option<u16>,
}

/// Default port of each scheme a repository URL may use.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        "git" => Some(9418),
        "ssh" => Some(22),
        _ => None,
    }
}

impl GitHost {
    /// Parses an allow-list entry such as `git.example.com`, `https://git.example.com:8443`,
    /// `ssh://git.example.com` or `http://127.0.0.1:*`.
    pub fn parse(entry: &str) -> Result<GitHost, InvalidName> {
        let hint = "write `[scheme://]host[:port]`, e.g. `git.example.com` (https) or `ssh://git.example.com`; \
                    `:*` allows any port";
        let entry = entry.trim().trim_end_matches('/');
        let (scheme, rest) = entry.split_once("://").unwrap_or(("https", entry));
        let scheme = scheme.to_ascii_lowercase();
        if default_port(&scheme).is_none() {
            return Err(invalid(format!("git host {entry:?} has an unsupported scheme {scheme:?}"), hint));
        }
        let (host, port) = match rest.strip_suffix(":*") {
            Some(host) => (host, None),
            None => {
                let url = url::Url::parse(&format!("{scheme}://{rest}"))
                    .map_err(|e| invalid(format!("git host {entry:?} is not a host: {e}"), hint))?;
                let host = url.host_str().unwrap_or_default().to_string();
                let port = url.port().or(default_port(&scheme));
                if !url.path().trim_matches('/').is_empty() || url.query().is_some() || !url.username().is_empty() {
                    return Err(invalid(format!("git host {entry:?} must be a host and port only"), hint));
                }
                return Ok(GitHost { scheme, host: unbracket(&host), port });
            }
        };
        let parsed = url::Url::parse(&format!("{scheme}://{host}"))
            .map_err(|e| invalid(format!("git host {entry:?} is not a host: {e}"), hint))?;
        Ok(GitHost { scheme, host: unbracket(parsed.host_str().unwrap_or_default()), port })
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.scheme == scheme && self.host.eq_ignore_ascii_case(host) && (self.port.is_none() || self.port == port)
    }
}

impl std::fmt::Display for GitHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(p) => write!(f, "{}://{host}:{p}", self.scheme),
            None => write!(f, "{}://{host}:*", self.scheme),
        }
    }
}

fn unbracket(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

/// Where repositories may come from: the configured git base URL's host, plus the operator's
/// allow-list. Everything else is refused before any network traffic, so a repo URL cannot make the
/// server fetch from an address of the user's choosing (server-side request forgery).
#[derive(Debug, Clone)]
pub struct GitHosts {
    base_url: String,
    allowed: Vec<GitHost>,
}

impl GitHosts {
    /// The hosts of `git_base_url` and each of `extra` (`--allow-git-host` entries).
    pub fn new(git_base_url: &str, extra: &[String]) -> Result<GitHosts, InvalidName> {
        let base_url = git_base_url.trim().trim_end_matches('/').to_string();
        let url = url::Url::parse(&base_url).map_err(|e| {
            invalid(format!("git base URL {base_url:?} is not a URL: {e}"), "use e.g. `https://github.com`")
        })?;
        let scheme = url.scheme().to_string();
        if default_port(&scheme).is_none() || url.host_str().is_none() {
            return Err(invalid(
                format!("git base URL {base_url:?} must be https://, http://, git:// or ssh:// with a host"),
                "use e.g. `https://github.com`",
            ));
        }
        let mut allowed = vec![GitHost {
            host: unbracket(url.host_str().unwrap_or_default()),
            port: url.port().or(default_port(&scheme)),
            scheme,
        }];
        for e in extra.iter().filter(|e| !e.trim().is_empty()) {
            allowed.push(GitHost::parse(e)?);
        }
        Ok(GitHosts { base_url, allowed })
    }

    /// The allowed hosts, the base URL's first.
    pub fn allowed(&self) -> &[GitHost] {
        &self.allowed
    }

    /// Whether the operator wrote this IP address into the base URL or the allow-list: addresses
    /// named that way may be private (a LAN git server).
    pub fn names_address(&self, ip: std::net::IpAddr) -> bool {
        self.named_addresses().contains(&ip)
    }

    /// The IP addresses written into the base URL and the allow-list.
    pub fn named_addresses(&self) -> Vec<std::net::IpAddr> {
        self.allowed.iter().filter_map(|h| h.host.parse().ok()).collect()
    }
}

/// A repository URL's parts, as [`repo`] checked them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoLocation {
    /// `https`, `http`, `git` or `ssh`.
    pub scheme: String,
    /// Host name or IP address (IPv6 without brackets), lower case.
    pub host: String,
    /// The port, the scheme's default when the URL names none.
    pub port: u16,
}

/// Splits a repository URL into scheme, host and port; `None` when it is not one.
pub fn repo_location(url: &str) -> Option<RepoLocation> {
    let parsed = url::Url::parse(url).ok()?;
    let scheme = parsed.scheme().to_string();
    let port = parsed.port().or(default_port(&scheme))?;
    Some(RepoLocation { host: unbracket(parsed.host_str()?), port, scheme })
}

/// Parses `owner/name` (resolved against the git base URL) or a full URL on one of `hosts`:
/// `https://` (or the scheme the operator configured for that host), no credentials except an ssh
/// user, no query or fragment, a path of plain `owner/name` segments.
pub fn repo(input: &str, hosts: &GitHosts) -> Result<RepoRef, InvalidName> {
    let hint =
        "use `owner/name` (e.g. `my-org/my-project`) or a full URL like `https://github.com/my-org/my-project.git`";
    let input = input.trim();
    if input.is_empty() {
        return Err(invalid("repo is empty", hint));
    }
    if input.chars().any(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '\'' | '"' | '`' | '\\' | ';' | '|' | '&' | '$' | '<' | '>' | '?' | '#' | '%')
    }) {
        return Err(invalid(format!("repo {input:?} contains characters a repository reference never has"), hint));
    }
    let known_scheme = ["https://", "http://", "git://", "ssh://"].iter().any(|p| input.starts_with(p));
    if input.contains("://") && !known_scheme {
        return Err(invalid(format!("repo {input:?} uses an unsupported URL scheme"), hint));
    }
    if known_scheme {
        let url = url::Url::parse(input).map_err(|e| invalid(format!("repo URL {input:?} is not a URL: {e}"), hint))?;
        let scheme = url.scheme();
        let host = unbracket(url.host_str().unwrap_or_default());
        // The host exactly as written: odd spellings (`0x7f.1`, `2130706433`) that parsers read
        // differently are refused rather than compared after normalising.
        let authority = &input[scheme.len() + 3..];
        let authority = authority.split('/').next().unwrap_or_default();
        let written = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let written_host = match written.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => written.split(':').next().unwrap_or_default(),
        };
        let port = url.port().or(default_port(scheme));
        let allowed = hosts.allowed.iter().any(|h| h.allows(scheme, &host, port));
        if host.is_empty() || !written_host.eq_ignore_ascii_case(&host) || !allowed {
            let on: Vec<String> = hosts.allowed.iter().map(|h| h.to_string()).collect();
            return Err(invalid(
                format!("repo URL {input:?} is not on a git host this server fetches from"),
                format!(
                    "use `owner/name`, or a URL on {}; the operator can allow more hosts with \
                     `nexus server --allow-git-host`",
                    on.join(", ")
                ),
            ));
        }
        if url.password().is_some() || (!url.username().is_empty() && scheme != "ssh") {
            return Err(invalid(
                format!("repo URL {input:?} carries credentials"),
                "leave the user and password out of the URL; private repositories use your GitHub sign-in \
                 (`nexus auth github`)",
            ));
        }
        // The path as written: the parser would already have folded `a/../b` into `b`.
        let path = input[scheme.len() + 3..].split_once('/').map_or("", |(_, p)| p);
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let Some(last) = segments.last() else {
            return Err(invalid(format!("repo URL {input:?} has no repository path"), hint));
        };
        let name = last.strip_suffix(".git").unwrap_or(last);
        let owner = if segments.len() >= 2 { segments[segments.len() - 2] } else { "" };
        if !repo_segment(name) || segments.iter().any(|s| !repo_segment(s)) {
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
    let base = &hosts.base_url;
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

    fn hosts(base: &str, extra: &[&str]) -> GitHosts {
        GitHosts::new(base, &extra.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn repos() {
        let gh = hosts("https://github.com/", &[]);
        let r = repo("my-org/my-project", &gh).unwrap();
        assert_eq!(r.url, "https://github.com/my-org/my-project.git");
        assert_eq!((r.owner.as_str(), r.name.as_str()), ("my-org", "my-project"));
        let r = repo("https://github.com/acme/site.git", &gh).unwrap();
        assert_eq!(
            (r.owner.as_str(), r.name.as_str(), r.url.as_str()),
            ("acme", "site", "https://github.com/acme/site.git")
        );
        let lan = hosts("https://github.com", &["http://10.0.0.1:9000"]);
        let r = repo("http://10.0.0.1:9000/git/acme/site.git", &lan).unwrap();
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
            "https://github.com",
        ] {
            assert!(repo(bad, &gh).is_err(), "{bad}");
        }
    }

    /// Issue 10 item 3: a repo URL could name any host, port, path and query, and the server fetched it.
    #[test]
    fn repo_urls_off_the_configured_hosts_are_refused() {
        let gh = hosts("https://github.com", &["ssh://git.corp.example", "http://127.0.0.1:*"]);
        for attack in [
            "http://169.254.169.254/latest/meta-data/x.git",
            "http://127.0.0.2:8080/a/b",
            "https://github.com.evil.example/a/b",
            "https://evil.example/a/b.git",
            "http://github.com/a/b.git",
            "ssh://git@github.com/a/b.git",
            "git://github.com/a/b.git",
            "https://github.com:444/a/b.git",
            "https://github.com/latest/meta-data?x=/a/b",
            "https://github.com/a/b#frag",
            "https://github.com/a/%2e%2e/b",
            "https://user:pw@github.com/a/b.git",
            "https://user@github.com/a/b.git",
            "http://0x7f.1:80/a/b",
            "http://2130706433/a/b",
            "ssh://git@127.0.0.1/a/b",
        ] {
            let err = repo(attack, &gh).expect_err(attack);
            assert!(!err.hint.is_empty(), "{attack}");
        }
        assert!(repo("ssh://git@git.corp.example/team/app.git", &gh).is_ok());
        assert!(repo("http://127.0.0.1:4242/acme/app.git", &gh).is_ok(), "`:*` allows any port");
        assert!(repo("https://GitHub.com/acme/app", &gh).is_ok());
        assert!(repo("https://github.com:443/acme/app", &gh).is_ok());
        let err = repo("https://evil.example/a/b.git", &gh).unwrap_err();
        assert!(err.hint.contains("--allow-git-host") && err.hint.contains("https://github.com:443"), "{}", err.hint);
    }

    #[test]
    fn git_host_entries() {
        let h = GitHost::parse("git.example.com").unwrap();
        assert_eq!((h.scheme.as_str(), h.host.as_str(), h.port), ("https", "git.example.com", Some(443)));
        let h = GitHost::parse("ssh://Git.Example.com:2222").unwrap();
        assert_eq!((h.scheme.as_str(), h.host.as_str(), h.port), ("ssh", "git.example.com", Some(2222)));
        assert_eq!(GitHost::parse("http://[::1]:*").unwrap().host, "::1");
        for bad in ["ftp://x", "https://x/path", "https://u@x", ""] {
            assert!(GitHost::parse(bad).is_err(), "{bad}");
        }
        assert!(GitHosts::new("not a url", &[]).is_err());
        assert!(hosts("git://10.1.2.3:9418", &[]).names_address("10.1.2.3".parse().unwrap()));
        assert!(!hosts("https://github.com", &[]).names_address("10.1.2.3".parse().unwrap()));
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
