//! The Python detector: `requirements.txt`, `pyproject.toml` or `manage.py`; Django, Flask, FastAPI and
//! Streamlit each get told to listen on every interface at the planned port.

use super::{Draft, Found, PORT_SLOT};
use crate::files::RepoFiles;

/// Detects a Python project (`requirements.txt`, `pyproject.toml` or `manage.py`). Django, Flask, FastAPI
/// and Streamlit each get told to listen on every interface at the planned port.
pub(super) fn detect(files: &dyn RepoFiles, found: &mut Found) {
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
