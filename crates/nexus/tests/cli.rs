//! The designer CLI's bad paths and its output, against a real `nexus server` process and the GitHub
//! test server (no LXD needed): each failure is one `error:` line plus a `hint:`, a non-zero exit,
//! and nothing half-made. Outputs are compared with snapshots in `tests/snapshots/`
//! (`NEXUS_UPDATE_SNAPSHOTS=1` rewrites them).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nexus_testkit::github::FakeGithub;
use nexus_testkit::process::ServerProcess;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nexus"))
}

struct Designer {
    home: tempfile::TempDir,
    server: String,
    github: String,
}

impl Designer {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("HOME", self.home.path())
            .env("NEXUS_BROWSER", "none")
            .env("NO_COLOR", "1")
            .env_remove("NEXUS_SERVER")
            .env_remove("NEXUS_TOKEN")
            .env_remove("NEXUS_CONFIG")
            .stdin(Stdio::null());
        c
    }

    /// Runs and returns (exit ok, stdout, stderr with the ephemeral URLs replaced by names).
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut c = self.cmd(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let clean = |s: &[u8]| {
            String::from_utf8_lossy(s)
                .replace(&self.server, "<server>")
                .replace(&self.github, "<github>")
                .replace(&self.home.path().display().to_string(), "<home>")
        };
        (out.status.success(), clean(&out.stdout), clean(&out.stderr))
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.home.path().join(".nexus/config.yaml")).unwrap_or_default()
    }
}

async fn setup() -> (FakeGithub, ServerProcess, Designer) {
    let github = FakeGithub::start().await;
    github.add_account("alice", 1001);
    github.add_account("acme", 2001);
    github.add_token("gho_alice", "alice", 1001);
    github.create_repo("acme", "site", false, &[("README.md", "hi\n")]);
    let server = ServerProcess::for_github(&bin(), &github, 2);
    let d = Designer { home: tempfile::tempdir().unwrap(), server: server.url.clone(), github: github.web_url.clone() };
    (github, server, d)
}

/// Compares with `tests/snapshots/<name>.txt`.
fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("NEXUS_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no snapshot {}; run with NEXUS_UPDATE_SNAPSHOTS=1 to record it", path.display()));
    assert_eq!(actual, expected, "output of {name} changed; if intended, re-record with NEXUS_UPDATE_SNAPSHOTS=1");
}

/// The last two lines are `error: ...` and `hint: ...`.
fn assert_error_and_hint(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let n = lines.len();
    assert!(n >= 2, "{stderr}");
    assert!(lines[n - 2].starts_with("error: "), "{stderr}");
    assert!(lines[n - 1].starts_with("hint: "), "{stderr}");
}

fn sign_in(d: &Designer) {
    let (ok, _, err) = d.run(&["auth", "github", "--server", &d.server, "--with-token"], Some("gho_alice\n"));
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_at_sign_in_saves_nothing() {
    let (github, _server, d) = setup().await;
    let (ok, _, err) = d.run(&["auth", "github", "--server", &d.server, "--with-token"], Some("gho_wrong\n"));
    assert!(!ok);
    assert_error_and_hint(&err);
    assert!(err.contains("nexus auth github"), "{err}");
    assert!(!d.config().contains("auth_token"), "nothing saved: {}", d.config());
    snapshot("auth_bad_token", &err);
    github.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_key_upload_gives_the_manual_way_and_does_not_register() {
    let (github, _server, d) = setup().await;
    sign_in(&d);
    github.refuse_key_uploads(true);
    let (ok, _, err) = d.run(&["ssh", "setup"], None);
    assert!(!ok);
    assert_error_and_hint(&err);
    assert!(err.contains("<github>/settings/ssh/new"), "{err}");
    assert!(!d.config().contains("api_token"), "not registered: {}", d.config());
    snapshot("ssh_setup_upload_refused", &err);
    // Once the key is on GitHub, the same command finishes the job.
    github.refuse_key_uploads(false);
    let (ok, _, err) = d.run(&["ssh", "setup"], None);
    assert!(ok, "{err}");
    assert!(d.config().contains("api_token"));
    github.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_repo_revoked_token_and_unreachable_server_make_nothing() {
    let (github, _server, d) = setup().await;
    sign_in(&d);
    let (ok, _, err) = d.run(&["ssh", "setup"], None);
    assert!(ok, "{err}");

    let (ok, _, err) = d.run(&["workspace", "create", "acme/no-such-repo"], None);
    assert!(!ok);
    assert_error_and_hint(&err);
    snapshot("create_unknown_repo", &err);

    let (ok, _, err) = d.run(&["workspace", "create", "not a repo"], None);
    assert!(!ok);
    assert_error_and_hint(&err);

    github.revoke("gho_alice");
    let (ok, _, err) = d.run(&["workspace", "create", "acme/site"], None);
    assert!(!ok);
    assert_error_and_hint(&err);
    assert!(err.contains("nexus auth github"), "{err}");
    snapshot("create_revoked_token", &err);
    assert!(!github.bare_repo_path("alice", "site").exists(), "no fork made");

    let (ok, out, err) = d.run(&["workspace", "list", "--json"], None);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "[]", "no workspace was made");

    let (ok, _, err) = d.run(&["workspace", "list", "--server", "127.0.0.1:1"], None);
    assert!(!ok);
    assert_error_and_hint(&err);
    assert!(err.contains("cannot reach the Nexus server at http://127.0.0.1:1"), "{err}");
    snapshot("server_unreachable", &err);
    github.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_status_and_logout() {
    let (github, _server, d) = setup().await;
    let (ok, out, _) = d.run(&["auth", "status", "--json"], None);
    assert!(ok);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["github_user"], serde_json::Value::Null, "{st}");
    sign_in(&d);
    let (ok, _, err) = d.run(&["ssh", "setup"], None);
    assert!(ok, "{err}");
    // Signing in again with a token that still works keeps it: no browser needed.
    let (ok, _, err) = d.run(&["auth", "github"], None);
    assert!(ok, "{err}");
    assert!(err.contains("already signed in"), "{err}");
    let (ok, out, _) = d.run(&["auth", "status", "--json"], None);
    assert!(ok);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["github_user"], "alice", "{st}");
    assert_eq!(st["registered"], true, "{st}");
    let (ok, _, _) = d.run(&["auth", "logout"], None);
    assert!(ok);
    assert!(!d.config().contains("auth_token") && !d.config().contains("api_token"), "{}", d.config());
    assert!(d.config().contains("username: alice"), "the rest of the config stays: {}", d.config());
    let (ok, _, err) = d.run(&["workspace", "list"], None);
    assert!(!ok);
    assert_error_and_hint(&err);
    assert!(err.contains("nexus auth github"), "{err}");
    github.assert_conformant();
}

#[test]
fn config_errors_point_at_the_line() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".nexus")).unwrap();
    std::fs::write(home.path().join(".nexus/config.yaml"), "server: s\ngithub:\n  usrname: alice\n").unwrap();
    let out = Command::new(bin())
        .args(["workspace", "list"])
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .env_remove("NEXUS_SERVER")
        .env_remove("NEXUS_TOKEN")
        .env_remove("NEXUS_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).replace(&home.path().display().to_string(), "<home>");
    assert_error_and_hint(&err);
    assert!(err.contains("config.yaml:3:"), "{err}");
    snapshot("config_unknown_key", &err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_a_git_url_needs_no_github_sign_in() {
    // Regression (bug e): `workspace create <git URL>` refused with "you are not signed in to GitHub yet",
    // so a project on a git host that isn't GitHub (or in `nexus up`'s staging) could not be added.
    let (_github, server, d) = setup().await;
    let git = nexus_testkit::git::GitServer::start("127.0.0.1");
    git.create_repo("team", "site", &[("README.md", "hi\n")]);
    let url = format!("{}/team/site.git", git.base_url);
    // A simulated node (the real agent code over the in-memory provider) runs the workspace.
    let (_stop_agent, agent_stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = nexus_agent::AgentConfig::new(server.url.clone(), server.join_token(), "node-a");
    tokio::spawn(nexus_agent::run(agent, std::sync::Arc::new(nexus_agent::fake::FakeProvider::new()), async move {
        let _ = agent_stopped.await;
    }));
    // Registered by the operator, as `nexus up` registers its demo user: never signed in to GitHub.
    let api = nexus_testkit::api::Api::new(&server.url);
    // The create needs the node connected (under a loaded CI machine it may take a moment).
    let operator = api.with_token(&server.operator_token());
    nexus_testkit::eventually(std::time::Duration::from_secs(30), "the node joined", || async {
        let (_, nodes) = operator.call("GET", "/api/v1/nodes", None).await;
        (nodes["nodes"][0]["status"] == "ok").then_some(())
    })
    .await;
    let key = nexus_testkit::ssh::TestKey::generate("bob");
    let bob = api.register_as_operator(&server.operator_token(), "bob", 3001, &key.public).await;
    std::fs::create_dir_all(d.home.path().join(".nexus")).unwrap();
    let config = format!(
        "server: {}\napi_token: {}\nssh:\n  key_path: {}\n",
        d.server,
        bob.token().unwrap(),
        key.path.display()
    );
    std::fs::write(d.home.path().join(".nexus/config.yaml"), config).unwrap();
    let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(d.home.path().join(".nexus/config.yaml"), private).unwrap();

    let (ok, out, err) = d.run(&["workspace", "create", &url, "--json"], None);
    assert!(ok, "{err}");
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((view["name"].as_str(), view["status"].as_str()), (Some("site"), Some("running")), "{view}");
    assert_eq!(view["repo"]["url"], url.as_str(), "cloned from the URL as given: {view}");
    assert!(!d.config().contains("auth_token"), "no GitHub sign-in was made: {}", d.config());
}

/// Issue 10 item 7: `nexus audit` shows the operator who registered whom, from where; a user's token
/// gets the operator-token hint instead of the log.
#[tokio::test]
async fn nexus_audit_shows_registrations_to_the_operator_only() {
    let (_github, server, d) = setup().await;
    let api = nexus_testkit::api::Api::new(&server.url);
    let alice = api.register_as_operator(&server.operator_token(), "alice", 1001, KEY_FOR_AUDIT).await;
    let token_file = server.data_dir.path().join("operator-token");
    let (ok, out, err) = d.run(
        &["audit", "--json", "--server", &server.url, "--operator-token-file", token_file.to_str().unwrap()],
        None,
    );
    assert!(ok, "{err}");
    let entries: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entry = &entries[0];
    assert_eq!(
        (entry["actor"].as_str(), entry["action"].as_str(), entry["target"].as_str()),
        (Some("operator"), Some("user.register"), Some("alice")),
        "{out}"
    );
    assert_eq!(entry["source"], "127.0.0.1", "{out}");

    let user_token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(user_token.path(), alice.token().unwrap()).unwrap();
    let (ok, out, err) =
        d.run(&["audit", "--server", &server.url, "--operator-token-file", user_token.path().to_str().unwrap()], None);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("operator token"), "{err}");
    assert_error_and_hint(&err);
}

const KEY_FOR_AUDIT: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl alice@laptop";
