//! Finds the line and column of a node in the config by its key path (`services.api.depends_on[0]`).
//!
//! Checks that span several nodes (cycles, duplicate ports, missing services) run after parsing, when
//! the parser's positions are gone. Rather than scan the text by hand (block and flow styles, quotes,
//! anchors, comments), we let `serde-saphyr` parse the document once more, walking down the path and
//! raising an error at the wanted node: the parser stamps an error with the position of the node being
//! read, so the position comes from the same parser that accepted the file and cannot disagree with it.
//! The same walk tells what a node holds, for type errors where the parser names only the type.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Which part of the node at the end of the path to point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The value (for a mapping key, what follows the colon).
    Value,
    /// The key itself; the number picks among repeated keys (0 = first).
    Key(usize),
}

/// Starts the error text that marks "found it", followed by what the node holds; any other error also
/// carries a position and is as good.
const FOUND: &str = "nexus-locate: found ";

/// Builds a key path: `path(&["services", "web"])`.
pub(crate) fn keys(path: &[&str]) -> Vec<Seg> {
    path.iter().map(|k| Seg::Key((*k).to_string())).collect()
}

/// Parses a key path as [`crate::yaml::display_path`] writes it (`services.web.depends_on[1]`; `.` and
/// `` are the root).
pub(crate) fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    if path.is_empty() || path == "." {
        return segs;
    }
    for part in path.split('.') {
        let (key, mut indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            segs.push(Seg::Key(key.to_string()));
        }
        while let Some(rest) = indexes.strip_prefix('[') {
            let Some((n, tail)) = rest.split_once(']') else { break };
            if let Ok(n) = n.parse() {
                segs.push(Seg::Index(n));
            }
            indexes = tail;
        }
    }
    segs
}

/// The 1-based (line, column) of the node at `path`, or `None` if the path is not in the document.
pub(crate) fn locate(source: &str, path: &[Seg], target: Target) -> Option<(usize, usize)> {
    seek(source, path, target).and_then(|e| position(source, &e))
}

/// Where an error from the parser is, 1-based. An empty value is placed where it would be written
/// (after `key: `), not on the colon before it as the parser has it.
pub(crate) fn position(source: &str, err: &serde_saphyr::Error) -> Option<(usize, usize)> {
    let l = err.location()?;
    let (line, column) = (usize::try_from(l.line()).ok()?, usize::try_from(l.column()).ok()?);
    let text: Vec<char> = source.lines().nth(line.checked_sub(1)?)?.chars().collect();
    let at = column.checked_sub(1)?;
    let ends_empty = |i: usize| text.get(i).is_none_or(|c| c.is_whitespace() || ",}]#".contains(*c));
    if text.get(at) == Some(&':') && ends_empty(at + 1) {
        let value = (at + 1..).find(|&i| text.get(i).is_none_or(|c| *c != ' ')).unwrap_or(at + 1);
        return Some((line, value + 1));
    }
    Some((line, column))
}

/// What the node at `path` holds, in serde's words (`string "abc"`, `integer `3``, `sequence`), or
/// `None` if the path is not in the document.
pub(crate) fn describe(source: &str, path: &[Seg]) -> Option<String> {
    match seek(source, path, Target::Value)? {
        serde_saphyr::Error::Message { msg, .. } => msg.strip_prefix(FOUND).map(str::to_string),
        _ => None,
    }
}

/// Walks to the node at `path` and fails there; `None` when the walk ends without finding it.
fn seek(source: &str, path: &[Seg], target: Target) -> Option<serde_saphyr::Error> {
    let result = serde_saphyr::with_deserializer_from_str_with_options(source, crate::yaml::options(), |de| {
        (Seek { path, target }).deserialize(de)
    });
    result.err()
}

/// Like [`locate`], but when the node is missing, points at its nearest ancestor's key instead (and at
/// the top of the file as a last resort), so an error always has a position.
pub(crate) fn locate_near(source: &str, path: &[Seg], target: Target) -> (usize, usize) {
    if let Some(pos) = locate(source, path, target) {
        return pos;
    }
    let mut path = path.to_vec();
    while let Some(popped) = path.pop() {
        if path.is_empty() {
            break;
        }
        // Below a missing list item, the list itself (or a lone string in its place) is the best spot;
        // below a missing key, the key that should have held it.
        let found = match popped {
            Seg::Index(_) => locate(source, &path, Target::Value),
            Seg::Key(_) => locate(source, &path, Target::Key(0)).or_else(|| locate(source, &path, Target::Value)),
        };
        if let Some(pos) = found {
            return pos;
        }
    }
    (1, 1)
}

struct Seek<'a> {
    path: &'a [Seg],
    target: Target,
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        match self.path.split_first() {
            None => de.deserialize_any(Here),
            Some((Seg::Key(key), rest)) => de.deserialize_any(MapSeek { key, rest, target: self.target }),
            Some((Seg::Index(index), rest)) => de.deserialize_any(SeqSeek { index: *index, rest, target: self.target }),
        }
    }
}

/// Fails on whatever node it is given, saying what it holds, so the error carries that node's position.
struct Here;

/// The "found it" error for a node holding `what`.
fn found<E: de::Error>(what: Unexpected) -> E {
    E::custom(format_args!("{FOUND}{what}"))
}

impl<'de> Visitor<'de> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any node")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        Err(found(Unexpected::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        Err(found(Unexpected::Signed(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        Err(found(Unexpected::Unsigned(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        Err(found(Unexpected::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        Err(found(Unexpected::Str(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(found(Unexpected::Unit))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(found(Unexpected::Seq))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(found(Unexpected::Map))
    }
}

/// Accepts any other kind of node as "not here".
macro_rules! not_found_for_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

struct MapSeek<'a> {
    key: &'a str,
    rest: &'a [Seg],
    target: Target,
}

impl<'de> Visitor<'de> for MapSeek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }

    not_found_for_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let wanted_key = match self.target {
            Target::Key(n) if self.rest.is_empty() => Some(n),
            _ => None,
        };
        let mut seen = 0;
        let mut done = false;
        loop {
            let stop = !done && wanted_key == Some(seen);
            let Some(matched) = map.next_key_seed(KeyMatch { key: self.key, stop })? else { break };
            if matched && !done && wanted_key.is_none() {
                map.next_value_seed(Seek { path: self.rest, target: self.target })?;
                done = true;
            } else {
                if matched {
                    seen += 1;
                }
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Reads one mapping key, telling whether it is the wanted one; fails on it when `stop` is set.
struct KeyMatch<'a> {
    key: &'a str,
    stop: bool,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl KeyMatch<'_> {
    fn check<E: de::Error>(&self, text: &str) -> Result<bool, E> {
        match text == self.key {
            true if self.stop => Err(E::custom(FOUND)),
            matched => Ok(matched),
        }
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.check(v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

struct SeqSeek<'a> {
    index: usize,
    rest: &'a [Seg],
    target: Target,
}

impl<'de> Visitor<'de> for SeqSeek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }

    not_found_for_scalars!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Seek { path: self.rest, target: self.target })?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment
services:
  web:
    command: \"npm run dev\"
    port: 3000
  api:
    command: x
    depends_on:
      - web
      - db
    env: {A: '1', B: 2}
  other: {command: y, depends_on: [api, web]}
";

    fn at(path: &str, target: Target) -> Option<(usize, usize)> {
        locate(DOC, &parse_path(path), target)
    }

    #[test]
    fn finds_values_and_keys_in_block_and_flow_styles() {
        assert_eq!(at("services", Target::Key(0)), Some((2, 1)));
        assert_eq!(at("services.web", Target::Key(0)), Some((3, 3)));
        assert_eq!(at("services.web.command", Target::Value), Some((4, 14)));
        assert_eq!(at("services.web.port", Target::Value), Some((5, 11)));
        assert_eq!(at("services.web.port", Target::Key(0)), Some((5, 5)));
        assert_eq!(at("services.api.depends_on", Target::Value), Some((9, 7)));
        assert_eq!(at("services.api.depends_on[1]", Target::Value), Some((10, 9)));
        assert_eq!(at("services.api.env.B", Target::Value), Some((11, 22)));
        assert_eq!(at("services.api.env.B", Target::Key(0)), Some((11, 19)));
        assert_eq!(at("services.other.depends_on[1]", Target::Value), Some((12, 41)));
        assert_eq!(at("services.other", Target::Value), Some((12, 10)));
    }

    #[test]
    fn missing_nodes_are_none_and_near_falls_back_to_the_parent_key() {
        assert_eq!(at("services.db", Target::Key(0)), None);
        assert_eq!(at("services.api.depends_on[5]", Target::Value), None);
        assert_eq!(at("services.web.port[0]", Target::Value), None);
        assert_eq!(locate_near(DOC, &parse_path("services.web.health_check.port"), Target::Value), (3, 3));
        assert_eq!(locate_near(DOC, &parse_path("nothing.here"), Target::Value), (1, 1));
    }

    #[test]
    fn describes_what_a_node_holds() {
        let describe = |path: &str| describe(DOC, &parse_path(path));
        assert_eq!(describe("services.web.command").as_deref(), Some("string \"npm run dev\""));
        assert_eq!(describe("services.web.port").as_deref(), Some("integer `3000`"));
        assert_eq!(describe("services.api.depends_on").as_deref(), Some("sequence"));
        assert_eq!(describe("services.api.env").as_deref(), Some("map"));
        assert_eq!(describe("services.db"), None);
    }

    #[test]
    fn empty_values_are_placed_where_they_would_be_written() {
        let doc = "a:
  b:
c: {d: , e: 1}
";
        assert_eq!(locate(doc, &keys(&["a", "b"]), Target::Value), Some((2, 5)));
        assert_eq!(locate(doc, &keys(&["c", "d"]), Target::Value), Some((3, 8)));
        assert_eq!(describe(doc, &keys(&["a", "b"])).as_deref(), Some("unit value"));
    }

    #[test]
    fn repeated_keys_are_told_apart() {
        let doc = "a: 1\nb: 2\na: 3\n";
        assert_eq!(locate(doc, &keys(&["a"]), Target::Key(0)), Some((1, 1)));
        assert_eq!(locate(doc, &keys(&["a"]), Target::Key(1)), Some((3, 1)));
        assert_eq!(locate(doc, &keys(&["a"]), Target::Value), Some((1, 4)));
    }

    #[test]
    fn parses_displayed_paths() {
        assert_eq!(parse_path("."), vec![]);
        assert_eq!(parse_path(""), vec![]);
        assert_eq!(
            parse_path("services.web.depends_on[1]"),
            vec![Seg::Key("services".into()), Seg::Key("web".into()), Seg::Key("depends_on".into()), Seg::Index(1)]
        );
    }
}
