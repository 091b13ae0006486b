//! Hostile-input corpus: malformed handshakes, bad keys and versions, oversize heads, protocol
//! violations, invalid UTF-8, huge lengths, bad JSON, bad tokens and origins, floods, slowloris heads,
//! and the same kinds of input on the `--metrics-addr` listener, which serves the operations endpoints
//! only and hangs up on its own, shorter, idle limit.
//!
//! Every input goes over a real socket to the real binary (auth on, default rate limits) and gets its
//! documented answer (HTTP status and error code, close code, or `error` frame code). A witness client
//! keeps chatting throughout, and afterwards the server's descriptor count returns to its baseline and
//! its resident memory stays within a generous bound.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::support::proc::{fd_count, rss_kib};
use crate::support::tokens::{self, SECRET};
use crate::support::*;

/// What the server must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// An HTTP response with this status and JSON error code.
    Status(u16, &'static str),
    /// A WebSocket close frame with this code (other frames before it are skipped).
    Close(u16),
    /// An `error` frame with this code; the connection stays open (a `ping` command after it is
    /// answered).
    ErrorFrame(&'static str),
    /// The message is delivered: its `message` event comes back with content of this many bytes, and
    /// the connection stays open.
    Delivered(usize),
    /// The server hangs up without answering (slowloris heads).
    Hangup,
    /// An HTTP response with this status and no body: nothing follows its head until the server
    /// closes (HEAD requests, sent with `Connection: close`).
    NoBody(u16),
}

/// How the input reaches the server.
enum Input {
    /// Raw bytes on a fresh connection.
    Http(Vec<u8>),
    /// A valid (authenticated) handshake on `path`, then raw bytes.
    Ws { path: &'static str, bytes: Vec<u8> },
    /// The same, offering permessage-deflate (which is accepted).
    WsDeflate { path: &'static str, bytes: Vec<u8> },
    /// Raw bytes on a fresh connection to the `--metrics-addr` listener.
    Ops(Vec<u8>),
}

struct Case {
    name: &'static str,
    input: Input,
    expect: Expect,
}

const AUD: &str = "roomcast";

fn good_token() -> String {
    tokens::user("hostile", Some(AUD), Some(&["hostile", "witness"]))
}

fn http(name: &'static str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case { name, input: Input::Http(bytes.into()), expect }
}

fn ops(name: &'static str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case { name, input: Input::Ops(bytes.into()), expect }
}

fn text(name: &'static str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case { name, input: Input::Ws { path: "/ws/chat?room=hostile", bytes }, expect }
}

fn json_ws(name: &'static str, payload: &[u8], expect: Expect) -> Case {
    Case {
        name,
        input: Input::Ws { path: "/ws?format=json&room=hostile", bytes: client_frame(0x81, payload, true) },
        expect,
    }
}

/// A handshake request with `query` and extra header lines.
fn upgrade_request(query: &str, extra: &str) -> String {
    format!(
        "GET /ws/chat?{query} HTTP/1.1\r\nHost: roomcast.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A HEAD request for `path` with `Connection: close` and extra header lines.
fn head(path: &str, extra: &str) -> String {
    format!("HEAD {path} HTTP/1.1\r\nHost: roomcast.test\r\nConnection: close\r\n{extra}\r\n")
}

fn with_token(extra_query: &str, extra_headers: &str) -> String {
    upgrade_request(&format!("room=hostile&token={}{extra_query}", good_token()), extra_headers)
}

/// A `message` command to room `hostile` whose content is `escaped` (already JSON-escaped).
fn message_command(escaped: &str) -> String {
    format!(r#"{{"type":"message","room":"hostile","content":"{escaped}"}}"#)
}

/// `count` copies of one JSON text frame, in one write.
fn json_flood(payload: &[u8], count: usize) -> Vec<u8> {
    (0..count).flat_map(|_| client_frame(0x81, payload, true)).collect()
}

/// Frames on a text connection that negotiated permessage-deflate.
fn deflate_text(name: &'static str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case { name, input: Input::WsDeflate { path: "/ws/chat?room=hostile", bytes }, expect }
}

fn json_frames(name: &'static str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case { name, input: Input::Ws { path: "/ws?format=json&room=hostile", bytes }, expect }
}

fn frames(list: &[(u8, &[u8])]) -> Vec<u8> {
    list.iter().flat_map(|(first, payload)| client_frame(*first, payload, true)).collect()
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let now = tokens::now();
    let claims = |extra: Value| {
        let mut c = json!({"sub": "u", "aud": AUD, "exp": now + 600});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        c
    };
    let token_case = |name, token: String| {
        http(name, upgrade_request(&format!("room=hostile&token={token}"), ""), Status(401, "unauthorized"))
    };
    let key_case = |name, key: &str| {
        let req = format!(
            "GET /ws/chat?room=hostile&token={} HTTP/1.1\r\nHost: roomcast.test\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            good_token()
        );
        http(name, req, Status(400, "bad_websocket_key"))
    };
    let bomb = zip_bomb();
    let many_headers: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let bad_utf8_header = {
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: ".to_vec();
        req.extend_from_slice(&[0xff, 0xfe, 0xc0]);
        req.extend_from_slice(b"\r\n\r\n");
        req
    };
    let deep_json = format!("{}{}", "[".repeat(2400), "]".repeat(2400));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(600), "}".repeat(600));
    let mut flood = Vec::new();
    for i in 0..300 {
        flood.extend(client_frame(0x81, format!("flood {i}").as_bytes(), true));
    }
    let mut big_fragments = Vec::new();
    big_fragments.extend(client_frame(0x01, &[b'a'; 3000], true));
    big_fragments.extend(client_frame(0x00, &[b'a'; 3000], true));
    let mut ping_flood = Vec::new();
    // More than the frame budget (40 + 2 × 64 + 16) plus the ten warnings.
    for _ in 0..400 {
        ping_flood.extend(client_frame(0x89, b"p", true));
    }

    vec![
        // --- HTTP request heads ---
        http(
            "tls client hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            Status(400, "bad_request"),
        ),
        http("binary junk", b"\x00\x01\x02\x03garbage\r\n\r\n".to_vec(), Status(400, "bad_request")),
        http("nul in request line", b"GET /\0ws HTTP/1.1\r\n\r\n".to_vec(), Status(400, "bad_request")),
        http("header without colon", "GET / HTTP/1.1\r\nHost x\r\n\r\n", Status(400, "bad_request")),
        http("header value not utf-8", bad_utf8_header, Status(400, "bad_request")),
        http(
            "post",
            "POST /ws/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            Status(405, "method_not_allowed"),
        ),
        http("put", "PUT /rooms/x/messages HTTP/1.1\r\nHost: x\r\n\r\n", Status(405, "method_not_allowed")),
        http("http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Status(400, "bad_request")),
        http("body on get", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", Status(400, "bad_request")),
        http(
            "chunked get",
            "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Status(400, "bad_request"),
        ),
        http(
            "absolute-form target",
            "GET http://evil.example/ws HTTP/1.1\r\nHost: x\r\n\r\n",
            Status(400, "bad_request"),
        ),
        http(
            "oversize header",
            format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(3000)),
            Status(431, "header_too_large"),
        ),
        http(
            "oversize head never ending",
            format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(5000)),
            Status(431, "header_too_large"),
        ),
        http(
            "long request line",
            format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3000)),
            Status(431, "header_too_large"),
        ),
        http("too many headers", format!("GET / HTTP/1.1\r\n{many_headers}\r\n"), Status(431, "header_too_large")),
        http("traversal", "GET /static/../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", Status(404, "not_found")),
        http(
            "encoded traversal",
            "GET /static/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
            Status(404, "not_found"),
        ),
        http("unknown path", "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n", Status(404, "not_found")),
        http("http/1.1 without host", "GET /healthz HTTP/1.1\r\n\r\n", Status(400, "bad_request")),
        http("two host headers", "GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", Status(400, "bad_request")),
        http("host with userinfo", "GET /healthz HTTP/1.1\r\nHost: user@x\r\n\r\n", Status(400, "bad_request")),
        http(
            "upgrade without host",
            with_token("", "").replace("Host: roomcast.test\r\n", ""),
            Status(400, "bad_request"),
        ),
        http("upgrade with two host headers", with_token("", "Host: roomcast.test\r\n"), Status(400, "bad_request")),
        // --- HEAD: never a body, never a handshake ---
        http("head on the ws path", head("/ws", ""), NoBody(426)),
        http("head on the web client", head("/", ""), NoBody(200)),
        http("head on an unknown path", head("/admin", ""), NoBody(404)),
        http(
            "head with upgrade headers",
            head(
                &format!("/ws/chat?room=hostile&token={}", good_token()),
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n",
            ),
            NoBody(400),
        ),
        http("head with a body", head("/healthz", "Content-Length: 5\r\n") + "hello", NoBody(400)),
        // --- WebSocket handshakes ---
        http(
            "plain get on ws path",
            format!("GET /ws/chat?token={} HTTP/1.1\r\nHost: x\r\n\r\n", good_token()),
            Status(426, "upgrade_required"),
        ),
        http(
            "upgrade without connection",
            "GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            Status(426, "upgrade_required"),
        ),
        http(
            "upgrade to h2c",
            "GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            Status(426, "upgrade_required"),
        ),
        http(
            "version 8",
            upgrade_request("room=hostile", "").replace("Version: 13", "Version: 8"),
            Status(426, "unsupported_version"),
        ),
        http(
            "version missing",
            upgrade_request("room=hostile", "").replace("Sec-WebSocket-Version: 13\r\n", ""),
            Status(426, "unsupported_version"),
        ),
        http(
            "key missing",
            upgrade_request("room=hostile", "").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            Status(400, "bad_websocket_key"),
        ),
        key_case("key too short", "c2hvcnQ="),
        key_case("key with bad characters", "dGhlIHNhbXBsZSBub25j!Q=="),
        key_case("key with non-zero padding bits", "dGhlIHNhbXBsZSBub25jZR=="),
        key_case("key of 32 bytes", "dGhlIHNhbXBsZSBub25jZdGhlIHNhbXBsZSBub25jZQ=="),
        http(
            "second websocket key",
            with_token("", "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"),
            Status(400, "bad_websocket_key"),
        ),
        http("http/1.0 upgrade", with_token("", "").replace("HTTP/1.1", "HTTP/1.0"), Status(400, "bad_request")),
        // --- Tokens (auth on) ---
        http("no token", upgrade_request("room=hostile", ""), Status(401, "unauthorized")),
        token_case("garbage token", "not.a.token".into()),
        token_case("two-part token", "abc.def".into()),
        token_case("expired token", tokens::hs256(&claims(json!({"exp": now - 3600})))),
        token_case("token without exp", tokens::hs256(&json!({"sub": "u", "aud": AUD}))),
        token_case("token not yet valid", tokens::hs256(&claims(json!({"nbf": now + 3600})))),
        token_case("token for another audience", tokens::hs256(&claims(json!({"aud": "other"})))),
        token_case(
            "token signed with another secret",
            tokens::hs256_with_key(b"not the server secret, but long enough", &claims(json!({}))),
        ),
        token_case("alg none", tokens::unsigned(&claims(json!({})))),
        token_case(
            "rs256 token on an hs256 server",
            tokens::signed_with(Algorithm::RS256, "rsa_private.pem", &claims(json!({}))),
        ),
        token_case("token with a control character in its name", tokens::hs256(&claims(json!({"name": "evil\u{7}"})))),
        token_case("token with an override in its name", tokens::hs256(&claims(json!({"name": "\u{202e}nimda"})))),
        token_case(
            "token with a critical header extension",
            tokens::hs256_with_crit(&["urn:example:must-understand"], &claims(json!({}))),
        ),
        http(
            "basic auth instead of bearer",
            upgrade_request("room=hostile", "Authorization: Basic dXNlcjpwYXNz\r\n"),
            Status(401, "unauthorized"),
        ),
        http(
            "forbidden first room",
            upgrade_request(&format!("room=secret&token={}", good_token()), ""),
            Status(403, "forbidden"),
        ),
        http(
            "rest history without token",
            "GET /rooms/hostile/messages HTTP/1.1\r\nHost: x\r\n\r\n",
            Status(401, "unauthorized"),
        ),
        http(
            "rest history of a forbidden room",
            format!("GET /rooms/secret/messages?token={} HTTP/1.1\r\nHost: x\r\n\r\n", good_token()),
            Status(403, "forbidden"),
        ),
        // --- Origins ---
        http("foreign origin", with_token("", "Origin: https://evil.example\r\n"), Status(403, "forbidden_origin")),
        http("null origin", with_token("", "Origin: null\r\n"), Status(403, "forbidden_origin")),
        http(
            "same host, other port",
            with_token("", "Origin: http://roomcast.test:8080\r\n"),
            Status(403, "forbidden_origin"),
        ),
        http(
            "lookalike origin",
            with_token("", "Origin: http://roomcast.test.evil.example\r\n"),
            Status(403, "forbidden_origin"),
        ),
        http("empty origin", with_token("", "Origin: \r\n"), Status(403, "forbidden_origin")),
        // --- Query parameters ---
        http("control character in room", with_token("&room=a%01b", ""), Status(400, "invalid_room")),
        http("oversize room", with_token(&format!("&room={}", "r".repeat(65)), ""), Status(400, "invalid_room")),
        http("unknown format", with_token("&format=xml", ""), Status(400, "invalid_parameter")),
        http("negative since", with_token("&format=json&since=-1", ""), Status(400, "invalid_parameter")),
        http("room %ff", with_token("&room=%ff", ""), Status(400, "invalid_room")),
        http("room %fe", with_token("&room=%fe", ""), Status(400, "invalid_room")),
        http("room %zz", with_token("&room=%zz", ""), Status(400, "invalid_room")),
        http("room with a lone %", with_token("&room=a%", ""), Status(400, "invalid_room")),
        http("room %-escape cut short", with_token("&room=%4", ""), Status(400, "invalid_room")),
        http("room decoding to non-utf-8", with_token("&room=caf%C3%28", ""), Status(400, "invalid_room")),
        http(
            "room %ff on /ws",
            with_token("&room=%ff", "").replace("/ws/chat?", "/ws?format=json&"),
            Status(400, "invalid_room"),
        ),
        http("nick %ff", with_token("&nick=%ff", ""), Status(400, "invalid_nick")),
        // Bidirectional controls in identifiers: "\u{202e}nimda" would display as "admin".
        http("right-to-left override in room", with_token("&room=%E2%80%AEnimda", ""), Status(400, "invalid_room")),
        http("arabic letter mark in room", with_token("&room=a%D8%9Cb", ""), Status(400, "invalid_room")),
        http("left-to-right isolate in room", with_token("&room=%E2%81%A6x", ""), Status(400, "invalid_room")),
        http("right-to-left override in nick", with_token("&nick=%E2%80%AEnimda", ""), Status(400, "invalid_nick")),
        http("right-to-left mark in nick", with_token("&nick=a%E2%80%8F", ""), Status(400, "invalid_nick")),
        http("pop directional isolate in nick", with_token("&nick=%E2%81%A9", ""), Status(400, "invalid_nick")),
        http(
            "rest history of a room with an override",
            // A token for every room: the room's name is what is wrong, not the grant.
            format!(
                "GET /rooms/%E2%80%AEnimda/messages?token={} HTTP/1.1\r\nHost: x\r\n\r\n",
                tokens::user("hostile", Some(AUD), None)
            ),
            Status(400, "invalid_room"),
        ),
        http(
            "rest history of room %ff",
            format!("GET /rooms/%ff/messages?token={} HTTP/1.1\r\nHost: x\r\n\r\n", good_token()),
            Status(400, "invalid_room"),
        ),
        http(
            "rest history of room %zz",
            format!("GET /rooms/%zz/messages?token={} HTTP/1.1\r\nHost: x\r\n\r\n", good_token()),
            Status(400, "invalid_room"),
        ),
        http(
            "rest history of a room with a lone %",
            format!("GET /rooms/a%/messages?token={} HTTP/1.1\r\nHost: x\r\n\r\n", good_token()),
            Status(400, "invalid_room"),
        ),
        // --- Slowloris ---
        http("slowloris head", "GET /ws/chat HTTP/1.1\r\nHost: x\r\nX-Slow: a", Hangup),
        // --- The metrics listener: operations endpoints only, its own short idle limit ---
        ops("metrics: websocket upgrade with a good token", with_token("", ""), Status(404, "not_found")),
        ops(
            "metrics: rest history with a good token",
            format!("GET /rooms/hostile/messages?token={} HTTP/1.1\r\nHost: x\r\n\r\n", good_token()),
            Status(404, "not_found"),
        ),
        ops("metrics: web client", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", Status(404, "not_found")),
        ops("metrics: traversal", "GET /metrics/../ws/chat HTTP/1.1\r\nHost: x\r\n\r\n", Status(404, "not_found")),
        ops("metrics: binary junk", b"\x00\x01\x02\x03garbage\r\n\r\n".to_vec(), Status(400, "bad_request")),
        ops(
            "metrics: oversize header",
            format!("GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(3000)),
            Status(431, "header_too_large"),
        ),
        ops(
            "metrics: post",
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            Status(405, "method_not_allowed"),
        ),
        ops("metrics: slowloris head", "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: a", Hangup),
        ops("metrics: silent connection", Vec::new(), Hangup),
        // --- WebSocket frames ---
        text("unmasked frame", client_frame(0x81, b"hi", false), Close(1002)),
        text("reserved data opcode", client_frame(0x83, b"hi", true), Close(1002)),
        text("reserved control opcode", client_frame(0x8B, b"", true), Close(1002)),
        text("rsv1 without extension", client_frame(0xC1, b"hi", true), Close(1002)),
        text("rsv2", client_frame(0xA1, b"hi", true), Close(1002)),
        // --- permessage-deflate (the server's --max-message is 1000) ---
        deflate_text("zip bomb: 2 MiB of zeros in one frame", client_frame(0xC1, &bomb, true), Close(1009)),
        deflate_text("zip bomb in fragments", frames(&[(0x41, &bomb[..64]), (0x80, &bomb[64..])]), Close(1009)),
        deflate_text("garbage deflate data", client_frame(0xC1, &[0xff; 64], true), Close(1007)),
        deflate_text(
            "deflate stream past its final block",
            client_frame(0xC1, &[0x03, 0x00, 0xff, 0xff, 0xff], true),
            Close(1007),
        ),
        deflate_text(
            "compressed invalid utf-8",
            client_frame(0xC1, &deflate_message(&[0x68, 0xc3, 0x28]), true),
            Close(1007),
        ),
        deflate_text("rsv1 on a continuation", frames(&[(0x01, b"a"), (0xC0, b"b")]), Close(1002)),
        deflate_text("rsv1 on a ping", client_frame(0xC9, b"", true), Close(1002)),
        deflate_text("rsv2 with deflate", client_frame(0xE1, &deflate_message(b"hi"), true), Close(1002)),
        text("rsv3", client_frame(0x91, b"hi", true), Close(1002)),
        text("invalid utf-8", client_frame(0x81, &[0x68, 0xc3, 0x28], true), Close(1007)),
        text("utf-16 surrogate in utf-8", client_frame(0x81, &[0xed, 0xa0, 0x80], true), Close(1007)),
        text("invalid utf-8 in first fragment", client_frame(0x01, &[0xff, 0x61], true), Close(1007)),
        text("truncated utf-8 at the end of a message", frames(&[(0x01, b"ok"), (0x80, &[0xe2, 0x82])]), Close(1007)),
        text("fragmented ping", client_frame(0x09, b"p", true), Close(1002)),
        text("control frame over 125 bytes", client_frame(0x89, &[b'p'; 126], true), Close(1002)),
        text("continuation without start", client_frame(0x80, b"x", true), Close(1002)),
        text("interleaved fragments", frames(&[(0x01, b"a"), (0x81, b"b")]), Close(1002)),
        text("oversize frame", client_frame(0x82, &vec![0u8; 1000 + 4096 + 1], true), Close(1009)),
        text(
            "huge 64-bit length",
            vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4],
            Close(1009),
        ),
        text("16-bit length just over the limit", vec![0x82, 0xFE, 0x13, 0xF9, 1, 2, 3, 4], Close(1009)),
        text("fragments adding up over the limit", big_fragments, Close(1009)),
        text("close with a 1-byte body", client_frame(0x88, &[3], true), Close(1002)),
        text("close with reserved code 1005", client_frame(0x88, &1005u16.to_be_bytes(), true), Close(1002)),
        text("close with code 999", client_frame(0x88, &999u16.to_be_bytes(), true), Close(1002)),
        text("close with invalid utf-8 reason", client_frame(0x88, &[0x03, 0xe8, 0xff], true), Close(1007)),
        text("message flood", flood, Close(1008)),
        text("ping flood", ping_flood, Close(1008)),
        // --- JSON commands ---
        json_ws("not json", b"hello", ErrorFrame("bad_json")),
        json_ws("json array", b"[1,2,3]", ErrorFrame("bad_json")),
        json_ws("deeply nested arrays", deep_json.as_bytes(), ErrorFrame("bad_json")),
        json_ws("deeply nested objects", deep_object.as_bytes(), ErrorFrame("unknown_type")),
        json_ws("unterminated string", br#"{"type":"message","room":"hostile","content":"abc"#, ErrorFrame("bad_json")),
        json_ws(
            "number overflow as id",
            br#"{"type":"history","room":"hostile","before_id":1e400}"#,
            ErrorFrame("bad_json"),
        ),
        json_ws("negative id", br#"{"type":"history","room":"hostile","before_id":-5}"#, ErrorFrame("bad_json")),
        json_ws("unknown type", br#"{"type":"shutdown"}"#, ErrorFrame("unknown_type")),
        json_ws(
            "content too large",
            format!(r#"{{"type":"message","room":"hostile","content":"{}"}}"#, "x".repeat(1001)).as_bytes(),
            ErrorFrame("message_too_large"),
        ),
        json_ws(
            "content at the limit, every byte escaped as \\u0001",
            message_command(&"\\u0001".repeat(1000)).as_bytes(),
            Delivered(1000),
        ),
        json_ws(
            "content at the limit, every byte a quote",
            message_command(&"\\\"".repeat(1000)).as_bytes(),
            Delivered(1000),
        ),
        json_ws(
            "escaped content one byte over the limit",
            message_command(&"\\u0001".repeat(1001)).as_bytes(),
            ErrorFrame("message_too_large"),
        ),
        json_ws("wrong field type", br#"{"type":"message","room":["hostile"],"content":"x"}"#, ErrorFrame("bad_json")),
        json_ws("join a forbidden room", br#"{"type":"join","room":"secret"}"#, ErrorFrame("forbidden")),
        json_ws("join a room with an override", br#"{"type":"join","room":"\u202enimda"}"#, ErrorFrame("invalid_room")),
        json_ws("join a room with an isolate", br#"{"type":"join","room":"a\u2067b"}"#, ErrorFrame("invalid_room")),
        json_ws(
            "post to a room with a mark",
            br#"{"type":"message","room":"hostile\u200e","content":"x"}"#,
            ErrorFrame("invalid_room"),
        ),
        json_ws(
            "history of a room with an embedding",
            br#"{"type":"history","room":"\u202bx"}"#,
            ErrorFrame("invalid_room"),
        ),
        json_ws(
            "post to a forbidden room",
            br#"{"type":"message","room":"secret","content":"x"}"#,
            ErrorFrame("forbidden"),
        ),
        json_ws("history of a forbidden room", br#"{"type":"history","room":"secret"}"#, ErrorFrame("forbidden")),
        json_ws(
            "post to a room not joined",
            br#"{"type":"message","room":"witness","content":"x"}"#,
            ErrorFrame("not_joined"),
        ),
        Case {
            name: "binary frame on json",
            input: Input::Ws { path: "/ws?format=json&room=hostile", bytes: client_frame(0x82, b"\x00\x01", true) },
            expect: ErrorFrame("binary_not_supported"),
        },
        // --- Floods of frames that are not chat: every frame counts against the frame budget ---
        json_frames("join flood", json_flood(br#"{"type":"join","room":"hostile"}"#, 400), Close(1008)),
        json_frames("ping command flood", json_flood(br#"{"type":"ping"}"#, 400), Close(1008)),
        json_frames("unparsable frame flood", json_flood(b"x", 400), Close(1008)),
        json_frames(
            "message flood on json",
            json_flood(br#"{"type":"message","room":"hostile","content":"flood"}"#, 300),
            Close(1008),
        ),
    ]
}

/// 2 MiB of zeros as one compressed message: about 2 KiB on the wire, 2,000 times the server's
/// `--max-message` once inflated.
fn zip_bomb() -> Vec<u8> {
    deflate_message(&vec![0u8; 2 << 20])
}

/// Runs one case and returns what happened, in the same terms as [`Expect`].
fn run(server: &Server, case: &Case) -> Expect {
    let mut raw = match &case.input {
        Input::Ops(_) => Raw::connect_to(server.metrics_addr.expect("started with --metrics-addr")),
        _ => Raw::connect(server),
    };
    let bytes = match &case.input {
        Input::Http(bytes) | Input::Ops(bytes) => bytes.clone(),
        Input::Ws { path, bytes } | Input::WsDeflate { path, bytes } => {
            let sep = if path.contains('?') { '&' } else { '?' };
            let path = format!("{path}{sep}token={}", good_token());
            let offer = match case.input {
                Input::WsDeflate { .. } => "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                _ => "",
            };
            let (status, head, body) = raw.handshake_head(server, &path, offer);
            assert_eq!(status, 101, "{}: handshake refused: {body}", case.name);
            assert_eq!(head.contains("permessage-deflate"), !offer.is_empty(), "{}: {head}", case.name);
            bytes.clone()
        }
    };
    // The peer may close before taking everything (e.g. after 431): a failed write is fine.
    let _ = std::io::Write::write_all(&mut raw.stream, &bytes);
    match case.expect {
        Expect::Status(..) => {
            let (status, _, body) = raw.read_response();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().unwrap_or("(no code)");
            Expect::Status(status, leak(code))
        }
        Expect::Close(_) => Expect::Close(raw.expect_close().unwrap_or(0)),
        Expect::ErrorFrame(_) | Expect::Delivered(_) => {
            let got = loop {
                match next_event(&mut raw) {
                    Some(event) if event["type"] == "error" => {
                        break Expect::ErrorFrame(leak(event["code"].as_str().unwrap_or("")));
                    }
                    Some(event) if event["type"] == "message" => {
                        break Expect::Delivered(event["content"].as_str().map_or(0, str::len));
                    }
                    Some(_) => {}
                    None => return Expect::Close(0),
                }
            };
            // The connection is kept: it still answers a command.
            raw.send_frame(0x81, br#"{"type":"ping"}"#);
            loop {
                match next_event(&mut raw) {
                    Some(event) if event["type"] == "pong" => break got,
                    Some(_) => {}
                    None => break Expect::Close(0),
                }
            }
        }
        Expect::Hangup => {
            assert!(raw.reads_eof());
            Expect::Hangup
        }
        Expect::NoBody(_) => {
            let (status, _, _) = raw.read_response_head();
            let rest = raw.read_until_eof();
            if rest.is_empty() { Expect::NoBody(status) } else { Expect::Status(status, "(a body)") }
        }
    }
}

/// The next JSON event on a raw WebSocket connection (`None` once it closed).
fn next_event(raw: &mut Raw) -> Option<Value> {
    loop {
        match raw.read_frame()? {
            (0x1, payload) => return Some(serde_json::from_slice(&payload).unwrap_or(Value::Null)),
            (0x8, _) => return None,
            _ => {}
        }
    }
}

/// Expectation strings are `'static`; observed ones are compared through this (test-only leak).
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn chat(witness: &mut Client, n: usize) {
    let line = format!("witness {n}");
    send_text(witness, &line);
    loop {
        if recv_text(witness) == line {
            return;
        }
    }
}

#[test]
fn hostile_inputs_get_their_documented_answers_and_leave_nothing_behind() {
    let server = Server::start(&[
        "--jwt-secret",
        SECRET,
        "--jwt-audience",
        AUD,
        "--max-message",
        "1000",
        "--max-header-bytes",
        "2048",
        "--handshake-timeout",
        "2",
        "--metrics-addr",
        "127.0.0.1:0",
        "--metrics-idle-timeout",
        "2",
    ]);
    let pid = server.pid();
    let mut witness = connect_ws(&server, &format!("/ws/chat?room=witness&token={}", good_token()));
    chat(&mut witness, 0);
    // Let the store's writer open whatever it opens lazily before taking the baseline.
    wait_until("the first message to be stored", || {
        let (status, _, body) = http_get(&server, &format!("/rooms/witness/messages?token={}", good_token()));
        status == 200 && body.len() > 2
    });
    let baseline_fds = fd_count(pid);
    let baseline_rss = rss_kib(pid);

    let cases = cases();
    assert!(cases.len() >= 50, "the corpus has {} inputs", cases.len());
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let got = run(&server, case);
        if got != case.expect {
            failures.push(format!("{}: expected {:?}, got {got:?}", case.name, case.expect));
        }
        if i % 8 == 7 {
            chat(&mut witness, i);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs got the wrong answer:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    chat(&mut witness, cases.len());

    // Every hostile connection is gone: descriptors back to the baseline (closing connections linger
    // at most 5 s, slowloris heads the handshake timeout).
    wait_until("descriptors to return to the baseline", || fd_count(pid) <= baseline_fds);
    let rss = rss_kib(pid);
    assert!(rss <= baseline_rss + 64 * 1024, "VmRSS grew from {baseline_rss} KiB to {rss} KiB");
    chat(&mut witness, cases.len() + 1);
}
