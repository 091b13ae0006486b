//! Fan-out of one chat message to 1,000 recipients in memory, and the output queue's write batching.
//!
//! `fanout/1000_recipients` (100 B and 4 KiB payloads): roomcast's way (encode the broadcast frame once into `Bytes`, push the
//! shared handle onto 1,000 `OutBuf`s, flush each into a sink) against a naive server that encodes a
//! fresh `Vec<u8>` per recipient and writes it. The sink counts bytes and never blocks, so this is the
//! user-space cost per delivery without syscalls (LIMITS.md has the syscall side). Throughput is in
//! deliveries (elements).
//!
//! `outbuf_flush/16_frames`: 16 queued 102-byte frames written by `OutBuf::flush` (one
//! `write_vectored`) against 16 separate `write` calls, into the counting sink (bookkeeping only) and
//! into a real loopback TCP socket drained by another thread (where the syscall per frame shows).

use std::collections::VecDeque;
use std::hint::black_box;
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use roomcast::conn::outbuf::{Bound, Flushed, OutBuf};
use roomcast::ws::codec;

const RECIPIENTS: usize = 1000;
const MAX_OUTBUF: Bound = Bound { soft: 1024 * 1024, hard: 8 * 1024 * 1024 };
const PAYLOAD_BYTES: usize = 100;
const BATCH: usize = 16;

/// A `Write` that accepts everything and counts bytes and calls.
#[derive(Default)]
struct CountingSink {
    bytes: u64,
    calls: u64,
}

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        let n: usize = bufs.iter().map(|b| b.len()).sum();
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// roomcast's path: one encode, 1,000 refcount increments, 1,000 flushes.
fn fanout_shared(payload: &[u8], queues: &mut [OutBuf], sink: &mut CountingSink) {
    let frame = Bytes::from(codec::encode_frame(codec::TEXT, payload));
    for q in queues.iter_mut() {
        q.push(frame.clone(), MAX_OUTBUF).expect("queue has room");
    }
    for q in queues.iter_mut() {
        assert_eq!(q.flush(sink).expect("in-memory sink"), Flushed::All);
    }
}

/// Naive path: a fresh encoded copy per recipient, queued, then written.
fn fanout_copy(payload: &[u8], queues: &mut [VecDeque<Vec<u8>>], sink: &mut CountingSink) {
    for q in queues.iter_mut() {
        q.push_back(codec::encode_frame(codec::TEXT, payload));
    }
    for q in queues.iter_mut() {
        while let Some(frame) = q.pop_front() {
            sink.write_all(&frame).expect("in-memory sink");
        }
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout/1000_recipients");
    group.throughput(Throughput::Elements(RECIPIENTS as u64));
    let mut sink = CountingSink::default();
    // 100 B is the load tests' message size; 4 KiB shows where one shared copy starts to pay.
    for (len, name) in [(PAYLOAD_BYTES, "100B"), (4096, "4KiB")] {
        let payload = payload(len);
        let frame_len = codec::header_len(len) + len;
        let mut shared: Vec<OutBuf> = (0..RECIPIENTS).map(|_| OutBuf::default()).collect();
        let mut copies: Vec<VecDeque<Vec<u8>>> = (0..RECIPIENTS).map(|_| VecDeque::new()).collect();

        // Both paths must deliver every byte exactly once per recipient.
        let mut check = CountingSink::default();
        fanout_shared(&payload, &mut shared, &mut check);
        assert_eq!(check.bytes, (RECIPIENTS * frame_len) as u64);
        let mut check = CountingSink::default();
        fanout_copy(&payload, &mut copies, &mut check);
        assert_eq!(check.bytes, (RECIPIENTS * frame_len) as u64);

        group.bench_function(format!("{name}/shared_bytes_outbuf"), |b| {
            b.iter(|| fanout_shared(black_box(&payload), &mut shared, &mut sink))
        });
        group.bench_function(format!("{name}/naive_vec_per_recipient"), |b| {
            b.iter(|| fanout_copy(black_box(&payload), &mut copies, &mut sink))
        });
    }
    group.finish();
    black_box(sink.bytes);
}

/// 16 frames through `OutBuf::flush` (one vectored write for all of them).
fn flush_coalesced<W: Write>(frames: &[Bytes], q: &mut OutBuf, sink: &mut W) {
    for f in frames {
        q.push(f.clone(), MAX_OUTBUF).expect("queue has room");
    }
    assert_eq!(q.flush(sink).expect("write"), Flushed::All);
}

/// The same 16 frames, one `write` each.
fn flush_separately<W: Write>(frames: &[Bytes], q: &mut VecDeque<Bytes>, sink: &mut W) {
    q.extend(frames.iter().cloned());
    while let Some(f) = q.pop_front() {
        sink.write_all(&f).expect("write");
    }
}

/// A connected loopback pair; a thread reads and discards everything the returned socket writes.
fn loopback_sink() -> (TcpStream, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let writer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect loopback");
    writer.set_nodelay(true).expect("nodelay");
    let (mut reader, _) = listener.accept().expect("accept");
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    (writer, drain)
}

fn outbuf_flush(c: &mut Criterion) {
    let frame = Bytes::from(codec::encode_frame(codec::TEXT, &payload(PAYLOAD_BYTES)));
    let frames: Vec<Bytes> = vec![frame; BATCH];
    let mut q = OutBuf::default();
    let mut dq = VecDeque::with_capacity(BATCH);

    let mut group = c.benchmark_group("outbuf_flush/16_frames");
    group.throughput(Throughput::Elements(BATCH as u64));

    let mut mem = CountingSink::default();
    flush_coalesced(&frames, &mut q, &mut mem);
    assert_eq!(mem.calls, 1, "OutBuf::flush coalesces 16 frames into one write");
    group.bench_function("mem/writev_1_call", |b| b.iter(|| flush_coalesced(&frames, &mut q, &mut mem)));
    group.bench_function("mem/write_16_calls", |b| b.iter(|| flush_separately(&frames, &mut dq, &mut mem)));

    let (mut sock, drain) = loopback_sink();
    group.bench_function("tcp_loopback/writev_1_call", |b| b.iter(|| flush_coalesced(&frames, &mut q, &mut sock)));
    group.bench_function("tcp_loopback/write_16_calls", |b| b.iter(|| flush_separately(&frames, &mut dq, &mut sock)));
    group.finish();
    drop(sock);
    black_box(drain.join().expect("drain thread"));
}

criterion_group!(benches, fanout, outbuf_flush);
criterion_main!(benches);
