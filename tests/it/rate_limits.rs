//! What counts against which rate limit (PROTOCOL.md, "Rate limits"): chat messages against
//! `--rate-limit`/`--rate-burst`; every frame against the frame budget, which leaves room for a
//! reconnecting client to rejoin every room it may be in at once; and a client closed for flooding
//! still gets the echoes of the messages accepted before the close.

use serde_json::{Value, json};

use crate::support::*;

/// The next JSON event on a raw WebSocket connection (`presence` skipped), or the close code once
/// it closes.
pub(crate) fn next(raw: &mut Raw) -> Result<Value, u16> {
    loop {
        match raw.read_frame() {
            Some((0x1, payload)) => {
                let event: Value = serde_json::from_slice(&payload).expect("JSON event");
                if event["type"] != "presence" {
                    return Ok(event);
                }
            }
            Some((0x8, payload)) if payload.len() >= 2 => return Err(u16::from_be_bytes([payload[0], payload[1]])),
            Some((0x8, _)) => return Err(1005),
            Some(_) => {}
            None => return Err(1006),
        }
    }
}

/// A raw JSON connection to `room`, past `welcome` and `joined`.
pub(crate) fn json_raw(server: &Server, room: &str) -> Raw {
    let mut raw = Raw::websocket(server, &format!("/ws?format=json&room={room}&nick=n"));
    assert_eq!(next(&mut raw).expect("welcome")["type"], "welcome");
    assert_eq!(next(&mut raw).expect("joined")["type"], "joined");
    raw
}

pub(crate) fn frames(commands: &[Value]) -> Vec<u8> {
    commands.iter().flat_map(|c| client_frame(0x81, c.to_string().as_bytes(), true)).collect()
}

pub(crate) fn message(room: &str, i: usize) -> Value {
    json!({"type": "message", "room": room, "content": format!("m{i}"), "client_id": format!("c{i}")})
}

/// 60 messages in one write (default limits: bursts of 40): 40 are accepted, 10 refused with a
/// warning each, the next one closes the connection. The 40 accepted are echoed, in order, before
/// the close frame, although the close is decided before their echoes came back through the inbox.
#[test]
fn a_flooder_gets_the_echoes_of_its_accepted_messages_before_the_close() {
    let server = Server::start(&[]);
    flood_and_expect_the_echoes_before_the_close(&server);
}

/// A client floods room `echo` with 60 messages: it gets the echoes of the accepted ones (and so
/// does a witness in the room), in order, its ten warnings, then close 1008. Shared with the
/// cluster test (echoes there come back through Redis).
pub(crate) fn flood_and_expect_the_echoes_before_the_close(server: &Server) {
    let mut witness = connect_json(server, "echo", "w");
    let mut raw = json_raw(server, "echo");
    let burst: Vec<Value> = (0..60).map(|i| message("echo", i)).collect();
    raw.send(&frames(&burst));
    let (mut echoes, mut warnings) = (Vec::new(), 0);
    let code = loop {
        match next(&mut raw) {
            Ok(event) if event["type"] == "message" => {
                echoes.push(event["client_id"].as_str().expect("client_id").to_string())
            }
            Ok(event) if event["type"] == "error" => {
                assert_eq!(event["code"], "rate_limited", "{event}");
                warnings += 1;
            }
            Ok(_) => {}
            Err(code) => break code,
        }
    };
    assert_eq!(code, 1008);
    assert_eq!(warnings, 10, "ten warnings, then the close");
    // Exactly the burst, unless the read was split and the bucket refilled a token in between.
    assert!((40..=42).contains(&echoes.len()), "{} echoes: {echoes:?}", echoes.len());
    let expected: Vec<String> = (0..echoes.len()).map(|i| format!("c{i}")).collect();
    assert_eq!(echoes, expected, "every accepted message, in order");
    // The others in the room got exactly those too.
    for id in &expected {
        let event = recv_event(&mut witness, "message");
        assert_eq!(event["client_id"], id.as_str(), "{event}");
    }
}

/// A client in every room it may be in reconnects and, in one write, rejoins each with `since`,
/// asks one history page per room and pings, right after a full burst of chat: nothing is refused.
/// Before the frame budget, joins and history counted against the 40-message burst and such a
/// client was closed with 1008 on every reconnect.
#[test]
fn a_rejoin_of_every_allowed_room_fits_in_the_control_budget() {
    for max_rooms in [64usize, 150] {
        let server = Server::start(&["--max-rooms-per-conn", &max_rooms.to_string()]);
        let mut raw = json_raw(&server, "r0");
        let mut commands: Vec<Value> = (0..40).map(|i| message("r0", i)).collect();
        for r in 1..max_rooms {
            commands.push(json!({"type": "join", "room": format!("r{r}"), "since": 0}));
        }
        for r in 1..max_rooms {
            commands.push(json!({"type": "history", "room": format!("r{r}"), "limit": 1}));
        }
        commands.extend([json!({"type": "ping"}), json!({"type": "ping"})]);
        raw.send(&frames(&commands));
        let (mut echoes, mut joined, mut histories, mut pongs) = (0, 0, 0, 0);
        while echoes < 40 || joined < max_rooms - 1 || histories < max_rooms - 1 || pongs < 2 {
            let event = next(&mut raw).unwrap_or_else(|code| panic!("{max_rooms} rooms: closed with {code}"));
            match event["type"].as_str() {
                Some("message") => echoes += 1,
                Some("joined") => joined += 1,
                Some("history") => histories += 1,
                Some("pong") => pongs += 1,
                _ => panic!("{max_rooms} rooms: unexpected {event}"),
            }
        }
        assert_eq!((echoes, joined, histories, pongs), (40, max_rooms - 1, max_rooms - 1, 2));
        // Still open and in every room: one more command is answered.
        raw.send_frame(0x81, br#"{"type":"join","room":"r1"}"#);
        let event = next(&mut raw).expect("open");
        assert_eq!(event["code"], "already_joined", "{event}");
    }
}

/// The frame budget is `--rate-burst` + 2 × `--max-rooms-per-conn` + 16 frames of any kind (here
/// 4 + 4 + 16 = 24): commands, pings and frames that do not even parse all count; one more is
/// refused with `rate_limited`. Chat messages are held to their own, smaller burst on top.
#[test]
fn every_frame_counts_against_the_frame_budget() {
    let server = Server::start(&["--max-rooms-per-conn", "2", "--rate-burst", "4"]);
    let mut raw = json_raw(&server, "budget");
    let mut burst = Vec::new();
    for i in 0..30 {
        if i % 2 == 0 {
            burst.extend(client_frame(0x81, br#"{"type":"ping"}"#, true));
        } else {
            burst.extend(client_frame(0x81, b"not json", true));
        }
    }
    raw.send(&burst);
    let answers: Vec<String> = (0..30)
        .map(|_| {
            let event = next(&mut raw).expect("an answer per frame");
            match event["type"].as_str() {
                Some("pong") => "pong".to_string(),
                _ => event["code"].as_str().unwrap_or("?").to_string(),
            }
        })
        .collect();
    for (i, answer) in answers.iter().take(24).enumerate() {
        let expected = if i % 2 == 0 { "pong" } else { "bad_json" };
        assert_eq!(answer, expected, "frame {i} is within the budget: {answers:?}");
    }
    assert!(answers[24..].iter().any(|a| a == "rate_limited"), "over the budget: {answers:?}");
    drop(raw);

    // Chat: 4 messages pass, the fifth is refused although frames are left.
    let mut raw = json_raw(&server, "budget");
    let chat: Vec<Value> = (0..5).map(|i| message("budget", i)).collect();
    raw.send(&frames(&chat));
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let event = next(&mut raw).expect("open");
        match event["type"].as_str() {
            Some("message") => seen.push("message".to_string()),
            Some("error") => seen.push(event["code"].as_str().unwrap_or("?").to_string()),
            _ => {}
        }
    }
    seen.sort();
    assert_eq!(seen, ["message", "message", "message", "message", "rate_limited"]);
    // A control command is still answered: it does not need a message token.
    raw.send_frame(0x81, br#"{"type":"ping"}"#);
    loop {
        let event = next(&mut raw).expect("open");
        if event["type"] == "pong" {
            break;
        }
        assert_eq!(event["type"], "message", "{event}");
    }
}
