//! One tunnel: a TCP connection to a workspace port spliced onto a WebSocket dialed back to the
//! server, so the server can reach workspaces on nodes it cannot connect to.
//!
//! When the workspace port cannot be reached the tunnel is still dialed and closed at once with
//! a reason: the server (and the user's SSH client) learn about it immediately instead of
//! waiting for a timeout.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use nexus_types::diagnostics::{error_chain, lock};

use super::{answer_close, close, dial, truncate, Shared, Ws};
use crate::provider::Provider;

/// Limit for connecting to the workspace port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from TCP per frame.
const CHUNK: usize = 32 * 1024;

/// Serves tunnel `tunnel_id` to `port` in `workspace_id` until either side closes.
pub(super) async fn serve<P: Provider>(shared: Arc<Shared<P>>, tunnel_id: String, workspace_id: String, port: u16) {
    // The id becomes part of a URL path.
    if tunnel_id.is_empty()
        || tunnel_id.len() > 128
        || !tunnel_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        tracing::warn!(tunnel = %truncate(&tunnel_id, 64), "refusing a tunnel with a malformed id");
        return;
    }
    let url = format!("{}/{tunnel_id}", shared.tunnel_base);
    // Reaching the workspace and dialing back are independent: do both at once.
    let (target, ws) = tokio::join!(connect(&shared, &workspace_id, port), dial(&url, &shared.auth, true));
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            tracing::warn!(tunnel = %tunnel_id, workspace = %workspace_id, error = %error_chain(&e), "dialing the tunnel failed");
            return;
        }
    };
    match target {
        Ok(tcp) => {
            tracing::debug!(tunnel = %tunnel_id, workspace = %workspace_id, port, "tunnel open");
            pump(&mut ws, tcp).await;
            tracing::debug!(tunnel = %tunnel_id, "tunnel closed");
        }
        Err(why) => {
            tracing::warn!(tunnel = %tunnel_id, workspace = %workspace_id, port, error = %why, "workspace port unreachable; closing the tunnel");
            // Close reasons are limited to 123 bytes.
            let frame =
                CloseFrame { code: CloseCode::Error, reason: truncate(&format!("unreachable: {why}"), 120).into() };
            close(&mut ws, Some(frame)).await;
        }
    }
}

/// Connects to `port` in the workspace. The address is cached per workspace, because asking the
/// provider for it costs a round trip (LXD: a REST request) per SSH connection; a failed connect
/// asks again once.
async fn connect<P: Provider>(shared: &Shared<P>, workspace_id: &str, port: u16) -> Result<TcpStream, String> {
    let key = (workspace_id.to_string(), port);
    let cached = lock(&shared.endpoints).get(&key).copied();
    if let Some(addr) = cached {
        if let Ok(Ok(tcp)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            return Ok(tcp);
        }
        lock(&shared.endpoints).remove(&key);
    }
    let addr = match shared.provider.endpoint(workspace_id, port).await {
        Ok(Some(addr)) => addr,
        Ok(None) => return Err("the workspace has no address (is it running?)".to_string()),
        Err(e) => return Err(error_chain(&e)),
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => {
            lock(&shared.endpoints).insert(key, addr);
            Ok(tcp)
        }
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: connect timed out")),
    }
}

/// Copies bytes both ways until either side ends, then closes the other.
async fn pump(ws: &mut Ws, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let (mut rd, mut wr) = tcp.into_split();
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    close(ws, None).await;
                    return;
                }
                Ok(n) => {
                    if ws.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if wr.write_all(&b).await.is_err() {
                        close(ws, None).await;
                        return;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    if wr.write_all(t.as_bytes()).await.is_err() {
                        close(ws, None).await;
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    answer_close(ws).await;
                    let _ = wr.shutdown().await;
                    return;
                }
                None | Some(Err(_)) => {
                    let _ = wr.shutdown().await;
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}
