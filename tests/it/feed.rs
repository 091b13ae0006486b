//! The change feed (`GET /api/feed`, docs/API.md) over a raw TCP connection: refusals, history then
//! live across rooms with edits and deletes as their own events, a consumer that disconnects under
//! live traffic and resumes with `Last-Event-ID` (every event exactly once, compared with a full
//! read of the store at the end), a consumer that stops reading (closed, the server fine), and a
//! resume across a restart, with the keepalive comment of an idle stream, and the consumer limit;
//! moderation decisions as `moderation` events (the content filter's and the API's, resumed like the
//! rest), and in cluster mode on the feed of a node that applied a decision made on another.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::support::api::{KEY, call, keyed, post};
use crate::support::*;

/// One Server-Sent Event of the feed.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    pos: u64,
    kind: String,
    data: Value,
}

/// A consumer streaming the feed.
struct Consumer {
    raw: Raw,
}

impl Consumer {
    /// `GET /api/feed{query}` with the key and `extra` headers; panics unless it streams.
    fn open(server: &Server, query: &str, extra: &str) -> Consumer {
        let mut raw = Raw::connect(server);
        let request = format!(
            "GET /api/feed{query} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY}\r\n{extra}\r\n",
            server.addr
        );
        raw.send(request.as_bytes());
        let (status, head, _) = raw.read_response_head();
        assert_eq!(status, 200, "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
        Consumer { raw }
    }

    /// The next event, skipping keepalive comments; `None` when the server closes.
    fn next(&mut self) -> Option<Event> {
        loop {
            let block = self.raw.read_through(b"\n\n")?;
            if let Some(event) = parse(&block) {
                return Some(event);
            }
        }
    }

    /// The next block as it is (an event or a comment).
    fn next_block(&mut self) -> Option<String> {
        self.raw.read_through(b"\n\n").map(|b| String::from_utf8(b).expect("utf-8"))
    }

    fn take(&mut self, n: usize) -> Vec<Event> {
        (0..n).map(|i| self.next().unwrap_or_else(|| panic!("stream ended after {i} of {n}"))).collect()
    }
}

fn parse(block: &[u8]) -> Option<Event> {
    let text = std::str::from_utf8(block).expect("utf-8");
    let (mut pos, mut kind, mut data) = (None, None, None);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            pos = Some(v.parse::<u64>().expect("numeric id"));
        } else if let Some(v) = line.strip_prefix("event: ") {
            kind = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            assert!(data.is_none(), "one data line per event: {text}");
            data = Some(serde_json::from_str::<Value>(v).expect("JSON data"));
        } else {
            assert!(line.starts_with(':') || line.is_empty(), "unexpected line {line:?} in {text:?}");
        }
    }
    let event = Event { pos: pos?, kind: kind.expect("event:"), data: data.expect("data:") };
    if event.kind == "moderation" {
        // The webhooks' moderation event (docs/WEBHOOKS.md) without `id`, `order` and `node`.
        assert!(event.data["type"].is_string() && event.data["at_ms"].is_i64(), "{text}");
        assert!(event.data.get("id").is_none() && event.data.get("order").is_none(), "{text}");
    } else {
        assert_eq!(event.data["type"], event.kind.as_str(), "the event type is the JSON's");
    }
    Some(event)
}

fn publish(server: &Server, messages: &[(&str, String)]) -> Vec<u64> {
    let messages: Vec<Value> =
        messages.iter().map(|(room, content)| json!({"room": room, "user": "bot", "content": content})).collect();
    let (status, body) = post(server, "/api/publish", &json!({ "messages": messages }));
    assert_eq!(status, 201, "{body}");
    body["ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id")).collect()
}

fn feed_status(server: &Server, key: Option<&str>, query: &str, extra: &str) -> (u16, Value) {
    let (status, _, body) = call(server, "GET", &format!("/api/feed{query}"), key, None, extra);
    (status, body)
}

#[test]
fn the_feed_needs_the_api_and_a_key_and_a_valid_cursor() {
    let off = Server::start(&[]);
    assert_eq!(feed_status(&off, Some(KEY), "", "").0, 404, "API off");
    let server = keyed(&[]);
    let (status, body) = feed_status(&server, None, "", "");
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    assert_eq!(feed_status(&server, Some("wrong-key"), "", "").0, 401);
    let (status, body) = feed_status(&server, Some(KEY), "?after_id=x", "");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_parameter")), "{body}");
    let (status, body) = feed_status(&server, Some(KEY), "", "Last-Event-ID: -3\r\n");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_parameter")), "{body}");
    let (status, _, _) = call(&server, "POST", "/api/feed", Some(KEY), None, "");
    assert_eq!(status, 405);
    let no_store = keyed(&["--no-persist"]);
    let (status, body) = feed_status(&no_store, Some(KEY), "", "");
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("history_unavailable")), "{body}");
}

#[test]
fn history_then_live_across_rooms_with_edits_and_deletes_as_their_own_events() {
    let server = keyed(&[]);
    let ids = publish(&server, &[("fa", "one".into()), ("fb", "two".into()), ("fc", "three".into())]);
    let mut author = connect_json(&server, "fa", "bot");
    send_json(&mut author, json!({"type": "edit", "room": "fa", "id": ids[0], "content": "one, fixed"}));
    recv_event(&mut author, "edited");
    let (status, _, body) = call(&server, "DELETE", &format!("/api/rooms/fb/messages/{}", ids[1]), Some(KEY), None, "");
    assert_eq!(status, 200, "{body}");
    // The delete is committed (history reads through the store) before the feed reads its page.
    wait_until("the delete is stored", || {
        let (_, _, body) = http_get(&server, "/rooms/fb/messages");
        serde_json::from_slice::<Value>(&body).is_ok_and(|page| page[0]["deleted"] == true)
    });

    let mut feed = Consumer::open(&server, "?after_id=0", "");
    let mut seen = feed.take(6);
    let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["message", "message", "message", "edited", "deleted", "moderation"], "{seen:?}");
    // The API's delete is also a moderation decision, after the event it made.
    let decision = seen.pop().expect("six");
    assert_eq!((&decision.data["type"], &decision.data["message"]), (&json!("message_deleted"), &json!(ids[1])));
    let rooms: Vec<&str> = seen.iter().map(|e| e.data["room"].as_str().expect("room")).collect();
    assert_eq!(rooms, ["fa", "fb", "fc", "fa", "fb"]);
    assert_eq!(seen[3].data["id"].as_u64(), Some(ids[0]), "the edit names its message");
    assert_eq!(seen[3].data["content"], "one, fixed");
    assert_eq!(seen[4].data["id"].as_u64(), Some(ids[1]), "the delete names its message");
    // A page reads a message as it is when read: the deleted one without its words.
    assert_eq!(seen[1].data["deleted"], true, "{:?}", seen[1]);

    // Live: published after the stream caught up, in order, after the history.
    let live = publish(&server, &[("fc", "four".into()), ("fa", "five".into())]);
    let more = feed.take(2);
    assert_eq!(more.iter().map(|e| e.data["id"].as_u64().expect("id")).collect::<Vec<_>>(), live);
    assert_eq!(more[0].data["content"], "four");
    let all: Vec<u64> = seen.iter().chain(&more).map(|e| e.pos).collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "positions increase: {all:?}");
}

#[test]
fn a_consumer_that_disconnects_under_live_traffic_resumes_with_every_event_exactly_once() {
    let server = keyed(&[]);
    const PER_ROOM: usize = 60;
    let rooms = ["r0", "r1", "r2"];
    let posted: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let writers: Vec<_> = rooms
            .iter()
            .map(|room| {
                let server = &server;
                scope.spawn(move || {
                    (0..PER_ROOM)
                        .map(|i| {
                            let (status, body) = post(
                                server,
                                &format!("/api/rooms/{room}/messages"),
                                &json!({"user": "bot", "content": format!("{room}-{i}")}),
                            );
                            assert_eq!(status, 201, "{body}");
                            body["id"].as_u64().expect("id")
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        // Read while they publish, dropping the connection twice and resuming from the last id.
        let mut got: Vec<Event> = Vec::new();
        let mut feed = Consumer::open(&server, "", "");
        got.extend(feed.take(20));
        drop(feed);
        let mut feed = Consumer::open(&server, "", &format!("Last-Event-ID: {}\r\n", got[got.len() - 1].pos));
        got.extend(feed.take(50));
        drop(feed);
        // after_id is ignored when Last-Event-ID is given.
        let extra = format!("Last-Event-ID: {}\r\n", got[got.len() - 1].pos);
        let mut feed = Consumer::open(&server, "?after_id=0", &extra);
        got.extend(feed.take(rooms.len() * PER_ROOM - got.len()));
        let posted: Vec<Vec<u64>> = writers.into_iter().map(|w| w.join().expect("writer")).collect();

        let positions: Vec<u64> = got.iter().map(|e| e.pos).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "no duplicate, in order: {positions:?}");
        let ids: Vec<u64> = got.iter().map(|e| e.data["id"].as_u64().expect("id")).collect();
        let unique: HashSet<u64> = ids.iter().copied().collect();
        let expected: HashSet<u64> = posted.iter().flatten().copied().collect();
        assert_eq!(unique.len(), ids.len(), "no event twice");
        assert_eq!(unique, expected, "every published message, no gap");
        for (room, room_ids) in rooms.iter().zip(&posted) {
            let streamed: Vec<u64> =
                got.iter().filter(|e| e.data["room"] == *room).map(|e| e.data["id"].as_u64().expect("id")).collect();
            assert_eq!(&streamed, room_ids, "room {room} in its id order");
        }
        // The store read whole at the end is exactly what the resumed consumer saw.
        let mut whole = Consumer::open(&server, "?after_id=0", "");
        assert_eq!(whole.take(got.len()), got);
        posted
    });
    assert_eq!(posted.iter().map(Vec::len).sum::<usize>(), rooms.len() * PER_ROOM);
}

#[test]
fn a_consumer_that_stops_reading_is_closed_and_the_server_stays_healthy() {
    let server = keyed(&["--outbuf-grace", "1", "--max-message", "65536", "--max-batch-bytes", "8388608"]);
    let content = "x".repeat(60_000);
    for _ in 0..5 {
        let batch: Vec<(&str, String)> =
            (0..100).map(|i| (if i % 2 == 0 { "s0" } else { "s1" }, content.clone())).collect();
        publish(&server, &batch);
    }
    // ~30 MB of events: more than the kernel's socket buffers hold.
    let mut stalled = Consumer::open(&server, "", "");
    wait_until("the stalled consumer is closed as slow", || {
        let (_, _, body) = http_get(&server, "/metrics");
        String::from_utf8_lossy(&body).lines().any(|l| l == "roomcast_feed_closed_slow_total 1")
    });
    let (status, _, _) = http_get(&server, "/healthz");
    assert_eq!(status, 200);
    let mut fresh = Consumer::open(&server, "", "");
    assert_eq!(fresh.next().expect("an event").kind, "message", "a new consumer streams");
    drop(fresh);
    assert!(stalled.raw.reads_eof(), "the stalled stream ends");
    wait_until("both consumers are gone", || {
        let (_, _, body) = http_get(&server, "/metrics");
        String::from_utf8_lossy(&body).lines().any(|l| l == "roomcast_feed_consumers 0")
    });
}

#[test]
fn a_consumer_resumes_across_a_restart_and_an_idle_stream_gets_keepalives() {
    let server = keyed(&[]);
    let before = publish(&server, &[("k0", "a".into()), ("k1", "b".into()), ("k0", "c".into())]);
    let mut feed = Consumer::open(&server, "", "");
    let seen = feed.take(3);
    assert_eq!(seen.iter().map(|e| e.data["id"].as_u64().expect("id")).collect::<Vec<_>>(), before);
    drop(feed);
    let (status, dir) = server.stop();
    assert!(status.success(), "{status}");

    // A short handshake timeout: the stream outlives it (no request deadline while streaming).
    let server = Server::start_in(dir, &["--api-key", KEY, "--handshake-timeout", "2"]);
    let after = publish(&server, &[("k1", "d".into()), ("k2", "e".into())]);
    let mut feed = Consumer::open(&server, "", &format!("Last-Event-ID: {}\r\n", seen[2].pos));
    let resumed = feed.take(2);
    assert_eq!(resumed.iter().map(|e| e.data["id"].as_u64().expect("id")).collect::<Vec<_>>(), after);
    assert!(resumed[0].pos > seen[2].pos, "positions continue after the restart");
    // Nothing new: within the read patience (30 s) an idle stream gets a keepalive comment (15 s),
    // long after the handshake timeout.
    assert_eq!(feed.next_block().as_deref(), Some(": keepalive\n\n"));
}

#[test]
fn at_most_sixteen_consumers_stream_at_once() {
    let server = keyed(&[]);
    let mut consumers: Vec<Consumer> = (0..16).map(|_| Consumer::open(&server, "", "")).collect();
    let (status, head, body) = call(&server, "GET", "/api/feed", Some(KEY), None, "");
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(head.contains("Retry-After: 5"), "{head}");
    drop(consumers.pop());
    wait_until("a place is free again", || {
        let (_, _, body) = http_get(&server, "/metrics");
        String::from_utf8_lossy(&body).lines().any(|l| l == "roomcast_feed_consumers 15")
    });
    let ids = publish(&server, &[("m0", "hello".into())]);
    let mut again = Consumer::open(&server, "", "");
    assert_eq!(again.next().expect("an event").data["id"].as_u64(), Some(ids[0]));
    assert_eq!(consumers[0].next().expect("an event").data["id"].as_u64(), Some(ids[0]), "the others stream on");
}

/// A decision is committed with the writer's next batch: wait for it before what must follow it.
fn next_moderation(feed: &mut Consumer) -> Event {
    let event = feed.next().expect("a moderation event");
    assert_eq!(event.kind, "moderation", "{event:?}");
    event
}

#[test]
fn moderation_decisions_are_their_own_events_in_the_feed() {
    let dir = tempfile::tempdir().expect("dir");
    let list = dir.path().join("blocklist.txt");
    std::fs::write(&list, "darn\n").expect("write the blocklist");
    let server = keyed(&["--blocklist", list.to_str().expect("utf-8 path")]);
    let first = publish(&server, &[("fm", "hello".into())]);
    let mut feed = Consumer::open(&server, "?after_id=0", "");
    assert_eq!(feed.take(1)[0].data["id"].as_u64(), Some(first[0]));

    assert_eq!(post(&server, "/api/users/al/ban", &json!({"seconds": 60})).0, 200);
    let ban = next_moderation(&mut feed);
    assert_eq!(
        (&ban.data["type"], &ban.data["user"], &ban.data["room"]),
        (&json!("user_banned"), &json!("al"), &Value::Null)
    );
    assert!(ban.data["until_ms"].as_i64() > ban.data["at_ms"].as_i64(), "{ban:?}");
    assert_eq!(ban.data["closed"], 0);

    let mut bo = connect_json(&server, "fm", "bo");
    send_json(&mut bo, json!({"type": "message", "room": "fm", "content": "darn it", "client_id": "c1"}));
    assert_eq!(recv_event(&mut bo, "error")["code"], "content_blocked");
    let blocked = next_moderation(&mut feed);
    let want =
        json!({"type": "content_blocked", "room": "fm", "user": "bo", "action": "rejected", "reason": "blocklist"});
    for (field, value) in want.as_object().expect("object") {
        assert_eq!(&blocked.data[field], value, "{field}: {blocked:?}");
    }
    assert!(!blocked.data.to_string().contains("darn"), "never the content: {blocked:?}");

    assert_eq!(post(&server, "/api/rooms/fm/mute/bo", &json!({"seconds": 60})).0, 200);
    let mute = next_moderation(&mut feed);
    assert_eq!(
        (&mute.data["type"], &mute.data["room"], &mute.data["user"]),
        (&json!("user_muted"), &json!("fm"), &json!("bo"))
    );
    let live = publish(&server, &[("fm", "after".into())]);
    let after = feed.take(1).remove(0);
    assert_eq!((after.kind.as_str(), after.data["id"].as_u64()), ("message", Some(live[0])));
    let positions = [ban.pos, blocked.pos, mute.pos, after.pos];
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions increase: {positions:?}");

    // A consumer resuming before the ban reads the same events again, after a restart too.
    drop(feed);
    let (status, data) = server.stop();
    assert!(status.success(), "{status}");
    let server = Server::start_in(data, &["--api-key", KEY]);
    let mut again = Consumer::open(&server, "", &format!("Last-Event-ID: {}\r\n", ban.pos - 1));
    assert_eq!(again.take(4), [ban, blocked, mute, after]);
}

#[test]
fn a_decision_made_on_one_node_is_in_the_feed_of_every_node() {
    let redis = crate::support::redis::RedisServer::start();
    let a = crate::support::redis::node_with(&redis, "feed-a", &["--api-key", KEY]);
    let b = crate::support::redis::node_with(&redis, "feed-b", &["--api-key", KEY]);
    let mut feed_b = Consumer::open(&b, "?after_id=0", "");
    assert_eq!(post(&a, "/api/users/al/revoke", &json!({})).0, 200);
    let revoked = next_moderation(&mut feed_b);
    assert_eq!((&revoked.data["type"], &revoked.data["user"]), (&json!("tokens_revoked"), &json!("al")));
    let mut feed_a = Consumer::open(&a, "?after_id=0", "");
    let here = next_moderation(&mut feed_a);
    assert_eq!(here.data["before_ms"], revoked.data["before_ms"], "the same decision: {here:?} {revoked:?}");
}
