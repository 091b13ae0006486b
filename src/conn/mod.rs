//! One client connection at the socket level: its socket, the session state it carries (opaque
//! here), its input remainder and output queue, its timers and its socket lifecycle.
//!
//! The only module that does socket IO (`read`, `writev`, `shutdown`); the shard decides when, the
//! session layer decides what. What the bytes mean and every WebSocket or HTTP state (rooms,
//! catch-up, limits) is the session's: [`Conn`] is generic over it (`S`, the session's `Phase`),
//! so this module depends on nothing above the codecs. Buffers exist only while in use: `inbuf`
//! holds a partial request or frame between reads (or pipelined requests waiting for the output
//! to drain, see `read_blocked`) and is freed when empty, the output queue frees its storage once
//! drained. With TLS, [`tls::Transport`] sits between the socket and these bytes: the session sees
//! plaintext either way, and the socket is still touched only here.

pub mod outbuf;
pub(crate) mod tls;

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use mio::net::TcpStream;

use crate::limits::per_ip::IpSlot;
use crate::metrics::{CloseReason, TlsMetrics};
use crate::ws::codec;
use outbuf::{Bound, Flushed, Full, OutBuf};
use tls::{TlsScratch, Transport};

/// The socket's side of a connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Reading and writing.
    Open,
    /// A close frame or final response is queued; once it is written the write side is shut down
    /// and input is discarded until the peer closes or `Conn::deadline` passes.
    Closing {
        /// The write side was shut down already.
        write_shut: bool,
    },
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
    /// A TLS error (counted by reason already): the connection must be closed.
    Failed,
}

/// A client connection carrying session state `S`.
#[derive(Debug)]
pub(crate) struct Conn<S> {
    /// The socket (registered with the shard's `Poll` under the slab key).
    pub(crate) sock: TcpStream,
    /// Plain, or TLS between the socket and the session's bytes.
    pub(crate) transport: Transport,
    /// Peer address, for logs and limits.
    pub(crate) peer: SocketAddr,
    /// Process-unique serial (slab keys are reused; replies carry the serial to find the right one).
    pub(crate) serial: u64,
    /// The session's state (what the bytes mean; `session::Phase`).
    pub(crate) phase: S,
    /// Open, or closing (see [`Lifecycle`]).
    pub(crate) lifecycle: Lifecycle,
    /// Unparsed input left from earlier reads (empty, and unallocated, most of the time).
    pub(crate) inbuf: Vec<u8>,
    /// Frames and responses waiting to be written.
    pub(crate) out: OutBuf,
    /// When the connection must be gone: handshake timeout in HTTP phase, linger limit when closing.
    pub(crate) deadline: Option<Instant>,
    /// The reactor's: the peer may have more input that a paused or budget-limited read left in
    /// the socket.
    pub(crate) read_pending: bool,
    /// The reactor's: the session did not want more input (an HTTP request waits for queued output
    /// to drain or for a history reply, or ingress is paused), so the socket is left unread until it
    /// does; then buffered input is served first.
    pub(crate) read_blocked: bool,
    /// This connection's share of its address's count (`--max-conns-per-ip`); released on drop.
    pub(crate) ip_slot: IpSlot,
    /// Why the server decided to close it (first decision wins); `None` counts as normal at the reap.
    pub(crate) close_reason: Option<CloseReason>,
}

impl<S> Conn<S> {
    /// A new open connection whose session starts in `phase`, to be done with its first phase by
    /// `deadline` (the handshake timeout).
    pub(crate) fn new(sock: TcpStream, peer: SocketAddr, serial: u64, phase: S, deadline: Instant) -> Self {
        Conn {
            sock,
            transport: Transport::Plain,
            peer,
            serial,
            phase,
            lifecycle: Lifecycle::Open,
            inbuf: Vec::new(),
            out: OutBuf::default(),
            deadline: Some(deadline),
            read_pending: false,
            read_blocked: false,
            ip_slot: IpSlot::untracked(),
            close_reason: None,
        }
    }

    /// Records why the connection is being closed, unless a reason was recorded already.
    pub(crate) fn set_close_reason(&mut self, reason: CloseReason) {
        self.close_reason.get_or_insert(reason);
    }

    /// Reads once into `scratch` (plaintext, through TLS when the connection has it, which borrows
    /// the shard's `tls_scratch` meanwhile; TLS handshakes and failures are counted in `tls_metrics`).
    pub(crate) fn read(
        &mut self,
        scratch: &mut [u8],
        tls_scratch: &mut TlsScratch,
        tls_metrics: &TlsMetrics,
    ) -> ReadOutcome {
        self.transport.read(&mut self.sock, scratch, tls_scratch, tls_metrics)
    }

    /// The transport has output of its own (TLS handshake, ticket, alert): the connection must be
    /// flushed even if no frame is queued.
    pub(crate) fn transport_wants_write(&self) -> bool {
        self.transport.wants_write()
    }

    /// Writes queued output (TLS encrypts it with the shard's `tls_scratch`); in the closing phase,
    /// shuts the write side once everything is out.
    ///
    /// # Errors
    /// The socket's error: the connection is dead.
    pub(crate) fn flush(&mut self, tls_scratch: &mut TlsScratch) -> io::Result<Flushed> {
        let closing = matches!(self.lifecycle, Lifecycle::Closing { .. });
        let flushed = self.transport.flush(&mut self.sock, &mut self.out, closing, tls_scratch)?;
        if flushed == Flushed::All
            && let Lifecycle::Closing { write_shut } = &mut self.lifecycle
            && !*write_shut
        {
            *write_shut = true;
            // The peer may already be gone; either way we only wait for its EOF now.
            let _ = self.sock.shutdown(Shutdown::Write);
        }
        Ok(flushed)
    }

    /// Queues a frame within the output's hard bound (see [`OutBuf::push`] for the soft one).
    ///
    /// # Errors
    /// [`Full`]: the peer is not keeping up.
    pub(crate) fn send(&mut self, frame: Bytes, bound: Bound) -> Result<(), Full> {
        // What TLS may hold counts against the same bounds.
        let held = self.transport.reserved();
        let bound = Bound { soft: bound.soft.saturating_sub(held), hard: bound.hard.saturating_sub(held) };
        self.out.push(frame, bound)
    }

    /// Queues a paced frame (history and catch-up pages): not judged by the bound, see [`OutBuf`].
    pub(crate) fn send_paced(&mut self, frame: Bytes) {
        self.out.push_paced(frame);
    }

    /// Queues bytes that must go out whatever the bound (responses, close frames, direct replies).
    pub(crate) fn send_unbounded(&mut self, bytes: impl Into<Bytes>) {
        self.out.push_unbounded(bytes.into());
    }

    /// Queues a WebSocket close frame (after dropping unsent frames if `discard_queued`) and starts
    /// closing with `deadline` (the session moves its own state on).
    pub(crate) fn begin_close(&mut self, code: u16, reason: &str, discard_queued: bool, deadline: Instant) {
        if discard_queued {
            self.out.drop_unstarted();
        }
        self.out.push_unbounded(Bytes::from(codec::encode_close(code, reason)));
        self.close_after_flush(deadline);
    }

    /// Starts closing (after a final response or close frame was queued): what is queued is written,
    /// then the write side is shut down; input is dropped; gone by `deadline` at the latest.
    pub(crate) fn close_after_flush(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        self.inbuf = Vec::new();
        self.lifecycle = Lifecycle::Closing { write_shut: false };
    }
}
