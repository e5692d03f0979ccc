//! Burst scheduling: at most `limit` ensures (creates and starts) in flight per node, the rest
//! waiting in a first-come queue per node, so a burst of creates shares LXD's time in an order
//! instead of all contending at once; a waiting workspace says how many are ahead of it.
//!
//! In memory only: after a server restart every node says hello again and the server re-sends an
//! ensure for each workspace still pending or creating, which queues them afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nexus_types::diagnostics::lock;
use nexus_types::protocol::Op;

/// An ensure the node never answered stops holding its slot after this long (a lost message must
/// not shrink a node's capacity for good); longer than any create reaches `running` in.
const IN_FLIGHT_EXPIRY: Duration = Duration::from_secs(600);

/// An ensure waiting for a slot.
pub(crate) struct Waiting {
    pub workspace_id: String,
    pub generation: i64,
    pub op: Op,
}

#[derive(Default)]
struct Lane {
    /// Workspace → (generation, since when).
    in_flight: HashMap<String, (i64, Instant)>,
    waiting: VecDeque<Waiting>,
}

impl Lane {
    fn expire(&mut self) {
        self.in_flight.retain(|_, (_, since)| since.elapsed() < IN_FLIGHT_EXPIRY);
    }
}

/// The per-node queues.
pub(crate) struct BurstQueue {
    /// Most ensures in flight per node; 0 = no bound.
    limit: usize,
    lanes: Mutex<HashMap<String, Lane>>,
}

impl BurstQueue {
    pub(crate) fn new(limit: usize) -> Self {
        BurstQueue { limit, lanes: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// An ensure for `workspace_id` at `generation`: `Some(op)` to send now (it holds a slot),
    /// `None` when it waits. A re-sent ensure of a workspace already in flight keeps its slot.
    pub(crate) fn admit(&self, node: &str, workspace_id: &str, generation: i64, op: Op) -> Option<Op> {
        let mut lanes = lock(&self.lanes);
        let lane = lanes.entry(node.to_string()).or_default();
        lane.expire();
        lane.waiting.retain(|w| w.workspace_id != workspace_id);
        if self.limit == 0 || lane.in_flight.contains_key(workspace_id) || lane.in_flight.len() < self.limit {
            lane.in_flight.insert(workspace_id.to_string(), (generation, Instant::now()));
            return Some(op);
        }
        lane.waiting.push_back(Waiting { workspace_id: workspace_id.to_string(), generation, op });
        None
    }

    /// `node` answered (or will never answer) the ensure of `workspace_id` at `generation` or
    /// older: its slot is free.
    pub(crate) fn finished(&self, node: &str, workspace_id: &str, generation: i64) {
        if let Some(lane) = lock(&self.lanes).get_mut(node) {
            if lane.in_flight.get(workspace_id).is_some_and(|(g, _)| *g <= generation) {
                lane.in_flight.remove(workspace_id);
            }
        }
    }

    /// The next waiting ensure of `node` if a slot is free; it then holds the slot.
    pub(crate) fn next(&self, node: &str) -> Option<Waiting> {
        let mut lanes = lock(&self.lanes);
        let lane = lanes.get_mut(node)?;
        lane.expire();
        if self.limit != 0 && lane.in_flight.len() >= self.limit {
            return None;
        }
        let next = lane.waiting.pop_front()?;
        lane.in_flight.insert(next.workspace_id.clone(), (next.generation, Instant::now()));
        Some(next)
    }

    /// How many ensures wait before `workspace_id`'s, if it waits.
    pub(crate) fn ahead_of(&self, node: &str, workspace_id: &str) -> Option<usize> {
        lock(&self.lanes).get(node)?.waiting.iter().position(|w| w.workspace_id == workspace_id)
    }

    /// Per node: (ensures waiting, ensures in flight), for the metrics.
    pub(crate) fn depths(&self) -> Vec<(String, usize, usize)> {
        lock(&self.lanes).iter().map(|(node, lane)| (node.clone(), lane.waiting.len(), lane.in_flight.len())).collect()
    }

    /// The node's connection closed: what was in flight or waiting is re-sent when it says hello.
    pub(crate) fn node_gone(&self, node: &str) {
        lock(&self.lanes).remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Op {
        Op::Stop
    }

    #[test]
    fn at_most_limit_in_flight_the_rest_in_order_with_their_place() {
        let q = BurstQueue::new(2);
        assert!(q.admit("n1", "ws-1", 1, op()).is_some());
        assert!(q.admit("n1", "ws-2", 1, op()).is_some());
        assert!(q.admit("n1", "ws-3", 1, op()).is_none());
        assert!(q.admit("n1", "ws-4", 1, op()).is_none());
        assert!(q.admit("n2", "ws-5", 1, op()).is_some(), "another node has its own slots");
        assert_eq!(
            (q.ahead_of("n1", "ws-3"), q.ahead_of("n1", "ws-4"), q.ahead_of("n1", "ws-1")),
            (Some(0), Some(1), None)
        );
        assert!(q.next("n1").is_none(), "no slot is free yet");
        q.finished("n1", "ws-1", 1);
        let next = q.next("n1").unwrap();
        assert_eq!((next.workspace_id.as_str(), next.generation), ("ws-3", 1));
        assert!(q.next("n1").is_none());
        assert_eq!(q.ahead_of("n1", "ws-4"), Some(0));
    }

    #[test]
    fn a_resent_ensure_keeps_its_slot_and_a_stale_answer_frees_nothing_newer() {
        let q = BurstQueue::new(1);
        assert!(q.admit("n1", "ws-1", 1, op()).is_some());
        assert!(q.admit("n1", "ws-1", 2, op()).is_some(), "the same workspace again (a re-send after hello)");
        assert!(q.admit("n1", "ws-2", 1, op()).is_none());
        q.finished("n1", "ws-1", 1);
        assert!(q.next("n1").is_none(), "the answer to generation 1 does not free generation 2's slot");
        q.finished("n1", "ws-1", 2);
        assert_eq!(q.next("n1").unwrap().workspace_id, "ws-2");
    }

    #[test]
    fn a_node_that_leaves_drops_its_queue_and_no_limit_means_no_queue() {
        let q = BurstQueue::new(1);
        q.admit("n1", "ws-1", 1, op());
        q.admit("n1", "ws-2", 1, op());
        q.node_gone("n1");
        assert_eq!(q.ahead_of("n1", "ws-2"), None);
        assert!(q.admit("n1", "ws-3", 1, op()).is_some());
        let unbounded = BurstQueue::new(0);
        assert!((0..50).all(|i| unbounded.admit("n1", &format!("ws-{i}"), 1, op()).is_some()));
    }
}
