//! Paced history: a resume over a gap far larger than the output bound, and `history` replies larger
//! than it, reach a client that reads, without a slow-consumer close, each message once and in order.

use serde_json::json;

use crate::history::post;
use crate::support::*;

/// Content size of the big messages (the default `--max-message` is 16 KiB).
const BIG: usize = 16_000;

/// Posts `n` messages of `size` bytes in chunks (reading the echoes of each chunk, so the sender
/// never becomes a slow consumer) and returns their ids in order.
fn fill(ws: &mut Client, room: &str, n: usize, size: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
        for &i in chunk {
            let content = format!("{i:08}{}", "x".repeat(size - 8));
            send_json(ws, json!({"type": "message", "room": room, "content": content}));
        }
        for _ in chunk {
            ids.push(recv_event(ws, "message")["id"].as_u64().expect("id"));
        }
    }
    ids
}

/// Reads `n` `message` events for `room` and returns their ids (any other event fails the test,
/// presence aside).
fn read_messages(ws: &mut Client, n: usize) -> Vec<u64> {
    (0..n).map(|_| recv_event(ws, "message")["id"].as_u64().expect("id")).collect()
}

fn unlimited() -> [&'static str; 4] {
    ["--rate-limit", "0", "--rate-limit-bytes", "0"]
}

#[test]
fn resume_over_a_50_mib_gap_completes_in_order_then_goes_live() {
    let server = Server::start(&unlimited());
    let mut sender = connect_json(&server, "big", "sender");
    // 3,500 × 16 KB = 56 MB missed: 53 times the 1 MiB output bound.
    let missed = fill(&mut sender, "big", 3500, BIG);

    let started = std::time::Instant::now();
    let mut reader = connect_ws(&server, "/ws?format=json&room=big&nick=reader&since=0");
    assert_eq!(recv_event(&mut reader, "welcome")["user"], "reader");
    assert_eq!(recv_event(&mut reader, "joined")["last_id"].as_u64(), missed.last().copied());
    // Live traffic while the reader has not read anything yet: 1.6 MB, more than the held-back bound,
    // so the catch-up has to continue from history past the join's last id.
    let live = fill(&mut sender, "big", 100, BIG);

    let expected: Vec<u64> = missed.iter().chain(&live).copied().collect();
    let got = read_messages(&mut reader, expected.len());
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "every missed and live message once, in id order");
    eprintln!("resume of {} messages ({} MB) took {:?}", got.len(), got.len() * BIG / 1_000_000, started.elapsed());

    // Then live.
    let next = post(&mut sender, "big", "after", 1);
    assert_eq!(recv_event(&mut reader, "message")["id"].as_u64(), Some(next[0]));
}

#[test]
fn history_replies_larger_than_the_output_bound_reach_a_reading_client() {
    let server = Server::start(&unlimited());
    let mut ws = connect_json(&server, "hist", "ann");
    let posted = fill(&mut ws, "hist", 260, BIG);
    // Five pipelined requests, each reply over 1 MiB (64 or 200 messages of 16 KB): 11 MB in all.
    for limit in [64, 200, 200, 64, 200] {
        send_json(&mut ws, json!({"type": "history", "room": "hist", "limit": limit}));
    }
    for limit in [64usize, 200, 200, 64, 200] {
        let page = recv_event(&mut ws, "history");
        let ids: Vec<u64> =
            page["messages"].as_array().expect("messages").iter().map(|m| m["id"].as_u64().expect("id")).collect();
        let newest: Vec<u64> = posted.iter().rev().take(limit).copied().collect();
        assert_eq!(ids, newest, "limit {limit}");
        assert_eq!(page["has_more"], true);
    }
    // The connection is still open and usable.
    send_json(&mut ws, json!({"type": "ping"}));
    recv_event(&mut ws, "pong");
}

/// A resume whose page the history readers cannot take now (their queue is full) must not leave a
/// gap: the server closes the connection with 1013 after the pages already sent, and the client
/// resumes again from the last id it got. With `--history-queue 1`, 60 clients resuming at once
/// overflow the queue; each one, reconnecting on 1013 as the web client does, ends with every
/// missed message exactly once, in order. (Before, a refused page was answered with
/// `history_unavailable` and the client went live past the missing messages.)
#[test]
fn a_resume_refused_for_a_full_history_queue_is_closed_and_resumes_without_a_gap() {
    const CLIENTS: usize = 60;
    const MISSED: usize = 600;
    let server = Server::start(&["--rate-limit", "0", "--rate-limit-bytes", "0", "--history-queue", "1"]);
    let mut sender = connect_json(&server, "busy", "sender");
    let missed = fill(&mut sender, "busy", MISSED, 100);
    let resume = |since: u64| connect_ws(&server, &format!("/ws?format=json&room=busy&nick=r&since={since}"));
    // Every client's handshake first, so their resume reads reach the readers at once.
    let mut clients: Vec<(Client, Vec<u64>)> = (0..CLIENTS).map(|_| (resume(0), Vec::new())).collect();
    let mut closed_1013 = 0;
    let deadline = std::time::Instant::now() + 2 * PATIENCE;
    for (ws, got) in &mut clients {
        while got.len() < MISSED {
            // Heartbeat pings would keep a read timeout from ever firing on a client left with a gap.
            assert!(std::time::Instant::now() < deadline, "stuck at {} of {MISSED} messages: a gap", got.len());
            match ws.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    let event: serde_json::Value = serde_json::from_str(&text).expect("json");
                    match event["type"].as_str() {
                        Some("message") => got.push(event["id"].as_u64().expect("id")),
                        Some("error") => assert_eq!(event["code"], "history_unavailable", "{event}"),
                        _ => {}
                    }
                }
                Ok(tungstenite::Message::Close(frame)) => {
                    let code = frame.map(|f| u16::from(f.code));
                    assert_eq!(code, Some(1013), "only a refused resume page closes");
                    closed_1013 += 1;
                    *ws = resume(got.last().copied().unwrap_or(0));
                }
                Ok(_) => {}
                Err(err) => panic!("read failed: {err}"),
            }
        }
        assert!(*got == missed, "every missed message once, in order, across the 1013 resumes");
    }
    assert!(closed_1013 > 0, "{CLIENTS} simultaneous resumes never found the one-slot history queue full");
    eprintln!("{closed_1013} resumes refused and resumed again");
}

/// Another process holds the database's write lock (`BEGIN IMMEDIATE`, as a backup or an operator
/// does) while 150 messages are posted and echoed: a resume from before them is refused
/// (`history_unavailable`, close 1013) and so is REST history (503), instead of going live past the
/// uncommitted messages. Once the lock is released, the same resume gets every one of them.
#[test]
fn a_resume_during_a_writer_stall_is_refused_never_skips() {
    let server = Server::start(&unlimited());
    let mut sender = connect_json(&server, "stall", "sender");
    let before = post(&mut sender, "stall", "before", 1)[0];
    let mut lock = rusqlite::Connection::open(server.db_path()).expect("open the database");
    lock.busy_timeout(std::time::Duration::from_secs(30)).expect("busy timeout");
    let tx = lock.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).expect("write lock");
    let stalled = fill(&mut sender, "stall", 150, 100);

    let mut reader = connect_ws(&server, &format!("/ws?format=json&room=stall&nick=reader&since={before}"));
    assert_eq!(recv_event(&mut reader, "welcome")["user"], "reader");
    assert_eq!(recv_event(&mut reader, "joined")["last_id"].as_u64(), stalled.last().copied());
    let error = recv_event(&mut reader, "error");
    assert_eq!(error["code"], "history_unavailable", "{error}");
    assert_eq!(expect_close(&mut reader), 1013, "told to resume later, not sent live messages past the gap");
    let (status, _, body) = http_get(&server, &format!("/rooms/stall/messages?after_id={before}"));
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));

    drop(tx);
    let mut reader = connect_ws(&server, &format!("/ws?format=json&room=stall&nick=reader&since={before}"));
    assert_eq!(recv_event(&mut reader, "welcome")["user"], "reader");
    recv_event(&mut reader, "joined");
    assert_eq!(read_messages(&mut reader, stalled.len()), stalled, "every stalled message once, in order");
}
