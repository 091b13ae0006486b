//! One client connection: its socket, its phase (HTTP, WebSocket, closing), its buffers.
//!
//! The only module that does socket IO (`read`, `writev`, `shutdown`); the shard decides when, the
//! session layer decides what. Buffers exist only while in use: `inbuf` holds a partial request or
//! frame between reads (or pipelined requests waiting for the output to drain, see `read_blocked`)
//! and is freed when empty, the output queue frees its storage once drained.

pub mod outbuf;

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mio::net::TcpStream;

use crate::limits::client::ClientLimits;
use crate::limits::per_ip::IpSlot;
use crate::metrics::CloseReason;
use crate::room::directory::Room;
use crate::store::HistoryQuery;
use crate::types::Format;
use crate::ws::codec::{self, FrameDecoder};
use outbuf::{Flushed, Full, OutBuf};

/// Where a connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Reading HTTP request heads (before an upgrade, or plain keep-alive HTTP).
    Http(HttpState),
    /// Upgraded: speaking WebSocket.
    Ws(Box<WsState>),
    /// A close frame or final response is queued; after it is written the write side is shut down and
    /// input is discarded until the peer closes or `Conn::deadline` passes.
    Closing {
        /// The write side was shut down already.
        write_shut: bool,
    },
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
}

/// WebSocket phase state.
#[derive(Debug)]
pub(crate) struct WsState {
    /// Wire format chosen at the handshake.
    pub(crate) format: Format,
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
}

/// History reads (resume pages, `history` replies) waiting to be sent at the client's pace: one at a
/// time, the next only once the output queue has drained below the low-water mark.
#[derive(Debug, Default)]
pub(crate) struct PacedReads {
    /// A read was submitted and its reply is not yet queued.
    pub(crate) in_flight: bool,
    /// Reads waiting their turn, oldest first (at most one `Resume` per room; `History` bounded).
    pub(crate) waiting: VecDeque<PacedRead>,
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

/// A membership catching up after a resume: history pages up to `upto`, then the held live frames.
#[derive(Debug)]
pub(crate) struct CatchUp {
    /// The next page starts after this id.
    pub(crate) next_after: u64,
    /// Last id to send from history; live frames above it are held meanwhile.
    pub(crate) upto: u64,
    /// Messages asked per page (adapted so a page is about `--max-outbuf` bytes).
    pub(crate) page_limit: usize,
    /// Live frames held back (ids above `upto`, and id-less events).
    pub(crate) held: Vec<Bytes>,
    /// Bytes in `held`.
    pub(crate) held_bytes: usize,
    /// `held` passed its bound and was dropped: the catch-up continues from history past `upto`.
    pub(crate) overflowed: bool,
}

/// One room a connection is in.
#[derive(Debug)]
pub(crate) struct Membership {
    /// The room.
    pub(crate) room: Arc<Room>,
    /// While catching up after a resume.
    pub(crate) catch_up: Option<CatchUp>,
}

impl WsState {
    /// The membership for `room_id`, if joined.
    pub(crate) fn membership_mut(&mut self, room_id: u64) -> Option<&mut Membership> {
        self.rooms.iter_mut().find(|m| m.room.id == room_id)
    }
}

/// What a read produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// `n` bytes were read into the scratch buffer.
    Data(usize),
    /// Nothing more for now.
    WouldBlock,
    /// The peer closed its side (or reset).
    Closed,
}

/// A client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The socket (registered with the shard's `Poll` under the slab key).
    pub(crate) sock: TcpStream,
    /// Peer address, for logs and limits.
    pub(crate) peer: SocketAddr,
    /// Process-unique serial (slab keys are reused; replies carry the serial to find the right one).
    pub(crate) serial: u64,
    /// Life phase.
    pub(crate) phase: Phase,
    /// Unparsed input left from earlier reads (empty, and unallocated, most of the time).
    pub(crate) inbuf: Vec<u8>,
    /// Frames and responses waiting to be written.
    pub(crate) out: OutBuf,
    /// When the connection must be gone: handshake timeout in HTTP phase, linger limit when closing.
    pub(crate) deadline: Option<Instant>,
    /// Already on the shard's list of connections to flush this turn.
    pub(crate) flush_scheduled: bool,
    /// The peer may have more input that a paused or budget-limited read left in the socket.
    pub(crate) read_pending: bool,
    /// The session may not take more input yet (an HTTP request waits for queued output to drain or
    /// for a history reply): the socket is not read until it may, then buffered input is served first.
    pub(crate) read_blocked: bool,
    /// A paced read waits for the output queue to drain below the low-water mark: the shard calls
    /// `session::on_drained` after a flush that gets it there.
    pub(crate) drain_wanted: bool,
    /// This connection's share of its address's count (`--max-conns-per-ip`); released on drop.
    pub(crate) ip_slot: IpSlot,
    /// Why the server decided to close it (first decision wins); `None` counts as normal at the reap.
    pub(crate) close_reason: Option<CloseReason>,
}

impl Conn {
    /// A new connection in the HTTP phase (`ops_only`: from the `--metrics-addr` listener).
    pub(crate) fn new(
        sock: TcpStream,
        peer: SocketAddr,
        serial: u64,
        over_capacity: bool,
        ops_only: bool,
        deadline: Instant,
    ) -> Self {
        Conn {
            sock,
            peer,
            serial,
            phase: Phase::Http(HttpState { over_capacity, awaiting_reply: false, ops_only }),
            inbuf: Vec::new(),
            out: OutBuf::default(),
            deadline: Some(deadline),
            flush_scheduled: false,
            read_pending: false,
            read_blocked: false,
            drain_wanted: false,
            ip_slot: IpSlot::untracked(),
            close_reason: None,
        }
    }

    /// Records why the connection is being closed, unless a reason was recorded already.
    pub(crate) fn set_close_reason(&mut self, reason: CloseReason) {
        self.close_reason.get_or_insert(reason);
    }

    /// Reads once into `scratch`.
    pub(crate) fn read(&mut self, scratch: &mut [u8]) -> ReadOutcome {
        loop {
            return match self.sock.read(scratch) {
                Ok(0) => ReadOutcome::Closed,
                Ok(n) => ReadOutcome::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => ReadOutcome::Closed,
            };
        }
    }

    /// Writes queued output; in the closing phase, shuts the write side once everything is out.
    ///
    /// # Errors
    /// The socket's error: the connection is dead.
    pub(crate) fn flush(&mut self) -> io::Result<Flushed> {
        let flushed = self.out.flush(&mut self.sock)?;
        if flushed == Flushed::All
            && let Phase::Closing { write_shut } = &mut self.phase
            && !*write_shut
        {
            *write_shut = true;
            // The peer may already be gone; either way we only wait for its EOF now.
            let _ = self.sock.shutdown(Shutdown::Write);
        }
        Ok(flushed)
    }

    /// Queues a frame within the output bound.
    ///
    /// # Errors
    /// [`Full`]: the peer is not keeping up.
    pub(crate) fn send(&mut self, frame: Bytes, max_outbuf: usize) -> Result<(), Full> {
        self.out.push(frame, max_outbuf)
    }

    /// Queues a paced frame (history and catch-up pages): not judged by the bound, see [`OutBuf`].
    pub(crate) fn send_paced(&mut self, frame: Bytes) {
        self.out.push_paced(frame);
    }

    /// Queues bytes that must go out whatever the bound (responses, close frames, direct replies).
    pub(crate) fn send_unbounded(&mut self, bytes: impl Into<Bytes>) {
        self.out.push_unbounded(bytes.into());
    }

    /// Queues a WebSocket close frame (after dropping unsent frames if `discard_queued`) and enters
    /// the closing phase with `deadline`. Returns the phase it left (to leave its rooms).
    pub(crate) fn begin_close(&mut self, code: u16, reason: &str, discard_queued: bool, deadline: Instant) -> Phase {
        if discard_queued {
            self.out.drop_unstarted();
        }
        self.out.push_unbounded(Bytes::from(codec::encode_close(code, reason)));
        self.enter_closing(deadline)
    }

    /// Enters the closing phase (after a final HTTP response was queued). Returns the phase it left.
    pub(crate) fn enter_closing(&mut self, deadline: Instant) -> Phase {
        self.deadline = Some(deadline);
        self.inbuf = Vec::new();
        std::mem::replace(&mut self.phase, Phase::Closing { write_shut: false })
    }

    /// Whether the connection speaks WebSocket and is not closing.
    pub(crate) fn ws_mut(&mut self) -> Option<&mut WsState> {
        match &mut self.phase {
            Phase::Ws(ws) => Some(ws),
            _ => None,
        }
    }
}
