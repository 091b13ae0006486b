//! A connection's transport: plain TCP, or TLS with a rustls `ServerConnection` between the socket
//! and the session's bytes (sans-IO: rustls never touches the socket, this file moves the bytes).
//!
//! Reads: socket → `read_tls` → `process_new_packets` → plaintext into the shard's scratch buffer,
//! exactly where a plain read would have put it, so the session above cannot tell the two apart. A
//! read may leave rustls with output of its own (handshake flights, session tickets, alerts, key
//! updates): [`Transport::wants_write`] tells the shard to flush. Writes: at flush time the queued
//! frames (`OutBuf`, shared `Bytes`) are handed to rustls in one vectored write of up to 64 frames,
//! so rustls packs them into as few records as their size allows (records of up to 16 KiB span
//! frames: never one record per frame), then `write_tls` writes those records with one vectored
//! write. rustls' own output buffer is bounded ([`BUFFER_LIMIT`]) and the frame queue's bound is
//! lowered by the same amount, so `--max-outbuf` covers both. `close_notify` goes out before the
//! write side is shut down.
//!
//! Handshakes in progress are bounded per shard ([`HandshakeSlots`]): a connection accepted over
//! the bound is closed at once and counted. A slot is held from accept until the handshake
//! completes or the connection is dropped.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mio::net::TcpStream;
use rustls::{HandshakeType, ServerConfig, ServerConnection};

use super::ReadOutcome;
use super::outbuf::{Flushed, OutBuf};
use crate::metrics::{TlsFailure, TlsMetrics};
use crate::tls::TlsConfig;

/// Bytes rustls may hold for one connection (records encrypted and not yet written, or plaintext
/// written before the handshake finished). The frame queue of a TLS connection is bounded by
/// `--max-outbuf` minus this (see `Conn::send`); `config` requires `--max-outbuf` to leave room.
pub(crate) const BUFFER_LIMIT: usize = crate::config::TLS_BUFFER_LIMIT;

/// The first byte of a TLS record carrying a handshake message (a ClientHello starts with it).
const HANDSHAKE_RECORD: u8 = 22;

/// How a connection's bytes travel.
#[derive(Debug, Default)]
pub(crate) enum Transport {
    /// Plain TCP: the session's bytes are the socket's.
    #[default]
    Plain,
    /// TLS over the socket.
    Tls(Box<TlsTransport>),
}

/// One TLS connection's rustls state.
#[derive(Debug)]
pub(crate) struct TlsTransport {
    session: ServerConnection,
    /// Held while the handshake is in progress.
    slot: Option<HandshakeSlot>,
    /// The first byte the client sent (tells plain HTTP from a ClientHello).
    first_byte: Option<u8>,
    /// The socket reported end of input.
    eof: bool,
    /// `close_notify` was queued.
    close_notify_sent: bool,
}

impl Transport {
    /// A TLS transport for a connection just accepted, holding `slot` until its handshake ends.
    ///
    /// # Errors
    /// rustls refusing the configuration (it was checked when loaded, so not in practice).
    pub(crate) fn tls(config: Arc<ServerConfig>, slot: HandshakeSlot) -> Result<Transport, rustls::Error> {
        let mut session = ServerConnection::new(config)?;
        session.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(Transport::Tls(Box::new(TlsTransport {
            session,
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
            Transport::Tls(_) => BUFFER_LIMIT,
        }
    }

    /// The transport has output of its own to write (a handshake flight, a ticket, an alert).
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Tls(tls) => tls.session.wants_write(),
        }
    }

    /// A TLS handshake is still in progress.
    pub(crate) fn is_handshaking(&self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Tls(tls) => tls.session.is_handshaking(),
        }
    }

    /// Reads once: plaintext into `scratch`.
    pub(crate) fn read(&mut self, sock: &mut TcpStream, scratch: &mut [u8], metrics: &TlsMetrics) -> ReadOutcome {
        match self {
            Transport::Plain => read_plain(sock, scratch),
            Transport::Tls(tls) => tls.read(sock, scratch, metrics),
        }
    }

    /// Writes what is queued (and, with `closing` once everything is out, a `close_notify`).
    ///
    /// # Errors
    /// The socket's error, or rustls' after a fatal TLS error: the connection is dead.
    pub(crate) fn flush(&mut self, sock: &mut TcpStream, out: &mut OutBuf, closing: bool) -> io::Result<Flushed> {
        match self {
            Transport::Plain => out.flush(sock),
            Transport::Tls(tls) => tls.flush(sock, out, closing),
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

impl TlsTransport {
    fn read(&mut self, sock: &mut TcpStream, scratch: &mut [u8], metrics: &TlsMetrics) -> ReadOutcome {
        loop {
            match self.session.reader().read(scratch) {
                // The peer's close_notify: a clean end.
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => return ReadOutcome::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // End of input without close_notify: the connection is over all the same.
                Err(_) => return ReadOutcome::Closed,
            }
            if self.eof {
                return ReadOutcome::Closed;
            }
            let mut source = FirstByte { sock: &mut *sock, first: &mut self.first_byte };
            match self.session.read_tls(&mut source) {
                Ok(0) => {
                    self.eof = true;
                    if self.session.is_handshaking() {
                        // A client that sent nothing (a port probe) has not failed a handshake.
                        if self.first_byte.is_some() {
                            metrics.handshake_failed(TlsFailure::Truncated);
                        }
                        return ReadOutcome::Closed;
                    }
                }
                Ok(_) => {
                    let was_handshaking = self.session.is_handshaking();
                    let processed = self.session.process_new_packets();
                    // Judged after processing: a client's Finished and a bad record behind it in one
                    // read are a completed handshake and a session error.
                    let handshaking = self.session.is_handshaking();
                    if was_handshaking && !handshaking {
                        self.slot = None;
                        metrics.handshakes.inc();
                    }
                    if let Err(err) = processed {
                        let why = self.classify(&err, handshaking);
                        if handshaking {
                            metrics.handshake_failed(why);
                        } else {
                            metrics.session_error(why);
                        }
                        tracing::debug!(%err, reason = why.as_str(), handshaking, "TLS error");
                        // The alert rustls queued, if the socket takes it now; the connection ends either way.
                        let _ = self.session.write_tls(sock);
                        return ReadOutcome::Failed;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return ReadOutcome::Closed,
            }
        }
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

    fn flush(&mut self, sock: &mut TcpStream, out: &mut OutBuf, closing: bool) -> io::Result<Flushed> {
        loop {
            while self.session.wants_write() {
                match self.session.write_tls(sock) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::WouldBlock),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if out.is_empty() {
                if closing && !self.close_notify_sent {
                    self.close_notify_sent = true;
                    self.session.send_close_notify();
                    continue;
                }
                return Ok(Flushed::All);
            }
            // Frames into rustls, as many as its buffer takes, then round again to write the records.
            let moved = out.queued_bytes();
            match out.flush(&mut IntoTls(&mut self.session))? {
                Flushed::All => {}
                Flushed::WouldBlock if out.queued_bytes() < moved || self.session.wants_write() => {}
                // Nothing taken and nothing to write: plaintext waits for the handshake to finish.
                Flushed::WouldBlock => return Ok(Flushed::WouldBlock),
            }
        }
    }
}

/// The socket as rustls reads it, remembering the first byte the client sent.
struct FirstByte<'a> {
    sock: &'a mut TcpStream,
    first: &'a mut Option<u8>,
}

impl Read for FirstByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        if self.first.is_none() && n > 0 {
            *self.first = buf.first().copied();
        }
        Ok(n)
    }
}

/// rustls' plaintext side as a `Write` for the frame queue: a full buffer is `WouldBlock`.
struct IntoTls<'a>(&'a mut ServerConnection);

impl Write for IntoTls<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.0.writer().write_vectored(bufs)? {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a shard needs to give its new connections TLS: the current configuration (replaced by a
/// reload) and its bound on handshakes in progress.
#[derive(Debug)]
pub(crate) struct TlsAccept {
    config: Arc<TlsConfig>,
    slots: HandshakeSlots,
}

impl TlsAccept {
    /// TLS with `config` for every connection, at most `max_handshakes` handshaking at once.
    pub(crate) fn new(config: Arc<TlsConfig>, max_handshakes: usize) -> Self {
        TlsAccept { config, slots: HandshakeSlots::new(max_handshakes) }
    }

    /// The transport of a connection accepted now.
    ///
    /// # Errors
    /// [`TlsFailure::Overloaded`] when the shard's handshakes are at their bound;
    /// [`TlsFailure::Protocol`] if rustls refused the configuration (not in practice: it was
    /// checked when loaded).
    pub(crate) fn transport(&self) -> Result<Transport, TlsFailure> {
        let slot = self.slots.try_acquire().ok_or(TlsFailure::Overloaded)?;
        Transport::tls(self.config.current(), slot).map_err(|err| {
            tracing::warn!(%err, "cannot start a TLS connection");
            TlsFailure::Protocol
        })
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
}
