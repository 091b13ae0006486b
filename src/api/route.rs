//! The server API's paths (sans-IO): what `/api/…` and the method name, or why nothing does (404,
//! or 405 with the methods the path allows).

use crate::http::percent;
use crate::http::request::Method;
use crate::types::{ClientError, ErrorCode};

/// What an API request asks for (path segments percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiRoute {
    /// `POST /api/rooms/{room}/messages`.
    PostMessage(String),
    /// `DELETE /api/rooms/{room}/messages/{id}`: redact a stored message.
    DeleteMessage {
        /// The room.
        room: String,
        /// The message's id.
        id: u64,
    },
    /// `POST /api/publish`.
    Publish,
    /// `GET /api/feed`: the change feed (Server-Sent Events, `session::feed`).
    Feed,
    /// `GET /api/rooms`.
    Rooms,
    /// `GET /api/rooms/{room}/presence`.
    Presence(String),
    /// `GET /api/users/{user}/connections`.
    Connections(String),
    /// `POST /api/users/{user}/disconnect`.
    Disconnect(String),
    /// `POST /api/users/{user}/revoke`: refuse the user's tokens issued before now (no body).
    Revoke(String),
    /// `POST` (ban) or `DELETE` (`lift`) `/api/users/{user}/ban`.
    Ban {
        /// The user.
        user: String,
        /// DELETE: lift the ban.
        lift: bool,
    },
    /// `POST` (mute) or `DELETE` (`lift`) `/api/rooms/{room}/mute/{user}`.
    Mute {
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// DELETE: lift the mute.
        lift: bool,
    },
}

/// The router's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Routed {
    /// A route.
    Found(ApiRoute),
    /// No such path (404).
    NotFound,
    /// The path exists, not with this method: 405 with this `Allow` value.
    WrongMethod(&'static str),
}

impl ApiRoute {
    /// Whether the route reads a JSON body (`Content-Type: application/json` required).
    pub(crate) fn takes_body(&self) -> bool {
        matches!(
            self,
            ApiRoute::PostMessage(_)
                | ApiRoute::Publish
                | ApiRoute::Disconnect(_)
                | ApiRoute::Ban { lift: false, .. }
                | ApiRoute::Mute { lift: false, .. }
        )
    }
}

/// Whether `path` (still percent-encoded) is under `/api/`.
pub(crate) fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

fn segment(raw: &str, what: &str, code: ErrorCode) -> Result<String, ClientError> {
    percent::decode(raw, false).map_err(|err| ClientError::new(code, format!("{what} in the path: {err}")))
}

/// Routes an API request.
///
/// # Errors
/// `invalid_room` / `invalid_nick` when a path segment does not percent-decode.
pub(crate) fn route(method: Method, path: &str) -> Result<Routed, ClientError> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (found, allow): (Option<ApiRoute>, &'static str) = match parts.as_slice() {
        ["api", "publish"] => (matches!(method, Method::Post).then_some(ApiRoute::Publish), "POST"),
        ["api", "feed"] => (matches!(method, Method::Get).then_some(ApiRoute::Feed), "GET"),
        ["api", "rooms"] => (matches!(method, Method::Get).then_some(ApiRoute::Rooms), "GET"),
        ["api", "rooms", room, "messages"] => {
            let room = segment(room, "room name", ErrorCode::InvalidRoom)?;
            (matches!(method, Method::Post).then_some(ApiRoute::PostMessage(room)), "POST")
        }
        ["api", "rooms", room, "messages", id] => {
            let room = segment(room, "room name", ErrorCode::InvalidRoom)?;
            let id = segment(id, "message id", ErrorCode::InvalidParameter)?.parse::<u64>().map_err(|_| {
                ClientError::new(
                    ErrorCode::InvalidParameter,
                    "the message id in the path must be a non-negative integer",
                )
            })?;
            (matches!(method, Method::Delete).then_some(ApiRoute::DeleteMessage { room, id }), "DELETE")
        }
        ["api", "rooms", room, "presence"] => {
            let room = segment(room, "room name", ErrorCode::InvalidRoom)?;
            (matches!(method, Method::Get).then_some(ApiRoute::Presence(room)), "GET")
        }
        ["api", "rooms", room, "mute", user] => {
            let room = segment(room, "room name", ErrorCode::InvalidRoom)?;
            let user = segment(user, "user name", ErrorCode::InvalidNick)?;
            let found = match method {
                Method::Post => Some(ApiRoute::Mute { room, user, lift: false }),
                Method::Delete => Some(ApiRoute::Mute { room, user, lift: true }),
                _ => None,
            };
            (found, "POST, DELETE")
        }
        ["api", "users", user, "connections"] => {
            let user = segment(user, "user name", ErrorCode::InvalidNick)?;
            (matches!(method, Method::Get).then_some(ApiRoute::Connections(user)), "GET")
        }
        ["api", "users", user, "disconnect"] => {
            let user = segment(user, "user name", ErrorCode::InvalidNick)?;
            (matches!(method, Method::Post).then_some(ApiRoute::Disconnect(user)), "POST")
        }
        ["api", "users", user, "revoke"] => {
            let user = segment(user, "user name", ErrorCode::InvalidNick)?;
            (matches!(method, Method::Post).then_some(ApiRoute::Revoke(user)), "POST")
        }
        ["api", "users", user, "ban"] => {
            let user = segment(user, "user name", ErrorCode::InvalidNick)?;
            let found = match method {
                Method::Post => Some(ApiRoute::Ban { user, lift: false }),
                Method::Delete => Some(ApiRoute::Ban { user, lift: true }),
                _ => None,
            };
            (found, "POST, DELETE")
        }
        _ => return Ok(Routed::NotFound),
    };
    Ok(found.map_or(Routed::WrongMethod(allow), Routed::Found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(method: Method, path: &str) -> Routed {
        route(method, path).expect("routes")
    }

    #[test]
    fn paths_and_methods() {
        assert_eq!(
            ok(Method::Post, "/api/rooms/caf%C3%A9/messages"),
            Routed::Found(ApiRoute::PostMessage("café".into()))
        );
        assert_eq!(ok(Method::Get, "/api/rooms/a/messages"), Routed::WrongMethod("POST"));
        assert_eq!(ok(Method::Post, "/api/publish"), Routed::Found(ApiRoute::Publish));
        assert_eq!(ok(Method::Get, "/api/rooms"), Routed::Found(ApiRoute::Rooms));
        assert_eq!(ok(Method::Head, "/api/rooms"), Routed::WrongMethod("GET"));
        assert_eq!(ok(Method::Get, "/api/rooms/r/presence"), Routed::Found(ApiRoute::Presence("r".into())));
        assert_eq!(ok(Method::Get, "/api/users/al/connections"), Routed::Found(ApiRoute::Connections("al".into())));
        assert_eq!(ok(Method::Post, "/api/users/al/disconnect"), Routed::Found(ApiRoute::Disconnect("al".into())));
        assert_eq!(
            ok(Method::Delete, "/api/users/al/ban"),
            Routed::Found(ApiRoute::Ban { user: "al".into(), lift: true })
        );
        assert_eq!(ok(Method::Put, "/api/users/al/ban"), Routed::WrongMethod("POST, DELETE"));
        assert_eq!(ok(Method::Post, "/api/users/al/revoke"), Routed::Found(ApiRoute::Revoke("al".into())));
        assert_eq!(ok(Method::Get, "/api/users/al/revoke"), Routed::WrongMethod("POST"));
        assert_eq!(
            ok(Method::Post, "/api/rooms/r/mute/al"),
            Routed::Found(ApiRoute::Mute { room: "r".into(), user: "al".into(), lift: false })
        );
        assert_eq!(ok(Method::Get, "/api/nope"), Routed::NotFound);
        assert_eq!(ok(Method::Get, "/api/rooms/r/messages/5"), Routed::WrongMethod("DELETE"));
        assert_eq!(
            ok(Method::Delete, "/api/rooms/r/messages/5"),
            Routed::Found(ApiRoute::DeleteMessage { room: "r".into(), id: 5 })
        );
        assert_eq!(
            route(Method::Delete, "/api/rooms/r/messages/-1").expect_err("bad").code,
            ErrorCode::InvalidParameter
        );
        assert_eq!(ok(Method::Delete, "/api/rooms/r/messages/5/x"), Routed::NotFound);
        assert_eq!(route(Method::Post, "/api/rooms/%ff/messages").expect_err("bad").code, ErrorCode::InvalidRoom);
        assert!(is_api("/api/rooms") && is_api("/api") && !is_api("/apix"));
    }
}
