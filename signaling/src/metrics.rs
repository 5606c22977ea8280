//! What an operator watches, at `GET /metrics` in the Prometheus text format.

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label holding an error or close code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabel {
    pub(crate) code: String,
}

/// Every metric the server keeps.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) connections: Gauge,
    pub(crate) peers: Gauge,
    pub(crate) rooms: Gauge,
    pub(crate) frames_in: Counter,
    pub(crate) frames_out: Counter,
    pub(crate) relayed_local: Counter,
    pub(crate) relayed_remote: Counter,
    pub(crate) errors: Family<CodeLabel, Counter>,
    pub(crate) rate_limited: Counter,
    pub(crate) closed: Family<CodeLabel, Counter>,
    pub(crate) redis_up: Gauge,
    pub(crate) redis_rtt: Histogram,
    pub(crate) redis_failures: Counter,
    pub(crate) remote_batch: Histogram,
    pub(crate) remote_waits: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("meshdrop");
        let metrics = Metrics {
            connections: Gauge::default(),
            peers: Gauge::default(),
            rooms: Gauge::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            relayed_local: Counter::default(),
            relayed_remote: Counter::default(),
            errors: Family::default(),
            rate_limited: Counter::default(),
            closed: Family::default(),
            redis_up: Gauge::default(),
            // 100 µs to ~0.8 s.
            redis_rtt: Histogram::new(exponential_buckets(0.0001, 2.0, 14)),
            redis_failures: Counter::default(),
            // 1 to 512 signals.
            remote_batch: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            remote_waits: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("connections", "Open WebSocket connections", metrics.connections.clone());
        registry.register("peers", "Peers joined on this instance", metrics.peers.clone());
        registry.register("rooms", "Rooms with peers on this instance", metrics.rooms.clone());
        registry.register("frames_received", "Frames received from clients", metrics.frames_in.clone());
        registry.register("frames_sent", "Frames written to clients", metrics.frames_out.clone());
        registry.register("signals_relayed_local", "Signals relayed to a peer on this instance", metrics.relayed_local.clone());
        registry.register("signals_relayed_remote", "Signals relayed to a peer on another instance", metrics.relayed_remote.clone());
        registry.register("errors", "Error frames sent, by code", metrics.errors.clone());
        registry.register("rate_limited", "Frames or signals refused by a rate limit", metrics.rate_limited.clone());
        registry.register("closed", "Connections closed by the server, by close code", metrics.closed.clone());
        registry.register("redis_up", "1 while Redis answers (cluster mode)", metrics.redis_up.clone());
        registry.register("redis_rtt_seconds", "Redis command round trips", metrics.redis_rtt.clone());
        registry.register("redis_failures", "Redis commands or subscriptions that failed", metrics.redis_failures.clone());
        registry.register("remote_batch_signals", "Signals per PUBLISH to another instance", metrics.remote_batch.clone());
        registry.register(
            "remote_queue_waits",
            "Signals whose sender waited for room in a full queue for another instance",
            metrics.remote_waits.clone(),
        );
        Metrics { registry, ..metrics }
    }

    pub(crate) fn error(&self, code: &str) {
        self.errors.get_or_create(&CodeLabel { code: code.to_owned() }).inc();
    }

    pub(crate) fn closed(&self, code: u16) {
        self.closed.get_or_create(&CodeLabel { code: code.to_string() }).inc();
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
