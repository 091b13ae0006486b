//! Fuzz target: the WebSocket frame decoder driven like a connection drives it: input arrives in
//! arbitrary chunks, undecoded bytes are kept and prefixed to the next chunk, every complete frame is
//! consumed, and a protocol error ends the connection. An odd seed byte drives a connection that
//! negotiated permessage-deflate (RSV1 messages inflated with one reused inflater, bounded).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::ws::codec::{Decoded, FrameDecoder, WsEvent};
use roomcast::ws::deflate::Inflater;

const MAX_MESSAGE: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // First byte: chunking seed; the rest: the stream.
    let Some((&seed, stream)) = data.split_first() else { return };
    let mut decoder = FrameDecoder::default();
    let mut inflater = (seed & 1 == 1).then(Inflater::default);
    let mut pending: Vec<u8> = Vec::new();
    let mut at = 0;
    let mut step = 0usize;
    while at < stream.len() {
        let len = 1 + (usize::from(seed.rotate_left(step as u32 % 8)) * 7 + step) % 257;
        let end = (at + len).min(stream.len());
        pending.extend_from_slice(&stream[at..end]);
        at = end;
        step += 1;
        let mut used = 0;
        loop {
            match decoder.decode_with(&mut pending[used..], MAX_MESSAGE, inflater.as_mut()) {
                Ok(Decoded::Incomplete) => break,
                Ok(Decoded::Frame { consumed, event }) => {
                    assert!(consumed > 0);
                    if let Some(WsEvent::Message(_, payload)) = event {
                        assert!(payload.len() <= MAX_MESSAGE);
                    }
                    used += consumed;
                    assert!(used <= pending.len());
                }
                Err(err) => {
                    let _ = err.close_code();
                    return;
                }
            }
        }
        decoder.finish_message();
        pending.drain(..used);
    }
});
