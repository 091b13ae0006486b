//! The server API's state and the actions that are not tied to one HTTP connection: keys
//! ([`keys`]), the paths ([`route`]), bans and mutes in force ([`moderation`]), token revocations
//! ([`revocation`]), idempotency keys
//! ([`idempotency`]), every WebSocket connection by user ([`registry`]), the durable changes
//! through the store's control thread, closing a user's connections, and the listings
//! ([`listings`]).
//!
//! One [`Api`] per server, shared by the shards (`session::api_session` serves the requests). A
//! change that must survive a restart (a ban, a mute, an idempotency key) is in force in memory at
//! once and is answered only once the store committed it: the answer then comes through the
//! asking shard's inbox (`ShardMsg::Reply`), like a history page. Closing a user's connections is a
//! `ShardMsg::Close` to the shard of each.

pub(crate) mod idempotency;
pub mod keys;
pub(crate) mod listings;
pub(crate) mod moderation;
pub(crate) mod registry;
pub(crate) mod revocation;
pub(crate) mod route;

use std::sync::Arc;

use crate::bus::{ShardMsg, Shards};
use crate::http::response::Response;
use crate::protocol::api::{ModerationChange, ModerationEvent, encode_moderation, parse_moderation};
use crate::room::hub::Hub;
use crate::room::sequencer::{ControlMessage, ControlState};
use crate::room::sink::ModerationDecision;
use crate::store::{ControlOp, ControlStore, Store, StoreError};
use crate::types::ConnRef;
use crate::ws::close;

pub use keys::KeysError;

/// Users one presence answer lists at most.
pub(crate) const MAX_LISTED: usize = 10_000;

/// Why the API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The keys file could not be read.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The store's control state could not be opened or read.
    #[error("cannot open the API's state in the database: {0}")]
    Store(#[from] StoreError),
}

/// The server API, shared by every shard.
pub(crate) struct Api {
    /// The keys.
    pub(crate) keys: keys::ApiKeys,
    /// Bans and mutes in force.
    pub(crate) moderation: moderation::Moderation,
    /// Token revocations in force.
    pub(crate) revocations: revocation::Revocations,
    /// Idempotency keys within their window.
    pub(crate) idempotency: Arc<idempotency::Idempotency>,
    /// WebSocket connections by user.
    pub(crate) registry: registry::Registry,
    /// Durable changes (`None` with `--no-persist`: in memory only).
    control: Option<ControlStore>,
    shards: Arc<Shards>,
    /// This process's tag on the moderation events it sends the cluster (it skips its own).
    node: u64,
    /// Cluster mode: this node's `--node-id`, naming its connections in the listings.
    node_name: Option<String>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("enabled", &self.keys.enabled()).finish_non_exhaustive()
    }
}

impl Api {
    /// The API over `shards`, with `keys`; its state is loaded from `store` (bans, mutes, keys in
    /// force at `now_ms`) when there is one.
    ///
    /// # Errors
    /// [`ApiError::Store`] when the state cannot be read.
    pub(crate) fn new(
        keys: keys::ApiKeys,
        store: Option<&Store>,
        shards: Arc<Shards>,
        now_ms: i64,
        user_conns: Option<Arc<crate::cluster::user_conns::UserConns>>,
        node_name: Option<String>,
    ) -> Result<Api, ApiError> {
        let moderation = moderation::Moderation::default();
        let revocations = revocation::Revocations::default();
        let (control, idempotency) = match store {
            Some(store) => {
                let (control, snapshot) = store.open_control(now_ms, idempotency::WINDOW_MS)?;
                for (user, until) in &snapshot.bans {
                    moderation.ban(user, *until, now_ms);
                }
                for (room, user, until) in &snapshot.mutes {
                    moderation.mute(room, user, *until, now_ms);
                }
                for (user, before_ms) in &snapshot.revocations {
                    revocations.revoke(user, *before_ms);
                }
                (Some(control), idempotency::Idempotency::load(snapshot.keys))
            }
            None => (None, idempotency::Idempotency::default()),
        };
        Ok(Api {
            keys,
            moderation,
            revocations,
            idempotency: Arc::new(idempotency),
            registry: registry::Registry::new(user_conns),
            control,
            shards,
            node: crate::unique::unique_u64(),
            node_name,
        })
    }

    /// Applies `change` on this node: bans and mutes in force in memory at once and written to the
    /// store (`then` runs once committed, with how many connections were told to close), connections
    /// closed. Returns that count, and `false` when the store's queue was full (`then` does not run;
    /// the change is in force until a restart).
    pub(crate) fn apply(
        &self,
        change: &ModerationChange,
        now_ms: i64,
        then: impl FnOnce(usize, Result<(), StoreError>) + Send + 'static,
    ) -> (usize, bool) {
        let (closed, op) = match change {
            ModerationChange::Ban { user, until_ms } => {
                self.moderation.ban(user, *until_ms, now_ms);
                let closed = self.close_user(user, close::BANNED, "");
                (closed, Some(ControlOp::Moderation(change.clone())))
            }
            ModerationChange::Unban { user } => {
                self.moderation.unban(user, now_ms);
                (0, Some(ControlOp::Moderation(change.clone())))
            }
            ModerationChange::Mute { room, user, until_ms } => {
                self.moderation.mute(room, user, *until_ms, now_ms);
                (0, Some(ControlOp::Moderation(change.clone())))
            }
            ModerationChange::Unmute { room, user } => {
                self.moderation.unmute(room, user, now_ms);
                (0, Some(ControlOp::Moderation(change.clone())))
            }
            ModerationChange::Revoke { user, before_ms } => {
                self.revocations.revoke(user, *before_ms);
                let closed = self.close_user(user, close::TOKEN_REVOKED, "");
                (closed, Some(ControlOp::Moderation(change.clone())))
            }
            ModerationChange::Disconnect { user, code, reason } => (self.close_user(user, *code, reason), None),
        };
        let stored = match op {
            Some(op) => self.persist(op, move |result| then(closed, result)),
            None => {
                then(closed, Ok(()));
                true
            }
        };
        (closed, stored)
    }

    /// Tells every other node of the cluster to apply `change` too (nothing on a single node).
    pub(crate) fn tell_cluster(&self, hub: &Hub, change: ModerationChange) {
        let state = kept_state(&change);
        let payload = encode_moderation(&ModerationEvent { node: self.node, change });
        if hub.is_clustered() && !hub.broadcast_control(ControlMessage { payload, state }) {
            tracing::warn!("api: the hand-off to Redis is full; a moderation change stays on this node");
        }
    }

    /// A moderation event from the cluster: applied here unless this node sent it, and logged for
    /// this node's change feed once stored (the deciding node sends the webhooks). `kept`: the
    /// cluster's kept state, read when this node linked (it may have been away): applied only when
    /// it is still in force and not in force here already, so a restart or a reconnect closes no
    /// connection twice and logs nothing twice.
    pub(crate) fn on_cluster_event(&self, hub: &Arc<Hub>, payload: &[u8], kept: bool) {
        let Some(event) = parse_moderation(payload) else {
            tracing::warn!("api: a moderation event from the cluster did not parse; ignored");
            return;
        };
        if event.node == self.node {
            return;
        }
        let now = crate::protocol::json::now_millis();
        if kept && !self.would_change(&event.change, now) {
            return;
        }
        let (hub, change) = (Arc::clone(hub), event.change.clone());
        let (closed, stored) = self.apply(&event.change, now, move |closed, result| match result {
            Ok(()) => hub.moderation_applied(|| decision(&change, closed)),
            Err(err) => tracing::error!(%err, "api: a moderation change from the cluster could not be stored"),
        });
        tracing::info!(closed, stored, change = ?event.change, "api: applied a moderation change from the cluster");
    }

    /// Whether applying kept state `change` at `now_ms` puts something in force that is not yet (a
    /// lift or a disconnect is never kept state: no).
    fn would_change(&self, change: &ModerationChange, now_ms: i64) -> bool {
        match change {
            ModerationChange::Ban { user, until_ms } => {
                *until_ms > now_ms && self.moderation.banned_until(user, now_ms) != Some(*until_ms)
            }
            ModerationChange::Mute { room, user, until_ms } => {
                *until_ms > now_ms && self.moderation.muted_until(room, user, || now_ms) != Some(*until_ms)
            }
            ModerationChange::Revoke { user, before_ms } => {
                self.revocations.before(user).is_none_or(|before| before < *before_ms)
            }
            ModerationChange::Unban { .. } | ModerationChange::Unmute { .. } | ModerationChange::Disconnect { .. } => {
                false
            }
        }
    }

    /// Makes `op` durable, then runs `then` (on the control thread; at once without a store).
    /// Returns `false`, running nothing, when the control queue is full.
    pub(crate) fn persist(&self, op: ControlOp, then: impl FnOnce(Result<(), StoreError>) + Send + 'static) -> bool {
        match &self.control {
            Some(control) => control.submit(op, Box::new(then)).is_ok(),
            None => {
                then(Ok(()));
                true
            }
        }
    }

    /// A handle that answers HTTP connections from any thread.
    pub(crate) fn answerer(&self) -> Answerer {
        Answerer { shards: Arc::clone(&self.shards) }
    }

    /// Sends `frame` to every JSON connection of `user` on this node (a text client would not
    /// understand it); returns how many.
    pub(crate) fn tell_user(&self, user: &str, frame: &bytes::Bytes) -> usize {
        let conns = self.registry.of(user);
        let mut told = 0;
        for entry in conns.iter().filter(|e| e.format == crate::types::Format::Json) {
            self.shards.send(entry.conn.shard, ShardMsg::Send { conn: entry.conn, frame: frame.clone() });
            told += 1;
        }
        told
    }

    /// Closes every WebSocket connection of `user` on this node with `code` and the reason built
    /// from `text`; returns how many were told to close.
    pub(crate) fn close_user(&self, user: &str, code: u16, text: &str) -> usize {
        let conns = self.registry.of(user);
        let reason: Arc<str> = Arc::from(close::app_reason(code, text));
        for entry in &conns {
            let msg = ShardMsg::Close { conn: entry.conn, code, reason: Arc::clone(&reason) };
            self.shards.send(entry.conn.shard, msg);
        }
        conns.len()
    }
}

/// Answers HTTP connections through their shard's inbox, from any thread.
#[derive(Clone)]
pub(crate) struct Answerer {
    shards: Arc<Shards>,
}

impl Answerer {
    /// Sends `response` to the HTTP connection `conn`.
    pub(crate) fn answer(&self, conn: ConnRef, response: Response, keep_alive: bool) {
        self.shards.send(conn.shard, ShardMsg::Reply { conn, response, keep_alive });
    }

    /// Sends the next change-feed chunk (or why the stream ends) to the streaming connection `conn`.
    pub(crate) fn feed(&self, conn: ConnRef, chunk: Result<crate::bus::FeedChunk, crate::store::StoreError>) {
        self.shards.send(conn.shard, ShardMsg::Feed { conn, chunk });
    }
}

/// What `change` leaves in the cluster's kept state (`cluster::keys::CONTROL_STATE`): a ban, a mute
/// and a revocation are kept under their subject (the latest about it wins), a lift clears its
/// subject, a disconnect is not kept. Names never hold U+001F (`protocol::names`), the separator.
fn kept_state(change: &ModerationChange) -> ControlState {
    match change {
        ModerationChange::Ban { user, .. } => ControlState::Keep(format!("ban:{user}")),
        ModerationChange::Unban { user } => ControlState::Clear(format!("ban:{user}")),
        ModerationChange::Mute { room, user, .. } => ControlState::Keep(format!("mute:{room}\u{1f}{user}")),
        ModerationChange::Unmute { room, user } => ControlState::Clear(format!("mute:{room}\u{1f}{user}")),
        ModerationChange::Revoke { user, .. } => ControlState::Keep(format!("revoke:{user}")),
        ModerationChange::Disconnect { .. } => ControlState::Transient,
    }
}

/// The moderation event (webhooks, change feed) of an API decision that closed `closed` connections (docs/WEBHOOKS.md
/// "Moderation events"): a ban, an unban, a revocation and a disconnect concern the user in every
/// room (`room: None`), a mute and an unmute one room.
pub(crate) fn decision(change: &ModerationChange, closed: usize) -> ModerationDecision {
    use serde_json::json;
    let closed = ("closed", json!(closed));
    let (kind, room, user, fields) = match change {
        ModerationChange::Ban { user, until_ms } => {
            ("user_banned", None, user, vec![("until_ms", json!(until_ms)), closed])
        }
        ModerationChange::Unban { user } => ("user_unbanned", None, user, vec![]),
        ModerationChange::Mute { room, user, until_ms } => {
            ("user_muted", Some(room), user, vec![("until_ms", json!(until_ms))])
        }
        ModerationChange::Unmute { room, user } => ("user_unmuted", Some(room), user, vec![]),
        ModerationChange::Revoke { user, before_ms } => {
            ("tokens_revoked", None, user, vec![("before_ms", json!(before_ms)), closed])
        }
        ModerationChange::Disconnect { user, code, reason } => {
            let reconnect = ("reconnect", json!(*code == close::DISCONNECTED));
            ("user_disconnected", None, user, vec![reconnect, ("reason", json!(reason)), closed])
        }
    };
    ModerationDecision::new(kind, room.map(|r| Arc::from(r.as_str())), Arc::from(user.as_str()), fields)
}
