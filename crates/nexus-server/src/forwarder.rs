//! SSH forwarding: one TCP listener per workspace port; each accepted connection is carried to the
//! workspace's sshd through a tunnel WebSocket that the workspace's node agent dials back.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::app::App;

/// Accepts connections on a workspace's port until the task is aborted.
pub(crate) async fn serve_port(app: Arc<App>, listener: TcpListener, workspace_id: String) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%workspace_id, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        let workspace_id = workspace_id.clone();
        tokio::spawn(async move { forward(app, stream, peer, workspace_id).await });
    }
}

async fn forward(app: Arc<App>, stream: TcpStream, peer: SocketAddr, workspace_id: String) {
    let _ = stream.set_nodelay(true);
    let ws = match app.tunnel_to(&workspace_id, 22).await {
        Ok(ws) => ws,
        Err(e) => {
            // Closing the connection is all an SSH client can be told; the status endpoint says why.
            tracing::info!(%workspace_id, %peer, error = %e, "refusing SSH connection");
            return;
        }
    };
    splice(stream, ws).await;
}

/// Copies bytes between a TCP stream and a tunnel WebSocket until either side closes.
pub(crate) async fn splice(stream: TcpStream, ws: WebSocket) {
    let (mut tcp_rd, mut tcp_wr) = stream.into_split();
    let (mut ws_tx, mut ws_rx) = ws.split();
    let up = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match tcp_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
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
                Message::Binary(b) if tcp_wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = tcp_wr.shutdown().await;
    };
    // Either direction ending ends the connection: SSH has no use for a half-open tunnel.
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
}
