//! permessage-deflate (RFC 7692) over real sockets: what the handshake answers to each kind of offer,
//! a deflate client and plain clients in one room each getting the right bytes, compressed input
//! inflated, zip bombs and bad deflate data closed with their codes, `--deflate false`, metrics.

use serde_json::{Value, json};

use crate::support::*;

/// The answer to every accepted offer (without `server_max_window_bits`).
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The `Sec-WebSocket-Extensions` value the server answered `offer` with (`None`: no extension),
/// after checking the handshake itself succeeded.
fn answer(server: &Server, path: &str, offer: &str, extra: &str) -> (Option<String>, Raw) {
    let mut raw = Raw::connect(server);
    let offer = if offer.is_empty() { String::new() } else { format!("Sec-WebSocket-Extensions: {offer}\r\n") };
    let (status, head, body) = raw.handshake_head(server, path, &format!("{offer}{extra}"));
    assert_eq!(status, 101, "{head}{body}");
    let ext = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions").then(|| value.trim().to_string())
    });
    (ext, raw)
}

/// A JSON client that negotiated deflate, past `welcome` and `joined`.
fn deflate_json(server: &Server, room: &str, nick: &str) -> Raw {
    let path = format!("/ws?format=json&room={room}&nick={nick}");
    let (ext, mut raw) = answer(server, &path, "permessage-deflate; client_max_window_bits", "");
    assert_eq!(ext.as_deref(), Some(ANSWER));
    assert_eq!(next_json(&mut raw)["type"], "welcome");
    assert_eq!(next_json(&mut raw)["type"], "joined");
    raw
}

/// The next data frame's text, inflated if RSV1 is set, with whether it was compressed.
fn next_message(raw: &mut Raw) -> (String, bool) {
    loop {
        let (first, payload) = raw.read_frame_head_byte().expect("a frame");
        match first & 0x0f {
            1 => {
                let compressed = first & 0x40 != 0;
                let bytes = if compressed { inflate_message(&payload) } else { payload };
                return (String::from_utf8(bytes).expect("utf-8"), compressed);
            }
            9 | 10 => continue,
            other => panic!("unexpected opcode {other}"),
        }
    }
}

/// The next JSON event that is not presence.
fn next_json(raw: &mut Raw) -> Value {
    loop {
        let (text, _) = next_message(raw);
        let value: Value = serde_json::from_str(&text).expect("json");
        if value["type"] != "presence" {
            return value;
        }
    }
}

#[test]
fn the_handshake_answers_each_kind_of_offer() {
    let server = Server::start(&["--no-persist"]);
    let cases: &[(&str, Option<&str>)] = &[
        // Chromium's offer, Firefox's.
        ("permessage-deflate; client_max_window_bits", Some(ANSWER)),
        ("permessage-deflate", Some(ANSWER)),
        ("permessage-deflate; server_no_context_takeover; client_no_context_takeover", Some(ANSWER)),
        (
            "permessage-deflate; server_max_window_bits=10",
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
            ),
        ),
        ("permessage-deflate; client_max_window_bits=9", Some(ANSWER)),
        // Several offers: the first acceptable one.
        ("permessage-deflate; server_max_window_bits=7, permessage-deflate; client_max_window_bits", Some(ANSWER)),
        ("x-webkit-deflate-frame, permessage-deflate", Some(ANSWER)),
        // Declined offers, and headers that do not parse: no extension, the connection proceeds.
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; client_max_window_bits=099", None),
        ("permessage-deflate; mystery_param", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("permessage-deflate; a b", None),
        ("x-unknown", None),
        ("", None),
    ];
    for (offer, expected) in cases {
        let (ext, mut raw) = answer(&server, "/ws/chat?room=offers", offer, "");
        assert_eq!(ext.as_deref(), *expected, "offer {offer:?}");
        // The connection works either way.
        raw.send_frame(0x81, b"still chatting");
        assert_eq!(next_message(&mut raw), ("still chatting".to_string(), false), "offer {offer:?}");
    }
    // Two header lines are one list.
    let mut raw = Raw::connect(&server);
    let two =
        "Sec-WebSocket-Extensions: permessage-deflate; bad_param\r\nSec-WebSocket-Extensions: permessage-deflate\r\n";
    let (status, head, _) = raw.handshake_head(&server, "/ws/chat?room=offers", two);
    assert_eq!(status, 101);
    assert!(head.contains(&format!("Sec-WebSocket-Extensions: {ANSWER}")), "{head}");
    // Safari 15.0–15.3 mishandles client_no_context_takeover: it is not offered the extension.
    let safari = "User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.2 Safari/605.1.15\r\n";
    let (ext, _) = answer(&server, "/ws/chat?room=offers", "permessage-deflate", safari);
    assert_eq!(ext, None, "Safari 15.2");
    let fixed = safari.replace("Version/15.2", "Version/15.4");
    let (ext, _) = answer(&server, "/ws/chat?room=offers", "permessage-deflate", &fixed);
    assert_eq!(ext.as_deref(), Some(ANSWER), "Safari 15.4");
}

#[test]
fn deflate_false_never_negotiates() {
    let server = Server::start(&["--no-persist", "--deflate", "false"]);
    let (ext, mut raw) = answer(&server, "/ws/chat?room=off", "permessage-deflate; client_max_window_bits", "");
    assert_eq!(ext, None);
    // Without the extension RSV1 is a protocol error.
    raw.send_frame(0xc1, &deflate_message(b"Hello"));
    assert_eq!(raw.expect_close(), Some(1002));
}

#[test]
fn deflate_and_plain_members_of_one_room_get_the_right_bytes() {
    let server = Server::start(&["--no-persist"]);
    let mut deflate = deflate_json(&server, "mix", "dee");
    let mut plain_json = connect_json(&server, "mix", "pat");
    let mut plain_text = Raw::websocket(&server, "/ws/chat?room=mix");
    let (ext, mut deflate_text) = answer(&server, "/ws/chat?room=mix", "permessage-deflate", "");
    assert_eq!(ext.as_deref(), Some(ANSWER));
    let mut alice = connect_json(&server, "mix", "Alice");

    // A short message (below --deflate-min-bytes) goes to every member uncompressed.
    send_json(&mut alice, json!({"type": "message", "room": "mix", "content": "Hello"}));
    assert_eq!(next_message(&mut plain_text), ("Alice: Hello".to_string(), false));
    assert_eq!(next_message(&mut deflate_text), ("Alice: Hello".to_string(), false));
    let event = next_json(&mut deflate);
    assert_eq!((event["user"].as_str(), event["content"].as_str()), (Some("Alice"), Some("Hello")));
    assert_eq!(recv_event(&mut plain_json, "message")["content"], "Hello");

    // A long one is compressed for deflate members (RSV1) and arrives byte-identical after inflating.
    let long = "the quick brown fox jumps over the lazy dog; ".repeat(30);
    send_json(&mut alice, json!({"type": "message", "room": "mix", "content": long}));
    let (text, compressed) = next_message(&mut plain_text);
    assert_eq!((text, compressed), (format!("Alice: {long}"), false));
    let (text, compressed) = next_message(&mut deflate_text);
    assert!(compressed, "a long message is compressed for a deflate member");
    assert_eq!(text, format!("Alice: {long}"));
    let (text, compressed) = next_message(&mut deflate);
    assert!(compressed);
    let plain_event = recv_event(&mut plain_json, "message");
    let deflate_event: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(deflate_event, plain_event, "the same event, compressed or not");

    // What a deflate client sends compressed is inflated and relayed to everyone.
    let command = json!({"type": "message", "room": "mix", "content": long}).to_string();
    deflate.send_frame(0xc1, &deflate_message(command.as_bytes()));
    let from_dee = loop {
        let event = recv_event(&mut alice, "message");
        if event["user"] == "dee" {
            break event;
        }
    };
    assert_eq!(from_dee["content"].as_str(), Some(long.as_str()));
    let (text, _) = next_message(&mut plain_text);
    assert_eq!(text, format!("dee: {long}"));
    // A compressed command split over fragments (RSV1 on the first only).
    let ping = deflate_message(br#"{"type":"ping"}"#);
    let (head, tail) = ping.split_at(ping.len() / 2);
    deflate.send_frame(0x41, head);
    deflate.send_frame(0x80, tail);
    loop {
        let event = next_json(&mut deflate);
        if event["type"] == "pong" {
            break;
        }
    }

    // Compressed once per message and format, counted.
    let (_, _, body) = http_get(&server, "/metrics");
    let metrics = String::from_utf8(body).expect("utf-8");
    let value = |name: &str| -> f64 {
        metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(-1.0)
    };
    assert_eq!(value("roomcast_deflate_connections_total"), 2.0, "{metrics}");
    assert!(value("roomcast_deflate_messages_compressed_total") >= 2.0);
    assert!(value("roomcast_deflate_output_bytes_total") < value("roomcast_deflate_input_bytes_total") / 3.0);
    assert!(value("roomcast_inflated_messages_total") >= 2.0);
}

#[test]
fn zip_bombs_close_with_1009_and_bad_data_with_1007() {
    let server = Server::start(&["--no-persist", "--max-message", "4096"]);
    let bomb = deflate_message(&vec![b'a'; 4 << 20]);
    assert!(bomb.len() < 8192, "4 MiB of one letter compress to {} bytes", bomb.len());
    let (_, mut raw) = answer(&server, "/ws/chat?room=bombs", "permessage-deflate", "");
    raw.send_frame(0xc1, &bomb);
    assert_eq!(raw.expect_close(), Some(1009));
    // The same bomb in fragments.
    let (_, mut raw) = answer(&server, "/ws/chat?room=bombs", "permessage-deflate", "");
    let (a, b) = bomb.split_at(bomb.len() / 2);
    raw.send_frame(0x41, a);
    raw.send_frame(0x80, b);
    assert_eq!(raw.expect_close(), Some(1009));
    let (_, mut raw) = answer(&server, "/ws/chat?room=bombs", "permessage-deflate", "");
    raw.send_frame(0xc1, &[0xff; 32]);
    assert_eq!(raw.expect_close(), Some(1007));
    // RSV1 on a continuation or a control frame breaks RFC 7692 §6.
    let (_, mut raw) = answer(&server, "/ws/chat?room=bombs", "permessage-deflate", "");
    raw.send_frame(0xc9, b"");
    assert_eq!(raw.expect_close(), Some(1002));
    // A witness in the room was not disturbed.
    let mut witness = Raw::websocket(&server, "/ws/chat?room=bombs");
    witness.send_frame(0x81, b"still here");
    assert_eq!(next_message(&mut witness).0, "still here");
    let (_, _, body) = http_get(&server, "/metrics");
    let metrics = String::from_utf8(body).expect("utf-8");
    assert!(metrics.contains("roomcast_inflate_failures_total{reason=\"too_big\"} 2"), "{metrics}");
    assert!(metrics.contains("roomcast_inflate_failures_total{reason=\"invalid\"} 1"), "{metrics}");
}
