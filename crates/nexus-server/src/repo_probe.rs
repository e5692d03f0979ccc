//! Checks that a repository and branch exist before anything is created, with the real `git ls-remote`.
//!
//! Done on the server so a typo in `repo` is a 4xx at once instead of a container that fails later.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::error::{Result, ServerError};

/// Files the service plan is made from: the config and what auto-detection looks at.
pub const PLAN_FILES: &[&str] = &[
    ".nexus/config.yaml",
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "requirements.txt",
    "pyproject.toml",
    "manage.py",
    "app.py",
    "main.py",
    "server.py",
    "wsgi.py",
    "index.html",
    ".devcontainer/devcontainer.json",
];

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

    /// The [`PLAN_FILES`] present at the tip of `branch`, path → content (truncated to 256 KiB).
    fn plan_files<'a>(
        &'a self,
        url: &'a str,
        branch: &'a str,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<HashMap<String, String>>>;
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
    fn resolve_branch<'a>(
        &'a self,
        url: &'a str,
        branch: Option<&'a str>,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let mut cmd = git_command(token);
            cmd.args(["ls-remote", "--symref", "--", url, "HEAD"]);
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

    fn plan_files<'a>(
        &'a self,
        url: &'a str,
        branch: &'a str,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<HashMap<String, String>>> {
        Box::pin(async move {
            // A depth-1 clone without checkout: the tip's tree, nothing written to a work tree.
            // TODO-perf: a blobless partial clone would skip large blobs where the host supports it.
            let dir = tempfile::tempdir().map_err(|source| ServerError::Io { path: "temp dir".into(), source })?;
            let dest = dir.path().to_string_lossy().to_string();
            let out = git(
                &[
                    "clone",
                    "-q",
                    "--depth",
                    "1",
                    "--no-checkout",
                    "--single-branch",
                    "--branch",
                    branch,
                    "--",
                    url,
                    &dest,
                ],
                None,
                token,
                self.timeout,
            )
            .await
            .map_err(|e| not_found(url, &e))?;
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                return Err(not_found(url, stderr.lines().last().unwrap_or("git clone failed").trim()));
            }
            let mut args = vec!["ls-tree", "--name-only", "HEAD", "--"];
            args.extend(PLAN_FILES);
            let listed = git(&args, Some(dir.path()), None, self.timeout).await.map_err(|e| not_found(url, &e))?;
            let mut files = HashMap::new();
            for path in String::from_utf8_lossy(&listed.stdout).lines() {
                let shown = git(&["show", &format!("HEAD:{path}")], Some(dir.path()), None, self.timeout)
                    .await
                    .map_err(|e| not_found(url, &e))?;
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

async fn git(
    args: &[&str],
    dir: Option<&std::path::Path>,
    token: Option<&str>,
    timeout: Duration,
) -> std::result::Result<std::process::Output, String> {
    let mut cmd = git_command(token);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => Err(format!("git {} took longer than {}s", args[0], timeout.as_secs())),
        Ok(Err(e)) => Err(format!("could not run git: {e}")),
        Ok(Ok(out)) => Ok(out),
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
