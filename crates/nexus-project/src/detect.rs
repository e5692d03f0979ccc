//! Guesses setup steps and services for a repo without `.nexus/config.yaml`.
//!
//! The rules follow Gitpod's inferrer, which users of cloud workspaces already know: the package manager
//! comes from `packageManager` or the lock file (see [`crate::runtime`]), the service runs the `dev`
//! script (else `start`), Python projects get a virtualenv, a lone `index.html` is served as a static
//! site. A `devcontainer.json`, if present, adds its lifecycle commands and can adjust ports and names
//! (see [`detect`]).
//!
//! A detected dev server must answer on its port from outside its own loopback (the node's health
//! check and forwards reach it at `127.0.0.1`, where a server bound to `localhost` may only hold
//! `::1`): each known framework gets the flags or environment that make it listen on every interface
//! at the planned port (see [`FRAMEWORKS`]), and every service gets `PORT`.
//!
//! Detection never fails: what it cannot read it skips, and the plan's `source` says what it found.

use nexus_types::names;
use nexus_types::protocol::{HealthCheck, HealthKind, ProjectPlan, ServicePlan};
use serde_json::Value;

use crate::devcontainer;
use crate::files::RepoFiles;
use crate::runtime;
use nexus_types::protocol::PackageManagerKind;

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
    /// Environment besides `PORT`.
    env: Vec<(String, String)>,
}

impl Draft {
    fn web(name: &str, command: impl Into<String>, port: u16) -> Self {
        Draft { name: name.to_string(), command: command.into(), port: Some(port), env: vec![] }
    }

    fn finish(self) -> ServicePlan {
        let (command, mut env, health) = match self.port {
            Some(port) => (
                self.command.replace(PORT_SLOT, &port.to_string()),
                vec![("PORT".to_string(), port.to_string())],
                HealthCheck::new(HealthKind::Http { port, path: "/".to_string() }),
            ),
            None => (self.command, vec![], HealthCheck::new(HealthKind::None)),
        };
        env.extend(self.env);
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
        services.push(Draft { name: "post-start".to_string(), command, port: None, env: vec![] }.finish());
    }
    let source = if found.labels.is_empty() {
        NOTHING_DETECTED.to_string()
    } else {
        format!("detected: {}", found.labels.join(" + "))
    };
    ProjectPlan { source, setup: found.setup, services, ..Default::default() }
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
    let pm = runtime::detect_package_manager(files, &manifest);
    let pm_name = match pm.kind {
        PackageManagerKind::Npm => "npm",
        PackageManagerKind::Pnpm => "pnpm",
        PackageManagerKind::YarnClassic | PackageManagerKind::YarnBerry => "yarn",
        PackageManagerKind::Bun => "bun",
    };
    // Bun is not provided: installing with it would fail, and `resolve` refuses the project instead.
    if pm.kind != PackageManagerKind::Bun {
        found.setup.push(pm.install.clone());
    }
    let scripts = manifest.get("scripts").and_then(Value::as_object);
    let script = ["dev", "start"].into_iter().find_map(|name| {
        let body = scripts?.get(name)?.as_str()?;
        Some((name, body))
    });
    let Some((script, body)) = script else {
        found.labels.push(format!("node ({pm_name}, no dev or start script)"));
        return true;
    };
    let flag_port = port_from_flags(body);
    let (framework, ends_script) = match framework_in_script(body) {
        Some((framework, last)) => (Some(framework), last),
        None => (framework_from_deps(&manifest), false),
    };
    let port = flag_port.or(framework.map(|f| f.port)).unwrap_or(NODE_DEFAULT_PORT);
    let mut command = match pm.kind {
        PackageManagerKind::Npm => format!("npm run {script}"),
        PackageManagerKind::Bun => format!("bun run {script}"),
        _ => format!("{pm_name} {script}"),
    };
    let mut draft_env = vec![];
    if let Some(framework) = framework {
        // Flags reach the server only when the script ends with it: npm appends them to the last command.
        let args = if ends_script { bind_args(framework, body) } else { vec![] };
        if !args.is_empty() {
            // npm takes flags before `--` as its own; pnpm, yarn and bun pass them on.
            let separator = if pm.kind == PackageManagerKind::Npm { " --" } else { "" };
            command = format!("{command}{separator} {}", args.join(" "));
        }
        draft_env = framework.env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // `vite dev` in a SvelteKit project is SvelteKit to the person reading the plan.
        let name = match framework_from_deps(&manifest) {
            Some(meta) if framework.cli == "vite" && meta.port == framework.port => meta.name,
            _ => framework.name,
        };
        found.labels.push(format!("node ({pm_name}, script {script}, {name})"));
    } else {
        found.labels.push(format!("node ({pm_name}, script {script})"));
    }
    found.services.push(Draft { env: draft_env, ..Draft::web("web", command, port) });
    true
}

/// A dev server a `package.json` script can start, and how it is made reachable.
struct Framework {
    /// For `source`: `vite`, `next`, ...
    name: &'static str,
    /// The command a script starts it with.
    cli: &'static str,
    /// Its first argument when it serves for development; `""` stands for none (only flags).
    serves: &'static [&'static str],
    /// Dependencies that mean a project uses it (all of them), when the script does not say.
    packages: &'static [&'static str],
    /// Where it listens unless told otherwise.
    port: u16,
    /// Flags, appended to the script, that make it listen on every interface at the planned port:
    /// for servers that bind to loopback and read neither `PORT` nor `HOST`.
    args: &'static [(&'static str, &'static str)],
    /// Environment it reads for the same purpose (`PORT` is set for every service).
    env: &'static [(&'static str, &'static str)],
}

/// Vite and the tools that pass its flags on: it binds to `localhost` and reads no environment, and
/// `--strictPort` makes a taken port an error instead of a silent move to the next one, which the
/// health check would never find.
const VITE_ARGS: &[(&str, &str)] = &[("--host", "0.0.0.0"), ("--port", PORT_SLOT), ("--strictPort", "")];
const HOST_PORT_ARGS: &[(&str, &str)] = &[("--host", "0.0.0.0"), ("--port", PORT_SLOT)];

/// Known dev servers. Order matters when only dependencies say which one: meta-frameworks come before
/// the bundler they build on (Nuxt, Astro, SvelteKit and React Router all depend on Vite).
const FRAMEWORKS: &[Framework] = &[
    // `next dev` listens on every interface and reads PORT.
    Framework { name: "next", cli: "next", serves: &["dev"], packages: &["next"], port: 3000, args: &[], env: &[] },
    Framework {
        name: "nuxt",
        cli: "nuxt",
        serves: &["dev", ""],
        packages: &["nuxt"],
        port: 3000,
        args: HOST_PORT_ARGS,
        env: &[("HOST", "0.0.0.0")],
    },
    Framework {
        name: "nuxt",
        cli: "nuxi",
        serves: &["dev"],
        packages: &["nuxt"],
        port: 3000,
        args: HOST_PORT_ARGS,
        env: &[("HOST", "0.0.0.0")],
    },
    Framework {
        name: "astro",
        cli: "astro",
        serves: &["dev", "start"],
        packages: &["astro"],
        port: 4321,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    Framework {
        name: "angular",
        cli: "ng",
        serves: &["serve", "s"],
        packages: &["@angular/cli"],
        port: 4200,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    Framework {
        name: "gatsby",
        cli: "gatsby",
        serves: &["develop"],
        packages: &["gatsby"],
        port: 8000,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    Framework {
        name: "react-router",
        cli: "react-router",
        serves: &["dev"],
        packages: &["@react-router/dev"],
        port: 5173,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    // Remix 2 on Vite, then classic Remix, whose app server reads PORT.
    Framework {
        name: "remix",
        cli: "remix",
        serves: &["vite:dev"],
        packages: &["@remix-run/dev", "vite"],
        port: 5173,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    Framework {
        name: "remix",
        cli: "remix",
        serves: &["dev"],
        packages: &["@remix-run/dev"],
        port: 3000,
        args: &[],
        env: &[],
    },
    // SvelteKit's script is `vite dev`; `svelte-kit dev` is its pre-1.0 command.
    Framework {
        name: "sveltekit",
        cli: "svelte-kit",
        serves: &["dev"],
        packages: &["@sveltejs/kit"],
        port: 5173,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    Framework {
        name: "vite",
        cli: "vite",
        serves: &["", "dev", "serve"],
        packages: &["vite"],
        port: 5173,
        args: VITE_ARGS,
        env: &[],
    },
    // Create React App reads HOST and PORT; BROWSER=none stops it trying to open one.
    Framework {
        name: "create-react-app",
        cli: "react-scripts",
        serves: &["start"],
        packages: &["react-scripts"],
        port: 3000,
        args: &[],
        env: &[("HOST", "0.0.0.0"), ("BROWSER", "none")],
    },
    Framework { name: "express", cli: "", serves: &[], packages: &["express"], port: 3000, args: &[], env: &[] },
];

/// Splits a script into its commands (at `&&`, `||`, `;`, `|` and `&`).
fn commands(script: &str) -> Vec<&str> {
    script.split(['&', '|', ';']).map(str::trim).filter(|c| !c.is_empty()).collect()
}

/// Splits a script into words, treating `&&`, `;` and `|` as separators too.
fn words(script: &str) -> Vec<&str> {
    script.split(|c: char| c.is_whitespace() || ";|&()".contains(c)).filter(|w| !w.is_empty()).collect()
}

/// The dev server a script starts, and whether it is the script's last command.
fn framework_in_script(script: &str) -> Option<(&'static Framework, bool)> {
    let commands = commands(script);
    commands.iter().enumerate().find_map(|(i, command)| {
        // `NODE_ENV=development cross-env X=1 npx vite ...`: the program is the first other word.
        let mut words =
            words(command).into_iter().skip_while(|w| w.contains('=') || ["cross-env", "npx", "exec"].contains(w));
        let program = words.next()?;
        let program = program.rsplit('/').next().unwrap_or(program);
        let first = words.next().filter(|w| !w.starts_with('-')).unwrap_or("");
        let framework = FRAMEWORKS.iter().find(|f| f.cli == program && f.serves.contains(&first))?;
        Some((framework, i + 1 == commands.len()))
    })
}

fn framework_from_deps(manifest: &Value) -> Option<&'static Framework> {
    let has = |dep: &str| {
        ["dependencies", "devDependencies"]
            .iter()
            .any(|section| manifest.get(section).and_then(|d| d.get(dep)).is_some())
    };
    FRAMEWORKS.iter().find(|f| f.packages.iter().all(|p| has(p)))
}

/// The framework's binding flags the script's last command does not give itself. The port flag carries
/// the planned port, so a port found elsewhere in the script (`PORT=4000 vite`) is the one it gets.
fn bind_args(framework: &Framework, script: &str) -> Vec<String> {
    let last = commands(script).pop().unwrap_or_default();
    let given = words(last);
    let has = |names: &[&str]| given.iter().any(|w| names.iter().any(|n| *w == *n || w.starts_with(&format!("{n}="))));
    framework
        .args
        .iter()
        .filter(|(flag, _)| match *flag {
            "--host" => !has(&["--host", "-H", "--hostname"]),
            "--port" => !has(&["--port", "-p"]),
            flag => !has(&[flag]),
        })
        .map(|(flag, value)| if value.is_empty() { flag.to_string() } else { format!("{flag} {value}") })
        .collect()
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

// ---------------------------------------------------------------------------------------------------
// Python

/// Detects a Python project (`requirements.txt`, `pyproject.toml` or `manage.py`). Django, Flask, FastAPI
/// and Streamlit each get told to listen on every interface at the planned port.
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
    } else if let Some(draft) = streamlit(files, &depends_on, &tool, name) {
        ("streamlit", Some(draft))
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

/// A Streamlit app: the dependency, and an entry file that imports it (checked first, because such an
/// `app.py` would otherwise pass for a plain script or, next to Flask, a Flask app).
fn streamlit(
    files: &dyn RepoFiles,
    depends_on: &dyn Fn(&str) -> bool,
    tool: &dyn Fn(&str) -> String,
    name: &str,
) -> Option<Draft> {
    if !depends_on("streamlit") {
        return None;
    }
    // `streamlit_app.py` is Streamlit Community Cloud's default entry point.
    let entry = ["streamlit_app.py", "app.py", "main.py"]
        .into_iter()
        .find(|f| files.read(f).is_some_and(|t| t.contains("import streamlit") || t.contains("from streamlit")))?;
    // Headless: no prompt for an e-mail address and no browser on the first run.
    let command = format!(
        "{} run {entry} --server.address 0.0.0.0 --server.port {PORT_SLOT} --server.headless true",
        tool("streamlit")
    );
    Some(Draft::web(name, command, 8501))
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
