//! The CLI's GitHub client against the GitHub stand-in over real HTTP: device sign-in, keys,
//! repositories, forks, git clone/push over smart HTTP, pull requests, retries and errors. Every
//! test ends by checking that all exchanges matched GitHub's OpenAPI description.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexus_cli::github::{AddKey, GithubClient, GithubEndpoints, GithubError, SleepFn};
use nexus_testkit::github::FakeGithub;
use nexus_types::diagnostics::Hint as _;

const CLIENT_ID: &str = "Iv1.nexus-test";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJq3ohDV6zDrZyuDaKVJ6wlu0SUbMfsTC3XX0ZsuVQjY alice@laptop";

fn client(github: &FakeGithub, token: Option<&str>) -> GithubClient {
    GithubClient::new(GithubEndpoints::for_host(&github.web_url), token.map(str::to_string))
        .with_retries(3, Duration::from_millis(10))
}

/// A sleep that records what was asked and returns almost at once.
fn recording_sleep() -> (SleepFn, Arc<Mutex<Vec<Duration>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let sleep: SleepFn = Arc::new(move |d| {
        l.lock().unwrap().push(d);
        Box::pin(tokio::time::sleep(Duration::from_millis(5)))
    });
    (sleep, log)
}

/// Runs git with an isolated configuration (no credential helpers, no prompts).
async fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Bob")
        .env("GIT_AUTHOR_EMAIL", "bob@example.invalid")
        .env("GIT_COMMITTER_NAME", "Bob")
        .env("GIT_COMMITTER_EMAIL", "bob@example.invalid")
        .output()
        .await
        .expect("git is installed")
}

async fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args).await;
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `http://x-access-token:TOKEN@host/owner/repo.git`, the form GitHub documents for tokens.
fn with_token(url: &str, token: &str) -> String {
    url.replacen("http://", &format!("http://x-access-token:{token}@"), 1)
}

#[tokio::test]
async fn device_flow_pending_then_approved() {
    let github = Arc::new(FakeGithub::start().await);
    let c = client(&github, None);
    let code = c.request_device_code(CLIENT_ID, "repo admin:public_key").await.unwrap();
    assert_eq!(code.verification_uri, format!("{}/login/device", github.web_url));
    assert_eq!(code.user_code.len(), 9, "{}", code.user_code);
    assert_eq!(&code.user_code[4..5], "-");
    assert_eq!(github.pending_user_codes(), vec![code.user_code.clone()]);

    // The user approves only after the client has been told to wait at least once.
    let g = github.clone();
    let user_code = code.user_code.clone();
    let approver = tokio::spawn(async move {
        nexus_testkit::eventually(Duration::from_secs(10), "a pending poll", || async {
            g.requests().iter().any(|r| r.target.starts_with("/login/oauth/access_token")).then_some(())
        })
        .await;
        g.approve_device(&user_code, "alice")
    });
    let (sleep, _) = recording_sleep();
    let token = c.with_sleep(sleep).poll_device_token(CLIENT_ID, &code).await.unwrap();
    assert_eq!(token, approver.await.unwrap());
    assert!(github.pending_user_codes().is_empty());

    let signed_in = client(&github, Some(&token));
    assert_eq!(signed_in.user().await.unwrap().login, "alice");
    let scopes = signed_in.token_scopes().await.unwrap().unwrap();
    assert_eq!(scopes, vec!["repo".to_string(), "admin:public_key".to_string()]);
    github.assert_conformant();
}

#[tokio::test]
async fn device_flow_denied_and_expired() {
    let github = FakeGithub::start().await;
    let c = client(&github, None);

    let code = c.request_device_code(CLIENT_ID, "repo").await.unwrap();
    github.deny_device(&code.user_code);
    let err = c.poll_device_token(CLIENT_ID, &code).await.unwrap_err();
    assert!(matches!(err, GithubError::AccessDenied), "{err:?}");
    assert!(err.hint().unwrap().contains("nexus auth github"), "{:?}", err.hint());

    let code = c.request_device_code(CLIENT_ID, "repo").await.unwrap();
    github.expire_device(&code.user_code);
    let err = c.poll_device_token(CLIENT_ID, &code).await.unwrap_err();
    assert!(matches!(err, GithubError::DeviceCodeExpired), "{err:?}");
    assert!(err.hint().unwrap().contains("nexus auth github"), "{:?}", err.hint());

    // A wrong client id is the OAuth app's problem, not the user's code.
    let code = c.request_device_code(CLIENT_ID, "repo").await.unwrap();
    let err = c.poll_device_token("another-client", &code).await.unwrap_err();
    assert!(matches!(&err, GithubError::DeviceFlow { code, .. } if code == "incorrect_client_credentials"), "{err:?}");
    github.assert_conformant();
}

#[tokio::test]
async fn device_flow_slow_down_adds_five_seconds() {
    let github = FakeGithub::start().await;
    let (sleep, slept) = recording_sleep();
    let c = client(&github, None).with_sleep(sleep);
    let code = c.request_device_code(CLIENT_ID, "repo").await.unwrap();
    github.slow_down_next(1);
    github.approve_device(&code.user_code, "alice");
    c.poll_device_token(CLIENT_ID, &code).await.unwrap();
    assert_eq!(*slept.lock().unwrap(), vec![Duration::ZERO, Duration::from_secs(5)]);
    github.assert_conformant();
}

#[tokio::test]
async fn device_flow_waits_the_interval_between_polls() {
    let github = FakeGithub::start().await;
    github.set_device_interval(1);
    let c = client(&github, None);
    let code = c.request_device_code(CLIENT_ID, "repo").await.unwrap();
    assert_eq!(code.interval, 1);
    let start = Instant::now();
    // First poll after 1 s: pending; the test approves; second poll after another 1 s: token.
    let polls = || github.requests().iter().filter(|r| r.target.starts_with("/login/oauth/access_token")).count();
    let poll = c.poll_device_token(CLIENT_ID, &code);
    tokio::pin!(poll);
    let token = loop {
        tokio::select! {
            t = &mut poll => break t.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                if polls() == 1 && !github.pending_user_codes().is_empty() {
                    github.approve_device(&code.user_code, "alice");
                }
            }
        }
    };
    assert!(token.starts_with("gho_"));
    assert!(start.elapsed() >= Duration::from_secs(2), "polled too fast: {:?}", start.elapsed());
    assert_eq!(polls(), 2, "the stand-in would have answered slow_down to a faster poll");
    github.assert_conformant();
}

#[tokio::test]
async fn user_and_revoked_token() {
    let github = FakeGithub::start().await;
    github.add_token("tok-alice", "alice", 42);
    let c = client(&github, Some("tok-alice"));
    let user = c.user().await.unwrap();
    assert_eq!((user.login.as_str(), user.id), ("alice", 42));

    github.revoke("tok-alice");
    let err = c.user().await.unwrap_err();
    assert!(matches!(&err, GithubError::Unauthorized { message } if message == "Bad credentials"), "{err:?}");
    assert_eq!(err.hint().unwrap(), "your GitHub sign-in expired or was revoked: run `nexus auth github`");

    let err = client(&github, None).user().await.unwrap_err();
    assert!(matches!(err, GithubError::NotSignedIn), "{err:?}");
    github.assert_conformant();
}

#[tokio::test]
async fn keys_add_list_and_duplicate() {
    let github = FakeGithub::start().await;
    github.add_token("tok-alice", "alice", 1);
    github.add_token("tok-bob", "bob", 2);
    let c = client(&github, Some("tok-alice"));
    assert!(c.list_keys().await.unwrap().is_empty());

    let AddKey::Added(key) = c.add_key("nexus laptop", KEY).await.unwrap() else { panic!("not added") };
    assert_eq!(key.title, "nexus laptop");
    assert_eq!(key.key, KEY.rsplit_once(' ').unwrap().0, "GitHub stores the key without its comment");
    assert_eq!(c.list_keys().await.unwrap(), vec![key.clone()]);
    assert_eq!(github.keys("alice").len(), 1);

    // Same key again, on this account or another: GitHub's "key is already in use".
    assert_eq!(c.add_key("again", KEY).await.unwrap(), AddKey::AlreadyInUse);
    assert_eq!(client(&github, Some("tok-bob")).add_key("bob", KEY).await.unwrap(), AddKey::AlreadyInUse);
    assert_eq!(github.keys("alice").len(), 1);
    assert!(github.keys("bob").is_empty());

    let err = c.add_key("junk", "not a key").await.unwrap_err();
    assert!(matches!(err, GithubError::Rejected { .. }), "{err:?}");
    assert!(err.hint().unwrap().contains("OpenSSH public key"), "{:?}", err.hint());
    github.assert_conformant();
}

#[tokio::test]
async fn key_upload_without_scope_says_to_sign_in_again() {
    let github = FakeGithub::start().await;
    github.add_token("tok-alice", "alice", 1);
    github.refuse_key_uploads(true);
    let err = client(&github, Some("tok-alice")).add_key("laptop", KEY).await.unwrap_err();
    assert!(matches!(&err, GithubError::MissingScope { scope, .. } if scope == "write:public_key"), "{err:?}");
    assert_eq!(err.hint().unwrap(), "run `nexus auth github` again to grant the `write:public_key` scope");

    // The real cause: a token signed in without the scope.
    github.refuse_key_uploads(false);
    github.add_token_with_scopes("tok-narrow", "carol", 3, &["repo"]);
    let narrow = client(&github, Some("tok-narrow"));
    assert!(matches!(narrow.add_key("laptop", KEY).await.unwrap_err(), GithubError::MissingScope { .. }));
    assert!(matches!(narrow.list_keys().await.unwrap_err(), GithubError::MissingScope { .. }));
    assert_eq!(narrow.token_scopes().await.unwrap(), Some(vec!["repo".to_string()]));
    github.assert_conformant();
}

#[tokio::test]
async fn repositories_public_private_and_hidden() {
    let github = FakeGithub::start().await;
    github.add_token("tok-alice", "alice", 1);
    github.add_token("tok-bob", "bob", 2);
    github.add_token("tok-carol", "carol", 3);
    github.create_repo("alice", "open", false, &[("README.md", "hi\n")]);
    github.create_repo("alice", "secret", true, &[("README.md", "psst\n")]);
    github.add_collaborator("alice", "secret", "carol");

    let alice = client(&github, Some("tok-alice"));
    let r = alice.repo("alice", "secret").await.unwrap();
    assert_eq!(r.full_name, "alice/secret");
    assert_eq!(r.owner_login, "alice");
    assert!(r.private && r.can_push && !r.fork);
    assert_eq!(r.clone_url, format!("{}/alice/secret.git", github.web_url));
    assert_eq!(r.html_url, format!("{}/alice/secret", github.web_url));
    assert_eq!(r.default_branch, "main");
    assert_eq!(r.parent_full_name, None);

    let bob = client(&github, Some("tok-bob"));
    let open = bob.repo("alice", "open").await.unwrap();
    assert!(!open.private && !open.can_push);
    let err = bob.repo("alice", "secret").await.unwrap_err();
    assert!(matches!(&err, GithubError::NotFound { what } if what == "repository alice/secret"), "{err:?}");
    assert!(err.hint().unwrap().starts_with("check the spelling of owner/repo"), "{:?}", err.hint());
    assert!(matches!(bob.repo("alice", "nope").await.unwrap_err(), GithubError::NotFound { .. }));

    assert!(client(&github, Some("tok-carol")).repo("alice", "secret").await.unwrap().can_push);
    let anonymous = client(&github, None);
    assert!(!anonymous.repo("alice", "open").await.unwrap().can_push);
    assert!(matches!(anonymous.repo("alice", "secret").await.unwrap_err(), GithubError::NotFound { .. }));
    github.assert_conformant();
}

#[tokio::test]
async fn fork_appears_after_a_delay() {
    let github = FakeGithub::start().await;
    github.add_token("tok-bob", "bob", 2);
    github.create_repo("acme", "hello", false, &[("README.md", "hello\n")]);
    github.set_fork_delay(3);
    let bob = client(&github, Some("tok-bob"));

    let fork = bob.fork("acme", "hello").await.unwrap();
    assert_eq!(fork.full_name, "bob/hello");
    assert!(fork.fork && fork.can_push);
    assert_eq!(fork.parent_full_name.as_deref(), Some("acme/hello"));
    assert!(matches!(bob.repo("bob", "hello").await.unwrap_err(), GithubError::NotFound { .. }));

    let ready = bob.wait_for_repo("bob", "hello", Duration::from_secs(10)).await.unwrap();
    assert_eq!(ready, fork);
    // Forking again returns the same fork.
    assert_eq!(bob.fork("acme", "hello").await.unwrap().full_name, "bob/hello");

    let err = bob.wait_for_repo("bob", "never", Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, GithubError::Timeout { .. }), "{err:?}");
    github.assert_conformant();
}

#[tokio::test]
async fn clone_push_and_open_a_pull_request_from_a_fork() {
    let github = FakeGithub::start().await;
    github.add_token("tok-bob", "bob", 2);
    github.add_token("tok-carol", "carol", 3);
    let base_commit = github.create_repo("acme", "hello", false, &[("README.md", "hello\n")]);
    let bob = client(&github, Some("tok-bob"));
    bob.fork("acme", "hello").await.unwrap();
    let fork = bob.wait_for_repo("bob", "hello", Duration::from_secs(10)).await.unwrap();

    // Anonymous clone of a public fork works; the clone is the upstream's history.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    git_ok(dir, &["clone", "-q", &fork.clone_url, "anon"]).await;
    assert_eq!(git_ok(&dir.join("anon"), &["rev-parse", "HEAD"]).await, base_commit);

    // Anonymous push is refused (GitHub asks for credentials; git may not prompt here).
    let anon = dir.join("anon");
    git_ok(&anon, &["checkout", "-q", "-b", "feature"]).await;
    std::fs::write(anon.join("feature.txt"), "new\n").unwrap();
    git_ok(&anon, &["add", "-A"]).await;
    git_ok(&anon, &["commit", "-q", "-m", "feature"]).await;
    let out = git(&anon, &["push", "-q", "origin", "feature"]).await;
    assert!(!out.status.success(), "anonymous push must fail");

    // With bob's token the push lands in the fork's bare repository.
    git_ok(&anon, &["remote", "set-url", "origin", &with_token(&fork.clone_url, "tok-bob")]).await;
    git_ok(&anon, &["push", "-q", "origin", "feature"]).await;
    let head = git_ok(&anon, &["rev-parse", "HEAD"]).await;
    let bare = github.bare_repo_path("bob", "hello");
    assert_eq!(git_ok(&bare, &["rev-parse", "refs/heads/feature"]).await, head);

    // carol may not push to bob's fork: 403 from the git endpoint.
    git_ok(&anon, &["remote", "set-url", "origin", &with_token(&fork.clone_url, "tok-carol")]).await;
    let out = git(&anon, &["push", "-q", "origin", "feature:carol"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{}", String::from_utf8_lossy(&out.stderr));

    let pull = bob.create_pull("acme", "hello", "Add feature", "bob:feature", "main", "Please pull").await.unwrap();
    assert_eq!(pull.number, 1);
    assert_eq!(pull.html_url, format!("{}/acme/hello/pull/1", github.web_url));
    assert_eq!(bob.find_open_pull("acme", "hello", "bob:feature").await.unwrap(), Some(pull.clone()));
    assert_eq!(bob.find_open_pull("acme", "hello", "bob:other").await.unwrap(), None);
    // Opening it again returns the open one.
    assert_eq!(bob.create_pull("acme", "hello", "Add feature", "bob:feature", "main", "").await.unwrap(), pull);
    let pulls = github.pulls("acme", "hello");
    assert_eq!(pulls.len(), 1);
    assert_eq!((pulls[0].head_sha.as_str(), pulls[0].author.as_str()), (head.as_str(), "bob"));

    let err = bob.create_pull("acme", "hello", "Nothing", "bob:missing", "main", "").await.unwrap_err();
    assert!(matches!(err, GithubError::Rejected { .. }), "{err:?}");
    assert!(err.hint().unwrap().contains("push the branch"), "{:?}", err.hint());
    github.assert_conformant();
}

#[tokio::test]
async fn private_repository_needs_a_token_to_clone() {
    let github = FakeGithub::start().await;
    github.add_token("tok-alice", "alice", 1);
    github.add_token("tok-bob", "bob", 2);
    let commit = github.create_repo("alice", "secret", true, &[("a.txt", "a\n")]);
    let url = github.clone_url("alice", "secret");
    let work = tempfile::tempdir().unwrap();

    let out = git(work.path(), &["clone", "-q", &url, "anon"]).await;
    assert!(!out.status.success(), "anonymous clone of a private repository must fail");
    let out = git(work.path(), &["clone", "-q", &with_token(&url, "tok-bob"), "bob"]).await;
    assert!(!out.status.success(), "bob cannot see alice's private repository");
    git_ok(work.path(), &["clone", "-q", &with_token(&url, "tok-alice"), "alice"]).await;
    assert_eq!(git_ok(&work.path().join("alice"), &["rev-parse", "HEAD"]).await, commit);
    assert!(github.requests().iter().any(|r| r.status == 401 && r.target.contains("/alice/secret.git/")));
    github.assert_conformant();
}

#[tokio::test]
async fn transient_server_errors_are_retried() {
    let github = FakeGithub::start().await;
    github.add_token("tok-alice", "alice", 1);
    let c = client(&github, Some("tok-alice"));

    github.fail_next("GET", "/api/v3/user", 2, 502);
    assert_eq!(c.user().await.unwrap().login, "alice");
    let statuses: Vec<u16> = github.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![502, 502, 200]);

    github.fail_next("GET", "/api/v3/user", 10, 503);
    let err = c.user().await.unwrap_err();
    assert!(matches!(err, GithubError::ServerError { status: 503, attempts: 4, .. }), "{err:?}");
    assert!(err.hint().unwrap().contains("try again"), "{:?}", err.hint());
    github.assert_conformant();
}

#[tokio::test]
async fn unreachable_github_says_what_to_check() {
    let port = nexus_testkit::free_port();
    let c = GithubClient::new(GithubEndpoints::for_host(&format!("http://127.0.0.1:{port}")), Some("t".into()))
        .with_retries(1, Duration::from_millis(1));
    let err = c.user().await.unwrap_err();
    assert!(matches!(err, GithubError::Unreachable { .. }), "{err:?}");
    assert!(err.hint().unwrap().contains("github.host"), "{:?}", err.hint());
}
