//! Test kit: starts real Nexus components and stand-ins on ephemeral ports, and waits by polling
//! readiness, never by sleeping a fixed time.

pub mod api;
pub mod git;
pub mod git_dumb_http;
pub mod git_http;
pub mod github;
pub mod github_openapi;
pub mod lxd;
pub mod openmetrics;
pub mod process;
pub mod ssh;

use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` consecutive free ports, for an SSH port range.
pub fn free_port_range(n: u16) -> (u16, u16) {
    for _ in 0..200 {
        let base = free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let all_free = (base..base + n).all(|p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok());
        if all_free {
            return (base, base + n - 1);
        }
    }
    panic!("no run of {n} free ports found");
}
