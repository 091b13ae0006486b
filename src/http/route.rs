//! Mapping a request path to what it asks for. Pure: no IO, no state.

use super::percent::{self, PercentError};

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/ws` or `/ws/chat`: the WebSocket endpoint (both behave identically).
    WebSocket,
    /// `/healthz`: liveness.
    Health,
    /// `/readyz`: readiness (database writable, not draining).
    Ready,
    /// `/metrics`: Prometheus / OpenMetrics exposition.
    Metrics,
    /// `/` or `/static/<file>`: a web client file, by its path relative to the static root (a path
    /// whose escapes do not decode names no file: `NotFound`).
    Static(String),
    /// `/roomcast.js`: the client library (clients/js/roomcast.js), always the one built in.
    ClientLibrary,
    /// `/rooms/{room}/messages`: history of a room (room percent-decoded, `+` literal), or why the room
    /// segment does not decode (answered 400 `invalid_room`).
    History(Result<String, PercentError>),
    /// `/rooms/{room}/read`: the asking user's read marker in a room (room decoded as for history).
    ReadMarker(Result<String, PercentError>),
    /// Anything else.
    NotFound,
}

/// Routes a (still percent-encoded) path.
pub fn route(path: &str) -> Route {
    match path {
        "/ws" | "/ws/chat" => Route::WebSocket,
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        "/metrics" => Route::Metrics,
        "/" | "/index.html" => Route::Static("index.html".into()),
        "/roomcast.js" => Route::ClientLibrary,
        _ => {
            // In a path '+' is a literal, not a space.
            if let Some(rest) = path.strip_prefix("/static/") {
                percent::decode(rest, false).map_or(Route::NotFound, Route::Static)
            } else if let Some(room) = path.strip_prefix("/rooms/").and_then(|r| r.strip_suffix("/messages")) {
                Route::History(percent::decode(room, false))
            } else if let Some(room) = path.strip_prefix("/rooms/").and_then(|r| r.strip_suffix("/read")) {
                Route::ReadMarker(percent::decode(room, false))
            } else {
                Route::NotFound
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/ws"), Route::WebSocket);
        assert_eq!(route("/ws/chat"), Route::WebSocket);
        assert_eq!(route("/"), Route::Static("index.html".into()));
        assert_eq!(route("/static/app.js"), Route::Static("app.js".into()));
        assert_eq!(route("/roomcast.js"), Route::ClientLibrary);
        assert_eq!(route("/static/%2e%2e/x"), Route::Static("../x".into()));
        assert_eq!(route("/rooms/caf%C3%A9+1/messages"), Route::History(Ok("café+1".into())));
        assert_eq!(route("/rooms/%ff/messages"), Route::History(Err(PercentError::NotUtf8)));
        assert_eq!(route("/rooms/a%20b/read"), Route::ReadMarker(Ok("a b".into())));
        assert_eq!(route("/rooms/a%zz/messages"), Route::History(Err(PercentError::BadEscape)));
        assert_eq!(route("/static/%zz"), Route::NotFound);
        assert_eq!(route("/healthz"), Route::Health);
        assert_eq!(route("/readyz"), Route::Ready);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/nope"), Route::NotFound);
        assert_eq!(route("/ws/other"), Route::NotFound);
    }
}
