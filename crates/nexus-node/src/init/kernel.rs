//! Node init's kernel step: LXD's production-setup limits, set live and for the next boot.
//!
//! Every unprivileged container shares the host's per-user limits, so stock values cap a node far
//! below what its memory holds (`fs.inotify.max_user_instances` = 128 stops it at about 18 running
//! workspaces). The values are LXD's "Server settings for a LXD production setup". A value only
//! ever goes up: a host tuned higher keeps its value, live and in the file written here.

use std::collections::BTreeMap;

use nexus_cli::system::System;

use super::Progress;
use crate::error::Result;

/// Where the values are kept for the next boot; sorts after the `lxd` package's `10-lxd-inotify.conf`.
pub(crate) const SYSCTL_FILE: &str = "/etc/sysctl.d/90-nexus-lxd.conf";
/// Open-file limits for login sessions (pam_limits reads it after `limits.conf`).
pub(crate) const LIMITS_FILE: &str = "/etc/security/limits.d/90-nexus-lxd.conf";

/// (sysctl, value) from LXD's production setup, plus `kernel.pid_max`. `net.core.bpf_jit_limit` is left out: it only
/// matters on kernels before 5.15, and its default there depends on the machine.
pub(crate) const SYSCTLS: &[(&str, u64)] = &[
    // One inotify instance per systemd in each container, and watches for LXD's device monitor.
    ("fs.inotify.max_queued_events", 1_048_576),
    ("fs.inotify.max_user_instances", 1_048_576),
    ("fs.inotify.max_user_watches", 1_048_576),
    ("fs.aio-max-nr", 524_288),
    ("vm.max_map_count", 262_144),
    // Containers must not read the host's kernel log.
    ("kernel.dmesg_restrict", 1),
    // A keyring per container, counted against the one user all unprivileged containers map to.
    ("kernel.keys.maxkeys", 2_000),
    ("kernel.keys.maxbytes", 2_000_000),
    // One neighbour entry per container on the bridge.
    ("net.ipv4.neigh.default.gc_thresh3", 8_192),
    ("net.ipv6.neigh.default.gc_thresh3", 8_192),
    // Not in LXD's list, ours: every container's processes share the host's PID space, and at the
    // stock 32768 sixteen workspaces at their `limits.processes` (2000) would exhaust it.
    ("kernel.pid_max", 4_194_304),
];
/// `nofile` for every user and root; never above the kernel's `fs.nr_open`, or pam_limits fails logins.
const NOFILE: u64 = 1_048_576;

/// The first non-empty line of a failed command's output: the reason to show.
fn reason(out: &nexus_cli::system::Output) -> String {
    out.stderr.lines().chain(out.stdout.lines()).map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output").into()
}

/// A file's text, or empty when it does not exist (or cannot be read: then it is rewritten).
fn read(sys: &dyn System, path: &str) -> String {
    sys.run(&["cat", path], None).ok().filter(|o| o.ok()).map(|o| o.stdout).unwrap_or_default()
}

/// `key = value` lines of a sysctl file.
fn parse_sysctl_file(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with(['#', ';']))
        .filter_map(|l| l.split_once('='))
        .filter_map(|(k, v)| Some((k.trim().to_string(), v.trim().parse().ok()?)))
        .collect()
}

/// Writes `text` to `path` (through `tee`, so the recording test system sees it); `Err` is the reason.
fn write(sys: &dyn System, path: &str, text: &str) -> std::result::Result<(), String> {
    match sys.run(&["tee", path], Some(text)) {
        Ok(out) if out.ok() => Ok(()),
        Ok(out) => Err(reason(&out)),
        Err(e) => Err(e.to_string()),
    }
}

/// Raises what is below LXD's values, live and in [`SYSCTL_FILE`] and [`LIMITS_FILE`]. What can't be
/// changed here (a container's read-only `/proc/sys`, a key this kernel lacks) is a warning: the
/// node still works, it only holds fewer workspaces.
pub(crate) fn ensure(sys: &dyn System, progress: &dyn Progress) -> Result<()> {
    let what = "kernel settings for many containers (LXD production setup)";
    progress.step(what);
    let mut changed = Vec::new();
    let mut warned = false;
    let mut warn = |message: String| {
        warned = true;
        progress.warning(&message);
    };

    let old_file = read(sys, SYSCTL_FILE);
    let kept = parse_sysctl_file(&old_file);
    let mut persist = Vec::new();
    for &(key, want) in SYSCTLS {
        let live = match sys.run(&["sysctl", "-n", key], None) {
            Ok(out) if out.ok() => out.stdout.trim().parse::<u64>().ok(),
            Ok(out) => {
                warn(format!("{key}: not available on this kernel ({})", reason(&out)));
                continue;
            }
            Err(e) => {
                warn(format!("{key}: could not run `sysctl`: {e}"));
                continue;
            }
        };
        let Some(live) = live else {
            warn(format!("{key}: its value is not a number; left as it is"));
            continue;
        };
        if live < want {
            let assignment = format!("{key}={want}");
            match sys.run(&["sysctl", "-w", &assignment], None) {
                Ok(out) if out.ok() => changed.push(format!("{key} {live} → {want}")),
                Ok(out) => {
                    warn(format!("{key} stays {live} (wanted {want}): {}", reason(&out)));
                    continue;
                }
                Err(e) => {
                    warn(format!("{key} stays {live} (wanted {want}): could not run `sysctl`: {e}"));
                    continue;
                }
            }
        }
        // Whatever is higher wins: LXD's value, the live one, or one this file already kept.
        let value = want.max(live).max(kept.get(key).copied().unwrap_or(0));
        persist.push(format!("{key} = {value}\n"));
    }
    let new_file = format!(
        "# Written by `nexus node init`: LXD's production-setup limits, so a node holds hundreds of\n\
         # containers. Re-run it rather than editing; a value here is never below the host's own.\n{}",
        persist.concat()
    );
    if !persist.is_empty() && new_file != old_file {
        match write(sys, SYSCTL_FILE, &new_file) {
            Ok(()) => changed.push(format!("wrote {SYSCTL_FILE}")),
            Err(e) => warn(format!("could not write {SYSCTL_FILE}, so the values last until reboot: {e}")),
        }
    }

    match nofile_lines(sys) {
        Ok(lines) if lines.is_empty() => {}
        Ok(lines) => {
            let text = format!(
                "# Written by `nexus node init`: LXD's production-setup open-file limits for login sessions.\n{}",
                lines.concat()
            );
            if read(sys, LIMITS_FILE) != text {
                match write(sys, LIMITS_FILE, &text) {
                    Ok(()) => changed.push(format!("wrote {LIMITS_FILE}")),
                    Err(e) => warn(format!("could not write {LIMITS_FILE}: {e}")),
                }
            }
        }
        Err(message) => warn(message),
    }

    if changed.is_empty() && !warned {
        progress.skipped(what);
    } else if changed.is_empty() {
        progress.done("nothing else to change");
    } else {
        progress.done(&changed.join(", "));
    }
    Ok(())
}

/// The `nofile` lines still needed: one per (domain, type) that no other limits file already sets
/// at least as high. Capped at `fs.nr_open`, the most the kernel lets a process have.
fn nofile_lines(sys: &dyn System) -> std::result::Result<Vec<String>, String> {
    let nr_open = sys
        .run(&["sysctl", "-n", "fs.nr_open"], None)
        .ok()
        .filter(|o| o.ok())
        .and_then(|o| o.stdout.trim().parse::<u64>().ok())
        .unwrap_or(NOFILE);
    let want = NOFILE.min(nr_open);
    // Every other limits file, ours excluded: what the host already grants.
    let script = format!(
        "for f in /etc/security/limits.conf /etc/security/limits.d/*.conf; do \
         [ -f \"$f\" ] && [ \"$f\" != {LIMITS_FILE} ] && cat \"$f\"; done; true"
    );
    let others = match sys.run(&["sh", "-c", &script], None) {
        Ok(out) => out.stdout,
        Err(e) => return Err(format!("could not read the limits files: {e}")),
    };
    let mut lines = Vec::new();
    for domain in ["*", "root"] {
        for kind in ["soft", "hard"] {
            let already = others.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                matches!(f.as_slice(), [d, t, item, v, ..]
                    if *d == domain && (*t == kind || *t == "-") && *item == "nofile"
                        && v.parse::<u64>().is_ok_and(|v| v >= want))
            });
            if !already {
                lines.push(format!("{domain:<4} {kind} nofile {want}\n"));
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
pub(crate) mod tests;
