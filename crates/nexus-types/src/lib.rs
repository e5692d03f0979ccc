//! Types shared by every Nexus role: the HTTP API's bodies, the agent protocol and the workspace state machine.
//!
//! The server, the agent and the CLI all compile against this crate, so a shape changes in one place only.

pub mod api;
pub mod defaults;
pub mod diagnostics;
pub mod git_failure;
pub mod names;
pub mod protocol;
pub mod state;
pub mod transport;

pub use state::{ServiceStatus, Transition, TransitionError, WorkspaceStatus};
