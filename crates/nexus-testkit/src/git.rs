//! Real git hosting for tests: bare repos served by `git daemon` on an address containers can reach.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `git daemon` over a directory of bare repos.
pub struct GitServer {
    root: tempfile::TempDir,
    /// `git://ip:port`; `owner/name` resolves to `<base_url>/owner/name.git`.
    pub base_url: String,
    child: Child,
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Nexus Test")
        .env("GIT_AUTHOR_EMAIL", "test@nexus.invalid")
        .env("GIT_COMMITTER_NAME", "Nexus Test")
        .env("GIT_COMMITTER_EMAIL", "test@nexus.invalid")
        .output()
        .expect("git is installed");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl GitServer {
    /// Serves on `ip` (use the LXD bridge address so containers can clone) at a free port.
    pub fn start(ip: &str) -> GitServer {
        let root = tempfile::tempdir().unwrap();
        let port = crate::free_port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                &format!("--base-path={}", root.path().display()),
                &format!("--listen={ip}"),
                &format!("--port={port}"),
            ])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let server = GitServer { base_url: format!("git://{ip}:{port}"), root, child };
        // Ready when it accepts connections.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect((ip, port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "git daemon did not start on {ip}:{port}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }

    /// Creates `owner/name` with one commit holding `files` on branch `main`; returns the commit.
    pub fn create_repo(&self, owner: &str, name: &str, files: &[(&str, &str)]) -> String {
        let bare = self.root.path().join(owner).join(format!("{name}.git"));
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        let work = tempfile::tempdir().unwrap();
        git(work.path(), &["init", "-q", "-b", "main"]);
        for (path, content) in files {
            let p = work.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git(work.path(), &["add", "-A"]);
        git(work.path(), &["commit", "-q", "-m", "initial"]);
        git(work.path(), &["push", "-q", &bare.display().to_string(), "main"]);
        let out = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(work.path()).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Creates `owner/name` with one commit holding the files under `dir` as they are (binary files
    /// included; the folder's own `.gitignore` applies), on branch `main`; returns the commit.
    pub fn create_repo_from_dir(&self, owner: &str, name: &str, dir: &Path) -> String {
        let bare = self.root.path().join(owner).join(format!("{name}.git"));
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        let work = tempfile::tempdir().unwrap();
        git(work.path(), &["init", "-q", "-b", "main"]);
        copy_tree(dir, work.path());
        git(work.path(), &["add", "-A"]);
        git(work.path(), &["commit", "-q", "-m", "initial"]);
        git(work.path(), &["push", "-q", &bare.display().to_string(), "main"]);
        let out = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(work.path()).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Adds branch `branch` to `owner/name` (off `main`) with `files` changed; returns its commit.
    pub fn add_branch(&self, owner: &str, name: &str, branch: &str, files: &[(&str, &str)]) -> String {
        let bare = self.root.path().join(owner).join(format!("{name}.git"));
        let work = tempfile::tempdir().unwrap();
        git(work.path(), &["clone", "-q", &bare.display().to_string(), "."]);
        git(work.path(), &["checkout", "-q", "-b", branch]);
        for (path, content) in files {
            let p = work.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git(work.path(), &["add", "-A"]);
        git(work.path(), &["commit", "-q", "-m", &format!("on {branch}")]);
        git(work.path(), &["push", "-q", "origin", branch]);
        let out = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(work.path()).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Where the bare repos live.
    pub fn root(&self) -> PathBuf {
        self.root.path().to_path_buf()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
