//! The chat protocol above WebSocket frames: names, client commands, server events, error codes.
//!
//! Sans-IO and the only module that knows JSON: [`json`] parses client commands with simd-json and
//! renders every server event; [`names`] validates room names and nicknames; [`error`] lists the error
//! codes clients receive. Nothing here touches a socket or a thread.

pub mod error;
pub mod json;
pub mod names;

/// Wire format a connection speaks, chosen at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The seed protocol: each text frame is a chat line delivered verbatim; one room per connection.
    Text,
    /// JSON objects with a `type` field; several rooms per connection.
    Json,
}
