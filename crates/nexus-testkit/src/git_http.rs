//! Git smart-HTTP hosting for the GitHub stand-in: each request to `/<owner>/<repo>.git/...` runs
//! `git http-backend` as a CGI program, so real `git clone`/`git fetch`/`git push` work against
//! it exactly as against GitHub's HTTPS remotes.
//!
//! This module is the CGI bridge and the request parsing; who may read or write which repository
//! is decided by the caller ([`crate::github`]), which knows accounts and tokens.

use std::path::Path;
use std::process::Stdio;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use base64::Engine as _;
use futures_util::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

/// What a git request needs on its repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitAccess {
    /// Clone and fetch (`git-upload-pack`, dumb-protocol reads).
    Read,
    /// Push (`git-receive-pack`).
    Write,
}

/// The repository and access a git HTTP request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitTarget {
    /// Owner login as written in the URL.
    pub owner: String,
    /// Repository name without `.git`.
    pub repo: String,
    /// What the request needs.
    pub access: GitAccess,
}

/// Parses `/<owner>/<repo>.git/<rest>` and the query; `None` when the path is not a git request.
///
/// Pushing is `info/refs?service=git-receive-pack` followed by `POST git-receive-pack`; everything
/// else is a read.
pub fn parse_target(path: &str, query: &str) -> Option<GitTarget> {
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let owner = parts.next().filter(|s| !s.is_empty())?;
    let repo = parts.next()?.strip_suffix(".git").filter(|s| !s.is_empty())?;
    let rest = parts.next()?;
    if owner.starts_with('.') || repo.starts_with('.') || rest.split('/').any(|s| s == "..") {
        return None;
    }
    let write = rest == "git-receive-pack"
        || (rest == "info/refs" && query.split('&').any(|kv| kv == "service=git-receive-pack"));
    let access = if write { GitAccess::Write } else { GitAccess::Read };
    Some(GitTarget { owner: owner.to_string(), repo: repo.to_string(), access })
}

/// The token from `Authorization: Basic base64(user:secret)`: the secret, or the user name when
/// the secret is empty or GitHub's `x-oauth-basic` placeholder (both forms GitHub accepts).
pub fn basic_auth_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, secret) = decoded.split_once(':').unwrap_or((&decoded, ""));
    let token = if secret.is_empty() || secret == "x-oauth-basic" { user } else { secret };
    (!token.is_empty()).then(|| token.to_string())
}

/// 401 with the Basic challenge GitHub sends, so git asks its credential helpers.
pub fn challenge() -> Response<Body> {
    let mut resp = text(StatusCode::UNAUTHORIZED, "Authentication required\n");
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"GitHub\""));
    resp
}

/// A plain-text refusal (git prints the body to the user).
pub fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(message.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Creates an empty bare repository on branch `main` that accepts pushes over HTTP.
pub fn init_bare(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    run_git(path, &["init", "--bare", "-q", "-b", "main"]);
    enable_receive_pack(path);
}

/// Lets `git http-backend` serve `git-receive-pack` for the bare repository at `path`.
pub fn enable_receive_pack(path: &Path) {
    run_git(path, &["config", "http.receivepack", "true"]);
}

/// Runs git in `dir` with a fixed identity; panics with git's stderr on failure.
pub fn run_git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Nexus Test")
        .env("GIT_AUTHOR_EMAIL", "test@nexus.invalid")
        .env("GIT_COMMITTER_NAME", "Nexus Test")
        .env("GIT_COMMITTER_EMAIL", "test@nexus.invalid")
        .output()
        .expect("git is installed");
    assert!(out.status.success(), "git {args:?} in {} failed: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Serves one request with `git http-backend` over the repositories under `project_root`.
/// `path_info` is the repository-relative path to serve (`/owner/repo.git/info/refs`; the caller may
/// have normalised the URL's spelling); `remote_user` is the authenticated login, if any.
pub async fn serve(
    project_root: &Path,
    path_info: &str,
    remote_user: Option<&str>,
    req: Request<Body>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let header_str = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", project_root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(v) = header_str(header::CONTENT_TYPE) {
        cmd.env("CONTENT_TYPE", v);
    }
    if let Some(v) = header_str(header::CONTENT_LENGTH) {
        cmd.env("CONTENT_LENGTH", v);
    }
    if let Some(v) = header_str(header::CONTENT_ENCODING) {
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    if let Some(v) = parts.headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        cmd.env("HTTP_GIT_PROTOCOL", v);
    }
    if let Some(user) = remote_user {
        cmd.env("REMOTE_USER", user);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot run git http-backend: {e}\n")),
    };

    // Feed the request body while the response is read, so neither side blocks on a full pipe.
    let mut stdin = child.stdin.take().expect("piped");
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });

    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut resp = Response::new(Body::empty());
    loop {
        let mut line = String::new();
        match stdout.read_line(&mut line).await {
            Ok(0) | Err(_) => {
                return text(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend ended before its headers\n")
            }
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse::<u16>().ok());
            *resp.status_mut() = code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::OK);
        } else if let (Ok(n), Ok(v)) = (header::HeaderName::try_from(name), HeaderValue::try_from(value)) {
            resp.headers_mut().append(n, v);
        }
    }

    // Stream the rest of stdout as the body; reap the child at the end.
    let stream = futures_util::stream::unfold(Some((stdout, child)), |state| async move {
        let (mut out, mut child) = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match out.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = child.wait().await;
                None
            }
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some((out, child))))
            }
        }
    });
    *resp.body_mut() = Body::from_stream(stream);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_git_paths_and_services() {
        let t = parse_target("/alice/hello.git/info/refs", "service=git-upload-pack").unwrap();
        assert_eq!((t.owner.as_str(), t.repo.as_str(), t.access), ("alice", "hello", GitAccess::Read));
        let t = parse_target("/alice/hello.git/info/refs", "service=git-receive-pack").unwrap();
        assert_eq!(t.access, GitAccess::Write);
        assert_eq!(parse_target("/alice/hello.git/git-receive-pack", "").unwrap().access, GitAccess::Write);
        assert_eq!(parse_target("/alice/hello.git/git-upload-pack", "").unwrap().access, GitAccess::Read);
        assert!(parse_target("/alice/hello/info/refs", "").is_none());
        assert!(parse_target("/alice/hello.git", "").is_none());
        assert!(parse_target("/alice/hello.git/../../etc/passwd", "").is_none());
        assert!(parse_target("/api/v3/user", "").is_none());
    }

    #[test]
    fn basic_auth_accepts_both_github_forms() {
        let mut h = HeaderMap::new();
        let enc = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        h.insert(header::AUTHORIZATION, enc("x-access-token:gho_abc").parse().unwrap());
        assert_eq!(basic_auth_token(&h).as_deref(), Some("gho_abc"));
        h.insert(header::AUTHORIZATION, enc("gho_abc:x-oauth-basic").parse().unwrap());
        assert_eq!(basic_auth_token(&h).as_deref(), Some("gho_abc"));
        h.insert(header::AUTHORIZATION, "Bearer gho_abc".parse().unwrap());
        assert_eq!(basic_auth_token(&h), None);
    }
}
