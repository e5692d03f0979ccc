//! `nexus config detect`: what Nexus finds in a project that has no `.nexus/config.yaml`, written out
//! as one — printed, or saved with `--write`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ui::{Report, Ui};

/// The detected config.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Detected {
    /// What the plan was detected from, e.g. `detected: node (npm)`.
    pub source: String,
    /// How many services it has.
    pub services: usize,
    /// How many setup steps it has.
    pub setup_steps: usize,
    /// The plan as `.nexus/config.yaml`.
    pub yaml: String,
    /// Where it was saved, with `--write`.
    pub written: Option<PathBuf>,
}

impl Report for Detected {
    fn text(&self, ui: &Ui) {
        match &self.written {
            Some(path) => ui.info(&format!("wrote {}", path.display())),
            None => ui.result(self.yaml.strip_suffix('\n').unwrap_or(&self.yaml)),
        }
    }
}

/// Detects the plan for `dir`; with `write`, saves it as `<dir>/.nexus/config.yaml` (never over one).
pub fn run(dir: &Path, write: bool, ui: &Ui) -> Result<Detected> {
    let files = nexus_project::DirFiles(dir.to_path_buf());
    let resolved = nexus_project::resolve(&files).map_err(|e| Error::new(e.to_string(), e.hint.clone()))?;
    let plan = &resolved.plan;
    let mut detected = Detected {
        source: plan.source.clone(),
        services: plan.services.len(),
        setup_steps: plan.setup.len(),
        yaml: nexus_project::to_yaml(plan),
        written: None,
    };
    ui.info(&format!("{} ({} service(s), {} setup step(s))", detected.source, detected.services, detected.setup_steps));
    if !write {
        return Ok(detected);
    }
    let path = dir.join(".nexus/config.yaml");
    if path.exists() {
        return Err(Error::new(
            format!("{} already exists", path.display()),
            "edit it by hand, or move it away and run this again",
        ));
    }
    let cannot = |e: std::io::Error| {
        Error::new(format!("cannot write {}: {e}", path.display()), "check that you can write to the directory")
    };
    std::fs::create_dir_all(dir.join(".nexus")).map_err(cannot)?;
    std::fs::write(&path, &detected.yaml).map_err(cannot)?;
    detected.written = Some(path);
    Ok(detected)
}
