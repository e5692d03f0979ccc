//! The crate's one error type, and the translation of `serde_yaml`'s errors into it.
//!
//! `serde_yaml` already knows where a syntax, type or unknown-key error is; what it lacks is wording a
//! designer understands and a next step. Both are added here, keyed on the error's message and the
//! config path it names, so every error a user sees reads the same way.

use crate::locate::{self, Seg, Target};

/// Where the config file lives in a repo; every [`ConfigError`] names it.
pub const CONFIG_PATH: &str = ".nexus/config.yaml";

/// A problem in `.nexus/config.yaml`, pointing at the offending node.
///
/// Displays as `.nexus/config.yaml:LINE:COL: message`; the hint is shown on its own line by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// Always [`CONFIG_PATH`], so editors and terminals can jump to the spot.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, naming the key path when there is one (`services.web.port: ...`).
    pub message: String,
    /// What to do instead: the nearest valid key, or what is allowed there.
    pub hint: String,
}

impl ConfigError {
    pub(crate) fn new(pos: (usize, usize), message: impl Into<String>, hint: impl Into<String>) -> Self {
        ConfigError {
            file: CONFIG_PATH.to_string(),
            line: pos.0,
            column: pos.1,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Separates a hint from the message in errors our own `Deserialize` impls raise: serde only carries a
/// string through, and this way the hint is written next to the check that knows it.
pub(crate) const HINT_SEP: &str = "\nhint: ";

/// A serde error message carrying a hint (see [`HINT_SEP`]).
pub(crate) fn with_hint(message: impl std::fmt::Display, hint: impl std::fmt::Display) -> String {
    format!("{message}{HINT_SEP}{hint}")
}

/// Turns a `serde_yaml` error on `source` into a [`ConfigError`].
pub(crate) fn from_yaml(source: &str, err: &serde_yaml::Error) -> ConfigError {
    let mut pos = err.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
    let mut text = err.to_string();
    if let Some(l) = err.location() {
        text = text.replacen(&format!(" at line {} column {}", l.line(), l.column()), "", 1);
    }
    let (text, custom_hint) = match text.split_once(HINT_SEP) {
        Some((m, h)) => (m.to_string(), Some(h.to_string())),
        None => (text, None),
    };
    let (path, rest) = split_path(&text);
    let prefix = |msg: String| if path.is_empty() { msg } else { format!("{path}: {msg}") };

    if let Some(hint) = custom_hint {
        return ConfigError::new(pos, prefix(rest.to_string()), hint);
    }
    if let Some(after) = rest.strip_prefix("unknown field `") {
        let (name, expected) = name_and_expected(after);
        let message =
            if path.is_empty() { format!("unknown key {name:?}") } else { format!("unknown key {name:?} in {path}") };
        let hint = match nearest(&name, &expected) {
            Some(best) => format!("did you mean {best:?}?"),
            None if expected.is_empty() => "no keys are allowed here".to_string(),
            None => format!("allowed keys here: {}", expected.join(", ")),
        };
        return ConfigError::new(pos, message, hint);
    }
    if let Some(after) = rest.strip_prefix("unknown variant `") {
        let (name, expected) = name_and_expected(after);
        let hint = match nearest(&name, &expected) {
            Some(best) => format!("did you mean {best:?}?"),
            None => format!("use one of: {}", expected.join(", ")),
        };
        return ConfigError::new(pos, prefix(format!("unknown value {name:?}")), hint);
    }
    if let Some(after) = rest.strip_prefix("missing field `") {
        let field = after.split('`').next().unwrap_or_default();
        // serde_yaml points at the mapping's first key; the key that owns the mapping reads better.
        let segs = locate::parse_path(&path);
        if !segs.is_empty() {
            pos = locate::locate_near(source, &segs, Target::Key(0));
        }
        let message = match path.as_str() {
            "" => format!("missing required key {field:?}"),
            p => format!("{p}: missing required key {field:?}"),
        };
        return ConfigError::new(pos, message, hint_for(&format!("{path}.{field}")));
    }
    if let Some(after) = rest.strip_prefix("duplicate field `") {
        let field = after.split('`').next().unwrap_or_default();
        let mut segs = locate::parse_path(&path);
        segs.push(Seg::Key(field.to_string()));
        pos = locate::locate(source, &segs, Target::Key(1)).unwrap_or(pos);
        return ConfigError::new(pos, prefix(format!("key {field:?} is given twice")), "keep only one of them");
    }
    if let Some(after) = rest.strip_prefix("invalid type: ") {
        let (found, expected) = after.split_once(", expected ").unwrap_or((after, "something else"));
        let found = match found {
            "unit value" => "nothing (an empty value)",
            "map" => "a mapping",
            "sequence" => "a list",
            other => other,
        };
        return ConfigError::new(pos, prefix(format!("expected {expected}, found {found}")), hint_for(&path));
    }
    if rest.starts_with("invalid value: ") || rest.starts_with("invalid length ") {
        return ConfigError::new(pos, prefix(rest.to_string()), hint_for(&path));
    }
    if rest.contains("more than one document") {
        return ConfigError::new(pos, "the file holds more than one YAML document", "remove the `---` separators");
    }
    syntax_error(source, pos, &text)
}

/// A libyaml syntax error: the problem, and a hint pointing at the context libyaml names.
fn syntax_error(source: &str, pos: (usize, usize), text: &str) -> ConfigError {
    let (problem, context) = match text.split_once(", while ") {
        Some((p, c)) => (p.to_string(), Some(c.to_string())),
        None => (text.to_string(), None),
    };
    let line = source.lines().nth(pos.0.saturating_sub(1)).unwrap_or_default();
    let context = context.map(|c| format!(" (YAML error while {c})")).unwrap_or_default();
    let hint = if line.chars().take_while(|c| c.is_whitespace()).any(|c| c == '\t') {
        "indent with spaces; YAML does not allow tabs".to_string()
    } else if problem.contains("cannot start any token") {
        format!("put values that start with `@`, `` ` ``, `%` or `!` in quotes{context}")
    } else if problem.contains("expected key") || problem.contains("mapping values are not allowed") {
        format!("keys of one mapping must line up, and values containing `: ` need quotes{context}")
    } else {
        format!("check the indentation and quoting here{context}")
    };
    ConfigError::new(pos, format!("invalid YAML: {problem}"), hint)
}

/// Splits `services.web.port: invalid ...` into the path and the rest; messages at the root have no path.
fn split_path(text: &str) -> (String, &str) {
    if let Some((head, rest)) = text.split_once(": ") {
        let is_path = !head.is_empty() && head.chars().all(|c| c.is_ascii_alphanumeric() || "_-.[]?".contains(c));
        if is_path {
            return (head.to_string(), rest);
        }
    }
    (String::new(), text)
}

/// From "name`, expected one of `a`, `b`" returns ("name", ["a", "b"]).
fn name_and_expected(after: &str) -> (String, Vec<String>) {
    let (name, tail) = after.split_once('`').unwrap_or((after, ""));
    let expected = tail.split('`').skip(1).step_by(2).map(str::to_string).collect();
    (name.to_string(), expected)
}

/// What is allowed at a config path, for type errors and missing keys.
pub(crate) fn hint_for(path: &str) -> String {
    let segs = locate::parse_path(path);
    let keys: Vec<&str> = segs
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let hint = match keys.as_slice() {
        [] => "the file must be a mapping with any of: name, provider, setup, services, providers",
        ["services", _] => {
            "each service is a mapping with `command:` and optionally port, working_dir, env, depends_on, health_check"
        }
        ["services", _, "env", _] => "an environment value: a string (numbers and booleans are converted)",
        ["services", _, "health_check", "port"] | ["services", _, "port"] => {
            "use a number from 1 to 65535, e.g. `port: 3000`"
        }
        ["services", _, "health_check", "command"] => {
            "a shell command that exits 0 when healthy, e.g. `curl -fs localhost:3000/health`"
        }
        ["providers", "lxc", "image"] => "an LXD image such as `ubuntu:22.04`",
        [.., last] => match *last {
            "name" => "a project name, e.g. `my-project`",
            "provider" => "only `lxc` is supported",
            "setup" => "write a command, or a list of commands: `setup: [npm install]`",
            "services" => "a mapping from service name to its settings, e.g. `web: {command: npm run dev, port: 3000}`",
            "command" => "write the shell command to run, e.g. `command: npm run dev`",
            "working_dir" => "write a directory relative to the repo root, e.g. `working_dir: frontend`",
            "env" => "a mapping of NAME: value, e.g. `{NODE_ENV: development}`",
            "depends_on" => "list services defined under `services`, e.g. `depends_on: [api]`",
            "health_check" => "a mapping with `type: http`, `tcp`, `command` or `none`",
            "type" => "one of http, tcp, command, none",
            "path" => "an HTTP path starting with `/`",
            "interval" | "timeout" | "start_timeout" => {
                "write a duration like `500ms`, `2s`, `1m`, or a number of seconds"
            }
            "retries" => "write a whole number, e.g. `retries: 3`",
            "providers" => "a mapping with an `lxc:` entry",
            "lxc" => "a mapping with image, cpu and memory",
            "cpu" => "use 1 to 64 CPUs, e.g. `cpu: 2`",
            "memory" => "write a size like `4GB` or `512MiB` (at least 128MiB)",
            _ => "see the schema in crates/nexus-project/schema/nexus-config.schema.json",
        },
    };
    hint.to_string()
}

/// Names people reach for from other tools (docker-compose, Procfiles, devcontainer.json).
const ALIASES: &[(&str, &str)] = &[
    ("cmd", "command"),
    ("run", "command"),
    ("script", "command"),
    ("ports", "port"),
    ("environment", "env"),
    ("depends", "depends_on"),
    ("needs", "depends_on"),
    ("requires", "depends_on"),
    ("after", "depends_on"),
    ("healthcheck", "health_check"),
    ("health", "health_check"),
    ("cwd", "working_dir"),
    ("dir", "working_dir"),
    ("workdir", "working_dir"),
    ("directory", "working_dir"),
    ("install", "setup"),
    ("cpus", "cpu"),
    ("mem", "memory"),
    ("url", "path"),
    ("kind", "type"),
    ("attempts", "retries"),
];

/// The valid key closest to `word`, if it is close enough to be a likely typo (or a known alias).
pub(crate) fn nearest(word: &str, candidates: &[String]) -> Option<String> {
    nearest_key(word, candidates, ALIASES)
}

/// The candidate closest to `word` when it is close enough to be a likely typo, or what `aliases`
/// maps it to (`(alias, key)` pairs; used only when the key is a candidate). Shared by every config
/// file Nexus parses so their "did you mean" hints behave alike.
pub fn nearest_key(word: &str, candidates: &[String], aliases: &[(&str, &str)]) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    if let Some((_, to)) = aliases.iter().find(|(from, to)| *from == lower && candidates.iter().any(|c| c == to)) {
        return Some((*to).to_string());
    }
    let normalized = lower.replace('-', "_");
    candidates
        .iter()
        .map(|c| (distance(&normalized, c), c))
        .filter(|(d, c)| {
            *d <= 2
                || d * 2 <= c.len()
                || (lower.len() >= 3 && (c.starts_with(&normalized) || normalized.starts_with(c.as_str())))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.clone())
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions (`comamnd`).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn distance_counts_edits_and_transpositions() {
        assert_eq!(distance("comand", "command"), 1);
        assert_eq!(distance("comamnd", "command"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("port", "port"), 0);
    }

    #[test]
    fn nearest_suggests_typos_prefixes_and_aliases_but_not_noise() {
        let service = keys(&["command", "port", "working_dir", "env", "depends_on", "health_check"]);
        assert_eq!(nearest("comand", &service).as_deref(), Some("command"));
        assert_eq!(nearest("dependson", &service).as_deref(), Some("depends_on"));
        assert_eq!(nearest("depends-on", &service).as_deref(), Some("depends_on"));
        assert_eq!(nearest("working_directory", &service).as_deref(), Some("working_dir"));
        assert_eq!(nearest("environment", &service).as_deref(), Some("env"));
        assert_eq!(nearest("cmd", &service).as_deref(), Some("command"));
        assert_eq!(nearest("healthcheck", &service).as_deref(), Some("health_check"));
        assert_eq!(nearest("xyz", &service), None);
        assert_eq!(nearest("image", &service), None);
    }

    #[test]
    fn paths_split_from_messages() {
        assert_eq!(split_path("services.web.port: invalid type"), ("services.web.port".to_string(), "invalid type"));
        assert_eq!(split_path("invalid type: unit value"), (String::new(), "invalid type: unit value"));
        assert_eq!(split_path("services.web.depends_on[1]: x"), ("services.web.depends_on[1]".to_string(), "x"));
    }
}
