//! Tests of the config parser: the accepted format, and every error with its exact position and hint.

use super::*;

/// Parses `source`, expecting an error; returns `(line, column, message, hint)`.
fn err(source: &str) -> (usize, usize, String, String) {
    let e = parse_config(source).expect_err("should be rejected");
    assert_eq!(e.file, ".nexus/config.yaml");
    assert_eq!(e.to_string(), format!(".nexus/config.yaml:{}:{}: {}", e.line, e.column, e.message));
    (e.line, e.column, e.message, e.hint)
}

/// Asserts the error's position and that its message and hint contain the given texts.
#[track_caller]
fn assert_err(source: &str, line: usize, column: usize, message: &str, hint: &str) {
    let (l, c, m, h) = err(source);
    assert_eq!((l, c), (line, column), "position of {m:?}");
    assert!(m.contains(message), "message {m:?} should contain {message:?}");
    assert!(h.contains(hint), "hint {h:?} should contain {hint:?}");
}

const SPEC_EXAMPLE: &str = r#"name: my-project
provider: lxc

services:
  web:
    command: "npm run dev"
    port: 3000
    health_check: {type: "http", path: "/"}
  
  api:
    command: "npm run server"
    port: 4000
    depends_on: ["web"]

providers:
  lxc:
    image: "ubuntu:22.04"
    cpu: 2
    memory: "4GB"
"#;

#[test]
fn the_specs_example_parses_to_the_expected_plan() {
    let config = parse_config(SPEC_EXAMPLE).unwrap();
    assert_eq!(config.name.as_deref(), Some("my-project"));
    assert_eq!(config.provider.as_deref(), Some("lxc"));
    assert_eq!(config.resources(), (Some(2), Some("4GB".to_string()), Some("ubuntu:22.04".to_string())));
    let plan = config.plan();
    let expected = ProjectPlan {
        source: ".nexus/config.yaml".to_string(),
        setup: vec![],
        services: vec![
            ServicePlan {
                name: "web".into(),
                command: "npm run dev".into(),
                port: Some(3000),
                env: vec![],
                working_dir: String::new(),
                depends_on: vec![],
                health: HealthCheck::new(HealthKind::Http { port: 3000, path: "/".into() }),
            },
            ServicePlan {
                name: "api".into(),
                command: "npm run server".into(),
                port: Some(4000),
                env: vec![],
                working_dir: String::new(),
                depends_on: vec!["web".into()],
                health: HealthCheck::new(HealthKind::Tcp { port: 4000 }),
            },
        ],
        ..Default::default()
    };
    assert_eq!(plan, expected);
}

#[test]
fn every_field_is_read() {
    let config = parse_config(
        r#"
setup:
  - npm install
  - make assets
services:
  zeta:
    command: ./run.sh
    working_dir: ./tools/
    env:
      NODE_ENV: development
      WORKERS: 4
      DEBUG: true
      RATIO: 1.5
      EMPTY: ""
    health_check:
      type: command
      command: "curl -f localhost:3000"
      interval: 500ms
      timeout: 1.5s
      retries: 0
      start_timeout: 2m
  alpha:
    command: npm run dev
    port: 3000
    depends_on: zeta
    health_check:
      type: http
      path: /healthz
      port: 3001
      interval: 2
  worker:
    command: python worker.py
    health_check: {type: tcp, port: 6379, start_timeout: 1h}
  cron:
    command: ./cron.sh
    port: 9000
    health_check: {type: none}
"#,
    )
    .unwrap();
    assert_eq!(config.setup, vec!["npm install", "make assets"]);
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "worker", "cron"], "services keep the file's order");

    let zeta = &config.services[0];
    assert_eq!(zeta.working_dir, "tools");
    assert_eq!(zeta.port, None);
    let env: Vec<(&str, &str)> = zeta.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        env,
        [("NODE_ENV", "development"), ("WORKERS", "4"), ("DEBUG", "true"), ("RATIO", "1.5"), ("EMPTY", "")]
    );
    assert_eq!(
        zeta.health,
        HealthCheck {
            kind: HealthKind::Command { command: "curl -f localhost:3000".into() },
            interval_ms: 500,
            timeout_ms: 1500,
            retries: 0,
            start_timeout_ms: 120_000,
        }
    );

    let alpha = &config.services[1];
    assert_eq!(alpha.depends_on, vec!["zeta"]);
    assert_eq!(alpha.health.kind, HealthKind::Http { port: 3001, path: "/healthz".into() });
    assert_eq!(alpha.health.interval_ms, 2000);
    assert_eq!(alpha.health.timeout_ms, 2000, "defaults fill the rest");

    assert_eq!(config.services[2].health.kind, HealthKind::Tcp { port: 6379 });
    assert_eq!(config.services[2].health.start_timeout_ms, 3_600_000);
    assert_eq!(config.services[3].health.kind, HealthKind::None);
}

#[test]
fn defaults_without_a_health_check_are_tcp_on_the_port_or_none() {
    let config = parse_config("services:\n  a: {command: x, port: 80}\n  b: {command: y}\n").unwrap();
    assert_eq!(config.services[0].health, HealthCheck::new(HealthKind::Tcp { port: 80 }));
    assert_eq!(config.services[1].health, HealthCheck::new(HealthKind::None));
}

#[test]
fn yaml_1_1_booleans_are_text() {
    let config = parse_config("services:\n  a:\n    command: x\n    env: {A: yes, B: on, C: true}\n").unwrap();
    let env: Vec<(&str, &str)> = config.services[0].env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(env, [("A", "yes"), ("B", "on"), ("C", "true")]);
}

#[test]
fn empty_and_minimal_files_are_valid() {
    assert_eq!(parse_config("").unwrap(), ProjectConfig::default());
    assert_eq!(parse_config("# just a comment\n").unwrap(), ProjectConfig::default());
    assert_eq!(parse_config("services:\nsetup:\n").unwrap(), ProjectConfig::default());
    assert_eq!(parse_config("setup: npm ci\n").unwrap().setup, vec!["npm ci"]);
    assert_eq!(parse_config("providers: {lxc: {cpu: 1}}\n").unwrap().resources(), (Some(1), None, None));
}

#[test]
fn durations_parse_in_every_form() {
    for (text, ms) in
        [("500ms", 500), ("2s", 2000), ("1.5s", 1500), ("1m", 60_000), ("1h", 3_600_000), ("3", 3000), (" 2 s ", 2000)]
    {
        assert_eq!(parse_duration(text), Some(ms), "{text}");
    }
    for bad in ["", "0", "0s", "2x", "-1s", "1.s", ".5s", "s", "25h", "1e3"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

// ----- errors, each with its exact position ----------------------------------------------------------

#[test]
fn yaml_syntax_errors_point_at_the_problem() {
    assert_err(
        "services:\n  web:\n    command: x\n   port: 3\n",
        4,
        4,
        "invalid YAML: did not find expected key",
        "keys of one mapping must line up",
    );
    assert_err("services:\n\tweb:\n    command: x\n", 2, 1, "invalid YAML", "indent with spaces");
    // The quote that is never closed, where the old parser (libyaml) pointed past the end of the file.
    assert_err("name: \"unclosed\nsetup: x\n", 1, 7, "invalid YAML: unclosed quote", "close the quote");
    // The separator to remove, where libyaml pointed at the top of the file.
    assert_err("name: x\n---\nname: y\n", 2, 1, "more than one YAML document", "remove the `---`");
    assert_err("---\nname: x\n---\nname: y\n", 3, 1, "more than one YAML document", "remove the `---`");
    assert_err("name: @x\n", 1, 7, "invalid YAML: a value cannot start with `@`", "in quotes");
}

#[test]
fn unknown_keys_suggest_the_nearest_valid_key() {
    let (line, column, message, hint) = err("services:\n  web:\n    comand: npm run dev\n");
    assert_eq!((line, column), (3, 5));
    assert_eq!(message, "unknown key \"comand\" in services.web");
    assert_eq!(hint, "did you mean \"command\"?");

    assert_err("nmae: x\n", 1, 1, "unknown key \"nmae\"", "did you mean \"name\"?");
    assert_err("service:\n  web: {command: x}\n", 1, 1, "unknown key \"service\"", "did you mean \"services\"?");
    assert_err(
        "services:\n  web:\n    command: x\n    health_check: {type: http, intervall: 2s}\n",
        4,
        32,
        "unknown key \"intervall\" in services.web.health_check",
        "did you mean \"interval\"?",
    );
    assert_err("providers:\n  lcx: {}\n", 2, 3, "unknown key \"lcx\" in providers", "did you mean \"lxc\"?");
    assert_err("providers:\n  lxc:\n    memroy: 4GB\n", 3, 5, "in providers.lxc", "did you mean \"memory\"?");
    assert_err("services:\n  web:\n    cmd: x\n", 3, 5, "unknown key \"cmd\"", "did you mean \"command\"?");
    // Nothing close: the hint lists what is allowed.
    assert_err(
        "services:\n  web:\n    command: x\n    xyz: 1\n",
        4,
        5,
        "unknown key \"xyz\"",
        "allowed keys here: command, port, working_dir, env, depends_on, health_check",
    );
}

#[test]
fn wrong_types_say_what_is_expected() {
    assert_err(
        "services:\n  web:\n    command: x\n    port: abc\n",
        4,
        11,
        "services.web.port: expected a port number from 1 to 65535, found string \"abc\"",
        "1 to 65535",
    );
    assert_err(
        "services:\n  - web\n",
        2,
        3,
        "services: expected a mapping from service name to its settings, found a list",
        "mapping from service name",
    );
    assert_err(
        "services:\n  web:\n    command: [a, b]\n",
        3,
        14,
        "expected a shell command string, found a list",
        "shell command",
    );
    assert_err("services:\n  web:\n", 2, 3, "services.web: missing required key \"command\"", "shell command");
    assert_err(
        "setup: {a: b}\n",
        1,
        8,
        "setup: expected a string or a list of strings, found a mapping",
        "list of command",
    );
    assert_err("setup:\n  - npm ci\n  - [x]\n", 3, 5, "setup[1]: expected a string, found a list", "list of command");
    assert_err(
        "services:\n  web:\n    command: x\n    env: {A: }\n",
        4,
        14,
        "services.web.env.A: environment value is empty",
        "\"\"",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    env: [A]\n",
        4,
        10,
        "expected a mapping of NAME: value",
        "NAME: value",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    health_check: {type: tcp, retries: -1}\n",
        4,
        40,
        "services.web.health_check.retries: retries -1 is negative",
        "whole number",
    );
    assert_err("name: [x]\n", 1, 7, "name: expected a string, found a list", "project name");
    assert_err(
        "- a\n",
        1,
        1,
        "expected a mapping with any of: name, provider, setup, setup_timeout, services, providers",
        "must be a mapping",
    );
}

#[test]
fn ports_must_be_in_range_and_unique() {
    assert_err(
        "services:\n  web:\n    command: x\n    port: 70000\n",
        4,
        11,
        "services.web.port: port 70000 is out of range",
        "1 to 65535",
    );
    assert_err("services:\n  web:\n    command: x\n    port: 0\n", 4, 11, "port 0 is out of range", "1 to 65535");
    assert_err(
        "services:\n  web: {command: x, port: 3000}\n  api:\n    command: y\n    port: 3000\n",
        5,
        11,
        "services.api.port: port 3000 is already used by service \"web\"",
        "its own port",
    );
}

#[test]
fn depends_on_must_name_other_existing_services() {
    let source =
        "services:\n  web:\n    command: x\n  api:\n    command: y\n    depends_on:\n      - web\n      - wbe\n";
    assert_err(source, 8, 9, "services.api.depends_on: unknown service \"wbe\"", "did you mean \"web\"?");
    assert_err(
        "services:\n  web: {command: x, depends_on: [db]}\n  api: {command: y}\n",
        2,
        34,
        "unknown service \"db\"",
        "services defined: api",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    depends_on: web\n",
        4,
        17,
        "services.web.depends_on: service \"web\" depends on itself",
        "remove it",
    );
    assert_err(
        "services:\n  a: {command: x}\n  b: {command: y, depends_on: [a, a]}\n",
        3,
        35,
        "\"a\" is listed twice",
        "list it once",
    );
}

#[test]
fn dependency_cycles_are_reported_with_their_path() {
    let source = "services:\n  a:\n    command: x\n    depends_on: [b]\n  b:\n    command: y\n    depends_on: [a]\n";
    let (line, column, message, hint) = err(source);
    assert_eq!((line, column), (7, 18), "the entry that closes the cycle");
    assert_eq!(message, "services.b.depends_on: dependency cycle a → b → a");
    assert!(hint.contains("remove one of these entries"), "{hint}");

    let longer = "services:\n  web: {command: x, depends_on: [api]}\n  api: {command: y, depends_on: [db]}\n  db: {command: z, depends_on: [cache, web]}\n  cache: {command: c}\n";
    assert_err(longer, 4, 40, "dependency cycle web → api → db → web", "remove one");
}

#[test]
fn health_checks_need_what_their_type_uses() {
    assert_err(
        "services:\n  web:\n    command: x\n    health_check:\n      type: http\n",
        5,
        13,
        "services.web.health_check: an http check needs a port",
        "set `port:` on service \"web\"",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    health_check: {type: tcp}\n",
        4,
        26,
        "a tcp check needs a port",
        "port",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    health_check:\n      type: command\n",
        5,
        13,
        "a command check needs `command:`",
        "command: curl",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    port: 80\n    health_check:\n      type: tcp\n      path: /\n",
        7,
        7,
        "services.web.health_check: `path` does not apply to a tcp check",
        "only for http checks",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    health_check: {type: none, port: 80}\n",
        4,
        32,
        "`port` does not apply to a none check",
        "http and tcp checks",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    health_check: {type: htp}\n",
        4,
        26,
        "services.web.health_check.type: unknown value \"htp\"",
        "did you mean \"http\"?",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    health_check: {path: /}\n",
        4,
        5,
        "services.web.health_check: missing required key \"type\"",
        "one of http, tcp, command, none",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    port: 80\n    health_check: {type: http, path: health}\n",
        5,
        38,
        "health check path \"health\" must start with '/'",
        "/healthz",
    );
}

#[test]
fn durations_must_be_valid() {
    let at = |value: &str| {
        format!("services:\n  web:\n    command: x\n    health_check:\n      type: none\n      interval: {value}\n")
    };
    for bad in ["2x", "0", "-1s", "0ms", "25h", "[1]"] {
        let (line, column, message, hint) = err(&at(bad));
        assert_eq!((line, column), (6, 17), "{bad}");
        assert!(message.starts_with("services.web.health_check.interval: "), "{message}");
        assert!(hint.contains("500ms"), "{hint}");
    }
}

#[test]
fn setup_timeout_is_a_duration_and_reaches_the_plan() {
    let plan = |source: &str| parse_config(source).unwrap().plan();
    assert_eq!(plan("setup: npm ci\nsetup_timeout: 20m\n").setup_timeout_ms, Some(20 * 60_000));
    assert_eq!(plan("setup_timeout: 90\n").setup_timeout_ms, Some(90_000), "a number is seconds");
    let default = plan("setup: npm ci\n");
    assert_eq!(default.setup_timeout_ms, None);
    assert_eq!(default.setup_timeout_ms(), 15 * 60_000, "15 minutes unless the config says");
    for bad in ["0", "20 minutes", "25h", "[1]"] {
        let (line, column, message, hint) = err(&format!("setup: npm ci\nsetup_timeout: {bad}\n"));
        assert_eq!((line, column), (2, 16), "{bad}");
        assert!(message.starts_with("setup_timeout: "), "{message}");
        assert!(hint.contains("`2s`, `1m`"), "{hint}");
    }
    assert_err("setup_timout: 5m\n", 1, 1, "unknown key \"setup_timout\"", "did you mean \"setup_timeout\"?");
}

#[test]
fn service_names_become_unit_names_so_they_are_strict() {
    assert_err(
        "services:\n  web:\n    command: x\n  My_App:\n    command: y\n",
        4,
        3,
        "service name \"My_App\" contains 'M'",
        "lowercase letters, digits and '-'",
    );
    let long = "a".repeat(41);
    assert_err(&format!("services:\n  {long}: {{command: x}}\n"), 2, 3, "longer than 40 characters", "1-40");
    assert_err("services:\n  -web: {command: x}\n", 2, 3, "starts or ends with '-'", "1-40");
    assert_err("services:\n  \"\": {command: x}\n", 2, 3, "service name is empty", "1-40");
    assert_err(
        "services:\n  web: {command: x}\n  api: {command: y}\n  web: {command: z}\n",
        4,
        3,
        "service \"web\" is defined twice",
        "keep one service",
    );
    assert!(check_service_name(&"a".repeat(40)).is_ok());
    assert!(check_service_name("api-2").is_ok());
}

#[test]
fn commands_must_be_present_and_not_blank() {
    assert_err(
        "services:\n  web:\n    port: 3000\n",
        2,
        3,
        "services.web: missing required key \"command\"",
        "command: npm run dev",
    );
    assert_err(
        "services:\n  web:\n    command: \"  \"\n",
        3,
        14,
        "services.web.command: command is empty",
        "npm run dev",
    );
    assert_err(
        "services:\n  web:\n    command:\n",
        3,
        13,
        "expected a shell command string, found nothing",
        "shell command",
    );
    assert_err("setup:\n  - npm ci\n  - \"\"\n", 3, 5, "setup[1]: command is empty", "npm run dev");
    assert_err(
        "services:\n  web:\n    command: x\n    command: y\n",
        4,
        5,
        "services.web: key \"command\" is given twice",
        "keep only one",
    );
}

#[test]
fn working_dir_stays_inside_the_repo() {
    let at = |dir: &str| format!("services:\n  web:\n    command: x\n    working_dir: {dir}\n");
    assert_err(&at("/etc"), 4, 18, "working_dir \"/etc\" is not a relative path", "relative to its root");
    assert_err(&at("../other"), 4, 18, "working_dir \"../other\" leaves the repo", "inside the repo");
    assert_err(&at("a/../../b"), 4, 18, "leaves the repo", "inside the repo");
    assert_eq!(parse_config(&at(".")).unwrap().services[0].working_dir, "");
    assert_eq!(parse_config(&at("a//b/./c/")).unwrap().services[0].working_dir, "a/b/c");
}

#[test]
fn env_names_are_checked_and_unique() {
    assert_err(
        "services:\n  web:\n    command: x\n    env:\n      NODE-ENV: x\n",
        5,
        7,
        "\"NODE-ENV\" is not a valid environment variable name",
        "NODE_ENV",
    );
    assert_err(
        "services:\n  web:\n    command: x\n    env:\n      A: 1\n      A: 2\n",
        6,
        7,
        "environment variable \"A\" is defined twice",
        "keep one",
    );
}

#[test]
fn provider_settings_are_checked() {
    assert_err("provider: docker\n", 1, 11, "provider: unknown provider \"docker\"", "only `lxc`");
    assert_err("providers:\n  lxc:\n    cpu: 0\n", 3, 10, "providers.lxc.cpu: cpu 0 is out of range", "1 to 64");
    assert_err("providers:\n  lxc:\n    cpu: 65\n", 3, 10, "cpu 65 is out of range", "1 to 64");
    assert_err("providers:\n  lxc:\n    memory: 4 gigs\n", 3, 13, "memory \"4 gigs\" is not a size", "4GB");
    assert_err("providers:\n  lxc:\n    memory: 64MB\n", 3, 13, "at least 128MiB", "512MiB");
    assert_err("providers:\n  lxc:\n    memory: 4096\n", 3, 13, "memory 4096 has no unit", "4GB");
    assert_err("providers:\n  lxc:\n    image: \"\"\n", 3, 12, "image is empty", "ubuntu:22.04");
}
