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
/// Default bound on the creates/starts a node works on at once (`bench/burst.rs` measured it).
pub const DEFAULT_PARALLEL_STARTS_PER_NODE: usize = 8;
/// Default time without an SSH connection after which a running workspace is stopped.
pub const DEFAULT_IDLE_STOP: Duration = Duration::from_secs(30 * 60);
/// Default SSH forwarding port range (inclusive).
pub const DEFAULT_SSH_PORTS: (u16, u16) = (2222, 2299);

/// Default number of workspaces one user may have.
pub const DEFAULT_MAX_WORKSPACES_PER_USER: u32 = 5;
/// Default largest CPU limit of a workspace.
pub const DEFAULT_MAX_CPU: u32 = 8;
/// Default largest memory limit of a workspace.
pub const DEFAULT_MAX_MEMORY: &str = "16GB";
/// Default root disk size of a workspace.
pub const DEFAULT_MAX_DISK: &str = "20GB";

/// A secret read from a file; `Debug` prints no part of it, so the config can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(pub String);

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// Default lifetime of an API token.
pub const DEFAULT_API_TOKEN_TTL: Duration = Duration::from_secs(30 * 86400);

/// Where the server's TLS certificate and key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How long a create waits for a free probe slot before it is answered `busy`. Long enough for a
/// burst (30 creates at once read their repos 8 at a time, each a second or more while the node is
/// busy starting containers; `bench/burst.rs` saw 6 of 30 refused at 5 s): a create is a
/// minute-long operation, so waiting in line beats failing. Floods are bounded by the per-user
/// create rate and the API's connection cap, not by refusing early.
pub const DEFAULT_PROBE_QUEUE_WAIT: Duration = Duration::from_secs(30);

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
    /// Most creates/starts a node works on at once; the rest wait their turn (0 = no bound).
    pub parallel_starts_per_node: usize,
    /// A running workspace with no SSH connection through the server for this long is stopped (its
    /// data kept; the next SSH connection starts it again). `None`: never.
    pub idle_stop: Option<Duration>,
    /// How often idle workspaces are looked for.
    pub idle_check_every: Duration,
    /// Workspaces one user may have at once (each takes an SSH port and a container); 0: no limit.
    pub max_workspaces_per_user: u32,
    /// Largest CPU limit a workspace may ask for (request or `.nexus/config.yaml`).
    pub max_cpu: u32,
    /// Largest memory limit a workspace may ask for (`64GB`).
    pub max_memory: String,
    /// Size of every workspace's root disk (its share of the node's storage pool, `20GB`); sent to
    /// the node, which caps it at its own `--workspace-disk`.
    pub max_disk: String,
    /// Extra CLI binaries served at `/download/nexus-<os>-<arch>` (files with exactly those names);
    /// the server's own executable is always served for its platform. None by default.
    pub binaries_dir: Option<PathBuf>,
    /// Hosts besides the git base URL's that repo URLs may name, `[scheme://]host[:port|:*]`
    /// (`--allow-git-host`); https when no scheme is given. None by default.
    pub allowed_git_hosts: Vec<String>,
    /// Whether git hosts may resolve to loopback, private or link-local addresses
    /// (`--allow-private-git-hosts`); addresses written into the git base URL or the allow-list are
    /// allowed anyway. Off by default.
    pub allow_private_git_hosts: bool,
    /// Most repository probes (git runs for a create) at once; more wait up to
    /// [`PROBE_QUEUE_WAIT`] and are then told the server is busy. 8 by default.
    pub max_concurrent_probes: usize,
    /// How long a create waits in line for a probe slot before it is answered `busy`
    /// ([`DEFAULT_PROBE_QUEUE_WAIT`]).
    pub probe_queue_wait: Duration,
    /// Creates that reach git each user may start per minute (a burst of this many, refilled
    /// evenly). 20 by default.
    pub creates_per_minute: u32,
    /// PEM certificate chain and private key: with both, the server speaks HTTPS only
    /// (`--tls-cert`/`--tls-key`). None by default.
    pub tls: Option<TlsFiles>,
    /// GitHub organizations whose active members may register (`--allow-github-org`). With this
    /// and `allow_github_users` both empty, any GitHub user may.
    pub allow_github_orgs: Vec<String>,
    /// GitHub logins that may register (`--allow-github-user`).
    pub allow_github_users: Vec<String>,
    /// The OAuth app's secret (`--github-client-secret-file`): with it (and the client id), a GitHub
    /// token proves an identity only if GitHub says it was issued to this app. None by default.
    pub github_client_secret: Option<ClientSecret>,
    /// How long an API token is valid (`--api-token-ttl-days`, default 30 days).
    pub api_token_ttl: Duration,
    /// The key file that seals tokens kept in the database (`--secrets-key-file`);
    /// `<data-dir>/secrets.key` by default.
    pub secrets_key_file: Option<PathBuf>,
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
            parallel_starts_per_node: DEFAULT_PARALLEL_STARTS_PER_NODE,
            idle_stop: Some(DEFAULT_IDLE_STOP),
            idle_check_every: Duration::from_secs(60),
            max_workspaces_per_user: DEFAULT_MAX_WORKSPACES_PER_USER,
            max_cpu: DEFAULT_MAX_CPU,
            max_memory: DEFAULT_MAX_MEMORY.into(),
            max_disk: DEFAULT_MAX_DISK.into(),
            binaries_dir: None,
            allowed_git_hosts: Vec::new(),
            allow_private_git_hosts: false,
            max_concurrent_probes: 8,
            probe_queue_wait: DEFAULT_PROBE_QUEUE_WAIT,
            creates_per_minute: 20,
            tls: None,
            allow_github_orgs: Vec::new(),
            allow_github_users: Vec::new(),
            github_client_secret: None,
            api_token_ttl: DEFAULT_API_TOKEN_TTL,
            secrets_key_file: None,
        }
    }

    /// Where the key that seals secrets in the database is.
    pub(crate) fn secrets_key_path(&self) -> PathBuf {
        self.secrets_key_file.clone().unwrap_or_else(|| self.data_dir.join("secrets.key"))
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
