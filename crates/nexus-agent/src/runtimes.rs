//! Node, its package managers and uv for workspaces, from a store on the node that every workspace
//! mounts read-only at [`RUNTIME_MOUNT`].
//!
//! The store holds one directory per tool and version (`node/22.23.5`, `npm/11.6.2`, `pnpm/9.15.0`,
//! `yarn/1.22.22`, `yarn-berry/4.5.0`, `uv/0.5.0`), each with a `bin/` a workspace puts on `PATH`:
//! Node's own, small wrapper scripts that run a package manager's JavaScript with the workspace's
//! `node`, or uv's static binary. Each version is fetched once per node: a download goes into a
//! scratch directory under `.tmp/`, is checked against the digest its source publishes, unpacked,
//! and renamed into place in one step, under a lock per version, so concurrent creates neither fetch
//! twice nor see a half-unpacked directory (two agents on one host may both fetch; the second rename
//! loses harmlessly).
//!
//! Which versions: the project's request ([`RuntimePlan`]) decides with `nexus_project::pick_node`
//! against the versions the Node source lists (the npm registry's `node-linux-<arch>` packages, or
//! nodejs.org's dist layout); npm and the other package managers are the version `packageManager`
//! names, else the newest release whose `engines.node` accepts the chosen Node; uv is PyPI's newest.
//! The choice is recorded on the instance ([`RECORD_KEY`]), so starting a workspace again needs no
//! network while the store has its versions. Version lists are kept for [`LISTING_TTL`]; when a
//! source cannot be reached, versions already in the store that satisfy the request are used.
//!
//! What a workspace gets is written to [`PROFILE_PATH`] (read by the login shells setup steps,
//! services and SSH sessions run in): those `bin/` directories first on `PATH`, `npm install -g`
//! into `~/.local`, `UV_PYTHON` naming the image's interpreter that satisfies the project's Python
//! request, and the owner's cache directories ([`crate::caches`]).

mod fetch;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexus_project::{lts_codename, parse_node_index, pick_node, pick_python, NodeRelease};
use nexus_types::diagnostics::lock;
use nexus_types::protocol::{PackageManagerKind, PythonRuntime, RuntimePlan, VersionRequest};
use nodejs_semver::{Range, Version};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::fetch::{Expected, Fetcher, Hashes, HttpError};
use crate::network::Network;
use crate::provider::Provider;
use crate::provision::{failure, provider_failure, script, ProvisionFailure};
use crate::services::shell_quote;

/// The node's runtime store unless the agent is told otherwise.
pub const DEFAULT_RUNTIME_DIR: &str = "/var/lib/nexus/runtimes";
/// Where package managers (and, by default, Node) come from.
pub const DEFAULT_NPM_REGISTRY: &str = "https://registry.npmjs.org";
/// Where uv comes from (PyPI's JSON API under `<base>/pypi/`).
pub const DEFAULT_PYPI: &str = "https://pypi.org";
/// Where workspaces see the store.
pub(crate) const RUNTIME_MOUNT: &str = "/opt/nexus/runtimes";
/// The store's device name on instances.
pub(crate) const RUNTIME_DEVICE: &str = "nexus-runtimes";
/// `$0` of the script that writes [`PROFILE_PATH`].
pub(crate) const STEP_RUNTIME: &str = "nexus-runtime";
/// `$0` of the script listing the image's Python interpreters (`<version>\t<path>` lines).
pub(crate) const STEP_PYTHONS: &str = "nexus-pythons";
/// The profile script putting the chosen runtimes on `PATH`.
pub(crate) const PROFILE_PATH: &str = "/etc/profile.d/nexus-runtime.sh";
/// Instance config key recording the plan and the versions chosen for it.
pub(crate) const RECORD_KEY: &str = "user.nexus.runtime";
/// How long a source's version list is used before it is asked again.
const LISTING_TTL: Duration = Duration::from_secs(600);
/// npm's abbreviated package documents carry everything needed here and are a fraction of the size.
const NPM_ACCEPT: &str = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*";

/// Runs as root. `$1`: the profile's path ([`PROFILE_PATH`]), `$2`: its text.
const RUNTIME_SCRIPT: &str = r#"set -eu
if ! printf '%s' "$2" | cmp -s - "$1"; then
  printf '%s' "$2" > "$1.tmp"
  chmod 0644 "$1.tmp"
  mv -f "$1.tmp" "$1"
fi
"#;

/// Prints `<version>\t<path>` for each CPython 3 interpreter of the image.
const PYTHONS_SCRIPT: &str = r#"for p in /usr/local/bin/python3.* /usr/bin/python3.*; do
  case "$p" in *-config|*[!0-9.]) continue ;; esac
  [ -x "$p" ] || continue
  v=$("$p" --version 2>&1) || continue
  printf '%s\t%s\n' "${v#Python }" "$p"
done
"#;

/// Where Node comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeSource {
    /// The npm registry's `node-linux-<arch>` packages (official builds, only `bin/node`; one package
    /// version per Node version), from the configured npm registry.
    NpmRegistry,
    /// nodejs.org's dist layout at this base URL (`https://nodejs.org/dist`): `index.json`,
    /// `v<version>/node-v<version>-linux-<arch>.tar.gz` and `v<version>/SHASUMS256.txt`.
    Dist(String),
}

impl NodeSource {
    /// `npm` for the npm registry, or the base URL of a nodejs.org-style dist layout.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "npm" {
            return Ok(NodeSource::NpmRegistry);
        }
        if (s.starts_with("https://") || s.starts_with("http://")) && !s.contains(char::is_whitespace) {
            return Ok(NodeSource::Dist(s.trim_end_matches('/').to_string()));
        }
        Err(format!(
            "{s:?} is not a Node source: give `npm` (the npm registry's node-linux-* packages) or a URL with nodejs.org's dist layout, such as https://nodejs.org/dist"
        ))
    }
}

impl std::fmt::Display for NodeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeSource::NpmRegistry => f.write_str("npm"),
            NodeSource::Dist(url) => f.write_str(url),
        }
    }
}

/// Where the store is and where it fetches from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The store on the node (default [`DEFAULT_RUNTIME_DIR`]).
    pub dir: PathBuf,
    /// Where Node comes from (default: the npm registry).
    pub node_source: NodeSource,
    /// The npm registry (default [`DEFAULT_NPM_REGISTRY`]); a different one is also set in workspaces.
    pub npm_registry: String,
    /// PyPI or a mirror with its JSON API (default [`DEFAULT_PYPI`]).
    pub pypi: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            dir: PathBuf::from(DEFAULT_RUNTIME_DIR),
            node_source: NodeSource::NpmRegistry,
            npm_registry: DEFAULT_NPM_REGISTRY.into(),
            pypi: DEFAULT_PYPI.into(),
        }
    }
}

/// A tool kept in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Tool {
    Node,
    Npm,
    Pnpm,
    /// Yarn 1.
    Yarn,
    /// Yarn 2 and later, from `@yarnpkg/cli-dist`.
    YarnBerry,
    Uv,
}

impl Tool {
    /// Its directory in the store.
    fn dir(self) -> &'static str {
        match self {
            Tool::Node => "node",
            Tool::Npm => "npm",
            Tool::Pnpm => "pnpm",
            Tool::Yarn => "yarn",
            Tool::YarnBerry => "yarn-berry",
            Tool::Uv => "uv",
        }
    }

    /// Its name for people.
    fn label(self) -> &'static str {
        match self {
            Tool::Node => "Node",
            Tool::Npm => "npm",
            Tool::Pnpm => "pnpm",
            Tool::Yarn | Tool::YarnBerry => "Yarn",
            Tool::Uv => "uv",
        }
    }

    /// Its npm package (package managers only).
    fn package(self) -> &'static str {
        match self {
            Tool::Npm => "npm",
            Tool::Pnpm => "pnpm",
            Tool::Yarn => "yarn",
            Tool::YarnBerry => "@yarnpkg/cli-dist",
            Tool::Node | Tool::Uv => "",
        }
    }

    fn for_manager(kind: PackageManagerKind) -> Option<Tool> {
        match kind {
            PackageManagerKind::Npm => Some(Tool::Npm),
            PackageManagerKind::Pnpm => Some(Tool::Pnpm),
            PackageManagerKind::YarnClassic => Some(Tool::Yarn),
            PackageManagerKind::YarnBerry => Some(Tool::YarnBerry),
            PackageManagerKind::Bun => None,
        }
    }
}

/// The versions a workspace gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Chosen {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<String>,
    /// npm comes with every Node (the registry's Node packages carry only `node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) npm: Option<String>,
    /// pnpm or Yarn, when the project uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) manager: Option<(Tool, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) uv: Option<String>,
}

impl Chosen {
    /// Every tool and version, in `PATH` order: the project's package manager before npm before Node.
    pub(crate) fn tools(&self) -> Vec<(Tool, &str)> {
        let mut tools = Vec::new();
        if let Some((tool, v)) = &self.manager {
            tools.push((*tool, v.as_str()));
        }
        if let Some(v) = &self.npm {
            tools.push((Tool::Npm, v.as_str()));
        }
        if let Some(v) = &self.node {
            tools.push((Tool::Node, v.as_str()));
        }
        if let Some(v) = &self.uv {
            tools.push((Tool::Uv, v.as_str()));
        }
        tools
    }
}

/// What [`RECORD_KEY`] holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    plan: RuntimePlan,
    chosen: Chosen,
}

/// An npm package document, abbreviated or full: only what choosing and fetching need.
#[derive(Debug, Deserialize)]
struct Packument {
    #[serde(rename = "dist-tags", default)]
    dist_tags: HashMap<String, String>,
    #[serde(default)]
    versions: HashMap<String, Manifest>,
}

/// One version of an npm package.
#[derive(Debug, Clone, Deserialize)]
struct Manifest {
    #[serde(default)]
    name: String,
    version: String,
    #[serde(default)]
    engines: Option<Value>,
    #[serde(default)]
    bin: Option<Value>,
    dist: Dist,
}

#[derive(Debug, Clone, Deserialize)]
struct Dist {
    tarball: String,
    #[serde(default)]
    integrity: Option<String>,
}

/// The node-level runtime store; shared by every provisioning on the node.
#[derive(Debug)]
pub struct RuntimeStore {
    config: RuntimeConfig,
    fetcher: Fetcher,
    /// One lock per store entry or listing URL, so concurrent provisionings fetch each once.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    listings: Mutex<Listings>,
}

/// Listing URL → when it was fetched and its body.
type Listings = HashMap<String, (Instant, Arc<Vec<u8>>)>;

impl RuntimeStore {
    /// A store as `config` says, downloading through a client that trusts `network`'s CA
    /// certificates. Nothing is created on disk until a workspace needs a runtime.
    pub fn new(config: RuntimeConfig, network: &Network) -> Self {
        RuntimeStore {
            config,
            fetcher: Fetcher::new(network),
            locks: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
        }
    }

    /// The store's directory on the node.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    fn entry(&self, tool: Tool, version: &str) -> PathBuf {
        self.config.dir.join(tool.dir()).join(version)
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks).entry(key.to_string()).or_default().clone()
    }

    /// Creates the store's directory (readable by the workspaces' unmapped user) and clears scratch
    /// directories left by an agent that died while fetching.
    pub(crate) fn ensure_dir(&self) -> Result<(), ProvisionFailure> {
        let dir = &self.config.dir;
        let made = std::fs::create_dir_all(dir.join(".tmp"))
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)));
        made.map_err(|e| {
            failure(
                format!("cannot create the runtime store {}: {e}", dir.display()),
                "the agent runs as root and needs a writable directory for runtimes; check the node's disk, or give another with --runtime-dir",
            )
        })?;
        if let Ok(entries) = std::fs::read_dir(dir.join(".tmp")) {
            let old = std::time::SystemTime::now() - Duration::from_secs(24 * 3600);
            for entry in entries.flatten() {
                if entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < old) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(())
    }

    /// The versions for `plan`: the ones recorded on the instance for the same plan, or chosen now;
    /// then makes sure the store has them. Needs no network when both hold.
    pub(crate) async fn prepare<P: Provider>(
        &self,
        provider: &P,
        id: &str,
        plan: &RuntimePlan,
    ) -> Result<Chosen, ProvisionFailure> {
        let recorded = match provider.get_config(id, RECORD_KEY).await {
            Ok(Some(text)) => serde_json::from_str::<Record>(&text).ok().filter(|r| r.plan == *plan).map(|r| r.chosen),
            _ => None,
        };
        let chosen = match recorded {
            Some(chosen) => chosen,
            None => self.choose(plan).await?,
        };
        let pinned = plan
            .node
            .as_ref()
            .map(|n| &n.package_manager)
            .filter(|pm| pm.version.is_some())
            .and_then(|pm| Some((Tool::for_manager(pm.kind)?, pm.hash.as_deref()?)));
        let installs = chosen.tools().into_iter().map(|(tool, version)| {
            let hash = pinned.filter(|(t, _)| *t == tool).map(|(_, h)| h);
            self.install(tool, version, hash)
        });
        futures_util::future::try_join_all(installs).await?;
        Ok(chosen)
    }

    /// Picks the versions for `plan` from what the sources list.
    async fn choose(&self, plan: &RuntimePlan) -> Result<Chosen, ProvisionFailure> {
        let node_side = async {
            let Some(node) = &plan.node else { return Ok((None, None, None)) };
            let version = self.choose_node(node.version.as_ref()).await?;
            let running = Version::parse(&version).map_err(|_| {
                failure(format!("the Node source lists {version:?}, which is not a version"), source_hint())
            })?;
            let pm = &node.package_manager;
            let own = |kind: PackageManagerKind| if pm.kind == kind { pm.version.as_deref() } else { None };
            let manager = async {
                match Tool::for_manager(pm.kind).filter(|t| *t != Tool::Npm) {
                    Some(tool) => Ok(Some((tool, self.choose_package(tool, pm.version.as_deref(), &running).await?))),
                    None => Ok(None),
                }
            };
            let (npm, manager) =
                tokio::try_join!(self.choose_package(Tool::Npm, own(PackageManagerKind::Npm), &running), manager)?;
            Ok((Some(version), Some(npm), manager))
        };
        let uv_side = async {
            match plan.python {
                Some(_) => self.choose_uv().await.map(Some),
                None => Ok(None),
            }
        };
        let ((node, npm, manager), uv) = tokio::try_join!(node_side, uv_side)?;
        Ok(Chosen { node, npm, manager, uv })
    }

    async fn choose_node(&self, request: Option<&VersionRequest>) -> Result<String, ProvisionFailure> {
        // An exact version the store has needs no version list.
        if let Some(exact) = request.and_then(|r| exact_version(&r.spec)) {
            if self.entry(Tool::Node, &exact).is_dir() {
                return Ok(exact);
            }
        }
        let releases = match self.node_releases().await {
            Ok(releases) => releases,
            Err(unreachable) => {
                let local: Vec<NodeRelease> = self
                    .local_versions(Tool::Node)
                    .into_iter()
                    .map(|v| NodeRelease { lts: lts_of(&v), version: v })
                    .collect();
                match pick_node(request, &local) {
                    Ok(Some(version)) => {
                        tracing::warn!(version, error = %unreachable.message, "the Node source cannot be reached; using a version the runtime store has");
                        return Ok(version);
                    }
                    _ => return Err(unreachable),
                }
            }
        };
        match pick_node(request, &releases) {
            Ok(Some(version)) => Ok(version),
            Ok(None) => Err(failure(
                format!("the node's Node source ({}) lists no Node releases", self.config.node_source),
                source_hint(),
            )),
            Err(e) => Err(failure(e.to_string(), e.hint)),
        }
    }

    async fn node_releases(&self) -> Result<Vec<NodeRelease>, ProvisionFailure> {
        match &self.config.node_source {
            NodeSource::NpmRegistry => {
                let url = format!("{}/{}", self.registry(), node_package()?);
                let body = self.listing(&url, NPM_ACCEPT).await?;
                let doc: Packument = serde_json::from_slice(&body).map_err(|e| not_a_document(&url, &e))?;
                Ok(doc.versions.into_keys().map(|v| NodeRelease { lts: lts_of(&v), version: v }).collect())
            }
            NodeSource::Dist(base) => {
                let url = format!("{base}/index.json");
                let body = self.listing(&url, "application/json").await?;
                let text = String::from_utf8_lossy(&body);
                parse_node_index(&text).map_err(|e| not_a_document(&url, &e))
            }
        }
    }

    /// The version of a package manager: the one asked for, else the newest release that works with
    /// Node `node`.
    async fn choose_package(
        &self,
        tool: Tool,
        requested: Option<&str>,
        node: &Version,
    ) -> Result<String, ProvisionFailure> {
        if let Some(version) = requested {
            // Checked against the registry when it is fetched; no version list needed.
            return Ok(version.to_string());
        }
        let url = format!("{}/{}", self.registry(), tool.package());
        let doc = match self.listing(&url, NPM_ACCEPT).await {
            Ok(body) => serde_json::from_slice::<Packument>(&body).map_err(|e| not_a_document(&url, &e))?,
            Err(unreachable) => {
                let local = self.local_versions(tool).into_iter().filter_map(|v| {
                    let manifest = std::fs::read(self.entry(tool, &v).join("package/package.json")).ok()?;
                    let manifest: Value = serde_json::from_slice(&manifest).ok()?;
                    engines_allow(manifest.get("engines"), node).then(|| Version::parse(&v).ok()).flatten()
                });
                return match local.max() {
                    Some(v) => {
                        tracing::warn!(tool = tool.label(), version = %v, error = %unreachable.message, "the npm registry cannot be reached; using a version the runtime store has");
                        Ok(v.to_string())
                    }
                    None => Err(unreachable),
                };
            }
        };
        pick_compatible(&doc, node).ok_or_else(|| {
            failure(
                format!("no {} release on {} works with Node {node}", tool.label(), self.registry()),
                format!("name a {} version that supports Node {node} in package.json's packageManager, or ask for another Node", tool.label()),
            )
        })
    }

    async fn choose_uv(&self) -> Result<String, ProvisionFailure> {
        let url = format!("{}/pypi/uv/json", self.pypi());
        match self.listing(&url, "application/json").await {
            Ok(body) => {
                let doc: Value = serde_json::from_slice(&body).map_err(|e| not_a_document(&url, &e))?;
                doc.pointer("/info/version")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| failure(format!("{url} names no uv version"), source_hint()))
            }
            Err(unreachable) => {
                let newest = self.local_versions(Tool::Uv).into_iter().filter_map(|v| Version::parse(v).ok()).max();
                match newest {
                    Some(v) => {
                        tracing::warn!(version = %v, error = %unreachable.message, "PyPI cannot be reached; using the uv the runtime store has");
                        Ok(v.to_string())
                    }
                    None => Err(unreachable),
                }
            }
        }
    }

    /// The body of a version list, from memory while it is fresh.
    async fn listing(&self, url: &str, accept: &str) -> Result<Arc<Vec<u8>>, ProvisionFailure> {
        let fresh = |listings: &Listings| {
            listings.get(url).filter(|(at, _)| at.elapsed() < LISTING_TTL).map(|(_, body)| body.clone())
        };
        if let Some(body) = fresh(&lock(&self.listings)) {
            return Ok(body);
        }
        let guard = self.lock_for(url);
        let _held = guard.lock().await;
        if let Some(body) = fresh(&lock(&self.listings)) {
            return Ok(body);
        }
        let body = match self.fetcher.get(url, accept).await {
            Ok(body) => Arc::new(body),
            Err(HttpError::NotFound) => {
                return Err(failure(format!("{url} does not exist (HTTP 404)"), source_hint()));
            }
            Err(HttpError::Failed(f)) => return Err(f),
        };
        lock(&self.listings).insert(url.to_string(), (Instant::now(), body.clone()));
        Ok(body)
    }

    /// Versions of `tool` the store has.
    fn local_versions(&self, tool: Tool) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.config.dir.join(tool.dir())) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|v| Version::parse(v).is_ok())
            .collect()
    }

    /// Makes sure the store has `tool` at `version`; `corepack_hash` (`sha512.<hex>`) is the hash
    /// `packageManager` pins it to.
    async fn install(&self, tool: Tool, version: &str, corepack_hash: Option<&str>) -> Result<(), ProvisionFailure> {
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')) {
            return Err(failure(
                format!("{} version {version:?} is not a version", tool.label()),
                "name an exact version such as `9.15.0` (in package.json's packageManager, say)",
            ));
        }
        let dest = self.entry(tool, version);
        if !dest.is_dir() {
            let guard = self.lock_for(&format!("{}/{version}", tool.dir()));
            let _held = guard.lock().await;
            if !dest.is_dir() {
                self.fetch(tool, version, &dest).await?;
            }
        }
        match corepack_hash {
            Some(expected) => check_pinned(tool, version, &dest, expected),
            None => Ok(()),
        }
    }

    async fn fetch(&self, tool: Tool, version: &str, dest: &Path) -> Result<(), ProvisionFailure> {
        let started = Instant::now();
        let (url, expected) = self.locate(tool, version).await?;
        self.ensure_dir()?;
        let scratch = tempfile::Builder::new()
            .prefix("fetch-")
            .tempdir_in(self.config.dir.join(".tmp"))
            .map_err(|e| failure(format!("cannot make a scratch directory in the runtime store: {e}"), store_hint()))?;
        let archive = scratch.path().join("download");
        let hashes = match self.fetcher.download(&url, &archive).await {
            Ok(hashes) => hashes,
            Err(HttpError::NotFound) => return Err(failure(format!("{url} does not exist (HTTP 404)"), source_hint())),
            Err(HttpError::Failed(f)) => return Err(f),
        };
        match expected.check(&hashes) {
            Ok(true) => {}
            Ok(false) => {
                return Err(failure(
                    format!("the download of {} {version} from {url} does not match the digest its source publishes", tool.label()),
                    "something between the node and the source changed it (a proxy, a broken mirror): check them, then start the workspace again",
                ))
            }
            Err(why) => {
                return Err(failure(
                    format!("cannot check the download of {} {version} from {url}: {why}", tool.label()),
                    source_hint(),
                ))
            }
        }
        let version_owned = version.to_string();
        // The scratch directory goes with the work, so that it is removed only once the work is done,
        // even when this provisioning is abandoned meanwhile.
        let laid_out = tokio::task::spawn_blocking(move || {
            let ready = layout(tool, &version_owned, &archive, scratch.path(), &hashes);
            (scratch, ready)
        })
        .await;
        let (_scratch, ready) = match laid_out {
            Ok((scratch, ready)) => (scratch, ready),
            Err(e) => return Err(failure(format!("unpacking {} {version} failed: {e}", tool.label()), store_hint())),
        };
        let ready = match ready {
            Ok(ready) => ready,
            Err(why) => {
                return Err(failure(
                    format!("unpacking {} {version} from {url} failed: {why}", tool.label()),
                    "the source served something other than the expected release archive; check it (--node-source, --npm-registry, --pypi-url), or the node's disk",
                ))
            }
        };
        if let Some(parent) = dest.parent() {
            let _ = std::fs::create_dir_all(parent);
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        }
        if let Err(e) = std::fs::rename(&ready, dest) {
            // Another agent on this host put the same version in place first.
            if !dest.is_dir() {
                return Err(failure(
                    format!("cannot move {} {version} into the runtime store: {e}", tool.label()),
                    store_hint(),
                ));
            }
        }
        tracing::info!(
            tool = tool.label(),
            version,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fetched into the runtime store"
        );
        Ok(())
    }

    /// Where to download `tool` at `version` from, and what it must hash to.
    async fn locate(&self, tool: Tool, version: &str) -> Result<(String, Expected), ProvisionFailure> {
        let missing = |source: &str| {
            failure(
                format!("{source} has no {} {version}", tool.label()),
                format!(
                    "if the project names {} {version} (package.json's packageManager, .nvmrc, engines.node), change it to a version that exists",
                    tool.label()
                ),
            )
        };
        match (tool, &self.config.node_source) {
            (Tool::Node, NodeSource::Dist(base)) => {
                let (arch, _) = host_arch()?;
                let file = format!("node-v{version}-linux-{arch}.tar.gz");
                let sums_url = format!("{base}/v{version}/SHASUMS256.txt");
                let sums = match self.fetcher.get(&sums_url, "text/plain").await {
                    Ok(body) => String::from_utf8_lossy(&body).into_owned(),
                    Err(HttpError::NotFound) => return Err(missing(base)),
                    Err(HttpError::Failed(f)) => return Err(f),
                };
                let sha = sums
                    .lines()
                    .find_map(|l| l.strip_suffix(&file).map(|rest| rest.trim().to_string()))
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| failure(format!("{sums_url} lists no {file}"), source_hint()))?;
                Ok((format!("{base}/v{version}/{file}"), Expected::Sha256(sha)))
            }
            (Tool::Uv, _) => {
                // The project document lists every release's files (some mirrors serve no
                // per-version documents).
                let url = format!("{}/pypi/uv/json", self.pypi());
                let body = self.listing(&url, "application/json").await?;
                let doc: Value = serde_json::from_slice(&body).map_err(|e| not_a_document(&url, &e))?;
                let files = doc.pointer(&format!("/releases/{version}")).or_else(|| {
                    (doc.pointer("/info/version").and_then(Value::as_str) == Some(version)).then(|| doc.get("urls"))?
                });
                let files = files.ok_or_else(|| missing(&self.pypi()))?;
                let (_, wheel_arch) = host_arch()?;
                let (file_url, sha) = pick_wheel(files, wheel_arch).ok_or_else(|| {
                    failure(format!("PyPI has no uv {version} wheel for linux {wheel_arch}"), source_hint())
                })?;
                Ok((join(&url, &file_url)?, Expected::Sha256(sha)))
            }
            _ => {
                let registry = format!("the npm registry at {}", self.registry());
                let package = if tool == Tool::Node { node_package()? } else { tool.package().to_string() };
                let (mut url, mut manifest) =
                    self.manifest(&package, version).await?.ok_or_else(|| missing(&registry))?;
                if tool == Tool::Pnpm && !js_bins(manifest.bin.as_ref()) {
                    // Later pnpm releases ship their program natively, in a package per platform.
                    let native = format!("@pnpm/exe.linux-{}", host_arch()?.0);
                    (url, manifest) = self.manifest(&native, version).await?.ok_or_else(|| {
                        failure(
                            format!("{registry} has pnpm {version} but not its native program {native}@{version}"),
                            "name a pnpm release that ships JavaScript (pnpm 10, say) in package.json's packageManager, or check the registry mirror (--npm-registry)",
                        )
                    })?;
                }
                let integrity = manifest.dist.integrity.clone().ok_or_else(|| {
                    failure(
                        format!("{}@{version} on {} has no integrity to check", manifest.name, self.registry()),
                        source_hint(),
                    )
                })?;
                Ok((join(&url, &manifest.dist.tarball)?, Expected::Integrity(integrity)))
            }
        }
    }

    /// The registry's document for `package` at `version` and its URL; `None` when it has none.
    async fn manifest(&self, package: &str, version: &str) -> Result<Option<(String, Manifest)>, ProvisionFailure> {
        let url = format!("{}/{package}/{version}", self.registry());
        let body = match self.fetcher.get(&url, "application/json").await {
            Ok(body) => body,
            Err(HttpError::NotFound) => return Ok(None),
            Err(HttpError::Failed(f)) => return Err(f),
        };
        let manifest: Manifest = serde_json::from_slice(&body).map_err(|e| not_a_document(&url, &e))?;
        Ok(Some((url, manifest)))
    }

    fn registry(&self) -> String {
        self.config.npm_registry.trim_end_matches('/').to_string()
    }

    fn pypi(&self) -> String {
        self.config.pypi.trim_end_matches('/').to_string()
    }

    /// Registry variables for workspaces when the store uses other registries than the public ones.
    fn registry_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if self.registry() != DEFAULT_NPM_REGISTRY {
            for var in ["npm_config_registry", "YARN_NPM_REGISTRY_SERVER", "YARN_REGISTRY"] {
                env.push((var, format!("{}/", self.registry())));
            }
        }
        if self.pypi() != DEFAULT_PYPI {
            for var in ["PIP_INDEX_URL", "UV_DEFAULT_INDEX"] {
                env.push((var, format!("{}/simple", self.pypi())));
            }
        }
        env
    }
}

/// Makes the chosen runtimes the workspace's: picks the image's Python interpreter for the project,
/// writes [`PROFILE_PATH`] and records the choice on the instance.
pub(crate) async fn apply<P: Provider>(
    provider: &P,
    id: &str,
    store: &RuntimeStore,
    plan: &RuntimePlan,
    chosen: &Chosen,
    cache_env: &[(&'static str, String)],
) -> Result<(), ProvisionFailure> {
    let python = match &plan.python {
        Some(python) => Some(interpreter(provider, id, python).await?),
        None => None,
    };
    let mut env: Vec<(&'static str, String)> = cache_env.to_vec();
    env.extend(store.registry_env());
    let text = profile(chosen, python.as_deref(), &env);
    let out = provider
        .exec(id, &script(RUNTIME_SCRIPT, STEP_RUNTIME, &[PROFILE_PATH, &text]), None, &[], None)
        .await
        .map_err(|e| provider_failure("putting the project's runtimes on PATH failed", &e))?;
    if out.code != 0 {
        return Err(failure(
            format!("putting the project's runtimes on PATH failed: {}", out.last_stderr_line()),
            format!(
                "check the workspace's disk and /etc/profile.d: {}",
                provider.exec_hint(id, "ls -la /etc/profile.d")
            ),
        ));
    }
    let record = serde_json::to_string(&Record { plan: plan.clone(), chosen: chosen.clone() }).unwrap_or_default();
    if let Err(e) = provider.set_config(id, RECORD_KEY, &record).await {
        // Only costs a version list on the next start.
        tracing::debug!(workspace = id, error = %nexus_types::diagnostics::error_chain(&e), "recording the runtime choice failed");
    }
    Ok(())
}

/// The image's interpreter for the project's Python request.
async fn interpreter<P: Provider>(provider: &P, id: &str, python: &PythonRuntime) -> Result<String, ProvisionFailure> {
    let out = provider
        .exec(id, &script(PYTHONS_SCRIPT, STEP_PYTHONS, &[]), None, &[], None)
        .await
        .map_err(|e| provider_failure("listing the workspace's Python interpreters failed", &e))?;
    let mut found: Vec<(String, String)> = Vec::new();
    for line in out.stdout.lines() {
        if let Some((version, path)) = line.split_once('\t') {
            if !found.iter().any(|(v, _)| v == version) {
                found.push((version.trim().to_string(), path.trim().to_string()));
            }
        }
    }
    let versions: Vec<String> = found.iter().map(|(v, _)| v.clone()).collect();
    match pick_python(python.version.as_ref(), &versions) {
        Ok(Some(version)) => Ok(found.into_iter().find(|(v, _)| *v == version).map(|(_, p)| p).unwrap_or_default()),
        Ok(None) => Err(failure(
            "the workspace image has no Python 3 interpreter, and this project needs one",
            "use an image with python3 (the base image has it), or set `image` in .nexus/config.yaml",
        )),
        Err(e) => Err(failure(e.to_string(), e.hint)),
    }
}

/// The text of [`PROFILE_PATH`].
fn profile(chosen: &Chosen, python: Option<&str>, env: &[(&'static str, String)]) -> String {
    let mut s = String::from(
        "# Written by the Nexus agent at every start of this workspace: the runtimes the project asks for,\n\
         # from the node's shared store, and the owner's dependency caches. Changes here are overwritten.\n",
    );
    let mut path: Vec<String> =
        chosen.tools().into_iter().map(|(tool, v)| format!("{RUNTIME_MOUNT}/{}/{v}/bin", tool.dir())).collect();
    if chosen.node.is_some() {
        // The store is read-only: global installs go to the user's own prefix.
        s.push_str("export NPM_CONFIG_PREFIX=\"$HOME/.local\"\n");
        path.push("$HOME/.local/bin".into());
        if matches!(chosen.manager, Some((Tool::Pnpm, _))) {
            s.push_str("export PNPM_HOME=\"$HOME/.local/share/pnpm\"\n");
            path.push("$PNPM_HOME".into());
        }
    }
    if !path.is_empty() {
        s.push_str(&format!("export PATH=\"{}:$PATH\"\n", path.join(":")));
    }
    if let Some(python) = python {
        s.push_str(&format!("export UV_PYTHON={}\nexport UV_PYTHON_DOWNLOADS=never\n", shell_quote(python)));
    }
    for (k, v) in env {
        s.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    s
}

/// `22.12.0` for an exact request (`22.12.0`, `v22.12.0`), else `None`.
fn exact_version(spec: &str) -> Option<String> {
    let v = spec.trim().trim_start_matches('v');
    let parts: Vec<&str> = v.split('.').collect();
    (parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        .then(|| v.to_string())
}

/// LTS for sources without flags: the codename of its line, as `nexus_project` knows them.
fn lts_of(version: &str) -> Option<String> {
    let major = Version::parse(version.trim_start_matches('v')).ok()?.major();
    lts_codename(major).map(str::to_string)
}

/// The newest release of a package manager that installs on Node `node`: not a prerelease, not
/// newer than `latest`, `engines.node` accepting `node`, and commands that are JavaScript (run with
/// the workspace's `node`; releases that install native binaries by script are skipped).
fn pick_compatible(doc: &Packument, node: &Version) -> Option<String> {
    let latest = doc.dist_tags.get("latest").and_then(|v| Version::parse(v).ok());
    doc.versions
        .values()
        .filter_map(|m| {
            let v = Version::parse(&m.version).ok()?;
            let ok = !v.is_prerelease()
                && latest.as_ref().is_none_or(|l| v <= *l)
                && engines_allow(m.engines.as_ref(), node)
                && js_bins(m.bin.as_ref());
            ok.then_some(v)
        })
        .max()
        .map(|v| v.to_string())
}

fn engines_allow(engines: Option<&Value>, node: &Version) -> bool {
    match engines.and_then(|e| e.get("node")).and_then(Value::as_str) {
        None => true,
        Some(range) => Range::parse(range).map(|r| node.satisfies(&r)).unwrap_or(false),
    }
}

fn js_bins(bin: Option<&Value>) -> bool {
    let targets: Vec<&str> = match bin {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Object(map)) => map.values().filter_map(Value::as_str).collect(),
        _ => return false,
    };
    !targets.is_empty() && targets.iter().all(|t| [".js", ".cjs", ".mjs"].iter().any(|ext| t.ends_with(ext)))
}

/// The manylinux wheel for `arch` among a PyPI release's files: its URL and sha256.
fn pick_wheel(files: &Value, arch: &str) -> Option<(String, String)> {
    files.as_array()?.iter().find_map(|file| {
        let name = file.get("filename")?.as_str()?;
        let wanted = name.ends_with(".whl") && name.contains("manylinux") && name.contains(&format!("_{arch}"));
        if !wanted {
            return None;
        }
        Some((file.get("url")?.as_str()?.to_string(), file.pointer("/digests/sha256")?.as_str()?.to_string()))
    })
}

/// `href` relative to `base` (mirrors answer with relative download links).
fn join(base: &str, href: &str) -> Result<String, ProvisionFailure> {
    reqwest::Url::parse(base)
        .and_then(|b| b.join(href))
        .map(String::from)
        .map_err(|e| failure(format!("{base} links to {href:?}, which is not a URL: {e}"), source_hint()))
}

/// This node's architecture as Node builds (`x64`) and wheels (`x86_64`) name it.
fn host_arch() -> Result<(&'static str, &'static str), ProvisionFailure> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(("x64", "x86_64")),
        "aarch64" => Ok(("arm64", "aarch64")),
        other => Err(failure(
            format!("there are no Node or uv builds for this node's architecture ({other})"),
            "run workspaces on x86_64 or aarch64 nodes",
        )),
    }
}

fn node_package() -> Result<String, ProvisionFailure> {
    Ok(format!("node-linux-{}", host_arch()?.0))
}

fn source_hint() -> String {
    "check the sources the agent fetches runtimes from (--node-source, --npm-registry, --pypi-url) and that the node can reach them".into()
}

fn store_hint() -> String {
    "check the node's disk space and the runtime store's directory (--runtime-dir)".into()
}

fn not_a_document(url: &str, e: &serde_json::Error) -> ProvisionFailure {
    failure(format!("{url} did not answer with the document expected: {e}"), source_hint())
}

/// Turns a verified download into a finished store entry inside `work`; returns its path.
fn layout(tool: Tool, version: &str, archive: &Path, work: &Path, hashes: &Hashes) -> Result<PathBuf, String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let done = work.join("done");
    match tool {
        Tool::Node => {
            let top = fetch::unpack_tar_gz(archive, &work.join("unpacked")).map_err(|e| io("unpacking", e))?;
            std::fs::rename(&top, &done).map_err(|e| io("moving", e))?;
            if !done.join("bin/node").is_file() {
                return Err("the archive has no bin/node".into());
            }
        }
        Tool::Uv => {
            let bin = done.join("bin");
            std::fs::create_dir_all(&bin).map_err(|e| io("creating bin", e))?;
            let files = fetch::wheel_files(archive, &["/scripts/uv", "/scripts/uvx"])
                .map_err(|e| io("reading the wheel", e))?;
            if !files.iter().any(|(s, _)| s == "/scripts/uv") {
                return Err("the wheel has no uv program".into());
            }
            for (suffix, bytes) in files {
                let name = suffix.trim_start_matches("/scripts/");
                std::fs::write(bin.join(name), bytes).map_err(|e| io("writing", e))?;
                std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| io("chmod", e))?;
            }
        }
        Tool::Npm | Tool::Pnpm | Tool::Yarn | Tool::YarnBerry => {
            let top = fetch::unpack_tar_gz(archive, &work.join("unpacked")).map_err(|e| io("unpacking", e))?;
            std::fs::create_dir_all(&done).map_err(|e| io("creating", e))?;
            let package = done.join("package");
            std::fs::rename(&top, &package).map_err(|e| io("moving", e))?;
            write_wrappers(tool, version, &done)?;
        }
    }
    let mut recorded = serde_json::json!({
        "sha512": fetch::hex_of(&hashes.sha512),
        "sha256": fetch::hex_of(&hashes.sha256),
        "sha224": fetch::hex_of(&hashes.sha224),
    });
    if tool == Tool::YarnBerry {
        // Corepack pins Yarn 2+ by the hash of its single-file build, not of the npm tarball.
        if let Ok(bytes) = std::fs::read(done.join("package/bin/yarn.js")) {
            let h = Hashes::of(&bytes);
            recorded["file"] = serde_json::json!({
                "sha512": fetch::hex_of(&h.sha512),
                "sha256": fetch::hex_of(&h.sha256),
                "sha224": fetch::hex_of(&h.sha224),
            });
        }
    }
    std::fs::write(done.join(".nexus-download.json"), recorded.to_string()).map_err(|e| io("writing", e))?;
    fetch::open_up(&done).map_err(|e| io("setting permissions", e))?;
    Ok(done)
}

/// Writes `bin/<command>` for each command in the package's `bin`, running it with the workspace's
/// `node` (or directly, for a native program).
fn write_wrappers(tool: Tool, version: &str, done: &Path) -> Result<(), String> {
    let manifest = std::fs::read(done.join("package/package.json")).map_err(|e| format!("package.json: {e}"))?;
    let manifest: Value = serde_json::from_slice(&manifest).map_err(|e| format!("package.json: {e}"))?;
    let name = manifest.get("name").and_then(Value::as_str).unwrap_or(tool.package());
    let bins: Vec<(String, String)> = match manifest.get("bin") {
        Some(Value::String(target)) => vec![(name.rsplit('/').next().unwrap_or(name).to_string(), target.clone())],
        Some(Value::Object(map)) => {
            map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
        }
        _ => Vec::new(),
    };
    let bin_dir = done.join("bin");
    std::fs::create_dir_all(&bin_dir).map_err(|e| format!("creating bin: {e}"))?;
    let write = |command: &str, exec: String| {
        let wrapper = format!(
            "#!/bin/sh\n# Written by the Nexus agent: {} {version}'s `{command}` from the node's runtime store.\n{exec}\n",
            tool.label()
        );
        std::fs::write(bin_dir.join(command), wrapper).map_err(|e| format!("writing bin/{command}: {e}"))?;
        std::fs::set_permissions(bin_dir.join(command), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod bin/{command}: {e}"))
    };
    if bins.is_empty() && tool == Tool::Pnpm {
        // `@pnpm/exe.linux-*`: the native program alone; `pnpx` is `pnpm dlx`.
        let program = done.join("package/pnpm");
        let head: Vec<u8> = std::fs::read(&program).map_err(|e| format!("pnpm: {e}"))?.into_iter().take(4).collect();
        if head != b"\x7fELF" {
            return Err("the native pnpm package holds no program".into());
        }
        let inside = shell_quote(&format!("{RUNTIME_MOUNT}/pnpm/{version}/package/pnpm"));
        for (command, args) in [("pnpm", ""), ("pn", ""), ("pnpx", " dlx"), ("pnx", " dlx")] {
            write(command, format!("exec {inside}{args} \"$@\""))?;
        }
        return Ok(());
    }
    if bins.is_empty() {
        return Err("package.json names no commands (`bin`)".into());
    }
    for (command, target) in bins {
        let target = target.trim_start_matches("./");
        let safe_command = !command.is_empty()
            && command.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !command.starts_with('.');
        let safe_target = !target.is_empty()
            && !target.starts_with('/')
            && target.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
        if !safe_command || !safe_target {
            return Err(format!("command {command:?} → {target:?} is not a plain name and path"));
        }
        let file = done.join("package").join(target);
        let head: Vec<u8> = std::fs::read(&file).map_err(|e| format!("{target}: {e}"))?.into_iter().take(64).collect();
        let inside = format!("{RUNTIME_MOUNT}/{}/{version}/package/{target}", tool.dir());
        let js = [".js", ".cjs", ".mjs"].iter().any(|ext| target.ends_with(ext))
            || (head.starts_with(b"#!")
                && String::from_utf8_lossy(&head).lines().next().is_some_and(|l| l.contains("node")));
        let exec = if js {
            format!("exec node {} \"$@\"", shell_quote(&inside))
        } else if head.starts_with(b"\x7fELF") {
            format!("exec {} \"$@\"", shell_quote(&inside))
        } else {
            return Err(format!(
                "{} {version}'s command `{command}` is neither JavaScript nor a program (it installs its program by script, which a shared read-only store cannot run); name a release that ships JavaScript",
                tool.label()
            ));
        };
        write(&command, exec)?;
    }
    Ok(())
}

/// Checks a store entry against the hash `packageManager` pins (corepack's `<algorithm>.<hex>`).
fn check_pinned(tool: Tool, version: &str, dest: &Path, expected: &str) -> Result<(), ProvisionFailure> {
    let recorded: Value = std::fs::read(dest.join(".nexus-download.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let hashes_of = |v: &Value| -> Option<Hashes> {
        let get = |k: &str| {
            let hex = v.get(k)?.as_str()?;
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
        };
        Some(Hashes { sha512: get("sha512")?, sha256: get("sha256")?, sha224: get("sha224")? })
    };
    let verdicts: Vec<Option<bool>> = [Some(&recorded), recorded.get("file")]
        .into_iter()
        .flatten()
        .filter_map(hashes_of)
        .map(|h| h.matches_corepack(expected))
        .collect();
    if verdicts.contains(&Some(true)) {
        return Ok(());
    }
    if verdicts.contains(&Some(false)) {
        return Err(failure(
            format!("{} {version} from the registry does not match the hash package.json's packageManager pins ({expected})", tool.label()),
            format!(
                "the hash must be of the release the registry serves: update it (`corepack use {}@{version}` rewrites the field), or check the registry the node uses (--npm-registry)",
                if tool == Tool::Npm { "npm" } else if tool == Tool::Pnpm { "pnpm" } else { "yarn" }
            ),
        ));
    }
    tracing::warn!(
        tool = tool.label(),
        version,
        expected,
        "cannot check packageManager's hash (unknown algorithm); the registry's integrity was checked"
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
