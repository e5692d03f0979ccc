//! `nexus workspace services` and `nexus workspace logs`: what runs in a workspace and what it says.

use nexus_types::api::WorkspaceView;

/// The services table for people: name, status, port, URL; failures with their message, hint and logs.
pub fn render(ws: &WorkspaceView) -> String {
    let mut out = format!("Services of {} ({}; from {})\n", ws.name, ws.status, ws.services_source);
    if ws.services.is_empty() {
        out.push_str("  none yet (add .nexus/config.yaml, or start something that listens on a port)\n");
        return out;
    }
    let width = ws.services.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
    for s in &ws.services {
        let port = s.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let url = s.url.clone().unwrap_or_default();
        let tag = if s.discovered { "  (discovered)" } else { "" };
        out.push_str(&format!("  {:width$}  {:9}  {:>5}  {url}{tag}\n", s.name, s.status.as_str(), port));
        if let Some(m) = &s.message {
            out.push_str(&format!("      {m}\n"));
        }
        if let Some(logs) = &s.last_logs {
            for line in logs.lines() {
                out.push_str(&format!("      | {line}\n"));
            }
        }
        if let Some(h) = &s.hint {
            out.push_str(&format!("      hint: {h}\n"));
        }
    }
    out.push_str("URLs work on your machine while `nexus workspace connect` forwards the ports.\n");
    out
}

/// The remote command that prints (or follows) a service's journal, or the setup log.
pub fn log_command(service: Option<&str>, follow: bool, lines: u32) -> String {
    let f = if follow { " -f" } else { "" };
    match service {
        Some("setup") => format!("tail -n {lines}{f} ~/.nexus/logs/setup.log"),
        Some(name) => format!("sudo journalctl -u nexus-svc-{name}.service -n {lines}{f} --no-pager -o short-iso"),
        None => format!(
            "{{ test -f ~/.nexus/logs/setup.log && tail -n {lines} ~/.nexus/logs/setup.log; }}; sudo journalctl -u 'nexus-svc-*' -n {lines}{f} --no-pager -o short-iso"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_commands() {
        assert_eq!(
            log_command(Some("web"), true, 50),
            "sudo journalctl -u nexus-svc-web.service -n 50 -f --no-pager -o short-iso"
        );
        assert_eq!(log_command(Some("setup"), false, 10), "tail -n 10 ~/.nexus/logs/setup.log");
        assert!(log_command(None, false, 5).contains("nexus-svc-*"));
    }
}
