//! [`Sink`]: a consumer of a room's ordered log on a thread of its own (the store writer; the change
//! feed tails the committed store instead, `store::feed`), fed under the room's lock so that it sees
//! every sequenced event in the room's order. Beside it, the consumers of presence changes
//! ([`PresenceSink`]: webhooks) and of moderation decisions ([`ModerationSink`]: webhooks and the
//! change feed's log in the store), and the decision every one of those reads ([`ModerationDecision`]).
//!
//! The contract, the same for every sink: `offer_locked` is called with the room's lock held and
//! must not make a syscall, wake a thread or wait (a `crate::deferred` hand-off does all three
//! right); it returns whether its consumer must be woken, which the `Hub` does after the lock is
//! released. `is_congested` feeds the ingress pause. What a full queue means is the sink's own
//! policy, written on its impl.

use std::sync::Arc;

use crate::deferred::Wake;
use crate::store::{ModerationLog, ModerationRecord, StoreWriter};
use crate::types::Sequenced;

/// A consumer of every sequenced event, in each room's order.
pub(crate) trait Sink: Send + Sync {
    /// Takes `event` with the room's lock held (see the module doc).
    fn offer_locked(&self, event: &Arc<Sequenced>) -> Wake;
    /// Wakes the consumer (after an `offer_locked` that asked for it, without a lock held).
    fn wake(&self);
    /// Whether shards should stop reading client input until the consumer catches up.
    fn is_congested(&self) -> bool;
    /// Events it still takes once congested before it is full (the ingress pause's reserve).
    fn reserve(&self) -> usize;
}

/// The store: every sequenced event is persisted. Full queue: the publish waits for the writer
/// (`StoreWriter::enqueue_blocking`, bounded) rather than drop an accepted event — the one place a
/// room's lock is held across a wait, reached only if every shard ignored the ingress pause's
/// reserve at once.
impl Sink for StoreWriter {
    fn offer_locked(&self, event: &Arc<Sequenced>) -> Wake {
        self.note_kind(event);
        match self.try_enqueue_deferred(Arc::clone(event)) {
            Ok(wake) => wake,
            Err(event) => {
                let id = event.id;
                if let Err(err) = self.enqueue_blocking(event) {
                    tracing::error!(%err, id, "event could not be queued for persistence");
                }
                Wake::No
            }
        }
    }

    fn wake(&self) {
        StoreWriter::wake(self);
    }

    fn is_congested(&self) -> bool {
        StoreWriter::is_congested(self)
    }

    fn reserve(&self) -> usize {
        StoreWriter::reserve(self)
    }
}

/// A change of who is in a room on this node, decided under the room's lock (`Hub::join`,
/// `Hub::leave`): a user's first connection in the room arrived, or their last one left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PresenceChange {
    /// The room.
    pub(crate) room: std::sync::Arc<str>,
    /// The user.
    pub(crate) user: std::sync::Arc<str>,
    /// `true`: joined (first connection), `false`: left (last connection).
    pub(crate) joined: bool,
    /// The room went from no users to this one (joined) or from this one to none (left), on this node.
    pub(crate) occupancy_changed: bool,
}

/// A consumer of every presence change, in each room's order (webhooks). The same contract as
/// [`Sink`]: `offer_locked` runs with the room's lock held and must not make a syscall, wake a
/// thread or wait; what a full queue means is the consumer's own policy.
pub(crate) trait PresenceSink: Send + Sync {
    /// Takes `change` with the room's lock held.
    fn offer_locked(&self, change: PresenceChange) -> Wake;
    /// Wakes the consumer (after an `offer_locked` that asked for it, without a lock held).
    fn wake(&self);
}

/// A moderation decision (docs/WEBHOOKS.md "Moderation events", docs/API.md "Change feed"): made
/// by the server API (a ban, a mute, a disconnect, a revocation, a deletion) or by the content
/// filter, stamped with its time once ([`ModerationDecision::new`]) for every consumer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModerationDecision {
    /// The event's `type`.
    pub(crate) kind: &'static str,
    /// The room it concerns (its order is the room's); `None`: the user everywhere (the `$users`
    /// order stream).
    pub(crate) room: Option<Arc<str>>,
    /// Whom it concerns.
    pub(crate) user: Arc<str>,
    /// The event's other fields.
    pub(crate) fields: Vec<(&'static str, serde_json::Value)>,
    /// When it was decided (ms since the epoch).
    pub(crate) at_ms: i64,
}

impl ModerationDecision {
    /// A decision made now.
    pub(crate) fn new(
        kind: &'static str,
        room: Option<Arc<str>>,
        user: Arc<str>,
        fields: Vec<(&'static str, serde_json::Value)>,
    ) -> Self {
        ModerationDecision { kind, room, user, fields, at_ms: crate::protocol::json::now_millis() }
    }

    /// The decision's JSON fields, the same for every consumer: `type`, `room` (`null`: user-wide),
    /// `user`, its own fields, `at_ms` (a webhook adds `id`, `order` and `node`).
    pub(crate) fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut body = serde_json::Map::new();
        body.insert("type".into(), self.kind.into());
        body.insert("room".into(), self.room.as_deref().into());
        body.insert("user".into(), (*self.user).into());
        for (name, value) in &self.fields {
            body.insert((*name).into(), value.clone());
        }
        body.insert("at_ms".into(), self.at_ms.into());
        body
    }
}

/// A consumer of moderation decisions (webhooks; the change feed's log in the store). Called on a
/// shard thread or a store thread (control or reader), never under a room's lock; it must not wait:
/// what a full queue means is its own policy.
pub(crate) trait ModerationSink: Send + Sync {
    /// Takes `decision`.
    fn offer(&self, decision: &Arc<ModerationDecision>);
}

/// The change feed's moderation events (`store::ModerationLog`): the decision's JSON, stored with
/// a feed position by the writer. Full queue: dropped and counted
/// (`roomcast_feed_moderation_dropped_total`); the decision itself stands.
impl ModerationSink for ModerationLog {
    fn offer(&self, decision: &Arc<ModerationDecision>) {
        let body = serde_json::Value::Object(decision.json()).to_string();
        self.append(ModerationRecord {
            kind: decision.kind,
            room: decision.room.clone(),
            user: Arc::clone(&decision.user),
            at_ms: decision.at_ms,
            body,
        });
    }
}
