//! Connection lifecycle: graceful shutdown, connection limit, slow consumers, handshake timeout.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[test]
fn sigterm_closes_clients_with_1001_and_exits_zero() {
    let mut server = Server::start(&[]);
    let mut text = connect_ws(&server, "/ws/chat");
    let mut json_client = connect_json(&server, "general", "jo");
    server.signal("TERM");
    assert_eq!(expect_close(&mut text), 1001);
    assert_eq!(expect_close(&mut json_client), 1001);
    drop((text, json_client));
    assert!(server.wait_exit().success(), "graceful shutdown exits 0");
}

#[test]
fn over_the_connection_limit_new_clients_get_503() {
    let server = Server::start(&["--max-connections", "2"]);
    let a = connect_ws(&server, "/ws/chat");
    let _b = connect_ws(&server, "/ws/chat");
    let err = try_connect_ws(&server, "/ws/chat").expect_err("third is refused");
    assert!(err.contains("503"), "{err}");
    drop(a);
    // Once a slot frees up, clients get in again.
    wait_until("a slot to free up", || try_connect_ws(&server, "/ws/chat").is_ok());
}

#[test]
fn a_client_that_stops_reading_is_dropped_while_others_keep_receiving() {
    let server = Server::start(&["--max-outbuf", "262144", "--rate-limit", "0", "--rate-limit-bytes", "0"]);
    // A client with a tiny receive window that never reads.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket.connect(&server.addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let (_stalled, _) = tungstenite::client::client(server.ws_url("/ws/chat?room=slow"), stream).expect("handshake");

    let mut witness = connect_ws(&server, "/ws/chat?room=slow");
    let mut sender = connect_ws(&server, "/ws/chat?room=slow");
    // 16 MB in all: more than the stalled socket's kernel buffers (autotuned up to 4 MB) plus its
    // 256 KiB output queue, so it must overflow. The sender waits for the witness to acknowledge each
    // message before sending the next, so the witness is never more than one message behind however
    // loaded the machine is: only the stalled client can overflow.
    let messages = 1000;
    let (ack_tx, ack_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for i in 0..messages {
            let text = recv_text(&mut witness);
            assert!(text.starts_with(&format!("{i}:")), "message {i} in order");
            let _ = ack_tx.send(i);
        }
    });
    let filler = "x".repeat(16_000);
    for i in 0..messages {
        send_text(&mut sender, &format!("{i}:{filler}"));
        // The sender reads its own echo so that it is not itself a stalled reader.
        recv_text(&mut sender);
        assert_eq!(ack_rx.recv_timeout(PATIENCE).ok(), Some(i), "the witness received message {i}");
    }
    reader.join().expect("the witness received every message");
    // The stalled client has been dropped: only the witness, the sender and the probe remain.
    wait_until("the stalled client to be closed", || open_connections(&server) == 3);
}

#[test]
fn a_client_that_never_finishes_its_request_is_dropped() {
    let server = Server::start(&["--handshake-timeout", "1"]);
    let mut raw = Raw::connect(&server);
    raw.send(b"GET /ws/chat HTTP/1.1\r\nHost: x\r\n");
    assert!(raw.reads_eof(), "server hangs up on a slowloris client");
    raw.stream.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    // And it still serves others.
    let mut ws = connect_json(&server, "r", "ok");
    send_json(&mut ws, json!({"type": "ping"}));
    assert_eq!(recv_event(&mut ws, "pong")["type"], "pong");
}
