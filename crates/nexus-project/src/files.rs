//! Read access to a repo's files, behind a trait so detection runs on a checkout, a git tree or a map.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Largest file detection reads; manifests are small, and a huge file is not one.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Every path [`crate::resolve`] may read: the config (and its misnamed `.yml` twin, which it reports)
/// and what detection looks at. Whoever fetches a repo's files for resolving (the server reads them
/// from a remote tree before a workspace exists) fetches these; a test checks `resolve` reads no other.
pub const PLAN_FILES: &[&str] = &[
    crate::CONFIG_PATH,
    ".nexus/config.yml",
    ".devcontainer/devcontainer.json",
    ".devcontainer.json",
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lock",
    "bun.lockb",
    ".yarnrc.yml",
    ".nvmrc",
    ".node-version",
    ".tool-versions",
    ".python-version",
    "uv.lock",
    "poetry.lock",
    "streamlit_app.py",
    "requirements.txt",
    "pyproject.toml",
    "manage.py",
    "app.py",
    "main.py",
    "server.py",
    "wsgi.py",
    "index.html",
];

/// Read-only access to the files of a repo, by `/`-separated path relative to its root.
pub trait RepoFiles {
    /// The file's text; `None` if it is missing, unreadable, not UTF-8 or too large.
    fn read(&self, path: &str) -> Option<String>;

    /// Whether the file exists (and is readable as text).
    fn exists(&self, path: &str) -> bool {
        self.read(path).is_some()
    }
}

/// A checkout on the local filesystem.
///
/// Refuses absolute paths, `..`, and symlinks that lead out of the root: detection may run on a repo
/// someone else wrote, and its files must not make us read ours.
#[derive(Debug, Clone)]
pub struct DirFiles(pub PathBuf);

impl DirFiles {
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        let rel = Path::new(path);
        if !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return None;
        }
        let root = self.0.canonicalize().ok()?;
        let full = root.join(rel).canonicalize().ok()?;
        full.starts_with(&root).then_some(full)
    }
}

impl RepoFiles for DirFiles {
    fn read(&self, path: &str) -> Option<String> {
        let full = self.resolve(path)?;
        let meta = std::fs::metadata(&full).ok()?;
        if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
            return None;
        }
        std::fs::read_to_string(full).ok()
    }

    fn exists(&self, path: &str) -> bool {
        self.resolve(path).is_some_and(|p| p.is_file())
    }
}

/// Files held in memory, keyed by path (for tests, and for trees fetched from elsewhere).
#[derive(Debug, Clone, Default)]
pub struct MapFiles(pub HashMap<String, String>);

impl MapFiles {
    /// Builds one from `(path, text)` pairs.
    pub fn new<P: Into<String>, T: Into<String>>(files: impl IntoIterator<Item = (P, T)>) -> Self {
        MapFiles(files.into_iter().map(|(p, t)| (p.into(), t.into())).collect())
    }
}

impl RepoFiles for MapFiles {
    fn read(&self, path: &str) -> Option<String> {
        self.0.get(path).cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;

    /// Serves a map and remembers every path asked for.
    struct Recording {
        files: MapFiles,
        asked: RefCell<BTreeSet<String>>,
    }

    impl RepoFiles for Recording {
        fn read(&self, path: &str) -> Option<String> {
            self.asked.borrow_mut().insert(path.to_string());
            self.files.read(path)
        }

        fn exists(&self, path: &str) -> bool {
            self.asked.borrow_mut().insert(path.to_string());
            self.files.exists(path)
        }
    }

    #[test]
    fn resolve_reads_only_plan_files() {
        // Repos that send detection down each of its paths: nothing at all, each ecosystem, each
        // Python framework, a devcontainer of either name, and both config names.
        let repos: &[&[(&str, &str)]] = &[
            &[],
            &[("package.json", r#"{"scripts": {"dev": "vite"}}"#)],
            &[("package.json", "{}"), ("yarn.lock", "# yarn lockfile v1\n")],
            &[("package.json", "{}"), ("yarn.lock", "__metadata:\n"), (".yarnrc.yml", "")],
            &[("package.json", "{}"), ("pnpm-lock.yaml", "")],
            &[("package.json", "{}"), ("package-lock.json", "{}")],
            &[("package.json", "{}"), ("bun.lock", "")],
            &[("package.json", "{}"), ("requirements.txt", "flask\nfastapi\n"), ("index.html", "")],
            &[("requirements.txt", "fastapi\n"), ("main.py", "app = FastAPI()\n")],
            &[("pyproject.toml", "[tool.poetry]\n"), ("server.py", "")],
            &[("pyproject.toml", "[project]\n"), ("uv.lock", ""), ("app.py", "import streamlit\n")],
            &[("pyproject.toml", "[project]\n"), ("manage.py", "")],
            &[("index.html", ""), (".devcontainer.json", r#"{"forwardPorts": [9000]}"#)],
            &[(".devcontainer/devcontainer.json", "{}")],
            &[(crate::CONFIG_PATH, "services: {}\n")],
            &[(".nexus/config.yml", "services: {}\n")],
        ];
        let mut asked = BTreeSet::new();
        for repo in repos {
            let files = Recording { files: MapFiles::new(repo.iter().copied()), asked: RefCell::default() };
            let _ = crate::resolve(&files);
            asked.extend(files.asked.into_inner());
        }
        let unlisted: Vec<&String> = asked.iter().filter(|p| !PLAN_FILES.contains(&p.as_str())).collect();
        assert!(unlisted.is_empty(), "resolve reads {unlisted:?}; add them to PLAN_FILES");
        let runtime: Vec<&&str> = crate::RUNTIME_FILES.iter().filter(|p| !PLAN_FILES.contains(p)).collect();
        assert!(runtime.is_empty(), "runtime resolution reads {runtime:?}; add them to PLAN_FILES");
    }

    #[test]
    fn dir_files_reads_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("package.json"), "{}").unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        let files = DirFiles(root.clone());
        assert_eq!(files.read("package.json").as_deref(), Some("{}"));
        assert_eq!(files.read("./sub/a.txt").as_deref(), Some("a"));
        assert!(files.exists("sub/a.txt"));
        assert!(!files.exists("sub"), "directories are not files");
        assert_eq!(files.read("missing"), None);
        assert_eq!(files.read("../secret"), None);
        assert_eq!(files.read("sub/../../secret"), None);
        assert_eq!(files.read(&dir.path().join("secret").display().to_string()), None);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
            assert_eq!(files.read("link"), None, "a symlink out of the repo is refused");
            assert!(!files.exists("link"));
        }
    }
}
