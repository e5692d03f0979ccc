//! Connected node agents: who is connected and responsive, sending them commands, and pairing
//! tunnel WebSockets that agents dial back with the SSH connections waiting for them.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocket;
use nexus_types::api::NodeStatus;
use nexus_types::diagnostics::lock;
use nexus_types::protocol::ServerMessage;
use tokio::sync::{mpsc, oneshot};

struct NodeConn {
    conn_id: u64,
    tx: mpsc::UnboundedSender<ServerMessage>,
    last_heartbeat: Instant,
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, NodeConn>,
    tunnels: HashMap<String, oneshot::Sender<WebSocket>>,
    next_conn: u64,
    /// Nodes that connected since this process started; any other node is still reconnecting
    /// (after a server restart) until `node_timeout` has passed since start.
    heard: HashSet<String>,
}

/// The registry of agent connections.
pub(crate) struct Hub {
    inner: Mutex<Inner>,
    node_timeout: Duration,
    started: Instant,
}

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TunnelError {
    /// The node has no live control connection.
    #[error("node {0} is not connected")]
    NodeGone(String),
    /// The agent did not dial back in time.
    #[error("node {0} did not open the tunnel in time")]
    TimedOut(String),
}

impl Hub {
    /// A hub that calls a node unresponsive after `node_timeout` without a heartbeat; nodes not
    /// heard from yet are `connecting` for the first `node_timeout` of its life.
    pub(crate) fn new(node_timeout: Duration) -> Self {
        Hub { inner: Mutex::new(Inner::default()), node_timeout, started: Instant::now() }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Registers a node's control connection, replacing an older one of the same name.
    /// Returns the id to detach with.
    pub(crate) fn attach(&self, node: &str, tx: mpsc::UnboundedSender<ServerMessage>) -> u64 {
        let mut inner = self.lock();
        inner.next_conn += 1;
        let conn_id = inner.next_conn;
        inner.nodes.insert(node.to_string(), NodeConn { conn_id, tx, last_heartbeat: Instant::now() });
        inner.heard.insert(node.to_string());
        conn_id
    }

    /// Removes a node's connection, unless a newer one has replaced it.
    pub(crate) fn detach(&self, node: &str, conn_id: u64) {
        let mut inner = self.lock();
        if inner.nodes.get(node).is_some_and(|c| c.conn_id == conn_id) {
            inner.nodes.remove(node);
        }
    }

    pub(crate) fn heartbeat(&self, node: &str) {
        if let Some(c) = self.lock().nodes.get_mut(node) {
            c.last_heartbeat = Instant::now();
        }
    }

    /// `ok` when connected and heartbeating within the timeout; `connecting` when not heard from
    /// since this server started and the timeout has not passed since then (right after a restart
    /// every node is reconnecting, not unresponsive); `unresponsive` otherwise.
    pub(crate) fn node_status(&self, node: &str) -> NodeStatus {
        let inner = self.lock();
        match inner.nodes.get(node) {
            Some(c) if c.last_heartbeat.elapsed() < self.node_timeout && !c.tx.is_closed() => NodeStatus::Ok,
            _ if !inner.heard.contains(node) && self.started.elapsed() < self.node_timeout => NodeStatus::Connecting,
            _ => NodeStatus::Unresponsive,
        }
    }

    /// Connected and heartbeating within the timeout.
    pub(crate) fn is_responsive(&self, node: &str) -> bool {
        self.node_status(node) == NodeStatus::Ok
    }

    /// How long this server has been up.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sends a message; false when the node is not connected.
    pub(crate) fn send(&self, node: &str, msg: ServerMessage) -> bool {
        self.lock().nodes.get(node).is_some_and(|c| c.tx.send(msg).is_ok())
    }

    /// Asks `node` to connect to `port` in `workspace_id` and waits for its tunnel WebSocket.
    pub(crate) async fn open_tunnel(
        &self,
        node: &str,
        workspace_id: &str,
        port: u16,
    ) -> Result<WebSocket, TunnelError> {
        let tunnel_id = crate::secret::random_token("tun_");
        let (tx, rx) = oneshot::channel();
        self.lock().tunnels.insert(tunnel_id.clone(), tx);
        let msg =
            ServerMessage::OpenTunnel { tunnel_id: tunnel_id.clone(), workspace_id: workspace_id.to_string(), port };
        if !self.send(node, msg) {
            self.lock().tunnels.remove(&tunnel_id);
            return Err(TunnelError::NodeGone(node.to_string()));
        }
        let result = tokio::time::timeout(Duration::from_secs(10), rx).await;
        self.lock().tunnels.remove(&tunnel_id);
        match result {
            Ok(Ok(ws)) => Ok(ws),
            _ => Err(TunnelError::TimedOut(node.to_string())),
        }
    }

    /// Hands an agent's tunnel WebSocket to the connection waiting for it; false if none waits.
    pub(crate) fn complete_tunnel(&self, tunnel_id: &str, ws: WebSocket) -> bool {
        match self.lock().tunnels.remove(tunnel_id) {
            Some(tx) => tx.send(ws).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_connection_and_heartbeats() {
        let hub = Hub::new(Duration::from_millis(50));
        let (tx, _rx) = mpsc::unbounded_channel();
        let c1 = hub.attach("n1", tx);
        assert!(hub.is_responsive("n1"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!hub.is_responsive("n1"), "missed heartbeats make a node unresponsive");
        hub.heartbeat("n1");
        assert!(hub.is_responsive("n1"));
        // A reconnect replaces the old connection; the old one's detach must not remove the new one.
        let (tx2, _rx2) = mpsc::unbounded_channel();
        let c2 = hub.attach("n1", tx2);
        hub.detach("n1", c1);
        assert!(hub.is_responsive("n1"));
        hub.detach("n1", c2);
        assert!(!hub.is_responsive("n1"));
        assert!(!hub.send("n1", ServerMessage::Welcome { heartbeat_secs: 1 }));
    }

    #[test]
    fn a_node_not_heard_from_since_start_is_connecting_until_the_timeout() {
        let hub = Hub::new(Duration::from_millis(100));
        assert_eq!(hub.node_status("n1"), NodeStatus::Connecting, "just started: nodes are reconnecting");
        // A node that came and went in that window was heard from: its silence means something.
        let (tx, _rx) = mpsc::unbounded_channel();
        let c = hub.attach("n2", tx);
        hub.detach("n2", c);
        assert_eq!(hub.node_status("n2"), NodeStatus::Unresponsive);
        std::thread::sleep(Duration::from_millis(110));
        assert_eq!(hub.node_status("n1"), NodeStatus::Unresponsive, "the timeout has passed since start");
    }
}
