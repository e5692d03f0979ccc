//! The `nexus` command line as clap types: every subcommand, flag and `NEXUS_*` environment variable,
//! declared here once, next to their flags. `main.rs` maps them to the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nexus",
    version,
    about = "Self-hosted remote development workspaces on LXD",
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Allow plain http:// to a server on another machine: tokens then cross the network readable.
    /// Loopback (127.0.0.1, localhost) never needs it.
    #[arg(long, global = true, env = "NEXUS_INSECURE")]
    pub(crate) insecure: bool,
    /// A CA certificate (PEM) to trust for the server's HTTPS besides the system's, e.g. the one
    /// that signed a self-made server certificate.
    #[arg(long, global = true, env = "NEXUS_CA_CERT")]
    pub(crate) ca_cert: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the coordination server (REST API on :3001, SSH forwarding on 2222-2299).
    #[command(
        after_help = "Examples:\n  nexus server\n  nexus server --listen 127.0.0.1:3001 --data-dir ./data --ssh-port-range 2222-2229"
    )]
    Server(ServerArgs),
    /// Run a node agent that drives this host's LXD for a server.
    #[command(
        after_help = "Examples:\n  nexus agent --server http://staging:3001 --join-token-file /var/lib/nexus/join-token\n  nexus agent --server http://127.0.0.1:3001 --join-token-file node-b.join-token --lxd-project node-b --name node-b --state-dir /var/lib/nexus/agent-b\n\nThe join token only enrols: the agent then keeps its own credential in --state-dir and connects with it."
    )]
    Agent(AgentArgs),
    /// Local staging in one command: node set-up, server, agent and a demo workspace on this machine.
    #[command(
        after_help = "Ends with the Workspace Ready block: an ssh command that works and the demo's service URL.\n\n\
                      Examples:\n  sudo nexus up\n  sudo nexus up --dir /srv/nexus-staging --port 3101"
    )]
    Up {
        /// Where the staging data lives [default: /var/lib/nexus-staging as root, else ~/.nexus/staging].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// API port.
        #[arg(long, default_value_t = nexus_types::defaults::API_PORT)]
        port: u16,
        /// Port of the demo repository's git daemon.
        #[arg(long, default_value_t = nexus_node::staging::DEFAULT_GIT_PORT)]
        git_port: u16,
        /// Print the workspace as JSON instead of the Ready block.
        #[arg(long)]
        json: bool,
    },
    /// Stop local staging (the demo workspace, agent, server); all data is kept for the next `up`.
    #[command(after_help = "Examples:\n  sudo nexus down")]
    Down {
        /// The staging data directory `up` used.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// API port `up` used.
        #[arg(long, default_value_t = nexus_types::defaults::API_PORT)]
        port: u16,
    },
    /// Driver node set-up, and the operator's nodes and join tokens.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Sign in to GitHub (device flow in the browser, or a token).
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Your SSH key: generate, upload to GitHub, register with the server.
    #[command(subcommand)]
    Ssh(SshCommand),
    /// Your workspaces: create, connect, services, logs, pull requests.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// The project's `.nexus/config.yaml`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The audit log: registrations, key changes, workspace and node changes, with time, actor and
    /// source address (operator token).
    #[command(
        after_help = "Examples:\n  sudo nexus audit\n  nexus audit --action workspace.delete --limit 20 --operator-token-file ./operator-token\n  nexus audit --action node --json"
    )]
    Audit {
        /// Newest entries to show (1-1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Only this action (`workspace.delete`) or group (`workspace`, `user`, `node`).
        #[arg(long)]
        action: Option<String>,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Print the server's OpenAPI document.
    Openapi,
}

/// What every workspace command needs to reach the server, and its output format.
#[derive(Args)]
pub(crate) struct ClientArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Server URL [env: NEXUS_SERVER].
    #[arg(long)]
    pub(crate) server: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum AuthCommand {
    /// Sign in to GitHub and save the token (0600) in ~/.nexus/config.yaml.
    #[command(
        after_help = "Shows a one-time code and opens GitHub in your browser; approve there and you're signed in.\n\
                      If the GitHub CLI (`gh`) is signed in, you're offered its token instead.\n\n\
                      Examples:\n  nexus auth github --server staging.example.com\n  gh auth token | nexus auth github --with-token\n  nexus auth github --github-host github.example.com"
    )]
    Github {
        /// Coordination server to use from now on (host, host:port or URL).
        #[arg(long)]
        server: Option<String>,
        /// GitHub host: github.com (default), a GitHub Enterprise host, or a URL.
        #[arg(long)]
        github_host: Option<String>,
        /// OAuth app client id for the device flow [default: the server's].
        #[arg(long, env = "NEXUS_GITHUB_CLIENT_ID")]
        client_id: Option<String>,
        /// Read a token from standard input instead of using the browser.
        #[arg(long)]
        with_token: bool,
        /// Reuse the GitHub CLI's token without asking.
        #[arg(long)]
        use_gh_token: bool,
        /// Sign in again even if the saved token still works.
        #[arg(long)]
        force: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show who you are signed in as, on GitHub and on the server.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Forget the saved GitHub and server tokens.
    Logout,
}

#[derive(Subcommand)]
pub(crate) enum SshCommand {
    /// Create ~/.ssh/id_ed25519 if missing (never overwritten), add it to GitHub, register with the server.
    #[command(after_help = "Examples:\n  nexus ssh setup\n  nexus ssh setup --server staging.example.com --json")]
    Setup {
        /// Server to register with [default: `server:` in ~/.nexus/config.yaml].
        #[arg(long)]
        server: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum PortsCommand {
    /// List running forwards.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop a workspace's forwards.
    Stop {
        /// Workspace name.
        workspace: String,
    },
    /// Run the forwarder in the foreground (what `connect` starts in the background).
    #[command(hide = true)]
    Run {
        /// Workspace name.
        workspace: String,
        /// Server URL [env: NEXUS_SERVER].
        #[arg(long)]
        server: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum WorkspaceCommand {
    /// Create a workspace for a GitHub repo (forking it when you can't push), and wait until it's ready.
    #[command(
        after_help = "Examples:\n  nexus workspace create my-org/my-project\n  nexus workspace create https://github.com/my-org/my-project --branch redesign --name redesign"
    )]
    Create {
        /// `owner/repo` on GitHub, or a git URL (cloned as given: no GitHub sign-in needed).
        repo: String,
        /// Branch to check out [default: the repo's default branch].
        #[arg(long)]
        branch: Option<String>,
        /// Workspace name [default: the repo's name].
        #[arg(long)]
        name: Option<String>,
        /// Clone and run the setup afresh instead of starting from this node's prebuilt workspace
        /// of the repo.
        #[arg(long)]
        no_prebuild: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Open a workspace in your editor over SSH and forward its services' ports.
    #[command(
        after_help = "Examples:\n  nexus workspace connect\n  nexus workspace connect my-project --editor code\n  nexus workspace connect my-project --editor none"
    )]
    Connect {
        /// Workspace name [default: your only workspace].
        workspace: Option<String>,
        /// `cursor`, `code` or `none` [default: `editor:` in ~/.nexus/config.yaml, else cursor].
        #[arg(long)]
        editor: Option<String>,
        /// Don't forward service ports.
        #[arg(long)]
        no_forward: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show or stop the background port forwards.
    #[command(after_help = "Examples:\n  nexus workspace ports\n  nexus workspace ports stop my-project")]
    Ports {
        #[command(subcommand)]
        cmd: Option<PortsCommand>,
    },
    /// Open a shell (or run a command) in a workspace.
    #[command(
        after_help = "Examples:\n  nexus workspace ssh my-project\n  nexus workspace ssh my-project -- git status"
    )]
    Ssh {
        /// Workspace name [default: your only workspace].
        workspace: Option<String>,
        /// Command to run instead of a shell.
        #[arg(last = true)]
        command: Vec<String>,
        /// Server URL [env: NEXUS_SERVER].
        #[arg(long)]
        server: Option<String>,
    },
    /// Push the workspace's branch and open a pull request to the upstream repo.
    #[command(
        after_help = "Examples:\n  nexus workspace pr my-project\n  nexus workspace pr my-project --title \"New hero section\""
    )]
    Pr {
        /// Workspace name [default: your only workspace].
        workspace: Option<String>,
        /// Title [default: the last commit's subject].
        #[arg(long)]
        title: Option<String>,
        /// Description.
        #[arg(long)]
        body: Option<String>,
        /// Branch to merge into [default: upstream's default branch].
        #[arg(long)]
        base: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List your workspaces.
    #[command(after_help = "Examples:\n  nexus workspace list\n  nexus workspace list --json")]
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a workspace: status, SSH command, repo, services.
    #[command(
        after_help = "Examples:\n  nexus workspace status my-project\n  nexus workspace status my-project --json"
    )]
    Status {
        /// Workspace name or id.
        workspace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a workspace (its disk and SSH port are kept).
    Stop {
        /// Workspace name or id.
        workspace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a stopped workspace, or retry a failed one.
    Start {
        /// Workspace name or id.
        workspace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a workspace: container, disk and SSH port. Unpushed work in it is lost.
    Delete {
        /// Workspace name or id.
        workspace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a workspace's services with their status and URLs.
    #[command(
        after_help = "Examples:\n  nexus workspace services my-project\n  nexus workspace services my-project --json | jq '.[].url'"
    )]
    Services {
        /// Workspace name or id.
        workspace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show (or follow) the setup log and service logs of a workspace, over SSH.
    #[command(
        after_help = "Examples:\n  nexus workspace logs my-project\n  nexus workspace logs my-project web -f\n  nexus workspace logs my-project --setup"
    )]
    Logs {
        /// Workspace name or id.
        workspace: String,
        /// A service name (`setup` is the setup log, like `--setup`); all when left out.
        service: Option<String>,
        /// Only the setup log (installing dependencies): `~/.nexus/logs/setup.log` in the workspace.
        #[arg(long, conflicts_with = "service")]
        setup: bool,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// How many lines of history.
        #[arg(short = 'n', long, default_value_t = 200)]
        lines: u32,
        /// SSH private key to try first [default: `ssh.key_path` in ~/.nexus/config.yaml].
        #[arg(long, env = "NEXUS_SSH_KEY")]
        identity: Option<PathBuf>,
        /// Server URL [env: NEXUS_SERVER].
        #[arg(long)]
        server: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Show what Nexus detects in a project without a config, as a `.nexus/config.yaml`.
    #[command(after_help = "Examples:\n  nexus config detect\n  nexus config detect ~/src/my-project --write")]
    Detect {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Save it as `<dir>/.nexus/config.yaml` (refuses to overwrite one).
        #[arg(long)]
        write: bool,
    },
}

#[derive(Args)]
pub(crate) struct ServerArgs {
    /// Address the REST API listens on.
    #[arg(long, env = "NEXUS_LISTEN", default_value = nexus_server::config::DEFAULT_LISTEN)]
    pub(crate) listen: String,
    /// Where the database and tokens live [default: /var/lib/nexus as root, else ~/.nexus/server].
    #[arg(long, env = "NEXUS_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// GitHub API base URL used to verify registrations.
    #[arg(long, env = "NEXUS_GITHUB_API_URL", default_value = nexus_server::config::DEFAULT_GITHUB_API_URL)]
    pub(crate) github_api_url: String,
    /// Base URL that `owner/name` repos are cloned from.
    #[arg(long, env = "NEXUS_GIT_BASE_URL", default_value = nexus_server::config::DEFAULT_GIT_BASE_URL)]
    pub(crate) git_base_url: String,
    /// OAuth app client id handed to `nexus auth github` for GitHub's device flow.
    #[arg(long, env = "NEXUS_GITHUB_CLIENT_ID")]
    pub(crate) github_client_id: Option<String>,
    /// File holding the OAuth app's client secret. With it (and --github-client-id) a GitHub token
    /// proves who a user is only if GitHub says it was issued to this app.
    #[arg(long, env = "NEXUS_GITHUB_CLIENT_SECRET_FILE")]
    pub(crate) github_client_secret_file: Option<PathBuf>,
    /// Let the active members of this GitHub organization register (repeatable). With neither this nor
    /// --allow-github-user, any GitHub user may register.
    #[arg(long = "allow-github-org", value_name = "ORG")]
    pub(crate) allow_github_orgs: Vec<String>,
    /// Let this GitHub login register (repeatable).
    #[arg(long = "allow-github-user", value_name = "LOGIN")]
    pub(crate) allow_github_users: Vec<String>,
    /// Days an API token stays valid; `nexus ssh setup` renews it.
    #[arg(long, env = "NEXUS_API_TOKEN_TTL_DAYS", default_value_t = 30)]
    pub(crate) api_token_ttl_days: u64,
    /// Key file that seals the GitHub tokens kept in the database [default: <data-dir>/secrets.key].
    #[arg(long, env = "NEXUS_SECRETS_KEY_FILE")]
    pub(crate) secrets_key_file: Option<PathBuf>,
    /// Inclusive range of ports forwarded to workspaces' sshd.
    #[arg(long, env = "NEXUS_SSH_PORT_RANGE", default_value = "2222-2299")]
    pub(crate) ssh_port_range: String,
    /// Host name users SSH to [default: the host the client used to reach the API].
    #[arg(long, env = "NEXUS_PUBLIC_HOST")]
    pub(crate) public_host: Option<String>,
    /// Seconds without a heartbeat before a node counts as unresponsive.
    #[arg(long, env = "NEXUS_NODE_TIMEOUT", default_value_t = 15)]
    pub(crate) node_timeout: u64,
    /// Seconds stop/start/delete wait for the node.
    #[arg(long, env = "NEXUS_OP_TIMEOUT", default_value_t = 120)]
    pub(crate) op_timeout: u64,
    /// Creates/starts one node works on at once; the rest wait their turn and show their place
    /// (0: no bound). The default is what `bench/burst.rs` found best on a 2-core node.
    #[arg(long, env = "NEXUS_PARALLEL_STARTS_PER_NODE", default_value_t = nexus_server::config::DEFAULT_PARALLEL_STARTS_PER_NODE)]
    pub(crate) parallel_starts_per_node: usize,
    /// Stop a running workspace after this long without an SSH connection through the server
    /// (data kept; the next SSH connection or `nexus workspace connect` starts it again), e.g.
    /// `30m`, `2h`; `off` never stops one.
    #[arg(long, env = "NEXUS_IDLE_STOP", default_value = "30m", value_parser = parse_idle_stop)]
    pub(crate) idle_stop: IdleStop,
    /// Directory of CLI builds for /install.sh to hand out, named `nexus-<os>-<arch>` (os: linux, darwin;
    /// arch: amd64, arm64); this executable is always served for its own platform.
    #[arg(long, env = "NEXUS_BINARIES_DIR")]
    pub(crate) binaries_dir: Option<PathBuf>,
    /// Workspaces one user may have at once (each holds a container and an SSH port); 0: no limit.
    #[arg(long, env = "NEXUS_MAX_WORKSPACES_PER_USER", default_value_t = nexus_server::config::DEFAULT_MAX_WORKSPACES_PER_USER)]
    pub(crate) max_workspaces_per_user: u32,
    /// Largest CPU limit a workspace may ask for.
    #[arg(long, env = "NEXUS_MAX_CPU", default_value_t = nexus_server::config::DEFAULT_MAX_CPU)]
    pub(crate) max_cpu: u32,
    /// Largest memory limit a workspace may ask for (`16GB`, `512MiB`).
    #[arg(long, env = "NEXUS_MAX_MEMORY", default_value = nexus_server::config::DEFAULT_MAX_MEMORY)]
    pub(crate) max_memory: String,
    /// Root disk size of every workspace (its share of the node's storage pool); nodes cap it at
    /// their own `--workspace-disk`.
    #[arg(long, env = "NEXUS_MAX_DISK", default_value = nexus_server::config::DEFAULT_MAX_DISK)]
    pub(crate) max_disk: String,
    /// More hosts repo URLs may name besides `--git-base-url`'s, `[scheme://]host[:port]` (https
    /// unless a scheme is given; `ssh://host` allows ssh to it; `:*` any port). Repeat or
    /// comma-separate.
    #[arg(long = "allow-git-host", env = "NEXUS_ALLOW_GIT_HOSTS", value_delimiter = ',')]
    pub(crate) allow_git_hosts: Vec<String>,
    /// Let git hosts resolve to loopback, private and link-local addresses (a LAN git server by name).
    /// Addresses written into `--git-base-url` or `--allow-git-host` are allowed without it.
    #[arg(long, env = "NEXUS_ALLOW_PRIVATE_GIT_HOSTS")]
    pub(crate) allow_private_git_hosts: bool,
    /// Most repositories read at once for creates; more are told to retry.
    #[arg(long, env = "NEXUS_MAX_CONCURRENT_PROBES", default_value_t = 8)]
    pub(crate) max_concurrent_probes: usize,
    /// Workspace creates (that read a repository) each user may start per minute.
    #[arg(long, env = "NEXUS_CREATES_PER_MINUTE", default_value_t = 20)]
    pub(crate) creates_per_minute: u32,
    /// PEM certificate chain to serve HTTPS with (needs `--tls-key`); without it the server speaks
    /// plain HTTP, for use behind a TLS-terminating proxy or on loopback only.
    #[arg(long, env = "NEXUS_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "NEXUS_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct AgentArgs {
    /// Coordination server URL.
    #[arg(long, env = "NEXUS_SERVER")]
    pub(crate) server: String,
    /// Join token to enrol with, when this node has no credential yet (prefer `--join-token-file`:
    /// every local user can read a process's arguments).
    #[arg(long, env = "NEXUS_JOIN_TOKEN", conflicts_with = "join_token_file")]
    pub(crate) join_token: Option<String>,
    /// File holding the join token (the server's `<data-dir>/join-token`, or one from
    /// `nexus node token create`); read only to enrol.
    #[arg(long, env = "NEXUS_JOIN_TOKEN_FILE")]
    pub(crate) join_token_file: Option<std::path::PathBuf>,
    /// Where the agent keeps this node's credential (`credential`, mode 0600), which enrolment gives
    /// it and every connection uses.
    #[arg(long, env = "NEXUS_AGENT_STATE_DIR", default_value = nexus_agent::credential::DEFAULT_STATE_DIR)]
    pub(crate) state_dir: std::path::PathBuf,
    /// LXD project for this node's workspaces (two agents on one host need different projects).
    #[arg(long, env = "NEXUS_LXD_PROJECT", default_value = nexus_types::defaults::LXD_PROJECT)]
    pub(crate) lxd_project: String,
    /// Node name, unique per server [default: the host name].
    #[arg(long, env = "NEXUS_NODE_NAME")]
    pub(crate) name: Option<String>,
    /// Image alias workspaces launch from.
    #[arg(long, env = "NEXUS_BASE_IMAGE", default_value = nexus_types::defaults::BASE_IMAGE_ALIAS)]
    pub(crate) base_image: String,
    /// Seconds between heartbeats.
    #[arg(long, env = "NEXUS_HEARTBEAT", default_value_t = 2)]
    pub(crate) heartbeat: u64,
    /// CA certificates workspaces trust besides the distribution's: files, or directories searched for
    /// `*.crt`. Installed in every workspace at each create and start; the agent's own downloads
    /// trust them too.
    #[arg(
        long = "ca-certificates",
        env = "NEXUS_CA_CERTIFICATES",
        value_delimiter = ',',
        default_value = nexus_agent::network::DEFAULT_CA_DIR
    )]
    pub(crate) ca_certificates: Vec<std::path::PathBuf>,
    /// Where Node, package managers and uv are kept on this node: fetched once, mounted read-only
    /// into workspaces.
    #[arg(long, env = "NEXUS_RUNTIME_DIR", default_value = nexus_agent::runtimes::DEFAULT_RUNTIME_DIR)]
    pub(crate) runtime_dir: std::path::PathBuf,
    /// Where Node comes from: `npm` (the npm registry's official `node-linux-*` builds, which works
    /// wherever the registry does) or a nodejs.org-style dist base URL such as https://nodejs.org/dist.
    #[arg(long, env = "NEXUS_NODE_SOURCE", default_value = "npm", value_parser = nexus_agent::runtimes::NodeSource::parse)]
    pub(crate) node_source: nexus_agent::runtimes::NodeSource,
    /// The npm registry package managers (and, with `--node-source npm`, Node) come from; a
    /// non-default one is also set in workspaces.
    #[arg(long, env = "NEXUS_NPM_REGISTRY", default_value = nexus_agent::runtimes::DEFAULT_NPM_REGISTRY)]
    pub(crate) npm_registry: String,
    /// PyPI, or a mirror with its JSON API, that uv comes from; a non-default one is also set in
    /// workspaces as the package index.
    #[arg(long, env = "NEXUS_PYPI_URL", default_value = nexus_agent::runtimes::DEFAULT_PYPI)]
    pub(crate) pypi_url: String,
    /// Where each owner's dependency caches (npm, pnpm, Yarn, uv, pip) live on this node, mounted
    /// read-write into that owner's workspaces only.
    #[arg(long, env = "NEXUS_CACHE_DIR", default_value = nexus_agent::caches::DEFAULT_CACHE_DIR)]
    pub(crate) cache_dir: std::path::PathBuf,
    /// GiB of disk the prebuilt workspaces (copies kept after a successful setup, which the next
    /// workspace of the repo starts from) may take on this node, least recently used evicted first;
    /// 0 keeps none.
    #[arg(long, env = "NEXUS_PREBUILD_BUDGET_GIB", default_value_t = 20)]
    pub(crate) prebuild_budget_gib: u64,
    /// How many prebuilt workspaces this node keeps at most (the bound where LXD cannot report
    /// their disk use, as on btrfs without quotas).
    #[arg(long, env = "NEXUS_PREBUILD_COUNT", default_value_t = 16)]
    pub(crate) prebuild_count: usize,
    /// Processes (threads included) one workspace may run (`limits.processes`), so a fork bomb
    /// stops there instead of at the node's `kernel.pid_max`; 0: no limit.
    #[arg(long, env = "NEXUS_WORKSPACE_PROCESSES", default_value_t = nexus_agent::limits::DEFAULT_PROCESSES)]
    pub(crate) workspace_processes: u32,
    /// Largest root disk of a workspace on this node (the server's `--max-disk` applies when
    /// smaller); empty: no limit but the pool's size.
    #[arg(long, env = "NEXUS_WORKSPACE_DISK", default_value = nexus_agent::limits::DEFAULT_DISK)]
    pub(crate) workspace_disk: String,
    /// Bandwidth into one workspace (`500Mbit`, `1Gbit`); empty: no limit.
    #[arg(long, env = "NEXUS_WORKSPACE_INGRESS", default_value = nexus_agent::limits::DEFAULT_BANDWIDTH)]
    pub(crate) workspace_ingress: String,
    /// Bandwidth out of one workspace; empty: no limit (kernels without `act_police` cannot apply it).
    #[arg(long, env = "NEXUS_WORKSPACE_EGRESS", default_value = nexus_agent::limits::DEFAULT_BANDWIDTH)]
    pub(crate) workspace_egress: String,
    /// Shell command that restarts LXD when it stops answering (run at most every 30 s while the
    /// node is degraded); `none` only reports it. Default: `nexus node restart-lxd` (this binary).
    #[arg(long, env = "NEXUS_LXD_RESTART_COMMAND")]
    pub(crate) lxd_restart_command: Option<String>,
    /// Most workspaces this node runs at once; the server places no more here [default: what the
    /// memory holds at ~50 MB per idle workspace, as `nexus node check` counts].
    #[arg(long, env = "NEXUS_MAX_WORKSPACES")]
    pub(crate) max_workspaces: Option<u32>,
}

#[derive(Subcommand)]
pub(crate) enum NodeCommand {
    /// Prepare this Debian/Ubuntu host as a driver node (idempotent; run as root).
    #[command(
        after_help = "Examples:\n  sudo nexus node init\n  sudo nexus node init --image images:ubuntu/22.04\n  sudo nexus node init --bridge-cidr 10.99.0.1/24"
    )]
    Init {
        /// Use an existing image (local alias or `remote:image`) instead of building one.
        #[arg(long)]
        image: Option<String>,
        /// Address and prefix of the workspace bridge.
        #[arg(long, default_value = "10.87.0.1/24")]
        bridge_cidr: String,
        /// Size of the btrfs pool's loop file.
        #[arg(long, default_value = "30GiB")]
        pool_size: String,
        /// Use a `dir` pool instead of btrfs (slower container starts).
        #[arg(long)]
        dir_pool: bool,
    },
    /// Nodes, their liveness and credentials (operator).
    #[command(
        after_help = "Examples:\n  sudo nexus node list\n  nexus node list --server http://staging:3001 --operator-token-file ./operator-token --json"
    )]
    List {
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Revoke a node: its connection closes, its credential stops working, the name never enrols again (operator).
    #[command(after_help = "Examples:\n  sudo nexus node revoke node-b")]
    Revoke {
        /// The node's name (`nexus node list`).
        name: String,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Join tokens, which only enrol nodes (operator).
    #[command(subcommand)]
    Token(NodeTokenCommand),
    /// Check that this node holds the planned number of running workspaces, and say what limits it
    /// (kernel limits, memory, LXD, the base image). Exits 1 when it does not.
    #[command(after_help = "Examples:\n  nexus node check\n  nexus node check --workspaces 50 --json")]
    Check {
        /// Running workspaces planned for this node.
        #[arg(long, default_value_t = 200)]
        workspaces: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Bring a dead or hung LXD daemon back: stop it (under systemd), clear the firewall chains
    /// LXD 5.0 fails to clear after a crash, start it, wait until it answers. The agent's default
    /// `--lxd-restart-command` (run as root).
    #[command(after_help = "Examples:\n  sudo nexus node restart-lxd")]
    RestartLxd {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run `nexus server` or `nexus agent` as a systemd service (restart on failure, start at boot).
    #[command(subcommand)]
    Service(NodeServiceCommand),
}

#[derive(Subcommand)]
pub(crate) enum NodeServiceCommand {
    /// Write the systemd unit, enable it and (re)start it; idempotent (run as root). The flags after
    /// `--` are the role's own, checked now rather than at the next boot.
    #[command(after_help = "Examples:\n  \
        sudo nexus node service install server -- --data-dir /var/lib/nexus --public-host nexus.example.com\n  \
        sudo nexus node service install agent -- --server https://nexus.example.com:3001 --join-token-file /var/lib/nexus/join-token")]
    Install {
        /// `server` or `agent`.
        role: ServiceRole,
        /// The `nexus` binary the unit runs [default: this executable].
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Where the unit file goes.
        #[arg(long, default_value = nexus_node::service::DEFAULT_UNIT_DIR)]
        unit_dir: PathBuf,
        /// Only write the unit; do not enable or start it.
        #[arg(long)]
        no_start: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The role's flags (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// Which process a service runs.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum ServiceRole {
    /// `nexus server`.
    Server,
    /// `nexus agent`.
    Agent,
}

#[derive(Subcommand)]
pub(crate) enum NodeTokenCommand {
    /// Make a join token (printed once, alone on stdout).
    #[command(
        after_help = "Examples:\n  sudo nexus node token create --single-use > node-c.join-token\n  # on node-c: nexus agent --server URL --join-token-file node-c.join-token --name node-c"
    )]
    Create {
        /// The token enrols one node only.
        #[arg(long)]
        single_use: bool,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// List join tokens (`default` is `<data-dir>/join-token`).
    List {
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Revoke a join token; enrolled nodes keep working.
    #[command(
        after_help = "Examples:\n  sudo nexus node token revoke default\n  sudo nexus node token revoke jt-0123456789ab"
    )]
    Revoke {
        /// `default` or `jt-...` (`nexus node token list`).
        id: String,
        #[command(flatten)]
        operator: OperatorArgs,
    },
}

/// How operator commands reach the server and find the operator token.
#[derive(Args)]
pub(crate) struct OperatorArgs {
    /// Server URL [default: http://127.0.0.1:3001].
    #[arg(long, env = "NEXUS_SERVER")]
    pub(crate) server: Option<String>,
    /// File holding the operator token [default: `<data-dir>/operator-token`].
    #[arg(long)]
    pub(crate) operator_token_file: Option<PathBuf>,
    /// The operator token itself (prefer the file: the environment of a shell leaks into history).
    #[arg(long = "operator-token", env = "NEXUS_OPERATOR_TOKEN", hide = true)]
    pub(crate) operator_token: Option<String>,
    /// The server's data dir [default: /var/lib/nexus as root, else ~/.nexus/server].
    #[arg(long, env = "NEXUS_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `--idle-stop`: a duration, or never.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdleStop(pub(crate) Option<std::time::Duration>);

fn parse_idle_stop(s: &str) -> Result<IdleStop, String> {
    match s.trim() {
        "off" | "never" | "0" => Ok(IdleStop(None)),
        d => match humantime::parse_duration(d) {
            Ok(d) if d >= std::time::Duration::from_secs(1) => Ok(IdleStop(Some(d))),
            Ok(_) => Err(format!("{s:?} is under a second; use e.g. `30m`, or `off`")),
            Err(e) => Err(format!("{s:?} is not a duration ({e}); use e.g. `30m`, `2h`, or `off`")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The logs' service, `--setup` flag and whether it parsed, for `args` after `nexus workspace logs`.
    fn logs(args: &[&str]) -> Option<(Option<String>, bool)> {
        let argv = ["nexus", "workspace", "logs"].iter().chain(args);
        match Cli::try_parse_from(argv).ok()?.command {
            Command::Workspace(WorkspaceCommand::Logs { service, setup, .. }) => Some((service, setup)),
            _ => None,
        }
    }

    #[test]
    fn the_setup_log_by_flag_or_by_name() {
        assert_eq!(logs(&["site", "--setup"]), Some((None, true)));
        assert_eq!(logs(&["site", "setup"]), Some((Some("setup".into()), false)), "the name still works");
        assert_eq!(logs(&["site", "web", "-f"]), Some((Some("web".into()), false)));
        assert_eq!(logs(&["site", "web", "--setup"]), None, "one or the other");
    }
}
