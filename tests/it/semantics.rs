//! Chat semantics (PROTOCOL.md "Edit and delete", "Read markers", "Direct messages", and typing):
//! only the author edits or deletes, everyone in the room sees it live, history shows each message
//! as it is now, a resume replays what happened while away, text clients are untouched, read markers
//! follow a user across connections, direct messages stay between their two users.

use serde_json::{Value, json};

use crate::support::api::{KEY, call, keyed};
use crate::support::*;

/// Posts `content` as `ws` in `room` and returns the echoed message's id.
fn post(ws: &mut Client, room: &str, content: &str) -> u64 {
    send_json(ws, json!({"type": "message", "room": room, "content": content}));
    recv_event(ws, "message")["id"].as_u64().expect("id")
}

fn history(server: &Server, room: &str) -> Vec<Value> {
    let (status, _, body) = http_get(server, &format!("/rooms/{room}/messages?limit=50"));
    assert_eq!(status, 200);
    let rows: Value = serde_json::from_slice(&body).expect("json");
    rows.as_array().expect("array").clone()
}

#[test]
fn the_author_edits_and_deletes_and_everyone_sees_it_live_and_in_history() {
    let server = Server::start(&[]);
    let mut ann = connect_json(&server, "r", "ann");
    let mut bob = connect_json(&server, "r", "bob");
    let mut text = connect_ws(&server, "/ws/chat?room=r");
    let id = post(&mut ann, "r", "helo");
    assert_eq!(recv_event(&mut bob, "message")["id"], id);
    assert_eq!(recv_text(&mut text), "ann: helo");

    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": id, "content": "hello", "client_id": "e1"}));
    let mut edit_seq = 0;
    for ws in [&mut ann, &mut bob] {
        let edited = recv_event(ws, "edited");
        assert_eq!((edited["id"].as_u64(), edited["content"].as_str()), (Some(id), Some("hello")), "{edited}");
        assert!(edited["seq"].as_u64() > Some(id), "an edit takes a later place in the order: {edited}");
        assert!(edited["edited_ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{edited}");
        edit_seq = edited["seq"].as_u64().expect("seq");
    }
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": edit_seq, "content": "?"}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "not_found", "an edit's own seq is no message");
    let rows = history(&server, "r");
    assert_eq!(rows.len(), 1, "history lists messages, not edits: {rows:?}");
    assert_eq!((rows[0]["content"].as_str(), rows[0]["edited_ts"].is_string()), (Some("hello"), true));

    // Someone else's message, an unknown id, an id of another room: refused, nothing changes.
    send_json(&mut bob, json!({"type": "edit", "room": "r", "id": id, "content": "mine now", "client_id": "x"}));
    let err = recv_event(&mut bob, "error");
    assert_eq!((err["code"].as_str(), err["client_id"].as_str()), (Some("forbidden"), Some("x")), "{err}");
    send_json(&mut bob, json!({"type": "delete", "room": "r", "id": id}));
    assert_eq!(recv_event(&mut bob, "error")["code"], "forbidden");
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": id + 1000, "content": "?"}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "not_found");
    send_json(&mut ann, json!({"type": "join", "room": "other"}));
    recv_event(&mut ann, "joined");
    send_json(&mut ann, json!({"type": "delete", "room": "other", "id": id}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "not_found", "an id of another room is not found");
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": id, "content": ""}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "empty_message");
    send_json(&mut ann, json!({"type": "edit", "room": "nowhere", "id": id, "content": "x"}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "not_joined");

    send_json(&mut ann, json!({"type": "delete", "room": "r", "id": id}));
    for ws in [&mut ann, &mut bob] {
        let deleted = recv_event(ws, "deleted");
        assert_eq!(deleted["id"].as_u64(), Some(id), "{deleted}");
    }
    let rows = history(&server, "r");
    assert_eq!(rows[0]["deleted"], true, "{rows:?}");
    assert!(rows[0].get("content").is_none() && rows[0].get("user").is_none(), "a tombstone: {rows:?}");
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": id, "content": "back"}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "not_found", "a deleted message cannot be edited");

    // The text client saw none of it: its next frame is the next message.
    post(&mut ann, "r", "after");
    assert_eq!(recv_text(&mut text), "ann: after");

    // The words are gone from the file, not hidden.
    let (_, dir) = server.stop();
    let conn = rusqlite::Connection::open(dir.path().join("roomcast.db")).expect("open db");
    let found: i64 =
        conn.query_row("SELECT COUNT(*) FROM messages WHERE content LIKE '%hel%'", [], |r| r.get(0)).expect("count");
    assert_eq!(found, 0, "the deleted message's content and its edit's are removed");
}

#[test]
fn a_resume_replays_edits_and_deletes_made_while_away_in_order_and_history_survives_a_restart() {
    let server = Server::start(&[]);
    let mut ann = connect_json(&server, "r", "ann");
    let first = post(&mut ann, "r", "one");
    let second = post(&mut ann, "r", "two");
    let seen = second;
    // Away from here on.
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": first, "content": "one (fixed)"}));
    let edit_seq = recv_event(&mut ann, "edited")["seq"].as_u64().expect("seq");
    send_json(&mut ann, json!({"type": "delete", "room": "r", "id": second}));
    let delete_seq = recv_event(&mut ann, "deleted")["seq"].as_u64().expect("seq");
    let third = post(&mut ann, "r", "three");

    let mut back = connect_ws(&server, &format!("/ws?format=json&room=r&nick=bob&since={seen}"));
    recv_event(&mut back, "welcome");
    recv_event(&mut back, "joined");
    let edited = recv_event(&mut back, "edited");
    assert_eq!((edited["id"].as_u64(), edited["seq"].as_u64()), (Some(first), Some(edit_seq)), "{edited}");
    assert_eq!(edited["content"], "one (fixed)");
    let deleted = recv_event(&mut back, "deleted");
    assert_eq!((deleted["id"].as_u64(), deleted["seq"].as_u64()), (Some(second), Some(delete_seq)));
    assert_eq!(recv_event(&mut back, "message")["id"], third, "then the newer message, once");

    let (_, dir) = server.stop();
    let server = Server::start_in(dir, &[]);
    let rows = history(&server, "r");
    let state: Vec<(u64, Option<&str>, bool)> = rows
        .iter()
        .map(|r| (r["id"].as_u64().unwrap_or(0), r["content"].as_str(), r["deleted"].as_bool().unwrap_or(false)))
        .collect();
    assert_eq!(
        state,
        vec![(third, Some("three"), false), (second, None, true), (first, Some("one (fixed)"), false)],
        "history after a restart shows each message as it is now, newest first"
    );
    let mut ann = connect_json(&server, "r", "ann");
    send_json(&mut ann, json!({"type": "history", "room": "r"}));
    let page = recv_event(&mut ann, "history");
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3, "{page}");
    assert!(messages.iter().any(|m| m["id"] == first && m["edited_ts"].is_string()), "{page}");
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": third, "content": "three!"}));
    assert_eq!(recv_event(&mut ann, "edited")["content"], "three!", "a message from before the restart is editable");
}

#[test]
fn an_edit_of_ones_latest_message_takes_its_place_when_sent_and_another_tab_of_the_user_may_edit_too() {
    let server = Server::start(&[]);
    let mut ann = connect_json(&server, "r", "ann");
    let mut tab = connect_json(&server, "r", "ann");
    let id = post(&mut ann, "r", "one");
    assert_eq!(recv_event(&mut tab, "message")["id"], id);
    // The fast path: published at once, so before the message sent right after it.
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": id, "content": "one!", "client_id": "e"}));
    send_json(&mut ann, json!({"type": "message", "room": "r", "content": "two"}));
    let edited = recv_event(&mut ann, "edited");
    assert_eq!((edited["content"].as_str(), edited["client_id"].as_str()), (Some("one!"), Some("e")), "{edited}");
    let next = recv_event(&mut ann, "message");
    assert!(edited["seq"].as_u64() < next["id"].as_u64(), "the edit is ordered when sent: {edited} {next}");
    // The same user's other connection did not send it: its edit is checked in the store, and allowed.
    send_json(&mut tab, json!({"type": "edit", "room": "r", "id": id, "content": "one (tab)"}));
    for ws in [&mut tab, &mut ann] {
        loop {
            let event = recv_json(ws);
            if event["type"] == "edited" && event["content"] == "one (tab)" {
                break;
            }
        }
    }
    // The same validations as the store-checked path.
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": id, "content": "", "client_id": "c"}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "empty_message");
    let big = "x".repeat(20_000);
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": id, "content": big}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "message_too_large");
    let rows = history(&server, "r");
    assert!(rows.iter().any(|r| r["id"] == id && r["content"] == "one (tab)"), "{rows:?}");
}

#[test]
fn a_message_deleted_by_its_sender_another_tab_or_the_api_or_while_away_cannot_be_edited() {
    let server = keyed(&[]);
    let mut ann = connect_json(&server, "r", "ann");
    let mut tab = connect_json(&server, "r", "ann");
    let refused = |ws: &mut Client, id: u64, why: &str| {
        send_json(ws, json!({"type": "edit", "room": "r", "id": id, "content": "back"}));
        assert_eq!(recv_event(ws, "error")["code"], "not_found", "{why}");
    };
    // Deleted by the connection that sent it.
    let own = post(&mut ann, "r", "a");
    send_json(&mut ann, json!({"type": "delete", "room": "r", "id": own}));
    assert_eq!(recv_event(&mut ann, "deleted")["id"].as_u64(), Some(own));
    refused(&mut ann, own, "deleted by its sender");
    // Deleted by another connection of the user.
    let by_tab = post(&mut ann, "r", "b");
    send_json(&mut tab, json!({"type": "delete", "room": "r", "id": by_tab}));
    assert_eq!(recv_event(&mut ann, "deleted")["id"].as_u64(), Some(by_tab));
    refused(&mut ann, by_tab, "deleted from another tab");
    // Redacted by the server API.
    let by_api = post(&mut ann, "r", "c");
    let path = format!("/api/rooms/r/messages/{by_api}");
    let (status, _, body) = call(&server, "DELETE", &path, Some(KEY), None, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(recv_event(&mut ann, "deleted")["id"].as_u64(), Some(by_api));
    refused(&mut ann, by_api, "redacted by the API");
    // Redacted while the sender was out of the room (it receives no `deleted` then).
    let away = post(&mut ann, "r", "d");
    send_json(&mut ann, json!({"type": "leave", "room": "r"}));
    recv_event(&mut ann, "left");
    let path = format!("/api/rooms/r/messages/{away}");
    let (status, _, body) = call(&server, "DELETE", &path, Some(KEY), None, "");
    assert_eq!(status, 200, "{body}");
    send_json(&mut ann, json!({"type": "join", "room": "r"}));
    recv_event(&mut ann, "joined");
    refused(&mut ann, away, "redacted while away");
}

#[test]
fn with_retention_an_edit_never_refers_to_a_pruned_message() {
    let server = Server::start(&["--retain-per-room", "2"]);
    let mut ann = connect_json(&server, "r", "ann");
    let first = post(&mut ann, "r", "first");
    for n in 0..4 {
        post(&mut ann, "r", &format!("m{n}"));
    }
    wait_until("the first message is pruned", || history(&server, "r").iter().all(|r| r["id"] != first));
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": first, "content": "?"}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "not_found", "a pruned message is not edited");
    send_json(&mut ann, json!({"type": "delete", "room": "r", "id": first}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "not_found", "nor deleted");
}

#[test]
fn without_history_edits_and_deletes_are_refused_with_a_code() {
    let server = Server::start(&["--no-persist"]);
    let mut ann = connect_json(&server, "r", "ann");
    let id = post(&mut ann, "r", "x");
    send_json(&mut ann, json!({"type": "edit", "room": "r", "id": id, "content": "y", "client_id": "c"}));
    let err = recv_event(&mut ann, "error");
    assert_eq!((err["code"].as_str(), err["client_id"].as_str()), (Some("history_unavailable"), Some("c")));
    send_json(&mut ann, json!({"type": "delete", "room": "r", "id": id}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "history_unavailable");
}

#[test]
fn typing_reaches_the_others_once_per_two_seconds_and_never_text_clients() {
    let server = Server::start(&[]);
    let mut ann = connect_json(&server, "r", "ann");
    let mut bob = connect_json(&server, "r", "bob");
    let mut text = connect_ws(&server, "/ws/chat?room=r");
    // A key press each: one is forwarded per 2 s, the rest are dropped unanswered.
    let started = std::time::Instant::now();
    for _ in 0..20 {
        send_json(&mut ann, json!({"type": "typing", "room": "r"}));
    }
    let id = post(&mut ann, "r", "done typing");
    // Bound from the time the presses took (a stalled machine may spread them over two windows).
    let allowed = 1 + started.elapsed().as_secs() / 2 + 1;
    let mut notices = 0;
    loop {
        let event = recv_json(&mut bob);
        match event["type"].as_str() {
            Some("typing") => {
                assert_eq!((event["room"].as_str(), event["user"].as_str()), (Some("r"), Some("ann")), "{event}");
                notices += 1;
            }
            Some("message") => {
                assert_eq!(event["id"], id);
                break;
            }
            _ => {}
        }
    }
    assert!((1..=allowed).contains(&notices), "{notices} typing notices for 20 presses (at most {allowed})");
    // ann never got her own notice back, nor an error for the dropped ones: her next event is the echo
    // (read by `post`), and the text client saw only the message.
    assert_eq!(recv_text(&mut text), "ann: done typing");
    send_json(&mut ann, json!({"type": "typing", "room": "elsewhere"}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "not_joined");
}

#[test]
fn read_markers_reach_every_connection_of_the_user_only_go_up_and_come_back_after_a_join() {
    let server = Server::start(&[]);
    let mut phone = connect_json(&server, "r", "ann");
    let mut laptop = connect_json(&server, "r", "ann");
    let mut bob = connect_json(&server, "r", "bob");
    let first = post(&mut bob, "r", "one");
    let second = post(&mut bob, "r", "two");
    let third = post(&mut bob, "r", "three");
    for ws in [&mut phone, &mut laptop] {
        for id in [first, second, third] {
            assert_eq!(recv_event(ws, "message")["id"], id);
        }
    }
    send_json(&mut phone, json!({"type": "read", "room": "r", "id": second}));
    for ws in [&mut phone, &mut laptop] {
        let read = recv_event(ws, "read");
        assert_eq!((read["room"].as_str(), read["id"].as_u64()), (Some("r"), Some(second)), "{read}");
        assert!(read["seq"].as_u64() > Some(third), "the marker's own place in the order: {read}");
    }
    // Older than what was sent: ignored. Beyond the room's last id, or a room not joined: errors.
    send_json(&mut phone, json!({"type": "read", "room": "r", "id": first}));
    send_json(&mut phone, json!({"type": "read", "room": "r", "id": third + 1_000_000}));
    assert_eq!(recv_event(&mut phone, "error")["code"], "invalid_parameter", "the older marker sent nothing");
    send_json(&mut phone, json!({"type": "read", "room": "nope", "id": 1}));
    assert_eq!(recv_event(&mut phone, "error")["code"], "not_joined");
    // Bob never sees ann's marker: his next event is the next message.
    let fourth = post(&mut phone, "r", "four");
    assert_eq!(recv_event(&mut bob, "message")["id"], fourth);

    // A new connection of ann's, after a restart, gets her marker and the unread count in `joined`.
    let (_, dir) = server.stop();
    let server = Server::start_in(dir, &[]);
    let mut tablet = connect_ws(&server, "/ws?format=json&room=r&nick=ann");
    let welcome = recv_json(&mut tablet);
    assert_eq!((welcome["type"].as_str(), &welcome["dm_rooms"]), (Some("welcome"), &json!([])), "{welcome}");
    let joined = recv_json(&mut tablet);
    assert_eq!(joined["type"], "joined", "first after welcome: {joined}");
    assert_eq!(
        (joined["read_id"].as_u64(), joined["unread"].as_u64()),
        (Some(second), Some(2)),
        "three and four: {joined}"
    );
    // The same over REST, for the user named (the token's user with auth on).
    let (status, _, body) = http_get(&server, "/rooms/r/read?nick=ann");
    assert_eq!(status, 200);
    let marker: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(marker, json!({"room": "r", "id": second, "unread": 2}));
    let (status, _, body) = http_get(&server, "/rooms/r/read?nick=nobody");
    assert_eq!((status, serde_json::from_slice::<Value>(&body).expect("json")["id"].as_u64()), (200, Some(0)));
    assert_eq!(http_get(&server, "/rooms/r/read").0, 400, "whose marker?");
    let mut carl = connect_ws(&server, "/ws?format=json&room=r&nick=carl");
    recv_event(&mut carl, "welcome");
    let joined = recv_json(&mut carl);
    assert_eq!((joined["read_id"].as_u64(), joined.get("unread")), (Some(0), None), "no marker yet: {joined}");
    // Anonymous connections share one name: no read state for them.
    let mut anonymous = connect_ws(&server, "/ws?format=json&room=r");
    let welcome = recv_event(&mut anonymous, "welcome");
    assert!(welcome.get("dm_rooms").is_none(), "{welcome}");
    let joined = recv_json(&mut anonymous);
    assert!(joined.get("read_id").is_none(), "{joined}");
    drop(tablet.close(None));
}

#[test]
fn direct_messages_reach_only_their_two_users_and_are_listed_after_welcome() {
    use crate::support::tokens::{self, SECRET};
    let server = Server::start(&["--jwt-secret", SECRET]);
    let as_user = |name: &str, room: &str| {
        let token = tokens::user(name, None, None);
        connect_ws(&server, &format!("/ws?format=json&room={room}&token={token}"))
    };
    let mut ann = as_user("ann", "lobby");
    recv_event(&mut ann, "welcome");
    recv_event(&mut ann, "joined");
    // Bob is online already (in another room): he is told at once.
    let mut bob_early = as_user("bob", "lobby");
    recv_event(&mut bob_early, "welcome");
    recv_event(&mut bob_early, "joined");
    send_json(&mut ann, json!({"type": "dm", "to": "bob", "content": "psst", "client_id": "d1"}));
    let joined = recv_event(&mut ann, "joined");
    assert_eq!(joined["room"], "dm:ann,bob", "the pair's room, names sorted, joined on the first dm");
    let echo = recv_event(&mut ann, "message");
    assert_eq!((echo["room"].as_str(), echo["content"].as_str()), (Some("dm:ann,bob"), Some("psst")));
    send_json(&mut ann, json!({"type": "dm", "to": "bob", "content": "again"}));
    assert_eq!(recv_event(&mut ann, "message")["content"], "again", "no second join");
    let told = recv_event(&mut bob_early, "dm_rooms");
    assert_eq!(told["rooms"], json!(["dm:ann,bob"]), "the conversation announced to bob's open connection");
    send_json(&mut ann, json!({"type": "dm", "to": "ann", "content": "me"}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "invalid_parameter", "not to oneself");
    send_json(&mut ann, json!({"type": "dm", "to": "", "content": "x"}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "invalid_nick");

    // A third user can neither join, upgrade into, nor read it.
    let mut carl = as_user("carl", "lobby");
    recv_event(&mut carl, "welcome");
    recv_event(&mut carl, "joined");
    send_json(&mut carl, json!({"type": "join", "room": "dm:ann,bob"}));
    assert_eq!(recv_event(&mut carl, "error")["code"], "forbidden");
    send_json(&mut carl, json!({"type": "join", "room": "dm:bob,ann"}));
    assert_eq!(recv_event(&mut carl, "error")["code"], "invalid_room", "unsorted: no such room");
    let token = tokens::user("carl", None, None);
    let refused = try_connect_ws(&server, &format!("/ws?format=json&room=dm:ann,bob&token={token}"));
    assert!(refused.is_err_and(|e| e.contains("403")), "the upgrade is refused");
    let mut raw = Raw::connect(&server);
    raw.send(
        format!("GET /rooms/dm:ann,bob/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(raw.read_response().0, 403, "nor read its history");

    // Bob, connecting later, is told about the room and finds the messages in it.
    let mut bob = as_user("bob", "lobby");
    let welcome = recv_json(&mut bob);
    assert_eq!(
        (welcome["type"].as_str(), &welcome["dm_rooms"]),
        (Some("welcome"), &json!(["dm:ann,bob"])),
        "{welcome}"
    );
    recv_event(&mut bob, "joined");
    send_json(&mut bob, json!({"type": "history", "room": "dm:ann,bob"}));
    let page = recv_event(&mut bob, "history");
    let contents: Vec<&str> =
        page["messages"].as_array().expect("messages").iter().filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(contents, ["again", "psst"], "newest first: {page}");
    send_json(&mut carl, json!({"type": "history", "room": "dm:ann,bob"}));
    assert_eq!(recv_event(&mut carl, "error")["code"], "forbidden");
}

#[test]
fn a_join_that_waits_for_the_read_marker_misses_nothing_published_meanwhile() {
    let server = Server::start(&["--rate-limit", "0"]);
    let mut ann = connect_json(&server, "r", "ann");
    let first = post(&mut ann, "r", "first");
    send_json(&mut ann, json!({"type": "read", "room": "r", "id": first}));
    recv_event(&mut ann, "read");
    // Bob posts without pause while ann's second connection joins (its `joined` waits for the store).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, mut bob) = (std::sync::Arc::clone(&stop), connect_json(&server, "r", "bob"));
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for n in 0..400 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) && n >= 50 {
                    break;
                }
                ids.push(post(&mut bob, "r", &format!("m{n}")));
            }
            ids
        })
    };
    let mut laptop = connect_ws(&server, "/ws?format=json&room=r&nick=ann");
    recv_event(&mut laptop, "welcome");
    let joined = recv_json(&mut laptop);
    assert_eq!(joined["type"], "joined", "joined before any live frame: {joined}");
    assert_eq!(joined["read_id"].as_u64(), Some(first), "{joined}");
    let last_id = joined["last_id"].as_u64().expect("last_id");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let posted = writer.join().expect("writer");
    let expected: Vec<u64> = posted.into_iter().filter(|id| *id > last_id).collect();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.push(recv_event(&mut laptop, "message")["id"].as_u64().expect("id"));
    }
    assert_eq!(got, expected, "every message after last_id, in order, once");
}
