//! Background port forwards for a workspace's services: one supervisor process per workspace runs
//! `ssh -N -L ...` and starts it again whenever the connection drops (laptop sleep, network change,
//! a killed ssh), so `http://localhost:<mapped_port>` keeps working without a terminal open.
//!
//! The supervisor records itself in `~/.nexus/forwards/<workspace>.json` (its pid, the current ssh
//! pid, the ports) so `nexus workspace ports` can show and stop it; its log is next to it.

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

/// Runs the supervisor loop until SIGTERM/SIGINT. `desired` is asked for the ports before each
/// connect (so services that appeared since are added); `None` keeps the last known ports.
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
    loop {
        if let Some(ports) = desired().await {
            state.ports = ports;
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
    let path = state_path(home, &state.workspace);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state).expect("state serializes"))?;
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
mod tests {
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
}
