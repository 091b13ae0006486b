//! Paced history: resume catch-up and `history` replies, sent as fast as the client reads them.
//!
//! The output bound (`--max-outbuf`) is for clients that stop reading; a page of history the server
//! chose to queue must not trip it. So history reads of a WebSocket connection are *paced*:
//!
//! - One read at a time per connection ([`PacedReads`]): a resume page or a `history` command is
//!   submitted to the reader pool only when no other is in flight and the output queue has drained
//!   below the low-water mark ([`low_water`], a quarter of the bound). Otherwise it waits, and the
//!   shard calls [`on_drained`] after the flush that brings the queue below the mark.
//! - The reply is queued as *paced* frames (`OutBuf::push_paced`): whatever the bound, and not counted
//!   when the bound judges later frames. A resume page holds what the connection reserved of the
//!   server-wide catch-up budget before asking for it (`super::catchup_budget`: at most
//!   `--max-outbuf`, less in a crowd, and all pages together within `--catchup-budget`); a
//!   connection without budget waits for it (the sweep asks again), never skipping a page. So a
//!   connection holds at most the mark, one page or one `history` reply (200 messages), and the
//!   bound itself.
//! - At most `max(64, --max-rooms-per-conn)` `history` commands wait per connection; more are answered
//!   `history_unavailable` at once.
//!
//! # Resume
//! A member joining with `since` below the room's last id (`upto`) gets a [`CatchUp`]: pages of ids
//! `> next_after` up to `upto` from the store, oldest first. Live frames for the room meanwhile (ids
//! above `upto`, the shard skips the others) are held (`super::local::Held`) and sent after the last page:
//! no gap, no duplicate, in id order. Held frames are bounded by half the output bound; past it they
//! are dropped and the catch-up is extended instead: when history reaches `upto`, `upto` becomes the
//! room's last id *now* (read under the room's lock), the member's `min_pos` moves to the room's
//! position at that instant (live frames up to it, still in the inbox, are skipped) and paging continues. Every live message is also in the
//! store, and each page waits for the commit watermark of everything enqueued before it was asked
//! (read-your-writes, see `store`), so nothing is lost. Each round only covers what was published
//! while the previous one was read, so a client that reads faster than the room produces catches up;
//! one that does not stays bounded in memory. Id-less events (presence) dropped with an overflow are
//! not replayed.

use std::sync::Arc;

use super::catchup_budget::Share;
use super::ctx::ShardCtx;
use super::history;
use super::send::{close_session, send_error, send_frame, text_frame};
use super::state::{CatchUp, Conn, PacedRead, PacedReads, WsState};
use crate::bus::HistoryPurpose;
use crate::config::Config;
use crate::metrics::CloseReason;
use crate::protocol::json;
use crate::render;
use crate::store::{HistoryPage, HistoryQuery, StoreError};
use crate::types::{ClientError, ErrorCode, Event};
use crate::ws::close;

/// Most messages per catch-up page (fewer when messages are large, see [`CatchUp::frame_bytes`]).
pub(crate) const RESUME_PAGE: usize = 500;
/// `history` commands that may wait per connection (at least `--max-rooms-per-conn`).
const MAX_WAITING_HISTORY: usize = 64;

/// Queue size below which the next paced read is sent.
pub(crate) fn low_water(cfg: &Config) -> usize {
    cfg.max_outbuf / 4
}

/// A new catch-up state for a member resuming after `since` up to `upto`.
pub(crate) fn catch_up(since: u64, upto: u64) -> CatchUp {
    CatchUp { next_after: since, upto, frame_bytes: 0 }
}

/// Starts paging history for the membership of `room_id` (which has a [`CatchUp`]).
pub(crate) fn start(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room_id: u64) {
    if let Some(ws) = conn.phase.ws_mut() {
        queue_resume(&mut ws.paced, room_id);
    }
    pump(ctx, conn, key);
}

/// Answers a `history` command at the client's pace.
///
/// # Errors
/// `history_unavailable` without persistence, or when too many `history` commands already wait.
pub(crate) fn request_history(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    query: HistoryQuery,
    room: Arc<str>,
) -> Result<(), ClientError> {
    if ctx.store.is_none() {
        return Err(ClientError::new(ErrorCode::HistoryUnavailable, "history is disabled on this server"));
    }
    let cap = MAX_WAITING_HISTORY.max(ctx.cfg.max_rooms_per_conn);
    let Some(ws) = conn.phase.ws_mut() else { return Ok(()) };
    let waiting = ws.paced.waiting.iter().filter(|r| matches!(r, PacedRead::History { .. })).count();
    if waiting >= cap {
        return Err(ClientError::new(
            ErrorCode::HistoryUnavailable,
            format!("{waiting} history requests are already waiting on this connection; read their replies first"),
        ));
    }
    ws.paced.waiting.push_back(PacedRead::History { query, room });
    pump(ctx, conn, key);
    Ok(())
}

/// The shard's sweep: a resume page that found no catch-up budget asks again.
pub(crate) fn on_sweep(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    if let Some(ws) = conn.phase.ws_mut()
        && std::mem::take(&mut ws.paced.budget_wanted)
    {
        pump(ctx, conn, key);
    }
}

/// Some of the connection's output was written: what was written of its catch-up pages goes back to
/// the budget, and a share no longer needed is given up.
pub(crate) fn on_written(conn: &mut Conn) {
    let (written, _) = conn.out.positions();
    let Some(ws) = conn.phase.ws_mut() else { return };
    if let Some(share) = &mut ws.paced.share {
        share.written(written);
        drop_share_if_done(ws);
    }
}

/// Gives the connection's share of the catch-up budget up once nothing of it is used and no
/// membership catches up any more.
fn drop_share_if_done(ws: &mut WsState) {
    let done = ws.paced.share.as_ref().is_some_and(Share::is_idle)
        && ws.rooms.iter().all(|m| m.catch_up.is_none())
        && !ws.paced.waiting.iter().any(|r| matches!(r, PacedRead::Resume { .. }));
    if done {
        ws.paced.share = None;
    }
}

/// The output queue drained below the low-water mark: send the next paced read.
pub(crate) fn on_drained(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    if let Some(ws) = conn.phase.ws_mut() {
        ws.paced.drain_wanted = false;
    }
    pump(ctx, conn, key);
}

/// A catch-up page arrived for the membership of `room_id`, asked for ids after `after`.
pub(crate) fn on_resume_page(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    room_id: u64,
    after: u64,
    result: Result<HistoryPage, StoreError>,
) {
    let Some(ws) = conn.phase.ws_mut() else { return };
    ws.paced.in_flight = false;
    // A reply for a membership left meanwhile (or a page no longer wanted) is dropped.
    let wanted = ws.membership_mut(room_id).and_then(|m| m.catch_up.as_ref()).is_some_and(|cu| cu.next_after == after);
    if !wanted || result.is_err() {
        // Its reservation goes back (a close drops the share anyway).
        if let Some(share) = &mut ws.paced.share {
            share.cancel();
        }
    }
    if wanted {
        match result {
            Ok(page) => send_page(ctx, conn, key, room_id, &page),
            Err(err) => {
                // Never leave a gap: going live now would skip what this page held. The client has
                // everything up to the last page sent; it resumes again from there (`since`), as the
                // web client and roomcast-load do after a 1013, with backoff. The held live frames
                // are dropped with the membership.
                tracing::debug!(key, room_id, after, %err, "resume page unavailable: closing with 1013");
                let msg = format!("missed messages could not be read now ({err}); reconnect with since");
                send_error(ctx, conn, key, &ClientError::new(ErrorCode::HistoryUnavailable, msg));
                let reason = "history busy: resume again later";
                close_session(ctx, conn, key, close::TRY_AGAIN_LATER, reason, false, CloseReason::OverLimit);
                return;
            }
        }
    }
    pump(ctx, conn, key);
}

/// A `history` command's reply arrived.
pub(crate) fn on_history_command(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    room: &str,
    result: Result<HistoryPage, StoreError>,
) {
    let Some(ws) = conn.phase.ws_mut() else { return };
    ws.paced.in_flight = false;
    match result {
        Ok(page) => {
            conn.send_paced(text_frame(&json::history_event(room, &page.messages, page.has_more)));
            ctx.schedule.flush(key);
        }
        Err(err) => {
            send_error(ctx, conn, key, &ClientError::new(ErrorCode::HistoryUnavailable, format!("{err}")));
        }
    }
    pump(ctx, conn, key);
}

/// Queues the page's messages up to `upto` (as many bytes of them as the connection reserved of the
/// catch-up budget, at least one message), then asks for the next page or finishes.
fn send_page(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room_id: u64, page: &HistoryPage) {
    let Some(ws) = conn.phase.ws_mut() else { return };
    let (format, user) = (ws.format, Arc::clone(&ws.user));
    let budget = ws.paced.share.as_ref().map_or(0, Share::reserved);
    let Some(upto) = ws.membership_mut(room_id).and_then(|m| m.catch_up.as_ref()).map(|cu| cu.upto) else { return };
    let (mut sent, mut bytes, mut last) = (0usize, 0usize, None);
    let mut done = !page.has_more;
    for rec in &page.messages {
        if rec.id > upto {
            done = true;
            break;
        }
        if let Event::Read(read) = &rec.event
            && read.user != user
        {
            // Another user's read marker: covered by this page, not sent.
            last = Some(rec.id);
            continue;
        }
        let Some(frame) = render::stored_frame(rec, format, &mut ctx.encode_buf) else {
            last = Some(rec.id);
            continue;
        };
        if sent > 0 && bytes + frame.len() > budget {
            // The reservation is used up: the rest is the next page's.
            done = false;
            break;
        }
        last = Some(rec.id);
        bytes += frame.len();
        sent += 1;
        conn.send_paced(frame);
    }
    if sent > 0 {
        ctx.schedule.flush(key);
    }
    let (_, end) = conn.out.positions();
    let Some(ws) = conn.phase.ws_mut() else { return };
    if let Some(share) = &mut ws.paced.share {
        share.queued_page(bytes, end);
    }
    let Some(cu) = ws.membership_mut(room_id).and_then(|m| m.catch_up.as_mut()) else { return };
    if let Some(last) = last {
        cu.next_after = last;
        if let Some(per_message) = bytes.checked_div(sent) {
            cu.frame_bytes = per_message.max(1);
        }
        done |= last >= upto;
    }
    if done {
        finish(ctx, conn, key, room_id);
    } else {
        queue_resume(&mut ws.paced, room_id);
    }
}

/// History reached `upto`: extend the catch-up if live frames overflowed meanwhile, else release
/// the held frames and go live.
fn finish(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room_id: u64) {
    let Some(ws) = conn.phase.ws_mut() else { return };
    let Some(membership) = ws.membership_mut(room_id) else { return };
    let room = Arc::clone(&membership.room);
    let Some(cu) = membership.catch_up.as_mut() else { return };
    let overflowed = ctx.local.held_mut(room_id, key).is_some_and(|held| std::mem::take(&mut held.overflowed));
    if overflowed {
        // Under the room's lock: every message up to `last_id` is in the store queue (it is enqueued
        // under the same lock), and every later event (position above `pos`) reaches this shard's
        // inbox after now.
        let (last_id, pos) = {
            let state = room.state.lock();
            (state.last_id, state.pos)
        };
        if last_id > cu.upto {
            cu.next_after = cu.upto;
            cu.upto = last_id;
            ctx.local.set_min_pos(room_id, key, pos);
            queue_resume(&mut ws.paced, room_id);
            return;
        }
    }
    release(ctx, conn, key, room_id);
}

/// Ends the catch-up of `room_id`: live frames flow again, the held ones first.
fn release(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room_id: u64) {
    if let Some(ws) = conn.phase.ws_mut() {
        if let Some(membership) = ws.membership_mut(room_id) {
            membership.catch_up = None;
        }
        drop_share_if_done(ws);
    }
    for frame in ctx.local.release_held(room_id, key) {
        if !send_frame(ctx, conn, key, frame) {
            return;
        }
    }
}

/// Ends a hold that was not a resume (`joined` waited for the store, `super::reads`): the held
/// frames are sent; if they overflowed meanwhile, the member catches up from history instead,
/// from `last_id` (the id its `joined` announced) as a resume would.
pub(crate) fn end_hold(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, room_id: u64, last_id: u64) {
    let overflowed = ctx.local.held_mut(room_id, key).is_some_and(|held| held.overflowed);
    if !overflowed {
        return release(ctx, conn, key, room_id);
    }
    let Some(membership) = conn.phase.ws_mut().and_then(|ws| ws.membership_mut(room_id)) else { return };
    membership.catch_up = Some(catch_up(last_id, last_id));
    finish(ctx, conn, key, room_id);
    pump(ctx, conn, key);
}

/// Asks for the next catch-up page of `room_id` unless it is already waiting.
fn queue_resume(paced: &mut PacedReads, room_id: u64) {
    if !paced.waiting.iter().any(|r| matches!(r, PacedRead::Resume { room_id: id } if *id == room_id)) {
        paced.waiting.push_back(PacedRead::Resume { room_id });
    }
}

/// Submits the next waiting read if none is in flight and the output queue is below the mark;
/// otherwise asks the shard to call [`on_drained`] once it is.
fn pump(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    let mark = low_water(&ctx.cfg);
    loop {
        let below = conn.out.queued_bytes() < mark;
        let Some(ws) = conn.phase.ws_mut() else { return };
        if ws.paced.in_flight || ws.paced.waiting.is_empty() {
            return;
        }
        if !below {
            ws.paced.drain_wanted = true;
            return;
        }
        let Some(read) = ws.paced.waiting.pop_front() else { return };
        let (query, purpose) = match read {
            PacedRead::Resume { room_id } => {
                let Some(membership) = ws.membership_mut(room_id) else { continue };
                let Some(cu) = membership.catch_up.as_ref() else { continue };
                let (room, after, frame_bytes) = (membership.room.name.to_string(), cu.next_after, cu.frame_bytes);
                let share = ws.paced.share.get_or_insert_with(|| ctx.catchup.join());
                let Some(grant) = share.reserve() else {
                    // No budget now: wait for it (the sweep asks again); nothing is skipped.
                    ws.paced.waiting.push_front(PacedRead::Resume { room_id });
                    ws.paced.budget_wanted = true;
                    return;
                };
                // As many messages as the reservation holds, by the sizes seen so far (before the
                // first page: a largest text frame each).
                let per_message = if frame_bytes == 0 { ctx.cfg.max_frame_bytes() } else { frame_bytes };
                let limit = (grant / per_message).clamp(1, RESUME_PAGE);
                let query = HistoryQuery {
                    room,
                    before_id: None,
                    after_id: Some(after),
                    limit,
                    visible_seq: 0,
                    whole_log: true,
                };
                (query, HistoryPurpose::Resume { room_id, after })
            }
            PacedRead::History { query, room } => (query, HistoryPurpose::Command { room }),
        };
        if history::submit(ctx, key, conn.serial, query, purpose.clone()) {
            if let Some(ws) = conn.phase.ws_mut() {
                ws.paced.in_flight = true;
            }
            return;
        }
        if let Some(share) = conn.phase.ws_mut().and_then(|ws| ws.paced.share.as_mut()) {
            share.cancel();
        }
        // Only without persistence, which `join` and `request_history` already check.
        match purpose {
            HistoryPurpose::Resume { room_id, .. } => release(ctx, conn, key, room_id),
            _ => {
                let err = ClientError::new(ErrorCode::HistoryUnavailable, "history is disabled on this server");
                send_error(ctx, conn, key, &err);
            }
        }
    }
}
