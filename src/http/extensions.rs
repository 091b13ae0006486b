//! `Sec-WebSocket-Extensions` negotiation of permessage-deflate (RFC 7692 §5, §7.1), sans-IO.
//!
//! The server accepts the first acceptable `permessage-deflate` offer and always answers
//! `server_no_context_takeover; client_no_context_takeover`: every message is compressed on its own,
//! so one compressed frame per message is shared by every recipient, and one inflater per shard,
//! reset per message, reads every client. Rules (docs/PROTOCOL.md, "Compression"):
//! - an offer with an unknown parameter, a repeated one or a bad value is declined (§7.1: the
//!   server MUST decline it) and the next offer is considered;
//! - `server_max_window_bits=N` (8–15) is accepted and echoed; below 15 the server sends that
//!   connection uncompressed frames only (its shared frames use a 2^15 window; RSV1-clear frames
//!   honour any window), and reads its compressed frames as usual;
//! - `client_max_window_bits` (with or without a value) is accepted and not answered: the inflater's
//!   2^15 window reads whatever window the client uses;
//! - a header that does not parse (RFC 6455 §9.1 syntax) is ignored: no extension, the connection
//!   proceeds uncompressed (refusing the handshake would cost the client its chat over a header it
//!   may not control);
//! - Safari 15.0–15.3 (WebKit on macOS and iOS 15.0–15.3) mishandles `client_no_context_takeover`:
//!   it is not offered the extension.

/// The extension's registered name.
const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// What was agreed for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateAgreed {
    /// `server_max_window_bits` from the accepted offer, echoed in the answer.
    pub(crate) server_max_window_bits: Option<u8>,
}

impl DeflateAgreed {
    /// Whether the server's shared compressed frames (2^15 window) may go to this connection.
    pub(crate) fn compress_outbound(&self) -> bool {
        self.server_max_window_bits.is_none_or(|bits| bits >= crate::ws::deflate::MAX_WINDOW_BITS)
    }

    /// The value of the answer's `Sec-WebSocket-Extensions` header.
    pub(crate) fn response_value(&self) -> String {
        let mut out = String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        if let Some(bits) = self.server_max_window_bits {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        out
    }
}

/// Picks the first acceptable permessage-deflate offer among the request's
/// `Sec-WebSocket-Extensions` header values; `None`: no extension.
pub(crate) fn negotiate(header_values: &[String], user_agent: Option<&str>) -> Option<DeflateAgreed> {
    if header_values.is_empty() || user_agent.is_some_and(broken_safari) {
        return None;
    }
    let mut offers = Vec::new();
    for value in header_values {
        for element in value.split(',') {
            if element.trim().is_empty() {
                // `1#extension` allows empty list elements.
                continue;
            }
            offers.push(parse_extension(element)?);
        }
    }
    offers.into_iter().filter(|(name, _)| name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE)).find_map(|(_, p)| accept(&p))
}

/// One offered extension: its name and its parameters (name, value without quotes).
type Offer<'a> = (&'a str, Vec<(&'a str, Option<&'a str>)>);

/// Parses `name *( ";" param )`; `None` when it breaks the syntax.
fn parse_extension(element: &str) -> Option<Offer<'_>> {
    let mut parts = element.split(';');
    let name = parts.next()?.trim();
    if !is_token(name) {
        return None;
    }
    let mut params = Vec::new();
    for part in parts {
        let (key, value) = match part.split_once('=') {
            Some((key, value)) => (key.trim(), Some(unquote(value.trim())?)),
            None => (part.trim(), None),
        };
        if !is_token(key) {
            return None;
        }
        params.push((key, value));
    }
    Some((name, params))
}

/// A token, or a quoted-string whose content is a token (RFC 7692 §7.1: values are tokens).
fn unquote(value: &str) -> Option<&str> {
    let inner = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    is_token(inner).then_some(inner)
}

/// RFC 7230 `token`: one or more tchar.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Accepts one permessage-deflate offer's parameters, or declines it (§7.1).
fn accept(params: &[(&str, Option<&str>)]) -> Option<DeflateAgreed> {
    let mut seen = [false; 4];
    let mut agreed = DeflateAgreed { server_max_window_bits: None };
    for (key, value) in params {
        let slot = match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                agreed.server_max_window_bits = Some(window_bits((*value)?)?);
                2
            }
            "client_max_window_bits" => {
                if let Some(value) = value {
                    window_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(agreed)
}

/// A window-bits value: 8–15 in decimal without leading zeros (§7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u8>().ok().filter(|bits| (8..=15).contains(bits))
}

/// WebKit 15.0–15.3 (Safari on macOS, every browser on iOS 15.0–15.3): broken
/// `client_no_context_takeover`.
fn broken_safari(ua: &str) -> bool {
    if !ua.contains("AppleWebKit/") {
        return false;
    }
    let safari = ua.contains("Safari/")
        && !ua.contains("Chrome/")
        && !ua.contains("Chromium/")
        && minor_0_to_3(ua, "Version/15", '.');
    let ios = minor_0_to_3(ua, "iPhone OS 15", '_') || minor_0_to_3(ua, "CPU OS 15", '_');
    safari || ios
}

/// Whether `ua` has `prefix`, then `sep`, then a minor version 0–3 that is not the start of a longer
/// number (15.10 is not 15.1).
fn minor_0_to_3(ua: &str, prefix: &str, sep: char) -> bool {
    ua.match_indices(prefix).any(|(at, _)| {
        let mut rest = ua[at + prefix.len()..].chars();
        rest.next() == Some(sep)
            && rest.next().is_some_and(|c| ('0'..='3').contains(&c))
            && !rest.next().is_some_and(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(values: &[&str]) -> Option<DeflateAgreed> {
        negotiate(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>(), None)
    }

    const PLAIN: Option<DeflateAgreed> = Some(DeflateAgreed { server_max_window_bits: None });

    #[test]
    fn browser_offers_are_accepted() {
        // Chromium and Firefox.
        assert_eq!(offer(&["permessage-deflate; client_max_window_bits"]), PLAIN);
        assert_eq!(offer(&["permessage-deflate"]), PLAIN);
        let answer = PLAIN.map(|a| a.response_value());
        assert_eq!(
            answer.as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }

    #[test]
    fn window_bits_are_honoured_or_the_offer_declined() {
        let eight = offer(&["permessage-deflate; server_max_window_bits=8"]).expect("accepted");
        assert_eq!(eight.server_max_window_bits, Some(8));
        assert!(!eight.compress_outbound(), "a small window gets uncompressed frames");
        assert!(eight.response_value().ends_with("; server_max_window_bits=8"));
        let full = offer(&["permessage-deflate; server_max_window_bits=\"15\"; client_max_window_bits=10"]);
        assert!(full.expect("accepted").compress_outbound());
        for bad in ["7", "16", "08", "x", "", "\"9"] {
            let header = format!("permessage-deflate; server_max_window_bits={bad}");
            assert_eq!(offer(&[&header]), None, "{header}");
        }
        assert_eq!(offer(&["permessage-deflate; server_max_window_bits"]), None, "needs a value");
        assert_eq!(offer(&["permessage-deflate; client_max_window_bits=99"]), None);
    }

    #[test]
    fn the_first_acceptable_offer_wins() {
        let agreed =
            offer(&["x-webkit-deflate-frame, permessage-deflate; foo, permessage-deflate; server_max_window_bits=10"]);
        assert_eq!(agreed.expect("third").server_max_window_bits, Some(10));
        let agreed = offer(&[
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate",
        ]);
        assert_eq!(agreed, PLAIN, "a repeated parameter declines the first; the second header's offer is taken");
        assert_eq!(offer(&["permessage-deflate; server_no_context_takeover=1"]), None, "takes no value");
        assert_eq!(offer(&["x-other"]), None);
    }

    #[test]
    fn a_malformed_header_means_no_extension() {
        assert_eq!(offer(&["permessage-deflate; a b"]), None);
        assert_eq!(offer(&["perm(essage), permessage-deflate"]), None);
        assert_eq!(offer(&["permessage-deflate; =3"]), None);
        assert_eq!(offer(&[", permessage-deflate ,"]), PLAIN, "empty list elements are allowed");
        assert_eq!(offer(&[]), None);
    }

    #[test]
    fn safari_15_0_to_15_3_is_not_offered_the_extension() {
        let values = vec!["permessage-deflate".to_string()];
        let mac = |v: &str| {
            format!(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v} Safari/605.1.15"
            )
        };
        for v in ["15.0", "15.1", "15.3", "15.2.1"] {
            assert_eq!(negotiate(&values, Some(&mac(v))), None, "{v}");
        }
        for v in ["15.4", "14.1", "16.0", "15.10"] {
            assert_eq!(negotiate(&values, Some(&mac(v))), PLAIN, "{v}");
        }
        let ios = "Mozilla/5.0 (iPhone; CPU iPhone OS 15_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/96.0 Mobile/15E148 Safari/604.1";
        assert_eq!(negotiate(&values, Some(ios)), None, "every iOS 15.2 browser is WebKit");
        let chrome =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(negotiate(&values, Some(chrome)), PLAIN);
    }
}
