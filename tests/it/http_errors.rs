//! Plain HTTP: health, static files, and a clear status for every bad request.

use serde_json::Value;

use crate::support::*;

fn raw_response(server: &Server, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut raw = Raw::connect(server);
    raw.send(request);
    raw.read_response()
}

fn error_code(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).expect("JSON error body");
    value["error"]["code"].as_str().expect("code").to_string()
}

#[test]
fn health_and_web_client() {
    let server = Server::start(&[]);
    let (status, _, body) = http_get(&server, "/healthz");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["persistence"]["queue_capacity"], 65536);
    assert_eq!(health["persistence"]["commit_errors"], 0);

    for path in ["/", "/static/index.html"] {
        let (status, head, body) = http_get(&server, path);
        assert_eq!(status, 200, "{path}");
        assert!(head.contains("Content-Type: text/html"), "{head}");
        assert!(head.contains("Content-Security-Policy:"), "{head}");
        assert!(head.contains("X-Content-Type-Options: nosniff"), "{head}");
        assert!(String::from_utf8_lossy(&body).contains("<title>roomcast</title>"));
    }
    let (status, head, _) = http_get(&server, "/static/app.js");
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: text/javascript"));
}

#[test]
fn bad_requests_get_statuses_with_json_bodies() {
    let server = Server::start(&[]);
    let (status, _, body) = raw_response(&server, b"\x16\x03\x01\x02\x00garbage\r\n\r\n");
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_request"));
    let (status, _, body) = http_get(&server, "/nope");
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    let (status, _, body) = raw_response(&server, b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((status, error_code(&body).as_str()), (405, "method_not_allowed"));
    let (status, _, body) = http_get(&server, "/ws/chat");
    assert_eq!((status, error_code(&body).as_str()), (426, "upgrade_required"));
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let (status, _, body) = raw_response(&server, big.as_bytes());
    assert_eq!((status, error_code(&body).as_str()), (431, "header_too_large"));
    let bad_version = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let (status, head, _) = raw_response(&server, bad_version);
    assert_eq!(status, 426);
    assert!(head.contains("Sec-WebSocket-Version: 13"));
    let bad_key = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let (status, _, body) = raw_response(&server, bad_key);
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_websocket_key"));
    for path in ["/static/%2e%2e/Cargo.toml", "/static/../Cargo.toml", "/static//etc/passwd"] {
        assert_eq!(http_get(&server, path).0, 404, "{path}");
    }
    // The server is fine afterwards.
    assert_eq!(http_get(&server, "/healthz").0, 200);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server);
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw.read_response().0, 200);
    assert_eq!(raw.read_response().0, 404);
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (status, head, _) = raw.read_response();
    assert_eq!(status, 200);
    assert!(head.contains("Connection: close"));
    assert!(raw.reads_eof());
}

#[test]
fn static_dir_serves_files_and_refuses_escapes() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("index.html"), "<title>custom</title>").expect("write");
    let secret = dir.path().parent().expect("parent").join(format!("roomcast-secret-{}.txt", std::process::id()));
    std::fs::write(&secret, "secret").expect("write");
    std::os::unix::fs::symlink(&secret, dir.path().join("link.txt")).expect("symlink");
    let server = Server::start(&["--static-dir", dir.path().to_str().expect("utf8")]);
    let (status, _, body) = http_get(&server, "/");
    assert_eq!(status, 200);
    assert_eq!(body, b"<title>custom</title>");
    let name = secret.file_name().and_then(|n| n.to_str()).expect("name");
    for path in [
        format!("/static/%2e%2e/{name}"),
        format!("/static/..%2f{name}"),
        "/static/link.txt".into(),
        "/static/%2Fetc%2Fpasswd".into(),
    ] {
        let (status, _, body) = http_get(&server, &path);
        assert_eq!(status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }
    let _ = std::fs::remove_file(&secret);
}

/// A HEAD request with `Connection: close` on a fresh connection: (status, head, every byte the
/// server sent after the head until it closed).
fn head_request(server: &Server, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut raw = Raw::connect(server);
    raw.send(format!("HEAD {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{extra}\r\n", server.addr).as_bytes());
    let (status, head, _) = raw.read_response_head();
    (status, head, raw.read_until_eof())
}

/// PROTOCOL.md: "`HEAD` is answered like `GET` without a body", on every route, refusals included,
/// and a HEAD carrying upgrade headers is not a handshake (RFC 6455 §4.1: the method must be GET).
#[test]
fn head_is_answered_like_get_without_a_body_on_every_route() {
    let server = Server::start(&[]);
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n";
    let cases: [(&str, &str, u16); 14] = [
        ("/", "", 200),
        ("/static/app.js", "", 200),
        ("/static/nope.js", "", 404),
        ("/healthz", "", 200),
        ("/readyz", "", 200),
        ("/metrics", "", 200),
        ("/nope", "", 404),
        ("/rooms/a/messages", "", 200),
        ("/rooms/%ff/messages", "", 400),
        ("/rooms/a/messages?limit=0", "", 400),
        ("/ws", "", 426),
        ("/ws/chat", "", 426),
        ("/ws/chat?room=%ff", "Upgrade: websocket\r\n", 426),
        ("/ws?format=json", "Sec-WebSocket-Version: 8\r\n", 426),
    ];
    for (path, extra, status) in cases {
        let (got, head, rest) = head_request(&server, path, extra);
        assert_eq!(got, status, "HEAD {path}: {head}");
        assert!(rest.is_empty(), "HEAD {path} got a {}-byte body: {:?}", rest.len(), String::from_utf8_lossy(&rest));
        // Content-Length still says what GET would send (RFC 9110 §9.3.2 allows it), never a body.
        assert!(head.contains("Content-Length: "), "HEAD {path}: {head}");
    }
    // HEAD with upgrade headers: refused (400), not switched, no body.
    for path in ["/ws", "/ws/chat", "/ws?format=json&room=r"] {
        let (status, head, rest) = head_request(&server, path, upgrade);
        assert_eq!(status, 400, "HEAD {path} with upgrade headers: {head}");
        assert!(!head.contains("Sec-WebSocket-Accept"), "{head}");
        assert!(rest.is_empty(), "HEAD {path} with upgrade headers got a body: {:?}", String::from_utf8_lossy(&rest));
    }
    // A HEAD refused before it parses (it announces a body) gets no body either.
    let mut raw = Raw::connect(&server);
    raw.send(b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    let (status, _, _) = raw.read_response_head();
    assert_eq!(status, 400);
    assert!(raw.read_until_eof().is_empty(), "no body after a refused HEAD");
    // Keep-alive: a pipelined GET after a HEAD is answered right after the HEAD's head.
    let mut raw = Raw::connect(&server);
    raw.send(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(raw.read_response_head().0, 200);
    assert_eq!(raw.read_response_head().0, 404);
    let (status, _, body) = raw.read_response();
    assert_eq!(status, 200);
    assert!(body.starts_with(b"{\"status\":\"ok\""), "{}", String::from_utf8_lossy(&body));
    // GET with the same upgrade headers still upgrades.
    let mut raw = Raw::connect(&server);
    assert_eq!(raw.handshake(&server, "/ws/chat", "").0, 101);
}
