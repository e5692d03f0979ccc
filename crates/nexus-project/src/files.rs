//! Read access to a repo's files, behind a trait so detection runs on a checkout, a git tree or a map.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Largest file detection reads; manifests are small, and a huge file is not one.
const MAX_FILE_BYTES: u64 = 1 << 20;

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
    use super::*;

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
