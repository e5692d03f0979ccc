//! A strict reader of the OpenMetrics text exposition (what `/metrics` serves), for tests: every
//! line must be a `# HELP`/`# TYPE`/`# UNIT` comment, a sample of a declared family, or the final
//! `# EOF`; histogram buckets must be cumulative and end at `+Inf` = `_count`.

use std::collections::{BTreeMap, HashMap};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Full sample name (`nexus_http_requests_total`, `..._bucket`).
    pub name: String,
    /// Label name → value (unescaped).
    pub labels: BTreeMap<String, String>,
    /// `+Inf`/`-Inf` included.
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → type (`counter`, `gauge`, `histogram`, ...).
    pub types: HashMap<String, String>,
    /// In the order served.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample `name` whose labels include every pair of `labels`; panics if none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).unwrap_or_else(|| panic!("no sample {name} with {labels:?}"))
    }

    /// The value of the sample `name` whose labels include `labels`, if there is one.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value)
    }
}

/// Parses `text`, or says which line breaks the format and why.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut saw_eof = false;
    for (i, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
        if saw_eof {
            return Err(at("content after # EOF"));
        }
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, family) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            match kind {
                "TYPE" => {
                    let t = parts.next().ok_or_else(|| at("TYPE without a type"))?;
                    if !["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown", "gaugehistogram"]
                        .contains(&t)
                    {
                        return Err(at("unknown type"));
                    }
                    out.types.insert(family.to_string(), t.to_string());
                }
                "HELP" | "UNIT" => {}
                _ => return Err(at("unknown comment")),
            }
            continue;
        }
        let sample = parse_sample(line).map_err(|e| at(&e))?;
        if family_of(&sample.name, &out.types).is_none() {
            return Err(at("sample of an undeclared family"));
        }
        out.samples.push(sample);
    }
    if !saw_eof {
        return Err("the exposition does not end with # EOF".into());
    }
    check_histograms(&out)?;
    Ok(out)
}

fn family_of<'a>(sample: &str, types: &'a HashMap<String, String>) -> Option<&'a String> {
    if let Some(t) = types.get(sample) {
        return Some(t);
    }
    for suffix in ["_total", "_created", "_bucket", "_count", "_sum", "_info"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if let Some(t) = types.get(base) {
                return Some(t);
            }
        }
    }
    None
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (name_and_labels, value) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}').ok_or("unclosed label set")?;
            (&line[..=close], line[close + 1..].trim())
        }
        None => line.split_once(' ').map(|(n, v)| (n, v.trim())).ok_or("no value")?,
    };
    let (name, labels) = match name_and_labels.split_once('{') {
        Some((n, l)) => (n, parse_labels(l.strip_suffix('}').ok_or("unclosed label set")?)?),
        None => (name_and_labels, BTreeMap::new()),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return Err(format!("bad metric name {name:?}"));
    }
    let value = value.split(' ').next().unwrap_or("");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample { name: name.to_string(), labels, value })
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("dangling escape".into()),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or("unterminated label value")?;
        labels.insert(key.to_string(), value);
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    Ok(labels)
}

/// A histogram bucket: (upper bound, cumulative count).
type Bucket = (f64, f64);

/// Buckets of each histogram series are cumulative, end at `+Inf`, and `+Inf` equals `_count`.
fn check_histograms(exp: &Exposition) -> Result<(), String> {
    for (family, t) in &exp.types {
        if t != "histogram" {
            continue;
        }
        let mut series: BTreeMap<Vec<(String, String)>, Vec<Bucket>> = BTreeMap::new();
        for s in exp.samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
            let le = s.labels.get("le").ok_or_else(|| format!("{family}: bucket without le"))?;
            let le =
                if le == "+Inf" { f64::INFINITY } else { le.parse().map_err(|_| format!("{family}: bad le {le}"))? };
            let key = s.labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect();
            series.entry(key).or_default().push((le, s.value));
        }
        for (key, buckets) in series {
            if buckets.windows(2).any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1) {
                return Err(format!("{family} {key:?}: buckets not increasing and cumulative"));
            }
            let last = buckets.last().ok_or_else(|| format!("{family}: no buckets"))?;
            let count = exp
                .samples
                .iter()
                .find(|s| {
                    s.name == format!("{family}_count")
                        && s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>() == key
                })
                .ok_or_else(|| format!("{family} {key:?}: no _count"))?;
            if last.0 != f64::INFINITY || last.1 != count.value {
                return Err(format!("{family} {key:?}: the +Inf bucket must equal _count"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_valid_exposition_and_refuses_broken_ones() {
        let ok = "# HELP x_requests R.\n# TYPE x_requests counter\nx_requests_total{route=\"/a\",status=\"200\"} 2\n\
                  # TYPE x_lat histogram\nx_lat_sum 0.3\nx_lat_count 2\nx_lat_bucket{le=\"0.1\"} 1\nx_lat_bucket{le=\"+Inf\"} 2\n# EOF\n";
        let exp = parse(ok).unwrap();
        assert_eq!(exp.value("x_requests_total", &[("route", "/a")]), 2.0);
        assert!(parse(&ok.replace("# EOF\n", "")).is_err(), "no EOF");
        assert!(parse(&ok.replace("x_lat_count 2", "x_lat_count 3")).is_err(), "+Inf != count");
        assert!(parse("y 1\n# EOF\n").is_err(), "undeclared family");
        assert!(parse("# TYPE y gauge\ny{a=\"1} 1\n# EOF\n").is_err(), "unterminated label");
    }
}
