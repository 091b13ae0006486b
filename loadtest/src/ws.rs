//! Minimal client-side WebSocket codec: the HTTP upgrade request and its verification, masked
//! frame encoding and unmasked frame decoding (RFC 6455), using tungstenite's header code only;
//! with `--deflate`, the permessage-deflate offer and the inflating of compressed server messages
//! (RFC 7692; the client itself sends uncompressed frames, which the RFC allows).

use crate::error::{FrameError, HandshakeError};
use std::io::Cursor;
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Largest frame payload accepted from a server.
pub const MAX_FRAME: u64 = 16 << 20;

/// Frame kinds the client cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
    Continue,
    Close,
    Ping,
    Pong,
    Other,
}

impl Kind {
    fn opcode(self) -> OpCode {
        match self {
            Kind::Text => OpCode::Data(Data::Text),
            Kind::Binary | Kind::Other => OpCode::Data(Data::Binary),
            Kind::Continue => OpCode::Data(Data::Continue),
            Kind::Close => OpCode::Control(Control::Close),
            Kind::Ping => OpCode::Control(Control::Ping),
            Kind::Pong => OpCode::Control(Control::Pong),
        }
    }

    fn from_opcode(op: OpCode) -> Kind {
        match op {
            OpCode::Data(Data::Text) => Kind::Text,
            OpCode::Data(Data::Binary) => Kind::Binary,
            OpCode::Data(Data::Continue) => Kind::Continue,
            OpCode::Control(Control::Close) => Kind::Close,
            OpCode::Control(Control::Ping) => Kind::Ping,
            OpCode::Control(Control::Pong) => Kind::Pong,
            _ => Kind::Other,
        }
    }

    /// Control frames (close/ping/pong) may not be fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, Kind::Close | Kind::Ping | Kind::Pong)
    }
}

/// A new random `Sec-WebSocket-Key`.
pub fn new_key() -> String {
    generate_key()
}

/// The permessage-deflate offer `--deflate` sends (Chromium's).
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Appends the upgrade request for `path` to `out` (offering permessage-deflate if `deflate`).
pub fn write_upgrade_request(out: &mut Vec<u8>, host: &str, path: &str, key: &str, deflate: bool) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(key.as_bytes());
    if deflate {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(DEFLATE_OFFER.as_bytes());
    }
    out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\nUser-Agent: roomcast-load\r\n\r\n");
}

/// Parses the server's upgrade response. `Ok(None)` means more bytes are needed;
/// `Ok(Some((n, deflate)))` means the handshake is valid, the first `n` bytes were the HTTP head,
/// and `deflate` says whether the server accepted permessage-deflate.
pub fn parse_upgrade_response(buf: &[u8], key: &str) -> Result<Option<(usize, bool)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > 16 * 1024 => {
            return Err(HandshakeError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::Status(code));
    }
    let header = |name: &str| resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    match header("upgrade") {
        Some(v) if v.eq_ignore_ascii_case(b"websocket") => {}
        _ => return Err(HandshakeError::NoUpgrade),
    }
    let expected = derive_accept_key(key.as_bytes());
    let deflate = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-extensions")
            && h.value.split(|b| *b == b',').any(|e| e.trim_ascii().starts_with(b"permessage-deflate"))
    });
    match header("sec-websocket-accept") {
        Some(v) if v == expected.as_bytes() => Ok(Some((n, deflate))),
        _ => Err(HandshakeError::BadAccept),
    }
}

/// Appends one final, masked frame with `payload` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, kind: Kind, payload: &[u8], mask: [u8; 4]) {
    let header = FrameHeader { is_final: true, opcode: kind.opcode(), mask: Some(mask), ..FrameHeader::default() };
    // Writing into a Vec cannot fail.
    let _ = header.format(payload.len() as u64, out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `data` with the 4-byte mask in place.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// A decoded frame header: kind, FIN bit, and where its payload sits in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub fin: bool,
    /// RSV1: a compressed message (permessage-deflate).
    pub compressed: bool,
    pub payload_start: usize,
    pub payload_end: usize,
}

/// Decodes one frame at the start of `buf`, unmasking the payload in place if the server
/// (wrongly) masked it. `Ok(None)` means the frame is not complete yet.
pub fn decode_frame(buf: &mut [u8]) -> Result<Option<Frame>, FrameError> {
    let mut cur = Cursor::new(&*buf);
    let (header, len) = match FrameHeader::parse(&mut cur) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(_) => return Err(FrameError::BadHeader),
    };
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let start = cur.position() as usize;
    let end = start + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let kind = Kind::from_opcode(header.opcode);
    if kind.is_control() && !header.is_final {
        return Err(FrameError::FragmentedControl);
    }
    if let Some(mask) = header.mask {
        apply_mask(&mut buf[start..end], mask);
    }
    Ok(Some(Frame { kind, fin: header.is_final, compressed: header.rsv1, payload_start: start, payload_end: end }))
}

thread_local! {
    /// One inflater per worker thread: the server answers `server_no_context_takeover`, so every
    /// message inflates on its own and no connection needs one of its own.
    static INFLATER: std::cell::RefCell<flate2::Decompress> =
        std::cell::RefCell::new(flate2::Decompress::new_with_window_bits(false, 15));
}

/// Inflates one compressed message (without its `00 00 ff ff` tail) into `out` (cleared first),
/// at most [`MAX_FRAME`] bytes.
pub fn inflate(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    INFLATER.with(|cell| {
        let mut d = cell.borrow_mut();
        d.reset(false);
        out.clear();
        for input in [payload, &[0, 0, 0xff, 0xff][..]] {
            let start = d.total_in();
            loop {
                if out.len() == out.capacity() {
                    if out.len() as u64 >= MAX_FRAME {
                        return Err(FrameError::TooLarge(out.len() as u64));
                    }
                    out.reserve(out.capacity().max(4096));
                }
                let at = (d.total_in() - start) as usize;
                let status = d
                    .decompress_vec(&input[at..], out, flate2::FlushDecompress::Sync)
                    .map_err(|_| FrameError::BadDeflate)?;
                if status == flate2::Status::StreamEnd {
                    return Ok(());
                }
                if (d.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
                    break;
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator inflates every compressed message with one reused inflater, reset per message
    /// (the server compresses without context takeover): a 400-byte chat event comes back exactly,
    /// message after message. (What it costs is `cargo bench --bench frame -- frame/inflate_chat`
    /// in the server crate: the same zlib-rs call.)
    #[test]
    fn a_chat_event_inflates_back_exactly_message_after_message() {
        let mut text = String::new();
        let m = crate::marker::Marker { run_id: 1, sender: 2, seq: 3, intended_ns: 4, sent_ns: 5 };
        crate::marker::format_with(&mut text, &m, 400, crate::marker::Text::Chat);
        let frame = format!(
            "{{\"type\":\"message\",\"id\":123456,\"room\":\"room-0\",\"user\":\"u3\",\"content\":\"{text}\",\"ts\":\"2026-12-03T12:00:00.123Z\"}}"
        );
        let mut c = flate2::Compress::new_with_window_bits(flate2::Compression::new(1), false, 15);
        let mut z = Vec::with_capacity(4096);
        c.compress_vec(frame.as_bytes(), &mut z, flate2::FlushCompress::Sync).unwrap();
        // RFC 7692: the sync flush's empty stored block is not sent.
        z.truncate(z.len() - 4);
        assert!(z.len() < frame.len(), "{} -> {} bytes", frame.len(), z.len());
        let mut out = Vec::new();
        for _ in 0..3 {
            inflate(&z, &mut out).unwrap();
            assert_eq!(out, frame.as_bytes());
        }
    }

    #[test]
    fn masked_frame_roundtrips_through_decoder() {
        let mut out = Vec::new();
        encode_frame(&mut out, Kind::Text, b"hello world", [1, 2, 3, 4]);
        assert_eq!(out[0], 0x81);
        assert!(!decode_frame(&mut out.clone()).unwrap().unwrap().compressed);
        assert_eq!(out[1], 0x80 | 11);
        let f = decode_frame(&mut out).unwrap().unwrap();
        assert_eq!(f.kind, Kind::Text);
        assert_eq!(&out[f.payload_start..f.payload_end], b"hello world");
    }

    #[test]
    fn rfc7692_hello_inflates() {
        let mut out = Vec::new();
        inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out).unwrap();
        assert_eq!(out, b"Hello");
        assert_eq!(inflate(&[0xff; 8], &mut out), Err(FrameError::BadDeflate));
        inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out).unwrap();
        assert_eq!(out, b"Hello", "usable again after an error");
    }

    #[test]
    fn partial_frames_need_more_bytes() {
        let mut out = Vec::new();
        encode_frame(&mut out, Kind::Binary, &[7u8; 300], [9, 9, 9, 9]);
        for cut in [0, 1, 3, 10, out.len() - 1] {
            assert_eq!(decode_frame(&mut out[..cut].to_vec()).unwrap(), None);
        }
    }

    #[test]
    fn handshake_response_is_verified() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        assert_eq!(parse_upgrade_response(ok, key), Ok(Some((ok.len() - 2, false))));
        let deflate = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
        assert_eq!(parse_upgrade_response(deflate, key), Ok(Some((deflate.len(), true))));
        assert_eq!(parse_upgrade_response(&ok[..20], key), Ok(None));
        let bad = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert_eq!(parse_upgrade_response(bad, key), Err(HandshakeError::BadAccept));
        let nf = b"HTTP/1.1 404 Not Found\r\n\r\n";
        assert_eq!(parse_upgrade_response(nf, key), Err(HandshakeError::Status(404)));
    }
}
