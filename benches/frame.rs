//! WebSocket frame codec: server frame encoding and client frame decoding (with unmasking and UTF-8
//! validation) at 16 B, 128 B, 1 KiB and 16 KiB payloads.
//!
//! Why: every published message is encoded once per wire format, and every client message is decoded
//! and unmasked once; these are the per-message codec costs the reactor pays on top of syscalls.
//! Throughput is in payload bytes.
//!
//! `frame/deflate_chat/levelN`: compressing one realistic JSON chat event (291 bytes) at zlib
//! levels 1, 2 and 6 with no context takeover (the sizes are printed), the cost paid once per broadcast message and format for all deflate
//! recipients; `frame/inflate_chat`: inflating it, the cost per compressed client message.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use roomcast::ws::codec::{self, Decoded, FrameDecoder, WsEvent};
use roomcast::ws::deflate::{Deflater, Inflater};
use std::hint::black_box;
use tungstenite::protocol::frame::FrameHeader;

const SIZES: [(usize, &str); 4] = [(16, "16B"), (128, "128B"), (1024, "1KiB"), (16 * 1024, "16KiB")];
const MAX_MESSAGE: usize = 16 * 1024 + 4096;

/// Printable ASCII payload, like chat text.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A masked, final text frame as a browser would send it.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let header = FrameHeader { opcode: codec::TEXT, mask: Some(mask), ..FrameHeader::default() };
    let mut out = Vec::with_capacity(payload.len() + 14);
    header.format(payload.len() as u64, &mut out).expect("write to Vec");
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame/encode");
    for (len, name) in SIZES {
        let data = payload(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| b.iter(|| codec::encode_frame(codec::TEXT, black_box(&data))));
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame/decode_unmask");
    for (len, name) in SIZES {
        let frame = client_frame(&payload(len));
        let mut decoder = FrameDecoder::default();
        // Decoding unmasks in place, so each iteration gets a fresh masked copy (the copy is not timed).
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |input| match decoder.decode(input, MAX_MESSAGE) {
                    Ok(Decoded::Frame { consumed, event: Some(WsEvent::Message(_, text)) }) => {
                        black_box((consumed, text.len()));
                    }
                    other => panic!("unexpected decode result {other:?}"),
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A JSON `message` event as a JSON member receives it, with ordinary chat text.
const CHAT_EVENT: &str = r#"{"type":"message","room":"general","id":184467,"user":"marguerite","content":"Are we still on for the design review at 3? I moved the notes into the shared doc and left comments on the onboarding flow, mostly about the empty states.","client_id":"c-7f3a9d1e","ts":"2026-12-02T14:03:27.512Z"}"#;

fn deflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    let payload = CHAT_EVENT.as_bytes();
    group.throughput(Throughput::Bytes(payload.len() as u64));
    let mut out = Vec::new();
    for level in [1, 2, 6] {
        let mut deflater = Deflater::new(level);
        assert!(deflater.compress(payload, &mut out), "a chat event shrinks");
        println!("frame/deflate_chat/level{level}: {} bytes -> {} bytes", payload.len(), out.len());
        let name = format!("deflate_chat/level{level}");
        group.bench_function(name, |b| b.iter(|| black_box(deflater.compress(black_box(payload), &mut out))));
    }
    let mut deflater = Deflater::new(2);
    assert!(deflater.compress(payload, &mut out), "a chat event shrinks");
    let compressed = out.clone();
    let mut inflater = Inflater::default();
    group.bench_function("inflate_chat", |b| {
        b.iter(|| black_box(inflater.inflate(black_box(&compressed), MAX_MESSAGE).map(|m| m.len())))
    });
    group.finish();
}

criterion_group!(benches, encode, decode, deflate);
criterion_main!(benches);
