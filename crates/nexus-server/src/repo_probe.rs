//! Checks that a repository and branch exist before anything is created, with the real `git ls-remote`.
//!
//! Done on the server so a typo in `repo` is a 4xx at once instead of a container that fails later.

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::error::{Result, ServerError};

/// Resolves a clone URL and optional branch to the branch that will be checked out.
pub trait RepoProbe: Send + Sync {
    /// The branch to use: `branch` if it exists, else the remote's default branch.
    fn resolve_branch<'a>(&'a self, url: &'a str, branch: Option<&'a str>) -> BoxFuture<'a, Result<String>>;
}

/// Runs `git ls-remote`.
pub struct GitLsRemote {
    /// How long to wait for the remote.
    pub timeout: Duration,
}

fn not_found(url: &str, detail: &str) -> ServerError {
    ServerError::RepoNotFound {
        message: format!("repository {url} could not be read: {detail}"),
        hint: "check the spelling of `owner/name`; if the repo is private, make sure your GitHub account can read it"
            .into(),
    }
}

impl RepoProbe for GitLsRemote {
    fn resolve_branch<'a>(&'a self, url: &'a str, branch: Option<&'a str>) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let mut cmd = tokio::process::Command::new("git");
            cmd.args(["ls-remote", "--symref", "--", url, "HEAD"])
                .env("GIT_TERMINAL_PROMPT", "0")
                .env("GIT_ASKPASS", "/bin/false")
                .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=10")
                .kill_on_drop(true);
            if let Some(b) = branch {
                cmd.arg(format!("refs/heads/{b}"));
            }
            let out =
                tokio::time::timeout(self.timeout, cmd.output()).await.map_err(|_| ServerError::RepoNotFound {
                    message: format!("repository {url} did not answer within {}s", self.timeout.as_secs()),
                    hint: "check that the git host is reachable from the server, then retry".into(),
                })?;
            let out = out.map_err(|source| ServerError::Io { path: "git".into(), source })?;
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("git ls-remote failed");
                return Err(not_found(url, last.trim()));
            }
            parse_ls_remote(&String::from_utf8_lossy(&out.stdout), branch).map_err(|detail| not_found(url, &detail))
        })
    }
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

/// A fixed set of repos: URL → branches (the first is the default).
#[derive(Default)]
pub struct FakeRepos {
    /// Known repos.
    pub repos: std::collections::HashMap<String, Vec<String>>,
}

impl RepoProbe for FakeRepos {
    fn resolve_branch<'a>(&'a self, url: &'a str, branch: Option<&'a str>) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let branches = self.repos.get(url).ok_or_else(|| not_found(url, "repository not found"))?;
            match branch {
                Some(b) if branches.iter().any(|x| x == b) => Ok(b.to_string()),
                Some(b) => Err(not_found(url, &format!("branch {b:?} does not exist"))),
                None => branches.first().cloned().ok_or_else(|| not_found(url, "no branches")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ls_remote;

    #[test]
    fn parses_default_and_named_branches() {
        let out = "ref: refs/heads/trunk\tHEAD\n0123\tHEAD\n4567\trefs/heads/dev\n";
        assert_eq!(parse_ls_remote(out, None), Ok("trunk".into()));
        assert_eq!(parse_ls_remote(out, Some("dev")), Ok("dev".into()));
        assert!(parse_ls_remote(out, Some("nope")).is_err());
        assert!(parse_ls_remote("", None).is_err());
    }
}
