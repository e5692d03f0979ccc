//! End-to-end test of [`LxdProvider`] and [`provision`] against the real LXD on this machine.
//!
//! Always runs: an unreachable LXD is a failure with a hint, never a silent skip. Only an explicit
//! `NEXUS_SKIP_E2E=1` skips it, and says so loudly. It works
//! in a throwaway project `nexus-test-<random>`, deleted at the end even when the test fails.
//!
//! Environment:
//! - `NEXUS_TEST_IMAGE`: image alias (default `nexus-base`, which `nexus node init` maintains).
//! - `NEXUS_TEST_REPO_URL`: repository to clone; when unset, the test makes a one-commit repository
//!   and serves it with `git daemon` on the bridge address.
//! - `NEXUS_TEST_GIT_HOST`: bridge address for that daemon (default `10.87.0.1`).
//! - `NEXUS_TEST_SAMPLES`: how many extra workspaces to provision for timing (default 5).
//! - `NEXUS_TEST_RUNTIME_DIR`: the runtime store the runtime test uses (default
//!   `/var/tmp/nexus-test-runtimes`, kept between runs so Node and uv are downloaded once per machine).

use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use nexus_agent::lxd::LxdProvider;
use nexus_agent::provider::Provider;
use nexus_agent::provision::{self, Settings};
use nexus_agent::runtimes::{RuntimeConfig, RuntimeStore};
use nexus_types::diagnostics::error_chain;
use nexus_types::protocol::{
    NodeRuntime, PackageManager, PackageManagerKind, ProjectPlan, PythonInstaller, PythonRuntime, RuntimePlan,
    VersionRequest, WorkspaceSpec,
};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// Short random-enough suffix: names must be unique across projects on the shared bridge.
fn suffix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{:x}{:04x}", nanos, std::process::id() & 0xffff)
}

/// Deletes the project (and everything in it) when dropped, also while unwinding from a failure.
struct ProjectGuard {
    socket: PathBuf,
    project: String,
}

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        let provider = LxdProvider::new(self.socket.clone(), self.project.clone());
        let project = self.project.clone();
        // A fresh runtime on its own thread: Drop cannot await, and may run inside the test's runtime.
        let result = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(provider.delete_project())
        })
        .join();
        match result {
            Ok(Ok(())) => eprintln!("deleted LXD project {project}"),
            Ok(Err(e)) => eprintln!("WARNING: deleting LXD project {project} failed: {}", error_chain(&e)),
            Err(_) => eprintln!("WARNING: deleting LXD project {project} panicked"),
        }
    }
}

/// A `git daemon` serving a one-commit repository; killed when dropped.
struct GitServer {
    child: Child,
    dir: PathBuf,
    url: String,
    commit: String,
    readme: String,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(dir);
    for (k, v) in [
        ("GIT_AUTHOR_NAME", "Nexus Test"),
        ("GIT_AUTHOR_EMAIL", "test@nexus.invalid"),
        ("GIT_COMMITTER_NAME", "Nexus Test"),
        ("GIT_COMMITTER_EMAIL", "test@nexus.invalid"),
    ] {
        c.env(k, v);
    }
    c
}

fn serve_repo(host: &str, tag: &str) -> GitServer {
    let dir = std::env::temp_dir().join(format!("nexus-e2e-git-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let readme = format!("hello from nexus e2e {tag}\n");
    run(Command::new("git").args(["init", "-q", "-b", "main"]).arg(&work));
    std::fs::write(work.join("README"), &readme).unwrap();
    run(git(&work).args(["add", "README"]));
    run(git(&work).args(["commit", "-q", "-m", "first"]));
    let commit = run(git(&work).args(["rev-parse", "HEAD"]));
    run(Command::new("git").args(["clone", "-q", "--bare"]).arg(&work).arg(dir.join("demo.git")));

    let port = TcpListener::bind((host, 0))
        .unwrap_or_else(|e| panic!("cannot bind {host}: {e} (is the LXD bridge up? set NEXUS_TEST_GIT_HOST)"))
        .local_addr()
        .unwrap()
        .port();
    // The daemon binary itself: `git daemon` would run it as a child that outlives a kill.
    let exec_path = run(Command::new("git").arg("--exec-path"));
    let child = Command::new(Path::new(&exec_path).join("git-daemon"))
        .args(["--reuseaddr", "--export-all"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .arg(format!("--base-path={}", dir.display()))
        .arg(format!("--listen={host}"))
        .arg(format!("--port={port}"))
        .arg(&dir)
        .spawn()
        .expect("cannot start `git daemon`");
    let addr = (host.parse::<IpAddr>().unwrap(), port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "git daemon did not start listening on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    GitServer { child, dir, url: format!("git://{host}:{port}/demo.git"), commit, readme }
}

fn ssh_keypair(dir: &Path) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("id_ed25519");
    let _ = std::fs::remove_file(&key);
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "nexus-e2e", "-f"]).arg(&key));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap().trim().to_string();
    (key, public)
}

/// Runs `command` over SSH as dev, checking the host key against `host_key`.
fn ssh(key: &Path, known_hosts: &Path, ip: IpAddr, host_key: &str, command: &str) -> std::process::Output {
    std::fs::write(known_hosts, format!("{ip} {host_key}\n")).unwrap();
    Command::new("ssh")
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(key)
        .arg(format!("dev@{ip}"))
        .arg(command)
        .output()
        .expect("cannot run ssh")
}

fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// The real LXD for a test named `what`, or `None` (said loudly) under `NEXUS_SKIP_E2E`: its socket
/// and the base image alias. Panics with the next step when LXD is not there: in CI it must run.
fn real_lxd(what: &str) -> Option<(PathBuf, String)> {
    if std::env::var_os("NEXUS_SKIP_E2E").is_some() {
        eprintln!("NEXUS_SKIP_E2E is set: SKIPPING the real-LXD {what} test (this run proves nothing about LXD)");
        return None;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let socket = LxdProvider::default_socket().unwrap_or_else(|e| {
        panic!(
            "LXD is not reachable: {}\nhint: prepare this host with `sudo nexus node init` (or run `scripts/test.sh`)",
            error_chain(&e)
        )
    });
    Some((socket, env_or("NEXUS_TEST_IMAGE", "nexus-base")))
}

#[tokio::test]
async fn provision_on_real_lxd() {
    let Some((socket, image)) = real_lxd("provider") else { return };
    let tag = suffix();
    let project = format!("nexus-test-{tag}");
    let lxd = LxdProvider::new(&socket, &project);
    if let Err(e) = lxd.list().await {
        panic!(
            "LXD at {} does not answer: {}\nhint: start it with `sudo nexus node init`",
            socket.display(),
            error_chain(&e)
        );
    }
    let _guard = ProjectGuard { socket: socket.clone(), project: project.clone() };
    let scratch = std::env::temp_dir().join(format!("nexus-e2e-{tag}"));
    let (key, public_key) = ssh_keypair(&scratch);
    let known_hosts = scratch.join("known_hosts");

    let served;
    let (repo_url, expected) = match std::env::var("NEXUS_TEST_REPO_URL").ok().filter(|v| !v.is_empty()) {
        Some(url) => (url, None),
        None => {
            served = serve_repo(&env_or("NEXUS_TEST_GIT_HOST", "10.87.0.1"), &tag);
            (served.url.clone(), Some((served.commit.clone(), served.readme.clone())))
        }
    };
    let repo_dir = "demo";
    let spec = WorkspaceSpec {
        image: String::new(),
        cpu: 2,
        memory: "2GB".into(),
        disk: String::new(),
        authorized_key: public_key.clone(),
        repo_url: repo_url.clone(),
        repo_dir: repo_dir.into(),
        branch: if expected.is_some() { "main".into() } else { String::new() },
        plan: Default::default(),
        git_token: None,
        upstream_url: None,
        git_author: None,
        owner_id: None,
        no_prebuild: false,
        repo_access_verified: false,
    };
    let settings = Settings::new(&image);

    // Project and template.
    lxd.ensure_project().await.expect("creating the project");
    lxd.ensure_project().await.expect("ensure_project is idempotent");
    let t = Instant::now();
    lxd.warm(&image).await.expect("building the template");
    eprintln!("template for {image} ready in {}", millis(t.elapsed()));
    let t = Instant::now();
    lxd.warm(&image).await.unwrap();
    eprintln!("warm again (already built): {}", millis(t.elapsed()));
    assert!(lxd.list().await.unwrap().is_empty(), "templates must not show up as workspaces");

    // First workspace: full check.
    let ws = format!("ws-e2e-{tag}");
    let t = Instant::now();
    let ready = provision::ensure(&lxd, &ws, &spec, &settings).await.unwrap_or_else(|f| panic!("ensure failed: {f}"));
    let first = t.elapsed();
    eprintln!("ensure #1 (create → ssh ready + clone): {} → {ready:?}", millis(first));
    let host_key = ready.host_key.clone().expect("host key");
    assert!(host_key.starts_with("ssh-ed25519 AAAA"), "{host_key}");
    assert_eq!(host_key.split(' ').count(), 2);
    let commit = ready.commit.clone().expect("commit");
    if let Some((want, _)) = &expected {
        assert_eq!(&commit, want);
    }
    assert_eq!(
        lxd.list().await.unwrap(),
        vec![nexus_agent::provider::InstanceInfo { name: ws.clone(), running: true }]
    );
    assert_eq!(lxd.get_config(&ws, "limits.memory").await.unwrap().as_deref(), Some("2GB"));
    assert_eq!(lxd.get_config(&ws, "limits.cpu").await.unwrap().as_deref(), Some("2"));
    assert_eq!(lxd.get_config(&ws, "raw.lxc").await.unwrap(), None, "template settings must not leak");

    // Exec basics: exit status, both streams, user, env, cwd.
    let out = lxd
        .exec(
            &ws,
            &["sh".into(), "-c".into(), "id -u; pwd; echo \"$GREETING\"; echo oops >&2; exit 7".into()],
            Some((1000, 1000)),
            &[("GREETING".into(), "hi there".into())],
            Some("/tmp"),
        )
        .await
        .unwrap();
    assert_eq!(out.code, 7);
    assert_eq!(out.stdout, "1000\n/tmp\nhi there\n");
    assert_eq!(out.stderr, "oops\n");

    // Config markers.
    lxd.set_config(&ws, "user.nexus.test", "42").await.unwrap();
    assert_eq!(lxd.get_config(&ws, "user.nexus.test").await.unwrap().as_deref(), Some("42"));
    assert_eq!(lxd.get_config(&ws, "user.nexus.unset").await.unwrap(), None);

    // authorized_keys: only our key, owned by dev, 0600 in a 0700 directory.
    let out = lxd
        .exec(
            &ws,
            &[
                "sh".into(),
                "-c".into(),
                "cat /home/dev/.ssh/authorized_keys; stat -c '%U:%G %a' /home/dev/.ssh /home/dev/.ssh/authorized_keys"
                    .into(),
            ],
            None,
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, format!("{public_key}\ndev:dev 700\ndev:dev 600\n"), "{out:?}");

    // SSH in with the key, pinning the reported host key.
    let ip = lxd.ipv4(&ws).await.unwrap().expect("address");
    assert_eq!(lxd.endpoint(&ws, 22).await.unwrap(), Some((ip, 22).into()));
    let out = ssh(
        &key,
        &known_hosts,
        ip.into(),
        &host_key,
        &format!("cat ~/{repo_dir}/README; git -C ~/{repo_dir} rev-parse HEAD"),
    );
    assert!(out.status.success(), "ssh failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some((_, readme)) = &expected {
        assert!(stdout.starts_with(readme.as_str()), "{stdout}");
    }
    assert!(stdout.trim_end().ends_with(&commit), "{stdout}");

    // Idempotency: a second ensure changes nothing and does not clone again.
    lxd.exec(&ws, &["touch".into(), format!("/home/dev/{repo_dir}/marker")], Some((1000, 1000)), &[], None)
        .await
        .unwrap();
    let t = Instant::now();
    let again = provision::ensure(&lxd, &ws, &spec, &settings).await.unwrap();
    eprintln!("ensure #1 again (already provisioned): {}", millis(t.elapsed()));
    assert_eq!(again, ready);
    let out = lxd
        .exec(&ws, &["test".into(), "-e".into(), format!("/home/dev/{repo_dir}/marker")], None, &[], None)
        .await
        .unwrap();
    assert_eq!(out.code, 0, "the checkout was replaced");

    // Stop / start / delete idempotency.
    let t = Instant::now();
    provision::stop(&lxd, &ws).await.unwrap();
    eprintln!("stop: {}", millis(t.elapsed()));
    provision::stop(&lxd, &ws).await.unwrap();
    assert_eq!(lxd.state(&ws).await.unwrap().map(|s| s.running), Some(false));
    assert_eq!(lxd.ipv4(&ws).await.unwrap(), None);
    let t = Instant::now();
    let restarted = provision::ensure(&lxd, &ws, &spec, &settings).await.unwrap();
    eprintln!("ensure after stop (start → ssh ready): {}", millis(t.elapsed()));
    assert_eq!(restarted.host_key, ready.host_key, "host key must survive a restart");
    assert_eq!(restarted.commit, ready.commit);
    lxd.start(&ws).await.unwrap();
    let t = Instant::now();
    provision::delete(&lxd, &ws).await.unwrap();
    eprintln!("delete (running): {}", millis(t.elapsed()));
    provision::delete(&lxd, &ws).await.unwrap();
    assert_eq!(lxd.state(&ws).await.unwrap(), None);
    assert!(provision::stop(&lxd, &ws).await.is_err(), "stopping a missing workspace is an error");

    // A clone that fails reports git's reason and leaves nothing behind, so a retry works.
    let bad_ws = format!("ws-e2e-{tag}-bad");
    let bad = WorkspaceSpec { branch: "no-such-branch".into(), ..spec.clone() };
    let f = provision::ensure(&lxd, &bad_ws, &bad, &settings).await.expect_err("clone of a missing branch");
    eprintln!("failed clone → {f}");
    assert!(f.message.contains("git clone"), "{f}");
    assert!(f.message.contains("no-such-branch"), "{f}");
    let out = lxd.exec(&bad_ws, &["sh".into(), "-c".into(), "ls -A /home/dev".into()], None, &[], None).await.unwrap();
    assert!(!out.stdout.contains("demo") && !out.stdout.contains("nexus-clone"), "leftovers: {}", out.stdout);
    if expected.is_some() {
        let fixed = provision::ensure(&lxd, &bad_ws, &spec, &settings).await.expect("retry with a good branch");
        assert_eq!(fixed.commit, Some(commit.clone()));
    }
    provision::delete(&lxd, &bad_ws).await.unwrap();

    // A container whose init gives up (bug h): the failure is the cause from its console log, not
    // the step that happened to run into the stopped container.
    let dead_ws = format!("ws-e2e-{tag}-dead");
    let no_repo = WorkspaceSpec { repo_url: String::new(), repo_dir: String::new(), ..spec.clone() };
    provision::ensure(&lxd, &dead_ws, &no_repo, &settings).await.expect("a healthy first boot");
    let init = "printf '%s\\n' 'Failed to create control group inotify object: Too many open files' \
        '[!!!!!!] Failed to allocate manager object.' 'Exiting PID 1...'; exit 1";
    let write_init =
        format!("printf '#!/bin/sh\\n%s\\n' \"{init}\" > /sbin/nexus-test-init && chmod 0755 /sbin/nexus-test-init");
    let out = lxd.exec(&dead_ws, &["sh".into(), "-c".into(), write_init], None, &[], None).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    provision::stop(&lxd, &dead_ws).await.unwrap();
    lxd.set_config(&dead_ws, "raw.lxc", "lxc.init.cmd = /sbin/nexus-test-init").await.unwrap();
    let f = provision::ensure(&lxd, &dead_ws, &no_repo, &settings).await.expect_err("init exits at once");
    eprintln!("failed boot → {f}");
    assert_eq!(
        f.message,
        "the container stopped (or never started): Failed to create control group inotify object: Too many open files"
    );
    assert!(f.hint.contains("max_user_instances"), "{f}");
    assert!(lxd.console_log(&dead_ws).await.unwrap().contains("Exiting PID 1"));
    let err = lxd.exec(&dead_ws, &["true".into()], None, &[], None).await.expect_err("exec in a stopped container");
    assert!(matches!(err, nexus_agent::provider::ProviderError::NotRunning(_)), "{err:?}");
    provision::delete(&lxd, &dead_ws).await.unwrap();

    // Timing samples: create → SSH ready, clone done, host key read.
    let samples: usize = env_or("NEXUS_TEST_SAMPLES", "5").parse().unwrap();
    let mut times = Vec::new();
    for i in 0..samples {
        let name = format!("ws-e2e-{tag}-{i}");
        let t = Instant::now();
        provision::ensure(&lxd, &name, &spec, &settings).await.unwrap_or_else(|f| panic!("sample {i}: {f}"));
        times.push(t.elapsed());
        provision::delete(&lxd, &name).await.unwrap();
    }
    if !times.is_empty() {
        let mut sorted = times.clone();
        sorted.sort();
        eprintln!(
            "ensure samples: [{}]; p50 {}",
            times.iter().map(|d| millis(*d)).collect::<Vec<_>>().join(", "),
            millis(sorted[sorted.len() / 2])
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Runs `command` in a login shell as `dev`, as setup steps, services and SSH sessions do.
async fn login_shell(lxd: &LxdProvider, ws: &str, command: &str) -> nexus_agent::provider::ExecOutput {
    let env = [("HOME", "/home/dev"), ("USER", "dev"), ("LOGNAME", "dev")].map(|(k, v)| (k.to_string(), v.to_string()));
    lxd.exec(ws, &["bash".into(), "-lc".into(), command.into()], Some((1000, 1000)), &env, Some("/home/dev"))
        .await
        .unwrap()
}

/// The node's network and runtimes in real containers: the agent puts the node's CA certificates
/// in (no test does it by hand), so the registry answers through this machine's TLS-inspecting
/// network; Node (the project's `.nvmrc` line), npm and uv come from the node's store, mounted
/// read-only, first on `PATH` of login shells; the owner's cache is writable.
#[tokio::test]
async fn network_and_runtimes_on_real_lxd() {
    let Some((socket, image)) = real_lxd("runtime") else { return };
    let tag = suffix();
    let project = format!("nexus-test-rt-{tag}");
    let lxd = LxdProvider::new(&socket, &project);
    let _guard = ProjectGuard { socket: socket.clone(), project: project.clone() };
    lxd.ensure_project().await.expect("creating the project");
    lxd.warm(&image).await.expect("building the template");
    let scratch = PathBuf::from(format!("/var/tmp/nexus-e2e-rt-{tag}"));
    let _scratch = RemoveOnDrop(scratch.clone());
    let (_key, public_key) = ssh_keypair(&scratch);

    let mut settings = Settings::new(&image);
    let store_dir = PathBuf::from(env_or("NEXUS_TEST_RUNTIME_DIR", "/var/tmp/nexus-test-runtimes"));
    let cold = !store_dir.join("node").exists();
    let config = RuntimeConfig { dir: store_dir.clone(), ..RuntimeConfig::default() };
    settings.runtimes = Some(Arc::new(RuntimeStore::new(config, &settings.network)));
    settings.caches = Some(scratch.join("caches"));
    let request =
        |spec: &str, file: &str| VersionRequest { spec: spec.into(), file: file.into(), key: None, line: 1, column: 1 };
    let runtime = RuntimePlan {
        node: Some(NodeRuntime {
            version: Some(request("22", ".nvmrc")),
            package_manager: PackageManager {
                kind: PackageManagerKind::Npm,
                version: None,
                hash: None,
                source: "package-lock.json".into(),
                lock_file: Some("package-lock.json".into()),
                install: "npm ci".into(),
            },
        }),
        python: Some(PythonRuntime {
            version: Some(request("3", ".python-version")),
            installer: PythonInstaller::Requirements,
            install: None,
        }),
    };
    let spec = WorkspaceSpec {
        image: String::new(),
        cpu: 2,
        memory: "2GB".into(),
        disk: String::new(),
        authorized_key: public_key,
        repo_url: String::new(),
        repo_dir: String::new(),
        branch: String::new(),
        plan: ProjectPlan { runtime, ..ProjectPlan::default() },
        git_token: None,
        upstream_url: None,
        git_author: None,
        owner_id: Some("e2e".into()),
        no_prebuild: false,
        repo_access_verified: false,
    };

    let ws = format!("ws-rt-{tag}");
    let t = Instant::now();
    provision::ensure(&lxd, &ws, &spec, &settings).await.unwrap_or_else(|f| panic!("ensure failed: {f}"));
    eprintln!("ensure with runtimes ({} store): {}", if cold { "cold" } else { "warm" }, millis(t.elapsed()));

    // The node's CAs are in the workspace's trust store: the registry answers through this
    // machine's TLS-inspecting network, for curl and for Node.
    let out = login_shell(&lxd, &ws, "ls /usr/local/share/ca-certificates/nexus | wc -l").await;
    assert_ne!(out.stdout.trim(), "0", "no certificates pushed: {out:?}");
    let out = login_shell(&lxd, &ws, "curl -sS https://registry.npmjs.org/ -o /dev/null").await;
    assert_eq!(out.code, 0, "curl to the registry inside the workspace: {out:?}");
    let out =
        login_shell(&lxd, &ws, "node -e \"fetch('https://registry.npmjs.org/').then(r => console.log(r.status))\"")
            .await;
    assert_eq!((out.code, out.stdout.trim()), (0, "200"), "Node's fetch to the registry: {out:?}");

    // The full `update-ca-certificates` the agent left running in the background finishes, and the
    // bundle it rewrites still has the node's certificates.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = login_shell(&lxd, &ws, "cat /var/lib/nexus/update-ca-certificates.log").await;
        if out.stdout.contains("added") && out.stdout.trim_end().ends_with("done.") {
            break;
        }
        assert!(Instant::now() < deadline, "update-ca-certificates did not finish: {out:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = login_shell(&lxd, &ws, "curl -sS https://registry.npmjs.org/ -o /dev/null").await;
    assert_eq!(out.code, 0, "curl after the full update: {out:?}");

    // The project's Node, first on PATH from the read-only store.
    let record = lxd.get_config(&ws, "user.nexus.runtime").await.unwrap().expect("runtime record");
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    let node = record["chosen"]["node"].as_str().unwrap().to_string();
    assert!(node.starts_with("22."), "{record}");
    let out = login_shell(&lxd, &ws, "node --version; command -v node").await;
    assert_eq!(out.stdout, format!("v{node}\n/opt/nexus/runtimes/node/{node}/bin/node\n"), "{out:?}");
    let npm = record["chosen"]["npm"].as_str().unwrap();
    let out = login_shell(&lxd, &ws, "npm --version && npm config get cache").await;
    assert_eq!(out.stdout, format!("{npm}\n/var/cache/nexus/npm\n"), "{out:?}");
    let out = login_shell(&lxd, &ws, "uv --version && echo $UV_PYTHON").await;
    assert!(out.stdout.starts_with("uv ") && out.stdout.contains("/usr/bin/python3"), "{out:?}");
    let out = login_shell(&lxd, &ws, "touch /opt/nexus/runtimes/x").await;
    assert!(out.stderr.contains("Read-only"), "the store must be read-only: {out:?}");
    let out = login_shell(&lxd, &ws, "touch /var/cache/nexus/probe && ls -ld /var/cache/nexus").await;
    assert_eq!(out.code, 0, "the owner's cache must be writable by dev: {out:?}");
    assert!(out.stdout.contains(" dev dev "), "{out:?}");

    // A second workspace of the same project: the store is warm.
    let ws2 = format!("ws-rt-{tag}-2");
    let t = Instant::now();
    provision::ensure(&lxd, &ws2, &spec, &settings).await.unwrap_or_else(|f| panic!("second ensure failed: {f}"));
    eprintln!("ensure with runtimes, second workspace (warm store): {}", millis(t.elapsed()));
    let out = login_shell(&lxd, &ws2, "ls /var/cache/nexus").await;
    assert!(out.stdout.contains("probe"), "the same owner's cache: {out:?}");
    // npm from the store installs through the node's network into the owner's cache; the owner's
    // next workspace installs the same package offline, from that cache.
    let install = |offline: &str| {
        format!("mkdir -p ~/p && cd ~/p && npm init -y >/dev/null && npm install --no-audit --no-fund {offline} is-number@7.0.0")
    };
    let out = login_shell(&lxd, &ws, &install("")).await;
    assert_eq!(out.code, 0, "npm install in the first workspace: {out:?}");
    let out = login_shell(&lxd, &ws2, &install("--offline")).await;
    assert_eq!(out.code, 0, "npm install --offline in the second workspace: {out:?}");

    // Started again: the certificates are compared, not reinstalled, and nothing is fetched.
    provision::stop(&lxd, &ws).await.unwrap();
    let t = Instant::now();
    provision::ensure(&lxd, &ws, &spec, &settings).await.unwrap();
    eprintln!("ensure after stop (runtimes recorded, CAs unchanged): {}", millis(t.elapsed()));
    let out = login_shell(&lxd, &ws, "node --version").await;
    assert_eq!(out.stdout.trim(), format!("v{node}"));

    provision::delete(&lxd, &ws).await.unwrap();
    provision::delete(&lxd, &ws2).await.unwrap();
}

/// Removes a scratch directory when dropped, also while unwinding from a failure.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A project whose setup writes a marker and takes 3 s: the second workspace of the repo starts
/// from the first one's prebuild, has the marker without running setup, its own key and host key
/// and none of the first owner's git identity, and is ready sooner.
#[tokio::test]
async fn second_workspace_starts_from_the_prebuild_on_real_lxd() {
    let Some((socket, image)) = real_lxd("prebuild") else { return };
    let tag = suffix();
    let project = format!("nexus-test-{tag}");
    let lxd = LxdProvider::new(&socket, &project);
    let _guard = ProjectGuard { socket: socket.clone(), project: project.clone() };
    let scratch = std::env::temp_dir().join(format!("nexus-e2e-pb-{tag}"));
    let (_key, key_a) = ssh_keypair(&scratch.join("a"));
    let (_key, key_b) = ssh_keypair(&scratch.join("b"));
    let served = serve_repo(&env_or("NEXUS_TEST_GIT_HOST", "10.87.0.1"), &format!("pb-{tag}"));
    let step = "echo built-by-setup > ~/setup-marker && sleep 3";
    let spec_a = WorkspaceSpec {
        image: String::new(),
        cpu: 2,
        memory: "2GB".into(),
        disk: String::new(),
        authorized_key: key_a,
        repo_url: served.url.clone(),
        repo_dir: "demo".into(),
        branch: "main".into(),
        plan: ProjectPlan { setup: vec![step.into()], ..ProjectPlan::default() },
        git_token: None,
        upstream_url: None,
        git_author: Some(nexus_types::protocol::GitAuthor { name: "alice".into(), email: "alice@example.com".into() }),
        owner_id: None,
        no_prebuild: false,
        repo_access_verified: true,
    };
    let spec_b = WorkspaceSpec {
        authorized_key: key_b.clone(),
        git_author: Some(nexus_types::protocol::GitAuthor { name: "bob".into(), email: "bob@example.com".into() }),
        ..spec_a.clone()
    };
    let settings = Settings::new(&image);
    lxd.ensure_project().await.unwrap();
    lxd.warm(&image).await.expect("building the template");

    // First workspace: create, then its setup (as the supervisor runs it), then the prebuild.
    let ws_a = format!("ws-pa-{tag}");
    let t = Instant::now();
    let ready_a = provision::ensure(&lxd, &ws_a, &spec_a, &settings).await.unwrap_or_else(|f| panic!("ensure: {f}"));
    let out = login_shell(&lxd, &ws_a, &format!("cd ~/demo && {step}")).await;
    assert_eq!(out.code, 0, "setup: {out:?}");
    let first = t.elapsed();
    let t = Instant::now();
    let pb = nexus_agent::prebuilds::keep(&lxd, &ws_a, &spec_a, &image, Default::default())
        .await
        .expect("a prebuild for this spec")
        .unwrap_or_else(|e| panic!("keeping the prebuild failed: {e}"));
    eprintln!("prebuild {pb} kept in {}", millis(t.elapsed()));
    assert!(lxd.list().await.unwrap().iter().all(|i| i.name != pb), "a prebuild is not a workspace");

    // Second workspace: from the prebuild, setup recorded as done, marker there.
    let ws_b = format!("ws-pb-{tag}");
    let t = Instant::now();
    let ready_b = provision::ensure(&lxd, &ws_b, &spec_b, &settings).await.unwrap_or_else(|f| panic!("ensure: {f}"));
    let second = t.elapsed();
    eprintln!("first workspace (create + 3 s setup): {}; second, from the prebuild: {}", millis(first), millis(second));
    assert!(second < first, "the prebuild is slower: {second:?} vs {first:?}");
    assert_eq!(ready_b.commit, Some(served.commit.clone()));
    assert_eq!(lxd.get_config(&ws_b, "user.nexus.prebuild-from").await.unwrap().as_deref(), Some(pb.as_str()));
    assert_eq!(lxd.get_config(&ws_b, "user.nexus.setup").await.unwrap().as_deref(), Some(step));
    let out = login_shell(
        &lxd,
        &ws_b,
        "cat ~/setup-marker; cat ~/.ssh/authorized_keys; git config --global user.name; cat ~/demo/README",
    )
    .await;
    assert_eq!(out.stdout, format!("built-by-setup\n{key_b}\nbob\n{}", served.readme), "{out:?}");
    assert_ne!(ready_b.host_key, ready_a.host_key, "a host key of its own");
    // The prebuild itself holds none of Alice's: started for a look, it has no key, identity or host key.
    let out = login_shell(&lxd, &ws_b, "test -e ~/.git-credentials && echo creds; true").await;
    assert_eq!(out.stdout, "");
    lxd.start(&pb).await.unwrap();
    let out = lxd
        .exec(
            &pb,
            &["sh".into(), "-c".into(), "ls /home/dev/.ssh/authorized_keys /home/dev/.gitconfig 2>&1; true".into()],
            None,
            &[],
            None,
        )
        .await
        .unwrap();
    assert!(!out.stdout.contains("alice") && out.stdout.matches("No such file").count() == 2, "{out:?}");
    lxd.delete(&pb).await.unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
}
