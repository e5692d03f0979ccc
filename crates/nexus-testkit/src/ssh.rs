//! SSH from tests with the system `ssh` client and throwaway keys.

use std::path::PathBuf;
use std::process::Command;

/// A throwaway ed25519 key pair.
pub struct TestKey {
    _dir: tempfile::TempDir,
    /// Private key path.
    pub path: PathBuf,
    /// Public key line.
    pub public: String,
}

impl TestKey {
    /// Generates a key with `ssh-keygen`.
    pub fn generate(comment: &str) -> TestKey {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&path)
            .output()
            .expect("ssh-keygen is installed");
        assert!(out.status.success(), "ssh-keygen failed");
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_string();
        TestKey { _dir: dir, path, public }
    }
}

/// Output of one `ssh` run.
#[derive(Debug)]
pub struct SshOutput {
    /// Exit code (255 = ssh itself failed).
    pub code: i32,
    /// Remote stdout.
    pub stdout: String,
    /// ssh's and the remote's stderr.
    pub stderr: String,
}

/// Runs `command` as `dev@host -p port` with `key`, non-interactively.
pub fn run(host: &str, port: u16, key: &TestKey, command: &str) -> SshOutput {
    let out = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(&key.path)
        .args(["-p", &port.to_string(), &format!("dev@{host}"), command])
        .output()
        .expect("ssh is installed");
    SshOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
