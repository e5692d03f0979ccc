//! HTTPS for `nexus server --tls-cert FILE --tls-key FILE` (issue 10, item 6): join tokens, API
//! tokens and GitHub tokens cross the network in request bodies and headers, so the server
//! terminates TLS itself when given a certificate instead of relying on a proxy being in front.
//!
//! Handshakes run off the accept loop, each with a time limit and a cap on how many run at once, so
//! a client that opens a connection and says nothing holds up no one else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;
use crate::error::{Result, ServerError};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once.
const MAX_HANDSHAKES: usize = 256;

fn bad_file(path: &std::path::Path, what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {e}")),
    }
}

/// A TLS acceptor for the PEM certificate chain and key in `files`; fails at start on a file that
/// is missing, unreadable or does not hold what it should.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    // ring, explicitly: rustls picks a provider by itself only when exactly one is linked.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad_file(&files.cert, "not a PEM certificate file (--tls-cert)", e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad_file(&files.cert, "not a PEM certificate file (--tls-cert)", e))?;
    if certs.is_empty() {
        return Err(bad_file(
            &files.cert,
            "no certificate in it (--tls-cert)",
            "expected `-----BEGIN CERTIFICATE-----`",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad_file(&files.key, "not a PEM private key (--tls-key)", e))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad_file(&files.key, "the key does not match the certificate (--tls-key)", e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepted, handshaken TLS connections, for `axum::serve`.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `tcp` and hands out connections whose handshake with `acceptor` succeeded.
    /// `TCP_NODELAY` is set on each: tunnels carry SSH's small interactive packets.
    pub(crate) fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local, accept_loop })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
