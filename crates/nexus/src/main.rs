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
        Command::Agent(args) => commands::agent::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Workspace(cmd) => workspace(cmd).await,
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
        Command::Openapi | Command::Config(_) | Command::Node(_) => unreachable!("dispatched without a runtime"),
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
            report(&ui, auth::logout::run(&ui))
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
