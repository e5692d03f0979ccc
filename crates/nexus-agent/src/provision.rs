//! Turns a [`WorkspaceSpec`] into a running workspace with a [`Provider`], and stops or deletes
//! one; every failure becomes a one-line message plus a hint with the next step.
//!
//! [`ensure`] is idempotent: each step checks what is already there, so re-running it after an
//! agent crash, a server restart or a failed attempt picks up where the last run stopped. Steps
//! that do not depend on each other run concurrently, because create→SSH-ready latency is what a
//! user waits for:
//!
//! ```text
//! ┬ choose + fetch runtimes (node's store) ──────────────────┐
//! └ create → mounts → start → ┬ wait for eth0's IPv4       ┬→ ┬ clone (unless checked out) → HEAD
//!                             ├ write authorized_keys      │  └ wait for sshd's banner → read host key
//!                             ├ CA certificates + proxies  │
//!                             └ runtimes on PATH ←─────────┘
//! ```
//!
//! The node's CA certificates are installed before the clone because `git` trusts the system
//! bundle ([`crate::network`]). Runtimes come from the node's store, mounted read-only, and the
//! owner's dependency caches are mounted read-write ([`crate::runtimes`], [`crate::caches`]); both
//! only for projects that ask for a runtime, and a runtime the node cannot provide (a Node version
//! its source does not have, a registry it cannot reach) fails the ensure with the reason, before
//! any setup step runs.
//!
//! Commands run inside the container as `sh -c SCRIPT STEP args...`: values (the key, the URL,
//! the branch) are passed as arguments and never spliced into script text, and `STEP` (`$0`) names
//! the step in `ps` and lets the fake provider of tests recognize it.
//!
//! When a step fails because the container itself stopped or never came up, the failure says so,
//! with the cause its console log names, instead of blaming the step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexus_types::diagnostics::{error_chain, Hint};
use nexus_types::protocol::WorkspaceSpec;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::network::Network;
use crate::provider::{ExecOutput, Mount, Provider, ProviderError};
use crate::runtimes::{Chosen, RuntimeConfig, RuntimeStore};
use crate::{boot, caches, clone, network, prebuilds, runtimes};

/// `$0` of the script that writes `authorized_keys`.
pub(crate) const STEP_WRITE_KEY: &str = "nexus-write-key";
/// `$0` of the script that prints the checkout's `HEAD` (or exits [`NOT_CLONED_EXIT`]).
pub(crate) const STEP_HEAD: &str = "nexus-head";
/// `$0` of the script that clones the repository (tests recognize the clone by it).
pub const STEP_CLONE: &str = "nexus-clone";
/// `$0` of the script that sets up git's identity and credentials for `dev`.
pub(crate) const STEP_GIT_SETUP: &str = "nexus-git-setup";
/// `$0` of the script that points the `upstream` remote at the original repository.
pub(crate) const STEP_UPSTREAM: &str = "nexus-upstream";
/// `$0` of the script that prints sshd's ed25519 public host key.
pub(crate) const STEP_HOST_KEY: &str = "nexus-host-key";
/// Exit status of [`STEP_HEAD`] when there is no checkout yet.
pub(crate) const NOT_CLONED_EXIT: i32 = 10;

/// The workspace user's uid and gid in the base image.
pub(crate) const DEV_UID: u32 = 1000;
pub(crate) const DEV_HOME: &str = "/home/dev";

/// Runs as `dev`. Writes the owner's keys (one per line) as the whole file, via a temporary file so
/// sshd never sees a half-written file. `$1`: the key lines.
const WRITE_KEY_SCRIPT: &str = r#"set -eu
mkdir -p "$HOME/.ssh"
chmod 0700 "$HOME/.ssh"
umask 077
printf '%s\n' "$1" > "$HOME/.ssh/authorized_keys.nexus-tmp"
chmod 0600 "$HOME/.ssh/authorized_keys.nexus-tmp"
mv -f "$HOME/.ssh/authorized_keys.nexus-tmp" "$HOME/.ssh/authorized_keys"
"#;

/// Runs as `dev`. `$1`: checkout directory. Prints `HEAD` (nothing for an empty repository).
const HEAD_SCRIPT: &str = r#"[ -d "$1/.git" ] || exit 10
git -C "$1" rev-parse --verify --quiet HEAD || true
"#;

/// Runs as `dev`. `$1`: checkout directory, `$2`: scratch directory next to it, `$3`: URL,
/// `$4`: branch (empty: the remote's default), `$5`: time limit in seconds.
///
/// Clones into the scratch directory and renames it into place, so a checkout directory only ever
/// holds a complete clone; a clone cut short (container stopped, timeout) leaves only scratch,
/// which the next attempt removes.
const CLONE_SCRIPT: &str = r#"set -u
dir=$1 tmp=$2 url=$3 branch=$4 limit=$5
if [ -e "$dir" ]; then
  echo "nexus: $dir exists but is not a git checkout" >&2
  exit 3
fi
rm -rf -- "$tmp"
if [ -n "$branch" ]; then set -- --branch "$branch"; else set --; fi
LC_ALL=C timeout "$limit" git clone --quiet "$@" -- "$url" "$tmp"
rc=$?
if [ "$rc" -ne 0 ]; then
  rm -rf -- "$tmp"
  exit "$rc"
fi
mv -T -- "$tmp" "$dir" || exit 3
git -C "$dir" rev-parse --verify --quiet HEAD || true
"#;

/// Runs as `dev`. `$1`: `scheme://host[:port]` of the git host (empty: no credentials), `$2`: gh's
/// host name, `$3`/`$4`: author name and email (empty: leave as is). The token comes in
/// `NEXUS_GIT_TOKEN` rather than an argument, because arguments show in `ps` on the node.
/// Written every ensure so a token the owner re-issued replaces the old one.
const GIT_SETUP_SCRIPT: &str = r#"set -eu
umask 077
if [ -n "$3" ]; then
  git config --global user.name "$3"
  git config --global user.email "$4"
fi
if [ -n "$1" ] && [ -n "${NEXUS_GIT_TOKEN:-}" ]; then
  proto=${1%%://*} rest=${1#*://}
  printf '%s://x-access-token:%s@%s\n' "$proto" "$NEXUS_GIT_TOKEN" "$rest" > "$HOME/.git-credentials.nexus-tmp"
  mv -f "$HOME/.git-credentials.nexus-tmp" "$HOME/.git-credentials"
  git config --global credential.helper store
  mkdir -p "$HOME/.config/gh"
  printf '%s:\n    oauth_token: %s\n    git_protocol: https\n' "$2" "$NEXUS_GIT_TOKEN" > "$HOME/.config/gh/hosts.yml"
fi
"#;

/// Runs as `dev`. `$1`: checkout directory, `$2`: the original repository's URL.
const UPSTREAM_SCRIPT: &str = r#"set -eu
cd "$1"
if git remote get-url upstream >/dev/null 2>&1; then
  git remote set-url upstream "$2"
else
  git remote add upstream "$2"
fi
"#;

/// How often waiting for the address also checks that the container still runs.
const STATE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs as root. sshd's unit generates this key on first boot, before sshd listens.
const HOST_KEY_SCRIPT: &str = "exec cat /etc/ssh/ssh_host_ed25519_key.pub";

/// How provisioning behaves on this node.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Image alias used when the spec names none.
    pub base_image: String,
    /// How long eth0 may take to get an IPv4 address (default 30 s).
    pub ipv4_timeout: Duration,
    /// How long sshd may take to answer after the address is up (default 30 s).
    pub ssh_timeout: Duration,
    /// Poll interval for the address and sshd waits (default 50 ms: readiness latency is
    /// user-visible, and each poll is one local request).
    pub poll: Duration,
    /// Time limit for `git clone` (default 20 min).
    pub clone_timeout: Duration,
    /// The node's CA certificates and proxy settings, installed in every workspace at every ensure
    /// (default: the certificates in `/usr/local/share/ca-certificates` and this process's proxy and
    /// registry variables).
    pub network: Network,
    /// Where runtimes come from; `None`: workspaces get only what their image has.
    pub runtimes: Option<Arc<RuntimeStore>>,
    /// Directory of the per-owner dependency caches on the node; `None`: no caches.
    pub caches: Option<PathBuf>,
    /// Prebuilt workspaces ([`crate::prebuilds`]) and the disk they may take; `None`: none are
    /// kept or used.
    pub prebuilds: Option<prebuilds::Budget>,
}

impl Settings {
    /// Defaults for the given base image: the node's CA certificates and proxies, runtimes in
    /// [`runtimes::DEFAULT_RUNTIME_DIR`] from the npm registry and PyPI, caches in
    /// [`caches::DEFAULT_CACHE_DIR`]. Nothing is written on the node until a workspace's project asks
    /// for a runtime.
    pub fn new(base_image: impl Into<String>) -> Self {
        let network = Network::from_env(vec![PathBuf::from(network::DEFAULT_CA_DIR)]);
        Settings {
            base_image: base_image.into(),
            ipv4_timeout: Duration::from_secs(30),
            ssh_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(50),
            clone_timeout: Duration::from_secs(20 * 60),
            runtimes: Some(Arc::new(RuntimeStore::new(RuntimeConfig::default(), &network))),
            network,
            caches: Some(PathBuf::from(caches::DEFAULT_CACHE_DIR)),
            prebuilds: Some(prebuilds::Budget::default()),
        }
    }
}

/// A provisioned workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Commit checked out (`None` without a repo, or for an empty repository).
    pub commit: Option<String>,
    /// sshd's public host key, `ssh-ed25519 AAAA...`.
    pub host_key: Option<String>,
}

/// Why a command failed, for people: what happened and what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionFailure {
    /// One line: what happened.
    pub message: String,
    /// The next step.
    pub hint: String,
}

impl std::fmt::Display for ProvisionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (hint: {})", self.message, self.hint)
    }
}

impl std::error::Error for ProvisionFailure {}

impl Hint for ProvisionFailure {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}

pub(crate) fn failure(message: impl Into<String>, hint: impl Into<String>) -> ProvisionFailure {
    // The message goes into one status line; keep it one line.
    let message: String = message.into();
    ProvisionFailure { message: message.replace(['\n', '\r'], " "), hint: hint.into() }
}

/// `what` failed because the provider did; the provider's error says what to do.
pub(crate) fn provider_failure(what: &str, err: &ProviderError) -> ProvisionFailure {
    let hint = err.hint().unwrap_or_else(|| "check the node's container runtime, then retry".into());
    failure(format!("{what}: {}", error_chain(err)), hint)
}

/// Makes `workspace_id` a running, reachable workspace as described by `spec`.
pub async fn ensure<P: Provider>(
    provider: &P,
    workspace_id: &str,
    spec: &WorkspaceSpec,
    settings: &Settings,
) -> Result<Ready, ProvisionFailure> {
    validate(provider, workspace_id, spec)?;
    let id = workspace_id;
    let image = if spec.image.is_empty() { settings.base_image.as_str() } else { spec.image.as_str() };

    let started = Instant::now();
    let lap = |step: &str| {
        tracing::debug!(workspace = id, step, elapsed_ms = started.elapsed().as_millis() as u64, "provision step done")
    };
    let plan = &spec.plan.runtime;
    // Only projects that ask for a runtime get the store and the caches: nothing on the node is
    // touched for the others.
    let store = settings.runtimes.as_deref().filter(|_| plan.node.is_some() || plan.python.is_some());
    // A new workspace may start as a copy of a prebuild; then `create` below finds it there.
    let reuse = match settings.prebuilds {
        Some(_) => prebuilds::start_from(provider, id, spec, image).await,
        None => None,
    };
    if reuse.is_some() {
        lap("prebuild copy");
    }
    let prepare = async {
        let Some(store) = store else { return Ok(None) };
        let chosen = store.prepare(provider, id, plan).await?;
        lap("runtimes");
        Ok(Some(chosen))
    };
    let up = async {
        provider
            .create(id, image, spec.cpu, &spec.memory, &spec.disk)
            .await
            .map_err(|e| provider_failure("creating the container failed", &e))?;
        lap("create");
        let cache = match store {
            Some(store) => mount(provider, id, spec, settings, store).await?,
            None => false,
        };
        if let Err(e) = provider.start(id).await {
            let f = failure(
                format!("starting the container failed: {}", error_chain(&e)),
                format!("read why in {}", provider.log_hint(id)),
            );
            return Err(explain(provider, id, f, false).await);
        }
        lap("start");
        Ok(cache)
    };
    let (chosen, cache): (Option<Chosen>, bool) = tokio::try_join!(prepare, up)?;

    let steps = async {
        let (_ip, (), (), ()) = tokio::try_join!(
            async {
                let ip = wait_ipv4(provider, id, settings).await?;
                lap("ipv4");
                Ok(ip)
            },
            async {
                write_key(provider, id, &spec.authorized_key).await?;
                lap("authorized_keys");
                Ok(())
            },
            async {
                network::apply(provider, id, &settings.network).await?;
                lap("network");
                Ok(())
            },
            async {
                if let (Some(store), Some(chosen)) = (store, &chosen) {
                    let cache_env = if cache { caches::env() } else { Vec::new() };
                    runtimes::apply(provider, id, store, plan, chosen, &cache_env).await?;
                    lap("runtime profile");
                }
                Ok(())
            }
        )?;
        tokio::try_join!(
            async {
                let commit = checkout(provider, id, spec, settings, reuse.is_some()).await?;
                lap("checkout");
                Ok(commit)
            },
            async {
                wait_ssh(provider, id, settings).await?;
                lap("sshd");
                let key = read_host_key(provider, id).await?;
                lap("host_key");
                Ok(key)
            }
        )
    };
    match steps.await {
        Ok((commit, host_key)) => {
            if let Some(reuse) = &reuse {
                prebuilds::skip_setup_if_same(provider, id, spec, reuse).await;
                lap("prebuild check");
            }
            Ok(Ready { commit, host_key: Some(host_key) })
        }
        Err(f) => Err(explain(provider, id, f, true).await),
    }
}

/// Mounts the runtime store (read-only) and, for a workspace with an owner, the owner's caches
/// (read-write) into the container; true when the caches are mounted.
async fn mount<P: Provider>(
    provider: &P,
    id: &str,
    spec: &WorkspaceSpec,
    settings: &Settings,
    store: &RuntimeStore,
) -> Result<bool, ProvisionFailure> {
    store.ensure_dir()?;
    let mut mounts = vec![Mount {
        device: runtimes::RUNTIME_DEVICE.into(),
        source: store.dir().to_path_buf(),
        path: runtimes::RUNTIME_MOUNT.into(),
        readonly: true,
    }];
    if let (Some(root), Some(owner)) = (&settings.caches, &spec.owner_id) {
        mounts.push(caches::prepare(provider, id, root, owner).await?);
    }
    provider
        .mount(id, &mounts)
        .await
        .map_err(|e| provider_failure("mounting the node's runtimes and caches failed", &e))?;
    Ok(mounts.len() > 1)
}

/// A step after `create` failed with `f`; when the container is why (it stopped, never came up,
/// or its init gave up), says that instead, with the cause its console log names.
/// `after_start`: the start itself succeeded, so a stopped container is news.
async fn explain<P: Provider>(provider: &P, id: &str, f: ProvisionFailure, after_start: bool) -> ProvisionFailure {
    let running = match provider.state(id).await {
        Ok(Some(state)) => state.running,
        // Gone or unreadable: nothing better to say than the step's own failure.
        _ => return f,
    };
    let console = provider.console_log(id).await.unwrap_or_else(|e| {
        tracing::debug!(workspace = id, error = %error_chain(&e), "reading the console log failed");
        String::new()
    });
    let read_log = || format!("read why in {}", provider.log_hint(id));
    // Only a log in which init gave up explains a failure; complaints in a log that goes on
    // (a service failing in a running system) do not.
    match (boot::cause(&console).filter(|c| c.fatal), running) {
        (Some(cause), false) => failure(
            format!("the container stopped (or never started): {}", cause.line),
            cause.hint.unwrap_or_else(read_log),
        ),
        // Init froze rather than exited: the container runs but nothing in it does.
        (Some(cause), true) => {
            failure(format!("the container did not boot properly: {}", cause.line), cause.hint.unwrap_or_else(read_log))
        }
        (None, false) if after_start => {
            failure(format!("the container stopped (or never started), so {}", f.message), read_log())
        }
        _ => f,
    }
}

/// Stops the workspace's container.
pub async fn stop<P: Provider>(provider: &P, workspace_id: &str) -> Result<(), ProvisionFailure> {
    provider.stop(workspace_id).await.map_err(|e| match e {
        ProviderError::NoSuchInstance(_) => failure(
            format!("workspace container `{workspace_id}` does not exist on this node"),
            "delete the workspace and create it again",
        ),
        e => provider_failure("stopping the container failed", &e),
    })
}

/// Deletes the workspace's container and its disk (done already if it does not exist).
pub async fn delete<P: Provider>(provider: &P, workspace_id: &str) -> Result<(), ProvisionFailure> {
    provider.delete(workspace_id).await.map_err(|e| provider_failure("deleting the container failed", &e))
}

/// Refuses values that would be unsafe or that the provider would reject with a less helpful
/// message.
fn validate<P: Provider>(provider: &P, id: &str, spec: &WorkspaceSpec) -> Result<(), ProvisionFailure> {
    let server_bug = "this is a server-side validation bug; report it with the workspace id";
    let name_ok = !id.is_empty()
        && id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return Err(failure(format!("workspace id {id:?} is not a valid container name"), server_bug));
    }
    // One key per line (a user registered from several machines has several); an empty line, a
    // carriage return or a NUL would let one "key" smuggle in something sshd reads differently.
    let keys = spec.authorized_key.trim();
    if keys.is_empty() || keys.contains(['\r', '\0']) || keys.lines().any(|l| l.trim().is_empty()) {
        return Err(failure(
            "the SSH keys are empty or not one key per line",
            "register a valid public key (one line from `~/.ssh/id_ed25519.pub`) and create the workspace again",
        ));
    }
    provider.check_limits(spec.cpu, &spec.memory).map_err(|e| failure(e.to_string(), e.hint().unwrap_or_default()))?;
    if let Some(owner) = &spec.owner_id {
        if !caches::valid_owner(owner) {
            return Err(failure(format!("owner id {owner:?} is not a plain id"), server_bug));
        }
    }
    if !spec.repo_url.is_empty() {
        let dir = &spec.repo_dir;
        let dir_ok = !dir.is_empty()
            && dir.len() <= 100
            && dir != "."
            && dir != ".."
            && !dir.starts_with(['-', '.'])
            && dir.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !dir_ok {
            return Err(failure(format!("repository directory {dir:?} is not a plain directory name"), server_bug));
        }
        if spec.repo_url.starts_with('-') || spec.repo_url.contains(char::is_whitespace) {
            return Err(failure(format!("repository URL {:?} is not valid", spec.repo_url), server_bug));
        }
        if spec.branch.starts_with('-') || spec.branch.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(failure(format!("branch {:?} is not valid", spec.branch), server_bug));
        }
        if let Some(u) = &spec.upstream_url {
            if u.starts_with('-') || u.contains(char::is_whitespace) {
                return Err(failure(format!("upstream URL {u:?} is not valid"), server_bug));
            }
        }
        if let Some(t) = &spec.git_token {
            if t.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@' || c == '/') {
                return Err(failure("the git token has characters a token cannot have", server_bug));
            }
        }
    }
    Ok(())
}

pub(crate) fn script(body: &str, step: &str, args: &[&str]) -> Vec<String> {
    // By absolute path: these run as root, and nothing in the container decides what `sh` is.
    let mut argv = vec!["/bin/sh".to_string(), "-c".to_string(), body.to_string(), step.to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// The environment of commands run as `dev`.
fn dev_env() -> Vec<(String, String)> {
    [
        ("HOME", DEV_HOME),
        ("USER", "dev"),
        ("LOGNAME", "dev"),
        // A clone must fail, not wait for a password nobody will type.
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn exec_as_dev<P: Provider>(provider: &P, id: &str, argv: &[String]) -> Result<ExecOutput, ProviderError> {
    provider.exec(id, argv, Some((DEV_UID, DEV_UID)), &dev_env(), Some(DEV_HOME)).await
}

async fn wait_ipv4<P: Provider>(
    provider: &P,
    id: &str,
    settings: &Settings,
) -> Result<std::net::Ipv4Addr, ProvisionFailure> {
    let deadline = Instant::now() + settings.ipv4_timeout;
    let mut last_state_check = Instant::now();
    loop {
        match provider.ipv4(id).await {
            Ok(Some(ip)) => return Ok(ip),
            Ok(None) => {}
            Err(e) => return Err(provider_failure("reading the container's address failed", &e)),
        }
        // A container whose init died never gets an address: say so now, not at the deadline.
        if last_state_check.elapsed() >= STATE_CHECK_EVERY {
            last_state_check = Instant::now();
            if let Ok(Some(state)) = provider.state(id).await {
                if !state.running {
                    return Err(failure(
                        "the container stopped while waiting for its IPv4 address",
                        format!("read why in {}", provider.log_hint(id)),
                    ));
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(failure(
                format!("the container got no IPv4 address on eth0 within {} s", settings.ipv4_timeout.as_secs()),
                format!("{}, and that the image configures eth0 by DHCP", provider.network_hint()),
            ));
        }
        tokio::time::sleep(settings.poll).await;
    }
}

async fn write_key<P: Provider>(provider: &P, id: &str, key: &str) -> Result<(), ProvisionFailure> {
    let out = exec_as_dev(provider, id, &script(WRITE_KEY_SCRIPT, STEP_WRITE_KEY, &[key.trim()]))
        .await
        .map_err(|e| provider_failure("installing the SSH key failed", &e))?;
    let hint = format!(
        "the image needs user `dev` (uid 1000) owning `/home/dev`; check with {}",
        provider.exec_hint(id, "ls -la /home/dev")
    );
    if out.code != 0 {
        return Err(failure(format!("installing the SSH key failed: {}", out.last_stderr_line()), hint));
    }
    Ok(())
}

/// The checked-out commit, cloning first if there is no checkout.
async fn checkout<P: Provider>(
    provider: &P,
    id: &str,
    spec: &WorkspaceSpec,
    settings: &Settings,
    from_prebuild: bool,
) -> Result<Option<String>, ProvisionFailure> {
    if spec.repo_url.is_empty() {
        return Ok(None);
    }
    git_setup(provider, id, spec).await?;
    let dir = format!("{DEV_HOME}/{}", spec.repo_dir);
    let commit = if from_prebuild {
        let limit = settings.clone_timeout.as_secs().max(1).to_string();
        let mut env = dev_env();
        env.extend(settings.network.proxy_env());
        prebuilds::sync(provider, id, spec, &dir, &limit, &env).await?
    } else {
        clone_if_missing(provider, id, spec, settings, &dir).await?
    };
    if let Some(upstream) = &spec.upstream_url {
        let out = exec_as_dev(provider, id, &script(UPSTREAM_SCRIPT, STEP_UPSTREAM, &[&dir, upstream]))
            .await
            .map_err(|e| provider_failure("adding the `upstream` remote failed", &e))?;
        if out.code != 0 {
            return Err(failure(
                format!("adding the `upstream` remote failed: {}", out.last_stderr_line()),
                format!("inside the workspace, run `git -C {dir} remote add upstream {upstream}`"),
            ));
        }
    }
    Ok(commit)
}

/// `scheme://host[:port]` of an http(s) clone URL; `None` for ssh and local URLs.
fn http_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split('/').next()?.rsplit('@').next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// Git identity and, with a token, credentials for the repo's host, so clone/push/`gh` work as the owner.
async fn git_setup<P: Provider>(provider: &P, id: &str, spec: &WorkspaceSpec) -> Result<(), ProvisionFailure> {
    let token = spec.git_token.as_deref().filter(|t| !t.is_empty());
    if token.is_none() && spec.git_author.is_none() {
        return Ok(());
    }
    let origin = token.and(http_origin(&spec.repo_url)).unwrap_or_default();
    let gh_host = origin.split("://").nth(1).unwrap_or("").split(':').next().unwrap_or("").to_string();
    let (name, email) = spec.git_author.as_ref().map(|a| (a.name.as_str(), a.email.as_str())).unwrap_or(("", ""));
    let mut env = dev_env();
    if let Some(t) = token {
        env.push(("NEXUS_GIT_TOKEN".into(), t.to_string()));
    }
    let argv = script(GIT_SETUP_SCRIPT, STEP_GIT_SETUP, &[&origin, &gh_host, name, email]);
    let out = provider
        .exec(id, &argv, Some((DEV_UID, DEV_UID)), &env, Some(DEV_HOME))
        .await
        .map_err(|e| provider_failure("setting up git in the workspace failed", &e))?;
    if out.code != 0 {
        return Err(failure(
            format!("setting up git in the workspace failed: {}", out.last_stderr_line()),
            format!(
                "the image needs `git` and a writable /home/dev; check with {}",
                provider.exec_hint(id, "git --version")
            ),
        ));
    }
    Ok(())
}

async fn clone_if_missing<P: Provider>(
    provider: &P,
    id: &str,
    spec: &WorkspaceSpec,
    settings: &Settings,
    dir: &str,
) -> Result<Option<String>, ProvisionFailure> {
    let head = exec_as_dev(provider, id, &script(HEAD_SCRIPT, STEP_HEAD, &[dir]))
        .await
        .map_err(|e| provider_failure("checking the repository checkout failed", &e))?;
    match head.code {
        0 => return Ok(commit_from(&head.stdout)),
        NOT_CLONED_EXIT => {}
        code => {
            return Err(failure(
                format!("checking the repository checkout failed (exit {code}): {}", head.last_stderr_line()),
                format!("the image needs `git`; check with {}", provider.exec_hint(id, "git --version")),
            ))
        }
    }
    let tmp = format!("{DEV_HOME}/.nexus-clone-{}", spec.repo_dir);
    let limit = settings.clone_timeout.as_secs().max(1).to_string();
    let argv = script(CLONE_SCRIPT, STEP_CLONE, &[dir, &tmp, &spec.repo_url, &spec.branch, &limit]);
    let started = Instant::now();
    // Not a login shell: the node's proxies come in the environment (its CAs are in the system
    // bundle by now).
    let mut env = dev_env();
    env.extend(settings.network.proxy_env());
    let out = provider
        .exec(id, &argv, Some((DEV_UID, DEV_UID)), &env, Some(DEV_HOME))
        .await
        .map_err(|e| provider_failure("cloning the repository failed", &e))?;
    tracing::debug!(workspace = id, elapsed_ms = started.elapsed().as_millis() as u64, code = out.code, "clone step");
    let branch =
        if spec.branch.is_empty() { "default branch".to_string() } else { format!("branch `{}`", spec.branch) };
    match out.code {
        0 => Ok(commit_from(&out.stdout)),
        124 => Err(failure(
            format!("git clone of {} ({branch}) did not finish within {limit} s", spec.repo_url),
            "check that the node can reach the git host quickly; very large repositories need a longer clone time limit",
        )),
        3 => Err(failure(
            format!("cannot clone into {dir}: {}", out.last_stderr_line()),
            format!("move `{dir}` out of the way inside the workspace, then start it again"),
        )),
        code => {
            let why = match out.last_stderr_line() {
                "" => format!("exit status {code}"),
                line => line.to_string(),
            };
            let cause = nexus_types::git_failure::classify(&out.stderr);
            Err(failure(
                format!("git clone of {} ({branch}) failed: {why}", spec.repo_url),
                clone::hint(cause, &spec.repo_url, &spec.branch),
            ))
        }
    }
}

fn commit_from(stdout: &str) -> Option<String> {
    stdout.lines().map(str::trim).rfind(|l| !l.is_empty()).map(str::to_string)
}

/// Waits until something answers on port 22 with an SSH banner.
async fn wait_ssh<P: Provider>(provider: &P, id: &str, settings: &Settings) -> Result<SocketAddr, ProvisionFailure> {
    let deadline = Instant::now() + settings.ssh_timeout;
    let mut last = String::from("no address");
    loop {
        match provider.endpoint(id, 22).await {
            Ok(Some(addr)) => match probe_banner(addr).await {
                Ok(()) => return Ok(addr),
                Err(why) => last = format!("{addr}: {why}"),
            },
            Ok(None) => {}
            Err(e) => return Err(provider_failure("finding the container's SSH address failed", &e)),
        }
        if Instant::now() >= deadline {
            return Err(failure(
                format!("sshd did not answer within {} s ({last})", settings.ssh_timeout.as_secs()),
                format!("check sshd in the container: {}", provider.exec_hint(id, "systemctl status ssh")),
            ));
        }
        tokio::time::sleep(settings.poll).await;
    }
}

/// Connects and reads the first bytes; Ok when they are an SSH identification string.
async fn probe_banner(addr: SocketAddr) -> Result<(), String> {
    let mut stream = match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("connect timed out".into()),
    };
    let mut buf = [0u8; 64];
    let mut got = 0;
    let read = async {
        while got < 4 {
            match stream.read(&mut buf[got..]).await {
                Ok(0) => return Err("closed before sending a banner".to_string()),
                Ok(n) => got += n,
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(Ok(())) if buf.starts_with(b"SSH-") => Ok(()),
        Ok(Ok(())) => Err("answered without an SSH banner".into()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no banner within 2 s".into()),
    }
}

async fn read_host_key<P: Provider>(provider: &P, id: &str) -> Result<String, ProvisionFailure> {
    let hint = "the image's sshd must have an ed25519 host key at `/etc/ssh/ssh_host_ed25519_key.pub`";
    let out = provider
        .exec(id, &script(HOST_KEY_SCRIPT, STEP_HOST_KEY, &[]), None, &[], None)
        .await
        .map_err(|e| provider_failure("reading the SSH host key failed", &e))?;
    let fields: Vec<&str> = out.stdout.split_whitespace().take(2).collect();
    if out.code != 0 || fields.len() != 2 {
        return Err(failure(format!("reading the SSH host key failed: {}", out.last_stderr_line()), hint));
    }
    Ok(fields.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Call, FakeProvider, FAKE_COMMIT};
    use crate::provider::Mount;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl alice@laptop";

    fn spec() -> WorkspaceSpec {
        WorkspaceSpec {
            image: String::new(),
            cpu: 2,
            memory: "4GB".into(),
            disk: String::new(),
            authorized_key: KEY.into(),
            repo_url: "https://git.example.com/acme/site.git".into(),
            repo_dir: "site".into(),
            branch: "main".into(),
            plan: Default::default(),
            git_token: None,
            upstream_url: None,
            git_author: None,
            owner_id: None,
            no_prebuild: false,
            repo_access_verified: false,
        }
    }

    /// Settings that touch nothing on this machine: no CA certificates, no runtime store, no caches.
    fn settings() -> Settings {
        let mut s = Settings::new("nexus-base-dev");
        s.ipv4_timeout = Duration::from_millis(500);
        s.ssh_timeout = Duration::from_millis(500);
        s.poll = Duration::from_millis(5);
        s.network = Network::default();
        s.runtimes = None;
        s.caches = None;
        s
    }

    /// The argv of the first exec of `step`.
    fn exec_argv(fake: &FakeProvider, step: &str) -> Vec<String> {
        match fake.calls().into_iter().find(|c| c.step() == Some(step)) {
            Some(Call::Exec { argv, .. }) => argv,
            _ => panic!("no {step} in {:?}", fake.labels_for("ws-a")),
        }
    }

    fn position(labels: &[String], label: &str) -> usize {
        labels.iter().position(|l| l == label).unwrap_or_else(|| panic!("no {label} in {labels:?}"))
    }

    #[tokio::test]
    async fn provisions_in_order() {
        let fake = FakeProvider::new();
        fake.set_ipv4_delay(3);
        let ready = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap();
        assert_eq!(ready.commit.as_deref(), Some(FAKE_COMMIT));
        assert_eq!(ready.host_key.as_deref(), Some(crate::fake::fake_host_key("ws-a").as_str()));

        let labels = fake.labels_for("ws-a");
        assert_eq!(&labels[..2], ["create", "start"]);
        let after_start = |l: &str| assert!(position(&labels, l) > 1, "{l} before start: {labels:?}");
        after_start(STEP_WRITE_KEY);
        after_start("ipv4");
        // Nothing needing the network before the address is there.
        let last_ipv4 = labels.iter().rposition(|l| l == "ipv4").unwrap();
        for l in [STEP_HEAD, STEP_CLONE, "endpoint", STEP_HOST_KEY] {
            assert!(position(&labels, l) > last_ipv4, "{l} before the address: {labels:?}");
        }
        assert!(position(&labels, STEP_HEAD) < position(&labels, STEP_CLONE));
        assert!(position(&labels, "endpoint") < position(&labels, STEP_HOST_KEY));
        assert_eq!(labels.iter().filter(|l| *l == "ipv4").count(), 4, "polls until DHCP answers: {labels:?}");

        let create = fake.calls().into_iter().find(|c| matches!(c, Call::Create { .. })).unwrap();
        assert_eq!(
            create,
            Call::Create {
                name: "ws-a".into(),
                image: "nexus-base-dev".into(),
                cpu: 2,
                memory: "4GB".into(),
                disk: String::new()
            }
        );
        // The clone runs as dev with dev's environment.
        let clone = fake.calls().into_iter().find(|c| c.step() == Some(STEP_CLONE)).unwrap();
        let Call::Exec { argv, user, env, cwd, .. } = clone else { unreachable!() };
        assert_eq!(user, Some((1000, 1000)));
        assert_eq!(cwd.as_deref(), Some("/home/dev"));
        assert!(env.contains(&("HOME".into(), "/home/dev".into())));
        assert_eq!(
            &argv[4..8],
            ["/home/dev/site", "/home/dev/.nexus-clone-site", "https://git.example.com/acme/site.git", "main"]
        );
    }

    #[tokio::test]
    async fn token_identity_and_upstream_are_set_up_without_the_token_in_argv() {
        let fake = FakeProvider::new();
        let spec = WorkspaceSpec {
            git_token: Some("ghs_secret123".into()),
            upstream_url: Some("https://git.example.com/upstream/site.git".into()),
            git_author: Some(nexus_types::protocol::GitAuthor {
                name: "alice".into(),
                email: "7+alice@users.noreply.github.com".into(),
            }),
            ..spec()
        };
        ensure(&fake, "ws-a", &spec, &settings()).await.unwrap();
        let labels = fake.labels_for("ws-a");
        // Credentials before the clone (private repos), upstream after it.
        assert!(position(&labels, STEP_GIT_SETUP) < position(&labels, STEP_CLONE), "{labels:?}");
        assert!(position(&labels, STEP_CLONE) < position(&labels, STEP_UPSTREAM), "{labels:?}");
        let setup = fake.calls().into_iter().find(|c| c.step() == Some(STEP_GIT_SETUP)).unwrap();
        let Call::Exec { argv, env, user, .. } = setup else { unreachable!() };
        assert_eq!(user, Some((1000, 1000)));
        assert_eq!(
            &argv[4..],
            ["https://git.example.com", "git.example.com", "alice", "7+alice@users.noreply.github.com"]
        );
        assert!(!argv.iter().any(|a| a.contains("ghs_secret123")), "token in argv: {argv:?}");
        assert!(env.contains(&("NEXUS_GIT_TOKEN".into(), "ghs_secret123".into())));
        let upstream = fake.calls().into_iter().find(|c| c.step() == Some(STEP_UPSTREAM)).unwrap();
        let Call::Exec { argv, .. } = upstream else { unreachable!() };
        assert_eq!(&argv[4..], ["/home/dev/site", "https://git.example.com/upstream/site.git"]);

        // Without token or author nothing extra runs.
        let fake = FakeProvider::new();
        ensure(&fake, "ws-b", &super::tests::spec(), &settings()).await.unwrap();
        let labels = fake.labels_for("ws-b");
        assert!(!labels.iter().any(|l| l == STEP_GIT_SETUP || l == STEP_UPSTREAM), "{labels:?}");
    }

    #[test]
    fn http_origins() {
        assert_eq!(http_origin("https://github.com/a/b.git").as_deref(), Some("https://github.com"));
        assert_eq!(http_origin("http://10.87.0.1:4567/a/b.git").as_deref(), Some("http://10.87.0.1:4567"));
        assert_eq!(http_origin("https://user@host.example/a").as_deref(), Some("https://host.example"));
        assert_eq!(http_origin("git@github.com:a/b.git"), None);
        assert_eq!(http_origin("git://host/a"), None);
    }

    #[tokio::test]
    async fn second_ensure_does_not_clone_again() {
        let fake = FakeProvider::new();
        let first = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap();
        fake.clear_calls();
        let second = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap();
        assert_eq!(first, second);
        let labels = fake.labels_for("ws-a");
        assert!(labels.contains(&STEP_HEAD.to_string()));
        assert!(!labels.contains(&STEP_CLONE.to_string()), "{labels:?}");
        // A stopped workspace is started again by ensure.
        fake.stop("ws-a").await.unwrap();
        ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap();
        assert!(fake.instances()[0].running);
    }

    #[tokio::test]
    async fn custom_image_wins_over_the_base_image() {
        let fake = FakeProvider::new();
        let spec = WorkspaceSpec { image: "my-image".into(), ..spec() };
        ensure(&fake, "ws-a", &spec, &settings()).await.unwrap();
        assert_eq!(fake.image_of("ws-a").as_deref(), Some("my-image"));
    }

    #[tokio::test]
    async fn key_is_an_argument_not_script_text() {
        let fake = FakeProvider::new();
        let evil = "ssh-ed25519 AAAA'$(touch /pwned)'; rm -rf / #";
        let spec = WorkspaceSpec { authorized_key: evil.into(), ..spec() };
        ensure(&fake, "ws-a", &spec, &settings()).await.unwrap();
        let call = fake.calls().into_iter().find(|c| c.step() == Some(STEP_WRITE_KEY)).unwrap();
        let Call::Exec { argv, user, .. } = call else { unreachable!() };
        assert_eq!(argv.len(), 5, "{argv:?}");
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(argv[2], WRITE_KEY_SCRIPT);
        assert!(!argv[2].contains("ssh-ed25519"));
        assert_eq!(argv[4], evil);
        assert_eq!(user, Some((1000, 1000)));
        assert_eq!(fake.authorized_keys("ws-a").unwrap(), format!("{evil}\n"));
    }

    #[tokio::test]
    async fn malformed_key_lines_are_refused_before_anything_happens() {
        for keys in
            [format!("{KEY}\n\nssh-ed25519 BBBB"), format!("{KEY}\r\nssh-ed25519 BBBB"), format!("{KEY}\0"), " ".into()]
        {
            let fake = FakeProvider::new();
            let spec = WorkspaceSpec { authorized_key: keys.clone(), ..spec() };
            let err = ensure(&fake, "ws-a", &spec, &settings()).await.unwrap_err();
            assert!(err.message.contains("one key per line"), "{keys:?}: {err}");
            assert!(fake.calls().is_empty());
        }
    }

    #[tokio::test]
    async fn every_key_of_the_owner_is_written() {
        let fake = FakeProvider::new();
        let keys = format!("{KEY}\nssh-ed25519 BBBB");
        let spec = WorkspaceSpec { authorized_key: keys.clone(), ..spec() };
        ensure(&fake, "ws-a", &spec, &settings()).await.unwrap();
        assert_eq!(fake.authorized_keys("ws-a").unwrap(), format!("{keys}\n"));
    }

    #[tokio::test]
    async fn failed_clone_reports_gits_reason_and_a_hint() {
        let fake = FakeProvider::new();
        fake.set_exec_result(
            STEP_CLONE,
            ExecOutput::failed(128, "Cloning into '/home/dev/.nexus-clone-site'...\nfatal: Remote branch nope not found in upstream origin\n"),
        );
        let spec = WorkspaceSpec { branch: "nope".into(), ..spec() };
        let err = ensure(&fake, "ws-a", &spec, &settings()).await.unwrap_err();
        assert_eq!(
            err.message,
            "git clone of https://git.example.com/acme/site.git (branch `nope`) failed: fatal: Remote branch nope not found in upstream origin"
        );
        assert!(err.hint.contains("has no branch `nope`"), "{}", err.hint);
        assert!(!err.message.contains('\n'));
        assert!(!fake.is_cloned("ws-a"));
    }

    #[tokio::test]
    async fn clone_hints_follow_the_cause() {
        // Bug g: every failed clone got the same "check that the URL and branch exist" hint.
        for (stderr, want) in [
            ("fatal: unable to access 'https://git.example.com/acme/site.git/': Could not resolve host: git.example.com", "cannot reach the git host"),
            ("fatal: could not read Username for 'https://git.example.com': terminal prompts disabled", "refused access"),
            ("remote: Repository not found.\nfatal: repository 'https://git.example.com/acme/site.git/' not found", "no repository at `https://git.example.com/acme/site.git`"),
            ("fatal: protocol error: bad line length character: <htm", "protocol failed"),
        ] {
            let fake = FakeProvider::new();
            fake.set_exec_result(STEP_CLONE, ExecOutput::failed(128, stderr));
            let err = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap_err();
            assert!(err.hint.contains(want), "{stderr} -> {}", err.hint);
        }
    }

    #[tokio::test]
    async fn retry_after_a_failed_clone_clones() {
        let fake = FakeProvider::new();
        let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        fake.on_exec(move |_, argv| {
            (f.load(std::sync::atomic::Ordering::SeqCst) && argv.iter().any(|a| a == STEP_CLONE))
                .then(|| ExecOutput::failed(128, "fatal: unable to access: Could not resolve host"))
        });
        assert!(ensure(&fake, "ws-a", &spec(), &settings()).await.is_err());
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let ready = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap();
        assert_eq!(ready.commit.as_deref(), Some(FAKE_COMMIT));
    }

    #[tokio::test]
    async fn clone_script_cleans_up_after_itself() {
        // The script removes its scratch directory on failure and before each attempt, and only
        // renames a complete clone into place; run it for real against a local repository.
        if std::process::Command::new("git").arg("--version").output().is_err() {
            return; // no git on this machine: nothing to check
        }
        let root = std::env::temp_dir().join(format!("nexus-clone-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let sh = |args: &[&str]| {
            std::process::Command::new("sh")
                .args(["-c", CLONE_SCRIPT, STEP_CLONE])
                .args(args)
                .env("GIT_TERMINAL_PROMPT", "0")
                .output()
                .unwrap()
        };
        let dir = root.join("site");
        let tmp = root.join(".nexus-clone-site");
        let (d, t) = (dir.to_str().unwrap(), tmp.to_str().unwrap());
        std::fs::create_dir_all(&tmp).unwrap(); // leftover of a cut-short attempt
        let out = sh(&[d, t, "/nonexistent/repo.git", "", "60"]);
        assert_ne!(out.status.code(), Some(0));
        assert!(!tmp.exists() && !dir.exists());

        let src = root.join("src");
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(args)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@e")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@e")
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q", "-b", "main", src.to_str().unwrap()]);
        git(&["-C", src.to_str().unwrap(), "commit", "-q", "--allow-empty", "-m", "one"]);
        let out = sh(&[d, t, src.to_str().unwrap(), "main", "60"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim().len(), 40);
        assert!(dir.join(".git").is_dir() && !tmp.exists());
        // A second run refuses to touch the existing checkout.
        assert_eq!(sh(&[d, t, src.to_str().unwrap(), "main", "60"]).status.code(), Some(3));
        let head = std::process::Command::new("sh").args(["-c", HEAD_SCRIPT, STEP_HEAD, d]).output().unwrap();
        assert_eq!(head.status.code(), Some(0));
        let head = std::process::Command::new("sh").args(["-c", HEAD_SCRIPT, STEP_HEAD, t]).output().unwrap();
        assert_eq!(head.status.code(), Some(NOT_CLONED_EXIT));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn provider_errors_become_failures_with_the_providers_hints() {
        let fake = FakeProvider::new();
        fake.fail("create", "Image alias not found");
        let err = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap_err();
        assert!(err.message.starts_with("creating the container failed: LXD: Image alias not found"), "{err}");
        assert!(err.hint.contains("lxc info"), "the LXD error's own hint: {}", err.hint);

        let fake = FakeProvider::new();
        fake.fail("start", "boom");
        let err = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap_err();
        assert!(err.message.starts_with("starting the container failed: LXD: boom"), "{err}");
        assert!(err.hint.contains(&fake.log_hint("ws-a")), "{}", err.hint);
    }

    /// What systemd printed in a container started on a node out of inotify instances.
    const INOTIFY_CONSOLE: &str = "Failed to create control group inotify object: Too many open files\n\
        Failed to allocate manager object: Too many open files\n\
        [!!!!!!] Failed to allocate manager object.\n\
        Exiting PID 1...\n";

    #[tokio::test]
    async fn a_container_that_never_booted_says_so_with_the_cause_from_its_console() {
        // Bug h: this was "installing the SSH key failed ... hint: the image needs user `dev`".
        let fake = FakeProvider::new();
        fake.fail_boot(Some(INOTIFY_CONSOLE));
        let err = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap_err();
        assert_eq!(
            err.message,
            "the container stopped (or never started): Failed to create control group inotify object: Too many open files"
        );
        assert!(err.hint.contains("fs.inotify.max_user_instances"), "{}", err.hint);
        assert!(err.hint.contains("nexus node init"), "{}", err.hint);

        // Without a cause in the console it still says the container is not running, and where to look.
        fake.fail_boot(Some(""));
        fake.stop("ws-a").await.unwrap();
        let err = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap_err();
        assert!(err.message.starts_with("the container stopped (or never started), so "), "{err}");
        assert!(!err.hint.contains("user `dev`"), "{}", err.hint);
        assert!(err.hint.contains(&fake.log_hint("ws-a")), "{}", err.hint);

        // Healed, the same workspace comes up.
        fake.fail_boot(None);
        ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap();
    }

    #[tokio::test]
    async fn a_frozen_init_is_named_even_though_the_container_runs() {
        let fake = FakeProvider::new();
        fake.set_ipv4_delay(u32::MAX);
        fake.create("ws-a", "img", 1, "", "").await.unwrap();
        fake.start("ws-a").await.unwrap();
        fake.set_console_log("ws-a", "Failed to mount API filesystems: Operation not permitted\nFreezing execution.\n");
        let err = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap_err();
        assert_eq!(
            err.message,
            "the container did not boot properly: Failed to mount API filesystems: Operation not permitted"
        );
        assert!(err.hint.contains(&fake.log_hint("ws-a")), "{}", err.hint);

        // A running container whose log merely has complaints keeps the step's own failure.
        fake.set_console_log("ws-a", "foo.service: Failed to add watch: No space left on device\n");
        let err = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap_err();
        assert!(err.message.contains("no IPv4 address"), "{err}");
    }

    #[tokio::test]
    async fn no_address_times_out_with_a_hint() {
        let fake = FakeProvider::new();
        fake.set_ipv4_delay(u32::MAX);
        let err = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap_err();
        assert!(err.message.contains("no IPv4 address"), "{err}");
        assert!(err.hint.contains("DHCP"));
    }

    #[tokio::test]
    async fn waiting_for_an_address_stops_when_the_container_does() {
        let fake = FakeProvider::new();
        fake.insert_instance("ws-a", false);
        let settings = Settings { ipv4_timeout: Duration::from_secs(20), ..settings() };
        let started = Instant::now();
        let err = wait_ipv4(&fake, "ws-a", &settings).await.unwrap_err();
        assert!(err.message.contains("stopped while waiting"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn waits_for_a_real_ssh_banner() {
        let fake = FakeProvider::new();
        // Something that listens but is not sshd: never ready.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let _ = tokio::io::AsyncWriteExt::write_all(&mut c, b"HTTP/1.1 400 Bad Request\r\n").await;
            }
        });
        fake.create("ws-a", "img", 1, "", "").await.unwrap();
        fake.set_ssh_target("ws-a", addr);
        let err = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap_err();
        assert!(err.message.contains("sshd did not answer"), "{err}");
        assert!(err.message.contains("without an SSH banner"), "{err}");
    }

    #[tokio::test]
    async fn no_repo_means_no_clone() {
        let fake = FakeProvider::new();
        let spec = WorkspaceSpec { repo_url: String::new(), repo_dir: String::new(), ..spec() };
        let ready = ensure(&fake, "ws-a", &spec, &settings()).await.unwrap();
        assert_eq!(ready.commit, None);
        assert!(fake.calls().iter().all(|c| c.step() != Some(STEP_HEAD)));
    }

    #[tokio::test]
    async fn unsafe_values_are_refused() {
        let fake = FakeProvider::new();
        for (id, spec) in [
            ("WS", spec()),
            ("ws-a", WorkspaceSpec { repo_dir: "..".into(), ..spec() }),
            ("ws-a", WorkspaceSpec { repo_dir: "a/b".into(), ..spec() }),
            ("ws-a", WorkspaceSpec { branch: "--upload-pack=x".into(), ..spec() }),
            ("ws-a", WorkspaceSpec { repo_url: "--config=x".into(), ..spec() }),
            ("ws-a", WorkspaceSpec { memory: "lots".into(), ..spec() }),
        ] {
            assert!(ensure(&fake, id, &spec, &settings()).await.is_err(), "{id} {spec:?}");
        }
        assert!(fake.calls().is_empty());
    }

    #[tokio::test]
    async fn the_nodes_ca_certificates_go_in_at_every_create_and_start_before_the_clone() {
        let cas = tempfile::tempdir().unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(cas.path().join("corp-proxy.crt"), pem).unwrap();
        let mut settings = settings();
        settings.network = Network {
            ca_certificates: vec![cas.path().to_path_buf()],
            env: vec![
                ("HTTPS_PROXY".into(), "http://proxy:3128".into()),
                ("https_proxy".into(), "http://proxy:3128".into()),
            ],
        };
        let fake = FakeProvider::new();
        ensure(&fake, "ws-a", &spec(), &settings).await.unwrap();
        let labels = fake.labels_for("ws-a");
        assert!(position(&labels, "start") < position(&labels, network::STEP_NETWORK), "{labels:?}");
        assert!(position(&labels, network::STEP_NETWORK) < position(&labels, STEP_CLONE), "{labels:?}");
        let argv = exec_argv(&fake, network::STEP_NETWORK);
        assert_eq!(
            argv[4..8],
            [network::CONTAINER_CA_DIR, network::STATE_DIR, network::CA_BUNDLE, network::PROFILE_PATH]
        );
        assert!(argv[8].contains("export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt\n"), "{}", argv[8]);
        assert!(argv[8].contains("export https_proxy='http://proxy:3128'\n"), "{}", argv[8]);
        assert_eq!(argv[9..], ["corp-proxy.crt", pem]);
        let Some(Call::Exec { user, .. }) = fake.calls().into_iter().find(|c| c.step() == Some(network::STEP_NETWORK))
        else {
            unreachable!()
        };
        assert_eq!(user, None, "as root");
        // The clone gets the proxies too: it runs outside a login shell.
        let Some(Call::Exec { env, .. }) = fake.calls().into_iter().find(|c| c.step() == Some(STEP_CLONE)) else {
            unreachable!()
        };
        assert!(env.contains(&("https_proxy".into(), "http://proxy:3128".into())), "{env:?}");

        // A start of the stopped workspace installs them again (the node's file may be new).
        fake.stop("ws-a").await.unwrap();
        fake.clear_calls();
        std::fs::write(cas.path().join("corp-proxy.crt"), pem.replace("MIIB", "MIIC")).unwrap();
        ensure(&fake, "ws-a", &spec(), &settings).await.unwrap();
        let argv = exec_argv(&fake, network::STEP_NETWORK);
        assert!(argv[10].contains("MIIC"), "{argv:?}");
        let labels = fake.labels_for("ws-a");
        assert!(position(&labels, network::STEP_NETWORK) < position(&labels, STEP_HEAD), "{labels:?}");
    }

    #[tokio::test]
    async fn a_failed_ca_install_fails_the_ensure_with_what_the_image_lacks() {
        let fake = FakeProvider::new();
        fake.set_exec_result(network::STEP_NETWORK, ExecOutput::failed(4, "update-ca-certificates: not found"));
        let err = ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap_err();
        assert!(err.message.contains("installing the node's CA certificates failed"), "{err}");
        assert!(err.hint.contains("ca-certificates"), "{}", err.hint);
        assert!(!fake.is_cloned("ws-a"), "no clone without the node's CAs");
    }

    /// Settings with a runtime store on `registry` in `dir` and caches in `dir/caches`.
    fn runtime_settings(dir: &std::path::Path, registry: &str) -> Settings {
        let mut s = settings();
        s.runtimes = Some(Arc::new(crate::runtimes::tests::store_at(&dir.join("runtimes"), registry)));
        s.caches = Some(dir.join("caches"));
        s
    }

    fn node_spec(owner: Option<&str>, request: Option<(&str, &str, Option<&str>)>) -> WorkspaceSpec {
        let mut spec = spec();
        spec.plan.runtime =
            crate::runtimes::tests::node_plan(request, nexus_types::protocol::PackageManagerKind::Pnpm, Some("9.15.0"));
        spec.owner_id = owner.map(str::to_string);
        spec
    }

    #[tokio::test]
    async fn the_projects_node_is_on_path_from_the_read_only_store() {
        let registry = crate::runtimes::tests::registry().await;
        let dir = tempfile::tempdir().unwrap();
        let settings = runtime_settings(dir.path(), &registry.url);
        let fake = FakeProvider::new();
        let spec = node_spec(None, Some(("^22", "package.json", Some("engines.node"))));
        ensure(&fake, "ws-a", &spec, &settings).await.unwrap();

        let labels = fake.labels_for("ws-a");
        assert!(position(&labels, "mount") < position(&labels, "start"), "mounted before the boot: {labels:?}");
        assert_eq!(
            fake.mounts("ws-a"),
            [Mount {
                device: "nexus-runtimes".into(),
                source: dir.path().join("runtimes"),
                path: "/opt/nexus/runtimes".into(),
                readonly: true,
            }],
            "no owner, no cache"
        );
        let argv = exec_argv(&fake, runtimes::STEP_RUNTIME);
        assert_eq!(argv[4], runtimes::PROFILE_PATH);
        assert!(
            argv[5].contains("export PATH=\"/opt/nexus/runtimes/pnpm/9.15.0/bin:/opt/nexus/runtimes/npm/11.6.2/bin:/opt/nexus/runtimes/node/22.23.5/bin:"),
            "{}",
            argv[5]
        );
        assert!(!argv[5].contains("/var/cache/nexus"), "{}", argv[5]);
        assert!(dir.path().join("runtimes/node/22.23.5/bin/node").is_file());
        let record = fake.get_config("ws-a", runtimes::RECORD_KEY).await.unwrap().unwrap();
        assert!(record.contains("22.23.5"), "{record}");

        // Started again: the same versions, nothing asked of the registry.
        let before = registry.hits("/pnpm/9.15.0");
        fake.stop("ws-a").await.unwrap();
        ensure(&fake, "ws-a", &spec, &settings).await.unwrap();
        assert_eq!(registry.hits("/pnpm/9.15.0"), before);

        // A project without runtimes gets neither the store nor caches.
        let fake = FakeProvider::new();
        ensure(&fake, "ws-b", &WorkspaceSpec { owner_id: Some("7".into()), ..super::tests::spec() }, &settings)
            .await
            .unwrap();
        assert!(fake.mounts("ws-b").is_empty());
        assert!(!fake.labels_for("ws-b").contains(&runtimes::STEP_RUNTIME.to_string()));
    }

    #[tokio::test]
    async fn a_node_version_the_source_lacks_fails_the_ensure_naming_it() {
        let registry = crate::runtimes::tests::registry().await;
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeProvider::new();
        let spec = node_spec(Some("7"), Some((">=99", "package.json", Some("engines.node"))));
        let err = ensure(&fake, "ws-a", &spec, &runtime_settings(dir.path(), &registry.url)).await.unwrap_err();
        assert!(err.message.contains("this project needs Node >=99 (engines.node)"), "{err}");
        assert!(err.hint.contains("ask the operator to provide Node >=99"), "{}", err.hint);
        assert!(!fake.is_cloned("ws-a"));
    }

    #[tokio::test]
    async fn each_owner_gets_their_own_cache_mounted_read_write() {
        let registry = crate::runtimes::tests::registry().await;
        let dir = tempfile::tempdir().unwrap();
        let settings = runtime_settings(dir.path(), &registry.url);
        let fake = FakeProvider::new();
        // Only root can give the directory to another uid; elsewhere the fake cannot say.
        let probe = dir.path().join("probe");
        std::fs::write(&probe, "").unwrap();
        let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&probe).unwrap()) == 0;
        if root {
            fake.set_id_offset(Some(100_000));
        }
        ensure(&fake, "ws-a", &node_spec(Some("1001"), None), &settings).await.unwrap();
        ensure(&fake, "ws-b", &node_spec(Some("1002"), None), &settings).await.unwrap();
        ensure(&fake, "ws-c", &node_spec(Some("1001"), None), &settings).await.unwrap();
        let cache_of = |ws: &str| fake.mounts(ws).into_iter().find(|m| m.device == "nexus-cache").unwrap();
        for (ws, owner) in [("ws-a", "1001"), ("ws-b", "1002"), ("ws-c", "1001")] {
            let m = cache_of(ws);
            assert_eq!(m.source, dir.path().join("caches").join(owner));
            assert_eq!(m.path, "/var/cache/nexus");
            assert!(!m.readonly);
        }
        let meta = std::fs::metadata(dir.path().join("caches/1001")).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o700);
        if root {
            assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 101_000, "dev (1000) as the node sees it");
        }
        let argv = exec_argv(&fake, runtimes::STEP_RUNTIME);
        for var in [
            "npm_config_cache='/var/cache/nexus/npm'",
            "npm_config_store_dir='/var/cache/nexus/pnpm-store'",
            "UV_CACHE_DIR='/var/cache/nexus/uv'",
        ] {
            assert!(argv[5].contains(var), "{var}: {}", argv[5]);
        }
        // An id that cannot name a directory never reaches the node's disk.
        let err = ensure(&fake, "ws-d", &node_spec(Some("../1001"), None), &settings).await.unwrap_err();
        assert!(err.message.contains("owner id"), "{err}");
    }

    #[tokio::test]
    async fn stop_and_delete() {
        let fake = FakeProvider::new();
        ensure(&fake, "ws-a", &spec(), &settings()).await.unwrap();
        stop(&fake, "ws-a").await.unwrap();
        stop(&fake, "ws-a").await.unwrap();
        delete(&fake, "ws-a").await.unwrap();
        delete(&fake, "ws-a").await.unwrap();
        assert!(!fake.exists("ws-a"));
        let err = stop(&fake, "ws-a").await.unwrap_err();
        assert!(err.message.contains("does not exist"), "{err}");
    }
}
