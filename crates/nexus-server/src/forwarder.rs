//! SSH forwarding: one TCP listener per workspace port; each accepted connection is carried to the
//! workspace's sshd through a tunnel WebSocket that the workspace's node agent dials back.
//!
//! The ports are open to the internet, so a connection costs the server nothing much until it
//! looks like SSH: each source address may hold [`MAX_PER_SOURCE`] connections (over all ports),
//! each port [`MAX_PER_PORT`]; the tunnel (a WebSocket, a node connection and an sshd slot that
//! counts against sshd's `MaxStartups`) is only opened once the client has sent its SSH
//! identification line (`SSH-2.0-...`, which every client sends first, RFC 4253 §4.2), within
//! [`IDENT_TIMEOUT`]; and a connection with no traffic either way for [`IDLE_TIMEOUT`] is closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::app::App;
use crate::metrics::{Forwarded, Metrics};

/// Connections one source address may have open to all forwarding ports together.
pub const MAX_PER_SOURCE: usize = 16;
/// Connections one workspace's port may have open.
pub const MAX_PER_PORT: usize = 64;
/// How long a client has to send its identification line before it is dropped.
pub const IDENT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no bytes either way for this long is closed (the CLI's SSH config sends a
/// keep-alive every 15 s, so only dead or parked connections reach it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// RFC 4253: the identification line is at most 255 bytes, CR LF included.
const MAX_IDENT: usize = 255;

/// Open connections per source address, over every port of this server.
static SOURCES: LazyLock<Mutex<HashMap<IpAddr, usize>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// One connection counted against its source; uncounted when dropped.
struct SourceSlot(IpAddr);

impl SourceSlot {
    /// A slot for `ip`, or `None` when it has [`MAX_PER_SOURCE`] already.
    fn take(ip: IpAddr) -> Option<SourceSlot> {
        let mut sources = SOURCES.lock().unwrap_or_else(|e| e.into_inner());
        let n = sources.entry(ip).or_insert(0);
        if *n >= MAX_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(SourceSlot(ip))
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut sources = SOURCES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = sources.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                sources.remove(&self.0);
            }
        }
    }
}

/// Accepts connections on a workspace's port until the task is aborted.
pub(crate) async fn serve_port(app: Arc<App>, listener: TcpListener, workspace_id: String) {
    let port_slots = Arc::new(Semaphore::new(MAX_PER_PORT));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!(%workspace_id, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(source) = SourceSlot::take(peer.ip()) else {
            app.metrics().forwarded(Forwarded::RefusedSource);
            tracing::debug!(%workspace_id, %peer, "refusing SSH connection: too many from this address");
            continue; // dropping the stream closes it
        };
        let Ok(port) = port_slots.clone().try_acquire_owned() else {
            app.metrics().forwarded(Forwarded::RefusedPort);
            tracing::info!(%workspace_id, %peer, "refusing SSH connection: the port has {MAX_PER_PORT} open");
            continue;
        };
        let app = app.clone();
        let workspace_id = workspace_id.clone();
        tokio::spawn(async move {
            forward(app, stream, peer, workspace_id).await;
            drop((source, port));
        });
    }
}

async fn forward(app: Arc<App>, mut stream: TcpStream, peer: SocketAddr, workspace_id: String) {
    let _ = stream.set_nodelay(true);
    let first = match tokio::time::timeout(IDENT_TIMEOUT, read_ident(&mut stream)).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            app.metrics().forwarded(Forwarded::NotSsh);
            tracing::debug!(%workspace_id, %peer, "closing: no SSH identification line");
            return;
        }
        Err(_) => {
            app.metrics().forwarded(Forwarded::NotSsh);
            tracing::debug!(%workspace_id, %peer, "closing: no SSH identification line in time");
            return;
        }
    };
    // A workspace the server stopped for lack of use starts again for this connection, which waits.
    if let Err(e) = app.wake_for_ssh(&workspace_id).await {
        app.metrics().forwarded(Forwarded::Unavailable);
        tracing::info!(%workspace_id, %peer, error = %e, "refusing SSH connection: could not wake the workspace");
        return;
    }
    let ws = match app.tunnel_to(&workspace_id, 22).await {
        Ok(ws) => ws,
        Err(e) => {
            app.metrics().forwarded(Forwarded::Unavailable);
            // Closing the connection is all an SSH client can be told; the status endpoint says why.
            tracing::info!(%workspace_id, %peer, error = %e, "refusing SSH connection");
            return;
        }
    };
    // Counted while open: a workspace with a connection is in use and is not stopped for idleness.
    let _session = app.ssh_session(&workspace_id);
    let metrics = app.metrics();
    metrics.forwarded(Forwarded::Tunnelled);
    metrics.forwarding(1);
    splice(stream, ws, first, IDLE_TIMEOUT, metrics).await;
    metrics.forwarding(-1);
}

/// Reads until the client's identification line has arrived; returns everything read (the line
/// and whatever followed it), or `None` when the client closed or sent something that is not SSH.
async fn read_ident(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(MAX_IDENT);
    let mut chunk = [0u8; MAX_IDENT];
    loop {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        match ident_state(&buf) {
            Ident::Complete => return Some(buf),
            Ident::Partial => {}
            Ident::NotSsh => return None,
        }
    }
}

/// How far a client's first bytes are towards an identification line.
#[derive(Debug, PartialEq, Eq)]
enum Ident {
    /// `SSH-2.0-...\n` (or `SSH-1.99-`) arrived.
    Complete,
    /// A prefix of one; more is needed.
    Partial,
    /// Not SSH, or a line longer than the RFC allows.
    NotSsh,
}

fn ident_state(buf: &[u8]) -> Ident {
    let prefix_ok = |p: &[u8]| {
        let n = buf.len().min(p.len());
        buf[..n] == p[..n]
    };
    if !prefix_ok(b"SSH-2.0-") && !prefix_ok(b"SSH-1.99-") {
        return Ident::NotSsh;
    }
    match buf.iter().position(|b| *b == b'\n') {
        Some(end) if end < MAX_IDENT => Ident::Complete,
        Some(_) => Ident::NotSsh,
        None if buf.len() >= MAX_IDENT => Ident::NotSsh,
        None => Ident::Partial,
    }
}

/// Copies bytes between a TCP stream and a tunnel WebSocket until either side closes, sending
/// `first` (bytes already read from the client) ahead, and closing after `idle` without traffic
/// either way.
async fn splice(stream: TcpStream, ws: WebSocket, first: Vec<u8>, idle: Duration, metrics: &Metrics) {
    let (mut tcp_rd, mut tcp_wr) = stream.into_split();
    let (mut ws_tx, mut ws_rx) = ws.split();
    let last = Arc::new(Mutex::new(tokio::time::Instant::now()));
    let touch = |last: &Mutex<tokio::time::Instant>| {
        *last.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
    };
    let up = async {
        metrics.forwarded_bytes(true, first.len());
        if !first.is_empty() && ws_tx.send(Message::Binary(first.into())).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match tcp_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    touch(&last);
                    metrics.forwarded_bytes(true, n);
                    if ws_tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.send(Message::Close(None)).await;
    };
    let down = async {
        while let Some(Ok(msg)) = ws_rx.next().await {
            match msg {
                Message::Binary(b) => {
                    touch(&last);
                    metrics.forwarded_bytes(false, b.len());
                    if tcp_wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = tcp_wr.shutdown().await;
    };
    let watchdog = async {
        loop {
            let since = *last.lock().unwrap_or_else(|e| e.into_inner());
            let deadline = since + idle;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    // Either direction ending ends the connection: SSH has no use for a half-open tunnel.
    tokio::select! {
        _ = up => {},
        _ = down => {},
        _ = watchdog => tracing::debug!("closing an idle SSH connection"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_ssh_identification_line_opens_a_tunnel() {
        assert_eq!(ident_state(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n"), Ident::Complete);
        assert_eq!(ident_state(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x00\x01\x14kex"), Ident::Complete);
        assert_eq!(ident_state(b"SSH-1.99-old\n"), Ident::Complete);
        assert_eq!(ident_state(b"SSH-2."), Ident::Partial);
        assert_eq!(ident_state(b"SSH-2.0-slow"), Ident::Partial);
        assert_eq!(ident_state(b"GET / HTTP/1.1\r\n"), Ident::NotSsh);
        assert_eq!(ident_state(b"\r\n"), Ident::NotSsh);
        let mut long = b"SSH-2.0-".to_vec();
        long.extend(std::iter::repeat_n(b'x', 300));
        assert_eq!(ident_state(&long), Ident::NotSsh);
    }

    #[test]
    fn a_source_holds_at_most_its_share() {
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        let held: Vec<_> = (0..MAX_PER_SOURCE).map(|_| SourceSlot::take(ip).expect("under the cap")).collect();
        assert!(SourceSlot::take(ip).is_none(), "one more than the cap is refused");
        assert!(SourceSlot::take("192.0.2.78".parse().unwrap()).is_some(), "other addresses are not affected");
        drop(held);
        assert!(SourceSlot::take(ip).is_some(), "slots come back when connections close");
    }
}
