//! roomcast: a real-time WebSocket chat server.
//!
//! The library holds every module so that `benches/` and fuzz targets can link it; `src/main.rs` only
//! loads the configuration and starts the threads. Modules are layered; bottom first (each uses only
//! the ones before it; `ARCHITECTURE.md` "Layers" is the declared order, `tests/it/tidy.rs` checks it):
//! `types`, `build_info` (shared data) → `metrics`, `protocol`, `ws`, `config`, `static_files`
//! (leaves, sans-IO codecs) → `http`, `auth`, `store`, `moderation` (blocklist, repeats) → `limits` → `bus` (shard inboxes) → `room`
//! (membership, the publish path) → `cluster` (Redis) → `telemetry`, `conn` (sockets, buffers) →
//! `session` (what bytes mean) → `reactor` (threads, polls). Only what `main.rs`, `benches/` and
//! `fuzz/` use is public; everything else is `pub(crate)`.

#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub(crate) mod auth;
pub mod build_info;
pub(crate) mod bus;
pub(crate) mod cluster;
pub mod config;
pub mod conn;
pub(crate) mod deferred;
pub mod http;
pub(crate) mod limits;
pub(crate) mod metrics;
pub mod moderation;
pub mod protocol;
pub mod reactor;
pub(crate) mod render;
pub(crate) mod room;
pub(crate) mod session;
pub(crate) mod static_files;
pub mod store;
pub(crate) mod telemetry;
pub mod tls;
pub mod types;
pub(crate) mod unique;
pub(crate) mod webhook;
pub mod ws;
