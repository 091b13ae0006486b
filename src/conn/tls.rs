//! A connection's transport: plain TCP, or TLS with a rustls `UnbufferedServerConnection` between
//! the socket and the session's bytes (sans-IO: rustls never touches the socket, this file moves the
//! bytes, and the buffers are ours, not rustls').
//!
//! **Why unbuffered.** A buffered `ServerConnection` keeps a 4 KiB receive buffer per connection
//! between reads (it shrinks it only at the next read, never frees it), which is half of what an
//! idle TLS connection costs. Here the shard owns the buffers ([`TlsScratch`]: one set per shard,
//! not per connection) and a connection keeps only what is really its own between reads and
//! writes: ciphertext not yet consumed ([`TlsTransport`]'s `pending_in`: a partial record, usually
//! nothing) and records encrypted but not yet written (`pending_out`: what the socket did not
//! take, usually nothing). Both are freed when empty, so an idle connection holds rustls' session
//! state (keys, the ticket and resumption state) and no buffer at all.
//!
//! Reads: the connection's pending ciphertext is copied to the front of the shard's incoming
//! buffer, the socket's bytes are read behind it, and `process_tls_records` decrypts record by
//! record into the shard's plaintext scratch buffer, exactly where a plain read would have put
//! them, so the session above cannot tell the two apart. What is left (a partial record, or whole
//! records once the plaintext buffer has less than a record's room) goes back to `pending_in`.
//! A read may leave output of rustls' own (handshake flights, session tickets, alerts, a key update
//! answer): it is encoded into `pending_out` and [`Transport::wants_write`] tells the shard to
//! flush. Writes: at flush time the queued frames (`OutBuf`, shared `Bytes`) are gathered, up to
//! [`PLAIN_BATCH`] bytes of up to 64 frames per vectored copy, into the shard's plaintext batch and
//! encrypted in one call, so records of up to 16 KiB span frames (never one record per frame),
//! into the shard's outgoing buffer, which is written with one write; only what the socket did not
//! take is copied to `pending_out`. A batch is smaller than [`BUFFER_LIMIT`], and the frame queue's
//! bound is lowered by that limit, so `--max-outbuf` covers what TLS holds. `close_notify` goes out
//! before the write side is shut down (once the handshake has completed: before, there is no
//! session to close).
//!
//! Handshakes in progress are bounded per shard ([`HandshakeSlots`]): a connection accepted over
//! the bound waits unread for a slot ([`Transport::AwaitingSlot`]) while fewer than
//! [`WAITING_PER_SLOT`] times as many wait,
//! else it is closed at once and counted ([`TlsAccept`]). A slot is held from accept (or from its
//! promotion) until the handshake completes or the connection is dropped.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mio::net::TcpStream;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError, UnbufferedStatus, WriteTraffic,
};
use rustls::{HandshakeType, ServerConfig};

use super::ReadOutcome;
use super::outbuf::{Flushed, OutBuf};
use crate::metrics::{TlsFailure, TlsMetrics};
use crate::tls::TlsConfig;

/// Bytes TLS may hold for one connection beyond its frame queue (records encrypted and not yet
/// written, with rustls' own output beside them). The frame queue of a TLS connection is bounded by
/// `--max-outbuf` minus this (see `Conn::send`); `config` requires `--max-outbuf` to leave room.
pub(crate) const BUFFER_LIMIT: usize = crate::config::TLS_BUFFER_LIMIT;

/// Plaintext encrypted per batch at flush time. Its records (two: 16 KiB and the rest) are what a
/// connection keeps when the socket takes none of them; the 4 KiB left under [`BUFFER_LIMIT`] is for
/// the records' overhead and output of rustls' own queued beside them (a key update, an alert).
const PLAIN_BATCH: usize = BUFFER_LIMIT - 4096;

/// Largest plaintext of one TLS record (2^14 bytes).
const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;

/// Largest handshake message accepted (as buffered rustls does: 64 KiB).
const MAX_HANDSHAKE_MESSAGE: usize = 0xffff;

/// The shard's incoming ciphertext buffer: a handshake message being joined from its records, plus a
/// record's worth more. Input that fills it without completing a message is refused.
const INCOMING_BYTES: usize = MAX_HANDSHAKE_MESSAGE + MAX_RECORD_PLAINTEXT + 2048;

/// The first byte of a TLS record carrying a handshake message (a ClientHello starts with it).
const HANDSHAKE_RECORD: u8 = 22;

/// Buffers one shard lends each of its TLS connections for the length of one read or flush (so no
/// connection keeps one of its own). Allocated on first use: a plain listener's shard has none.
#[derive(Debug, Default)]
pub(crate) struct TlsScratch {
    /// Ciphertext: the connection's pending input, then what the socket gave.
    incoming: Vec<u8>,
    /// Plaintext frames gathered for one encryption.
    plain: Vec<u8>,
    /// Records encrypted from `plain` (grown if rustls asks for more), before the write.
    outgoing: Vec<u8>,
}

impl TlsScratch {
    fn ensure(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = vec![0; INCOMING_BYTES];
            self.plain = vec![0; PLAIN_BATCH];
            self.outgoing = vec![0; BUFFER_LIMIT];
        }
    }
}

/// How a connection's bytes travel.
#[derive(Debug, Default)]
pub(crate) enum Transport {
    /// Plain TCP: the session's bytes are the socket's.
    #[default]
    Plain,
    /// TLS over the socket.
    Tls(Box<TlsTransport>),
    /// TLS, accepted while the shard's handshakes were at their bound: nothing is read or written
    /// until a slot frees and the shard gives it its TLS state ([`TlsAccept::promote`]); its
    /// handshake deadline runs meanwhile.
    AwaitingSlot,
}

/// One TLS connection's rustls state and the bytes only it can own.
pub(crate) struct TlsTransport {
    session: UnbufferedServerConnection,
    /// Ciphertext received and not yet consumed: a partial record or handshake message waiting for
    /// the rest (rustls' handshake joiner refers to it by position), or whole records left when the
    /// read's plaintext buffer filled. Empty, and unallocated, most of the time.
    pending_in: Vec<u8>,
    /// `pending_in` holds whole records not processed yet (left when the plaintext buffer filled
    /// after an application-data record, so rustls' handshake joiner is empty): rustls must not see
    /// them at flush time, or it would decrypt them there.
    pending_unread: bool,
    /// Bytes for the socket that it has not taken yet: encrypted records, rustls' own output
    /// (handshake flights, tickets, alerts), in the order they were made. Empty, and unallocated,
    /// most of the time.
    pending_out: Vec<u8>,
    /// Held while the handshake is in progress.
    slot: Option<HandshakeSlot>,
    /// The first byte the client sent (tells plain HTTP from a ClientHello).
    first_byte: Option<u8>,
    /// The socket reported end of input, or the peer sent `close_notify`.
    eof: bool,
    /// `close_notify` was queued (or skipped: the handshake had not completed).
    close_notify_sent: bool,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("handshaking", &self.session.is_handshaking())
            .field("pending_in", &self.pending_in.len())
            .field("pending_out", &self.pending_out.len())
            .field("eof", &self.eof)
            .field("close_notify_sent", &self.close_notify_sent)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A TLS transport for a connection just accepted, holding `slot` until its handshake ends.
    ///
    /// # Errors
    /// rustls refusing the configuration (it was checked when loaded, so not in practice).
    pub(crate) fn tls(config: Arc<ServerConfig>, slot: HandshakeSlot) -> Result<Transport, rustls::Error> {
        Ok(Transport::Tls(Box::new(TlsTransport {
            session: UnbufferedServerConnection::new(config)?,
            pending_in: Vec::new(),
            pending_unread: false,
            pending_out: Vec::new(),
            slot: Some(slot),
            first_byte: None,
            eof: false,
            close_notify_sent: false,
        })))
    }

    /// Output bytes the transport may hold beyond the frame queue (taken off the queue's bound).
    pub(crate) fn reserved(&self) -> usize {
        match self {
            Transport::Plain => 0,
            Transport::Tls(_) | Transport::AwaitingSlot => BUFFER_LIMIT,
        }
    }

    /// The transport has output of its own to write (a handshake flight, a ticket, an alert, or
    /// records the socket did not take).
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Transport::Plain | Transport::AwaitingSlot => false,
            Transport::Tls(tls) => !tls.pending_out.is_empty() || tls.session.wants_write(),
        }
    }

    /// A TLS connection still waiting for a handshake slot (the shard does not read it).
    pub(crate) fn is_awaiting_slot(&self) -> bool {
        matches!(self, Transport::AwaitingSlot)
    }

    /// A TLS handshake is still in progress.
    pub(crate) fn is_handshaking(&self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Tls(tls) => tls.session.is_handshaking(),
            Transport::AwaitingSlot => true,
        }
    }

    /// Reads once: plaintext into `plain` (TLS borrows the shard's `scratch` meanwhile).
    pub(crate) fn read(
        &mut self,
        sock: &mut TcpStream,
        plain: &mut [u8],
        scratch: &mut TlsScratch,
        metrics: &TlsMetrics,
    ) -> ReadOutcome {
        match self {
            Transport::Plain => read_plain(sock, plain),
            Transport::Tls(tls) => tls.read(sock, plain, scratch, metrics),
            // Not read until it has a slot (the shard checks first); the socket keeps the input.
            Transport::AwaitingSlot => ReadOutcome::WouldBlock,
        }
    }

    /// Writes what is queued (and, with `closing` once everything is out, a `close_notify`).
    ///
    /// # Errors
    /// The socket's error, or rustls' after a fatal TLS error: the connection is dead.
    pub(crate) fn flush(
        &mut self,
        sock: &mut TcpStream,
        out: &mut OutBuf,
        closing: bool,
        scratch: &mut TlsScratch,
    ) -> io::Result<Flushed> {
        match self {
            Transport::Plain => out.flush(sock),
            Transport::Tls(tls) => tls.flush(sock, out, closing, scratch),
            // Nothing was said on it yet, and nothing can be before its handshake.
            Transport::AwaitingSlot => Ok(Flushed::All),
        }
    }
}

/// One plain read.
fn read_plain(sock: &mut TcpStream, scratch: &mut [u8]) -> ReadOutcome {
    loop {
        return match sock.read(scratch) {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => ReadOutcome::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => ReadOutcome::Closed,
        };
    }
}

/// Why processing the buffered input stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Everything complete was processed: more input is needed.
    NeedInput,
    /// The plaintext buffer has less than one record's room left.
    PlainFull,
    /// The peer's `close_notify` arrived.
    PeerClosed,
}

/// A TLS error met while processing input, with the input bytes it left unconsumed.
struct Failure {
    err: rustls::Error,
    consumed: usize,
}

impl TlsTransport {
    fn read<S: Read + Write>(
        &mut self,
        sock: &mut S,
        plain: &mut [u8],
        scratch: &mut TlsScratch,
        metrics: &TlsMetrics,
    ) -> ReadOutcome {
        scratch.ensure();
        let incoming = &mut scratch.incoming[..];
        let mut filled = self.pending_in.len();
        incoming[..filled].copy_from_slice(&self.pending_in);
        self.pending_in = Vec::new();
        self.pending_unread = false;
        let mut produced = 0;
        loop {
            let was_handshaking = self.session.is_handshaking();
            let processed = self.process(&mut incoming[..filled], plain, &mut produced);
            // Judged after processing: a client's Finished and a bad record behind it in one read
            // are a completed handshake and a session error.
            if was_handshaking && !self.session.is_handshaking() {
                self.slot = None;
                metrics.handshakes.inc();
            }
            let (consumed, stop) = match processed {
                Ok(done) => done,
                Err(Failure { err, consumed }) => {
                    return self.fail(sock, &mut incoming[consumed..filled], &err, metrics);
                }
            };
            incoming.copy_within(consumed..filled, 0);
            filled -= consumed;
            match stop {
                Stop::PlainFull => {
                    self.keep_input(&incoming[..filled], true);
                    return ReadOutcome::Data(produced);
                }
                Stop::PeerClosed => {
                    self.eof = true;
                    return if produced > 0 { ReadOutcome::Data(produced) } else { ReadOutcome::Closed };
                }
                Stop::NeedInput => {}
            }
            if produced > 0 {
                self.keep_input(&incoming[..filled], false);
                return ReadOutcome::Data(produced);
            }
            if self.eof {
                return ReadOutcome::Closed;
            }
            if filled == incoming.len() {
                // A record or handshake message larger than TLS (or our bound) allows.
                let why = TlsFailure::BadRecord;
                if self.session.is_handshaking() {
                    metrics.handshake_failed(why);
                } else {
                    metrics.session_error(why);
                }
                tracing::debug!(filled, "TLS input larger than any message allowed");
                return ReadOutcome::Failed;
            }
            // At most the plaintext buffer's size per read (what it cannot take waits in `pending_in`).
            let end = incoming.len().min(filled + plain.len());
            match sock.read(&mut incoming[filled..end]) {
                Ok(0) => {
                    self.eof = true;
                    // A client that sent nothing (a port probe) has not failed a handshake.
                    if self.session.is_handshaking() && self.first_byte.is_some() {
                        metrics.handshake_failed(TlsFailure::Truncated);
                    }
                    // End of input without close_notify: the connection is over all the same.
                    return ReadOutcome::Closed;
                }
                Ok(n) => {
                    self.first_byte.get_or_insert(incoming[filled]);
                    filled += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.keep_input(&incoming[..filled], false);
                    return ReadOutcome::WouldBlock;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// Keeps the unconsumed input `rest` until the next read (`unread`: it holds whole records).
    fn keep_input(&mut self, rest: &[u8], unread: bool) {
        self.pending_in = rest.to_vec();
        self.pending_unread = unread && !rest.is_empty();
    }

    /// Processes the complete records in `incoming`: application data into `plain[*produced..]`,
    /// rustls' own output into `pending_out`. Returns the bytes consumed from the front of
    /// `incoming` and why it stopped.
    fn process(
        &mut self,
        incoming: &mut [u8],
        plain: &mut [u8],
        produced: &mut usize,
    ) -> Result<(usize, Stop), Failure> {
        let mut consumed = 0;
        loop {
            // Every record fits in what is left: rustls never holds plaintext between reads.
            if plain.len() - *produced < MAX_RECORD_PLAINTEXT {
                if *produced == 0 {
                    let err = rustls::Error::General("a read buffer smaller than a record".into());
                    return Err(Failure { err, consumed });
                }
                return Ok((consumed, Stop::PlainFull));
            }
            let UnbufferedStatus { mut discard, state } = self.session.process_tls_records(&mut incoming[consumed..]);
            let step = match state {
                Err(err) => Err(err),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut step = Ok(None);
                    while let Some(record) = traffic.next_record() {
                        let record = match record {
                            Ok(record) => record,
                            Err(err) => {
                                step = Err(err);
                                break;
                            }
                        };
                        let Some(room) = plain.get_mut(*produced..*produced + record.payload.len()) else {
                            step = Err(rustls::Error::General("a record larger than the read buffer".into()));
                            break;
                        };
                        room.copy_from_slice(record.payload);
                        *produced += record.payload.len();
                        discard += record.discard;
                    }
                    step
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.pending_out, &mut encode);
                    Ok(None)
                }
                // Encoded into `pending_out` already, which the next flush writes before anything later.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Ok(None)
                }
                Ok(ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_)) => Ok(Some(Stop::NeedInput)),
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => Ok(Some(Stop::PeerClosed)),
                // Early data is never accepted (`max_early_data_size` is 0); any other state is new.
                Ok(other) => Err(rustls::Error::General(format!("unexpected TLS state {other:?}"))),
            };
            consumed += discard;
            match step {
                Ok(None) => {}
                Ok(Some(stop)) => return Ok((consumed, stop)),
                Err(err) => return Err(Failure { err, consumed }),
            }
        }
    }

    /// Counts a TLS error, writes the alert rustls made for it if the socket takes it now, and ends
    /// the connection. `incoming` is the input left unconsumed.
    fn fail<S: Write>(
        &mut self,
        sock: &mut S,
        incoming: &mut [u8],
        err: &rustls::Error,
        metrics: &TlsMetrics,
    ) -> ReadOutcome {
        let handshaking = self.session.is_handshaking();
        let why = self.classify(err, handshaking);
        if handshaking {
            metrics.handshake_failed(why);
        } else {
            metrics.session_error(why);
        }
        tracing::debug!(%err, reason = why.as_str(), handshaking, "TLS error");
        // The alert is queued behind the error: rustls hands out what it queued first, before it
        // looks at the input again (which would fail again), so only while it has some.
        for _ in 0..4 {
            if !self.session.wants_write() {
                break;
            }
            let UnbufferedStatus { state, .. } = self.session.process_tls_records(incoming);
            let Ok(ConnectionState::EncodeTlsData(mut encode)) = state else { break };
            encode_into(&mut self.pending_out, &mut encode);
        }
        // The connection ends either way.
        let _ = write_some(sock, &self.pending_out);
        self.pending_out = Vec::new();
        ReadOutcome::Failed
    }

    /// The `reason` label of a TLS error.
    fn classify(&self, err: &rustls::Error, handshaking: bool) -> TlsFailure {
        if handshaking && self.first_byte.is_some_and(|b| b != HANDSHAKE_RECORD && b.is_ascii_alphabetic()) {
            return TlsFailure::Plaintext;
        }
        match err {
            rustls::Error::InappropriateHandshakeMessage { got_type: HandshakeType::Certificate, .. } => {
                TlsFailure::ClientCert
            }
            rustls::Error::InvalidMessage(_) | rustls::Error::DecryptError => TlsFailure::BadRecord,
            _ => TlsFailure::Protocol,
        }
    }

    fn flush<S: Write>(
        &mut self,
        sock: &mut S,
        out: &mut OutBuf,
        closing: bool,
        scratch: &mut TlsScratch,
    ) -> io::Result<Flushed> {
        loop {
            if !self.pending_out.is_empty() {
                let written = write_some(sock, &self.pending_out)?;
                if written < self.pending_out.len() {
                    self.pending_out.drain(..written);
                    return Ok(Flushed::WouldBlock);
                }
                self.pending_out = Vec::new();
            }
            if out.is_empty() {
                if closing && !self.close_notify_sent {
                    self.close_notify_sent = true;
                    if !self.session.is_handshaking() {
                        scratch.ensure();
                        let outgoing = &mut scratch.outgoing;
                        let len =
                            self.encrypt_with(|traffic| retry_larger(outgoing, |buf| traffic.queue_close_notify(buf)))?;
                        if let Some(len) = len {
                            self.pending_out.extend_from_slice(&outgoing[..len]);
                        }
                    }
                    continue;
                }
                return Ok(Flushed::All);
            }
            if self.session.is_handshaking() {
                // Plaintext waits for the handshake to finish.
                return Ok(Flushed::WouldBlock);
            }
            scratch.ensure();
            let TlsScratch { plain, outgoing, .. } = scratch;
            // Frames into the plaintext batch (up to 64 per vectored copy), then one encryption:
            // records span frames.
            let encrypted = self.encrypt_with(|traffic| {
                let mut batch = Batch { buf: &mut plain[..PLAIN_BATCH], filled: 0 };
                out.flush(&mut batch)?;
                let filled = batch.filled;
                retry_larger(outgoing, |buf| traffic.encrypt(&plain[..filled], buf))
            })?;
            let Some(len) = encrypted else { return Ok(Flushed::WouldBlock) };
            let records = &outgoing[..len];
            if !self.pending_out.is_empty() {
                // rustls had output of its own first: it goes out first.
                self.pending_out.extend_from_slice(records);
                continue;
            }
            let written = write_some(sock, records)?;
            if written < records.len() {
                self.pending_out = records[written..].to_vec();
                return Ok(Flushed::WouldBlock);
            }
        }
    }

    /// Brings rustls to the state where it encrypts (encoding any output of its own into
    /// `pending_out` on the way) and runs `f` there. `None`: it cannot encrypt yet (handshake).
    ///
    /// # Errors
    /// `f`'s error, or rustls' (the connection is then dead).
    fn encrypt_with<T>(
        &mut self,
        f: impl FnOnce(&mut WriteTraffic<'_, rustls::server::ServerConnectionData>) -> io::Result<T>,
    ) -> io::Result<Option<T>> {
        let mut f = Some(f);
        // A few rounds: output of rustls' own first (its encoding, then its transmission).
        for _ in 0..8 {
            let mut nothing = [0u8; 0];
            // Whole unread records must wait for the next read (rustls would decrypt them here);
            // a partial one is given back so rustls' handshake joiner finds what it refers to.
            let incoming: &mut [u8] = if self.pending_unread { &mut nothing } else { &mut self.pending_in };
            let UnbufferedStatus { discard, state } = self.session.process_tls_records(incoming);
            let result = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match f.take() {
                    Some(f) => Some(f(&mut traffic).map(Some)),
                    None => Some(Err(io::Error::other("TLS encryption asked for twice"))),
                },
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.pending_out, &mut encode);
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    None
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Ok(None)),
                Ok(ConnectionState::PeerClosed) => {
                    self.eof = true;
                    None
                }
                Ok(other) => Some(Err(io::Error::other(format!("TLS cannot encrypt in state {other:?}")))),
                Err(err) => Some(Err(io::Error::other(err))),
            };
            if discard > 0 && !self.pending_unread {
                self.pending_in.drain(..discard.min(self.pending_in.len()));
            }
            if let Some(result) = result {
                return result;
            }
        }
        Err(io::Error::other("TLS output did not settle"))
    }
}

/// Encodes rustls' own output (a handshake flight, a ticket, an alert) at the end of `out`.
fn encode_into<Data>(out: &mut Vec<u8>, encode: &mut EncodeTlsData<'_, Data>) {
    let start = out.len();
    let mut room = 1024;
    // Twice at most: rustls says how much it needs when the room is short.
    for _ in 0..2 {
        out.resize(start + room, 0);
        match encode.encode(&mut out[start..]) {
            Ok(len) => {
                out.truncate(start + len);
                return;
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => room = required_size,
            Err(EncodeError::AlreadyEncoded) => break,
        }
    }
    out.truncate(start);
}

/// Runs an encryption into `outgoing`, growing it once to the size rustls asks for if too small.
fn retry_larger(
    outgoing: &mut Vec<u8>,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<usize> {
    match encrypt(outgoing) {
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            outgoing.resize(required_size, 0);
            encrypt(outgoing).map_err(io::Error::other)
        }
        other => other.map_err(io::Error::other),
    }
}

/// Writes `bytes` until done or the socket would block; returns how many went.
///
/// # Errors
/// The socket's error other than `WouldBlock`/`Interrupted`.
fn write_some<S: Write>(sock: &mut S, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match sock.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// The plaintext batch as a `Write` for the frame queue: full is `WouldBlock`.
struct Batch<'a> {
    buf: &'a mut [u8],
    filled: usize,
}

impl Write for Batch<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let start = self.filled;
        for b in bufs {
            let room = &mut self.buf[self.filled..];
            let n = b.len().min(room.len());
            room[..n].copy_from_slice(&b[..n]);
            self.filled += n;
            if n < b.len() {
                break;
            }
        }
        match self.filled - start {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
/// Connections that may wait for a TLS handshake slot, per slot (the default bound of 256: 4,096 per
/// shard, so a crowd of thousands reconnecting at once waits rather than being refused).
pub(crate) const WAITING_PER_SLOT: usize = 16;

/// What a shard needs to give its new connections TLS: the current configuration (replaced by a
/// reload) and its bound on handshakes in progress.
///
/// A connection accepted while `max_handshakes` are in progress waits for a slot
/// ([`Transport::AwaitingSlot`], its input left in the socket, oldest served first: the shard's
/// queue), as long as fewer than [`WAITING_PER_SLOT`] × `max_handshakes` wait already; only beyond
/// that is it closed at once (`overloaded`). A reconnecting crowd is then served at the rate the CPU
/// allows, not refused into backoff (before, a 5,000-client TLS avalanche on 2 cores saw about 3
/// refusals per client). A waiting connection costs its socket and its slab entry, no TLS state.
#[derive(Debug)]
pub(crate) struct TlsAccept {
    config: Arc<TlsConfig>,
    slots: HandshakeSlots,
    max_waiting: usize,
}

impl TlsAccept {
    /// TLS with `config` for every connection, at most `max_handshakes` handshaking at once and
    /// [`WAITING_PER_SLOT`] times as many waiting.
    pub(crate) fn new(config: Arc<TlsConfig>, max_handshakes: usize) -> Self {
        let max_waiting = max_handshakes.saturating_mul(WAITING_PER_SLOT);
        TlsAccept { config, slots: HandshakeSlots::new(max_handshakes), max_waiting }
    }

    /// The transport of a connection accepted now, `waiting` connections of the shard waiting for a
    /// slot already: TLS with a slot, or waiting for one.
    ///
    /// # Errors
    /// [`TlsFailure::Overloaded`] when the shard's handshakes are at their bound and as many wait;
    /// [`TlsFailure::Protocol`] if rustls refused the configuration (not in practice: it was
    /// checked when loaded).
    pub(crate) fn transport(&self, waiting: usize) -> Result<Transport, TlsFailure> {
        match self.promote() {
            Some(transport) => transport,
            None if waiting < self.max_waiting => Ok(Transport::AwaitingSlot),
            None => Err(TlsFailure::Overloaded),
        }
    }

    /// The TLS transport of a connection that waited, when a slot is free (`None` otherwise).
    pub(crate) fn promote(&self) -> Option<Result<Transport, TlsFailure>> {
        let slot = self.slots.try_acquire()?;
        Some(Transport::tls(self.config.current(), slot).map_err(|err| {
            tracing::warn!(%err, "cannot start a TLS connection");
            TlsFailure::Protocol
        }))
    }

    /// Whether a handshake slot is free now.
    pub(crate) fn has_free_slot(&self) -> bool {
        self.slots.in_progress.load(Ordering::Relaxed) < self.slots.limit
    }
}

/// The per-shard bound on TLS handshakes in progress (`--tls-max-handshakes`).
#[derive(Debug)]
pub(crate) struct HandshakeSlots {
    in_progress: Arc<AtomicUsize>,
    limit: usize,
}

impl HandshakeSlots {
    /// A bound of `limit` handshakes at once.
    pub(crate) fn new(limit: usize) -> Self {
        HandshakeSlots { in_progress: Arc::new(AtomicUsize::new(0)), limit }
    }

    /// A slot for one more handshake, or `None` when `limit` are in progress.
    pub(crate) fn try_acquire(&self) -> Option<HandshakeSlot> {
        // One thread (the shard) acquires; slots are released on the same thread.
        let now = self.in_progress.load(Ordering::Relaxed);
        if now >= self.limit {
            return None;
        }
        self.in_progress.store(now + 1, Ordering::Relaxed);
        Some(HandshakeSlot(Arc::clone(&self.in_progress)))
    }

    /// Handshakes in progress.
    #[cfg(test)]
    fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::Relaxed)
    }
}

/// One handshake's share of [`HandshakeSlots`], given back when dropped.
#[derive(Debug)]
pub(crate) struct HandshakeSlot(Arc<AtomicUsize>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore};

    use super::super::outbuf::Bound;

    /// The socket's other end in memory: what the client sent (read by the server, `WouldBlock`
    /// when empty, end of input once `eof`), what the server wrote (at most `budget` bytes more).
    #[derive(Default)]
    struct Pipe {
        to_server: Vec<u8>,
        from_server: Vec<u8>,
        eof: bool,
        budget: Option<usize>,
        writes: usize,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.to_server.is_empty() {
                return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
            }
            let n = buf.len().min(self.to_server.len());
            buf[..n].copy_from_slice(&self.to_server[..n]);
            self.to_server.drain(..n);
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.budget.map_or(buf.len(), |b| b.min(buf.len()));
            if n == 0 && !buf.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if let Some(b) = &mut self.budget {
                *b -= n;
            }
            self.writes += 1;
            self.from_server.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A CA, a leaf for `localhost` signed by it (as PEM files the server loads like the real
    /// one), and a client trusting the CA with the given TLS versions.
    struct Pki {
        server: Arc<ServerConfig>,
        _dir: tempfile::TempDir,
        roots: RootCertStore,
    }

    impl Pki {
        fn new() -> Pki {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca_key = KeyPair::generate().expect("ca key");
            let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
            let issuer = Issuer::new(ca_params, ca_key);
            let leaf_key = KeyPair::generate().expect("leaf key");
            let leaf = CertificateParams::new(vec!["localhost".to_string()])
                .expect("leaf params")
                .signed_by(&leaf_key, &issuer)
                .expect("leaf");
            let dir = tempfile::tempdir().expect("dir");
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cert, format!("{}{}", leaf.pem(), ca_cert.pem())).expect("cert");
            std::fs::write(&key, leaf_key.serialize_pem()).expect("key");
            let server = TlsConfig::load(&cert, &key).expect("config").current();
            let mut roots = RootCertStore::empty();
            roots.add(ca_cert.der().clone()).expect("root");
            Pki { server, _dir: dir, roots }
        }

        fn client(&self, version: &'static rustls::SupportedProtocolVersion) -> Arc<ClientConfig> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[version])
                .expect("version")
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        }
    }

    /// One server transport and a rustls client joined by a [`Pipe`].
    struct Pair {
        server: TlsTransport,
        client: ClientConnection,
        pipe: Pipe,
        scratch: TlsScratch,
        metrics: TlsMetrics,
        out: OutBuf,
        plain: Vec<u8>,
        received: Vec<u8>,
        _slots: HandshakeSlots,
    }

    impl Pair {
        fn new(pki: &Pki, client: &Arc<ClientConfig>) -> Pair {
            let slots = HandshakeSlots::new(4);
            let slot = slots.try_acquire().expect("slot");
            let Ok(Transport::Tls(server)) = Transport::tls(Arc::clone(&pki.server), slot) else {
                panic!("a TLS transport");
            };
            let name = ServerName::try_from("localhost").expect("name");
            Pair {
                server: *server,
                client: ClientConnection::new(Arc::clone(client), name).expect("client"),
                pipe: Pipe::default(),
                scratch: TlsScratch::default(),
                metrics: TlsMetrics::default(),
                out: OutBuf::default(),
                plain: vec![0; 64 * 1024],
                received: Vec::new(),
                _slots: slots,
            }
        }

        /// The client's pending records into the pipe.
        fn client_sends(&mut self) {
            while self.client.wants_write() {
                self.client.write_tls(&mut self.pipe.to_server).expect("client write");
            }
        }

        /// What the server wrote, into the client; its plaintext appended to `received`.
        fn client_receives(&mut self) {
            let bytes = std::mem::take(&mut self.pipe.from_server);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                self.client.read_tls(&mut rest).expect("client read");
                let state = self.client.process_new_packets().expect("valid records from the server");
                let mut plain = vec![0; state.plaintext_bytes_to_read()];
                self.client.reader().read_exact(&mut plain).expect("plaintext");
                self.received.extend_from_slice(&plain);
            }
        }

        /// Server reads until `WouldBlock`: the plaintext, or the outcome that ended it.
        fn server_reads(&mut self) -> (Vec<u8>, ReadOutcome) {
            let mut got = Vec::new();
            loop {
                match self.server.read(&mut self.pipe, &mut self.plain, &mut self.scratch, &self.metrics) {
                    ReadOutcome::Data(n) => got.extend_from_slice(&self.plain[..n]),
                    other => return (got, other),
                }
            }
        }

        fn server_flushes(&mut self, closing: bool) -> Flushed {
            self.server.flush(&mut self.pipe, &mut self.out, closing, &mut self.scratch).expect("flush")
        }

        fn handshake(&mut self) {
            for _ in 0..8 {
                self.client_sends();
                let (data, outcome) = self.server_reads();
                assert!(data.is_empty(), "no application data during the handshake");
                assert_eq!(outcome, ReadOutcome::WouldBlock);
                if self.wants_write() {
                    assert_eq!(self.server_flushes(false), Flushed::All);
                }
                self.client_receives();
                if !self.client.is_handshaking() && !self.server.session.is_handshaking() {
                    self.client_sends();
                    return;
                }
            }
            panic!("the handshake did not complete");
        }

        fn wants_write(&self) -> bool {
            !self.server.pending_out.is_empty() || self.server.session.wants_write()
        }

        /// Bytes the server keeps between reads and writes.
        fn held(&self) -> usize {
            self.server.pending_in.capacity() + self.server.pending_out.capacity()
        }
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let slots = HandshakeSlots::new(2);
        let a = slots.try_acquire().expect("first");
        let b = slots.try_acquire().expect("second");
        assert!(slots.try_acquire().is_none(), "over the bound");
        drop(a);
        assert_eq!(slots.in_progress(), 1);
        let _c = slots.try_acquire().expect("a slot was given back");
        drop(b);
        assert_eq!(slots.in_progress(), 1);
    }

    fn frames(pair: &mut Pair, count: usize, size: usize) -> Vec<u8> {
        let mut all = Vec::new();
        for i in 0..count {
            let frame: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
            all.extend_from_slice(&frame);
            pair.out.push(Bytes::from(frame), Bound { soft: usize::MAX, hard: usize::MAX }).expect("queued");
        }
        all
    }

    fn chat_both_ways(version: &'static rustls::SupportedProtocolVersion) {
        let pki = Pki::new();
        let mut pair = Pair::new(&pki, &pki.client(version));
        pair.handshake();
        assert_eq!(pair.metrics.handshakes.get(), 1);
        assert!(pair.server.slot.is_none(), "the handshake slot is given back");
        // The client's request arrives as plaintext.
        pair.client.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").expect("request");
        pair.client_sends();
        let (got, outcome) = pair.server_reads();
        assert_eq!((got.as_slice(), outcome), (&b"GET / HTTP/1.1\r\n\r\n"[..], ReadOutcome::WouldBlock));
        // 100 frames of 100 bytes: one record, one write.
        let sent = frames(&mut pair, 100, 100);
        let writes = pair.pipe.writes;
        assert_eq!(pair.server_flushes(false), Flushed::All);
        assert_eq!(pair.pipe.writes - writes, 1, "one write for the batch");
        let overhead = pair.pipe.from_server.len() - sent.len();
        assert!(overhead < 64, "one record for 100 frames: {overhead} bytes of overhead");
        pair.client_receives();
        assert_eq!(pair.received, sent);
        // Idle: no buffer of its own.
        assert_eq!(pair.held(), 0, "an idle TLS connection holds no buffer");
    }

    #[test]
    fn tls13_chats_both_ways_in_few_records_and_idles_with_no_buffer() {
        chat_both_ways(&rustls::version::TLS13);
    }

    #[test]
    fn tls12_chats_both_ways_in_few_records_and_idles_with_no_buffer() {
        chat_both_ways(&rustls::version::TLS12);
    }

    #[test]
    fn a_second_connection_resumes_from_the_ticket() {
        let pki = Pki::new();
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let client = pki.client(version);
            let mut first = Pair::new(&pki, &client);
            first.handshake();
            assert_eq!(first.client.handshake_kind(), Some(HandshakeKind::Full));
            // TLS 1.3 tickets come after the handshake: the client has them once it read them.
            first.client_receives();
            let mut second = Pair::new(&pki, &client);
            second.handshake();
            assert_eq!(second.client.handshake_kind(), Some(HandshakeKind::Resumed), "{version:?}");
        }
    }

    #[test]
    fn input_larger_than_the_read_buffer_spans_reads_with_flushes_between() {
        let pki = Pki::new();
        let mut pair = Pair::new(&pki, &pki.client(&rustls::version::TLS13));
        pair.handshake();
        let upload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in upload.chunks(16 * 1024) {
            pair.client.writer().write_all(chunk).expect("upload");
            pair.client_sends();
        }
        let (mut got, mut left_whole_records) = (Vec::new(), false);
        loop {
            match pair.server.read(&mut pair.pipe, &mut pair.plain, &mut pair.scratch, &pair.metrics) {
                ReadOutcome::Data(n) => {
                    left_whole_records |= pair.server.pending_unread;
                    got.extend_from_slice(&pair.plain[..n]);
                    // A flush with whole records still unread: rustls must not decrypt them here.
                    let sent = frames(&mut pair, 1, 10);
                    assert_eq!(pair.server_flushes(false), Flushed::All);
                    pair.client_receives();
                    assert!(pair.received.ends_with(&sent));
                }
                ReadOutcome::WouldBlock => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, upload);
        assert!(left_whole_records, "a read stopped with whole records left for the next");
        assert_eq!(pair.held(), 0);
    }

    #[test]
    fn a_slow_socket_leaves_only_the_unwritten_records_within_the_limit() {
        let pki = Pki::new();
        let mut pair = Pair::new(&pki, &pki.client(&rustls::version::TLS13));
        pair.handshake();
        let sent = frames(&mut pair, 64, 1000);
        pair.pipe.budget = Some(1000);
        assert_eq!(pair.server_flushes(false), Flushed::WouldBlock);
        assert!(pair.server.pending_out.len() <= BUFFER_LIMIT, "{} held", pair.server.pending_out.len());
        assert!(pair.wants_write());
        // Frames stay queued in the frame queue, not in TLS.
        assert!(pair.out.queued_bytes() >= sent.len() - PLAIN_BATCH);
        while pair.server_flushes(false) == Flushed::WouldBlock {
            pair.pipe.budget = Some(5000);
            pair.client_receives();
        }
        pair.client_receives();
        assert_eq!(pair.received, sent);
        assert_eq!(pair.held(), 0);
    }

    #[test]
    fn closing_sends_close_notify_after_the_queue() {
        let pki = Pki::new();
        let mut pair = Pair::new(&pki, &pki.client(&rustls::version::TLS13));
        pair.handshake();
        let sent = frames(&mut pair, 3, 10);
        assert_eq!(pair.server_flushes(true), Flushed::All);
        let bytes = std::mem::take(&mut pair.pipe.from_server);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            pair.client.read_tls(&mut rest).expect("read");
        }
        let state = pair.client.process_new_packets().expect("valid");
        assert!(state.peer_has_closed(), "close_notify received");
        let mut plain = Vec::new();
        pair.client.reader().read_to_end(&mut plain).expect("a clean end");
        assert_eq!(plain, sent);
    }

    #[test]
    fn a_key_update_from_the_client_is_followed() {
        let pki = Pki::new();
        let mut pair = Pair::new(&pki, &pki.client(&rustls::version::TLS13));
        pair.handshake();
        pair.client_receives();
        pair.client.refresh_traffic_keys().expect("key update");
        pair.client.writer().write_all(b"after the update").expect("write");
        pair.client_sends();
        let (got, outcome) = pair.server_reads();
        assert_eq!((got.as_slice(), outcome), (&b"after the update"[..], ReadOutcome::WouldBlock));
        let sent = frames(&mut pair, 2, 50);
        assert_eq!(pair.server_flushes(false), Flushed::All);
        pair.client_receives();
        assert_eq!(pair.received, sent);
    }

    #[test]
    fn a_record_that_does_not_decrypt_fails_with_an_alert_and_is_counted() {
        let pki = Pki::new();
        let mut pair = Pair::new(&pki, &pki.client(&rustls::version::TLS13));
        pair.handshake();
        pair.client_receives();
        let mut garbage = vec![0x17, 0x03, 0x03, 0x00, 0x40];
        garbage.extend((0..0x40u8).map(|i| i.wrapping_mul(37)));
        pair.pipe.to_server.extend_from_slice(&garbage);
        let (_, outcome) = pair.server_reads();
        assert_eq!(outcome, ReadOutcome::Failed);
        assert_eq!(pair.metrics.session_errors[TlsFailure::BadRecord.index()].get(), 1);
        assert!(!pair.pipe.from_server.is_empty(), "an alert was written");
    }

    #[test]
    fn plain_http_and_a_truncated_hello_are_counted_by_reason() {
        let pki = Pki::new();
        let client = pki.client(&rustls::version::TLS13);
        let mut plain = Pair::new(&pki, &client);
        plain.pipe.to_server.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(plain.server_reads().1, ReadOutcome::Failed);
        assert_eq!(plain.metrics.handshake_failures[TlsFailure::Plaintext.index()].get(), 1);

        let mut truncated = Pair::new(&pki, &client);
        truncated.client_sends();
        let half = truncated.pipe.to_server.len() / 2;
        truncated.pipe.to_server.truncate(half);
        assert_eq!(truncated.server_reads().1, ReadOutcome::WouldBlock);
        assert!(truncated.held() > 0, "the partial hello is kept");
        truncated.pipe.eof = true;
        assert_eq!(truncated.server_reads().1, ReadOutcome::Closed);
        assert_eq!(truncated.metrics.handshake_failures[TlsFailure::Truncated.index()].get(), 1);
    }

    #[test]
    fn a_hello_split_into_single_bytes_completes() {
        let pki = Pki::new();
        let mut pair = Pair::new(&pki, &pki.client(&rustls::version::TLS13));
        pair.client_sends();
        let hello = std::mem::take(&mut pair.pipe.to_server);
        for byte in hello {
            pair.pipe.to_server.push(byte);
            assert_eq!(pair.server_reads().1, ReadOutcome::WouldBlock);
        }
        assert!(pair.wants_write(), "the server's flight is ready");
        pair.handshake();
    }
}
