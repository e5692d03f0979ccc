//! Kernel step against the recording fake host: raised, persisted, never lowered, warned about.

use std::sync::Mutex;

use nexus_cli::system::{FakeSystem, Output};

use super::*;

/// Progress as lines: `step: …`, `skipped`, `done: …`, `warning: …`.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Progress for Recorder {
    fn step(&self, what: &str) {
        self.0.lock().unwrap().push(format!("step: {what}"));
    }
    fn skipped(&self, _: &str) {
        self.0.lock().unwrap().push("skipped".into());
    }
    fn done(&self, what: &str) {
        self.0.lock().unwrap().push(format!("done: {what}"));
    }
    fn warning(&self, what: &str) {
        self.0.lock().unwrap().push(format!("warning: {what}"));
    }
}

impl Recorder {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn warnings(&self) -> Vec<String> {
        self.lines().into_iter().filter(|l| l.starts_with("warning: ")).collect()
    }
}

/// Stock Linux values, from the LXD doc's "Default" column.
const STOCK: &[(&str, u64)] = &[
    ("fs.inotify.max_queued_events", 16_384),
    ("fs.inotify.max_user_instances", 128),
    ("fs.inotify.max_user_watches", 8_192),
    ("fs.aio-max-nr", 65_536),
    ("vm.max_map_count", 65_530),
    ("kernel.dmesg_restrict", 0),
    ("kernel.keys.maxkeys", 200),
    ("kernel.keys.maxbytes", 20_000),
    ("net.ipv4.neigh.default.gc_thresh3", 1_024),
    ("net.ipv6.neigh.default.gc_thresh3", 1_024),
    ("kernel.pid_max", 32_768),
];

/// A host whose sysctls read `values` (first match wins, so earlier rules override these).
fn host(sys: FakeSystem, values: &[(&str, u64)]) -> FakeSystem {
    let mut sys = sys.on("sysctl -n fs.nr_open", 0, "1048576\n");
    for (key, value) in values {
        sys = sys.on(&format!("sysctl -n {key}"), 0, &format!("{value}\n"));
    }
    sys
}

fn failing(mut sys: FakeSystem, prefix: &str, stderr: &str) -> FakeSystem {
    sys.rules.push((prefix.into(), Output { code: 255, stdout: String::new(), stderr: stderr.into() }));
    sys
}

fn written(sys: &FakeSystem, path: &str) -> Option<String> {
    nexus_types::diagnostics::lock(&sys.stdin).get(&format!("tee {path}")).cloned()
}

fn sets(sys: &FakeSystem) -> Vec<String> {
    sys.calls().into_iter().filter(|c| c.starts_with("sysctl -w ")).collect()
}

/// Rules for a host already tuned by an earlier run: LXD's values live, both files as written.
pub(crate) fn tuned(sys: FakeSystem) -> FakeSystem {
    let first = host(FakeSystem::default(), STOCK);
    ensure(&first, &Recorder::default()).unwrap();
    let sysctl_file = written(&first, SYSCTL_FILE).unwrap();
    let limits_file = written(&first, LIMITS_FILE).unwrap();
    host(
        sys.on(&format!("cat {SYSCTL_FILE}"), 0, &sysctl_file).on(&format!("cat {LIMITS_FILE}"), 0, &limits_file),
        SYSCTLS,
    )
}

#[test]
fn a_stock_host_gets_lxds_values_live_and_for_the_next_boot() {
    let sys = host(FakeSystem::default(), STOCK);
    let progress = Recorder::default();
    ensure(&sys, &progress).unwrap();

    let want: Vec<String> = SYSCTLS.iter().map(|(k, v)| format!("sysctl -w {k}={v}")).collect();
    assert_eq!(sets(&sys), want);
    let file = written(&sys, SYSCTL_FILE).expect("sysctl file written");
    for (key, value) in SYSCTLS {
        assert!(file.contains(&format!("\n{key} = {value}\n")), "{key} in {file}");
    }
    assert!(file.contains("fs.inotify.max_user_instances = 1048576"), "{file}");
    let limits = written(&sys, LIMITS_FILE).expect("limits file written");
    for line in
        ["*    soft nofile 1048576", "*    hard nofile 1048576", "root soft nofile 1048576", "root hard nofile 1048576"]
    {
        assert!(limits.contains(line), "{line:?} in {limits}");
    }
    let lines = progress.lines();
    assert!(progress.warnings().is_empty(), "{lines:?}");
    let done = lines.last().unwrap();
    assert!(done.contains("fs.inotify.max_user_instances 128 → 1048576") && done.contains(SYSCTL_FILE), "{done}");
}

#[test]
fn a_second_run_finds_everything_in_place() {
    let again = tuned(FakeSystem::default());
    let progress = Recorder::default();
    ensure(&again, &progress).unwrap();
    assert_eq!(sets(&again), Vec::<String>::new());
    assert!(!again.calls().iter().any(|c| c.starts_with("tee ")), "{:?}", again.calls());
    assert_eq!(progress.lines().last().unwrap(), "skipped", "{:?}", progress.lines());
}

#[test]
fn a_value_already_higher_is_never_lowered() {
    let kept = "# ours\nfs.inotify.max_user_instances = 4194304\n";
    let sys = host(
        FakeSystem::default().on("sysctl -n fs.inotify.max_user_watches", 0, "8388608\n").on(
            &format!("cat {SYSCTL_FILE}"),
            0,
            kept,
        ),
        STOCK,
    );
    ensure(&sys, &Recorder::default()).unwrap();
    let sets = sets(&sys);
    assert!(!sets.iter().any(|c| c.contains("max_user_watches")), "{sets:?}");
    // Live 128 is raised to LXD's value; the file keeps the higher value it already had.
    assert!(sets.contains(&"sysctl -w fs.inotify.max_user_instances=1048576".to_string()), "{sets:?}");
    let file = written(&sys, SYSCTL_FILE).unwrap();
    assert!(file.contains("fs.inotify.max_user_watches = 8388608\n"), "{file}");
    assert!(file.contains("fs.inotify.max_user_instances = 4194304\n"), "{file}");
}

#[test]
fn what_a_container_cannot_set_is_a_warning_with_the_reason() {
    // Earlier rules win: the refusals first, then the stock values.
    let sys = failing(
        FakeSystem::default(),
        "sysctl -n net.ipv6.neigh.default.gc_thresh3",
        "sysctl: cannot stat /proc/sys/net/ipv6/neigh/default/gc_thresh3: No such file or directory\n",
    );
    let sys = failing(
        sys,
        "sysctl -w fs.inotify.max_user_instances=",
        "sysctl: setting key \"fs.inotify.max_user_instances\": Read-only file system\n",
    );
    let sys = host(sys, STOCK);
    let progress = Recorder::default();
    ensure(&sys, &progress).unwrap();

    let warnings = progress.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("fs.inotify.max_user_instances stays 128 (wanted 1048576)")
            && warnings[0].contains("Read-only file system"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("net.ipv6.neigh.default.gc_thresh3: not available")
            && warnings[1].contains("No such file")
    );
    // The rest still went ahead; what was not set is not claimed in the file.
    assert!(sets(&sys).contains(&"sysctl -w vm.max_map_count=262144".to_string()));
    let file = written(&sys, SYSCTL_FILE).unwrap();
    assert!(!file.contains("max_user_instances") && !file.contains("net.ipv6"), "{file}");
    assert!(file.contains("vm.max_map_count = 262144"), "{file}");
    assert!(progress.lines().last().unwrap().starts_with("done: "));
}

#[test]
fn nofile_lines_respect_other_limits_files_and_nr_open() {
    let sys = host(
        FakeSystem::default().on("sysctl -n fs.nr_open", 0, "524288\n").on(
            "sh -c",
            0,
            "# site policy\n*  -  nofile  2097152\n@dev soft nofile 1024\n",
        ),
        SYSCTLS,
    );
    ensure(&sys, &Recorder::default()).unwrap();
    let limits = written(&sys, LIMITS_FILE).unwrap();
    assert!(!limits.contains("* "), "`*` is already higher elsewhere: {limits}");
    assert!(limits.contains("root soft nofile 524288\n") && limits.contains("root hard nofile 524288\n"), "{limits}");
}
