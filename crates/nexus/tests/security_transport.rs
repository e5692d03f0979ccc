//! Attack tests for issue 10 item 6 (transport): tokens over plain HTTP to another machine, and
//! HTTPS served by the server itself with clients trusting a CA they are given. Real `nexus`
//! processes; certificates made here with the `openssl` command.

use std::io::Read;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nexus"))
}

/// This machine's address on its outward interface (not loopback), if it has one.
fn outward_ip() -> Option<IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("198.51.100.1:9").ok()?;
    Some(probe.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// A listener on every interface that records what clients send (and answers nothing useful).
fn eavesdropper() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 8192];
            if let Ok(n) = conn.read(&mut buf) {
                record.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
    });
    (port, seen)
}

fn run_cli(home: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap()).env("HOME", home).env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Issue 10 item 6: the CLI sent `Authorization: Bearer <token>` over plain HTTP to any host.
#[test]
fn the_cli_does_not_send_its_token_over_plain_http_to_another_machine() {
    let Some(ip) = outward_ip() else {
        eprintln!("no outward interface; skipped");
        return;
    };
    let (port, seen) = eavesdropper();
    let home = tempfile::tempdir().unwrap();
    let server = format!("http://{ip}:{port}");
    let (ok, out) = run_cli(home.path(), &["workspace", "list", "--server", &server], &[("NEXUS_TOKEN", "nxt_canary")]);
    assert!(!ok, "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let heard = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(!heard.contains("nxt_canary"), "the token crossed the network in the clear:\n{heard}");
    assert!(out.contains("plain HTTP") && out.contains("--insecure"), "{out}");
    // Told to, it does: the flag is the one way to opt in.
    let (_, out) = run_cli(
        home.path(),
        &["--insecure", "workspace", "list", "--server", &server],
        &[("NEXUS_TOKEN", "nxt_canary")],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(String::from_utf8_lossy(&seen.lock().unwrap()).contains("nxt_canary"), "--insecure was ignored: {out}");
}

/// Issue 10 item 6: the agent sent the join token over plain HTTP (and `ws://`) to any host.
#[tokio::test]
async fn the_agent_does_not_send_its_join_token_over_plain_http_to_another_machine() {
    let Some(ip) = outward_ip() else {
        eprintln!("no outward interface; skipped");
        return;
    };
    let (port, seen) = eavesdropper();
    let config = nexus_agent::AgentConfig::new(format!("http://{ip}:{port}"), "nxj_canary", "node-a");
    let provider = Arc::new(nexus_agent::fake::FakeProvider::new());
    let ran =
        tokio::time::timeout(Duration::from_secs(5), nexus_agent::run(config, provider, std::future::pending::<()>()))
            .await;
    let err = match ran {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => panic!("the agent ended without an error"),
        Err(_) => panic!("the agent kept trying to reach a plain-HTTP server on another machine"),
    };
    assert!(err.contains("plain HTTP"), "{err}");
    assert!(!String::from_utf8_lossy(&seen.lock().unwrap()).contains("nxj_canary"), "the join token was sent");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A throwaway CA (`ca.pem`) and a certificate it signed for 127.0.0.1 and localhost
/// (`server.pem`, `server.key`).
fn make_certificates(dir: &Path) {
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
    openssl(
        dir,
        &["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=Nexus test CA", "-days", "2", "-out", "ca.pem"],
    );
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.ec.key"]);
    openssl(dir, &["pkcs8", "-topk8", "-nocrypt", "-in", "server.ec.key", "-out", "server.key"]);
    openssl(dir, &["req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr"]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 10 item 6: the server spoke plain HTTP only. Given `--tls-cert/--tls-key` it serves HTTPS;
/// the CLI trusts a CA it is given (`--ca-cert`), the agent the system's store (`SSL_CERT_FILE`).
#[tokio::test]
async fn the_server_serves_https_and_clients_trust_the_ca_they_are_given() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let data = tempfile::tempdir().unwrap();
    let port = nexus_testkit::free_port();
    let log = std::fs::File::create(data.path().join("server.log")).unwrap();
    let _server = KillOnDrop(
        Command::new(bin())
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data.path().join("d"))
            .args(["--github-api-url", "http://127.0.0.1:9", "--ssh-port-range", "42200-42203"])
            .arg("--tls-cert")
            .arg(certs.path().join("server.pem"))
            .arg("--tls-key")
            .arg(certs.path().join("server.key"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.pem")).unwrap()).unwrap();
    let trusting = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = trusting.get(format!("{url}/health")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        let log = std::fs::read_to_string(data.path().join("server.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "no HTTPS health answer; server log:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Plain HTTP gets no HTTP answer from an HTTPS port; an untrusted certificate is refused.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/health")).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200, "the server answered plain HTTP");
    assert!(reqwest::get(format!("{url}/health")).await.is_err(), "a certificate from an unknown CA was accepted");

    // Issue 11 item 2 over TLS: a request whose headers never finish is cut off, as on plain HTTP
    // (before: the HTTPS listener had no header-read timeout, so the connection stayed open).
    let mut slow = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}"), "-CAfile"])
        .arg(certs.path().join("ca.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = slow.stdin.take().unwrap();
        stdin.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
        stdin.flush().unwrap();
        let started = Instant::now();
        let closed = loop {
            if let Some(status) = slow.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > Duration::from_secs(25) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = slow.kill();
        drop(stdin);
        assert!(closed.is_some(), "a half-sent request over TLS was still open after 25 s");
        eprintln!("half-sent request over TLS cut off after {:?}", started.elapsed());
    }

    // The CLI: with `--ca-cert`, the server answers (401 for a made-up token); without, TLS fails.
    let home = tempfile::tempdir().unwrap();
    let ca_path = certs.path().join("ca.pem").display().to_string();
    let (ok, out) = run_cli(
        home.path(),
        &["--ca-cert", &ca_path, "workspace", "list", "--server", &url],
        &[("NEXUS_TOKEN", "nxt_made_up")],
    );
    assert!(!ok && !out.contains("cannot reach"), "the CLI did not get an answer over HTTPS: {out}");
    let (ok, out) = run_cli(home.path(), &["workspace", "list", "--server", &url], &[("NEXUS_TOKEN", "nxt_made_up")]);
    assert!(!ok && out.contains("cannot reach"), "{out}");

    // The agent: enrolled (over HTTPS, with the CA) and connected by `wss://`, trusting the CA
    // through the system store's SSL_CERT_FILE.
    let join = std::fs::read_to_string(data.path().join("d/join-token")).unwrap().trim().to_string();
    let operator = std::fs::read_to_string(data.path().join("d/operator-token")).unwrap().trim().to_string();
    let enrolled: serde_json::Value = trusting
        .post(format!("{url}{}", nexus_types::protocol::ENROL_PATH))
        .bearer_auth(&join)
        .json(&serde_json::json!({"node_name": "node-tls", "lxd_project": "sim-tls"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let credential = enrolled["credential"].as_str().unwrap_or_else(|| panic!("{enrolled}")).to_string();
    std::env::set_var("SSL_CERT_FILE", certs.path().join("ca.pem"));
    let mut config = nexus_agent::AgentConfig::new(url.clone(), "", "node-tls");
    config.credential = Some(credential);
    config.lxd_project = "sim-tls".into();
    config.heartbeat = Duration::from_millis(200);
    let provider = Arc::new(nexus_agent::fake::FakeProvider::new());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(nexus_agent::run(config, provider, async move {
        let _ = stopped.await;
    }));
    nexus_testkit::eventually(Duration::from_secs(20), "the agent connected over wss://", || {
        let (trusting, url, operator) = (trusting.clone(), url.clone(), operator.clone());
        async move {
            let nodes: serde_json::Value = trusting
                .get(format!("{url}/api/v1/nodes"))
                .bearer_auth(operator)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            nodes["nodes"].as_array()?.iter().any(|n| n["name"] == "node-tls" && n["status"] == "ok").then_some(())
        }
    })
    .await;
}
