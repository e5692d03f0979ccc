//! Background port forwards for a workspace's services: one supervisor process per workspace runs
//! `ssh -N -L ...` and starts it again whenever the connection drops (laptop sleep, network change,
//! a killed ssh), so `http://localhost:<mapped_port>` keeps working without a terminal open.
//!
//! The supervisor records itself in `~/.nexus/forwards/<workspace>.json` (its pid, the current ssh
//! pid, the ports) so `nexus workspace ports` can show and stop it; its log is next to it.
//!
//! When something else on the designer's machine already listens on a mapped port, the service is
//! forwarded from another free port instead ([`choose_local_ports`]), and that choice is kept in
//! `~/.nexus/forwards/<workspace>.ports` so the workspace's URLs stay the same from one connect to
//! the next.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One forwarded port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    /// Service name.
    pub service: String,
    /// Port on the designer's machine (`127.0.0.1`).
    pub local: u16,
    /// Port inside the workspace.
    pub remote: u16,
}

/// What a running supervisor wrote about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardState {
    /// Workspace name.
    pub workspace: String,
    /// The supervisor's pid.
    pub pid: u32,
    /// The current ssh child's pid, while one runs.
    pub ssh_pid: Option<u32>,
    /// Ports forwarded.
    pub ports: Vec<PortForward>,
    /// How many times ssh was (re)started.
    pub connects: u32,
    /// Its log file.
    pub log: PathBuf,
}

/// `~/.nexus/forwards` under `home`.
pub fn state_dir(home: &Path) -> PathBuf {
    home.join(".nexus/forwards")
}

fn state_path(home: &Path, workspace: &str) -> PathBuf {
    state_dir(home).join(format!("{workspace}.json"))
}

/// The local ports chosen for a workspace's services whose mapped port was taken. Not `.json`:
/// [`all_running`] removes every `.json` file that is not a running supervisor's.
fn moved_path(home: &Path, workspace: &str) -> PathBuf {
    state_dir(home).join(format!("{workspace}.ports"))
}

/// How far from a taken mapped port the search for another one starts: mapped ports are handed out
/// one after the other from 23000, so the ports right above a workspace's belong to the next one.
const MOVED_OFFSET: u16 = 1000;

/// How many ports from there are tried before asking the system for any free one.
const MOVED_TRIES: u16 = 100;

/// A service forwarded from another local port than its mapped one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedPort {
    /// Service name.
    pub service: String,
    /// The port the server mapped it to (and shows in its URLs).
    pub mapped: u16,
    /// The port it is forwarded from on this machine.
    pub local: u16,
    /// Whether something else listens on `mapped` right now; when not, the service stays on `local`
    /// anyway, so a URL the designer has open keeps working.
    #[serde(skip)]
    pub mapped_in_use: bool,
}

impl MovedPort {
    /// What to tell the designer.
    pub fn notice(&self) -> String {
        if self.mapped_in_use {
            format!("{} is in use on this machine; {} is on http://localhost:{}", self.mapped, self.service, self.local)
        } else {
            format!(
                "{} stays on http://localhost:{} (it moved there when {} was in use on this machine)",
                self.service, self.local, self.mapped
            )
        }
    }
}

/// Whether a forward can listen on `port`: ssh binds `127.0.0.1`, and a browser opening `localhost`
/// may try `::1` first, so a listener on either would take the service's URL.
pub fn port_is_free(port: u16) -> bool {
    let v4 = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    let v6 = match std::net::TcpListener::bind(("::1", port)) {
        Ok(_) => true,
        // No IPv6 here: nothing can listen there either.
        Err(e) => e.kind() == std::io::ErrorKind::AddrNotAvailable,
    };
    v4 && v6
}

/// The local ports for `forwards` (whose `local` is the mapped port): where a service went before,
/// if that port is still free; else its mapped port if free; else a free port [`MOVED_OFFSET`] above
/// it. Returns the forwards with `local` set, and calls `notify` with a line for the designer for each
/// one not on its mapped port. A port the workspace's running forwarder holds for the same service
/// counts as free, so this gives the ports it forwards from. The choices are kept for next time as
/// well as they can be: a record that cannot be written only makes the next choice start afresh.
pub fn choose_local_ports(
    home: &Path,
    workspace: &str,
    forwards: &[PortForward],
    mut notify: impl FnMut(String),
) -> Vec<PortForward> {
    let before = read_moved(&moved_path(home, workspace));
    let held = running(home, workspace).map(|s| s.ports).unwrap_or_default();
    let free_for =
        |service: &str, port: u16| held.iter().any(|p| p.service == service && p.local == port) || port_is_free(port);
    // Ports this workspace's other services are mapped to, or other workspaces were moved to.
    let mut avoid: HashSet<u16> = forwards.iter().map(|f| f.local).collect();
    avoid.extend(moved_elsewhere(home, workspace));
    let mut chosen = Vec::with_capacity(forwards.len());
    let mut moved = Vec::new();
    for f in forwards {
        let mapped = f.local;
        let previous = before.iter().find(|m| m.service == f.service && m.mapped == mapped).map(|m| m.local);
        let mapped_in_use = !free_for(&f.service, mapped);
        let local = match previous {
            Some(p) if !avoid.contains(&p) && free_for(&f.service, p) => p,
            _ if !mapped_in_use && !chosen.iter().any(|c: &PortForward| c.local == mapped) => mapped,
            _ => free_port_near(mapped, &avoid),
        };
        avoid.insert(local);
        if local != mapped {
            let m = MovedPort { service: f.service.clone(), mapped, local, mapped_in_use };
            notify(m.notice());
            moved.push(m);
        }
        chosen.push(PortForward { local, ..f.clone() });
    }
    let path = moved_path(home, workspace);
    let _ = if moved.is_empty() {
        std::fs::remove_file(&path).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
    } else {
        std::fs::create_dir_all(state_dir(home))
            .and_then(|()| write_atomically(&path, &serde_json::to_vec_pretty(&moved).expect("moved ports serialize")))
    };
    chosen
}

/// The services of `workspace` that [`choose_local_ports`] last moved off their mapped port: what the
/// URLs the CLI prints are corrected with, since the server only knows the mapped ports.
pub fn moved_ports(home: &Path, workspace: &str) -> Vec<MovedPort> {
    read_moved(&moved_path(home, workspace))
}

/// The port `service`, mapped to `mapped`, is forwarded from on this machine according to `moved`.
pub fn local_port(moved: &[MovedPort], service: &str, mapped: u16) -> u16 {
    moved.iter().find(|m| m.service == service && m.mapped == mapped).map_or(mapped, |m| m.local)
}

/// Forgets where `workspace`'s services were moved (its forwards are gone for good, e.g. it was
/// deleted), so other workspaces may take those ports.
pub fn forget_moved_ports(home: &Path, workspace: &str) {
    let _ = std::fs::remove_file(moved_path(home, workspace));
}

fn read_moved(path: &Path) -> Vec<MovedPort> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Local ports other workspaces' forwards use or were moved to.
fn moved_elsewhere(home: &Path, workspace: &str) -> HashSet<u16> {
    let mut ports: HashSet<u16> = all_running(home)
        .iter()
        .filter(|s| s.workspace != workspace)
        .flat_map(|s| s.ports.iter().map(|p| p.local))
        .collect();
    let own = moved_path(home, workspace);
    for entry in std::fs::read_dir(state_dir(home)).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some("ports") && path != own {
            ports.extend(read_moved(&path).iter().map(|m| m.local));
        }
    }
    ports
}

/// A free port [`MOVED_OFFSET`] or a little more above `mapped`, else any free one the system gives.
fn free_port_near(mapped: u16, avoid: &HashSet<u16>) -> u16 {
    let start = mapped.saturating_add(MOVED_OFFSET);
    (0..MOVED_TRIES)
        .filter_map(|i| start.checked_add(i))
        .find(|p| !avoid.contains(p) && port_is_free(*p))
        .or_else(|| {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).ok()?;
            listener.local_addr().ok().map(|a| a.port())
        })
        .unwrap_or(mapped)
}

/// The supervisor's log file.
pub fn log_path(home: &Path, workspace: &str) -> PathBuf {
    state_dir(home).join(format!("{workspace}.log"))
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// The supervisor recorded for `workspace`, if it still runs.
pub fn running(home: &Path, workspace: &str) -> Option<ForwardState> {
    let text = std::fs::read_to_string(state_path(home, workspace)).ok()?;
    let state: ForwardState = serde_json::from_str(&text).ok()?;
    alive(state.pid).then_some(state)
}

/// Every running supervisor; stale records are removed.
pub fn all_running(home: &Path) -> Vec<ForwardState> {
    let Ok(dir) = std::fs::read_dir(state_dir(home)) else { return Vec::new() };
    let mut states = Vec::new();
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let parsed = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<ForwardState>(&t).ok());
        match parsed {
            Some(s) if alive(s.pid) => states.push(s),
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    states.sort_by(|a, b| a.workspace.cmp(&b.workspace));
    states
}

/// Stops `workspace`'s supervisor (which stops its ssh). `Ok(false)` when none ran.
pub fn stop(home: &Path, workspace: &str) -> std::io::Result<bool> {
    let Some(state) = running(home, workspace) else {
        let _ = std::fs::remove_file(state_path(home, workspace));
        return Ok(false);
    };
    signal(state.pid, "TERM");
    for _ in 0..50 {
        if !alive(state.pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(state.pid) {
        signal(state.pid, "KILL");
    }
    if let Some(ssh) = state.ssh_pid.filter(|p| alive(*p)) {
        signal(ssh, "TERM");
        // Its ports must be free when this returns: a forwarder started next chooses its ports by
        // which are free, and should find its own old ones so.
        for _ in 0..50 {
            if !alive(ssh) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_file(state_path(home, workspace));
    Ok(true)
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// Starts `exe <args>` as a detached supervisor with output in the workspace's log.
pub fn spawn_supervisor(exe: &Path, args: &[String], home: &Path, workspace: &str) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt as _;
    std::fs::create_dir_all(state_dir(home))?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path(home, workspace))?;
    let child = std::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: Ctrl-C in the terminal that ran `connect` must not stop it.
        .process_group(0)
        .spawn()?;
    Ok(child.id())
}

/// The ssh command line for the forwards: its own connection (no sharing, so a dead connection
/// means a dead ssh we can restart), failing fast when a local port is taken or the link is gone.
pub fn ssh_args(user_config: &Path, alias: &str, ports: &[PortForward]) -> Vec<String> {
    let mut args: Vec<String> = vec!["-F".into(), user_config.display().to_string(), "-N".into()];
    for opt in [
        "ExitOnForwardFailure=yes",
        "ControlMaster=no",
        "ControlPath=none",
        "ServerAliveInterval=5",
        "ServerAliveCountMax=3",
        "ConnectTimeout=10",
        "BatchMode=yes",
    ] {
        args.push("-o".into());
        args.push(opt.into());
    }
    for p in ports {
        args.push("-L".into());
        args.push(format!("127.0.0.1:{}:localhost:{}", p.local, p.remote));
    }
    args.push(alias.into());
    args
}

/// Delay before the next connect: quick at first, capped, and back to quick after a connection
/// that lasted (a one-off drop should heal in about a second).
pub fn backoff(failures_in_a_row: u32) -> Duration {
    Duration::from_millis((500u64 << failures_in_a_row.min(5)).min(10_000))
}

/// Runs the supervisor loop until SIGTERM/SIGINT. `desired` is asked for the ports (with their mapped
/// ports as `local`) before each connect, so services that appeared since are added; `None` keeps the
/// last known ports. Each connect forwards from the ports [`choose_local_ports`] picks.
pub async fn supervise<F, Fut>(
    home: &Path,
    workspace: &str,
    alias: &str,
    user_config: &Path,
    mut desired: F,
) -> std::io::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Vec<PortForward>>>,
{
    use tokio::signal::unix::{signal as unix_signal, SignalKind};
    std::fs::create_dir_all(state_dir(home))?;
    let mut term = unix_signal(SignalKind::terminate())?;
    let mut int = unix_signal(SignalKind::interrupt())?;
    let mut state = ForwardState {
        workspace: workspace.to_string(),
        pid: std::process::id(),
        ssh_pid: None,
        ports: Vec::new(),
        connects: 0,
        log: log_path(home, workspace),
    };
    let mut failures = 0u32;
    let mut wanted = Vec::new();
    let mut told = Vec::new();
    loop {
        if let Some(ports) = desired().await {
            wanted = ports;
        }
        let mut notices = Vec::new();
        state.ports = choose_local_ports(home, workspace, &wanted, |n| notices.push(n));
        if notices != told {
            for n in &notices {
                eprintln!("[{}] {n}", stamp());
            }
            told = notices;
        }
        if state.ports.is_empty() {
            eprintln!("[{}] no services with ports yet; checking again in 5 s", stamp());
            write_state(home, &state)?;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        let args = ssh_args(user_config, alias, &state.ports);
        let mut child = tokio::process::Command::new("ssh").args(&args).kill_on_drop(true).spawn()?;
        state.ssh_pid = child.id();
        state.connects += 1;
        write_state(home, &state)?;
        let ports: Vec<String> = state.ports.iter().map(|p| format!("{}→{}", p.local, p.remote)).collect();
        eprintln!("[{}] connecting (#{}) {alias}: {}", stamp(), state.connects, ports.join(", "));
        let started = std::time::Instant::now();
        let status = tokio::select! {
            s = child.wait() => s?,
            _ = term.recv() => { let _ = child.kill().await; break; }
            _ = int.recv() => { let _ = child.kill().await; break; }
        };
        state.ssh_pid = None;
        write_state(home, &state)?;
        failures = if started.elapsed() > Duration::from_secs(30) { 0 } else { failures + 1 };
        let wait = backoff(failures);
        eprintln!("[{}] ssh ended ({status}); reconnecting in {:.1} s", stamp(), wait.as_secs_f64());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    eprintln!("[{}] stopped", stamp());
    let _ = std::fs::remove_file(state_path(home, workspace));
    Ok(())
}

fn stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{:02}:{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

fn write_state(home: &Path, state: &ForwardState) -> std::io::Result<()> {
    write_atomically(&state_path(home, &state.workspace), &serde_json::to_vec_pretty(state).expect("state serializes"))
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// Waits until every local port accepts connections, up to `timeout`; returns those that don't.
pub async fn wait_listening(ports: &[PortForward], timeout: Duration) -> Vec<u16> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut missing = Vec::new();
        for p in ports {
            if tokio::net::TcpStream::connect(("127.0.0.1", p.local)).await.is_err() {
                missing.push(p.local);
            }
        }
        if missing.is_empty() || tokio::time::Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn ssh_command_line() {
        let ports = [
            PortForward { service: "web".into(), local: 23000, remote: 3000 },
            PortForward { service: "api".into(), local: 23001, remote: 4000 },
        ];
        let args = ssh_args(Path::new("/h/.ssh/config"), "nexus-site", &ports);
        assert_eq!(&args[..3], ["-F", "/h/.ssh/config", "-N"]);
        assert!(args.windows(2).any(|w| w == ["-o", "ExitOnForwardFailure=yes"]));
        assert!(args.windows(2).any(|w| w == ["-o", "ControlPath=none"]));
        assert!(args.windows(2).any(|w| w == ["-L", "127.0.0.1:23000:localhost:3000"]));
        assert!(args.windows(2).any(|w| w == ["-L", "127.0.0.1:23001:localhost:4000"]));
        assert_eq!(args.last().unwrap(), "nexus-site");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), Duration::from_secs(10));
    }

    #[test]
    fn stale_records_are_dropped_and_live_ones_listed() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(state_dir(home.path())).unwrap();
        let mut s = ForwardState {
            workspace: "site".into(),
            pid: std::process::id(),
            ssh_pid: None,
            ports: vec![],
            connects: 1,
            log: log_path(home.path(), "site"),
        };
        write_state(home.path(), &s).unwrap();
        s.workspace = "gone".into();
        s.pid = u32::MAX - 1;
        write_state(home.path(), &s).unwrap();
        let live = all_running(home.path());
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].workspace, "site");
        assert!(!state_path(home.path(), "gone").exists());
        assert!(running(home.path(), "site").is_some());
    }

    /// A listener that answers every connection with `reply`, like a dev server would with its page.
    /// A workspace `site` whose ssh entry (in a fresh home) leads to a real sshd on this machine, so
    /// its "services" are listeners here. Keep the key and sshd alive for the test.
    pub(crate) fn site_behind_sshd(
    ) -> (nexus_testkit::ssh::TestKey, nexus_testkit::ssh::Sshd, tempfile::TempDir, crate::ssh_config::SshFiles) {
        let key = nexus_testkit::ssh::TestKey::generate("nexus-test");
        let sshd = nexus_testkit::ssh::Sshd::start(&key);
        let home = tempfile::tempdir().unwrap();
        let files = crate::ssh_config::SshFiles::with_runtime_dir(home.path(), None);
        files
            .upsert(&crate::ssh_config::SshEntry {
                name: "site".into(),
                id: "ws-1".into(),
                host: "127.0.0.1".into(),
                port: sshd.port,
                user: sshd.user.clone(),
                identity_file: key.path.clone(),
                host_key: Some(sshd.host_key.clone()),
                forward_agent: false,
            })
            .unwrap();
        (key, sshd, home, files)
    }

    pub(crate) fn answering(reply: &'static str) -> u16 {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        port
    }

    /// What the listener on `port` answers.
    pub(crate) fn answer(port: u16) -> String {
        use std::io::Read as _;
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut text = String::new();
        let _ = conn.read_to_string(&mut text);
        text
    }

    /// Regression (bug c): a mapped port something else listens on was forwarded anyway (ssh failed
    /// and the printed URL showed the other program).
    #[test]
    fn a_taken_mapped_port_moves_to_a_free_port_and_stays_there() {
        let home = tempfile::tempdir().unwrap();
        let taken = answering("other program\n");
        let free = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
        let wanted = [
            PortForward { service: "web".into(), local: taken, remote: 3000 },
            PortForward { service: "api".into(), local: free, remote: 4000 },
        ];
        let mut notices = Vec::new();
        let chosen = choose_local_ports(home.path(), "site", &wanted, |n| notices.push(n));
        let web = chosen[0].local;
        assert_ne!(web, taken);
        assert!(port_is_free(web));
        assert_eq!((chosen[0].remote, chosen[1].local), (3000, free), "the free one stays on its mapped port");
        assert_eq!(notices, [format!("{taken} is in use on this machine; web is on http://localhost:{web}")]);

        // The next connect keeps the URL, and says why.
        let again = choose_local_ports(home.path(), "site", &wanted, |_| {});
        assert_eq!(again, chosen);
        // So does asking while the forwarder runs and holds the port.
        let holding = std::net::TcpListener::bind(("127.0.0.1", web)).unwrap();
        let state = ForwardState {
            workspace: "site".into(),
            pid: std::process::id(),
            ssh_pid: None,
            ports: chosen.clone(),
            connects: 1,
            log: log_path(home.path(), "site"),
        };
        write_state(home.path(), &state).unwrap();
        assert_eq!(choose_local_ports(home.path(), "site", &wanted, |_| {}), chosen);
        drop(holding);
        std::fs::remove_file(state_path(home.path(), "site")).unwrap();
        // Another workspace does not take it, though it is free until the forward starts.
        let other = [PortForward { service: "web".into(), local: taken, remote: 3000 }];
        assert_ne!(choose_local_ports(home.path(), "blog", &other, |_| {})[0].local, web);
        // Once the other program is gone, the service still stays where its URL was.
        let mut notices = Vec::new();
        let unmapped = [PortForward { service: "web".into(), local: free, remote: 3000 }];
        assert_eq!(choose_local_ports(home.path(), "docs", &unmapped, |n| notices.push(n))[0].local, free);
        assert!(notices.is_empty(), "{notices:?}");
    }

    /// Regression (bug c), end to end: the forwarder on a real ssh to a real sshd, with the service's
    /// mapped port taken by another program, forwards from another port, records it for `nexus
    /// workspace ports`, and that port answers with the service.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_forwarder_serves_a_taken_mapped_port_from_a_free_one() {
        let (_key, sshd, home, files) = site_behind_sshd();
        // The "workspace" is this machine: sshd forwards to the service's port here.
        let service = answering("the workspace's web service\n");
        let taken = answering("other program\n");
        let wanted = vec![PortForward { service: "web".into(), local: taken, remote: service }];
        let forwarder = supervise(home.path(), "site", "nexus-site", &files.user_config, || {
            let wanted = wanted.clone();
            async move { Some(wanted) }
        });
        // Checked while the forwarder runs: dropping it stops its ssh.
        let check = async {
            let state = loop {
                match running(home.path(), "site") {
                    Some(state) if state.ssh_pid.is_some() => break state,
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            assert!(wait_listening(&state.ports, Duration::from_secs(20)).await.is_empty(), "{}", sshd.log());
            let local = state.ports[0].local;
            (local, tokio::task::block_in_place(|| answer(local)))
        };
        let (local, answered) = tokio::select! {
            r = forwarder => panic!("the forwarder stopped: {r:?}\n{}", sshd.log()),
            checked = tokio::time::timeout(Duration::from_secs(30), check) => checked.expect("the forward comes up"),
        };
        assert_ne!(local, taken, "`nexus workspace ports` shows the port the service is on");
        assert_eq!(answered, "the workspace's web service\n");
        assert_eq!(answer(taken), "other program\n", "the other program keeps its port");
    }
}
