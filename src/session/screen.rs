//! The one moderation check of the message paths (`crate::moderation`): a text-format frame, a JSON
//! `message` or `dm`, an `edit`, and the server API's publish routes call [`screen`] with the
//! content they are about to publish, on the shard thread, before the room's lock. It counts the
//! decision (`roomcast_moderation_total`), hands it to the webhooks (`content_blocked`,
//! `content_masked`, `repeated_content`: who, where, what was done and why, never the content;
//! SECURITY.md) and turns a refusal into its error.

use std::borrow::Cow;
use std::sync::Arc;

use super::ctx::ShardCtx;
use super::state::{ANONYMOUS, is_anonymous};
use crate::metrics::Moderated;
use crate::moderation::{Author, Kind, Verdict};
use crate::room::sink::ModerationDecision;
use crate::types::{ClientError, ErrorCode};

/// The content to publish for `content` from `author` in `room`: as it is, or masked.
///
/// # Errors
/// `content_blocked` (a blocklist match with `--blocklist-action reject`) and `repeated_content`
/// (more than `--repeat-limit` identical messages within `--repeat-window`, for [`Kind::Message`]).
pub(crate) fn screen<'a>(
    ctx: &ShardCtx,
    author: Author<'_>,
    room: &str,
    content: &'a str,
    kind: Kind,
) -> Result<Cow<'a, str>, ClientError> {
    let report = |kind: &'static str, action: &str, reason: &str| {
        ctx.hub.moderated(|| {
            let user = match author {
                Author::User(user) => Arc::from(user),
                Author::Connection(_) => Arc::clone(&ANONYMOUS),
            };
            let fields = vec![("action", action.into()), ("reason", reason.into())];
            ModerationDecision::new(kind, Some(Arc::from(room)), user, fields)
        });
    };
    match ctx.moderation.screen(author, content, kind) {
        Verdict::Pass => Ok(Cow::Borrowed(content)),
        Verdict::Masked(masked) => {
            ctx.metrics.moderated(Moderated::Masked);
            report("content_masked", "masked", "blocklist");
            Ok(Cow::Owned(masked))
        }
        Verdict::Blocked => {
            ctx.metrics.moderated(Moderated::Blocked);
            report("content_blocked", "rejected", "blocklist");
            Err(ClientError::new(
                ErrorCode::ContentBlocked,
                "the content contains a word this server blocks; it was not published",
            ))
        }
        Verdict::Repeated => {
            ctx.metrics.moderated(Moderated::Repeated);
            report("repeated_content", "rejected", "repeat");
            let (limit, window) = (ctx.cfg.repeat_limit, ctx.cfg.repeat_window_secs);
            Err(ClientError::new(
                ErrorCode::RepeatedContent,
                format!("the same content was sent {limit} times within {window} s already; it was not published"),
            ))
        }
    }
}

/// Whose messages connection `serial` of this shard sends, under the name `user`: the user, or the
/// connection itself when it has no name of its own (`anonymous`).
pub(crate) fn author<'a>(ctx: &ShardCtx, user: &'a Arc<str>, serial: u64) -> Author<'a> {
    if is_anonymous(user) {
        // Serials are per shard: the shard's index in the top byte makes the number the server's.
        Author::Connection((u64::try_from(ctx.shard).unwrap_or(0) << 56) ^ serial)
    } else {
        Author::User(user)
    }
}
