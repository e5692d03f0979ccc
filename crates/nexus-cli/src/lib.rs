//! The Nexus command line: node set-up (`nexus node init`) and, later, the designer-facing commands.

pub mod client;
pub mod node_init;
pub mod services;
pub mod system;
