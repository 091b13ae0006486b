//! Moderation (docs/PROTOCOL.md "Moderation", docs/CONFIG.md "Blocklist"): the blocklist refuses or
//! masks over WebSocket (JSON and text format), in edits, direct messages and the server API;
//! whole words, case and Unicode; read again on SIGHUP under live traffic (a bad file keeps the list
//! in force); a bad file stops the start; repeated messages are refused; every decision is counted.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::api::{error_code, history};
use crate::config::{roomcast, run, start_failure};
use crate::crowds::metric;
use crate::support::api::{KEY, post};
use crate::support::*;

const LIST: &str = "# words this server blocks\nass\nécole\ndarn*\nstraße\n";

/// A blocklist file with `text` in a fresh directory (kept alive by the returned guard).
fn blocklist(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("blocklist.txt");
    std::fs::write(&path, text).expect("write the blocklist");
    (dir, path)
}

fn start(list: &Path, args: &[&str]) -> Server {
    let mut all = vec!["--api-key", KEY, "--blocklist", list.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    Server::start(&all)
}

fn moderated(server: &Server, action: &str, reason: &str) -> f64 {
    metric(server, &format!("roomcast_moderation_total{{action=\"{action}\",reason=\"{reason}\"}}"))
}

fn say(ws: &mut Client, room: &str, content: &str, client_id: &str) {
    send_json(ws, json!({"type": "message", "room": room, "content": content, "client_id": client_id}));
}

/// The next `error` frame's code and `client_id`.
fn refusal(ws: &mut Client) -> (String, Value) {
    let err = recv_event(ws, "error");
    (err["code"].as_str().unwrap_or_default().to_string(), err["client_id"].clone())
}

fn contents(server: &Server, room: &str) -> Vec<String> {
    history(server, room).iter().rev().map(|m| m["content"].as_str().unwrap_or_default().to_string()).collect()
}

#[test]
fn reject_refuses_blocked_words_everywhere_and_stores_nothing() {
    let (_dir, list) = blocklist(LIST);
    let server = start(&list, &[]);
    let mut ann = connect_json(&server, "r", "ann");
    let mut bob = connect_json(&server, "r", "bob");
    let blocked = ["you ass", "you ASS!", "ÉCOLE", "darned thing", "undarn? no: Darn"];
    for (i, content) in blocked.iter().enumerate() {
        say(&mut ann, "r", content, &format!("c{i}"));
        assert_eq!(refusal(&mut ann), ("content_blocked".into(), json!(format!("c{i}"))), "{content}");
    }
    // Whole words: `ass` is not in `class`; lowercasing is not case folding: ß is not ss.
    let allowed = ["a class act", "bass", "ecole", "STRASSE", "undarned"];
    for content in allowed {
        say(&mut ann, "r", content, "ok");
        // Nothing refused was delivered before it: the next message bob sees is this one.
        assert_eq!(recv_event(&mut bob, "message")["content"], content);
        assert_eq!(recv_event(&mut ann, "message")["content"], content);
    }
    // The text format: the same JSON `error` frame (as for every other refusal), nothing relayed.
    let mut text = connect_ws(&server, "/ws/chat?room=r&nick=tex");
    send_text(&mut text, "what a darn shame");
    let err: Value = serde_json::from_str(&recv_text(&mut text)).expect("a JSON error frame");
    assert_eq!(err["code"], "content_blocked", "{err}");
    send_text(&mut text, "fine words");
    assert_eq!(recv_event(&mut bob, "message")["content"], "fine words");
    assert_eq!(recv_event(&mut ann, "message")["content"], "fine words");
    // Direct messages and edits.
    // A refused direct message opens no conversation: no `joined` for ann, no `dm_rooms` for bob.
    send_json(&mut ann, json!({"type": "dm", "to": "bob", "content": "straße", "client_id": "d1"}));
    assert_eq!(refusal(&mut ann), ("content_blocked".into(), json!("d1")));
    say(&mut ann, "r", "hello there", "h");
    let id = recv_event(&mut ann, "message")["id"].as_u64().expect("id");
    assert_eq!(recv_event(&mut bob, "message")["content"], "hello there");
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": id, "content": "école", "client_id": "e1"}));
    assert_eq!(refusal(&mut ann), ("content_blocked".into(), json!("e1")));
    // The server API: 422, and a batch with one blocked message publishes none.
    let (status, body) = post(&server, "/api/rooms/r/messages", &json!({"user": "bot", "content": "ASS"}));
    assert_eq!((status, error_code(&body)), (422, "content_blocked"), "{body}");
    let batch = json!({"messages": [
        {"room": "r", "user": "bot", "content": "fine"},
        {"room": "r", "user": "bot", "content": "darnit"},
    ]});
    let (status, body) = post(&server, "/api/publish", &batch);
    assert_eq!((status, error_code(&body)), (422, "content_blocked"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("messages[1]"), "{body}");
    let mut expected: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
    expected.extend(["fine words".to_string(), "hello there".to_string()]);
    assert_eq!(contents(&server, "r"), expected, "nothing refused was stored");
    assert!(history(&server, "dm:ann,bob").is_empty());
    // 5 messages, 1 text frame, 1 DM, 1 edit, 2 API requests.
    assert_eq!(moderated(&server, "reject", "blocklist"), 10.0);
    assert_eq!(moderated(&server, "mask", "blocklist"), 0.0);
}

#[test]
fn mask_replaces_every_match_and_stores_it_masked() {
    let (_dir, list) = blocklist(LIST);
    let server = start(&list, &["--blocklist-action", "mask"]);
    let mut ann = connect_json(&server, "m", "ann");
    let mut bob = connect_json(&server, "m", "bob");
    let mut text = connect_ws(&server, "/ws/chat?room=m&nick=tex");
    say(&mut ann, "m", "you ASS, go to école", "c1");
    assert_eq!(recv_event(&mut bob, "message")["content"], "you ***, go to *****");
    assert_eq!(recv_text(&mut text), "ann: you ***, go to *****");
    send_text(&mut text, "darned class");
    assert_eq!(recv_event(&mut bob, "message")["content"], "****** class");
    assert_eq!(recv_text(&mut text), "****** class");
    let id = recv_event(&mut ann, "message")["id"].as_u64().expect("id");
    let _ = recv_event(&mut ann, "message");
    // An edit is masked too (of ann's first message).
    send_json(&mut ann, json!({"type": "edit", "room": "m", "id": id, "content": "Darn it"}));
    assert_eq!(recv_event(&mut bob, "edited")["content"], "**** it");
    let (status, body) = post(&server, "/api/rooms/m/messages", &json!({"user": "bot", "content": "an ass"}));
    assert_eq!(status, 201, "{body}");
    assert_eq!(recv_event(&mut bob, "message")["content"], "an ***");
    wait_until("the stored messages", || history(&server, "m").len() == 3);
    assert_eq!(contents(&server, "m"), ["**** it", "****** class", "an ***"]);
    let mut cat = connect_json(&server, "z", "cat");
    send_json(&mut cat, json!({"type": "dm", "to": "dan", "content": "darn"}));
    assert_eq!(recv_event(&mut cat, "joined")["room"], "dm:cat,dan");
    assert_eq!(recv_event(&mut cat, "message")["content"], "****");
    assert_eq!(moderated(&server, "mask", "blocklist"), 5.0);
    assert_eq!(moderated(&server, "reject", "blocklist"), 0.0);
}

#[test]
fn the_blocklist_is_read_again_on_sighup_under_traffic_and_a_bad_file_keeps_it() {
    let (dir, list) = blocklist("alpha\n");
    let server = Server::start_logged(&dir.path().join("db"), &["--blocklist", list.to_str().expect("utf-8")]);
    let mut ann = connect_json(&server, "live", "ann");
    let mut bob = connect_json(&server, "live", "bob");
    let mut n = 0;
    // One round of live traffic, then `word` in a message: whether it was refused.
    let mut refused = |word: &str| {
        n += 1;
        // Paced under the rate limit (20 messages/s per connection).
        std::thread::sleep(std::time::Duration::from_millis(60));
        say(&mut bob, "live", &format!("chatter {n}"), "b");
        assert_eq!(recv_event(&mut ann, "message")["content"], format!("chatter {n}"));
        assert_eq!(recv_event(&mut bob, "message")["content"], format!("chatter {n}"));
        say(&mut ann, "live", &format!("{word} {n}"), "a");
        let event = recv_json(&mut ann);
        match event["type"].as_str() {
            Some("error") => event["code"] == "content_blocked",
            Some("message") => {
                assert_eq!(recv_event(&mut bob, "message")["content"], event["content"]);
                false
            }
            _ => panic!("unexpected {event}"),
        }
    };
    assert!(refused("alpha") && !refused("beta"));
    std::fs::write(&list, "beta\n").expect("write");
    server.signal("HUP");
    wait_until("the new list", || refused("beta"));
    assert!(!refused("alpha"), "the new list replaced the old one");
    // A bad file: the list in force is kept, and the log names the file and the reason.
    std::fs::write(&list, "ok\nbad*entry\n").expect("write");
    server.signal("HUP");
    wait_until("the refusal logged", || server.log_text().contains("blocklist in force is kept"));
    let log = server.log_text();
    assert!(log.contains(&format!("({}): line 2", list.display())), "{log}");
    assert!(refused("beta") && !refused("ok"));
}

#[test]
fn a_bad_blocklist_stops_the_start_naming_the_file_and_the_reason() {
    let (dir, list) = blocklist("fine\n*\n");
    let mut cmd = roomcast();
    cmd.args(["--addr", "127.0.0.1:0", "--no-persist", "--blocklist"]).arg(&list);
    let line = start_failure(&run(cmd));
    assert_eq!(
        line,
        format!(
            "roomcast: cannot load the blocklist ({}): line 2: an entry needs something besides `*`",
            list.display()
        )
    );
    let missing = dir.path().join("missing.txt");
    let mut cmd = roomcast();
    cmd.args(["--addr", "127.0.0.1:0", "--no-persist", "--blocklist"]).arg(&missing);
    let line = start_failure(&run(cmd));
    assert!(line.starts_with(&format!("roomcast: cannot read the blocklist ({}): ", missing.display())), "{line}");
}

#[test]
fn the_fourth_identical_message_in_the_window_is_refused() {
    let server = Server::start(&["--api-key", KEY]);
    let mut ann = connect_json(&server, "r1", "ann");
    let mut ann_elsewhere = connect_json(&server, "r2", "ann");
    let mut bob = connect_json(&server, "r1", "bob");
    // Sent by `from`, seen by both.
    let delivered = |from: &mut Client, to: &mut Client, content: &str| {
        say(from, "r1", content, "ok");
        assert_eq!(recv_event(to, "message")["content"], content);
        assert_eq!(recv_event(from, "message")["content"], content);
    };
    for content in ["Buy now!", "buy   NOW!", " buy now! "] {
        delivered(&mut ann, &mut bob, content);
    }
    say(&mut ann, "r1", "BUY NOW!", "b3");
    assert_eq!(refusal(&mut ann), ("repeated_content".into(), json!("b3")));
    // The same user in another room, on another connection: refused too.
    say(&mut ann_elsewhere, "r2", "buy now!", "b4");
    assert_eq!(refusal(&mut ann_elsewhere), ("repeated_content".into(), json!("b4")));
    // Other content, and another user, pass; the other user's fourth is refused in turn.
    delivered(&mut ann, &mut bob, "buy later");
    for _ in 0..3 {
        delivered(&mut bob, &mut ann, "buy now!");
    }
    say(&mut bob, "r1", "buy now!", "b5");
    assert_eq!(refusal(&mut bob), ("repeated_content".into(), json!("b5")));
    // The server API is not counted: a backend may repeat itself.
    for _ in 0..5 {
        let (status, body) = post(&server, "/api/rooms/r1/messages", &json!({"user": "ann", "content": "buy now!"}));
        assert_eq!(status, 201, "{body}");
    }
    // Connections without a nickname are not one user.
    let mut watcher = connect_json(&server, "r3", "watcher");
    let mut anon: Vec<Client> = (0..5).map(|_| connect_ws(&server, "/ws/chat?room=r3")).collect();
    for ws in &mut anon {
        send_text(ws, "same words");
    }
    for _ in 0..5 {
        assert_eq!(recv_event(&mut watcher, "message")["content"], "same words");
    }
    assert_eq!(moderated(&server, "reject", "repeat"), 3.0);
}
