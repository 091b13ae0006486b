//! `GET /api/feed`: the change feed as Server-Sent Events on an HTTP connection (docs/API.md). The
//! store's feed thread (`store::feed`) reads the committed log by position and renders each page
//! into SSE bytes on its own thread; this file owns the connection's side.
//!
//! The hand-off is credit-based: one page in flight per consumer, and the next one is asked for only
//! once the connection's output has drained below the low-water mark (`--max-outbuf` / 4), so a
//! consumer's queued output is at most that mark plus one page (256 events) whatever it does. A
//! consumer whose socket takes no byte for `--outbuf-grace` while output is queued has stopped
//! reading: it is closed (its unsent output dropped, counted `slow`) and resumes from the last id
//! it got. The stream has no handshake deadline; an idle one gets `: keepalive` every 15 s.
//! At most [`MAX_CONSUMERS`] stream at once (503 beyond).

use std::io::Write as _;
use std::time::Instant;

use bytes::Bytes;

use super::ctx::ShardCtx;
use super::state::{Conn, FeedStream, Phase};
use crate::bus::FeedChunk;
use crate::http::percent::query_pairs;
use crate::http::request::Request;
use crate::http::response::{self, Response};
use crate::metrics::CloseReason;
use crate::protocol::json;
use crate::store::{FeedItem, FeedPage, StoreError};
use crate::types::{ClientError, ConnRef, ErrorCode, Event};

/// Consumers streaming at once, server-wide; one more is answered 503.
pub(crate) const MAX_CONSUMERS: u64 = 16;

/// Where a consumer starts: `Last-Event-ID` (a resuming `EventSource`) or else `after_id`; 0: from
/// the first stored event.
fn start_position(req: &Request) -> Result<u64, ClientError> {
    let bad = |what: &str, value: &str| {
        ClientError::new(ErrorCode::InvalidParameter, format!("{what} must be a non-negative integer, not {value:?}"))
    };
    if let Some(value) = req.last_event_id.as_deref() {
        return value.parse::<u64>().map_err(|_| bad("Last-Event-ID", value));
    }
    for (k, v) in query_pairs(&req.query) {
        if k == "after_id" {
            let value = v.map_err(|err| ClientError::new(ErrorCode::InvalidParameter, format!("after_id: {err}")))?;
            return value.parse::<u64>().map_err(|_| bad("after_id", &value));
        }
    }
    Ok(0)
}

/// Starts streaming on `conn` (an admitted `GET /api/feed`), or returns the refusal to answer.
///
/// # Errors
/// 400 for a bad cursor, 503 without persistence or with [`MAX_CONSUMERS`] streaming.
pub(crate) fn start(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, req: &Request) -> Result<(), Response> {
    let after = start_position(req).map_err(|err| Response::client_error(&err))?;
    let Some(store) = ctx.store.as_ref() else {
        return Err(Response::error(503, "history_unavailable", "this server keeps no history (--no-persist)"));
    };
    let Some(slot) = store.feed_slot(MAX_CONSUMERS) else {
        let message = format!("{MAX_CONSUMERS} change-feed consumers stream already; retry later");
        return Err(Response::error(503, "unavailable", &message).with_header("Retry-After: 5".into()));
    };
    let Phase::Http(state) = &mut conn.phase else { return Ok(()) };
    let (written, _) = conn.out.positions();
    state.awaiting_reply = true;
    state.feed =
        Some(Box::new(FeedStream { cursor: after, in_flight: false, written, since: Instant::now(), _slot: slot }));
    conn.deadline = None;
    conn.send_unbounded(response::event_stream_head());
    ctx.schedule.flush(key);
    request_next(ctx, conn, key);
    Ok(())
}

fn stream(conn: &mut Conn) -> Option<&mut FeedStream> {
    match &mut conn.phase {
        Phase::Http(state) => state.feed.as_deref_mut(),
        _ => None,
    }
}

/// Asks the feed thread for the page after the cursor, unless one is in flight or the output has
/// not drained below the low-water mark.
fn request_next(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    let low_water = ctx.cfg.max_outbuf / 4;
    let queued = conn.out.queued_bytes();
    let serial = conn.serial;
    let Some(feed) = stream(conn) else { return };
    if feed.in_flight || queued >= low_water {
        return;
    }
    let Some(store) = ctx.store.as_ref() else { return };
    feed.in_flight = true;
    let to = ConnRef { shard: ctx.shard, key, serial };
    let answerer = ctx.api.answerer();
    store.feed(feed.cursor, Box::new(move |result| answerer.feed(to, result.map(|page| render(&page)))));
}

/// A page as Server-Sent Events: `id:` the position, `event:` the type, `data:` the event's JSON
/// (the WebSocket protocol's, with `room`); an empty page is a keepalive comment.
pub(crate) fn render(page: &FeedPage) -> FeedChunk {
    if page.rows.is_empty() {
        return FeedChunk { bytes: Bytes::from_static(b": keepalive\n\n"), last_pos: None };
    }
    let mut out = Vec::with_capacity(page.rows.len() * 160);
    for (pos, item) in &page.rows {
        match item {
            FeedItem::Event(seq) => {
                let kind = match &seq.event {
                    Event::Message(_) => "message",
                    Event::Edit(_) => "edited",
                    Event::Delete(_) => "deleted",
                    // No log row: never in a page.
                    Event::Read(_) => "read",
                };
                let _ = write!(out, "id: {pos}\nevent: {kind}\ndata: ");
                json::write_event(&mut out, seq, None);
            }
            FeedItem::Moderation(body) => {
                let _ = write!(out, "id: {pos}\nevent: moderation\ndata: {body}");
            }
        }
        out.extend_from_slice(b"\n\n");
    }
    FeedChunk { bytes: Bytes::from(out), last_pos: page.rows.last().map(|(pos, _)| *pos) }
}

/// A page came back: queued, and the next asked for if the output allows; an error ends the stream
/// (the consumer resumes with `Last-Event-ID`).
pub(crate) fn on_chunk(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, chunk: Result<FeedChunk, StoreError>) {
    let Some(feed) = stream(conn) else { return };
    feed.in_flight = false;
    match chunk {
        Ok(chunk) => {
            if let Some(last) = chunk.last_pos {
                feed.cursor = last;
            }
            conn.send_unbounded(chunk.bytes);
            ctx.schedule.flush(key);
            request_next(ctx, conn, key);
        }
        Err(err) => {
            tracing::warn!(shard = ctx.shard, key, error = %err, "change feed: ending a stream");
            end(ctx, conn, key, CloseReason::Error, false);
        }
    }
}

/// The reactor wrote some of the output: the next page once it drained below the mark.
pub(crate) fn on_flushed(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    request_next(ctx, conn, key);
}

/// The sweep's look at a stream: output queued and not a byte taken for `--outbuf-grace` closes it.
pub(crate) fn on_sweep(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, now: Instant) {
    let (written, _) = conn.out.positions();
    let empty = conn.out.is_empty();
    let grace = ctx.cfg.outbuf_grace();
    let Some(feed) = stream(conn) else { return };
    if empty || written != feed.written {
        feed.written = written;
        feed.since = now;
        return;
    }
    if now.saturating_duration_since(feed.since) >= grace {
        tracing::warn!(shard = ctx.shard, key, peer = %conn.peer, "change feed: consumer stopped reading, closing");
        if let Some(store) = ctx.store.as_ref() {
            store.feed_closed_slow();
        }
        end(ctx, conn, key, CloseReason::SlowConsumer, true);
    }
}

/// Ends the stream: closes the connection after what is queued (or dropping it).
fn end(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, why: CloseReason, drop_queued: bool) {
    conn.set_close_reason(why);
    if drop_queued {
        conn.out.drop_unstarted();
    }
    conn.close_after_flush(ctx.linger_deadline());
    conn.phase = Phase::Closing;
    ctx.schedule.flush(key);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::types::{Delete, Message, Revision, Sequenced};

    #[test]
    fn a_page_renders_as_server_sent_events_with_positions() {
        let room: Arc<str> = Arc::from("r");
        let msg =
            Event::Message(Message { user: "al".into(), content: "hi\nthere".into(), revision: Revision::Original });
        let del = Event::Delete(Delete { user: "al".into(), target: 11 });
        let page = FeedPage {
            rows: vec![
                (
                    7,
                    FeedItem::Event(Sequenced {
                        idempotency_key: None,
                        id: 11,
                        room: Arc::clone(&room),
                        at_ms: 0,
                        event: msg,
                    }),
                ),
                (8, FeedItem::Event(Sequenced { idempotency_key: None, id: 12, room, at_ms: 0, event: del })),
                (9, FeedItem::Moderation(r#"{"type":"user_banned","user":"al"}"#.into())),
            ],
        };
        let chunk = render(&page);
        let text = std::str::from_utf8(&chunk.bytes).expect("utf-8");
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 3, "{text}");
        assert!(events[0].starts_with("id: 7\nevent: message\ndata: {"), "{text}");
        assert!(events[0].contains(r#""room":"r""#) && events[0].contains(r#"hi\nthere"#), "one data line: {text}");
        assert!(events[1].starts_with("id: 8\nevent: deleted\ndata: {"), "{text}");
        assert_eq!(events[2], "id: 9\nevent: moderation\ndata: {\"type\":\"user_banned\",\"user\":\"al\"}", "{text}");
        assert_eq!(chunk.last_pos, Some(9));
        let idle = render(&FeedPage::default());
        assert_eq!((&idle.bytes[..], idle.last_pos), (&b": keepalive\n\n"[..], None));
    }
}
