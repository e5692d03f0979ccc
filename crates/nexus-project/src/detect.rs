//! Guesses setup steps and services for a repo without `.nexus/config.yaml`.
//!
//! The rules follow Gitpod's inferrer, which users of cloud workspaces already know: the package manager
//! comes from the lock file, the service runs the `dev` script (else `start`), Python projects get a
//! virtualenv, a lone `index.html` is served as a static site. A `devcontainer.json`, if present, adds
//! its lifecycle commands and can adjust ports and names (see [`detect`]).
//!
//! Detection never fails: what it cannot read it skips, and the plan's `source` says what it found.

use nexus_types::names;
use nexus_types::protocol::{HealthCheck, HealthKind, ProjectPlan, ServicePlan};
use serde_json::Value;

use crate::devcontainer;
use crate::files::RepoFiles;

/// `source` of a plan when nothing was recognised.
pub const NOTHING_DETECTED: &str = "detected: nothing (add .nexus/config.yaml)";

/// Port of a Node service whose script and dependencies name no known framework.
const NODE_DEFAULT_PORT: u16 = 3000;
/// Port of the static file server.
const STATIC_PORT: u16 = 8080;

/// Where `{port}` stands in a command template, filled in once the port is final.
const PORT_SLOT: &str = "{port}";

/// A service before its port is final (devcontainer.json may still change it).
struct Draft {
    name: String,
    /// Command, possibly containing [`PORT_SLOT`].
    command: String,
    port: Option<u16>,
}

impl Draft {
    fn web(name: &str, command: impl Into<String>, port: u16) -> Self {
        Draft { name: name.to_string(), command: command.into(), port: Some(port) }
    }

    fn finish(self) -> ServicePlan {
        let (command, env, health) = match self.port {
            Some(port) => (
                self.command.replace(PORT_SLOT, &port.to_string()),
                vec![("PORT".to_string(), port.to_string())],
                HealthCheck::new(HealthKind::Http { port, path: "/".to_string() }),
            ),
            None => (self.command, vec![], HealthCheck::new(HealthKind::None)),
        };
        ServicePlan {
            name: self.name,
            command,
            port: self.port,
            env,
            working_dir: String::new(),
            depends_on: vec![],
            health,
        }
    }
}

/// What one detector found.
#[derive(Default)]
struct Found {
    /// For `source`, e.g. `node (npm, script dev)`.
    labels: Vec<String>,
    setup: Vec<String>,
    services: Vec<Draft>,
}

/// Detects a plan from the repo's files.
///
/// `devcontainer.json` (or `.devcontainer.json`) contributes:
/// - `postCreateCommand` (string, array or object form): appended to `setup`;
/// - `postStartCommand`: a service named `post-start` with no port and no health check;
/// - `forwardPorts`: used only to correct a guess. When exactly one service was detected and exactly one
///   port is forwarded, that port replaces the detected one (the devcontainer author knows the real
///   port; a service needs a command, so a forwarded port alone never becomes a service);
/// - `portsAttributes.<port>.label`: renames the detected service listening on that port (slugified,
///   e.g. `Web App` → `web-app`), unless the slug is empty or already taken.
pub fn detect(files: &dyn RepoFiles) -> ProjectPlan {
    let mut found = Found::default();
    let has_node = node(files, &mut found);
    python(files, &mut found);
    if !has_node && found.services.is_empty() && files.exists("index.html") {
        found.labels.push("static site (index.html)".to_string());
        found.services.push(Draft::web("web", "python3 -m http.server $PORT --bind 0.0.0.0", STATIC_PORT));
    }
    let post_start = devcontainer_extras(files, &mut found);

    let mut services: Vec<ServicePlan> = found.services.into_iter().map(Draft::finish).collect();
    if let Some(command) = post_start {
        services.push(Draft { name: "post-start".to_string(), command, port: None }.finish());
    }
    let source = if found.labels.is_empty() {
        NOTHING_DETECTED.to_string()
    } else {
        format!("detected: {}", found.labels.join(" + "))
    };
    ProjectPlan { source, setup: found.setup, services }
}

/// Applies devcontainer.json (see [`detect`]); returns the `post-start` command, if any.
fn devcontainer_extras(files: &dyn RepoFiles, found: &mut Found) -> Option<String> {
    let (path, text) = devcontainer::PATHS.iter().find_map(|p| files.read(p).map(|t| (*p, t)))?;
    let Some(dc) = devcontainer::parse(&text) else {
        found.labels.push(format!("{path} (unreadable, ignored)"));
        return None;
    };
    let mut used = Vec::new();
    if !dc.post_create.is_empty() {
        used.push("postCreateCommand");
        found.setup.extend(dc.post_create);
    }
    if dc.post_start.is_some() {
        used.push("postStartCommand");
    }
    if let ([service], [port]) = (found.services.as_mut_slice(), dc.forward_ports.as_slice()) {
        if service.port != Some(*port) {
            service.port = Some(*port);
            used.push("forwardPorts");
        }
    }
    for (port, label) in &dc.labels {
        let Some(slug) = names::slug(label) else { continue };
        let taken = slug == "post-start" || found.services.iter().any(|s| s.name == slug);
        if let Some(service) = found.services.iter_mut().find(|s| s.port == Some(*port)) {
            if !taken {
                service.name = slug;
                used.push("portsAttributes");
            }
        }
    }
    used.dedup();
    let file = path.rsplit('/').next().unwrap_or(path);
    found.labels.push(if used.is_empty() { file.to_string() } else { format!("{file} ({})", used.join(", ")) });
    dc.post_start
}

// ---------------------------------------------------------------------------------------------------
// Node

/// Detects a Node project from `package.json`; returns whether there is one.
fn node(files: &dyn RepoFiles, found: &mut Found) -> bool {
    let Some(text) = files.read("package.json") else { return false };
    let manifest: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let pm = if files.exists("pnpm-lock.yaml") {
        "pnpm"
    } else if files.exists("yarn.lock") {
        "yarn"
    } else if files.exists("package-lock.json") {
        "npm"
    } else {
        // Corepack's field decides when there is no lock file yet.
        match manifest.get("packageManager").and_then(Value::as_str) {
            Some(pm) if pm.starts_with("pnpm@") => "pnpm",
            Some(pm) if pm.starts_with("yarn@") => "yarn",
            _ => "npm",
        }
    };
    found.setup.push(
        match pm {
            "pnpm" => "pnpm install",
            "yarn" => "yarn install",
            _ => "npm install --no-audit --no-fund",
        }
        .to_string(),
    );
    let scripts = manifest.get("scripts").and_then(Value::as_object);
    let script = ["dev", "start"].into_iter().find_map(|name| {
        let body = scripts?.get(name)?.as_str()?;
        Some((name, body))
    });
    let Some((script, body)) = script else {
        found.labels.push(format!("node ({pm}, no dev or start script)"));
        return true;
    };
    let port = port_from_flags(body)
        .or_else(|| framework_port_from_script(body))
        .or_else(|| framework_port_from_deps(&manifest))
        .unwrap_or(NODE_DEFAULT_PORT);
    let command = match pm {
        "npm" => format!("npm run {script}"),
        pm => format!("{pm} {script}"),
    };
    found.labels.push(format!("node ({pm}, script {script})"));
    found.services.push(Draft::web("web", command, port));
    true
}

/// Splits a script into words, treating `&&`, `;` and `|` as separators too.
fn words(script: &str) -> Vec<&str> {
    script.split(|c: char| c.is_whitespace() || ";|&()".contains(c)).filter(|w| !w.is_empty()).collect()
}

/// A port given in a script: `--port 4000`, `--port=4000`, `-p 4000`, `-p=4000` or `PORT=4000 ...`.
fn port_from_flags(script: &str) -> Option<u16> {
    let words = words(script);
    let parse = |s: &str| s.trim_matches(|c| c == '"' || c == '\'').parse::<u16>().ok().filter(|p| *p > 0);
    words.iter().enumerate().find_map(|(i, word)| {
        if let Some(value) = ["--port=", "-p=", "PORT="].iter().find_map(|prefix| word.strip_prefix(prefix)) {
            return parse(value);
        }
        if *word == "--port" || *word == "-p" {
            return words.get(i + 1).and_then(|next| parse(next));
        }
        None
    })
}

/// Default ports of the dev servers a script can start, by the command's name.
const SCRIPT_PORTS: &[(&str, u16)] = &[
    ("vite", 5173),
    ("next", 3000),
    ("react-scripts", 3000),
    ("nuxt", 3000),
    ("nuxi", 3000),
    ("astro", 4321),
    ("ng", 4200),
    ("gatsby", 8000),
    ("remix", 3000),
    ("svelte-kit", 5173),
];

/// The default port of the first dev server the script runs.
fn framework_port_from_script(script: &str) -> Option<u16> {
    words(script).iter().find_map(|word| {
        let command = word.rsplit('/').next().unwrap_or(word);
        SCRIPT_PORTS.iter().find(|(name, _)| *name == command).map(|(_, port)| *port)
    })
}

/// Default ports by dependency, most specific first: meta-frameworks before the bundler they use
/// (Nuxt, Astro and SvelteKit all depend on Vite but listen elsewhere or the same).
const DEPENDENCY_PORTS: &[(&str, u16)] = &[
    ("next", 3000),
    ("nuxt", 3000),
    ("astro", 4321),
    ("@angular/cli", 4200),
    ("gatsby", 8000),
    ("@remix-run/dev", 3000),
    ("@sveltejs/kit", 5173),
    ("vite", 5173),
    ("react-scripts", 3000),
    ("express", 3000),
];

fn framework_port_from_deps(manifest: &Value) -> Option<u16> {
    let has = |dep: &str| {
        ["dependencies", "devDependencies"]
            .iter()
            .any(|section| manifest.get(section).and_then(|d| d.get(dep)).is_some())
    };
    DEPENDENCY_PORTS.iter().find(|(dep, _)| has(dep)).map(|(_, port)| *port)
}

// ---------------------------------------------------------------------------------------------------
// Python

/// Detects a Python project (`requirements.txt`, `pyproject.toml` or `manage.py`).
fn python(files: &dyn RepoFiles, found: &mut Found) {
    let requirements = files.read("requirements.txt");
    let pyproject = files.read("pyproject.toml");
    let manage = files.exists("manage.py");
    if requirements.is_none() && pyproject.is_none() && !manage {
        return;
    }
    let is_poetry = pyproject.as_deref().is_some_and(|p| p.contains("[tool.poetry]"));
    let has_project = pyproject.as_deref().is_some_and(|p| p.lines().any(|l| l.trim() == "[project]"));
    // requirements.txt wins when both exist: it is the cheaper install and usually exported from the other.
    let (installer, setup) = if requirements.is_some() {
        ("pip", Some("python3 -m venv .venv && .venv/bin/pip install -r requirements.txt"))
    } else if is_poetry {
        ("poetry", Some("python3 -m venv .venv && .venv/bin/pip install poetry && .venv/bin/poetry install"))
    } else if has_project {
        ("pip", Some("python3 -m venv .venv && .venv/bin/pip install -e ."))
    } else {
        ("no dependencies", None)
    };
    let venv = setup.is_some();
    found.setup.extend(setup.map(str::to_string));
    // `.venv/bin/<tool>` when the setup makes a venv, else the system interpreter.
    let tool = |name: &str| if venv { format!(".venv/bin/{name}") } else { format!("python3 -m {name}") };
    let python = if venv { ".venv/bin/python" } else { "python3" };

    let deps = format!("{}\n{}", requirements.unwrap_or_default(), pyproject.unwrap_or_default());
    let depends_on = |package: &str| mentions(&deps, package);
    let name = if found.services.iter().any(|s| s.name == "web") { "api" } else { "web" };

    let (framework, draft) = if manage {
        ("django", Some(Draft::web(name, format!("{python} manage.py runserver 0.0.0.0:{PORT_SLOT}"), 8000)))
    } else if let Some(draft) = flask(files, &depends_on, &tool, name) {
        ("flask", Some(draft))
    } else if let Some(draft) = fastapi(files, &depends_on, &tool, name) {
        ("fastapi", Some(draft))
    } else if let Some(script) = ["app.py", "main.py", "server.py"].into_iter().find(|f| files.exists(f)) {
        (script, Some(Draft::web(name, format!("{python} {script}"), 8000)))
    } else {
        ("no entry point", None)
    };
    found.labels.push(format!("python ({installer}, {framework})"));
    found.services.extend(draft);
}

fn flask(
    files: &dyn RepoFiles,
    depends_on: &dyn Fn(&str) -> bool,
    tool: &dyn Fn(&str) -> String,
    name: &str,
) -> Option<Draft> {
    // `flask run` finds `app.py` or `wsgi.py` by itself.
    let entry = ["app.py", "wsgi.py"].into_iter().find_map(|f| files.read(f))?;
    if !(depends_on("flask") || entry.contains("from flask") || entry.contains("import flask")) {
        return None;
    }
    Some(Draft::web(name, format!("{} run --host 0.0.0.0 --port {PORT_SLOT}", tool("flask")), 5000))
}

fn fastapi(
    files: &dyn RepoFiles,
    depends_on: &dyn Fn(&str) -> bool,
    tool: &dyn Fn(&str) -> String,
    name: &str,
) -> Option<Draft> {
    if !(depends_on("fastapi") || depends_on("uvicorn")) {
        return None;
    }
    let (module, app) = ["main", "app"].into_iter().find_map(|module| {
        let text = files.read(&format!("{module}.py"))?;
        let line = text.lines().find(|l| l.contains("FastAPI("))?;
        // `app = FastAPI(...)`: uvicorn needs the variable's name.
        let var = line.split_once('=').map(|(v, _)| v.trim()).filter(|v| is_identifier(v)).unwrap_or("app");
        Some((module, var.to_string()))
    })?;
    Some(Draft::web(name, format!("{} {module}:{app} --host 0.0.0.0 --port {PORT_SLOT}", tool("uvicorn")), 8000))
}

fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a requirements or pyproject text names a package (as a whole word, case-insensitively).
fn mentions(text: &str, package: &str) -> bool {
    text.to_ascii_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .any(|w| w == package)
}

#[cfg(test)]
mod tests;
