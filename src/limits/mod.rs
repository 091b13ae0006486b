//! Abuse limits that are not a buffer bound: per-connection message and byte rates, and connections per
//! client IP address.
//!
//! [`bucket`] is a token bucket (O(1), no allocation, time passed in by the caller); [`throttle`] applies
//! the two rate limits to one connection and decides when a client that keeps flooding is closed;
//! [`per_ip`] counts open connections per address with an RAII slot released when the connection is
//! dropped; [`client`] is the per-connection state (room grant, throttle, liveness clock) and the
//! heartbeat / idle decision the shard's sweep acts on; [`keepalive`] sets TCP keepalive on accepted
//! sockets. The session layer asks; nothing here does IO.

pub(crate) mod bucket;
pub(crate) mod client;
pub(crate) mod keepalive;
pub(crate) mod per_ip;
pub(crate) mod throttle;
