//! `nexus workspace services`: what runs in a workspace — its setup, each service's status, port and
//! URL (on the port it is forwarded from on this machine), what a starting one waits for, and for
//! failures the message, last log lines and hint.

use nexus_types::api::{ServiceInfo, SetupView, WorkspaceView};
use nexus_types::protocol::SetupStatus;
use nexus_types::state::ServiceStatus;

use super::{human_ms, local_urls, open, shorten, LAST_LINE_CHARS};
use crate::error::Result;
use crate::ui::{Report, Ui};

/// A workspace's services: JSON is the list, text the table.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct Services {
    services: Vec<ServiceInfo>,
    #[serde(skip)]
    view: WorkspaceView,
}

impl Report for Services {
    fn text(&self, ui: &Ui) {
        let table = render(&self.view);
        ui.result(table.strip_suffix('\n').unwrap_or(&table));
    }
}

/// The services of one of the caller's workspaces, by name or id.
pub async fn run(workspace: &str, server: Option<String>) -> Result<Services> {
    let view = local_urls(open(workspace, server).await?.1);
    Ok(Services { services: view.services.clone(), view })
}

/// The services table for people: the setup first (when the project has one), then each service's
/// name, status, port and URL — a starting one with what it waits for, a failed one with its message,
/// last log lines and hint.
pub(crate) fn render(ws: &WorkspaceView) -> String {
    let mut out = format!("Services of {} ({}; from {})\n", ws.name, ws.status, ws.services_source);
    let setup_name = ws.setup.as_ref().map(|_| "setup".len()).unwrap_or(0);
    let width = ws.services.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4).max(setup_name);
    if let Some(setup) = &ws.setup {
        render_setup(&mut out, &ws.name, setup, width);
    }
    if ws.services.is_empty() {
        out.push_str("  none yet (add .nexus/config.yaml, or start something that listens on a port)\n");
        return out;
    }
    // A failed setup fails every service with its own log and hint: shown once, above.
    let setup_failure = ws.setup.as_ref().filter(|s| matches!(s.status, SetupStatus::Failed | SetupStatus::TimedOut));
    for s in &ws.services {
        let port = s.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let url = s.url.clone().unwrap_or_default();
        let tag = if s.discovered { "  (discovered)" } else { "" };
        let waits = match (&s.message, s.status) {
            (Some(m), ServiceStatus::Starting) => format!(" — {m}"),
            _ => String::new(),
        };
        out.push_str(&format!("  {:width$}  {:9}  {:>5}  {url}{tag}{waits}\n", s.name, s.status.as_str(), port));
        if let Some(m) = s.message.as_ref().filter(|_| s.status != ServiceStatus::Starting) {
            out.push_str(&format!("      {m}\n"));
        }
        let setup_logs = setup_failure.and_then(|f| f.last_logs.as_ref());
        if let Some(logs) = s.last_logs.as_ref().filter(|l| Some(*l) != setup_logs) {
            for line in logs.lines() {
                out.push_str(&format!("      | {line}\n"));
            }
        }
        let setup_hint = setup_failure.and_then(|f| f.hint.as_ref());
        if let Some(h) = s.hint.as_ref().filter(|h| Some(*h) != setup_hint) {
            out.push_str(&format!("      hint: {h}\n"));
        }
    }
    out.push_str("URLs work on your machine while `nexus workspace connect` forwards the ports.\n");
    out
}

/// The setup's row, e.g. ``setup  running 1/2 `npm ci` · 12 s · <last line>``; a failed or timed-out
/// one with its last log lines, hint and where the whole log is.
fn render_setup(out: &mut String, workspace: &str, setup: &SetupView, width: usize) {
    let took = human_ms(setup.elapsed_ms);
    let summary = match setup.status {
        SetupStatus::Pending => {
            let steps = format!("{} step{}", setup.steps, if setup.steps == 1 { "" } else { "s" });
            match &setup.message {
                Some(m) => format!("pending ({steps}): {m}"),
                None => format!("pending ({steps})"),
            }
        }
        SetupStatus::Running => {
            let mut parts = vec![match setup.step_number {
                Some(n) => format!("running {n}/{}", setup.steps),
                None => "running".into(),
            }];
            if let Some(step) = &setup.step {
                parts[0].push_str(&format!(" `{step}`"));
            }
            parts.push(took);
            if let Some(line) = setup.last_line.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
                parts.push(shorten(line, LAST_LINE_CHARS));
            }
            parts.join(" · ")
        }
        SetupStatus::Done => match &setup.message {
            Some(m) => format!("done in {took}: {m}"),
            None => format!("done in {took}"),
        },
        SetupStatus::Failed | SetupStatus::TimedOut => {
            let what = if setup.status == SetupStatus::Failed { "failed" } else { "timed out" };
            format!("{what}: {}", setup.message.as_deref().unwrap_or("see the setup log"))
        }
    };
    out.push_str(&format!("  {:width$}  {summary}\n", "setup"));
    if !matches!(setup.status, SetupStatus::Failed | SetupStatus::TimedOut) {
        return;
    }
    for line in setup.last_logs.iter().flat_map(|l| l.lines()) {
        out.push_str(&format!("      | {line}\n"));
    }
    if let Some(h) = &setup.hint {
        out.push_str(&format!("      hint: {h}\n"));
    }
    out.push_str(&format!("      the whole log: `nexus workspace logs {workspace} --setup`\n"));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{service, setup, view};
    use super::*;

    #[test]
    fn the_setup_row_while_it_is_pending_runs_and_is_done() {
        let web = |message: &str| json!([service("web", 5173, 23000, "starting", Some(message))]);
        let table = render(&view(web("waiting for setup to start"), setup("pending", None, 0, None)));
        assert_eq!(
            table,
            "Services of site (running; from .nexus/config.yaml)
  setup  pending (2 steps)
  web    starting    5173  http://localhost:23000 — waiting for setup to start
URLs work on your machine while `nexus workspace connect` forwards the ports.
"
        );
        let running = setup("running", Some(1), 12, Some("added 210 packages"));
        let table = render(&view(web("waiting for setup (`npm ci`, step 1 of 2, 12 s)"), running));
        assert_eq!(
            table.lines().skip(1).take(2).collect::<Vec<_>>(),
            [
                "  setup  running 1/2 `npm ci` · 12 s · added 210 packages",
                "  web    starting    5173  http://localhost:23000 — waiting for setup (`npm ci`, step 1 of 2, 12 s)",
            ]
        );
        let done = view(json!([service("web", 5173, 23000, "running", None)]), setup("done", None, 35, None));
        assert_eq!(render(&done).lines().nth(1), Some("  setup  done in 35 s"));
        let mut stopped = setup("pending", None, 0, None);
        stopped["message"] = "the workspace stopped before setup finished; setup runs again when it starts".into();
        stopped["steps"] = 1.into();
        assert_eq!(
            render(&view(json!([]), stopped)).lines().nth(1),
            Some("  setup  pending (1 step): the workspace stopped before setup finished; setup runs again when it starts")
        );
        assert!(!render(&view(json!([]), serde_json::Value::Null)).contains("setup"), "no setup, no row");
    }

    #[test]
    fn a_failed_setup_shows_its_cause_once_and_where_the_whole_log_is() {
        let hint = "the workspace does not trust the TLS certificate of registry.npmjs.org";
        let logs = "$ npm ci\nnpm error code SELF_SIGNED_CERT_IN_CHAIN";
        let mut timed_out = setup("timed_out", Some(1), 900, None);
        timed_out["message"] = "setup step `npm ci` did not finish within 15 min".into();
        timed_out["hint"] = hint.into();
        timed_out["last_logs"] = logs.into();
        let mut web = service("web", 5173, 23000, "failed", Some("not started: setup step `npm ci` did not finish"));
        web["hint"] = hint.into();
        web["last_logs"] = logs.into();
        let mut api = service("api", 8000, 23001, "failed", Some("exited with 1"));
        api["hint"] = "read its log".into();
        api["last_logs"] = "Traceback".into();
        assert_eq!(
            render(&view(json!([web, api]), timed_out)),
            format!(
                "Services of site (running; from .nexus/config.yaml)
  setup  timed out: setup step `npm ci` did not finish within 15 min
      | $ npm ci
      | npm error code SELF_SIGNED_CERT_IN_CHAIN
      hint: {hint}
      the whole log: `nexus workspace logs site --setup`
  web    failed      5173  http://localhost:23000
      not started: setup step `npm ci` did not finish
  api    failed      8000  http://localhost:23001
      exited with 1
      | Traceback
      hint: read its log
URLs work on your machine while `nexus workspace connect` forwards the ports.
"
            )
        );
    }
}
