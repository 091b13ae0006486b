//! Read markers: a user's "read up to here" per room, shared by all of that user's connections.
//!
//! A `read` is an event of the room's log (`Event::Read`, published like a message, so it is stored
//! through the write-behind queue in the same batches and takes the ordered path in cluster mode),
//! delivered only to the connections of the same user in the room (`super::deliver`). The store
//! keeps the highest marker per user and room, as state rather than a log row (not replayed)
//! (`read_markers`).
//!
//! `joined` carries the user's read state (`read_id`, and `unread` above a marker). While no marker
//! may be stored at all (`Store::may_hold_read_markers`: no `read` ever reached this database) it
//! says `read_id: 0` at once; otherwise `joined` waits for the store (the reader pool, never the
//! event loop): the membership is entered at once, its live frames held back (as for a resume,
//! `super::local::Held`), and `joined`, then a resume's catch-up or the held frames, follow the
//! answer ([`on_state`]). So nothing published after the join is missed and `joined` stays first.
use std::sync::Arc;

use super::ctx::ShardCtx;
use super::state::{Conn, PendingJoined, Phase};
use crate::bus::ShardMsg;
use crate::protocol::json;
use crate::protocol::names;
use crate::room::hub::RoomRef;
use crate::types::{ClientError, ConnRef, ErrorCode, Event, Origin, Read};
use crate::ws::codec;

/// `read`: the sender has read `room` up to message `id`. An id not above what this connection
/// already sent or was told is ignored (markers only go up).
///
/// # Errors
/// `invalid_room`, `not_joined`, and `invalid_parameter` for an id beyond the room's last id.
pub(crate) fn on_read(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room: &str, id: u64) -> Result<(), ClientError> {
    names::validate_room(room)?;
    let serial = conn.serial;
    let Phase::Ws(ws) = &mut conn.phase else { return Ok(()) };
    let user = Arc::clone(&ws.user);
    let Some(membership) = ws.rooms.iter_mut().find(|m| *m.room.name == *room) else {
        return Err(ClientError::new(ErrorCode::NotJoined, format!("join room {room:?} before marking it read")));
    };
    let last_id = membership.room.state.lock().last_id;
    if id > last_id {
        return Err(ClientError::new(
            ErrorCode::InvalidParameter,
            format!("id {id} is beyond the last message of room {room:?} ({last_id})"),
        ));
    }
    if id <= membership.read_upto {
        return Ok(());
    }
    membership.read_upto = id;
    let reply_to = Some(ConnRef { shard: ctx.shard, key, serial });
    let event = Event::Read(Read { user, upto: id });
    ctx.hub.publish(RoomRef::Joined(&membership.room), event, Origin::STORED, reply_to).map(|_| ())
}

/// Whether `joined` can say `user`'s read state: with history on, and for a named user (anonymous
/// connections share one name, so a marker would be everyone's).
pub(crate) fn has_read_state(ctx: &ShardCtx, user: &Arc<str>) -> bool {
    ctx.store.is_some() && !super::state::is_anonymous(user)
}

/// Whether any read marker may be stored (else `joined` says `read_id: 0` without asking).
pub(crate) fn may_have_marker(ctx: &ShardCtx) -> bool {
    ctx.store.as_ref().is_some_and(|s| s.may_hold_read_markers())
}

/// Asks the store for the user's marker in `room` and the messages above it, once everything
/// enqueued so far is committed; the answer comes back as `ShardMsg::ReadState` ([`on_state`]).
pub(crate) fn ask(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room: Arc<str>) {
    let Phase::Ws(ws) = &conn.phase else { return };
    let to = ConnRef { shard: ctx.shard, key, serial: conn.serial };
    let Some(store) = ctx.store.as_ref() else {
        // Only asked with a store (`may_have_marker`); without one there is no read state.
        return finish_join(ctx, conn, key, &room, None);
    };
    let inbox = Arc::clone(&ctx.inbox);
    let reply_room = Arc::clone(&room);
    store.read_state(
        room,
        Arc::clone(&ws.user),
        store.enqueued_seq(),
        Box::new(move |result| inbox.send(ShardMsg::ReadState { conn: to, room: reply_room, result })),
    );
}

/// The read state asked for by a join arrived: `joined` with it (without it when the store failed,
/// logged), then the resume's catch-up or the live frames held meanwhile. Ignored when the
/// connection left the room since (a later join of the same room takes the first answer: the
/// marker can only have gone up meanwhile, and a `read` published after the join is among the
/// held frames).
pub(crate) fn on_state(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    room: &str,
    result: Result<(u64, u64), crate::store::StoreError>,
) {
    let read = match result {
        Ok((read_id, unread)) => Some(json::ReadState { read_id, unread: (read_id > 0).then_some(unread) }),
        Err(err) => {
            tracing::warn!(key, room, %err, "read marker not available for a join: joined without it");
            None
        }
    };
    finish_join(ctx, conn, key, room, read);
}

/// Sends the `joined` that waited for `read`, then lets the room's frames flow.
fn finish_join(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room: &str, read: Option<json::ReadState>) {
    let Phase::Ws(ws) = &mut conn.phase else { return };
    let Some(membership) = ws.rooms.iter_mut().find(|m| *m.room.name == *room) else { return };
    let Some(pending) = membership.pending_joined.take() else { return };
    if let Some(state) = read {
        membership.read_upto = membership.read_upto.max(state.read_id);
    }
    let (room_id, resumes) = (membership.room.id, membership.catch_up.is_some());
    send_joined(ctx, conn, key, room, &pending, read);
    if resumes {
        super::catchup::start(ctx, conn, key, room_id);
    } else {
        super::catchup::end_hold(ctx, conn, key, room_id, pending.last_id);
    }
}

/// Queues `joined` for `room` (ahead of anything else the connection is to receive).
pub(crate) fn send_joined(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    room: &str,
    joined: &PendingJoined,
    read: Option<json::ReadState>,
) {
    let frame = json::joined(room, &joined.members, joined.member_count, joined.last_id, joined.reset, read);
    conn.send_unbounded(codec::encode_frame(codec::TEXT, &frame));
    ctx.schedule.flush(key);
}
