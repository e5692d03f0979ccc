//! Prebuilt workspaces: when a workspace's setup succeeds, the node keeps a copy-on-write copy of
//! it, and the next workspace of the same repository with the same key starts from that copy
//! instead of cloning and installing again.
//!
//! **A prebuild is its own stopped instance** (`pb-<key>`), copied from the workspace the moment
//! its setup finished, not a snapshot of the workspace: the owner deleting their workspace must
//! not take it away, and a snapshot would carry the workspace's devices and config. On a btrfs
//! pool the copy is a subvolume snapshot, so it costs no time and only the blocks that later
//! differ.
//!
//! **No secrets go into it.** Before anything can start the copy, the owner's git credentials
//! (`~/.git-credentials`, gh's `hosts.yml`, `~/.gitconfig` with the credential helper and identity),
//! `authorized_keys`, shell history and sshd's host key are deleted from it, and the owner's cache
//! mount is dropped ([`SCRUB`]). A workspace started from it gets its own owner's key and token
//! as every workspace does, and sshd makes a fresh host key at its first boot (the image's unit
//! generates one when there is none), so no two workspaces share a host key. The git token never
//! is in the repository's config (the clone URL is plain; credentials come from the helper's
//! file). What stays: the checkout (tracked files are reset to the new workspace's commit, so
//! only untracked files a user wrote during the setup would remain: prebuilds are only shared
//! between users who can read the repository) and what setup installed.
//!
//! **The key** is (repository URL, image fingerprint, setup commands, runtime plan and the versions
//! chosen for it, lock files). The lock files part is a hash of the git blob ids of the manifest
//! and lock files ([`LOCK_FILES`]) at the checked-out commit, so it is known only after the
//! checkout: a new workspace starts from the most recently used prebuild with the same other
//! parts, moves its checkout to the requested branch's tip, and skips setup only when the lock
//! files hash and the runtime versions are the prebuild's (setup `done`, "from prebuild ...").
//! Otherwise setup runs as usual, over what the prebuild installed.
//!
//! **Who may use one:** only a create the server checked (`repo_access_verified`: its probe read the
//! repository with the caller's token, or it is public), for the same repository URL, and not with
//! `--no-prebuild` (which also keeps that workspace from making one).
//!
//! **Eviction:** least recently used (made or started from) first, while the prebuilds' disk use is
//! over [`Budget::max_bytes`] or their number over [`Budget::max_count`]. LXD reports an
//! instance's disk use only where the pool can count it (btrfs with quotas, zfs, lvm); where it
//! cannot, the count budget is what bounds them.

use std::time::{SystemTime, UNIX_EPOCH};

use nexus_types::diagnostics::error_chain;
use nexus_types::protocol::{ProjectPlan, WorkspaceSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::provider::{CopySpec, Provider};
use crate::provision::{failure, script, ProvisionFailure, DEV_HOME, DEV_UID};
use crate::{caches, runtimes, services};

/// `$0` of the script that prints the hash of the checkout's lock files.
pub(crate) const STEP_LOCK_HASH: &str = "nexus-lock-hash";
/// `$0` of the script that moves a prebuild's checkout to the requested branch.
pub(crate) const STEP_SYNC: &str = "nexus-prebuild-sync";
/// Config key of a prebuild instance: its [`Meta`] as JSON.
pub(crate) const META_KEY: &str = "user.nexus.prebuild";
/// Config key of a prebuild instance: when it was last made or started from (Unix seconds).
pub(crate) const USED_KEY: &str = "user.nexus.prebuild-used";
/// Config key of a workspace whose setup was skipped because it started from a prebuild: the
/// prebuild's name.
pub(crate) const FROM_KEY: &str = "user.nexus.prebuild-from";

/// Files whose committed contents decide whether a prebuild's installed dependencies fit.
pub const LOCK_FILES: &[&str] = &[
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "pnpm-workspace.yaml",
    "yarn.lock",
    ".yarnrc.yml",
    "bun.lock",
    "bun.lockb",
    ".nvmrc",
    ".node-version",
    ".tool-versions",
    ".python-version",
    "requirements.txt",
    "requirements-dev.txt",
    "pyproject.toml",
    "poetry.lock",
    "uv.lock",
    "Pipfile",
    "Pipfile.lock",
    ".nexus/config.yaml",
];

/// Files deleted from a prebuild before it is kept: the owner's credentials and identity, and
/// the workspace's host key.
pub const SCRUB: &[&str] = &[
    "/home/dev/.git-credentials",
    "/home/dev/.config/gh/hosts.yml",
    "/home/dev/.gitconfig",
    "/home/dev/.ssh/authorized_keys",
    "/home/dev/.bash_history",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_ed25519_key.pub",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_rsa_key.pub",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ecdsa_key.pub",
    // The prebuild's DHCP lease: a copy has another MAC, and with IPv4 filtering on (issue 11) the
    // old address it would ask for first is not its own, so it would wait for the lease to fail.
    "/var/lib/dhcpcd/eth0.lease",
];

/// Runs as `dev`. `$1`: checkout, then the lock file names. Prints one hash of `name blob-id`
/// lines of those present at `HEAD` (exit 3: no checkout).
const LOCK_HASH_SCRIPT: &str = r#"dir=$1; shift
cd "$dir" 2>/dev/null && git rev-parse --verify --quiet HEAD >/dev/null || exit 3
for f in "$@"; do
  id=$(git rev-parse --verify --quiet "HEAD:$f") && printf '%s %s\n' "$f" "$id"
done | sha256sum | cut -d' ' -f1
"#;

/// Runs as `dev`. `$1`: checkout, `$2`: branch (empty: the remote's default), `$3`: time limit in
/// seconds. Fetches the branch's tip and checks it out, throwing away changes to tracked files;
/// drops the prebuild's `upstream` remote (the workspace's own is added after). Prints `HEAD`.
const SYNC_SCRIPT: &str = r#"set -u
cd "$1" || exit 3
git remote remove upstream >/dev/null 2>&1
if [ -n "$2" ]; then
  LC_ALL=C timeout "$3" git fetch --quiet origin "+refs/heads/$2:refs/remotes/origin/$2" || exit $?
  git checkout --quiet -f -B "$2" "refs/remotes/origin/$2" || exit 4
else
  LC_ALL=C timeout "$3" git fetch --quiet origin HEAD || exit $?
  git reset --quiet --hard FETCH_HEAD || exit 4
fi
git rev-parse --verify --quiet HEAD
"#;

/// How much disk prebuilds may take on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes of disk all prebuilds together may use, where the provider can tell (default 20 GiB).
    pub max_bytes: u64,
    /// How many prebuilds the node keeps (default 16).
    pub max_count: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { max_bytes: 20 << 30, max_count: 16 }
    }
}

/// What a prebuild was made from; all of it but `lock`, `runtime` and `commit` must match for a
/// workspace to start from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    repo: String,
    image: String,
    /// Hash of the setup commands.
    setup: String,
    /// Hash of the runtime plan.
    plan: String,
    /// The runtime versions chosen ([`runtimes::RECORD_KEY`]), empty without runtimes.
    runtime: String,
    /// Hash of the lock files at `commit`.
    lock: String,
    commit: String,
}

/// The prebuild a new workspace was copied from.
#[derive(Debug, Clone)]
pub(crate) struct Reuse {
    name: String,
    meta: Meta,
}

/// What the supervisor needs to keep a prebuild of a workspace whose setup succeeded.
#[derive(Debug, Clone)]
pub(crate) struct SaveFrom {
    pub(crate) repo_url: String,
    pub(crate) repo_dir: String,
    /// The image the workspace was made from (alias).
    pub(crate) image: String,
    pub(crate) budget: Budget,
}

impl SaveFrom {
    /// Where prebuilds of `spec`'s workspace come from, unless it has no repository or the owner
    /// asked for none.
    pub(crate) fn of(spec: &WorkspaceSpec, base_image: &str, budget: Option<Budget>) -> Option<SaveFrom> {
        let budget = budget?;
        if spec.no_prebuild || spec.repo_url.is_empty() || spec.plan.setup.is_empty() {
            return None;
        }
        let image = if spec.image.is_empty() { base_image } else { spec.image.as_str() };
        Some(SaveFrom { repo_url: spec.repo_url.clone(), repo_dir: spec.repo_dir.clone(), image: image.into(), budget })
    }
}

fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn plan_hash(plan: &ProjectPlan) -> (String, String) {
    let runtime = serde_json::to_string(&plan.runtime).unwrap_or_default();
    (hash(&plan.setup.join("\n")), hash(&runtime))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn exec_dev<P: Provider>(provider: &P, id: &str, argv: &[String], extra: &[(String, String)]) -> Option<String> {
    let mut env = vec![
        ("HOME".to_string(), DEV_HOME.to_string()),
        ("USER".to_string(), "dev".to_string()),
        ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
    ];
    env.extend_from_slice(extra);
    match provider.exec(id, argv, Some((DEV_UID, DEV_UID)), &env, Some(DEV_HOME)).await {
        Ok(out) if out.code == 0 => Some(out.stdout.trim().to_string()),
        Ok(out) => {
            tracing::debug!(workspace = id, code = out.code, stderr = %out.last_stderr_line(), "prebuild step failed");
            None
        }
        Err(e) => {
            tracing::debug!(workspace = id, error = %error_chain(&e), "prebuild step failed");
            None
        }
    }
}

/// The hash of `dir`'s lock files at `HEAD`; `None` without a checkout.
async fn lock_hash<P: Provider>(provider: &P, id: &str, dir: &str) -> Option<String> {
    let mut args = vec![dir];
    args.extend_from_slice(LOCK_FILES);
    exec_dev(provider, id, &script(LOCK_HASH_SCRIPT, STEP_LOCK_HASH, &args), &[]).await.filter(|h| !h.is_empty())
}

/// Keeps a prebuild of workspace `id`, whose setup just succeeded, then evicts over the budget.
/// Returns the prebuild's name.
pub(crate) async fn save<P: Provider>(
    provider: &P,
    id: &str,
    from: &SaveFrom,
    plan: &ProjectPlan,
) -> Result<String, String> {
    let dir = format!("{DEV_HOME}/{}", from.repo_dir);
    let lock = lock_hash(provider, id, &dir).await.ok_or("the checkout's lock files could not be read")?;
    let commit = exec_dev(provider, id, &script("git -C \"$1\" rev-parse HEAD", "nexus-prebuild-head", &[&dir]), &[])
        .await
        .unwrap_or_default();
    let runtime = provider.get_config(id, runtimes::RECORD_KEY).await.ok().flatten().unwrap_or_default();
    let image = provider.image_id(&from.image).await.map_err(|e| error_chain(&e))?;
    let (setup, plan_h) = plan_hash(plan);
    let meta = Meta { repo: from.repo_url.clone(), image, setup, plan: plan_h, runtime, lock, commit };
    let json = serde_json::to_string(&meta).map_err(|e| e.to_string())?;
    let name = name_for(&meta);
    // The same key again (two workspaces of the repo ran setup at once): the prebuild there is as
    // good, and replacing it would leave the node without one while the copy runs.
    if provider.get_config(&name, META_KEY).await.ok().flatten().is_some_and(|m| !m.is_empty()) {
        let _ = provider.set_config(&name, USED_KEY, &now().to_string()).await;
        return Ok(name);
    }
    // A leftover of a copy that did not finish (the agent stopped during it) goes first.
    provider.delete(&name).await.map_err(|e| error_chain(&e))?;
    let spec = CopySpec {
        workspace: false,
        cpu: 0,
        memory: String::new(),
        disk: String::new(),
        // The key goes on last, once the copy is scrubbed: only a finished prebuild can be found.
        config: vec![
            (META_KEY.into(), String::new()),
            (USED_KEY.into(), now().to_string()),
            (FROM_KEY.into(), String::new()),
            (services::SETUP_DONE_KEY.into(), String::new()),
        ],
        drop_mounts: vec![caches::CACHE_DEVICE.into(), runtimes::RUNTIME_DEVICE.into()],
        remove_files: SCRUB.iter().map(|s| s.to_string()).collect(),
    };
    provider.copy(id, &name, &spec).await.map_err(|e| error_chain(&e))?;
    provider.set_config(&name, META_KEY, &json).await.map_err(|e| error_chain(&e))?;
    evict(provider, from.budget).await;
    Ok(name)
}

/// Keeps a prebuild of workspace `id`, made from `spec` on a node whose base image is
/// `base_image`, as the agent does when the workspace's setup succeeds; `None` when `spec` makes
/// none (`no_prebuild`, no repository or no setup). For tests that run the setup themselves.
pub async fn keep<P: Provider>(
    provider: &P,
    id: &str,
    spec: &WorkspaceSpec,
    base_image: &str,
    budget: Budget,
) -> Option<Result<String, String>> {
    let from = SaveFrom::of(spec, base_image, Some(budget))?;
    Some(save(provider, id, &from, &spec.plan).await)
}

/// The prebuild name for `meta`'s key: the commit is not part of it.
fn name_for(meta: &Meta) -> String {
    let key = [&meta.repo, &meta.image, &meta.setup, &meta.plan, &meta.runtime, &meta.lock];
    let key: Vec<&str> = key.iter().map(|s| s.as_str()).collect();
    format!("pb-{}", &hash(&key.join("\n"))[..20])
}

/// Deletes the least recently used prebuilds while they are over `budget`.
pub(crate) async fn evict<P: Provider>(provider: &P, budget: Budget) {
    let all = match provider.list_with(USED_KEY).await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "listing prebuilds failed");
            return;
        }
    };
    let mut all: Vec<(u64, String)> = all.into_iter().map(|(n, used)| (used.parse().unwrap_or(0), n)).collect();
    // Newest first; ties by name so the order is stable.
    all.sort_by(|a, b| b.cmp(a));
    let (mut count, mut bytes) = (0usize, 0u64);
    for (_, name) in all {
        let size = provider.disk_usage(&name).await.ok().flatten().unwrap_or(0);
        if count < budget.max_count && bytes + size <= budget.max_bytes {
            count += 1;
            bytes += size;
            continue;
        }
        match provider.delete(&name).await {
            Ok(()) => tracing::info!(prebuild = %name, size, "evicted prebuild (least recently used)"),
            Err(e) => tracing::warn!(prebuild = %name, error = %error_chain(&e), "evicting a prebuild failed"),
        }
    }
}

/// Whether `spec`'s new workspace may start from a prebuild at all.
fn may_use(spec: &WorkspaceSpec) -> bool {
    spec.repo_access_verified && !spec.no_prebuild && !spec.repo_url.is_empty() && !spec.plan.setup.is_empty()
}

/// Makes workspace `id` a copy of the most recently used prebuild that fits `spec`, when `id`
/// does not exist yet and the spec allows it; `None`: create it as usual.
pub(crate) async fn start_from<P: Provider>(
    provider: &P,
    id: &str,
    spec: &WorkspaceSpec,
    image: &str,
) -> Option<Reuse> {
    if !may_use(spec) || !matches!(provider.state(id).await, Ok(None)) {
        return None;
    }
    let image = provider.image_id(image).await.ok()?;
    let (setup, plan) = plan_hash(&spec.plan);
    let candidates = provider.list_with(META_KEY).await.ok()?;
    let mut best: Option<(u64, Reuse)> = None;
    for (name, json) in candidates {
        let Ok(meta) = serde_json::from_str::<Meta>(&json) else { continue };
        if meta.repo != spec.repo_url || meta.image != image || meta.setup != setup || meta.plan != plan {
            continue;
        }
        let used = provider.get_config(&name, USED_KEY).await.ok().flatten().and_then(|u| u.parse().ok()).unwrap_or(0);
        if best.as_ref().is_none_or(|(b, _)| used > *b) {
            best = Some((used, Reuse { name, meta }));
        }
    }
    let (_, reuse) = best?;
    let copy = CopySpec {
        workspace: true,
        cpu: spec.cpu,
        memory: spec.memory.clone(),
        disk: spec.disk.clone(),
        config: vec![(META_KEY.into(), String::new()), (USED_KEY.into(), String::new())],
        drop_mounts: Vec::new(),
        remove_files: Vec::new(),
    };
    if let Err(e) = provider.copy(&reuse.name, id, &copy).await {
        tracing::warn!(workspace = id, prebuild = %reuse.name, error = %error_chain(&e), "starting from a prebuild failed; creating afresh");
        return None;
    }
    let _ = provider.set_config(&reuse.name, USED_KEY, &now().to_string()).await;
    tracing::info!(workspace = id, prebuild = %reuse.name, "starting from a prebuild");
    Some(reuse)
}

/// Moves the prebuild's checkout in `dir` to the tip of `spec.branch`; returns `HEAD`.
pub(crate) async fn sync<P: Provider>(
    provider: &P,
    id: &str,
    spec: &WorkspaceSpec,
    dir: &str,
    limit: &str,
    env: &[(String, String)],
) -> Result<Option<String>, ProvisionFailure> {
    let argv = script(SYNC_SCRIPT, STEP_SYNC, &[dir, &spec.branch, limit]);
    let out = provider
        .exec(id, &argv, Some((DEV_UID, DEV_UID)), env, Some(DEV_HOME))
        .await
        .map_err(|e| crate::provision::provider_failure("updating the prebuilt checkout failed", &e))?;
    if out.code != 0 {
        let cause = nexus_types::git_failure::classify(&out.stderr);
        return Err(failure(
            format!("updating the prebuilt checkout of {} failed: {}", spec.repo_url, out.last_stderr_line()),
            crate::clone::hint(cause, &spec.repo_url, &spec.branch),
        ));
    }
    Ok(out.stdout.lines().map(str::trim).rfind(|l| !l.is_empty()).map(str::to_string))
}

/// After the workspace from `reuse` is up: when its lock files and runtime versions are the
/// prebuild's, records its setup as done (from the prebuild), so the supervisor skips it.
pub(crate) async fn skip_setup_if_same<P: Provider>(
    provider: &P,
    id: &str,
    spec: &WorkspaceSpec,
    reuse: &Reuse,
) -> bool {
    let dir = format!("{DEV_HOME}/{}", spec.repo_dir);
    let lock = lock_hash(provider, id, &dir).await;
    let runtime = provider.get_config(id, runtimes::RECORD_KEY).await.ok().flatten().unwrap_or_default();
    let same = lock.as_deref() == Some(reuse.meta.lock.as_str()) && runtime == reuse.meta.runtime;
    let (done, from) = if same {
        (services::setup_done_value(&spec.plan.setup), reuse.name.clone())
    } else {
        tracing::info!(workspace = id, prebuild = %reuse.name, "lock files or runtimes changed since the prebuild; running setup");
        (String::new(), String::new())
    };
    let _ = provider.set_config(id, services::SETUP_DONE_KEY, &done).await;
    let _ = provider.set_config(id, FROM_KEY, &from).await;
    same
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use nexus_types::protocol::{AgentMessage, SetupState, SetupStatus};
    use tokio::sync::mpsc;

    use super::*;
    use crate::fake::{Call, FakeProvider};
    use crate::provider::ExecOutput;
    use crate::provision::{self, Settings, STEP_CLONE};
    use crate::services::Supervisor;

    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl alice@laptop";
    const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl bob@laptop";

    fn settings() -> Settings {
        let mut s = Settings::new("nexus-base-dev");
        s.ipv4_timeout = Duration::from_millis(500);
        s.ssh_timeout = Duration::from_millis(500);
        s.poll = Duration::from_millis(5);
        s.network = crate::network::Network::default();
        s.runtimes = None;
        s.caches = None;
        s
    }

    fn spec(key: &str) -> WorkspaceSpec {
        WorkspaceSpec {
            image: String::new(),
            cpu: 2,
            memory: "4GB".into(),
            disk: String::new(),
            authorized_key: key.into(),
            repo_url: "https://git.example.com/acme/site.git".into(),
            repo_dir: "site".into(),
            branch: "main".into(),
            plan: ProjectPlan { source: "test".into(), setup: vec!["npm ci".into()], ..Default::default() },
            git_token: Some("ghp_secret".into()),
            upstream_url: None,
            git_author: None,
            owner_id: None,
            no_prebuild: false,
            repo_access_verified: true,
        }
    }

    /// Runs workspace `id`'s supervisor until its setup is done (or failed); returns that state.
    async fn run_setup(fake: &FakeProvider, id: &str, spec: &WorkspaceSpec, settings: &Settings) -> SetupState {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sup = Supervisor::new(Arc::new(fake.clone()), id.into(), 1, spec.repo_dir.clone(), spec.plan.clone(), tx)
            .with_prebuild(SaveFrom::of(spec, &settings.base_image, settings.prebuilds));
        let task = tokio::spawn(sup.run());
        let state = loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a setup report").unwrap() {
                AgentMessage::Setup { setup, .. } if setup.status != SetupStatus::Running => break setup,
                _ => {}
            }
        };
        // The prebuild is kept after the `done` report; wait for the supervisor to move on.
        for _ in 0..200 {
            let checking = fake.calls().iter().any(|c| {
                matches!(c, Call::Exec { name, argv, .. } if name == id && argv.iter().any(|a| a == crate::services::STEP_CHECK))
            });
            if checking || state.status != SetupStatus::Done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
        state
    }

    /// Waits until the node has `n` prebuilds (they are kept in the background).
    async fn wait_prebuilds(fake: &FakeProvider, n: usize) -> Vec<String> {
        for _ in 0..400 {
            if prebuilds(fake).len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        prebuilds(fake)
    }

    fn prebuilds(fake: &FakeProvider) -> Vec<String> {
        fake.all_instances().into_iter().filter(|n| n.starts_with("pb-")).collect()
    }

    fn copies_into(fake: &FakeProvider, name: &str) -> Vec<(String, CopySpec)> {
        fake.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Copy { source, name: n, spec } if n == name => Some((source, spec)),
                _ => None,
            })
            .collect()
    }

    fn ran(fake: &FakeProvider, id: &str, step: &str) -> bool {
        fake.calls().iter().any(|c| c.instance() == Some(id) && c.step() == Some(step))
    }

    /// A node with one prebuild, made by workspace `ws-a` (Alice's).
    async fn with_prebuild() -> (FakeProvider, Settings, String) {
        let fake = FakeProvider::new();
        let settings = settings();
        let spec = spec(KEY_A);
        provision::ensure(&fake, "ws-a", &spec, &settings).await.unwrap();
        let setup = run_setup(&fake, "ws-a", &spec, &settings).await;
        assert_eq!(setup.status, SetupStatus::Done);
        let pbs = wait_prebuilds(&fake, 1).await;
        assert_eq!(pbs.len(), 1, "{:?}", fake.all_instances());
        (fake, settings, pbs[0].clone())
    }

    #[tokio::test]
    async fn a_successful_setup_keeps_a_scrubbed_prebuild_and_the_next_workspace_starts_from_it() {
        let (fake, settings, pb) = with_prebuild().await;
        // Kept as a stopped non-workspace copy, without the owner's secrets or mounts.
        let [(source, copy)] = &copies_into(&fake, &pb)[..] else { panic!("one copy into {pb}") };
        assert_eq!(source, "ws-a");
        assert!(!copy.workspace);
        for secret in ["/home/dev/.git-credentials", "/home/dev/.config/gh/hosts.yml", "/home/dev/.ssh/authorized_keys"]
        {
            assert!(copy.remove_files.iter().any(|f| f == secret), "{secret}: {:?}", copy.remove_files);
        }
        assert!(
            copy.remove_files.iter().any(|f| f == "/etc/ssh/ssh_host_ed25519_key"),
            "a fresh host key per workspace"
        );
        assert!(copy.drop_mounts.contains(&caches::CACHE_DEVICE.to_string()), "not the owner's cache");
        assert!(!fake.instances().iter().any(|i| i.name == pb), "not listed as a workspace");
        let config = fake.config(&pb);
        assert!(config.contains_key(META_KEY) && config.contains_key(USED_KEY), "{config:?}");
        assert!(!config.contains_key(services::SETUP_DONE_KEY), "{config:?}");
        assert_eq!(fake.authorized_keys(&pb), None);

        // Bob's workspace of the same repo: a copy of the prebuild, its checkout moved to the
        // branch's tip instead of a clone, his key in, and setup done without running.
        let spec_b = spec(KEY_B);
        let ready = provision::ensure(&fake, "ws-b", &spec_b, &settings).await.unwrap();
        assert_eq!(ready.commit.as_deref(), Some(crate::fake::FAKE_COMMIT));
        let [(source, copy)] = &copies_into(&fake, "ws-b")[..] else { panic!("ws-b is a copy") };
        assert_eq!(source, &pb);
        assert!(copy.workspace);
        assert!(ran(&fake, "ws-b", STEP_SYNC));
        assert!(!ran(&fake, "ws-b", STEP_CLONE));
        assert_eq!(fake.authorized_keys("ws-b").as_deref(), Some(format!("{KEY_B}\n").as_str()));
        let setup = run_setup(&fake, "ws-b", &spec_b, &settings).await;
        assert_eq!(setup.status, SetupStatus::Done);
        let message = setup.message.unwrap();
        assert!(message.starts_with(&format!("from prebuild {pb}")), "{message}");
        assert!(!ran(&fake, "ws-b", crate::services::STEP_SETUP), "setup did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(prebuilds(&fake), [pb], "no second prebuild of the same key");
    }

    #[tokio::test]
    async fn no_prebuild_is_used_without_verified_access_for_another_repo_setup_or_runtime_or_when_bypassed() {
        let (fake, settings, pb) = with_prebuild().await;
        let runtime = crate::runtimes::tests::node_plan(None, nexus_types::protocol::PackageManagerKind::Npm, None);
        let cases = [
            ("ws-n", WorkspaceSpec { no_prebuild: true, ..spec(KEY_B) }),
            ("ws-u", WorkspaceSpec { repo_access_verified: false, ..spec(KEY_B) }),
            ("ws-r", WorkspaceSpec { repo_url: "https://git.example.com/acme/other.git".into(), ..spec(KEY_B) }),
            ("ws-s", {
                let mut s = spec(KEY_B);
                s.plan.setup = vec!["npm install".into()];
                s
            }),
            ("ws-t", {
                let mut s = spec(KEY_B);
                s.plan.runtime = runtime;
                s
            }),
        ];
        for (id, spec) in &cases {
            provision::ensure(&fake, id, spec, &settings).await.unwrap();
            assert!(copies_into(&fake, id).is_empty(), "{id} was copied from {pb}");
            assert!(ran(&fake, id, STEP_CLONE), "{id} cloned afresh");
        }
        // `--no-prebuild` keeps none either.
        assert!(SaveFrom::of(&cases[0].1, "img", settings.prebuilds).is_none());
        assert!(SaveFrom::of(&spec(KEY_B), "img", None).is_none(), "prebuilds off on the node");
        // Another image (a new fingerprint behind the alias) does not fit either.
        let other_image = WorkspaceSpec { image: "nexus-base-next".into(), ..spec(KEY_B) };
        provision::ensure(&fake, "ws-i", &other_image, &settings).await.unwrap();
        assert!(copies_into(&fake, "ws-i").is_empty());
    }

    #[tokio::test]
    async fn changed_lock_files_start_from_the_prebuild_but_run_setup() {
        let (fake, settings, pb) = with_prebuild().await;
        fake.on_exec(|name, argv| {
            (name == "ws-l" && argv.get(3).map(String::as_str) == Some(STEP_LOCK_HASH))
                .then(|| ExecOutput::ok("another-lock-hash\n"))
        });
        let spec_l = spec(KEY_B);
        provision::ensure(&fake, "ws-l", &spec_l, &settings).await.unwrap();
        assert_eq!(copies_into(&fake, "ws-l")[0].0, pb);
        assert_eq!(fake.config("ws-l").get(FROM_KEY).map(String::as_str), Some(""));
        let setup = run_setup(&fake, "ws-l", &spec_l, &settings).await;
        assert_eq!(setup.status, SetupStatus::Done);
        assert!(setup.message.is_none(), "{:?}", setup.message);
        assert!(ran(&fake, "ws-l", crate::services::STEP_SETUP), "setup ran");
        assert_eq!(wait_prebuilds(&fake, 2).await.len(), 2, "the new lock files got their own prebuild");
    }

    #[tokio::test]
    async fn prebuilds_are_evicted_least_recently_used_under_the_budget() {
        let fake = FakeProvider::new();
        for (name, used, size) in [("pb-old", 100, 10), ("pb-mid", 200, 10), ("pb-new", 300, 10)] {
            fake.insert_instance(name, false);
            fake.set_config(name, USED_KEY, &used.to_string()).await.unwrap();
            fake.set_disk_usage(name, Some(size));
        }
        fake.insert_instance("ws-a", true);
        evict(&fake, Budget { max_bytes: 25, max_count: 10 }).await;
        assert_eq!(prebuilds(&fake), ["pb-mid", "pb-new"]);
        // Where sizes are unknown, the count bounds them.
        fake.set_disk_usage("pb-mid", None);
        fake.set_disk_usage("pb-new", None);
        evict(&fake, Budget { max_bytes: 25, max_count: 1 }).await;
        assert_eq!(prebuilds(&fake), ["pb-new"]);
        assert!(fake.exists("ws-a"), "workspaces are never evicted");

        // Starting a workspace from a prebuild makes it the most recently used.
        let (fake, settings, pb) = with_prebuild().await;
        fake.set_config(&pb, USED_KEY, "1").await.unwrap();
        provision::ensure(&fake, "ws-b", &spec(KEY_B), &settings).await.unwrap();
        let used: u64 = fake.config(&pb)[USED_KEY].parse().unwrap();
        assert!(used > 1_000_000, "{used}");
    }
}
