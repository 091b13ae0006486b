//! RFC 6455 conformance, organised like Autobahn's fuzzing-client cases, against a client alone in a
//! room (which sees its own messages echoed). Autobahn itself (Python 2) cannot run on this machine;
//! these cases are written from the RFC and the suite's case descriptions.

use crate::support::*;

fn alone(server: &Server, room: &str) -> Raw {
    Raw::websocket(server, &format!("/ws/chat?room={room}"))
}

fn echo(raw: &mut Raw, opcode: u8, payload: &[u8]) {
    raw.send_frame(0x80 | opcode, payload);
    let (got_op, got) = raw.read_frame().expect("echo");
    assert_eq!(got_op, opcode, "opcode for {} bytes", payload.len());
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "payload of {} bytes echoed intact", payload.len());
}

#[test]
fn case_1_framing_text_and_binary_of_every_length_class() {
    let server = Server::start(&["--max-message", "1048576", "--max-outbuf", "4194304", "--rate-limit-bytes", "0"]);
    let mut raw = alone(&server, "c1");
    for len in [0usize, 1, 125, 126, 127, 128, 65535, 65536, 65537, 1_000_000] {
        let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        echo(&mut raw, 0x1, &text);
        let binary: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        echo(&mut raw, 0x2, &binary);
    }
}

#[test]
fn case_2_pings_and_pongs() {
    let server = Server::start(&[]);
    let mut raw = alone(&server, "c2");
    for payload in [&b""[..], b"Hello", &[0u8, 255, 7, 9][..], &[b'*'; 125][..]] {
        raw.send_frame(0x89, payload);
        assert_eq!(raw.read_frame(), Some((0xA, payload.to_vec())));
    }
    // An unsolicited pong is ignored; the connection keeps working.
    raw.send_frame(0x8A, b"unsolicited");
    echo(&mut raw, 0x1, b"after pong");
    // Ten pings in one write get ten pongs, in order.
    let mut burst = Vec::new();
    for i in 0..10u8 {
        burst.extend(client_frame(0x89, &[i], true));
    }
    raw.send(&burst);
    for i in 0..10u8 {
        assert_eq!(raw.read_frame(), Some((0xA, vec![i])));
    }
    // Ping payload over 125 bytes fails the connection.
    raw.send_frame(0x89, &[0u8; 126]);
    assert_eq!(raw.expect_close(), Some(1002));
}

#[test]
fn case_3_and_4_reserved_bits_and_opcodes_fail_the_connection() {
    let server = Server::start(&[]);
    for first in [0x91u8, 0xA1, 0xB1, 0xC1, 0xD1, 0xE1, 0xF1] {
        let mut raw = alone(&server, "c3");
        raw.send_frame(first, b"reserved bits");
        assert_eq!(raw.expect_close(), Some(1002), "first byte {first:#x}");
    }
    for opcode in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
        let mut raw = alone(&server, "c4");
        // A valid message first: it must still be echoed before the failure.
        raw.send_frame(0x81, b"valid");
        raw.send_frame(0x80 | opcode, b"");
        assert_eq!(raw.read_frame(), Some((0x1, b"valid".to_vec())), "opcode {opcode}");
        assert_eq!(raw.expect_close(), Some(1002), "opcode {opcode}");
    }
}

#[test]
fn case_5_fragmentation() {
    let server = Server::start(&[]);
    let mut raw = alone(&server, "c5");
    // One-byte fragments with pings interleaved.
    let text = b"fragmented message";
    raw.send_frame(0x01, &text[..1]);
    for (i, byte) in text[1..].iter().enumerate() {
        raw.send_frame(0x89, b"i");
        let last = i == text.len() - 2;
        raw.send_frame(if last { 0x80 } else { 0x00 }, &[*byte]);
    }
    for _ in 1..text.len() {
        assert_eq!(raw.read_frame(), Some((0xA, b"i".to_vec())));
    }
    assert_eq!(raw.read_frame(), Some((0x1, text.to_vec())));
    // Binary in fragments, including empty ones.
    raw.send_frame(0x02, b"");
    raw.send_frame(0x00, &[1, 2, 3]);
    raw.send_frame(0x80, b"");
    assert_eq!(raw.read_frame(), Some((0x2, vec![1, 2, 3])));
    // A fragmented ping fails the connection.
    raw.send_frame(0x09, b"frag");
    raw.send_frame(0x80, b"ment");
    assert_eq!(raw.expect_close(), Some(1002));
    let mut raw = alone(&server, "c5b");
    raw.send_frame(0x00, b"continuation first");
    assert_eq!(raw.expect_close(), Some(1002));
}

#[test]
fn case_6_utf8_valid_accepted_invalid_fails_fast() {
    let server = Server::start(&[]);
    let mut raw = alone(&server, "c6");
    for valid in ["κόσμε", "\u{0}", "\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}", "\u{fffd}"] {
        echo(&mut raw, 0x1, valid.as_bytes());
    }
    // A valid 4-byte sequence split over three fragments.
    let emoji = "😀".as_bytes();
    raw.send_frame(0x01, &emoji[..1]);
    raw.send_frame(0x00, &emoji[1..3]);
    raw.send_frame(0x80, &emoji[3..]);
    assert_eq!(raw.read_frame(), Some((0x1, emoji.to_vec())));
    let invalid: [&[u8]; 6] = [
        &[0xed, 0xa0, 0x80],       // UTF-16 surrogate
        &[0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
        &[0xc0, 0xaf],             // overlong
        &[0xfe],                   // never valid
        &[0x80],                   // lone continuation
        &[0xce, 0xba, 0xe1],       // truncated at the end of the message
    ];
    for bytes in invalid {
        let mut raw = alone(&server, "c6x");
        raw.send_frame(0x81, bytes);
        assert_eq!(raw.expect_close(), Some(1007), "{bytes:x?}");
    }
    // Fail fast: an invalid first fragment closes before the message is complete.
    let mut raw = alone(&server, "c6y");
    raw.send_frame(0x01, &[b'o', b'k', 0xff]);
    assert_eq!(raw.expect_close(), Some(1007));
}

#[test]
fn case_7_close_handshake_and_codes() {
    let server = Server::start(&[]);
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
        let mut raw = alone(&server, "c7");
        raw.send_frame(0x88, &code.to_be_bytes());
        assert_eq!(raw.expect_close(), Some(code), "code {code} is echoed");
        assert!(raw.reads_eof());
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535] {
        let mut raw = alone(&server, "c7x");
        raw.send_frame(0x88, &code.to_be_bytes());
        assert_eq!(raw.expect_close(), Some(1002), "code {code} is invalid");
    }
    // Empty close body: answered with a close.
    let mut raw = alone(&server, "c7e");
    raw.send_frame(0x88, b"");
    assert_eq!(raw.expect_close(), Some(1000));
    // Data after a close is ignored, not echoed.
    let mut raw = alone(&server, "c7d");
    let mut bytes = client_frame(0x88, &1000u16.to_be_bytes(), true);
    bytes.extend(client_frame(0x81, b"after close", true));
    raw.send(&bytes);
    assert_eq!(raw.expect_close(), Some(1000));
    assert_eq!(raw.read_frame(), None, "nothing after the close frame");
}

#[test]
fn case_9_limits_large_messages_in_many_fragments() {
    let server = Server::start(&["--max-message", "4194304", "--max-outbuf", "8388608", "--rate-limit-bytes", "0"]);
    let mut raw = alone(&server, "c9");
    let payload: Vec<u8> = (0..4_000_000).map(|i| b'a' + (i % 26) as u8).collect();
    let chunks: Vec<&[u8]> = payload.chunks(65536).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let first = match (i == 0, i == chunks.len() - 1) {
            (true, _) => 0x01,
            (false, true) => 0x80,
            (false, false) => 0x00,
        };
        raw.send_frame(first, chunk);
    }
    let (opcode, got) = raw.read_frame().expect("echo");
    assert_eq!(opcode, 0x1);
    assert!(got == payload, "4 MB message assembled from 62 fragments echoed intact");
}
