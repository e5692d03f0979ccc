//! The real-LXD side of end-to-end tests: the node's bridge address (or a panic saying how to get
//! LXD: these tests fail, never skip, without it) and a per-test LXD project removed afterwards.

use std::process::Command;
use std::time::Duration;

/// The LXD bridge address containers reach the host on, or a panic saying how to get LXD. `None`
/// only when `NEXUS_SKIP_E2E` is set, the one explicit way to skip.
pub fn host_ip() -> Option<String> {
    if std::env::var_os("NEXUS_SKIP_E2E").is_some() {
        eprintln!("NEXUS_SKIP_E2E is set: SKIPPING an end-to-end test (this run proves nothing about LXD)");
        return None;
    }
    let out = Command::new("lxc").args(["network", "get", "nexusbr0", "ipv4.address"]).output();
    let addr = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!(
            "LXD with the nexusbr0 bridge is not available, so the end-to-end tests cannot run.\n\
             hint: prepare this host with `sudo nexus node init` (or run `.ci/run`), or set NEXUS_SKIP_E2E=1 to skip explicitly"
        ),
    };
    let image = Command::new("lxc").args(["image", "info", "nexus-base"]).output().unwrap();
    assert!(image.status.success(), "LXD has no `nexus-base` image.\nhint: run `sudo nexus node init`");
    Some(addr.split('/').next().unwrap().to_string())
}

/// An LXD project for one test, deleted with everything in it when dropped.
pub struct ProjectGuard(pub String);

impl ProjectGuard {
    /// `e2e-<tag>-<pid>`.
    pub fn new(tag: &str) -> ProjectGuard {
        ProjectGuard(format!("e2e-{tag}-{}", std::process::id()))
    }

    /// Every instance in the project, the agent's image templates included.
    pub fn all_instances(&self) -> Vec<String> {
        let out =
            Command::new("lxc").args(["list", "--project", &self.0, "--format", "csv", "-c", "n"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
    }

    /// The workspace containers in the project.
    pub fn instances(&self) -> Vec<String> {
        self.all_instances().into_iter().filter(|n| n.starts_with("ws-")).collect()
    }

    /// `lxc` with `--project` of this test.
    pub fn lxc(&self, args: &[&str]) -> std::process::Output {
        Command::new("lxc").args(["--project", &self.0]).args(args).output().unwrap()
    }

    /// The instance's cgroup (v1 or v2) file `file` under the pids controller, read on the node.
    pub fn pids_file(&self, instance: &str, file: &str) -> Option<String> {
        let cgroup = format!("lxc.payload.{}_{instance}", self.0);
        [format!("/sys/fs/cgroup/pids/{cgroup}/{file}"), format!("/sys/fs/cgroup/{cgroup}/{file}")]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
    }
}

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        // The agent may still be finishing its background image template when the test ends, so a
        // container can appear after the first sweep: sweep until the project itself is gone.
        for _ in 0..10 {
            for name in self.all_instances() {
                let _ = Command::new("lxc").args(["delete", "--force", "--project", &self.0, &name]).output();
            }
            let gone =
                Command::new("lxc").args(["project", "delete", &self.0]).output().is_ok_and(|o| o.status.success());
            if gone {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!("warning: LXD project {} could not be removed", self.0);
    }
}
