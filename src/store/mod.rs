//! Persistence: the only module that touches SQLite (placeholder until the history issue lands).

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

// ---- Temporary API surface until the store branch lands (replaced wholesale by the merge). ----

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// History is not available in this build.
    #[error("history is not available")]
    Unavailable,
}

/// A page of history.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    /// Messages in page order.
    pub messages: Vec<ChatRecord>,
    /// More messages exist past the page.
    pub has_more: bool,
}

/// A history request.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// Room.
    pub room: String,
    /// Ids below.
    pub before_id: Option<u64>,
    /// Ids above.
    pub after_id: Option<u64>,
    /// Page size.
    pub limit: usize,
    /// Read-your-writes token.
    pub visible_seq: u64,
}

/// Queue handle.
#[derive(Clone, Debug)]
pub struct StoreWriter;

impl StoreWriter {
    /// Never blocks.
    pub fn try_enqueue(&self, _rec: ChatRecord) -> Result<(), ChatRecord> {
        Ok(())
    }
    /// Fallback.
    pub fn enqueue_blocking(&self, _rec: ChatRecord) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
    /// Congestion.
    pub fn is_congested(&self) -> bool {
        false
    }
    /// Depth.
    pub fn depth(&self) -> usize {
        0
    }
    /// Seq.
    pub fn enqueued_seq(&self) -> u64 {
        0
    }
}

/// Store configuration.
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// Database path.
    pub path: std::path::PathBuf,
    /// Rows per batch.
    pub batch_size: usize,
    /// Batch wait.
    pub flush_interval: std::time::Duration,
    /// Queue bound.
    pub queue_capacity: usize,
    /// fsync each batch.
    pub sync_full: bool,
    /// Retention.
    pub retain_per_room: Option<u64>,
    /// Reader threads.
    pub readers: usize,
}

/// The store.
#[derive(Debug)]
pub struct Store;

impl Store {
    /// Opens.
    pub fn open(_cfg: StoreConfig) -> Result<Store, StoreError> {
        Ok(Store)
    }
    /// Largest stored id.
    pub fn max_id(&self) -> u64 {
        0
    }
    /// Queue handle.
    pub fn writer(&self) -> StoreWriter {
        StoreWriter
    }
    /// Runs a query.
    pub fn query(&self, _q: HistoryQuery, reply: Box<dyn FnOnce(Result<HistoryPage, StoreError>) + Send>) {
        reply(Err(StoreError::Unavailable));
    }
    /// Drains.
    pub fn shutdown(self) -> Result<(), StoreError> {
        Ok(())
    }
}
