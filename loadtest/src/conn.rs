//! One client connection: non-blocking connect, upgrade handshake, frame reassembly, automatic
//! pong/close replies, and a write buffer flushed in batches by the worker. For `wss://` a rustls
//! `ClientConnection` sits between the socket and these bytes (sans-IO, moved here).

use crate::accounting::Recipient;
use crate::error::{FrameError, HandshakeError};
use crate::spread::ConnHist;
use crate::ws::{self, Kind};
use mio::net::TcpStream;
use rustls::ClientConnection;
use std::io::{self, Read, Write};

/// Lifecycle of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Handshake,
    Open,
    Closed,
}

/// Per-connection bookkeeping that survives reconnects.
#[derive(Debug, Default)]
pub struct Meta {
    /// Global connection index.
    pub index: u32,
    pub room: u32,
    /// Global sender id when this connection sends.
    pub sender: Option<u32>,
    /// Open (text) or joined (json): messages are expected from now on.
    pub ready: bool,
    /// Counted as a recipient of measured messages.
    pub counting: bool,
    pub recipient: Recipient,
    /// Corrected latencies of the measured deliveries to this connection (allocated on the first).
    pub latency: Option<ConnHist>,
    /// Highest server message id seen (json), for `since` on resume.
    pub last_id: Option<u64>,
    /// Id of the latest of this sender's own messages it received back (json): what its next
    /// `edit` (`--edit-fraction`) replaces.
    pub own_last_id: Option<u64>,
    /// When the current connect attempt was meant to start.
    pub connect_ns: u64,
    /// Whether the current attempt has been counted as connected or failed.
    pub settled: bool,
    /// Connect attempts so far (1 = first connect, more = reconnects).
    pub attempts: u32,
    /// Avalanche: start of the current reconnect attempt while its catch-up is not complete.
    pub catchup_from: Option<u64>,
    /// Avalanche: the start of the first reconnect attempt since the connection was lost, while
    /// its catch-up is not complete (refused attempts and their backoff count from here).
    pub recover_from: Option<u64>,
    /// Avalanche: the `last_id` of the `joined` answering the reconnect; larger ids are live.
    pub live_after: Option<u64>,
    /// Avalanche: when the reconnect's `joined` or its last replayed message arrived.
    pub replay_done_ns: u64,
    /// Avalanche: failed reconnect attempts in a row (the web client's backoff exponent).
    pub backoff: u32,
    /// Avalanche: retries of the first connect so far (`--connect-retries`).
    pub first_retries: u32,
    /// Avalanche: the retry queued for this slot is one of its first connect.
    pub first_retry_pending: bool,
    /// `wss://` with resumption: this client's own TLS configuration and ticket store.
    pub tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum ConnError {
    Io(io::Error),
    Eof,
    Handshake(HandshakeError),
    Frame(FrameError),
    ServerClose,
    /// A TLS error (the server's certificate refused, a bad record).
    Tls(rustls::Error),
    /// The socket connected to itself: with nobody listening on a port inside the ephemeral range,
    /// a connect from that same port succeeds (TCP simultaneous open) and keeps the port busy.
    SelfConnect,
}

impl ConnError {
    /// Stable short name for reports.
    pub fn kind(&self) -> String {
        match self {
            ConnError::Io(e) => crate::net::io_kind(e).to_string(),
            ConnError::Eof => "eof".to_string(),
            ConnError::Handshake(HandshakeError::Status(s)) => format!("handshake_status_{s}"),
            ConnError::Handshake(HandshakeError::BadAccept) => "handshake_bad_accept".to_string(),
            ConnError::Handshake(HandshakeError::NoUpgrade) => "handshake_no_upgrade".to_string(),
            ConnError::Handshake(_) => "handshake_malformed".to_string(),
            ConnError::Frame(e) => match e {
                FrameError::TooLarge(_) => "frame_too_large".to_string(),
                _ => "protocol_error".to_string(),
            },
            ConnError::ServerClose => "server_close".to_string(),
            ConnError::SelfConnect => "self_connect".to_string(),
            ConnError::Tls(rustls::Error::InvalidCertificate(_)) => "tls_certificate".to_string(),
            ConnError::Tls(_) => "tls_error".to_string(),
        }
    }
}

/// What the connection saw, handed to the worker.
pub enum Event<'a> {
    /// The upgrade succeeded; `deflate`: permessage-deflate was negotiated; `resumed`: over TLS,
    /// whether the TLS handshake resumed a session (`None` without TLS).
    Open {
        deflate: bool,
        resumed: Option<bool>,
    },
    Text(&'a [u8]),
    Binary,
    Pong(&'a [u8]),
    Ping,
}

/// A client connection.
pub struct Conn {
    pub stream: TcpStream,
    /// TLS between the socket and the WebSocket bytes (`wss://`).
    tls: Option<Box<ClientConnection>>,
    pub phase: Phase,
    key: String,
    pending: Vec<u8>,
    wbuf: Vec<u8>,
    frag: Vec<u8>,
    frag_kind: Option<Kind>,
    rng: u64,
    /// Offer permessage-deflate in the handshake (`--deflate`).
    pub offer_deflate: bool,
    /// The server accepted it: RSV1 frames are compressed messages.
    deflate: bool,
    /// The message being reassembled is compressed.
    frag_compressed: bool,
    /// Where compressed messages are inflated.
    inflated: Vec<u8>,
    /// Bytes read from and written to the socket since the worker last took them.
    pub wire_in: u64,
    pub wire_out: u64,
    pub meta: Meta,
}

impl Conn {
    pub fn new(stream: TcpStream, meta: Meta) -> Conn {
        let seed = 0x9E37_79B9_7F4A_7C15u64 ^ ((meta.index as u64) << 17) ^ crate::clock::now_ns();
        Conn {
            stream,
            tls: None,
            phase: Phase::Connecting,
            key: ws::new_key(),
            pending: Vec::new(),
            wbuf: Vec::new(),
            frag: Vec::new(),
            frag_kind: None,
            rng: seed | 1,
            offer_deflate: false,
            deflate: false,
            frag_compressed: false,
            inflated: Vec::new(),
            wire_in: 0,
            wire_out: 0,
            meta,
        }
    }

    /// Replaces the socket for a reconnect, keeping the metadata.
    pub fn reset(&mut self, stream: TcpStream) {
        self.stream = stream;
        self.tls = None;
        self.phase = Phase::Connecting;
        self.key = ws::new_key();
        self.pending.clear();
        self.wbuf.clear();
        self.frag.clear();
        self.frag_kind = None;
        self.deflate = false;
        self.frag_compressed = false;
        self.meta.ready = false;
        self.meta.settled = false;
    }

    /// Speaks TLS with `session` on this socket (call right after `new` or `reset`).
    pub fn set_tls(&mut self, session: ClientConnection) {
        self.tls = Some(Box::new(session));
    }

    fn mask(&mut self) -> [u8; 4] {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_ne_bytes()
    }

    /// Called when the socket first becomes writable: confirms the TCP connect and queues the
    /// upgrade request.
    pub fn on_connected(&mut self, host: &str, path: &str) -> Result<(), ConnError> {
        if let Ok(Some(e)) | Err(e) = self.stream.take_error() {
            return Err(ConnError::Io(e));
        }
        match self.stream.peer_addr() {
            Ok(peer) if self.stream.local_addr().is_ok_and(|local| local == peer) => {
                return Err(ConnError::SelfConnect);
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(ConnError::Io(e)),
        }
        self.phase = Phase::Handshake;
        let key = std::mem::take(&mut self.key);
        ws::write_upgrade_request(&mut self.wbuf, host, path, &key, self.offer_deflate);
        self.key = key;
        Ok(())
    }

    pub fn send_text(&mut self, payload: &[u8]) {
        let m = self.mask();
        ws::encode_frame(&mut self.wbuf, Kind::Text, payload, m);
    }

    pub fn send_ping(&mut self, payload: &[u8]) {
        let m = self.mask();
        ws::encode_frame(&mut self.wbuf, Kind::Ping, payload, m);
    }

    /// Queues a normal close (1000).
    pub fn send_close(&mut self) {
        let m = self.mask();
        ws::encode_frame(&mut self.wbuf, Kind::Close, &1000u16.to_be_bytes(), m);
    }

    pub fn wants_write(&self) -> bool {
        !self.wbuf.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes as much of the buffer as the socket takes.
    pub fn flush(&mut self) -> Result<(), ConnError> {
        if let Some(tls) = self.tls.as_mut() {
            loop {
                if !self.wbuf.is_empty() {
                    let n = tls.writer().write(&self.wbuf).map_err(ConnError::Io)?;
                    self.wbuf.drain(..n);
                }
                if !tls.wants_write() {
                    return Ok(());
                }
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => return Err(ConnError::Eof),
                    Ok(n) => self.wire_out += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ConnError::Io(e)),
                }
            }
        }
        let mut pos = 0;
        while pos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[pos..]) {
                Ok(0) => return Err(ConnError::Eof),
                Ok(n) => {
                    pos += n;
                    self.wire_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        self.wbuf.drain(..pos);
        Ok(())
    }

    /// Reads everything available and reports events. `scratch` is the worker's shared read
    /// buffer. Returns `Err` when the connection is finished (the worker closes it).
    pub fn on_readable(
        &mut self,
        scratch: &mut [u8],
        cb: &mut dyn FnMut(&mut Meta, Event<'_>),
    ) -> Result<(), ConnError> {
        loop {
            let n = if let Some(tls) = self.tls.as_mut() {
                match tls.reader().read(scratch) {
                    Ok(0) => return Err(ConnError::Eof),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        match tls.read_tls(&mut self.stream) {
                            Ok(0) => return Err(ConnError::Eof),
                            Ok(wire) => {
                                self.wire_in += wire as u64;
                                tls.process_new_packets().map_err(ConnError::Tls)?;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(ConnError::Io(e)),
                        }
                        continue;
                    }
                    Err(e) => return Err(ConnError::Io(e)),
                }
            } else {
                match self.stream.read(scratch) {
                    Ok(0) => return Err(ConnError::Eof),
                    Ok(n) => {
                        self.wire_in += n as u64;
                        n
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(ConnError::Io(e)),
                }
            };
            if self.pending.is_empty() {
                let used = self.process(&mut scratch[..n], cb)?;
                self.pending.extend_from_slice(&scratch[used..n]);
            } else {
                let mut buf = std::mem::take(&mut self.pending);
                buf.extend_from_slice(&scratch[..n]);
                let used = self.process(&mut buf, cb)?;
                buf.drain(..used);
                self.pending = buf;
            }
            if self.phase == Phase::Closed {
                return Err(ConnError::ServerClose);
            }
        }
    }

    /// Parses handshake and frames from `buf`, returning how many bytes were consumed.
    fn process(&mut self, buf: &mut [u8], cb: &mut dyn FnMut(&mut Meta, Event<'_>)) -> Result<usize, ConnError> {
        let mut pos = 0;
        while pos < buf.len() {
            match self.phase {
                Phase::Handshake => match ws::parse_upgrade_response(&buf[pos..], &self.key) {
                    Ok(Some((n, deflate))) => {
                        pos += n;
                        self.phase = Phase::Open;
                        self.deflate = deflate;
                        let resumed =
                            self.tls.as_ref().map(|t| t.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
                        cb(&mut self.meta, Event::Open { deflate, resumed });
                    }
                    Ok(None) => break,
                    Err(e) => return Err(ConnError::Handshake(e)),
                },
                Phase::Open => {
                    let Some(f) = ws::decode_frame(&mut buf[pos..]).map_err(ConnError::Frame)? else {
                        break;
                    };
                    let payload = &buf[pos + f.payload_start..pos + f.payload_end];
                    let data_start = matches!(f.kind, Kind::Text | Kind::Binary | Kind::Other);
                    if f.compressed && !(self.deflate && data_start) {
                        return Err(ConnError::Frame(FrameError::UnexpectedCompression));
                    }
                    if data_start {
                        self.frag_compressed = f.compressed;
                    }
                    self.on_frame(f.kind, f.fin, payload, cb)?;
                    pos += f.payload_end;
                    if self.phase == Phase::Closed {
                        break;
                    }
                }
                // Bytes before the connect completed or after close are ignored.
                Phase::Connecting | Phase::Closed => return Ok(buf.len()),
            }
        }
        Ok(pos)
    }

    fn on_frame(
        &mut self,
        kind: Kind,
        fin: bool,
        payload: &[u8],
        cb: &mut dyn FnMut(&mut Meta, Event<'_>),
    ) -> Result<(), ConnError> {
        match kind {
            Kind::Ping => {
                let m = self.mask();
                ws::encode_frame(&mut self.wbuf, Kind::Pong, payload, m);
                cb(&mut self.meta, Event::Ping);
            }
            Kind::Pong => cb(&mut self.meta, Event::Pong(payload)),
            Kind::Close => {
                let m = self.mask();
                let code = if payload.len() >= 2 { &payload[..2] } else { &[0x03, 0xe8][..] };
                ws::encode_frame(&mut self.wbuf, Kind::Close, code, m);
                let _ = self.flush();
                self.phase = Phase::Closed;
            }
            Kind::Text | Kind::Binary | Kind::Other => {
                if self.frag_kind.is_some() {
                    return Err(ConnError::Frame(FrameError::UnexpectedContinuation));
                }
                if fin && self.frag_compressed {
                    ws::inflate(payload, &mut self.inflated).map_err(ConnError::Frame)?;
                    deliver(kind, &self.inflated, &mut self.meta, cb);
                } else if fin {
                    deliver(kind, payload, &mut self.meta, cb);
                } else {
                    self.frag_kind = Some(kind);
                    self.frag.clear();
                    self.frag.extend_from_slice(payload);
                }
            }
            Kind::Continue => {
                let Some(k) = self.frag_kind else {
                    return Err(ConnError::Frame(FrameError::UnexpectedContinuation));
                };
                if self.frag.len() as u64 + payload.len() as u64 > ws::MAX_FRAME {
                    return Err(ConnError::Frame(FrameError::TooLarge(self.frag.len() as u64)));
                }
                self.frag.extend_from_slice(payload);
                if fin {
                    self.frag_kind = None;
                    if self.frag_compressed {
                        ws::inflate(&self.frag, &mut self.inflated).map_err(ConnError::Frame)?;
                        deliver(k, &self.inflated, &mut self.meta, cb);
                    } else {
                        deliver(k, &self.frag, &mut self.meta, cb);
                    }
                }
            }
        }
        Ok(())
    }
}

fn deliver(kind: Kind, payload: &[u8], meta: &mut Meta, cb: &mut dyn FnMut(&mut Meta, Event<'_>)) {
    if kind == Kind::Text {
        cb(meta, Event::Text(payload));
    } else {
        cb(meta, Event::Binary);
    }
}
