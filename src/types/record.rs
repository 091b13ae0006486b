//! [`ChatRecord`]: one accepted chat message, as the publish path builds it, the store keeps it and
//! the protocol renders it.

use std::sync::Arc;

/// One accepted chat message as it is stored and read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRecord {
    /// Globally unique id; increases in the order the room's members receive messages.
    pub id: u64,
    /// Room name (validated: 1–64 bytes, no control characters).
    pub room: Arc<str>,
    /// Sender's display name.
    pub user: Arc<str>,
    /// Message text as the sender wrote it.
    pub content: Arc<str>,
    /// Milliseconds since the Unix epoch, UTC, taken when the server accepted the message.
    pub created_at_ms: i64,
}
