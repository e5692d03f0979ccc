//! `.nexus/config.yaml`: the strict parser, its cross-field validation, and the typed result.
//!
//! Parsing runs in two passes. The YAML parser ([`crate::yaml`]) reads the file into the `Raw*` types
//! below, whose own `Deserialize` impls check each value where it stands (so the parser knows the
//! position). Checks that need several nodes at once (duplicate ports, `depends_on`, cycles, health checks that need the
//! service's port) run afterwards and find their position with [`crate::locate`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;

use nexus_types::protocol::{HealthCheck, HealthKind, ProjectPlan, ServicePlan};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{self, ConfigError, CONFIG_PATH, KEY_HINTS};
use crate::locate::{self, Seg, Target};
use crate::yaml::{parse_yaml, with_hint, MappingVisitor};

/// Longest service name: it becomes part of a systemd unit name next to the workspace name.
pub const MAX_SERVICE_NAME: usize = 40;

/// Fewest and most CPUs a workspace may ask for (the server enforces the same range).
const CPU_RANGE: std::ops::RangeInclusive<u64> = 1..=64;

/// Smallest memory limit the server accepts.
const MIN_MEMORY: u64 = 128 << 20;

/// Longest duration accepted (health-check timings, the setup timeout): anything longer is surely a
/// unit mistake.
const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;

/// A parsed and validated `.nexus/config.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectConfig {
    /// `name:`, for people only.
    pub name: Option<String>,
    /// `provider:`; when given it is `lxc`, the only one there is.
    pub provider: Option<String>,
    /// `setup:` commands, run once after the clone, in order.
    pub setup: Vec<String>,
    /// `setup_timeout:` in milliseconds: how long the setup commands together may run; `None`: the
    /// default, [`nexus_types::protocol::DEFAULT_SETUP_TIMEOUT_MS`] (15 minutes).
    pub setup_timeout_ms: Option<u64>,
    /// `services:` in the order they are written, with health checks resolved (defaults filled in).
    pub services: Vec<ServicePlan>,
    /// `providers.lxc:`.
    pub lxc: LxcConfig,
}

/// `providers.lxc`: the container's image and limits; unset fields take the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LxcConfig {
    /// LXD image, e.g. `ubuntu:22.04`.
    pub image: Option<String>,
    /// CPU count, 1-64.
    pub cpu: Option<u32>,
    /// Memory limit as written (`4GB`, `512MiB`), at least 128MiB.
    pub memory: Option<String>,
}

impl ProjectConfig {
    /// What the node runs: the setup steps and services, with `source` set to `.nexus/config.yaml`.
    pub fn plan(&self) -> ProjectPlan {
        ProjectPlan {
            source: CONFIG_PATH.to_string(),
            setup: self.setup.clone(),
            services: self.services.clone(),
            setup_timeout_ms: self.setup_timeout_ms,
            ..Default::default()
        }
    }

    /// `(cpu, memory, image)` from `providers.lxc`.
    pub fn resources(&self) -> (Option<u32>, Option<String>, Option<String>) {
        (self.lxc.cpu, self.lxc.memory.clone(), self.lxc.image.clone())
    }
}

/// Parses and validates the text of `.nexus/config.yaml`.
///
/// An empty file (or one with only comments) is a valid config with nothing in it.
pub fn parse_config(source: &str) -> Result<ProjectConfig, ConfigError> {
    let Mapping(raw) = parse_yaml::<Mapping<RawConfig>>(source, &KEY_HINTS)?;
    build(source, raw)
}

/// Checks a service name: 1-40 of `a-z 0-9 -`, not starting or ending with `-` (it becomes part of a
/// systemd unit name and a CLI argument). Returns the message and hint on failure.
pub fn check_service_name(name: &str) -> Result<(), (String, String)> {
    let hint = "use 1-40 lowercase letters, digits and '-', e.g. `web` or `api-server`".to_string();
    let problem = if name.is_empty() {
        Some("service name is empty".to_string())
    } else if name.len() > MAX_SERVICE_NAME {
        Some(format!("service name {name:?} is longer than {MAX_SERVICE_NAME} characters"))
    } else if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        Some(format!("service name {name:?} contains {bad:?}"))
    } else if name.starts_with('-') || name.ends_with('-') {
        Some(format!("service name {name:?} starts or ends with '-'"))
    } else {
        None
    };
    problem.map_or(Ok(()), |p| Err((p, hint)))
}

// ---------------------------------------------------------------------------------------------------
// The raw shape, checked value by value while the parser still knows where each value is.

/// The whole file. Field names here are the config's keys; `schema.rs` tests that the JSON schema lists
/// exactly these (and those of the structs below).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    provider: Option<Provider>,
    setup: Option<Setup>,
    setup_timeout: Option<Duration>,
    services: Option<Services>,
    providers: Option<Mapping<RawProviders>>,
}

impl Expecting for RawConfig {
    const EXPECTING: &'static str = "a mapping with any of: name, provider, setup, setup_timeout, services, providers";
}

/// One entry under `services:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    command: Command,
    port: Option<Port>,
    working_dir: Option<WorkingDir>,
    env: Option<Env>,
    depends_on: Option<DependsOn>,
    health_check: Option<Mapping<RawHealth>>,
}

impl Expecting for RawService {
    const EXPECTING: &'static str =
        "a service mapping with `command:` and optionally port, working_dir, env, depends_on, health_check";
}

/// `health_check:`; which keys apply depends on `type` and is checked in [`health_check`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(rename = "type")]
    kind: HealthType,
    path: Option<HttpPath>,
    port: Option<Port>,
    command: Option<Command>,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    retries: Option<Retries>,
    start_timeout: Option<Duration>,
}

impl Expecting for RawHealth {
    const EXPECTING: &'static str = "a health check mapping with `type:` (http, tcp, command or none)";
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum HealthType {
    Http,
    Tcp,
    Command,
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProviders {
    lxc: Option<Mapping<RawLxc>>,
}

impl Expecting for RawProviders {
    const EXPECTING: &'static str = "a mapping with an `lxc:` entry";
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLxc {
    image: Option<Image>,
    cpu: Option<Cpu>,
    memory: Option<Memory>,
}

impl Expecting for RawLxc {
    const EXPECTING: &'static str = "a mapping with any of: image, cpu, memory";
}

/// What a struct read through [`Mapping`] is, for type errors ("expected a health check mapping ...").
trait Expecting {
    const EXPECTING: &'static str;
}

/// A derived struct read from a mapping. An empty value (`web:` with nothing below) reads as an empty
/// mapping, so what it lacks is reported as a missing key; anything else is a type error naming what
/// the struct expects.
struct Mapping<T>(T);

impl<'de, T: Deserialize<'de> + Expecting> Deserialize<'de> for Mapping<T> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(MappingVisitor { expecting: T::EXPECTING, marker: PhantomData }).map(Mapping)
    }
}

/// Implements `Deserialize` for a newtype from a visitor body: `$expecting` names what is allowed, the
/// listed `visit_*` methods build the value (anything else is a type error naming `$expecting`).
macro_rules! value_type {
    ($ty:ident, $expecting:expr, { $($visit:item)* }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    $($visit)*
                }
                de.deserialize_any(V)
            }
        }
    };
}

/// `provider:`, which can only be `lxc` for now.
struct Provider(String);
value_type!(Provider, "a provider name (`lxc`)", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Provider, E> {
        match v {
            "lxc" => Ok(Provider(v.to_string())),
            other => Err(E::custom(with_hint(format!("unknown provider {other:?}"), "only `lxc` is supported"))),
        }
    }
});

/// A shell command: any string that is not blank.
struct Command(String);
value_type!(Command, "a shell command string", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Command, E> {
        check_command(v).map(Command).map_err(E::custom)
    }
});

/// A string or a list of strings (`setup: npm install` is the same as `setup: [npm install]`), each item
/// checked by `check` inside the visitor so that an error points at the item.
struct ListVisitor {
    check: fn(&str) -> Result<String, String>,
}

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        (self.check)(v).map(|s| vec![s]).map_err(E::custom)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element_seed(ItemSeed { check: self.check })? {
            out.push(item);
        }
        Ok(out)
    }
}

/// One list item, checked while the parser still knows its position.
struct ItemSeed {
    check: fn(&str) -> Result<String, String>,
}

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<String, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.check)(v).map_err(E::custom)
    }
}

/// `setup:` commands.
struct Setup(Vec<String>);

impl<'de> Deserialize<'de> for Setup {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(ListVisitor { check: check_command }).map(Setup)
    }
}

/// `depends_on:` service names (checked against the services after parsing).
struct DependsOn(Vec<String>);

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(ListVisitor { check: |s| Ok(s.to_string()) }).map(DependsOn)
    }
}

fn check_command(v: &str) -> Result<String, String> {
    if v.trim().is_empty() {
        return Err(with_hint("command is empty", "write the shell command to run, e.g. `npm run dev`"));
    }
    Ok(v.to_string())
}

/// A TCP port, 1-65535.
#[derive(Clone, Copy)]
struct Port(u16);
value_type!(Port, "a port number from 1 to 65535", {
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
        port(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
        port(v)
    }
});

fn port<E: de::Error, N: Copy + fmt::Display + TryInto<u16>>(v: N) -> Result<Port, E> {
    match v.try_into() {
        Ok(p) if p > 0 => Ok(Port(p)),
        _ => Err(E::custom(with_hint(format!("port {v} is out of range"), "use a port from 1 to 65535"))),
    }
}

/// A directory relative to the repo root, normalized (`./frontend/` → `frontend`; `.` → ``).
struct WorkingDir(String);
value_type!(WorkingDir, "a directory relative to the repo root", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<WorkingDir, E> {
        let hint = "use a directory inside the repo, relative to its root, e.g. `frontend`";
        if v.starts_with('/') || v.starts_with('~') || v.contains('\\') {
            return Err(E::custom(with_hint(format!("working_dir {v:?} is not a relative path"), hint)));
        }
        let parts: Vec<&str> = v.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        if parts.contains(&"..") {
            return Err(E::custom(with_hint(format!("working_dir {v:?} leaves the repo"), hint)));
        }
        Ok(WorkingDir(parts.join("/")))
    }
});

/// An HTTP path for a health check; must start with `/`.
struct HttpPath(String);
value_type!(HttpPath, "an HTTP path starting with `/`", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<HttpPath, E> {
        if !v.starts_with('/') || v.chars().any(char::is_whitespace) {
            return Err(E::custom(with_hint(
                format!("health check path {v:?} must start with '/'"),
                "e.g. `/` or `/healthz`",
            )));
        }
        Ok(HttpPath(v.to_string()))
    }
});

/// A duration in milliseconds: `500ms`, `2s`, `1.5s`, `1m`, `1h`, or a number of seconds.
#[derive(Clone, Copy)]
struct Duration(u64);
value_type!(Duration, "a duration like `500ms`, `2s` or `1m`, or a number of seconds", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map(Duration).ok_or_else(|| E::custom(duration_error(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        self.visit_str(&v.to_string())
    }
});

fn duration_error(v: &str) -> String {
    with_hint(
        format!("invalid duration {v:?}"),
        "use a duration above 0 and at most 24h, like `500ms`, `2s`, `1m`, or a number of seconds",
    )
}

/// Parses `500ms`, `2s`, `1.5s`, `1m`, `1h` or a bare number of seconds into milliseconds.
pub(crate) fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let unit_ms = match unit.trim() {
        "ms" => 1.0,
        "" | "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    let ms = (number * unit_ms).round();
    // The bounds make the cast exact.
    (ms >= 1.0 && ms <= MAX_DURATION_MS as f64).then_some(ms as u64)
}

/// Health-check retries: 0 or more.
#[derive(Clone, Copy)]
struct Retries(u32);
value_type!(Retries, "a whole number of retries (0 or more)", {
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Retries, E> {
        u32::try_from(v)
            .map(Retries)
            .map_err(|_| E::custom(with_hint(format!("retries {v} is too large"), "use a whole number, e.g. 3")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Retries, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(with_hint(format!("retries {v} is negative"), "use a whole number, e.g. 3"))),
        }
    }
});

/// CPU count, 1-64.
struct Cpu(u32);
value_type!(Cpu, "a whole number of CPUs from 1 to 64", {
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cpu, E> {
        match u32::try_from(v) {
            Ok(n) if CPU_RANGE.contains(&v) => Ok(Cpu(n)),
            _ => Err(E::custom(with_hint(format!("cpu {v} is out of range"), "use 1 to 64 CPUs"))),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cpu, E> {
        Err(E::custom(with_hint(format!("cpu {v} is out of range"), "use 1 to 64 CPUs")))
    }
});

/// A memory limit like `4GB` or `512MiB`, kept as written for LXD.
struct Memory(String);
value_type!(Memory, "a size like `4GB` or `512MiB`", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Memory, E> {
        match nexus_types::names::memory_bytes(v) {
            Some(bytes) if bytes >= MIN_MEMORY => Ok(Memory(v.trim().to_string())),
            _ => Err(E::custom(with_hint(
                format!("memory {v:?} is not a size of at least 128MiB"),
                "use a size like `4GB` or `512MiB`",
            ))),
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Memory, E> {
        Err(E::custom(with_hint(format!("memory {v} has no unit"), "use a size like `4GB` or `512MiB`")))
    }
});

/// An LXD image name; not blank.
struct Image(String);
value_type!(Image, "an LXD image such as `ubuntu:22.04`", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Image, E> {
        if v.trim().is_empty() {
            return Err(E::custom(with_hint("image is empty", "use an LXD image such as `ubuntu:22.04`")));
        }
        Ok(Image(v.trim().to_string()))
    }
});

/// An environment value; numbers and booleans are taken as their text (`PORT: 3000`).
struct EnvValue(String);
value_type!(EnvValue, "a string, number or boolean", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
        Ok(EnvValue(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
        Ok(EnvValue(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
        Ok(EnvValue(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
        Ok(EnvValue(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
        Ok(EnvValue(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<EnvValue, E> {
        Err(E::custom(with_hint("environment value is empty", "write `\"\"` for an empty string")))
    }
});

/// Which kind of mapping key a [`KeySeed`] reads, deciding how it is checked.
#[derive(Clone, Copy)]
enum KeyKind {
    Service,
    EnvVar,
}

/// Reads a mapping key, checking its form and that it has not been seen: the error then points at the
/// key itself, which is where the user has to look.
struct KeySeed<'a> {
    kind: KeyKind,
    seen: &'a HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<String, D::Error> {
        // The checks run inside the visitor: only errors raised there carry the key's position.
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        let (what, check) = match self.kind {
            KeyKind::Service => ("service", check_service_name(key)),
            KeyKind::EnvVar => ("environment variable", check_env_name(key)),
        };
        if let Err((message, hint)) = check {
            return Err(E::custom(with_hint(message, hint)));
        }
        if self.seen.contains(key) {
            return Err(E::custom(with_hint(
                format!("{what} {key:?} is defined twice"),
                format!("keep one {what} named {key:?}"),
            )));
        }
        Ok(key.to_string())
    }
}

fn check_env_name(name: &str) -> Result<(), (String, String)> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err((
            format!("{name:?} is not a valid environment variable name"),
            "use letters, digits and '_', not starting with a digit, e.g. `NODE_ENV`".to_string(),
        ))
    }
}

/// An ordered mapping whose keys are checked by a [`KeySeed`].
fn ordered_map<'de, A, V>(mut map: A, kind: KeyKind) -> Result<Vec<(String, V)>, A::Error>
where
    A: MapAccess<'de>,
    V: Deserialize<'de>,
{
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while let Some(key) = map.next_key_seed(KeySeed { kind, seen: &seen })? {
        let value = map.next_value::<V>()?;
        seen.insert(key.clone());
        out.push((key, value));
    }
    Ok(out)
}

/// `services:`, in the order written (YAML mappings are unordered to most libraries, but start-up order
/// and `nexus status` follow the file).
struct Services(Vec<(String, RawService)>);

impl<'de> Deserialize<'de> for Services {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Services;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping from service name to its settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Services, A::Error> {
                let pairs: Vec<(String, Mapping<RawService>)> = ordered_map(map, KeyKind::Service)?;
                Ok(Services(pairs.into_iter().map(|(k, v)| (k, v.0)).collect()))
            }
        }
        // `any`, not `map`: a list here must reach the visitor to be reported in its words.
        de.deserialize_any(V)
    }
}

/// `env:`, in the order written.
struct Env(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Env {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Env;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of NAME: value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Env, A::Error> {
                let pairs: Vec<(String, EnvValue)> = ordered_map(map, KeyKind::EnvVar)?;
                Ok(Env(pairs.into_iter().map(|(k, v)| (k, v.0)).collect()))
            }
        }
        de.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------------
// The second pass: checks across nodes, positioned with the locator.

/// Builds a path under `services.<name>`.
fn service_path(name: &str, rest: &[Seg]) -> Vec<Seg> {
    let mut path = locate::keys(&["services", name]);
    path.extend_from_slice(rest);
    path
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn build(source: &str, raw: RawConfig) -> Result<ProjectConfig, ConfigError> {
    let at = |path: Vec<Seg>, target: Target| locate::locate_near(source, &path, target);
    let raw_services = raw.services.map(|s| s.0).unwrap_or_default();
    let names: Vec<&str> = raw_services.iter().map(|(n, _)| n.as_str()).collect();
    let mut services = Vec::with_capacity(raw_services.len());
    let mut ports: HashMap<u16, &str> = HashMap::new();

    for (name, svc) in &raw_services {
        let port = svc.port.map(|p| p.0);
        if let Some(p) = port {
            if let Some(other) = ports.insert(p, name) {
                return Err(ConfigError::new(
                    at(service_path(name, &[key("port")]), Target::Value),
                    format!("services.{name}.port: port {p} is already used by service {other:?}"),
                    "give each service its own port",
                ));
            }
        }
        let health = match &svc.health_check {
            Some(check) => health_check(source, name, port, &check.0)?,
            None => HealthCheck::new(port.map_or(HealthKind::None, |port| HealthKind::Tcp { port })),
        };

        let depends_on = svc.depends_on.as_ref().map(|d| d.0.clone()).unwrap_or_default();
        for (i, dep) in depends_on.iter().enumerate() {
            let pos = || at(service_path(name, &[key("depends_on"), Seg::Index(i)]), Target::Value);
            let field = format!("services.{name}.depends_on");
            if dep == name {
                return Err(ConfigError::new(
                    pos(),
                    format!("{field}: service {name:?} depends on itself"),
                    "remove it from its own depends_on",
                ));
            }
            if !names.contains(&dep.as_str()) {
                let candidates: Vec<String> = names.iter().filter(|n| *n != name).map(|n| n.to_string()).collect();
                let hint = match error::nearest(dep, &candidates) {
                    Some(best) => format!("did you mean {best:?}?"),
                    None if candidates.is_empty() => "there are no other services to depend on".to_string(),
                    None => format!("services defined: {}", candidates.join(", ")),
                };
                return Err(ConfigError::new(pos(), format!("{field}: unknown service {dep:?}"), hint));
            }
            if depends_on[..i].contains(dep) {
                return Err(ConfigError::new(pos(), format!("{field}: {dep:?} is listed twice"), "list it once"));
            }
        }

        services.push(ServicePlan {
            name: name.clone(),
            command: svc.command.0.clone(),
            port,
            env: svc.env.as_ref().map(|e| e.0.clone()).unwrap_or_default(),
            working_dir: svc.working_dir.as_ref().map(|w| w.0.clone()).unwrap_or_default(),
            depends_on,
            health,
        });
    }

    if let Some((cycle, service, index)) = find_cycle(&services) {
        let name = &services[service].name;
        return Err(ConfigError::new(
            at(service_path(name, &[key("depends_on"), Seg::Index(index)]), Target::Value),
            format!("services.{name}.depends_on: dependency cycle {}", cycle.join(" → ")),
            "services start after the ones they depend on, so a cycle can never start; remove one of these entries",
        ));
    }

    let lxc = raw.providers.and_then(|p| p.0.lxc).map(|l| l.0);
    Ok(ProjectConfig {
        name: raw.name,
        provider: raw.provider.map(|p| p.0),
        setup: raw.setup.map(|s| s.0).unwrap_or_default(),
        setup_timeout_ms: raw.setup_timeout.map(|d| d.0),
        services,
        lxc: LxcConfig {
            image: lxc.as_ref().and_then(|l| l.image.as_ref()).map(|i| i.0.clone()),
            cpu: lxc.as_ref().and_then(|l| l.cpu.as_ref()).map(|c| c.0),
            memory: lxc.as_ref().and_then(|l| l.memory.as_ref()).map(|m| m.0.clone()),
        },
    })
}

/// Resolves one `health_check:` against its service: fills in the port and defaults, and refuses keys
/// that do not apply to the check's type (a `path` on a tcp check is a mistake worth telling about).
fn health_check(source: &str, name: &str, port: Option<u16>, check: &RawHealth) -> Result<HealthCheck, ConfigError> {
    let field = |k: &str| service_path(name, &[key("health_check"), key(k)]);
    let type_pos = || locate::locate_near(source, &field("type"), Target::Value);
    // With its article, for messages: "an http check".
    let type_name = match check.kind {
        HealthType::Http => "an http",
        HealthType::Tcp => "a tcp",
        HealthType::Command => "a command",
        HealthType::None => "a none",
    };
    let allowed: &[&str] = match check.kind {
        HealthType::Http => &["path", "port"],
        HealthType::Tcp => &["port"],
        HealthType::Command => &["command"],
        HealthType::None => &[],
    };
    let given = [("path", check.path.is_some()), ("port", check.port.is_some()), ("command", check.command.is_some())];
    for (k, present) in given {
        if present && !allowed.contains(&k) {
            let users = match k {
                "path" => "http checks",
                "port" => "http and tcp checks",
                _ => "command checks",
            };
            return Err(ConfigError::new(
                locate::locate_near(source, &field(k), Target::Key(0)),
                format!("services.{name}.health_check: `{k}` does not apply to {type_name} check"),
                format!("`{k}` is only for {users}; remove it or change `type`"),
            ));
        }
    }
    let check_port = check.port.map(|p| p.0).or(port);
    let needs_port = || {
        ConfigError::new(
            type_pos(),
            format!("services.{name}.health_check: {type_name} check needs a port"),
            format!("set `port:` on service {name:?} or on its health_check"),
        )
    };
    let kind = match check.kind {
        HealthType::Http => HealthKind::Http {
            port: check_port.ok_or_else(needs_port)?,
            path: check.path.as_ref().map_or_else(|| "/".to_string(), |p| p.0.clone()),
        },
        HealthType::Tcp => HealthKind::Tcp { port: check_port.ok_or_else(needs_port)? },
        HealthType::Command => HealthKind::Command {
            command: check.command.as_ref().map(|c| c.0.clone()).ok_or_else(|| {
                ConfigError::new(
                    type_pos(),
                    format!("services.{name}.health_check: a command check needs `command:`"),
                    "add the command that exits 0 when healthy, e.g. `command: curl -fs localhost:3000/health`",
                )
            })?,
        },
        HealthType::None => HealthKind::None,
    };
    let mut health = HealthCheck::new(kind);
    if let Some(d) = check.interval {
        health.interval_ms = d.0;
    }
    if let Some(d) = check.timeout {
        health.timeout_ms = d.0;
    }
    if let Some(r) = check.retries {
        health.retries = r.0;
    }
    if let Some(d) = check.start_timeout {
        health.start_timeout_ms = d.0;
    }
    Ok(health)
}

/// The first dependency cycle in declaration order: its names (first = last), and the service index and
/// `depends_on` index of the edge that closes it.
fn find_cycle(services: &[ServicePlan]) -> Option<(Vec<String>, usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        services: &[ServicePlan],
        index: &HashMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        node: usize,
    ) -> Option<(Vec<String>, usize, usize)> {
        marks[node] = Mark::Active;
        stack.push(node);
        for (i, dep) in services[node].depends_on.iter().enumerate() {
            let Some(&next) = index.get(dep.as_str()) else { continue };
            match marks[next] {
                Mark::Active => {
                    let start = stack.iter().position(|&n| n == next).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[start..].iter().map(|&n| services[n].name.clone()).collect();
                    cycle.push(services[next].name.clone());
                    return Some((cycle, node, i));
                }
                Mark::New => {
                    if let Some(found) = visit(services, index, marks, stack, next) {
                        return Some(found);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[node] = Mark::Done;
        None
    }
    let index: HashMap<&str, usize> = services.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut marks = vec![Mark::New; services.len()];
    (0..services.len()).find_map(|start| {
        if marks[start] != Mark::New {
            return None;
        }
        visit(services, &index, &mut marks, &mut Vec::new(), start)
    })
}

#[cfg(test)]
mod tests;
