//! Edits and deletes of a connection's own messages: checked here, then published on the room's
//! log like a message (`Hub::publish`), so live delivery, the store, resume pages and the cluster
//! handle them as they handle messages.
//!
//! The fast path: an id among the connection's own most recent messages (`super::own`: sent by
//! this connection, not seen deleted since) is published at once, after the same checks of room,
//! size, moderation and `client_id`; so editing one's latest message costs what a message costs.
//! Every other id (another connection's, one older than the ring, any id in cluster mode, where the
//! id comes back later, or with `--retain-per-room`) takes the slow path:
//!
//! Whose message an id is lives in the store, and the event loop never touches the disk: the check
//! is a lookup in the store's reader pool (`Store::lookup`, after everything enqueued so far is
//! committed, like a history page), whose answer comes back through the shard's inbox
//! (`ShardMsg::Amend` → [`on_reply`]); only then is the event published. So a slow-path edit takes
//! its place in the room's order when the lookup answers, not when it was sent (a fast-path one
//! when it was sent), and two amendments of one
//! message sent at once (an edit and a delete from two tabs) may be published in either order:
//! an edit that arrives after its message's delete changes nothing (the store keeps it without
//! content; clients ignore an `edited` for a deleted id). Without persistence there is no history
//! to amend: edits and deletes are refused with `history_unavailable`.

use std::sync::Arc;

use super::ctx::ShardCtx;
use super::gate;
use super::screen::screen;
use super::send::send_error;
use super::state::{Conn, Phase};
use crate::bus::{AmendReply, ShardMsg};
use crate::moderation::{Author, Kind};
use crate::protocol::json::MAX_CLIENT_ID_BYTES;
use crate::protocol::names;
use crate::room::hub::RoomRef;
use crate::types::{ClientError, ConnRef, Delete, Edit, ErrorCode, Event, Format, Origin};

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Amendment<'a> {
    /// New content for the message.
    Edit(&'a str),
    /// Remove the message.
    Delete,
}

/// An `edit` or `delete` of message `target` in `room`: validated, then published at once if the
/// target is in the connection's ring (`super::own`), else the message is looked up and
/// [`on_reply`] publishes it.
///
/// # Errors
/// `invalid_room`, `forbidden` (token's rooms), `not_joined`, `empty_message`, `message_too_large`,
/// `invalid_client_id`, `muted`, `content_blocked` (an edit's content is filtered like a message's;
/// masked content is what gets published), `history_unavailable` without persistence, and on the
/// fast path `unavailable` (the sequencer cannot take it now).
pub(crate) fn request(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    room: &str,
    target: u64,
    amendment: Amendment<'_>,
    client_id: Option<&str>,
) -> Result<(), ClientError> {
    let Phase::Ws(ws) = &conn.phase else { return Ok(()) };
    names::validate_room(room)?;
    gate::may_use(&ws.limits.grant, &ws.user, room)?;
    if client_id.is_some_and(|c| c.len() > MAX_CLIENT_ID_BYTES) {
        return Err(ClientError::new(
            ErrorCode::InvalidClientId,
            format!("client_id is longer than {MAX_CLIENT_ID_BYTES} bytes"),
        ));
    }
    let membership = ws.rooms.iter().find(|m| *m.room.name == *room).ok_or_else(|| not_joined(room))?;
    let client_id: Option<Arc<str>> = client_id.map(Arc::from);
    let user = Arc::clone(&ws.user);
    let event = match amendment {
        Amendment::Edit(content) => {
            if content.is_empty() {
                return Err(ClientError::new(ErrorCode::EmptyMessage, "content must not be empty"));
            }
            if content.len() > ctx.cfg.max_message {
                return Err(ClientError::new(
                    ErrorCode::MessageTooLarge,
                    format!("content is {} bytes; the limit is {}", content.len(), ctx.cfg.max_message),
                ));
            }
            ctx.not_muted(room, &user).map_err(|err| err.about(client_id.clone()))?;
            let content = screen(ctx, Author::User(&user), room, content, Kind::Unrepeated)
                .map_err(|err| err.about(client_id.clone()))?;
            Event::Edit(Edit { user, target, content: Arc::from(&*content) })
        }
        Amendment::Delete => Event::Delete(Delete { user, target }),
    };
    let Some(store) = ctx.store.as_ref() else {
        return Err(ClientError::new(
            ErrorCode::HistoryUnavailable,
            "this server keeps no history (--no-persist): messages cannot be edited or deleted",
        )
        .about(client_id));
    };
    let origin = Origin { format: Format::Json, client_id };
    let to = ConnRef { shard: ctx.shard, key, serial: conn.serial };
    let room_id = membership.room.id;
    if ws.own.holds(room_id, target) {
        // The fast path: this connection sent the message and has not seen it deleted.
        let deletes = matches!(event, Event::Delete(_));
        ctx.hub.publish(RoomRef::Joined(&membership.room), event, origin, Some(to))?;
        ctx.metrics.messages_received.inc();
        if deletes && let Phase::Ws(ws) = &mut conn.phase {
            ws.own.forget(room_id, target);
        }
        return Ok(());
    }
    let room = Arc::clone(&membership.room.name);
    let inbox = Arc::clone(&ctx.inbox);
    // Read-your-writes: the target may be a message this client has just received.
    let visible_seq = store.enqueued_seq();
    store.lookup(
        Arc::clone(&room),
        target,
        visible_seq,
        Box::new(move |result| inbox.send(ShardMsg::Amend(AmendReply { conn: to, room, event, origin, result }))),
    );
    Ok(())
}

/// The message an edit or delete refers to was looked up: publish it if it is the sender's own
/// message, still there, in a room the sender is still in; otherwise tell the sender why not.
pub(crate) fn on_reply(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, reply: AmendReply) {
    let AmendReply { room, event, origin, result, .. } = reply;
    let Phase::Ws(ws) = &mut conn.phase else { return };
    let target = event.target().unwrap_or(0);
    let client_id = origin.client_id.clone();
    let verdict = match result {
        Err(err) => Err(ClientError::new(
            ErrorCode::HistoryUnavailable,
            format!("message {target} could not be looked up now ({err}); try again"),
        )),
        Ok(None) => Err(ClientError::new(ErrorCode::NotFound, format!("no message {target} in room {room:?}"))),
        Ok(Some(found)) if found.deleted => {
            Err(ClientError::new(ErrorCode::NotFound, format!("message {target} was deleted")))
        }
        Ok(Some(found)) if found.author != ws.user => Err(ClientError::new(
            ErrorCode::Forbidden,
            format!("message {target} is {:?}'s: only its author may change it", found.author),
        )),
        Ok(Some(_)) => match ws.rooms.iter().find(|m| m.room.name == room) {
            None => Err(not_joined(&room)),
            Some(membership) => {
                let reply_to = Some(ConnRef { shard: ctx.shard, key, serial: conn.serial });
                let room_id = membership.room.id;
                let deletes = matches!(event, Event::Delete(_));
                let published = ctx.hub.publish(RoomRef::Joined(&membership.room), event, origin, reply_to);
                if deletes && published.is_ok() {
                    ws.own.forget(room_id, target);
                }
                published
            }
        },
    };
    match verdict {
        Ok(_) => ctx.metrics.messages_received.inc(),
        Err(err) => send_error(ctx, conn, key, &err.about(client_id)),
    }
}

fn not_joined(room: &str) -> ClientError {
    ClientError::new(ErrorCode::NotJoined, format!("join room {room:?} before changing its messages"))
}
