//! `roomcast-load` against the real `roomcast` server binary: broadcast in both wire formats over
//! several rooms, and churn in the JSON format, each briefly, through the real generator binary.
//!
//! The server is `target/<profile>/roomcast` (built by `cargo test --workspace`; otherwise run
//! `cargo build -p roomcast` first). It listens on a free port (`--addr 127.0.0.1:0`) and the test
//! reads the bound address from its `listening on http://…` line. No timing assertions: only counts.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::{assert_complete, assert_connected_and_sent, load_json, num, roomcast_server_bin, temp_path};

/// A running `roomcast`, killed and reaped on drop.
struct Roomcast {
    child: Child,
    addr: String,
    db: Option<PathBuf>,
}

impl Roomcast {
    /// Starts roomcast without persistence.
    fn start() -> Roomcast {
        Roomcast::start_with(&["--no-persist".into()], None)
    }

    /// Starts roomcast with persistence on a scratch database file.
    fn start_persistent() -> Roomcast {
        let db = temp_path("roomcast.db");
        Roomcast::start_with(&["--db".into(), db.to_string_lossy().into_owned()], Some(db))
    }

    fn start_with(extra: &[String], db: Option<PathBuf>) -> Roomcast {
        let bin = roomcast_server_bin().expect(
            "target/<profile>/roomcast is missing: build it first (`cargo build -p roomcast`, or run \
             `cargo test --workspace`, which builds it)",
        );
        let mut child = Command::new(&bin)
            // The generator sends far faster than the default per-connection rate limits allow.
            .args(["--addr", "127.0.0.1:0", "--log-level", "error", "--rate-limit", "0", "--rate-limit-bytes", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout after the address line so the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let mut server = Roomcast { child, addr: String::new(), db };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => server.addr = addr,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                panic!("roomcast printed no `listening on` line within 60 s (exit status: {status:?})");
            }
        }
        server
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }
}

impl Drop for Roomcast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(db) = &self.db {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
        }
    }
}

const CONNS: u64 = 30;
const ROOMS: u64 = 3;

/// A short broadcast: 30 connections over 3 rooms, one sender per room.
fn broadcast(server: &Roomcast, format: &str) -> (i32, Value, String) {
    broadcast_with(server, format, "100", &[])
}

/// [`broadcast`] with more generator options.
fn broadcast_with(server: &Roomcast, format: &str, size: &str, extra: &[&str]) -> (i32, Value, String) {
    let url = server.ws_url();
    let conns = CONNS.to_string();
    let rooms = ROOMS.to_string();
    let mut args = vec![
        "broadcast",
        "--url",
        &url,
        "--format",
        format,
        "--conns",
        &conns,
        "--rooms",
        &rooms,
        "--senders",
        "3",
        "--rate",
        "30",
        "--size",
        size,
        "--threads",
        "2",
        "--warmup",
        "500ms",
        "--duration",
        "2s",
        "--drain",
        "10s",
        "--connect-timeout",
        "30s",
    ];
    args.extend_from_slice(extra);
    load_json(&args)
}

/// Everything sent reached every member of its room exactly once, in order, and nowhere else.
fn assert_lossless_broadcast(code: i32, v: &Value, stdout: &str) {
    let sent = assert_connected_and_sent(code, v, stdout, CONNS);
    assert_eq!(num(v, "/messages/recipients"), CONNS, "{v:#}");
    // One sender per room and CONNS / ROOMS members in each: every message has that many recipients.
    let per_room = CONNS / ROOMS;
    assert_eq!(num(v, "/messages/expected"), sent * per_room, "{v:#}");
    assert_eq!(num(v, "/messages/delivered"), sent * per_room, "{v:#}");
    for field in ["lost", "duplicates", "reordered", "misrouted", "foreign_frames"] {
        assert_eq!(num(v, &format!("/messages/{field}")), 0, "messages.{field} in {v:#}");
    }
    assert_eq!(num(v, "/connections/disconnects"), 0, "{v:#}");
    assert!(v["failures"].as_array().is_some_and(Vec::is_empty), "{v:#}");
    assert_eq!(num(v, "/latency_us/corrected/count"), sent * per_room, "{v:#}");
}

#[test]
fn broadcast_text_format_over_three_rooms_loses_nothing() {
    let server = Roomcast::start();
    let (code, v, stdout) = broadcast(&server, "text");
    assert_lossless_broadcast(code, &v, &stdout);
    assert_eq!(v["config"]["format"], "text", "{v:#}");
    assert_eq!(num(&v, "/config/rooms"), ROOMS);
}

#[test]
fn broadcast_json_format_over_three_rooms_loses_nothing() {
    let server = Roomcast::start();
    let (code, v, stdout) = broadcast(&server, "json");
    assert_lossless_broadcast(code, &v, &stdout);
    assert_eq!(v["config"]["format"], "json", "{v:#}");
    // Every connection was welcomed and joined its room; the server reported no error.
    assert_eq!(num(&v, "/frames_by_type/welcome"), CONNS, "{v:#}");
    assert_eq!(num(&v, "/frames_by_type/joined"), CONNS, "{v:#}");
    assert!(v["errors"].get("server_error_frame").is_none(), "{v:#}");
}

#[test]
fn broadcast_with_deflate_negotiates_it_and_inflates_every_message() {
    let server = Roomcast::start();
    // 1,000-byte messages: above the server's --deflate-min-bytes, so they arrive compressed.
    let (code, v, stdout) = broadcast_with(&server, "json", "1000", &["--deflate"]);
    assert_lossless_broadcast(code, &v, &stdout);
    assert_eq!(v["wire"]["deflate_offered"], true, "{v:#}");
    assert_eq!(num(&v, "/wire/deflate_negotiated"), CONNS, "{v:#}");
    assert!(num(&v, "/wire/bytes_in") > 0 && num(&v, "/wire/bytes_out") > 0, "{v:#}");
    let off = Roomcast::start_with(&["--no-persist".into(), "--deflate".into(), "false".into()], None);
    let (code, v, stdout) = broadcast_with(&off, "text", "1000", &["--deflate"]);
    assert_lossless_broadcast(code, &v, &stdout);
    assert_eq!(num(&v, "/wire/deflate_negotiated"), 0, "{v:#}");
}

/// Churn in the JSON format with persistence on (resume with `since=` needs a store).
///
/// What holds on this branch: clients drop and reconnect, the report is complete, and nothing is
/// duplicated, reordered or misrouted. Full completeness after resume needs the history store, which
/// is still a placeholder here (its queries fail), so the test does not assert it.
#[test]
fn churn_json_format_reconnects_without_duplicates() {
    let server = Roomcast::start_persistent();
    let url = server.ws_url();
    let (code, v, stdout) = load_json(&[
        "churn",
        "--url",
        &url,
        "--format",
        "json",
        "--conns",
        "30",
        "--rooms",
        "3",
        "--senders",
        "3",
        "--rate",
        "30",
        "--size",
        "100",
        "--threads",
        "2",
        "--warmup",
        "500ms",
        "--duration",
        "3s",
        "--drain",
        "10s",
        "--churn-fraction",
        "0.3",
        "--churn-interval",
        "500ms",
        "--connect-timeout",
        "30s",
    ]);
    assert_eq!(code, 0, "roomcast-load failed: {stdout}\n{v:#}");
    assert_complete(&v);
    assert_eq!(v["scenario"], "churn", "{v:#}");
    assert_eq!(num(&v, "/connections/connected"), 30, "{v:#}");
    assert!(num(&v, "/connections/reconnects") > 0, "no client reconnected: {v:#}");
    let sent = num(&v, "/messages/sent");
    let delivered = num(&v, "/messages/delivered");
    assert!(sent > 0, "{v:#}");
    assert!(delivered > 0 && delivered <= num(&v, "/messages/expected"), "{v:#}");
    for field in ["duplicates", "reordered", "misrouted", "foreign_frames"] {
        assert_eq!(num(&v, &format!("/messages/{field}")), 0, "messages.{field} in {v:#}");
    }
    let completeness = v.pointer("/messages/completeness").and_then(Value::as_f64).expect("completeness");
    assert!(completeness > 0.0 && completeness <= 1.0, "{v:#}");
}

/// `--edit-fraction` and `--typists`: edits of the senders' own messages arrive as `edited`
/// events at every member exactly like messages (nothing lost, counted apart by kind), and the
/// `typing` events received stay within the server's forwarding limit (one per typist and room
/// every 2 s) while some do arrive.
#[test]
fn broadcast_with_edits_and_typing_accounts_both() {
    let server = Roomcast::start_persistent();
    let (code, v, stdout) = broadcast_with(
        &server,
        "json",
        "100",
        &["--edit-fraction", "0.3", "--typists", "6", "--typing-interval", "200ms"],
    );
    assert_lossless_broadcast(code, &v, &stdout);
    assert!(v["errors"].get("server_error_frame").is_none(), "{v:#}");
    let per_room = CONNS / ROOMS;
    let (sent, edits) = (num(&v, "/messages/sent"), num(&v, "/semantics/edits_sent"));
    assert!(edits > 0 && edits < sent, "{v:#}");
    assert_eq!(num(&v, "/semantics/edit_latency_us/count"), edits * per_room, "{v:#}");
    assert_eq!(num(&v, "/semantics/message_latency_us/count"), (sent - edits) * per_room, "{v:#}");
    assert!(num(&v, "/frames_by_type/edited") >= edits * per_room, "{v:#}");
    // Six typists, two per room, each seen by the other nine members of its room.
    assert_eq!(num(&v, "/semantics/typing_pairs"), 6 * (per_room - 1), "{v:#}");
    let received = num(&v, "/semantics/typing_received");
    assert!(received > 0, "no typing event arrived: {v:#}");
    assert!(num(&v, "/semantics/typing_sent") > 0, "{v:#}");
    assert!(received <= num(&v, "/semantics/typing_limit"), "{v:#}");
    assert_eq!(v["semantics"]["typing_within_limit"], true, "{v:#}");
}

#[test]
fn edits_and_typing_need_the_json_format() {
    let server = Roomcast::start();
    let url = server.ws_url();
    let out = support::load(&["broadcast", "--url", &url, "--format", "text", "--edit-fraction", "0.1", "--quiet"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--format json"), "{stderr}");
}
