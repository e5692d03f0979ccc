//! Git over "dumb" HTTP: bare repositories served as plain static files, the way a bare web server
//! or a bucket hosts git. No git runs on the server side, so there are no shallow fetches and no
//! filters: clients must fall back to fetching whole branches.

use std::path::{Component, Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::git_http::run_git;

/// A static file server over a directory of bare repos, on 127.0.0.1 at a free port.
pub struct DumbGitServer {
    root: tempfile::TempDir,
    /// `http://127.0.0.1:port`; `owner/name` is at `<base_url>/owner/name.git`.
    pub base_url: String,
    task: tokio::task::JoinHandle<()>,
}

async fn file(State(root): State<PathBuf>, UrlPath(path): UrlPath<String>) -> Response {
    // Only plain relative paths: a test server must not hand out the machine's files.
    if !Path::new(&path).components().all(|c| matches!(c, Component::Normal(_))) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read(root.join(&path)).await {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

impl DumbGitServer {
    /// Starts serving (an empty directory) in the current tokio runtime.
    pub async fn start() -> DumbGitServer {
        let root = tempfile::tempdir().unwrap();
        let router =
            axum::Router::new().route("/{*path}", axum::routing::get(file)).with_state(root.path().to_path_buf());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        DumbGitServer { root, base_url, task }
    }

    /// Creates `owner/name` with one commit holding `files` on branch `main`, with the index files
    /// (`info/refs`, `objects/info/packs`) a dumb client reads; returns its clone URL.
    pub fn create_repo(&self, owner: &str, name: &str, files: &[(&str, &str)]) -> String {
        let bare = self.root.path().join(owner).join(format!("{name}.git"));
        std::fs::create_dir_all(&bare).unwrap();
        run_git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        let work = tempfile::tempdir().unwrap();
        run_git(work.path(), &["init", "-q", "-b", "main"]);
        for (path, content) in files {
            let p = work.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        run_git(work.path(), &["add", "-A"]);
        run_git(work.path(), &["commit", "-q", "--allow-empty", "-m", "initial"]);
        run_git(work.path(), &["push", "-q", &bare.display().to_string(), "main"]);
        run_git(&bare, &["update-server-info"]);
        format!("{}/{owner}/{name}.git", self.base_url)
    }
}

impl Drop for DumbGitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
