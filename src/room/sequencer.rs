//! [`Sequencer`]: who gives a room's events their ids and order. Chosen once at start-up: the
//! [`LocalSequencer`] (single node: the event is handed straight back and ordered here, under the
//! room's lock, with the next id of `IdSequence`) or the cluster's Redis sequencer
//! (`cluster::ClusterSink`, in the layer above: it keeps the event, Redis orders it, and it comes
//! back through `Hub::apply_remote`). Either way an event reaches members through one function,
//! `Hub::apply_locked`, so the publish path has no cluster branch: it asks the sequencer, and orders
//! here what the sequencer hands back.

use std::collections::HashMap;
use std::sync::Arc;

use crate::deferred::Wake;
use crate::protocol::api::NodeUser;
use crate::types::{ClientError, ConnRef, Event, IdWaiter, Origin, Sequenced, Transient};

/// An event accepted for publishing, before it has an id.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// Room name.
    pub(crate) room: Arc<str>,
    /// What happened.
    pub(crate) event: Event,
    /// How the sender sent it.
    pub(crate) origin: Origin,
    /// Acceptance time, ms since the epoch.
    pub(crate) at_ms: i64,
    /// The sending connection, told when the event is refused after it left the shard (cluster
    /// mode: Redis's per-user rate limit).
    pub(crate) reply_to: Option<ConnRef>,
    /// Who waits for the event's id when the sequencer keeps it (the server API in cluster mode:
    /// told through `Hub::acknowledge` once Redis, or this node while Redis is away, gave it one).
    pub(crate) ack: Option<IdWaiter>,
    /// The server API's `Idempotency-Key` (cluster mode: the publish script publishes once per key
    /// within the window, whichever node is asked).
    pub(crate) idempotency_key: Option<Arc<str>>,
}

impl Outgoing {
    /// The log entry of this event once it has id `id`.
    pub(crate) fn sequenced(&self, id: u64) -> Sequenced {
        Sequenced {
            id,
            room: Arc::clone(&self.room),
            at_ms: self.at_ms,
            event: self.event.clone(),
            idempotency_key: self.idempotency_key.clone(),
        }
    }
}

/// Up to a cap of names of a room's present users, and their exact number.
pub(crate) type MemberList = (Vec<Arc<str>>, usize);

/// The other nodes' users as they last told (cluster mode), or why they could not be read.
pub(crate) type RemoteUsers = Result<Vec<NodeUser>, String>;

/// What runs with the other nodes' users once they are read (on the cluster's listing thread).
pub(crate) type UsersDone = Box<dyn FnOnce(RemoteUsers) + Send>;

/// Where a presence change of this node went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PresenceRoute {
    /// Told to this node's members now, in the room's order.
    Here,
    /// Handed to the sequencer's thread, which may need waking once the room's lock is released.
    Sent(Wake),
}

/// Gives events their ids and their order.
pub(crate) trait Sequencer: Send + Sync {
    /// Takes `event` to be ordered: `Ok(Some(event))` hands it back to be ordered on this node now
    /// (under the room's lock, with the next local id); `Ok(None)` means it was handed off and
    /// comes back through `Hub::apply_remote` once ordered.
    ///
    /// # Errors
    /// `unavailable` when it cannot be taken now (cluster mode: the hand-off to Redis is full):
    /// nothing was published.
    fn take(&self, event: Outgoing) -> Result<Option<Outgoing>, ClientError>;
    /// Takes a control message for every node of the cluster (the server API's moderation); `false`
    /// when there is no cluster (single node: the default) or it cannot be taken now.
    fn take_control(&self, _message: ControlMessage) -> bool {
        false
    }
    /// Cluster-wide rooms with users and their number of users (`None`: only this node's are
    /// known: single node, or the cluster view is down).
    fn rooms(&self) -> Option<Vec<(Arc<str>, usize)>> {
        None
    }
    /// Whether events are sequenced on another thread (cluster mode), not here.
    fn is_remote(&self) -> bool {
        false
    }
    /// Reads the other nodes' users (`user`: that one only) on another thread and hands them to
    /// `done` there; gives `done` back when it cannot (a single node has no other nodes; a cluster
    /// whose listing queue is full).
    fn remote_users(&self, _user: Option<Arc<str>>, done: UsersDone) -> Option<UsersDone> {
        Some(done)
    }
    /// Takes a transient `event` (a binary relay) of room `room`: `Some` hands it back to be relayed
    /// to this node's members now; `None`, it was handed off (cluster mode: at most once).
    fn take_relay(&self, room: &Arc<str>, event: Transient) -> Option<Transient>;
    /// `user`'s first connection in `room` on this node arrived (`joined`) or its last one left.
    /// Called under the room's lock: must not wait or wake a thread.
    fn presence_locked(&self, room: &Arc<str>, user: &Arc<str>, joined: bool) -> PresenceRoute;
    /// Cluster-wide members of `room` merged with this node's `local` users (names capped at
    /// `max_names`, exact count); `None` when only this node's own members are known.
    fn members(&self, room: &str, local: &HashMap<Arc<str>, u32>, max_names: usize) -> Option<MemberList>;
    /// Whether shards should stop reading client input because the sequencer is behind.
    fn is_congested(&self) -> bool;
    /// Events it still takes once congested before it refuses (the ingress pause's reserve).
    fn reserve(&self) -> usize;
    /// Wakes the sequencer's thread after a [`PresenceRoute::Sent`] that asked for it (no lock held).
    fn wake(&self);
    /// A mark covering every event taken so far, when their echoes come back later (cluster mode:
    /// through Redis); `None` when `take` hands them straight back (their deliveries are in the
    /// inboxes when it returns).
    fn echo_mark(&self) -> Option<u64> {
        None
    }
    /// Whether every event up to `mark` has come back (delivered into the inboxes, or refused).
    fn echoed(&self, _mark: u64) -> bool {
        true
    }
}

/// Single node: every event is ordered here, at once.
#[derive(Debug, Default)]
pub(crate) struct LocalSequencer;

impl Sequencer for LocalSequencer {
    fn take(&self, event: Outgoing) -> Result<Option<Outgoing>, ClientError> {
        Ok(Some(event))
    }

    fn take_relay(&self, _room: &Arc<str>, event: Transient) -> Option<Transient> {
        Some(event)
    }

    fn presence_locked(&self, _room: &Arc<str>, _user: &Arc<str>, _joined: bool) -> PresenceRoute {
        PresenceRoute::Here
    }

    fn members(&self, _room: &str, _local: &HashMap<Arc<str>, u32>, _max_names: usize) -> Option<MemberList> {
        None
    }

    fn is_congested(&self) -> bool {
        false
    }

    fn reserve(&self) -> usize {
        usize::MAX
    }

    fn wake(&self) {}
}

/// A control message for every node of a cluster: an opaque payload (the `api` layer's), and what it
/// does to the cluster's kept state, which a node that was away reads when it links again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlMessage {
    /// What every node subscribed now receives.
    pub(crate) payload: Vec<u8>,
    /// Its effect on the kept state.
    pub(crate) state: ControlState,
}

/// What a control message does to the cluster's kept state (`keys::CONTROL_STATE`): one entry per
/// subject (a user's ban, a user's mute in a room, a user's revocation), the latest message about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ControlState {
    /// Nothing kept (a disconnect: it concerns the connections of the moment only).
    Transient,
    /// Keep the payload as the subject's state (a ban, a mute, a revocation).
    Keep(String),
    /// The subject has no state any more (a lifted ban or mute).
    Clear(String),
}
