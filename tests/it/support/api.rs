//! The server API over real HTTP: the test key and one request per fresh connection.

use serde_json::Value;

use super::{Raw, Server};

/// The API key the API tests start servers with (`--api-key`).
pub const KEY: &str = "test-api-key-0123456789";

/// A server with the API on (the test key) and `args`.
pub fn keyed(args: &[&str]) -> Server {
    let mut all = vec!["--api-key", KEY];
    all.extend_from_slice(args);
    Server::start(&all)
}

/// One request on a fresh connection (`Connection: close`): (status, head, body as JSON or Null).
pub fn call(
    server: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
    extra: &str,
) -> (u16, String, Value) {
    let mut raw = Raw::connect(server);
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let body = body.map(Value::to_string).unwrap_or_default();
    let ct = if body.is_empty() { "" } else { "Content-Type: application/json\r\n" };
    raw.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}{ct}{extra}Content-Length: {}\r\n\r\n{body}",
            server.addr,
            body.len()
        )
        .as_bytes(),
    );
    let (status, head, body) = raw.read_response();
    let value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).expect("a JSON body") };
    (status, head, value)
}

pub fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, value) = call(server, "POST", path, Some(KEY), Some(body), "");
    (status, value)
}
