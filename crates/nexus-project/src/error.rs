//! The crate's one error type, and what `.nexus/config.yaml`'s keys mean for its hints.
//!
//! The wording of YAML errors is shared with the designer's own config file (see [`crate::yaml`]); what
//! is particular to this file is here: the aliases people bring from other tools and what each key holds.

use crate::locate::{self, Seg};
use crate::yaml::{nearest_key, KeyHints, YamlProblem};

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

impl From<YamlProblem> for ConfigError {
    fn from(p: YamlProblem) -> Self {
        ConfigError::new((p.line, p.column), p.message, p.hint)
    }
}

/// The words for `.nexus/config.yaml`'s errors.
pub(crate) const KEY_HINTS: KeyHints = KeyHints { aliases: ALIASES, type_names: &[], allowed: hint_for };

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
        [] => "the file must be a mapping with any of: name, provider, setup, setup_timeout, services, providers",
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
            "interval" | "timeout" | "start_timeout" | "setup_timeout" => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
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
}
