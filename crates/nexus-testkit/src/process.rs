//! Runs `nexus server` and `nexus agent` as real processes (so tests can `kill -9` them), with logs
//! in files that failing tests print.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Settings for a server process.
#[derive(Debug, Clone)]
pub struct ServerOpts {
    /// GitHub API base URL.
    pub github_api_url: String,
    /// Git base URL.
    pub git_base_url: String,
    /// Inclusive SSH port range.
    pub ssh_ports: (u16, u16),
    /// Node heartbeat timeout, seconds.
    pub node_timeout_secs: u64,
}

/// The OAuth client id test servers hand to `nexus auth github`.
pub const TEST_CLIENT_ID: &str = "Iv1.nexus-test-client";

/// A running `nexus server`.
pub struct ServerProcess {
    bin: PathBuf,
    opts: ServerOpts,
    extra_args: Vec<String>,
    child: Option<Child>,
    /// REST port (kept across restarts so agents reconnect to the same URL).
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The data dir (kept across restarts).
    pub data_dir: tempfile::TempDir,
}

fn log_file(dir: &Path, name: &str) -> (File, File) {
    let f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap();
    (f.try_clone().unwrap(), f)
}

/// Blocks until `GET url/health` answers 200.
pub fn wait_healthy(url: &str, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    let addr = url.trim_start_matches("http://").to_string();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(s, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "server at {url} not healthy after {timeout:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

impl ServerProcess {
    /// A server that trusts `github` (the test server) for identities and clones `owner/name` from it,
    /// with `ssh_ports` forwarding ports.
    pub fn for_github(bin: &Path, github: &crate::github::FakeGithub, ssh_ports: u16) -> ServerProcess {
        ServerProcess::start(
            bin,
            ServerOpts {
                github_api_url: github.api_url.clone(),
                git_base_url: github.web_url.clone(),
                ssh_ports: crate::free_port_range(ssh_ports),
                node_timeout_secs: 30,
            },
        )
    }

    /// Starts a server with a fresh data dir on a free port.
    pub fn start(bin: &Path, opts: ServerOpts) -> ServerProcess {
        Self::start_with_args(bin, opts, &[])
    }

    /// Like [`ServerProcess::start`], with more `nexus server` flags (e.g. `--binaries-dir DIR`),
    /// kept across restarts.
    pub fn start_with_args(bin: &Path, opts: ServerOpts, extra_args: &[&str]) -> ServerProcess {
        let port = crate::free_port();
        let mut s = ServerProcess {
            bin: bin.to_path_buf(),
            opts,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            child: None,
            port,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: tempfile::tempdir().unwrap(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let (out, err) = log_file(self.data_dir.path(), "server.log");
        let (lo, hi) = self.opts.ssh_ports;
        let child = Command::new(&self.bin)
            .args(["server", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--github-api-url", &self.opts.github_api_url, "--git-base-url", &self.opts.git_base_url])
            // Tests serve git from 127.0.0.1 (and the LXD bridge) on ports picked at run time.
            .args(["--allow-git-host", "git://127.0.0.1:*,http://127.0.0.1:*"])
            // The GitHub test server accepts any OAuth client id for the device flow.
            .args(["--github-client-id", TEST_CLIENT_ID])
            .args([
                "--ssh-port-range",
                &format!("{lo}-{hi}"),
                "--node-timeout",
                &self.opts.node_timeout_secs.to_string(),
            ])
            .args(&self.extra_args)
            .env("NEXUS_LOG", "info,nexus_server=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("nexus server starts");
        self.child = Some(child);
        wait_healthy(&self.url, Duration::from_secs(20));
    }

    /// The join token agents need.
    pub fn join_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("join-token")).unwrap().trim().to_string()
    }

    /// The operator token.
    pub fn operator_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("operator-token")).unwrap().trim().to_string()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log());
        }
    }
}

/// A running `nexus agent`.
pub struct AgentProcess {
    child: Option<Child>,
    log_dir: tempfile::TempDir,
    /// Node name.
    pub name: String,
    /// LXD project.
    pub project: String,
}

impl AgentProcess {
    /// Starts an agent for `server` using LXD project `project`; it enrols with the server's join
    /// token file and keeps its credential in its own state dir (next to its log).
    pub fn start(bin: &Path, server: &ServerProcess, name: &str, project: &str, extra: &[&str]) -> AgentProcess {
        let log_dir = tempfile::tempdir().unwrap();
        let (out, err) = log_file(log_dir.path(), "agent.log");
        let child = Command::new(bin)
            .args(["agent", "--server", &server.url])
            .arg("--join-token-file")
            .arg(server.data_dir.path().join("join-token"))
            .arg("--state-dir")
            .arg(log_dir.path().join("state"))
            .args(["--lxd-project", project, "--name", name])
            .args(extra)
            .env("NEXUS_LOG", "info,nexus_agent=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("nexus agent starts");
        AgentProcess { child: Some(child), log_dir, name: name.into(), project: project.into() }
    }

    /// SIGSTOP: the process freezes with its connections open, so only missed heartbeats show it.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args(["-STOP", &c.id().to_string()]).status();
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_dir.path().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- agent {} log ----\n{}", self.name, self.log());
        }
    }
}
