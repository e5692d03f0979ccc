//! One node agent's control WebSocket, from its hello to its disconnect: reads the agent's
//! messages and hands each to the `App` method for it; writes the server's messages to the agent.
//!
//! The node is who its credential says (the HTTP edge resolved it before the upgrade); the hello
//! must name the same node, and everything the connection reports counts for that node only.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use nexus_types::diagnostics::error_chain;
use nexus_types::protocol::{AgentMessage, ServerMessage};

use crate::app::App;

/// How long a freshly connected agent has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// WebSocket close code for "policy violation": the connection is refused for who it is.
const CLOSE_POLICY: u16 = 1008;

/// Closes `socket` with a reason the agent logs.
async fn refuse(mut socket: WebSocket, reason: &str) {
    let frame = CloseFrame { code: CLOSE_POLICY, reason: reason.to_string().into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Serves node `node`'s agent connection (authenticated by its credential) until it closes.
pub(crate) async fn run(app: Arc<App>, mut socket: WebSocket, node: String) {
    let hello = tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await;
    let Ok(Some(Ok(Message::Text(text)))) = hello else {
        tracing::warn!(%node, "agent connected but sent no hello");
        return;
    };
    let Ok(AgentMessage::Hello { node_name, lxd_project, version, inventory, max_workspaces }) =
        serde_json::from_str::<AgentMessage>(&text)
    else {
        tracing::warn!(%node, "agent's first message was not a hello");
        return;
    };
    if node_name != node {
        tracing::warn!(%node, claimed = %node_name, "hello names another node than the credential's; refused");
        refuse(socket, &format!("this credential belongs to node {node}, not {node_name}")).await;
        return;
    }
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<ServerMessage>();
    let Some(attached) = app.node_connected(&node, out_tx) else {
        tracing::warn!(%node, "a second connection for a node that is connected was refused");
        refuse(socket, &format!("node {node} is already connected")).await;
        return;
    };
    app.node_capacity(&node, max_workspaces);
    tracing::info!(%node, %lxd_project, %version, workspaces = inventory.len(), ?max_workspaces, "node joined");
    let (mut tx, mut rx) = socket.split();
    let mut writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let Ok(text) = serde_json::to_string(&msg) else {
                continue;
            };
            if tx.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        // The hub dropped this connection (the node was revoked, or a newer connection replaced a
        // silent one): say so before the socket goes.
        let frame = CloseFrame { code: CLOSE_POLICY, reason: "the server ended this connection".into() };
        let _ = tx.send(Message::Close(Some(frame))).await;
    });
    let conn_id = attached.conn_id;
    if let Err(e) = app.on_hello(&node, &lxd_project, &inventory).await {
        tracing::error!(%node, error = %error_chain(&e), "could not reconcile node");
    }
    let mut kicked = false;
    loop {
        let msg = tokio::select! {
            msg = rx.next() => msg,
            () = attached.kick.notified() => {
                tracing::info!(%node, "connection ended by the server");
                kicked = true;
                break;
            }
        };
        let Some(Ok(msg)) = msg else {
            break;
        };
        let Message::Text(text) = msg else {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            continue;
        };
        let handled = match serde_json::from_str::<AgentMessage>(&text) {
            Ok(AgentMessage::Heartbeat) => {
                app.node_heartbeat(&node).await.map_err(|e| ("could not record heartbeat", e))
            }
            Ok(AgentMessage::Report(report)) => {
                app.on_report(&node, report).await.map_err(|e| ("could not apply report", e))
            }
            Ok(AgentMessage::Services { workspace_id, generation, services }) => app
                .on_services(&node, &workspace_id, generation, &services)
                .await
                .map_err(|e| ("could not record services", e)),
            Ok(AgentMessage::Setup { workspace_id, generation, setup }) => {
                app.on_setup(&node, &workspace_id, generation, &setup).await.map_err(|e| ("could not record setup", e))
            }
            Ok(AgentMessage::Health { degraded }) => {
                app.on_health(&node, degraded);
                Ok(())
            }
            Ok(AgentMessage::Hello { .. }) => {
                tracing::warn!(%node, "duplicate hello ignored");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(%node, error = %e, "unreadable agent message");
                Ok(())
            }
        };
        if let Err((what, e)) = handled {
            tracing::error!(%node, error = %error_chain(&e), "{what}");
        }
    }
    tracing::info!(%node, "node disconnected");
    app.node_left(&node, conn_id);
    if kicked {
        // Its sender is gone with the hub's entry: the writer sends the close frame and ends.
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
    }
    writer.abort();
}
