//! Fuzz target: the HTTP request head parser, the router and the WebSocket upgrade validation (plus
//! the origin check, query decoding and the permessage-deflate negotiation of
//! `Sec-WebSocket-Extensions`), and the server API's body parsers on a request's body, as the HTTP
//! session runs them on a client's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::http::origin::origin_allowed;
use roomcast::http::percent::query_pairs;
use roomcast::http::request::try_parse;
use roomcast::http::route::route;
use roomcast::http::upgrade;
use roomcast::protocol::api;

fuzz_target!(|data: &[u8]| {
    // The session parses repeatedly from one buffer (keep-alive, pipelining): do the same.
    let mut buf = data;
    while let Ok(Some((consumed, req))) = try_parse(buf, 8192) {
        assert!(consumed > 0 && consumed <= buf.len());
        let _ = route(&req.path);
        if let Ok(accepted) = upgrade::validate(&req, true) {
            let _ = upgrade::switching_protocols(&accepted);
        }
        let _ = origin_allowed(req.origin.as_deref(), req.host.as_deref(), &[]);
        for (k, v) in query_pairs(&req.query) {
            let _ = (k.len(), v.map(|v| v.len()));
        }
        // The body follows the head (the session reads exactly `content_length` bytes).
        let Some(body) = consumed.checked_add(req.content_length).and_then(|end| buf.get(consumed..end)) else { break };
        let _ = api::parse_message(body, 16 * 1024);
        let _ = api::parse_batch(body, 16 * 1024);
        let _ = api::parse_disconnect(body);
        let _ = api::parse_seconds(body);
        buf = &buf[consumed + body.len()..];
    }
});
