//! The long-running roles this binary plays besides the CLI: `nexus server` and `nexus agent`
//! (the designer and host commands live in `nexus-cli` and `nexus-node`).

pub(crate) mod agent;
pub(crate) mod server;

/// Resolves on Ctrl-C or SIGTERM, for a clean shutdown.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
