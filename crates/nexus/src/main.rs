//! The `nexus` binary: one executable for every role (server, agent, node set-up, CLI).
//!
//! This file only dispatches. [`cli`] declares every command and flag (and their `NEXUS_*`
//! environment variables); each command's body is in `nexus_cli::commands` (the designer's),
//! `nexus_node::commands` (host set-up) or [`commands`] (server, agent). A command returns typed
//! output that one `Ui` prints as text or JSON, or an error that is printed here, once: its chain on
//! one `error:` line, then the `hint:` the error carries.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser as _;
use nexus_cli::commands as designer;
use nexus_cli::opener::{HostPrograms, SystemOpener};
use nexus_cli::system::HostSystem;
use nexus_cli::ui::{Report, Ui};
use nexus_node::commands as host;
use nexus_types::diagnostics::{error_chain, Hint};

use cli::{
    AuthCommand, Cli, ClientArgs, Command, ConfigCommand, NodeCommand, PortsCommand, SshCommand, WorkspaceCommand,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Plain HTTP to another machine and extra CAs: one rule for the CLI's and the agent's connections.
    nexus_cli::client::configure_transport(cli.insecure, cli.ca_cert.clone());
    nexus_agent::allow_plain_http(cli.insecure);
    init_logging();
    let result = match cli.command {
        Command::Openapi => {
            print!("{}", nexus_server::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Detect { dir, write }) => {
            let ui = Ui::new(false);
            report(&ui, designer::config::detect::run(&dir, write, &ui))
        }
        Command::Node(NodeCommand::Init { image, bridge_cidr, pool_size, dir_pool }) => {
            let opts =
                nexus_node::init::NodeInitOptions { image, bridge_cidr, pool_size, dir_pool, ..Default::default() };
            report(&Ui::new(false), host::node::init::run(&opts, &HostSystem))
        }
        Command::Node(NodeCommand::RestartLxd { json }) => {
            report(&Ui::new(json), nexus_node::lxd_restart::restart(&HostSystem))
        }
        Command::Node(NodeCommand::Check { workspaces, json }) => {
            let check = nexus_node::check::check(&HostSystem, workspaces);
            Ui::new(json).report(&check);
            Ok(if check.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Node(NodeCommand::Service(cli::NodeServiceCommand::Install {
            role,
            binary,
            unit_dir,
            no_start,
            json,
            args,
        })) => service_install(role, binary, unit_dir, !no_start, json, args),
        command => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            rt.block_on(run(command))
        }
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            Ui::new(false).error(&failure.message, failure.hint.as_deref().unwrap_or(""));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Server(args) => commands::server::run(args).await.map_err(Failure::from).map(|()| ExitCode::SUCCESS),
        Command::Agent(args) => commands::agent::run(args).await,
        Command::Workspace(cmd) => workspace(cmd).await,
        Command::Audit { limit, action, operator } => {
            let (opts, ui) = operator_options(operator);
            report(&ui, designer::audit::run(&opts, limit, action.as_deref()).await)
        }
        Command::Auth(cmd) => auth(cmd).await,
        Command::Ssh(SshCommand::Setup { server, json }) => {
            let ui = Ui::new(json);
            let opts = designer::ssh::setup::SshSetupOptions { server };
            report(&ui, designer::ssh::setup::run(&opts, &ui, &HostSystem).await)
        }
        Command::Up { dir, port, git_port, json } => {
            let ui = Ui::new(json);
            report(&ui, host::up::run(&host::up::UpArgs { dir, port, git_port }, &ui, &HostSystem).await)
        }
        Command::Down { dir, port } => {
            let ui = Ui::new(false);
            report(&ui, host::down::run(dir, port, &ui).await)
        }
        Command::Node(cmd) => node(cmd).await,
        Command::Openapi | Command::Config(_) => unreachable!("dispatched without a runtime"),
    }
}

/// Where the operator commands find the server and the operator token, and how they print.
fn operator_options(args: cli::OperatorArgs) -> (designer::node::OperatorOptions, Ui) {
    let opts = designer::node::OperatorOptions {
        server: args.server,
        operator_token_file: args.operator_token_file,
        operator_token: args.operator_token,
        data_dir: args.data_dir.unwrap_or_else(commands::server::default_data_dir),
    };
    (opts, Ui::new(args.json))
}

/// The operator's node commands (`nexus node init` runs without a runtime, in `main`).
async fn node(cmd: NodeCommand) -> Result<ExitCode, Failure> {
    use designer::node;
    match cmd {
        NodeCommand::Init { .. }
        | NodeCommand::Service(_)
        | NodeCommand::Check { .. }
        | NodeCommand::RestartLxd { .. } => {
            unreachable!("dispatched without a runtime")
        }
        NodeCommand::List { operator } => {
            let (opts, ui) = operator_options(operator);
            report(&ui, node::list::run(&opts).await)
        }
        NodeCommand::Revoke { name, operator } => {
            let (opts, ui) = operator_options(operator);
            report(&ui, node::revoke::run(&opts, &name).await)
        }
        NodeCommand::Token(cli::NodeTokenCommand::Create { single_use, operator }) => {
            let (opts, ui) = operator_options(operator);
            report(&ui, node::token::create(&opts, single_use).await)
        }
        NodeCommand::Token(cli::NodeTokenCommand::List { operator }) => {
            let (opts, ui) = operator_options(operator);
            report(&ui, node::token::list(&opts).await)
        }
        NodeCommand::Token(cli::NodeTokenCommand::Revoke { id, operator }) => {
            let (opts, ui) = operator_options(operator);
            report(&ui, node::token::revoke(&opts, &id).await)
        }
    }
}

async fn auth(cmd: AuthCommand) -> Result<ExitCode, Failure> {
    use designer::auth;
    match cmd {
        AuthCommand::Github { server, github_host, client_id, with_token, use_gh_token, force, json } => {
            let ui = Ui::new(json);
            let token = match with_token {
                true => Some(std::io::read_to_string(std::io::stdin()).map_err(|e| {
                    nexus_cli::Error::new(
                        format!("cannot read the token from standard input: {e}"),
                        "pipe it in: `gh auth token | nexus auth github --with-token`",
                    )
                })?),
                false => None,
            };
            let opts = auth::github::AuthOptions { server, github_host, client_id, token, use_gh: use_gh_token, force };
            report(&ui, auth::github::run(&opts, &ui, &HostSystem, &SystemOpener::from_env()).await)
        }
        AuthCommand::Status { json } => {
            let ui = Ui::new(json);
            report(&ui, auth::status::run(&ui).await)
        }
        AuthCommand::Logout => {
            let ui = Ui::new(false);
            report(&ui, auth::logout::run(&ui).await)
        }
    }
}

async fn workspace(cmd: WorkspaceCommand) -> Result<ExitCode, Failure> {
    use designer::workspace as ws;
    match cmd {
        WorkspaceCommand::Create { repo, branch, name, no_prebuild, client: ClientArgs { json, server } } => {
            let ui = Ui::new(json);
            let opts = ws::create::CreateOptions { repo, branch, name, server, no_prebuild };
            report(&ui, ws::create::run(&opts, &ui).await)
        }
        WorkspaceCommand::Connect { workspace, editor, no_forward, client: ClientArgs { json, server } } => {
            let ui = Ui::new(json);
            let opts = ws::connect::ConnectOptions { workspace, editor, no_forward, server };
            let opener = SystemOpener::from_env();
            report(&ui, ws::connect::run(&opts, &ui, &HostSystem, &HostPrograms, &opener).await)
        }
        WorkspaceCommand::Ports { cmd } => match cmd.unwrap_or(PortsCommand::List { json: false }) {
            PortsCommand::List { json } => report(&Ui::new(json), ws::ports::list()),
            PortsCommand::Stop { workspace } => report(&Ui::new(false), ws::ports::stop(&workspace)),
            PortsCommand::Run { workspace, server } => {
                ws::ports::run(&workspace, server).await?;
                Ok(ExitCode::SUCCESS)
            }
        },
        WorkspaceCommand::Ssh { workspace, command, server } => {
            let code = ws::ssh::run(workspace.as_deref(), &command, server, &Ui::new(false)).await?;
            Ok(u8::try_from(code).map(ExitCode::from).unwrap_or(ExitCode::FAILURE))
        }
        WorkspaceCommand::Pr { workspace, title, body, base, client: ClientArgs { json, server } } => {
            let ui = Ui::new(json);
            let opts = ws::pr::PrOptions { workspace, title, body, base, server };
            report(&ui, ws::pr::run(&opts, &ui, &HostSystem).await)
        }
        WorkspaceCommand::List { client: ClientArgs { json, server } } => {
            report(&Ui::new(json), ws::list::run(server).await)
        }
        WorkspaceCommand::Status { workspace, client: ClientArgs { json, server } } => {
            report(&Ui::new(json), ws::status::run(&workspace, server).await)
        }
        WorkspaceCommand::Stop { workspace, client: ClientArgs { json, server } } => {
            let ui = Ui::new(json);
            report(&ui, ws::stop::run(&workspace, server, &ui).await)
        }
        WorkspaceCommand::Start { workspace, client: ClientArgs { json, server } } => {
            let ui = Ui::new(json);
            report(&ui, ws::start::run(&workspace, server, &ui).await)
        }
        WorkspaceCommand::Delete { workspace, client: ClientArgs { json, server } } => {
            let ui = Ui::new(json);
            report(&ui, ws::delete::run(&workspace, server, &ui).await)
        }
        WorkspaceCommand::Services { workspace, client: ClientArgs { json, server } } => {
            report(&Ui::new(json), ws::services::run(&workspace, server).await)
        }
        WorkspaceCommand::Logs { workspace, service, setup, follow, lines, identity, server } => {
            ws::logs::run(
                &ws::logs::LogsOptions { workspace, service, setup, follow, lines, identity, server },
                &Ui::new(false),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `nexus node service install`: checks the role's flags with its own parser, then installs the unit.
fn service_install(
    role: cli::ServiceRole,
    binary: Option<std::path::PathBuf>,
    unit_dir: std::path::PathBuf,
    start: bool,
    json: bool,
    args: Vec<String>,
) -> Result<ExitCode, Failure> {
    let role = host::node::service::role(matches!(role, cli::ServiceRole::Server));
    let argv = ["nexus", role.command()].into_iter().map(String::from).chain(args.iter().cloned());
    if let Err(e) = Cli::try_parse_from(argv) {
        return Err(Failure {
            message: format!("the {} flags are not valid: {}", role.command(), e.render().to_string().trim()),
            hint: Some(format!("check them with `nexus {} --help`; they go after `--`", role.command())),
        });
    }
    if args.iter().any(|a| a == "--join-token" || a.starts_with("--join-token=")) {
        return Err(Failure {
            message: "a join token in the unit's command line is readable by every local user (unit files and \
                      /proc/<pid>/cmdline are world-readable)"
                .into(),
            hint: Some("put the token in a root-only file and pass `--join-token-file FILE` instead".into()),
        });
    }
    let binary = match binary {
        Some(b) => b,
        None => std::env::current_exe().map_err(|e| Failure {
            message: format!("could not tell where this executable is: {e}"),
            hint: Some("pass --binary /usr/local/bin/nexus".into()),
        })?,
    };
    let spec = nexus_node::service::ServiceSpec { role, binary, args, unit_dir, start };
    report(&Ui::new(json), host::node::service::install(&spec, &HostSystem))
}

/// Prints a command's output through `ui` (text, or JSON with `--json`).
fn report<T: Report, E: Into<Failure>>(ui: &Ui, result: Result<T, E>) -> Result<ExitCode, Failure> {
    ui.report(&result.map_err(Into::into)?);
    Ok(ExitCode::SUCCESS)
}

/// A failure as it is printed: the whole error chain on one line, and the next step when known.
pub(crate) struct Failure {
    message: String,
    hint: Option<String>,
}

impl Failure {
    /// An error that knows its next step.
    pub(crate) fn hinted<E: std::error::Error + Hint + 'static>(e: E) -> Failure {
        Failure { message: error_chain(&e), hint: e.hint() }
    }
}

impl From<nexus_cli::Error> for Failure {
    fn from(e: nexus_cli::Error) -> Failure {
        Failure::hinted(e)
    }
}

impl From<nexus_node::Error> for Failure {
    fn from(e: nexus_node::Error) -> Failure {
        Failure::hinted(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure { message: error_chain(e.as_ref()), hint: None }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEXUS_LOG").unwrap_or_else(|_| "info".into());
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(color).init();
}
