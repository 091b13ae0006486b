//! The room's ordered log: [`Event`] (what can happen in a room and gets a place in its order),
//! [`Sequenced`] (an event with its id, room and time: what the store keeps, history pages and
//! resume pages return and the cluster carries), [`Origin`] (how the sender sent it: used live, not
//! stored) and [`Transient`] (what is relayed in order but has no id and is never stored).
//!
//! The enums are closed and matched exhaustively by every encoder (`render`, `protocol::json`,
//! `cluster::wire`) and every sink (`store`): a new kind does not compile until each of them
//! handles it. An edit and a delete are variants of [`Event`] that refer to a message by its id;
//! a message read back from the store carries its [`Revision`] (edited, deleted) so that history pages
//! show each message as it is now.

use std::sync::Arc;

use bytes::Bytes;

use super::{ConnRef, Format};

/// An event that takes a place in a room's order, gets an id and is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chat message.
    Message(Message),
    /// The author replaced a message's content.
    Edit(Edit),
    /// The author (or the server) deleted a message: its content is removed from the store.
    Delete(Delete),
    /// A user has read the room up to a message (for that user's connections only).
    Read(Read),
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sender's display name.
    pub user: Arc<str>,
    /// Message text as the sender wrote it (as last edited, in pages read back; empty once deleted).
    pub content: Arc<str>,
    /// What became of it since: [`Revision::Original`] on the live path and in the cluster; pages
    /// read back from the store say whether it was edited or deleted since.
    pub revision: Revision,
}

/// A stored message's state, as history pages show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    /// As sent.
    Original,
    /// Edited; the content is the last edit's, made at `at_ms` (ms since the Unix epoch).
    Edited {
        /// When the last edit was accepted.
        at_ms: i64,
    },
    /// Deleted: a tombstone without content.
    Deleted,
}

/// A new content for message `target`, by its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Who edited (the message's author).
    pub user: Arc<str>,
    /// The id of the message edited (a message of the same room).
    pub target: u64,
    /// The new content.
    pub content: Arc<str>,
}

/// `user`'s read marker in the room moves up to message `upto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Whose marker.
    pub user: Arc<str>,
    /// The last message id read.
    pub upto: u64,
}

/// The removal of message `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Who deleted it (the message's author, or the server API's caller).
    pub user: Arc<str>,
    /// The id of the message deleted (a message of the same room).
    pub target: u64,
}

/// The kind of an [`Event`], as stored (`messages.kind`) and carried on the cluster wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// [`Event::Message`].
    Message,
    /// [`Event::Edit`].
    Edit,
    /// [`Event::Delete`].
    Delete,
    /// [`Event::Read`].
    Read,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 4] = [EventKind::Message, EventKind::Edit, EventKind::Delete, EventKind::Read];

    /// The stable code stored in the database and sent through Redis.
    pub fn code(self) -> u8 {
        match self {
            EventKind::Message => 0,
            EventKind::Edit => 1,
            EventKind::Delete => 2,
            EventKind::Read => 3,
        }
    }

    /// The kind stored or sent as `code`, if this build knows it.
    pub fn from_code(code: u8) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.code() == code)
    }
}

impl Event {
    /// A chat message from `user`.
    pub fn message(user: Arc<str>, content: Arc<str>) -> Event {
        Event::Message(Message { user, content, revision: Revision::Original })
    }

    /// Who the event is from (the cluster's per-user rate limit charges them).
    pub fn author(&self) -> &Arc<str> {
        match self {
            Event::Message(msg) => &msg.user,
            Event::Edit(edit) => &edit.user,
            Event::Delete(delete) => &delete.user,
            Event::Read(read) => &read.user,
        }
    }

    /// This event's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Message(_) => EventKind::Message,
            Event::Edit(_) => EventKind::Edit,
            Event::Delete(_) => EventKind::Delete,
            Event::Read(_) => EventKind::Read,
        }
    }

    /// The message an edit, a delete or a read marker refers to.
    pub fn target(&self) -> Option<u64> {
        match self {
            Event::Message(_) => None,
            Event::Edit(edit) => Some(edit.target),
            Event::Delete(delete) => Some(delete.target),
            Event::Read(read) => Some(read.upto),
        }
    }
}

/// One entry of a room's ordered log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced {
    /// Globally unique id; increases in the order the room's members receive events.
    pub id: u64,
    /// Room name (validated: 1–64 bytes, no control characters).
    pub room: Arc<str>,
    /// Milliseconds since the Unix epoch, UTC, taken when the server accepted the event.
    pub at_ms: i64,
    /// What happened.
    pub event: Event,
    /// The server API's `Idempotency-Key` of the request that published it (a message): the store
    /// writes the key in the message's own transaction, so after a crash either both are stored
    /// (a retry gets the first id) or neither (a retry publishes it). `None` for everything else.
    pub idempotency_key: Option<Arc<str>>,
}

/// How the sender sent an event: shapes its live frames (a text client's message reaches text
/// members verbatim; JSON members get `client_id` echoed), and is not stored, so history renders an
/// event as if it came from a JSON client without a `client_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The sender's wire format; `Format::Json` for the server API and for events read back.
    pub format: Format,
    /// Client-chosen id, echoed in the sender's (and everyone's) live `message` event.
    pub client_id: Option<Arc<str>>,
}

impl Origin {
    /// The origin of an event read back from the store, or published by the server itself.
    pub const STORED: Origin = Origin { format: Format::Json, client_id: None };
}

/// What a room relays in order without an id: never stored, never replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transient {
    /// `user`'s first connection in the room arrived (`joined`) or its last one left.
    Presence {
        /// The user.
        user: Arc<str>,
        /// Arrived (`true`) or left.
        joined: bool,
    },
    /// A text client's binary frame, relayed verbatim to text members.
    Binary(Bytes),
    /// `user` is typing: for the room's other JSON members.
    Typing {
        /// Who is typing.
        user: Arc<str>,
        /// The connection that said so, which does not receive it back (`None` from another node).
        from: Option<ConnRef>,
    },
}
