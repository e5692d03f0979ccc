//! Setting up hosts, as opposed to using them: `nexus node init` prepares a Debian/Ubuntu host as a
//! driver node, and `nexus up` / `nexus down` run a whole local staging environment on it.
//!
//! The designer's CLI (`nexus-cli`) never needs any of this; this crate uses its API client, `Ui`
//! and `System` trait.

pub mod check;
pub mod commands;
pub mod error;
pub mod init;
pub mod lxd_restart;
pub mod service;
pub mod staging;

pub use error::Error;
