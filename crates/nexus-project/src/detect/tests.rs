//! Tests of detection, one repo shape at a time.

use super::*;
use crate::files::MapFiles;
use nexus_types::protocol::PackageManagerKind;

fn plan(files: &[(&str, &str)]) -> ProjectPlan {
    detect(&MapFiles::new(files.iter().copied()))
}

/// The one service of a plan, as (name, command, port).
#[track_caller]
fn only_service(plan: &ProjectPlan) -> (&str, &str, Option<u16>) {
    assert_eq!(plan.services.len(), 1, "{plan:#?}");
    let s = &plan.services[0];
    (s.name.as_str(), s.command.as_str(), s.port)
}

/// The port a lone Node service gets for these package.json scripts and dependencies.
#[track_caller]
fn node_port(script: &str, deps: &str) -> u16 {
    let manifest =
        format!(r#"{{"scripts": {{"dev": {}}}, "devDependencies": {deps}}}"#, serde_json::to_string(script).unwrap());
    only_service(&plan(&[("package.json", &manifest)])).2.unwrap()
}

#[test]
fn npm_with_a_dev_script() {
    let p = plan(&[
        (
            "package.json",
            r#"{"scripts": {"dev": "vite", "start": "node server.js"}, "devDependencies": {"vite": "^5"}}"#,
        ),
        ("package-lock.json", "{}"),
    ]);
    assert_eq!(p.source, "detected: node (npm, script dev, vite)");
    assert_eq!(p.setup, vec!["npm ci --no-audit --no-fund"]);
    assert_eq!(
        p.services,
        vec![ServicePlan {
            name: "web".into(),
            command: "npm run dev -- --host 0.0.0.0 --port 5173 --strictPort".into(),
            port: Some(5173),
            env: vec![("PORT".into(), "5173".into())],
            working_dir: String::new(),
            depends_on: vec![],
            health: HealthCheck::new(HealthKind::Http { port: 5173, path: "/".into() }),
        }]
    );
}

#[test]
fn yarn_with_only_a_start_script() {
    let p = plan(&[
        ("package.json", r#"{"scripts": {"start": "node server.js"}, "dependencies": {"express": "^4"}}"#),
        ("yarn.lock", ""),
    ]);
    assert_eq!(p.source, "detected: node (yarn, script start, express)");
    assert_eq!(p.setup, vec!["yarn install"], "an empty yarn.lock locks nothing");
    assert_eq!(only_service(&p), ("web", "yarn start", Some(3000)));
}

#[test]
fn pnpm_wins_over_other_lock_files() {
    let p = plan(&[
        ("package.json", r#"{"scripts": {"dev": "next dev -p 4000"}}"#),
        ("pnpm-lock.yaml", ""),
        ("yarn.lock", ""),
    ]);
    assert_eq!(p.source, "detected: node (pnpm, script dev, next)");
    assert_eq!(p.setup, vec!["pnpm install"]);
    assert_eq!(only_service(&p), ("web", "pnpm dev", Some(4000)));
    assert_eq!(p.services[0].env, vec![("PORT".to_string(), "4000".to_string())]);
}

#[test]
fn package_manager_field_decides_without_a_lock_file() {
    let p = plan(&[("package.json", r#"{"packageManager": "pnpm@9.1.0", "scripts": {"dev": "vite"}}"#)]);
    assert_eq!(p.setup, vec!["pnpm install"]);
    assert_eq!(only_service(&p).1, "pnpm dev --host 0.0.0.0 --port 5173 --strictPort");
    // ... and over a lock file of another manager.
    let p = plan(&[
        ("package.json", r#"{"packageManager": "yarn@4.5.0", "scripts": {"dev": "next dev"}}"#),
        ("package-lock.json", "{}"),
    ]);
    assert_eq!(p.setup, vec!["yarn install"]);
    assert_eq!(only_service(&p).1, "yarn dev");
}

#[test]
fn ports_come_from_script_flags_first() {
    assert_eq!(node_port("vite --port 4100", "{}"), 4100);
    assert_eq!(node_port("vite --port=4200", "{}"), 4200);
    assert_eq!(node_port("next dev -p 4300", "{}"), 4300);
    assert_eq!(node_port("PORT=4400 node server.js", "{}"), 4400);
    assert_eq!(node_port("cross-env NODE_ENV=dev PORT=4500 nodemon app.js", "{}"), 4500);
    assert_eq!(node_port("tsc && vite --port 4600", r#"{"next": "1"}"#), 4600);
    assert_eq!(node_port("vite --port $PORT", "{}"), 5173, "not a number: fall back to the framework");
}

#[test]
fn ports_default_by_the_framework_the_script_runs() {
    assert_eq!(node_port("vite", "{}"), 5173);
    assert_eq!(node_port("next dev", "{}"), 3000);
    assert_eq!(node_port("react-scripts start", "{}"), 3000);
    assert_eq!(node_port("nuxt dev", "{}"), 3000);
    assert_eq!(node_port("astro dev", "{}"), 4321);
    assert_eq!(node_port("ng serve", "{}"), 4200);
    assert_eq!(node_port("svelte-kit dev", "{}"), 5173);
    assert_eq!(node_port("gatsby develop", "{}"), 8000);
    assert_eq!(node_port("remix dev", "{}"), 3000);
    assert_eq!(node_port("./node_modules/.bin/vite", "{}"), 5173);
    // The script's own command wins over a dependency.
    assert_eq!(node_port("astro dev", r#"{"vite": "5"}"#), 4321);
}

#[test]
fn ports_default_by_dependency_when_the_script_says_nothing() {
    assert_eq!(node_port("node scripts/dev.js", r#"{"@sveltejs/kit": "2", "vite": "5"}"#), 5173);
    assert_eq!(node_port("node scripts/dev.js", r#"{"astro": "4", "vite": "5"}"#), 4321);
    assert_eq!(node_port("node scripts/dev.js", r#"{"@angular/cli": "17"}"#), 4200);
    assert_eq!(node_port("node scripts/dev.js", r#"{"gatsby": "5"}"#), 8000);
    assert_eq!(node_port("node scripts/dev.js", r#"{"nuxt": "3", "vite": "5"}"#), 3000);
    assert_eq!(node_port("node scripts/dev.js", r#"{"vite": "5"}"#), 5173);
    assert_eq!(node_port("node scripts/dev.js", r#"{"express": "4"}"#), 3000);
    assert_eq!(node_port("node scripts/dev.js", "{}"), 3000);
}

#[test]
fn node_without_dev_or_start_installs_only() {
    let p = plan(&[("package.json", r#"{"scripts": {"build": "tsc", "test": "jest"}}"#)]);
    assert_eq!(p.source, "detected: node (npm, no dev or start script)");
    assert_eq!(p.setup, vec!["npm install --no-audit --no-fund"]);
    assert!(p.services.is_empty());
    // A broken package.json still gets its dependencies installed.
    assert_eq!(plan(&[("package.json", "{not json")]).setup, vec!["npm install --no-audit --no-fund"]);
}

const VENV_PIP: &str = "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt";

#[test]
fn django() {
    let p = plan(&[("requirements.txt", "Django==5.0\n"), ("manage.py", "")]);
    assert_eq!(p.source, "detected: python (pip, django)");
    assert_eq!(p.setup, vec![VENV_PIP]);
    assert_eq!(only_service(&p), ("web", ".venv/bin/python manage.py runserver 0.0.0.0:8000", Some(8000)));
    assert_eq!(p.services[0].health.kind, HealthKind::Http { port: 8000, path: "/".into() });

    // No dependency file: no venv, the system interpreter.
    let bare = plan(&[("manage.py", "")]);
    assert_eq!(bare.source, "detected: python (no dependencies, django)");
    assert!(bare.setup.is_empty());
    assert_eq!(only_service(&bare).1, "python3 manage.py runserver 0.0.0.0:8000");
}

#[test]
fn flask() {
    let p = plan(&[
        ("requirements.txt", "Flask==3.0\ngunicorn\n"),
        ("app.py", "from flask import Flask\napp = Flask(__name__)\n"),
    ]);
    assert_eq!(p.source, "detected: python (pip, flask)");
    assert_eq!(p.setup, vec![VENV_PIP]);
    assert_eq!(only_service(&p), ("web", ".venv/bin/flask run --host 0.0.0.0 --port 5000", Some(5000)));

    let wsgi = plan(&[("requirements.txt", "flask\n"), ("wsgi.py", "")]);
    assert_eq!(only_service(&wsgi).1, ".venv/bin/flask run --host 0.0.0.0 --port 5000");
}

#[test]
fn fastapi_with_poetry() {
    let pyproject = "[tool.poetry]\nname = \"svc\"\n\n[tool.poetry.dependencies]\npython = \"^3.11\"\nfastapi = \"^0.110\"\nuvicorn = {extras = [\"standard\"], version = \"^0.29\"}\n";
    let p = plan(&[
        ("pyproject.toml", pyproject),
        ("main.py", "from fastapi import FastAPI\n\napi = FastAPI(title=\"x\")\n"),
    ]);
    assert_eq!(p.source, "detected: python (poetry, fastapi)");
    assert_eq!(p.setup, vec!["python3 -m venv .venv && .venv/bin/pip install poetry && .venv/bin/poetry install"]);
    assert_eq!(only_service(&p), ("web", ".venv/bin/uvicorn main:api --host 0.0.0.0 --port 8000", Some(8000)));

    let app_py = plan(&[("requirements.txt", "fastapi\nuvicorn[standard]\n"), ("app.py", "app = FastAPI()\n")]);
    assert_eq!(only_service(&app_py).1, ".venv/bin/uvicorn app:app --host 0.0.0.0 --port 8000");
}

#[test]
fn plain_python_script() {
    let p = plan(&[("requirements.txt", "requests\n"), ("server.py", "print('hi')\n")]);
    assert_eq!(p.source, "detected: python (pip, server.py)");
    assert_eq!(only_service(&p), ("web", ".venv/bin/python server.py", Some(8000)));
    assert_eq!(p.services[0].env, vec![("PORT".to_string(), "8000".to_string())]);

    let pep621 =
        plan(&[("pyproject.toml", "[project]\nname = \"x\"\ndependencies = [\"requests\"]\n"), ("main.py", "")]);
    assert_eq!(pep621.setup, vec!["python3 -m venv .venv && .venv/bin/pip install -e ."]);
    assert_eq!(only_service(&pep621).1, ".venv/bin/python main.py");

    let no_entry = plan(&[("requirements.txt", "requests\n")]);
    assert_eq!(no_entry.source, "detected: python (pip, no entry point)");
    assert_eq!(no_entry.setup, vec![VENV_PIP]);
    assert!(no_entry.services.is_empty());
}

#[test]
fn static_site() {
    let p = plan(&[("index.html", "<html></html>")]);
    assert_eq!(p.source, "detected: static site (index.html)");
    assert!(p.setup.is_empty());
    assert_eq!(only_service(&p), ("web", "python3 -m http.server $PORT --bind 0.0.0.0", Some(8080)));
    assert_eq!(p.services[0].env, vec![("PORT".to_string(), "8080".to_string())]);
    assert_eq!(p.services[0].health.kind, HealthKind::Http { port: 8080, path: "/".into() });

    // With a package.json, index.html is the app's template, not a site to serve as is.
    let vite = plan(&[("index.html", ""), ("package.json", r#"{"scripts": {"build": "vite build"}}"#)]);
    assert!(vite.services.is_empty());
}

#[test]
fn node_and_python_side_by_side() {
    let p = plan(&[
        ("package.json", r#"{"scripts": {"dev": "vite"}}"#),
        ("requirements.txt", "fastapi\n"),
        ("main.py", "app = FastAPI()\n"),
    ]);
    assert_eq!(p.source, "detected: node (npm, script dev, vite) + python (pip, fastapi)");
    assert_eq!(p.setup, vec!["npm install --no-audit --no-fund", VENV_PIP]);
    let names: Vec<(&str, Option<u16>)> = p.services.iter().map(|s| (s.name.as_str(), s.port)).collect();
    assert_eq!(names, [("web", Some(5173)), ("api", Some(8000))]);
}

#[test]
fn devcontainer_with_comments_adds_commands_and_fixes_the_port_and_name() {
    let devcontainer = r#"{
        // Our dev container.
        "name": "app",
        "image": "mcr.microsoft.com/devcontainers/typescript-node",
        /* Runs once. */
        "postCreateCommand": "npm run db:migrate",
        "postStartCommand": ["npm", "run", "watch:css"],
        "forwardPorts": [3000,],   // the app really listens here
        "portsAttributes": {
            "3000": {"label": "Frontend App", "onAutoForward": "openBrowser"},
        },
    }"#;
    let p =
        plan(&[("package.json", r#"{"scripts": {"dev": "vite"}}"#), (".devcontainer/devcontainer.json", devcontainer)]);
    assert_eq!(
        p.source,
        "detected: node (npm, script dev, vite) + devcontainer.json (postCreateCommand, postStartCommand, forwardPorts, portsAttributes)"
    );
    assert_eq!(p.setup, vec!["npm install --no-audit --no-fund", "npm run db:migrate"]);
    assert_eq!(p.services.len(), 2);
    let web = &p.services[0];
    // The forwarded port replaces the guess in the command too.
    assert_eq!(
        (web.name.as_str(), web.command.as_str(), web.port),
        ("frontend-app", "npm run dev -- --host 0.0.0.0 --port 3000 --strictPort", Some(3000))
    );
    assert_eq!(web.env, vec![("PORT".to_string(), "3000".to_string())]);
    assert_eq!(web.health.kind, HealthKind::Http { port: 3000, path: "/".into() });
    let post = &p.services[1];
    assert_eq!((post.name.as_str(), post.command.as_str(), post.port), ("post-start", "npm run watch:css", None));
    assert_eq!(post.health.kind, HealthKind::None);
    assert!(post.env.is_empty());
}

#[test]
fn devcontainer_port_override_re_renders_commands_that_name_the_port() {
    let p = plan(&[
        ("manage.py", ""),
        (".devcontainer.json", r#"{"forwardPorts": [8001], "portsAttributes": {"8001": {"label": "!!!"}}}"#),
    ]);
    assert_eq!(only_service(&p), ("web", "python3 manage.py runserver 0.0.0.0:8001", Some(8001)));
    assert_eq!(p.source, "detected: python (no dependencies, django) + .devcontainer.json (forwardPorts)");
}

#[test]
fn devcontainer_ports_are_ignored_when_ambiguous() {
    let p = plan(&[
        ("package.json", r#"{"scripts": {"dev": "vite"}}"#),
        (".devcontainer/devcontainer.json", r#"{"forwardPorts": [3000, 5432], "postStartCommand": ""}"#),
    ]);
    assert_eq!(only_service(&p), ("web", "npm run dev -- --host 0.0.0.0 --port 5173 --strictPort", Some(5173)));
    assert_eq!(p.source, "detected: node (npm, script dev, vite) + devcontainer.json");
}

#[test]
fn devcontainer_alone_and_unreadable() {
    let p = plan(&[(
        ".devcontainer/devcontainer.json",
        r#"{"postCreateCommand": {"a": "make deps", "b": ["echo", "hi there"]}}"#,
    )]);
    assert_eq!(p.source, "detected: devcontainer.json (postCreateCommand)");
    assert_eq!(p.setup, vec!["make deps", "echo 'hi there'"]);
    assert!(p.services.is_empty());

    let broken = plan(&[(".devcontainer/devcontainer.json", "{ nope")]);
    assert_eq!(broken.source, "detected: .devcontainer/devcontainer.json (unreadable, ignored)");
}

#[test]
fn nothing_to_detect() {
    let p = plan(&[("README.md", "# hi"), ("main.go", "package main")]);
    assert_eq!(p, ProjectPlan { source: NOTHING_DETECTED.to_string(), ..Default::default() });
    assert_eq!(p.source, "detected: nothing (add .nexus/config.yaml)");
}

/// The lone Node service for a package.json, as (source, command, port, env besides PORT).
#[track_caller]
fn node_service(manifest: &str) -> (String, String, Option<u16>, Vec<(String, String)>) {
    let p = plan(&[("package.json", manifest), ("package-lock.json", "{}")]);
    let (_, command, port) = only_service(&p);
    let port_env = ("PORT".to_string(), port.unwrap().to_string());
    assert_eq!(p.services[0].env[0], port_env, "PORT comes first");
    (p.source.clone(), command.to_string(), port, p.services[0].env[1..].to_vec())
}

/// Checks the service detected for a package.json whose `dev` (else `start`) script runs `framework`.
#[track_caller]
fn assert_dev_server(manifest: &str, framework: &str, command: &str, port: u16, env: &[(&str, &str)]) {
    let script = if command.starts_with("npm run start") { "start" } else { "dev" };
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(
        node_service(manifest),
        (format!("detected: node (npm, script {script}, {framework})"), command.to_string(), Some(port), env),
        "{manifest}"
    );
}

#[test]
fn dev_servers_listen_on_every_interface_at_the_planned_port() {
    let vite = "npm run dev -- --host 0.0.0.0 --port 5173 --strictPort";
    assert_dev_server(r#"{"scripts": {"dev": "vite"}, "devDependencies": {"vite": "^8"}}"#, "vite", vite, 5173, &[]);
    // next dev binds every interface and reads PORT by itself.
    assert_dev_server(
        r#"{"scripts": {"dev": "next dev --turbopack"}, "dependencies": {"next": "16"}}"#,
        "next",
        "npm run dev",
        3000,
        &[],
    );
    assert_dev_server(
        r#"{"scripts": {"dev": "astro dev"}, "dependencies": {"astro": "^7"}}"#,
        "astro",
        "npm run dev -- --host 0.0.0.0 --port 4321",
        4321,
        &[],
    );
    assert_dev_server(
        r#"{"scripts": {"dev": "vite dev"}, "devDependencies": {"@sveltejs/kit": "^2", "vite": "^7"}}"#,
        "sveltekit",
        vite,
        5173,
        &[],
    );
    assert_dev_server(
        r#"{"scripts": {"dev": "nuxt dev"}, "dependencies": {"nuxt": "^4"}}"#,
        "nuxt",
        "npm run dev -- --host 0.0.0.0 --port 3000",
        3000,
        &[("HOST", "0.0.0.0")],
    );
    assert_dev_server(
        r#"{"scripts": {"start": "ng serve", "build": "ng build"}, "devDependencies": {"@angular/cli": "^21"}}"#,
        "angular",
        "npm run start -- --host 0.0.0.0 --port 4200",
        4200,
        &[],
    );
    assert_dev_server(
        r#"{"scripts": {"dev": "react-router dev"}, "devDependencies": {"@react-router/dev": "^7", "vite": "^7"}}"#,
        "react-router",
        "npm run dev -- --host 0.0.0.0 --port 5173",
        5173,
        &[],
    );
    assert_dev_server(
        r#"{"scripts": {"dev": "remix vite:dev"}, "devDependencies": {"@remix-run/dev": "^2", "vite": "^5"}}"#,
        "remix",
        "npm run dev -- --host 0.0.0.0 --port 5173",
        5173,
        &[],
    );
    // Classic Remix's app server reads PORT.
    assert_dev_server(
        r#"{"scripts": {"dev": "remix dev"}, "devDependencies": {"@remix-run/dev": "^2"}}"#,
        "remix",
        "npm run dev",
        3000,
        &[],
    );
    assert_dev_server(
        r#"{"scripts": {"develop": "gatsby develop", "start": "gatsby develop"}, "dependencies": {"gatsby": "^5"}}"#,
        "gatsby",
        "npm run start -- --host 0.0.0.0 --port 8000",
        8000,
        &[],
    );
    assert_dev_server(
        r#"{"scripts": {"start": "react-scripts start"}, "dependencies": {"react-scripts": "5"}}"#,
        "create-react-app",
        "npm run start",
        3000,
        &[("HOST", "0.0.0.0"), ("BROWSER", "none")],
    );
}

#[test]
fn binding_flags_only_where_they_reach_the_server() {
    let command = |script: &str| {
        node_service(&format!(r#"{{"scripts": {{"dev": {script:?}}}, "devDependencies": {{"vite": "8"}}}}"#)).1
    };
    // Appended flags go to the script's last command.
    assert_eq!(command("tsc -b && vite"), "npm run dev -- --host 0.0.0.0 --port 5173 --strictPort");
    assert_eq!(command("NODE_ENV=development npx vite"), "npm run dev -- --host 0.0.0.0 --port 5173 --strictPort");
    assert_eq!(command("vite & tsc -w"), "npm run dev", "the server is not last: the flags would reach tsc");
    assert_eq!(command("node scripts/dev.js"), "npm run dev", "the framework only from dependencies");
    // Flags the script gives itself are not repeated; a port from the script is the one passed on.
    assert_eq!(command("vite --host"), "npm run dev -- --port 5173 --strictPort");
    assert_eq!(command("vite --port 4100"), "npm run dev -- --host 0.0.0.0 --strictPort");
    assert_eq!(command("vite --host=127.0.0.1 --strictPort"), "npm run dev -- --port 5173");
    assert_eq!(command("PORT=4000 vite"), "npm run dev -- --host 0.0.0.0 --port 4000 --strictPort");
    // `vite build` is no dev server.
    assert_eq!(
        node_service(r#"{"scripts": {"dev": "vite build --watch"}, "devDependencies": {"vite": "8"}}"#).0,
        "detected: node (npm, script dev, vite)"
    );
    assert_eq!(command("vite build --watch"), "npm run dev");

    // pnpm, yarn and bun pass flags on without `--`.
    for (lock, text, want) in [
        ("pnpm-lock.yaml", "lockfileVersion: '9.0'\n", "pnpm dev --host 0.0.0.0 --port 5173 --strictPort"),
        ("yarn.lock", "# yarn lockfile v1\n", "yarn dev --host 0.0.0.0 --port 5173 --strictPort"),
        ("bun.lock", "{}", "bun run dev --host 0.0.0.0 --port 5173 --strictPort"),
    ] {
        let p = plan(&[("package.json", r#"{"scripts": {"dev": "vite"}}"#), (lock, text)]);
        assert_eq!(only_service(&p).1, want);
    }
}

#[test]
fn frozen_installs_from_lock_files_and_none_for_bun() {
    let setup = |lock: &str, text: &str| plan(&[("package.json", "{}"), (lock, text)]).setup;
    assert_eq!(setup("package-lock.json", "{}"), vec!["npm ci --no-audit --no-fund"]);
    assert_eq!(setup("pnpm-lock.yaml", "lockfileVersion: '9.0'\n"), vec!["pnpm install --frozen-lockfile"]);
    assert_eq!(setup("yarn.lock", "# yarn lockfile v1\n"), vec!["yarn install --frozen-lockfile"]);
    assert_eq!(setup("yarn.lock", "__metadata:\n  version: 8\n"), vec!["yarn install --immutable"]);
    let bun = plan(&[("package.json", r#"{"scripts": {"dev": "vite"}}"#), ("bun.lockb", "")]);
    assert!(bun.setup.is_empty(), "bun is not provided; resolve refuses the project");
    assert_eq!(bun.source, "detected: node (bun, script dev, vite)");
}

#[test]
fn streamlit() {
    let p = plan(&[
        ("requirements.txt", "streamlit==1.40\npandas\n"),
        ("streamlit_app.py", "import streamlit as st\n\nst.title('hi')\n"),
    ]);
    assert_eq!(p.source, "detected: python (pip, streamlit)");
    assert_eq!(
        only_service(&p),
        (
            "web",
            ".venv/bin/streamlit run streamlit_app.py --server.address 0.0.0.0 --server.port 8501 --server.headless true",
            Some(8501)
        )
    );
    // An app.py that imports streamlit is not taken for Flask, even with Flask installed.
    let both = plan(&[("requirements.txt", "flask\nstreamlit\n"), ("app.py", "from streamlit import title\n")]);
    assert_eq!(
        only_service(&both).1,
        ".venv/bin/streamlit run app.py --server.address 0.0.0.0 --server.port 8501 --server.headless true"
    );
    // The dependency without an entry that imports it: a plain script.
    let script = plan(&[("requirements.txt", "streamlit\n"), ("main.py", "print(1)\n")]);
    assert_eq!(script.source, "detected: python (pip, main.py)");
}

// ---------------------------------------------------------------------------------------------------
// Real projects, as their generators make them (crates/nexus/tests/fixtures/projects, see its README)

fn fixture(name: &str) -> crate::Resolved {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nexus/tests/fixtures/projects").join(name);
    assert!(dir.join(if name.starts_with("django") { "manage.py" } else { "package.json" }).is_file(), "{dir:?}");
    crate::resolve(&crate::DirFiles(dir)).unwrap()
}

/// The npm project's runtime: its Node request, and npm installing from its lock file.
#[track_caller]
fn assert_npm_locked(resolved: &crate::Resolved, node_request: Option<&str>) {
    let node = resolved.runtime.node.as_ref().expect("node");
    assert_eq!(node.version.as_ref().map(|v| v.spec.as_str()), node_request);
    let pm = &node.package_manager;
    assert_eq!(
        (pm.kind, pm.source.as_str(), pm.lock_file.as_deref(), pm.install.as_str()),
        (PackageManagerKind::Npm, "package-lock.json", Some("package-lock.json"), "npm ci --no-audit --no-fund")
    );
    assert_eq!(resolved.plan.setup, vec!["npm ci --no-audit --no-fund"]);
    assert_eq!(resolved.runtime.python, None);
}

#[test]
fn fixture_vite_react_ts() {
    let r = fixture("vite-react-ts");
    assert_eq!(r.plan.source, "detected: node (npm, script dev, vite)");
    assert_eq!(only_service(&r.plan), ("web", "npm run dev -- --host 0.0.0.0 --port 5173 --strictPort", Some(5173)));
    // create-vite writes no `engines`: the node's newest LTS, which satisfies Vite's own ^20.19 || >=22.12.
    assert_npm_locked(&r, None);
}

#[test]
fn fixture_next_app() {
    let r = fixture("next-app");
    assert_eq!(r.plan.source, "detected: node (npm, script dev, next)");
    assert_eq!(only_service(&r.plan), ("web", "npm run dev", Some(3000)));
    assert_eq!(r.plan.services[0].env, vec![("PORT".to_string(), "3000".to_string())]);
    assert_npm_locked(&r, None);
}

#[test]
fn fixture_astro_site() {
    let r = fixture("astro-site");
    assert_eq!(r.plan.source, "detected: node (npm, script dev, astro)");
    assert_eq!(only_service(&r.plan), ("web", "npm run dev -- --host 0.0.0.0 --port 4321", Some(4321)));
    assert_npm_locked(&r, None);
}

#[test]
fn fixture_django_site() {
    let r = fixture("django-site");
    assert_eq!(r.plan.source, "detected: python (pip, django)");
    assert_eq!(r.plan.setup, vec![VENV_PIP]);
    assert_eq!(only_service(&r.plan), ("web", ".venv/bin/python manage.py runserver 0.0.0.0:8000", Some(8000)));
    assert_eq!(r.runtime.node, None);
    let python = r.runtime.python.as_ref().expect("python");
    assert_eq!(python.version, None, "startproject pins no Python");
    assert_eq!(python.installer, nexus_types::protocol::PythonInstaller::Requirements);
    assert_eq!(
        python.install.as_deref(),
        Some("uv venv .venv && uv pip install --python .venv/bin/python -r requirements.txt")
    );
}

#[test]
fn fixtures_with_a_node_request_pick_from_the_source() {
    // The same Vite project, as a team that pins Node would commit it.
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nexus/tests/fixtures/projects/vite-react-ts");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(src.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join(".nvmrc"), "lts/jod\n").unwrap();
    let r = crate::resolve(&crate::DirFiles(dir.path().to_path_buf())).unwrap();
    let request = r.runtime.node.unwrap().version.unwrap();
    let source = [("24.11.1", Some("Krypton")), ("22.21.1", Some("Jod")), ("18.20.8", Some("Hydrogen"))]
        .map(|(v, lts)| crate::NodeRelease { version: v.into(), lts: lts.map(str::to_string) });
    assert_eq!(crate::pick_node(Some(&request), &source).unwrap().as_deref(), Some("22.21.1"));
}
