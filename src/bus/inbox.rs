//! A shard's inbox: the one channel through which other threads talk to a shard, plus its waker.
//!
//! The channel is unbounded in type but bounded by policy: publishers stop reading client input while
//! any inbox holds more than [`INBOX_SOFT_CAP`] messages (see `Hub::ingress_paused`), so it
//! cannot grow past that by more than one read pass. Wake-ups are coalesced: a sender only writes the
//! waker's eventfd when the shard announced it is about to sleep.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use super::Delivery;
use crate::http::response::Response;
use crate::limits::per_ip::IpSlot;
use crate::store::{HistoryPage, StoreError, Target};
use crate::types::{ClientError, ConnRef, Event, IdWaiter, Origin};

/// Soft bound on a shard inbox: above it, shards stop reading client sockets until it drains.
pub(crate) const INBOX_SOFT_CAP: usize = 16_384;

/// Everything a shard can be told.
pub(crate) enum ShardMsg {
    /// A new connection from the acceptor; `over_capacity` connections are answered 503 and closed.
    Accept {
        /// The socket, already non-blocking.
        stream: mio::net::TcpStream,
        /// Peer address, for logs.
        peer: SocketAddr,
        /// The server is at `max_connections`.
        over_capacity: bool,
        /// Accepted on the `--metrics-addr` listener: serves the operations endpoints only.
        ops_only: bool,
        /// The connection's share of its address's count (`--max-conns-per-ip`), released on drop.
        ip_slot: IpSlot,
    },
    /// An event published to a room this shard has members in.
    Deliver(Arc<Delivery>),
    /// A history page read by the store's reader pool for one of this shard's connections.
    History(HistoryReply),
    /// Cluster mode: Redis refused a message of this connection (per-user rate limit); send it
    /// `error` if it is still open.
    Refused {
        /// The connection that sent the message.
        conn: ConnRef,
        /// The error to send.
        error: ClientError,
    },
    /// The message an edit or a delete of one of this shard's connections refers to was looked up.
    Amend(AmendReply),
    /// A connection's read marker in a room it joined, and the messages above it, were read.
    ReadState {
        /// The connection that joined.
        conn: ConnRef,
        /// The room.
        room: Arc<str>,
        /// `(marker, unread)`, or why they could not be read.
        result: Result<(u64, u64), StoreError>,
    },
    /// The direct-message rooms of a just upgraded connection's user, for its `welcome`.
    DmRooms {
        /// The connection.
        conn: ConnRef,
        /// The rooms, or why they could not be read.
        result: Result<Vec<String>, StoreError>,
    },
    /// An HTTP answer decided off the shard (the server API, once the store committed the change):
    /// sent if the connection is still the one that asked.
    Reply {
        /// The HTTP connection that asked.
        conn: ConnRef,
        /// The answer.
        response: Response,
        /// Whether the connection stays open after it.
        keep_alive: bool,
    },
    /// Close a WebSocket connection with an application close code (the server API: disconnect,
    /// ban); ignored if it has closed meanwhile.
    Close {
        /// The connection.
        conn: ConnRef,
        /// The close code (docs/PROTOCOL.md, "Close codes").
        code: u16,
        /// The close frame's reason.
        reason: Arc<str>,
    },
    /// Cluster mode: the id an event published by the server API got (or why it got none), for
    /// the HTTP connection waiting for it.
    Sequenced {
        /// The waiting request.
        waiter: IdWaiter,
        /// The id, or the error.
        result: Result<u64, ClientError>,
    },
    /// A frame for one connection, made off the shard (e.g. from a store answer); dropped if the
    /// connection is gone or no longer a WebSocket session.
    Send {
        /// The connection.
        conn: ConnRef,
        /// The frame.
        frame: bytes::Bytes,
    },
    /// The next chunk of a change-feed stream (`session::feed`), rendered by the feed thread.
    Feed {
        /// The streaming HTTP connection.
        conn: ConnRef,
        /// The chunk, or why the stream ends.
        chunk: Result<FeedChunk, StoreError>,
    },
    /// Stop: close every connection with 1001 and exit the loop.
    Shutdown,
}

/// A change-feed chunk: Server-Sent Events bytes and the position of the last event in them.
#[derive(Debug)]
pub(crate) struct FeedChunk {
    /// The events (or a keepalive comment), ready to write.
    pub(crate) bytes: bytes::Bytes,
    /// The position of the last event in `bytes` (the cursor of the next request); `None`: no event.
    pub(crate) last_pos: Option<u64>,
}

/// Answer to the lookup of the message an edit or a delete refers to, with the event to publish
/// if the sender may.
pub(crate) struct AmendReply {
    /// The connection that sent the edit or delete.
    pub(crate) conn: ConnRef,
    /// The room it is for.
    pub(crate) room: Arc<str>,
    /// The edit or delete, ready to publish.
    pub(crate) event: Event,
    /// How it was sent.
    pub(crate) origin: Origin,
    /// The message it refers to (`None`: not in that room), or why it could not be read.
    pub(crate) result: Result<Option<Target>, StoreError>,
}

/// Answer to a history query, routed back to the connection that asked.
pub(crate) struct HistoryReply {
    /// The connection that asked.
    pub(crate) conn: ConnRef,
    /// What the query was for.
    pub(crate) purpose: HistoryPurpose,
    /// The page, or why it could not be read.
    pub(crate) result: Result<HistoryPage, StoreError>,
    /// When the shard submitted the query (for the history latency histogram).
    pub(crate) submitted_at: Instant,
}

/// Why a connection asked for history, which decides how the page is sent.
#[derive(Debug, Clone)]
pub(crate) enum HistoryPurpose {
    /// `GET /rooms/{room}/messages`: a JSON array in an HTTP response.
    Rest {
        /// Keep the connection open after the response.
        keep_alive: bool,
        /// HEAD request: no body.
        head_only: bool,
    },
    /// A `history` command: a `history` event.
    Command {
        /// The room read.
        room: Arc<str>,
    },
    /// One page of catching a resuming member up (see `session::catchup`).
    Resume {
        /// Room id of the membership being resumed.
        room_id: u64,
        /// The page starts after this id (matches the membership's `CatchUp::next_after` while the
        /// reply is still wanted).
        after: u64,
    },
}

/// The sending side of a shard's inbox.
pub(crate) struct ShardInbox {
    tx: Sender<ShardMsg>,
    waker: Waker,
    sleeping: AtomicBool,
}

impl ShardInbox {
    /// Creates an inbox whose waker fires `waker`'s token on the shard's `Poll`.
    pub(crate) fn new(waker: Waker) -> (Arc<ShardInbox>, Receiver<ShardMsg>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Arc::new(ShardInbox { tx, waker, sleeping: AtomicBool::new(false) }), rx)
    }

    /// Queues `msg` and wakes the shard if it is (about to be) asleep.
    pub(crate) fn send(&self, msg: ShardMsg) {
        if self.push(msg) {
            self.wake();
        }
    }

    /// Queues `msg` without waking anyone; returns whether the shard is (about to be) asleep and
    /// must be woken with [`ShardInbox::wake`]. For callers holding a room's lock: the push is a
    /// lock-free list append (no syscall, no other thread woken), the wake-up (an eventfd write)
    /// comes after the lock is released.
    pub(crate) fn push(&self, msg: ShardMsg) -> bool {
        // A send only fails once the shard has exited (shutdown); the message is then moot.
        self.tx.send(msg).is_ok() && self.sleeping.swap(false, Ordering::SeqCst)
    }

    /// Wakes the shard (after a [`ShardInbox::push`] that asked for it).
    pub(crate) fn wake(&self) {
        if let Err(err) = self.waker.wake() {
            tracing::error!(%err, "could not wake a shard");
        }
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.tx.len()
    }

    /// Called by the shard before it blocks in `poll`; it must then check the channel once more.
    pub(crate) fn about_to_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    /// Called by the shard after `poll` returns.
    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }
}
