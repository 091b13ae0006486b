//! A minimal blocking HTTP/1.1 client for webhook requests over `std::net::TcpStream`, one
//! [`Client`] per receiver URL (its delivery thread's), every step bounded by [`TIMEOUT`].
//!
//! Keep-alive: the connection is kept for the next `POST` when the answer allows it (HTTP/1.1
//! without `Connection: close`, a `Content-Length` body of at most [`MAX_BODY`] bytes, read and
//! dropped; a chunked or unbounded body, or HTTP/1.0, closes it after the answer), and closed after
//! [`IDLE`] without a request (receivers close idle connections too). A request on a kept
//! connection that fails before any byte of the answer arrived (the receiver closed it meanwhile)
//! is sent once more on a fresh one: at least once, as every retry (receivers dedupe by event id).
//! Only the status of the answer matters: a receiver says yes with any 2xx.
//!
//! `https://` receivers: a rustls client connection over the socket (`tls::webhook_client_config`:
//! the receiver's chain and name verified), its handshake done before the request is written so a
//! certificate problem is its own error; the same timeouts bound each step, and a connection that
//! is let go sends `close_notify` first.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::config::WebhookUrl;

/// Bound of each step: connecting (per address), writing, and reading the answer's head.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read at most while looking for the end of the answer's head.
const MAX_HEAD: usize = 8 * 1024;
/// Body bytes read (and dropped) at most to keep a connection; a longer body closes it.
const MAX_BODY: usize = 64 * 1024;
/// A kept connection unused for this long is closed rather than reused.
pub(crate) const IDLE: Duration = Duration::from_secs(30);

/// Why an attempt failed (the receiver then gets the request again later).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's reason.
        source: std::io::Error,
    },
    /// No address of the host accepted a connection within the timeout.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake with an `https://` receiver failed (its certificate not trusted or not for
    /// its name, no common protocol version, a timeout).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// Writing the request or reading the answer failed or timed out.
    #[error("request failed: {0}")]
    Io(#[from] std::io::Error),
    /// The connection closed before any byte of an answer.
    #[error("the receiver closed the connection without an answer")]
    Closed,
    /// The answer did not start with an HTTP/1.x status line, or its head was too long.
    #[error("the answer is not HTTP/1.x")]
    NotHttp,
    /// The receiver answered, but not with a 2xx status.
    #[error("the receiver answered {0}")]
    Status(u16),
}

/// A receiver's client: its kept connection, if any.
#[derive(Debug)]
pub(crate) struct Client {
    url: WebhookUrl,
    /// The TLS client configuration, for an `https://` receiver.
    tls: Option<Arc<ClientConfig>>,
    kept: Option<(Stream, Instant)>,
}

/// A connection to a receiver: plain, or TLS over the socket.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Drop for Stream {
    /// A TLS connection let go says so (`close_notify`, best effort within the write timeout), so
    /// the receiver does not see a truncation.
    fn drop(&mut self) {
        if let Stream::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.conn.write_tls(&mut s.sock);
        }
    }
}

/// The head of an answer: its status and whether the connection may carry the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    status: u16,
    reusable: bool,
}

impl Client {
    /// A client of `url` (connects at its first `post`); `tls` is the client configuration an
    /// `https://` receiver is reached with (an https URL without one fails every attempt).
    pub(crate) fn new(url: WebhookUrl, tls: Option<Arc<ClientConfig>>) -> Client {
        Client { url, tls, kept: None }
    }

    /// Sends `POST url` with `headers` (each `Name: value`, without CRLF) and `body` (JSON); `Ok`
    /// with the status when it is 2xx.
    ///
    /// # Errors
    /// [`DeliveryError`] saying which step failed, or the non-2xx status.
    pub(crate) fn post(&mut self, headers: &[(&str, &str)], body: &[u8]) -> Result<u16, DeliveryError> {
        let request = self.request(headers, body);
        let kept = self.kept.take().filter(|(_, since)| since.elapsed() < IDLE);
        let answer = match kept {
            Some((mut stream, _)) => match exchange(&mut stream, &request) {
                Ok(answer) => Ok((answer, stream)),
                // The receiver had closed the kept connection (not a slow one: a timeout is an error).
                Err((err, false)) if is_closed(&err) => self.fresh(&request),
                Err((err, _)) => Err(err),
            },
            None => self.fresh(&request),
        };
        let (answer, stream) = answer?;
        if answer.reusable {
            self.kept = Some((stream, Instant::now()));
        }
        if (200..300).contains(&answer.status) { Ok(answer.status) } else { Err(DeliveryError::Status(answer.status)) }
    }

    fn fresh(&mut self, request: &[u8]) -> Result<(Answer, Stream), DeliveryError> {
        let sock = connect(&self.url)?;
        sock.set_read_timeout(Some(TIMEOUT))?;
        sock.set_write_timeout(Some(TIMEOUT))?;
        let _ = sock.set_nodelay(true);
        let mut stream =
            if self.url.is_tls() { Stream::Tls(Box::new(self.handshake(sock)?)) } else { Stream::Plain(sock) };
        exchange(&mut stream, request).map(|answer| (answer, stream)).map_err(|(err, _)| err)
    }

    /// The TLS handshake with an `https://` receiver: each read and write bounded by [`TIMEOUT`],
    /// and the whole handshake too (a receiver trickling its flight a byte at a time does not hold
    /// the URL's thread longer).
    fn handshake(&self, mut sock: TcpStream) -> Result<StreamOwned<ClientConnection, TcpStream>, DeliveryError> {
        let deadline = Instant::now() + TIMEOUT;
        let tls_err = |msg: String| DeliveryError::Tls(std::io::Error::other(msg));
        let config = self.tls.clone().ok_or_else(|| tls_err("no TLS client configuration".into()))?;
        let name = ServerName::try_from(self.url.host().to_string())
            .map_err(|e| tls_err(format!("{:?} is not a valid TLS server name: {e}", self.url.host())))?;
        let mut conn = ClientConnection::new(config, name).map_err(|e| tls_err(e.to_string()))?;
        // One read or write per turn (rustls' `complete_io` would loop until done), so the deadline
        // is looked at between any two of them.
        while conn.is_handshaking() {
            if Instant::now() >= deadline {
                return Err(DeliveryError::Tls(std::io::ErrorKind::TimedOut.into()));
            }
            if conn.wants_write() {
                conn.write_tls(&mut sock).map_err(DeliveryError::Tls)?;
            } else if conn.wants_read() {
                if conn.read_tls(&mut sock).map_err(DeliveryError::Tls)? == 0 {
                    return Err(DeliveryError::Tls(std::io::ErrorKind::UnexpectedEof.into()));
                }
                conn.process_new_packets().map_err(|e| DeliveryError::Tls(std::io::Error::other(e)))?;
            } else {
                return Err(DeliveryError::Tls(std::io::Error::other("the handshake stalled")));
            }
        }
        // The client's last flight (its Finished) may still be queued.
        while conn.wants_write() {
            conn.write_tls(&mut sock).map_err(DeliveryError::Tls)?;
        }
        Ok(StreamOwned::new(conn, sock))
    }

    fn request(&self, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: roomcast/{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n",
            self.url.path(),
            self.url.host_header(),
            crate::build_info::VERSION,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(name);
            request.push_str(": ");
            request.push_str(value);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }
}

/// Whether `err`, with nothing of an answer read, means the peer had closed the connection.
fn is_closed(err: &DeliveryError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match err {
        DeliveryError::Closed => true,
        DeliveryError::Io(io) => matches!(io.kind(), BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof),
        _ => false,
    }
}

/// Writes `request` and reads the answer; an error says whether any byte of an answer had arrived.
fn exchange(stream: &mut Stream, request: &[u8]) -> Result<Answer, (DeliveryError, bool)> {
    stream.write_all(request).map_err(|err| (DeliveryError::Io(err), false))?;
    stream.flush().map_err(|err| (DeliveryError::Io(err), false))?;
    read_answer(stream)
}

fn connect(url: &WebhookUrl) -> Result<TcpStream, DeliveryError> {
    let addrs = (url.host(), url.port())
        .to_socket_addrs()
        .map_err(|source| DeliveryError::Resolve { host: url.host().to_string(), source })?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = err,
        }
    }
    Err(DeliveryError::Connect(last))
}

/// Reads the answer's head (within [`TIMEOUT`] in all, however slowly it trickles) and, for a
/// connection that stays, its `Content-Length` body; the error's flag says whether any byte of the
/// answer had arrived.
fn read_answer(stream: &mut Stream) -> Result<Answer, (DeliveryError, bool)> {
    let deadline = Instant::now() + TIMEOUT;
    let mut data = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if data.len() >= MAX_HEAD || Instant::now() >= deadline {
            return Err((DeliveryError::NotHttp, !data.is_empty()));
        }
        match stream.read(&mut chunk) {
            Ok(0) if data.is_empty() => return Err((DeliveryError::Closed, false)),
            Ok(0) => return Err((DeliveryError::NotHttp, true)),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(err) => return Err((DeliveryError::Io(err), !data.is_empty())),
        }
    };
    let status = parse_status(&data).ok_or((DeliveryError::NotHttp, true))?;
    let head = &data[..head_end];
    let body_len = match body_length(head) {
        Some(len) if len <= MAX_BODY && keeps_alive(head) => len,
        // The answer counts; the connection does not stay.
        _ => return Ok(Answer { status, reusable: false }),
    };
    let mut have = data.len() - head_end;
    while have < body_len {
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => have += n,
            _ => return Ok(Answer { status, reusable: false }),
        }
    }
    // More than the body (a pipelined surprise): do not trust the connection.
    Ok(Answer { status, reusable: have == body_len })
}

/// The value of header `name` (case-insensitive) in an answer's head.
fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The body's length: `Content-Length`, or 0 for a status that has none; `None` when chunked or
/// delimited by the close.
fn body_length(head: &[u8]) -> Option<usize> {
    let status = parse_status(head)?;
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Some(0);
    }
    if header(head, "transfer-encoding").is_some() {
        return None;
    }
    header(head, "content-length")?.parse().ok()
}

/// Whether the receiver keeps the connection: HTTP/1.1 without `Connection: close`.
fn keeps_alive(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.1 ")
        && !header(head, "connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

/// The status code of `HTTP/1.x NNN ...`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_keeps_the_connection_only_with_a_bounded_body_and_http_1_1() {
        let keeps = |head: &str| body_length(head.as_bytes()).is_some() && keeps_alive(head.as_bytes());
        assert!(keeps("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"));
        assert!(keeps("HTTP/1.1 204 No Content\r\n\r\n"), "no body by its status");
        assert!(keeps("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!keeps("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n"));
        assert!(!keeps("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(!keeps("HTTP/1.1 200 OK\r\n\r\n"), "a body delimited by the close");
        assert!(!keeps("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(body_length(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"), Some(12));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(parse_status(b"HTTP/2 200\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2x0 OK\r\n"), None);
        assert_eq!(parse_status(b"hello\r\n"), None);
    }
}
