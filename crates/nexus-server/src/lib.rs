//! The Nexus coordination server: REST API, workspace logic, SQLite store, agent hub, SSH forwarder.
//!
//! Layering: `http` (parse, authorize, convert) → `app` (decisions, state machine) → `store` (SQL).
//! Agents' control connections come in through `agent_session`, SSH through `forwarder`.
//!
//! The public surface is what the `nexus` binary and the tests outside this crate use: configure,
//! build an [`App`] (with real or, under the `testing` feature, fake outside services), serve it.

mod agent_session;
mod app;
pub mod config;
pub mod conn_limits;
mod error;
mod forwarder;
pub mod github;
mod http;
mod hub;
mod installer;
mod metrics;
mod rate_limit;
pub mod repo_probe;
mod sealed;
mod secret;
mod ssh_ports;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tls;

use std::future::Future;
use std::sync::Arc;

pub use app::App;
pub use config::ServerConfig;
pub use error::{Result, ServerError};

/// The OpenAPI document of the API this server serves, pretty-printed JSON.
pub fn openapi_json() -> String {
    let (_, api) = http::router_and_api();
    api.to_pretty_json().expect("the OpenAPI document serializes")
}

/// Builds the app with the real GitHub client and git prober, checksums the CLI binaries it serves,
/// restores SSH listeners, and serves HTTP on `listener` until `shutdown` resolves.
pub async fn serve(
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let github = Box::new(github::GithubApi::new(&config.github_api_url));
    let probe = Box::new(repo_probe::GitLsRemote { timeout: std::time::Duration::from_secs(10) });
    // Checksums once, at start (a bad `--binaries-dir` stops the start here), not per download.
    let installer = Arc::new(installer::Installer::new(config.binaries_dir.clone()));
    let catalog = installer.catalog().await?;
    tracing::info!(platforms = %catalog.platforms(), "serving the CLI at /download and the installer at /install.sh");
    // Read before anything is served: a bad certificate stops the start here.
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let app = App::new(config, github, probe)?;
    match tls {
        Some(acceptor) => serve_tls(app, installer, listener, acceptor, shutdown).await,
        None => serve_with_installer(app, installer, listener, shutdown).await,
    }
}

/// [`serve_with_installer`] over HTTPS.
async fn serve_tls(
    app: Arc<App>,
    installer: Arc<installer::Installer>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let background = start_app(&app).await?;
    // TLS ends here, so every request came over https: `/install.sh` bakes that scheme into the
    // script's default server (whatever a client claims in the header).
    let router = http::router_with_installer(app, installer).layer(axum::middleware::map_request(
        |mut req: axum::extract::Request| async move {
            req.headers_mut().insert("x-forwarded-proto", axum::http::HeaderValue::from_static("https"));
            req
        },
    ));
    use axum::serve::ListenerExt as _;
    let tls = tls::TlsListener::new(listener, acceptor)
        .map_err(|source| ServerError::Io { path: "HTTPS listener".into(), source })?;
    // The same connection limits as plain HTTP, on the decrypted side: the header-read timeout
    // reads requests, not TLS records (the handshake has its own timeout and cap in `tls`).
    // No-op tap: axum hands the peer address to handlers (for the audit log) through it.
    let listener = conn_limits::limited(tls).tap_io(|_| {});
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServerError::Io { path: "HTTPS listener".into(), source })
        .inspect(|()| drop(background))
}

/// Reads `--tls-cert`/`--tls-key` the way [`serve`] will, so a bad file stops the start before
/// the server says it listens.
pub fn check_tls(files: &config::TlsFiles) -> Result<(), ServerError> {
    tls::acceptor(files).map(|_| ())
}

/// Serves an already-built app (tests inject fakes this way); the download catalog is built on first use.
pub async fn serve_app(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let installer = Arc::new(installer::Installer::new(app.config().binaries_dir.clone()));
    serve_with_installer(app, installer, listener, shutdown).await
}

async fn serve_with_installer(
    app: Arc<App>,
    installer: Arc<installer::Installer>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let background = start_app(&app).await?;
    let router = http::router_with_installer(app, installer);
    use axum::serve::ListenerExt as _;
    // Tunnel WebSockets carry SSH's small interactive packets; Nagle would hold them back.
    let listener = conn_limits::limited(listener).tap_io(|conn| {
        let _ = conn.get_ref().set_nodelay(true);
    });
    // The peer address goes into the audit log.
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServerError::Io { path: "HTTP listener".into(), source })
        .inspect(|()| drop(background))
}

/// What every way of serving does before it accepts: say what the access policy leaves open,
/// reopen the SSH ports, and start the idle auto-stop (ended when the returned guard drops).
async fn start_app(app: &Arc<App>) -> Result<IdleStopper, ServerError> {
    for warning in app.account_warnings() {
        tracing::warn!("{warning}");
    }
    app.restore().await?;
    Ok(IdleStopper(tokio::spawn(app.clone().stop_idle_workspaces_forever())))
}

/// The idle auto-stop task, ended with the server that started it (an app kept alive by a test
/// after its server stopped must not go on stopping workspaces).
struct IdleStopper(tokio::task::JoinHandle<()>);

impl Drop for IdleStopper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod openapi_tests {
    /// The checked-in document must equal what the code serves. To accept a change on purpose:
    /// `NEXUS_UPDATE_OPENAPI=1 cargo test -p nexus-server openapi`.
    #[test]
    fn openapi_document_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/nexus.json");
        let generated = super::openapi_json() + "\n";
        if std::env::var_os("NEXUS_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "openapi/nexus.json is out of date with the code; review the API change, then run \
             `NEXUS_UPDATE_OPENAPI=1 cargo test -p nexus-server openapi` and commit the file"
        );
    }
}
