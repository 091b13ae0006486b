//! Direct messages: the `dm` command's room (`protocol::dm`), and the list of a user's
//! direct-message rooms that `welcome` carries (`dm_rooms`). While no direct-message room may be
//! stored (`Store::may_hold_dm_rooms`) `welcome` says `dm_rooms: []` at once; otherwise it waits for
//! the store (the reader pool, never the event loop): the connection is upgraded, but its input is
//! not read and the handshake's room not joined until `welcome` is sent ([`on_rooms`]), so
//! `welcome` stays the first frame. When a connection opens a conversation (its first `dm` to
//! someone), the other user's connections on this node are told at once with a `dm_rooms` event
//! naming the room, so they can join it; on other nodes they learn of it at their next `welcome`.

use std::sync::Arc;

use bytes::Bytes;

use super::ctx::ShardCtx;
use super::send::{send_frame, text_frame};
use super::state::{Conn, PendingWelcome, Phase, is_anonymous};
use crate::bus::ShardMsg;
use crate::protocol::json::{self, WelcomeLimits};
use crate::store::StoreError;
use crate::types::ConnRef;
use crate::ws::codec;

/// The sender just joined `room` to write to `to` first: tell `to`'s connections on this node.
pub(crate) fn opened(ctx: &ShardCtx, to: &str, room: &str) {
    let frame = text_frame(&json::dm_rooms(&[room.to_string()]));
    ctx.api.tell_user(to, &frame);
}

/// Sends `welcome` to a JSON connection just upgraded, with its user's direct-message rooms (read
/// from the store first when there may be some). Returns what the handshake asked for when
/// `welcome` went out now (the caller joins its room); `None` while it waits ([`on_rooms`]).
pub(crate) fn welcome(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    pending: PendingWelcome,
    limits: &WelcomeLimits,
) -> Option<PendingWelcome> {
    let Phase::Ws(ws) = &mut conn.phase else { return None };
    let named = !is_anonymous(&ws.user);
    match ctx.store.as_ref() {
        Some(store) if named && store.may_hold_dm_rooms() => {
            let to = ConnRef { shard: ctx.shard, key, serial: conn.serial };
            let inbox = Arc::clone(&ctx.inbox);
            ws.welcome = Some(Box::new(pending));
            store.dm_rooms(
                Arc::clone(&ws.user),
                store.enqueued_seq(),
                Box::new(move |result| inbox.send(ShardMsg::DmRooms { conn: to, result })),
            );
            None
        }
        Some(_) if named => send_welcome(ctx, conn, key, pending, limits, Some(&[])),
        _ => send_welcome(ctx, conn, key, pending, limits, None),
    }
}

/// The direct-message rooms asked for by [`welcome`] arrived: `welcome` with them (without them
/// when the store failed, logged). Returns what the handshake asked for (the caller joins its room
/// and serves the input that waited), `None` when nothing waited.
pub(crate) fn on_rooms(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    result: Result<Vec<String>, StoreError>,
    limits: &WelcomeLimits,
) -> Option<PendingWelcome> {
    let pending = conn.phase.ws_mut().and_then(|ws| ws.welcome.take())?;
    let rooms = match result {
        Ok(rooms) => Some(rooms),
        Err(err) => {
            tracing::warn!(key, %err, "direct-message rooms not available: welcome without them");
            None
        }
    };
    send_welcome(ctx, conn, key, *pending, limits, rooms.as_deref())
}

/// A frame for a connection whose `welcome` waits: kept to follow it (bounded; see
/// [`PendingWelcome::MAX_FRAMES`]). Returns the frame back when nothing waits.
pub(crate) fn hold_until_welcome(conn: &mut Conn, frame: Bytes) -> Option<Bytes> {
    let Some(pending) = conn.phase.ws_mut().and_then(|ws| ws.welcome.as_mut()) else { return Some(frame) };
    if pending.frames.len() < PendingWelcome::MAX_FRAMES {
        pending.frames.push(frame);
    } else {
        tracing::debug!("a notice for a connection whose welcome waits was dropped");
    }
    None
}

/// Queues `welcome`, then the frames that waited for it; returns the rest of `pending` unless the
/// connection is closing.
fn send_welcome(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    mut pending: PendingWelcome,
    limits: &WelcomeLimits,
    dm_rooms: Option<&[String]>,
) -> Option<PendingWelcome> {
    let ws = conn.phase.ws()?;
    let frame = json::welcome(&ws.user, conn.serial, limits, &ctx.epoch, pending.expires_in, dm_rooms);
    conn.send_unbounded(codec::encode_frame(codec::TEXT, &frame));
    ctx.schedule.flush(key);
    for frame in std::mem::take(&mut pending.frames) {
        if !send_frame(ctx, conn, key, frame) {
            return None;
        }
    }
    Some(pending)
}
