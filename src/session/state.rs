//! The session's state of one connection, carried by `conn::Conn` (which treats it as opaque):
//! its [`Phase`] (HTTP, WebSocket, closed) and, for a WebSocket session, everything it owns once:
//! its memberships and their catch-up paging, the paced history reads, its decoder and limits.
//! Live frames held back during a catch-up are the shard's (`super::local::LocalMember::held`),
//! next to the member they are for, not here.

use std::collections::VecDeque;
use std::sync::Arc;

use super::catchup_budget::Share;
use crate::http::extensions::DeflateAgreed;
use crate::limits::client::ClientLimits;
use crate::render::{Compression, Variant};
use crate::room::directory::Room;
use crate::store::HistoryQuery;
use crate::types::Format;
use crate::ws::codec::FrameDecoder;

/// Name of connections that gave no nickname.
pub(crate) static ANONYMOUS: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("anonymous"));

/// Whether `user` is the shared name of connections that gave no nickname (not a nick `anonymous`).
pub(crate) fn is_anonymous(user: &Arc<str>) -> bool {
    Arc::ptr_eq(user, &ANONYMOUS)
}

/// A connection as the sessions see it.
pub(crate) type Conn = crate::conn::Conn<Phase>;

/// Where a connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Reading HTTP request heads (before an upgrade, or plain keep-alive HTTP).
    Http(HttpState),
    /// Upgraded: speaking WebSocket.
    Ws(Box<WsState>),
    /// Closed by the server or the peer (the socket's side is `conn::Lifecycle::Closing`): input
    /// is dropped until the peer closes or the linger deadline passes.
    Closing,
}

/// HTTP phase state.
#[derive(Debug, Default)]
pub(crate) struct HttpState {
    /// The server was at `max_connections` when this connection arrived: answer 503.
    pub(crate) over_capacity: bool,
    /// A response is being prepared elsewhere (history read); do not parse the next request yet.
    pub(crate) awaiting_reply: bool,
    /// Accepted on the `--metrics-addr` listener: only the operations endpoints are served.
    pub(crate) ops_only: bool,
    /// A server API request waiting for the ids of the events it published (cluster mode).
    pub(crate) pending_ids: Option<Box<PendingIds>>,
    /// Streaming the change feed (`super::feed`): the connection takes no further request.
    pub(crate) feed: Option<Box<FeedStream>>,
}

/// One streaming consumer's state (in its connection's `HttpState`).
#[derive(Debug)]
pub(crate) struct FeedStream {
    /// The position of the last event sent: the next page starts after it.
    pub(crate) cursor: u64,
    /// A page was asked for and has not come back.
    pub(crate) in_flight: bool,
    /// Bytes the socket had taken at the last sweep that saw progress, and when.
    pub(crate) written: u64,
    pub(crate) since: std::time::Instant,
    /// The consumer's place among `super::feed::MAX_CONSUMERS`, given back when it is reaped.
    pub(crate) _slot: crate::store::FeedSlot,
}

/// The ids a server API request waits for (cluster mode: Redis gives them after the request left).
#[derive(Debug, Default)]
pub(crate) struct PendingIds {
    /// By the event's index in the request; `None` until told.
    pub(crate) ids: Vec<Option<u64>>,
    /// How many are not told yet.
    pub(crate) missing: usize,
    /// The first error told, if any.
    pub(crate) error: Option<crate::types::ClientError>,
    /// The request's `Idempotency-Key` (single-message route).
    pub(crate) idempotency_key: Option<String>,
    /// The batch route (answers `{"ids"}`) rather than the single one (`{"id"}`).
    pub(crate) batch: bool,
    /// Whether the connection stays open after the answer.
    pub(crate) keep_alive: bool,
}

/// WebSocket phase state.
#[derive(Debug)]
pub(crate) struct WsState {
    /// Wire format chosen at the handshake.
    pub(crate) format: Format,
    /// permessage-deflate, if negotiated at the handshake (no per-connection compression state:
    /// the shard's deflater and inflater serve every connection).
    pub(crate) deflate: Option<DeflateAgreed>,
    /// Display name (validated nick, or `anonymous`).
    pub(crate) user: Arc<str>,
    /// Frame decoder (holds a buffer only while a fragmented message is in progress).
    pub(crate) decoder: FrameDecoder,
    /// Rooms joined (text connections: exactly one).
    pub(crate) rooms: Vec<Membership>,
    /// Room grant, rate throttle and liveness clock.
    pub(crate) limits: ClientLimits,
    /// History reads whose replies are paced by the client's reading (`session::catchup`).
    pub(crate) paced: PacedReads,
    /// The token's expiry (auth on; `None` without auth).
    pub(crate) token: Option<TokenLife>,
    /// The ids of this connection's most recent messages (`super::own`).
    pub(crate) own: super::own::OwnRecent,
    /// `welcome` waits for the user's direct-message rooms from the store (`super::direct`): the
    /// socket is not read and the handshake's room not joined until it is sent.
    pub(crate) welcome: Option<Box<PendingWelcome>>,
}

/// A `welcome` waiting for the store's list of the user's direct-message rooms, with what the
/// handshake asked for once it is sent.
#[derive(Debug)]
pub(crate) struct PendingWelcome {
    /// Seconds until the token's `exp` (auth on).
    pub(crate) expires_in: Option<u64>,
    /// The handshake's room, joined right after `welcome`.
    pub(crate) room: String,
    /// The handshake's `since` and `epoch`.
    pub(crate) since: Option<u64>,
    pub(crate) epoch: Option<String>,
    /// Frames for the connection that arrived meanwhile (`dm_rooms` notices), sent after `welcome`;
    /// at most [`PendingWelcome::MAX_FRAMES`].
    pub(crate) frames: Vec<bytes::Bytes>,
}

impl PendingWelcome {
    /// Frames kept while `welcome` waits; later ones are dropped (a `dm_rooms` notice, whose room
    /// the next `welcome` lists).
    pub(crate) const MAX_FRAMES: usize = 16;
}

impl Phase {
    /// The WebSocket session, unless the connection is in another phase.
    pub(crate) fn ws(&self) -> Option<&WsState> {
        match self {
            Phase::Ws(ws) => Some(ws),
            _ => None,
        }
    }

    /// The WebSocket session, unless the connection is in another phase.
    pub(crate) fn ws_mut(&mut self) -> Option<&mut WsState> {
        match self {
            Phase::Ws(ws) => Some(ws),
            _ => None,
        }
    }
}

/// History reads (resume pages, `history` replies) waiting to be sent at the client's pace: one at a
/// time, the next only once the output queue has drained below the low-water mark.
#[derive(Debug, Default)]
pub(crate) struct PacedReads {
    /// A read was submitted and its reply is not yet queued.
    pub(crate) in_flight: bool,
    /// A read waits for the output queue to drain below the low-water mark: the session sends it
    /// when the reactor reports a flush that got there (`super::on_flushed`).
    pub(crate) drain_wanted: bool,
    /// Reads waiting their turn, oldest first (at most one `Resume` per room; `History` bounded).
    pub(crate) waiting: VecDeque<PacedRead>,
    /// This connection's part of the server-wide catch-up budget, while it catches up or has
    /// catch-up pages queued (`super::catchup_budget`).
    pub(crate) share: Option<Share>,
    /// A resume page waits for budget: the shard's sweep asks again.
    pub(crate) budget_wanted: bool,
}

/// One read waiting in [`PacedReads`].
#[derive(Debug)]
pub(crate) enum PacedRead {
    /// The next catch-up page of the membership of room `room_id` (see [`CatchUp`]).
    Resume {
        /// The room.
        room_id: u64,
    },
    /// A `history` command.
    History {
        /// The query.
        query: HistoryQuery,
        /// The room, as named in the command (echoed in the reply).
        room: Arc<str>,
    },
}

/// A membership catching up after a resume: history pages up to `upto`, then the live frames the
/// shard held meanwhile (`super::local::Held`).
#[derive(Debug)]
pub(crate) struct CatchUp {
    /// The next page starts after this id.
    pub(crate) next_after: u64,
    /// Last id to send from history; live frames above it are held meanwhile.
    pub(crate) upto: u64,
    /// Estimated bytes per message (frame), from the pages so far: a page asks for as many
    /// messages as its reservation of the catch-up budget holds.
    pub(crate) frame_bytes: usize,
}

/// One room a connection is in.
#[derive(Debug)]
pub(crate) struct Membership {
    /// The room.
    pub(crate) room: Arc<Room>,
    /// While catching up after a resume.
    pub(crate) catch_up: Option<CatchUp>,
    /// When this connection's last `typing` in the room was forwarded (at most one per
    /// [`TYPING_EVERY`]).
    pub(crate) typing_at: Option<std::time::Instant>,
    /// The highest read marker this connection sent or was told in the room (an older one is ignored).
    pub(crate) read_upto: u64,
    /// `joined` waits for the user's read marker from the store (`super::reads`); live frames of the
    /// room are held meanwhile and a resume's catch-up starts after it.
    pub(crate) pending_joined: Option<Box<PendingJoined>>,
}

/// A `joined` frame waiting for the user's read marker: what it will say besides.
#[derive(Debug)]
pub(crate) struct PendingJoined {
    /// Up to `MAX_MEMBER_NAMES` member names, and the member count, at the join.
    pub(crate) members: Vec<Arc<str>>,
    pub(crate) member_count: usize,
    /// The room's last id at the join.
    pub(crate) last_id: u64,
    /// The join carried a `since` from another epoch.
    pub(crate) reset: bool,
}

/// At most one `typing` per connection and room is forwarded in this time; the rest are dropped.
pub(crate) const TYPING_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl WsState {
    /// The variant of live frames this connection receives: compressed when deflate was negotiated
    /// with a window the shared frames fit (`DeflateAgreed::compress_outbound`).
    pub(crate) fn variant(&self) -> Variant {
        let compression = match self.deflate {
            Some(agreed) if agreed.compress_outbound() => Compression::Deflate,
            _ => Compression::None,
        };
        Variant { format: self.format, compression }
    }

    /// Takes the membership at `index` out of the connection's rooms (the caller leaves the room
    /// with it), forgetting the connection's own recent messages there (`super::own`: it would not
    /// see a delete of them while away).
    pub(crate) fn take_membership(&mut self, index: usize) -> Membership {
        let membership = self.rooms.swap_remove(index);
        self.own.forget_room(membership.room.id);
        membership
    }

    /// The membership for `room_id`, if joined.
    pub(crate) fn membership_mut(&mut self, room_id: u64) -> Option<&mut Membership> {
        self.rooms.iter_mut().find(|m| m.room.id == room_id)
    }
}

/// A connection's token (auth on): when it expires, and whether the client was told so
/// (`super::token_life` decides what the sweep does about it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenLife {
    /// The token's `exp` as an instant.
    pub(crate) expires_at: std::time::Instant,
    /// When `token_expired` was sent (the grace runs from then).
    pub(crate) warned_at: Option<std::time::Instant>,
}

impl TokenLife {
    /// The life of a token expiring at `exp` (seconds since the epoch), seen at `now` (wall clock
    /// `now_ms`): the wall clock is read once here, the sweep compares instants only.
    pub(crate) fn new(exp: u64, now: std::time::Instant, now_ms: i64) -> TokenLife {
        // Capped so that no `exp` however far ahead can overflow the instant.
        const CAP: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
        TokenLife { expires_at: now + remaining(exp, now_ms).min(CAP), warned_at: None }
    }
}

/// Time from `now_ms` until `exp` (seconds since the epoch); zero when it is past.
pub(crate) fn remaining(exp: u64, now_ms: i64) -> std::time::Duration {
    let exp_ms = i64::try_from(exp.saturating_mul(1000)).unwrap_or(i64::MAX);
    std::time::Duration::from_millis(u64::try_from(exp_ms.saturating_sub(now_ms)).unwrap_or(0))
}
