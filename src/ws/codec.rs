//! Frame decoding and encoding for the server side of RFC 6455.
//!
//! tungstenite's [`FrameHeader`] parses and formats headers; this module adds what a server must enforce
//! on top (client frames masked, no reserved bits or opcodes, control frames short and unfragmented,
//! continuation rules, message size limit, UTF-8 in text messages and close reasons) and unmasks payloads
//! in place so a message is never copied before it is validated. Sans-IO: bytes in, events out.
//!
//! With permessage-deflate negotiated the caller hands [`FrameDecoder::decode_with`] the shard's
//! [`Inflater`]: RSV1 on a message's first frame marks it compressed (never on a continuation or
//! a control frame), and the whole message is inflated, bounded by the same limit, before its
//! UTF-8 is checked. [`encode_compressed_frame`] builds the server's RSV1 frames.

use std::io::Cursor;

use thiserror::Error;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::close;
use super::deflate::{InflateError, Inflater};

/// Why a peer's bytes broke the WebSocket protocol; each maps to one close code in [`WsError::close_code`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WsError {
    /// RFC 6455 §5.1: a client must mask every frame it sends.
    #[error("client frame is not masked")]
    Unmasked,
    /// §5.2: RSV1–3 must be 0 unless an extension defines them: RSV2/RSV3 always, RSV1 without
    /// permessage-deflate or on a continuation or control frame (RFC 7692 §6).
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// §5.2: opcodes 3–7 and 11–15 are reserved.
    #[error("reserved opcode {0}")]
    ReservedOpcode(u8),
    /// §5.5: control frames carry at most 125 bytes and are never fragmented.
    #[error("invalid control frame")]
    BadControlFrame,
    /// §5.4: a continuation without a message in progress, or a new message inside a fragmented one.
    #[error("invalid fragmentation")]
    BadFragmentation,
    /// The frame or the assembled message is larger than `max_message_bytes`.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooBig {
        /// Size announced or reached.
        size: u64,
        /// Configured limit.
        limit: usize,
    },
    /// §8.1: text messages and close reasons must be valid UTF-8.
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// §5.5.1: a close frame body is empty or at least two bytes with a valid code.
    #[error("invalid close frame")]
    BadClose,
    /// RFC 7692: a compressed message inflates to more than `max_message_bytes`.
    #[error("inflated message exceeds the limit of {limit} bytes")]
    InflatedTooBig {
        /// Configured limit.
        limit: usize,
    },
    /// RFC 7692 §6.2: a compressed message's payload is not valid DEFLATE data.
    #[error("invalid compressed message: {0}")]
    BadDeflate(String),
}

impl WsError {
    /// The close code the server sends for this violation.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooBig { .. } | WsError::InflatedTooBig { .. } => close::MESSAGE_TOO_BIG,
            WsError::InvalidUtf8 | WsError::BadDeflate(_) => close::INVALID_PAYLOAD,
            _ => close::PROTOCOL_ERROR,
        }
    }
}

/// Kind of a complete data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Opcode 1: UTF-8 text (already validated).
    Text,
    /// Opcode 2: arbitrary bytes.
    Binary,
}

/// One thing the peer said. Payloads borrow from the input buffer or the decoder's fragment buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A complete data message. The slice is mutable so parsers that work in place (simd-json) can use it.
    Message(MessageKind, &'a mut [u8]),
    /// A ping; the caller answers with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong (answer to our heartbeat ping).
    Pong,
    /// A close frame: `None` when it carried no code.
    Close(Option<u16>),
}

/// A message being assembled from fragments.
#[derive(Debug)]
struct Fragments {
    kind: MessageKind,
    /// RSV1 on the first frame: `buf` holds compressed bytes, inflated at the final frame.
    compressed: bool,
    buf: Vec<u8>,
    /// Bytes of `buf` known to be valid UTF-8 (text only), so each fragment is checked once and an
    /// invalid sequence fails as soon as it arrives.
    utf8_checked: usize,
}

/// Decoder state for one connection. Holds nothing unless a fragmented message is in progress.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    fragments: Option<Box<Fragments>>,
}

/// Result of [`FrameDecoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Not enough bytes for a whole frame yet; nothing consumed.
    Incomplete,
    /// `consumed` bytes formed one frame; `event` is `None` for a non-final fragment.
    Frame {
        /// Bytes of the input this frame occupied.
        consumed: usize,
        /// What the frame completed, if anything.
        event: Option<WsEvent<'a>>,
    },
}

impl FrameDecoder {
    /// Decodes at most one frame from the front of `input`, unmasking its payload in place.
    ///
    /// # Errors
    /// A [`WsError`] when the frame breaks the protocol; the connection must then be closed with
    /// [`WsError::close_code`]. After an error the decoder's state is unspecified.
    pub fn decode<'a>(&'a mut self, input: &'a mut [u8], max_message_bytes: usize) -> Result<Decoded<'a>, WsError> {
        self.decode_with(input, max_message_bytes, None)
    }

    /// [`FrameDecoder::decode`] on a connection that negotiated permessage-deflate when `inflater`
    /// is given: compressed messages are inflated with it (at most `max_message_bytes`) and the
    /// event borrows its buffer.
    ///
    /// # Errors
    /// As [`FrameDecoder::decode`], plus [`WsError::InflatedTooBig`] and [`WsError::BadDeflate`].
    pub fn decode_with<'a>(
        &'a mut self,
        input: &'a mut [u8],
        max_message_bytes: usize,
        inflater: Option<&'a mut Inflater>,
    ) -> Result<Decoded<'a>, WsError> {
        self.finish_message();
        let mut cursor = Cursor::new(&*input);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(Decoded::Incomplete),
            Err(_) => return Err(WsError::ReservedOpcode(input.first().map_or(0, |b| b & 0x0f))),
        };
        let header_len = cursor.position() as usize;
        let first_data = matches!(header.opcode, OpCode::Data(Data::Text) | OpCode::Data(Data::Binary));
        if header.rsv2 || header.rsv3 || header.rsv1 && (inflater.is_none() || !first_data) {
            return Err(WsError::ReservedBits);
        }
        let compressed = header.rsv1;
        let Some(mask) = header.mask else {
            return Err(WsError::Unmasked);
        };
        let is_control = matches!(header.opcode, OpCode::Control(_));
        if is_control && (!header.is_final || len > 125) {
            return Err(WsError::BadControlFrame);
        }
        let already = self.fragments.as_ref().map_or(0, |f| f.buf.len() as u64);
        if !is_control && len.saturating_add(already) > max_message_bytes as u64 {
            return Err(WsError::TooBig { size: len.saturating_add(already), limit: max_message_bytes });
        }
        // `len` is bounded by max_message_bytes (data) or 125 (control) here, so it fits in usize.
        let len = len as usize;
        if input.len() - header_len < len {
            return Ok(Decoded::Incomplete);
        }
        let consumed = header_len + len;
        let payload = &mut input[header_len..consumed];
        unmask(payload, mask);
        let event = match header.opcode {
            OpCode::Control(Control::Ping) => Some(WsEvent::Ping(payload)),
            OpCode::Control(Control::Pong) => Some(WsEvent::Pong),
            OpCode::Control(Control::Close) => Some(WsEvent::Close(parse_close(payload)?)),
            OpCode::Control(Control::Reserved(op)) | OpCode::Data(Data::Reserved(op)) => {
                return Err(WsError::ReservedOpcode(op));
            }
            OpCode::Data(Data::Text) | OpCode::Data(Data::Binary) => {
                if self.fragments.is_some() {
                    return Err(WsError::BadFragmentation);
                }
                let kind =
                    if header.opcode == OpCode::Data(Data::Text) { MessageKind::Text } else { MessageKind::Binary };
                if header.is_final {
                    let payload = match inflater {
                        Some(inflater) if compressed => inflate(inflater, payload, max_message_bytes)?,
                        _ => payload,
                    };
                    if kind == MessageKind::Text && std::str::from_utf8(payload).is_err() {
                        return Err(WsError::InvalidUtf8);
                    }
                    Some(WsEvent::Message(kind, payload))
                } else {
                    let mut fragments =
                        Box::new(Fragments { kind, compressed, buf: payload.to_vec(), utf8_checked: 0 });
                    check_partial_utf8(&mut fragments, false)?;
                    self.fragments = Some(fragments);
                    None
                }
            }
            OpCode::Data(Data::Continue) => {
                let Some(fragments) = self.fragments.as_mut() else {
                    return Err(WsError::BadFragmentation);
                };
                fragments.buf.extend_from_slice(payload);
                check_partial_utf8(fragments, header.is_final)?;
                match inflater {
                    Some(inflater) if header.is_final && fragments.compressed => {
                        let message = inflate(inflater, &fragments.buf, max_message_bytes)?;
                        if fragments.kind == MessageKind::Text && std::str::from_utf8(message).is_err() {
                            return Err(WsError::InvalidUtf8);
                        }
                        Some(WsEvent::Message(fragments.kind, message))
                    }
                    _ if header.is_final => Some(WsEvent::Message(fragments.kind, &mut fragments.buf)),
                    _ => None,
                }
            }
        };
        Ok(Decoded::Frame { consumed, event })
    }

    /// Releases the buffer of a fragmented message once its final event has been handled.
    ///
    /// `decode` calls it first; call it after the last event of a read so an idle connection holds no
    /// buffer. A no-op while a fragmented message is still in progress.
    pub fn finish_message(&mut self) {
        if self.fragments.as_ref().is_some_and(|f| f.complete()) {
            self.fragments = None;
        }
    }

    /// Whether a fragmented message is being assembled (the connection then holds its buffer).
    #[cfg(test)]
    pub(crate) fn in_fragmented_message(&self) -> bool {
        self.fragments.as_ref().is_some_and(|f| !f.complete())
    }
}

impl Fragments {
    /// A fragments buffer stays in `FrameDecoder` after its final frame only until `finish_message`;
    /// `utf8_checked == usize::MAX` marks that state.
    fn complete(&self) -> bool {
        self.utf8_checked == usize::MAX
    }
}

/// Validates the UTF-8 of a text message being assembled. An incomplete sequence at the end is fine
/// until the final fragment; any invalid byte fails immediately (fail fast, RFC 6455 §8.1).
/// A compressed message's UTF-8 is checked once it is inflated, not here.
fn check_partial_utf8(fragments: &mut Fragments, is_final: bool) -> Result<(), WsError> {
    if fragments.kind == MessageKind::Text && !fragments.compressed {
        let start = fragments.utf8_checked;
        match std::str::from_utf8(&fragments.buf[start..]) {
            Ok(_) => fragments.utf8_checked = fragments.buf.len(),
            Err(e) if e.error_len().is_none() && !is_final => fragments.utf8_checked = start + e.valid_up_to(),
            Err(_) => return Err(WsError::InvalidUtf8),
        }
    }
    if is_final {
        fragments.utf8_checked = usize::MAX;
    }
    Ok(())
}

/// Inflates a whole compressed message with the shard's inflater.
fn inflate<'a>(inflater: &'a mut Inflater, payload: &[u8], limit: usize) -> Result<&'a mut [u8], WsError> {
    inflater.inflate(payload, limit).map_err(|err| match err {
        InflateError::TooBig { limit } => WsError::InflatedTooBig { limit },
        InflateError::Invalid(why) => WsError::BadDeflate(why),
    })
}

/// Parses a close frame body (§5.5.1): empty, or a valid code followed by a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::BadClose),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close::is_valid_received_code(code) {
                return Err(WsError::BadClose);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(WsError::InvalidUtf8);
            }
            Ok(Some(code))
        }
    }
}

/// XORs a payload with the client's masking key (§5.3). tungstenite keeps its own helper private.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// Writes an unmasked server frame header for a final frame of `opcode` carrying `len` bytes.
pub(crate) fn write_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    let header = FrameHeader { is_final: true, rsv1: false, rsv2: false, rsv3: false, opcode, mask: None };
    header.format(len as u64, out).expect("bug: writing to a Vec cannot fail");
}

/// Length of the header [`write_header`] writes for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Encodes one complete server frame of `opcode` whose `payload` is a compressed message (RSV1 set).
pub fn encode_compressed_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len()) + payload.len());
    let header = FrameHeader { is_final: true, rsv1: true, rsv2: false, rsv3: false, opcode, mask: None };
    header.format(payload.len() as u64, &mut out).expect("bug: writing to a Vec cannot fail");
    out.extend_from_slice(payload);
    out
}

/// The first byte (FIN, RSV, opcode) and the payload of a complete unmasked frame this server
/// encoded; `None` for anything else.
pub(crate) fn split_server_frame(frame: &[u8]) -> Option<(OpCode, &[u8])> {
    let (&first, rest) = frame.split_first()?;
    let len_byte = *rest.first()?;
    let header = match len_byte & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    if len_byte & 0x80 != 0 {
        return None;
    }
    Some((OpCode::from(first & 0x0f), frame.get(header..)?))
}

/// Encodes one complete server frame.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len()) + payload.len());
    write_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// Opcode of a text frame.
pub const TEXT: OpCode = OpCode::Data(Data::Text);
/// Opcode of a binary frame.
pub(crate) const BINARY: OpCode = OpCode::Data(Data::Binary);
/// Opcode of a ping frame.
pub(crate) const PING: OpCode = OpCode::Control(Control::Ping);
/// Opcode of a pong frame.
pub(crate) const PONG: OpCode = OpCode::Control(Control::Pong);

/// Encodes a close frame with `code` and a reason cut to fit the 125-byte control frame limit.
pub(crate) fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_frame(OpCode::Control(Control::Close), &payload)
}

#[cfg(test)]
mod tests;
