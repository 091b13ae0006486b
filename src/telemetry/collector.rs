//! The custom `prometheus_client` collector: at each scrape, sums every shard's counters and reads the
//! acceptor, store, room directory, process and build figures, then encodes them.
//!
//! Everything is encoded with `prometheus_client`'s encoder (`ConstCounter`, `ConstGauge`,
//! `encode_histogram`, `encode_info`); this file only decides names, help texts and labels, which
//! `docs/METRICS.md` lists.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::process::ProcessStats;
use super::readiness::{Readiness, StoreState};
use crate::build_info;
use crate::cluster::{ClusterCounters, ClusterShared};
use crate::metrics::histogram::{BATCH_BOUNDS, LATENCY_BOUNDS_NS, NANOS};
use crate::metrics::{
    AcceptorMetrics, CloseReason, HistogramSnapshot, HistoryKind, Moderated, ShardMetrics, TlsFailure,
};
use crate::room::hub::Hub;
use crate::store::{Store, StoreHistograms, StoreStats};
use crate::types::ErrorCode;
use crate::webhook::WebhookStats;

/// Reads everything at scrape time (registered once in [`super::Telemetry`]).
pub(crate) struct RoomcastCollector {
    /// Every shard's counters.
    pub(crate) shards: Vec<Arc<ShardMetrics>>,
    /// The acceptor's counters.
    pub(crate) acceptor: Arc<AcceptorMetrics>,
    /// The store, when persistence is on (weak: shutdown must be able to take it back).
    pub(crate) store: Option<Weak<Store>>,
    /// The room directory.
    pub(crate) hub: Arc<Hub>,
    /// Cluster mode: the links' counters.
    pub(crate) cluster: Option<Arc<ClusterShared>>,
    /// With `--webhook-url`: the webhook threads' counters.
    pub(crate) webhooks: Option<Arc<WebhookStats>>,
    /// Set when shutdown begins.
    pub(crate) draining: Arc<AtomicBool>,
}

impl fmt::Debug for RoomcastCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomcastCollector").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}

impl Collector for RoomcastCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.encode_connections(&mut enc)?;
        self.encode_traffic(&mut enc)?;
        self.encode_history(&mut enc)?;
        self.encode_tls(&mut enc)?;
        self.encode_store(&mut enc)?;
        self.encode_redis(&mut enc)?;
        self.encode_webhooks(&mut enc)?;
        encode_process(&mut enc, &ProcessStats::read())?;
        let readiness =
            Readiness { store: StoreState::of(self.store.as_ref()), draining: self.draining.load(Ordering::SeqCst) };
        gauge(&mut enc, "roomcast_ready", "1 when /readyz answers 200, else 0.", i64::from(readiness.is_ready()))?;
        let labels = [("version", build_info::VERSION), ("git_commit", build_info::GIT_COMMIT)];
        let mut m = enc.encode_descriptor(
            "roomcast_build",
            "Version and git commit of the running binary (value always 1).",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&labels)
    }
}

impl RoomcastCollector {
    fn sum(&self, f: impl Fn(&ShardMetrics) -> u64) -> u64 {
        self.shards.iter().map(|s| f(s)).sum()
    }

    fn merged(&self, f: impl Fn(&ShardMetrics) -> HistogramSnapshot) -> HistogramSnapshot {
        let mut total = HistogramSnapshot::empty(LATENCY_BOUNDS_NS, NANOS);
        for shard in &self.shards {
            total.merge(&f(shard));
        }
        total
    }

    fn encode_connections(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        per_shard_gauge(enc, "roomcast_connections_open", "Connections held by each shard.", &self.shards, |s| {
            s.connections_open.get()
        })?;
        counter(
            enc,
            "roomcast_connections_accepted",
            "TCP connections accepted (HTTP and WebSocket).",
            self.acceptor.accepted.get(),
        )?;
        let closed = CloseReason::ALL.iter().map(|&r| {
            let mut n = self.sum(|s| s.closed[r.index()].get());
            if r == CloseReason::OverLimit {
                n += self.acceptor.refused.get();
            }
            (r.as_str(), n)
        });
        labeled_counters(enc, "roomcast_connections_closed", "Connections closed, by reason.", "reason", closed)?;
        let rooms = i64::try_from(self.hub.directory.len()).unwrap_or(i64::MAX);
        gauge(enc, "roomcast_rooms", "Rooms with at least one member.", rooms)?;
        per_shard_gauge(
            enc,
            "roomcast_room_members",
            "Room memberships of each shard's connections (a JSON connection in 3 rooms counts 3).",
            &self.shards,
            |s| s.room_members.get(),
        )
    }

    fn encode_traffic(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        counter(
            enc,
            "roomcast_messages_received",
            "Chat messages accepted from clients and published (text frames and JSON message commands).",
            self.sum(|s| s.messages_received.get()),
        )?;
        counter(
            enc,
            "roomcast_binary_messages_received",
            "Binary frames relayed to text-format rooms.",
            self.sum(|s| s.binary_received.get()),
        )?;
        counter(
            enc,
            "roomcast_deliveries",
            "Frames fanned out to room members (one per recipient: messages, binary relays, presence).",
            self.sum(|s| s.deliveries.get()),
        )?;
        counter(enc, "roomcast_received_bytes", "Bytes read from client sockets.", self.sum(|s| s.bytes_in.get()))?;
        counter(enc, "roomcast_sent_bytes", "Bytes written to client sockets.", self.sum(|s| s.bytes_out.get()))?;
        self.encode_deflate(enc)?;
        let errors = ErrorCode::ALL.iter().map(|&c| (c.as_str(), self.sum(|s| s.error_frames[c.index()].get())));
        labeled_counters(
            enc,
            "roomcast_error_frames_sent",
            "`error` frames sent to clients, by code.",
            "code",
            errors,
        )?;
        let mut m = enc.encode_descriptor(
            "roomcast_moderation",
            "Moderation decisions on messages, edits and API messages, by action and reason.",
            None,
            MetricType::Counter,
        )?;
        for decision in Moderated::ALL {
            let (action, reason) = decision.labels();
            let n = self.sum(|s| s.moderation[decision as usize].get());
            ConstCounter::new(n).encode(m.encode_family(&[("action", action), ("reason", reason)])?)?;
        }
        histogram(
            enc,
            "roomcast_fanout_latency_seconds",
            "From publishing an event to queueing it for the last member on a shard (one observation per \
             shard and event).",
            &self.merged(|s| s.fanout_latency.snapshot()),
        )?;
        histogram(
            enc,
            "roomcast_event_loop_iteration_seconds",
            "Work done per shard event-loop turn (time in poll excluded).",
            &self.merged(|s| s.loop_iteration.snapshot()),
        )
    }

    fn encode_deflate(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        counter(
            enc,
            "roomcast_deflate_connections",
            "WebSocket connections that negotiated permessage-deflate.",
            self.sum(|s| s.deflate_negotiated.get()),
        )?;
        counter(
            enc,
            "roomcast_deflate_messages_compressed",
            "Broadcast messages compressed (once per message and wire format, shared by every deflate recipient).",
            self.sum(|s| s.deflate_compressed.get()),
        )?;
        counter(
            enc,
            "roomcast_deflate_messages_uncompressed",
            "Broadcast messages sent uncompressed to deflate members (below --deflate-min-bytes, or not shrinking).",
            self.sum(|s| s.deflate_left_plain.get()),
        )?;
        counter(
            enc,
            "roomcast_deflate_input_bytes",
            "Payload bytes of compressed broadcast messages before compression.",
            self.sum(|s| s.deflate_bytes_in.get()),
        )?;
        counter(
            enc,
            "roomcast_deflate_output_bytes",
            "Payload bytes of compressed broadcast messages after compression.",
            self.sum(|s| s.deflate_bytes_out.get()),
        )?;
        counter(
            enc,
            "roomcast_inflated_messages",
            "Compressed client messages inflated.",
            self.sum(|s| s.inflated.get()),
        )?;
        let failures =
            ["invalid", "too_big"].into_iter().enumerate().map(|(i, r)| (r, self.sum(|s| s.inflate_failures[i].get())));
        labeled_counters(
            enc,
            "roomcast_inflate_failures",
            "Compressed client messages that could not be inflated (connection closed 1007 or 1009), by reason.",
            "reason",
            failures,
        )
    }

    fn encode_history(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let kinds = HistoryKind::ALL.iter().map(|&k| (k.as_str(), self.sum(|s| s.history_requests[k as usize].get())));
        labeled_counters(enc, "roomcast_history_requests", "History reads submitted, by kind.", "kind", kinds)?;
        histogram(
            enc,
            "roomcast_history_request_duration_seconds",
            "From submitting a history read to its page arriving back on the shard.",
            &self.merged(|s| s.history_latency.snapshot()),
        )
    }

    fn encode_tls(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        counter(
            enc,
            "roomcast_tls_handshakes",
            "TLS handshakes completed on the main listener (0 without --tls-cert).",
            self.sum(|s| s.tls.handshakes.get()),
        )?;
        gauge(
            enc,
            "roomcast_tls_handshakes_waiting",
            "Connections waiting for a TLS handshake slot (--tls-max-handshakes per shard, 16 times as many may wait).",
            self.shards.iter().map(|s| s.tls.waiting.get()).sum(),
        )?;
        let failures =
            TlsFailure::ALL.iter().map(|&r| (r.as_str(), self.sum(|s| s.tls.handshake_failures[r.index()].get())));
        labeled_counters(
            enc,
            "roomcast_tls_handshake_failures",
            "TLS handshakes that failed or were refused (overloaded), by reason.",
            "reason",
            failures,
        )?;
        let errors = [TlsFailure::BadRecord, TlsFailure::Protocol]
            .into_iter()
            .map(|r| (r.as_str(), self.sum(|s| s.tls.session_errors[r.index()].get())));
        labeled_counters(
            enc,
            "roomcast_tls_session_errors",
            "Established TLS sessions closed for a TLS error (a record that does not decrypt or parse), by reason.",
            "reason",
            errors,
        )
    }

    fn encode_store(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let store = self.store.as_ref().and_then(Weak::upgrade);
        let stats = store.as_ref().map(|s| s.stats()).unwrap_or_default();
        let hist = store.as_ref().map_or_else(
            || StoreHistograms {
                batch_rows: HistogramSnapshot::empty(BATCH_BOUNDS, 1.0),
                commit_seconds: HistogramSnapshot::empty(LATENCY_BOUNDS_NS, NANOS),
            },
            |s| s.histograms(),
        );
        drop(store);
        let StoreStats { queue_depth, queue_capacity, congested, retrying, .. } = stats;
        let g = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(
            enc,
            "roomcast_store_enabled",
            "1 when history is persisted, 0 with --no-persist.",
            i64::from(self.store.is_some()),
        )?;
        gauge(enc, "roomcast_store_queue_depth", "Messages waiting in the write-behind queue.", g(queue_depth))?;
        gauge(enc, "roomcast_store_queue_capacity", "Bound of the write-behind queue.", g(queue_capacity))?;
        gauge(
            enc,
            "roomcast_store_congested",
            "1 while the queue is 7/8 full and shards stop reading senders.",
            i64::from(congested),
        )?;
        gauge(enc, "roomcast_store_retrying", "1 while the writer retries a failed commit.", i64::from(retrying))?;
        counter(enc, "roomcast_store_rows_written", "Messages committed to SQLite.", stats.rows_written)?;
        counter(enc, "roomcast_store_rows_trimmed", "Messages deleted by --retain-per-room.", stats.rows_trimmed)?;
        let errors = [
            ("commit", stats.commit_errors),
            ("trim", stats.trim_errors),
            ("rejected_row", stats.rows_rejected),
            ("query", stats.queries_failed),
        ];
        labeled_counters(enc, "roomcast_store_errors", "Persistence errors, by kind.", "kind", errors.into_iter())?;
        let queries = [("served", stats.queries_served), ("busy", stats.queries_rejected_busy)];
        labeled_counters(
            enc,
            "roomcast_store_history_queries",
            "History queries answered by the reader pool, by outcome (failures: store_errors{kind=\"query\"}).",
            "outcome",
            queries.into_iter(),
        )?;
        let wakeups = stats.writer_wakeups;
        let causes = [("timer", wakeups.timer), ("producer", wakeups.producer), ("control", wakeups.control)];
        labeled_counters(
            enc,
            "roomcast_store_writer_wakeups",
            "Times the store writer thread woke up, by cause (never once per message).",
            "cause",
            causes.into_iter(),
        )?;
        counter(
            enc,
            "roomcast_store_visible_wait_timeouts",
            "History reads answered before their read-your-writes watermark was committed (2 s wait ran out).",
            stats.visible_wait_timeouts,
        )?;
        gauge(
            enc,
            "roomcast_store_reader_queue_depth",
            "History queries waiting for a reader.",
            g(stats.reader_queue_depth),
        )?;
        gauge(
            enc,
            "roomcast_feed_consumers",
            "Change-feed consumers (GET /api/feed) streaming now.",
            i64::try_from(stats.feed_consumers).unwrap_or(i64::MAX),
        )?;
        counter(enc, "roomcast_feed_events", "Events handed to change-feed consumers.", stats.feed_events)?;
        counter(
            enc,
            "roomcast_feed_closed_slow",
            "Change-feed consumers closed because their socket took nothing for --outbuf-grace.",
            stats.feed_closed_slow,
        )?;
        counter(
            enc,
            "roomcast_feed_moderation_dropped",
            "Moderation decisions left out of the change feed (its queue was full or the store closed).",
            stats.moderation_dropped,
        )?;
        histogram(enc, "roomcast_store_batch_rows", "Rows per committed batch.", &hist.batch_rows)?;
        histogram(
            enc,
            "roomcast_store_commit_duration_seconds",
            "Duration of each successful batch insert + COMMIT.",
            &hist.commit_seconds,
        )
    }
}

impl RoomcastCollector {
    /// The webhook threads' figures (all 0 without `--webhook-url`).
    fn encode_webhooks(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let load =
            |f: fn(&WebhookStats) -> &AtomicU64| self.webhooks.as_deref().map_or(0, |s| f(s).load(Ordering::Relaxed));
        gauge(
            enc,
            "roomcast_webhooks_queued",
            "Webhook requests in the outbox (one per event and URL) not yet answered with 2xx.",
            i64::try_from(load(|s| &s.queued)).unwrap_or(i64::MAX),
        )?;
        counter(enc, "roomcast_webhooks_sent", "Webhook requests answered with 2xx.", load(|s| &s.sent))?;
        counter(
            enc,
            "roomcast_webhooks_failed",
            "Webhook attempts that failed (no connection, a timeout, a non-2xx answer); each is retried.",
            load(|s| &s.failed),
        )?;
        counter(
            enc,
            "roomcast_webhooks_dropped",
            "Webhook requests dropped: the oldest outbox rows past --webhook-outbox, and presence changes \
             the full hand-off could not take.",
            load(|s| &s.dropped),
        )
    }
}

impl RoomcastCollector {
    /// Cluster-mode figures from the cluster threads' counters (all 0 in single-node mode).
    fn encode_redis(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let counters = self.cluster.as_deref().map(|shared| &shared.counters);
        let load = |f: fn(&ClusterCounters) -> u64| counters.map_or(0, f);
        counter(
            enc,
            "roomcast_redis_published",
            "Messages this node appended to Redis.",
            load(|c| c.published.load(Ordering::Relaxed)),
        )?;
        counter(
            enc,
            "roomcast_redis_received",
            "Messages from Redis delivered to local members or stored.",
            load(|c| c.received.load(Ordering::Relaxed)),
        )?;
        counter(
            enc,
            "roomcast_redis_errors",
            "Lost Redis connections or failed connection attempts (publisher or subscriber).",
            load(|c| c.link_errors.load(Ordering::Relaxed)),
        )?;
        counter(
            enc,
            "roomcast_redis_connects",
            "Successful connections to Redis by the cluster threads, first ones included (more than the \
             thread count means reconnects).",
            load(|c| c.connects.load(Ordering::Relaxed)),
        )?;
        counter(
            enc,
            "roomcast_redis_duplicates",
            "Messages dropped as duplicates (script, stream cursor, origin seq, own replay).",
            load(|c| c.duplicates.load(Ordering::Relaxed)),
        )?;
        counter(
            enc,
            "roomcast_redis_provisional",
            "Messages delivered locally with a provisional id while Redis was away.",
            load(|c| c.provisional.load(Ordering::Relaxed)),
        )?;
        counter(
            enc,
            "roomcast_redis_replayed",
            "Provisional messages replayed to Redis after an outage.",
            load(|c| c.replayed.load(Ordering::Relaxed)),
        )?;
        counter(
            enc,
            "roomcast_redis_user_rate_limited",
            "Messages Redis refused for the per-user rate limit (--user-rate-limit).",
            load(|c| c.user_rate_limited.load(Ordering::Relaxed)),
        )?;
        counter(
            enc,
            "roomcast_redis_refused_unavailable",
            "Messages refused at once (error unavailable) because the hand-off to Redis was full.",
            load(|c| c.refused_unavailable.load(Ordering::Relaxed)),
        )?;
        counter(
            enc,
            "roomcast_redis_binary_dropped",
            "Binary relays dropped because the hand-off to Redis was full (relays are at most once).",
            load(|c| c.binary_dropped.load(Ordering::Relaxed)),
        )?;
        let outbox = load(|c| c.outbox_depth.load(Ordering::Relaxed) as u64);
        gauge(
            enc,
            "roomcast_redis_outbox_depth",
            "Messages waiting to be published to Redis.",
            i64::try_from(outbox).unwrap_or(i64::MAX),
        )?;
        let up = load(|c| u64::from(c.publisher_up.load(Ordering::Relaxed) && c.subscriber_up.load(Ordering::Relaxed)));
        gauge(
            enc,
            "roomcast_redis_up",
            "1 when both cluster threads are connected to Redis (cluster mode), else 0.",
            up as i64,
        )
    }
}

fn encode_process(enc: &mut DescriptorEncoder, p: &ProcessStats) -> fmt::Result {
    let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    if let Some(v) = p.resident_bytes {
        gauge(enc, "process_resident_memory_bytes", "Resident memory size in bytes.", g(v))?;
    }
    if let Some(v) = p.open_fds {
        gauge(enc, "process_open_fds", "Open file descriptors.", g(v))?;
    }
    if let Some(v) = p.max_fds {
        gauge(enc, "process_max_fds", "Limit on open file descriptors (soft RLIMIT_NOFILE).", g(v))?;
    }
    if let Some(v) = p.threads {
        gauge(enc, "process_threads", "OS threads in the process.", g(v))?;
    }
    if let Some(v) = p.cpu_seconds {
        let m = enc.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time, seconds.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(v).encode(m)?;
    }
    if let Some(v) = p.start_time_seconds {
        let m = enc.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, seconds.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(v).encode(m)?;
    }
    Ok(())
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn labeled_counters<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn per_shard_gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    shards: &[Arc<ShardMetrics>],
    f: impl Fn(&ShardMetrics) -> i64,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (index, shard) in shards.iter().enumerate() {
        let index = index.to_string();
        let labels = [("shard", index.as_str())];
        ConstGauge::new(f(shard)).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(enc: &mut DescriptorEncoder, name: &str, help: &str, snap: &HistogramSnapshot) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(snap.scaled_sum(), snap.count, &snap.scaled_buckets(), None)
}
