//! `nexus node check`: can this node hold the number of running workspaces the operator plans
//! for, and if not, what stops it — read from the kernel's limits, the memory, and LXD.
//!
//! The per-workspace costs are measured, not guessed: a systemd container holds about 7 inotify
//! instances (stock `fs.inotify.max_user_instances` = 128 stopped a node at 18 running workspaces,
//! issue 12), and an idle workspace uses about 50 MB of memory.

use nexus_cli::system::System;

use crate::init::kernel::SYSCTLS;

/// inotify instances one running workspace holds (systemd and its units).
pub const INOTIFY_INSTANCES_PER_WORKSPACE: u64 = 7;
/// Memory one idle workspace uses, in bytes.
pub const IDLE_WORKSPACE_BYTES: u64 = 50 << 20;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// What was checked (`fs.inotify.max_user_instances`, `memory`, `lxd`).
    pub what: String,
    /// `ok`, `warn` (below LXD's production value, not limiting the plan), or `fail`.
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// Running workspaces this allows, where it bounds them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holds: Option<u64>,
    /// What to do, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Below LXD's recommendation, though not below the plan.
    Warn,
    /// The node cannot hold the planned workspaces, or cannot run any.
    Fail,
}

/// Everything `nexus node check` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeCheck {
    /// Running workspaces planned for (`--workspaces`).
    pub planned: u64,
    /// The most this node holds, by the tightest limit found.
    pub holds: u64,
    /// Each limit, in the order checked.
    pub findings: Vec<Finding>,
}

impl NodeCheck {
    /// Whether the node holds the plan and LXD works.
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.level != Level::Fail)
    }
}

fn read_u64(sys: &dyn System, argv: &[&str]) -> Option<u64> {
    let out = sys.run(argv, None).ok().filter(|o| o.ok())?;
    out.stdout.split_whitespace().next()?.parse().ok()
}

/// `MemTotal` from `/proc/meminfo`, bytes.
fn mem_total(sys: &dyn System) -> Option<u64> {
    let out = sys.run(&["cat", "/proc/meminfo"], None).ok().filter(|o| o.ok())?;
    let line = out.stdout.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How many idle workspaces this host's memory holds, if `/proc/meminfo` says.
pub fn memory_holds(sys: &dyn System) -> Option<u64> {
    mem_total(sys).map(|bytes| bytes / IDLE_WORKSPACE_BYTES)
}

const FIX_KERNEL: &str = "run `sudo nexus node init` (it sets LXD's production values, live and in /etc/sysctl.d)";

/// Checks the node for `planned` running workspaces.
pub fn check(sys: &dyn System, planned: u64) -> NodeCheck {
    let mut findings = Vec::new();
    for &(key, want) in SYSCTLS {
        let Some(live) = read_u64(sys, &["sysctl", "-n", key]) else {
            findings.push(Finding {
                what: key.into(),
                level: Level::Warn,
                detail: "not readable on this kernel".into(),
                holds: None,
                fix: None,
            });
            continue;
        };
        let holds = (key == "fs.inotify.max_user_instances").then_some(live / INOTIFY_INSTANCES_PER_WORKSPACE);
        let level = match holds {
            Some(h) if h < planned => Level::Fail,
            _ if live < want => Level::Warn,
            _ => Level::Ok,
        };
        let detail = match holds {
            Some(h) => format!("{live} (LXD's production value {want}): about {h} running workspaces"),
            None if live < want => format!("{live}, below LXD's production value {want}"),
            None => live.to_string(),
        };
        findings.push(Finding {
            what: key.into(),
            level,
            detail,
            holds,
            fix: (level != Level::Ok).then(|| FIX_KERNEL.into()),
        });
    }
    match mem_total(sys) {
        Some(bytes) => {
            let holds = bytes / IDLE_WORKSPACE_BYTES;
            let level = if holds < planned { Level::Fail } else { Level::Ok };
            findings.push(Finding {
                what: "memory".into(),
                level,
                detail: format!("{} MiB: about {holds} idle workspaces at ~50 MB each", bytes >> 20),
                holds: Some(holds),
                fix: (level == Level::Fail)
                    .then(|| "plan fewer workspaces on this node, or add memory or nodes".into()),
            });
        }
        None => findings.push(Finding {
            what: "memory".into(),
            level: Level::Warn,
            detail: "/proc/meminfo is not readable".into(),
            holds: None,
            fix: None,
        }),
    }
    let lxd = sys.run(&["lxc", "info"], None);
    let lxd_ok = lxd.as_ref().is_ok_and(|o| o.ok());
    findings.push(Finding {
        what: "lxd".into(),
        level: if lxd_ok { Level::Ok } else { Level::Fail },
        detail: if lxd_ok {
            "the daemon answers".into()
        } else {
            "the daemon does not answer (`lxc info` failed)".into()
        },
        holds: None,
        fix: (!lxd_ok)
            .then(|| "start it (`sudo nexus node init` starts it where there is no systemd), then check again".into()),
    });
    let image = sys.run(&["lxc", "image", "info", nexus_types::defaults::BASE_IMAGE_ALIAS], None);
    let image_ok = image.as_ref().is_ok_and(|o| o.ok());
    if lxd_ok {
        findings.push(Finding {
            what: "base image".into(),
            level: if image_ok { Level::Ok } else { Level::Fail },
            detail: if image_ok {
                format!("`{}` is there", nexus_types::defaults::BASE_IMAGE_ALIAS)
            } else {
                format!("no `{}` image", nexus_types::defaults::BASE_IMAGE_ALIAS)
            },
            holds: None,
            fix: (!image_ok).then(|| "run `sudo nexus node init` (it builds the image)".into()),
        });
    }
    let holds = findings.iter().filter_map(|f| f.holds).min().unwrap_or(0);
    NodeCheck { planned, holds, findings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_cli::system::FakeSystem;

    fn host(inotify_instances: &str, mem_kib: u64, lxd_ok: bool) -> FakeSystem {
        let mut sys = FakeSystem::default()
            .on("sysctl -n fs.inotify.max_user_instances", 0, &format!("{inotify_instances}\n"))
            .on("cat /proc/meminfo", 0, &format!("MemTotal:       {mem_kib} kB\nMemFree: 1 kB\n"))
            .on("lxc info", if lxd_ok { 0 } else { 1 }, "")
            .on("lxc image info", 0, "");
        for &(key, want) in SYSCTLS {
            sys = sys.on(&format!("sysctl -n {key}"), 0, &want.to_string());
        }
        sys
    }

    #[test]
    fn stock_inotify_instances_hold_about_18_workspaces_and_fail_a_plan_of_200_naming_the_fix() {
        let c = check(&host("128", 24 << 20, true), 200);
        assert!(!c.ok());
        assert_eq!(c.holds, 18);
        let f = c.findings.iter().find(|f| f.what == "fs.inotify.max_user_instances").unwrap();
        assert_eq!(f.level, Level::Fail);
        assert!(f.detail.contains("about 18 running workspaces"), "{}", f.detail);
        assert!(f.fix.as_deref().unwrap().contains("nexus node init"));
    }

    #[test]
    fn a_node_set_up_by_init_holds_200_on_24_gib_and_memory_is_the_bound() {
        let c = check(&host("1048576", 24 << 20, true), 200);
        assert!(c.ok(), "{c:?}");
        assert_eq!(c.holds, 491, "24 GiB / 50 MB");
        let c = check(&host("1048576", 4 << 20, true), 200);
        assert!(!c.ok());
        assert_eq!(c.findings.iter().find(|f| f.what == "memory").unwrap().level, Level::Fail);
    }

    #[test]
    fn lxd_not_answering_fails_the_check() {
        let c = check(&host("1048576", 24 << 20, false), 10);
        assert!(!c.ok());
        assert!(c.findings.iter().any(|f| f.what == "lxd" && f.level == Level::Fail));
    }
}
