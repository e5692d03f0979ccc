//! The `nexus` binary: one executable for every role (server, agent, node set-up, CLI).
//!
//! Every flag that configures a long-running role can also be set by a `NEXUS_*` environment
//! variable; they are declared here, once, next to their flags.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nexus",
    version,
    about = "Self-hosted remote development workspaces on LXD",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordination server (REST API on :3001, SSH forwarding on 2222-2299).
    #[command(
        after_help = "Examples:\n  nexus server\n  nexus server --listen 127.0.0.1:3001 --data-dir ./data --ssh-port-range 2222-2229"
    )]
    Server(ServerArgs),
    /// Run a node agent that drives this host's LXD for a server.
    #[command(
        after_help = "Examples:\n  nexus agent --server http://staging:3001 --join-token $(cat /var/lib/nexus/join-token)\n  nexus agent --server http://127.0.0.1:3001 --join-token nxj_... --lxd-project node-b --name node-b"
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
        #[arg(long, default_value_t = 3001)]
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
        #[arg(long, default_value_t = 3001)]
        port: u16,
    },
    /// Driver node set-up.
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
    /// Print the server's OpenAPI document.
    Openapi,
}

/// What every workspace command needs to reach the server, and its output format.
#[derive(Args)]
struct ClientArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Server URL [env: NEXUS_SERVER].
    #[arg(long)]
    server: Option<String>,
}

#[derive(Subcommand)]
enum AuthCommand {
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
enum SshCommand {
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
enum PortsCommand {
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
enum WorkspaceCommand {
    /// Create a workspace for a GitHub repo (forking it when you can't push), and wait until it's ready.
    #[command(
        after_help = "Examples:\n  nexus workspace create my-org/my-project\n  nexus workspace create https://github.com/my-org/my-project --branch redesign --name redesign"
    )]
    Create {
        /// `owner/repo` or a GitHub URL.
        repo: String,
        /// Branch to check out [default: the repo's default branch].
        #[arg(long)]
        branch: Option<String>,
        /// Workspace name [default: the repo's name].
        #[arg(long)]
        name: Option<String>,
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
        after_help = "Examples:\n  nexus workspace logs my-project\n  nexus workspace logs my-project web -f\n  nexus workspace logs my-project setup"
    )]
    Logs {
        /// Workspace name or id.
        workspace: String,
        /// A service name, or `setup`; all when left out.
        service: Option<String>,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// How many lines of history.
        #[arg(short = 'n', long, default_value_t = 200)]
        lines: u32,
        /// SSH private key [default: ~/.ssh/id_ed25519].
        #[arg(long, env = "NEXUS_SSH_KEY")]
        identity: Option<PathBuf>,
        /// Server URL [env: NEXUS_SERVER].
        #[arg(long)]
        server: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
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
struct ServerArgs {
    /// Address the REST API listens on.
    #[arg(long, env = "NEXUS_LISTEN", default_value = nexus_server::config::DEFAULT_LISTEN)]
    listen: String,
    /// Where the database and tokens live [default: /var/lib/nexus as root, else ~/.nexus/server].
    #[arg(long, env = "NEXUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// GitHub API base URL used to verify registrations.
    #[arg(long, env = "NEXUS_GITHUB_API_URL", default_value = nexus_server::config::DEFAULT_GITHUB_API_URL)]
    github_api_url: String,
    /// Base URL that `owner/name` repos are cloned from.
    #[arg(long, env = "NEXUS_GIT_BASE_URL", default_value = nexus_server::config::DEFAULT_GIT_BASE_URL)]
    git_base_url: String,
    /// OAuth app client id handed to `nexus auth github` for GitHub's device flow.
    #[arg(long, env = "NEXUS_GITHUB_CLIENT_ID")]
    github_client_id: Option<String>,
    /// Inclusive range of ports forwarded to workspaces' sshd.
    #[arg(long, env = "NEXUS_SSH_PORT_RANGE", default_value = "2222-2299")]
    ssh_port_range: String,
    /// Host name users SSH to [default: the host the client used to reach the API].
    #[arg(long, env = "NEXUS_PUBLIC_HOST")]
    public_host: Option<String>,
    /// Seconds without a heartbeat before a node counts as unresponsive.
    #[arg(long, env = "NEXUS_NODE_TIMEOUT", default_value_t = 15)]
    node_timeout: u64,
    /// Seconds stop/start/delete wait for the node.
    #[arg(long, env = "NEXUS_OP_TIMEOUT", default_value_t = 120)]
    op_timeout: u64,
    /// Directory of CLI builds for /install.sh to hand out, named `nexus-<os>-<arch>` (os: linux, darwin;
    /// arch: amd64, arm64); this executable is always served for its own platform.
    #[arg(long, env = "NEXUS_BINARIES_DIR")]
    binaries_dir: Option<PathBuf>,
}

#[derive(Args)]
struct AgentArgs {
    /// Coordination server URL.
    #[arg(long, env = "NEXUS_SERVER")]
    server: String,
    /// Join token from the server's `<data-dir>/join-token`.
    #[arg(long, env = "NEXUS_JOIN_TOKEN")]
    join_token: String,
    /// LXD project for this node's workspaces (two agents on one host need different projects).
    #[arg(long, env = "NEXUS_LXD_PROJECT", default_value = nexus_types::defaults::LXD_PROJECT)]
    lxd_project: String,
    /// Node name, unique per server [default: the host name].
    #[arg(long, env = "NEXUS_NODE_NAME")]
    name: Option<String>,
    /// Image alias workspaces launch from.
    #[arg(long, env = "NEXUS_BASE_IMAGE", default_value = nexus_types::defaults::BASE_IMAGE_ALIAS)]
    base_image: String,
    /// Seconds between heartbeats.
    #[arg(long, env = "NEXUS_HEARTBEAT", default_value_t = 2)]
    heartbeat: u64,
}

#[derive(Subcommand)]
enum NodeCommand {
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
}

fn default_data_dir() -> PathBuf {
    let is_root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    match std::env::var_os("HOME") {
        Some(home) if !is_root => PathBuf::from(home).join(".nexus/server"),
        _ => PathBuf::from("/var/lib/nexus"),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEXUS_LOG").unwrap_or_else(|_| "info".into());
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(color).init();
}

/// Resolves on Ctrl-C or SIGTERM, for a clean shutdown.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let addr = nexus_server::config::parse_listen(&args.listen).map_err(anyhow::Error::msg).context("--listen")?;
    let ssh_ports = nexus_server::config::parse_port_range(&args.ssh_port_range)
        .map_err(anyhow::Error::msg)
        .context("--ssh-port-range")?;
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut config = nexus_server::ServerConfig::new(data_dir.clone());
    config.github_api_url = args.github_api_url;
    config.git_base_url = args.git_base_url;
    config.github_client_id = args.github_client_id;
    config.ssh_ports = ssh_ports;
    config.ssh_bind_ip = addr.ip();
    config.public_host = args.public_host;
    config.node_timeout = Duration::from_secs(args.node_timeout);
    config.op_timeout = Duration::from_secs(args.op_timeout);
    config.binaries_dir = args.binaries_dir;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is another server running? (pick another with --listen)"))?;
    let local = listener.local_addr()?;
    // Scripts and tests read this line to learn the port when binding to :0.
    println!("nexus server listening on http://{local}");
    eprintln!("data dir: {}  (join token for agents: {}/join-token)", data_dir.display(), data_dir.display());
    nexus_server::serve(config, listener, shutdown_signal()).await?;
    Ok(())
}

async fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    let node_name = match args.name {
        Some(n) => n,
        None => {
            std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "node".into())
        }
    };
    let socket = nexus_agent::lxd::LxdProvider::default_socket()
        .context("hint: prepare this host with `sudo nexus node init`, which installs and starts LXD")?;
    let provider = nexus_agent::lxd::LxdProvider::new(socket, &args.lxd_project);
    let config = nexus_agent::AgentConfig {
        server_url: args.server,
        join_token: args.join_token,
        node_name,
        lxd_project: args.lxd_project,
        base_image: args.base_image,
        heartbeat: Duration::from_secs(args.heartbeat.max(1)),
    };
    nexus_agent::run(config, Arc::new(provider), shutdown_signal()).await?;
    Ok(())
}

fn hinted(e: impl std::error::Error + Send + Sync + 'static, hint: String) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("hint: {hint}"))
}

fn client_error(e: nexus_cli::error::Error) -> anyhow::Error {
    let hint = nexus_types::diagnostics::Hint::hint(&e).unwrap_or_default();
    hinted(e, hint)
}

fn node_error(e: nexus_node::Error) -> anyhow::Error {
    let hint = nexus_types::diagnostics::Hint::hint(&e).unwrap_or_default();
    hinted(e, hint)
}

async fn workspace_view(
    workspace: &str,
    server: Option<String>,
) -> anyhow::Result<(nexus_cli::client::Client, nexus_types::api::WorkspaceView)> {
    let client = nexus_cli::client::Client::from_env(server).map_err(client_error)?;
    let ws = client.workspace(workspace).await.map_err(client_error)?;
    Ok((client, ws))
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

async fn run_up(dir: Option<PathBuf>, port: u16, git_port: u16, json: bool) -> anyhow::Result<()> {
    let ui = nexus_cli::ui::Ui::new(json);
    let started = std::time::Instant::now();
    ui.section("⚙  Node set-up (LXD, storage pool, bridge, base image)");
    let sys = nexus_cli::system::HostSystem;
    let node = nexus_node::init::NodeInitOptions::default();
    tokio::task::block_in_place(|| nexus_node::init::run(&sys, &node, &ConsoleProgress)).map_err(node_error)?;
    let opts = nexus_node::staging::UpOptions {
        dir: dir.unwrap_or_else(|| nexus_node::staging::default_dir(is_root())),
        port,
        git_port,
        exe: std::env::current_exe().context("hint: run nexus from its installed path")?,
    };
    let (view, ssh) = nexus_node::staging::up(&opts, &ui, &sys).await.map_err(node_error)?;
    if json {
        return print_json(&view);
    }
    let block = nexus_cli::workspace_flow::render_ready(&view, Some(&ssh));
    ui.result(block.trim_end());
    ui.result(&format!("Stop it (data kept): nexus down --dir {}", opts.dir.display()));
    ui.info(&format!("Up in {:.1}s", started.elapsed().as_secs_f64()));
    Ok(())
}

fn exit_with(code: i32) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    std::process::exit(code)
}

async fn run_auth(cmd: AuthCommand) -> anyhow::Result<()> {
    use nexus_cli::account;
    match cmd {
        AuthCommand::Github { server, github_host, client_id, with_token, use_gh_token, force, json } => {
            let ui = nexus_cli::ui::Ui::new(json);
            let token = if with_token {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)?;
                Some(t)
            } else {
                None
            };
            let opts = account::AuthOptions { server, github_host, client_id, token, use_gh: use_gh_token, force };
            let opener = nexus_cli::opener::SystemOpener::from_env();
            let (login, id) = account::auth_github(&opts, &ui, &nexus_cli::system::HostSystem, &opener)
                .await
                .map_err(client_error)?;
            if json {
                return print_json(&serde_json::json!({"github_username": login, "github_id": id}));
            }
            ui.info("Next: nexus ssh setup");
            Ok(())
        }
        AuthCommand::Status { json } => {
            let ui = nexus_cli::ui::Ui::new(json);
            let st = account::auth_status(&ui).await.map_err(client_error)?;
            if json {
                return print_json(&st);
            }
            match (&st.github_user, &st.github_problem) {
                (Some(u), _) => println!("GitHub ({}): signed in as {u}", st.github_host),
                (None, Some(p)) => println!("GitHub ({}): {p} (run `nexus auth github`)", st.github_host),
                (None, None) => println!("GitHub ({}): not signed in", st.github_host),
            }
            match &st.server {
                Some(s) if st.registered => println!("Server {s}: registered"),
                Some(s) => println!("Server {s}: not registered (run `nexus ssh setup`)"),
                None => println!("Server: none configured (run `nexus auth github --server <host>`)"),
            }
            println!("Config: {}", st.config_path);
            Ok(())
        }
        AuthCommand::Logout => {
            let ui = nexus_cli::ui::Ui::new(false);
            if account::auth_logout(&ui).map_err(client_error)? {
                ui.ok("Signed out: the GitHub and server tokens are removed from your config");
                ui.info("To revoke the GitHub token itself: GitHub → Settings → Applications");
            } else {
                ui.info("You were not signed in");
            }
            Ok(())
        }
    }
}

async fn run_ssh(cmd: SshCommand) -> anyhow::Result<()> {
    let SshCommand::Setup { server, json } = cmd;
    let ui = nexus_cli::ui::Ui::new(json);
    let opts = nexus_cli::account::SshSetupOptions { server };
    let out = nexus_cli::account::ssh_setup(&opts, &ui, &nexus_cli::system::HostSystem).await.map_err(client_error)?;
    if json {
        return print_json(&out);
    }
    ui.info("Next: nexus workspace create <owner/repo>");
    Ok(())
}

async fn run_workspace(cmd: WorkspaceCommand) -> anyhow::Result<()> {
    use nexus_cli::workspace_flow as flow;
    match cmd {
        WorkspaceCommand::Create { repo, branch, name, client: ClientArgs { json, server } } => {
            let ui = nexus_cli::ui::Ui::new(json);
            let view =
                flow::create(&flow::CreateOptions { repo, branch, name, server }, &ui).await.map_err(client_error)?;
            if json {
                return print_json(&view);
            }
            ui.result(flow::render_ready(&view, None).trim_end());
            Ok(())
        }
        WorkspaceCommand::Connect { workspace, editor, no_forward, client: ClientArgs { json, server } } => {
            let ui = nexus_cli::ui::Ui::new(json);
            let exe = std::env::current_exe().context("hint: run nexus from its installed path")?;
            let opts = flow::ConnectOptions { workspace, editor, no_forward, server };
            let done = flow::connect(
                &opts,
                &ui,
                &nexus_cli::system::HostSystem,
                &nexus_cli::opener::HostPrograms,
                &nexus_cli::opener::SystemOpener::from_env(),
                &exe,
            )
            .await
            .map_err(client_error)?;
            if json {
                return print_json(&done);
            }
            ui.result(&format!("Ready to design! Your files are in {} on {}", done.folder, done.ssh_alias));
            Ok(())
        }
        WorkspaceCommand::Ports { cmd } => {
            let home = PathBuf::from(std::env::var("HOME").context("hint: set HOME")?);
            match cmd.unwrap_or(PortsCommand::List { json: false }) {
                PortsCommand::List { json } => {
                    let all = nexus_cli::forward::all_running(&home);
                    if json {
                        return print_json(&all);
                    }
                    if all.is_empty() {
                        eprintln!("no port forwards are running (start them with `nexus workspace connect`)");
                    }
                    for st in &all {
                        let up = st.ssh_pid.is_some_and(nexus_cli::forward::alive);
                        println!(
                            "{} (pid {}, {}, {} connect(s))",
                            st.workspace,
                            st.pid,
                            if up { "connected" } else { "reconnecting" },
                            st.connects
                        );
                        for p in &st.ports {
                            println!("  {:12} http://localhost:{} → workspace port {}", p.service, p.local, p.remote);
                        }
                    }
                    Ok(())
                }
                PortsCommand::Stop { workspace } => {
                    if nexus_cli::forward::stop(&home, &workspace)? {
                        eprintln!("✓ stopped the port forwards of {workspace}");
                    } else {
                        eprintln!("no port forwards were running for {workspace}");
                    }
                    Ok(())
                }
                PortsCommand::Run { workspace, server } => {
                    flow::run_forwards(&workspace, server).await.map_err(client_error)
                }
            }
        }
        WorkspaceCommand::Ssh { workspace, command, server } => {
            let ui = nexus_cli::ui::Ui::new(false);
            let code = flow::ssh(workspace.as_deref(), &command, server, &ui).await.map_err(client_error)?;
            exit_with(code)
        }
        WorkspaceCommand::Pr { workspace, title, body, base, client: ClientArgs { json, server } } => {
            let ui = nexus_cli::ui::Ui::new(json);
            let opts = flow::PrOptions { workspace, title, body, base, server };
            let out = flow::pr(&opts, &ui, &nexus_cli::system::HostSystem).await.map_err(client_error)?;
            if json {
                return print_json(&out);
            }
            ui.result(&out.url);
            Ok(())
        }
        WorkspaceCommand::List { client: ClientArgs { json, server } } => {
            let client = nexus_cli::client::Client::from_env(server).map_err(client_error)?;
            let all = client.list().await.map_err(client_error)?;
            if json {
                return print_json(&all);
            }
            if all.is_empty() {
                eprintln!("no workspaces yet");
            }
            for w in &all {
                let repo = format!("{}/{}", w.repo.owner, w.repo.name);
                println!("{:24} {:9} {:28} {}", w.name, w.status, repo, w.ssh.command);
            }
            Ok(())
        }
        WorkspaceCommand::Status { workspace, client: ClientArgs { json, server } } => {
            let (_, ws) = workspace_view(&workspace, server).await?;
            if json {
                return print_json(&ws);
            }
            println!("{} ({}): {}", ws.name, ws.workspace_id, ws.status);
            if let (Some(m), Some(h)) = (&ws.message, &ws.hint) {
                println!("  {m}\n  hint: {h}");
            }
            println!("  SSH:  {}", ws.ssh.command);
            let commit = ws.repo.commit.as_deref().map(|c| &c[..c.len().min(12)]).unwrap_or("not cloned yet");
            println!("  Repo: {}/{} @ {} ({commit})", ws.repo.owner, ws.repo.name, ws.repo.branch);
            print!("{}", nexus_cli::services::render(&ws));
            Ok(())
        }
        WorkspaceCommand::Stop { workspace, client } => lifecycle("stop", &workspace, client).await,
        WorkspaceCommand::Start { workspace, client } => lifecycle("start", &workspace, client).await,
        WorkspaceCommand::Delete { workspace, client } => lifecycle("delete", &workspace, client).await,
        WorkspaceCommand::Services { workspace, client: ClientArgs { json, server } } => {
            let (_, ws) = workspace_view(&workspace, server).await?;
            if json {
                return print_json(&ws.services);
            }
            print!("{}", nexus_cli::services::render(&ws));
            Ok(())
        }
        WorkspaceCommand::Logs { workspace, service, follow, lines, identity, server } => {
            let (_, ws) = workspace_view(&workspace, server).await?;
            let key = identity
                .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".ssh/id_ed25519"));
            // Pin the host key the server reported: no trust-on-first-use prompt.
            let known = tempfile::NamedTempFile::new()?;
            if let Some(hk) = &ws.ssh.host_key {
                std::fs::write(known.path(), format!("[{}]:{} {hk}\n", ws.ssh.host, ws.ssh.port))?;
            }
            let strict = if ws.ssh.host_key.is_some() {
                "StrictHostKeyChecking=yes"
            } else {
                "StrictHostKeyChecking=accept-new"
            };
            let remote = nexus_cli::services::log_command(service.as_deref(), follow, lines);
            let status = std::process::Command::new("ssh")
                .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o", strict])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known.path().display()))
                .arg("-i")
                .arg(&key)
                .args(["-p", &ws.ssh.port.to_string(), &format!("{}@{}", ws.ssh.user, ws.ssh.host), &remote])
                .status()
                .context("hint: install an OpenSSH client (`ssh`)")?;
            if !status.success() {
                anyhow::bail!(
                    "reading the logs over SSH failed (exit {})\nhint: check `nexus workspace status {workspace}` and that {} is the key you registered",
                    status.code().unwrap_or(-1),
                    key.display()
                );
            }
            Ok(())
        }
    }
}

/// Stop, start or delete a workspace by name, waiting for the node like the API does.
async fn lifecycle(op: &str, workspace: &str, args: ClientArgs) -> anyhow::Result<()> {
    let (client, ws) = workspace_view(workspace, args.server).await?;
    let started = std::time::Instant::now();
    eprintln!("{op}: {} ...", ws.name);
    let (answer, what) = match op {
        "delete" => {
            let answer = client.delete(&ws.workspace_id).await.map_err(client_error)?;
            (serde_json::to_value(answer)?, "deleted".to_string())
        }
        "start" => {
            let answer = client.start(&ws.workspace_id).await.map_err(client_error)?;
            let what = answer.status.to_string();
            (serde_json::to_value(answer)?, what)
        }
        _ => {
            let answer = client.stop(&ws.workspace_id).await.map_err(client_error)?;
            let what = answer.status.to_string();
            (serde_json::to_value(answer)?, what)
        }
    };
    if args.json {
        return print_json(&answer);
    }
    if op != "start" {
        // Forwards to a stopped or deleted workspace would only retry forever.
        if let Some(home) = std::env::var_os("HOME") {
            let _ = nexus_cli::forward::stop(std::path::Path::new(&home), &ws.name);
        }
    }
    if op == "delete" {
        if let Ok(files) = nexus_cli::ssh_config::SshFiles::from_env() {
            let _ = files.remove(&ws.name, &ws.workspace_id);
        }
    }
    eprintln!("✓ {}: {what} ({:.1}s)", ws.name, started.elapsed().as_secs_f64());
    Ok(())
}

fn config_detect(dir: &std::path::Path, write: bool) -> anyhow::Result<()> {
    let files = nexus_project::DirFiles(dir.to_path_buf());
    let resolved = nexus_project::resolve(&files).map_err(|e| {
        let h = e.hint.clone();
        anyhow::Error::msg(e.to_string()).context(format!("hint: {h}"))
    })?;
    let yaml = nexus_project::to_yaml(&resolved.plan);
    eprintln!(
        "{} ({} service(s), {} setup step(s))",
        resolved.plan.source,
        resolved.plan.services.len(),
        resolved.plan.setup.len()
    );
    if !write {
        print!("{yaml}");
        return Ok(());
    }
    let path = dir.join(".nexus/config.yaml");
    if path.exists() {
        anyhow::bail!("{} already exists\nhint: edit it by hand, or move it away and run this again", path.display());
    }
    std::fs::create_dir_all(dir.join(".nexus"))?;
    std::fs::write(&path, yaml)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

struct ConsoleProgress;

impl nexus_node::init::Progress for ConsoleProgress {
    fn step(&self, what: &str) {
        eprintln!("• {what}");
    }
    fn skipped(&self, _what: &str) {
        eprintln!("  ✓ already in place");
    }
    fn done(&self, what: &str) {
        eprintln!("  ✓ {what}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result: anyhow::Result<()> = match cli.command {
        Command::Openapi => {
            print!("{}", nexus_server::openapi_json());
            Ok(())
        }
        Command::Config(ConfigCommand::Detect { dir, write }) => config_detect(&dir, write),
        Command::Node(NodeCommand::Init { image, bridge_cidr, pool_size, dir_pool }) => {
            let opts =
                nexus_node::init::NodeInitOptions { image, bridge_cidr, pool_size, dir_pool, ..Default::default() };
            nexus_node::init::run(&nexus_cli::system::HostSystem, &opts, &ConsoleProgress)
                .map(|()| {
                    eprintln!("node ready: start an agent with `nexus agent --server <url> --join-token <token>`")
                })
                .map_err(node_error)
        }
        command => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            rt.block_on(async {
                match command {
                    Command::Server(args) => run_server(args).await,
                    Command::Agent(args) => run_agent(args).await,
                    Command::Workspace(cmd) => run_workspace(cmd).await,
                    Command::Auth(cmd) => run_auth(cmd).await,
                    Command::Up { dir, port, git_port, json } => run_up(dir, port, git_port, json).await,
                    Command::Down { dir, port } => {
                        let dir = dir.unwrap_or_else(|| nexus_node::staging::default_dir(is_root()));
                        let ui = nexus_cli::ui::Ui::new(false);
                        nexus_node::staging::down(&dir, port, &ui).await.map_err(node_error)?;
                        ui.info(&format!("Data kept in {}; `nexus up` brings it back", dir.display()));
                        Ok(())
                    }
                    Command::Ssh(cmd) => run_ssh(cmd).await,
                    _ => unreachable!(),
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// `error: <message>: <cause>...` then any `hint:` lines, once.
fn print_error(e: &anyhow::Error) {
    let mut hints = Vec::new();
    let mut parts = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        match s.strip_prefix("hint: ") {
            Some(h) => hints.push(h.to_string()),
            None => parts.push(s),
        }
    }
    eprintln!("error: {}", parts.join(": "));
    for h in hints {
        eprintln!("hint: {h}");
    }
}
