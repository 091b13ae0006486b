//! [`Format`]: the wire format a connection speaks.

/// Wire format a connection speaks, chosen at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The seed protocol: each text frame is a chat line delivered verbatim; one room per connection.
    Text,
    /// JSON objects with a `type` field; several rooms per connection.
    Json,
}
