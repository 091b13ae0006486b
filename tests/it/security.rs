//! Security and abuse limits on the real binary: token auth (HS256, RS256, ES256, room grants, REST),
//! origin checks, rate limits, connections per IP, heartbeat and idle timeout.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::support::tokens::{self, SECRET};
use crate::support::*;

fn json_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Status and error code of a handshake on a fresh connection.
fn handshake(server: &Server, path: &str, extra: &str) -> (u16, String) {
    let mut raw = Raw::connect(server);
    let (status, body) = raw.handshake(server, path, extra);
    let code =
        if status == 101 { String::new() } else { json_body(&body)["error"]["code"].as_str().unwrap_or("").into() };
    (status, code)
}

#[test]
fn the_name_comes_from_the_token_and_nick_is_ignored() {
    let server = Server::start(&["--jwt-secret", SECRET]);
    let token = tokens::user("Alice", None, None);
    let mut ws = connect_ws(&server, &format!("/ws?format=json&room=r&nick=mallory&token={token}"));
    let welcome = recv_json(&mut ws);
    assert_eq!(welcome["user"], "Alice", "{welcome}");
    recv_event(&mut ws, "joined");
    send_json(&mut ws, json!({"type": "message", "room": "r", "content": "hi"}));
    assert_eq!(recv_event(&mut ws, "message")["user"], "Alice");
    // `sub` when there is no `name`.
    let token = tokens::hs256(&json!({"sub": "bob", "exp": tokens::now() + 60}));
    let mut ws = connect_ws(&server, &format!("/ws?format=json&room=r&token={token}"));
    assert_eq!(recv_json(&mut ws)["user"], "bob");
    // The header works as well as the query.
    let token = tokens::user("Carol", None, None);
    assert_eq!(handshake(&server, "/ws/chat", &format!("Authorization: Bearer {token}\r\n")).0, 101);
}

#[test]
fn bad_tokens_get_401_with_the_reason() {
    let server = Server::start(&["--jwt-secret", SECRET, "--jwt-audience", "roomcast"]);
    let now = tokens::now();
    let cases = [
        ("missing", String::new(), "missing token"),
        ("malformed", "abc.def".into(), "malformed"),
        ("expired", tokens::hs256(&json!({"sub": "u", "aud": "roomcast", "exp": now - 3600})), "expired"),
        ("no exp", tokens::hs256(&json!({"sub": "u", "aud": "roomcast"})), "exp"),
        (
            "nbf",
            tokens::hs256(&json!({"sub": "u", "aud": "roomcast", "exp": now + 7200, "nbf": now + 3600})),
            "not yet valid",
        ),
        ("audience", tokens::user("u", Some("other"), None), "audience"),
        ("no audience", tokens::user("u", None, None), "aud"),
        (
            "signature",
            tokens::hs256_with_key(
                b"another secret that is long enough!!",
                &json!({"sub": "u", "aud": "roomcast", "exp": now + 60}),
            ),
            "signature",
        ),
        ("alg none", tokens::unsigned(&json!({"sub": "u", "aud": "roomcast", "exp": now + 60})), "algorithm"),
        (
            "rs256 on an hs256 server",
            tokens::signed_with(
                Algorithm::RS256,
                "rsa_private.pem",
                &json!({"sub": "u", "aud": "roomcast", "exp": now + 60}),
            ),
            "algorithm",
        ),
    ];
    for (what, token, reason) in cases {
        let path = if token.is_empty() { "/ws/chat".to_string() } else { format!("/ws/chat?token={token}") };
        let mut raw = Raw::connect(&server);
        let (status, body) = raw.handshake(&server, &path, "");
        assert_eq!(status, 401, "{what}: {body}");
        let body = json_body(&body);
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
        let message = body["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(reason), "{what}: {message:?} should name {reason:?}");
    }
    // A good one still gets in.
    let token = tokens::user("u", Some("roomcast"), None);
    assert_eq!(handshake(&server, &format!("/ws/chat?token={token}"), "").0, 101);
}

#[test]
fn the_rooms_claim_limits_joins_posts_history_and_the_first_room() {
    let server = Server::start(&["--jwt-secret", SECRET]);
    let token = tokens::user("ann", None, Some(&["lobby", "dev"]));
    assert_eq!(handshake(&server, &format!("/ws/chat?room=secret&token={token}"), ""), (403, "forbidden".into()));
    let mut ws = connect_ws(&server, &format!("/ws?format=json&room=lobby&token={token}"));
    recv_event(&mut ws, "welcome");
    recv_event(&mut ws, "joined");
    for cmd in [
        json!({"type": "join", "room": "secret"}),
        json!({"type": "message", "room": "secret", "content": "x"}),
        json!({"type": "history", "room": "secret"}),
    ] {
        send_json(&mut ws, cmd.clone());
        assert_eq!(recv_event(&mut ws, "error")["code"], "forbidden", "{cmd}");
    }
    send_json(&mut ws, json!({"type": "join", "room": "dev"}));
    recv_event(&mut ws, "joined");
    // "*" grants everything.
    let all = tokens::user("root", None, Some(&["*"]));
    assert_eq!(handshake(&server, &format!("/ws/chat?room=secret&token={all}"), "").0, 101);
}

#[test]
fn rest_history_follows_the_same_rules() {
    let server = Server::start(&["--jwt-secret", SECRET]);
    let token = tokens::user("ann", None, Some(&["lobby"]));
    let status = |path: &str, header: &str| {
        let mut raw = Raw::connect(&server);
        raw.send(
            format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{header}Connection: close\r\n\r\n", server.addr).as_bytes(),
        );
        raw.read_response().0
    };
    assert_eq!(status("/rooms/lobby/messages", ""), 401);
    assert_eq!(status("/rooms/lobby/messages?token=nope", ""), 401);
    assert_eq!(status(&format!("/rooms/lobby/messages?token={token}"), ""), 200);
    assert_eq!(status("/rooms/lobby/messages", &format!("Authorization: Bearer {token}\r\n")), 200);
    assert_eq!(status(&format!("/rooms/secret/messages?token={token}"), ""), 403);
    // Health and the web client stay public.
    assert_eq!(http_get(&server, "/healthz").0, 200);
    assert_eq!(http_get(&server, "/").0, 200);
}

#[test]
fn public_keys_pin_rs256_or_es256() {
    let claims = json!({"sub": "u", "exp": tokens::now() + 60});
    let rsa = repo_path("tests/fixtures/jwt/rsa_public.pem");
    let server = Server::start(&["--jwt-public-key", rsa.to_str().expect("utf8")]);
    let good = tokens::signed_with(Algorithm::RS256, "rsa_private.pem", &claims);
    assert_eq!(handshake(&server, &format!("/ws/chat?token={good}"), "").0, 101);
    // Algorithm confusion: HS256 with the public key as the HMAC secret.
    let pem = std::fs::read(&rsa).expect("pem");
    let confused = tokens::hs256_with_key(&pem, &claims);
    assert_eq!(handshake(&server, &format!("/ws/chat?token={confused}"), ""), (401, "unauthorized".into()));
    drop(server);

    let ec = repo_path("tests/fixtures/jwt/ec_public.pem");
    let server = Server::start(&["--jwt-public-key", ec.to_str().expect("utf8")]);
    let good = tokens::signed_with(Algorithm::ES256, "ec_private.pem", &claims);
    assert_eq!(handshake(&server, &format!("/ws/chat?token={good}"), "").0, 101);
    let rs = tokens::signed_with(Algorithm::RS256, "rsa_private.pem", &claims);
    assert_eq!(handshake(&server, &format!("/ws/chat?token={rs}"), "").0, 401);
}

#[test]
fn foreign_origins_get_403_unless_allowed() {
    let server = Server::start(&[]);
    let same = format!("Origin: http://{}\r\n", server.addr);
    assert_eq!(handshake(&server, "/ws/chat", &same).0, 101);
    assert_eq!(handshake(&server, "/ws/chat", "").0, 101, "no Origin: not a browser");
    assert_eq!(handshake(&server, "/ws/chat", "Origin: https://evil.example\r\n"), (403, "forbidden_origin".into()));
    drop(server);
    let server = Server::start(&["--allowed-origin", "https://app.example"]);
    assert_eq!(handshake(&server, "/ws/chat", "Origin: https://app.example\r\n").0, 101);
    assert_eq!(handshake(&server, "/ws/chat", "Origin: https://evil.example\r\n").0, 403);
    drop(server);
    let server = Server::start(&["--allowed-origin", "*"]);
    assert_eq!(handshake(&server, "/ws/chat", "Origin: https://evil.example\r\n").0, 101);
    drop(server);
    // An empty entry names no origin: it does not make an empty (or blank) Origin acceptable.
    let server = Server::start(&["--allowed-origin", "", "--allowed-origin", "/"]);
    for blank in ["Origin: \r\n", "Origin:    \r\n", "Origin: /\r\n"] {
        assert_eq!(handshake(&server, "/ws/chat", blank), (403, "forbidden_origin".into()), "{blank:?}");
    }
    let same = format!("Origin: http://{}\r\n", server.addr);
    assert_eq!(handshake(&server, "/ws/chat", &same).0, 101, "the same host is still allowed");
}

#[test]
fn a_flooding_client_is_refused_then_closed_with_1008_and_others_are_untouched() {
    let server = Server::start(&[]);
    let mut witness = connect_ws(&server, "/ws/chat?room=flood");
    let mut flooder = Raw::websocket(&server, "/ws/chat?room=flood");
    let mut burst = Vec::new();
    for i in 0..400 {
        burst.extend(client_frame(0x81, format!("flood {i}").as_bytes(), true));
    }
    flooder.send(&burst);
    let mut errors = 0;
    let mut delivered = 0;
    let code = loop {
        match flooder.read_frame() {
            Some((0x1, payload)) if payload.starts_with(b"{") => {
                let event: Value = serde_json::from_slice(&payload).expect("json");
                assert_eq!(event["code"], "rate_limited", "{event}");
                errors += 1;
            }
            Some((0x1, _)) => delivered += 1,
            Some((0x8, payload)) => break u16::from_be_bytes([payload[0], payload[1]]),
            Some(_) => {}
            None => panic!("closed without a close frame"),
        }
    };
    assert_eq!(code, 1008);
    assert_eq!(errors, 10, "ten warnings, then the close");
    assert!(delivered < 400, "refused messages are not delivered ({delivered})");
    // The burst it was allowed (40) was echoed to it before the close.
    assert!(delivered >= 40, "the accepted messages' echoes come before the close ({delivered})");
    send_text(&mut witness, "still fine");
    loop {
        if recv_text(&mut witness) == "still fine" {
            break;
        }
    }
}

#[test]
fn rate_limit_zero_turns_the_limit_off() {
    let server = Server::start(&["--rate-limit", "0"]);
    let mut raw = Raw::websocket(&server, "/ws/chat?room=fast");
    let mut burst = Vec::new();
    for i in 0..500 {
        burst.extend(client_frame(0x81, format!("m{i}").as_bytes(), true));
    }
    raw.send(&burst);
    for i in 0..500 {
        assert_eq!(raw.read_frame(), Some((0x1, format!("m{i}").into_bytes())), "message {i}");
    }
}

#[test]
fn the_byte_rate_limit_refuses_large_bursts() {
    let server = Server::start(&["--rate-limit", "0", "--rate-limit-bytes", "1000", "--max-message", "1000"]);
    let mut ws = connect_json(&server, "bytes", "b");
    // The byte burst is one largest JSON frame (6 × 1000 + 4096 bytes): 16 messages of about 950
    // bytes cannot all pass at once.
    // Distinct contents: the same one a fourth time would be refused as a repeat first.
    for i in 0..16 {
        let content = format!("{i:02}{}", "x".repeat(898));
        send_json(&mut ws, json!({"type": "message", "room": "bytes", "content": content}));
    }
    loop {
        let event = recv_json(&mut ws);
        if event["type"] == "error" {
            assert_eq!(event["code"], "rate_limited", "{event}");
            break;
        }
    }
}

#[test]
fn connections_per_ip_over_the_limit_get_429() {
    let server = Server::start(&["--max-conns-per-ip", "2"]);
    let a = connect_ws(&server, "/ws/chat");
    let _b = connect_ws(&server, "/ws/chat");
    assert_eq!(handshake(&server, "/ws/chat", ""), (429, "too_many_connections".into()));
    drop(a);
    wait_until("a slot of this address to free up", || handshake(&server, "/ws/chat", "").0 == 101);
}

#[test]
fn a_client_that_ignores_pings_is_closed_and_reaped() {
    let server = Server::start(&["--ping-interval", "1", "--ping-timeout", "1"]);
    // A well-behaved client (tungstenite answers pings while it reads) reads in its own thread.
    let mut good = connect_ws(&server, "/ws/chat?room=hb");
    let reader = std::thread::spawn(move || {
        let mut pings = 0;
        loop {
            match good.read().expect("the good client stays connected") {
                tungstenite::Message::Ping(_) => pings += 1,
                tungstenite::Message::Text(t) if t.as_str() == "stop" => return (good, pings),
                _ => {}
            }
        }
    });
    // A client that never answers is pinged, then closed with 1001 (going away: the peer is gone).
    let mut dead = Raw::websocket(&server, "/ws/chat?room=hb");
    assert_eq!(dead.read_frame(), Some((0x9, Vec::new())), "a ping");
    assert_eq!(dead.expect_close(), Some(1001));
    // It does not even acknowledge the close (socket held open, never read): after the linger it is
    // reaped anyway, and only the good client and the probe remain.
    wait_until("the dead client to be reaped", || open_connections(&server) == 2);
    let mut sender = connect_ws(&server, "/ws/chat?room=hb");
    send_text(&mut sender, "stop");
    let (_good, pings) = reader.join().expect("the good client answered every ping and stayed");
    assert!(pings >= 1, "the good client was pinged too");
    drop(dead);
}

#[test]
fn an_idle_client_is_closed_with_1008() {
    let server = Server::start(&["--idle-timeout", "1", "--ping-interval", "0"]);
    let mut raw = Raw::websocket(&server, "/ws/chat");
    assert_eq!(raw.expect_close(), Some(1008));
}
