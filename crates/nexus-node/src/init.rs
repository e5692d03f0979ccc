//! `nexus node init`: turns a Debian/Ubuntu host into a driver node, idempotently.
//!
//! Each step checks before it acts, so re-running only does what is missing: packages, the kernel
//! limits many containers need, the LXD daemon (started by hand where there is no systemd), storage
//! pool and bridge, and the base image, which is built locally because no image server is reachable
//! from these hosts.

mod isolation;
pub(crate) mod kernel;

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use nexus_cli::system::System;
use nexus_types::defaults::BASE_IMAGE_ALIAS;

use crate::error::{Error, Result};

/// The base image recipe; its hash names the image, so a changed recipe means a rebuild.
const IMAGE_RECIPE: &str = include_str!("../../../images/base/build.sh");
/// Host packages a node needs.
const PACKAGES: &[&str] =
    &["lxd", "btrfs-progs", "debootstrap", "iptables", "dnsmasq-base", "git", "openssh-client", "procps"];
/// The storage pool workspaces' disks live in.
const POOL: &str = "nexus";
/// The LXD bridge workspaces attach to; staging's git daemon listens on its address.
pub(crate) const BRIDGE: &str = "nexusbr0";

/// Options of `nexus node init`.
#[derive(Debug, Clone)]
pub struct NodeInitOptions {
    /// Use this image (local alias or `remote:image`) instead of building one.
    pub image: Option<String>,
    /// Bridge address with prefix, e.g. `10.87.0.1/24`.
    pub bridge_cidr: String,
    /// Size of the btrfs loop file.
    pub pool_size: String,
    /// Force a `dir` pool (slower starts; for hosts without btrfs).
    pub dir_pool: bool,
    /// Where the build script writes its temporary files.
    pub work_dir: PathBuf,
}

impl Default for NodeInitOptions {
    fn default() -> Self {
        NodeInitOptions {
            image: None,
            bridge_cidr: "10.87.0.1/24".into(),
            pool_size: "30GiB".into(),
            dir_pool: false,
            work_dir: std::env::temp_dir().join("nexus-image-build"),
        }
    }
}

fn fail(step: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Step { step, message: message.into(), hint: hint.into() }
}

/// `nexus-base-<first 12 hex of the recipe's SHA-256>`.
fn recipe_alias() -> String {
    let digest = Sha256::digest(IMAGE_RECIPE.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{BASE_IMAGE_ALIAS}-{hex}")
}

/// What node init reports as it goes; the CLI renders it.
pub(crate) trait Progress {
    /// A step began.
    fn step(&self, what: &str);
    /// The step was already done.
    fn skipped(&self, what: &str);
    /// The step did something.
    fn done(&self, what: &str);
    /// Something the step could not do; node init goes on without it.
    fn warning(&self, what: &str) {
        eprintln!("  ⚠ {what}");
    }
}

/// Runs every step.
pub(crate) fn run(sys: &dyn System, opts: &NodeInitOptions, progress: &dyn Progress) -> Result<()> {
    ensure_root(sys)?;
    ensure_packages(sys, progress)?;
    // Before the daemon starts, so LXD and its first containers already get the raised limits.
    kernel::ensure(sys, progress)?;
    ensure_daemon(sys, progress)?;
    ensure_network_and_pool(sys, opts, progress)?;
    isolation::ensure(sys, progress)?;
    ensure_image(sys, opts, progress)?;
    Ok(())
}

fn run_ok(sys: &dyn System, step: &'static str, argv: &[&str], stdin: Option<&str>, hint: &str) -> Result<String> {
    let out = sys.run(argv, stdin).map_err(|e| fail(step, format!("could not run `{}`: {e}", argv[0]), hint))?;
    if !out.ok() {
        let detail =
            out.stderr.lines().chain(out.stdout.lines()).rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        return Err(fail(step, format!("`{}` failed (exit {}): {detail}", argv.join(" "), out.code), hint));
    }
    Ok(out.stdout)
}

fn ensure_root(sys: &dyn System) -> Result<()> {
    let uid = run_ok(sys, "check user", &["id", "-u"], None, "run on a Linux host with coreutils")?;
    if uid.trim() != "0" {
        return Err(fail(
            "check user",
            "node init installs packages and configures LXD, which needs root",
            "run it as root: `sudo nexus node init`",
        ));
    }
    Ok(())
}

fn ensure_packages(sys: &dyn System, progress: &dyn Progress) -> Result<()> {
    let what = "host packages (LXD, btrfs-progs, debootstrap, ...)";
    progress.step(what);
    let mut missing = Vec::new();
    for pkg in PACKAGES {
        let out = sys.run(&["dpkg-query", "-W", "-f=${Status}", pkg], None).map_err(|e| {
            fail(
                "packages",
                format!("could not run dpkg-query: {e}"),
                "node init supports Debian and Ubuntu hosts (apt/dpkg)",
            )
        })?;
        if !(out.ok() && out.stdout.contains("install ok installed")) {
            missing.push(*pkg);
        }
    }
    if missing.is_empty() {
        progress.skipped(what);
        return Ok(());
    }
    let hint = "check the host's apt sources and network, then re-run `nexus node init`";
    if sys.run_visible(&["apt-get", "update", "-q"]).map_err(|e| fail("packages", e.to_string(), hint))? != 0 {
        return Err(fail("packages", "apt-get update failed", hint));
    }
    let mut argv = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
    argv.extend(&missing);
    if sys.run_visible(&argv).map_err(|e| fail("packages", e.to_string(), hint))? != 0 {
        return Err(fail("packages", format!("apt-get install {} failed", missing.join(" ")), hint));
    }
    progress.done(&format!("installed {}", missing.join(", ")));
    Ok(())
}

const LXD_LOG: &str = "/var/log/lxd/lxd.log";
const LXD_DAEMON_OUTPUT: &str = "/var/log/lxd/daemon.out";

fn daemon_ready(sys: &dyn System, seconds: u32) -> bool {
    sys.run(&["lxd", "waitready", &format!("--timeout={seconds}")], None).is_ok_and(|o| o.ok())
}

/// Starts the LXD daemon in its own session, the way a host without systemd runs it.
pub(crate) fn spawn_daemon(sys: &dyn System) -> Result<()> {
    let what = "LXD daemon";
    let hint = "check that the `lxd` package is installed (`apt-get install lxd`)";
    let argv = ["lxd", "--group", "root", "--logfile", LXD_LOG];
    match sys.spawn_detached(&argv, LXD_DAEMON_OUTPUT) {
        Ok(0) => Ok(()),
        Ok(code) => Err(fail(what, format!("`setsid -f lxd` exited with {code}"), hint)),
        Err(e) => Err(fail(what, format!("could not start `lxd`: {e}"), hint)),
    }
}

fn ensure_daemon(sys: &dyn System, progress: &dyn Progress) -> Result<()> {
    let what = "LXD daemon";
    progress.step(what);
    if daemon_ready(sys, 1) {
        progress.skipped(what);
        return Ok(());
    }
    // A daemon that died leaves its bridge's ACL chain behind, which LXD 5.0 then cannot clear.
    crate::lxd_restart::clear_stale_acl_chains(sys, BRIDGE);
    // Prefer the service manager when there is one; containers and CI machines often have none.
    let has_systemd = sys.run(&["test", "-d", "/run/systemd/system"], None).is_ok_and(|o| o.ok());
    if has_systemd {
        let _ = sys.run(&["systemctl", "start", "lxd.socket", "lxd.service"], None);
    } else {
        spawn_daemon(sys)?;
    }
    if !daemon_ready(sys, 60) {
        return Err(fail(
            "LXD daemon",
            "LXD did not become ready within 60s",
            "read /var/log/lxd/lxd.log, fix what it says, then re-run `nexus node init`",
        ));
    }
    progress.done("started the LXD daemon");
    Ok(())
}

/// The preseed for our pool, bridge and the default profile's devices.
fn preseed(opts: &NodeInitOptions, driver: &str, with_network: bool, with_profile: bool) -> String {
    let mut y = String::from("config: {}\n");
    if with_network {
        y.push_str(&format!(
            "networks:\n- name: {BRIDGE}\n  type: bridge\n  config:\n    ipv4.address: {}\n    ipv4.nat: \"true\"\n    ipv6.address: none\n",
            opts.bridge_cidr
        ));
    }
    y.push_str(&format!("storage_pools:\n- name: {POOL}\n  driver: {driver}\n"));
    if driver == "btrfs" {
        y.push_str(&format!("  config:\n    size: {}\n", opts.pool_size));
    }
    if with_profile {
        y.push_str(&format!(
            "profiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: {POOL}\n      type: disk\n    eth0:\n      name: eth0\n      network: {BRIDGE}\n      type: nic\n"
        ));
    }
    y
}

fn ensure_network_and_pool(sys: &dyn System, opts: &NodeInitOptions, progress: &dyn Progress) -> Result<()> {
    let what = "storage pool and bridge";
    progress.step(what);
    let has_pool = sys.run(&["lxc", "storage", "show", POOL], None).is_ok_and(|o| o.ok());
    let has_net = sys.run(&["lxc", "network", "show", BRIDGE], None).is_ok_and(|o| o.ok());
    let profile = sys.run(&["lxc", "profile", "device", "list", "default"], None).map(|o| o.stdout).unwrap_or_default();
    let has_profile = profile.lines().any(|l| l.trim() == "root") && profile.lines().any(|l| l.trim() == "eth0");
    if has_pool && has_net && has_profile {
        progress.skipped(what);
        return Ok(());
    }
    if has_pool {
        // Only the network or profile is missing: preseed them against the existing pool.
        let yaml = preseed(opts, "dir", !has_net, !has_profile)
            .replace(&format!("storage_pools:\n- name: {POOL}\n  driver: dir\n"), "");
        run_ok(
            sys,
            "network",
            &["lxd", "init", "--preseed"],
            Some(&yaml),
            "read the LXD error above; a clashing subnet can be changed with --bridge-cidr",
        )?;
        progress.done("configured the bridge and default profile");
        return Ok(());
    }
    let hint = "read the LXD error above; a clashing subnet can be changed with --bridge-cidr, a host without btrfs can use --dir-pool";
    if !opts.dir_pool {
        let yaml = preseed(opts, "btrfs", !has_net, !has_profile);
        match run_ok(sys, "storage", &["lxd", "init", "--preseed"], Some(&yaml), hint) {
            Ok(_) => {
                progress.done("created a btrfs storage pool (copy-on-write container starts) and the bridge");
                return Ok(());
            }
            Err(Error::Step { message, .. }) => {
                progress.done(&format!("btrfs pool failed ({message}); falling back to a dir pool"))
            }
            Err(e) => return Err(e),
        }
    }
    let has_net = sys.run(&["lxc", "network", "show", BRIDGE], None).is_ok_and(|o| o.ok());
    let yaml = preseed(opts, "dir", !has_net, !has_profile);
    run_ok(sys, "storage", &["lxd", "init", "--preseed"], Some(&yaml), hint)?;
    progress.done("created a dir storage pool and the bridge");
    Ok(())
}

fn ensure_image(sys: &dyn System, opts: &NodeInitOptions, progress: &dyn Progress) -> Result<()> {
    let hint_alias = "re-run `nexus node init`; if it persists, check `lxc image list`";
    let target = match &opts.image {
        Some(image) => {
            let what = format!("base image from {image}");
            progress.step(&what);
            if let Some((remote, _)) = image.split_once(':') {
                let alias = format!("nexus-remote-{}", image.replace([':', '/'], "-"));
                if !sys.run(&["lxc", "image", "info", &alias], None).is_ok_and(|o| o.ok()) {
                    run_ok(
                        sys,
                        "image",
                        &["lxc", "image", "copy", image, "local:", "--alias", &alias],
                        None,
                        &format!("check that the image server `{remote}` is reachable, or build locally by leaving out --image"),
                    )?;
                }
                alias
            } else {
                if !sys.run(&["lxc", "image", "info", image], None).is_ok_and(|o| o.ok()) {
                    return Err(fail(
                        "image",
                        format!("there is no local image {image:?}"),
                        "list images with `lxc image list`, or leave out --image to build one",
                    ));
                }
                image.clone()
            }
        }
        None => {
            let alias = recipe_alias();
            let what = format!("base image {alias} (Debian 13 trixie, built locally)");
            progress.step(&what);
            if sys.run(&["lxc", "image", "info", &alias], None).is_ok_and(|o| o.ok()) {
                progress.skipped(&what);
            } else {
                std::fs::create_dir_all(&opts.work_dir).map_err(|e| {
                    fail(
                        "image",
                        format!("cannot create {}: {e}", opts.work_dir.display()),
                        "choose a writable --work-dir",
                    )
                })?;
                let script = opts.work_dir.join("build.sh");
                std::fs::write(&script, IMAGE_RECIPE).map_err(|e| {
                    fail("image", format!("cannot write {}: {e}", script.display()), "choose a writable --work-dir")
                })?;
                let work = opts.work_dir.join("work");
                let code = sys
                    .run_visible(&["bash", &script.to_string_lossy(), &alias, &work.to_string_lossy()])
                    .map_err(|e| fail("image", e.to_string(), "check that bash is installed"))?;
                if code != 0 {
                    return Err(fail(
                        "image",
                        format!("building the base image failed (exit {code})"),
                        "read the build output above (often a mirror hiccup), then re-run `nexus node init`",
                    ));
                }
                progress.done(&format!("built and imported {alias}"));
            }
            alias
        }
    };
    // Point the well-known alias at the chosen image so agents need no per-build setting.
    let info = run_ok(sys, "image", &["lxc", "image", "info", &target], None, hint_alias)?;
    let fingerprint =
        info.lines().find_map(|l| l.strip_prefix("Fingerprint:")).map(str::trim).unwrap_or("").to_string();
    if fingerprint.is_empty() {
        return Err(fail("image", format!("could not read the fingerprint of {target}"), hint_alias));
    }
    let current = sys.run(&["lxc", "image", "info", BASE_IMAGE_ALIAS], None).map(|o| o.stdout).unwrap_or_default();
    if !current.contains(&fingerprint) {
        let _ = sys.run(&["lxc", "image", "alias", "delete", BASE_IMAGE_ALIAS], None);
        run_ok(sys, "image", &["lxc", "image", "alias", "create", BASE_IMAGE_ALIAS, &fingerprint], None, hint_alias)?;
        progress.done(&format!("{BASE_IMAGE_ALIAS} now points at {target}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_cli::system::FakeSystem;
    use nexus_types::diagnostics::Hint as _;

    struct Quiet;
    impl Progress for Quiet {
        fn step(&self, _: &str) {}
        fn skipped(&self, _: &str) {}
        fn done(&self, _: &str) {}
    }

    fn ready_host() -> FakeSystem {
        let alias = recipe_alias();
        kernel::tests::tuned(FakeSystem::default())
            .on("id -u", 0, "0\n")
            .on("dpkg-query", 0, "install ok installed")
            .on("lxd waitready", 0, "")
            .on("lxc storage show", 0, "")
            .on("lxc network show", 0, "")
            .on("lxc profile device list default", 0, "root\neth0\n")
            .on(&format!("lxc image info {alias}"), 0, "Fingerprint: abc123\n")
            .on("lxc image info nexus-base", 0, "Fingerprint: abc123\n")
    }

    #[test]
    fn a_ready_host_is_left_alone() {
        let sys = ready_host();
        run(&sys, &NodeInitOptions::default(), &Quiet).unwrap();
        let calls = sys.calls();
        for forbidden in ["apt-get", "sysctl -w", "tee ", "lxd init", "detached", "bash", "alias create"] {
            assert!(!calls.iter().any(|c| c.contains(forbidden)), "ran {forbidden}: {calls:?}");
        }
    }

    #[test]
    fn a_bare_host_gets_everything() {
        let sys = FakeSystem::default()
            .on("id -u", 0, "0\n")
            .on("dpkg-query", 1, "")
            .on("apt-get", 0, "")
            .on("lxd waitready --timeout=1", 1, "")
            .on("lxd waitready", 0, "")
            .on("test -d /run/systemd/system", 1, "")
            .on("detached", 0, "")
            .on("lxc storage show", 1, "")
            .on("lxc network show", 1, "")
            .on("lxd init --preseed", 0, "")
            .on(&format!("lxc image info {}", recipe_alias()), 1, "")
            .on("bash", 0, "");
        // After the build the alias exists; the fake can't change answers, so expect the fingerprint error.
        let err = run(&sys, &NodeInitOptions { work_dir: tempfile_dir(), ..Default::default() }, &Quiet).unwrap_err();
        assert!(matches!(err, Error::Step { step: "image", .. }), "{err:?}");
        let calls = sys.calls();
        assert!(calls.iter().any(|c| c.starts_with("apt-get install -y -q --no-install-recommends lxd btrfs-progs")));
        assert!(calls.iter().any(|c| c.starts_with("detached lxd --group root")));
        assert!(calls.iter().any(|c| c.starts_with("bash ") && c.contains(&recipe_alias())));
        let stdin = nexus_types::diagnostics::lock(&sys.stdin);
        let yaml = stdin.get("lxd init --preseed").unwrap();
        assert!(yaml.contains("driver: btrfs") && yaml.contains("ipv4.address: 10.87.0.1/24"), "{yaml}");
    }

    #[test]
    fn an_existing_image_is_used_instead_of_building() {
        let sys = ready_host().on("lxc image info my-image", 0, "Fingerprint: fff999\n").on("lxc image alias", 0, "");
        let opts = NodeInitOptions { image: Some("my-image".into()), ..Default::default() };
        run(&sys, &opts, &Quiet).unwrap();
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| c.starts_with("bash ")), "no build: {calls:?}");
        assert!(calls.iter().any(|c| c == "lxc image alias create nexus-base fff999"), "{calls:?}");

        let sys = ready_host().on("lxc image info nope", 1, "");
        let err = run(&sys, &NodeInitOptions { image: Some("nope".into()), ..Default::default() }, &Quiet).unwrap_err();
        assert!(err.hint().unwrap().contains("lxc image list"), "{err:?}");
    }

    #[test]
    fn non_root_is_told_to_use_sudo() {
        let sys = FakeSystem::default().on("id -u", 0, "1000\n");
        let err = run(&sys, &NodeInitOptions::default(), &Quiet).unwrap_err();
        assert!(err.hint().unwrap().contains("sudo"), "{err:?}");
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("nexus-node-init-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn alias_follows_the_recipe() {
        assert!(recipe_alias().starts_with("nexus-base-") && recipe_alias().len() == "nexus-base-".len() + 12);
    }
}
