//! The one-line installer against a real `nexus server` process (no LXD needed): the server hands out
//! its own binary, extra builds from `--binaries-dir` and their checksums; the served script, piped
//! from `curl` into `bash` as users run it, refuses cleanly (clear message, non-zero exit, nothing
//! installed) when the platform has no build, the download is altered, or git is missing;
//! `--dry-run` and `--version` change nothing; and a whole install (the test plays the user in
//! GitHub's device flow, a simulated node runs the workspace) can be run twice.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexus_testkit::github::FakeGithub;
use nexus_testkit::process::{ServerOpts, ServerProcess};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nexus"))
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// This machine's platform as download names spell it, e.g. `linux-amd64`.
fn host_platform() -> String {
    let os = match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "darwin",
        other => panic!("no nexus downloads for {other}"),
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no nexus downloads for {other}"),
    };
    format!("{os}-{arch}")
}

/// Platforms other than this machine's, in a fixed order.
fn other_platforms() -> Vec<String> {
    let host = host_platform();
    ["darwin-arm64", "linux-arm64", "darwin-amd64", "linux-amd64"]
        .into_iter()
        .filter(|p| *p != host)
        .map(str::to_string)
        .collect()
}

/// `uname -s` / `uname -m` output for a download platform name.
fn uname_of(platform: &str) -> (&'static str, &'static str) {
    let (os, arch) = platform.split_once('-').unwrap();
    (if os == "darwin" { "Darwin" } else { "Linux" }, if arch == "arm64" { "arm64" } else { "x86_64" })
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// A server whose GitHub is never asked (for tests that stop before `nexus auth github`).
fn server(extra_args: &[&str]) -> ServerProcess {
    let opts = ServerOpts {
        github_api_url: "http://127.0.0.1:9/api/v3".into(),
        git_base_url: "http://127.0.0.1:9".into(),
        ssh_ports: nexus_testkit::free_port_range(1),
        node_timeout_secs: 30,
    };
    ServerProcess::start_with_args(&bin(), opts, extra_args)
}

async fn get(url: &str) -> (u16, String, Vec<u8>) {
    let resp = reqwest::get(url).await.expect("server answers");
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, resp.bytes().await.unwrap().to_vec())
}

/// A tiny HTTP server with fixed files that records the paths asked for: stands in for a server
/// that sends something other than what its checksum says, and proves when nothing was downloaded.
struct StaticServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl StaticServer {
    fn start(files: Vec<(String, Vec<u8>)>) -> StaticServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(n) if n > 0 && line != "\r\n" => {}
                        _ => break,
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(path.clone());
                let (status, body) = match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => ("200 OK", body.clone()),
                    None => ("404 Not Found", br#"{"error":{"code":"nope","message":"m","hint":"h"}}"#.to_vec()),
                };
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body));
            }
        });
        StaticServer { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// What one run of the installer did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// A user's machine: an empty HOME and an install prefix inside it.
struct Machine {
    home: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        Machine { home: tempfile::tempdir().unwrap() }
    }

    fn prefix(&self) -> PathBuf {
        self.home.path().join("bin")
    }

    /// Runs `curl -fsSL <server>/install.sh | bash -s -- <args>` as users do, with `path` as PATH and
    /// no controlling terminal (so nothing can wait for a person at the keyboard).
    fn install(&self, server_url: &str, path: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
        let pipeline = "set -o pipefail; curl -fsSL \"$0/install.sh\" | bash -s -- \"$@\"";
        let prefix = self.prefix();
        let mut cmd = match which("setsid") {
            Some(setsid) => {
                let mut c = Command::new(setsid);
                c.args(["-w", "bash"]);
                c
            }
            None => Command::new("bash"),
        };
        cmd.args(["-c", pipeline, server_url])
            .args(args)
            .arg("--prefix")
            .arg(&prefix)
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env("NEXUS_BROWSER", "none")
            .env("LANG", "C.UTF-8")
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        let out = cmd.output().expect("bash runs");
        let run = Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("---- installer {args:?} (ok: {})\n{}{}", run.ok, run.stdout, run.stderr);
        run
    }

    /// Everything in HOME, relative, sorted.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                if p.is_dir() && !p.is_symlink() {
                    walk(&p, base, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.home.path(), self.home.path(), &mut out);
        out.sort();
        out
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}

fn real_path() -> String {
    std::env::var("PATH").unwrap()
}

/// A directory with a `uname` that reports `platform`, put in front of `path`.
fn fake_uname(dir: &Path, platform: &str) {
    let (s, m) = uname_of(platform);
    let script = format!("#!/bin/sh\ncase \"$1\" in\n  -m) echo {m} ;;\n  *) echo {s} ;;\nesac\n");
    let uname = dir.join("uname");
    let _ = std::fs::remove_file(&uname);
    std::fs::write(&uname, script).unwrap();
    std::fs::set_permissions(&uname, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_hands_out_its_own_binary_extra_builds_and_checksums_without_a_token() {
    let host = host_platform();
    let others = other_platforms();
    let extra = tempfile::tempdir().unwrap();
    std::fs::write(extra.path().join(format!("nexus-{}", others[0])), b"pretend build\n").unwrap();
    std::fs::write(extra.path().join("notes.txt"), b"not a binary\n").unwrap();
    let server = server(&["--binaries-dir", extra.path().to_str().unwrap()]);

    // The server's own executable, byte for byte, and a checksum in `sha256sum` format.
    let (status, content_type, body) = get(&format!("{}/download/nexus-{host}", server.url)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/octet-stream");
    assert!(body == std::fs::read(bin()).unwrap(), "the download is the running nexus binary ({} bytes)", body.len());
    let (status, _, sum) = get(&format!("{}/download/nexus-{host}.sha256", server.url)).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(sum).unwrap(), format!("{}  nexus-{host}\n", sha256_hex(&bin())));

    // A build from --binaries-dir, with its checksum.
    let (status, _, body) = get(&format!("{}/download/nexus-{}", server.url, others[0])).await;
    assert_eq!((status, body.as_slice()), (200, &b"pretend build\n"[..]));
    let (_, _, sum) = get(&format!("{}/download/nexus-{}.sha256", server.url, others[0])).await;
    let expected = sha256_hex(&extra.path().join(format!("nexus-{}", others[0])));
    assert_eq!(String::from_utf8(sum).unwrap(), format!("{expected}  nexus-{}\n", others[0]));

    // A platform this server has no build for, and a name that is no platform at all: the API's
    // error format, with the platforms it does have.
    for (file, names) in [
        (format!("nexus-{}", others[1]), others[1].clone()),
        (format!("nexus-{}.sha256", others[1]), others[1].clone()),
        ("nexus-windows-amd64".to_string(), "nexus-windows-amd64".to_string()),
        ("notes.txt".to_string(), "notes.txt".to_string()),
    ] {
        let (status, content_type, body) = get(&format!("{}/download/{file}", server.url)).await;
        assert_eq!(status, 404, "{file}");
        assert!(content_type.starts_with("application/json"), "{file}: {content_type}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "binary_not_found", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(&names), "{body}");
        let hint = body["error"]["hint"].as_str().unwrap();
        assert!(hint.contains(&host) && hint.contains(&others[0]), "the hint lists what the server has: {hint}");
        assert!(!hint.contains(&others[1]), "{hint}");
        assert!(hint.contains("--binaries-dir"), "{hint}");
    }

    // The script, with this server baked in as its default.
    let (status, content_type, script) = get(&format!("{}/install.sh", server.url)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/x-shellscript");
    let script = String::from_utf8(script).unwrap();
    assert!(script.contains(&format!("\nSERVED_FROM='{}'\n", server.url)), "default server baked in");
    assert!(script.contains(&format!("\nINSTALLER_VERSION='{VERSION}'\n")));

    // A bad --binaries-dir stops the server at start, saying which directory.
    let out = Command::new(bin())
        .args(["server", "--listen", "127.0.0.1:0", "--binaries-dir", "/nonexistent/nexus-builds", "--data-dir"])
        .arg(extra.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/nexus-builds"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_without_a_build_is_named_and_nothing_is_installed() {
    let server = server(&[]);
    let machine = Machine::new();
    let fake = tempfile::tempdir().unwrap();
    let wanted = other_platforms()[0].clone();
    fake_uname(fake.path(), &wanted);
    let path = format!("{}:{}", fake.path().display(), real_path());

    let run = machine.install(&server.url, &path, &[], &["--repo", "acme/site", "--no-connect"]);
    assert!(!run.ok);
    assert!(run.stderr.contains(&format!("error: this server has no nexus CLI for {wanted}")), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("hint: this server has: {}.", host_platform())), "{}", run.stderr);
    assert_eq!(machine.files(), Vec::<String>::new(), "nothing installed, no config written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_download_is_refused_and_the_previous_binary_kept() {
    let server = server(&[]);
    let host = host_platform();
    let (_, _, real_sum) = get(&format!("{}/download/nexus-{host}.sha256", server.url)).await;
    // Publishes the real checksum but sends something else.
    let liar = StaticServer::start(vec![
        (format!("/download/nexus-{host}.sha256"), real_sum),
        (format!("/download/nexus-{host}"), b"#!/bin/sh\necho not nexus\n".to_vec()),
    ]);
    let machine = Machine::new();
    std::fs::create_dir_all(machine.prefix()).unwrap();
    std::fs::write(machine.prefix().join("nexus"), b"previous nexus\n").unwrap();

    let run = machine.install(
        &server.url,
        &real_path(),
        &[("NEXUS_INSTALL_BASE_URL", &liar.url)],
        &["--repo", "acme/site", "--no-connect"],
    );
    assert!(!run.ok);
    assert!(run.stderr.contains(&format!("error: checksum mismatch for nexus-{host}")), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was installed"), "{}", run.stderr);
    assert!(
        liar.requests().contains(&format!("/download/nexus-{host}")),
        "the bad body was downloaded: {:?}",
        liar.requests()
    );
    assert_eq!(std::fs::read(machine.prefix().join("nexus")).unwrap(), b"previous nexus\n");
    assert_eq!(machine.files(), vec!["bin".to_string(), "bin/nexus".to_string()], "no temp file left, no config");
}

/// The test machine's package manager's command for git, as the installer should print it.
fn expected_git_command() -> Option<String> {
    let release = std::fs::read_to_string("/etc/os-release").ok()?;
    let value = |key: &str| {
        release.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or("").trim_matches('"').to_string()
    };
    let ids = format!(" {} {} ", value("ID"), value("ID_LIKE"));
    let sudo = if is_root() { "" } else { "sudo " };
    if ids.contains(" debian ") || ids.contains(" ubuntu ") {
        Some(format!("`{sudo}apt-get install -y git`"))
    } else if ids.contains(" fedora ") || ids.contains(" rhel ") || ids.contains(" centos ") {
        Some(format!("`{sudo}dnf install -y git`"))
    } else {
        None
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_git_gets_the_install_command_before_anything_is_downloaded() {
    let server = server(&[]);
    let recorder = StaticServer::start(vec![]);
    // Everything on PATH except git.
    let tools = tempfile::tempdir().unwrap();
    for dir in std::env::split_paths(&real_path()) {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name();
            let link = tools.path().join(&name);
            if name != "git" && !link.exists() && !link.is_symlink() {
                std::os::unix::fs::symlink(e.path(), link).unwrap();
            }
        }
    }
    assert!(tools.path().join("curl").exists() && !tools.path().join("git").exists());
    let path = tools.path().display().to_string();
    let env = [("NEXUS_INSTALL_BASE_URL", recorder.url.as_str())];
    let machine = Machine::new();

    let run = machine.install(&server.url, &path, &env, &["--repo", "acme/site", "--no-connect"]);
    assert!(!run.ok);
    assert!(run.stderr.contains("error: missing: git "), "{}", run.stderr);
    if let Some(command) = expected_git_command() {
        assert!(run.stderr.contains(&format!("hint: install with {command}")), "{}", run.stderr);
    }

    // On a Mac it is Homebrew's command.
    fake_uname(tools.path(), "darwin-arm64");
    let run = machine.install(&server.url, &path, &env, &["--repo", "acme/site", "--no-connect"]);
    assert!(!run.ok);
    assert!(run.stderr.contains("hint: install with `brew install git`"), "{}", run.stderr);

    assert_eq!(recorder.requests(), Vec::<String>::new(), "nothing was downloaded");
    assert_eq!(machine.files(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_every_step_and_changes_nothing() {
    let server = server(&[]);
    let host = host_platform();
    let machine = Machine::new();
    let run =
        machine.install(&server.url, &real_path(), &[], &["--repo", "acme/Site.git", "--editor", "code", "--dry-run"]);
    assert!(run.ok, "{}", run.stderr);
    let prefix = machine.prefix().display().to_string();
    for step in [
        "ok: git, ssh, curl found".to_string(),
        format!("[dry run] would download {}/download/nexus-{host} to a temporary file in {prefix}", server.url),
        format!("[dry run] would check its SHA-256 is {}, then move it to {prefix}/nexus", sha256_hex(&bin())),
        format!("[dry run] would run: nexus auth github --server {}", server.url),
        "[dry run] would run: nexus ssh setup".to_string(),
        "[dry run] would run: nexus workspace create acme/Site.git --name site".to_string(),
        "[dry run] would run: nexus workspace connect site --editor code".to_string(),
        "Dry run: nothing was changed.".to_string(),
    ] {
        assert!(run.stderr.contains(&step), "missing {step:?} in:\n{}", run.stderr);
    }
    assert_eq!(machine.files(), Vec::<String>::new(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_usage_errors_change_nothing() {
    let server = server(&[]);
    let machine = Machine::new();
    let run = machine.install(&server.url, &real_path(), &[], &["--version"]);
    assert!(run.ok);
    assert_eq!(run.stdout, format!("nexus installer {VERSION} (from {})\n", server.url));

    let run = machine.install(&server.url, &real_path(), &[], &["--repo", "acme/site", "--editor", "vim"]);
    assert!(!run.ok);
    assert!(run.stderr.contains("error: --editor must be cursor, code or none, not vim"), "{}", run.stderr);

    let run = machine.install(&server.url, &real_path(), &[], &["--no-connect"]);
    assert!(!run.ok);
    assert!(run.stderr.contains("error: --repo is required"), "{}", run.stderr);
    assert_eq!(machine.files(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_install_signs_in_creates_the_workspace_and_can_run_again() {
    let github = Arc::new(FakeGithub::start().await);
    github.add_account("alice", 1001);
    github.add_account("acme", 2001);
    github.create_repo("acme", "site", false, &[("README.md", "hi\n")]);
    let server = ServerProcess::for_github(&bin(), &github, 2);
    // A simulated node (the real agent code over the in-memory provider) runs the workspace.
    let (stop_agent, agent_stopped) = tokio::sync::oneshot::channel::<()>();
    let agent_config = nexus_agent::AgentConfig::new(server.url.clone(), server.join_token(), "node-a");
    tokio::spawn(nexus_agent::run(agent_config, Arc::new(nexus_agent::fake::FakeProvider::new()), async move {
        let _ = agent_stopped.await;
    }));
    let operator = nexus_testkit::api::Api::new(&server.url).with_token(&server.operator_token());
    nexus_testkit::eventually(Duration::from_secs(20), "node joined", || async {
        let (_, nodes) = operator.call("GET", "/api/v1/nodes", None).await;
        (nodes["nodes"].as_array()?.iter().any(|n| n["status"] == "ok")).then_some(())
    })
    .await;
    // The test plays the user approving each device code in the browser.
    let approver = github.auto_approve("alice");

    let machine = Arc::new(Machine::new());
    let install = |machine: Arc<Machine>, url: String| {
        tokio::task::spawn_blocking(move || {
            machine.install(&url, &real_path(), &[], &["--repo", "acme/site", "--no-connect"])
        })
    };
    let first = install(machine.clone(), server.url.clone()).await.unwrap();
    assert!(first.ok, "{}", first.stderr);
    assert!(first.stderr.contains("ok: git, ssh, curl found"), "{}", first.stderr);
    assert!(first.stderr.contains("ok: Downloaded and installed"), "{}", first.stderr);
    assert!(first.stderr.contains("is not on your PATH; add it with:"), "{}", first.stderr);
    assert!(first.stderr.contains("Authenticated as: alice"), "the CLI's own output follows: {}", first.stderr);
    assert!(first.stdout.contains("Workspace Ready"), "{}", first.stdout);
    let installed = machine.prefix().join("nexus");
    assert!(std::fs::read(&installed).unwrap() == std::fs::read(bin()).unwrap(), "the server's binary, intact");
    assert_eq!(std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777, 0o755);
    let config = std::fs::read_to_string(machine.home.path().join(".nexus/config.yaml")).unwrap();
    assert!(config.contains(&server.url) && config.contains("username: alice"), "{config}");
    let inode = std::fs::metadata(&installed).unwrap().ino();

    // Again: the binary is kept as it is, and the CLI steps find what the first run made.
    let second = install(machine.clone(), server.url.clone()).await.unwrap();
    assert!(second.ok, "{}", second.stderr);
    assert!(second.stderr.contains("already installed"), "{}", second.stderr);
    assert!(!second.stderr.contains("Downloaded and installed"), "{}", second.stderr);
    assert_eq!(std::fs::metadata(&installed).unwrap().ino(), inode, "not replaced");
    assert!(second.stdout.contains("Workspace Ready"), "{}", second.stdout);

    let list = Command::new(&installed)
        .args(["workspace", "list", "--json"])
        .env("HOME", machine.home.path())
        .env_remove("NEXUS_SERVER")
        .env_remove("NEXUS_TOKEN")
        .env_remove("NEXUS_CONFIG")
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["site"], "one workspace after two runs");
    assert_eq!(github.keys("alice").len(), 1, "the SSH key was uploaded once");
    approver.abort();
    let _ = stop_agent.send(());
    github.assert_conformant();
}
