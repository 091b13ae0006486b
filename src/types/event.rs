//! The room's ordered log: [`Event`] (what can happen in a room and gets a place in its order),
//! [`Sequenced`] (an event with its id, room and time: what the store keeps, history pages and
//! resume pages return and the cluster carries), [`Origin`] (how the sender sent it: used live, not
//! stored) and [`Transient`] (what is relayed in order but has no id and is never stored).
//!
//! The enums are closed and matched exhaustively by every encoder (`render`, `protocol::json`,
//! `cluster::wire`) and every sink (`store`): a new kind does not compile until each of them
//! handles it. Adding an edit, a delete or a read marker is one variant of [`Event`] each.

use std::sync::Arc;

use bytes::Bytes;

use super::Format;

/// An event that takes a place in a room's order, gets an id and is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chat message.
    Message(Message),
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sender's display name.
    pub user: Arc<str>,
    /// Message text as the sender wrote it.
    pub content: Arc<str>,
}

/// The kind of an [`Event`], as stored (`messages.kind`) and carried on the cluster wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// [`Event::Message`].
    Message,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 1] = [EventKind::Message];

    /// The stable code stored in the database and sent through Redis.
    pub fn code(self) -> u8 {
        match self {
            EventKind::Message => 0,
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
        Event::Message(Message { user, content })
    }

    /// Who the event is from (the cluster's per-user rate limit charges them).
    pub fn author(&self) -> &Arc<str> {
        match self {
            Event::Message(msg) => &msg.user,
        }
    }

    /// This event's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Message(_) => EventKind::Message,
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
}
