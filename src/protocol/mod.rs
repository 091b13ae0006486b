//! The chat protocol above WebSocket frames: names, client commands, server events.
//!
//! Sans-IO and the only module that knows JSON: [`json`] parses client commands with simd-json and
//! renders every server event; [`names`] validates room names and nicknames; [`text`] renders the
//! seed protocol's `user: content` line; [`api`] parses the server API's
//! request bodies and renders its answers. The error codes clients
//! receive are `types::ErrorCode`. Nothing here touches a socket or a thread.

pub mod api;
pub(crate) mod dm;
pub mod json;
pub mod names;
pub mod text;
