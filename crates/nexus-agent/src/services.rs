//! Runs a workspace's services under the container's systemd: the setup steps once, a unit per
//! service (restart on failure, logs in the journal, `PORT` set), started in `depends_on` order
//! once their dependencies are healthy, then watched: health checks and listening-port discovery.
//!
//! Setup steps run detached in the container (their own process group, output to
//! `~/.nexus/logs/setup.log`) and are polled: a step may run for many minutes, which is no time to
//! hold one exec open, and polling gives the step's progress (its last output line) and a process
//! group to kill when the setup timeout passes. Progress goes to the server as `Setup` messages; a
//! failed or timed-out setup fails every service with the log's last lines and a hint by cause
//! ([`crate::setup_failure`]).
//!
//! Checks run *inside* the container (one `exec` per round for all services), so a dev server that
//! binds only to `127.0.0.1` (Vite's default) still counts as up. Every change of any service's
//! state is reported to the server as one `Services` message; a service that is `starting` always
//! says what it waits for.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexus_types::protocol::{
    AgentMessage, HealthKind, ProjectPlan, ServicePlan, ServiceState, SetupState, SetupStatus,
};
use nexus_types::ServiceStatus;
use tokio::sync::mpsc;

use crate::provider::{ExecOutput, Provider};
use crate::provision::{DEV_HOME, DEV_UID};
use crate::setup_failure;

/// `$0` of the combined check script, so fakes can answer it.
pub(crate) const STEP_CHECK: &str = "nexus-check";
/// `$0` of the script that starts a setup step in the background.
pub(crate) const STEP_SETUP: &str = "nexus-setup";
/// `$0` of the script that says whether the setup step still runs, and prints the log's end.
pub const STEP_SETUP_POLL: &str = "nexus-setup-poll";
/// `$0` of the script that kills the running setup step.
pub(crate) const STEP_SETUP_KILL: &str = "nexus-setup-kill";
/// `$0` of the script that prints the setup log's last lines.
pub const STEP_SETUP_LOG: &str = "nexus-setup-log";
/// Instance config key holding the setup steps that already ran ([`setup_done_value`]).
pub(crate) const SETUP_DONE_KEY: &str = "user.nexus.setup";

/// What [`SETUP_DONE_KEY`] holds once `steps` ran.
pub(crate) fn setup_done_value(steps: &[String]) -> String {
    steps.join("\n")
}
/// How often running services are checked once everything is up.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);
/// How often a running setup step is polled; also the most often its progress is reported.
const SETUP_POLL: Duration = Duration::from_secs(1);
/// Log lines attached to a failure.
const LOG_LINES: u32 = 20;
/// Log lines a failed setup's cause is looked for in.
const CAUSE_LINES: u32 = 200;
/// Longest last output line reported, in characters.
const MAX_LINE: usize = 200;
/// `PATH` of every exec the watcher runs: system directories only (root-owned in every image), so
/// nothing the workspace's user writes decides which `curl`, `systemctl` or `awk` runs, least of
/// all in the commands run as root.
pub(crate) const SAFE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// The most of a log the agent reads back for a report (a log's last lines can be one huge line).
const MAX_LOG_BYTES: u32 = 65536;

/// Shell functions the setup scripts share. `alive` is true while the step started last runs:
/// its pid file names a process that is really the step's shell (after a reboot the pid may
/// belong to anything), and sets `p` to it; the shell leads the step's process group.
const SETUP_FUNCTIONS: &str = r#"d="$HOME/.nexus/setup"; log="$HOME/.nexus/logs/setup.log"
alive() { p=$(cat "$d/pid" 2>/dev/null) && [ -n "$p" ] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q nexus-setup-step; }
"#;

/// Starts one setup step detached (`setsid -f`: its own session and process group, so the exec
/// that started it returns at once and a timeout can kill the whole group). `$1`: the repo's
/// directory under `$HOME`, `$2`: the step, `$3`: `1` for a setup's first step, which starts a
/// fresh log (keeping the previous attempt's as `setup.log.1`). A step left running by an earlier
/// supervisor (the agent restarted) is killed first: two installs at once corrupt each other.
const LAUNCH_SCRIPT: &str = r#"mkdir -p "$HOME/.nexus/logs" "$d" && cd "$HOME/$1" || exit 1
if alive; then kill -KILL "-$p" 2>/dev/null; fi
rm -f "$d/pid" "$d/exit" "$d/exit.tmp"
if [ "$3" = 1 ] && [ -s "$log" ]; then cp -f "$log" "$log.1" && : >"$log"; fi
printf '$ %s\n' "$2" >>"$log"
step='echo $$ >"$1/pid"; bash -lc "$2"; echo $? >"$1/exit.tmp"; mv -f "$1/exit.tmp" "$1/exit"'
setsid -f sh -c "$step" nexus-setup-step "$d" "$2" </dev/null >>"$log" 2>&1
"#;

/// Prints `exit <code>` once the step has finished, `gone` if it died without an exit status
/// (killed), else `running`; then the log's last bytes.
const POLL_SCRIPT: &str = r#"if [ -f "$d/exit" ]; then echo "exit $(cat "$d/exit")"
elif alive || [ ! -f "$d/pid" ]; then echo running
elif [ -f "$d/exit" ]; then echo "exit $(cat "$d/exit")"
else echo gone; fi
tail -c 4096 "$log" 2>/dev/null
"#;

/// Kills the running step's process group: TERM, then KILL whatever is left after 5 s.
const KILL_SCRIPT: &str = r#"alive || exit 0
kill -TERM "-$p" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "-$p" 2>/dev/null || exit 0; sleep 0.5; done
kill -KILL "-$p" 2>/dev/null
exit 0
"#;

/// Prints the setup log's last `$1` lines.
const LOG_SCRIPT: &str = r#"tail -n "$1" "$log" 2>/dev/null | tail -c 65536
"#;

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
    setup_poll: Duration,
    /// The setup's state, once it has one (never for a plan without setup steps).
    setup: Option<SetupState>,
    setup_sent: Option<SetupState>,
    /// Where to keep a prebuild once setup succeeds; `None`: keep none.
    prebuild: Option<crate::prebuilds::SaveFrom>,
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
        let waiting = if plan.setup.is_empty() { "about to be started" } else { "waiting for setup to finish" };
        let states = plan
            .services
            .iter()
            .map(|s| ServiceState { message: Some(waiting.into()), ..state(s, ServiceStatus::Starting) })
            .collect();
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
            setup_poll: SETUP_POLL,
            setup: None,
            setup_sent: None,
            prebuild: None,
        }
    }

    /// Keeps a prebuild of the workspace as `from` says when its setup succeeds.
    pub(crate) fn with_prebuild(mut self, from: Option<crate::prebuilds::SaveFrom>) -> Self {
        self.prebuild = from;
        self
    }

    /// Checks running services every `every` instead of every 5 s, and polls setup steps as often.
    #[cfg(test)]
    fn with_watch_interval(mut self, every: Duration) -> Self {
        self.watch_interval = every;
        self.setup_poll = every;
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

    /// Sends the setup's state if it changed in more than its elapsed time: a step that prints
    /// nothing sends nothing (the server counts the time itself), and one that prints a lot sends at
    /// most once per poll.
    fn report_setup(&mut self) {
        let Some(state) = self.setup.clone() else { return };
        if self
            .setup_sent
            .as_ref()
            .is_some_and(|sent| SetupState { elapsed_ms: state.elapsed_ms, ..sent.clone() } == state)
        {
            return;
        }
        self.setup_sent = Some(state.clone());
        let _ = self.tx.send(AgentMessage::Setup {
            workspace_id: self.id.clone(),
            generation: self.generation,
            setup: state,
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
        let env = vec![
            ("HOME".to_string(), DEV_HOME.to_string()),
            ("USER".to_string(), "dev".to_string()),
            ("PATH".to_string(), SAFE_PATH.to_string()),
        ];
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

    /// Runs the setup steps unless this exact list already ran; false when one failed or the setup
    /// timed out (its services are failed then, saying why).
    async fn setup(&mut self) -> bool {
        let steps = self.plan.setup.clone();
        if steps.is_empty() {
            return true;
        }
        let total = steps.len() as u32;
        let done = setup_done_value(&steps);
        let idle = SetupState {
            status: SetupStatus::Running,
            step: None,
            step_number: None,
            steps: total,
            elapsed_ms: 0,
            last_line: None,
            message: None,
            hint: None,
            last_logs: None,
        };
        if self.provider.get_config(&self.id, SETUP_DONE_KEY).await.ok().flatten().as_deref() == Some(done.as_str()) {
            let from = self.provider.get_config(&self.id, crate::prebuilds::FROM_KEY).await.ok().flatten();
            let message = match from.filter(|f| !f.is_empty()) {
                Some(prebuild) => format!(
                    "from prebuild {prebuild}: the workspace started from this node's prebuilt copy of the repo with \
                     the same lock files, so setup did not run again (`--no-prebuild` runs it afresh)"
                ),
                None => "already done: it ran when the workspace was first started".into(),
            };
            self.setup = Some(SetupState { status: SetupStatus::Done, message: Some(message), ..idle });
            self.report_setup();
            return true;
        }
        let started = Instant::now();
        let timeout = Duration::from_millis(self.plan.setup_timeout_ms());
        for svc in self.plan.services.clone() {
            self.set(&svc.name, ServiceStatus::Starting, Some("waiting for setup to finish".into()), None, None);
        }
        self.report();
        for (i, step) in steps.iter().enumerate() {
            self.setup = Some(SetupState {
                step: Some(step.clone()),
                step_number: Some(i as u32 + 1),
                elapsed_ms: millis(started.elapsed()),
                last_line: self.setup.as_ref().and_then(|s| s.last_line.clone()),
                ..idle.clone()
            });
            self.report_setup();
            let first = if i == 0 { "1" } else { "0" };
            let launch = self.setup_exec(LAUNCH_SCRIPT, STEP_SETUP, &[&self.repo_dir.clone(), step, first], true).await;
            if launch.code != 0 {
                let why = format!("setup step `{step}` could not be started: {}", launch.last_stderr_line());
                return self.setup_ended(SetupStatus::Failed, why, started).await;
            }
            loop {
                tokio::time::sleep(self.setup_poll).await;
                let out = self.setup_exec(POLL_SCRIPT, STEP_SETUP_POLL, &[], true).await;
                let (progress, line) = parse_poll(&out.stdout);
                let elapsed = started.elapsed();
                if let Some(s) = self.setup.as_mut() {
                    s.elapsed_ms = millis(elapsed);
                    if line.is_some() {
                        s.last_line = line;
                    }
                }
                match progress {
                    StepProgress::Exited(0) => break,
                    StepProgress::Exited(code) => {
                        let why = format!("setup step `{step}` failed (exit {code}) after {}", human(elapsed));
                        return self.setup_ended(SetupStatus::Failed, why, started).await;
                    }
                    StepProgress::Gone => {
                        let why = format!(
                            "setup step `{step}` was killed after {} before it finished (out of memory?)",
                            human(elapsed)
                        );
                        return self.setup_ended(SetupStatus::Failed, why, started).await;
                    }
                    StepProgress::Running if elapsed >= timeout => {
                        self.setup_exec(KILL_SCRIPT, STEP_SETUP_KILL, &[], false).await;
                        let why = format!(
                            "setup did not finish within {}: step `{step}` was still running and was stopped",
                            human(timeout)
                        );
                        return self.setup_ended(SetupStatus::TimedOut, why, started).await;
                    }
                    StepProgress::Running => self.report_setup(),
                }
            }
        }
        let _ = self.provider.set_config(&self.id, SETUP_DONE_KEY, &done).await;
        self.setup = Some(SetupState {
            status: SetupStatus::Done,
            elapsed_ms: millis(started.elapsed()),
            last_line: self.setup.as_ref().and_then(|s| s.last_line.clone()),
            ..idle
        });
        self.report_setup();
        // In the background: on LXD the copy and its clean-up take seconds, and the services should
        // not wait for them. The copy is a snapshot taken at its start, before services run.
        if let Some(from) = self.prebuild.clone() {
            let (provider, id, plan) = (self.provider.clone(), self.id.clone(), self.plan.clone());
            tokio::spawn(async move {
                let saved = Instant::now();
                match crate::prebuilds::save(&*provider, &id, &from, &plan).await {
                    Ok(name) => tracing::info!(
                        workspace = %id,
                        prebuild = %name,
                        elapsed_ms = saved.elapsed().as_millis() as u64,
                        "kept a prebuild"
                    ),
                    Err(why) => tracing::warn!(workspace = %id, %why, "keeping a prebuild failed"),
                }
            });
        }
        true
    }

    /// Records a setup that failed or timed out (`why`): the cause is read from the log, and every
    /// service fails with it. Always false, for `setup` to return.
    async fn setup_ended(&mut self, status: SetupStatus, why: String, started: Instant) -> bool {
        let log = self.setup_exec(LOG_SCRIPT, STEP_SETUP_LOG, &[&CAUSE_LINES.to_string()], true).await.stdout;
        let hint = setup_failure::classify(&log).hint(&self.plan).unwrap_or_else(|| match status {
            SetupStatus::TimedOut => format!(
                "see what it was waiting for with `nexus workspace logs <workspace> --setup`; if it only needs longer, \
                 raise `setup_timeout` in .nexus/config.yaml (now {}), then stop and start the workspace",
                human(Duration::from_millis(self.plan.setup_timeout_ms()))
            ),
            _ => format!(
                "read the whole log with `nexus workspace logs <workspace> --setup`, fix the step (in \
                 .nexus/config.yaml or the project) and try it by hand in ~/{}, then stop and start the workspace",
                self.repo_dir
            ),
        });
        let lines: Vec<&str> = log.trim_end().lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_LINES as usize)..].join("\n");
        let last_logs = (!tail.trim().is_empty()).then_some(tail);
        if let Some(s) = self.setup.as_mut() {
            s.status = status;
            s.elapsed_ms = millis(started.elapsed());
            s.message = Some(why.clone());
            s.hint = Some(hint.clone());
            s.last_logs = last_logs.clone();
        }
        for svc in self.plan.services.clone() {
            self.set(
                &svc.name,
                ServiceStatus::Failed,
                Some(format!("not started: {why}")),
                Some(hint.clone()),
                last_logs.clone(),
            );
        }
        self.report_setup();
        false
    }

    /// Runs one of the setup scripts (`SETUP_FUNCTIONS` + `script`) with `$0` = `name`.
    async fn setup_exec(&self, script: &str, name: &str, args: &[&str], as_dev: bool) -> ExecOutput {
        let mut argv =
            vec!["/bin/sh".to_string(), "-c".to_string(), format!("{SETUP_FUNCTIONS}{script}"), name.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        self.exec(argv, as_dev).await
    }

    async fn tail(&self, command: &str) -> Option<String> {
        let capped = format!("{{ {command}; }} | tail -c {MAX_LOG_BYTES}");
        let out = self.exec(vec!["/bin/sh".into(), "-c".into(), capped], false).await;
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
        let out = self.exec(vec!["/bin/sh".into(), "-c".into(), script], false).await;
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
                            vec!["/bin/systemctl".into(), "restart".into(), "--no-block".into(), unit_name(&svc.name)],
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
                    } else {
                        self.set(&svc.name, ServiceStatus::Starting, Some(waiting_for_health(svc)), None, None);
                    }
                } else if let Some(dep) =
                    svc.depends_on.iter().zip(&deps).find(|(_, s)| **s != Some(ServiceStatus::Running)).map(|(d, _)| d)
                {
                    let why = format!("waiting for `{dep}` to be healthy before it starts");
                    self.set(&svc.name, ServiceStatus::Starting, Some(why), None, None);
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
        // A dev server refusing the workspace's Node (or failing to download) says so in its log.
        let cause = setup_failure::classify(logs.as_deref().unwrap_or_default()).hint(&self.plan);
        let hint = cause.unwrap_or_else(|| {
            format!(
                "read its logs (`nexus workspace logs <workspace> {}`), fix the command `{}`, then restart it in the workspace with `sudo systemctl restart {}`",
                svc.name,
                svc.command,
                unit_name(&svc.name)
            )
        });
        self.set(
            &svc.name,
            ServiceStatus::Failed,
            Some(format!("service `{}` failed: {why}", svc.name)),
            Some(hint),
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
        let out = self.exec(vec!["/bin/bash".into(), "-c".into(), script, STEP_CHECK.into()], true).await;
        parse_round(&out.stdout)
    }
}

/// Where a setup step is, as a poll saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepProgress {
    /// Still running (or not started yet).
    Running,
    /// Finished with this exit status.
    Exited(i32),
    /// Died without an exit status: killed.
    Gone,
}

/// Reads [`POLL_SCRIPT`]'s output: the step's progress and the log's last line. Output without a
/// status line (the exec itself failed) reads as still running; the timeout ends that.
fn parse_poll(stdout: &str) -> (StepProgress, Option<String>) {
    let (first, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
    let progress = match first.trim().split_once(' ') {
        Some(("exit", code)) => StepProgress::Exited(code.trim().parse().unwrap_or(-1)),
        _ if first.trim() == "gone" => StepProgress::Gone,
        _ => StepProgress::Running,
    };
    (progress, last_line(rest))
}

/// The last line a terminal would show of `text`: progress redraws (`\r`) and ANSI escapes
/// removed, shortened to [`MAX_LINE`] characters.
fn last_line(text: &str) -> Option<String> {
    let line = text.split(['\n', '\r']).map(strip_ansi).map(|l| l.trim().to_string()).rfind(|l| !l.is_empty())?;
    if line.chars().count() <= MAX_LINE {
        return Some(line);
    }
    Some(line.chars().take(MAX_LINE - 1).chain(['…']).collect())
}

/// `text` without ANSI escape sequences (colours, cursor movement) and other control characters.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters, then one final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC (window titles, hyperlinks): up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `12 s`, `3 min 5 s`, `15 min`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// What a started service that is not healthy yet waits for.
fn waiting_for_health(svc: &ServicePlan) -> String {
    let within = format!("up to {}", human(Duration::from_millis(svc.health.start_timeout_ms)));
    match &svc.health.kind {
        HealthKind::Http { port, path } => {
            format!("started; waiting for http://localhost:{port}{path} to answer ({within})")
        }
        HealthKind::Tcp { port } => format!("started; waiting for port {port} to accept connections ({within})"),
        HealthKind::Command { .. } => format!("started; waiting for its health check command to pass ({within})"),
        HealthKind::None => "started; waiting for systemd to report it active".into(),
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
        let plan = ProjectPlan { source: "test".into(), setup: vec![], services: plan, ..Default::default() };
        supervise_plan(FakeProvider::new(), plan, checks)
    }

    /// Like [`supervise`], for a whole plan over a `fake` the test has scripted.
    fn supervise_plan(
        fake: FakeProvider,
        plan: ProjectPlan,
        checks: impl Fn() -> String + Send + Sync + 'static,
    ) -> (FakeProvider, mpsc::UnboundedReceiver<AgentMessage>, tokio::task::JoinHandle<()>) {
        if !fake.exists("ws-1") {
            fake.insert_instance("ws-1", true);
        }
        fake.on_exec(move |_, argv| argv.iter().any(|a| a == STEP_CHECK).then(|| ExecOutput::ok(checks())));
        let (tx, rx) = mpsc::unbounded_channel();
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

    /// Every message until one satisfies `done`, which is returned last.
    async fn messages_until(
        rx: &mut mpsc::UnboundedReceiver<AgentMessage>,
        done: impl Fn(&AgentMessage) -> bool,
    ) -> Vec<AgentMessage> {
        let mut seen = Vec::new();
        loop {
            let msg =
                tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a report in time").unwrap();
            let last = done(&msg);
            seen.push(msg);
            if last {
                return seen;
            }
        }
    }

    fn setup_of(msg: &AgentMessage) -> Option<&SetupState> {
        match msg {
            AgentMessage::Setup { setup, generation, workspace_id } => {
                assert_eq!((*generation, workspace_id.as_str()), (1, "ws-1"));
                Some(setup)
            }
            _ => None,
        }
    }

    fn services_of(msg: &AgentMessage) -> Option<&[ServiceState]> {
        match msg {
            AgentMessage::Services { services, .. } => Some(services),
            _ => None,
        }
    }

    fn is_setup(status: SetupStatus) -> impl Fn(&AgentMessage) -> bool {
        move |m| setup_of(m).is_some_and(|s| s.status == status)
    }

    /// A plan with setup `steps` and one service `web` on port 3000.
    fn setup_plan(steps: &[&str], timeout_ms: Option<u64>) -> ProjectPlan {
        ProjectPlan {
            source: "test".into(),
            setup: steps.iter().map(|s| s.to_string()).collect(),
            services: vec![svc("web", Some(3000), &[], HealthKind::Tcp { port: 3000 })],
            setup_timeout_ms: timeout_ms,
            ..Default::default()
        }
    }

    type Uid = (u32, u32);

    /// Answers the setup scripts: polls with what `poll` returns, the log with `log`.
    fn script_setup(fake: &FakeProvider, poll: impl Fn() -> String + Send + Sync + 'static, log: &'static str) {
        fake.on_exec(move |_, argv| {
            let step = argv.get(3).map(String::as_str);
            match step {
                Some(STEP_SETUP_POLL) => Some(ExecOutput::ok(poll())),
                Some(STEP_SETUP_LOG) => Some(ExecOutput::ok(log)),
                _ => None,
            }
        });
    }

    /// The argv and user of every exec of the script named `name`.
    fn execs_named(fake: &FakeProvider, name: &str) -> Vec<(Vec<String>, Option<Uid>)> {
        fake.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Exec { argv, user, .. } if argv.get(3).map(String::as_str) == Some(name) => Some((argv, user)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_running_setup_reports_its_step_and_last_line_and_services_say_they_wait_for_it() {
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let fake = FakeProvider::new();
        script_setup(
            &fake,
            move || {
                if flag.load(Ordering::SeqCst) {
                    "exit 0\n$ npm ci\nadded 12 packages in 3s\n".into()
                } else {
                    "running\n$ npm ci\n\u{1b}[32mnpm\u{1b}[0m http fetch GET 200 https://registry.npmjs.org/react 12ms\n"
                        .into()
                }
            },
            "",
        );
        let plan = setup_plan(&["npm ci", "npm run build"], None);
        let (fake, mut rx, task) = supervise_plan(fake, plan, || "ok web\n".into());

        let seen = messages_until(&mut rx, |m| setup_of(m).is_some_and(|s| s.last_line.is_some())).await;
        let running = setup_of(seen.last().unwrap()).unwrap();
        assert_eq!(running.status, SetupStatus::Running);
        assert_eq!((running.step.as_deref(), running.step_number, running.steps), (Some("npm ci"), Some(1), 2));
        assert_eq!(
            running.last_line.as_deref(),
            Some("npm http fetch GET 200 https://registry.npmjs.org/react 12ms"),
            "colours are stripped"
        );
        let waiting = seen.iter().rev().find_map(services_of).expect("a services report during setup");
        assert_eq!(waiting[0].status, ServiceStatus::Starting);
        assert_eq!(waiting[0].message.as_deref(), Some("waiting for setup to finish"));

        // The same line again is not news: nothing more is sent while the step prints nothing new.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err(), "no report without a change");

        finished.store(true, Ordering::SeqCst);
        let seen = messages_until(&mut rx, is_setup(SetupStatus::Done)).await;
        let steps: Vec<_> = seen.iter().filter_map(setup_of).filter_map(|s| s.step.clone()).collect();
        assert!(steps.contains(&"npm run build".to_string()), "the second step is reported: {steps:?}");
        let done = setup_of(seen.last().unwrap()).unwrap();
        assert_eq!((done.step.as_deref(), done.message.as_deref()), (None, None));
        assert_eq!(done.last_line.as_deref(), Some("added 12 packages in 3s"));
        until(&mut rx, "web", ServiceStatus::Running).await;

        // Each step was started detached, as dev, in the repo; the first one starts a fresh log.
        let launches = execs_named(&fake, STEP_SETUP);
        assert_eq!(launches.len(), 2);
        assert_eq!(launches[0].0[4..], ["proj", "npm ci", "1"]);
        assert_eq!(launches[1].0[4..], ["proj", "npm run build", "0"]);
        assert_eq!(launches[0].1, Some((DEV_UID, DEV_UID)));
        assert!(fake.calls().contains(&Call::SetConfig(
            "ws-1".into(),
            SETUP_DONE_KEY.into(),
            "npm ci\nnpm run build".into()
        )));
        task.abort();
    }

    #[tokio::test]
    async fn every_exec_of_the_watcher_runs_an_absolute_program_with_the_system_path() {
        let fake = FakeProvider::new();
        script_setup(&fake, || "exit 0\n$ npm ci\ndone\n".into(), "");
        let plan = setup_plan(&["npm ci"], None);
        let (fake, mut rx, task) = supervise_plan(fake, plan, || "ok web\n".into());
        until(&mut rx, "web", ServiceStatus::Running).await;
        task.abort();
        let execs: Vec<_> = fake
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Exec { argv, env, .. } => Some((argv, env)),
                _ => None,
            })
            .collect();
        assert!(execs.len() >= 3, "setup, units and checks ran: {execs:?}");
        for (argv, env) in execs {
            assert!(argv[0].starts_with('/'), "{argv:?} runs a program found through PATH");
            assert!(env.contains(&("PATH".to_string(), SAFE_PATH.to_string())), "{argv:?} without the system PATH");
        }
        assert!(LOG_SCRIPT.contains("| tail -c 65536"), "a huge last line is cut before the agent reads it");
    }

    #[tokio::test]
    async fn a_setup_past_its_timeout_is_killed_and_fails_its_services() {
        let fake = FakeProvider::new();
        script_setup(
            &fake,
            || "running\n$ npm ci\nnpm http fetch GET 200 https://registry.npmjs.org/a\n".into(),
            "$ npm ci\nnpm http fetch GET 200 https://registry.npmjs.org/a\n",
        );
        let (fake, mut rx, task) = supervise_plan(fake, setup_plan(&["npm ci"], Some(60)), || "ok web\n".into());
        let seen = messages_until(&mut rx, is_setup(SetupStatus::TimedOut)).await;
        let out = setup_of(seen.last().unwrap()).unwrap();
        assert_eq!(out.step.as_deref(), Some("npm ci"));
        let message = out.message.clone().unwrap();
        assert!(message.starts_with("setup did not finish within 0 s: step `npm ci` was still running"), "{message}");
        assert!(out.hint.as_deref().unwrap().contains("raise `setup_timeout` in .nexus/config.yaml"), "{out:?}");
        assert_eq!(out.last_logs.as_deref(), Some("$ npm ci\nnpm http fetch GET 200 https://registry.npmjs.org/a"));
        // The step's process group was killed, as root (a step may have used sudo).
        let kills = execs_named(&fake, STEP_SETUP_KILL);
        assert_eq!(kills.len(), 1);
        assert_eq!(kills[0].1, None);
        let web = until(&mut rx, "web", ServiceStatus::Failed).await;
        assert_eq!(web.message.as_deref(), Some(format!("not started: {message}").as_str()));
        assert_eq!(web.hint, out.hint);
        assert_eq!(web.last_logs, out.last_logs);
        assert!(execs_named(&fake, STEP_CHECK).is_empty(), "services are never started");
        assert!(!fake.calls().iter().any(|c| matches!(c, Call::SetConfig(_, k, _) if k == SETUP_DONE_KEY)));
        task.abort();
    }

    #[tokio::test]
    async fn a_setup_failing_on_tls_fails_its_services_with_the_tls_hint_and_the_last_20_lines() {
        let fake = FakeProvider::new();
        let mut log = String::from("$ npm ci\n");
        for i in 0..30 {
            log.push_str(&format!("npm http fetch GET 200 https://registry.npmjs.org/pkg-{i}\n"));
        }
        log.push_str("npm error code SELF_SIGNED_CERT_IN_CHAIN\nnpm error request to https://registry.npmjs.org/react failed, reason: self-signed certificate in certificate chain\n");
        let log: &'static str = Box::leak(log.into_boxed_str());
        script_setup(&fake, || "exit 1\n".into(), log);
        let (_fake, mut rx, task) = supervise_plan(fake, setup_plan(&["npm ci"], None), || "ok web\n".into());
        let seen = messages_until(&mut rx, is_setup(SetupStatus::Failed)).await;
        let failed = setup_of(seen.last().unwrap()).unwrap();
        assert!(
            failed.message.as_deref().unwrap().starts_with("setup step `npm ci` failed (exit 1) after"),
            "{failed:?}"
        );
        let hint = failed.hint.clone().unwrap();
        assert!(hint.starts_with("the workspace does not trust the TLS certificate of registry.npmjs.org"), "{hint}");
        let logs = failed.last_logs.clone().unwrap();
        assert_eq!(logs.lines().count(), 20, "{logs}");
        assert!(logs.ends_with("self-signed certificate in certificate chain"), "{logs}");
        let web = until(&mut rx, "web", ServiceStatus::Failed).await;
        assert_eq!((web.hint.as_deref(), web.last_logs.as_deref()), (Some(hint.as_str()), Some(logs.as_str())));
        task.abort();
    }

    #[tokio::test]
    async fn a_setup_that_already_ran_is_reported_done_and_not_run_again() {
        let fake = FakeProvider::new();
        fake.insert_instance("ws-1", true);
        fake.set_config("ws-1", SETUP_DONE_KEY, "npm ci").await.unwrap();
        let (fake, mut rx, task) = supervise_plan(fake, setup_plan(&["npm ci"], None), || "ok web\n".into());
        let seen = messages_until(&mut rx, is_setup(SetupStatus::Done)).await;
        let done = setup_of(seen.last().unwrap()).unwrap();
        assert!(done.message.as_deref().unwrap().starts_with("already done"), "{done:?}");
        until(&mut rx, "web", ServiceStatus::Running).await;
        assert!(execs_named(&fake, STEP_SETUP).is_empty());
        task.abort();
    }

    #[tokio::test]
    async fn a_started_service_says_what_it_waits_for() {
        let plan = vec![
            svc("web", Some(3000), &[], HealthKind::Http { port: 3000, path: "/".into() }),
            svc("api", Some(4000), &["web"], HealthKind::Tcp { port: 4000 }),
        ];
        let (_fake, mut rx, task) = supervise(plan, String::new);
        let seen = messages_until(&mut rx, |m| {
            services_of(m).is_some_and(|s| s[0].message.as_deref() != Some("about to be started"))
        })
        .await;
        let services = services_of(seen.last().unwrap()).unwrap();
        assert_eq!(
            services[0].message.as_deref(),
            Some("started; waiting for http://localhost:3000/ to answer (up to 1 min)")
        );
        assert_eq!(services[1].message.as_deref(), Some("waiting for `web` to be healthy before it starts"));
        task.abort();
    }

    #[test]
    fn polls_read_progress_and_the_last_visible_line() {
        assert_eq!(parse_poll("exit 0\n$ x\ndone\n"), (StepProgress::Exited(0), Some("done".into())));
        assert_eq!(parse_poll("exit 127\n"), (StepProgress::Exited(127), None));
        assert_eq!(parse_poll("gone\nabc"), (StepProgress::Gone, Some("abc".into())));
        assert_eq!(parse_poll(""), (StepProgress::Running, None), "a failed exec is no verdict");
        // Progress bars redraw with \r; the last drawn state is what a terminal shows.
        let bar = "running\nDownloading 10%\rDownloading 55%\r\u{1b}[2K\u{1b}]0;title\u{7}Downloading 90%\r\n\n";
        assert_eq!(parse_poll(bar).1.as_deref(), Some("Downloading 90%"));
        let long = format!("running\n{}\n", "é".repeat(500));
        let line = parse_poll(&long).1.unwrap();
        assert_eq!(line.chars().count(), MAX_LINE);
        assert!(line.ends_with('…'));
        assert_eq!(human(Duration::from_secs(12)), "12 s");
        assert_eq!(human(Duration::from_secs(185)), "3 min 5 s");
        assert_eq!(human(Duration::from_secs(900)), "15 min");
    }

    /// Runs a setup script for real with `sh`, in a `HOME` of the test's own.
    fn run_setup_script(home: &std::path::Path, script: &str, name: &str, args: &[&str]) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{SETUP_FUNCTIONS}{script}"))
            .arg(name)
            .args(args)
            .env("HOME", home)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the real scripts until `want` holds for the parsed poll (at most 10 s).
    fn poll_until(
        home: &std::path::Path,
        want: impl Fn(&(StepProgress, Option<String>)) -> bool,
    ) -> (StepProgress, Option<String>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let polled = parse_poll(&run_setup_script(home, POLL_SCRIPT, STEP_SETUP_POLL, &[]));
            if want(&polled) || Instant::now() > deadline {
                return polled;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn the_setup_scripts_run_steps_detached_report_them_and_kill_them() {
        // A home of its own (no tempfile crate here); removed at the end.
        let home = std::env::temp_dir().join(format!("nexus-setup-scripts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(home.join("proj")).unwrap();
        let home = Home(home);
        let launch = Instant::now();
        run_setup_script(home.path(), LAUNCH_SCRIPT, STEP_SETUP, &["proj", "pwd; echo one; exit 3", "1"]);
        let polled = poll_until(home.path(), |p| p.0 != StepProgress::Running);
        assert_eq!(polled, (StepProgress::Exited(3), Some("one".into())));
        let log = std::fs::read_to_string(home.path().join(".nexus/logs/setup.log")).unwrap();
        assert_eq!(log, format!("$ pwd; echo one; exit 3\n{}\none\n", home.path().join("proj").display()));

        // A new setup keeps the last attempt's log; the launch returns while the step still runs.
        run_setup_script(home.path(), LAUNCH_SCRIPT, STEP_SETUP, &["proj", "echo started; sleep 30; echo late", "1"]);
        assert!(launch.elapsed() < Duration::from_secs(10), "the launch does not wait for the step");
        let polled = poll_until(home.path(), |p| p.1.as_deref() == Some("started"));
        assert_eq!(polled, (StepProgress::Running, Some("started".into())));
        assert!(std::fs::read_to_string(home.path().join(".nexus/logs/setup.log.1")).unwrap().ends_with("one\n"));
        assert_eq!(run_setup_script(home.path(), LOG_SCRIPT, STEP_SETUP_LOG, &["1"]), "started\n");

        // Killing takes the step's whole process group, `sleep` included.
        let pid = std::fs::read_to_string(home.path().join(".nexus/setup/pid")).unwrap();
        run_setup_script(home.path(), KILL_SCRIPT, STEP_SETUP_KILL, &[]);
        assert_eq!(poll_until(home.path(), |p| p.0 == StepProgress::Gone).0, StepProgress::Gone);
        // Members that are not zombies (where nothing reaps orphans, as in some sandboxes, they stay).
        let group_alive = || {
            let script = format!("ps -eo pgid=,stat= | awk '$1 == {} && $2 !~ /^Z/' | grep -q .", pid.trim());
            std::process::Command::new("sh").args(["-c", &script]).status().unwrap().success()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!group_alive(), "the step's processes are gone");
        let log = std::fs::read_to_string(home.path().join(".nexus/logs/setup.log")).unwrap();
        assert_eq!(log, "$ echo started; sleep 30; echo late\nstarted\n", "the step never got to its end");
    }

    /// A directory removed when dropped.
    struct Home(std::path::PathBuf);

    impl Home {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Home {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
