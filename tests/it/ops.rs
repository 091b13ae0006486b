//! Operations endpoints and logs: `/readyz` with and without persistence, and `--log-format json`
//! producing one JSON object per line.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;

use crate::support::*;

fn readyz(server: &Server) -> (u16, Value) {
    let (status, _, body) = http_get(server, "/readyz");
    (status, serde_json::from_slice(&body).expect("readyz is JSON"))
}

#[test]
fn readyz_reports_a_writable_store() {
    let server = Server::start(&[]);
    let (status, body) = readyz(&server);
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"status": "ready", "store": "ok", "draining": false}));

    let relay = Server::start(&["--no-persist"]);
    let (status, body) = readyz(&relay);
    assert_eq!(status, 200);
    assert_eq!(body["store"], "disabled");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["--addr", "127.0.0.1:0", "--shards", "1", "--log-format", "json", "--log-level", "debug"])
        .arg("--db")
        .arg(dir.path().join("roomcast.db"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = err_tx.send(text);
    });
    let kill = || {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    };
    let Ok(addr) = rx.recv_timeout(PATIENCE) else {
        kill();
        let _ = child.wait();
        panic!("roomcast did not start");
    };
    // One connection, for a debug lifecycle line.
    let mut raw = std::net::TcpStream::connect(&addr).expect("connect");
    raw.set_read_timeout(Some(PATIENCE)).expect("timeout");
    std::io::Write::write_all(&mut raw, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut response = Vec::new();
    let _ = raw.read_to_end(&mut response);
    assert!(response.starts_with(b"HTTP/1.1 200"));
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let logs = err_rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
        kill();
        panic!("roomcast did not exit on SIGTERM")
    });
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}\n{logs}");
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let message = |v: &Value| v["fields"]["message"].as_str().unwrap_or_default().to_string();
    assert!(lines.iter().any(|v| message(v) == "roomcast ready" && v["level"] == "INFO"), "{logs}");
    assert!(lines.iter().any(|v| message(v) == "closed" && v["level"] == "DEBUG"), "lifecycle line: {logs}");
}

/// One GET on a fresh connection to `addr`: (status, body).
fn get_at(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    std::io::Write::write_all(
        &mut stream,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn metrics_addr_moves_metrics_to_its_own_listener() {
    let server = Server::start(&["--metrics-addr", "127.0.0.1:0", "--jwt-secret", crate::support::tokens::SECRET]);
    let ops = server.metrics_addr.expect("the server printed its metrics address");
    assert_ne!(ops, server.addr);
    let (status, body) = get_at(server.addr, "/metrics");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not_found"), "{body}");
    let (status, body) = get_at(ops, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("roomcast_connections_open") && body.ends_with("# EOF\n"), "{body}");
    // Health and readiness on both; nothing else on the metrics listener.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(get_at(server.addr, path).0, 200, "{path} on the main listener");
        assert_eq!(get_at(ops, path).0, 200, "{path} on the metrics listener");
    }
    for path in ["/", "/ws/chat", "/rooms/general/messages"] {
        assert_eq!(get_at(ops, path).0, 404, "{path} on the metrics listener");
    }
    assert_eq!(get_at(server.addr, "/").0, 200);
    // Without the flag, /metrics stays on the main listener (today's behaviour).
    let plain = Server::start(&[]);
    assert!(plain.metrics_addr.is_none());
    assert_eq!(get_at(plain.addr, "/metrics").0, 200);
}

/// Idle TCP connections to `addr`, each counted by the server once accepted.
fn idle_connections(addr: std::net::SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    (0..n).map(|_| std::net::TcpStream::connect(addr).expect("connect")).collect()
}

#[test]
fn a_full_main_port_leaves_the_metrics_port_answering() {
    let server =
        Server::start(&["--metrics-addr", "127.0.0.1:0", "--max-connections", "3", "--handshake-timeout", "120"]);
    let ops = server.metrics_addr.expect("metrics address");
    let _held = idle_connections(server.addr, 3);
    wait_until("the main port to be full", || get_at(server.addr, "/healthz").0 == 503);
    // A health check must not kill a server that is merely busy.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, body) = get_at(ops, path);
        assert_eq!(status, 200, "{path} on the metrics port while the main port is full: {body}");
    }
}

#[test]
fn a_full_metrics_port_leaves_the_main_port_answering() {
    let server = Server::start(&[
        "--metrics-addr",
        "127.0.0.1:0",
        "--max-connections",
        "8",
        "--max-conns-per-ip",
        "3",
        "--metrics-max-connections",
        "4",
        "--metrics-idle-timeout",
        "120",
    ]);
    let ops = server.metrics_addr.expect("metrics address");
    // More idle connections to the metrics port than the main port's whole budget, and than the
    // per-address limit, all from the clients' own address.
    let _held = idle_connections(ops, 12);
    // Over its budget (but within the 32 of slack) a connection is told 503.
    wait_until("the metrics port to be full", || get_at(ops, "/healthz").0 == 503);
    assert_eq!(get_at(server.addr, "/healthz").0, 200, "the main port does not share the metrics port's budget");
    // /healthz counts the main port's connections only: none of the 12, just the probe itself (once
    // the previous probe is reaped).
    wait_until("/healthz to count only itself", || open_connections(&server) == 1);
    let mut a = connect_json(&server, "ops", "a");
    let mut b = connect_json(&server, "ops", "b");
    send_json(&mut a, serde_json::json!({"type": "message", "room": "ops", "content": "still here"}));
    assert_eq!(recv_event(&mut b, "message")["content"], "still here");
}

#[test]
fn idle_metrics_connections_are_closed_after_their_own_short_timeout() {
    // The main port's limit is far longer than the test's patience: a close seen here is the metrics
    // listener's own default timeout (5 s).
    let server = Server::start(&["--metrics-addr", "127.0.0.1:0", "--handshake-timeout", "300"]);
    let ops = server.metrics_addr.expect("metrics address");
    let mut main_idle = Raw::connect(&server);
    let connect_ops = || {
        let stream = std::net::TcpStream::connect(ops).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream
    };
    // Idle from the start: never sends a request.
    let mut silent = connect_ops();
    let mut rest = Vec::new();
    assert_eq!(silent.read_to_end(&mut rest).map_err(|e| e.kind()), Ok(0), "closed without a response");
    // Idle after a keep-alive response.
    let mut kept = connect_ops();
    std::io::Write::write_all(&mut kept, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut response = Vec::new();
    kept.read_to_end(&mut response).expect("the server closes the idle keep-alive connection");
    assert!(response.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&response));
    // Meanwhile the main port's idle connection is still open and served.
    main_idle.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(main_idle.read_response().0, 200, "the main port keeps its own --handshake-timeout");
}
