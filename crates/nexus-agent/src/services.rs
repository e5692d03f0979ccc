//! Runs a workspace's services under the container's systemd: the setup steps once, a unit per
//! service (restart on failure, logs in the journal, `PORT` set), started in `depends_on` order
//! once their dependencies are healthy, then watched: health checks and listening-port discovery.
//!
//! Checks run *inside* the container (one `exec` per round for all services), so a dev server that
//! binds only to `127.0.0.1` (Vite's default) still counts as up. Every change of any service's
//! state is reported to the server as one `Services` message.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexus_types::protocol::{AgentMessage, HealthKind, ProjectPlan, ServicePlan, ServiceState};
use nexus_types::ServiceStatus;
use tokio::sync::mpsc;

use crate::provider::{ExecOutput, Provider};
use crate::provision::{DEV_HOME, DEV_UID};

/// `$0` of the combined check script, so fakes can answer it.
pub(crate) const STEP_CHECK: &str = "nexus-check";
/// `$0` of a setup step.
pub(crate) const STEP_SETUP: &str = "nexus-setup";
/// Instance config key holding the setup steps that already ran.
pub(crate) const SETUP_DONE_KEY: &str = "user.nexus.setup";
/// How often running services are checked once everything is up.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);
/// Log lines attached to a failure.
const LOG_LINES: u32 = 20;

pub(crate) fn unit_name(service: &str) -> String {
    format!("nexus-svc-{service}.service")
}

/// Single-quotes `s` for a POSIX shell.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn state(svc: &ServicePlan, status: ServiceStatus) -> ServiceState {
    ServiceState {
        name: svc.name.clone(),
        port: svc.port,
        status,
        discovered: false,
        message: None,
        hint: None,
        last_logs: None,
    }
}

/// Watches one workspace's services; see the module docs.
pub(crate) struct Supervisor<P> {
    provider: Arc<P>,
    id: String,
    generation: i64,
    repo_dir: String,
    plan: ProjectPlan,
    tx: mpsc::UnboundedSender<AgentMessage>,
    states: Vec<ServiceState>,
    discovered: Vec<ServiceState>,
    last_sent: Option<Vec<ServiceState>>,
    /// Consecutive failed checks per service since it was last healthy.
    misses: HashMap<String, u32>,
    watch_interval: Duration,
}

/// What one check round saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Round {
    healthy: BTreeSet<String>,
    unit_failed: BTreeSet<String>,
    listening: BTreeSet<u16>,
}

impl<P: Provider> Supervisor<P> {
    /// A supervisor for workspace `id`'s `plan`, reporting with `generation`.
    pub(crate) fn new(
        provider: Arc<P>,
        id: String,
        generation: i64,
        repo_dir: String,
        plan: ProjectPlan,
        tx: mpsc::UnboundedSender<AgentMessage>,
    ) -> Self {
        let states = plan.services.iter().map(|s| state(s, ServiceStatus::Starting)).collect();
        Supervisor {
            provider,
            id,
            generation,
            repo_dir,
            plan,
            tx,
            states,
            discovered: Vec::new(),
            last_sent: None,
            misses: HashMap::new(),
            watch_interval: WATCH_INTERVAL,
        }
    }

    /// Checks running services every `every` instead of every 5 s.
    #[cfg(test)]
    fn with_watch_interval(mut self, every: Duration) -> Self {
        self.watch_interval = every;
        self
    }

    fn repo_path(&self) -> String {
        format!("{DEV_HOME}/{}", self.repo_dir)
    }

    fn report(&mut self) {
        let all: Vec<ServiceState> = self.states.iter().chain(self.discovered.iter()).cloned().collect();
        if self.last_sent.as_ref() == Some(&all) {
            return;
        }
        self.last_sent = Some(all.clone());
        let _ = self.tx.send(AgentMessage::Services {
            workspace_id: self.id.clone(),
            generation: self.generation,
            services: all,
        });
    }

    fn set(
        &mut self,
        name: &str,
        status: ServiceStatus,
        message: Option<String>,
        hint: Option<String>,
        logs: Option<String>,
    ) {
        if let Some(s) = self.states.iter_mut().find(|s| s.name == name) {
            s.status = status;
            s.message = message;
            s.hint = hint;
            s.last_logs = logs;
        }
    }

    fn status_of(&self, name: &str) -> Option<ServiceStatus> {
        self.states.iter().find(|s| s.name == name).map(|s| s.status)
    }

    async fn exec(&self, argv: Vec<String>, as_dev: bool) -> ExecOutput {
        let user = as_dev.then_some((DEV_UID, DEV_UID));
        let env = vec![("HOME".to_string(), DEV_HOME.to_string()), ("USER".to_string(), "dev".to_string())];
        match self.provider.exec(&self.id, &argv, user, &env, Some(DEV_HOME)).await {
            Ok(out) => out,
            Err(e) => ExecOutput::failed(-1, nexus_types::diagnostics::error_chain(&e)),
        }
    }

    /// Runs setup, starts everything in order, then watches until aborted.
    pub(crate) async fn run(mut self) {
        self.report();
        if !self.setup().await {
            self.report();
            return;
        }
        if let Err(e) = self.write_units().await {
            for svc in self.plan.services.clone() {
                self.set(
                    &svc.name,
                    ServiceStatus::Failed,
                    Some(format!("could not install the service's systemd unit: {e}")),
                    Some("check the workspace's disk and systemd (`systemctl status`)".into()),
                    None,
                );
            }
            self.report();
            return;
        }
        self.start_in_order().await;
        self.watch().await;
    }

    /// Runs the setup steps unless this exact list already ran; false when one failed.
    async fn setup(&mut self) -> bool {
        if self.plan.setup.is_empty() {
            return true;
        }
        let done = self.plan.setup.join("\n");
        if self.provider.get_config(&self.id, SETUP_DONE_KEY).await.ok().flatten().as_deref() == Some(done.as_str()) {
            return true;
        }
        let script = r#"mkdir -p "$HOME/.nexus/logs" && cd "$HOME/$1" && { printf '$ %s\n' "$2"; bash -lc "$2"; } >>"$HOME/.nexus/logs/setup.log" 2>&1"#;
        for step in self.plan.setup.clone() {
            let argv =
                vec!["sh".into(), "-c".into(), script.into(), STEP_SETUP.into(), self.repo_dir.clone(), step.clone()];
            let out = self.exec(argv, true).await;
            if out.code != 0 {
                let logs = self.tail("tail -n 20 \"$HOME/.nexus/logs/setup.log\"").await;
                for svc in self.plan.services.clone() {
                    self.set(
                        &svc.name,
                        ServiceStatus::Failed,
                        Some(format!("setup step `{step}` failed (exit {}), so services were not started", out.code)),
                        Some(format!(
                            "read ~/.nexus/logs/setup.log in the workspace, fix the step (in .nexus/config.yaml or the project), run it by hand in ~/{}, then stop and start the workspace",
                            self.repo_dir
                        )),
                        logs.clone(),
                    );
                }
                return false;
            }
        }
        let _ = self.provider.set_config(&self.id, SETUP_DONE_KEY, &done).await;
        true
    }

    async fn tail(&self, command: &str) -> Option<String> {
        let out = self.exec(vec!["sh".into(), "-c".into(), command.into()], false).await;
        let text = out.stdout.trim_end().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// Writes a wrapper script and a unit per service, then reloads systemd.
    async fn write_units(&self) -> Result<(), String> {
        let mut script = String::from("set -e\nmkdir -p /home/dev/.nexus/services\n");
        for svc in &self.plan.services {
            let wrapper = format!("{DEV_HOME}/.nexus/services/{}.sh", svc.name);
            script.push_str(&format!(
                "printf '%s' {} > {wrapper}\nchmod 0755 {wrapper}\nprintf '%s' {} > /etc/systemd/system/{}\n",
                shell_quote(&self.wrapper(svc)),
                shell_quote(&unit(svc, &wrapper)),
                unit_name(&svc.name)
            ));
        }
        script.push_str("chown -R dev:dev /home/dev/.nexus\nsystemctl daemon-reload\n");
        let out = self.exec(vec!["sh".into(), "-c".into(), script], false).await;
        if out.code != 0 {
            return Err(out.last_stderr_line().to_string());
        }
        Ok(())
    }

    /// The script a unit runs: environment, directory, then the user's command in a login shell.
    fn wrapper(&self, svc: &ServicePlan) -> String {
        let mut s = String::from("#!/bin/bash\n# Written by the Nexus agent from the project's service plan.\n");
        if let Some(port) = svc.port {
            s.push_str(&format!("export PORT={port}\n"));
        }
        for (k, v) in &svc.env {
            s.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
        let dir = if svc.working_dir.is_empty() {
            self.repo_path()
        } else {
            format!("{}/{}", self.repo_path(), svc.working_dir)
        };
        s.push_str(&format!("cd {}\nexec bash -lc {}\n", shell_quote(&dir), shell_quote(&svc.command)));
        s
    }

    /// Starts services whose dependencies are healthy, waits for them, repeats until all are settled.
    async fn start_in_order(&mut self) {
        let plans = self.plan.services.clone();
        let mut started: BTreeSet<String> = BTreeSet::new();
        let mut since: HashMap<String, Instant> = HashMap::new();
        loop {
            // Start whatever is ready; fail whatever can never start.
            for svc in &plans {
                if started.contains(&svc.name) {
                    continue;
                }
                let deps: Vec<Option<ServiceStatus>> = svc.depends_on.iter().map(|d| self.status_of(d)).collect();
                if let Some(bad) =
                    svc.depends_on.iter().zip(&deps).find(|(_, s)| matches!(s, Some(ServiceStatus::Failed) | None))
                {
                    started.insert(svc.name.clone());
                    self.set(
                        &svc.name,
                        ServiceStatus::Failed,
                        Some(format!("not started: its dependency `{}` failed", bad.0)),
                        Some(format!("fix `{}` first (see its logs); this service starts after it", bad.0)),
                        None,
                    );
                    continue;
                }
                if deps.iter().all(|s| *s == Some(ServiceStatus::Running)) {
                    let out = self
                        .exec(
                            vec!["systemctl".into(), "restart".into(), "--no-block".into(), unit_name(&svc.name)],
                            false,
                        )
                        .await;
                    started.insert(svc.name.clone());
                    since.insert(svc.name.clone(), Instant::now());
                    if out.code != 0 {
                        self.set(
                            &svc.name,
                            ServiceStatus::Failed,
                            Some(format!("systemd could not start it: {}", out.last_stderr_line())),
                            Some("check the command in .nexus/config.yaml".into()),
                            None,
                        );
                    }
                }
            }
            self.report();
            let waiting: Vec<&ServicePlan> = plans
                .iter()
                .filter(|s| started.contains(&s.name) && self.status_of(&s.name) == Some(ServiceStatus::Starting))
                .collect();
            if waiting.is_empty() && started.len() == plans.len() {
                return;
            }
            if waiting.is_empty() {
                // Nothing is starting and nothing more can start: only a dependency cycle does that
                // (the server validates configs, so this is a last line of defence, not a hang).
                for svc in plans.iter().filter(|s| !started.contains(&s.name)) {
                    self.set(
                        &svc.name,
                        ServiceStatus::Failed,
                        Some("not started: its dependencies form a cycle".into()),
                        Some("remove the cycle from `depends_on` in .nexus/config.yaml".into()),
                        None,
                    );
                }
                self.report();
                return;
            }
            // While starting, look often: the user is waiting, and a check is one cheap exec.
            let interval = waiting.iter().map(|s| s.health.interval_ms).min().unwrap_or(1000).clamp(100, 250);
            tokio::time::sleep(Duration::from_millis(interval)).await;
            let round = self.check().await;
            let checking: Vec<&ServicePlan> = plans
                .iter()
                .filter(|s| self.status_of(&s.name) == Some(ServiceStatus::Starting) && started.contains(&s.name))
                .collect();
            for svc in checking {
                if round.healthy.contains(&svc.name) {
                    self.set(&svc.name, ServiceStatus::Running, None, None, None);
                } else if round.unit_failed.contains(&svc.name) {
                    self.fail(svc, "it exited with an error and systemd gave up restarting it").await;
                } else if since[&svc.name].elapsed() > Duration::from_millis(svc.health.start_timeout_ms) {
                    let what =
                        format!("it did not pass its health check within {} s", svc.health.start_timeout_ms / 1000);
                    self.fail(svc, &what).await;
                }
            }
            self.discovered = discovered(&plans, &round.listening);
        }
    }

    async fn fail(&mut self, svc: &ServicePlan, why: &str) {
        let logs = self
            .tail(&format!("journalctl -u {} -n {LOG_LINES} --no-pager -o cat 2>/dev/null", unit_name(&svc.name)))
            .await;
        self.set(
            &svc.name,
            ServiceStatus::Failed,
            Some(format!("service `{}` failed: {why}", svc.name)),
            Some(format!(
                "read its logs (`nexus workspace logs <workspace> {}`), fix the command `{}`, then restart it in the workspace with `sudo systemctl restart {}`",
                svc.name,
                svc.command,
                unit_name(&svc.name)
            )),
            logs,
        );
    }

    /// After start-up: re-check every few seconds, flag unhealthy/failed, track discovered ports.
    async fn watch(&mut self) {
        let plans = self.plan.services.clone();
        loop {
            tokio::time::sleep(self.watch_interval).await;
            let round = self.check().await;
            for svc in &plans {
                let status = self.status_of(&svc.name).unwrap_or(ServiceStatus::Failed);
                if status == ServiceStatus::Failed && !round.healthy.contains(&svc.name) {
                    continue;
                }
                if round.healthy.contains(&svc.name) {
                    self.misses.remove(&svc.name);
                    if status != ServiceStatus::Running {
                        self.set(&svc.name, ServiceStatus::Running, None, None, None);
                    }
                } else if round.unit_failed.contains(&svc.name) {
                    self.fail(svc, "it stopped and systemd gave up restarting it").await;
                } else {
                    let misses = {
                        let m = self.misses.entry(svc.name.clone()).or_insert(0);
                        *m += 1;
                        *m
                    };
                    if misses >= svc.health.retries.max(1) && status == ServiceStatus::Running {
                        self.set(
                            &svc.name,
                            ServiceStatus::Unhealthy,
                            Some(format!("service `{}` failed its last {} health checks", svc.name, misses)),
                            Some(format!("read its logs: `nexus workspace logs <workspace> {}`", svc.name)),
                            None,
                        );
                    }
                }
            }
            self.discovered = discovered(&plans, &round.listening);
            self.report();
        }
    }

    /// One exec that checks every service and lists listening ports.
    async fn check(&self) -> Round {
        let script = check_script(&self.plan.services, &self.repo_path());
        let out = self.exec(vec!["bash".into(), "-c".into(), script, STEP_CHECK.into()], true).await;
        parse_round(&out.stdout)
    }
}

/// The text of a service's systemd unit file.
fn unit(svc: &ServicePlan, wrapper: &str) -> String {
    format!(
        "[Unit]\nDescription=Nexus service {name}\nAfter=network.target\nStartLimitIntervalSec=60\nStartLimitBurst=5\n\n\
         [Service]\nUser=dev\nGroup=dev\nExecStart={wrapper}\nRestart=on-failure\nRestartSec=1\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        name = svc.name
    )
}

/// A bash script printing `ok <name>`, `failed <name>` per service, then `port <n>` per listening port.
fn check_script(services: &[ServicePlan], repo: &str) -> String {
    let mut s = String::new();
    for svc in services {
        let t = (svc.health.timeout_ms as f64 / 1000.0).max(0.1);
        let name = &svc.name;
        let probe = match &svc.health.kind {
            HealthKind::Http { port, path } => format!(
                "c=$(curl -s -o /dev/null -m {t} -w '%{{http_code}}' {}); [ \"${{c:-0}}\" -gt 0 ] && [ \"$c\" -lt 500 ]",
                shell_quote(&format!("http://127.0.0.1:{port}{path}"))
            ),
            HealthKind::Tcp { port } => format!("timeout {t} bash -c '</dev/tcp/127.0.0.1/{port}' 2>/dev/null"),
            HealthKind::Command { command } => {
                format!("(cd {} && timeout {t} bash -lc {}) >/dev/null 2>&1", shell_quote(repo), shell_quote(command))
            }
            HealthKind::None => format!("systemctl is-active --quiet {}", unit_name(name)),
        };
        s.push_str(&format!("if {probe}; then echo 'ok {name}'; fi\n"));
        s.push_str(&format!("if systemctl is-failed --quiet {}; then echo 'failed {name}'; fi\n", unit_name(name)));
    }
    // LISTEN sockets (state 0A) from /proc/net/tcp{,6}: the local port is the hex after the colon.
    s.push_str(
        "awk 'NR>1 && $4==\"0A\" {split($2,a,\":\"); print \"port\", a[2]}' /proc/net/tcp /proc/net/tcp6 2>/dev/null\n",
    );
    s
}

fn parse_round(stdout: &str) -> Round {
    let mut round = Round::default();
    for line in stdout.lines() {
        match line.split_once(' ') {
            Some(("ok", name)) => {
                round.healthy.insert(name.to_string());
            }
            Some(("failed", name)) => {
                round.unit_failed.insert(name.to_string());
            }
            Some(("port", hex)) => {
                if let Ok(p) = u16::from_str_radix(hex.trim(), 16) {
                    round.listening.insert(p);
                }
            }
            _ => {}
        }
    }
    round
}

/// Listening ports no service announced (sshd excluded), as discovered services.
fn discovered(plans: &[ServicePlan], listening: &BTreeSet<u16>) -> Vec<ServiceState> {
    let announced: BTreeSet<u16> = plans
        .iter()
        .flat_map(|s| {
            let check = match s.health.kind {
                HealthKind::Http { port, .. } | HealthKind::Tcp { port } => Some(port),
                _ => None,
            };
            s.port.into_iter().chain(check)
        })
        .collect();
    listening
        .iter()
        .filter(|p| **p != 22 && !announced.contains(p))
        .map(|p| ServiceState {
            name: format!("port-{p}"),
            port: Some(*p),
            status: ServiceStatus::Running,
            discovered: true,
            message: None,
            hint: None,
            last_logs: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_types::protocol::HealthCheck;

    fn svc(name: &str, port: Option<u16>, deps: &[&str], kind: HealthKind) -> ServicePlan {
        ServicePlan {
            name: name.into(),
            command: format!("run-{name}"),
            port,
            env: vec![("GREETING".into(), "it's here".into())],
            working_dir: String::new(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            health: HealthCheck::new(kind),
        }
    }

    use crate::fake::{Call, FakeProvider};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Runs a supervisor over the fake with check output from `checks`, collecting its reports.
    fn supervise(
        plan: Vec<ServicePlan>,
        checks: impl Fn() -> String + Send + Sync + 'static,
    ) -> (FakeProvider, mpsc::UnboundedReceiver<AgentMessage>, tokio::task::JoinHandle<()>) {
        let fake = FakeProvider::new();
        fake.insert_instance("ws-1", true);
        fake.on_exec(move |_, argv| argv.iter().any(|a| a == STEP_CHECK).then(|| ExecOutput::ok(checks())));
        let (tx, rx) = mpsc::unbounded_channel();
        let plan = ProjectPlan { source: "test".into(), setup: vec![], services: plan, ..Default::default() };
        let sup = Supervisor::new(Arc::new(fake.clone()), "ws-1".into(), 1, "proj".into(), plan, tx)
            .with_watch_interval(Duration::from_millis(10));
        (fake, rx, tokio::spawn(sup.run()))
    }

    /// Waits for a report in which `name` has `status` (one report can settle several services, so
    /// the last report is remembered and looked at first).
    async fn until(rx: &mut mpsc::UnboundedReceiver<AgentMessage>, name: &str, status: ServiceStatus) -> ServiceState {
        thread_local! {
            static LAST: std::cell::RefCell<Vec<ServiceState>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        if let Some(s) = LAST.with(|l| l.borrow().iter().find(|s| s.name == name && s.status == status).cloned()) {
            return s;
        }
        loop {
            let msg =
                tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a report in time").unwrap();
            if let AgentMessage::Services { services, generation, .. } = msg {
                assert_eq!(generation, 1);
                LAST.with(|l| *l.borrow_mut() = services.clone());
                if let Some(s) = services.into_iter().find(|s| s.name == name && s.status == status) {
                    return s;
                }
            }
        }
    }

    fn restarts(fake: &FakeProvider) -> Vec<String> {
        fake.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Exec { argv, .. } if argv.get(1).map(String::as_str) == Some("restart") => argv.last().cloned(),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_dependent_starts_only_after_its_dependency_is_healthy() {
        let web_up = Arc::new(AtomicBool::new(false));
        let flag = web_up.clone();
        let plan = vec![
            svc("api", Some(4000), &["web"], HealthKind::Tcp { port: 4000 }),
            svc("web", Some(3000), &[], HealthKind::Tcp { port: 3000 }),
        ];
        let (fake, mut rx, task) =
            supervise(
                plan,
                move || if flag.load(Ordering::SeqCst) { "ok web\nok api\n".into() } else { String::new() },
            );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(restarts(&fake), ["nexus-svc-web.service"], "api waits while web is unhealthy");
        web_up.store(true, Ordering::SeqCst);
        until(&mut rx, "api", ServiceStatus::Running).await;
        assert_eq!(restarts(&fake), ["nexus-svc-web.service", "nexus-svc-api.service"]);
        task.abort();
    }

    #[tokio::test]
    async fn a_running_service_turns_unhealthy_after_its_retries_and_recovers() {
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        let (_fake, mut rx, task) =
            supervise(vec![svc("web", Some(3000), &[], HealthKind::Tcp { port: 3000 })], move || {
                if flag.load(Ordering::SeqCst) {
                    "ok web\n".into()
                } else {
                    String::new()
                }
            });
        until(&mut rx, "web", ServiceStatus::Running).await;
        up.store(false, Ordering::SeqCst);
        let sick = until(&mut rx, "web", ServiceStatus::Unhealthy).await;
        assert!(sick.message.unwrap().contains("last 3 health checks"));
        assert!(sick.hint.unwrap().contains("nexus workspace logs"));
        up.store(true, Ordering::SeqCst);
        let back = until(&mut rx, "web", ServiceStatus::Running).await;
        assert_eq!((back.message, back.hint), (None, None));
        task.abort();
    }

    #[tokio::test]
    async fn a_failed_dependency_fails_its_dependents_with_a_reason() {
        let plan = vec![
            svc("web", Some(3000), &[], HealthKind::Tcp { port: 3000 }),
            svc("api", Some(4000), &["web"], HealthKind::Tcp { port: 4000 }),
        ];
        // systemd gave up on web: it never starts api.
        let (fake, mut rx, task) = supervise(plan, || "failed web\nport 0016\n".into());
        let web = until(&mut rx, "web", ServiceStatus::Failed).await;
        assert!(web.message.unwrap().contains("systemd gave up"));
        let api = until(&mut rx, "api", ServiceStatus::Failed).await;
        assert!(api.message.unwrap().contains("dependency `web` failed"), "api must say why");
        assert_eq!(restarts(&fake), ["nexus-svc-web.service"]);
        task.abort();
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf %s {}", shell_quote("a'b $HOME `x`"))])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a'b $HOME `x`");
    }

    #[test]
    fn rounds_parse_checks_and_ports() {
        let r = parse_round("ok web\nfailed api\nport 0BB8\nport 0016\nport zz\nnoise\n");
        assert_eq!(r.healthy, BTreeSet::from(["web".to_string()]));
        assert_eq!(r.unit_failed, BTreeSet::from(["api".to_string()]));
        assert_eq!(r.listening, BTreeSet::from([3000, 22]));
    }

    #[test]
    fn discovery_skips_sshd_and_announced_ports() {
        let plans = [svc("web", Some(3000), &[], HealthKind::Http { port: 3000, path: "/".into() })];
        let found = discovered(&plans, &BTreeSet::from([22, 3000, 8081]));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].name.as_str(), found[0].port, found[0].discovered), ("port-8081", Some(8081), true));
    }

    #[test]
    fn the_check_script_runs_and_reports_ports() {
        // Run the generated script for real against a local listener.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let plans = [
            svc("up", Some(port), &[], HealthKind::Tcp { port }),
            svc("cmd", None, &[], HealthKind::Command { command: "true".into() }),
            svc("down", None, &[], HealthKind::Command { command: "exit 3".into() }),
        ];
        let script = check_script(&plans, "/");
        let out = std::process::Command::new("bash").args(["-c", &script]).output().unwrap();
        let round = parse_round(&String::from_utf8_lossy(&out.stdout));
        assert!(round.healthy.contains("up") && round.healthy.contains("cmd"), "{round:?}");
        assert!(!round.healthy.contains("down"));
        assert!(round.listening.contains(&port), "{round:?}");
    }

    #[test]
    fn units_restart_on_failure_and_wrappers_export_the_port() {
        let s = svc("web", Some(3000), &[], HealthKind::None);
        let u = unit(&s, "/home/dev/.nexus/services/web.sh");
        assert!(u.contains("Restart=on-failure") && u.contains("User=dev") && u.contains("StartLimitBurst=5"));
        let sup = Supervisor::new(
            Arc::new(crate::fake::FakeProvider::new()),
            "ws-1".into(),
            1,
            "proj".into(),
            ProjectPlan::default(),
            mpsc::unbounded_channel().0,
        );
        let w = sup.wrapper(&s);
        assert!(w.contains("export PORT=3000\n"));
        assert!(w.contains(r"export GREETING='it'\''s here'"));
        assert!(w.ends_with("cd '/home/dev/proj'\nexec bash -lc 'run-web'\n"), "{w}");
    }
}
