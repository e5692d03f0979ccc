//! Running under a supervisor: `nexus node service install` writes units systemd accepts (checked
//! by `systemd-analyze verify`) and refuses flags that would break at boot or leak a token; the
//! server tells systemd it is ready (`READY=1` on `NOTIFY_SOCKET`) once it listens.
//!
//! These machines run no systemd as PID 1, so the units are verified, not booted; the readiness
//! signal is received for real on a datagram socket, as systemd would.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nexus"))
}

fn install(unit_dir: &std::path::Path, role: &str, flags: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .args(["node", "service", "install", role, "--unit-dir"])
        .arg(unit_dir)
        .arg("--")
        .args(flags)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn service_install_writes_units_systemd_accepts_and_refuses_bad_or_leaky_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) =
        install(dir.path(), "server", &["--data-dir", "/var/lib/nexus", "--public-host", "nexus.example.com"]);
    assert!(ok, "{err}");
    let (ok, err) = install(
        dir.path(),
        "agent",
        &["--server", "http://127.0.0.1:3001", "--join-token-file", "/var/lib/nexus/join-token"],
    );
    assert!(ok, "{err}");
    for unit in ["nexus-server.service", "nexus-agent.service"] {
        let path = dir.path().join(unit);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().any(|l| l == "Restart=always") && text.contains("WantedBy=multi-user.target"), "{text}");
        let out =
            Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().expect("systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !stderr.contains(unit), "{unit}: {stderr}");
    }
    let server_unit = std::fs::read_to_string(dir.path().join("nexus-server.service")).unwrap();
    assert!(server_unit.contains(&format!("ExecStart={} server --data-dir /var/lib/nexus", bin().display())));

    // A typo fails now, not at the next boot; a join token on the command line is refused.
    let before = std::fs::read_to_string(dir.path().join("nexus-server.service")).unwrap();
    let (ok, err) = install(dir.path(), "server", &["--data-dirr", "/x"]);
    assert!(!ok && err.contains("--data-dirr") && err.contains("hint:"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("nexus-server.service")).unwrap(), before, "nothing rewritten");
    let (ok, err) = install(dir.path(), "agent", &["--server", "http://127.0.0.1:3001", "--join-token", "nxj_secret"]);
    assert!(!ok && err.contains("--join-token-file"), "{err}");
    assert!(!std::fs::read_to_string(dir.path().join("nexus-agent.service")).unwrap().contains("nxj_secret"));
}

#[test]
fn the_server_tells_systemd_it_is_ready_once_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let port = nexus_testkit::free_port();
    let mut child = Command::new(bin())
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--ssh-port-range", "45100-45101"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let got = socket.recv(&mut buf);
    let health = health_answers(port);
    let _ = child.kill();
    let _ = child.wait();
    let n = got.expect("the server sent a notification within 60 s");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "READY=1");
    assert!(health, "the server answers /health once it said it is ready");
}

/// `GET /health` on the port answers 200 (retried briefly while the port opens).
fn health_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            return resp.starts_with("HTTP/1.1 200");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
