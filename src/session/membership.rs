//! Room membership of this shard's connections: entering a room (the shared room table, presence,
//! the shard's local index) and leaving it, including every room of a connection that goes away.
//!
//! Only bookkeeping: the frames a join answers with (`joined`, a resume catch-up) are the WebSocket
//! session's (`super::ws_session::join`).

use std::sync::Arc;

use super::ctx::ShardCtx;
use super::local::LocalMember;
use super::state::{Membership, Phase, WsState};
use crate::render::Variant;
use crate::room::directory::Joined;
use crate::room::sequencer::MemberList;

/// Names listed in a `joined` event (the count is always exact).
pub(crate) const MAX_MEMBER_NAMES: usize = 100;

/// What entering a room gave a connection.
pub(crate) struct Entered {
    /// The room table's answer (room, last id, this node's members).
    pub(crate) joined: Joined,
    /// Cluster mode with the cluster view up: the members across the cluster (names, count), for
    /// JSON members only.
    pub(crate) cluster_members: Option<MemberList>,
}

/// Adds connection `key` (receiving `variant`, named `user`) to room `room` in the room table
/// (announcing the user's presence if this is their first connection there) and to the shard's
/// local index. `held`: live frames for it are held back while it catches up (`super::catchup`).
pub(crate) fn enter(
    ctx: &mut ShardCtx,
    key: usize,
    variant: Variant,
    user: &Arc<str>,
    room: &str,
    held: impl FnOnce(u64) -> bool,
) -> Entered {
    let (joined, cluster_members) = ctx.hub.join(room, ctx.shard, variant, user, MAX_MEMBER_NAMES);
    let held = held(joined.last_id).then(Box::default);
    ctx.local.add(joined.room.id, LocalMember { key, min_pos: joined.pos, variant, held });
    ctx.metrics.room_members.add(1);
    Entered { joined, cluster_members }
}

/// Removes connection `key` from one room (announcing the user's departure if this was their last
/// connection there).
pub(crate) fn leave(ctx: &mut ShardCtx, key: usize, variant: Variant, user: &Arc<str>, membership: Membership) {
    let room = membership.room;
    ctx.hub.leave(&room, ctx.shard, variant, user);
    ctx.local.remove(room.id, key);
    ctx.metrics.room_members.add(-1);
}

/// Leaves every room of a session that is going away.
pub(crate) fn leave_all(ctx: &mut ShardCtx, key: usize, ws: WsState) {
    let variant = ws.variant();
    for membership in ws.rooms {
        leave(ctx, key, variant, &ws.user, membership);
    }
}

/// Releases what a connection's old phase held in shared state (its room memberships, its entry in
/// the server API's registry of connections).
pub(crate) fn release(ctx: &mut ShardCtx, key: usize, phase: Phase) {
    if let Phase::Ws(ws) = phase {
        ctx.api.registry.remove(&ws.user, ctx.shard, key);
        leave_all(ctx, key, *ws);
    }
}
