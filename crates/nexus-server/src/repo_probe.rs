//! Checks that a repository and branch exist, and reads the files its service plan is made from,
//! before anything is created, with the real `git`.
//!
//! Done on the server so a typo in `repo` is a 4xx at once instead of a container that fails later.
//! When git fails, its stderr is sorted into a [`Cause`] so the hint fits what went wrong: a
//! misspelt name, missing credentials, a host git cannot talk to, or no route to the host.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use futures_util::future::BoxFuture;
use nexus_project::PLAN_FILES;
use nexus_types::git_failure::{classify, detail, shallow_unsupported, GitFailure as Cause};

use crate::error::{Result, ServerError};

/// Largest file read for planning; lock files can be big and only their existence matters.
const MAX_PLAN_FILE: usize = 256 * 1024;

/// Resolves a clone URL and optional branch to the branch that will be checked out.
pub trait RepoProbe: Send + Sync {
    /// The branch to use: `branch` if it exists, else the remote's default branch.
    /// `token` authenticates to the git host (private repositories).
    fn resolve_branch<'a>(
        &'a self,
        url: &'a str,
        branch: Option<&'a str>,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String>>;

    /// The files of [`nexus_project::PLAN_FILES`] present at the tip of `branch`, path → content
    /// (truncated to 256 KiB).
    fn plan_files<'a>(
        &'a self,
        url: &'a str,
        branch: &'a str,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<HashMap<String, String>>>;
}

/// Runs `git ls-remote` and a shallow `git clone` (a full one where the host cannot do shallow).
pub struct GitLsRemote {
    /// How long each git command may take before the remote counts as not answering.
    pub timeout: Duration,
}

/// The error for an unreadable repository, with the hint for its cause.
fn unreadable(url: &str, cause: Cause, detail: &str) -> ServerError {
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
                           ask the operator to check the server's network, DNS and proxy, then retry"
            .to_string(),
        Cause::Unknown => {
            format!("check the URL; the operator can see what git says with `git ls-remote {url}` on the server")
        }
    };
    ServerError::RepoNotFound { message: format!("repository {url} could not be read: {detail}"), hint }
}

fn git_failed(url: &str, out: &Output) -> ServerError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    unreadable(url, classify(&stderr), detail(&stderr))
}

impl GitLsRemote {
    /// Runs git on `url`'s behalf: never prompts, gives up after the timeout.
    async fn git(&self, url: &str, args: &[&str], dir: Option<&Path>, token: Option<&str>) -> Result<Output> {
        let mut cmd = git_command(token);
        cmd.args(args);
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        match tokio::time::timeout(self.timeout, cmd.output()).await {
            Err(_) => Err(unreadable(
                url,
                Cause::Network,
                &format!("git {} got no answer within {}s", args[0], self.timeout.as_secs()),
            )),
            Ok(Err(source)) => Err(ServerError::Io { path: "git".into(), source }),
            Ok(Ok(out)) => Ok(out),
        }
    }

    /// Clones the tip of `branch` into `dest` without a work tree: shallow, or whole where the host
    /// cannot serve shallow clones.
    async fn fetch_tip(&self, url: &str, branch: &str, token: Option<&str>, dest: &Path) -> Result<()> {
        let dest = dest.to_string_lossy();
        let clone = |shallow: bool| {
            let mut args = vec!["clone", "-q", "--no-checkout", "--single-branch", "--branch", branch];
            if shallow {
                args.extend(["--depth", "1"]);
            }
            args.extend(["--", url, &dest]);
            args
        };
        let out = self.git(url, &clone(true), None, token).await?;
        if out.status.success() {
            return Ok(());
        }
        if !shallow_unsupported(&String::from_utf8_lossy(&out.stderr)) {
            return Err(git_failed(url, &out));
        }
        tracing::info!(%url, "the git host cannot serve shallow clones; fetching the whole branch");
        // A failed clone removes the directory it created, so the same destination is free again.
        let out = self.git(url, &clone(false), None, token).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(git_failed(url, &out))
        }
    }
}

impl RepoProbe for GitLsRemote {
    fn resolve_branch<'a>(
        &'a self,
        url: &'a str,
        branch: Option<&'a str>,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let wanted = branch.map(|b| format!("refs/heads/{b}"));
            let mut args = vec!["ls-remote", "--symref", "--", url, "HEAD"];
            args.extend(wanted.as_deref());
            let out = self.git(url, &args, None, token).await?;
            if !out.status.success() {
                return Err(git_failed(url, &out));
            }
            parse_ls_remote(&String::from_utf8_lossy(&out.stdout), branch)
                .map_err(|detail| unreadable(url, Cause::NotFound, &detail))
        })
    }

    fn plan_files<'a>(
        &'a self,
        url: &'a str,
        branch: &'a str,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<HashMap<String, String>>> {
        Box::pin(async move {
            // The tip's tree only, nothing written to a work tree.
            // TODO-perf: a blobless partial clone would skip large blobs where the host supports it.
            let dir = tempfile::tempdir().map_err(|source| ServerError::Io { path: "temp dir".into(), source })?;
            let repo = dir.path().join("repo");
            self.fetch_tip(url, branch, token, &repo).await?;
            let mut args = vec!["ls-tree", "--name-only", "HEAD", "--"];
            args.extend(PLAN_FILES);
            let listed = self.git(url, &args, Some(&repo), None).await?;
            if !listed.status.success() {
                return Err(git_failed(url, &listed));
            }
            let mut files = HashMap::new();
            for path in String::from_utf8_lossy(&listed.stdout).lines() {
                let shown = self.git(url, &["show", &format!("HEAD:{path}")], Some(&repo), None).await?;
                let mut text = String::from_utf8_lossy(&shown.stdout).into_owned();
                if text.len() > MAX_PLAN_FILE {
                    let mut cut = MAX_PLAN_FILE;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
                files.insert(path.to_string(), text);
            }
            Ok(files)
        })
    }
}

/// `git` that never prompts; with `token`, HTTP requests carry it as GitHub expects
/// (`x-access-token:<token>` basic auth), passed through the environment so it never shows in `ps`.
fn git_command(token: Option<&str>) -> tokio::process::Command {
    use base64::Engine as _;
    let mut cmd = tokio::process::Command::new("git");
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        // English messages, which `git_failure::classify` reads.
        .env("LC_ALL", "C")
        .env("GIT_ASKPASS", "/bin/false")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=10")
        .kill_on_drop(true);
    if let Some(t) = token {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{t}"));
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
    }
    cmd
}

/// Picks the branch out of `git ls-remote --symref <url> HEAD [refs/heads/<branch>]` output.
fn parse_ls_remote(stdout: &str, branch: Option<&str>) -> Result<String, String> {
    if let Some(b) = branch {
        let wanted = format!("refs/heads/{b}");
        return if stdout.lines().any(|l| l.split('\t').nth(1) == Some(wanted.as_str())) {
            Ok(b.to_string())
        } else {
            Err(format!("branch {b:?} does not exist"))
        };
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("ref: refs/heads/").and_then(|rest| rest.strip_suffix("\tHEAD")))
        .map(str::to_string)
        .ok_or_else(|| "it has no default branch (is it empty?)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_and_named_branches() {
        let out = "ref: refs/heads/trunk\tHEAD\n0123\tHEAD\n4567\trefs/heads/dev\n";
        assert_eq!(parse_ls_remote(out, None), Ok("trunk".into()));
        assert_eq!(parse_ls_remote(out, Some("dev")), Ok("dev".into()));
        assert!(parse_ls_remote(out, Some("nope")).is_err());
        assert!(parse_ls_remote("", None).is_err());
    }

    #[test]
    fn each_cause_has_its_own_hint() {
        let hint = |cause| match unreadable("u", cause, "d") {
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
        assert_eq!(probe.resolve_branch(&url, None, None).await.unwrap(), "main");
        let files = probe.plan_files(&url, "main", None).await.unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), [".devcontainer.json"], "only plan files, and this one is");
        let missing = format!("{}/acme/missing.git", server.base_url);
        let Err(ServerError::RepoNotFound { hint, .. }) = probe.resolve_branch(&missing, None, None).await else {
            panic!("a missing repo is an error")
        };
        assert!(hint.contains("spelling"), "{hint}");
    }
}
