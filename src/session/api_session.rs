//! The server API's requests on an HTTP connection (docs/API.md): admission from the head (API on,
//! key, path and method, content type, body size), then the action once the body has arrived.
//!
//! An answer is either immediate ([`Served::Now`]) or comes later through the shard's inbox
//! (`ShardMsg::Reply`, [`Served::Later`]): a change that must be durable (a ban, a mute, an
//! idempotency key) is answered once the store committed it, and a request whose idempotency key is
//! being published by another request waits for that one's id. While it waits, the connection
//! takes no further request (`HttpState::awaiting_reply`, as for a history read).

use std::sync::Arc;

use super::ctx::ShardCtx;
use super::state::Conn;
use crate::api::idempotency::{self, Claim, Waiter};
use crate::api::route::{self, ApiRoute, Routed};
use crate::api::{Answerer, Api};
use crate::config::ENVELOPE_BYTES;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::protocol::api::{self as bodies, ApiMessage};
use crate::protocol::{json, names};
use crate::room::hub::RoomRef;
use crate::store::ControlOp;
use crate::types::{ClientError, ConnRef, ErrorCode, Event, Format, Origin};
use crate::ws::close;

/// How a request was served.
pub(crate) enum Served {
    /// Answer this now.
    Now(Response),
    /// The answer comes through the inbox.
    Later,
}

/// The largest body `route` takes: one message's route `--max-message` + 4 KiB, the batch route
/// `--max-batch-bytes`, the others 4 KiB.
fn body_limit(ctx: &ShardCtx, route: &ApiRoute) -> usize {
    match route {
        ApiRoute::PostMessage(_) => ctx.cfg.max_message.saturating_add(ENVELOPE_BYTES),
        ApiRoute::Publish => ctx.cfg.max_batch_bytes,
        _ => ENVELOPE_BYTES,
    }
}

/// Whether a `Content-Type` names JSON (`application/json`, parameters allowed).
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Decides from the head alone whether an `/api/` request is served: the API is on (else 404), the
/// key is right (401), the path and method exist (404, 405 with `Allow`), a body is JSON (415) and
/// within its route's bound (413).
///
/// # Errors
/// The refusal to answer.
pub(crate) fn admit(ctx: &ShardCtx, req: &Request) -> Result<ApiRoute, Response> {
    if !ctx.api.keys.enabled() {
        return Err(Response::error(404, "not_found", &format!("no such path: {}", req.path)));
    }
    if !ctx.api.keys.authorizes(req.authorization.as_deref()) {
        let resp = Response::error(401, "unauthorized", "the server API needs Authorization: Bearer <API key>");
        return Err(resp.with_header("WWW-Authenticate: Bearer".into()));
    }
    let route = match route::route(req.method, &req.path) {
        Ok(Routed::Found(route)) => route,
        Ok(Routed::NotFound) => return Err(Response::error(404, "not_found", &format!("no such path: {}", req.path))),
        Ok(Routed::WrongMethod(allow)) => {
            let resp = Response::error(405, "method_not_allowed", &format!("{} allows {allow}", req.path));
            return Err(resp.with_header(format!("Allow: {allow}")));
        }
        Err(err) => return Err(Response::client_error(&err)),
    };
    let empty_allowed = matches!(route, ApiRoute::Disconnect(_)) && req.content_length == 0;
    if route.takes_body() && !empty_allowed && !is_json(req.content_type.as_deref()) {
        return Err(Response::error(415, "unsupported_media_type", "the body must be Content-Type: application/json"));
    }
    let limit = body_limit(ctx, &route);
    if req.content_length > limit {
        let message = format!("the body is {} bytes; this route takes at most {limit}", req.content_length);
        return Err(Response::error(413, "body_too_large", &message));
    }
    Ok(route)
}

/// Serves an admitted request whose body has arrived.
pub(crate) fn serve(
    ctx: &mut ShardCtx,
    conn: &Conn,
    key: usize,
    req: &Request,
    route: ApiRoute,
    body: &[u8],
) -> Served {
    let me = ConnRef { shard: ctx.shard, key, serial: conn.serial };
    match act(ctx, me, req, route, body) {
        Ok(served) => served,
        Err(err) => Served::Now(Response::client_error(&err)),
    }
}

fn act(ctx: &mut ShardCtx, me: ConnRef, req: &Request, route: ApiRoute, body: &[u8]) -> Result<Served, ClientError> {
    let now = json::now_millis();
    match route {
        ApiRoute::PostMessage(room) => {
            names::validate_room(&room)?;
            let mut msg = bodies::parse_message(body, ctx.cfg.max_message)?;
            msg.room = room;
            post_message(ctx, me, req, msg, now)
        }
        ApiRoute::Publish => {
            let messages = bodies::parse_batch(body, ctx.cfg.max_message)?;
            publish_batch(ctx, messages)
        }
        ApiRoute::Rooms => Ok(Served::Now(Response::json(200, bodies::rooms_body(&Api::rooms(&ctx.hub))))),
        ApiRoute::Presence(room) => {
            names::validate_room(&room)?;
            Ok(Served::Now(Response::json(200, bodies::presence_body(&room, &Api::presence(&ctx.hub, &room)))))
        }
        ApiRoute::Connections(user) => {
            let (connections, rooms) = ctx.api.connections(&ctx.hub, &user);
            Ok(Served::Now(Response::json(200, bodies::connections_body(&user, &connections, &rooms))))
        }
        ApiRoute::Disconnect(user) => {
            let how = bodies::parse_disconnect(body)?;
            let code = if how.reconnect { close::DISCONNECTED } else { close::KICKED };
            let closed = ctx.api.close_user(&user, code, &how.reason);
            tracing::info!(%user, closed, code, "api: disconnected a user");
            Ok(Served::Now(Response::json(200, bodies::disconnect_body(&user, closed))))
        }
        ApiRoute::Ban { user, lift: false } => {
            let until = now.saturating_add(seconds_ms(bodies::parse_seconds(body)?));
            ctx.api.moderation.ban(&user, until, now);
            let closed = ctx.api.close_user(&user, close::BANNED, "");
            tracing::info!(%user, until, closed, "api: banned a user");
            let answer = Response::json(200, bodies::ban_body(&user, until, closed));
            Ok(durable(ctx, me, req, ControlOp::Ban { user, until_ms: until }, answer))
        }
        ApiRoute::Ban { user, lift: true } => {
            let lifted = ctx.api.moderation.unban(&user, now);
            let answer = Response::json(200, bodies::lifted_body(lifted));
            Ok(durable(ctx, me, req, ControlOp::Unban { user }, answer))
        }
        ApiRoute::Mute { room, user, lift: false } => {
            names::validate_room(&room)?;
            let until = now.saturating_add(seconds_ms(bodies::parse_seconds(body)?));
            ctx.api.moderation.mute(&room, &user, until, now);
            let answer = Response::json(200, bodies::mute_body(&room, &user, until));
            Ok(durable(ctx, me, req, ControlOp::Mute { room, user, until_ms: until }, answer))
        }
        ApiRoute::Mute { room, user, lift: true } => {
            let lifted = ctx.api.moderation.unmute(&room, &user, now);
            let answer = Response::json(200, bodies::lifted_body(lifted));
            Ok(durable(ctx, me, req, ControlOp::Unmute { room, user }, answer))
        }
    }
}

fn seconds_ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// A change in force in memory: written to the store, `answer` sent once it is committed.
fn durable(ctx: &ShardCtx, me: ConnRef, req: &Request, op: ControlOp, answer: Response) -> Served {
    let answerer = ctx.api.answerer();
    let keep_alive = req.keep_alive;
    let queued = ctx.api.persist(op, move |result| {
        let response = match result {
            Ok(()) => answer,
            Err(err) => not_stored(&err.to_string()),
        };
        answerer.answer(me, response, keep_alive);
    });
    if queued { Served::Later } else { Served::Now(not_stored("the store's control queue is full")) }
}

fn not_stored(why: &str) -> Response {
    Response::error(503, "unavailable", &format!("in force on this node, but not stored (lost at a restart): {why}"))
}

/// Publishes one API message into its room (with or without members) as a JSON client's message
/// would be; the id once sequenced.
fn publish_one(ctx: &ShardCtx, msg: ApiMessage) -> Result<u64, ClientError> {
    let event = Event::message(Arc::from(msg.user.as_str()), Arc::from(msg.content.as_str()));
    let origin = Origin { format: Format::Json, client_id: msg.client_id.as_deref().map(Arc::from) };
    match ctx.hub.publish(RoomRef::Named(&msg.room), event, origin, None)? {
        Some(id) => Ok(id),
        // Cluster mode hands the event to Redis; its id is not known here (see `refuse_in_cluster`).
        None => {
            Err(ClientError::new(ErrorCode::Unavailable, "the message was handed to the cluster; its id is unknown"))
        }
    }
}

/// Cluster mode: publishing through the API is not available yet (the id is assigned by Redis and
/// not reported back to the publishing connection); refused before anything is published.
fn refuse_in_cluster(ctx: &ShardCtx) -> Option<Served> {
    ctx.cfg.redis_url.is_some().then(|| {
        Served::Now(Response::error(
            501,
            "not_implemented",
            "publishing through the server API is not available in cluster mode yet",
        ))
    })
}

fn post_message(
    ctx: &mut ShardCtx,
    me: ConnRef,
    req: &Request,
    msg: ApiMessage,
    now: i64,
) -> Result<Served, ClientError> {
    if let Some(refused) = refuse_in_cluster(ctx) {
        return Ok(refused);
    }
    let Some(key) = req.idempotency_key.as_deref() else {
        let id = publish_one(ctx, msg)?;
        ctx.metrics.messages_received.inc();
        return Ok(Served::Now(Response::json(201, bodies::id_body(id))));
    };
    if !idempotency::valid_key(key) {
        return Err(ClientError::new(
            ErrorCode::InvalidParameter,
            format!("header Idempotency-Key must be 1 to {} visible ASCII characters", idempotency::MAX_KEY_BYTES),
        ));
    }
    let waiter = Waiter { conn: me, keep_alive: req.keep_alive };
    match ctx.api.idempotency.claim(key, waiter, now) {
        Claim::Done(id) => {
            Ok(Served::Now(Response::json(201, bodies::id_body(id)).with_header("Idempotent-Replayed: true".into())))
        }
        Claim::Joined => Ok(Served::Later),
        Claim::Full => Ok(Served::Now(Response::error(
            503,
            "unavailable",
            &format!("{} idempotency keys are already remembered; retry later", idempotency::MAX_KEYS),
        ))),
        Claim::New => {
            let answerer = ctx.api.answerer();
            match publish_one(ctx, msg) {
                Ok(id) => {
                    ctx.metrics.messages_received.inc();
                    remember(ctx, answerer, key.to_string(), id, now);
                }
                Err(err) => {
                    let response = Response::client_error(&err);
                    for w in ctx.api.idempotency.abandon(key) {
                        answerer.answer(w.conn, response.clone(), w.keep_alive);
                    }
                }
            }
            Ok(Served::Later)
        }
    }
}

/// Writes `key` → `id` to the store; once committed, every request waiting for the key gets `id`.
fn remember(ctx: &ShardCtx, answerer: Answerer, key: String, id: u64, now: i64) {
    let idem = Arc::clone(&ctx.api.idempotency);
    let finish = move |idem: &idempotency::Idempotency, key: &str| {
        for w in idem.complete(key, id) {
            answerer.answer(w.conn, Response::json(201, bodies::id_body(id)), w.keep_alive);
        }
    };
    let op = ControlOp::Remember { key: key.clone(), id, at_ms: now };
    let idem_then = Arc::clone(&idem);
    let key_then = key.clone();
    let finish_then = finish.clone();
    let queued = ctx.api.persist(op, move |result| {
        if let Err(err) = result {
            tracing::warn!(%err, "api: an idempotency key could not be stored; a retry after a restart publishes again");
        }
        finish_then(&idem_then, &key_then);
    });
    if !queued {
        tracing::warn!("api: the control queue is full; an idempotency key is kept in memory only");
        finish(&idem, &key);
    }
}

fn publish_batch(ctx: &mut ShardCtx, messages: Vec<ApiMessage>) -> Result<Served, ClientError> {
    if let Some(refused) = refuse_in_cluster(ctx) {
        return Ok(refused);
    }
    let mut ids = Vec::with_capacity(messages.len());
    for msg in messages {
        match publish_one(ctx, msg) {
            Ok(id) => ids.push(id),
            Err(err) => {
                let message = format!(
                    "messages[{}] was not published: {}; the ones before it were, ids {ids:?}",
                    ids.len(),
                    err.message
                );
                return Err(ClientError::new(err.code, message));
            }
        }
        ctx.metrics.messages_received.inc();
    }
    Ok(Served::Now(Response::json(201, bodies::ids_body(&ids))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(!is_json(Some("text/plain")) && !is_json(Some("application/jsonx")) && !is_json(None));
    }
}
