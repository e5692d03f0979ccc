//! Reading a YAML config file, and the one translation of YAML errors into words for people.
//!
//! Both config files Nexus reads, a repo's `.nexus/config.yaml` and the designer's own
//! `~/.nexus/config.yaml` (in nexus-cli), go through [`parse_yaml`]. `serde-saphyr` knows where each
//! error is and `serde_path_to_error` under which key; what they lack is wording a designer understands
//! and a next step. Both are added here, so every config error reads the same way: the key path, what is
//! wrong, and a hint (the nearest valid key, or what is allowed there).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Error as YamlError;

use crate::locate::{self, Seg, Target};

/// What a config file's keys mean, for the hints of [`parse_yaml`]'s errors.
#[derive(Debug, Clone, Copy)]
pub struct KeyHints {
    /// `(alias, key)` pairs: names people bring from other tools, suggested as the key they mean.
    pub aliases: &'static [(&'static str, &'static str)],
    /// Words for the Rust types serde names in type errors, e.g. `("u16", "a port number")`; the
    /// common ones have defaults.
    pub type_names: &'static [(&'static str, &'static str)],
    /// What is allowed at a key path (`services.web.port`; `""` is the root), for type errors and
    /// missing keys.
    pub allowed: fn(&str) -> String,
}

/// A config file that could not be read, said for people: where, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlProblem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, starting with the key path when there is one (`services.web.port: ...`).
    pub message: String,
    /// The next step.
    pub hint: String,
}

/// Separates a hint from the message in errors our own `Deserialize` impls raise: serde only carries a
/// string through, and this way the hint is written next to the check that knows it.
pub(crate) const HINT_SEP: &str = "\nhint: ";

/// A serde error message carrying a hint (see [`HINT_SEP`]).
pub(crate) fn with_hint(message: impl std::fmt::Display, hint: impl std::fmt::Display) -> String {
    format!("{message}{HINT_SEP}{hint}")
}

/// Parses one YAML document into `T`, strictly: errors point at `line:column` and say what to do.
///
/// An empty document reads as YAML null, which a struct of optional fields takes as all unset.
pub fn parse_yaml<T: DeserializeOwned>(source: &str, hints: &KeyHints) -> Result<T, YamlProblem> {
    let mut path = Vec::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(source, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = segments(e.path());
            e.into_inner()
        })
    });
    result.map_err(|e| humanize(source, &e, &path, hints))
}

/// Reads a struct from a mapping, or from an empty value (`github:` with nothing below) as if it were an
/// empty mapping: people write a section's key and fill it in later, and `serde-saphyr` alone would call
/// that a type error. For `#[serde(default, deserialize_with = "nexus_project::mapping_or_empty")]`.
pub fn mapping_or_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(de: D) -> Result<T, D::Error> {
    de.deserialize_any(MappingVisitor { expecting: "a mapping", marker: PhantomData })
}

/// Reads a `T` from a mapping or an empty value (see [`mapping_or_empty`]); anything else is a type
/// error saying `expecting`.
pub(crate) struct MappingVisitor<T> {
    pub(crate) expecting: &'static str,
    pub(crate) marker: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for MappingVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        T::deserialize(de::value::MapDeserializer::<_, E>::new(std::iter::empty::<((), ())>()))
    }
}

/// The parser settings every read of a config file uses, the locator's included.
pub(crate) fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
        // Repeated keys reach the visitors, which say it in their own words ("service "web" is
        // defined twice") at the second one.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        // YAML 1.2, as serde_yaml read it: only `true` and `false` are booleans; `yes` and `on` are
        // strings (an env value `DEBUG: yes` stays "yes").
        strict_booleans: true,
    }
}

/// Whether `text`, as a plain scalar, reads back as exactly that string (not a number, a boolean, null,
/// or something YAML syntax changes).
pub(crate) fn reads_as_string(text: &str) -> bool {
    let read =
        serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| serde_json::Value::deserialize(de));
    matches!(read, Ok(serde_json::Value::String(ref v)) if v == text)
}

/// The key path, up to the first step `serde_path_to_error` could not name (a key that failed to parse).
fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .map_while(|s| match s {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                Some(Seg::Key(key.clone()))
            }
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// `services.web.depends_on[1]`; empty at the root.
pub(crate) fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Turns a `serde-saphyr` error at `path` into a [`YamlProblem`].
fn humanize(source: &str, err: &YamlError, path: &[Seg], hints: &KeyHints) -> YamlProblem {
    let err = err.without_snippet();
    let pos = locate::position(source, err).unwrap_or((1, 1));
    let shown = display_path(path);
    let prefix = |msg: String| if shown.is_empty() { msg } else { format!("{shown}: {msg}") };
    let problem =
        |pos: (usize, usize), message: String, hint: String| YamlProblem { line: pos.0, column: pos.1, message, hint };
    // The node at the path is the one of the wrong type; serde-saphyr points some of these errors at
    // its key instead.
    let type_error = |expected: &str, found: &str| {
        let found = found_words(found);
        let at = if path.is_empty() { pos } else { locate::locate(source, path, Target::Value).unwrap_or(pos) };
        problem(at, prefix(format!("expected {expected}, found {found}")), (hints.allowed)(&shown))
    };

    match err {
        YamlError::SerdeUnknownField { field, expected, .. } => {
            // The path names the unknown key itself; the message names the mapping it is in.
            let owner = match path.split_last() {
                Some((Seg::Key(k), rest)) if k == field => display_path(rest),
                _ => shown.clone(),
            };
            let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            let message = match owner.as_str() {
                "" => format!("unknown key {field:?}"),
                o => format!("unknown key {field:?} in {o}"),
            };
            let hint = match nearest_key(field, &expected, hints.aliases) {
                Some(best) => format!("did you mean {best:?}?"),
                None if expected.is_empty() => "no keys are allowed here".to_string(),
                None => format!("allowed keys here: {}", expected.join(", ")),
            };
            problem(pos, message, hint)
        }
        YamlError::SerdeUnknownVariant { variant, expected, .. } => {
            let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            let hint = match nearest_key(variant, &expected, hints.aliases) {
                Some(best) => format!("did you mean {best:?}?"),
                None => format!("use one of: {}", expected.join(", ")),
            };
            problem(pos, prefix(format!("unknown value {variant:?}")), hint)
        }
        YamlError::SerdeMissingField { field, .. } => {
            // The key that owns the mapping reads better than wherever the parser stopped.
            let pos = if path.is_empty() { pos } else { locate::locate_near(source, path, Target::Key(0)) };
            let hint = (hints.allowed)(&display_path(&[path, &[Seg::Key(field.to_string())]].concat()));
            problem(pos, prefix(format!("missing required key {field:?}")), hint)
        }
        YamlError::SerdeInvalidType { unexpected, expected, .. }
        | YamlError::SerdeInvalidValue { unexpected, expected, .. } => type_error(expected, unexpected),
        YamlError::SerdeInvalidLength { len, expected, .. } => {
            problem(pos, prefix(format!("expected {expected}, found {len} items")), (hints.allowed)(&shown))
        }
        YamlError::Message { msg, .. } => {
            if let Some(field) = msg.strip_prefix("duplicate field `").and_then(|m| m.split('`').next()) {
                let key = [path, &[Seg::Key(field.to_string())]].concat();
                let pos = locate::locate(source, &key, Target::Key(1)).unwrap_or(pos);
                return problem(pos, prefix(format!("key {field:?} is given twice")), "keep only one of them".into());
            }
            match msg.split_once(HINT_SEP) {
                Some((message, hint)) => problem(pos, prefix(message.to_string()), hint.to_string()),
                None => problem(pos, prefix(msg.clone()), (hints.allowed)(&shown)),
            }
        }
        // The parser's own type checks name a type, not the value found; read the value to say which.
        YamlError::InvalidScalar { ty, .. } => match locate::describe(source, path) {
            Some(found) => type_error(&type_name(ty, hints), &found),
            None => syntax_error(source, pos, err),
        },
        YamlError::InvalidBooleanStrict { .. } => match locate::describe(source, path) {
            Some(found) => type_error(&type_name("bool", hints), &found),
            None => syntax_error(source, pos, err),
        },
        YamlError::NullIntoString { .. } => type_error(&type_name("string", hints), "unit value"),
        YamlError::Unexpected { expected, .. } => match locate::describe(source, path) {
            Some(found) => type_error(&type_name(expected, hints), &found),
            None => syntax_error(source, pos, err),
        },
        YamlError::MultipleDocuments { .. } => {
            // Point at the `---` that starts the second document.
            let separator = source
                .lines()
                .take(pos.0)
                .enumerate()
                .filter(|(_, l)| l.starts_with("---"))
                .nth(usize::from(source.trim_start().starts_with("---")))
                .map_or(pos, |(i, _)| (i + 1, 1));
            problem(
                separator,
                "the file holds more than one YAML document".into(),
                "remove the `---` separators".into(),
            )
        }
        _ => syntax_error(source, pos, err),
    }
}

/// serde's names for what was found, in the words the rest of the message uses.
fn found_words(found: &str) -> &str {
    match found {
        "unit value" | "null" => "nothing (an empty value)",
        "map" => "a mapping",
        "sequence" => "a list",
        other => other,
    }
}

/// Words for a type the parser names: the caller's, else the common ones.
fn type_name(ty: &str, hints: &KeyHints) -> String {
    if let Some((_, words)) = hints.type_names.iter().find(|(t, _)| *t == ty) {
        return (*words).to_string();
    }
    let words = match ty {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "bool" | "boolean" => "true or false",
        "string" | "string scalar" | "str" | "char" => "a string",
        "mapping start" => "a mapping",
        "sequence start" => "a list",
        other => other,
    };
    words.to_string()
}

/// A YAML syntax error: the parser's words, and a hint for the usual causes.
fn syntax_error(source: &str, pos: (usize, usize), err: &YamlError) -> YamlProblem {
    let mut text = err.to_string();
    if let Some(at) = text.rfind(" at line ") {
        text.truncate(at);
    }
    // "while parsing a block mapping, did not find expected key": the problem, then its context.
    let (mut problem, context) = match text.split_once(", ") {
        Some((c, p)) if c.starts_with("while ") => (p.to_string(), format!(" (YAML error {c})")),
        _ => (text.clone(), String::new()),
    };
    // "unexpected character: `@'" is a reserved indicator at the start of a plain value.
    let reserved = problem
        .strip_prefix("unexpected character: `")
        .and_then(|r| r.strip_suffix('\''))
        .filter(|c| ["@", "`", "%", "!"].contains(c))
        .map(str::to_string);
    if let Some(c) = &reserved {
        problem = format!("a value cannot start with `{c}`");
    }
    let line = source.lines().nth(pos.0.saturating_sub(1)).unwrap_or_default();
    let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
    let mut pos = pos;
    let hint = if let Some(tab) = indent.find('\t') {
        // The parser points past the tab; the tab is what has to change.
        pos.1 = indent[..tab].chars().count() + 1;
        "indent with spaces; YAML does not allow tabs".to_string()
    } else if reserved.is_some() {
        format!("put values that start with `@`, `` ` ``, `%` or `!` in quotes{context}")
    } else if problem.contains("quote") {
        format!("close the quote, or put a `\\` before a quote inside the value{context}")
    } else if problem.contains("expected key") || problem.contains("mapping values are not allowed") {
        format!(
            "keys of one mapping must line up (check the indentation), and values containing `: ` need quotes{context}"
        )
    } else {
        format!("check the indentation and quoting here{context}")
    };
    YamlProblem { line: pos.0, column: pos.1, message: format!("invalid YAML: {problem}"), hint }
}

/// The candidate closest to `word` when it is close enough to be a likely typo, or what `aliases`
/// maps it to (`(alias, key)` pairs; used only when the key is a candidate). Shared by every config
/// file Nexus parses so their "did you mean" hints behave alike.
pub fn nearest_key(word: &str, candidates: &[String], aliases: &[(&str, &str)]) -> Option<String> {
    let normalized = word.to_ascii_lowercase().replace('-', "_");
    if let Some((_, to)) = aliases.iter().find(|(from, to)| *from == normalized && candidates.iter().any(|c| c == to)) {
        return Some((*to).to_string());
    }
    candidates
        .iter()
        .map(|c| (distance(&normalized, c), c))
        .filter(|(d, c)| {
            *d <= 2
                || d * 2 <= c.len()
                || (normalized.len() >= 3 && (c.starts_with(&normalized) || normalized.starts_with(c.as_str())))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.clone())
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions (`comamnd`).
fn distance(a: &str, b: &str) -> usize {
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

    #[test]
    fn distance_counts_edits_and_transpositions() {
        assert_eq!(distance("comand", "command"), 1);
        assert_eq!(distance("comamnd", "command"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("port", "port"), 0);
    }

    #[test]
    fn paths_display_like_keys_in_the_file() {
        assert_eq!(display_path(&[]), "");
        let path = [Seg::Key("services".into()), Seg::Key("web".into()), Seg::Key("depends_on".into()), Seg::Index(1)];
        assert_eq!(display_path(&path), "services.web.depends_on[1]");
        assert_eq!(display_path(&[Seg::Key("setup".into()), Seg::Index(0)]), "setup[0]");
    }
}
