//! The server frozen (SIGSTOP) for 2 s under a light load, then thawed (SIGCONT): nothing is lost,
//! the backlog drains, and heartbeats do not disconnect healthy clients. The heartbeat runs at its
//! shortest (`--ping-interval 1 --ping-timeout 1`), so pings sent just before the freeze are overdue
//! when it ends while their pongs wait unread in the server's sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::Message;

use crate::support::{Client, Server, connect_json, send_json, wait_until};

const READERS: usize = 6;
const MESSAGES: u64 = 120;

/// Reads until `MESSAGES` chat messages arrived and `done` is set (answering pings meanwhile),
/// checking order and uniqueness; panics if the connection ends. Returns the pings the server sent.
fn read_all(ws: &mut Client, who: &str, seen: &AtomicU64, done: &AtomicBool) -> u64 {
    ws.get_mut().set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
    let (mut next, mut pings) = (0u64, 0u64);
    while next < MESSAGES || !done.load(Ordering::SeqCst) {
        let text = match ws.read() {
            Ok(Message::Text(t)) => t,
            Ok(Message::Ping(_)) => {
                pings += 1;
                continue;
            }
            Ok(Message::Close(frame)) => panic!("{who} was disconnected after {next} messages: {frame:?}"),
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                continue;
            }
            Err(e) => panic!("{who} lost its connection after {next} messages: {e}"),
        };
        let v: Value = serde_json::from_str(&text).expect("json");
        if v["type"] != "message" {
            continue;
        }
        assert!(next < MESSAGES, "{who}: an extra message {v}");
        assert_eq!(v["content"], format!("s-{next}"), "{who}: message {next} out of order or duplicated");
        next += 1;
        seen.fetch_add(1, Ordering::SeqCst);
    }
    pings
}

/// One read by the writer: counts a `message` event (its own echo) in `seen`; a read timeout is not
/// an error, a close or a lost connection is.
fn read_own_echo(writer: &mut Client, seen: &AtomicU64) {
    match writer.read() {
        Ok(Message::Text(text)) => {
            let v: Value = serde_json::from_str(&text).expect("json");
            if v["type"] == "message" {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(Message::Close(frame)) => panic!("the writer was disconnected: {frame:?}"),
        Ok(_) => {}
        Err(tungstenite::Error::Io(e))
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
        Err(e) => panic!("the writer lost its connection: {e}"),
    }
}

#[test]
fn sigstop_for_two_seconds_loses_nothing_and_keeps_healthy_clients() {
    let server = Server::start(&["--ping-interval", "1", "--ping-timeout", "1", "--rate-limit", "0"]);
    // `seen` counts deliveries over all readers; `done` lets them stop reading (and answering pings).
    let seen = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let mut ws = connect_json(&server, "frozen", &format!("r{i}"));
            let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
            std::thread::spawn(move || {
                let pings = read_all(&mut ws, &format!("reader {i}"), &seen, &done);
                (pings, ws)
            })
        })
        .collect();
    let mut writer = connect_json(&server, "frozen", "w");
    // The writer also reads (its own echoes and the server's pings) between sends.
    writer.get_mut().set_read_timeout(Some(Duration::from_millis(5))).expect("read timeout");
    let writer_seen = Arc::new(AtomicU64::new(0));
    let ws_seen = Arc::clone(&writer_seen);
    let writer_done = Arc::clone(&done);
    let writer_thread = std::thread::spawn(move || {
        for i in 0..MESSAGES {
            send_json(&mut writer, json!({"type": "message", "room": "frozen", "content": format!("s-{i}")}));
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_millis(40) {
                read_own_echo(&mut writer, &ws_seen);
            }
        }
        writer.get_mut().set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
        while ws_seen.load(Ordering::SeqCst) < MESSAGES || !writer_done.load(Ordering::SeqCst) {
            read_own_echo(&mut writer, &ws_seen);
        }
        writer
    });

    wait_until("traffic before the freeze", || seen.load(Ordering::SeqCst) >= 20 * READERS as u64);
    server.signal("STOP");
    std::thread::sleep(Duration::from_secs(2));
    server.signal("CONT");

    // The backlog drains: every reader and the writer get everything, while still connected.
    let everything = MESSAGES * READERS as u64;
    wait_until("the backlog to drain", || {
        seen.load(Ordering::SeqCst) == everything && writer_seen.load(Ordering::SeqCst) == MESSAGES
    });
    let (status, _, body) = crate::support::http_get(&server, "/healthz");
    assert_eq!(status, 200);
    let h: Value = serde_json::from_slice(&body).expect("json");
    // Readers, the writer, and this request's own connection.
    assert_eq!(h["connections"], json!(READERS + 2), "a healthy client was disconnected: {h}");
    done.store(true, Ordering::SeqCst);
    let writer = writer_thread.join().expect("the writer got every echo and stayed connected");
    let mut pings = 0;
    let mut clients = vec![writer];
    for r in readers {
        let (p, ws) = r.join().expect("every reader got every message once, in order, and stayed connected");
        pings += p;
        clients.push(ws);
    }
    assert!(pings > 0, "the server sent no heartbeat ping: the test proved nothing about heartbeats");
    drop(clients);
}
