//! The rule every Nexus client applies before sending a token (issue 10, item 6): plain `http://`
//! (or `ws://`) only to this machine, unless the caller said `--insecure`. Tokens (API, join, GitHub)
//! travel in headers and bodies, so over plain HTTP anyone on the path can read them.

/// Why `url` must not be used without `--insecure`: plain HTTP or WebSocket to a host that is not
/// loopback. `None` when it is fine: `https://`, `wss://`, or a loopback host (`localhost`,
/// `127.0.0.0/8`, `::1`), where nothing leaves the machine.
pub fn plain_http_refusal(url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let rest = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("ws://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if is_loopback_host(host) {
        return None;
    }
    Some(format!("{url} is plain HTTP to another machine: tokens sent to it can be read by anyone on the network path"))
}

/// The hint that goes with [`plain_http_refusal`].
pub const PLAIN_HTTP_HINT: &str = "use the server's `https://` URL (the server needs `--tls-cert`/`--tls-key`, or a \
     TLS proxy in front); to send tokens in the clear anyway, on a network you trust, pass `--insecure` (or set \
     NEXUS_INSECURE=1)";

/// `localhost`, `*.localhost`, `127.0.0.0/8` and `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether an environment variable such as `NEXUS_INSECURE` is set to a true value.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://nexus.example.com",
            "wss://nexus.example.com/api/v1/agents/connect",
            "http://127.0.0.1:3001",
            "http://127.0.0.5:3001",
            "http://localhost:3001/",
            "http://[::1]:3001",
            "ws://127.0.0.1:3001/x",
        ] {
            assert_eq!(plain_http_refusal(ok), None, "{ok}");
        }
        for bad in [
            "http://nexus.example.com:3001",
            "http://10.0.0.5:3001",
            "ws://10.0.0.5:3001/api",
            "HTTP://nexus.example.com",
            "http://127.0.0.1.evil.example:3001",
            "http://localhost@evil.example",
            "http://[::2]:3001",
        ] {
            assert!(plain_http_refusal(bad).is_some(), "{bad}");
        }
    }
}
