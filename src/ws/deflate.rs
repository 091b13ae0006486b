//! permessage-deflate (RFC 7692) payload transforms, sans-IO: a [`Deflater`] that compresses one
//! message with no context carried over (`server_no_context_takeover`) and an [`Inflater`] that
//! inflates one message, bounded, and is reset before the next (`client_no_context_takeover`), so a
//! shard needs one of each for all its connections and a connection holds no compression memory.
//!
//! Backend: `flate2` on `zlib-rs` (pure Rust, raw deflate with explicit window bits). Payloads are
//! raw DEFLATE ending in an empty stored block whose 4 bytes `00 00 ff ff` are stripped on the wire
//! (§7.2.1) and appended again before inflating (§7.2.2).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

/// The bytes a sync flush ends with, removed from every compressed message on the wire.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The largest LZ77 window (2^15 bytes): the inflater's, which reads what any smaller window wrote.
pub const MAX_WINDOW_BITS: u8 = 15;

/// An inflater keeps at most this much output buffer between messages.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Why a compressed message could not be inflated.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message would exceed the limit; nothing past the limit was allocated.
    #[error("inflated message exceeds the limit of {limit} bytes")]
    TooBig {
        /// The limit.
        limit: usize,
    },
    /// The payload is not a valid raw DEFLATE stream (or refers back past the message's start).
    #[error("invalid deflate data: {0}")]
    Invalid(String),
}

/// Compresses whole messages, each on its own (no context takeover), with a 2^15-byte window.
pub struct Deflater {
    compress: Compress,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Deflater {
    /// A compressor at zlib `level` (0–9; clamped).
    pub fn new(level: u32) -> Deflater {
        Deflater { compress: Compress::new_with_window_bits(Compression::new(level.min(9)), false, MAX_WINDOW_BITS) }
    }

    /// Compresses `payload` as one message into `out` (cleared first), without the trailing
    /// `00 00 ff ff`. Returns `false`, with `out` unspecified, when the result would not be
    /// shorter than `payload` (the message is then better sent as it is).
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> bool {
        self.compress.reset();
        out.clear();
        // Room for the worst case, so one call does it all: level 1 (zlib-rs's "quick" strategy)
        // writes static-Huffman blocks, up to 9/8 of the input for random bytes, and zlib-rs 0.6.8
        // panics when that strategy must stop for output space (reproduced, with a smaller buffer,
        // by `level_1_survives_every_size_of_random_text`). It is never called a second time for
        // the same message: an unfinished call means "send it uncompressed".
        out.reserve(payload.len() + payload.len() / 4 + 1024);
        if self.compress.compress_vec(payload, out, FlushCompress::Sync).is_err() {
            return false;
        }
        // A sync flush is complete once the call consumed everything and left output space over.
        let complete = self.compress.total_in() as usize == payload.len() && out.len() < out.capacity();
        if !complete {
            return false;
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        out.len() < payload.len()
    }
}

/// Inflates whole messages, each on its own, into a buffer it keeps (bounded between messages).
pub struct Inflater {
    decompress: Decompress,
    out: Vec<u8>,
    inflated: u64,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("capacity", &self.out.capacity()).finish()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater { decompress: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS), out: Vec::new(), inflated: 0 }
    }
}

impl Inflater {
    /// Inflates one compressed message (`payload` as received, without the tail) into the
    /// inflater's buffer and returns it. The output never grows past `limit + 1` bytes.
    ///
    /// # Errors
    /// [`InflateError::TooBig`] past `limit`, [`InflateError::Invalid`] for bad DEFLATE data.
    pub fn inflate(&mut self, payload: &[u8], limit: usize) -> Result<&mut [u8], InflateError> {
        self.decompress.reset(false);
        self.release();
        self.out.clear();
        let cap = limit.saturating_add(1);
        'inputs: for input in [payload, &TAIL[..]] {
            let mut at = 0;
            loop {
                if self.out.len() == self.out.capacity() {
                    if self.out.len() >= cap {
                        return Err(InflateError::TooBig { limit });
                    }
                    let want = (input.len() - at).saturating_mul(4).max(4096).max(self.out.len());
                    self.out.reserve_exact(want.min(cap - self.out.len()));
                }
                let (in_before, out_before) = (self.decompress.total_in(), self.out.len());
                let rest = input.get(at..).unwrap_or_default();
                let status = self
                    .decompress
                    .decompress_vec(rest, &mut self.out, FlushDecompress::Sync)
                    .map_err(|err| InflateError::Invalid(err.to_string()))?;
                at += (self.decompress.total_in() - in_before) as usize;
                if self.out.len() > limit {
                    return Err(InflateError::TooBig { limit });
                }
                if status == Status::StreamEnd {
                    // A final block (BFINAL) ends the message; the tail is not needed, and nothing
                    // of the payload may follow it.
                    if at < input.len() && input.as_ptr() == payload.as_ptr() {
                        return Err(InflateError::Invalid("data after the final block".into()));
                    }
                    break 'inputs;
                }
                let spare = self.out.len() < self.out.capacity();
                if at >= input.len() && spare {
                    // All of this input is in and the inflater had room to spare: nothing pending.
                    break;
                }
                let stalled = self.decompress.total_in() == in_before && self.out.len() == out_before;
                if stalled && spare {
                    return Err(InflateError::Invalid("the stream stops making progress".into()));
                }
            }
        }
        self.inflated += 1;
        Ok(&mut self.out)
    }

    /// Messages inflated since the last call.
    pub fn take_inflated(&mut self) -> u64 {
        std::mem::take(&mut self.inflated)
    }

    /// Gives back a large output buffer (a big message's) so a shard keeps at most 64 KiB.
    pub fn release(&mut self) {
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(payload: &[u8]) -> Vec<u8> {
        let mut deflater = Deflater::new(1);
        let mut out = Vec::new();
        assert!(deflater.compress(payload, &mut out), "compressible input shrinks");
        let mut inflater = Inflater::default();
        inflater.inflate(&out, payload.len()).expect("inflates").to_vec()
    }

    #[test]
    fn compress_then_inflate_gives_the_message_back() {
        let chat = br#"{"type":"message","room":"general","id":42,"user":"alice","content":"hello hello hello"}"#;
        assert_eq!(roundtrip(chat), chat);
        let big: Vec<u8> = (0..200_000u32).map(|i| b"abcdefgh"[(i % 7) as usize]).collect();
        assert_eq!(roundtrip(&big), big);
    }

    #[test]
    fn rfc7692_hello_example_inflates() {
        // §7.2.3.1: "Hello" compressed with no context.
        let mut inflater = Inflater::default();
        let out = inflater.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).expect("valid");
        assert_eq!(out, b"Hello");
        // §7.2.3.3: uncompressed (stored) block.
        let out = inflater.inflate(&[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00], 100);
        assert_eq!(out.expect("valid"), b"Hello");
        // §7.2.3.4: a final block (BFINAL) is allowed.
        let out = inflater.inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).expect("valid");
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn incompressible_input_is_refused() {
        let mut deflater = Deflater::new(1);
        let mut out = Vec::new();
        assert!(!deflater.compress(b"ab", &mut out));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        assert!(!deflater.compress(&noise, &mut out));
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let mut out = Vec::new();
        assert!(Deflater::new(9).compress(&zeros, &mut out));
        assert!(out.len() < 64 * 1024, "8 MiB of zeros compress to {} bytes", out.len());
        let mut inflater = Inflater::default();
        assert_eq!(inflater.inflate(&out, 65_536), Err(InflateError::TooBig { limit: 65_536 }));
        assert!(inflater.out.capacity() <= 65_537, "no memory past the limit: {}", inflater.out.capacity());
        inflater.release();
        assert_eq!(inflater.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 5).expect("fits"), b"Hello");
    }

    #[test]
    fn level_1_survives_every_size_of_random_text() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for level in [1, 2, 6, 9] {
            let mut deflater = Deflater::new(level);
            for size in [16usize, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131_072, 262_144] {
                for _ in 0..20 {
                    let text: Vec<u8> =
                        (0..size).map(|_| b"abcdefghij klmnopqrstuvwxyz"[(next() % 27) as usize]).collect();
                    let noise: Vec<u8> = (0..size).map(|_| next() as u8).collect();
                    for payload in [&text, &noise] {
                        // A fresh buffer each time, as the shard's after a large message (zlib-rs
                        // 0.6.8's level-1 path panicked on a small output buffer).
                        let mut out = Vec::new();
                        if deflater.compress(payload, &mut out) {
                            let mut inflater = Inflater::default();
                            assert_eq!(inflater.inflate(&out, size).expect("inflates"), &payload[..]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn garbage_is_invalid() {
        let mut inflater = Inflater::default();
        let after_final = inflater.inflate(&[0x03, 0x00, 0xff, 0xff, 0xff], 1000);
        assert!(matches!(after_final, Err(InflateError::Invalid(_))), "{after_final:?}");
        assert!(matches!(inflater.inflate(&[0xff; 16], 1000), Err(InflateError::Invalid(_))));
        // The inflater is usable again after an error.
        assert_eq!(inflater.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).expect("valid"), b"Hello");
    }
}
