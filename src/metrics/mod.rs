//! Metric primitives written on the hot path: single-writer counters, gauges and histograms, and the
//! per-thread structs that hold them ([`ShardMetrics`] per shard, [`AcceptorMetrics`] for the acceptor).
//!
//! Each struct is owned by exactly one writing thread, which updates it with relaxed loads and stores
//! (no read-modify-write, no lock, no allocation, no syscall); the `/metrics` scrape reads every struct
//! and sums them (see `telemetry::collector`). This module uses only `types` (error codes label a counter), so
//! every layer above can count into it. Names, labels and meanings are listed in `docs/METRICS.md`.

pub(crate) mod acceptor;
pub(crate) mod cell;
pub(crate) mod histogram;
pub(crate) mod reason;
pub(crate) mod shard;
pub(crate) mod tls;

pub(crate) use acceptor::AcceptorMetrics;
pub(crate) use histogram::{Histogram, HistogramSnapshot};
pub(crate) use reason::CloseReason;
pub(crate) use shard::{HistoryKind, Moderated, ShardMetrics};
pub(crate) use tls::{TlsFailure, TlsMetrics};
