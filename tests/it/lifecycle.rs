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

#[test]
fn a_panicking_thread_ends_the_process_with_status_101() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    // Debug builds only (the tests run them): the variable makes a shard panic on its first
    // connection; release builds do not contain it (src/reactor/shard.rs).
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["--addr", "127.0.0.1:0", "--shards", "1", "--log-level", "warn"])
        .arg("--db")
        .arg(dir.path().join("roomcast.db"))
        .env("ROOMCAST_TEST_PANIC_ON_ACCEPT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let addr = loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("roomcast did not start");
        }
        if let Some(addr) = line.trim().strip_prefix("listening on http://") {
            break addr.to_string();
        }
    };
    // The first connection makes the shard thread panic ...
    let _conn = TcpStream::connect(&addr).expect("connect");
    // ... which takes the whole process down instead of leaving it holding the port.
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process kept running after its shard thread panicked");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = rx.recv_timeout(PATIENCE).expect("stderr");
    assert_eq!(status.code(), Some(101), "{log}");
    assert!(log.contains("thread 'shard-0'") && log.contains("panicked"), "the panic is reported: {log}");
    assert!(log.contains("a thread panicked (a bug): exiting with status 101"), "and logged: {log}");
    assert!(TcpStream::connect(&addr).is_err(), "the port is released");
}
