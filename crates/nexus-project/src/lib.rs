//! What a workspace runs for a repo: its `.nexus/config.yaml`, or, without one, a detected plan.
//!
//! The result is a [`ProjectPlan`] (setup steps and services with health checks) that the server hands to
//! the node agent. The config parser is strict and points at `file:line:column` with a hint, because the
//! people editing the file are often not YAML experts; detection follows the conventions of other cloud
//! workspace tools so a repo without config still comes up with its dev server running.
//!
//! - [`parse_config`] reads and validates the file; [`ProjectConfig::plan`] turns it into a plan.
//! - [`detect`] guesses a plan from a [`RepoFiles`] (a directory, a git tree, a map).
//! - [`resolve`] does whichever applies.
//! - [`to_yaml`] writes a plan back as a config file; [`json_schema`] describes the format.

mod config;
mod detect;
mod devcontainer;
mod error;
mod files;
mod locate;
mod render;
mod runtime;
mod schema;
mod yaml;

pub use config::{check_service_name, parse_config, LxcConfig, ProjectConfig, MAX_SERVICE_NAME};
pub use detect::{detect, NOTHING_DETECTED};
pub use error::{ConfigError, CONFIG_PATH};
pub use files::{DirFiles, MapFiles, RepoFiles, PLAN_FILES};
pub use nexus_types::protocol::{HealthCheck, HealthKind, ProjectPlan, ServicePlan};
pub use nexus_types::protocol::{
    NodeRuntime, PackageManager, PackageManagerKind, PythonInstaller, PythonRuntime, RuntimePlan, VersionRequest,
};
pub use render::to_yaml;
pub use runtime::{
    lts_codename, parse_node_index, pick_node, pick_python, resolve_runtime, NodeRelease, RUNTIME_FILES,
};
pub use schema::{json_schema, json_schema_text, SCHEMA_FILE};
pub use yaml::{mapping_or_empty, nearest_key, parse_yaml, KeyHints, YamlProblem};

/// A repo's plan and the container settings that go with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Setup steps and services.
    pub plan: ProjectPlan,
    /// `providers.lxc.cpu`, if the config sets it.
    pub cpu: Option<u32>,
    /// `providers.lxc.memory`, if the config sets it.
    pub memory: Option<String>,
    /// `providers.lxc.image`, if the config sets it.
    pub image: Option<String>,
    /// The Node, package manager and Python the repo asks for (see [`resolve_runtime`]), whether or not
    /// it has a config: its setup steps run with them.
    pub runtime: RuntimePlan,
}

/// The plan for a repo: from `.nexus/config.yaml` when it exists (which must then be valid; a broken
/// config is reported, never silently replaced by a guess), else detected. Either way with the runtimes
/// the repo's files ask for; a request that is not a version is an error at its file and line.
pub fn resolve(files: &dyn RepoFiles) -> Result<Resolved, ConfigError> {
    if let Some(text) = files.read(CONFIG_PATH) {
        let config = parse_config(&text)?;
        let (cpu, memory, image) = config.resources();
        let runtime = resolve_runtime(files)?;
        let plan = ProjectPlan { runtime: runtime.clone(), ..config.plan() };
        return Ok(Resolved { plan, cpu, memory, image, runtime });
    }
    // A `.yml` file is almost certainly meant as the config; ignoring it would be a silent surprise.
    if files.exists(".nexus/config.yml") {
        return Err(ConfigError {
            file: ".nexus/config.yml".to_string(),
            line: 1,
            column: 1,
            message: format!("Nexus reads {CONFIG_PATH}, not .nexus/config.yml"),
            hint: format!("rename the file to {CONFIG_PATH}"),
        });
    }
    let runtime = resolve_runtime(files)?;
    // Detected setup installs the dependencies, which it cannot do with bun; a config's own setup can.
    if let Some(err) = runtime::unsupported(&runtime) {
        return Err(err);
    }
    let plan = ProjectPlan { runtime: runtime.clone(), ..detect(files) };
    Ok(Resolved { plan, runtime, ..Resolved::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_prefers_the_config_over_detection() {
        let config = "services:\n  app:\n    command: make run\n    port: 9000\nproviders:\n  lxc: {cpu: 4, memory: 8GB, image: \"ubuntu:24.04\"}\n";
        let files = MapFiles::new([(CONFIG_PATH, config), ("package.json", r#"{"scripts": {"dev": "vite"}}"#)]);
        let resolved = resolve(&files).unwrap();
        assert_eq!(resolved.plan.source, CONFIG_PATH);
        assert_eq!(resolved.plan.services.len(), 1);
        assert_eq!(resolved.plan.services[0].name, "app");
        assert!(resolved.plan.setup.is_empty(), "nothing from package.json");
        assert_eq!(
            (resolved.cpu, resolved.memory.as_deref(), resolved.image.as_deref()),
            (Some(4), Some("8GB"), Some("ubuntu:24.04"))
        );
    }

    #[test]
    fn resolve_detects_without_a_config() {
        let files = MapFiles::new([("package.json", r#"{"scripts": {"dev": "vite"}}"#)]);
        let resolved = resolve(&files).unwrap();
        assert_eq!(resolved.plan.source, "detected: node (npm, script dev, vite)");
        assert_eq!(resolved.plan.services[0].port, Some(5173));
        assert_eq!((resolved.cpu, resolved.memory, resolved.image), (None, None, None));
    }

    #[test]
    fn resolve_reports_a_broken_config_instead_of_guessing() {
        let files = MapFiles::new([(CONFIG_PATH, "services:\n  web:\n    comand: x\n"), ("index.html", "<html>")]);
        let err = resolve(&files).unwrap_err();
        assert_eq!(err.to_string(), ".nexus/config.yaml:3:5: unknown key \"comand\" in services.web");
    }

    #[test]
    fn resolve_points_at_a_misnamed_config() {
        let files = MapFiles::new([(".nexus/config.yml", "services: {}\n")]);
        let err = resolve(&files).unwrap_err();
        assert_eq!(err.file, ".nexus/config.yml");
        assert_eq!(err.hint, "rename the file to .nexus/config.yaml");
    }

    #[test]
    fn resolve_reads_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".nexus")).unwrap();
        std::fs::write(dir.path().join(".nexus/config.yaml"), "setup: make\n").unwrap();
        let resolved = resolve(&DirFiles(dir.path().to_path_buf())).unwrap();
        assert_eq!(resolved.plan.setup, vec!["make"]);
    }
}
