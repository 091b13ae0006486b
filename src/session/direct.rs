//! Direct messages: the `dm` command's room (`protocol::dm`), and the list of a user's
//! direct-message rooms, read from the store (never on the event loop) after `welcome` and sent as
//! a `dm_rooms` event when there is at least one. When a connection opens a conversation (its first
//! `dm` to someone), the other user's connections on this node are told at once with a `dm_rooms`
//! naming the room, so they can join it; on other nodes they learn of it at their next `welcome`.

use std::sync::Arc;

use super::ctx::ShardCtx;
use super::send::text_frame;
use crate::bus::ShardMsg;
use crate::protocol::json;
use crate::types::ConnRef;

/// The sender just joined `room` to write to `to` first: tell `to`'s connections on this node.
pub(crate) fn opened(ctx: &ShardCtx, to: &str, room: &str) {
    let frame = text_frame(&json::dm_rooms(&[room.to_string()]));
    ctx.api.tell_user(to, &frame);
}

/// After `welcome` on a JSON connection of `user`: asks the store for the user's direct-message
/// rooms; a non-empty list reaches the connection as `dm_rooms` (without persistence: nothing).
pub(crate) fn after_welcome(ctx: &ShardCtx, to: ConnRef, user: &Arc<str>) {
    let Some(store) = ctx.store.as_ref().filter(|s| s.may_hold_dm_rooms()) else { return };
    let inbox = Arc::clone(&ctx.inbox);
    store.dm_rooms(
        Arc::clone(user),
        store.enqueued_seq(),
        Box::new(move |result| match result {
            Ok(rooms) if !rooms.is_empty() => {
                inbox.send(ShardMsg::Send { conn: to, frame: text_frame(&json::dm_rooms(&rooms)) });
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(%err, "direct-message rooms not available after welcome"),
        }),
    );
}
