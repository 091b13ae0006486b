//! Cluster mode: real `redis-server` and several real `roomcast` nodes. One order for every client of
//! a room whichever node it is on, the same history from every node, nothing lost or duplicated when
//! a node is killed or Redis goes away and comes back, late nodes catching up.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::support::redis::RedisServer;
use crate::support::*;

/// A node on `redis` named `id`.
fn node(redis: &RedisServer, id: &str) -> Server {
    node_with(redis, id, &[])
}

/// A node on `redis` named `id`, with `extra` flags.
pub fn node_with(redis: &RedisServer, id: &str, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis-url", url.as_str(), "--node-id", id];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    wait_linked(&server);
    server
}

fn cluster_health(server: &Server) -> Value {
    let (status, _, body) = http_get(server, "/healthz");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_slice(&body).expect("json");
    health["cluster"].clone()
}

/// Waits until both Redis links of `server` are up and nothing waits for replay.
fn wait_linked(server: &Server) {
    wait_until("node linked to redis", || {
        let c = cluster_health(server);
        c["publisher_up"] == true && c["subscriber_up"] == true && c["outbox"] == 0
    });
}

/// `(id, user, content)` of a room's history, oldest first (up to 200 messages).
fn history(server: &Server, room: &str) -> Vec<(u64, String, String)> {
    let (status, _, body) = http_get(server, &format!("/rooms/{room}/messages?limit=200"));
    assert_eq!(status, 200);
    let page: Value = serde_json::from_slice(&body).expect("json");
    let mut rows: Vec<_> = page
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().expect("id"),
                m["user"].as_str().expect("user").to_string(),
                m["content"].as_str().expect("content").to_string(),
            )
        })
        .collect();
    rows.reverse();
    rows
}

/// Reads `message` events until `n` arrived; returns `(id, content)` in arrival order.
fn receive(ws: &mut Client, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|_| {
            let event = recv_event(ws, "message");
            (event["id"].as_u64().expect("id"), event["content"].as_str().expect("content").to_string())
        })
        .collect()
}

fn send_message(ws: &mut Client, room: &str, content: &str) {
    send_json(ws, json!({"type": "message", "room": room, "content": content}));
}

fn assert_increasing(ids: &[u64], who: &str) {
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{who}: ids not strictly increasing: {ids:?}");
}

#[test]
fn clients_on_different_nodes_see_one_order_and_every_node_serves_the_same_history() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut ann = connect_json(&a, "r", "ann");
    let mut bob = connect_json(&b, "r", "bob");
    let mut text_b = connect_ws(&b, "/ws/chat?room=r");

    // Interleave sends from both nodes without waiting for echoes.
    for i in 0..20 {
        send_message(&mut ann, "r", &format!("ann{i}"));
        send_message(&mut bob, "r", &format!("bob{i}"));
    }
    send_text(&mut text_b, "Alice: Hello");
    let seen_ann = receive(&mut ann, 41);
    let seen_bob = receive(&mut bob, 41);
    assert_eq!(seen_ann, seen_bob, "clients on both nodes see the same messages in the same order");
    let ids: Vec<u64> = seen_ann.iter().map(|m| m.0).collect();
    assert_increasing(&ids, "ann");
    let contents: HashSet<&str> = seen_ann.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(contents.len(), 41, "no duplicates");
    assert!(contents.contains("ann19") && contents.contains("bob0") && contents.contains("Alice: Hello"));
    // The text client gets the same order, JSON senders as `user: content`, text verbatim.
    let texts: Vec<String> = (0..41).map(|_| recv_text(&mut text_b)).collect();
    let expected: Vec<String> = seen_ann
        .iter()
        .map(|(_, c)| {
            if c == "Alice: Hello" {
                c.clone()
            } else {
                format!("{}: {c}", if c.starts_with("ann") { "ann" } else { "bob" })
            }
        })
        .collect();
    assert_eq!(texts, expected);

    let from_a = history(&a, "r");
    let from_b = history(&b, "r");
    assert_eq!(from_a.len(), 41);
    assert_eq!(from_a, from_b, "history is the same whichever node answers");
    assert_eq!(from_a.iter().map(|m| m.0).collect::<Vec<_>>(), ids, "history order is delivery order");

    // /metrics shows the cluster traffic: each node received all 41 messages from Redis, the two nodes
    // together appended all 41, and both links are up.
    let (a_metrics, b_metrics) = (redis_metrics(&a), redis_metrics(&b));
    for m in [&a_metrics, &b_metrics] {
        assert!(m["roomcast_redis_received_total"] >= 41.0, "{m:?}");
        assert_eq!(m["roomcast_redis_up"], 1.0, "{m:?}");
        assert!(m["roomcast_redis_connects_total"] >= 2.0, "{m:?}");
    }
    assert_eq!(a_metrics["roomcast_redis_published_total"] + b_metrics["roomcast_redis_published_total"], 41.0);
}

/// The `roomcast_redis_*` samples of a node's `/metrics`.
fn redis_metrics(server: &Server) -> std::collections::HashMap<String, f64> {
    let (status, _, body) = http_get(server, "/metrics");
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("roomcast_redis_"))
        .filter_map(|l| l.split_once(' ').and_then(|(k, v)| v.trim().parse().ok().map(|v| (k.to_string(), v))))
        .collect()
}

#[test]
fn a_killed_node_loses_nothing_it_accepted_and_catches_up_after_restart() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut ann = connect_json(&a, "k", "ann");
    let mut bob = connect_json(&b, "k", "bob");
    for i in 0..15 {
        send_message(&mut ann, "k", &format!("m{i}"));
    }
    // Accepted: every message came back to its sender.
    let accepted = receive(&mut ann, 15);
    let dir = a.kill9();
    assert_eq!(receive(&mut bob, 15), accepted, "the other node delivered everything");
    let expected: Vec<(u64, String, String)> =
        accepted.iter().map(|(id, c)| (*id, "ann".to_string(), c.clone())).collect();
    assert_eq!(history(&b, "k"), expected);

    // More traffic while `a` is down, then `a` comes back on its database and catches up.
    for i in 0..5 {
        send_message(&mut bob, "k", &format!("late{i}"));
    }
    receive(&mut bob, 5);
    let a = Server::start_in(dir, &["--redis-url", &redis.url(), "--node-id", "a"]);
    wait_linked(&a);
    let from_b = history(&b, "k");
    assert_eq!(from_b.len(), 20);
    wait_until("restarted node caught up", || history(&a, "k") == from_b);
}

#[test]
fn a_node_started_late_catches_up_from_the_streams() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut ann = connect_json(&a, "early", "ann");
    let mut bob = connect_json(&b, "other", "bob");
    for i in 0..30 {
        send_message(&mut ann, "early", &format!("e{i}"));
    }
    for i in 0..10 {
        send_message(&mut bob, "other", &format!("o{i}"));
    }
    receive(&mut ann, 30);
    receive(&mut bob, 10);
    let c = node(&redis, "c");
    for room in ["early", "other"] {
        let expected = history(&a, room);
        assert_eq!(history(&b, room), expected);
        wait_until("late node caught up", || history(&c, room) == expected);
    }
    // And it takes part in live traffic from then on.
    let mut cid = connect_json(&c, "early", "cid");
    send_message(&mut cid, "early", "from c");
    let (id, _) = receive(&mut ann, 1).remove(0);
    assert_eq!(receive(&mut cid, 1), vec![(id, "from c".to_string())]);
}

#[test]
fn a_redis_outage_loses_nothing_and_duplicates_nothing() {
    let mut redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut ann = connect_json(&a, "o", "ann");
    let mut amy = connect_json(&a, "o", "amy");
    let mut bob = connect_json(&b, "o", "bob");
    let mut seen: Vec<Vec<(u64, String)>> = vec![Vec::new(); 3];

    send_message(&mut ann, "o", "before");
    for (i, ws) in [&mut ann, &mut amy, &mut bob].into_iter().enumerate() {
        seen[i].extend(receive(ws, 1));
    }

    redis.kill();
    for server in [&a, &b] {
        wait_until("node noticed the outage", || {
            let c = cluster_health(server);
            c["publisher_up"] == false && c["subscriber_up"] == false
        });
    }
    // Each node keeps serving its own clients alone.
    for i in 0..5 {
        send_message(&mut ann, "o", &format!("a-down{i}"));
        send_message(&mut bob, "o", &format!("b-down{i}"));
    }
    seen[0].extend(receive(&mut ann, 5));
    seen[1].extend(receive(&mut amy, 5));
    seen[2].extend(receive(&mut bob, 5));
    assert_eq!(seen[0], seen[1], "members of one node agree during the outage");

    redis.restart();
    wait_linked(&a);
    wait_linked(&b);
    send_message(&mut bob, "o", "after");
    // Everyone gets `after`; a's clients may also get b's outage messages first (when their ids are
    // above what a delivered), b's clients likewise a's.
    for (i, ws) in [&mut ann, &mut amy, &mut bob].into_iter().enumerate() {
        loop {
            let message = receive(ws, 1).remove(0);
            let done = message.1 == "after";
            seen[i].push(message);
            if done {
                break;
            }
        }
    }
    for (i, got) in seen.iter().enumerate() {
        let ids: Vec<u64> = got.iter().map(|m| m.0).collect();
        assert_increasing(&ids, &format!("client {i}"));
        let contents: HashSet<&str> = got.iter().map(|m| m.1.as_str()).collect();
        assert_eq!(contents.len(), got.len(), "client {i} got a duplicate: {got:?}");
    }

    let mut all: Vec<String> = vec!["before".into(), "after".into()];
    all.extend((0..5).flat_map(|i| [format!("a-down{i}"), format!("b-down{i}")]));
    all.sort();
    wait_until("both histories hold every message once", || {
        let from_a = history(&a, "o");
        let mut contents: Vec<String> = from_a.iter().map(|m| m.2.clone()).collect();
        contents.sort();
        contents == all && history(&b, "o") == from_a
    });
    let from_a = history(&a, "o");
    let ids: Vec<u64> = from_a.iter().map(|m| m.0).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "ids unique");
    // Every id a client received is the id the histories hold for that message.
    for got in &seen {
        for (id, content) in got {
            assert!(from_a.iter().any(|m| m.0 == *id && &m.2 == content), "{id} {content} not in history");
        }
    }
    assert_eq!(from_a.last().map(|m| m.2.as_str()), Some("after"), "the first message after the outage is newest");
}

/// Reads presence events until `user`'s `event` (`join` or `leave`) arrives; other presence events
/// (e.g. the reader's own join coming back through Redis) are skipped, anything else fails.
fn wait_presence(ws: &mut Client, user: &str, event: &str) {
    loop {
        let got = recv_event(ws, "presence");
        if got["user"] == user && got["event"] == event {
            return;
        }
    }
}

/// Connects a JSON client and returns it with its `joined` event.
fn connect_json_joined(server: &Server, room: &str, nick: &str) -> (Client, Value) {
    let mut ws = connect_ws(server, &format!("/ws?format=json&room={room}&nick={nick}"));
    assert_eq!(recv_json(&mut ws)["type"], "welcome");
    let joined = recv_json(&mut ws);
    assert_eq!(joined["type"], "joined", "{joined}");
    (ws, joined)
}

fn member_names(joined: &Value) -> HashSet<String> {
    joined["members"].as_array().expect("members").iter().map(|m| m.as_str().expect("name").to_string()).collect()
}

#[test]
fn presence_and_member_lists_span_the_nodes() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut ann = connect_json(&a, "p", "ann");
    wait_presence(&mut ann, "ann", "join");

    // bob speaks at once: everyone hears of his join before his first message (one order per room).
    let (mut bob, _) = connect_json_joined(&b, "p", "bob");
    send_message(&mut bob, "p", "hi");
    for ws in [&mut ann, &mut bob] {
        wait_presence(ws, "bob", "join");
        assert_eq!(recv_event(ws, "message")["content"], "hi");
    }

    // A third connection on `a` lists and counts the members of both nodes (a's view has bob: ann
    // got his event through it).
    let (cid, joined) = connect_json_joined(&a, "p", "cid");
    assert_eq!(joined["member_count"], 3, "{joined}");
    assert_eq!(member_names(&joined), ["ann", "bob", "cid"].map(String::from).into_iter().collect());
    wait_presence(&mut bob, "cid", "join");

    // A second connection of a user present elsewhere is no presence change: bob's next presence
    // event is cid's leave, not a join of ann.
    let mut ann_on_b = connect_json(&b, "p", "ann");
    drop(cid);
    let next = recv_event(&mut bob, "presence");
    assert_eq!((next["user"].as_str(), next["event"].as_str()), (Some("cid"), Some("leave")), "{next}");
    ann_on_b.close(None).expect("close");

    // The user's last connection on the cluster leaving is a `leave` everywhere.
    drop(bob);
    wait_presence(&mut ann, "cid", "leave");
    wait_presence(&mut ann, "bob", "leave");
    // b's view has ann (still on a) and bob gone; a late joiner on b sees exactly that.
    wait_until("b's view caught up", || {
        let (_ws, joined) = connect_json_joined(&b, "p", "dee");
        joined["member_count"] == 2 && member_names(&joined) == ["ann", "dee"].map(String::from).into()
    });
}

#[test]
fn a_killed_nodes_users_leave_once_its_heartbeat_expires() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let c = node(&redis, "c");
    let mut ann = connect_json(&a, "h", "ann");
    wait_presence(&mut ann, "ann", "join");
    let mut cat = connect_json(&c, "h", "cat");
    wait_presence(&mut cat, "cat", "join");
    wait_presence(&mut ann, "cat", "join");
    let _bob = connect_json(&b, "h", "bob");
    let _bea = connect_json(&b, "h", "bea");
    // Also on `b`: a user who stays present (her connection on `a` survives); no event.
    let _ann_on_b = connect_json(&b, "h", "ann");
    for ws in [&mut ann, &mut cat] {
        let mut joined = HashSet::new();
        while joined.len() < 2 {
            let event = recv_event(ws, "presence");
            assert_eq!(event["event"], "join", "{event}");
            assert!(joined.insert(event["user"].as_str().expect("user").to_string()), "join twice: {event}");
        }
        assert_eq!(joined, ["bob", "bea"].map(String::from).into());
    }

    drop(b.kill9());
    // Both survivors deliver each leave (reaped once in Redis, published once, delivered by each node).
    for ws in [&mut ann, &mut cat] {
        let mut left = HashSet::new();
        while left.len() < 2 {
            let event = recv_event(ws, "presence");
            assert_eq!(event["event"], "leave", "{event}");
            assert_ne!(event["user"], "ann", "ann still has a connection on a");
            assert!(left.insert(event["user"].as_str().expect("user").to_string()), "leave twice: {event}");
        }
        assert_eq!(left, ["bob", "bea"].map(String::from).into());
    }
    let (_dan, joined) = connect_json_joined(&a, "h", "dan");
    assert_eq!(member_names(&joined), ["ann", "cat", "dan"].map(String::from).into());
    assert_eq!(joined["member_count"], 3);
}

#[test]
fn binary_frames_reach_text_members_on_other_nodes_verbatim() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut on_a = connect_ws(&a, "/ws/chat?room=bin");
    let mut on_b = connect_ws(&b, "/ws/chat?room=bin");
    // A JSON member on b ties the order down: the text message sent before the binary frame arrives
    // first; presence of the text clients is not awaited (text clients get no presence).
    let payload: Vec<u8> = vec![0, 1, 2, 0xff, 0xfe, b'\n', b'p', b'\n', 0x80];
    send_text(&mut on_a, "before");
    on_a.send(tungstenite::Message::binary(payload.clone())).expect("send binary");
    send_text(&mut on_a, "after");
    for ws in [&mut on_b, &mut on_a] {
        assert_eq!(recv_text(ws), "before");
        match recv(ws) {
            tungstenite::Message::Binary(got) => assert_eq!(got.to_vec(), payload),
            other => panic!("expected the binary frame, got {other:?}"),
        }
        assert_eq!(recv_text(ws), "after");
    }
    // Binary is not stored.
    assert_eq!(history(&b, "bin").iter().map(|m| m.2.as_str()).collect::<Vec<_>>(), ["before", "after"]);
}

#[test]
fn membership_is_resynced_after_redis_comes_back_empty() {
    let mut redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut ann = connect_json(&a, "s", "ann");
    let _bob = connect_json(&b, "s", "bob");
    wait_presence(&mut ann, "bob", "join");

    // Redis loses everything (no persistence); while it is away, joins list local members only.
    redis.kill();
    wait_until("a noticed the outage", || cluster_health(&a)["subscriber_up"] == false);
    let (_amy, joined) = connect_json_joined(&a, "s", "amy");
    assert_eq!(member_names(&joined), ["ann", "amy"].map(String::from).into(), "local members only");

    // Back, empty: each node re-registers its members and the lists span both nodes again.
    redis.restart();
    wait_linked(&a);
    wait_linked(&b);
    wait_until("b's members back in a's view", || {
        let (_ws, joined) = connect_json_joined(&a, "s", "cid");
        joined["member_count"] == 4 && member_names(&joined) == ["ann", "amy", "bob", "cid"].map(String::from).into()
    });
    wait_until("a's members back in b's view", || {
        let (_ws, joined) = connect_json_joined(&b, "s", "dee");
        joined["member_count"] == 4 && member_names(&joined) == ["ann", "amy", "bob", "dee"].map(String::from).into()
    });
}

/// Reads `ws` until the `sent` messages it sent (client ids starting with `prefix`) are each either
/// delivered back or refused with `rate_limited`; returns `(delivered, refused)`. Messages of other
/// connections and other events are skipped; every read has the 30 s deadline of the client socket.
fn outcomes(ws: &mut Client, prefix: &str, sent: usize) -> (usize, usize) {
    let (mut delivered, mut refused) = (0, 0);
    while delivered + refused < sent {
        let event = recv_json(ws);
        match event["type"].as_str() {
            Some("message") if event["client_id"].as_str().is_some_and(|c| c.starts_with(prefix)) => delivered += 1,
            Some("error") => {
                assert_eq!(event["code"], "rate_limited", "{event}");
                let cid = event["client_id"].as_str().unwrap_or_default();
                assert!(cid.starts_with(prefix), "the refusal names the refused message: {event}");
                refused += 1;
            }
            _ => {}
        }
    }
    (delivered, refused)
}

#[test]
fn the_per_user_rate_limit_holds_across_nodes() {
    let redis = RedisServer::start();
    let flags = ["--rate-limit", "0", "--rate-limit-bytes", "0", "--user-rate-limit", "0.01", "--user-rate-burst", "5"];
    let a = node_with(&redis, "a", &flags);
    let b = node_with(&redis, "b", &flags);
    let mut carol = connect_json(&a, "r", "carol");
    let mut ann_a = connect_json(&a, "r", "ann");
    let mut ann_b = connect_json(&b, "r", "ann");

    for i in 0..6 {
        send_json(
            &mut ann_a,
            json!({"type": "message", "room": "r", "content": format!("a{i}"), "client_id": format!("a{i}")}),
        );
        send_json(
            &mut ann_b,
            json!({"type": "message", "room": "r", "content": format!("b{i}"), "client_id": format!("b{i}")}),
        );
    }
    // Every one of the 12 messages is either delivered (its sender sees its echo) or refused.
    let (delivered_a, refused_a) = outcomes(&mut ann_a, "a", 6);
    let (delivered_b, refused_b) = outcomes(&mut ann_b, "b", 6);
    assert_eq!(delivered_a + delivered_b, 5, "the burst of 5 is shared by both connections on both nodes");
    assert_eq!(refused_a + refused_b, 7, "every other message is refused with rate_limited");

    // Carol (another user, not limited) counts ann's messages up to her own marker, which Redis
    // orders after all of ann's (they were all decided before it was sent).
    send_message(&mut carol, "r", "marker");
    let mut from_ann = Vec::new();
    loop {
        let event = recv_event(&mut carol, "message");
        let content = event["content"].as_str().expect("content").to_string();
        match event["user"].as_str() {
            Some("carol") if content == "marker" => break,
            Some("ann") => from_ann.push(content),
            other => panic!("unexpected sender {other:?}"),
        }
    }
    assert_eq!(from_ann.len(), 5, "exactly 5 of ann's messages are delivered cluster-wide: {from_ann:?}");
    wait_until("node b stored the marker", || history(&b, "r").iter().any(|m| m.2 == "marker"));
    let stored = history(&b, "r").iter().filter(|m| m.1 == "ann").count();
    assert_eq!(stored, 5, "refused messages are not stored");
}

/// Redis frozen (SIGSTOP) while two senders keep posting into a small hand-off
/// (`--redis-queue-capacity 8`): every message is either delivered to its sender exactly once (live,
/// with a provisional id while Redis is away, or from Redis afterwards) or refused with an `error`
/// frame `unavailable` that names its `client_id`. None is lost silently, none arrives twice.
#[test]
fn a_frozen_redis_never_silently_drops_an_accepted_message() {
    frozen_redis_answers_every_message("8", 150, 3);
}

/// The same with the hand-off 1024 deep and 1,500 messages per sender: hundreds of messages are in
/// flight in one pipelined batch when Redis freezes.
#[test]
fn a_frozen_redis_with_a_deep_hand_off_answers_every_message_after_the_thaw() {
    frozen_redis_answers_every_message("1024", 1500, 8);
}

fn frozen_redis_answers_every_message(capacity: &str, per_sender: usize, freeze_secs: u64) {
    let redis = RedisServer::start();
    let server = node_with(
        &redis,
        "frozen",
        &["--redis-queue-capacity", capacity, "--rate-limit", "0", "--rate-limit-bytes", "0"],
    );
    let mut senders: Vec<Client> = (0..2).map(|i| connect_json(&server, "frozen", &format!("s{i}"))).collect();
    redis.signal("STOP");
    for i in 0..per_sender {
        for (s, ws) in senders.iter_mut().enumerate() {
            let cid = format!("s{s}-{i}");
            send_json(ws, json!({"type": "message", "room": "frozen", "content": cid, "client_id": cid}));
        }
    }
    // Let the publisher notice the frozen link and the hand-off fill, then thaw.
    std::thread::sleep(std::time::Duration::from_secs(freeze_secs));
    redis.signal("CONT");
    for (s, ws) in senders.iter_mut().enumerate() {
        let (mut delivered, mut refused) = (HashSet::new(), HashSet::new());
        while delivered.len() + refused.len() < per_sender {
            let text = match ws.read() {
                Ok(tungstenite::Message::Text(text)) => text,
                Ok(_) => continue,
                Err(err) => {
                    let missing: Vec<String> = (0..per_sender)
                        .map(|i| format!("s{s}-{i}"))
                        .filter(|c| !delivered.contains(c) && !refused.contains(c))
                        .collect();
                    let first: Vec<&String> = missing.iter().take(10).collect();
                    let (d, r, m) = (delivered.len(), refused.len(), missing.len());
                    panic!("s{s} ({err}): {d} delivered, {r} refused, {m} never answered: {first:?}…");
                }
            };
            let event: Value = serde_json::from_str(&text).expect("json");
            match event["type"].as_str() {
                Some("message") => {
                    let cid = event["client_id"].as_str().expect("messages echo client_id").to_string();
                    if !cid.starts_with(&format!("s{s}-")) {
                        continue; // the other sender's
                    }
                    assert!(delivered.insert(cid.clone()), "s{s}: {cid} delivered twice");
                    assert!(!refused.contains(&cid), "s{s}: {cid} refused and delivered");
                }
                Some("error") => {
                    assert_eq!(event["code"], "unavailable", "s{s}: {event}");
                    let cid = event["client_id"].as_str().expect("the refusal names the message").to_string();
                    assert!(refused.insert(cid.clone()), "s{s}: {cid} refused twice");
                    assert!(!delivered.contains(&cid), "s{s}: {cid} delivered and refused");
                }
                _ => {}
            }
        }
        let all: HashSet<String> = (0..per_sender).map(|i| format!("s{s}-{i}")).collect();
        let answered: HashSet<String> = delivered.union(&refused).cloned().collect();
        assert_eq!(answered, all, "s{s}: every message answered exactly once");
        eprintln!("s{s}: {} delivered, {} refused unavailable", delivered.len(), refused.len());
    }
    wait_linked(&server);
}

#[test]
fn edits_and_deletes_take_the_ordered_path_to_every_node() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut ann = connect_json(&a, "r", "ann");
    let mut bob = connect_json(&b, "r", "bob");
    send_json(&mut ann, json!({"type": "message", "room": "r", "content": "helo"}));
    let id = recv_event(&mut ann, "message")["id"].as_u64().expect("id");
    assert_eq!(recv_event(&mut bob, "message")["id"], id);
    // Node b stored it too, so b's author check finds it: ann edits from a connection on b.
    let mut ann_on_b = connect_json(&b, "r", "ann");
    send_json(&mut ann_on_b, json!({"type": "edit", "room": "r", "id": id, "content": "hello"}));
    for ws in [&mut ann, &mut bob, &mut ann_on_b] {
        let edited = recv_event(ws, "edited");
        assert_eq!((edited["id"].as_u64(), edited["content"].as_str()), (Some(id), Some("hello")), "{edited}");
    }
    // A read marker goes through Redis to ann's connection on the other node, not to bob.
    send_json(&mut ann, json!({"type": "read", "room": "r", "id": id}));
    for ws in [&mut ann, &mut ann_on_b] {
        assert_eq!(recv_event(ws, "read")["id"].as_u64(), Some(id));
    }
    send_json(&mut bob, json!({"type": "delete", "room": "r", "id": id}));
    assert_eq!(recv_event(&mut bob, "error")["code"], "forbidden", "bob got no read marker of ann's");
    send_json(&mut ann, json!({"type": "delete", "room": "r", "id": id}));
    for ws in [&mut ann, &mut bob, &mut ann_on_b] {
        assert_eq!(recv_event(ws, "deleted")["id"].as_u64(), Some(id));
    }
    for server in [&a, &b] {
        wait_until("the delete is in each node's history", || {
            let (_, _, body) = http_get(server, "/rooms/r/messages");
            let rows: Value = serde_json::from_slice(&body).expect("json");
            rows[0]["deleted"] == true
        });
    }
}

#[test]
fn typing_is_relayed_to_other_nodes_and_not_back_to_its_sender() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut ann = connect_json(&a, "r", "ann");
    let mut cat = connect_json(&a, "r", "cat");
    let mut bob = connect_json(&b, "r", "bob");
    send_json(&mut ann, json!({"type": "typing", "room": "r"}));
    for ws in [&mut cat, &mut bob] {
        let typing = recv_event(ws, "typing");
        assert_eq!(typing["user"], "ann", "{typing}");
    }
    send_json(&mut ann, json!({"type": "message", "room": "r", "content": "hi"}));
    let echo = recv_event(&mut ann, "message");
    assert_eq!(echo["content"], "hi", "ann's next event is her message, not her own typing notice");
}

/// Cluster mode: a flooder's echoes come back through Redis, later than the close is decided. The
/// close waits (at most 3 s) until Redis has sent back every message it accepted, then for the
/// inbox, so the 40 accepted are echoed, in order, before the close frame. Before, the close came
/// after the inbox only and the echoes still in Redis were lost.
#[test]
fn a_flooder_in_cluster_mode_gets_the_echoes_of_its_accepted_messages_before_the_close() {
    let redis = RedisServer::start();
    let server = node_with(&redis, "flood", &[]);
    crate::rate_limits::flood_and_expect_the_echoes_before_the_close(&server);
}
