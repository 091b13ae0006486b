//! Live delivery on a shard: one published event ([`Delivery`]) queued on every local member of its
//! room, as a clone of the shared `Bytes` handle of the member's variant (rendered once, by the
//! first shard that needs it; no copy, no encoding per member).
//!
//! The session's rules for a live frame: a member that joined after the event (its room position is
//! not above the member's `min_pos`) skips it; a member catching up holds it back
//! (`super::local::Held`, bounded by half the soft output bound); a member whose output queue is
//! past its hard bound is a slow consumer (`super::send::close_slow_consumer`). A `deleted` event
//! also removes its id from every member's own recent messages (`super::own`); no other event does
//! per-member work beyond the frame.

use slab::Slab;

use super::ctx::ShardCtx;
use super::send::{close_slow_consumer, out_bound};
use super::state::Conn;
use crate::bus::{Delivery, Payload};
use crate::render::Variant;
use crate::types::{Event, Transient};

/// Queues `delivery` on every local member of its room; returns the number of members looked at
/// (the shard's per-turn delivery budget counts them).
pub(crate) fn deliver(ctx: &mut ShardCtx, conns: &mut Slab<Conn>, delivery: &Delivery) -> usize {
    let Some(members) = ctx.local.members_mut(delivery.room_id) else { return 0 };
    let visited = members.len();
    let max_outbuf = ctx.cfg.max_outbuf;
    let bound = out_bound(&ctx.cfg);
    let mut slow = Vec::new();
    let mut delivered = 0u64;
    // Each variant's frame looked up (and rendered, by the first shard that needs it) once per
    // delivery, not per member.
    let mut frames: [Option<Option<&bytes::Bytes>>; Variant::COUNT] = [None; Variant::COUNT];
    // A typing notice is not sent back to the connection it came from; a read marker goes to the
    // connections of its user only.
    let sender = match &delivery.payload {
        Payload::Transient(_, Transient::Typing { from: Some(from), .. }) if from.shard == ctx.shard => Some(from.key),
        _ => None,
    };
    let reader = match &delivery.payload {
        Payload::Sequenced(seq, _) => match &seq.event {
            Event::Read(read) => Some(&read.user),
            Event::Message(_) | Event::Edit(_) | Event::Delete(_) => None,
        },
        Payload::Transient(..) => None,
    };
    // A delete: every member forgets the id from its own recent messages (`super::own`), so an edit
    // of it takes the lookup and is refused.
    let deleted = match &delivery.payload {
        Payload::Sequenced(seq, _) => match &seq.event {
            Event::Delete(delete) => Some(delete.target),
            Event::Message(_) | Event::Edit(_) | Event::Read(_) => None,
        },
        Payload::Transient(..) => None,
    };
    for member in members {
        if let Some(target) = deleted
            && let Some(ws) = conns.get_mut(member.key).and_then(|c| c.phase.ws_mut())
        {
            ws.own.forget(delivery.room_id, target);
        }
        if delivery.pos <= member.min_pos || sender == Some(member.key) {
            continue;
        }
        if let Some(user) = reader
            && conns.get(member.key).and_then(|c| c.phase.ws()).is_none_or(|ws| ws.user != *user)
        {
            continue;
        }
        let slot = &mut frames[member.variant.index()];
        let Some(frame) =
            *slot.get_or_insert_with(|| delivery.frame(member.variant, &mut ctx.encode_buf, &mut ctx.deflater))
        else {
            continue;
        };
        if let Some(held) = &mut member.held {
            // Live frames wait (bounded) while a resuming member catches up.
            if held.hold(frame, max_outbuf / 2) {
                delivered += 1;
            }
            continue;
        }
        let Some(conn) = conns.get_mut(member.key) else { continue };
        if conn.send(frame.clone(), bound).is_err() {
            slow.push(member.key);
            continue;
        }
        delivered += 1;
        ctx.schedule.flush(member.key);
    }
    ctx.count_deflate();
    if delivered > 0 {
        ctx.metrics.deliveries.add(delivered);
        ctx.metrics.fanout_latency.observe_duration(delivery.published_at.elapsed());
    }
    for key in slow {
        if let Some(conn) = conns.get_mut(key) {
            close_slow_consumer(ctx, conn, key);
        }
    }
    visited
}
