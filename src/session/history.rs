//! History requests, one way for REST (`GET /rooms/{room}/messages`) and WebSocket (`history`
//! command): the page limits, the validation of a request (with the same error for the same
//! mistake on both) and its submission to the store's reader pool, whose reply comes back through
//! the shard's inbox (`bus::ShardMsg::History`).

use std::sync::Arc;
use std::time::Instant;

use super::ctx::ShardCtx;
use crate::bus::{HistoryPurpose, HistoryReply, ShardMsg};
use crate::metrics::HistoryKind;
use crate::protocol::names;
use crate::store::HistoryQuery;
use crate::types::{ClientError, ConnRef, ErrorCode};

/// Default page size of a history request.
pub(crate) const DEFAULT_PAGE: usize = 50;
/// Largest page of a history request (larger `limit`s are clamped); announced in `welcome`.
pub(crate) const MAX_PAGE: usize = 200;

/// A history request as the client wrote it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// Messages before this id (newest first up to it).
    pub(crate) before_id: Option<u64>,
    /// Messages after this id (oldest first from it).
    pub(crate) after_id: Option<u64>,
    /// Page size; `None` is [`DEFAULT_PAGE`].
    pub(crate) limit: Option<u64>,
}

/// Validates a request for `room`'s history into a store query.
///
/// # Errors
/// `invalid_room` for a bad room name; `invalid_parameter` for `limit` 0 or `before_id` combined
/// with `after_id`.
pub(crate) fn query(room: &str, req: PageRequest) -> Result<HistoryQuery, ClientError> {
    names::validate_room(room)?;
    if req.before_id.is_some() && req.after_id.is_some() {
        return Err(ClientError::new(ErrorCode::InvalidParameter, "before_id and after_id cannot be combined"));
    }
    let limit = match req.limit {
        None => DEFAULT_PAGE,
        Some(0) => return Err(ClientError::new(ErrorCode::InvalidParameter, "limit must be at least 1")),
        Some(n) => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
    };
    Ok(HistoryQuery {
        room: room.to_string(),
        before_id: req.before_id,
        after_id: req.after_id,
        limit,
        visible_seq: 0,
        whole_log: false,
    })
}

/// Submits `query` to the reader pool; the reply comes back to this shard for connection `key`.
/// Returns `false` without persistence.
pub(crate) fn submit(
    ctx: &mut ShardCtx,
    key: usize,
    serial: u64,
    mut query: HistoryQuery,
    purpose: HistoryPurpose,
) -> bool {
    let Some(store) = ctx.store.as_ref() else { return false };
    // Read-your-writes: the page must include everything enqueued so far (see `store`).
    query.visible_seq = store.enqueued_seq();
    let inbox = Arc::clone(&ctx.inbox);
    let to = ConnRef { shard: ctx.shard, key, serial };
    ctx.metrics.history_request(match purpose {
        HistoryPurpose::Rest { .. } => HistoryKind::Rest,
        HistoryPurpose::Command { .. } => HistoryKind::Command,
        HistoryPurpose::Resume { .. } => HistoryKind::Resume,
    });
    let submitted_at = Instant::now();
    store.query(
        query,
        Box::new(move |result| {
            let reply = HistoryReply { conn: to, purpose, result, submitted_at };
            inbox.send(ShardMsg::History(reply));
        }),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_requests_are_validated_and_clamped() {
        let q = query("r", PageRequest::default()).expect("defaults");
        assert_eq!((q.before_id, q.after_id, q.limit), (None, None, DEFAULT_PAGE));
        let q = query("r", PageRequest { limit: Some(1000), ..Default::default() }).expect("clamped");
        assert_eq!(q.limit, MAX_PAGE);
        let q = query("r", PageRequest { limit: Some(u64::MAX), ..Default::default() }).expect("clamped");
        assert_eq!(q.limit, MAX_PAGE);
        let code = |r| query("r", r).err().map(|e| e.code);
        assert_eq!(code(PageRequest { limit: Some(0), ..Default::default() }), Some(ErrorCode::InvalidParameter));
        let both = PageRequest { before_id: Some(1), after_id: Some(2), limit: None };
        assert_eq!(code(both), Some(ErrorCode::InvalidParameter));
        assert_eq!(query("", PageRequest::default()).err().map(|e| e.code), Some(ErrorCode::InvalidRoom));
    }
}
