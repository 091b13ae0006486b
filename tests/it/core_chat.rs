//! The seed protocol: raw text clients on `/ws/chat`, rooms, mixed formats.

use serde_json::json;
use tungstenite::Message;

use crate::support::*;

#[test]
fn seed_two_clients_both_receive_exactly_the_line() {
    let server = Server::start(&[]);
    let mut a = connect_ws(&server, "/ws/chat");
    let mut b = connect_ws(&server, "/ws/chat");
    send_text(&mut a, "Alice: Hello");
    assert_eq!(recv_text(&mut a), "Alice: Hello");
    assert_eq!(recv_text(&mut b), "Alice: Hello");
    send_text(&mut b, "Bob: Hi");
    assert_eq!(recv_text(&mut a), "Bob: Hi");
    assert_eq!(recv_text(&mut b), "Bob: Hi");
}

#[test]
fn ws_and_ws_chat_are_the_same_endpoint() {
    let server = Server::start(&[]);
    let mut a = connect_ws(&server, "/ws");
    let mut b = connect_ws(&server, "/ws/chat");
    send_text(&mut b, "same room");
    assert_eq!(recv_text(&mut a), "same room");
}

#[test]
fn rooms_are_isolated() {
    let server = Server::start(&[]);
    let mut x = connect_ws(&server, "/ws/chat?room=x");
    let mut y = connect_ws(&server, "/ws/chat?room=y");
    send_text(&mut x, "for x only");
    assert_eq!(recv_text(&mut x), "for x only");
    send_text(&mut y, "for y only");
    // y's first frame is its own message: x's never reached it.
    assert_eq!(recv_text(&mut y), "for y only");
}

#[test]
fn binary_frames_are_relayed_verbatim_to_text_clients() {
    let server = Server::start(&[]);
    let mut a = connect_ws(&server, "/ws/chat");
    let mut b = connect_ws(&server, "/ws/chat");
    a.send(Message::binary(vec![0u8, 159, 146, 150])).expect("send");
    for ws in [&mut a, &mut b] {
        match recv(ws) {
            Message::Binary(bytes) => assert_eq!(&bytes[..], &[0u8, 159, 146, 150]),
            other => panic!("expected binary, got {other:?}"),
        }
    }
}

#[test]
fn text_and_json_clients_share_a_room() {
    let server = Server::start(&[]);
    let mut text = connect_ws(&server, "/ws/chat?room=mixed&nick=tex");
    let mut json_client = connect_json(&server, "mixed", "jay");

    send_text(&mut text, "raw line");
    assert_eq!(recv_text(&mut text), "raw line");
    let msg = recv_event(&mut json_client, "message");
    assert_eq!(msg["content"], "raw line");
    assert_eq!(msg["user"], "tex");
    assert_eq!(msg["room"], "mixed");

    send_json(&mut json_client, json!({"type": "message", "room": "mixed", "content": "from json"}));
    assert_eq!(recv_text(&mut text), "jay: from json");
    assert_eq!(recv_event(&mut json_client, "message")["content"], "from json");
}
