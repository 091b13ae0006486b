//! Webhooks (docs/WEBHOOKS.md) against real local HTTP receivers started here: events of a
//! join/leave sequence arrive in order and signed; a receiver failing its first attempts, one that is
//! down for a while, one that is slow (and does not hold another URL); the outbox across a SIGTERM
//! restart, and its bound; node-local occupancy in cluster mode; moderation events (the server API's
//! decisions, the blocklist's refusals) in their streams' order, and across a restart; https
//! receivers (a CA made here: verified, kept; an untrusted or misnamed certificate gets nothing).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::{roomcast, run, start_failure};
use crate::crowds::metric;
use crate::support::api::{KEY, call, post};
use crate::support::tls::TestCa;
use crate::support::*;

const SECRET: &str = "webhook-test-secret";

/// One request a receiver took, and what it answered.
#[derive(Debug, Clone)]
struct Request {
    headers: HashMap<String, String>,
    body: String,
    status: u16,
    /// Which of the receiver's accepted connections carried it (0, 1, …).
    connection: usize,
}

impl Request {
    fn event(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// How a receiver answers.
#[derive(Debug, Clone, Copy, Default)]
struct Script {
    /// Answer 500 to this many requests first.
    fail_first: usize,
    /// Hold every request until [`Receiver::release`].
    gated: bool,
    /// Serve every request of a connection until the client closes it (else one per connection:
    /// the answer says keep-alive, but the receiver closes, as a receiver may at any time).
    keep_alive: bool,
}

/// A local HTTP server in a thread of its own: records every request, answers as scripted; stopped
/// and joined on drop.
struct Receiver {
    addr: SocketAddr,
    /// Speaks https, with this host name in its URL (the name its certificate is for).
    tls_host: Option<&'static str>,
    /// TLS handshakes that failed (an https receiver whose certificate the client refused).
    tls_failures: Arc<AtomicUsize>,
    /// Of every TLS handshake that completed, whether it resumed an earlier session.
    tls_resumed: Arc<Mutex<Vec<bool>>>,
    requests: Arc<Mutex<Vec<Request>>>,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(script: Script) -> Receiver {
        Self::start_on(TcpListener::bind("127.0.0.1:0").expect("bind"), script)
    }

    /// A port nobody listens on (yet): the receiver is down.
    fn closed_port() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr")
    }

    /// Comes up on `addr` (after [`Receiver::closed_port`]).
    fn start_at(addr: SocketAddr, script: Script) -> Receiver {
        Self::start_on(TcpListener::bind(addr).expect("rebind the receiver's port"), script)
    }

    fn start_on(listener: TcpListener, script: Script) -> Receiver {
        Self::start_with(listener, script, None)
    }

    /// An https receiver presenting `config`'s certificate, named `localhost` in its URL.
    fn start_https(script: Script, config: Arc<rustls::ServerConfig>) -> Receiver {
        Self::start_https_as(script, config, "localhost")
    }

    /// An https receiver named `host` in its URL (a name of 127.0.0.1).
    fn start_https_as(script: Script, config: Arc<rustls::ServerConfig>, host: &'static str) -> Receiver {
        let mut receiver = Self::start_with(TcpListener::bind("127.0.0.1:0").expect("bind"), script, Some(config));
        receiver.tls_host = Some(host);
        receiver
    }

    fn start_with(listener: TcpListener, script: Script, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let addr = listener.local_addr().expect("addr");
        let tls_failures = Arc::new(AtomicUsize::new(0));
        let failed = Arc::clone(&tls_failures);
        let tls_resumed = Arc::new(Mutex::new(Vec::new()));
        let resumed = Arc::clone(&tls_resumed);
        listener.set_nonblocking(true).expect("nonblocking");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicBool::new(!script.gated));
        let stop = Arc::new(AtomicBool::new(false));
        let (recorded, gate, stopped) = (Arc::clone(&requests), Arc::clone(&open), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let answered = AtomicUsize::new(0);
            let mut connection = 0;
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                        let serve_all = |stream: &mut dyn ReadWrite| loop {
                            let fail = answered.fetch_add(1, Ordering::SeqCst) < script.fail_first;
                            let served = serve(stream, fail, connection, &gate, &stopped, &recorded);
                            if !served || !script.keep_alive {
                                break;
                            }
                        };
                        match &tls {
                            None => serve_all(&mut stream),
                            Some(config) => match accept_tls(stream, config, &stopped) {
                                Some(mut tls_stream) => {
                                    let kind = tls_stream.conn.handshake_kind();
                                    resumed.lock().expect("resumed").push(kind == Some(rustls::HandshakeKind::Resumed));
                                    serve_all(&mut tls_stream)
                                }
                                None => {
                                    failed.fetch_add(1, Ordering::SeqCst);
                                }
                            },
                        }
                        connection += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { addr, tls_host: None, tls_failures, tls_resumed, requests, open, stop, thread: Some(thread) }
    }

    fn url(&self) -> String {
        match self.tls_host {
            Some(host) => format!("https://{host}:{}/hook", self.addr.port()),
            None => format!("http://{}/hook", self.addr),
        }
    }

    fn release(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }

    /// The events answered with 2xx, each id once (at least once: a retry may repeat one), in the
    /// order first received.
    fn delivered(&self) -> Vec<Value> {
        let mut seen = HashSet::new();
        self.requests()
            .iter()
            .filter(|r| r.status == 200)
            .map(Request::event)
            .filter(|e| seen.insert(e["id"].as_str().expect("an id").to_string()))
            .collect()
    }

    /// Waits until `n` distinct events were delivered and returns them.
    fn wait_for(&self, n: usize) -> Vec<Value> {
        wait_until(&format!("{n} webhook events at {}", self.addr), || self.delivered().len() >= n);
        self.delivered()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A receiver's connection: plain TCP or TLS over it.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The server side of a TLS handshake on `stream` (its reads time out every 100 ms, so a stop is
/// seen); `None` if it failed (the client refused the certificate) or took longer than [`PATIENCE`].
fn accept_tls(
    stream: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    stop: &AtomicBool,
) -> Option<rustls::StreamOwned<rustls::ServerConnection, TcpStream>> {
    let conn = rustls::ServerConnection::new(Arc::clone(config)).expect("a server connection");
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let since = Instant::now();
    while tls.conn.is_handshaking() {
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) => {}
            Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) || since.elapsed() > PATIENCE {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    Some(tls)
}

/// Reads some bytes into `data`; `false` at the end of the stream, an error, or once stopped or
/// [`PATIENCE`] after `since` (the stream's read timeout is short, so a stop is seen).
fn read_more(stream: &mut dyn ReadWrite, data: &mut Vec<u8>, stop: &AtomicBool, since: Instant) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                data.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) || since.elapsed() > PATIENCE {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

/// Reads one request (head and `Content-Length` body), records it, answers; `false` when no
/// request came (the client closed, or nothing arrived in time).
fn serve(
    stream: &mut dyn ReadWrite,
    fail: bool,
    connection: usize,
    gate: &AtomicBool,
    stop: &AtomicBool,
    recorded: &Mutex<Vec<Request>>,
) -> bool {
    let since = Instant::now();
    let mut data = Vec::new();
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if !read_more(stream, &mut data, stop, since) {
            return false;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    assert!(lines.next().is_some_and(|l| l == "POST /hook HTTP/1.1"), "request line: {head}");
    let headers: HashMap<String, String> =
        lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).expect("Content-Length");
    while data.len() < head_end + length {
        if !read_more(stream, &mut data, stop, since) {
            return false;
        }
    }
    let body = String::from_utf8(data[head_end..head_end + length].to_vec()).expect("utf-8 body");
    let deadline = Instant::now() + PATIENCE;
    while !gate.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = if fail { 500 } else { 200 };
    recorded.lock().expect("requests").push(Request { headers, body, status, connection });
    let reason = if fail { "Internal Server Error" } else { "OK" };
    stream.write_all(format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\n\r\nok").as_bytes()).is_ok()
}

/// A server posting to `urls`, retrying at most every second.
fn server_for(urls: &[String], extra: &[&str]) -> Server {
    Server::start(&args_for(urls, extra).iter().map(String::as_str).collect::<Vec<_>>())
}

fn args_for(urls: &[String], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--webhook-secret", SECRET, "--webhook-retry-max", "1"].map(String::from).to_vec();
    for url in urls {
        args.extend(["--webhook-url".to_string(), url.clone()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Recomputes the signature of `request` (docs/WEBHOOKS.md) and checks the timestamp is recent.
fn assert_signed(request: &Request) {
    let stamp = request.headers.get("x-roomcast-timestamp").expect("X-Roomcast-Timestamp");
    let sent: u64 = stamp.parse().expect("unix seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    assert!(now.abs_diff(sent) <= 300, "timestamp {sent} is not within 5 minutes of {now}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{stamp}.{}", request.body).as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(request.headers.get("x-roomcast-signature"), Some(&format!("sha256={hex}")), "{request:?}");
    let event = request.event();
    assert_eq!(request.headers.get("x-roomcast-event").map(String::as_str), event["type"].as_str());
    assert_eq!(request.headers.get("x-roomcast-event-id").map(String::as_str), event["id"].as_str());
    assert_eq!(request.headers.get("content-type").map(String::as_str), Some("application/json"));
}

/// `(type, user, order)` of each event.
fn summary(events: &[Value]) -> Vec<(String, String, u64)> {
    events
        .iter()
        .map(|e| {
            let kind = e["type"].as_str().expect("type").to_string();
            (kind, e["user"].as_str().expect("user").to_string(), e["order"].as_u64().expect("order"))
        })
        .collect()
}

fn expected(rows: &[(&str, &str)]) -> Vec<(String, String, u64)> {
    rows.iter().zip(1..).map(|(&(kind, user), order)| (kind.to_string(), user.to_string(), order)).collect()
}

/// `user` joins `room` and leaves (room_occupied, user_joined, user_left, room_vacated, once the
/// server has reaped the connection).
fn visit(server: &Server, room: &str, user: &str) {
    let ws = connect_json(server, room, user);
    drop(ws);
}

fn one_visit(user: &str) -> Vec<(String, String, u64)> {
    expected(&[("room_occupied", user), ("user_joined", user), ("user_left", user), ("room_vacated", user)])
}

/// Ann joins, Bob joins and leaves, Ann leaves.
fn ann_then_bob() -> Vec<(String, String, u64)> {
    expected(&[
        ("room_occupied", "ann"),
        ("user_joined", "ann"),
        ("user_joined", "bob"),
        ("user_left", "bob"),
        ("user_left", "ann"),
        ("room_vacated", "ann"),
    ])
}

#[test]
fn a_join_leave_sequence_arrives_in_order_and_signed() {
    let receiver = Receiver::start(Script::default());
    let server = server_for(&[receiver.url()], &[]);
    let ann = connect_json(&server, "hooked", "ann");
    let bob = connect_json(&server, "hooked", "bob");
    drop(bob);
    receiver.wait_for(4);
    drop(ann);
    let events = receiver.wait_for(6);
    assert_eq!(summary(&events), ann_then_bob());
    for event in &events {
        assert_eq!(event["room"], "hooked");
        assert!(event["node"].is_null(), "single node without --node-id: {event}");
        assert!(event["at_ms"].as_i64().is_some_and(|t| t > 0), "{event}");
    }
    let requests = receiver.requests();
    assert_eq!(requests.len(), 6, "every event once when every answer is 200");
    requests.iter().for_each(assert_signed);
    // Another room counts its own order; the id is unique across both.
    visit(&server, "other", "cid");
    let events = receiver.wait_for(10);
    assert_eq!(summary(&events[6..]), one_visit("cid"));
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), 10, "unique ids");
    wait_until("sent counted", || metric(&server, "roomcast_webhooks_sent_total") == 10.0);
    wait_until("queue empty", || metric(&server, "roomcast_webhooks_queued") == 0.0);
}

#[test]
fn requests_share_one_kept_connection_and_a_closed_one_is_replaced() {
    let keeping = Receiver::start(Script { keep_alive: true, ..Script::default() });
    let closing = Receiver::start(Script::default());
    let server = server_for(&[keeping.url(), closing.url()], &[]);
    let ann = connect_json(&server, "ka", "ann");
    let bob = connect_json(&server, "ka", "bob");
    drop(bob);
    keeping.wait_for(4);
    closing.wait_for(4);
    drop(ann);
    let want = ann_then_bob();
    for receiver in [&keeping, &closing] {
        assert_eq!(summary(&receiver.wait_for(want.len())), want, "every event, in order, at {}", receiver.addr);
    }
    let connections = |r: &Receiver| r.requests().iter().map(|q| q.connection).collect::<HashSet<_>>().len();
    assert_eq!(connections(&keeping), 1, "one connection for every request: {:?}", keeping.requests());
    // The other receiver closes after each answer: the client sends the next on a new connection.
    assert_eq!(connections(&closing), closing.requests().len());
    assert!(keeping.requests().iter().all(|r| !r.headers.contains_key("connection")), "no Connection: close");
}

#[test]
fn a_receiver_failing_its_first_two_attempts_gets_the_event_on_the_third_in_order() {
    let receiver = Receiver::start(Script { fail_first: 2, ..Script::default() });
    let server = server_for(&[receiver.url()], &[]);
    visit(&server, "flaky", "ann");
    let events = receiver.wait_for(4);
    assert_eq!(summary(&events), one_visit("ann"));
    let requests = receiver.requests();
    let first = events[0]["id"].as_str().expect("id");
    let tries: Vec<u16> = requests.iter().filter(|r| r.event()["id"] == first).map(|r| r.status).collect();
    assert_eq!(tries, [500, 500, 200], "the head event: two failures, then delivered");
    assert_eq!(requests.len(), 6, "later events waited behind it and were sent once each");
    requests.iter().for_each(assert_signed);
    wait_until("failures counted", || metric(&server, "roomcast_webhooks_failed_total") == 2.0);
}

#[test]
fn a_receiver_down_for_a_while_gets_everything_once_up() {
    let addr = Receiver::closed_port();
    let server = server_for(&[format!("http://{addr}/hook")], &[]);
    visit(&server, "patient", "ann");
    // Ann's leave is in before Bob's join (else the room would stay occupied between them).
    wait_until("ann's visit in the outbox", || metric(&server, "roomcast_webhooks_queued") == 4.0);
    visit(&server, "patient", "bob");
    wait_until("attempts failing", || metric(&server, "roomcast_webhooks_failed_total") >= 2.0);
    let receiver = Receiver::start_at(addr, Script::default());
    let events = receiver.wait_for(8);
    let mut want = one_visit("ann");
    want.extend(one_visit("bob").into_iter().map(|(k, u, o)| (k, u, o + 4)));
    assert_eq!(summary(&events), want);
    wait_until("queue empty", || metric(&server, "roomcast_webhooks_queued") == 0.0);
}

#[test]
fn a_slow_receiver_does_not_hold_another_url() {
    let slow = Receiver::start(Script { gated: true, ..Script::default() });
    let fast = Receiver::start(Script::default());
    let server = server_for(&[slow.url(), fast.url()], &[]);
    visit(&server, "split", "ann");
    let events = fast.wait_for(4);
    assert_eq!(summary(&events), one_visit("ann"));
    assert!(slow.delivered().is_empty(), "the slow receiver still holds its first request");
    slow.release();
    let events = slow.wait_for(4);
    assert_eq!(summary(&events), one_visit("ann"), "then it gets everything, in order");
    drop(server);
}

#[test]
fn the_outbox_survives_a_restart() {
    let addr = Receiver::closed_port();
    let args = args_for(&[format!("http://{addr}/hook")], &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    visit(&server, "durable", "ann");
    wait_until("ann's visit in the outbox", || metric(&server, "roomcast_webhooks_queued") == 4.0);
    // Still connected at SIGTERM: the shutdown's leave is written before the exit.
    let cid = connect_json(&server, "closing", "cid");
    wait_until("cid's join in the outbox", || metric(&server, "roomcast_webhooks_queued") == 6.0);
    let (status, dir) = server.stop();
    assert!(status.success(), "{status:?}");
    drop(cid);
    let server = Server::start_in(dir, &args);
    assert_eq!(metric(&server, "roomcast_webhooks_queued"), 8.0, "resumed from the outbox, the shutdown's leave too");
    let receiver = Receiver::start_at(addr, Script::default());
    let events = receiver.wait_for(8);
    let room = |name: &str| -> Vec<Value> { events.iter().filter(|e| e["room"] == name).cloned().collect() };
    assert_eq!(summary(&room("durable")), one_visit("ann"));
    assert_eq!(summary(&room("closing")), one_visit("cid"));
    // Orders continue after the restart.
    visit(&server, "durable", "bob");
    let events = receiver.wait_for(12);
    let want: Vec<_> = one_visit("bob").into_iter().map(|(k, u, o)| (k, u, o + 4)).collect();
    assert_eq!(summary(&events[8..]), want);
}

#[test]
fn a_full_outbox_drops_the_oldest_and_counts_them() {
    let addr = Receiver::closed_port();
    let server = server_for(&[format!("http://{addr}/hook")], &["--webhook-outbox", "3"]);
    let ann = connect_json(&server, "bounded", "ann");
    wait_until("two rows", || metric(&server, "roomcast_webhooks_queued") == 2.0);
    let bob = connect_json(&server, "bounded", "bob");
    drop(bob);
    wait_until("the fourth row drops the first", || metric(&server, "roomcast_webhooks_dropped_total") == 1.0);
    drop(ann);
    wait_until("three dropped", || metric(&server, "roomcast_webhooks_dropped_total") == 3.0);
    assert_eq!(metric(&server, "roomcast_webhooks_queued"), 3.0, "the bound");
    let receiver = Receiver::start_at(addr, Script::default());
    let events = receiver.wait_for(3);
    let want: Vec<_> = ann_then_bob().split_off(3);
    assert_eq!(summary(&events), want, "the newest three");
    wait_until("queue empty", || metric(&server, "roomcast_webhooks_queued") == 0.0);
    assert_eq!(receiver.delivered().len(), 3, "nothing of the dropped ones");
}

#[test]
fn in_cluster_mode_each_node_reports_its_own_members_named_by_node() {
    let redis = crate::support::redis::RedisServer::start();
    let receiver = Receiver::start(Script::default());
    let args = args_for(&[receiver.url()], &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let n1 = crate::support::redis::node_with(&redis, "n1", &args);
    let n2 = crate::support::redis::node_with(&redis, "n2", &args);
    let ann = connect_json(&n1, "shared", "ann");
    receiver.wait_for(2);
    let bob = connect_json(&n2, "shared", "bob");
    receiver.wait_for(4);
    drop(bob);
    receiver.wait_for(6);
    drop(ann);
    let events = receiver.wait_for(8);
    let of = |node: &str| -> Vec<Value> { events.iter().filter(|e| e["node"] == node).cloned().collect() };
    assert_eq!(summary(&of("n1")), one_visit("ann"), "n1 sees only ann: occupancy is node-local");
    assert_eq!(summary(&of("n2")), one_visit("bob"), "and n2 only bob, though ann was in the room elsewhere");
}

/// The events of one order stream: a room's, or (`None`) the user-wide moderation events'.
fn stream(events: &[Value], room: Option<&str>) -> Vec<Value> {
    events.iter().filter(|e| e["room"] == room.map_or(Value::Null, Value::from)).cloned().collect()
}

/// A room's stream: `user` alone occupies it, `middle` happens, `user` leaves it vacant.
fn during_visit(user: &str, middle: &[(&str, &str)]) -> Vec<(String, String, u64)> {
    let mut rows = vec![("room_occupied", user), ("user_joined", user)];
    rows.extend_from_slice(middle);
    rows.extend([("user_left", user), ("room_vacated", user)]);
    expected(&rows)
}

/// A server posting to `receiver` with the API on and a blocklist of `darn` (`--blocklist-action
/// action`); the guard keeps the list's directory.
fn moderating(receiver: &Receiver, action: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("dir");
    let list = dir.path().join("blocklist.txt");
    std::fs::write(&list, "darn\n").expect("write the blocklist");
    let extra = ["--api-key", KEY, "--blocklist", list.to_str().expect("utf-8"), "--blocklist-action", action];
    (dir, server_for(&[receiver.url()], &extra))
}

#[test]
fn moderation_decisions_arrive_as_their_events_signed_and_in_order() {
    let receiver = Receiver::start(Script::default());
    let (_dir, server) = moderating(&receiver, "reject");
    let mut ann = connect_json(&server, "modroom", "ann");
    receiver.wait_for(2);
    send_json(&mut ann, json!({"type": "message", "room": "modroom", "content": "oh darn it", "client_id": "c1"}));
    assert_eq!(recv_event(&mut ann, "error")["code"], "content_blocked");
    receiver.wait_for(3);
    let (status, body) = post(&server, "/api/rooms/modroom/messages", &json!({"user": "bob", "content": "hello"}));
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_u64().expect("an id");
    let (status, _, body) = call(&server, "DELETE", &format!("/api/rooms/modroom/messages/{id}"), Some(KEY), None, "");
    assert_eq!(status, 200, "{body}");
    receiver.wait_for(4);
    let (status, body) = post(&server, "/api/rooms/modroom/mute/ann", &json!({"seconds": 60}));
    assert_eq!(status, 200, "{body}");
    receiver.wait_for(5);
    let (status, body) = post(&server, "/api/users/ann/disconnect", &json!({"reason": "calm down"}));
    assert_eq!(status, 200, "{body}");
    expect_close(&mut ann);
    // The disconnect, then ann's leave and the room's vacancy (in the room's stream).
    receiver.wait_for(8);
    let (status, body) = post(&server, "/api/users/bob/ban", &json!({"seconds": 60}));
    assert_eq!(status, 200, "{body}");
    let events = receiver.wait_for(9);
    let room = stream(&events, Some("modroom"));
    let want = during_visit("ann", &[("content_blocked", "ann"), ("message_deleted", "bob"), ("user_muted", "ann")]);
    assert_eq!(summary(&room), want, "the room's stream: presence and its moderation, one order");
    let users = stream(&events, None);
    assert_eq!(summary(&users), expected(&[("user_disconnected", "ann"), ("user_banned", "bob")]), "the $users stream");
    let blocked = &room[2];
    assert_eq!((&blocked["action"], &blocked["reason"]), (&json!("rejected"), &json!("blocklist")), "{blocked}");
    assert!(blocked.get("content").is_none(), "{blocked}");
    assert_eq!(room[3]["message"], id, "{}", room[3]);
    assert!(
        room[4]["until_ms"].as_i64().is_some_and(|t| t > room[4]["at_ms"].as_i64().unwrap_or(i64::MAX)),
        "{}",
        room[4]
    );
    let disconnected = &users[0];
    assert_eq!((&disconnected["closed"], &disconnected["reconnect"]), (&json!(1), &json!(false)), "{disconnected}");
    assert_eq!(disconnected["reason"], "calm down");
    assert_eq!((&users[1]["closed"], users[1]["until_ms"].is_i64()), (&json!(0), true), "{}", users[1]);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 9, "every event once");
    requests.iter().for_each(assert_signed);
    assert!(requests.iter().all(|r| !r.body.contains("darn")), "the blocked content is never sent");
}

#[test]
fn undelivered_moderation_events_survive_a_restart() {
    let addr = Receiver::closed_port();
    let mut args = args_for(&[format!("http://{addr}/hook")], &[]);
    args.extend(["--api-key".to_string(), KEY.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    assert_eq!(post(&server, "/api/users/ann/ban", &json!({"seconds": 60})).0, 200);
    assert_eq!(post(&server, "/api/rooms/kept/mute/bob", &json!({"seconds": 60})).0, 200);
    wait_until("both in the outbox", || metric(&server, "roomcast_webhooks_queued") == 2.0);
    let (status, dir) = server.stop();
    assert!(status.success(), "{status:?}");
    let server = Server::start_in(dir, &args);
    assert_eq!(metric(&server, "roomcast_webhooks_queued"), 2.0, "resumed from the outbox");
    let receiver = Receiver::start_at(addr, Script::default());
    let events = receiver.wait_for(2);
    assert_eq!(summary(&events), [("user_banned".into(), "ann".into(), 1), ("user_muted".into(), "bob".into(), 1)]);
    assert_eq!((&events[0]["room"], &events[1]["room"]), (&Value::Null, &json!("kept")));
    // The $users stream's order continues after the restart.
    let (status, _, body) = call(&server, "DELETE", "/api/users/ann/ban", Some(KEY), None, "");
    assert_eq!(status, 200, "{body}");
    let events = receiver.wait_for(3);
    assert_eq!(summary(&events[2..]), [("user_unbanned".into(), "ann".into(), 2)]);
    receiver.requests().iter().for_each(assert_signed);
}

#[test]
fn masks_repeats_unmutes_and_revocations_arrive_as_their_events() {
    let receiver = Receiver::start(Script::default());
    let (_dir, server) = moderating(&receiver, "mask");
    let mut ann = connect_json(&server, "r", "ann");
    receiver.wait_for(2);
    let say =
        |ws: &mut Client, content: &str| send_json(ws, json!({"type": "message", "room": "r", "content": content}));
    say(&mut ann, "darn");
    assert_eq!(recv_event(&mut ann, "message")["content"], "****");
    receiver.wait_for(3);
    for _ in 0..3 {
        say(&mut ann, "again");
        assert_eq!(recv_event(&mut ann, "message")["content"], "again");
    }
    say(&mut ann, "again");
    assert_eq!(recv_event(&mut ann, "error")["code"], "repeated_content");
    receiver.wait_for(4);
    let (status, _, body) = call(&server, "DELETE", "/api/rooms/r/mute/ann", Some(KEY), None, "");
    assert_eq!(status, 200, "{body}");
    receiver.wait_for(5);
    let (status, _, body) = call(&server, "POST", "/api/users/ann/revoke", Some(KEY), None, "");
    assert_eq!(status, 200, "{body}");
    expect_close(&mut ann);
    let events = receiver.wait_for(8);
    let room = stream(&events, Some("r"));
    let want = during_visit("ann", &[("content_masked", "ann"), ("repeated_content", "ann"), ("user_unmuted", "ann")]);
    assert_eq!(summary(&room), want);
    assert_eq!((&room[2]["action"], &room[2]["reason"]), (&json!("masked"), &json!("blocklist")), "{}", room[2]);
    assert_eq!((&room[3]["action"], &room[3]["reason"]), (&json!("rejected"), &json!("repeat")), "{}", room[3]);
    let users = stream(&events, None);
    assert_eq!(summary(&users), expected(&[("tokens_revoked", "ann")]));
    assert_eq!(users[0]["closed"], 1, "{}", users[0]);
    assert!(users[0]["before_ms"].as_i64().is_some_and(|t| t > 0), "{}", users[0]);
    receiver.requests().iter().for_each(assert_signed);
    assert!(receiver.requests().iter().all(|r| !r.body.contains("darn") && !r.body.contains("again")));
}

/// The CA's certificate as a PEM file in `dir` (for `--webhook-ca`).
fn ca_file(dir: &tempfile::TempDir, ca: &TestCa) -> String {
    let path = dir.path().join("webhook-ca.pem");
    std::fs::write(&path, &ca.cert_pem).expect("write the CA");
    path.display().to_string()
}

#[test]
fn an_https_receiver_gets_every_event_signed_over_one_verified_connection() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost", "127.0.0.1"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let receiver = Receiver::start_https(Script { keep_alive: true, ..Script::default() }, leaf.server_config());
    // One that closes after every answer: each request needs a new connection, which resumes. It
    // is named by its address (a certificate's IP name), as the client keeps its tickets by server
    // name, not port: under one name the two receivers would be offered each other's tickets.
    let closing = Receiver::start_https_as(Script::default(), leaf.server_config(), "127.0.0.1");
    let dir = tempfile::tempdir().expect("dir");
    let server = server_for(&[receiver.url(), closing.url()], &["--webhook-ca", &ca_file(&dir, &ca)]);
    let ann = connect_json(&server, "secure", "ann");
    let bob = connect_json(&server, "secure", "bob");
    drop(bob);
    receiver.wait_for(4);
    drop(ann);
    assert_eq!(summary(&receiver.wait_for(6)), ann_then_bob());
    assert_eq!(summary(&closing.wait_for(6)), ann_then_bob());
    let resumed = closing.tls_resumed.lock().expect("resumed").clone();
    assert_eq!(resumed.len(), 6, "a connection per request: {resumed:?}");
    assert!(
        !resumed[0] && resumed[1..].iter().all(|&r| r),
        "the first handshake full, the others resumed: {resumed:?}"
    );
    let requests = receiver.requests();
    requests.iter().for_each(assert_signed);
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("host").map(String::as_str) == Some(&format!("localhost:{}", receiver.addr.port())))
    );
    let connections: HashSet<usize> = requests.iter().map(|r| r.connection).collect();
    assert_eq!(connections.len(), 1, "one TLS connection kept for every request: {requests:?}");
    assert_eq!(receiver.tls_failures.load(Ordering::SeqCst), 0);
    wait_until("sent counted", || metric(&server, "roomcast_webhooks_sent_total") == 12.0);
}

#[test]
fn an_https_receiver_whose_certificate_is_not_trusted_or_not_for_its_name_gets_nothing() {
    let trusted = TestCa::new();
    let unknown = TestCa::new();
    // Signed by a CA the server was not told to trust.
    let stranger = Receiver::start_https(
        Script::default(),
        unknown.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256).server_config(),
    );
    // Signed by the trusted CA, but for another name.
    let misnamed = Receiver::start_https(
        Script::default(),
        trusted.leaf(&["elsewhere.example"], &rcgen::PKCS_ECDSA_P256_SHA256).server_config(),
    );
    let dir = tempfile::tempdir().expect("dir");
    let ca = ca_file(&dir, &trusted);
    let args = args_for(&[stranger.url(), misnamed.url()], &["--webhook-ca", &ca]);
    let server =
        Server::start_logged(&dir.path().join("hooks.db"), &args.iter().map(String::as_str).collect::<Vec<_>>());
    let ws = connect_json(&server, "guarded", "ann");
    // Each receiver's handshakes are refused by the server, attempt after attempt (retried with backoff).
    for receiver in [&stranger, &misnamed] {
        wait_until("refused handshakes, retried", || receiver.tls_failures.load(Ordering::SeqCst) >= 2);
        assert!(receiver.requests().is_empty(), "no request over an unverified connection");
    }
    wait_until("failures counted", || metric(&server, "roomcast_webhooks_failed_total") >= 4.0);
    assert_eq!(metric(&server, "roomcast_webhooks_sent_total"), 0.0);
    let log = server.log_text();
    // The stranger's chain does not verify against the trusted CA (both CAs have one name, so
    // webpki finds the trusted one and its signature fails); the other is for another name.
    let refused = |receiver: &Receiver, why: &str| {
        log.lines().any(|l| {
            l.contains(&receiver.url())
                && l.contains("TLS handshake failed: invalid peer certificate")
                && l.contains(why)
        })
    };
    assert!(refused(&stranger, "BadSignature"), "{log}");
    assert!(refused(&misnamed, "not valid for name \"localhost\""), "{log}");
    drop(ws);
}

#[test]
fn a_webhook_ca_that_cannot_be_used_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let garbled = dir.path().join("garbled.pem");
    std::fs::write(&garbled, "not a certificate\n").expect("write");
    let missing = dir.path().join("missing.pem");
    for (file, reason) in [(&garbled, "no CERTIFICATE block"), (&missing, "No such file")] {
        let db = dir.path().join("start.db");
        let file = file.display().to_string();
        let args = args_for(&["https://localhost:9/hook".to_string()], &["--webhook-ca", &file]);
        let mut cmd = roomcast();
        cmd.args(["--addr", "127.0.0.1:0", "--db"]).arg(&db).args(&args);
        let err = start_failure(&run(cmd));
        assert!(err.starts_with(&format!("roomcast: cannot load the webhook CA certificates ({file}): ")), "{err}");
        assert!(err.contains(reason), "{err}");
    }
}

#[test]
fn an_https_receiver_trickling_its_handshake_is_given_up_on_and_retried() {
    // Answers every ClientHello with the start of a handshake record, one byte every 200 ms: each
    // read is quick, but the flight never completes. The attempt must end at the handshake's own
    // deadline (5 s), not hang the URL's thread for as long as the bytes keep coming.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    listener.set_nonblocking(true).expect("nonblocking");
    let trickler = std::thread::spawn(move || {
        // Each connection gets the record from its first byte: a handshake record header saying
        // 16 KiB follow, then filler, one byte per turn.
        let byte_at = |i: usize| [0x16u8, 0x03, 0x03, 0x40, 0x00].get(i).copied().unwrap_or(0x02);
        let mut conns: Vec<(TcpStream, usize)> = Vec::new();
        while !stopping.load(Ordering::SeqCst) {
            if let Ok((stream, _)) = listener.accept() {
                conns.push((stream, 0));
            }
            conns.retain_mut(|(c, sent)| {
                *sent += 1;
                *sent < (1 << 14) && c.write_all(&[byte_at(*sent - 1)]).is_ok()
            });
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let ca = ca_file(&dir, &TestCa::new());
    let url = format!("https://localhost:{port}/hook");
    let args = args_for(&[url], &["--webhook-ca", &ca]);
    let server =
        Server::start_logged(&dir.path().join("hooks.db"), &args.iter().map(String::as_str).collect::<Vec<_>>());
    let ws = connect_json(&server, "slow", "ann");
    wait_until("the trickled handshake given up", || metric(&server, "roomcast_webhooks_failed_total") >= 1.0);
    assert!(server.log_text().contains("TLS handshake failed: timed out"), "{}", server.log_text());
    drop(ws);
    stop.store(true, Ordering::SeqCst);
    trickler.join().expect("trickler");
}
