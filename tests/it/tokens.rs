//! The token lifecycle (docs/PROTOCOL.md "Tokens"): `welcome.expires_in`, `token_expired` and the
//! close 4001 after `--token-grace`, in-band `refresh`, `bearer.<token>` subprotocol entries,
//! revocation through the server API (live connections closed with 4503, old tokens refused on
//! connect and refresh, across a restart and across nodes), and `--max-conns-per-user`.
//!
//! Short lifetimes: tokens expire a few seconds ahead and the grace is 1 s; every wait is a
//! condition with the support module's generous deadline, never a timing assertion.

use serde_json::{Value, json};

use crate::support::api::{KEY, post};
use crate::support::redis::{RedisServer, node_with};
use crate::support::tokens::{SECRET, hs256, now};
use crate::support::*;

/// An auth-on server with the API on and a 1 s token grace.
fn server(extra: &[&str]) -> Server {
    let mut args = vec!["--jwt-secret", SECRET, "--api-key", KEY, "--token-grace", "1"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A token for `name` expiring `secs` from now, with optional `rooms` and `iat`.
fn token(name: &str, secs: i64, rooms: Option<&[&str]>, iat: Option<i64>) -> String {
    let mut claims = json!({"name": name, "exp": now() + secs});
    if let Some(rooms) = rooms {
        claims["rooms"] = json!(rooms);
    }
    if let Some(iat) = iat {
        claims["iat"] = json!(iat);
    }
    hs256(&claims)
}

/// A JSON client of `room` with `token` in the URL; returns it and its `welcome`.
fn connect(server: &Server, room: &str, token: &str) -> (Client, Value) {
    let mut ws = connect_ws(server, &format!("/ws?format=json&room={room}&token={token}"));
    let welcome = recv_event(&mut ws, "welcome");
    recv_event(&mut ws, "joined");
    (ws, welcome)
}

/// The status and error code of an upgrade with `token` in the URL.
fn refused(server: &Server, token: &str) -> (u16, String) {
    let (status, body) = Raw::connect(server).handshake(server, &format!("/ws?format=json&room=r&token={token}"), "");
    let code = serde_json::from_str::<Value>(&body).map(|v| v["error"]["code"].to_string()).unwrap_or_default();
    (status, code.trim_matches('"').to_string())
}

fn refresh(ws: &mut Client, token: &str) {
    send_json(ws, json!({"type": "refresh", "token": token}));
}

#[test]
fn an_expired_token_is_told_then_closed_with_4001_after_the_grace() {
    let server = server(&[]);
    let (mut ws, welcome) = connect(&server, "r", &token("al", 2, None, None));
    let expires_in = welcome["expires_in"].as_u64().expect("expires_in with auth on");
    assert!(expires_in <= 2, "{welcome}");
    let err = recv_event(&mut ws, "error");
    assert_eq!(err["code"], "token_expired", "{err}");
    assert_eq!(close_of(&mut ws), (4001, "token_expired".to_string()));

    // Without auth there is no token and no expires_in.
    let anonymous = Server::start(&[]);
    let mut ws = connect_ws(&anonymous, "/ws?format=json&room=r&nick=al");
    let welcome = recv_event(&mut ws, "welcome");
    assert!(welcome.get("expires_in").is_none(), "{welcome}");
    send_json(&mut ws, json!({"type": "refresh", "token": "x.y.z"}));
    assert_eq!(recv_event(&mut ws, "joined")["room"], "r");
    assert_eq!(recv_event(&mut ws, "error")["code"], "unauthorized", "auth off: nothing to refresh");
}

#[test]
fn a_refresh_keeps_the_connection_and_its_new_rooms_claim_replaces_the_old() {
    let server = server(&[]);
    let (mut ws, _) = connect(&server, "a", &token("al", 3, Some(&["a", "b"]), None));
    send_json(&mut ws, json!({"type": "join", "room": "b"}));
    recv_event(&mut ws, "joined");

    // Refused refreshes leave the old token in place.
    refresh(&mut ws, &token("bo", 3600, None, None));
    assert_eq!(recv_event(&mut ws, "error")["code"], "token_user_mismatch");
    refresh(&mut ws, "not-a-token");
    assert_eq!(recv_event(&mut ws, "error")["code"], "unauthorized");
    refresh(&mut ws, &hs256(&json!({"name": "al", "exp": now() - 3600})));
    assert_eq!(recv_event(&mut ws, "error")["code"], "unauthorized", "an expired token");
    send_json(&mut ws, json!({"type": "message", "room": "b", "content": "still in b"}));
    assert_eq!(recv_event(&mut ws, "message")["content"], "still in b");

    // Accepted: b is no longer granted, so it is left.
    refresh(&mut ws, &token("al", 3600, Some(&["a"]), None));
    assert_eq!(recv_event(&mut ws, "left")["room"], "b");
    let refreshed = recv_event(&mut ws, "refreshed");
    assert!(refreshed["expires_in"].as_u64().is_some_and(|s| s > 3000), "{refreshed}");
    send_json(&mut ws, json!({"type": "join", "room": "b"}));
    assert_eq!(recv_event(&mut ws, "error")["code"], "forbidden");

    // Past the old token's exp and grace the connection still works, and was told nothing.
    std::thread::sleep(std::time::Duration::from_secs(5));
    send_json(&mut ws, json!({"type": "message", "room": "a", "content": "after the old exp"}));
    assert_eq!(recv_event(&mut ws, "message")["content"], "after the old exp");
}

#[test]
fn a_bearer_subprotocol_entry_carries_the_token_and_is_never_echoed() {
    let server = server(&[]);
    let offered = format!("roomcast.v1.json, bearer.{}", token("al", 3600, None, None));
    let (mut ws, selected) = connect_ws_offering(&server, "/ws?room=r", &offered).expect("upgrade");
    assert_eq!(selected.as_deref(), Some("roomcast.v1.json"));
    assert_eq!(recv_event(&mut ws, "welcome")["user"], "al");

    let mut raw = Raw::connect(&server);
    let (status, head, body) =
        raw.handshake_head(&server, "/ws?room=r", "Sec-WebSocket-Protocol: roomcast.v1.json, bearer.not-a-token\r\n");
    assert_eq!(status, 401, "{head}{body}");
    assert!(body.contains("unauthorized") && !head.contains("bearer."), "{head}{body}");
    let mut raw = Raw::connect(&server);
    let extra = format!("Sec-WebSocket-Protocol: bearer.{}\r\n", token("al", 3600, None, None));
    let (status, head, _) = raw.handshake_head(&server, "/ws?room=r&format=json", &extra);
    assert_eq!(status, 101);
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-protocol"), "nothing selected: {head}");
}

#[test]
fn a_revocation_closes_live_connections_refuses_old_tokens_and_survives_a_restart() {
    let server = server(&[]);
    let old = token("al", 3600, None, Some(now() - 10));
    let (mut al, _) = connect(&server, "r", &old);
    let (mut bo, _) = connect(&server, "r", &token("bo", 3600, None, Some(now() - 10)));
    let (status, body) = post(&server, "/api/users/al/revoke", &json!({}));
    assert_eq!((status, &body["closed"]), (200, &json!(1)), "{body}");
    let before_s = body["before_ms"].as_i64().expect("before_ms") / 1000;
    assert_eq!(close_of(&mut al), (4503, "token_revoked".to_string()));
    send_json(&mut bo, json!({"type": "ping"}));
    recv_event(&mut bo, "pong");

    assert_eq!(refused(&server, &old), (401, "token_revoked".into()));
    let (status, _, body) = http_get(&server, &format!("/rooms/r/messages?token={old}"));
    assert_eq!(status, 401, "REST reads too: {}", String::from_utf8_lossy(&body));
    assert_eq!(refused(&server, &token("al", 3600, None, None)).0, 401, "no iat: refused while revoked");
    assert_eq!(refused(&server, &token("al", 3600, None, Some(before_s))).0, 401, "the same second");
    let fresh = token("al", 3600, None, Some(before_s + 1));
    let (mut al, _) = connect(&server, "r", &fresh);
    refresh(&mut al, &old);
    assert_eq!(recv_event(&mut al, "error")["code"], "token_revoked", "refresh is checked too");
    drop(al);

    let (_, dir) = server.stop();
    let server = Server::start_in(dir, &["--jwt-secret", SECRET, "--api-key", KEY]);
    assert_eq!(refused(&server, &old), (401, "token_revoked".into()), "the revocation survived the restart");
    connect(&server, "r", &fresh);
}

#[test]
fn a_user_gets_at_most_max_conns_per_user_connections() {
    let server = server(&["--max-conns-per-user", "2"]);
    let al = token("al", 3600, None, None);
    let first = connect(&server, "r", &al);
    let _second = connect(&server, "r", &al);
    assert_eq!(refused(&server, &al), (429, "too_many_user_connections".into()));
    let _bo = connect(&server, "r", &token("bo", 3600, None, None));
    drop(first);
    wait_until("a place for al again", || refused(&server, &al).0 == 101);
}

#[test]
fn a_revocation_on_one_node_closes_the_users_connection_on_another() {
    let redis = RedisServer::start();
    let flags = ["--jwt-secret", SECRET, "--api-key", KEY];
    let a = node_with(&redis, "tok-a", &flags);
    let b = node_with(&redis, "tok-b", &flags);
    let old = token("al", 3600, None, Some(now() - 10));
    let (mut al, _) = connect(&b, "r", &old);
    let (status, body) = post(&a, "/api/users/al/revoke", &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(close_of(&mut al), (4503, "token_revoked".to_string()), "closed on the other node");
    assert_eq!(refused(&b, &old), (401, "token_revoked".into()));
}

#[test]
fn max_conns_per_user_counts_the_users_connections_on_every_node() {
    let redis = RedisServer::start();
    let flags = ["--jwt-secret", SECRET, "--api-key", KEY, "--max-conns-per-user", "2"];
    let a = node_with(&redis, "conns-a", &flags);
    let b = node_with(&redis, "conns-b", &flags);
    let al = token("al", 3600, None, None);
    let too_many = (429, "too_many_user_connections".to_string());
    let _on_a = connect(&a, "r", &al);
    let on_b = connect(&b, "r", &al);
    // Each node hears of the other's count at its next heartbeat (about a second).
    wait_until("a third connection refused on node a", || refused(&a, &al) == too_many);
    wait_until("and on node b", || refused(&b, &al) == too_many);
    let _bo = connect(&a, "r", &token("bo", 3600, None, None));
    drop(on_b);
    wait_until("a place for al again, on node a", || refused(&a, &al).0 == 101);
    // A node that stops takes its count with it. The probe that found a place held it for a moment,
    // and node b may count it until node a's next heartbeat: connect once node b agrees.
    let mut again_on_b = None;
    wait_until("a place for al on node b too", || {
        again_on_b = try_connect_ws(&b, &format!("/ws?format=json&room=r&token={al}")).ok();
        again_on_b.is_some()
    });
    wait_until("full again", || refused(&a, &al) == too_many);
    drop(b.stop());
    wait_until("node b's connection no longer counts", || refused(&a, &al).0 == 101);
}
