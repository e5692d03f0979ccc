//! Connected node agents: who is connected and responsive, sending them commands, and pairing
//! tunnel WebSockets that agents dial back with the SSH connections waiting for them.
//!
//! A node has at most one live control connection: a second one is refused while the first still
//! heartbeats (so nobody holding the node's credential can take its commands over), and replaces it
//! once the first went silent (a half-open connection after a network blip). A tunnel is bound to
//! the node it was asked of; only that node can answer it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocket;
use nexus_types::api::NodeStatus;
use nexus_types::diagnostics::lock;
use nexus_types::protocol::ServerMessage;
use tokio::sync::{mpsc, oneshot, Notify};

struct NodeConn {
    conn_id: u64,
    tx: mpsc::UnboundedSender<ServerMessage>,
    last_heartbeat: Instant,
    /// Notified when the connection must end (its node was revoked).
    kick: Arc<Notify>,
    /// What the agent last said of its container provider: why it cannot run operations now.
    degraded: Option<String>,
    /// Most workspaces it runs at once, as its hello said.
    capacity: Option<u32>,
}

/// A tunnel the server asked a node for, waiting for that node to dial back.
struct PendingTunnel {
    node: String,
    tx: oneshot::Sender<WebSocket>,
}

/// A node's attached control connection.
pub(crate) struct Attached {
    /// The id to detach with.
    pub conn_id: u64,
    /// Notified when the server ends the connection (the node was revoked).
    pub kick: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, NodeConn>,
    tunnels: HashMap<String, PendingTunnel>,
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

    /// Registers a node's control connection. Refused (`None`) while another connection of the
    /// node is live; one that went silent for the node timeout (or closed) is replaced.
    pub(crate) fn attach(&self, node: &str, tx: mpsc::UnboundedSender<ServerMessage>) -> Option<Attached> {
        let mut inner = self.lock();
        if inner.nodes.get(node).is_some_and(|c| self.live(c)) {
            return None;
        }
        inner.next_conn += 1;
        let conn_id = inner.next_conn;
        let kick = Arc::new(Notify::new());
        if let Some(old) = inner.nodes.insert(
            node.to_string(),
            NodeConn {
                conn_id,
                tx,
                last_heartbeat: Instant::now(),
                kick: kick.clone(),
                degraded: None,
                capacity: None,
            },
        ) {
            // The silent connection it replaces ends too, so it cannot deliver stale reports later.
            old.kick.notify_one();
        }
        inner.heard.insert(node.to_string());
        Some(Attached { conn_id, kick })
    }

    fn live(&self, c: &NodeConn) -> bool {
        c.last_heartbeat.elapsed() < self.node_timeout && !c.tx.is_closed()
    }

    /// Whether `node` has a live control connection (a new one would be refused).
    pub(crate) fn is_connected(&self, node: &str) -> bool {
        self.lock().nodes.get(node).is_some_and(|c| self.live(c))
    }

    /// Ends `node`'s control connection (it was revoked) and drops the tunnels waiting for it.
    pub(crate) fn kick(&self, node: &str) {
        let mut inner = self.lock();
        if let Some(c) = inner.nodes.remove(node) {
            c.kick.notify_one();
        }
        inner.tunnels.retain(|_, t| t.node != node);
    }

    /// Removes a node's connection, unless a newer one has replaced it.
    /// Whether it removed it (false when a newer connection is the node's now).
    pub(crate) fn detach(&self, node: &str, conn_id: u64) -> bool {
        let mut inner = self.lock();
        let current = inner.nodes.get(node).is_some_and(|c| c.conn_id == conn_id);
        if current {
            inner.nodes.remove(node);
        }
        current
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
            Some(c) if self.live(c) && c.degraded.is_some() => NodeStatus::Degraded,
            Some(c) if self.live(c) => NodeStatus::Ok,
            _ if !inner.heard.contains(node) && self.started.elapsed() < self.node_timeout => NodeStatus::Connecting,
            _ => NodeStatus::Unresponsive,
        }
    }

    /// The agent's word on its container provider: `Some(why)` it cannot run operations now.
    pub(crate) fn set_degraded(&self, node: &str, degraded: Option<String>) {
        if let Some(c) = self.lock().nodes.get_mut(node) {
            c.degraded = degraded;
        }
    }

    /// What `node`'s hello said it holds at most.
    pub(crate) fn set_capacity(&self, node: &str, capacity: Option<u32>) {
        if let Some(c) = self.lock().nodes.get_mut(node) {
            c.capacity = capacity;
        }
    }

    /// Most workspaces `node` runs at once, if it said.
    pub(crate) fn capacity(&self, node: &str) -> Option<u32> {
        self.lock().nodes.get(node).and_then(|c| c.capacity)
    }

    /// Why `node` is degraded, if it is.
    pub(crate) fn degraded(&self, node: &str) -> Option<String> {
        self.lock().nodes.get(node).and_then(|c| c.degraded.clone())
    }

    /// Connected, heartbeating within the timeout, and able to run operations.
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
        self.lock().tunnels.insert(tunnel_id.clone(), PendingTunnel { node: node.to_string(), tx });
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

    /// Whether tunnel `tunnel_id` waits for `node` (checked before the upgrade, so another node's
    /// dial is refused outright).
    pub(crate) fn expects_tunnel(&self, tunnel_id: &str, node: &str) -> bool {
        self.lock().tunnels.get(tunnel_id).is_some_and(|t| t.node == node)
    }

    /// Hands `node`'s tunnel WebSocket to the connection waiting for it; false if none waits for
    /// this node under that id.
    pub(crate) fn complete_tunnel(&self, tunnel_id: &str, node: &str, ws: WebSocket) -> bool {
        let mut inner = self.lock();
        match inner.tunnels.remove_entry(tunnel_id) {
            Some((_, t)) if t.node == node => t.tx.send(ws).is_ok(),
            // Another node's dial: the tunnel keeps waiting for its own node.
            Some((id, t)) => {
                inner.tunnels.insert(id, t);
                false
            }
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
        let c1 = hub.attach("n1", tx).unwrap().conn_id;
        assert!(hub.is_responsive("n1"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!hub.is_responsive("n1"), "missed heartbeats make a node unresponsive");
        hub.heartbeat("n1");
        assert!(hub.is_responsive("n1"));
        // A second connection is refused while the first is live...
        let (tx2, _rx2) = mpsc::unbounded_channel();
        assert!(hub.attach("n1", tx2.clone()).is_none(), "a second live connection must be refused");
        // ...and replaces it once it went silent; the old one's detach must not remove the new one.
        std::thread::sleep(Duration::from_millis(60));
        let c2 = hub.attach("n1", tx2).unwrap().conn_id;
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
        let c = hub.attach("n2", tx).unwrap().conn_id;
        hub.detach("n2", c);
        assert_eq!(hub.node_status("n2"), NodeStatus::Unresponsive);
        std::thread::sleep(Duration::from_millis(110));
        assert_eq!(hub.node_status("n1"), NodeStatus::Unresponsive, "the timeout has passed since start");
    }

    #[tokio::test]
    async fn a_revoked_node_is_kicked_and_a_tunnel_answers_only_its_node() {
        let hub = Hub::new(Duration::from_secs(5));
        let (tx, _rx) = mpsc::unbounded_channel();
        let attached = hub.attach("n1", tx).unwrap();
        hub.kick("n1");
        tokio::time::timeout(Duration::from_secs(1), attached.kick.notified()).await.expect("kicked");
        assert!(!hub.is_connected("n1"));
        let (tx, _back) = oneshot::channel();
        hub.lock().tunnels.insert("tun_1".into(), PendingTunnel { node: "n1".into(), tx });
        assert!(hub.expects_tunnel("tun_1", "n1"));
        assert!(!hub.expects_tunnel("tun_1", "n2"), "another node must not answer n1's tunnel");
        assert!(!hub.expects_tunnel("tun_2", "n1"));
    }
}
