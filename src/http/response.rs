//! Rendering HTTP/1.1 responses: status line, the headers every response carries, body.
//!
//! Every response says `X-Content-Type-Options: nosniff`; HTML also carries the Content-Security-Policy
//! the bundled web client satisfies. Error bodies are JSON (`{"error":{"code","message"}}`).

use super::status;
use crate::protocol::json;
use crate::types::ClientError;

/// Content-Security-Policy sent with HTML: scripts, styles and connections only from this origin.
/// `connect-src 'self'` covers the page's own WebSocket: CSP Level 3 matches `ws:`/`wss:` on the
/// page's host and port under `'self'` (so `ws:`/`wss:` to any host are not listed).
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// A response ready to be rendered.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// Status code.
    pub(crate) status: u16,
    /// `Content-Type` value.
    pub(crate) content_type: &'static str,
    /// Body bytes (omitted on the wire for HEAD).
    pub(crate) body: Vec<u8>,
    /// Extra header lines, without CRLF.
    pub(crate) headers: Vec<String>,
}

impl Response {
    /// A response with a body and content type.
    pub(crate) fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response { status, content_type, body, headers: Vec::new() }
    }

    /// A JSON body.
    pub(crate) fn json(status: u16, body: Vec<u8>) -> Self {
        Response::new(status, "application/json", body)
    }

    /// A JSON error body `{"error":{"code":…,"message":…}}`.
    pub(crate) fn error(status: u16, code: &str, message: &str) -> Self {
        Response::json(status, json::http_error_body(code, message))
    }

    /// The JSON error body of a client error, with the status [`status::of`] maps its code to.
    pub(crate) fn client_error(err: &ClientError) -> Self {
        Response::error(status::of(err.code), err.code.as_str(), &err.message)
    }

    /// Adds one header line (`Name: value`).
    pub(crate) fn with_header(mut self, line: String) -> Self {
        self.headers.push(line);
        self
    }

    /// Renders the response; `keep_alive` decides the `Connection` header, `head_only` drops the body
    /// (tests; the session sends head and body without joining them: `into_parts`).
    #[cfg(test)]
    pub(crate) fn render(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut out = self.head(keep_alive);
        if !head_only {
            out.reserve_exact(self.body.len());
            out.extend_from_slice(&self.body);
        }
        out
    }

    /// Splits the response into its head and its body (empty for HEAD), so a large body is queued as it
    /// is rather than copied behind the head.
    pub(crate) fn into_parts(self, keep_alive: bool, head_only: bool) -> (Vec<u8>, Vec<u8>) {
        let head = self.head(keep_alive);
        (head, if head_only { Vec::new() } else { self.body })
    }

    /// Status line and headers, up to and including the blank line.
    fn head(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nX-Content-Type-Options: nosniff\r\n\
                 Cache-Control: no-store\r\nConnection: {}\r\n",
                self.status,
                reason(self.status),
                self.content_type,
                self.body.len(),
                if keep_alive { "keep-alive" } else { "close" },
            )
            .as_bytes(),
        );
        if self.content_type.starts_with("text/html") {
            out.extend_from_slice(format!("Content-Security-Policy: {CSP}\r\n").as_bytes());
        }
        for line in &self.headers {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// The head of a `200 text/event-stream` response (the change feed): no `Content-Length`, the body
/// is the stream and ends when the connection closes (`Connection: close` framing: simpler for every
/// SSE client than chunked encoding, and the connection takes no further request anyway).
pub(crate) fn event_stream_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
      X-Content-Type-Options: nosniff\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n"
        .to_vec()
}

/// Reason phrase for the statuses the server uses.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_status_headers_and_body() {
        let text =
            String::from_utf8(Response::new(200, "text/html; charset=utf-8", b"hi".to_vec()).render(true, false))
                .expect("utf8");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("Connection: keep-alive\r\n"));
        assert!(text.contains("X-Content-Type-Options: nosniff\r\n"));
        assert!(text.contains("Content-Security-Policy: "));
        assert!(text.contains("connect-src 'self';"), "WebSockets to this origin only: {text}");
        assert!(!text.contains("ws:"), "no WebSocket to any host: {text}");
        assert!(text.ends_with("\r\n\r\nhi"));
    }

    #[test]
    fn head_drops_the_body_but_keeps_the_length() {
        let text = String::from_utf8(Response::error(404, "not_found", "no").render(false, true)).expect("utf8");
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert!(!text.contains("Content-Length: 0"));
    }

    #[test]
    fn parts_are_the_rendered_bytes() {
        let resp = Response::error(404, "not_found", "no");
        for head_only in [false, true] {
            let (head, body) = resp.clone().into_parts(true, head_only);
            assert_eq!([head, body].concat(), resp.render(true, head_only));
        }
    }
}
