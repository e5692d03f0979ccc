//! The runtime store against a registry served from `127.0.0.1:0`: choosing, fetching once,
//! checking, laying out, failing clearly. Also the registry fixture provisioning tests use.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use nexus_types::protocol::{NodeRuntime, PackageManager, PythonInstaller};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::fake::FakeProvider;

/// An HTTP server answering GETs from a table of paths, counting requests per path.
pub(crate) struct TestRegistry {
    pub(crate) url: String,
    routes: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<Vec<String>>>,
    delay: Arc<Mutex<Duration>>,
}

impl TestRegistry {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let delay: Arc<Mutex<Duration>> = Arc::default();
        let (r, h, d) = (routes.clone(), hits.clone(), delay.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (routes, hits, delay) = (r.clone(), h.clone(), d.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path =
                        text.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_string();
                    lock(&hits).push(path.clone());
                    let wait = *lock(&delay);
                    tokio::time::sleep(wait).await;
                    let body = lock(&routes).get(&path).cloned();
                    let head = match &body {
                        Some(b) => {
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len())
                        }
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                    };
                    let _ = conn.write_all(head.as_bytes()).await;
                    if let Some(b) = body {
                        let _ = conn.write_all(&b).await;
                    }
                    let _ = conn.shutdown().await;
                });
            }
        });
        TestRegistry { url, routes, hits, delay }
    }

    pub(crate) fn route(&self, path: &str, body: impl Into<Vec<u8>>) {
        lock(&self.routes).insert(path.to_string(), body.into());
    }

    pub(crate) fn hits(&self, path: &str) -> usize {
        lock(&self.hits).iter().filter(|p| *p == path).count()
    }

    /// Delays every answer (to make concurrent requests overlap).
    pub(crate) fn set_delay(&self, delay: Duration) {
        *lock(&self.delay) = delay;
    }

    /// Publishes an npm package: its versions (with `bin`, `engines` and files) as a package
    /// document, per-version documents and tarballs with correct integrity.
    pub(crate) fn publish(&self, name: &str, latest: &str, versions: &[Release<'_>]) {
        let mut docs = serde_json::Map::new();
        for (version, bin, engines, files) in versions {
            let tarball = npm_tarball(files);
            let integrity =
                format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&tarball)));
            let tail = name.rsplit('/').next().unwrap();
            let path = format!("/{name}/-/{tail}-{version}.tgz");
            let manifest = json!({
                "name": name, "version": version, "bin": bin, "engines": engines,
                "dist": {"tarball": format!("{}{path}", self.url), "integrity": integrity},
            });
            self.route(&path, tarball);
            self.route(&format!("/{name}/{version}"), manifest.to_string());
            docs.insert(version.to_string(), manifest);
        }
        self.route(
            &format!("/{name}"),
            json!({"name": name, "dist-tags": {"latest": latest}, "versions": docs}).to_string(),
        );
    }
}

use sha2::Digest as _;

/// Files of a package: path under `package/`, contents, mode.
type Files<'a> = Vec<(&'a str, Vec<u8>, u32)>;
/// One published version: version, `bin`, `engines`, files.
pub(crate) type Release<'a> = (&'a str, Value, Value, Files<'a>);

/// A `.tgz` with `files` under `package/`.
pub(crate) fn npm_tarball(files: &[(&str, Vec<u8>, u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, bytes, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(*mode);
        header.set_cksum();
        builder.append_data(&mut header, format!("package/{path}"), &bytes[..]).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn js(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// A registry with Node 20.10.0, 22.23.5, 24.22.3 and 26.1.0 (`node-linux-<arch>`), npm 10.9.2 and
/// 11.6.2, pnpm 9.15.0 and 12.0.0 and 12.1.0 (which ship their program natively, 12.0.0's in
/// `@pnpm/exe.linux-<arch>`), and Yarn 1.22.22.
pub(crate) async fn registry() -> TestRegistry {
    let registry = TestRegistry::start().await;
    let node = node_package().unwrap();
    let node_versions: Vec<Release<'_>> = ["20.10.0", "22.23.5", "24.22.3", "26.1.0"]
        .iter()
        .map(|v| {
            let script = format!("#!/bin/sh\necho v{v}\n");
            (*v, json!({"node": "bin/node"}), Value::Null, vec![("bin/node", script.into_bytes(), 0o755)])
        })
        .collect();
    registry.publish(&node, "26.1.0", &node_versions);
    let npm: Vec<_> = [("10.9.2", "^18.17.0 || >=20.5.0"), ("11.6.2", "^20.17.0 || >=22.9.0")]
        .iter()
        .map(|(v, engines)| {
            let bin = json!({"npm": "bin/npm-cli.js", "npx": "bin/npx-cli.js"});
            let manifest = json!({"name": "npm", "version": v, "bin": bin, "engines": {"node": engines}});
            let files = vec![
                ("bin/npm-cli.js", js("console.log('npm')"), 0o644),
                ("bin/npx-cli.js", js("console.log('npx')"), 0o644),
                ("package.json", manifest.to_string().into_bytes(), 0o644),
            ];
            (*v, bin, json!({"node": engines}), files)
        })
        .collect();
    registry.publish("npm", "11.6.2", &npm);
    let pnpm_js = json!({"pnpm": "bin/pnpm.cjs", "pnpx": "bin/pnpx.cjs"});
    let pnpm_native = json!({"pnpm": "pnpm"});
    registry.publish(
        "pnpm",
        "12.0.0",
        &[
            (
                "9.15.0",
                pnpm_js.clone(),
                json!({"node": ">=18.12"}),
                vec![
                    ("bin/pnpm.cjs", js("console.log('pnpm')"), 0o644),
                    ("bin/pnpx.cjs", js("console.log('pnpx')"), 0o644),
                    ("package.json", json!({"name": "pnpm", "bin": pnpm_js}).to_string().into_bytes(), 0o644),
                ],
            ),
            (
                "12.0.0",
                pnpm_native.clone(),
                json!({"node": ">=18"}),
                vec![
                    ("pnpm", js("# replaced by the native binary at install\nexec node bin/pnpm.mjs \"$@\"\n"), 0o755),
                    ("package.json", json!({"name": "pnpm", "bin": pnpm_native}).to_string().into_bytes(), 0o644),
                ],
            ),
            (
                "12.1.0",
                pnpm_native.clone(),
                json!({"node": ">=18"}),
                vec![("pnpm", js("# placeholder\n"), 0o755), ("package.json", b"{}".to_vec(), 0o644)],
            ),
        ],
    );
    // pnpm 12.0.0's program; 12.1.0 has none.
    let native = format!("@pnpm/exe.linux-{}", host_arch().unwrap().0);
    registry.publish(
        &native,
        "12.0.0",
        &[(
            "12.0.0",
            Value::Null,
            Value::Null,
            vec![
                ("pnpm", b"\x7fELF fake program".to_vec(), 0o755),
                ("package.json", json!({"name": native}).to_string().into_bytes(), 0o644),
            ],
        )],
    );
    let yarn = json!({"yarn": "./bin/yarn.js", "yarnpkg": "./bin/yarn.js"});
    registry.publish(
        "yarn",
        "1.22.22",
        &[(
            "1.22.22",
            yarn.clone(),
            json!({"node": ">=4.0.0"}),
            vec![
                ("bin/yarn.js", js("#!/usr/bin/env node\nconsole.log('yarn')"), 0o755),
                ("package.json", json!({"name": "yarn", "bin": yarn}).to_string().into_bytes(), 0o644),
            ],
        )],
    );
    registry
}

pub(crate) fn store_at(dir: &Path, registry: &str) -> RuntimeStore {
    let config = RuntimeConfig {
        dir: dir.to_path_buf(),
        node_source: NodeSource::NpmRegistry,
        npm_registry: registry.to_string(),
        pypi: registry.to_string(),
    };
    RuntimeStore::new(config, &Network::default())
}

pub(crate) fn node_plan(
    request: Option<(&str, &str, Option<&str>)>,
    kind: PackageManagerKind,
    version: Option<&str>,
) -> RuntimePlan {
    RuntimePlan {
        node: Some(NodeRuntime {
            version: request.map(|(spec, file, key)| VersionRequest {
                spec: spec.into(),
                file: file.into(),
                key: key.map(str::to_string),
                line: 1,
                column: 1,
            }),
            package_manager: PackageManager {
                kind,
                version: version.map(str::to_string),
                hash: None,
                source: "test".into(),
                lock_file: None,
                install: "npm ci".into(),
            },
        }),
        python: None,
    }
}

async fn instance(fake: &FakeProvider, id: &str) {
    fake.create(id, "img", 1, "", "").await.unwrap();
    fake.start(id).await.unwrap();
}

#[tokio::test]
async fn the_newest_lts_with_an_npm_that_supports_it_laid_out_for_workspaces() {
    let reg = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &reg.url);
    let fake = FakeProvider::new();
    let plan = node_plan(None, PackageManagerKind::Npm, None);
    let chosen = store.prepare(&fake, "ws-a", &plan).await.unwrap();
    // 26 is newer but not an LTS line nexus-project knows.
    assert_eq!(chosen.node.as_deref(), Some("24.22.3"));
    assert_eq!(chosen.npm.as_deref(), Some("11.6.2"));
    assert_eq!(chosen.manager, None);
    let node = dir.path().join("node/24.22.3/bin/node");
    assert_eq!(std::fs::read_to_string(&node).unwrap(), "#!/bin/sh\necho v24.22.3\n");
    assert_eq!(std::fs::metadata(&node).unwrap().permissions().mode() & 0o777, 0o755);
    let npm = std::fs::read_to_string(dir.path().join("npm/11.6.2/bin/npm")).unwrap();
    assert!(npm.ends_with("exec node '/opt/nexus/runtimes/npm/11.6.2/package/bin/npm-cli.js' \"$@\"\n"), "{npm}");
    assert!(dir.path().join("npm/11.6.2/bin/npx").is_file());
    let cli = dir.path().join("npm/11.6.2/package/bin/npm-cli.js");
    assert_eq!(std::fs::metadata(cli).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0, "no scratch left");
}

#[tokio::test]
async fn an_older_node_gets_the_npm_release_that_supports_it() {
    let reg = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &reg.url);
    let plan = node_plan(Some(("20.10", ".nvmrc", None)), PackageManagerKind::Npm, None);
    let chosen = store.prepare(&FakeProvider::new(), "ws-a", &plan).await.unwrap();
    assert_eq!(chosen.node.as_deref(), Some("20.10.0"));
    assert_eq!(chosen.npm.as_deref(), Some("10.9.2"), "npm 11 needs ^20.17");
}

#[tokio::test]
async fn package_managers_come_as_the_project_says() {
    let reg = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &reg.url);
    let fake = FakeProvider::new();
    // No version: the newest release whose commands are JavaScript (12.0.0 installs a binary by script).
    let plan = node_plan(Some(("22", ".node-version", None)), PackageManagerKind::Pnpm, None);
    let chosen = store.prepare(&fake, "ws-a", &plan).await.unwrap();
    assert_eq!(chosen.manager, Some((Tool::Pnpm, "9.15.0".into())));
    assert_eq!(
        chosen.tools(),
        [(Tool::Pnpm, "9.15.0"), (Tool::Npm, "11.6.2"), (Tool::Node, "22.23.5")],
        "the package manager first on PATH"
    );
    let pnpm = std::fs::read_to_string(dir.path().join("pnpm/9.15.0/bin/pnpx")).unwrap();
    assert!(pnpm.contains("exec node '/opt/nexus/runtimes/pnpm/9.15.0/package/bin/pnpx.cjs'"), "{pnpm}");

    let yarn = node_plan(None, PackageManagerKind::YarnClassic, Some("1.22.22"));
    let chosen = store.prepare(&fake, "ws-b", &yarn).await.unwrap();
    assert_eq!(chosen.manager, Some((Tool::Yarn, "1.22.22".into())));
    let wrapper = std::fs::read_to_string(dir.path().join("yarn/1.22.22/bin/yarnpkg")).unwrap();
    assert!(wrapper.contains("package/bin/yarn.js"), "{wrapper}");

    // Pinned to a release that ships its program natively: the platform's package, run directly.
    let native = node_plan(None, PackageManagerKind::Pnpm, Some("12.0.0"));
    let chosen = store.prepare(&fake, "ws-c", &native).await.unwrap();
    assert_eq!(chosen.manager, Some((Tool::Pnpm, "12.0.0".into())));
    let pnpx = std::fs::read_to_string(dir.path().join("pnpm/12.0.0/bin/pnpx")).unwrap();
    assert!(pnpx.ends_with("exec '/opt/nexus/runtimes/pnpm/12.0.0/package/pnpm' dlx \"$@\"\n"), "{pnpx}");
    let program = dir.path().join("pnpm/12.0.0/package/pnpm");
    assert_eq!(std::fs::metadata(program).unwrap().permissions().mode() & 0o777, 0o755);
    let err =
        store.prepare(&fake, "ws-c", &node_plan(None, PackageManagerKind::Pnpm, Some("12.1.0"))).await.unwrap_err();
    assert!(err.message.contains("has pnpm 12.1.0 but not its native program"), "{err}");
    assert!(!dir.path().join("pnpm/12.1.0").exists());

    // Pinned to a version the registry does not have.
    let missing = node_plan(None, PackageManagerKind::Pnpm, Some("99.0.0"));
    let err = store.prepare(&fake, "ws-d", &missing).await.unwrap_err();
    assert!(err.message.contains("has no pnpm 99.0.0"), "{err}");
    assert!(err.hint.contains("packageManager"), "{}", err.hint);
}

#[tokio::test]
async fn a_pinned_hash_is_checked() {
    let reg = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &reg.url);
    let tarball = lock(&reg.routes).get("/pnpm/-/pnpm-9.15.0.tgz").cloned().unwrap();
    let good = format!("sha512.{}", fetch::hex_of(&sha2::Sha512::digest(&tarball)));
    let mut plan = node_plan(None, PackageManagerKind::Pnpm, Some("9.15.0"));
    plan.node.as_mut().unwrap().package_manager.hash = Some(good);
    store.prepare(&FakeProvider::new(), "ws-a", &plan).await.unwrap();
    plan.node.as_mut().unwrap().package_manager.hash = Some(format!("sha512.{}", "0".repeat(128)));
    let err = store.prepare(&FakeProvider::new(), "ws-b", &plan).await.unwrap_err();
    assert!(err.message.contains("does not match the hash package.json's packageManager pins"), "{err}");
    assert!(err.hint.contains("corepack use pnpm@9.15.0"), "{}", err.hint);
}

#[tokio::test]
async fn concurrent_workspaces_fetch_each_version_once() {
    let reg = registry().await;
    reg.set_delay(Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &reg.url);
    let fake = FakeProvider::new();
    let plan = node_plan(None, PackageManagerKind::Npm, None);
    let all = futures_util::future::join_all((0..4).map(|i| {
        let (store, fake, plan) = (&store, &fake, &plan);
        async move { store.prepare(fake, &format!("ws-{i}"), plan).await }
    }))
    .await;
    for chosen in all {
        assert_eq!(chosen.unwrap().node.as_deref(), Some("24.22.3"));
    }
    let node = node_package().unwrap();
    assert_eq!(reg.hits(&format!("/{node}/-/{node}-24.22.3.tgz")), 1);
    assert_eq!(reg.hits("/npm/-/npm-11.6.2.tgz"), 1);
    assert_eq!(reg.hits(&format!("/{node}")), 1, "the version list is kept");
}

#[tokio::test]
async fn a_version_the_source_lacks_fails_naming_it() {
    let reg = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &reg.url);
    let plan = node_plan(Some((">=99", "package.json", Some("engines.node"))), PackageManagerKind::Npm, None);
    let err = store.prepare(&FakeProvider::new(), "ws-a", &plan).await.unwrap_err();
    assert_eq!(
        err.message,
        "package.json:1:1: this project needs Node >=99 (engines.node); the node's Node source has 20.10.0, 22.23.5, 24.22.3 and 26.1.0"
    );
    assert!(err.hint.contains("change engines.node in package.json"), "{}", err.hint);
    assert_eq!(reg.hits("/npm"), 0, "nothing more is fetched");
}

#[tokio::test]
async fn an_unreachable_registry_fails_fast_with_the_cause_and_where_to_look() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &url);
    let started = Instant::now();
    let err =
        store.prepare(&FakeProvider::new(), "ws-a", &node_plan(None, PackageManagerKind::Npm, None)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(err.message.starts_with(&format!("downloading {url}/")), "{err}");
    assert!(err.message.contains("onnection refused"), "the cause: {err}");
    for place in ["proxy", "--ca-certificates", "--npm-registry"] {
        assert!(err.hint.contains(place), "{place}: {}", err.hint);
    }
    assert!(err.hint.contains(&format!("reach {url}:")), "the hint names the address with its port: {}", err.hint);
}

#[tokio::test]
async fn a_download_that_does_not_match_its_integrity_is_refused() {
    let reg = registry().await;
    let node = node_package().unwrap();
    reg.route(&format!("/{node}/-/{node}-24.22.3.tgz"), npm_tarball(&[("bin/node", js("evil"), 0o755)]));
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &reg.url);
    let err =
        store.prepare(&FakeProvider::new(), "ws-a", &node_plan(None, PackageManagerKind::Npm, None)).await.unwrap_err();
    assert!(err.message.contains("does not match the digest its source publishes"), "{err}");
    assert!(!dir.path().join("node/24.22.3").exists());
    // npm's fetch, abandoned with the failed ensure, cleans up once its unpacking ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_dir(dir.path().join(".tmp")).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "scratch left behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_started_workspace_keeps_its_versions_without_the_network() {
    let reg = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &reg.url);
    let fake = FakeProvider::new();
    instance(&fake, "ws-a").await;
    let plan = node_plan(None, PackageManagerKind::Npm, None);
    let chosen = store.prepare(&fake, "ws-a", &plan).await.unwrap();
    apply(&fake, "ws-a", &store, &plan, &chosen, &[]).await.unwrap();

    // Same store directory, a source that cannot be reached: the recorded choice stands.
    let offline = store_at(dir.path(), "http://127.0.0.1:9");
    assert_eq!(offline.prepare(&fake, "ws-a", &plan).await.unwrap(), chosen);
    // A new workspace has no record: versions in the store that satisfy the request are used.
    let again = offline.prepare(&fake, "ws-b", &plan).await.unwrap();
    assert_eq!(again, chosen);
    // A request the store cannot answer reports the unreachable source.
    let other = node_plan(Some(("22", ".nvmrc", None)), PackageManagerKind::Npm, None);
    let err = offline.prepare(&fake, "ws-c", &other).await.unwrap_err();
    assert!(err.message.contains("127.0.0.1:9"), "{err}");
}

#[tokio::test]
async fn nodejs_dist_layout_is_a_source_too() {
    let reg = TestRegistry::start().await;
    let (arch, _) = host_arch().unwrap();
    reg.route(
        "/dist/index.json",
        json!([
            {"version": "v25.0.0", "lts": false},
            {"version": "v24.1.0", "lts": "Krypton"},
            {"version": "v22.12.0", "lts": "Jod"},
        ])
        .to_string(),
    );
    let file = format!("node-v24.1.0-linux-{arch}.tar.gz");
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o755);
    header.set_cksum();
    builder.append_data(&mut header, format!("node-v24.1.0-linux-{arch}/bin/node"), &b"node"[..]).unwrap();
    let tarball = builder.into_inner().unwrap().finish().unwrap();
    let sums =
        format!("{}  other.tar.gz\n{}  {file}\n", "0".repeat(64), fetch::hex_of(&sha2::Sha256::digest(&tarball)));
    reg.route(&format!("/dist/v24.1.0/{file}"), tarball);
    reg.route("/dist/v24.1.0/SHASUMS256.txt", sums);
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        dir: dir.path().to_path_buf(),
        node_source: NodeSource::parse(&format!("{}/dist/", reg.url)).unwrap(),
        npm_registry: reg.url.clone(),
        pypi: reg.url.clone(),
    };
    let store = RuntimeStore::new(config, &Network::default());
    assert_eq!(store.choose_node(None).await.unwrap(), "24.1.0");
    store.install(Tool::Node, "24.1.0", None).await.unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("node/24.1.0/bin/node")).unwrap(), "node");
    assert!(NodeSource::parse("nodejs.org").is_err());
    assert_eq!(NodeSource::parse("npm"), Ok(NodeSource::NpmRegistry));
}

#[tokio::test]
async fn uv_comes_from_pypi_as_a_wheel() {
    let reg = TestRegistry::start().await;
    let (_, arch) = host_arch().unwrap();
    let mut wheel = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in
        [("uv-0.5.0.data/scripts/uv", "uv"), ("uv-0.5.0.data/scripts/uvx", "uvx"), ("uv/__init__.py", "")]
    {
        wheel.start_file(name, options).unwrap();
        std::io::Write::write_all(&mut wheel, body.as_bytes()).unwrap();
    }
    let wheel = wheel.finish().unwrap().into_inner();
    let file = format!("uv-0.5.0-py3-none-manylinux_2_17_{arch}.manylinux2014_{arch}.whl");
    let release = json!({
        "info": {"version": "0.5.0"},
        "urls": [
            {"filename": format!("uv-0.5.0-py3-none-musllinux_1_1_{arch}.whl"), "url": "../../nope.whl", "digests": {"sha256": "00"}},
            // A mirror's relative link, as this machine's PyPI mirror gives them.
            {"filename": file, "url": format!("../../../packages/{file}"), "digests": {"sha256": fetch::hex_of(&sha2::Sha256::digest(&wheel))}},
        ],
    });
    // Like this machine's mirror: no per-version documents.
    reg.route("/pypi/uv/json", release.to_string());
    reg.route(&format!("/packages/{file}"), wheel);
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &reg.url);
    let plan = RuntimePlan {
        node: None,
        python: Some(PythonRuntime { version: None, installer: PythonInstaller::Requirements, install: None }),
    };
    let chosen = store.prepare(&FakeProvider::new(), "ws-a", &plan).await.unwrap();
    assert_eq!(chosen, Chosen { uv: Some("0.5.0".into()), ..Chosen::default() });
    let uv = dir.path().join("uv/0.5.0/bin/uv");
    assert_eq!(std::fs::read_to_string(&uv).unwrap(), "uv");
    assert_eq!(std::fs::metadata(&uv).unwrap().permissions().mode() & 0o777, 0o755);
    assert!(dir.path().join("uv/0.5.0/bin/uvx").is_file());
}

#[tokio::test]
async fn the_python_request_picks_the_images_interpreter_or_fails_naming_it() {
    let fake = FakeProvider::new();
    instance(&fake, "ws-a").await;
    fake.set_exec_result(
        STEP_PYTHONS,
        crate::provider::ExecOutput::ok("3.11.2\t/usr/bin/python3.11\n3.13.5\t/usr/local/bin/python3.13\n"),
    );
    let request = |spec: &str| PythonRuntime {
        version: Some(VersionRequest {
            spec: spec.into(),
            file: ".python-version".into(),
            key: None,
            line: 1,
            column: 1,
        }),
        installer: PythonInstaller::UvSync,
        install: None,
    };
    assert_eq!(interpreter(&fake, "ws-a", &request("3.11")).await.unwrap(), "/usr/bin/python3.11");
    let newest = PythonRuntime { version: None, ..request("3") };
    assert_eq!(interpreter(&fake, "ws-a", &newest).await.unwrap(), "/usr/local/bin/python3.13");
    let err = interpreter(&fake, "ws-a", &request("3.14")).await.unwrap_err();
    assert!(err.message.contains("this project needs Python 3.14"), "{err}");
    assert!(err.message.contains("3.11.2 and 3.13.5"), "{err}");
}

#[test]
fn the_profile_puts_the_chosen_versions_first_on_path() {
    let chosen = Chosen {
        node: Some("22.23.5".into()),
        npm: Some("11.6.2".into()),
        manager: Some((Tool::Pnpm, "9.15.0".into())),
        uv: Some("0.5.0".into()),
    };
    let text = profile(&chosen, Some("/usr/bin/python3.11"), &[("UV_CACHE_DIR", "/var/cache/nexus/uv".into())]);
    assert!(text.contains(
        "export PATH=\"/opt/nexus/runtimes/pnpm/9.15.0/bin:/opt/nexus/runtimes/npm/11.6.2/bin:/opt/nexus/runtimes/node/22.23.5/bin:/opt/nexus/runtimes/uv/0.5.0/bin:$HOME/.local/bin:$PNPM_HOME:$PATH\"\n"
    ), "{text}");
    assert!(text.contains("export NPM_CONFIG_PREFIX=\"$HOME/.local\"\n"), "{text}");
    assert!(text.contains("export UV_PYTHON='/usr/bin/python3.11'\nexport UV_PYTHON_DOWNLOADS=never\n"), "{text}");
    assert!(text.contains("export UV_CACHE_DIR='/var/cache/nexus/uv'\n"), "{text}");
    // The profile runs in every login shell: it must be valid sh.
    let out = std::process::Command::new("sh").args(["-n", "-c", &text]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn package_manager_releases_for_a_node() {
    let doc: Packument = serde_json::from_value(json!({
        "dist-tags": {"latest": "11.0.0"},
        "versions": {
            "10.9.2": {"version": "10.9.2", "engines": {"node": "^18.17.0 || >=20.5.0"}, "bin": {"npm": "bin/npm-cli.js"}, "dist": {"tarball": "t"}},
            "11.0.0": {"version": "11.0.0", "engines": {"node": "^20.17.0 || >=22.9.0"}, "bin": {"npm": "bin/npm-cli.js"}, "dist": {"tarball": "t"}},
            "12.0.0-pre.1": {"version": "12.0.0-pre.1", "bin": {"npm": "bin/npm-cli.js"}, "dist": {"tarball": "t"}},
            "11.9.0": {"version": "11.9.0", "bin": {"npm": "bin/npm-cli.js"}, "dist": {"tarball": "t"}},
        },
    }))
    .unwrap();
    let v = |s: &str| Version::parse(s).unwrap();
    assert_eq!(pick_compatible(&doc, &v("22.12.0")).as_deref(), Some("11.0.0"), "not newer than latest");
    assert_eq!(pick_compatible(&doc, &v("20.10.0")).as_deref(), Some("10.9.2"));
    assert_eq!(pick_compatible(&doc, &v("16.0.0")), None);
    assert!(js_bins(Some(&json!("./cli.mjs"))));
    assert!(!js_bins(Some(&json!({"pnpm": "pnpm"}))));
    assert!(!js_bins(None));
    assert_eq!(exact_version("v22.12.0").as_deref(), Some("22.12.0"));
    assert_eq!(exact_version("22.12"), None);
    assert_eq!(exact_version("^22.12.0"), None);
}
