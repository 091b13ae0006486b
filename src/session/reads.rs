//! Read markers: a user's "read up to here" per room, shared by all of that user's connections.
//!
//! A `read` is an event of the room's log (`Event::Read`, published like a message, so it is stored
//! through the write-behind queue in the same batches and takes the ordered path in cluster mode),
//! delivered only to the connections of the same user in the room (`super::deliver`). The store
//! keeps the highest marker per user and room, as state rather than a log row (not replayed)
//! (`read_markers`); after each join of a JSON connection the marker and the number of messages
//! above it are read from the store (the reader pool, never the event loop) and, if the user has a
//! marker there, sent as a `read` event with `unread` after `joined`.

use std::sync::Arc;

use super::ctx::ShardCtx;
use super::send::{send_frame, text_frame};
use super::state::{Conn, Phase};
use crate::bus::ShardMsg;
use crate::protocol::json;
use crate::protocol::names;
use crate::room::hub::RoomRef;
use crate::types::{ClientError, ConnRef, ErrorCode, Event, Origin, Read};

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

/// After a JSON connection joined `room`: asks the store for its user's marker there (none without
/// persistence: nothing is sent then).
pub(crate) fn after_join(ctx: &mut ShardCtx, conn: &Conn, key: usize, room: &Arc<str>) {
    let Some(store) = ctx.store.as_ref().filter(|s| s.may_hold_read_markers()) else { return };
    let Phase::Ws(ws) = &conn.phase else { return };
    let to = ConnRef { shard: ctx.shard, key, serial: conn.serial };
    let inbox = Arc::clone(&ctx.inbox);
    let reply_room = Arc::clone(room);
    store.read_state(
        Arc::clone(room),
        Arc::clone(&ws.user),
        store.enqueued_seq(),
        Box::new(move |result| inbox.send(ShardMsg::ReadState { conn: to, room: reply_room, result })),
    );
}

/// The marker read after a join arrived: `read` with `unread` to the connection if it is still in
/// the room and the user has a marker there (a user who never marked the room gets nothing). A
/// failed read is logged and not sent (the marker is a convenience; the next join asks
/// again).
pub(crate) fn on_state(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    room: &str,
    result: Result<(u64, u64), crate::store::StoreError>,
) {
    let Phase::Ws(ws) = &mut conn.phase else { return };
    let Some(membership) = ws.rooms.iter_mut().find(|m| *m.room.name == *room) else { return };
    match result {
        Ok((0, _)) => {}
        Ok((marker, unread)) => {
            membership.read_upto = membership.read_upto.max(marker);
            send_frame(ctx, conn, key, text_frame(&json::read_state(room, marker, unread)));
        }
        Err(err) => tracing::debug!(key, room, %err, "read marker not available after a join"),
    }
}
