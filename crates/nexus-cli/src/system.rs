//! Running host commands, behind a trait so set-up logic can be unit-tested with a recording fake.

use std::process::Stdio;

/// What a finished command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// What it wrote to stdout (lossily decoded as UTF-8).
    pub stdout: String,
    /// What it wrote to stderr (likewise).
    pub stderr: String,
}

impl Output {
    /// Exit code 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// Runs programs on the host.
pub trait System: Send + Sync {
    /// Runs `argv` to completion with `stdin` fed in, capturing output.
    fn run(&self, argv: &[&str], stdin: Option<&str>) -> std::io::Result<Output>;
    /// Runs `argv` with output streaming to the terminal (long steps like apt and debootstrap).
    fn run_visible(&self, argv: &[&str]) -> std::io::Result<i32>;
    /// Starts a long-lived daemon in its own session with its output appended to `log`, returning once it
    /// is forked. The daemon must not inherit our pipes: a captured stdout would never reach end-of-file.
    fn spawn_detached(&self, argv: &[&str], log: &str) -> std::io::Result<i32>;
}

/// The real host.
pub struct HostSystem;

impl System for HostSystem {
    fn run(&self, argv: &[&str], stdin: Option<&str>) -> std::io::Result<Output> {
        use std::io::Write as _;
        let mut cmd = std::process::Command::new(argv[0]);
        cmd.args(&argv[1..]).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn()?;
        if let Some(input) = stdin {
            if let Some(mut pipe) = child.stdin.take() {
                pipe.write_all(input.as_bytes())?;
            }
        }
        let out = child.wait_with_output()?;
        Ok(Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn run_visible(&self, argv: &[&str]) -> std::io::Result<i32> {
        // Child output goes to stderr so stdout stays clean for scripts.
        let status = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(std::io::stderr())
            .stderr(Stdio::inherit())
            .status()?;
        Ok(status.code().unwrap_or(-1))
    }

    fn spawn_detached(&self, argv: &[&str], log: &str) -> std::io::Result<i32> {
        if let Some(dir) = std::path::Path::new(log).parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let status = std::process::Command::new("setsid")
            .arg("-f")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()?;
        Ok(status.code().unwrap_or(-1))
    }
}

/// Records commands and answers from a script: the first rule whose prefix matches the command line.
/// For tests only (this crate's, and others' with the `testing` feature).
#[cfg(any(test, feature = "testing"))]
#[derive(Default)]
pub struct FakeSystem {
    /// (command-line prefix, answer).
    pub rules: Vec<(String, Output)>,
    /// Every command line run, in order.
    pub calls: std::sync::Mutex<Vec<String>>,
    /// Inputs fed to commands, by command line.
    pub stdin: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

#[cfg(any(test, feature = "testing"))]
impl FakeSystem {
    /// Adds a rule: commands starting with `prefix` exit with `code` and print `stdout`.
    pub fn on(mut self, prefix: &str, code: i32, stdout: &str) -> Self {
        self.rules.push((prefix.to_string(), Output { code, stdout: stdout.into(), stderr: String::new() }));
        self
    }

    /// The command lines run so far.
    pub fn calls(&self) -> Vec<String> {
        nexus_types::diagnostics::lock(&self.calls).clone()
    }

    fn answer(&self, line: &str) -> Output {
        self.rules.iter().find(|(p, _)| line.starts_with(p.as_str())).map(|(_, o)| o.clone()).unwrap_or_default()
    }
}

#[cfg(any(test, feature = "testing"))]
impl System for FakeSystem {
    fn run(&self, argv: &[&str], stdin: Option<&str>) -> std::io::Result<Output> {
        let line = argv.join(" ");
        nexus_types::diagnostics::lock(&self.calls).push(line.clone());
        if let Some(s) = stdin {
            nexus_types::diagnostics::lock(&self.stdin).insert(line.clone(), s.to_string());
        }
        Ok(self.answer(&line))
    }

    fn run_visible(&self, argv: &[&str]) -> std::io::Result<i32> {
        let line = argv.join(" ");
        nexus_types::diagnostics::lock(&self.calls).push(line.clone());
        Ok(self.answer(&line).code)
    }

    fn spawn_detached(&self, argv: &[&str], log: &str) -> std::io::Result<i32> {
        let line = format!("detached {} > {log}", argv.join(" "));
        nexus_types::diagnostics::lock(&self.calls).push(line.clone());
        Ok(self.answer(&line).code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_daemon_does_not_hold_us_until_it_exits() {
        // Regression: `node init` hung in CI because the daemon inherited captured pipes.
        let dir = std::env::temp_dir().join(format!("nexus-detached-{}", std::process::id()));
        let log = dir.join("out.log");
        let marker = dir.join("pid");
        let script = format!("echo started; echo $$ > {}; exec sleep 60", marker.display());
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.to_str().unwrap().to_string();
        std::thread::spawn(move || {
            let _ = tx.send(HostSystem.spawn_detached(&["sh", "-c", &script], &log_path));
        });
        let code = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("spawn_detached returned").unwrap();
        assert_eq!(code, 0);
        // The daemon is alive after we returned, and writes to its log.
        let mut pid = String::new();
        for _ in 0..100 {
            pid = std::fs::read_to_string(&marker).unwrap_or_default();
            if !pid.trim().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let pid = pid.trim().to_string();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "daemon {pid:?} is running");
        assert!(std::fs::read_to_string(&log).unwrap().contains("started"));
        let _ = std::process::Command::new("kill").arg(&pid).status();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
