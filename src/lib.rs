//! roomcast: a real-time WebSocket chat server.
//!
//! The library holds every module so that `benches/` and `tests/` can link it; `src/main.rs` only parses
//! the configuration and starts the threads. See `ARCHITECTURE.md` for the map, layered bottom-up:
//! `reactor` (threads, polls) → `conn` (sockets, buffers) → `session` (what bytes mean) → `room`
//! (membership, fan-out) → `store` (SQLite); `ws`, `http` and `protocol` are sans-IO codecs.

#![warn(missing_docs, unreachable_pub)]

pub(crate) mod auth;
pub mod build_info;
pub(crate) mod bus;
pub(crate) mod cluster;
pub mod config;
pub mod conn;
pub mod http;
pub(crate) mod limits;
pub(crate) mod metrics;
pub mod protocol;
pub mod reactor;
pub(crate) mod room;
pub(crate) mod session;
pub(crate) mod static_files;
pub mod store;
pub(crate) mod telemetry;
pub mod types;
pub mod ws;
