//! The server API (docs/API.md) over real HTTP: keys, statuses, publishing into rooms with and
//! without members in both wire formats, idempotency across a restart, batches, listings,
//! disconnects, bans and mutes (across a restart too), and the close codes of docs/PROTOCOL.md.

use serde_json::{Value, json};

use crate::support::api::{KEY, call, keyed, post};
use crate::support::*;

fn get(server: &Server, path: &str) -> (u16, Value) {
    let (status, _, value) = call(server, "GET", path, Some(KEY), None, "");
    (status, value)
}

pub(crate) fn history(server: &Server, room: &str) -> Vec<Value> {
    let (status, _, body) = http_get(server, &format!("/rooms/{room}/messages"));
    assert_eq!(status, 200);
    serde_json::from_slice::<Vec<Value>>(&body).expect("history array")
}

/// The `error.code` of an API error body.
pub(crate) fn error_code(value: &Value) -> &str {
    value["error"]["code"].as_str().unwrap_or_default()
}

#[test]
fn without_a_key_the_api_is_off() {
    let server = Server::start(&[]);
    let msg = json!({"user": "a", "content": "b"});
    for (method, path, body) in
        [("GET", "/api/rooms", None), ("POST", "/api/rooms/r/messages", Some(&msg)), ("GET", "/api/nope", None)]
    {
        let (status, _, body) = call(&server, method, path, Some(KEY), body, "");
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
}

#[test]
fn bad_requests_get_their_status() {
    let server = keyed(&[]);
    let msg = json!({"user": "Alice", "content": "Hello"});
    let (status, head, body) = call(&server, "POST", "/api/rooms/r/messages", None, Some(&msg), "");
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
    let (status, _, _) =
        call(&server, "POST", "/api/rooms/r/messages", Some("test-api-key-0123456788"), Some(&msg), "");
    assert_eq!(status, 401, "a wrong key");
    assert_eq!(get(&server, "/api/nope").0, 404);
    assert_eq!(call(&server, "GET", "/api/nope", None, None, "").0, 401, "the key is checked before the path");
    let (status, head, body) = call(&server, "GET", "/api/rooms/r/messages", Some(KEY), None, "");
    assert_eq!((status, error_code(&body)), (405, "method_not_allowed"));
    assert!(head.contains("Allow: POST"), "{head}");
    let (status, head, _) = call(&server, "PUT", "/api/users/al/ban", Some(KEY), None, "");
    assert!(status == 405 && head.contains("Allow: POST, DELETE"), "{status} {head}");
    let (status, head, _) = call(&server, "POST", "/rooms/r/messages", Some(KEY), Some(&msg), "");
    assert!(status == 405 && head.contains("Allow: GET, HEAD"), "{status} {head}");

    // HEAD gets its refusal without a body: the next pipelined answer follows the head directly.
    let mut raw = Raw::connect(&server);
    raw.send(
        format!(
            "HEAD /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n\
             GET /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n"
        )
        .as_bytes(),
    );
    let (status, head, _) = raw.read_response_head();
    assert!(status == 405 && head.contains("Allow: GET"), "{head}");
    assert_eq!(raw.read_response().0, 200);

    // Content type, size, chunked: decided from the head.
    let mut raw = Raw::connect(&server);
    raw.send(
        format!(
            "POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        .as_bytes(),
    );
    assert_eq!(raw.read_response().0, 415);
    let mut raw = Raw::connect(&server);
    raw.send(
        format!(
            "POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            16 * 1024 + 4096 + 1
        )
        .as_bytes(),
    );
    let (status, _, body) = raw.read_response();
    assert_eq!(status, 413, "answered before the body is sent: {}", String::from_utf8_lossy(&body));
    let mut raw = Raw::connect(&server);
    raw.send(
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(raw.read_response().0, 411);

    // Bodies: malformed, a missing field, a wrong type, each named.
    let mut raw = Raw::connect(&server);
    raw.send(
        format!(
            "POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: 4\r\n\r\n{{\"us"
        )
        .as_bytes(),
    );
    let (status, _, body) = raw.read_response();
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!((status, error_code(&body)), (400, "bad_json"), "{body}");
    let (status, body) = post(&server, "/api/rooms/r/messages", &json!({"user": "Alice"}));
    assert_eq!((status, error_code(&body)), (400, "missing_field"));
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("`content`"), "{body}");
    let (status, body) = post(&server, "/api/rooms/r/messages", &json!({"user": "Alice", "content": 7}));
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("`content` must be a string"), "{body}");
    let (status, body) =
        post(&server, "/api/rooms/r/messages", &json!({"user": "Alice", "content": "x".repeat(16 * 1024 + 1)}));
    assert_eq!((status, error_code(&body)), (413, "message_too_large"));
    assert!(history(&server, "r").is_empty(), "nothing refused was published");
}

#[test]
fn a_slow_body_is_bounded_by_the_handshake_timeout() {
    let server = keyed(&["--handshake-timeout", "1"]);
    let mut raw = Raw::connect(&server);
    raw.send(
        format!(
            "POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"user\""
        )
        .as_bytes(),
    );
    assert!(raw.read_until_eof().is_empty(), "closed without an answer once the deadline passed");
}

#[test]
fn a_published_message_reaches_members_in_both_formats() {
    let server = keyed(&[]);
    let mut json_member = connect_json(&server, "lobby", "bob");
    let mut text_member = connect_ws(&server, "/ws/chat?room=lobby&nick=cid");
    wait_until("both members joined", || get(&server, "/api/rooms/lobby/presence").1["members"] == 2);
    let (status, body) =
        post(&server, "/api/rooms/lobby/messages", &json!({"user": "Alice", "content": "Hello", "client_id": "c-1"}));
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_u64().expect("id");
    let event = recv_event(&mut json_member, "message");
    assert_eq!((event["id"].as_u64(), &event["user"], &event["content"]), (Some(id), &json!("Alice"), &json!("Hello")));
    assert_eq!(event["client_id"], "c-1");
    assert_eq!(recv_text(&mut text_member), "Alice: Hello");
}

#[test]
fn a_message_into_a_room_without_members_is_stored() {
    let server = keyed(&[]);
    let (status, body) =
        post(&server, "/api/rooms/empty/messages", &json!({"user": "bot", "content": "system notice"}));
    assert_eq!(status, 201);
    let page = history(&server, "empty");
    assert_eq!(page.len(), 1);
    assert_eq!(
        (&page[0]["id"], &page[0]["user"], &page[0]["content"]),
        (&body["id"], &json!("bot"), &json!("system notice"))
    );
    assert!(get(&server, "/api/rooms").1["rooms"].as_array().expect("rooms").is_empty(), "no room kept for it");
}

#[test]
fn an_idempotency_key_publishes_once_even_across_a_restart() {
    let server = keyed(&[]);
    let msg = json!({"user": "bot", "content": "once"});
    let with_key = |server: &Server, key: &str| {
        let (status, head, body) = call(
            server,
            "POST",
            "/api/rooms/idem/messages",
            Some(KEY),
            Some(&msg),
            &format!("Idempotency-Key: {key}\r\n"),
        );
        assert_eq!(status, 201, "{body}");
        (body["id"].as_u64().expect("id"), head.contains("Idempotent-Replayed: true"))
    };
    let (first, replayed) = with_key(&server, "order-1");
    assert!(!replayed);
    assert_eq!(with_key(&server, "order-1"), (first, true));
    let (status, _, body) = call(
        &server,
        "POST",
        "/api/rooms/elsewhere/messages",
        Some(KEY),
        Some(&json!({"user": "x", "content": "y"})),
        "Idempotency-Key: order-1\r\n",
    );
    assert_eq!((status, body["id"].as_u64()), (201, Some(first)), "the key alone decides");
    assert!(history(&server, "elsewhere").is_empty());
    let (other, _) = with_key(&server, "order-2");
    assert_ne!(other, first);
    // Concurrent requests with one key: one publish, one id.
    let ids: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| with_key(&server, "order-3").0)).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(ids.iter().all(|&id| id == ids[0]), "{ids:?}");
    assert_eq!(history(&server, "idem").len(), 3);

    let (_, dir) = server.stop();
    let server = Server::start_in(dir, &["--api-key", KEY]);
    assert_eq!(with_key(&server, "order-1"), (first, true), "remembered across the restart");
    assert_eq!(history(&server, "idem").len(), 3, "nothing published again");
    let (status, _, body) =
        call(&server, "POST", "/api/rooms/idem/messages", Some(KEY), Some(&msg), "Idempotency-Key: a b\r\n");
    assert_eq!((status, error_code(&body)), (400, "invalid_parameter"));
}

/// The key is written in the message's own transaction and the answer waits for that commit: a
/// crash right after the answers loses neither, so a retry after it replays the same id and the
/// message is in history once. (Before, the key was committed apart and answered at once, while the
/// message waited for the writer's next flush: a SIGKILL then kept the key of a message it lost.)
/// A long flush interval makes that window seconds wide.
#[test]
fn answered_keyed_messages_survive_a_crash_with_their_keys() {
    let server = keyed(&["--flush-interval-ms", "5000"]);
    let post = |server: &Server, i: usize| {
        let msg = json!({"user": "bot", "content": format!("order {i}")});
        let key = format!("Idempotency-Key: crash-{i}\r\n");
        let (status, head, body) = call(server, "POST", "/api/rooms/crash/messages", Some(KEY), Some(&msg), &key);
        assert_eq!(status, 201, "{body}");
        (body["id"].as_u64().expect("id"), head.contains("Idempotent-Replayed: true"))
    };
    let ids: Vec<u64> = (0..5)
        .map(|i| post(&server, i))
        .map(|(id, replayed)| {
            assert!(!replayed);
            id
        })
        .collect();
    let dir = server.kill9();
    let server = Server::start_in(dir, &["--api-key", KEY]);
    let mut stored: Vec<u64> = history(&server, "crash").iter().map(|m| m["id"].as_u64().expect("id")).collect();
    stored.sort_unstable();
    assert_eq!(stored, ids, "every answered message is in history after the crash");
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(post(&server, i), (id, true), "the retry of key crash-{i} replays its id");
    }
    assert_eq!(history(&server, "crash").len(), 5, "nothing published twice");
}

#[test]
fn a_batch_is_published_in_order() {
    let server = keyed(&[]);
    let mut member = connect_json(&server, "b1", "watcher");
    let messages: Vec<Value> = (0..50)
        .map(|i| json!({"room": if i % 2 == 0 { "b1" } else { "b2" }, "user": "bot", "content": format!("m{i}")}))
        .collect();
    let (status, body) = post(&server, "/api/publish", &json!({ "messages": messages }));
    assert_eq!(status, 201, "{body}");
    let ids: Vec<u64> = body["ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id")).collect();
    assert_eq!(ids.len(), 50);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in the order of the messages: {ids:?}");
    for i in (0..50).step_by(2) {
        let event = recv_event(&mut member, "message");
        assert_eq!((event["id"].as_u64(), event["content"].as_str()), (Some(ids[i]), Some(format!("m{i}").as_str())));
    }
    // History pages are newest first.
    let b2: Vec<u64> = history(&server, "b2").iter().rev().map(|m| m["id"].as_u64().expect("id")).collect();
    assert_eq!(b2, ids.iter().skip(1).step_by(2).copied().collect::<Vec<_>>());
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"room": "b3", "user": "u", "content": "x"})).collect();
    let (status, body) = post(&server, "/api/publish", &json!({ "messages": too_many }));
    assert_eq!((status, error_code(&body)), (400, "invalid_parameter"));
    let (status, body) = post(
        &server,
        "/api/publish",
        &json!({"messages": [{"room": "b3", "user": "u", "content": "x"}, {"room": "", "user": "u", "content": "y"}]}),
    );
    assert_eq!((status, error_code(&body)), (400, "invalid_room"));
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("messages[1].room"), "{body}");
    assert!(history(&server, "b3").is_empty(), "a bad batch publishes nothing");
}

#[test]
fn listings_show_rooms_presence_and_connections() {
    let server = keyed(&[]);
    let _al1 = connect_json(&server, "r1", "al");
    let _al2 = connect_ws(&server, "/ws/chat?room=r1&nick=al");
    let _bo = connect_json(&server, "r2", "bo");
    wait_until("three connections", || open_connections(&server) >= 4);
    wait_until("r1 has two connections", || {
        get(&server, "/api/rooms").1["rooms"]
            .as_array()
            .is_some_and(|rooms| rooms.iter().any(|r| r["room"] == "r1" && r["connections"] == 2))
    });
    let (status, rooms) = get(&server, "/api/rooms");
    assert_eq!(status, 200);
    assert_eq!(
        rooms["rooms"],
        json!([{"room": "r1", "members": 1, "connections": 2}, {"room": "r2", "members": 1, "connections": 1}])
    );
    let (_, presence) = get(&server, "/api/rooms/r1/presence");
    assert_eq!(presence, json!({"room": "r1", "members": 1, "users": [{"user": "al", "connections": 2}]}));
    let (_, conns) = get(&server, "/api/users/al/connections");
    let formats: Vec<&str> =
        conns["connections"].as_array().expect("list").iter().filter_map(|c| c["format"].as_str()).collect();
    assert_eq!(formats.len(), 2, "{conns}");
    assert!(formats.contains(&"json") && formats.contains(&"text"), "{conns}");
    assert_eq!(conns["rooms"], json!(["r1"]));
    assert_eq!(get(&server, "/api/users/nobody/connections").1["connections"], json!([]));
}

#[test]
fn a_disconnect_closes_every_connection_of_the_user_with_the_code_and_reason() {
    let server = keyed(&[]);
    let mut a = connect_json(&server, "d", "al");
    let mut b = connect_ws(&server, "/ws/chat?room=d&nick=al");
    let mut other = connect_json(&server, "d", "bo");
    wait_until("al twice", || {
        get(&server, "/api/users/al/connections").1["connections"].as_array().is_some_and(|c| c.len() == 2)
    });
    let (status, body) = post(&server, "/api/users/al/disconnect", &json!({"reason": "spam", "reconnect": false}));
    assert_eq!((status, &body["closed"]), (200, &json!(2)));
    assert_eq!(close_of(&mut a), (4500, "kicked: spam".to_string()));
    assert_eq!(close_of(&mut b), (4500, "kicked: spam".to_string()));
    let mut again = connect_json(&server, "d", "al");
    post(&server, "/api/users/al/disconnect", &json!({"reason": "maintenance", "reconnect": true}));
    assert_eq!(close_of(&mut again), (4000, "disconnected: maintenance".to_string()));
    // The other user is untouched.
    send_json(&mut other, json!({"type": "ping"}));
    assert_eq!(recv_event(&mut other, "pong")["type"], "pong");
}

#[test]
fn a_ban_refuses_closes_survives_a_restart_and_lifts() {
    let server = keyed(&[]);
    let mut al = connect_json(&server, "b", "al");
    let (status, body) = post(&server, "/api/users/al/ban", &json!({"seconds": 600}));
    assert_eq!((status, &body["closed"]), (200, &json!(1)), "{body}");
    assert_eq!(close_of(&mut al).0, 4501);
    let refused = |server: &Server| {
        let mut raw = Raw::connect(server);
        raw.handshake(server, "/ws?format=json&room=b&nick=al", "")
    };
    let (status, body) = refused(&server);
    assert!(status == 403 && body.contains("banned"), "{status} {body}");
    let _bo = connect_json(&server, "b", "bo");

    let (_, dir) = server.stop();
    let server = Server::start_in(dir, &["--api-key", KEY]);
    assert_eq!(refused(&server).0, 403, "the ban survived the restart");
    let (status, _, body) = call(&server, "DELETE", "/api/users/al/ban", Some(KEY), None, "");
    assert_eq!((status, body), (200, json!({"lifted": true})));
    let _al = connect_json(&server, "b", "al");
    let (_, dir) = server.stop();
    let server = Server::start_in(dir, &["--api-key", KEY]);
    let _al = connect_json(&server, "b", "al");
    let (status, body) = post(&server, "/api/users/al/ban", &json!({"seconds": 0}));
    assert_eq!((status, error_code(&body)), (400, "invalid_parameter"));
}

#[test]
fn a_muted_user_still_reads_but_cannot_post() {
    let server = keyed(&[]);
    let mut al = connect_json(&server, "m", "al");
    let mut bo = connect_json(&server, "m", "bo");
    let (status, body) = post(&server, "/api/rooms/m/mute/al", &json!({"seconds": 600}));
    assert_eq!(status, 200, "{body}");
    send_json(&mut al, json!({"type": "message", "room": "m", "content": "hi", "client_id": "x1"}));
    let err = recv_event(&mut al, "error");
    assert_eq!((&err["code"], &err["client_id"]), (&json!("muted"), &json!("x1")));
    send_json(&mut bo, json!({"type": "message", "room": "m", "content": "still there?"}));
    assert_eq!(recv_event(&mut al, "message")["content"], "still there?");
    let mut al_text = connect_ws(&server, "/ws/chat?room=m&nick=al");
    send_text(&mut al_text, "from text");
    assert_eq!(serde_json::from_str::<Value>(&recv_text(&mut al_text)).expect("json")["code"], "muted");
    drop((al, bo, al_text));

    let (_, dir) = server.stop();
    let server = Server::start_in(dir, &["--api-key", KEY]);
    let mut al = connect_json(&server, "m", "al");
    send_json(&mut al, json!({"type": "message", "room": "m", "content": "after restart"}));
    assert_eq!(recv_event(&mut al, "error")["code"], "muted", "the mute survived the restart");
    let (status, _, body) = call(&server, "DELETE", "/api/rooms/m/mute/al", Some(KEY), None, "");
    assert_eq!((status, body), (200, json!({"lifted": true})));
    send_json(&mut al, json!({"type": "message", "room": "m", "content": "free"}));
    assert_eq!(recv_event(&mut al, "message")["content"], "free");
}

#[test]
fn the_keys_file_is_read_again_on_sighup() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("keys");
    std::fs::write(&file, "file-key-one-0123456789\n").expect("write");
    let server = Server::start(&["--api-keys-file", file.to_str().expect("utf8")]);
    let status = |key: &str| call(&server, "GET", "/api/rooms", Some(key), None, "").0;
    assert_eq!(status("file-key-one-0123456789"), 200);
    std::fs::write(&file, "# rotated\nfile-key-two-0123456789\n").expect("write");
    server.signal("HUP");
    wait_until("the new key", || status("file-key-two-0123456789") == 200);
    assert_eq!(status("file-key-one-0123456789"), 401);
}

#[test]
fn keep_alive_requests_are_answered_in_order() {
    let server = keyed(&[]);
    let mut batch = Vec::new();
    for i in 0..20 {
        let body = json!({"user": "bot", "content": format!("k{i}")}).to_string();
        batch.extend_from_slice(
            format!(
                "POST /api/rooms/ka/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
                 Content-Type: application/json\r\nIdempotency-Key: ka-{i}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    let mut raw = Raw::connect(&server);
    raw.send(&batch);
    let ids: Vec<u64> = (0..20)
        .map(|_| {
            let (status, _, body) = raw.read_response();
            assert_eq!(status, 201);
            serde_json::from_slice::<Value>(&body).expect("json")["id"].as_u64().expect("id")
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let stored: Vec<u64> = history(&server, "ka").iter().rev().map(|m| m["id"].as_u64().expect("id")).collect();
    assert_eq!(stored, ids);
}

mod cluster {
    //! Two nodes on a real `redis-server`: the API publishes through Redis (the answer carries the id
    //! Redis gave) and members on both nodes receive it; with Redis away the node's provisional id.

    use super::*;
    use crate::support::redis::RedisServer;

    fn node(redis: &RedisServer, id: &str) -> Server {
        let url = redis.url();
        let server = Server::start(&["--redis-url", url.as_str(), "--node-id", id, "--api-key", KEY]);
        wait_until("node linked to redis", || linked(&server) == Some(true));
        server
    }

    /// Both links up and nothing waiting for a replay (`Some(false)`: both down).
    fn linked(server: &Server) -> Option<bool> {
        let (_, _, body) = http_get(server, "/healthz");
        let c = serde_json::from_slice::<Value>(&body).expect("json")["cluster"].clone();
        match (&c["publisher_up"], &c["subscriber_up"]) {
            (Value::Bool(true), Value::Bool(true)) if c["outbox"] == 0 => Some(true),
            (Value::Bool(false), Value::Bool(false)) => Some(false),
            _ => None,
        }
    }

    #[test]
    fn publishing_through_either_node_reaches_members_on_both() {
        let mut redis = RedisServer::start();
        let a = node(&redis, "api-a");
        let b = node(&redis, "api-b");
        let mut on_a = connect_json(&a, "c", "ann");
        let mut on_b = connect_json(&b, "c", "bob");
        let (status, body) = post(&a, "/api/rooms/c/messages", &json!({"user": "bot", "content": "via a"}));
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_u64().expect("id");
        for ws in [&mut on_a, &mut on_b] {
            let event = recv_event(ws, "message");
            assert_eq!((event["id"].as_u64(), event["content"].as_str()), (Some(id), Some("via a")));
        }
        let messages: Vec<Value> =
            (0..5).map(|i| json!({"room": "c", "user": "bot", "content": format!("b{i}")})).collect();
        let (status, body) = post(&b, "/api/publish", &json!({ "messages": messages }));
        assert_eq!(status, 201, "{body}");
        let ids: Vec<u64> = body["ids"].as_array().expect("ids").iter().filter_map(Value::as_u64).collect();
        assert!(ids.len() == 5 && ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > id, "{ids:?}");
        for ws in [&mut on_a, &mut on_b] {
            let got: Vec<u64> = (0..5).map(|_| recv_event(ws, "message")["id"].as_u64().expect("id")).collect();
            assert_eq!(got, ids);
        }
        // An idempotency key holds on the node that remembers it.
        let keyed = |server: &Server| {
            let msg = json!({"user": "bot", "content": "once"});
            let (status, _, body) =
                call(server, "POST", "/api/rooms/c/messages", Some(KEY), Some(&msg), "Idempotency-Key: c-1\r\n");
            assert_eq!(status, 201, "{body}");
            body["id"].as_u64().expect("id")
        };
        let first = keyed(&a);
        assert_eq!(keyed(&a), first);
        assert_eq!(recv_event(&mut on_b, "message")["id"].as_u64(), Some(first));

        // Redis away: the node's provisional id, final (the replay keeps it).
        redis.kill();
        wait_until("a noticed the outage", || linked(&a) == Some(false));
        let (status, body) = post(&a, "/api/rooms/c/messages", &json!({"user": "bot", "content": "while away"}));
        assert_eq!(status, 201, "{body}");
        let provisional = body["id"].as_u64().expect("id");
        loop {
            let event = recv_event(&mut on_a, "message");
            if event["content"] == "while away" {
                assert_eq!(event["id"].as_u64(), Some(provisional));
                break;
            }
        }
    }

    /// Sends messages as `ws` until one is refused with `muted` (`true`) or accepted (`false`,
    /// once the state wanted is reached).
    fn posts_muted(ws: &mut Client, n: &mut u32) -> bool {
        *n += 1;
        let cid = format!("p{n}");
        send_json(ws, json!({"type": "message", "room": "m", "content": "try", "client_id": cid}));
        loop {
            let event = recv_json(ws);
            if event["client_id"] == cid.as_str() {
                return event["type"] == "error" && event["code"] == "muted";
            }
        }
    }

    /// The handshake status of `user` joining room `m` on `server`.
    fn upgrade_status(server: &Server, user: &str) -> u16 {
        Raw::connect(server).handshake(server, &format!("/ws?format=json&room=m&nick={user}"), "").0
    }

    #[test]
    fn a_node_that_was_away_learns_the_bans_mutes_and_lifts_made_meanwhile() {
        let redis = RedisServer::start();
        let a = node(&redis, "away-a");
        let b = node(&redis, "away-b");
        assert_eq!(post(&a, "/api/users/old/ban", &json!({"seconds": 600})).0, 200);
        wait_until("b refuses old", || upgrade_status(&b, "old") == 403);
        let (status, dir) = b.stop();
        assert!(status.success(), "{status}");

        // While b is away: two decisions in force, one made and lifted.
        assert_eq!(post(&a, "/api/users/al/ban", &json!({"seconds": 600})).0, 200);
        assert_eq!(post(&a, "/api/rooms/m/mute/bo", &json!({"seconds": 600})).0, 200);
        assert_eq!(post(&a, "/api/users/cy/ban", &json!({"seconds": 600})).0, 200);
        assert_eq!(call(&a, "DELETE", "/api/users/cy/ban", Some(KEY), None, "").0, 200);

        let url = redis.url();
        let b = Server::start_in(dir, &["--redis-url", url.as_str(), "--node-id", "away-b", "--api-key", KEY]);
        wait_until("b linked again", || linked(&b) == Some(true));
        assert_eq!(upgrade_status(&b, "al"), 403, "a ban made while b was away holds on b");
        assert_eq!(upgrade_status(&b, "old"), 403, "one b stored before still holds");
        assert_eq!(upgrade_status(&b, "cy"), 101, "a ban lifted meanwhile is not in force");
        let mut bo = connect_json(&b, "m", "bo");
        assert!(posts_muted(&mut bo, &mut 0), "a mute made while b was away holds on b");
    }

    #[test]
    fn moderation_through_one_node_holds_on_the_other() {
        let redis = RedisServer::start();
        let a = node(&redis, "mod-a");
        let b = node(&redis, "mod-b");
        let mut al = connect_json(&b, "m", "al");
        let mut n = 0;
        let (status, _) = post(&a, "/api/rooms/m/mute/al", &json!({"seconds": 600}));
        assert_eq!(status, 200);
        wait_until("al muted on b", || posts_muted(&mut al, &mut n));
        let (status, _, _) = call(&a, "DELETE", "/api/rooms/m/mute/al", Some(KEY), None, "");
        assert_eq!(status, 200);
        wait_until("al free on b", || !posts_muted(&mut al, &mut n));

        let (status, _) = post(&a, "/api/users/al/disconnect", &json!({"reason": "from a", "reconnect": true}));
        assert_eq!(status, 200);
        assert_eq!(close_of(&mut al), (4000, "disconnected: from a".to_string()));

        let mut al = connect_json(&b, "m", "al");
        let (status, _) = post(&a, "/api/users/al/ban", &json!({"seconds": 600}));
        assert_eq!(status, 200);
        assert_eq!(close_of(&mut al).0, 4501, "closed on the other node");
        let mut raw = Raw::connect(&b);
        assert_eq!(raw.handshake(&b, "/ws?format=json&room=m&nick=al", "").0, 403);
        let (status, _, _) = call(&a, "DELETE", "/api/users/al/ban", Some(KEY), None, "");
        assert_eq!(status, 200);
        wait_until("al may connect to b again", || {
            Raw::connect(&b).handshake(&b, "/ws?format=json&room=m&nick=al", "").0 == 101
        });
    }

    #[test]
    fn presence_and_rooms_agree_from_either_node() {
        let redis = RedisServer::start();
        let a = node(&redis, "list-a");
        let b = node(&redis, "list-b");
        let _al = connect_json(&a, "p", "al");
        let _bo = connect_json(&b, "p", "bo");
        for server in [&a, &b] {
            wait_until("both users listed", || {
                let users = get(server, "/api/rooms/p/presence").1["users"].clone();
                users.as_array().is_some_and(|u| u.len() == 2)
            });
            let (_, presence) = get(server, "/api/rooms/p/presence");
            let names: Vec<&str> =
                presence["users"].as_array().expect("users").iter().filter_map(|u| u["user"].as_str()).collect();
            assert_eq!((names, &presence["members"]), (vec!["al", "bo"], &json!(2)));
            let (_, rooms) = get(server, "/api/rooms");
            assert_eq!(rooms["rooms"][0]["room"], "p");
            assert_eq!(rooms["rooms"][0]["members"], 2, "{rooms}");
            // The other node's connection is counted once its rows are written (its next heartbeat).
            wait_until("both connections counted", || get(server, "/api/rooms").1["rooms"][0]["connections"] == 2);
            let (_, rooms) = get(server, "/api/rooms");
            assert_eq!(rooms["rooms"], json!([{"room": "p", "members": 2, "connections": 2}]));
            let (_, presence) = get(server, "/api/rooms/p/presence");
            assert_eq!(presence["users"], json!([{"user": "al", "connections": 1}, {"user": "bo", "connections": 1}]));
        }
    }

    #[test]
    fn a_users_connections_are_listed_from_every_node_and_leave_with_their_node() {
        let redis = RedisServer::start();
        let a = node(&redis, "conns-a");
        let b = node(&redis, "conns-b");
        let mut on_a = connect_json(&a, "p", "al");
        let mut on_b = vec![connect_json(&b, "q", "al"), connect_json(&b, "p", "al")];
        let listed = |server: &Server| {
            let (status, body) = get(server, "/api/users/al/connections");
            assert_eq!(status, 200, "{body}");
            body
        };
        let nodes_of = |body: &Value| -> Vec<String> {
            let mut nodes: Vec<String> = body["connections"]
                .as_array()
                .expect("connections")
                .iter()
                .map(|c| c["node"].as_str().expect("each connection names its node").to_string())
                .collect();
            nodes.sort();
            nodes
        };
        for server in [&a, &b] {
            wait_until("al's three connections listed", || nodes_of(&listed(server)).len() == 3);
            let body = listed(server);
            assert_eq!(nodes_of(&body), ["conns-a", "conns-b", "conns-b"], "{body}");
            assert_eq!(body["rooms"], json!(["p", "q"]), "{body}");
            let (_, presence) = get(server, "/api/rooms/p/presence");
            assert_eq!(presence["users"], json!([{"user": "al", "connections": 2}]), "{presence}");
            let (_, rooms) = get(server, "/api/rooms");
            let expected = json!([
                {"room": "p", "members": 1, "connections": 2},
                {"room": "q", "members": 1, "connections": 1}
            ]);
            assert_eq!(rooms["rooms"], expected, "{rooms}");
        }
        // A change after the rows were written (node b's heartbeats skip rebuilding them while
        // nothing changes): one of its connections closes, and node a sees it.
        drop(on_b.pop());
        wait_until("node b's closed connection gone from node a's listing", || {
            nodes_of(&listed(&a)) == ["conns-a", "conns-b"]
                && get(&a, "/api/rooms/p/presence").1["users"] == json!([{"user": "al", "connections": 1}])
        });
        // A join alone (no connection comes or goes) changes node a's rows too.
        send_json(&mut on_a, json!({"type": "join", "room": "r"}));
        wait_until("node a's new room in node b's listing", || listed(&b)["rooms"] == json!(["p", "q", "r"]));
        // Killed: its rows expire with its heartbeat.
        drop(b.kill9());
        wait_until("node b's connections gone", || nodes_of(&listed(&a)) == ["conns-a"]);
        assert_eq!(listed(&a)["rooms"], json!(["p", "r"]));
    }

    #[test]
    fn a_listing_without_redis_is_refused_with_503_and_whole_again_once_it_is_back() {
        let mut redis = RedisServer::start();
        let a = node(&redis, "nolist-a");
        let b = node(&redis, "nolist-b");
        let _al = [connect_json(&a, "p", "al"), connect_json(&b, "p", "al")];
        let listed = || get(&a, "/api/users/al/connections").1["connections"].as_array().map_or(0, Vec::len);
        wait_until("both connections listed", || listed() == 2);
        redis.kill();
        for path in ["/api/rooms", "/api/rooms/p/presence", "/api/users/al/connections"] {
            let (status, body) = get(&a, path);
            assert_eq!((status, &body["error"]["code"]), (503, &json!("unavailable")), "{path}: {body}");
        }
        // An empty Redis: node b writes its rows whole again, not only what changed.
        redis.restart();
        wait_until("both listed again", || listed() == 2);
    }

    #[test]
    fn an_idempotency_key_publishes_once_whichever_node_is_asked() {
        let redis = RedisServer::start();
        let a = node(&redis, "idem-a");
        let b = node(&redis, "idem-b");
        let keyed = |server: &Server, key: &str| {
            let msg = json!({"user": "bot", "content": format!("once {key}")});
            let (status, _, body) = call(
                server,
                "POST",
                "/api/rooms/i/messages",
                Some(KEY),
                Some(&msg),
                &format!("Idempotency-Key: {key}\r\n"),
            );
            assert_eq!(status, 201, "{body}");
            body["id"].as_u64().expect("id")
        };
        let first = keyed(&a, "x-1");
        assert_eq!(keyed(&b, "x-1"), first, "the other node answers the first id");
        assert_eq!(keyed(&b, "x-1"), first);
        let other = keyed(&b, "x-2");
        assert_ne!(other, first);
        assert_eq!(keyed(&a, "x-2"), other);
        for server in [&a, &b] {
            wait_until("both messages stored", || history(server, "i").len() >= 2);
            let ids: Vec<u64> = history(server, "i").iter().filter_map(|m| m["id"].as_u64()).collect();
            assert_eq!(ids, vec![other, first], "each key published once (newest first)");
        }
    }
}

#[test]
fn the_api_redacts_a_message_members_see_it_deleted_and_history_keeps_a_tombstone() {
    let server = keyed(&[]);
    let mut ann = connect_json(&server, "r", "ann");
    let (status, body) = post(&server, "/api/rooms/r/messages", &json!({"user": "bot", "content": "spam link"}));
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_u64().expect("id");
    assert_eq!(recv_event(&mut ann, "message")["id"], id);
    let path = format!("/api/rooms/r/messages/{id}");
    let (status, _, body) = call(&server, "DELETE", &path, Some(KEY), None, "");
    assert_eq!((status, &body), (200, &json!({"id": id, "deleted": true})));
    assert_eq!(recv_event(&mut ann, "deleted")["id"].as_u64(), Some(id), "members see it deleted");
    let rows = history(&server, "r");
    assert_eq!(rows[0]["deleted"], true, "{rows:?}");
    assert!(rows[0].get("content").is_none(), "{rows:?}");
    // A retry is safe; other ids, other rooms and other methods are refused with their statuses.
    assert_eq!(call(&server, "DELETE", &path, Some(KEY), None, "").0, 200, "already deleted: still 200");
    let (status, _, body) = call(&server, "DELETE", &format!("/api/rooms/other/messages/{id}"), Some(KEY), None, "");
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    assert_eq!(call(&server, "DELETE", "/api/rooms/r/messages/x1", Some(KEY), None, "").0, 400);
    let (status, head, _) = call(&server, "GET", &path, Some(KEY), None, "");
    assert_eq!(status, 405);
    assert!(head.contains("Allow: DELETE"), "{head}");
    assert_eq!(call(&server, "DELETE", &path, None, None, "").0, 401);
}
