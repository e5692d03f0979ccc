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
//! at the planned port (see `node::FRAMEWORKS`), and every service gets `PORT`.
//!
//! Detection never fails: what it cannot read it skips, and the plan's `source` says what it found.

use nexus_types::names;
use nexus_types::protocol::{HealthCheck, HealthKind, ProjectPlan, ServicePlan};

use crate::devcontainer;
use crate::files::RepoFiles;

// One file per detector; `detect` runs them in this order.
mod node;
mod python;
mod static_site;

/// `source` of a plan when nothing was recognised.
pub const NOTHING_DETECTED: &str = "detected: nothing (add .nexus/config.yaml)";

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
    let has_node = node::detect(files, &mut found);
    python::detect(files, &mut found);
    // A Node project's `index.html` is its bundler's entry page, not a site to serve as it is.
    if !has_node {
        static_site::detect(files, &mut found);
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

#[cfg(test)]
mod tests;
