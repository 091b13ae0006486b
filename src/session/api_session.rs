//! The server API's requests on an HTTP connection (docs/API.md): admission from the head (API on,
//! key, path and method, content type, body size), then the action once the body has arrived.
//!
//! An answer is either immediate ([`Served::Now`]) or comes later through the shard's inbox
//! (`ShardMsg::Reply`, [`Served::Later`]): a change that must be durable (a ban, a mute, an
//! idempotency key) is answered once the store committed it, and a request whose idempotency key is
//! being published by another request waits for that one's id. While it waits, the connection
//! takes no further request (`HttpState::awaiting_reply`, as for a history read).

use std::borrow::Cow;
use std::sync::Arc;

use super::api_listing::{Listing, list};
use super::ctx::ShardCtx;
use super::screen::screen;
use super::state::{Conn, PendingIds, Phase};
use crate::api::idempotency::{self, Claim, Waiter};
use crate::api::route::{self, ApiRoute, Routed};
use crate::config::ENVELOPE_BYTES;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::moderation::{Author, Kind};
use crate::protocol::api::{self as bodies, ApiMessage, ModerationChange};
use crate::protocol::{json, names};
use crate::room::hub::RoomRef;
use crate::room::sink::ModerationDecision;
use crate::store::ControlOp;
use crate::types::{ClientError, ConnRef, Delete, ErrorCode, Event, Format, IdWaiter, Origin};
use crate::ws::close;

/// How a request was served.
pub(crate) enum Served {
    /// Answer this now.
    Now(Response),
    /// The answer comes through the inbox.
    Later,
    /// The connection streams the change feed from now on (`super::feed`).
    Streaming,
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
    conn: &mut Conn,
    key: usize,
    req: &Request,
    route: ApiRoute,
    body: &[u8],
) -> Served {
    if route == ApiRoute::Feed {
        return match super::feed::start(ctx, conn, key, req) {
            Ok(()) => Served::Streaming,
            Err(resp) => Served::Now(resp),
        };
    }
    let me = ConnRef { shard: ctx.shard, key, serial: conn.serial };
    match act(ctx, me, req, route, body) {
        Ok(Action::Done(served)) => served,
        Ok(Action::Wait(pending)) => {
            if let Phase::Http(state) = &mut conn.phase {
                state.pending_ids = Some(pending);
            }
            Served::Later
        }
        Err(err) => Served::Now(Response::client_error(&err)),
    }
}

/// What a request came to: served (now or later), or waiting for ids from the cluster.
enum Action {
    Done(Served),
    Wait(Box<PendingIds>),
}

impl From<Served> for Action {
    fn from(served: Served) -> Action {
        Action::Done(served)
    }
}

fn act(ctx: &mut ShardCtx, me: ConnRef, req: &Request, route: ApiRoute, body: &[u8]) -> Result<Action, ClientError> {
    let now = json::now_millis();
    match route {
        ApiRoute::PostMessage(room) => {
            names::validate_room(&room)?;
            let mut msg = bodies::parse_message(body, ctx.cfg.max_message)?;
            msg.room = room;
            post_message(ctx, me, req, msg, now)
        }
        ApiRoute::DeleteMessage { room, id } => {
            names::validate_room(&room)?;
            Ok(delete_message(ctx, me, req, room, id).into())
        }
        // Served as a stream by `serve` before it gets here.
        ApiRoute::Feed => Err(ClientError::new(ErrorCode::InvalidParameter, "the change feed is a stream")),
        ApiRoute::Publish => {
            let messages = bodies::parse_batch(body, ctx.cfg.max_message)?;
            publish_batch(ctx, me, req, messages)
        }
        ApiRoute::Rooms => Ok(listed(list(ctx, me, req.keep_alive, Listing::Rooms))),
        ApiRoute::Presence(room) => {
            names::validate_room(&room)?;
            Ok(listed(list(ctx, me, req.keep_alive, Listing::Presence(room))))
        }
        ApiRoute::Connections(user) => Ok(listed(list(ctx, me, req.keep_alive, Listing::Connections(user)))),
        ApiRoute::Disconnect(user) => {
            let how = bodies::parse_disconnect(body)?;
            let code = if how.reconnect { close::DISCONNECTED } else { close::KICKED };
            let change = ModerationChange::Disconnect { user: user.clone(), code, reason: how.reason };
            let (closed, _) = ctx.api.apply(&change, now, |_, _| {});
            ctx.hub.moderated(|| crate::api::decision(&change, closed));
            ctx.api.tell_cluster(&ctx.hub, change);
            tracing::info!(%user, closed, code, "api: disconnected a user");
            Ok(Action::Done(Served::Now(Response::json(200, bodies::disconnect_body(&user, closed)))))
        }
        ApiRoute::Revoke(user) => {
            let user = names::validate_nick(&user)?.to_string();
            let change = ModerationChange::Revoke { user: user.clone(), before_ms: now };
            Ok(Action::Done(moderate(ctx, me, req, change, now, move |closed| bodies::revoke_body(&user, now, closed))))
        }
        ApiRoute::Ban { user, lift: false } => {
            let until_ms = now.saturating_add(seconds_ms(bodies::parse_seconds(body)?));
            let change = ModerationChange::Ban { user: user.clone(), until_ms };
            Ok(Action::Done(moderate(ctx, me, req, change, now, move |closed| {
                bodies::ban_body(&user, until_ms, closed)
            })))
        }
        ApiRoute::Ban { user, lift: true } => {
            let lifted = ctx.api.moderation.banned_until(&user, now).is_some();
            let change = ModerationChange::Unban { user };
            Ok(Action::Done(moderate(ctx, me, req, change, now, move |_| bodies::lifted_body(lifted))))
        }
        ApiRoute::Mute { room, user, lift: false } => {
            names::validate_room(&room)?;
            let until_ms = now.saturating_add(seconds_ms(bodies::parse_seconds(body)?));
            let answer = bodies::mute_body(&room, &user, until_ms);
            let change = ModerationChange::Mute { room, user, until_ms };
            Ok(Action::Done(moderate(ctx, me, req, change, now, move |_| answer)))
        }
        ApiRoute::Mute { room, user, lift: true } => {
            let lifted = ctx.api.moderation.muted_until(&room, &user, || now).is_some();
            let change = ModerationChange::Unmute { room, user };
            Ok(Action::Done(moderate(ctx, me, req, change, now, move |_| bodies::lifted_body(lifted))))
        }
    }
}

/// A listing answered now, or later through the inbox.
fn listed(answer: Option<Response>) -> Action {
    Action::Done(answer.map_or(Served::Later, Served::Now))
}

fn seconds_ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// A ban or mute (or its lifting): in force here at once, told to the other nodes of a cluster,
/// answered (`answer`, given how many connections it closed) once the store committed it; its
/// webhook event is handed off then too (not when it could not be stored: the caller gets a 503 and
/// retries).
fn moderate(
    ctx: &ShardCtx,
    me: ConnRef,
    req: &Request,
    change: ModerationChange,
    now: i64,
    answer: impl FnOnce(usize) -> Vec<u8> + Send + 'static,
) -> Served {
    let answerer = ctx.api.answerer();
    let keep_alive = req.keep_alive;
    let (hub, decided) = (Arc::clone(&ctx.hub), change.clone());
    let (closed, stored) = ctx.api.apply(&change, now, move |closed, result| {
        let response = match result {
            Ok(()) => {
                hub.moderated(|| crate::api::decision(&decided, closed));
                Response::json(200, answer(closed))
            }
            Err(err) => not_stored(&err.to_string()),
        };
        answerer.answer(me, response, keep_alive);
    });
    ctx.api.tell_cluster(&ctx.hub, change);
    tracing::info!(closed, stored, "api: moderation change");
    if stored { Served::Later } else { Served::Now(not_stored("the store's control queue is full")) }
}

fn not_stored(why: &str) -> Response {
    Response::error(503, "unavailable", &format!("in force on this node, but not stored (lost at a restart): {why}"))
}

/// `DELETE /api/rooms/{room}/messages/{id}`: looks the message up in the store (after what was
/// enqueued so far is committed), then publishes the same `deleted` event a user's own delete makes,
/// into the room with or without members; 200 `{"id", "deleted": true}` (also for a message deleted
/// already: a retry is safe), 404 for no such message in that room, 503 without history.
fn delete_message(ctx: &ShardCtx, me: ConnRef, req: &Request, room: String, id: u64) -> Served {
    let Some(store) = ctx.store.as_ref() else {
        return Served::Now(Response::error(503, "history_unavailable", "this server keeps no history (--no-persist)"));
    };
    let (hub, answerer, keep_alive) = (Arc::clone(&ctx.hub), ctx.api.answerer(), req.keep_alive);
    let room: Arc<str> = Arc::from(room);
    let target_room = Arc::clone(&room);
    store.lookup(
        room,
        id,
        store.enqueued_seq(),
        Box::new(move |found| {
            let response = match found {
                Err(err) => {
                    Response::error(503, "history_unavailable", &format!("the message could not be looked up: {err}"))
                }
                Ok(None) => Response::client_error(&ClientError::new(
                    ErrorCode::NotFound,
                    format!("no message {id} in room {target_room:?}"),
                )),
                Ok(Some(target)) if target.deleted => Response::json(200, bodies::deleted_body(id)),
                Ok(Some(target)) => {
                    // The author's name on the event (the cluster's per-user limit is not charged for
                    // deletes: only fresh messages are).
                    let author = Arc::clone(&target.author);
                    let event = Event::Delete(Delete { user: target.author, target: id });
                    match hub.publish(RoomRef::Named(&target_room), event, Origin::STORED, None) {
                        Ok(_) => {
                            hub.moderated(|| {
                                let (room, fields) = (Some(Arc::clone(&target_room)), vec![("message", id.into())]);
                                ModerationDecision::new("message_deleted", room, author, fields)
                            });
                            Response::json(200, bodies::deleted_body(id))
                        }
                        Err(err) => Response::client_error(&err),
                    }
                }
            };
            answerer.answer(me, response, keep_alive);
        }),
    );
    Served::Later
}

/// Publishes one API message into its room (with or without members) as a JSON client's message
/// would be: its id when it was ordered here; `None` when the sequencer kept it (cluster mode), and
/// `ack` is told the id later (`ShardMsg::Sequenced`).
fn publish_one(ctx: &ShardCtx, msg: ApiMessage, ack: IdWaiter, key: Option<&str>) -> Result<Option<u64>, ClientError> {
    let event = Event::message(Arc::from(msg.user.as_str()), Arc::from(msg.content.as_str()));
    let origin = Origin { format: Format::Json, client_id: msg.client_id.as_deref().map(Arc::from) };
    let id = ctx.hub.publish_acked(RoomRef::Named(&msg.room), event, origin, None, Some(ack), key.map(Arc::from))?;
    ctx.metrics.messages_received.inc();
    Ok(id)
}

/// The content filter on an API message (`super::screen`; not counted as a repeat: a backend may
/// legitimately send the same text again and again): refused (422 `content_blocked`) or masked.
fn screen_api(ctx: &ShardCtx, msg: &mut ApiMessage) -> Result<(), ClientError> {
    if let Cow::Owned(masked) = screen(ctx, Author::User(&msg.user), &msg.room, &msg.content, Kind::Unrepeated)? {
        msg.content = masked;
    }
    Ok(())
}

fn post_message(
    ctx: &mut ShardCtx,
    me: ConnRef,
    req: &Request,
    mut msg: ApiMessage,
    now: i64,
) -> Result<Action, ClientError> {
    screen_api(ctx, &mut msg)?;
    let ack = IdWaiter { conn: me, index: 0 };
    let waiting = |idempotency_key: Option<String>| {
        Action::Wait(Box::new(PendingIds {
            ids: vec![None],
            missing: 1,
            idempotency_key,
            keep_alive: req.keep_alive,
            ..PendingIds::default()
        }))
    };
    let Some(key) = req.idempotency_key.as_deref() else {
        return Ok(match publish_one(ctx, msg, ack, None)? {
            Some(id) => Served::Now(Response::json(201, bodies::id_body(id))).into(),
            None => waiting(None),
        });
    };
    if !idempotency::valid_key(key) {
        return Err(ClientError::new(
            ErrorCode::InvalidParameter,
            format!("header Idempotency-Key must be 1 to {} visible ASCII characters", idempotency::MAX_KEY_BYTES),
        ));
    }
    let waiter = Waiter { conn: me, keep_alive: req.keep_alive };
    let room: Arc<str> = Arc::from(msg.room.as_str());
    match ctx.api.idempotency.claim(key, waiter, now) {
        Claim::Done(id) => {
            Ok(Served::Now(Response::json(201, bodies::id_body(id)).with_header("Idempotent-Replayed: true".into()))
                .into())
        }
        Claim::Joined => Ok(Served::Later.into()),
        Claim::Full => Ok(Served::Now(Response::error(
            503,
            "unavailable",
            &format!("{} idempotency keys are already remembered; retry later", idempotency::MAX_KEYS),
        ))
        .into()),
        Claim::New => match publish_one(ctx, msg, ack, Some(key)) {
            Ok(Some(id)) => {
                remember_with_message(ctx, key.to_string(), id, room, now);
                Ok(Served::Later.into())
            }
            Ok(None) => Ok(waiting(Some(key.to_string()))),
            Err(err) => {
                forget(ctx, key, &err);
                Ok(Served::Later.into())
            }
        },
    }
}

/// `key`'s publish failed: every request waiting for it (the first one included) gets `err`.
fn forget(ctx: &ShardCtx, key: &str, err: &ClientError) {
    let answerer = ctx.api.answerer();
    let response = Response::client_error(err);
    for w in ctx.api.idempotency.abandon(key) {
        answerer.answer(w.conn, response.clone(), w.keep_alive);
    }
}

/// Single node: the store's writer writes `key` in the transaction of message `id` itself (see
/// `Sequenced::idempotency_key`), so a crash leaves both or neither. Once that transaction is
/// committed (a reader-pool lookup of the message, which waits for it), every request waiting for
/// the key gets `id`. Without a store, or when the lookup cannot confirm it (the pool busy, the
/// message not stored in time), the key is written on its own instead ([`remember`]): answered
/// only once it is durable either way.
fn remember_with_message(ctx: &ShardCtx, key: String, id: u64, room: Arc<str>, now: i64) {
    let Some(store) = ctx.store.as_ref() else { return remember(&ctx.api, key, id, now) };
    let api = Arc::clone(&ctx.api);
    let visible = store.enqueued_seq();
    store.lookup(
        room,
        id,
        visible,
        Box::new(move |found| match found {
            Ok(Some(_)) => answer_waiters(&api.idempotency, &api.answerer(), &key, id),
            other => {
                tracing::debug!(
                    ?other,
                    id,
                    "api: the message with an idempotency key is not confirmed stored; storing the key alone"
                );
                remember(&api, key, id, now);
            }
        }),
    );
}

/// Writes `key` → `id` to the store; once committed, every request waiting for the key gets `id`.
fn remember(api: &crate::api::Api, key: String, id: u64, now: i64) {
    let op = ControlOp::Remember { key: key.clone(), id, at_ms: now };
    let (idem, answerer, key_then) = (Arc::clone(&api.idempotency), api.answerer(), key.clone());
    let queued = api.persist(op, move |result| {
        if let Err(err) = result {
            tracing::warn!(%err, "api: an idempotency key could not be stored; a retry after a restart publishes again");
        }
        answer_waiters(&idem, &answerer, &key_then, id);
    });
    if !queued {
        tracing::warn!("api: the control queue is full; an idempotency key is kept in memory only");
        answer_waiters(&api.idempotency, &api.answerer(), &key, id);
    }
}

/// `key` published `id`: every request waiting for it gets `id` (201).
fn answer_waiters(idem: &idempotency::Idempotency, answerer: &crate::api::Answerer, key: &str, id: u64) {
    for w in idem.complete(key, id) {
        answerer.answer(w.conn, Response::json(201, bodies::id_body(id)), w.keep_alive);
    }
}

fn publish_batch(
    ctx: &mut ShardCtx,
    me: ConnRef,
    req: &Request,
    mut messages: Vec<ApiMessage>,
) -> Result<Action, ClientError> {
    // Every message is screened before any is published: a refused one refuses the whole batch.
    for (index, msg) in messages.iter_mut().enumerate() {
        screen_api(ctx, msg).map_err(|err| {
            ClientError::new(err.code, format!("messages[{index}]: {}; no message was published", err.message))
        })?;
    }
    let mut ids = Vec::with_capacity(messages.len());
    for (index, msg) in messages.into_iter().enumerate() {
        let ack = IdWaiter { conn: me, index: u32::try_from(index).unwrap_or(u32::MAX) };
        match publish_one(ctx, msg, ack, None) {
            Ok(id) => ids.push(id),
            Err(err) => {
                let published: Vec<u64> = ids.iter().flatten().copied().collect();
                let unknown = if published.len() < ids.len() { ", the others' ids are not known yet" } else { "" };
                let message = format!(
                    "messages[{index}] was not published: {}; the {} before it were (ids {published:?}{unknown})",
                    err.message,
                    ids.len(),
                );
                return Err(ClientError::new(err.code, message));
            }
        }
    }
    let missing = ids.iter().filter(|id| id.is_none()).count();
    if missing == 0 {
        let ids: Vec<u64> = ids.into_iter().flatten().collect();
        return Ok(Served::Now(Response::json(201, bodies::ids_body(&ids))).into());
    }
    let pending = PendingIds { ids, missing, batch: true, keep_alive: req.keep_alive, ..PendingIds::default() };
    Ok(Action::Wait(Box::new(pending)))
}

/// Cluster mode: event `index` of the waiting request got its id (or an error). Once every id is
/// told, the answer: `Now` (no idempotency key), or `Later` (the key is stored first, or the waiters
/// are told through the inbox). `None` while ids are still missing.
pub(crate) fn on_sequenced(
    ctx: &ShardCtx,
    pending: &mut PendingIds,
    index: u32,
    result: Result<u64, ClientError>,
) -> Option<Served> {
    let slot = pending.ids.get_mut(usize::try_from(index).ok()?)?;
    if slot.is_some() {
        return None;
    }
    match result {
        Ok(id) => *slot = Some(id),
        Err(err) => {
            // Told (with no id): the request is answered once every event is.
            *slot = Some(0);
            pending.error.get_or_insert(err);
        }
    }
    pending.missing -= 1;
    if pending.missing > 0 {
        return None;
    }
    let ids: Vec<u64> = pending.ids.iter().flatten().copied().collect();
    let first = ids.first().copied().unwrap_or_default();
    match (pending.error.take(), pending.idempotency_key.take()) {
        (Some(err), Some(key)) => {
            forget(ctx, &key, &err);
            Some(Served::Later)
        }
        (Some(err), None) => Some(Served::Now(Response::client_error(&err))),
        (None, Some(key)) => {
            remember(&ctx.api, key, first, json::now_millis());
            Some(Served::Later)
        }
        (None, None) if pending.batch => Some(Served::Now(Response::json(201, bodies::ids_body(&ids)))),
        (None, None) => Some(Served::Now(Response::json(201, bodies::id_body(first)))),
    }
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
