//! A minimal blocking HTTP/1.1 keep-alive GET client (Content-Length and chunked bodies), used
//! by the `history` scenario; reconnects transparently when the server closes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct HttpClient {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// A response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl HttpClient {
    pub fn new(addr: SocketAddr, host: String) -> HttpClient {
        HttpClient { addr, host, stream: None, buf: Vec::with_capacity(64 * 1024) }
    }

    /// GETs `path`, retrying once on a fresh connection if a kept-alive one was closed.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        let reused = self.stream.is_some();
        match self.try_get(path) {
            Err(_) if reused => {
                self.stream = None;
                self.try_get(path)
            }
            r => r,
        }
    }

    fn try_get(&mut self, path: &str) -> io::Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.stream = Some(s);
        }
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: roomcast-load\r\nAccept: application/json\r\n\r\n",
            self.host
        );
        let result = self.exchange(req.as_bytes());
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, req: &[u8]) -> io::Result<Response> {
        let stream = self.stream.as_mut().ok_or_else(|| invalid("not connected"))?;
        stream.write_all(req)?;
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        let (status, head_len, content_length, chunked, close) = loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            self.buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(h)) => {
                    let get =
                        |name: &str| resp.headers.iter().find(|x| x.name.eq_ignore_ascii_case(name)).map(|x| x.value);
                    let cl =
                        get("content-length").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
                    let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"));
                    let close = get("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
                    break (resp.code.unwrap_or(0), h, cl, chunked, close);
                }
                Ok(httparse::Status::Partial) if self.buf.len() < 64 * 1024 => continue,
                _ => return Err(invalid("malformed HTTP response")),
            }
        };
        let mut body = self.buf[head_len..].to_vec();
        if chunked {
            body = read_chunked(stream, body)?;
        } else if let Some(cl) = content_length {
            while body.len() < cl {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(cl);
        } else {
            stream.read_to_end(&mut body)?;
            self.stream = None;
        }
        if close {
            self.stream = None;
        }
        Ok(Response { status, body })
    }
}

/// Decodes a chunked body, reading more from `stream` as needed.
fn read_chunked(stream: &mut TcpStream, mut raw: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(line_end) = raw[pos..].windows(2).position(|w| w == b"\r\n") {
            let line = std::str::from_utf8(&raw[pos..pos + line_end]).map_err(|_| invalid("bad chunk size"))?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| invalid("bad chunk size"))?;
            let data_start = pos + line_end + 2;
            if raw.len() >= data_start + size + 2 {
                if size == 0 {
                    return Ok(out);
                }
                out.extend_from_slice(&raw[data_start..data_start + size]);
                pos = data_start + size + 2;
                continue;
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}
