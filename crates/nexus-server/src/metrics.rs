//! Prometheus metrics for `GET /metrics` (OpenMetrics text, which Prometheus scrapes natively): API
//! requests and latency by route, create→running and create→services-ready times, and, read fresh at
//! each scrape, workspaces by status, nodes by status, workspaces per node and SSH ports left.
//!
//! Counters and histograms live for the process (they reset at restart, as Prometheus expects of
//! counters); state gauges are computed from the store and the hub when scraped, so they can never
//! drift from what the API reports.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nexus_types::diagnostics::lock;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of the exposition.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Workspaces whose create is being timed at once, at most; past it the oldest timings are dropped
/// (a flood of creates must not grow the server's memory without bound).
const MAX_TIMED_CREATES: usize = 10_000;

type Labels = Vec<(&'static str, String)>;

/// API latency buckets, seconds: 5 ms to ~10 s.
fn api_latency() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

/// Workspace readiness buckets, seconds: 1 s to 15 min (a cold install of a large project).
fn readiness() -> Histogram {
    Histogram::new([1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 900.0])
}

/// A create being timed: when it was accepted, and whether it has reached `running` yet.
struct Timing {
    started: Instant,
    running: bool,
}

/// The process's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    http_requests: Family<Labels, Counter>,
    http_latency: Family<Labels, Histogram, fn() -> Histogram>,
    create_to_running: Histogram,
    create_to_services_ready: Histogram,
    creates: Mutex<HashMap<String, Timing>>,
    forwarder_connections: Family<Labels, Counter>,
    forwarder_open: Gauge,
    forwarder_bytes: Family<Labels, Counter>,
}

/// What became of a connection to a workspace's SSH port.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Forwarded {
    /// Carried to the workspace.
    Tunnelled,
    /// Its source address had too many open.
    RefusedSource,
    /// The port had too many open.
    RefusedPort,
    /// It sent no SSH identification line in time.
    NotSsh,
    /// The workspace could not be reached (stopped, its node gone, the wake failed).
    Unavailable,
}

impl Forwarded {
    fn label(self) -> &'static str {
        match self {
            Forwarded::Tunnelled => "tunnelled",
            Forwarded::RefusedSource => "refused_source",
            Forwarded::RefusedPort => "refused_port",
            Forwarded::NotSsh => "not_ssh",
            Forwarded::Unavailable => "unavailable",
        }
    }
}

/// The state gauges' inputs, read by the app at scrape time.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// (status, count), every status listed even at 0 so alerts can compare.
    pub workspaces_by_status: Vec<(String, u64)>,
    /// (node, status, workspaces placed on it).
    pub nodes: Vec<(String, String, u64)>,
    pub ssh_ports_total: u64,
    pub ssh_ports_used: u64,
    /// (node, creates/starts waiting for a slot, in flight).
    pub queues: Vec<(String, u64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nexus");
        let http_requests = Family::<Labels, Counter>::default();
        registry.register("http_requests", "API requests by route template, method and status", http_requests.clone());
        let http_latency = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(api_latency);
        registry.register(
            "http_request_duration_seconds",
            "API request latency by route template (WebSocket routes: until the upgrade)",
            http_latency.clone(),
        );
        let create_to_running = readiness();
        registry.register(
            "workspace_create_to_running_seconds",
            "From an accepted create to the workspace running (container up, repo cloned, SSH ready)",
            create_to_running.clone(),
        );
        let create_to_services_ready = readiness();
        registry.register(
            "workspace_create_to_services_ready_seconds",
            "From an accepted create to every planned service running",
            create_to_services_ready.clone(),
        );
        let forwarder_connections = Family::<Labels, Counter>::default();
        registry.register(
            "forwarder_connections",
            "Connections to workspaces' SSH ports, by what became of them",
            forwarder_connections.clone(),
        );
        let forwarder_open = Gauge::<i64>::default();
        registry.register("forwarder_open_connections", "SSH connections being carried now", forwarder_open.clone());
        let forwarder_bytes = Family::<Labels, Counter>::default();
        registry.register(
            "forwarder_bytes",
            "Bytes carried by the SSH forwarder, by direction (to_workspace, from_workspace)",
            forwarder_bytes.clone(),
        );
        Metrics {
            forwarder_connections,
            forwarder_open,
            forwarder_bytes,
            registry,
            http_requests,
            http_latency,
            create_to_running,
            create_to_services_ready,
            creates: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    /// One API request answered.
    pub(crate) fn http(&self, route: &str, method: &str, status: u16, took: Duration) {
        let labels = vec![("route", route.to_string()), ("method", method.to_string()), ("status", status.to_string())];
        self.http_requests.get_or_create(&labels).inc();
        self.http_latency.get_or_create(&vec![("route", route.to_string())]).observe(took.as_secs_f64());
    }

    /// A connection to an SSH port ended up `what`.
    pub(crate) fn forwarded(&self, what: Forwarded) {
        self.forwarder_connections.get_or_create(&vec![("outcome", what.label().to_string())]).inc();
    }

    /// A carried connection opened (`+1`) or closed (`-1`).
    pub(crate) fn forwarding(&self, delta: i64) {
        self.forwarder_open.inc_by(delta);
    }

    /// `n` bytes carried towards the workspace (`to_workspace`) or back.
    pub(crate) fn forwarded_bytes(&self, to_workspace: bool, n: usize) {
        let direction = if to_workspace { "to_workspace" } else { "from_workspace" };
        self.forwarder_bytes.get_or_create(&vec![("direction", direction.to_string())]).inc_by(n as u64);
    }

    /// A create was accepted for `id`: start its clocks.
    pub(crate) fn create_accepted(&self, id: &str) {
        let mut creates = lock(&self.creates);
        if creates.len() >= MAX_TIMED_CREATES {
            if let Some(oldest) = creates.iter().min_by_key(|(_, t)| t.started).map(|(k, _)| k.clone()) {
                creates.remove(&oldest);
            }
        }
        creates.insert(id.to_string(), Timing { started: Instant::now(), running: false });
    }

    /// `id` reached `running`; counted once per create.
    pub(crate) fn reached_running(&self, id: &str) {
        if let Some(t) = lock(&self.creates).get_mut(id).filter(|t| !t.running) {
            t.running = true;
            self.create_to_running.observe(t.started.elapsed().as_secs_f64());
        }
    }

    /// Every planned service of `id` is running; ends its timing.
    pub(crate) fn services_ready(&self, id: &str) {
        if let Some(t) = lock(&self.creates).remove(id) {
            self.create_to_services_ready.observe(t.started.elapsed().as_secs_f64());
        }
    }

    /// The create of `id` will not finish (failed, deleted): stop timing it.
    pub(crate) fn forget(&self, id: &str) {
        lock(&self.creates).remove(id);
    }

    /// The exposition: the process's counters and histograms, then the state in `snapshot`.
    pub(crate) fn render(&self, snapshot: &Snapshot) -> String {
        let mut state = Registry::with_prefix("nexus");
        let workspaces = Family::<Labels, Gauge>::default();
        for (status, n) in &snapshot.workspaces_by_status {
            workspaces.get_or_create(&vec![("status", status.clone())]).set(gauge_value(*n));
        }
        state.register("workspaces", "Workspaces by status", workspaces);
        let nodes = Family::<Labels, Gauge>::default();
        let per_node = Family::<Labels, Gauge>::default();
        for (node, status, placed) in &snapshot.nodes {
            nodes.get_or_create(&vec![("node", node.clone()), ("status", status.clone())]).set(1);
            per_node.get_or_create(&vec![("node", node.clone())]).set(gauge_value(*placed));
        }
        let queued = Family::<Labels, Gauge>::default();
        let in_flight = Family::<Labels, Gauge>::default();
        for (node, waiting, flying) in &snapshot.queues {
            queued.get_or_create(&vec![("node", node.clone())]).set(gauge_value(*waiting));
            in_flight.get_or_create(&vec![("node", node.clone())]).set(gauge_value(*flying));
        }
        state.register(
            "node_queued_starts",
            "Creates/starts waiting for a slot on each node (burst scheduling)",
            queued,
        );
        state.register("node_starts_in_flight", "Creates/starts each node is working on", in_flight);
        state.register("node_up", "1 per node, labelled with its status (ok, connecting, unresponsive)", nodes);
        state.register("node_workspaces", "Workspaces placed on each node", per_node);
        let ports_total = Gauge::<i64>::default();
        ports_total.set(gauge_value(snapshot.ssh_ports_total));
        state.register("ssh_ports", "SSH ports in the configured range", ports_total);
        let ports_used = Gauge::<i64>::default();
        ports_used.set(gauge_value(snapshot.ssh_ports_used));
        state.register("ssh_ports_used", "SSH ports held by workspaces", ports_used);

        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &state);
        let _ = encode_eof(&mut out);
        out
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_are_timed_once_and_forgotten() {
        let m = Metrics::default();
        m.create_accepted("ws-1");
        m.reached_running("ws-1");
        m.reached_running("ws-1");
        m.services_ready("ws-1");
        m.services_ready("ws-1");
        m.reached_running("ws-unknown");
        let text = m.render(&Snapshot::default());
        assert!(text.contains("nexus_workspace_create_to_running_seconds_count 1\n"), "{text}");
        assert!(text.contains("nexus_workspace_create_to_services_ready_seconds_count 1\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_timing_table_is_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_TIMED_CREATES + 5 {
            m.create_accepted(&format!("ws-{i}"));
        }
        assert_eq!(lock(&m.creates).len(), MAX_TIMED_CREATES);
        assert!(!lock(&m.creates).contains_key("ws-0"), "the oldest is dropped");
    }
}
