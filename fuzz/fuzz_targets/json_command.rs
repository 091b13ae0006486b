//! Fuzz target: the JSON command parser (simd-json, in place, reused buffers) on arbitrary text frame
//! payloads, several per parser as on a shard.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::protocol::json::JsonParser;

fuzz_target!(|data: &[u8]| {
    let mut parser = JsonParser::default();
    // Split on 0xFF (never valid UTF-8) so one input can hold several frames.
    for frame in data.split(|&b| b == 0xff) {
        // The codec only hands over valid UTF-8 text messages.
        if std::str::from_utf8(frame).is_err() {
            continue;
        }
        let mut payload = frame.to_vec();
        let _ = parser.parse(&mut payload);
    }
});
