//! Telemetry: what `/metrics`, `/readyz` and the `cluster` part of `/healthz` report, read at
//! request time from every component (the responses themselves are built in `session::ops`).
//!
//! [`Telemetry`] is built once by `Server::start` and shared by the shards. It owns the
//! `prometheus_client` registry, whose one custom collector ([`collector::RoomcastCollector`]) sums the
//! per-shard and acceptor counters (`metrics/`), reads the store's statistics and histograms, the room
//! directory and `/proc/self`, and renders them in the OpenMetrics text format. Nothing here runs on
//! the message path: a scrape costs one pass over the shards' counters and a few small `/proc` reads.

pub(crate) mod collector;
pub(crate) mod process;
pub(crate) mod readiness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use prometheus_client::registry::Registry;

use crate::cluster::ClusterShared;
use crate::metrics::{AcceptorMetrics, ShardMetrics};
use crate::protocol::json::ClusterHealth;
use crate::room::hub::Hub;
use crate::store::Store;
use crate::webhook::WebhookStats;
use collector::RoomcastCollector;
use readiness::{Readiness, StoreState};

/// `Content-Type` of the `/metrics` response.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Shared operational state: the metrics registry and the readiness inputs.
#[derive(Debug)]
pub(crate) struct Telemetry {
    registry: Registry,
    shards: Vec<Arc<ShardMetrics>>,
    acceptor: Arc<AcceptorMetrics>,
    store: Option<Weak<Store>>,
    cluster: Option<Arc<ClusterShared>>,
    draining: Arc<AtomicBool>,
}

impl Telemetry {
    /// Builds the registry for `n_shards` shards; `store` is `None` without persistence, `cluster`
    /// outside cluster mode. Holds only a weak reference to the store so that shutdown can still take
    /// it back and drain it.
    pub(crate) fn new(
        n_shards: usize,
        store: Option<&Arc<Store>>,
        hub: Arc<Hub>,
        cluster: Option<Arc<ClusterShared>>,
        webhooks: Option<Arc<WebhookStats>>,
    ) -> Arc<Telemetry> {
        let shards: Vec<Arc<ShardMetrics>> = (0..n_shards).map(|_| Arc::new(ShardMetrics::default())).collect();
        let acceptor = Arc::new(AcceptorMetrics::default());
        let store = store.map(Arc::downgrade);
        let draining = Arc::new(AtomicBool::new(false));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(RoomcastCollector {
            shards: shards.clone(),
            acceptor: Arc::clone(&acceptor),
            store: store.clone(),
            hub,
            cluster: cluster.clone(),
            webhooks,
            draining: Arc::clone(&draining),
        }));
        Arc::new(Telemetry { registry, shards, acceptor, store, cluster, draining })
    }

    /// Shard `index`'s counters (written by that shard only).
    ///
    /// # Panics
    /// If `index` is not below the shard count given to [`Telemetry::new`] (a bug in the caller).
    pub(crate) fn shard(&self, index: usize) -> Arc<ShardMetrics> {
        Arc::clone(&self.shards[index])
    }

    /// The acceptor's counters (written by the acceptor thread only).
    pub(crate) fn acceptor(&self) -> Arc<AcceptorMetrics> {
        Arc::clone(&self.acceptor)
    }

    /// Renders every metric in the OpenMetrics text format.
    ///
    /// # Errors
    /// Only a formatting error from the encoder (writing to a `String` does not fail).
    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Cluster mode: the links' state for `/healthz`; `None` on a single node.
    pub(crate) fn cluster_health(&self) -> Option<ClusterHealth> {
        self.cluster.as_ref().map(|shared| shared.health())
    }

    /// Marks the server as shutting down: `/readyz` answers 503 from now on.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the server can take traffic now (see [`Readiness`]).
    pub(crate) fn readiness(&self) -> Readiness {
        Readiness { store: StoreState::of(self.store.as_ref()), draining: self.draining.load(Ordering::SeqCst) }
    }
}
