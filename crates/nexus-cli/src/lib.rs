//! The designer's command line: signing in (`auth`), the SSH key (`ssh setup`), workspaces
//! (`workspace create|connect|ports|ssh|pr|list|status|start|stop|delete|services|logs`) and the
//! project config (`config detect`); one module per command under [`commands`]. Also the API client,
//! terminal output ([`ui::Ui`]) and the host traits the host set-up in `nexus-node` shares.

pub mod client;
pub mod commands;
pub mod config;
pub(crate) mod editor;
pub mod error;
pub mod forward;
pub mod github;
pub mod keys;
pub mod opener;
pub mod ssh_config;
pub mod system;
pub mod ui;

pub use error::Error;
