//! Attack tests for accounts and secrets at rest (issue 10, items 2 and 5). Each test performs the
//! attack (or pushes the limit) against a real server: in process over real HTTP with the real
//! GitHub client talking to the GitHub stand-in (checked against GitHub's OpenAPI description) and
//! simulated nodes, or as a `nexus server` process where file modes and logs are the point.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nexus_agent::fake::FakeProvider;
use nexus_server::github::GithubApi;
use nexus_server::repo_probe::GitLsRemote;
use nexus_server::{App, ServerConfig};
use nexus_testkit::api::Api;
use nexus_testkit::git::GitServer;
use nexus_testkit::github::FakeGithub;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl alice@laptop";
const KEY_A2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk2PeAvPKoFRDJaT5OG/+KTDDk4w6ncI3QRr6AzRdtK alice@desktop";
const KEY_M: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILkyiBTpa4pk8TTXfcuRbznJ8N9+nfdr5slGEePzD1Pq mallory@evil";
const T: Duration = Duration::from_secs(20);

/// The key as the server stores it: type and base64, no comment.
fn bare(key: &str) -> &str {
    key.rsplit_once(' ').unwrap().0
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nexus"))
}

struct Cluster {
    api: Api,
    operator: String,
    github: FakeGithub,
    data: tempfile::TempDir,
    _git: GitServer,
    _stop: oneshot::Sender<()>,
    _agent: oneshot::Sender<()>,
    fake: FakeProvider,
}

/// A server in process with one simulated node; `configure` adjusts the config first.
async fn cluster(configure: impl FnOnce(&mut ServerConfig)) -> Cluster {
    let git = GitServer::start("127.0.0.1");
    git.create_repo("acme", "hello", &[("README.md", "hello\n")]);
    let github = FakeGithub::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(data.path().join("data"));
    config.github_api_url = github.api_url.clone();
    config.git_base_url = git.base_url.clone();
    config.ssh_ports = nexus_testkit::free_port_range(4);
    config.ssh_bind_ip = "127.0.0.1".parse().unwrap();
    config.op_timeout = Duration::from_secs(10);
    configure(&mut config);
    let data_dir = config.data_dir.clone();
    let app = App::new(
        config,
        Box::new(GithubApi::new(&github.api_url)),
        Box::new(GitLsRemote { timeout: Duration::from_secs(10) }),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(nexus_server::serve_app(app, listener, async move {
        let _ = stopped.await;
    }));
    let operator = std::fs::read_to_string(data_dir.join("operator-token")).unwrap().trim().to_string();
    let join = std::fs::read_to_string(data_dir.join("join-token")).unwrap().trim().to_string();
    let (fake, agent) = start_agent(&url, &join);
    let api = Api::new(&url);
    wait_node(&api.with_token(&operator)).await;
    Cluster { api, operator, github, data, _git: git, _stop: stop, _agent: agent, fake }
}

/// A simulated node (the real agent code over the in-memory provider) joined to `url`.
fn start_agent(url: &str, join: &str) -> (FakeProvider, oneshot::Sender<()>) {
    let fake = FakeProvider::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut config = nexus_agent::AgentConfig::new(url.to_string(), join, "n1");
    config.lxd_project = "sim-n1".into();
    config.heartbeat = Duration::from_millis(200);
    tokio::spawn(nexus_agent::run(config, Arc::new(fake.clone()), async move {
        let _ = stopped.await;
    }));
    (fake, stop)
}

async fn wait_node(operator: &Api) {
    nexus_testkit::eventually(T, "node joined", || async {
        let (_, b) = operator.call("GET", "/api/v1/nodes", None).await;
        (b["nodes"].as_array().map(|x| x.iter().filter(|x| x["status"] == "ok").count()) == Some(1)).then_some(())
    })
    .await;
}

/// The GitHub tokens the node handed the workspace's git setup (`NEXUS_GIT_TOKEN`), in order.
fn git_tokens_given(fake: &FakeProvider, id: &str) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter_map(|call| match call {
            nexus_agent::fake::Call::Exec { name, env, .. } if name == id => {
                env.into_iter().find(|(k, _)| k == "NEXUS_GIT_TOKEN").map(|(_, v)| v)
            }
            _ => None,
        })
        .collect()
}

fn register_body(login: &str, id: i64, key: &str, github_token: &str) -> Value {
    json!({"github_username": login, "github_id": id, "ssh_pubkey": key, "github_token": github_token})
}

impl Cluster {
    fn db_path(&self) -> PathBuf {
        self.data.path().join("data/nexus.sqlite3")
    }

    /// Registers with a GitHub token (no API token); returns (status, body).
    async fn register(&self, login: &str, id: i64, key: &str, github_token: &str) -> (u16, Value) {
        self.api.call("POST", "/api/v1/users/register", Some(register_body(login, id, key, github_token))).await
    }

    /// Registers and returns a client holding the new API token; panics unless 201.
    async fn signed_in(&self, login: &str, id: i64, key: &str, github_token: &str) -> Api {
        let (code, body) = self.register(login, id, key, github_token).await;
        assert_eq!(code, 201, "register {login}: {body}");
        self.api.with_token(body["api_token"].as_str().unwrap())
    }

    /// A running workspace of `user`'s; its id.
    async fn running_workspace(&self, user: &Api, git_token: Option<&str>) -> String {
        let mut req = json!({"workspace_name": "proj", "repo": "acme/hello"});
        if let Some(t) = git_token {
            req["git_token"] = json!(t);
        }
        let (code, ws) = user.call("POST", "/api/v1/workspaces/create", Some(req)).await;
        assert_eq!(code, 201, "{ws}");
        let id = ws["workspace_id"].as_str().unwrap().to_string();
        user.wait_status(&id, &["running"], T).await;
        id
    }

    /// Stops and starts the workspace, so the node writes `authorized_keys` again from the server's spec.
    async fn restart(&self, user: &Api, id: &str) {
        let (code, body) = user.call("POST", &format!("/api/v1/workspaces/{id}/stop"), None).await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = user.call("POST", &format!("/api/v1/workspaces/{id}/start"), None).await;
        assert!(code == 200 || code == 202, "{code} {body}");
        user.wait_status(id, &["running"], T).await;
    }

    async fn audit_actions(&self) -> Vec<String> {
        let (code, body) = self.api.with_token(&self.operator).call("GET", "/api/v1/audit", None).await;
        assert_eq!(code, 200, "{body}");
        let entries = body["entries"].as_array().cloned().unwrap_or_default();
        entries.iter().filter_map(|e| e["action"].as_str().map(str::to_string)).collect()
    }
}

/// The run: Mallory, holding another GitHub token for the login `alice`, registers again
/// with her own key. Before: 201 and, after a stop/start, Alice's workspace (which holds Alice's
/// GitHub token) let in only Mallory's key.
#[tokio::test]
async fn mallory_with_another_token_for_alice_cannot_put_her_key_in_alices_workspace() {
    let c = cluster(|_| {}).await;
    c.github.add_token("gho_alice", "alice", 11);
    c.github.add_token("gho_mallory_for_alice", "alice", 11);
    let alice = c.signed_in("alice", 11, KEY_A, "gho_alice").await;
    let id = c.running_workspace(&alice, Some("ghp_alice_full_scope")).await;

    let (code, body) = c.register("alice", 11, KEY_M, "gho_mallory_for_alice").await;
    assert_eq!(code, 409, "re-registering a login without its API token must be refused: {body}");
    assert_eq!(body["error"]["code"], "key_change_needs_token");
    assert!(body["error"]["hint"].as_str().unwrap().contains("nexus ssh setup"), "{body}");
    // Also with a made-up or another user's API token.
    c.github.add_token("gho_bob", "bob", 22);
    let bob = c.signed_in("bob", 22, KEY_M, "gho_bob").await;
    for bearer in ["nxs_forged", bob.token().unwrap()] {
        let (code, body) = c
            .api
            .with_token(bearer)
            .call("POST", "/api/v1/users/register", Some(register_body("alice", 11, KEY_M, "gho_mallory_for_alice")))
            .await;
        assert_eq!(code, 409, "{body}");
    }

    c.restart(&alice, &id).await;
    let keys = c.fake.authorized_keys(&id).unwrap();
    assert_eq!(keys.trim(), bare(KEY_A), "only Alice's key, never Mallory's");
    // Alice's token still works: nothing about her account changed.
    let (code, me) = alice.call("GET", "/api/v1/users/me", None).await;
    assert_eq!((code, me["github_username"].as_str()), (200, Some("alice")));
}

/// Alice's second machine: with her API token the new key is added, and both machines get in.
#[tokio::test]
async fn a_key_change_with_the_users_api_token_adds_a_key() {
    let c = cluster(|_| {}).await;
    c.github.add_token("gho_alice", "alice", 11);
    let alice = c.signed_in("alice", 11, KEY_A, "gho_alice").await;
    let id = c.running_workspace(&alice, None).await;
    let (code, body) =
        alice.call("POST", "/api/v1/users/register", Some(register_body("alice", 11, KEY_A2, "gho_alice"))).await;
    assert_eq!(code, 201, "{body}");
    let alice2 = c.api.with_token(body["api_token"].as_str().unwrap());
    c.restart(&alice2, &id).await;
    let keys = c.fake.authorized_keys(&id).unwrap();
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(lines.len(), 2, "{keys}");
    assert!(lines.contains(&bare(KEY_A)) && lines.contains(&bare(KEY_A2)), "{keys}");
    // The first machine's token keeps working.
    assert_eq!(alice.call("GET", "/api/v1/users/me", None).await.0, 200);
    let actions = c.audit_actions().await;
    assert!(
        actions.contains(&"user.register".to_string()) && actions.contains(&"user.key_add".to_string()),
        "{actions:?}"
    );
}

/// With `--allow-github-org acme --allow-github-user dave`, only active members of acme and dave
/// register; an outsider, and someone only invited, get 403 with a hint.
#[tokio::test]
async fn org_policy_refuses_an_outsider() {
    let c = cluster(|cfg| {
        cfg.allow_github_orgs = vec!["acme".into()];
        cfg.allow_github_users = vec!["dave".into()];
    })
    .await;
    c.github.add_org_member("acme", "alice", "active");
    c.github.add_org_member("acme", "carol", "pending");
    for (login, id) in [("alice", 11), ("bob", 22), ("carol", 33), ("dave", 44)] {
        c.github.add_token(&format!("gho_{login}"), login, id);
    }
    c.github.add_token_with_scopes("gho_erin_no_read_org", "erin", 55, &["repo", "admin:public_key"]);
    c.github.add_org_member("acme", "erin", "active");

    assert_eq!(c.register("alice", 11, KEY_A, "gho_alice").await.0, 201, "member of acme");
    assert_eq!(c.register("dave", 44, KEY_A, "gho_dave").await.0, 201, "allowed by login");
    for (login, id, token) in [("bob", 22, "gho_bob"), ("carol", 33, "gho_carol"), ("erin", 55, "gho_erin_no_read_org")]
    {
        let (code, body) = c.register(login, id, KEY_M, token).await;
        assert_eq!(code, 403, "{login}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        assert!(body["error"]["hint"].as_str().unwrap().contains("read:org"), "{body}");
    }
    c.github.assert_conformant();
}

/// With the OAuth app's secret, a token GitHub says was issued to another app (or not through an
/// app at all) proves nothing; one issued to this app does.
#[tokio::test]
async fn app_token_check_refuses_a_token_from_another_app() {
    let c = cluster(|cfg| {
        cfg.github_client_id = Some("Iv1.nexus-prod".into());
        cfg.github_client_secret = Some(nexus_server::config::ClientSecret("app-secret".into()));
    })
    .await;
    c.github.add_oauth_app("Iv1.nexus-prod", "app-secret");
    c.github.add_token_of_app("gho_via_nexus", "alice", 11, "Iv1.nexus-prod");
    c.github.add_token_of_app("gho_via_other_app", "bob", 22, "Iv1.some-other-app");

    let (code, body) = c.register("bob", 22, KEY_M, "gho_via_other_app").await;
    assert_eq!(code, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not issued to this server's OAuth app"), "{body}");
    assert!(body["error"]["hint"].as_str().unwrap().contains("nexus auth github"), "{body}");
    assert_eq!(c.register("alice", 11, KEY_A, "gho_via_nexus").await.0, 201);
    // A wrong secret is the operator's problem and says so (not "your token is not ours").
    c.github.add_oauth_app("Iv1.nexus-prod", "rotated-secret");
    c.github.add_token_of_app("gho_carol", "carol", 33, "Iv1.nexus-prod");
    let (code, body) = c.register("carol", 33, KEY_A2, "gho_carol").await;
    assert_eq!((code, body["error"]["code"].as_str()), (503, Some("github_app_credentials")), "{body}");
    assert!(
        c.github.requests().iter().any(|r| r.target.contains("/applications/Iv1.nexus-prod/token")),
        "the check asks GitHub"
    );
    c.github.assert_conformant();
}

/// An expired API token is refused with a hint to run `nexus ssh setup`, which renews it on the
/// machine that holds it; a revoked one (`nexus auth logout`) is refused for good.
#[tokio::test]
async fn expired_and_revoked_api_tokens_are_refused() {
    let c = cluster(|cfg| cfg.api_token_ttl = Duration::from_secs(1)).await;
    c.github.add_token("gho_alice", "alice", 11);
    let alice = c.signed_in("alice", 11, KEY_A, "gho_alice").await;
    assert_eq!(alice.call("GET", "/api/v1/users/me", None).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (code, body) = alice.call("GET", "/api/v1/users/me", None).await;
    assert_eq!(code, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    assert!(body["error"]["hint"].as_str().unwrap().contains("nexus ssh setup"), "{body}");

    // `nexus ssh setup` on the same machine sends the expired token with a fresh GitHub proof.
    let (code, body) =
        alice.call("POST", "/api/v1/users/register", Some(register_body("alice", 11, KEY_A, "gho_alice"))).await;
    assert_eq!(code, 201, "{body}");
    let renewed = c.api.with_token(body["api_token"].as_str().unwrap());
    assert_eq!(renewed.call("GET", "/api/v1/users/me", None).await.0, 200);

    let (code, body) = renewed.call("POST", "/api/v1/auth/logout", None).await;
    assert_eq!((code, body["revoked"].as_bool()), (200, Some(true)), "{body}");
    let (code, body) = renewed.call("GET", "/api/v1/users/me", None).await;
    assert_eq!(code, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");
    // A revoked token does not vouch for a key change either.
    let (code, body) =
        renewed.call("POST", "/api/v1/users/register", Some(register_body("alice", 11, KEY_M, "gho_alice"))).await;
    assert_eq!(code, 409, "{body}");
    assert!(c.audit_actions().await.contains(&"user.logout".to_string()));
    // The operator token is not revoked this way.
    let (code, _) = c.api.with_token(&c.operator).call("POST", "/api/v1/auth/logout", None).await;
    assert_eq!(code, 400);
}

/// GitHub logins change hands after renames: a different GitHub id presenting a registered login
/// gets 409 with a hint. Before: a 500 from the UNIQUE constraint.
#[tokio::test]
async fn login_held_by_another_github_id_is_a_409_with_a_hint() {
    let c = cluster(|_| {}).await;
    c.github.add_token("gho_alice", "alice", 11);
    assert_eq!(c.register("alice", 11, KEY_A, "gho_alice").await.0, 201);
    // The old alice renamed herself; a new GitHub account (id 99) took the login.
    c.github.add_token("gho_new_alice", "alice", 99);
    let (code, body) = c.register("alice", 99, KEY_M, "gho_new_alice").await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["code"], "login_taken");
    assert!(body["error"]["hint"].as_str().unwrap().contains("operator"), "{body}");
}

/// The run: the GitHub token a workspace keeps was in the database file in clear. Reading
/// the file (and its WAL) directly must not find it.
#[tokio::test]
async fn github_token_is_not_in_the_database_file_in_clear() {
    let c = cluster(|_| {}).await;
    c.github.add_token("gho_alice_signin", "alice", 11);
    let alice = c.signed_in("alice", 11, KEY_A, "gho_alice_signin").await;
    let secret = "ghp_WorkspaceTokenThatMustNotBeOnDisk0123";
    let id = c.running_workspace(&alice, Some(secret)).await;
    // The node still gets it (a private clone needs it), after a restart too.
    c.restart(&alice, &id).await;
    assert_eq!(git_tokens_given(&c.fake, &id).last().map(String::as_str), Some(secret));

    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        bytes.extend(std::fs::read(format!("{}{suffix}", c.db_path().display())).unwrap_or_default());
    }
    assert!(!bytes.is_empty());
    let hay = String::from_utf8_lossy(&bytes);
    assert!(!hay.contains(secret), "the GitHub token is in the database file in clear");
    assert!(!hay.contains("WorkspaceTokenThatMustNotBeOnDisk"), "a part of the token is in the database file");
    // Nor is the key that opens it.
    let key = std::fs::read_to_string(c.data.path().join("data/secrets.key")).unwrap();
    assert!(!hay.contains(key.trim()));
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// The run: with umask 022 the data dir was 0755 and the database and WAL 0644, readable by
/// any local user. Whatever the umask, they are the server user's only.
#[tokio::test]
async fn data_dir_and_database_files_are_private_under_umask_022() {
    let github = FakeGithub::start().await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let port = nexus_testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(root.path().join("server.log")).unwrap();
    let (lo, hi) = nexus_testkit::free_port_range(2);
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(bin())
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&data)
        .args(["--github-api-url", &github.api_url, "--ssh-port-range", &format!("{lo}-{hi}")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    nexus_testkit::process::wait_healthy(&url, T);
    // A write, so the WAL and its index exist.
    let operator = std::fs::read_to_string(data.join("operator-token")).unwrap().trim().to_string();
    Api::new(&url).register_as_operator(&operator, "alice", 11, KEY_A).await;

    let db = data.join("nexus.sqlite3");
    let modes = [
        (data.clone(), 0o700),
        (db.clone(), 0o600),
        (PathBuf::from(format!("{}-wal", db.display())), 0o600),
        (PathBuf::from(format!("{}-shm", db.display())), 0o600),
        (data.join("secrets.key"), 0o600),
        (data.join("operator-token"), 0o600),
    ];
    let found: Vec<String> = modes.iter().map(|(p, _)| format!("{} {:o}", p.display(), mode(p))).collect();
    let _ = child.kill();
    let _ = child.wait();
    for (path, want) in &modes {
        assert_eq!(mode(path), *want, "{} (all: {found:?})", path.display());
    }
    // Started without a policy or the app's secret, the server says what that means.
    let log = std::fs::read_to_string(root.path().join("server.log")).unwrap();
    assert!(log.contains("any GitHub user may register"), "{log}");
    assert!(log.contains("not checked against this server's OAuth app"), "{log}");
}

/// No token reaches the server's log, at debug level, through a whole journey: registration (GitHub
/// token, API token), a create carrying a GitHub token, stop, start, logout.
#[tokio::test]
async fn tokens_never_reach_the_server_log() {
    let git = GitServer::start("127.0.0.1");
    git.create_repo("acme", "hello", &[("README.md", "hello\n")]);
    let github = FakeGithub::start().await;
    let mut opts = nexus_testkit::process::ServerOpts {
        github_api_url: github.api_url.clone(),
        git_base_url: git.base_url.clone(),
        ssh_ports: nexus_testkit::free_port_range(2),
        node_timeout_secs: 30,
    };
    opts.node_timeout_secs = 30;
    let server = nexus_testkit::process::ServerProcess::start(&bin(), opts);
    let (fake, _agent) = start_agent(&server.url, &server.join_token());
    let api = Api::new(&server.url);
    wait_node(&api.with_token(&server.operator_token())).await;

    let gh_signin = "gho_SignInTokenForTheLogTest0123456789";
    let gh_workspace = "ghp_WorkspaceTokenForTheLogTest987654";
    github.add_token(gh_signin, "alice", 11);
    let (code, body) =
        api.call("POST", "/api/v1/users/register", Some(register_body("alice", 11, KEY_A, gh_signin))).await;
    assert_eq!(code, 201, "{body}");
    let api_token = body["api_token"].as_str().unwrap().to_string();
    let alice = api.with_token(&api_token);
    let (code, ws) = alice
        .call(
            "POST",
            "/api/v1/workspaces/create",
            Some(json!({"workspace_name": "proj", "repo": "acme/hello", "git_token": gh_workspace})),
        )
        .await;
    assert_eq!(code, 201, "{ws}");
    let id = ws["workspace_id"].as_str().unwrap().to_string();
    alice.wait_status(&id, &["running"], T).await;
    assert_eq!(git_tokens_given(&fake, &id).last().map(String::as_str), Some(gh_workspace));
    assert_eq!(alice.call("POST", &format!("/api/v1/workspaces/{id}/stop"), None).await.0, 200);
    alice.call("POST", &format!("/api/v1/workspaces/{id}/start"), None).await;
    alice.wait_status(&id, &["running"], T).await;
    // A failed call with a token, too.
    api.with_token("nxs_forged_token_for_the_log_test").call("GET", "/api/v1/users/me", None).await;
    assert_eq!(alice.call("POST", "/api/v1/auth/logout", None).await.0, 200);

    let log = server.log();
    assert!(log.contains("DEBUG") || log.contains("INFO"), "the log is written: {log}");
    for (what, secret) in [
        ("GitHub sign-in token", gh_signin),
        ("workspace GitHub token", gh_workspace),
        ("API token", api_token.as_str()),
        ("forged token", "nxs_forged_token_for_the_log_test"),
        ("operator token", server.operator_token().as_str()),
    ] {
        assert!(!log.contains(secret), "the {what} is in the server log");
    }
}

/// `nexus auth logout` revokes the token on the server, not only in the config file: a copy of the
/// config taken before (a backup, a stolen laptop image) no longer works.
#[tokio::test]
async fn nexus_auth_logout_revokes_the_token_on_the_server() {
    let c = cluster(|_| {}).await;
    c.github.add_token("gho_alice", "alice", 11);
    let alice = c.signed_in("alice", 11, KEY_A, "gho_alice").await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".nexus")).unwrap();
    let config = format!("server: {}\napi_token: {}\n", c.api.base, alice.token().unwrap());
    std::fs::write(home.path().join(".nexus/config.yaml"), config).unwrap();
    let home_path = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin())
            .args(["auth", "logout"])
            .env("HOME", &home_path)
            .env("NO_COLOR", "1")
            .env_remove("NEXUS_SERVER")
            .env_remove("NEXUS_TOKEN")
            .env_remove("NEXUS_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("revoked"), "{stderr}");
    let (code, body) = alice.call("GET", "/api/v1/users/me", None).await;
    assert_eq!(code, 401, "the token copied before logout must be dead: {body}");
    let saved = std::fs::read_to_string(home.path().join(".nexus/config.yaml")).unwrap();
    assert!(!saved.contains(alice.token().unwrap()), "{saved}");
}

/// The CLI's side of key changes: `nexus ssh setup` on a second machine is refused until it is given
/// an API token of a signed-in machine; re-running it on the first machine just renews.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_machine_needs_an_api_token_from_the_first() {
    let github = FakeGithub::start().await;
    github.add_token("gho_alice", "alice", 1001);
    let server = nexus_testkit::process::ServerProcess::for_github(&bin(), &github, 2);
    let run = |home: &Path, args: &[&str], token: Option<&str>, stdin: &str| {
        use std::io::Write as _;
        let mut c = std::process::Command::new(bin());
        c.args(args)
            .env("HOME", home)
            .env("NEXUS_BROWSER", "none")
            .env("NO_COLOR", "1")
            .env_remove("NEXUS_SERVER")
            .env_remove("NEXUS_TOKEN")
            .env_remove("NEXUS_CONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(t) = token {
            c.env("NEXUS_TOKEN", t);
        }
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let api_token_of = |home: &Path| {
        let cfg = std::fs::read_to_string(home.join(".nexus/config.yaml")).unwrap();
        cfg.lines().find_map(|l| l.strip_prefix("api_token: ")).map(|t| t.trim().trim_matches('\'').to_string())
    };
    let (laptop, desktop) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for home in [laptop.path(), desktop.path()] {
        let (ok, err) = run(home, &["auth", "github", "--server", &server.url, "--with-token"], None, "gho_alice\n");
        assert!(ok, "{err}");
    }
    let (ok, err) = run(laptop.path(), &["ssh", "setup"], None, "");
    assert!(ok, "{err}");
    let laptop_token = api_token_of(laptop.path()).expect("the laptop is registered");

    let (ok, err) = run(desktop.path(), &["ssh", "setup"], None, "");
    assert!(!ok, "a second machine without an API token must be refused");
    assert!(err.contains("NEXUS_TOKEN"), "the hint says how: {err}");
    assert!(api_token_of(desktop.path()).is_none());

    let (ok, err) = run(desktop.path(), &["ssh", "setup"], Some(&laptop_token), "");
    assert!(ok, "{err}");
    let desktop_token = api_token_of(desktop.path()).expect("the desktop is registered");
    // Re-running on the laptop renews its token (it sends the saved one).
    let (ok, err) = run(laptop.path(), &["ssh", "setup"], None, "");
    assert!(ok, "{err}");
    let api = Api::new(&server.url);
    for token in [desktop_token, api_token_of(laptop.path()).unwrap()] {
        assert_eq!(api.with_token(&token).call("GET", "/api/v1/users/me", None).await.0, 200);
    }
    github.assert_conformant();
}
