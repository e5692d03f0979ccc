//! Checks that a repository and branch exist, and reads the files its service plan is made from,
//! before anything is created, with the real `git`.
//!
//! Done on the server so a typo in `repo` is a 4xx at once instead of a container that fails later.
//! Users choose the URL, so git runs fenced in (issue 10, items 3 and 4): only on hosts the operator
//! configured (checked by [`nexus_types::names::repo`] before this runs); only to addresses that are
//! not loopback, private, link-local or metadata unless the operator allowed them, with the checked
//! address pinned so DNS cannot swap it afterwards; with no system or global git config, an empty
//! `HOME`, one allowed protocol, no redirects, no prompts; with a time limit, and reading at most
//! [`MAX_PLAN_FILE`] of any file. When git fails, its stderr is sorted into a [`Cause`] for the hint;
//! the stderr itself goes to the server's log only, since it names addresses and ports.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use futures_util::future::BoxFuture;
use nexus_project::PLAN_FILES;
use nexus_types::git_failure::{classify, shallow_unsupported, GitFailure as Cause};
use nexus_types::names::repo_location;
use tokio::io::AsyncReadExt as _;

use crate::error::{Result, ServerError};

/// Most bytes read of any one plan file: lock files can be huge and only their start matters
/// (`yarn.lock`'s header, say). Larger files are read up to this size and no further.
pub const MAX_PLAN_FILE: usize = 256 * 1024;

/// How long a host name may take to resolve.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// A repository URL to read, with the operator's rules for where it may lead.
#[derive(Debug, Clone)]
pub struct GitTarget {
    /// The URL as the user gave it (or as `owner/name` expanded), already on an allowed host.
    pub url: String,
    /// Whether the host may resolve to loopback, private and link-local addresses
    /// (`--allow-private-git-hosts`).
    pub allow_private: bool,
    /// Addresses the operator wrote into the git base URL or the allow-list themselves: allowed
    /// even when private (a LAN git server, a test's `127.0.0.1`).
    pub named_addresses: Vec<IpAddr>,
}

impl GitTarget {
    /// A target with no private addresses allowed (the default).
    pub fn public(url: &str) -> GitTarget {
        GitTarget { url: url.to_string(), allow_private: false, named_addresses: Vec::new() }
    }
}

/// Resolves a clone URL and optional branch to the branch that will be checked out.
pub trait RepoProbe: Send + Sync {
    /// The branch to use: `branch` if it exists, else the remote's default branch.
    /// `token` authenticates to the git host (private repositories).
    fn resolve_branch<'a>(
        &'a self,
        target: &'a GitTarget,
        branch: Option<&'a str>,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String>>;

    /// The files of [`nexus_project::PLAN_FILES`] present at the tip of `branch`, path → content
    /// (at most [`MAX_PLAN_FILE`] bytes of each).
    fn plan_files<'a>(
        &'a self,
        target: &'a GitTarget,
        branch: &'a str,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<HashMap<String, String>>>;
}

/// Runs `git ls-remote` and a shallow `git clone` (a full one where the host cannot do shallow).
pub struct GitLsRemote {
    /// How long each git command may take before the remote counts as not answering.
    pub timeout: Duration,
}

/// What the user is told about each cause: fixed words, never git's own (which name addresses,
/// ports and what answered on them).
fn cause_text(cause: Cause) -> &'static str {
    match cause {
        Cause::NotFound => "there is no repository there",
        Cause::NoBranch => "the branch does not exist",
        Cause::Tls => "the git host's TLS certificate is not trusted",
        Cause::Auth => "the git host wants credentials that can read it",
        Cause::Transport => "the git host answered in a way git could not use",
        Cause::Network => "the git host could not be reached",
        Cause::Unknown => "git could not read it",
    }
}

/// The error for an unreadable repository, with the hint for its cause. `detail` is the server's
/// own words (a branch that does not exist), never git's stderr.
fn unreadable(url: &str, cause: Cause, detail: Option<&str>) -> ServerError {
    let hint = match cause {
        Cause::NotFound => "check the spelling of `owner/name`".to_string(),
        Cause::NoBranch => "check the spelling of the branch (`--branch`); `git ls-remote --heads <url>` lists them".to_string(),
        Cause::Tls => "the server does not trust the git host's TLS certificate: ask the operator to add the CA that \
                       signs it to the server's trust store (`/usr/local/share/ca-certificates`, then `update-ca-certificates`)"
            .to_string(),
        Cause::Auth => "the repository is private or does not exist: check the spelling of `owner/name`; if it is \
                        private, sign in with `nexus auth github` as an account that can read it, then retry"
            .to_string(),
        Cause::Transport => "the git host answered in a way git could not use; try the repository's other clone URL \
                             (https or ssh), or ask the operator to check that the server can fetch from it"
            .to_string(),
        Cause::Network => "the server could not reach the git host: check the host name in the URL; if it is right, \
                           ask the operator to check the server's network, DNS and proxy (the server's log has \
                           git's message), then retry"
            .to_string(),
        Cause::Unknown => "check the URL; the operator can see what git said in the server's log".to_string(),
    };
    let why = detail.unwrap_or(cause_text(cause));
    ServerError::RepoNotFound { message: format!("could not read the repository at {url}: {why}"), hint }
}

fn git_failed(url: &str, out: &Output) -> ServerError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cause = classify(&stderr);
    // The whole message for the operator; the user gets the cause.
    tracing::info!(%url, ?cause, status = %out.status, stderr = %stderr.trim(), "git could not read a repository");
    unreadable(url, cause, None)
}

/// Whether `ip` is somewhere a user-chosen URL must not lead: loopback, private, link-local (cloud
/// metadata at 169.254.169.254 and fd00:ec2::254), carrier-grade NAT, unspecified, multicast, reserved.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // NAT64 and 6to4 carry an IPv4 address inside; the embedded one could be anything.
                || first == 0x64
                || first == 0x2002
        }
    }
}

/// The target's location and the address git must use for its host, checked against the rules.
/// Every address the name resolves to must pass. (ssh resolves by itself and is not pinned; only
/// hosts the operator configured for ssh get that far.)
async fn checked_address(target: &GitTarget) -> Result<(nexus_types::names::RepoLocation, IpAddr)> {
    let url = &target.url;
    let refused = |why: &str| ServerError::BadRequest {
        code: "invalid_field",
        message: format!("could not read the repository at {url}: {why}"),
        hint: "use a repository on the configured git host; if this host is your own, the operator can allow \
               private addresses with `nexus server --allow-private-git-hosts`"
            .into(),
    };
    let loc = repo_location(url).ok_or_else(|| refused("it is not a URL"))?;
    let addresses: Vec<IpAddr> = match loc.host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((loc.host.as_str(), loc.port))).await
        {
            Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
            _ => return Err(unreadable(url, Cause::Network, Some("its host name does not resolve"))),
        },
    };
    let allowed = |ip: &IpAddr| target.allow_private || !is_internal(*ip) || target.named_addresses.contains(ip);
    // Every address must pass: git (or a retry) could otherwise land on the one that did not.
    if addresses.is_empty() || !addresses.iter().all(allowed) {
        return Err(refused("its host resolves to an internal address, which this server does not fetch from"));
    }
    Ok((loc, addresses[0]))
}

impl GitLsRemote {
    /// Runs git on the target's behalf, fenced in (see the module doc); `home` is an empty directory.
    async fn git(&self, run: &GitRun<'_>, args: &[&str], dir: Option<&Path>) -> Result<Output> {
        let mut cmd = run.command();
        cmd.args(args);
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        match tokio::time::timeout(self.timeout, cmd.output()).await {
            Err(_) => {
                tracing::info!(url = %run.url, secs = self.timeout.as_secs(), "git got no answer in time");
                Err(unreadable(run.url, Cause::Network, None))
            }
            Ok(Err(source)) => Err(ServerError::Io { path: "git".into(), source }),
            Ok(Ok(out)) => Ok(out),
        }
    }

    /// At most [`MAX_PLAN_FILE`] bytes of blob `id` in `repo`: git's output past that is never read
    /// (git is killed), so a huge file costs no memory.
    async fn read_blob(&self, run: &GitRun<'_>, repo: &Path, id: &str) -> Result<Vec<u8>> {
        let mut cmd = run.command();
        cmd.args(["cat-file", "blob", id]).current_dir(repo).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|source| ServerError::Io { path: "git".into(), source })?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut buf = Vec::new();
        let mut limited = (&mut stdout).take(MAX_PLAN_FILE as u64);
        match tokio::time::timeout(self.timeout, limited.read_to_end(&mut buf)).await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => return Err(ServerError::Io { path: "git cat-file".into(), source }),
            Err(_) => return Err(unreadable(run.url, Cause::Network, None)),
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
        Ok(buf)
    }

    /// Clones the tip of `branch` into `dest` without a work tree: shallow, or whole where the host
    /// cannot serve shallow clones.
    async fn fetch_tip(&self, run: &GitRun<'_>, branch: &str, dest: &Path) -> Result<()> {
        let url = run.git_url.as_str();
        let dest = dest.to_string_lossy();
        let clone = |shallow: bool| {
            let mut args = vec!["clone", "-q", "--no-checkout", "--single-branch", "--branch", branch];
            if shallow {
                args.extend(["--depth", "1"]);
            }
            args.extend(["--", url, &dest]);
            args
        };
        let out = self.git(run, &clone(true), None).await?;
        if out.status.success() {
            return Ok(());
        }
        if !shallow_unsupported(&String::from_utf8_lossy(&out.stderr)) {
            return Err(git_failed(run.url, &out));
        }
        tracing::info!(url = %run.url, "the git host cannot serve shallow clones; fetching the whole branch");
        // A failed clone removes the directory it created, so the same destination is free again.
        let out = self.git(run, &clone(false), None).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(git_failed(run.url, &out))
        }
    }
}

/// One probe's git settings: the URL git is given (for `git://`, with the checked address in place
/// of the host name), the pinned address, and the empty `HOME`.
struct GitRun<'a> {
    /// The URL as the user gave it, for messages.
    url: &'a str,
    /// The URL git fetches.
    git_url: String,
    scheme: String,
    /// `host:port:address` for curl (`http.curloptResolve`), so DNS cannot change the address.
    curl_resolve: Option<String>,
    token: Option<&'a str>,
    home: tempfile::TempDir,
}

impl<'a> GitRun<'a> {
    async fn new(target: &'a GitTarget, token: Option<&'a str>) -> Result<GitRun<'a>> {
        let (loc, ip) = checked_address(target).await?;
        let bracketed = |h: &str| if h.contains(':') { format!("[{h}]") } else { h.to_string() };
        let mut git_url = target.url.clone();
        let mut curl_resolve = None;
        match loc.scheme.as_str() {
            // An address in the URL needs no pin; a name gets the address that was checked.
            "http" | "https" if loc.host.parse::<IpAddr>().is_err() => {
                curl_resolve = Some(format!("{}:{}:{}", bracketed(&loc.host), loc.port, bracketed(&ip.to_string())))
            }
            "git" => {
                // git:// has no TLS or virtual hosts, so the address itself can stand in for the name.
                if let Ok(mut u) = url::Url::parse(&git_url) {
                    if u.set_ip_host(ip).is_ok() {
                        git_url = u.to_string();
                    }
                }
            }
            _ => {}
        }
        let home = tempfile::tempdir().map_err(|source| ServerError::Io { path: "temp dir".into(), source })?;
        Ok(GitRun { url: &target.url, git_url, scheme: loc.scheme, curl_resolve, token, home })
    }

    /// `git` that reads no system or global config, has an empty `HOME`, speaks only the target's
    /// protocol, follows no redirects and never prompts; with a token, HTTP requests carry it as
    /// GitHub expects (`x-access-token:<token>` basic auth), through the environment so it never
    /// shows in `ps`.
    fn command(&self) -> tokio::process::Command {
        use base64::Engine as _;
        let mut cmd = tokio::process::Command::new("git");
        cmd.env_clear();
        // What the server's own environment legitimately says about reaching the network.
        for name in [
            "PATH",
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "no_proxy",
            "NO_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ] {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        let home = self.home.path();
        cmd.env("HOME", home)
            .env("XDG_CONFIG_HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ALLOW_PROTOCOL", &self.scheme)
            .env("GIT_TERMINAL_PROMPT", "0")
            // English messages, which `git_failure::classify` reads.
            .env("LC_ALL", "C")
            .env("GIT_ASKPASS", "/bin/false")
            .env("SSH_ASKPASS", "/bin/false")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=10")
            .kill_on_drop(true);
        let mut config: Vec<(&str, String)> = vec![("http.followRedirects", "false".into())];
        if let Some(r) = &self.curl_resolve {
            config.push(("http.curloptResolve", r.clone()));
        }
        if let Some(t) = self.token {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{t}"));
            config.push(("http.extraHeader", format!("Authorization: Basic {basic}")));
        }
        cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.into_iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), key).env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        cmd
    }
}

impl RepoProbe for GitLsRemote {
    fn resolve_branch<'a>(
        &'a self,
        target: &'a GitTarget,
        branch: Option<&'a str>,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let run = GitRun::new(target, token).await?;
            let wanted = branch.map(|b| format!("refs/heads/{b}"));
            let mut args = vec!["ls-remote", "--symref", "--", run.git_url.as_str(), "HEAD"];
            args.extend(wanted.as_deref());
            let mut out = self.git(&run, &args, None).await?;
            if !out.status.success() && out.stderr.iter().all(u8::is_ascii_whitespace) {
                // Failed without a word (a connection the host dropped under load): once more
                // before telling the user their repository cannot be read.
                tracing::info!(url = %target.url, status = %out.status, "git ls-remote failed silently; retrying once");
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                out = self.git(&run, &args, None).await?;
            }
            if !out.status.success() {
                return Err(git_failed(&target.url, &out));
            }
            parse_ls_remote(&String::from_utf8_lossy(&out.stdout), branch)
                .map_err(|(cause, detail)| unreadable(&target.url, cause, Some(&detail)))
        })
    }

    fn plan_files<'a>(
        &'a self,
        target: &'a GitTarget,
        branch: &'a str,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<HashMap<String, String>>> {
        Box::pin(async move {
            let run = GitRun::new(target, token).await?;
            // The tip's tree only, nothing written to a work tree.
            // TODO-perf: a blobless partial clone would skip large blobs where the host supports it.
            let dir = tempfile::tempdir().map_err(|source| ServerError::Io { path: "temp dir".into(), source })?;
            let repo = dir.path().join("repo");
            self.fetch_tip(&run, branch, &repo).await?;
            let mut args = vec!["ls-tree", "-z", "HEAD", "--"];
            args.extend(PLAN_FILES);
            let listed = self.git(&run, &args, Some(&repo)).await?;
            if !listed.status.success() {
                return Err(git_failed(&target.url, &listed));
            }
            let mut files = HashMap::new();
            for (path, id) in blobs_of_ls_tree(&String::from_utf8_lossy(&listed.stdout)) {
                let bytes = self.read_blob(&run, &repo, id).await?;
                let mut text = String::from_utf8_lossy(&bytes).into_owned();
                // The cut may split a character; lossy decoding made that a replacement, drop it.
                if bytes.len() == MAX_PLAN_FILE && text.ends_with('\u{FFFD}') {
                    text.pop();
                }
                files.insert(path.to_string(), text);
            }
            Ok(files)
        })
    }
}

/// `(path, blob id)` of each blob in `git ls-tree -z` output (`mode type id\tpath\0`); submodules
/// and trees are skipped.
fn blobs_of_ls_tree(stdout: &str) -> Vec<(&str, &str)> {
    stdout
        .split('\0')
        .filter_map(|entry| {
            let (meta, path) = entry.split_once('\t')?;
            let mut parts = meta.split(' ');
            let (_mode, kind, id) = (parts.next()?, parts.next()?, parts.next()?);
            (kind == "blob").then_some((path, id))
        })
        .collect()
}

/// Picks the branch out of `git ls-remote --symref <url> HEAD [refs/heads/<branch>]` output; the
/// error is the cause and the server's own words for it.
fn parse_ls_remote(stdout: &str, branch: Option<&str>) -> Result<String, (Cause, String)> {
    if let Some(b) = branch {
        let wanted = format!("refs/heads/{b}");
        return if stdout.lines().any(|l| l.split('\t').nth(1) == Some(wanted.as_str())) {
            Ok(b.to_string())
        } else {
            Err((Cause::NoBranch, format!("branch {b:?} does not exist")))
        };
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("ref: refs/heads/").and_then(|rest| rest.strip_suffix("\tHEAD")))
        .map(str::to_string)
        .ok_or_else(|| (Cause::NotFound, "it has no default branch (is it empty?)".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_and_named_branches() {
        let out = "ref: refs/heads/trunk\tHEAD\n0123\tHEAD\n4567\trefs/heads/dev\n";
        assert_eq!(parse_ls_remote(out, None), Ok("trunk".into()));
        assert_eq!(parse_ls_remote(out, Some("dev")), Ok("dev".into()));
        assert_eq!(parse_ls_remote(out, Some("nope")).unwrap_err().0, Cause::NoBranch);
        assert!(parse_ls_remote("", None).is_err());
    }

    #[test]
    fn each_cause_has_its_own_hint() {
        let hint = |cause| match unreadable("u", cause, None) {
            ServerError::RepoNotFound { hint, .. } => hint,
            e => panic!("{e:?}"),
        };
        assert!(hint(Cause::NotFound).contains("spelling"));
        assert!(hint(Cause::Auth).contains("nexus auth github"));
        assert!(hint(Cause::Network).contains("network"));
        assert!(!hint(Cause::Transport).contains("spelling"), "a transport failure is not a typo");
        assert!(!hint(Cause::Network).contains("spelling"));
        assert!(hint(Cause::NoBranch).contains("branch"));
        assert!(hint(Cause::Tls).contains("CA"));
    }

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["140.82.121.3", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ls_tree_blobs() {
        let out =
            ["100644 blob aaa\tpackage.json", "160000 commit bbb\tsub", "100644 blob ccc\ta b.txt", ""].join("\0");
        let out = out.as_str();
        assert_eq!(blobs_of_ls_tree(out), [("package.json", "aaa"), ("a b.txt", "ccc")]);
    }

    /// Issue 10 item 3: a host name that resolves to an internal address is refused before git
    /// runs, unless the operator allowed it.
    #[tokio::test]
    async fn a_name_resolving_to_an_internal_address_is_refused() {
        let probe = GitLsRemote { timeout: Duration::from_secs(5) };
        let target = GitTarget::public("http://localhost:9/acme/app.git");
        let Err(ServerError::BadRequest { message, hint, .. }) = probe.resolve_branch(&target, None, None).await else {
            panic!("localhost is refused")
        };
        assert!(message.contains("internal address"), "{message}");
        assert!(hint.contains("--allow-private-git-hosts"), "{hint}");
        // Allowed: git runs (and finds nothing listening), and the cause is given in fixed words.
        let allowed = GitTarget { allow_private: true, ..target };
        let Err(ServerError::RepoNotFound { message, .. }) = probe.resolve_branch(&allowed, None, None).await else {
            panic!("nothing listens on port 9")
        };
        assert_eq!(
            message,
            "could not read the repository at http://localhost:9/acme/app.git: the git host could not be reached"
        );
    }

    /// Issue 10 item 3: git resolved the host again itself, so DNS could answer the check with one
    /// address and git with another (rebinding). Now git gets the checked address, and runs with no
    /// system or global config, an empty HOME and one protocol.
    #[tokio::test]
    async fn git_gets_the_checked_address_and_an_isolated_environment() {
        let target = GitTarget { allow_private: true, ..GitTarget::public("http://localhost:9/acme/app.git") };
        let run = GitRun::new(&target, Some("tok")).await.unwrap();
        let cmd = run.command();
        let env: HashMap<String, String> = cmd
            .as_std()
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_string_lossy().into_owned())))
            .collect();
        let config: HashMap<&str, &str> = (0..env["GIT_CONFIG_COUNT"].parse::<usize>().unwrap())
            .map(|i| (env[&format!("GIT_CONFIG_KEY_{i}")].as_str(), env[&format!("GIT_CONFIG_VALUE_{i}")].as_str()))
            .collect();
        let pin = config["http.curloptResolve"];
        assert!(pin == "localhost:9:127.0.0.1" || pin == "localhost:9:[::1]", "{pin}");
        assert_eq!(config["http.followRedirects"], "false");
        assert_eq!(env["GIT_CONFIG_NOSYSTEM"], "1");
        assert_eq!(env["GIT_CONFIG_GLOBAL"], "/dev/null");
        assert_eq!(env["GIT_ALLOW_PROTOCOL"], "http");
        assert_eq!(env["HOME"], run.home.path().to_string_lossy());
        assert_eq!(std::fs::read_dir(run.home.path()).unwrap().count(), 0, "HOME is empty");
        assert!(
            !env.contains_key("GIT_DIR") && !env.contains_key("SSH_AUTH_SOCK"),
            "the server's environment is not passed on"
        );
    }

    /// Issue 10 item 3: git followed an HTTP redirect from the allowed host to anywhere.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        use std::io::{Read, Write};
        let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let elsewhere_port = elsewhere.local_addr().unwrap().port();
        elsewhere.set_nonblocking(true).unwrap();
        let redirector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = redirector.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut conn in redirector.incoming().flatten() {
                let mut buf = [0u8; 2048];
                let _ = conn.read(&mut buf);
                let _ = write!(
                    conn,
                    "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{elsewhere_port}/x/y.git/info/refs?service=git-upload-pack\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        let probe = GitLsRemote { timeout: Duration::from_secs(5) };
        let target = GitTarget {
            url: format!("http://127.0.0.1:{port}/acme/app.git"),
            allow_private: false,
            named_addresses: vec!["127.0.0.1".parse().unwrap()],
        };
        assert!(probe.resolve_branch(&target, None, None).await.is_err());
        assert!(elsewhere.accept().is_err(), "git followed the redirect");
    }

    /// Regression: a dumb-HTTP host refuses shallow clones ("dumb http transport does not support
    /// shallow capabilities"), and the probe used to report that as a misspelt repository.
    #[tokio::test]
    async fn a_dumb_http_host_is_read_with_a_full_fetch() {
        let server = nexus_testkit::git_dumb_http::DumbGitServer::start().await;
        let url = server.create_repo(
            "acme",
            "dumb",
            &[(".devcontainer.json", r#"{"postStartCommand": "make watch"}"#), ("README.md", "hi\n")],
        );
        let probe = GitLsRemote { timeout: Duration::from_secs(20) };
        let local = |url: &str| GitTarget { allow_private: true, ..GitTarget::public(url) };
        assert_eq!(probe.resolve_branch(&local(&url), None, None).await.unwrap(), "main");
        let files = probe.plan_files(&local(&url), "main", None).await.unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), [".devcontainer.json"], "only plan files, and this one is");
        let missing = format!("{}/acme/missing.git", server.base_url);
        let Err(ServerError::RepoNotFound { hint, .. }) = probe.resolve_branch(&local(&missing), None, None).await
        else {
            panic!("a missing repo is an error")
        };
        assert!(hint.contains("spelling"), "{hint}");
    }

    /// Issue 10 item 4: plan files are read up to [`MAX_PLAN_FILE`], however large the blob.
    #[tokio::test]
    async fn large_plan_files_are_read_only_up_to_the_cap() {
        let server = nexus_testkit::git_dumb_http::DumbGitServer::start().await;
        let big = "x".repeat(MAX_PLAN_FILE * 3);
        let url = server.create_repo("acme", "big", &[("yarn.lock", &big), ("package.json", "{}")]);
        let probe = GitLsRemote { timeout: Duration::from_secs(20) };
        let target = GitTarget { allow_private: true, ..GitTarget::public(&url) };
        let files = probe.plan_files(&target, "main", None).await.unwrap();
        assert_eq!(files["yarn.lock"].len(), MAX_PLAN_FILE);
        assert_eq!(files["package.json"], "{}");
    }
}
