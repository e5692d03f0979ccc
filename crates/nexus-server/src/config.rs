//! The server's settings, with the defaults the CLI documents.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default REST listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:3001";
/// Default GitHub API base URL.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
/// Default base URL `owner/name` repos are cloned from.
pub const DEFAULT_GIT_BASE_URL: &str = "https://github.com";
/// Default SSH forwarding port range (inclusive).
pub const DEFAULT_SSH_PORTS: (u16, u16) = (2222, 2299);

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the SQLite database and the tokens live.
    pub data_dir: PathBuf,
    /// GitHub API base URL used to verify registrations.
    pub github_api_url: String,
    /// Base URL `owner/name` repos resolve against (GitHub's web URL).
    pub git_base_url: String,
    /// OAuth app client id the CLI uses for GitHub's device flow.
    pub github_client_id: Option<String>,
    /// Inclusive SSH port range.
    pub ssh_ports: (u16, u16),
    /// Address the SSH forward listeners bind to (the REST listener's IP by default).
    pub ssh_bind_ip: std::net::IpAddr,
    /// Host name users are told to SSH to; the request's `Host` when unset.
    pub public_host: Option<String>,
    /// A node without a heartbeat for this long is unresponsive.
    pub node_timeout: Duration,
    /// Heartbeat interval agents are told to use.
    pub heartbeat: Duration,
    /// How long stop/start/delete wait for the node before answering.
    pub op_timeout: Duration,
    /// CPU limit when the request names none.
    pub default_cpu: u32,
    /// Memory limit when the request names none.
    pub default_memory: String,
    /// Extra CLI binaries served at `/download/nexus-<os>-<arch>` (files with exactly those names);
    /// the server's own executable is always served for its platform. None by default.
    pub binaries_dir: Option<PathBuf>,
}

impl ServerConfig {
    /// A config with the documented defaults, storing data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        ServerConfig {
            data_dir,
            github_api_url: DEFAULT_GITHUB_API_URL.into(),
            git_base_url: DEFAULT_GIT_BASE_URL.into(),
            github_client_id: None,
            ssh_ports: DEFAULT_SSH_PORTS,
            ssh_bind_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            public_host: None,
            node_timeout: Duration::from_secs(15),
            heartbeat: Duration::from_secs(2),
            op_timeout: Duration::from_secs(120),
            default_cpu: 2,
            default_memory: "4GB".into(),
            binaries_dir: None,
        }
    }

    /// Path of the SQLite database.
    pub(crate) fn db_path(&self) -> PathBuf {
        self.data_dir.join("nexus.sqlite3")
    }
}

/// Parses `lo-hi` into an inclusive port range.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s.split_once('-').ok_or_else(|| format!("{s:?} is not `low-high`, e.g. `2222-2299`"))?;
    let lo: u16 = lo.trim().parse().map_err(|_| format!("{lo:?} is not a port number"))?;
    let hi: u16 = hi.trim().parse().map_err(|_| format!("{hi:?} is not a port number"))?;
    if lo == 0 || lo > hi {
        return Err(format!("port range {s:?} is empty or starts at 0; use e.g. `2222-2299`"));
    }
    Ok((lo, hi))
}

/// The address the REST API binds to, parsed.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("{s:?} is not `ip:port`, e.g. `0.0.0.0:3001`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("2222-2299"), Ok((2222, 2299)));
        assert_eq!(parse_port_range("5-5"), Ok((5, 5)));
        assert!(parse_port_range("10-5").is_err());
        assert!(parse_port_range("0-5").is_err());
        assert!(parse_port_range("abc").is_err());
    }
}
