//! RFC 6455 violations close the connection with the RFC's code; the server keeps serving others.

use crate::support::*;

fn close_code_after(server: &Server, bytes: &[u8]) -> Option<u16> {
    let mut raw = Raw::websocket(server, "/ws/chat?room=violations");
    raw.send(bytes);
    raw.expect_close()
}

#[test]
fn protocol_violations_get_their_close_codes() {
    let server = Server::start(&["--max-message", "1000"]);
    let mut witness = connect_ws(&server, "/ws/chat?room=violations");

    let mut fragmented_ping = client_frame(0x01, b"a", true);
    fragmented_ping.extend(client_frame(0x09, b"p", true));
    let mut interleaved = client_frame(0x01, b"a", true);
    interleaved.extend(client_frame(0x81, b"b", true));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", client_frame(0x81, b"hi", false), 1002),
        ("reserved opcode 3", client_frame(0x83, b"hi", true), 1002),
        ("reserved control opcode 11", client_frame(0x8B, b"", true), 1002),
        ("rsv1 without extension", client_frame(0xC1, b"hi", true), 1002),
        ("rsv3", client_frame(0x91, b"hi", true), 1002),
        (
            "invalid utf-8",
            client_frame(
                0x81,
                &[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80],
                true,
            ),
            1007,
        ),
        ("fragmented control frame", client_frame(0x09, b"p", true), 1002),
        ("control frame over 125 bytes", client_frame(0x89, &[b'p'; 126], true), 1002),
        ("continuation without start", client_frame(0x80, b"x", true), 1002),
        ("new message inside a fragmented one", interleaved, 1002),
        ("oversize frame", client_frame(0x82, &vec![0u8; 1000 + 4096 + 1], true), 1009),
        ("huge length field", vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4], 1009),
        ("close with 1 byte body", client_frame(0x88, &[3], true), 1002),
        ("close with reserved code 1005", client_frame(0x88, &1005u16.to_be_bytes(), true), 1002),
    ];
    let _ = fragmented_ping;
    for (what, bytes, code) in cases {
        assert_eq!(close_code_after(&server, &bytes), Some(code), "{what}");
    }
    // The other client in the room never noticed.
    send_text(&mut witness, "still here");
    assert_eq!(recv_text(&mut witness), "still here");
}

#[test]
fn close_handshake_echoes_the_code_and_ping_gets_pong() {
    let server = Server::start(&[]);
    let mut raw = Raw::websocket(&server, "/ws/chat");
    raw.send_frame(0x89, b"are you there");
    assert_eq!(raw.read_frame(), Some((0x0A, b"are you there".to_vec())));
    // Fragmented text with a ping in the middle is legal.
    raw.send_frame(0x01, b"Hel");
    raw.send_frame(0x89, b"mid");
    raw.send_frame(0x80, b"lo");
    assert_eq!(raw.read_frame(), Some((0x0A, b"mid".to_vec())));
    assert_eq!(raw.read_frame(), Some((0x01, b"Hello".to_vec())));
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    raw.send_frame(0x88, &close);
    assert_eq!(raw.expect_close(), Some(1000));
    assert!(raw.reads_eof(), "server closes the TCP connection after the close handshake");
}
