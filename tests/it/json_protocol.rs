//! The JSON protocol: events, several rooms, presence, and every client mistake's error code.

use serde_json::{Value, json};
use tungstenite::Message;

use crate::support::*;

#[test]
fn welcome_joined_message_echo_with_ids_and_client_id() {
    let server = Server::start(&[]);
    let mut ws = connect_ws(&server, "/ws?format=json&room=lobby&nick=ann");
    let welcome = recv_json(&mut ws);
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["user"], "ann");
    assert_eq!(welcome["limits"]["max_message_bytes"], 16384);
    let joined = recv_json(&mut ws);
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["room"], "lobby");
    assert_eq!(joined["members"], json!(["ann"]));

    send_json(&mut ws, json!({"type": "message", "room": "lobby", "content": "one", "client_id": "c-1"}));
    send_json(&mut ws, json!({"type": "message", "room": "lobby", "content": "two"}));
    let one = recv_event(&mut ws, "message");
    let two = recv_event(&mut ws, "message");
    assert_eq!(
        (one["content"].as_str(), one["client_id"].as_str(), one["user"].as_str()),
        (Some("one"), Some("c-1"), Some("ann"))
    );
    assert!(two.get("client_id").is_none());
    assert!(two["id"].as_u64() > one["id"].as_u64(), "ids increase: {one} {two}");
    let ts = one["ts"].as_str().expect("ts");
    assert!(ts.ends_with('Z') && ts.len() == 24, "RFC 3339 UTC with millis: {ts}");
}

#[test]
fn subprotocol_selects_json() {
    let server = Server::start(&[]);
    let stream = std::net::TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(server.ws_url("/ws")).expect("req");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "roomcast.v1.json".parse().expect("header"));
    let (mut ws, response) = tungstenite::client::client(request, stream).expect("handshake");
    assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "roomcast.v1.json");
    assert_eq!(recv_json(&mut ws)["type"], "welcome");
}

#[test]
fn several_rooms_presence_leave_and_ping() {
    let server = Server::start(&[]);
    let mut ann = connect_json(&server, "a", "ann");
    send_json(&mut ann, json!({"type": "join", "room": "b"}));
    let joined = recv_event(&mut ann, "joined");
    assert_eq!(joined["room"], "b");

    let mut bob = connect_json(&server, "b", "bob");
    let presence = loop {
        let event = recv_json(&mut ann);
        if event["type"] == "presence" && event["user"] == "bob" {
            break event;
        }
    };
    assert_eq!((presence["room"].as_str(), presence["event"].as_str()), (Some("b"), Some("join")));

    send_json(&mut bob, json!({"type": "message", "room": "b", "content": "in b"}));
    let msg = recv_event(&mut ann, "message");
    assert_eq!((msg["room"].as_str(), msg["content"].as_str()), (Some("b"), Some("in b")));

    send_json(&mut ann, json!({"type": "leave", "room": "b"}));
    assert_eq!(recv_event(&mut ann, "left")["room"], "b");
    let gone = loop {
        let event = recv_json(&mut bob);
        if event["type"] == "presence" && event["event"] == "leave" {
            break event;
        }
    };
    assert_eq!(gone["user"], "ann");

    // After leaving, b's messages no longer reach ann; a's still do.
    send_json(&mut bob, json!({"type": "message", "room": "b", "content": "ann is gone"}));
    send_json(&mut ann, json!({"type": "message", "room": "a", "content": "still in a"}));
    assert_eq!(recv_event(&mut ann, "message")["content"], "still in a");
    send_json(&mut ann, json!({"type": "ping"}));
    assert_eq!(recv_event(&mut ann, "pong")["type"], "pong");
}

fn expect_error(ws: &mut Client, code: &str) -> Value {
    let event = recv_event(ws, "error");
    assert_eq!(event["code"], code, "{event}");
    assert!(event["message"].as_str().is_some_and(|m| !m.is_empty()));
    event
}

#[test]
fn client_mistakes_get_error_frames_and_the_connection_stays_open() {
    let server = Server::start(&["--max-message", "100", "--max-rooms-per-conn", "2"]);
    let mut ws = connect_json(&server, "r", "eve");
    send_text(&mut ws, "not json");
    expect_error(&mut ws, "bad_json");
    send_text(&mut ws, "[1,2,3]");
    expect_error(&mut ws, "bad_json");
    send_text(&mut ws, &format!("{}{}", "[".repeat(2000), "]".repeat(2000)));
    expect_error(&mut ws, "bad_json");
    send_json(&mut ws, json!({"type": "dance"}));
    expect_error(&mut ws, "unknown_type");
    send_json(&mut ws, json!({"room": "r"}));
    expect_error(&mut ws, "unknown_type");
    send_json(&mut ws, json!({"type": "message", "room": "r"}));
    expect_error(&mut ws, "missing_field");
    send_json(&mut ws, json!({"type": "message", "room": "r", "content": 5}));
    expect_error(&mut ws, "bad_json");
    send_json(&mut ws, json!({"type": "message", "room": "r", "content": ""}));
    expect_error(&mut ws, "empty_message");
    send_json(&mut ws, json!({"type": "message", "room": "r", "content": "x".repeat(101)}));
    expect_error(&mut ws, "message_too_large");
    send_json(&mut ws, json!({"type": "message", "room": "r", "content": "x", "client_id": "c".repeat(129)}));
    expect_error(&mut ws, "invalid_client_id");
    send_json(&mut ws, json!({"type": "message", "room": "elsewhere", "content": "x"}));
    expect_error(&mut ws, "not_joined");
    send_json(&mut ws, json!({"type": "leave", "room": "elsewhere"}));
    expect_error(&mut ws, "not_joined");
    for bad_room in [json!(""), json!("r".repeat(65)), json!("a\u{1}b")] {
        send_json(&mut ws, json!({"type": "join", "room": bad_room}));
        expect_error(&mut ws, "invalid_room");
    }
    send_json(&mut ws, json!({"type": "join", "room": "r"}));
    expect_error(&mut ws, "already_joined");
    send_json(&mut ws, json!({"type": "join", "room": "second"}));
    recv_event(&mut ws, "joined");
    send_json(&mut ws, json!({"type": "join", "room": "third"}));
    expect_error(&mut ws, "too_many_rooms");
    ws.send(Message::binary(vec![1u8, 2, 3])).expect("send");
    expect_error(&mut ws, "binary_not_supported");
    send_json(&mut ws, json!({"type": "history", "room": "r", "before_id": 5, "after_id": 1}));
    expect_error(&mut ws, "invalid_parameter");
    // Still open and working.
    send_json(&mut ws, json!({"type": "message", "room": "r", "content": "ok"}));
    assert_eq!(recv_event(&mut ws, "message")["content"], "ok");
}

#[test]
fn text_clients_get_an_error_frame_for_oversize_content() {
    let server = Server::start(&["--max-message", "100"]);
    let mut ws = connect_ws(&server, "/ws/chat");
    send_text(&mut ws, &"x".repeat(101));
    let event: Value = serde_json::from_str(&recv_text(&mut ws)).expect("json error");
    assert_eq!(event["code"], "message_too_large");
    send_text(&mut ws, "fine");
    assert_eq!(recv_text(&mut ws), "fine");
}

#[test]
fn bad_handshake_parameters_get_400() {
    let server = Server::start(&[]);
    for (query, code) in [
        ("nick=".to_string() + &"n".repeat(33), "invalid_nick"),
        ("nick=%01".to_string(), "invalid_nick"),
        ("room=".to_string(), "invalid_room"),
        ("room=".to_string() + &"r".repeat(65), "invalid_room"),
        ("format=xml".to_string(), "invalid_parameter"),
        ("since=abc".to_string(), "invalid_parameter"),
    ] {
        let err = try_connect_ws(&server, &format!("/ws?{query}")).expect_err("refused");
        assert!(err.contains("400"), "{query}: {err}");
        let mut raw = Raw::connect(&server);
        raw.send(
            format!(
                "GET /ws?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        );
        let (status, _, body) = raw.read_response();
        assert_eq!(status, 400);
        let body: Value = serde_json::from_slice(&body).expect("json body");
        assert_eq!(body["error"]["code"], code, "{query}");
    }
}

#[test]
fn content_within_the_limit_that_grows_when_escaped_is_delivered() {
    // Default --max-message (16 KiB): 4,000 x U+0001 is a 24 KB frame, 16,384 x '"' a 32.8 KB one.
    let server = Server::start(&["--rate-limit-bytes", "0"]);
    let mut sender = connect_json(&server, "esc", "s");
    let mut reader = connect_json(&server, "esc", "r");
    for content in ["\u{1}".repeat(4000), "\"".repeat(16_384), "\\".repeat(16_384)] {
        send_json(&mut sender, json!({"type": "message", "room": "esc", "content": content}));
        assert_eq!(recv_event(&mut sender, "message")["content"], content.as_str());
        assert_eq!(recv_event(&mut reader, "message")["content"], content.as_str());
    }
    // Over the limit once decoded: refused with an error frame, the connection kept.
    send_json(&mut sender, json!({"type": "message", "room": "esc", "content": "\u{1}".repeat(16_385)}));
    assert_eq!(recv_event(&mut sender, "error")["code"], "message_too_large");
    send_json(&mut sender, json!({"type": "message", "room": "esc", "content": "still here"}));
    assert_eq!(recv_event(&mut sender, "message")["content"], "still here");
}

/// Many clients join one room at once over two shards: none receives a `presence` `join` for a user
/// its own `joined.members` already listed (a member sees only the changes after its snapshot).
#[test]
fn no_presence_from_before_ones_own_join() {
    const CLIENTS: usize = 60;
    let server = Server::start(&["--rate-limit", "0"]);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS));
    let server = &server;
    let violations: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let barrier = std::sync::Arc::clone(&barrier);
                scope.spawn(move || {
                    let mut ws = connect_ws(server, &format!("/ws?format=json&room=crowd&nick=u{i}"));
                    assert_eq!(recv_json(&mut ws)["type"], "welcome");
                    let joined = recv_json(&mut ws);
                    assert_eq!(joined["type"], "joined", "{joined}");
                    let snapshot: Vec<String> = joined["members"]
                        .as_array()
                        .expect("members")
                        .iter()
                        .map(|m| m.as_str().expect("name").to_string())
                        .collect();
                    barrier.wait();
                    send_json(&mut ws, json!({"type": "ping"}));
                    let mut bad = Vec::new();
                    loop {
                        let event = recv_json(&mut ws);
                        match event["type"].as_str() {
                            Some("pong") => break,
                            Some("presence") if event["event"] == "join" => {
                                let user = event["user"].as_str().expect("user");
                                if user != format!("u{i}") && snapshot.iter().any(|m| m == user) {
                                    bad.push(format!("u{i} got a join of {user}, already in its snapshot"));
                                }
                            }
                            _ => {}
                        }
                    }
                    // Keep the connection until everyone has checked (a leave would be legitimate).
                    barrier.wait();
                    bad
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("client thread")).collect()
    });
    assert!(
        violations.is_empty(),
        "{} stale presence events, e.g. {:?}",
        violations.len(),
        &violations[..violations.len().min(3)]
    );
}
