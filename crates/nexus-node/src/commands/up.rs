//! `nexus up`: local staging in one command — node set-up, then server, agent, demo repository, demo
//! user and a ready demo workspace — ending with the "Workspace Ready" block.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nexus_cli::commands::workspace::render_ready;
use nexus_cli::system::System;
use nexus_cli::ui::{Report, Ui};
use nexus_types::api::WorkspaceView;

use super::node::init::ConsoleProgress;
use crate::error::{Error, Result};
use crate::init::NodeInitOptions;
use crate::staging::{self, UpOptions};

/// `nexus up` options.
#[derive(Debug, Clone)]
pub struct UpArgs {
    /// The staging data directory; [`staging::default_dir`] when `None`.
    pub dir: Option<PathBuf>,
    /// API port.
    pub port: u16,
    /// Port of the demo repository's `git daemon`.
    pub git_port: u16,
}

/// Staging is up: JSON is the demo workspace, text the "Workspace Ready" block and how to stop it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct Up {
    view: WorkspaceView,
    #[serde(skip)]
    ssh: String,
    #[serde(skip)]
    dir: PathBuf,
    #[serde(skip)]
    took: Duration,
}

impl Report for Up {
    fn text(&self, ui: &Ui) {
        ui.result(render_ready(&self.view, Some(&self.ssh)).trim_end());
        ui.result(&format!("Stop it (data kept): nexus down --dir {}", self.dir.display()));
        ui.info(&format!("Up in {:.1}s", self.took.as_secs_f64()));
    }
}

/// Sets up the node, then brings staging up and waits for the demo workspace.
pub async fn run(args: &UpArgs, ui: &Ui, sys: &dyn System) -> Result<Up> {
    let started = Instant::now();
    ui.section("⚙  Node set-up (LXD, storage pool, bridge, base image)");
    tokio::task::block_in_place(|| crate::init::run(sys, &NodeInitOptions::default(), &ConsoleProgress))?;
    let exe = std::env::current_exe().map_err(|e| {
        Error::new(format!("cannot find this program's path: {e}"), "run nexus from its installed path")
    })?;
    let opts = UpOptions {
        dir: args.dir.clone().unwrap_or_else(|| staging::default_dir(staging::is_root())),
        port: args.port,
        git_port: args.git_port,
        exe,
    };
    let (view, ssh) = staging::up(&opts, ui, sys).await?;
    Ok(Up { view, ssh, dir: opts.dir, took: started.elapsed() })
}
