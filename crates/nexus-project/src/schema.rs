//! The JSON Schema (draft-07) of `.nexus/config.yaml`, for editors' completion and validation.
//!
//! Hand-written next to the parser; the tests below fail when the two accept different keys, and when the
//! checked-in copy (`schema/nexus-config.schema.json`) drifts from [`json_schema`].

use serde_json::{json, Value};

/// Where the checked-in schema lives, relative to this crate's root.
pub const SCHEMA_FILE: &str = "schema/nexus-config.schema.json";

/// The schema of `.nexus/config.yaml`.
pub fn json_schema() -> Value {
    let duration = json!({
        "description": "A duration like `500ms`, `2s`, `1.5s`, `1m` or `1h` (above 0, at most 24h), or a number of seconds.",
        "oneOf": [
            {"type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*(ms|s|m|h)?\\s*$"},
            {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}
        ]
    });
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Nexus project config (.nexus/config.yaml)",
        "description": "Setup steps and services of a repo's Nexus workspaces. Without this file Nexus detects them (package.json, requirements.txt, pyproject.toml, index.html, devcontainer.json).",
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "description": "Project name, for people."},
            "provider": {"enum": ["lxc"], "description": "Where workspaces run; only `lxc` (the default)."},
            "setup": {
                "description": "Shell commands run once, in order, as `dev` in the repo after the first clone.",
                "oneOf": [
                    {"$ref": "#/definitions/command"},
                    {"type": "array", "items": {"$ref": "#/definitions/command"}}
                ]
            },
            "setup_timeout": {
                "$ref": "#/definitions/duration",
                "description": "How long the setup commands together may run before the running one is stopped and the workspace's services fail (default 15m)."
            },
            "services": {
                "description": "Long-running services, started in the order written (after their depends_on are healthy).",
                "type": ["object", "null"],
                "propertyNames": {"$ref": "#/definitions/serviceName"},
                "additionalProperties": {"$ref": "#/definitions/service"}
            },
            "providers": {
                "type": ["object", "null"],
                "additionalProperties": false,
                "properties": {
                    "lxc": {
                        "description": "The workspace container. Unset fields take the server's defaults.",
                        "type": ["object", "null"],
                        "additionalProperties": false,
                        "properties": {
                            "image": {"type": "string", "minLength": 1, "description": "LXD image, e.g. `ubuntu:22.04`."},
                            "cpu": {"type": "integer", "minimum": 1, "maximum": 64, "description": "CPU count (server default: 2)."},
                            "memory": {
                                "type": "string",
                                "pattern": "^\\s*[0-9]+\\s*(B|kB|KB|MB|GB|KiB|MiB|GiB)?\\s*$",
                                "description": "Memory limit such as `4GB` or `512MiB`, at least 128MiB (server default: 4GB)."
                            }
                        }
                    }
                }
            }
        },
        "definitions": {
            "command": {"type": "string", "pattern": "\\S", "description": "A shell command, run with `bash -lc` as `dev`."},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "serviceName": {
                "type": "string",
                "pattern": "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$",
                "description": "1-40 lowercase letters, digits and '-', not starting or ending with '-' (used in unit names)."
            },
            "duration": duration,
            "service": {
                "type": "object",
                "additionalProperties": false,
                "required": ["command"],
                "properties": {
                    "command": {"$ref": "#/definitions/command"},
                    "port": {"$ref": "#/definitions/port", "description": "Port the service listens on; exported to it as PORT, and no two services may share one."},
                    "working_dir": {
                        "type": "string",
                        "pattern": "^(?!/|~)(?!.*(^|/)\\.\\.(/|$))[^\\\\]*$",
                        "description": "Directory relative to the repo root (default: the root)."
                    },
                    "env": {
                        "type": ["object", "null"],
                        "description": "Extra environment; numbers and booleans are taken as text.",
                        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                        "additionalProperties": {"type": ["string", "number", "boolean"]}
                    },
                    "depends_on": {
                        "description": "Services that must be healthy before this one starts; no cycles.",
                        "oneOf": [
                            {"$ref": "#/definitions/serviceName"},
                            {"type": "array", "items": {"$ref": "#/definitions/serviceName"}, "uniqueItems": true}
                        ]
                    },
                    "health_check": {"$ref": "#/definitions/healthCheck"}
                }
            },
            "healthCheck": {
                "description": "How to tell the service is healthy. Default: tcp on the service's port, or none without a port.",
                "type": "object",
                "additionalProperties": false,
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["http", "tcp", "command", "none"], "description": "http: GET answers below 500; tcp: the port accepts; command: exits 0; none: running is healthy."},
                    "path": {"type": "string", "pattern": "^/\\S*$", "description": "http only (default `/`)."},
                    "port": {"$ref": "#/definitions/port", "description": "http and tcp only (default: the service's port)."},
                    "command": {"$ref": "#/definitions/command", "description": "command only, and required there."},
                    "interval": {"$ref": "#/definitions/duration", "description": "Time between checks (default 1s)."},
                    "timeout": {"$ref": "#/definitions/duration", "description": "Time one check may take (default 2s)."},
                    "retries": {"type": "integer", "minimum": 0, "description": "Consecutive failures before `unhealthy` (default 3)."},
                    "start_timeout": {"$ref": "#/definitions/duration", "description": "Time to first become healthy before `failed` (default 60s)."}
                },
                "allOf": [
                    {"if": {"properties": {"type": {"const": "command"}}}, "then": {"required": ["command"]}},
                    {"if": {"properties": {"type": {"const": "http"}}}, "then": {"not": {"required": ["command"]}}},
                    {"if": {"properties": {"type": {"const": "tcp"}}}, "then": {"not": {"anyOf": [{"required": ["path"]}, {"required": ["command"]}]}}},
                    {"if": {"properties": {"type": {"const": "command"}}}, "then": {"not": {"anyOf": [{"required": ["path"]}, {"required": ["port"]}]}}},
                    {"if": {"properties": {"type": {"const": "none"}}}, "then": {"not": {"anyOf": [{"required": ["path"]}, {"required": ["port"]}, {"required": ["command"]}]}}}
                ]
            }
        }
    })
}

/// The schema as written to [`SCHEMA_FILE`]: pretty-printed, with a final newline.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::parse_config;

    /// Uses every key the parser accepts.
    const MAXIMAL: &str = r#"
name: everything
provider: lxc
setup:
  - npm install
setup_timeout: 20m
services:
  api:
    command: npm run server
    port: 4000
    working_dir: backend
    env: {NODE_ENV: development, DEBUG: true, WORKERS: 2}
    depends_on: [web]
    health_check:
      type: command
      command: curl -f localhost:4000
      interval: 500ms
      timeout: 2s
      retries: 5
      start_timeout: 1m
  web:
    command: npm run dev
    port: 3000
    health_check:
      type: http
      path: /health
      port: 3000
providers:
  lxc: {image: "ubuntu:22.04", cpu: 2, memory: 4GB}
"#;

    /// Follows `$ref`s within the schema.
    fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => resolve(root, root.pointer(r.trim_start_matches('#')).unwrap()),
            None => node,
        }
    }

    /// The schema node for a mapping key: a named property, or the `additionalProperties` schema.
    fn child<'a>(root: &'a Value, node: &'a Value, key: &str) -> Option<&'a Value> {
        let node = resolve(root, node);
        node.get("properties")
            .and_then(|p| p.get(key))
            .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))
            .map(|n| resolve(root, n))
    }

    /// Every key path in the example is in the schema; returns the paths with map names as `*`.
    fn walk(root: &Value, schema: &Value, value: &Value, path: &str, seen: &mut BTreeSet<String>) {
        let Some(map) = value.as_object() else { return };
        let schema = resolve(root, schema);
        let named = schema.get("properties").and_then(Value::as_object);
        for (k, v) in map {
            let sub = child(root, schema, k).unwrap_or_else(|| panic!("{path}.{k} is not in the schema"));
            let shown = if named.is_some_and(|n| n.contains_key(k)) { k.as_str() } else { "*" };
            let sub_path = format!("{path}.{shown}");
            seen.insert(sub_path.clone());
            walk(root, sub, v, &sub_path, seen);
        }
    }

    /// Every property path the schema declares (maps of names as `*`), stopping at value maps (env).
    fn schema_paths(root: &Value, schema: &Value, path: &str, out: &mut BTreeSet<String>) {
        let schema = resolve(root, schema);
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, sub) in props {
                let p = format!("{path}.{k}");
                out.insert(p.clone());
                schema_paths(root, sub, &p, out);
            }
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            let extra = resolve(root, extra);
            if extra.get("properties").is_some() {
                let p = format!("{path}.*");
                out.insert(p.clone());
                schema_paths(root, extra, &p, out);
            }
        }
    }

    #[test]
    fn schema_and_parser_accept_the_same_keys() {
        parse_config(MAXIMAL).expect("the maximal example is valid");
        let schema = json_schema();
        let example: Value = serde_saphyr::from_str(MAXIMAL).unwrap();
        let mut used = BTreeSet::new();
        walk(&schema, &schema, &example, "", &mut used);
        // env's keys are names, not schema properties.
        used.retain(|p| !p.contains(".env."));
        let mut declared = BTreeSet::new();
        schema_paths(&schema, &schema, "", &mut declared);
        assert_eq!(used, declared, "the maximal example must use exactly the schema's keys");

        // And the parser rejects anything else: its list of allowed keys at each level matches the schema.
        let probes = [
            ("", "zzzzzzzz: 1\n"),
            (".services.*", "services:\n  web:\n    command: x\n    zzzzzzzz: 1\n"),
            (
                ".services.*.health_check",
                "services:\n  web:\n    command: x\n    health_check: {type: none, zzzzzzzz: 1}\n",
            ),
            (".providers", "providers:\n  zzzzzzzz: 1\n"),
            (".providers.lxc", "providers:\n  lxc: {zzzzzzzz: 1}\n"),
        ];
        for (path, probe) in probes {
            let err = parse_config(probe).unwrap_err();
            let allowed: BTreeSet<String> = err
                .hint
                .strip_prefix("allowed keys here: ")
                .unwrap_or_else(|| panic!("{path}: {err:?}"))
                .split(", ")
                .map(|k| format!("{path}.{k}"))
                .collect();
            let in_schema: BTreeSet<String> = declared
                .iter()
                .filter(|p| p.rsplit_once('.').map(|(parent, _)| parent) == Some(path))
                .cloned()
                .collect();
            assert_eq!(allowed, in_schema, "keys at {path:?}");
        }
    }

    #[test]
    fn schema_file_is_up_to_date() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_FILE);
        let want = json_schema_text();
        if std::env::var_os("NEXUS_UPDATE_SCHEMA").is_some() {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &want).unwrap();
        }
        let have = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date; regenerate it with `NEXUS_UPDATE_SCHEMA=1 cargo test -p nexus-project schema`",
            file.display()
        );
    }
}
