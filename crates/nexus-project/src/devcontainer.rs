//! The parts of `devcontainer.json` detection uses: lifecycle commands, forwarded ports, port labels.
//!
//! The file is "JSON with comments" (and, in practice, trailing commas), so it is cleaned up before
//! `serde_json` sees it. Everything else in it (image, features, customizations) is for a devcontainer
//! runtime and is ignored: Nexus builds its own container.

use std::collections::BTreeMap;

use serde_json::Value;

/// Where the Dev Containers spec allows the file, in the order it looks.
pub(crate) const PATHS: [&str; 2] = [".devcontainer/devcontainer.json", ".devcontainer.json"];

/// What detection takes from a devcontainer.json.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DevContainer {
    /// `postCreateCommand`, one entry per command (the object form gives several).
    pub post_create: Vec<String>,
    /// `postStartCommand`, as one shell command; `None` when absent or blank.
    pub post_start: Option<String>,
    /// `forwardPorts` that are plain port numbers (`"db:5432"` entries name other hosts and are skipped).
    pub forward_ports: Vec<u16>,
    /// `portsAttributes.<port>.label` for numeric ports.
    pub labels: BTreeMap<u16, String>,
}

/// Parses the text of a devcontainer.json; `None` if it is not valid even after cleaning.
pub(crate) fn parse(text: &str) -> Option<DevContainer> {
    let value: Value = serde_json::from_str(&strip_trailing_commas(&strip_comments(text))).ok()?;
    let object = value.as_object()?;
    let post_create = object.get("postCreateCommand").map(commands).unwrap_or_default();
    let post_start = object.get("postStartCommand").map(commands).map(|c| c.join(" && ")).filter(|c| !c.is_empty());
    let forward_ports = object
        .get("forwardPorts")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.as_u64().or_else(|| p.as_str().and_then(|s| s.parse().ok())))
                .filter_map(|p| u16::try_from(p).ok().filter(|p| *p > 0))
                .collect()
        })
        .unwrap_or_default();
    let labels = object
        .get("portsAttributes")
        .and_then(Value::as_object)
        .map(|attrs| {
            attrs
                .iter()
                .filter_map(|(port, attr)| {
                    let port: u16 = port.parse().ok()?;
                    let label = attr.get("label")?.as_str()?;
                    Some((port, label.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(DevContainer { post_create, post_start, forward_ports, labels })
}

/// A lifecycle command in any of its three forms: a shell string, an argv array (quoted into one shell
/// string), or an object of named commands (the spec runs those in parallel; we list them in order).
fn commands(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => vec![s.clone()],
        Value::Array(args) => {
            let args: Vec<String> = args.iter().filter_map(Value::as_str).map(shell_quote).collect();
            if args.is_empty() {
                vec![]
            } else {
                vec![args.join(" ")]
            }
        }
        Value::Object(named) => named.values().flat_map(commands).collect(),
        _ => vec![],
    }
}

/// Quotes one argument for `bash` unless it is plainly safe.
fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Removes `//` and `/* */` comments outside strings.
pub(crate) fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Removes commas directly before `}` or `]` outside strings (run after [`strip_comments`]).
pub(crate) fn strip_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(next) = chars.get(i + 1) {
                    out.push(*next);
                    i += 1;
                }
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if !matches!(next, Some('}') | Some(']')) {
                out.push(c);
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_go_but_strings_stay() {
        let text = r#"{
            // line comment
            "a": "http://x/*not a comment*/", /* block
            comment */ "b": [1, 2,],
            "c": "quote \" // still string",
        }"#;
        let clean = strip_trailing_commas(&strip_comments(text));
        let v: Value = serde_json::from_str(&clean).unwrap();
        assert_eq!(v["a"], "http://x/*not a comment*/");
        assert_eq!(v["b"], serde_json::json!([1, 2]));
        assert_eq!(v["c"], "quote \" // still string");
    }

    #[test]
    fn reads_commands_ports_and_labels_in_every_form() {
        let dc = parse(
            r#"{
            "postCreateCommand": ["pip", "install", "-r", "my reqs.txt"],
            "postStartCommand": {"a": "git fetch", "b": "echo hi"},
            "forwardPorts": [3000, "8080", "db:5432", 0],
            "portsAttributes": {"3000": {"label": "Web App"}, "9000-9100": {"label": "range"}},
        }"#,
        )
        .unwrap();
        assert_eq!(dc.post_create, vec!["pip install -r 'my reqs.txt'"]);
        assert_eq!(dc.post_start.as_deref(), Some("git fetch && echo hi"));
        assert_eq!(dc.forward_ports, vec![3000, 8080]);
        assert_eq!(dc.labels, BTreeMap::from([(3000, "Web App".to_string())]));
        assert_eq!(parse(r#"{"postStartCommand": "  "}"#).unwrap().post_start, None);
        assert_eq!(parse("not json"), None);
    }
}
