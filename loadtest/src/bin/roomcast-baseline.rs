//! `roomcast-baseline`: the server a careful Rust engineer writes instead of roomcast, used as the
//! reference point next to roomcast in the same benchmark run. tokio (multi-threaded runtime, one
//! worker per core) + tokio-tungstenite, speaking roomcast's text protocol: a client connects to
//! `/ws/chat?room=NAME` (any path is accepted; no `room` means the room `""`), and every text frame
//! it sends is relayed verbatim to every client in that room, the sender included.
//!
//! How it is built, and why (each point is what a careful engineer does, not a roomcast trick):
//! - One `tokio::sync::broadcast` channel per room, holding shared `Utf8Bytes` (one allocation per
//!   message, never copied per recipient). Its capacity (`--capacity`, default 65,536 messages per
//!   room) is sized so a receiver does not lag at the benchmark rates: the heaviest scenario sends
//!   1,000 msgs/s into one room, so a receiver must fall more than 65 s behind before it lags.
//! - Per connection a reader task (text frames → the room's sender) and a writer task that waits
//!   for one message, then takes everything already queued (`try_recv` loop, `feed` each) and
//!   flushes once: one `writev`/`write` per batch, not one per message.
//! - Lag is never skipped silently: every `RecvError::Lagged(n)` adds `n` (deliveries that client
//!   will never get) to a process-wide counter, served at `GET /stats` together with the other
//!   counters, so benchmark scripts report it next to the load generator's own loss count.
//! - TCP_NODELAY on every socket; a 4,096-connection listen backlog (tokio's 1,024 overflows
//!   under connect storms).
//! - `WebSocketConfig`: tungstenite's default read buffer is 128 KiB allocated per connection,
//!   which costs far more than chat frames need at 19,000 connections; it is 4 KiB here. Incoming
//!   messages and frames are limited to 64 KiB (chat messages, not files). The write buffer is
//!   written out once it holds 64 KiB (so one flush of a large batch issues few large writes) and
//!   may not exceed 1 MiB (tungstenite's default is unbounded): a client whose socket will not
//!   take that is disconnected.
//! - `--tls-cert FILE --tls-key FILE`: the listener speaks only TLS (tokio-rustls, the same rustls
//!   and `ring` provider as roomcast, TLS 1.2/1.3, ALPN `http/1.1`), so a TLS comparison is fair;
//!   `GET /stats` is then served over TLS too.

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Ws<S> = WebSocketStream<S>;

const USAGE: &str = "roomcast-baseline [--addr 127.0.0.1:8000] [--capacity 65536] [--tls-cert FILE --tls-key FILE]
  careful tokio + tokio-tungstenite broadcast server (roomcast's text protocol):
  every text frame sent to /ws/chat?room=NAME goes to every client in room NAME.
  --capacity  broadcast channel capacity per room, in messages
  --tls-cert, --tls-key  PEM certificate chain and key: speak only TLS (wss://, https://)
  GET /stats  counters as JSON: connections, messages_in, lagged (deliveries lost to lag)";

struct Args {
    addr: SocketAddr,
    capacity: usize,
    tls_cert: Option<String>,
    tls_key: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut addr: SocketAddr = "127.0.0.1:8000".parse().map_err(|_| "default addr")?;
    let mut capacity = 65_536;
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" => addr = it.next().ok_or("--addr needs a value")?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--capacity" => {
                capacity =
                    it.next().ok_or("--capacity needs a value")?.parse().map_err(|e| format!("--capacity: {e}"))?;
                if capacity == 0 {
                    return Err("--capacity must be at least 1".into());
                }
            }
            "--tls-cert" => tls_cert = Some(it.next().ok_or("--tls-cert needs a value")?),
            "--tls-key" => tls_key = Some(it.next().ok_or("--tls-key needs a value")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if tls_cert.is_some() != tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(Args { addr, capacity, tls_cert, tls_key })
}

/// The TLS acceptor of `--tls-cert`/`--tls-key`: rustls with ring, TLS 1.2 and 1.3, ALPN http/1.1.
fn tls_acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {key}: {e}"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13, &tokio_rustls::rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Process-wide counters, served at `GET /stats`.
#[derive(Default)]
struct Counters {
    /// Open WebSocket connections.
    connections: AtomicU64,
    /// Text frames received from clients.
    messages_in: AtomicU64,
    /// Deliveries lost because a client's receiver lagged past the channel capacity.
    lagged: AtomicU64,
}

/// Shared server state: the rooms and the counters.
struct Hub {
    capacity: usize,
    rooms: Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>,
    counters: Counters,
}

impl Hub {
    /// Joins `room`, creating its channel on first use.
    fn join(&self, room: &str) -> (broadcast::Sender<Utf8Bytes>, broadcast::Receiver<Utf8Bytes>) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = rooms.entry(room.to_string()).or_insert_with(|| broadcast::channel(self.capacity).0);
        (tx.clone(), tx.subscribe())
    }

    /// Drops the room's channel once nobody listens any more (call after dropping the receiver).
    fn leave(&self, room: &str) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if rooms.get(room).is_some_and(|tx| tx.receiver_count() == 0) {
            rooms.remove(room);
        }
    }

    fn stats_json(&self) -> String {
        let c = &self.counters;
        format!(
            "{{\"connections\":{},\"messages_in\":{},\"lagged\":{},\"rooms\":{}}}",
            c.connections.load(Ordering::Relaxed),
            c.messages_in.load(Ordering::Relaxed),
            c.lagged.load(Ordering::Relaxed),
            self.rooms.lock().unwrap_or_else(PoisonError::into_inner).len()
        )
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// The value of `room=` in a query string (verbatim, no percent-decoding), or `""`.
fn room_of(query: Option<&str>) -> String {
    query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("room="))).unwrap_or_default().to_string()
}

/// Whether the connection starts with `GET /stats` (peeked, so a WebSocket upgrade is untouched).
async fn is_stats_request(stream: &TcpStream) -> bool {
    const PREFIX: &[u8] = b"GET /stats";
    let mut buf = [0u8; PREFIX.len()];
    for _ in 0..100 {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if !PREFIX.starts_with(&buf[..n]) => return false,
            Ok(n) if n == PREFIX.len() => return true,
            // A request line split over segments: wait for the rest.
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
    false
}

/// Answers `GET /stats` with the counters and closes the connection.
async fn serve_stats<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, hub: &Hub) {
    // Read the request head (bounded) so closing does not reset the connection under the reply.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = hub.stats_json();
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(reply.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

async fn client(stream: TcpStream, hub: Arc<Hub>, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        if is_stats_request(&stream).await {
            serve_stats(stream, &hub).await;
        } else {
            serve_ws(stream, hub).await;
        }
        return;
    };
    let Ok(stream) = tls.accept(stream).await else { return };
    // The first plaintext bytes, looked at without consuming them (the TLS stream cannot peek).
    let mut stream = BufReader::new(stream);
    let stats = stream.fill_buf().await.is_ok_and(|b| b.starts_with(b"GET /stats"));
    if stats {
        serve_stats(stream, &hub).await;
    } else {
        serve_ws(stream, hub).await;
    }
}

async fn serve_ws<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, hub: Arc<Hub>) {
    let mut room = String::new();
    // The result type is tungstenite's `Callback` signature (its error is an HTTP response).
    #[allow(clippy::result_large_err)]
    let capture = |req: &Request, resp: Response| {
        room = room_of(req.uri().query());
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, capture, Some(ws_config())).await else {
        return;
    };
    let (tx, rx) = hub.join(&room);
    hub.counters.connections.fetch_add(1, Ordering::Relaxed);
    let (sink, source) = ws.split();
    let writer = tokio::spawn(write_loop(sink, rx, hub.clone()));
    read_loop(source, tx, &hub).await;
    writer.abort();
    let _ = writer.await; // the receiver is dropped once the writer task is gone
    hub.leave(&room);
    hub.counters.connections.fetch_sub(1, Ordering::Relaxed);
}

/// Relays the client's text frames to its room until it closes or errs. tungstenite queues the
/// pong for a ping and sends it on the next read or flush.
async fn read_loop<S: AsyncRead + AsyncWrite + Unpin>(
    mut source: SplitStream<Ws<S>>,
    tx: broadcast::Sender<Utf8Bytes>,
    hub: &Hub,
) {
    while let Some(msg) = source.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                hub.counters.messages_in.fetch_add(1, Ordering::Relaxed);
                // Err only when no receiver exists, impossible while this client's own is alive.
                let _ = tx.send(t);
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Waits for one message, then feeds everything already queued and flushes once.
async fn write_loop<S: AsyncRead + AsyncWrite + Unpin>(
    mut sink: SplitSink<Ws<S>, Message>,
    mut rx: broadcast::Receiver<Utf8Bytes>,
    hub: Arc<Hub>,
) {
    let lagged = |n: u64| hub.counters.lagged.fetch_add(n, Ordering::Relaxed);
    loop {
        let first = match rx.recv().await {
            Ok(t) => t,
            Err(RecvError::Lagged(n)) => {
                lagged(n);
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if sink.feed(Message::Text(first)).await.is_err() {
            return;
        }
        loop {
            match rx.try_recv() {
                Ok(t) => {
                    if sink.feed(Message::Text(t)).await.is_err() {
                        return;
                    }
                }
                Err(TryRecvError::Lagged(n)) => {
                    lagged(n);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// Listens with a 4096-connection backlog (tokio's default 1024 overflows under connect storms).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("roomcast-baseline: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let listener = match listen(args.addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("roomcast-baseline: cannot listen on {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    println!("roomcast-baseline listening on {}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match tls_acceptor(cert, key) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                eprintln!("roomcast-baseline: {e}");
                std::process::exit(1);
            }
        },
        _ => None,
    };
    let hub =
        Arc::new(Hub { capacity: args.capacity, rooms: Mutex::new(HashMap::new()), counters: Counters::default() });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(client(stream, hub.clone(), tls.clone()));
            }
            Err(e) => {
                eprintln!("roomcast-baseline: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
