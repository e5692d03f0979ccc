//! The Nexus command line: node set-up (`nexus node init`) and the designer-facing commands
//! (`auth`, `ssh setup`, `workspace create|connect|ports|ssh|pr`).

pub mod account;
pub mod client;
pub mod config;
pub mod editor;
pub mod error;
pub mod forward;
pub mod github;
pub mod keys;
pub mod opener;
pub mod services;
pub mod ssh_config;
pub mod system;
pub mod ui;
pub mod workspace_flow;

pub use error::Error;
