//! `nexus node`: driver node set-up.

pub mod check;
pub mod init;
pub mod service;
