//! HTTP/1.1 on the connection before (or instead of) the WebSocket upgrade.
//!
//! [`request`] parses a request head with `httparse` (sans-IO, bounded), [`percent`] is the one strict
//! percent-decoder for paths and query values, [`route`] decides what a request asks for, [`upgrade`] validates a WebSocket handshake and builds the 101 answer with tungstenite's
//! accept-key derivation, [`extensions`] negotiates permessage-deflate, [`origin`] decides whether a
//! browser origin may open a WebSocket (cross-site WebSocket hijacking), [`response`] renders status
//! lines, headers and bodies, [`status`] maps every typed client error (`ErrorCode`) to its HTTP
//! status, once. Only `conn/` feeds it.

pub mod extensions;
pub mod origin;
pub mod percent;
pub mod request;
pub mod response;
pub mod route;
pub mod status;
pub mod upgrade;
