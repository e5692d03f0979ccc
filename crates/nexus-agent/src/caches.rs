//! Dependency caches on the node: npm's cache, pnpm's store, Yarn's caches, uv's and pip's, kept in
//! one directory per workspace owner and mounted read-write at [`CACHE_MOUNT`] into that owner's
//! workspaces only, so the second project of a user that needs `react@19` downloads nothing.
//!
//! Per owner, not shared: a cache one user can write and another reads is a way to poison the other's
//! installs. npm's and pnpm's content stores check a package's integrity, but only against the
//! metadata they cached next to it (which the writer controls too) unless a lock file pins it; uv's
//! and pip's caches hold wheels they built from source, which nothing re-checks. Sharing across users
//! would need a layer only the agent writes (downloads it verifies itself), read-only for everyone;
//! until then each owner pays for a package once per node, not once per workspace.
//!
//! The directory belongs to the owner's `dev` user as the container maps it (an unprivileged
//! container's uid 1000 is a high uid on the node), so nothing needs `shift` or idmapped mounts.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::provider::{Mount, Provider};
use crate::provision::{failure, provider_failure, ProvisionFailure, DEV_UID};

/// The node's cache directory unless the agent is told otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/nexus/caches";
/// Where workspaces see their owner's caches (outside `$HOME`, so mounting never creates
/// root-owned directories in it).
pub(crate) const CACHE_MOUNT: &str = "/var/cache/nexus";
/// The cache's device name on instances.
pub(crate) const CACHE_DEVICE: &str = "nexus-cache";

/// The variables pointing each tool at its directory in [`CACHE_MOUNT`].
pub(crate) fn env() -> Vec<(&'static str, String)> {
    let at = |dir: &str| format!("{CACHE_MOUNT}/{dir}");
    vec![
        ("npm_config_cache", at("npm")),
        // pnpm reads its settings from npm_config_* too.
        ("npm_config_store_dir", at("pnpm-store")),
        ("YARN_CACHE_FOLDER", at("yarn")),
        // Yarn 2+: its global cache lives under the global folder.
        ("YARN_GLOBAL_FOLDER", at("yarn-berry")),
        ("UV_CACHE_DIR", at("uv")),
        // The cache is another file system than the project: copy, and say nothing about it.
        ("UV_LINK_MODE", "copy".to_string()),
        ("PIP_CACHE_DIR", at("pip")),
    ]
}

/// Whether `owner` can name a directory: `[A-Za-z0-9_-]`, 1 to 64 characters.
pub(crate) fn valid_owner(owner: &str) -> bool {
    !owner.is_empty() && owner.len() <= 64 && owner.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Makes `root/<owner>` exist, owned by workspace `id`'s `dev` user as the node sees it, and says
/// how to mount it.
pub(crate) async fn prepare<P: Provider>(
    provider: &P,
    id: &str,
    root: &Path,
    owner: &str,
) -> Result<Mount, ProvisionFailure> {
    if !valid_owner(owner) {
        return Err(failure(
            format!("owner id {owner:?} cannot name a cache directory"),
            "this is a server-side validation bug; report it with the workspace id",
        ));
    }
    let ids = provider
        .host_ids(id, DEV_UID, DEV_UID)
        .await
        .map_err(|e| provider_failure("reading the container's user mapping failed", &e))?;
    let dir = root.join(owner);
    let (root, dir2) = (root.to_path_buf(), dir.clone());
    let made = tokio::task::spawn_blocking(move || own_dir(&root, &dir2, ids)).await;
    match made {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(failure(
                format!("cannot prepare the dependency cache {}: {e}", dir.display()),
                "the agent runs as root and needs a writable cache directory; check the node's disk, or give another with --cache-dir",
            ))
        }
        Err(e) => return Err(failure(format!("preparing the dependency cache failed: {e}"), "retry")),
    }
    Ok(Mount { device: CACHE_DEVICE.into(), source: dir, path: CACHE_MOUNT.into(), readonly: false })
}

/// Creates `dir` under `root` and gives it (and, after a change of mapping, everything in it) to
/// `ids`; only the owner may enter it.
fn own_dir(root: &Path, dir: &PathBuf, ids: Option<(u32, u32)>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Owners' ids are no one else's business on the node; LXD mounts as root.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))?;
    if let Some((uid, gid)) = ids {
        let meta = std::fs::metadata(dir)?;
        if meta.uid() != uid || meta.gid() != gid {
            chown_tree(dir, uid, gid)?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_must_be_plain_names() {
        for good in ["12345", "alice", "a_b-c"] {
            assert!(valid_owner(good), "{good}");
        }
        for bad in ["", "..", "a/b", "a b", ".hidden", &"x".repeat(65)] {
            assert!(!valid_owner(bad), "{bad}");
        }
    }

    #[test]
    fn every_tool_gets_its_own_directory_in_the_mount() {
        let env = env();
        let dirs: Vec<&String> = env.iter().filter(|(k, _)| *k != "UV_LINK_MODE").map(|(_, v)| v).collect();
        assert!(dirs.iter().all(|d| d.starts_with("/var/cache/nexus/")), "{dirs:?}");
        let mut unique = dirs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), dirs.len());
    }
}
