//! `nexus node init`: prepare this host as a driver node, printing each step as it goes.

use nexus_cli::system::System;
use nexus_cli::ui::{Report, Ui};

use crate::error::Result;
use crate::init::{NodeInitOptions, Progress};

/// The host is ready for an agent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeReady;

impl Report for NodeReady {
    fn text(&self, ui: &Ui) {
        ui.info(
            "node ready: start an agent with `nexus agent --server <url> --join-token-file <file with the join token>`",
        );
    }
}

/// Node init's steps on stderr, one line each: `• step`, then `✓ what it did` or that it was in place.
pub(crate) struct ConsoleProgress;

impl Progress for ConsoleProgress {
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

/// Runs every step of node init (each one skipped when already done).
pub fn run(opts: &NodeInitOptions, sys: &dyn System) -> Result<NodeReady> {
    crate::init::run(sys, opts, &ConsoleProgress)?;
    Ok(NodeReady)
}
