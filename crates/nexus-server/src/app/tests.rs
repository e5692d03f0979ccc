//! `App` over an in-memory store, fake GitHub and fake repos, with nodes simulated by reading the
//! hub's command channel: the decisions without HTTP, git or agents.

use std::time::Duration;

use nexus_types::protocol::{Command, Op, Outcome, Report, ServerMessage, ServiceState, SetupState};
use serde_json::json;
use tokio::sync::mpsc;

use super::*;
use crate::testing::{FakeGithub, FakeRepos};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl alice@laptop";

struct Fixture {
    app: Arc<App>,
    alice: Caller,
    _data: tempfile::TempDir,
}

/// An app whose repos are `acme/hello` (a README), `acme/dc` (only a root `.devcontainer.json`) and
/// `acme/app` (a config with a setup step and a service).
async fn fixture(node_timeout: Duration) -> Fixture {
    fixture_with(node_timeout, crate::config::DEFAULT_PARALLEL_STARTS_PER_NODE).await
}

/// [`fixture`] whose nodes start at most `parallel` workspaces at once.
async fn fixture_with(node_timeout: Duration, parallel: usize) -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(data.path().to_path_buf());
    config.git_base_url = "https://git.example".into();
    config.ssh_ports = nexus_testkit::free_port_range(4);
    config.ssh_bind_ip = "127.0.0.1".parse().unwrap();
    config.node_timeout = node_timeout;
    config.parallel_starts_per_node = parallel;
    config.idle_stop = Some(Duration::from_secs(1));
    config.idle_check_every = Duration::from_millis(50);
    config.op_timeout = Duration::from_secs(5);
    let repos = FakeRepos::default();
    repos.add("https://git.example/acme/hello.git", &[("README.md", "hi\n")]);
    repos.add("https://git.example/acme/dc.git", &[(".devcontainer.json", r#"{"postStartCommand": "make watch"}"#)]);
    repos.add(
        "https://git.example/acme/app.git",
        &[(
            ".nexus/config.yaml",
            "setup: npm ci\nsetup_timeout: 20m\nservices:\n  web: {command: npm run dev, port: 3000}\n",
        )],
    );
    let app =
        App::with_store(config, Store::in_memory().unwrap(), Box::new(FakeGithub::default()), Box::new(repos)).unwrap();
    let req = RegisterRequest {
        github_username: "alice".into(),
        github_id: 11,
        ssh_pubkey: KEY.into(),
        ssh_pubkey_fingerprint: None,
        github_token: None,
    };
    let token = app.register(Some(&app.operator_token.clone()), None, req).await.unwrap().api_token;
    let alice = app.authenticate(Some(&token), None).await.unwrap();
    Fixture { app, alice, _data: data }
}

fn create_req(name: &str, repo: &str) -> CreateWorkspaceRequest {
    serde_json::from_value(json!({"workspace_name": name, "repo": repo})).unwrap()
}

/// A node that joined: what the server sends it arrives on the returned channel.
async fn join(app: &App, node: &str) -> mpsc::UnboundedReceiver<ServerMessage> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    app.node_connected(node, tx);
    app.on_hello(node, "p", &[]).await.unwrap();
    assert!(matches!(rx.recv().await, Some(ServerMessage::Welcome { .. })));
    rx
}

async fn next_command(rx: &mut mpsc::UnboundedReceiver<ServerMessage>) -> Command {
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(ServerMessage::Command(c))) => c,
        other => panic!("expected a command, got {other:?}"),
    }
}

/// A node that does what it is told, at once, and reports it.
fn obedient_node(app: &Arc<App>, node: &'static str, mut rx: mpsc::UnboundedReceiver<ServerMessage>) {
    let app = app.clone();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let ServerMessage::Command(c) = msg else { continue };
            let outcome = match c.op {
                Op::Ensure(_) => Outcome::Ready { commit: Some("abc".into()), host_key: None },
                Op::Stop => Outcome::Stopped,
                Op::Delete => Outcome::Deleted,
            };
            let report = Report { workspace_id: c.workspace_id, generation: c.generation, outcome };
            app.on_report(node, report).await.unwrap();
        }
    });
}

async fn status_of(app: &App, id: &str) -> WorkspaceStatus {
    app.store.workspace(id).await.unwrap().unwrap().status
}

/// Regression (bug f): right after a restart every workspace's node said "unresponsive (no heartbeat
/// within 15s)" although the server had been up for under a second. Until the node timeout has
/// passed since start, a node not heard from yet is reconnecting.
#[tokio::test]
async fn a_node_not_heard_from_since_the_server_started_is_connecting_not_unresponsive() {
    for (timeout, expected) in
        [(Duration::from_secs(60), NodeStatus::Connecting), (Duration::ZERO, NodeStatus::Unresponsive)]
    {
        let f = fixture(timeout).await;
        // A workspace from before the restart, on a node that has not reconnected yet.
        let User { id: owner_id, .. } = require_user(&f.alice).unwrap().clone();
        f.app.store.upsert_node("n1", "p").await.unwrap();
        let ws = NewWorkspace {
            id: "ws-1".into(),
            owner_id,
            name: "proj".into(),
            image: String::new(),
            cpu: 2,
            memory: "4GB".into(),
            repo_owner: "acme".into(),
            repo_name: "hello".into(),
            repo_url: "https://git.example/acme/hello.git".into(),
            branch: "main".into(),
            ssh_port: f.app.config.ssh_ports.0,
            node: "n1".into(),
            plan: "{}".into(),
            git_token: None,
            upstream_url: None,
        };
        f.app.store.insert_workspace(ws).await.unwrap();
        let view = f.app.view(&f.alice, "ws-1", "localhost").await.unwrap();
        assert_eq!(view.node.unwrap().status, expected);
        let message = view.message.unwrap();
        let nodes = f.app.nodes(&Caller::operator(None)).await.unwrap();
        assert_eq!(nodes.nodes[0].status, expected);
        let err = f.app.stop(&f.alice, "ws-1").await.unwrap_err();
        if expected == NodeStatus::Connecting {
            assert!(message.contains("reconnect") && !message.contains("unresponsive"), "{message}");
            assert!(err.to_string().contains("has not reconnected"), "{err}");
        } else {
            assert!(message.contains("unresponsive"), "{message}");
        }
    }
}

#[tokio::test]
async fn create_dispatches_to_a_node_and_its_reports_drive_the_status() {
    let f = fixture(Duration::from_secs(60)).await;
    let err = f.app.create(&f.alice, create_req("proj", "acme/hello")).await.unwrap_err();
    assert!(matches!(err, ServerError::Unavailable { code: "no_nodes", .. }), "{err:?}");

    let mut node = join(&f.app, "n1").await;
    let created = f.app.create(&f.alice, create_req("proj", "acme/dc")).await.unwrap();
    assert_eq!(created.status, WorkspaceStatus::Creating, "the node took the command");
    let cmd = next_command(&mut node).await;
    let Op::Ensure(spec) = &cmd.op else { panic!("{cmd:?}") };
    // Regression (bug a): a root `.devcontainer.json` is one of the files the plan is made from.
    assert_eq!(spec.plan.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["post-start"]);
    let view = f.app.view(&f.alice, &created.workspace_id, "h").await.unwrap();
    assert_eq!(view.services[0].name, "post-start", "planned services are listed from the create on");

    let ready = Outcome::Ready { commit: Some("abc".into()), host_key: Some("ssh-ed25519 HOST".into()) };
    let report = Report { workspace_id: cmd.workspace_id.clone(), generation: cmd.generation, outcome: ready };
    f.app.on_report("n2", report.clone()).await.unwrap();
    assert_eq!(status_of(&f.app, &cmd.workspace_id).await, WorkspaceStatus::Creating, "from the wrong node");
    f.app.on_report("n1", report).await.unwrap();
    let ws = f.app.store.workspace(&cmd.workspace_id).await.unwrap().unwrap();
    assert_eq!(
        (ws.status, ws.commit.as_deref(), ws.host_key.as_deref()),
        (WorkspaceStatus::Running, Some("abc"), Some("ssh-ed25519 HOST"))
    );

    // Creating it again is the same workspace; the same name for another repo is a conflict.
    let again = f.app.create(&f.alice, create_req("proj", "acme/dc")).await.unwrap();
    assert_eq!((again.workspace_id, again.created), (created.workspace_id, false));
    let err = f.app.create(&f.alice, create_req("proj", "acme/hello")).await.unwrap_err();
    assert!(matches!(err, ServerError::Conflict { code: "name_taken", .. }), "{err:?}");
}

/// Only the create's own ensure says the caller's access to the repo was checked (so the node may
/// start it from a prebuild), and it carries `no_prebuild`; a later start says neither.
#[tokio::test]
async fn only_the_creates_ensure_may_use_a_prebuild() {
    let f = fixture(Duration::from_secs(60)).await;
    let mut rx = join(&f.app, "n1").await;
    // An obedient node that also hands every ensure's spec to the test.
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let app = f.app.clone();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let ServerMessage::Command(c) = msg else { continue };
            let outcome = match c.op {
                Op::Ensure(spec) => {
                    let _ = seen_tx.send(*spec);
                    Outcome::Ready { commit: Some("abc".into()), host_key: None }
                }
                Op::Stop => Outcome::Stopped,
                Op::Delete => Outcome::Deleted,
            };
            app.on_report("n1", Report { workspace_id: c.workspace_id, generation: c.generation, outcome })
                .await
                .unwrap();
        }
    });
    f.app.create(&f.alice, create_req("proj", "acme/hello")).await.unwrap();
    let spec = seen.recv().await.unwrap();
    assert!(spec.repo_access_verified && !spec.no_prebuild, "{spec:?}");

    let mut req = create_req("fresh", "acme/hello");
    req.no_prebuild = true;
    let created = f.app.create(&f.alice, req).await.unwrap();
    let spec = seen.recv().await.unwrap();
    assert!(spec.no_prebuild, "{spec:?}");

    f.app.stop(&f.alice, &created.workspace_id).await.unwrap();
    f.app.start(&f.alice, &created.workspace_id).await.unwrap();
    let spec = seen.recv().await.unwrap();
    assert!(!spec.repo_access_verified && !spec.no_prebuild, "a start of the stored workspace: {spec:?}");
}

/// A decision made on a status that has changed since it was read is not written: here a failure
/// report read `running`, and a stop finished before its write.
#[tokio::test]
async fn a_report_applied_to_a_stale_read_does_not_overwrite_the_newer_status() {
    let f = fixture(Duration::from_secs(60)).await;
    let mut node = join(&f.app, "n1").await;
    let created = f.app.create(&f.alice, create_req("proj", "acme/hello")).await.unwrap();
    let cmd = next_command(&mut node).await;
    let ready = Outcome::Ready { commit: None, host_key: None };
    f.app
        .on_report("n1", Report { workspace_id: cmd.workspace_id.clone(), generation: cmd.generation, outcome: ready })
        .await
        .unwrap();

    let read = f.app.store.workspace(&created.workspace_id).await.unwrap().unwrap();
    assert_eq!(read.status, WorkspaceStatus::Running);
    // Meanwhile the workspace is stopped.
    let stopped = Report { workspace_id: read.id.clone(), generation: read.generation, outcome: Outcome::Stopped };
    f.app.apply_report(&read, stopped).await.unwrap();
    assert_eq!(status_of(&f.app, &read.id).await, WorkspaceStatus::Stopped);
    // The failure decided on the old read (running → failed is allowed) must not land.
    let failed = Outcome::Failed { message: "sshd died".into(), hint: "retry".into() };
    f.app
        .apply_report(&read, Report { workspace_id: read.id.clone(), generation: read.generation, outcome: failed })
        .await
        .unwrap();
    let ws = f.app.store.workspace(&read.id).await.unwrap().unwrap();
    assert_eq!((ws.status, ws.message), (WorkspaceStatus::Stopped, None));
}

/// The other side of conditional writes: a report that lost only because the server marked the
/// workspace `creating` between the report's read and its write still lands on the fresh row.
#[tokio::test]
async fn a_ready_report_that_raced_the_dispatch_is_decided_again_and_lands() {
    let f = fixture(Duration::from_secs(60)).await;
    let mut node = join(&f.app, "n1").await;
    let created = f.app.create(&f.alice, create_req("proj", "acme/hello")).await.unwrap();
    let cmd = next_command(&mut node).await;
    let row = f.app.store.workspace(&created.workspace_id).await.unwrap().unwrap();
    assert_eq!(row.status, WorkspaceStatus::Creating);
    // What the report's handler read just before the dispatch was recorded.
    let read = WorkspaceRow { status: WorkspaceStatus::Pending, ..row };
    let ready = Outcome::Ready { commit: None, host_key: None };
    f.app
        .apply_report(&read, Report { workspace_id: read.id.clone(), generation: cmd.generation, outcome: ready })
        .await
        .unwrap();
    assert_eq!(status_of(&f.app, &read.id).await, WorkspaceStatus::Running);
}

#[tokio::test]
async fn stop_and_start_wait_for_the_node_and_go_through_pending() {
    let f = fixture(Duration::from_secs(60)).await;
    let node = join(&f.app, "n1").await;
    obedient_node(&f.app, "n1", node);
    let id = f.app.create(&f.alice, create_req("proj", "acme/hello")).await.unwrap().workspace_id;
    nexus_testkit::eventually(Duration::from_secs(5), "running", || async {
        (status_of(&f.app, &id).await == WorkspaceStatus::Running).then_some(())
    })
    .await;
    for _ in 0..2 {
        assert_eq!(f.app.stop(&f.alice, &id).await.unwrap().status, WorkspaceStatus::Stopped);
    }
    // A late "ready" for an older command does not revive it.
    let late =
        Report { workspace_id: id.clone(), generation: 1, outcome: Outcome::Ready { commit: None, host_key: None } };
    f.app.on_report("n1", late).await.unwrap();
    assert_eq!(status_of(&f.app, &id).await, WorkspaceStatus::Stopped);
    for _ in 0..2 {
        assert_eq!(f.app.start(&f.alice, &id).await.unwrap().status, WorkspaceStatus::Running);
    }
    assert!(f.app.delete(&f.alice, &id).await.unwrap().deleted);
    assert!(f.app.store.workspace(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_reconnecting_node_missing_a_running_container_fails_that_workspace() {
    let f = fixture(Duration::from_secs(60)).await;
    let node = join(&f.app, "n1").await;
    obedient_node(&f.app, "n1", node);
    let id = f.app.create(&f.alice, create_req("proj", "acme/hello")).await.unwrap().workspace_id;
    nexus_testkit::eventually(Duration::from_secs(5), "running", || async {
        (status_of(&f.app, &id).await == WorkspaceStatus::Running).then_some(())
    })
    .await;
    f.app.on_hello("n1", "p", &[]).await.unwrap();
    let ws = f.app.store.workspace(&id).await.unwrap().unwrap();
    assert_eq!(ws.status, WorkspaceStatus::Failed);
    assert!(ws.message.unwrap().contains("missing on node n1"));
}

#[tokio::test]
async fn registration_needs_a_github_token_of_that_user() {
    let f = fixture(Duration::from_secs(60)).await;
    let req = |token: Option<&str>| RegisterRequest {
        github_username: "bob".into(),
        github_id: 22,
        ssh_pubkey: KEY.into(),
        ssh_pubkey_fingerprint: None,
        github_token: token.map(str::to_string),
    };
    for token in [None, Some("gho_unknown")] {
        let err = f.app.register(None, None, req(token)).await.unwrap_err();
        assert!(matches!(err, ServerError::Unauthorized { .. }), "{err:?}");
    }
    assert!(matches!(f.app.authenticate(Some("nxs_forged"), None).await, Err(ServerError::Unauthorized { .. })));
    assert!(f.app.authenticate(Some(&f.app.operator_token.clone()), None).await.unwrap().is_operator());
}

fn setup_state(status: SetupStatus, elapsed_ms: u64) -> SetupState {
    SetupState {
        status,
        step: Some("npm ci".into()),
        step_number: Some(1),
        steps: 1,
        elapsed_ms,
        last_line: Some("npm http fetch GET 200 https://registry.npmjs.org/react".into()),
        message: None,
        hint: None,
        last_logs: None,
    }
}

#[tokio::test]
async fn setup_reports_show_in_the_status_and_starting_services_say_they_wait_for_it() {
    let f = fixture(Duration::from_secs(60)).await;
    let mut node = join(&f.app, "n1").await;
    let id = f.app.create(&f.alice, create_req("app", "acme/app")).await.unwrap().workspace_id;
    let cmd = next_command(&mut node).await;
    let Op::Ensure(spec) = &cmd.op else { panic!("{cmd:?}") };
    assert_eq!(spec.plan.setup_timeout_ms, Some(20 * 60 * 1000), "the config's setup_timeout reaches the node");
    let setup = |f: &Fixture| {
        let (app, alice, id) = (f.app.clone(), f.alice.clone(), id.clone());
        async move { app.view(&alice, &id, "h").await.unwrap().setup.unwrap() }
    };
    // Before the node says anything, the plan's setup is pending.
    let pending = setup(&f).await;
    assert_eq!((pending.status, pending.steps, pending.started_at), (SetupStatus::Pending, 1, None));

    let ready = Outcome::Ready { commit: None, host_key: None };
    f.app
        .on_report("n1", Report { workspace_id: id.clone(), generation: cmd.generation, outcome: ready })
        .await
        .unwrap();
    let waiting = ServiceState {
        name: "web".into(),
        port: Some(3000),
        status: ServiceStatus::Starting,
        discovered: false,
        message: Some("waiting for setup to finish".into()),
        hint: None,
        last_logs: None,
    };
    f.app.on_services("n1", &id, cmd.generation, &[waiting]).await.unwrap();
    f.app.on_setup("n1", &id, cmd.generation, &setup_state(SetupStatus::Running, 12_000)).await.unwrap();
    let view = f.app.view(&f.alice, &id, "h").await.unwrap();
    let running = view.setup.clone().unwrap();
    assert_eq!((running.status, running.step.as_deref()), (SetupStatus::Running, Some("npm ci")));
    assert_eq!(running.last_line.as_deref(), Some("npm http fetch GET 200 https://registry.npmjs.org/react"));
    assert!(running.started_at.is_some() && running.elapsed_ms >= 12_000, "{running:?}");
    let message = view.services[0].message.clone().unwrap();
    assert!(
        message.starts_with("waiting for setup (`npm ci`, 12 s")
            || message.starts_with("waiting for setup (`npm ci`, 13 s"),
        "{message}"
    );

    // Reports from another node, or for a command older than the newest, change nothing.
    let failed = SetupState {
        message: Some("setup step `npm ci` failed (exit 1) after 14 s".into()),
        hint: Some("the workspace does not trust the TLS certificate of registry.npmjs.org: ...".into()),
        last_logs: Some("npm error code SELF_SIGNED_CERT_IN_CHAIN".into()),
        ..setup_state(SetupStatus::Failed, 14_000)
    };
    f.app.on_setup("n2", &id, cmd.generation, &failed).await.unwrap();
    f.app.on_setup("n1", &id, cmd.generation - 1, &failed).await.unwrap();
    assert_eq!(setup(&f).await.status, SetupStatus::Running);

    f.app.on_setup("n1", &id, cmd.generation, &failed).await.unwrap();
    let shown = setup(&f).await;
    assert_eq!(
        (shown.status, shown.elapsed_ms, shown.hint.as_deref(), shown.last_logs.as_deref()),
        (SetupStatus::Failed, 14_000, failed.hint.as_deref(), failed.last_logs.as_deref())
    );
    // The list shows the same.
    let list = f.app.list(&f.alice, "h").await.unwrap();
    assert_eq!(list.workspaces[0].setup.as_ref().map(|s| s.status), Some(SetupStatus::Failed));
}

#[test]
fn a_setup_view_counts_time_while_running_and_shows_a_run_a_stop_cut_short_as_pending() {
    let ws = WorkspaceRow {
        id: "ws-1".into(),
        owner_id: 1,
        owner: "alice".into(),
        owner_key: String::new(),
        name: "app".into(),
        provider: "lxc".into(),
        image: String::new(),
        cpu: 2,
        memory: "4GB".into(),
        repo_owner: "acme".into(),
        repo_name: "app".into(),
        repo_url: String::new(),
        branch: "main".into(),
        commit: None,
        status: WorkspaceStatus::Running,
        message: None,
        hint: None,
        ssh_port: 2222,
        host_key: None,
        node: "n1".into(),
        plan: String::new(),
        git_token: None,
        upstream_url: None,
        owner_github_id: 11,
        stopped_idle: false,
        generation: 2,
        created_at: String::new(),
        updated_at: String::new(),
    };
    let plan = ProjectPlan { setup: vec!["npm ci".into(), "npm run build".into()], ..Default::default() };
    let row = SetupRow {
        generation: 2,
        status: SetupStatus::Running,
        step: Some("npm run build".into()),
        step_number: Some(2),
        steps: 2,
        started_at_ms: 1_000_000,
        elapsed_ms: 3_000,
        last_line: None,
        message: None,
        hint: None,
        last_logs: None,
    };
    // No plan steps, no setup; steps but no report yet: pending.
    assert_eq!(setup_view(&ws, &ProjectPlan::default(), None, 0), None);
    assert_eq!(setup_view(&ws, &plan, None, 0).unwrap().status, SetupStatus::Pending);
    // Running: the time since it started, as the server counts it.
    let view = setup_view(&ws, &plan, Some(row.clone()), 1_065_000).unwrap();
    assert_eq!((view.elapsed_ms, view.started_at.as_deref()), (65_000, Some("1970-01-01T00:16:40Z")));
    assert_eq!(
        starting_message(Some("waiting for setup to finish".into()), Some(&view)),
        "waiting for setup (`npm run build`, step 2 of 2, 1 min 5 s)"
    );
    // Over: the time it took.
    let done = SetupRow { status: SetupStatus::Done, ..row.clone() };
    assert_eq!(setup_view(&ws, &plan, Some(done), 9_000_000).unwrap().elapsed_ms, 3_000);
    // Stopped while it ran (a newer command was issued): it runs again at the next start.
    let stopped = WorkspaceRow { status: WorkspaceStatus::Stopped, generation: 3, ..ws.clone() };
    let view = setup_view(&stopped, &plan, Some(row.clone()), 1_065_000).unwrap();
    assert_eq!(view.status, SetupStatus::Pending);
    assert!(view.message.unwrap().contains("runs again when it starts"));
    // A starting service says what it waits for, whatever the node reported.
    assert_eq!(starting_message(None, None), "waiting for the node to report on it");
    assert_eq!(starting_message(Some("started; waiting for port 3000".into()), None), "started; waiting for port 3000");
}

/// Issue 10 item 7: every change to a workspace is in the audit log with its actor and source, and
/// only the operator may read the log (a user asking is refused, and sees nothing of others).
#[tokio::test]
async fn workspace_changes_are_audited_with_actor_and_source_and_only_the_operator_reads_them() {
    let f = fixture(Duration::from_secs(60)).await;
    let rx = join(&f.app, "n1").await;
    obedient_node(&f.app, "n1", rx);
    let alice = Caller { source: Some("203.0.113.7".parse().unwrap()), ..f.alice.clone() };
    let id = f.app.create(&alice, create_req("proj", "acme/hello")).await.unwrap().workspace_id;
    f.app.stop(&alice, &id).await.unwrap();
    f.app.start(&alice, &id).await.unwrap();
    f.app.delete(&alice, &id).await.unwrap();

    let refused = f.app.audit_log(&alice, None, None).await;
    assert!(matches!(refused, Err(ServerError::Forbidden { .. })), "a user must not read the audit log: {refused:?}");

    let log = f.app.audit_log(&Caller::operator(None), None, None).await.unwrap();
    let seen: Vec<(&str, &str, &str, Option<&str>)> = log
        .entries
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str(), e.source.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("operator", "user.register", "alice", None),
            ("alice", "workspace.create", id.as_str(), Some("203.0.113.7")),
            ("alice", "workspace.stop", id.as_str(), Some("203.0.113.7")),
            ("alice", "workspace.start", id.as_str(), Some("203.0.113.7")),
            ("alice", "workspace.delete", id.as_str(), Some("203.0.113.7")),
        ]
    );
    let only_deletes =
        f.app.audit_log(&Caller::operator(None), Some(10), Some("workspace.delete".into())).await.unwrap();
    assert_eq!(only_deletes.entries.len(), 1);
}

/// Issue 12 item 3: a node gets at most `parallel_starts_per_node` ensures at once; the rest wait
/// `pending` and say how many are ahead; each answer sends the next one, in order.
#[tokio::test]
async fn a_burst_of_creates_is_queued_per_node_in_order_and_says_where_it_is() {
    let f = fixture_with(Duration::from_secs(60), 2).await;
    let mut rx = join(&f.app, "n1").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(f.app.create(&f.alice, create_req(&format!("p{i}"), "acme/hello")).await.unwrap().workspace_id);
    }
    let first = next_command(&mut rx).await;
    let second = next_command(&mut rx).await;
    assert_eq!((first.workspace_id.as_str(), second.workspace_id.as_str()), (ids[0].as_str(), ids[1].as_str()));
    assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv()).await.is_err(), "only two at once");
    assert_eq!(status_of(&f.app, &ids[2]).await, WorkspaceStatus::Pending);
    let view = f.app.view(&f.alice, &ids[3], "localhost").await.unwrap();
    assert_eq!(view.message.as_deref(), Some("queued on node n1: 1 ahead (a node starts 2 workspaces at once)"));

    let ready = Outcome::Ready { commit: Some("abc".into()), host_key: None };
    f.app
        .on_report("n1", Report { workspace_id: first.workspace_id, generation: first.generation, outcome: ready })
        .await
        .unwrap();
    let third = next_command(&mut rx).await;
    assert_eq!(third.workspace_id, ids[2], "the next in line goes out when a slot frees");
    assert_eq!(status_of(&f.app, &ids[2]).await, WorkspaceStatus::Creating);
    let view = f.app.view(&f.alice, &ids[3], "localhost").await.unwrap();
    assert_eq!(view.message.as_deref(), Some("queued on node n1: 0 ahead (a node starts 2 workspaces at once)"));

    // A failure frees the slot too.
    let failed = Outcome::Failed { message: "m".into(), hint: "h".into() };
    f.app
        .on_report("n1", Report { workspace_id: second.workspace_id, generation: second.generation, outcome: failed })
        .await
        .unwrap();
    assert_eq!(next_command(&mut rx).await.workspace_id, ids[3]);
}

/// Issue 12 item 6: a running workspace with no SSH connection for `idle_stop` is stopped (data
/// kept, its SSH port left open, the status says why); one with a connection open is not; an SSH
/// connection to an idle-stopped workspace starts it again.
#[tokio::test]
async fn an_idle_workspace_stops_a_used_one_does_not_and_ssh_wakes_it() {
    let f = fixture(Duration::from_secs(60)).await;
    let rx = join(&f.app, "n1").await;
    obedient_node(&f.app, "n1", rx);
    let idle = f.app.create(&f.alice, create_req("idle", "acme/hello")).await.unwrap().workspace_id;
    let used = f.app.create(&f.alice, create_req("used", "acme/hello")).await.unwrap().workspace_id;
    for id in [&idle, &used] {
        nexus_testkit::eventually(Duration::from_secs(5), "running", || async {
            (status_of(&f.app, id).await == WorkspaceStatus::Running).then_some(())
        })
        .await;
    }
    let session = f.app.ssh_session(&used);
    let reaper = tokio::spawn(f.app.clone().stop_idle_workspaces_forever());
    nexus_testkit::eventually(Duration::from_secs(5), "the idle workspace stopped", || async {
        (status_of(&f.app, &idle).await == WorkspaceStatus::Stopped).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_of(&f.app, &used).await, WorkspaceStatus::Running, "an open SSH connection keeps it up");
    let view = f.app.view(&f.alice, &idle, "localhost").await.unwrap();
    assert!(view.message.as_deref().unwrap().starts_with("stopped after 1 s without an SSH connection"), "{view:?}");
    let row = f.app.store.workspace(&idle).await.unwrap().unwrap();
    assert!(row.stopped_idle && f.app.ssh_ports.is_serving(row.ssh_port), "its SSH port stays open to wake it");

    // The next SSH connection starts it and waits for it.
    reaper.abort();
    f.app.wake_for_ssh(&idle).await.unwrap();
    assert_eq!(status_of(&f.app, &idle).await, WorkspaceStatus::Running);
    assert!(!f.app.store.workspace(&idle).await.unwrap().unwrap().stopped_idle);
    let log = f.app.audit_log(&Caller::operator(None), None, Some("workspace".into())).await.unwrap();
    let actions: Vec<&str> = log.entries.iter().filter(|e| e.target == idle).map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["workspace.create", "workspace.idle_stop", "workspace.wake"]);
    drop(session);
}

/// Issue 12 item 3: placement counts what runs and each node's capacity from its hello; a full
/// node takes no more, and when every node is full the create says so with the numbers.
#[tokio::test]
async fn placement_respects_each_nodes_capacity_and_says_when_all_are_full() {
    let f = fixture(Duration::from_secs(60)).await;
    let rx = join(&f.app, "n1").await;
    obedient_node(&f.app, "n1", rx);
    f.app.node_capacity("n1", Some(1));
    let first = f.app.create(&f.alice, create_req("a", "acme/hello")).await.unwrap();
    assert_eq!(f.app.store.workspace(&first.workspace_id).await.unwrap().unwrap().node, "n1");
    let err = f.app.create(&f.alice, create_req("b", "acme/hello")).await.unwrap_err();
    match err {
        ServerError::Unavailable { code, message, .. } => {
            assert_eq!(code, "nodes_full");
            assert!(message.contains("n1: 1 of 1"), "{message}");
        }
        other => panic!("expected nodes_full, got {other:?}"),
    }
    // A stopped workspace uses no room; a node with room takes the next one.
    f.app.stop(&f.alice, &first.workspace_id).await.unwrap();
    let again = f.app.create(&f.alice, create_req("c", "acme/hello")).await.unwrap();
    assert_eq!(f.app.store.workspace(&again.workspace_id).await.unwrap().unwrap().node, "n1");
    let rx2 = join(&f.app, "n2").await;
    obedient_node(&f.app, "n2", rx2);
    let next = f.app.create(&f.alice, create_req("d", "acme/hello")).await.unwrap();
    assert_eq!(f.app.store.workspace(&next.workspace_id).await.unwrap().unwrap().node, "n2");
}
