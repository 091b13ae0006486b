//! roomcast: a real-time WebSocket chat server.
//!
//! The library holds every module so that `benches/` and `tests/` can link it; `src/main.rs` only parses
//! the configuration and starts the threads. See `ARCHITECTURE.md` for the map.

pub mod http;
pub mod protocol;
pub mod store;
pub mod ws;
