//! Writes a plan back out as `.nexus/config.yaml` (for `nexus config detect --write`).
//!
//! Written by hand rather than through a YAML serializer so the file reads like one a person
//! wrote: defaults left out, durations as `2s`, short lists inline, and a header saying where it came from.

use std::fmt::Write as _;

use nexus_types::protocol::{HealthCheck, HealthKind, ProjectPlan, ServicePlan};

/// Renders `plan` as a config file that [`crate::parse_config`] reads back to the same plan (except for
/// `source`). Keys that equal their defaults are left out.
pub fn to_yaml(plan: &ProjectPlan) -> String {
    let mut out = String::new();
    out.push_str("# Nexus project config: setup steps and services for this repo's workspaces.\n");
    if !plan.source.is_empty() {
        let _ = writeln!(out, "# Generated from {}; edit freely.", plan.source.replace('\n', " "));
    }
    out.push_str("# Format: crates/nexus-project/schema/nexus-config.schema.json in the Nexus repo.\n");
    if !plan.setup.is_empty() {
        out.push_str("\n# Run once, in order, after the repo is cloned.\nsetup:\n");
        for step in &plan.setup {
            let _ = writeln!(out, "  - {}", scalar(step));
        }
    }
    if let Some(ms) = plan.setup_timeout_ms {
        out.push_str("\n# How long setup may take before it is stopped (default 15m).\n");
        let _ = writeln!(out, "setup_timeout: {}", duration(ms));
    }
    if plan.services.is_empty() {
        out.push_str("\n# No services detected. Add some, e.g.:\n# services:\n#   web:\n#     command: npm run dev\n#     port: 3000\n");
        return out;
    }
    out.push_str("\nservices:\n");
    for service in &plan.services {
        write_service(&mut out, service);
    }
    out
}

fn write_service(out: &mut String, s: &ServicePlan) {
    let _ = writeln!(out, "  {}:", scalar(&s.name));
    let _ = writeln!(out, "    command: {}", scalar(&s.command));
    if let Some(port) = s.port {
        let _ = writeln!(out, "    port: {port}");
    }
    if !s.working_dir.is_empty() {
        let _ = writeln!(out, "    working_dir: {}", scalar(&s.working_dir));
    }
    if !s.env.is_empty() {
        out.push_str("    env:\n");
        for (k, v) in &s.env {
            let _ = writeln!(out, "      {}: {}", scalar(k), string(v));
        }
    }
    if !s.depends_on.is_empty() {
        let names: Vec<String> = s.depends_on.iter().map(|d| scalar(d)).collect();
        let _ = writeln!(out, "    depends_on: [{}]", names.join(", "));
    }
    write_health(out, s);
}

/// Writes `health_check:` unless the parser would infer the same check (tcp on the port, or none).
fn write_health(out: &mut String, s: &ServicePlan) {
    let h = &s.health;
    let inferred = HealthCheck::new(s.port.map_or(HealthKind::None, |port| HealthKind::Tcp { port }));
    if *h == inferred {
        return;
    }
    out.push_str("    health_check:\n");
    match &h.kind {
        HealthKind::Http { port, path } => {
            out.push_str("      type: http\n");
            if path != "/" {
                let _ = writeln!(out, "      path: {}", scalar(path));
            }
            if s.port != Some(*port) {
                let _ = writeln!(out, "      port: {port}");
            }
        }
        HealthKind::Tcp { port } => {
            out.push_str("      type: tcp\n");
            if s.port != Some(*port) {
                let _ = writeln!(out, "      port: {port}");
            }
        }
        HealthKind::Command { command } => {
            out.push_str("      type: command\n");
            let _ = writeln!(out, "      command: {}", scalar(command));
        }
        HealthKind::None => out.push_str("      type: none\n"),
    }
    let defaults = HealthCheck::new(HealthKind::None);
    if h.interval_ms != defaults.interval_ms {
        let _ = writeln!(out, "      interval: {}", duration(h.interval_ms));
    }
    if h.timeout_ms != defaults.timeout_ms {
        let _ = writeln!(out, "      timeout: {}", duration(h.timeout_ms));
    }
    if h.retries != defaults.retries {
        let _ = writeln!(out, "      retries: {}", h.retries);
    }
    if h.start_timeout_ms != defaults.start_timeout_ms {
        let _ = writeln!(out, "      start_timeout: {}", duration(h.start_timeout_ms));
    }
}

/// `1m`, `2s` or `500ms`, whichever is exact.
fn duration(ms: u64) -> String {
    match ms {
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// Words YAML 1.1 parsers (many editors' plugins among them) read as booleans or null.
const YAML11_SPECIAL: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"];

/// A string as a YAML scalar: plain when every YAML parser reads it back as the same string, else
/// double-quoted.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && !YAML11_SPECIAL.contains(&s.to_ascii_lowercase().as_str())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || " _-./=+,:@$".contains(c))
        && !s.contains(": ")
        && !s.ends_with(':')
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.starts_with('-')
        && crate::yaml::reads_as_string(s);
    if plain {
        s.to_string()
    } else {
        string(s)
    }
}

/// Always double-quoted (env values: `"3000"` says it is text, as the process sees it).
fn string(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_plain_only_when_safe() {
        assert_eq!(scalar("npm run dev"), "npm run dev");
        assert_eq!(scalar("3000"), "\"3000\"");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("on"), "\"on\"");
        assert_eq!(scalar("No"), "\"No\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(scalar("echo 'x' # y"), "\"echo 'x' # y\"");
        assert_eq!(scalar("- x"), "\"- x\"");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(
            scalar("python3 -m http.server $PORT --bind 0.0.0.0"),
            "python3 -m http.server $PORT --bind 0.0.0.0"
        );
    }

    /// `to_yaml` then `parse_config` gives back the plan, except for `source`.
    #[track_caller]
    fn assert_round_trip(plan: &ProjectPlan) {
        let yaml = to_yaml(plan);
        let parsed = crate::parse_config(&yaml).unwrap_or_else(|e| panic!("{e}\n{}\n{yaml}", e.hint)).plan();
        assert_eq!(parsed, ProjectPlan { source: parsed.source.clone(), ..plan.clone() }, "\n{yaml}");
    }

    fn service(name: &str, port: Option<u16>, health: HealthKind) -> ServicePlan {
        ServicePlan {
            name: name.into(),
            command: format!("run {name}"),
            port,
            env: vec![],
            working_dir: String::new(),
            depends_on: vec![],
            health: HealthCheck::new(health),
        }
    }

    #[test]
    fn detected_plans_round_trip() {
        let repos: &[&[(&str, &str)]] = &[
            &[("package.json", r#"{"scripts": {"dev": "vite --port 4000"}}"#), ("yarn.lock", "")],
            &[("requirements.txt", "flask"), ("app.py", "")],
            &[("index.html", "")],
            &[
                ("manage.py", ""),
                (".devcontainer.json", r#"{"postCreateCommand": "echo \"a: b\" # c", "postStartCommand": "x"}"#),
            ],
            &[("README.md", "")],
        ];
        for files in repos {
            let plan = crate::detect(&crate::MapFiles::new(files.iter().copied()));
            assert_round_trip(&plan);
        }
    }

    #[test]
    fn hand_made_plans_round_trip() {
        let mut web = service("web", Some(3000), HealthKind::Http { port: 3000, path: "/health?x=1".into() });
        web.env = vec![("NODE_ENV".into(), "development".into()), ("N".into(), "3".into()), ("E".into(), "".into())];
        web.working_dir = "frontend/app".into();
        web.command = "npm run dev -- --host 0.0.0.0 'quoted arg' && echo \"done\"\nsecond line".into();
        web.health.interval_ms = 500;
        web.health.timeout_ms = 1500;
        web.health.retries = 0;
        web.health.start_timeout_ms = 120_000;
        let mut api = service("api", Some(4000), HealthKind::Tcp { port: 4000 });
        api.depends_on = vec!["web".into(), "db".into()];
        let db = service("db", None, HealthKind::Tcp { port: 5432 });
        let check = service("check", None, HealthKind::Command { command: "curl -f localhost:3000 || exit 1".into() });
        let quiet = service("quiet", Some(9000), HealthKind::None);
        let other_port = service("proxy", Some(8080), HealthKind::Http { port: 8081, path: "/".into() });
        let mut slow = service("slow", None, HealthKind::None);
        slow.health.start_timeout_ms = 3_600_000;
        let plan = ProjectPlan {
            source: "test".into(),
            setup: vec!["npm install".into(), "true".into(), "echo {a}".into()],
            services: vec![web, api, db, check, quiet, other_port, slow],
            setup_timeout_ms: Some(20 * 60_000),
            ..Default::default()
        };
        assert_round_trip(&plan);
        assert_round_trip(&ProjectPlan::default());
    }

    #[test]
    fn output_reads_like_a_hand_written_file() {
        let plan = crate::detect(&crate::MapFiles::new([("package.json", r#"{"scripts": {"dev": "vite"}}"#)]));
        let want = "\
# Nexus project config: setup steps and services for this repo's workspaces.
# Generated from detected: node (npm, script dev, vite); edit freely.
# Format: crates/nexus-project/schema/nexus-config.schema.json in the Nexus repo.

# Run once, in order, after the repo is cloned.
setup:
  - npm install --no-audit --no-fund

services:
  web:
    command: npm run dev -- --host 0.0.0.0 --port 5173 --strictPort
    port: 5173
    env:
      PORT: \"5173\"
    health_check:
      type: http
";
        assert_eq!(to_yaml(&plan), want);
    }

    #[test]
    fn durations_use_the_largest_exact_unit() {
        assert_eq!(duration(60_000), "1m");
        assert_eq!(duration(2000), "2s");
        assert_eq!(duration(1500), "1500ms");
    }
}
