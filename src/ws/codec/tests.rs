//! Decoder cases, most taken from RFC 6455 §5.7's examples.

use super::*;

const MAX: usize = 1024;

/// Masks `payload` the way a client would and frames it with `first` as the first header byte.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![first];
    match payload.len() {
        0..=125 => out.push(0x80 | payload.len() as u8),
        126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Decodes every frame in `bytes` and returns a readable trace of the events, or the first error.
fn decode_all(bytes: &[u8]) -> Result<Vec<String>, WsError> {
    decode_all_with(bytes, None)
}

/// [`decode_all`] on a connection that negotiated permessage-deflate when `inflater` is given.
fn decode_all_with(bytes: &[u8], mut inflater: Option<&mut Inflater>) -> Result<Vec<String>, WsError> {
    let mut decoder = FrameDecoder::default();
    let mut buf = bytes.to_vec();
    let mut at = 0;
    let mut trace = Vec::new();
    loop {
        match decoder.decode_with(&mut buf[at..], MAX, inflater.as_deref_mut())? {
            Decoded::Incomplete => break,
            Decoded::Frame { consumed, event } => {
                at += consumed;
                trace.push(match event {
                    None => "fragment".to_string(),
                    Some(WsEvent::Message(MessageKind::Text, p)) => format!("text:{}", String::from_utf8_lossy(p)),
                    Some(WsEvent::Message(MessageKind::Binary, p)) => format!("binary:{p:?}"),
                    Some(WsEvent::Ping(p)) => format!("ping:{}", String::from_utf8_lossy(p)),
                    Some(WsEvent::Pong) => "pong".to_string(),
                    Some(WsEvent::Close(code)) => format!("close:{code:?}"),
                });
            }
        }
    }
    Ok(trace)
}

fn check(bytes: &[u8], expected: &[&str]) {
    assert_eq!(decode_all(bytes).expect("decodes"), expected);
}

fn check_err(bytes: &[u8], expected: WsError) {
    assert_eq!(decode_all(bytes), Err(expected));
}

#[test]
fn rfc_masked_hello() {
    // RFC 6455 §5.7: "A single-frame masked text message".
    check(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58], &["text:Hello"]);
}

#[test]
fn rfc_unmasked_hello_is_rejected_from_a_client() {
    check_err(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], WsError::Unmasked);
}

#[test]
fn fragmented_text_is_assembled() {
    let mut bytes = client_frame(0x01, b"Hel");
    bytes.extend(client_frame(0x80, b"lo"));
    check(&bytes, &["fragment", "text:Hello"]);
}

#[test]
fn ping_between_fragments_is_allowed() {
    let mut bytes = client_frame(0x01, b"Hel");
    bytes.extend(client_frame(0x89, b"p"));
    bytes.extend(client_frame(0x80, b"lo"));
    check(&bytes, &["fragment", "ping:p", "text:Hello"]);
}

#[test]
fn incomplete_frame_consumes_nothing() {
    let bytes = client_frame(0x81, b"Hello");
    check(&bytes[..bytes.len() - 1], &[]);
    check(&bytes[..1], &[]);
}

#[test]
fn protocol_violations_have_their_errors() {
    check_err(&client_frame(0xC1, b"x"), WsError::ReservedBits);
    check_err(&client_frame(0x83, b"x"), WsError::ReservedOpcode(3));
    check_err(&client_frame(0x8B, b""), WsError::ReservedOpcode(11));
    check_err(&client_frame(0x09, b"x"), WsError::BadControlFrame);
    check_err(&client_frame(0x89, &[b'a'; 126]), WsError::BadControlFrame);
    check_err(&client_frame(0x80, b"x"), WsError::BadFragmentation);
    let mut two_starts = client_frame(0x01, b"a");
    two_starts.extend(client_frame(0x81, b"b"));
    check_err(&two_starts, WsError::BadFragmentation);
    check_err(&client_frame(0x81, &[0xff, 0xfe]), WsError::InvalidUtf8);
    check_err(&client_frame(0x88, &[0x03]), WsError::BadClose);
    check_err(&client_frame(0x88, &1005u16.to_be_bytes()), WsError::BadClose);
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.push(0xff);
    check_err(&client_frame(0x88, &bad_reason), WsError::InvalidUtf8);
}

#[test]
fn oversize_frame_fails_on_its_header() {
    let frame = client_frame(0x82, &vec![0u8; MAX + 1]);
    // Only the header is needed to refuse it.
    check_err(&frame[..8], WsError::TooBig { size: MAX as u64 + 1, limit: MAX });
    let huge = [0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
    assert!(matches!(decode_all(&huge), Err(WsError::TooBig { .. })));
}

#[test]
fn fragments_count_towards_the_limit() {
    let mut bytes = client_frame(0x02, &vec![0u8; MAX - 10]);
    bytes.extend(client_frame(0x80, &[0u8; 11]));
    check_err(&bytes, WsError::TooBig { size: MAX as u64 + 1, limit: MAX });
}

#[test]
fn utf8_split_across_fragments_is_fine_but_invalid_fails_fast() {
    let euro = "€".as_bytes();
    let mut bytes = client_frame(0x01, &euro[..1]);
    bytes.extend(client_frame(0x80, &euro[1..]));
    check(&bytes, &["fragment", "text:€"]);
    // 0xff can never start a sequence: fails on the first fragment.
    check_err(&client_frame(0x01, &[b'a', 0xff]), WsError::InvalidUtf8);
    // A truncated sequence in the final fragment fails.
    check_err(&client_frame(0x81, &euro[..2]), WsError::InvalidUtf8);
}

#[test]
fn close_codes_are_parsed() {
    check(&client_frame(0x88, b""), &["close:None"]);
    check(&client_frame(0x88, &1000u16.to_be_bytes()), &["close:Some(1000)"]);
}

#[test]
fn fragment_buffer_is_released_after_the_message() {
    let mut decoder = FrameDecoder::default();
    let mut first = client_frame(0x01, b"Hel");
    let mut last = client_frame(0x80, b"lo");
    assert!(matches!(decoder.decode(&mut first, MAX), Ok(Decoded::Frame { event: None, .. })));
    assert!(decoder.in_fragmented_message());
    assert!(matches!(decoder.decode(&mut last, MAX), Ok(Decoded::Frame { event: Some(_), .. })));
    decoder.finish_message();
    assert!(!decoder.in_fragmented_message());
    assert!(decoder.fragments.is_none());
}

#[test]
fn encoded_frames_parse_back() {
    for len in [0usize, 5, 125, 126, 65535, 65536] {
        let payload = vec![b'x'; len];
        let frame = encode_frame(TEXT, &payload);
        assert_eq!(frame.len(), header_len(len) + len);
        let (header, parsed_len) = FrameHeader::parse(&mut Cursor::new(&frame)).expect("ok").expect("complete");
        assert_eq!(parsed_len, len as u64);
        assert!(header.mask.is_none(), "server frames are never masked");
    }
    let close = encode_close(1001, &"é".repeat(100));
    assert!(close.len() <= 127, "close frame fits a control frame");
    assert!(std::str::from_utf8(&close[4..]).is_ok(), "reason cut on a char boundary");
}

/// RFC 7692 §7.2.3.1: "Hello" compressed, without the tail.
const HELLO_DEFLATED: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

#[test]
fn rsv1_is_a_compressed_message_only_with_deflate_negotiated() {
    let frame = client_frame(0xc1, &HELLO_DEFLATED);
    check_err(&frame, WsError::ReservedBits);
    let mut inflater = Inflater::default();
    assert_eq!(decode_all_with(&frame, Some(&mut inflater)).expect("inflates"), ["text:Hello"]);
    // RSV2/RSV3 stay reserved; RSV1 is not allowed on control frames or continuations (RFC 7692 §6).
    for bad in [
        client_frame(0xa1, b"x"),
        client_frame(0xc9, b""),
        [client_frame(0x01, b"He"), client_frame(0xc0, b"llo")].concat(),
    ] {
        assert_eq!(decode_all_with(&bad, Some(&mut inflater)), Err(WsError::ReservedBits));
    }
    // An uncompressed message on a deflate connection is fine.
    assert_eq!(decode_all_with(&client_frame(0x81, b"plain"), Some(&mut inflater)).expect("ok"), ["text:plain"]);
}

#[test]
fn a_fragmented_compressed_message_is_inflated_whole() {
    let frames =
        [client_frame(0x41, &HELLO_DEFLATED[..3]), client_frame(0x89, b"p"), client_frame(0x80, &HELLO_DEFLATED[3..])]
            .concat();
    let mut inflater = Inflater::default();
    assert_eq!(decode_all_with(&frames, Some(&mut inflater)).expect("ok"), ["fragment", "ping:p", "text:Hello"]);
}

#[test]
fn bad_compressed_messages_close_with_1007_or_1009() {
    let mut inflater = Inflater::default();
    let garbage = decode_all_with(&client_frame(0xc1, &[0xff; 8]), Some(&mut inflater));
    assert!(matches!(garbage, Err(WsError::BadDeflate(_))), "{garbage:?}");
    assert_eq!(garbage.unwrap_err().close_code(), 1007);
    let mut bomb = Vec::new();
    assert!(crate::ws::deflate::Deflater::new(9).compress(&vec![b'a'; 512 << 10], &mut bomb));
    assert!(bomb.len() < MAX, "a 512 KiB bomb fits one frame under the limit");
    let err = decode_all_with(&client_frame(0xc1, &bomb), Some(&mut inflater)).unwrap_err();
    assert_eq!(err, WsError::InflatedTooBig { limit: MAX });
    assert_eq!(err.close_code(), 1009);
    // Inflated text is held to UTF-8 like any text message.
    let mut bad_utf8 = Vec::new();
    assert!(crate::ws::deflate::Deflater::new(1).compress(&[0xc3, 0x28].repeat(64), &mut bad_utf8));
    assert_eq!(decode_all_with(&client_frame(0xc1, &bad_utf8), Some(&mut inflater)), Err(WsError::InvalidUtf8));
}
