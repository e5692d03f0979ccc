//! `nexus node`: driver node set-up.

pub mod init;
pub mod service;
pub mod check;
