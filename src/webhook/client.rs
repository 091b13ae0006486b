//! A minimal blocking HTTP/1.1 client for webhook requests: one `POST` per connection
//! (`Connection: close`) over `std::net::TcpStream`, every step bounded by [`TIMEOUT`]. Only the
//! status line of the answer is read (at most [`MAX_HEAD`] bytes): a receiver says yes with any
//! 2xx and nothing else of its answer matters.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::config::WebhookUrl;

/// Bound of each step: connecting (per address), writing, and reading the status line.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read at most while looking for the end of the status line.
const MAX_HEAD: usize = 8 * 1024;

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
    /// Writing the request or reading the answer failed or timed out.
    #[error("request failed: {0}")]
    Io(#[from] std::io::Error),
    /// The answer did not start with an HTTP/1.x status line.
    #[error("the answer is not HTTP/1.x")]
    NotHttp,
    /// The receiver answered, but not with a 2xx status.
    #[error("the receiver answered {0}")]
    Status(u16),
}

/// Sends `POST url` with `headers` (each `Name: value`, without CRLF) and `body` (JSON); `Ok` with
/// the status when it is 2xx.
///
/// # Errors
/// [`DeliveryError`] saying which step failed, or the non-2xx status.
pub(crate) fn post(url: &WebhookUrl, headers: &[(&str, &str)], body: &[u8]) -> Result<u16, DeliveryError> {
    let mut stream = connect(url)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: roomcast/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        url.path(),
        url.host_header(),
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
    stream.write_all(&bytes)?;
    let status = read_status(&mut stream)?;
    if (200..300).contains(&status) { Ok(status) } else { Err(DeliveryError::Status(status)) }
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

/// Reads until the end of the status line (within [`TIMEOUT`] in all, however slowly it trickles).
fn read_status(stream: &mut TcpStream) -> Result<u16, DeliveryError> {
    let deadline = Instant::now() + TIMEOUT;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        if head.len() >= MAX_HEAD || Instant::now() >= deadline {
            return Err(DeliveryError::NotHttp);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(DeliveryError::NotHttp);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    parse_status(&head).ok_or(DeliveryError::NotHttp)
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
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(parse_status(b"HTTP/2 200\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2x0 OK\r\n"), None);
        assert_eq!(parse_status(b"hello\r\n"), None);
    }
}
