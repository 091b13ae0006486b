//! Parsing one HTTP/1.1 request head out of a byte buffer (sans-IO).
//!
//! Only the facts the server acts on are kept (method, path, query, the handshake and API headers,
//! keep-alive, the body's length); the head is bounded by `max_header_bytes`. A GET or HEAD carrying a
//! body is refused; other methods announce theirs with `Content-Length` (`Transfer-Encoding` is
//! refused with 411: no chunked bodies), and the session reads exactly that many bytes after the
//! head, bounded per route (see `session::http_session`), so a connection buffers at most one partial
//! request beyond what one read brought (pipelined requests wait unread in the socket while responses
//! are pending).

use thiserror::Error;

/// Most header lines a request may carry.
const MAX_HEADERS: usize = 64;

/// Why a request head was refused; [`HttpError::status`] is the one place mapping each to a status.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HttpError {
    /// The bytes are not an HTTP/1.x request head.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The head exceeds `max_header_bytes` or has more than 64 header lines.
    #[error("request header too large")]
    HeadTooLarge,
    /// A body announced with `Transfer-Encoding` (chunked): only `Content-Length` bodies are read.
    #[error("request bodies must carry Content-Length (Transfer-Encoding is not supported)")]
    LengthRequired,
    /// `Content-Length` is not one decimal number, or is repeated with different values.
    #[error("bad Content-Length header")]
    BadContentLength,
    /// An HTTP/1.1 request without `Host`, or any request with more than one or an invalid one
    /// (RFC 9112 §3.2).
    #[error("bad Host header: {0}")]
    BadHost(&'static str),
}

impl HttpError {
    /// HTTP status answered for this error.
    pub(crate) fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) | HttpError::BadHost(_) => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::LengthRequired => 411,
            HttpError::BadContentLength => 400,
        }
    }

    /// Machine-readable code for the JSON error body.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            HttpError::Malformed(_) | HttpError::BadHost(_) | HttpError::BadContentLength => "bad_request",
            HttpError::HeadTooLarge => "header_too_large",
            HttpError::LengthRequired => "length_required",
        }
    }
}

/// Request method. Which ones a path serves is the router's decision (405 with `Allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// GET.
    #[default]
    Get,
    /// HEAD: like GET, without the body.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// Any other method token (refused with 405 wherever it is sent).
    Other,
}

impl Method {
    /// The method of request-line token `token`.
    fn parse(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }

    /// Whether a request of this method may carry a body.
    pub fn takes_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Delete | Method::Other)
    }
}

/// The parts of a request head the server uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// `true` for HEAD (answer without body).
    pub head_only: bool,
    /// Bytes of body after the head (`Content-Length`; 0 without one).
    pub content_length: usize,
    /// `Content-Type`, as sent.
    pub content_type: Option<String>,
    /// `Idempotency-Key`, as sent.
    pub idempotency_key: Option<String>,
    /// `Last-Event-ID` (a change-feed consumer resuming), trimmed.
    pub last_event_id: Option<String>,
    /// Path without the query, still percent-encoded.
    pub path: String,
    /// Raw query string (after `?`), empty when absent.
    pub query: String,
    /// `Upgrade` header contains the token `websocket`.
    pub upgrade_websocket: bool,
    /// `Connection` header contains the token `upgrade`.
    pub connection_upgrade: bool,
    /// Minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// `Sec-WebSocket-Key`, as sent (the last one if repeated).
    pub ws_key: Option<String>,
    /// How many `Sec-WebSocket-Key` header lines the request carried (the handshake needs exactly one).
    pub ws_key_count: u8,
    /// `Sec-WebSocket-Version`, as sent.
    pub ws_version: Option<String>,
    /// `Sec-WebSocket-Protocol` tokens, in order.
    pub ws_protocols: Vec<String>,
    /// `Sec-WebSocket-Extensions` header values, in order (parsed by `super::extensions`).
    pub ws_extensions: Vec<String>,
    /// `User-Agent`, as sent (only to spot clients with a broken extension, `super::extensions`).
    pub user_agent: Option<String>,
    /// `Origin`, as sent.
    pub origin: Option<String>,
    /// `Host`, as sent.
    pub host: Option<String>,
    /// `Authorization`, as sent.
    pub authorization: Option<String>,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
}

/// Tries to parse one request head from the front of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete and within `max_header_bytes`, and
/// `Ok(Some((consumed, request)))` once complete (`consumed` covers the head only: the body, of
/// `request.content_length` bytes, follows).
///
/// # Errors
/// [`HttpError`] for a malformed head, one over the size limit, a GET or HEAD announcing a body, a
/// chunked body (411), a bad `Content-Length`, or a missing (HTTP/1.1), repeated or invalid `Host`.
pub fn try_parse(buf: &[u8], max_header_bytes: usize) -> Result<Option<(usize, Request)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let consumed = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_header_bytes => return Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed("not an HTTP/1.x request head")),
    };
    if consumed > max_header_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    let method = Method::parse(parsed.method.unwrap_or(""));
    let target = parsed.path.unwrap_or("/");
    if !target.starts_with('/') {
        return Err(HttpError::Malformed("request target must be an absolute path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method,
        head_only: method == Method::Head,
        path: path.to_string(),
        query: query.to_string(),
        keep_alive: parsed.version == Some(1),
        minor_version: parsed.version.unwrap_or(0),
        ..Request::default()
    };
    let mut hosts = 0u8;
    let mut length: Option<usize> = None;
    for header in parsed.headers.iter() {
        let value = std::str::from_utf8(header.value).map_err(|_| HttpError::Malformed("header value is not UTF-8"))?;
        let name = header.name;
        if name.eq_ignore_ascii_case("upgrade") {
            req.upgrade_websocket |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            req.connection_upgrade |= has_token(value, "upgrade");
            if has_token(value, "close") {
                req.keep_alive = false;
            } else if has_token(value, "keep-alive") {
                req.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            req.ws_key = Some(value.trim().to_string());
            req.ws_key_count = req.ws_key_count.saturating_add(1);
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            req.ws_version = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            req.ws_protocols.extend(value.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()));
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            req.ws_extensions.push(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("user-agent") {
            req.user_agent = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("origin") {
            req.origin = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("host") {
            hosts = hosts.saturating_add(1);
            req.host = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("authorization") {
            req.authorization = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            let value = value.trim();
            let n = (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<usize>().ok())
                .flatten()
                .ok_or(HttpError::BadContentLength)?;
            if length.is_some_and(|before| before != n) {
                return Err(HttpError::BadContentLength);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !method.takes_body() {
                return Err(HttpError::Malformed("GET requests must not carry a body"));
            }
            return Err(HttpError::LengthRequired);
        } else if name.eq_ignore_ascii_case("content-type") {
            req.content_type = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            req.idempotency_key = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("last-event-id") {
            req.last_event_id = Some(value.trim().to_string());
        }
    }
    req.content_length = length.unwrap_or(0);
    if req.content_length > 0 && !method.takes_body() {
        return Err(HttpError::Malformed("GET requests must not carry a body"));
    }
    match (hosts, req.host.as_deref()) {
        (0, _) if req.minor_version >= 1 => return Err(HttpError::BadHost("HTTP/1.1 requests must carry one")),
        (2.., _) => return Err(HttpError::BadHost("more than one")),
        (_, Some(host)) if !valid_host(host) => return Err(HttpError::BadHost("not a host[:port]")),
        _ => {}
    }
    Ok(Some((consumed, req)))
}

/// Whether a `Host` value is made of the characters of `uri-host [":" port]` (RFC 3986 §3.2.2: reg-name,
/// IP literal, IPv4) and carries no userinfo. Empty is allowed (RFC 9112 §3.2).
fn valid_host(host: &str) -> bool {
    host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b))
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether `buf` starts with a HEAD request line (after any empty lines, which RFC 9112 §2.2 lets
/// a server skip, as the parser does): a HEAD refused before it parses is still answered without a
/// body.
pub(crate) fn names_head(buf: &[u8]) -> bool {
    let start = buf.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(buf.len());
    buf[start..].starts_with(b"HEAD ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Request {
        match try_parse(raw.as_bytes(), 8192) {
            Ok(Some((n, req))) => {
                assert_eq!(n, raw.len());
                req
            }
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    #[test]
    fn a_head_request_is_recognised_before_it_parses() {
        assert!(names_head(b"HEAD / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"));
        assert!(names_head(b"\r\nHEAD /ws HTTP/1.1\r\n"));
        assert!(!names_head(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!names_head(b"HEADX / HTTP/1.1\r\n\r\n"));
        assert!(!names_head(b""));
    }

    #[test]
    fn rfc6455_handshake_example() {
        let req = check(
            "GET /chat?room=a HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
        );
        assert_eq!(req.path, "/chat");
        assert_eq!(req.query, "room=a");
        assert!(req.upgrade_websocket && req.connection_upgrade && req.keep_alive);
        assert_eq!(req.ws_key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(req.ws_protocols, ["chat", "superchat"]);
        assert_eq!(req.origin.as_deref(), Some("http://example.com"));
    }

    #[test]
    fn partial_heads_wait_and_oversize_heads_fail() {
        assert_eq!(try_parse(b"GET / HTTP/1.1\r\nHost: x\r\n", 8192), Ok(None));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(try_parse(big.as_bytes(), 8192), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn bad_requests_map_to_statuses() {
        assert_eq!(try_parse(b"\x16\x03\x01garbage\r\n\r\n", 8192).map_err(|e| e.status()), Err(400));
        assert_eq!(
            try_parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 8192).map_err(|e| e.status()),
            Err(411)
        );
        assert_eq!(try_parse(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 8192).map_err(|e| e.status()), Err(400));
        assert_eq!(
            try_parse(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 8192)
                .map_err(|e| e.status()),
            Err(400)
        );
        assert_eq!(try_parse(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 8192).map_err(|e| e.status()), Err(400));
        assert_eq!(try_parse(b"GET http://x/ HTTP/1.1\r\n\r\n", 8192).map_err(|e| e.status()), Err(400));
    }

    #[test]
    fn bodies_are_announced_by_content_length() {
        let raw = "POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
                   Idempotency-Key: k1\r\n\r\n{}";
        let (n, req) = try_parse(raw.as_bytes(), 8192).expect("parses").expect("complete");
        assert_eq!(n, raw.len() - 2, "the head only");
        assert_eq!((req.method, req.content_length), (Method::Post, 2));
        assert_eq!(req.content_type.as_deref(), Some("application/json"));
        assert_eq!(req.idempotency_key.as_deref(), Some("k1"));
        let del = check("DELETE /api/x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((del.method, del.content_length), (Method::Delete, 0));
        assert_eq!(check("PATCH / HTTP/1.1\r\nHost: a\r\n\r\n").method, Method::Other);
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert!(!check("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(check("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!check("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
    }

    #[test]
    fn host_is_required_once_on_http11() {
        let status = |raw: &str| try_parse(raw.as_bytes(), 8192).map(|r| r.is_some()).map_err(|e| e.status());
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), Err(400));
        assert_eq!(status("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), Err(400));
        assert_eq!(status("GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n"), Err(400));
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), Err(400));
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), Ok(true));
        assert_eq!(status("GET / HTTP/1.1\r\nHost: \r\n\r\n"), Ok(true));
        for host in ["example.com", "127.0.0.1:8000", "[::1]:80", "xn--caf-dma.example"] {
            assert_eq!(status(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")), Ok(true), "{host}");
        }
    }

    #[test]
    fn repeated_websocket_keys_are_counted() {
        let req = check("GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Key: y\r\n\r\n");
        assert_eq!(req.ws_key_count, 2);
        assert_eq!(check("GET / HTTP/1.0\r\n\r\n").minor_version, 0);
    }
}
