//! One node agent's control WebSocket, from its hello to its disconnect: reads the agent's
//! messages and hands each to the `App` method for it; writes the server's messages to the agent.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use nexus_types::diagnostics::error_chain;
use nexus_types::protocol::{AgentMessage, ServerMessage};

use crate::app::App;

/// How long a freshly connected agent has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one agent connection until it closes.
pub(crate) async fn run(app: Arc<App>, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    let hello = tokio::time::timeout(HELLO_TIMEOUT, rx.next()).await;
    let Ok(Some(Ok(Message::Text(text)))) = hello else {
        tracing::warn!("agent connected but sent no hello");
        return;
    };
    let Ok(AgentMessage::Hello { node_name: node, lxd_project, version, inventory }) =
        serde_json::from_str::<AgentMessage>(&text)
    else {
        tracing::warn!("agent's first message was not a hello");
        return;
    };
    tracing::info!(%node, %lxd_project, %version, workspaces = inventory.len(), "node joined");
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<ServerMessage>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let Ok(text) = serde_json::to_string(&msg) else {
                continue;
            };
            if tx.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    let conn_id = app.node_connected(&node, out_tx);
    if let Err(e) = app.on_hello(&node, &lxd_project, &inventory).await {
        tracing::error!(%node, error = %error_chain(&e), "could not reconcile node");
    }
    while let Some(Ok(msg)) = rx.next().await {
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
    writer.abort();
}
