//! Memory and fairness under crowds: the soft and hard output bounds (a reader that falls behind in a
//! burst and catches up keeps its connection, one that stays behind or runs past the hard bound is
//! closed), a connect storm served a bounded number of handshakes per turn while live delivery goes
//! on, and resume catch-up within one server-wide budget, every message exactly once.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tungstenite::Message;

use crate::history::post;
use crate::support::*;

/// One sample of `/metrics` (the first line starting with `name`), 0 when absent.
pub(crate) fn metric(server: &Server, name: &str) -> f64 {
    let (status, _, body) = http_get(server, "/metrics");
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn slow_consumer_closes(server: &Server) -> f64 {
    metric(server, "roomcast_connections_closed_total{reason=\"slow_consumer\"}")
}

/// A text client in `room` over a socket with a tiny receive buffer (a 4 KiB window), so what the
/// server sends it piles up in the server's output queue unless it reads.
fn narrow_reader(server: &Server, room: &str) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket.connect(&server.addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    tungstenite::client::client(server.ws_url(&format!("/ws/chat?room={room}")), stream).expect("handshake").0
}

/// Sends up to 1,000 messages of 16 KB into the sender's room, reading each echo before the next
/// (so the sender never falls behind itself: 16 MB, more than a stalled socket's kernel buffers),
/// and stops once the server logged `decision` (checked every 10 messages), so the stalled reader starts reading at once: the server waits for a closed reader to
/// take its close frame only so long (`CLOSE_LINGER`, 5 s), and a burst that went on for longer on a
/// loaded machine left it a connection dropped without its close frame.
fn burst_until_logged(server: &Server, sender: &mut Client, decision: &str) {
    let filler = "x".repeat(16_000);
    for i in 0..1000 {
        if i % 10 == 0 && server.log_text().contains(decision) {
            return;
        }
        send_text(sender, &format!("{i}:{filler}"));
        assert!(recv_text(sender).starts_with(&format!("{i}:")), "echo {i}");
    }
}

/// Starts a server with `args`, keeping its log (the slow-consumer decision is logged when it is
/// made; the close is counted in the metrics only when the connection is reaped).
/// The database's directory comes second: dropped after the server.
fn logged_server(args: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    (Server::start_logged(&dir.path().join("roomcast.db"), args), dir)
}

/// Reads a stalled client's socket to its close frame and returns the code.
fn close_code_after_data(ws: &mut Client) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn a_reader_that_keeps_reading_gets_a_burst_far_past_the_soft_bound() {
    // Soft bound 64 KiB, hard 64 MiB, a long grace: the burst of 16 MB piles up far past the soft
    // bound while the reader reads it through a 4 KiB window. Before the soft bound existed, the
    // bound was a hard 64 KiB and the reader was closed with 1013.
    let server = Server::start(&[
        "--max-outbuf",
        "65536",
        "--max-outbuf-hard",
        "67108864",
        "--outbuf-grace",
        "60",
        "--rate-limit",
        "0",
        "--rate-limit-bytes",
        "0",
    ]);
    let mut reader = narrow_reader(&server, "burst");
    let mut sender = connect_ws(&server, "/ws/chat?room=burst");
    let messages = 1000;
    let filler = "x".repeat(16_000);
    let read_all = std::thread::spawn(move || {
        // A reader that pauses at first (a hiccup) and then reads as fast as it can.
        std::thread::sleep(Duration::from_secs(1));
        for i in 0..messages {
            let text = recv_text(&mut reader);
            assert!(text.starts_with(&format!("{i}:")), "message {i} in order");
        }
        reader
    });
    // All of it at once, the echoes read afterwards: the sender is a reader that falls behind in a
    // burst too.
    for i in 0..messages {
        send_text(&mut sender, &format!("{i}:{filler}"));
    }
    for i in 0..messages {
        assert!(recv_text(&mut sender).starts_with(&format!("{i}:")), "echo {i}");
    }
    let mut reader = read_all.join().expect("the reader got the whole burst, in order");
    assert_eq!(slow_consumer_closes(&server), 0.0, "nobody who reads is a slow consumer");
    // Both are still connected and live.
    send_text(&mut sender, "after");
    assert_eq!(recv_text(&mut reader), "after");
    assert_eq!(recv_text(&mut sender), "after");
}

#[test]
fn a_stalled_reader_under_the_hard_bound_is_closed_after_the_grace() {
    // The stalled reader's queue stays over the 64 KiB soft bound and far under the 64 MiB hard one:
    // only the 1 s grace closes it.
    let (server, _db_dir) = logged_server(&[
        "--max-outbuf",
        "65536",
        "--max-outbuf-hard",
        "67108864",
        "--outbuf-grace",
        "1",
        "--rate-limit",
        "0",
        "--rate-limit-bytes",
        "0",
    ]);
    let mut stalled = narrow_reader(&server, "stall");
    let mut sender = connect_ws(&server, "/ws/chat?room=stall");
    let decision = "slow consumer: over --max-outbuf for the grace";
    burst_until_logged(&server, &mut sender, decision);
    wait_until("the grace to run out", || server.log_text().contains(decision));
    assert_eq!(close_code_after_data(&mut stalled), Some(1013));
    wait_until("the close to be counted", || slow_consumer_closes(&server) == 1.0);
    assert!(!server.log_text().contains("output queue full"), "not the hard bound");
    // The sender, which read all along, is still there.
    send_text(&mut sender, "still here");
    assert_eq!(recv_text(&mut sender), "still here");
}

#[test]
fn a_stalled_reader_past_the_hard_bound_is_closed_without_waiting_for_the_grace() {
    // A grace of an hour: only the hard bound (128 KiB) can close it within the test.
    let (server, _db_dir) = logged_server(&[
        "--max-outbuf",
        "65536",
        "--max-outbuf-hard",
        "131072",
        "--outbuf-grace",
        "3600",
        "--rate-limit",
        "0",
        "--rate-limit-bytes",
        "0",
    ]);
    let mut stalled = narrow_reader(&server, "hard");
    let mut sender = connect_ws(&server, "/ws/chat?room=hard");
    let decision = "slow consumer: output queue full";
    burst_until_logged(&server, &mut sender, decision);
    wait_until("the hard bound to close it", || server.log_text().contains(decision));
    assert_eq!(close_code_after_data(&mut stalled), Some(1013));
    wait_until("the close to be counted", || slow_consumer_closes(&server) == 1.0);
}

#[test]
fn a_connect_storm_is_served_whole_while_a_live_sender_keeps_getting_its_echoes() {
    const STORM: usize = 600;
    const THREADS: usize = 8;
    let server = Arc::new(Server::start(&[]));
    let storming = Arc::new(AtomicBool::new(true));
    let echoes_during = Arc::new(AtomicUsize::new(0));
    // The live sender: one message at a time, each echo read before the next, during the storm.
    let live = {
        let (server, storming, echoes_during) =
            (Arc::clone(&server), Arc::clone(&storming), Arc::clone(&echoes_during));
        std::thread::spawn(move || {
            let mut ws = connect_json(&server, "live", "sender");
            let mut sent = 0;
            while storming.load(Ordering::Acquire) || sent < 20 {
                // Distinct contents: the same one a fourth time within 30 s is refused as a repeat.
                let ids = post(&mut ws, "live", &format!("m{sent}-"), 1);
                assert_eq!(ids.len(), 1);
                if storming.load(Ordering::Acquire) {
                    echoes_during.fetch_add(1, Ordering::Relaxed);
                }
                sent += 1;
                // At most 20 a second: within the default rate limit however long the storm lasts.
                std::thread::sleep(Duration::from_millis(50));
            }
            sent
        })
    };
    // Wait for the sender's first echo, so the storm surely overlaps live traffic.
    wait_until("the live sender's first echo", || echoes_during.load(Ordering::Relaxed) > 0);
    let before = echoes_during.load(Ordering::Relaxed);
    let stormers: Vec<_> = (0..THREADS)
        .map(|t| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                (0..STORM / THREADS)
                    .map(|i| {
                        let mut ws = connect_ws(&server, &format!("/ws?format=json&room=storm{t}&nick=c{i}"));
                        assert_eq!(recv_json(&mut ws)["type"], "welcome");
                        ws
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let clients: Vec<Client> =
        stormers.into_iter().flat_map(|h| h.join().expect("every storm client welcomed")).collect();
    storming.store(false, Ordering::Release);
    assert_eq!(clients.len(), STORM);
    let sent = live.join().expect("every echo of the live sender arrived");
    eprintln!(
        "storm of {STORM}: the live sender got {} echoes during it ({sent} in all)",
        echoes_during.load(Ordering::Relaxed) - before
    );
    assert!(echoes_during.load(Ordering::Relaxed) > before, "live delivery went on during the storm");
    // The storm's clients, all still connected, and the probe itself.
    wait_until("every storm client to be counted", || open_connections(&server) > STORM as u64);
}

#[test]
fn many_resuming_clients_share_a_small_catchup_budget_and_get_every_message_once() {
    const CLIENTS: usize = 30;
    const MISSED: usize = 150;
    const LIVE: usize = 20;
    // A budget of 64 KiB holds six pages of one largest frame (10 KiB with --max-message 1024):
    // most of the 30 clients wait for budget at any moment.
    let server = Arc::new(Server::start(&[
        "--max-message",
        "1024",
        "--catchup-budget",
        "65536",
        "--rate-limit",
        "0",
        "--rate-limit-bytes",
        "0",
    ]));
    let mut sender = connect_json(&server, "crowd", "sender");
    let content = |i: usize| format!("{i:06}{}", "y".repeat(994));
    let mut ids = Vec::new();
    for i in 0..MISSED {
        send_json(&mut sender, json!({"type": "message", "room": "crowd", "content": content(i)}));
        ids.push(recv_event(&mut sender, "message")["id"].as_u64().expect("id"));
    }
    // Every client's handshake first, so they all catch up at once.
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|c| {
            let mut ws = connect_ws(&server, &format!("/ws?format=json&room=crowd&nick=r{c}&since=0"));
            assert_eq!(recv_event(&mut ws, "welcome")["type"], "welcome");
            ws
        })
        .collect();
    // Live messages in the crowd's room while they catch up: held, or read again from history.
    for i in MISSED..MISSED + LIVE {
        send_json(&mut sender, json!({"type": "message", "room": "crowd", "content": content(i)}));
        ids.push(recv_event(&mut sender, "message")["id"].as_u64().expect("id"));
    }
    // A witness in another room, receiving all along.
    let done = Arc::new(AtomicBool::new(false));
    let witness = {
        let (server, done) = (Arc::clone(&server), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut talker = connect_json(&server, "elsewhere", "talker");
            let mut witness = connect_json(&server, "elsewhere", "witness");
            let mut during = 0;
            while !done.load(Ordering::Acquire) {
                let id = post(&mut talker, "elsewhere", &format!("w{during}-"), 1)[0];
                assert_eq!(
                    recv_event(&mut witness, "message")["id"].as_u64(),
                    Some(id),
                    "the witness gets each message"
                );
                during += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            during
        })
    };
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            let expected = ids.len();
            std::thread::spawn(move || {
                let mut got = Vec::with_capacity(expected);
                while got.len() < expected {
                    let event = recv_json(&mut ws);
                    match event["type"].as_str() {
                        Some("message") => got.push(event["id"].as_u64().expect("id")),
                        Some("joined" | "presence") => {}
                        other => panic!("unexpected {other:?}: {event}"),
                    }
                }
                (ws, got)
            })
        })
        .collect();
    let mut finished = Vec::new();
    for reader in readers {
        let (ws, got) = reader.join().expect("a resuming client got its messages");
        assert!(got == ids, "every missed and live message exactly once, in order");
        finished.push(ws);
    }
    done.store(true, Ordering::Release);
    let during = witness.join().expect("the witness received every message");
    assert!(during > 0, "the witness received during the catch-up");
    // Then live, for every one of them.
    let next = post(&mut sender, "crowd", "after", 1)[0];
    for ws in &mut finished {
        assert_eq!(recv_event(ws, "message")["id"].as_u64(), Some(next));
    }
}
