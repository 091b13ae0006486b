//! Test support: start the real `roomcast` binary, talk to it over real sockets, reap it.
//!
//! Every blocking read has a timeout so a hang fails the test instead of stalling the suite, and every
//! server process is killed and waited for in `Drop`.

#![allow(dead_code)]

pub mod api;
pub mod proc;
pub mod redis;
pub mod tls;
pub mod tokens;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

/// Generous deadline for anything a test waits for (the machine may be loaded).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running `roomcast` process on a free loopback port.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The `--metrics-addr` listener's address, when the server was started with one.
    pub metrics_addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    /// The server's stderr (its log), when started with [`Server::start_logged`].
    pub log: Option<std::sync::Arc<std::sync::Mutex<String>>>,
}

impl Server {
    /// Starts the server with default settings plus `args`.
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, args)
    }

    /// Starts the server with its database in `dir`.
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Server {
        let db = dir.path().join("roomcast.db");
        Self::spawn(dir, &db, args, false)
    }

    /// Starts the server with its database at `db` (anywhere), keeping its log (stderr) in
    /// [`Server::log`] while still echoing it to the test's stderr.
    pub fn start_logged(db: &Path, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::spawn(dir, db, args, true)
    }

    /// The log so far (empty unless started with [`Server::start_logged`]).
    pub fn log_text(&self) -> String {
        self.log.as_ref().map(|l| l.lock().map(|s| s.clone()).unwrap_or_default()).unwrap_or_default()
    }

    fn spawn(dir: tempfile::TempDir, db: &Path, args: &[&str], capture_log: bool) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["--addr", "127.0.0.1:0", "--log-level", "warn", "--shards", "2"])
            .arg("--db")
            .arg(db)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if capture_log { Stdio::piped() } else { Stdio::inherit() })
            .spawn()
            .expect("spawn roomcast");
        let log = child.stderr.take().map(|stderr| {
            let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let sink = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    if let Ok(mut l) = sink.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
            log
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The metrics line, if any, comes first.
                if let Some(addr) = line.strip_prefix("metrics on http://") {
                    let _ = tx.send((true, addr.to_string()));
                } else if let Some(addr) =
                    line.strip_prefix("listening on http://").or_else(|| line.strip_prefix("listening on https://"))
                {
                    let _ = tx.send((false, addr.to_string()));
                }
            }
        });
        let mut metrics_addr = None;
        let addr = loop {
            match rx.recv_timeout(PATIENCE) {
                Ok((true, addr)) => metrics_addr = Some(addr.parse().expect("metrics address")),
                Ok((false, addr)) => break addr.parse().expect("address"),
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("roomcast did not start: {status:?}");
                }
            }
        };
        Server { child: Some(child), addr, metrics_addr, dir, log }
    }

    /// Path of the server's database.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("roomcast.db")
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([&format!("-{sig}"), &self.pid().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (after a signal).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("roomcast did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server with SIGKILL and hands back its directory (to restart on the same database).
    pub fn kill9(mut self) -> tempfile::TempDir {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// Stops the server with SIGTERM, waits, and hands back its directory.
    pub fn stop(mut self) -> (ExitStatus, tempfile::TempDir) {
        self.signal("TERM");
        let status = self.wait_exit();
        let dir = tempfile::tempdir().expect("temp dir");
        (status, std::mem::replace(&mut self.dir, dir))
    }

    /// `ws://addr/path?query` URL.
    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A WebSocket client over a blocking socket with a read timeout.
pub type Client = WebSocket<TcpStream>;

/// Connects a WebSocket client to `path_and_query`.
pub fn connect_ws(server: &Server, path_and_query: &str) -> Client {
    try_connect_ws(server, path_and_query).expect("websocket handshake")
}

/// Connects, returning the handshake error instead of panicking.
pub fn try_connect_ws(server: &Server, path_and_query: &str) -> Result<Client, String> {
    let stream = TcpStream::connect(server.addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(PATIENCE)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    tungstenite::client::client(server.ws_url(path_and_query), stream).map(|(ws, _)| ws).map_err(|e| format!("{e}"))
}

/// Connects a JSON client to `room` as `nick` and consumes `welcome` and `joined`.
pub fn connect_json(server: &Server, room: &str, nick: &str) -> Client {
    let mut ws = connect_ws(server, &format!("/ws?format=json&room={room}&nick={nick}"));
    assert_eq!(recv_json(&mut ws)["type"], "welcome");
    let joined = recv_json(&mut ws);
    assert_eq!(joined["type"], "joined", "{joined}");
    ws
}

/// Next data message (pings are answered by tungstenite itself).
pub fn recv(ws: &mut Client) -> Message {
    loop {
        match ws.read().expect("read a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// Next text message.
pub fn recv_text(ws: &mut Client) -> String {
    match recv(ws) {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Next JSON event.
pub fn recv_json(ws: &mut Client) -> Value {
    let text = recv_text(ws);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Next JSON event of `kind`, skipping `presence` events.
pub fn recv_event(ws: &mut Client, kind: &str) -> Value {
    loop {
        let event = recv_json(ws);
        if event["type"] == "presence" && kind != "presence" {
            continue;
        }
        assert_eq!(event["type"], kind, "unexpected event {event}");
        return event;
    }
}

/// Sends a text frame.
pub fn send_text(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).expect("send");
}

/// Sends a JSON value.
pub fn send_json(ws: &mut Client, value: Value) {
    send_text(ws, &value.to_string());
}

/// Reads until the server's close frame and returns its code.
pub fn expect_close(ws: &mut Client) -> u16 {
    close_of(ws).0
}

/// Reads until the server's close frame and returns its code and reason.
pub fn close_of(ws: &mut Client) -> (u16, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(CloseFrame { code, reason }))) => return (code.into(), reason.to_string()),
            Ok(Message::Close(None)) => return (1005, String::new()),
            Ok(_) => continue,
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

/// Connects a WebSocket client offering the subprotocols `protocols` (a `Sec-WebSocket-Protocol`
/// value); returns the client and the 101 response's selected subprotocol, if any.
pub fn connect_ws_offering(
    server: &Server,
    path_and_query: &str,
    protocols: &str,
) -> Result<(Client, Option<String>), String> {
    use tungstenite::client::IntoClientRequest;
    let mut request = server.ws_url(path_and_query).into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse().map_err(|_| "header value")?);
    let stream = TcpStream::connect(server.addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(PATIENCE)).map_err(|e| e.to_string())?;
    let (ws, response) = tungstenite::client::client(request, stream).map_err(|e| format!("{e}"))?;
    let selected = response.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok((ws, selected))
}

/// A raw TCP connection for hand-made HTTP and WebSocket bytes.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects.
    pub fn connect(server: &Server) -> Raw {
        Raw::connect_to(server.addr)
    }

    /// Connects to `addr` (e.g. the server's `--metrics-addr` listener).
    pub fn connect_to(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        Raw { stream, buf: Vec::new() }
    }

    /// Connects and performs a valid WebSocket handshake on `path_and_query`.
    pub fn websocket(server: &Server, path_and_query: &str) -> Raw {
        let mut raw = Raw::connect(server);
        raw.send(
            format!(
                "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                server.addr
            )
            .as_bytes(),
        );
        let (status, _, _) = raw.read_response_head();
        assert_eq!(status, 101);
        raw
    }

    /// Sends a WebSocket handshake for `path_and_query` with `extra` header lines (each ending in CRLF)
    /// and returns the response status and body (a refusal's JSON error; empty for 101).
    pub fn handshake(&mut self, server: &Server, path_and_query: &str, extra: &str) -> (u16, String) {
        let (status, _, body) = self.handshake_head(server, path_and_query, extra);
        (status, body)
    }

    /// [`Raw::handshake`], returning the response head as well: (status, head, body).
    pub fn handshake_head(&mut self, server: &Server, path_and_query: &str, extra: &str) -> (u16, String, String) {
        self.send(
            format!(
                "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
                server.addr
            )
            .as_bytes(),
        );
        let (status, head, body) = self.read_response();
        (status, head, String::from_utf8_lossy(&body).into_owned())
    }

    /// Writes bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes one masked client frame: `first` is the first header byte (FIN, RSV, opcode).
    pub fn send_frame(&mut self, first: u8, payload: &[u8]) {
        self.send(&client_frame(first, payload, true));
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Reads up to and including the next `delim` (e.g. `\n\n`, the end of a Server-Sent Event),
    /// or `None` when the server closes first.
    pub fn read_through(&mut self, delim: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = self.buf.windows(delim.len()).position(|w| w == delim) {
                return Some(self.buf.drain(..at + delim.len()).collect());
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads an HTTP response head: (status, head text, body so far is kept for `read_body`).
    pub fn read_response_head(&mut self) -> (u16, String, usize) {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                self.buf.drain(..end + 4);
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
                let len = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                return (status, head, len);
            }
            assert!(self.fill(), "connection closed before a response head");
        }
    }

    /// Reads a whole response: (status, head, body).
    pub fn read_response(&mut self) -> (u16, String, Vec<u8>) {
        let (status, head, len) = self.read_response_head();
        while self.buf.len() < len {
            assert!(self.fill(), "connection closed inside a body");
        }
        let body = self.buf.drain(..len).collect();
        (status, head, body)
    }

    /// Reads one server frame: (opcode byte, payload). Server frames must not be masked.
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        self.read_frame_head_byte().map(|(first, payload)| (first & 0x0f, payload))
    }

    /// Reads one server frame: (first header byte with FIN, RSV and opcode bits, payload).
    pub fn read_frame_head_byte(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames must not be masked");
                let (len, header) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4),
                    127 if self.buf.len() >= 10 => {
                        (u64::from_be_bytes(self.buf[2..10].try_into().expect("8 bytes")) as usize, 10)
                    }
                    n @ 0..=125 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= header + len {
                    let first = self.buf[0];
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Some((first, payload));
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads frames until a close frame; returns its code (None if the connection ended without one).
    pub fn expect_close(&mut self) -> Option<u16> {
        while let Some((opcode, payload)) = self.read_frame() {
            if opcode == 8 {
                return Some(if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 });
            }
        }
        None
    }

    /// Everything the server sends from here until it closes the connection (what is left after
    /// the last response or frame read, then every read until EOF).
    pub fn read_until_eof(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    /// Whether the server closed the TCP connection (reads EOF within the patience window).
    pub fn reads_eof(&mut self) -> bool {
        self.buf.clear();
        while self.fill() {
            self.buf.clear();
        }
        true
    }
}

/// Frames `payload` as a client would (masked unless `masked` is false).
pub fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0x1f, 0x2e, 0x3d, 0x4c];
    let bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(bit | n as u8),
        n @ 126..=65535 => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// `payload` compressed as one permessage-deflate message (RFC 7692 §7.2.1: raw DEFLATE, sync
/// flush, the trailing `00 00 ff ff` removed), as a client with no context takeover sends it.
pub fn deflate_message(payload: &[u8]) -> Vec<u8> {
    let mut compress = flate2::Compress::new_with_window_bits(flate2::Compression::new(6), false, 15);
    let mut out = Vec::with_capacity(payload.len() + 64);
    loop {
        let at = compress.total_in() as usize;
        compress.compress_vec(&payload[at..], &mut out, flate2::FlushCompress::Sync).expect("deflate");
        if compress.total_in() as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "a sync flush ends with an empty stored block");
    out.truncate(out.len() - 4);
    out
}

/// A permessage-deflate message (without its tail) inflated with a fresh 2^15 window.
pub fn inflate_message(payload: &[u8]) -> Vec<u8> {
    let mut decompress = flate2::Decompress::new_with_window_bits(false, 15);
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(payload.len() * 8 + 64);
    loop {
        let at = decompress.total_in() as usize;
        decompress.decompress_vec(&input[at..], &mut out, flate2::FlushDecompress::Sync).expect("inflate");
        if decompress.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity().max(64));
    }
}

/// One HTTP/1.1 GET on a fresh connection: (status, head, body).
pub fn http_get(server: &Server, path: &str) -> (u16, String, Vec<u8>) {
    let mut raw = Raw::connect(server);
    raw.send(format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr).as_bytes());
    raw.read_response()
}

/// Polls `cond` until it holds or `PATIENCE` passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connections the server reports in /healthz.
pub fn open_connections(server: &Server) -> u64 {
    let (status, _, body) = http_get(server, "/healthz");
    assert_eq!(status, 200);
    let value: Value = serde_json::from_slice(&body).expect("json");
    value["connections"].as_u64().expect("connections")
}

/// Reads a file path relative to the crate.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
