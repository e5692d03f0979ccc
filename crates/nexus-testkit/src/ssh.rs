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

/// `ssh` to `dev@host -p port` with `key`, non-interactively, running `command`; `options`
/// (`-o` values such as `ConnectTimeout=120`) come first, so they win over the defaults here.
pub fn command(host: &str, port: u16, key: &TestKey, options: &[&str], command: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null"]);
    for o in options {
        cmd.args(["-o", o]);
    }
    cmd.args([
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
    .args(["-p", &port.to_string(), &format!("dev@{host}"), command]);
    cmd
}

/// Runs `command` as `dev@host -p port` with `key`, non-interactively.
pub fn run(host: &str, port: u16, key: &TestKey, command: &str) -> SshOutput {
    let out = self::command(host, port, key, &[], command).output().expect("ssh is installed");
    SshOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Where Debian and most distributions install the OpenSSH server.
const SSHD: &str = "/usr/sbin/sshd";

/// A real OpenSSH server on `127.0.0.1`, run as the current user with a throwaway host key, accepting
/// the given key: for tests of what the system `ssh` client does with the config Nexus writes
/// (connection sharing, port forwards). Stopped when dropped.
pub struct Sshd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    /// The port it listens on.
    pub port: u16,
    /// The user to log in as: the one running the tests.
    pub user: String,
    /// Its host key (`ssh-ed25519 AAAA...`), to pin.
    pub host_key: String,
}

impl Sshd {
    /// Starts sshd accepting `key`. Fails (never skips) when the OpenSSH server is missing: the
    /// test command installs it (`scripts/prereqs.sh`), and a skipped test would hide the bug it pins.
    pub fn start(key: &TestKey) -> Sshd {
        assert!(
            std::path::Path::new(SSHD).exists(),
            "{SSHD} is not installed: run `scripts/test.sh` (it installs the test prerequisites) or `apt-get install openssh-server`"
        );
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("host_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "nexus-test-sshd", "-f"])
            .arg(&host_key)
            .output()
            .expect("ssh-keygen is installed");
        assert!(out.status.success(), "ssh-keygen failed");
        let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let public: Vec<&str> = public.split_whitespace().take(2).collect();
        std::fs::write(dir.path().join("authorized_keys"), format!("{}\n", key.public)).unwrap();
        let user = current_user();
        // As root, sshd wants its privilege separation directory, which only its service creates.
        if user == "root" {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let port = crate::free_port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nAllowTcpForwarding yes\nLogLevel ERROR\n",
                host_key.display(),
                dir.path().join("authorized_keys").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        let mut sshd = Sshd { child, dir, port, user, host_key: public.join(" ") };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!("sshd exited ({status}): {}", sshd.log());
            }
            assert!(std::time::Instant::now() < deadline, "sshd did not listen on {port}: {}", sshd.log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        sshd
    }

    /// What sshd logged, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The user running the tests, as sshd knows them.
fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
