//! JSON protocol costs: parsing a ~150-byte `message` command with roomcast's `JsonParser` (simd-json
//! with reused buffers, borrowing strings from the payload) against plain `serde_json::from_slice` into
//! the same struct shape, plus simd-json without reused buffers; and rendering a `message` event.
//!
//! Why: every JSON command is parsed once on the sender's shard and every JSON `message` event is
//! rendered once per publish. The ratio simd-json/serde_json is the point (LIMITS.md: they are close
//! at this size, and simd-json only pays with reused buffers).

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use roomcast::protocol::json::{self, Command, JsonParser};
use roomcast::types::{Event, Sequenced};
use roomcast::ws::codec;
use serde::Deserialize;

/// A load-generator-style command (the marker is what `roomcast-load` sends), 150 bytes.
const COMMAND: &str = r#"{"type":"message","room":"room-7","content":"lt:9f3a2c1b:12:4711:1700000000123456789:1700000000123460000:xxxxxxx","client_id":"9f3a2c1b-12-4711"}"#;

/// The same fields `roomcast::protocol::json` deserializes (its `RawCommand`), for serde_json.
#[derive(Deserialize)]
#[allow(dead_code)]
struct RawCommand<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    client_id: Option<Cow<'a, str>>,
    since: Option<u64>,
    resume: Option<u64>,
    before_id: Option<u64>,
    after_id: Option<u64>,
    limit: Option<u64>,
}

fn parse(c: &mut Criterion) {
    let input = COMMAND.as_bytes().to_vec();
    let mut group = c.benchmark_group("json/parse_message_cmd");
    group.throughput(Throughput::Bytes(input.len() as u64));
    let mut parser = JsonParser::default();
    // simd-json rewrites its input in place, so every iteration parses a fresh copy (not timed); the
    // serde_json cases get the same treatment so the comparison is like for like.
    group.bench_function("roomcast_simd_json_reused_buffers", |b| {
        b.iter_batched_ref(
            || input.clone(),
            |buf| match parser.parse(buf) {
                Ok(Command::Message { room, content, client_id }) => {
                    black_box((room.len(), content.len(), client_id.map(|c| c.len())));
                }
                other => panic!("unexpected parse result {other:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("serde_json_from_slice", |b| {
        b.iter_batched_ref(
            || input.clone(),
            |buf| {
                let raw: RawCommand<'_> = serde_json::from_slice(buf).expect("valid command");
                black_box((raw.kind.map(|k| k.len()), raw.room.map(|r| r.len()), raw.content.map(|c| c.len())));
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("simd_json_fresh_buffers", |b| {
        b.iter_batched_ref(
            || input.clone(),
            |buf| {
                let raw: RawCommand<'_> = simd_json::serde::from_slice(buf).expect("valid command");
                black_box((raw.kind.map(|k| k.len()), raw.room.map(|r| r.len()), raw.content.map(|c| c.len())));
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let rec = Sequenced {
        idempotency_key: None,
        id: 123_456,
        room: Arc::from("room-7"),
        at_ms: 1_700_000_000_123,
        event: Event::message(
            Arc::from("u12"),
            Arc::from("lt:9f3a2c1b:12:4711:1700000000123456789:1700000000123460000:xxxxxxx"),
        ),
    };
    let mut group = c.benchmark_group("json/encode_message_event");
    let mut scratch = Vec::with_capacity(512);
    group.bench_function("write_message", |b| {
        b.iter(|| {
            scratch.clear();
            json::write_event(&mut scratch, black_box(&rec), Some("9f3a2c1b-12-4711"));
            black_box(scratch.len());
        })
    });
    // What a shard does once per JSON delivery (`bus::Delivery::frame`): render the event, then frame it (one copy).
    group.bench_function("write_message+encode_frame", |b| {
        b.iter(|| {
            scratch.clear();
            json::write_event(&mut scratch, black_box(&rec), Some("9f3a2c1b-12-4711"));
            black_box(bytes::Bytes::from(codec::encode_frame(codec::TEXT, &scratch)));
        })
    });
    // The timestamp formatting inside write_message (written straight into the output buffer).
    group.bench_function("rfc3339_millis", |b| {
        b.iter(|| {
            scratch.clear();
            serde_json::to_writer(&mut scratch, &json::Rfc3339Millis(black_box(rec.at_ms))).expect("serialize");
            black_box(scratch.len());
        })
    });
    group.finish();
}

criterion_group!(benches, parse, encode);
criterion_main!(benches);
