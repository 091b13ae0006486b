//! Each node's in-memory view of who is present in which room on the whole cluster, fed by the
//! presence events on the rooms' channels and replaced by a snapshot of the `rc:{room}:users` tables
//! each time the subscriber (re)connects. Shards read it (a short in-memory lock, never Redis) to
//! answer `joined` with cluster-wide members; it is eventually consistent: a join on another node is
//! listed once its event has come through Redis.
//!
//! The view holds what Redis says; a node's own users are added from its room table at the join (so a
//! member always sees itself, even before its own event came back).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use super::events::PresenceChange;

/// Users present per room, cluster-wide, as far as this node has heard.
pub(crate) type Snapshot = HashMap<Arc<str>, HashSet<Arc<str>>>;

/// The cluster-wide membership view (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct MembershipView {
    rooms: Mutex<Snapshot>,
}

impl MembershipView {
    /// Applies one event; returns whether it changed the view (a repeated event does not).
    pub(crate) fn apply(&self, change: &PresenceChange) -> bool {
        let mut rooms = self.rooms.lock();
        if change.joined {
            rooms.entry(Arc::clone(&change.room)).or_default().insert(Arc::clone(&change.user))
        } else {
            let Some(users) = rooms.get_mut(&change.room) else { return false };
            let removed = users.remove(&change.user);
            if users.is_empty() {
                rooms.remove(&change.room);
            }
            removed
        }
    }

    /// Replaces the view with `snapshot`; returns the changes from the old view to the new one (what
    /// this node's members missed while the subscriber was away).
    pub(crate) fn replace(&self, snapshot: Snapshot) -> Vec<PresenceChange> {
        let mut rooms = self.rooms.lock();
        let mut changes = Vec::new();
        for (room, users) in rooms.iter() {
            let now = snapshot.get(room);
            for user in users.iter().filter(|u| !now.is_some_and(|n| n.contains(*u))) {
                changes.push(PresenceChange { room: Arc::clone(room), user: Arc::clone(user), joined: false });
            }
        }
        for (room, users) in &snapshot {
            let before = rooms.get(room);
            for user in users.iter().filter(|u| !before.is_some_and(|b| b.contains(*u))) {
                changes.push(PresenceChange { room: Arc::clone(room), user: Arc::clone(user), joined: true });
            }
        }
        *rooms = snapshot;
        changes
    }

    /// Every room with users in the view, with their number.
    pub(crate) fn rooms(&self) -> Vec<(Arc<str>, usize)> {
        self.rooms.lock().iter().map(|(room, users)| (Arc::clone(room), users.len())).collect()
    }

    /// Up to `max_names` names and the exact count of the users present in `room`: the view plus
    /// `local` (this node's users of the room), local names first.
    pub(crate) fn members<V>(
        &self,
        room: &str,
        local: &HashMap<Arc<str>, V>,
        max_names: usize,
    ) -> (Vec<Arc<str>>, usize) {
        let rooms = self.rooms.lock();
        let mut names: Vec<Arc<str>> = local.keys().take(max_names).cloned().collect();
        let mut count = local.len();
        if let Some(remote) = rooms.get(room) {
            for user in remote.iter().filter(|u| !local.contains_key(*u)) {
                count += 1;
                if names.len() < max_names {
                    names.push(Arc::clone(user));
                }
            }
        }
        (names, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(room: &str, user: &str, joined: bool) -> PresenceChange {
        PresenceChange { room: Arc::from(room), user: Arc::from(user), joined }
    }

    #[test]
    fn events_apply_once_and_members_merge_local_users() {
        let view = MembershipView::default();
        assert!(view.apply(&change("r", "bob", true)));
        assert!(!view.apply(&change("r", "bob", true)), "a repeated join changes nothing");
        assert!(view.apply(&change("r", "cid", true)));
        let local: HashMap<Arc<str>, u32> = [(Arc::from("ann"), 1), (Arc::from("bob"), 2)].into_iter().collect();
        let (names, count) = view.members("r", &local, 100);
        assert_eq!(count, 3);
        let mut names: Vec<&str> = names.iter().map(|n| &**n).collect();
        names.sort_unstable();
        assert_eq!(names, ["ann", "bob", "cid"]);
        assert_eq!(view.members("r", &local, 2).0.len(), 2, "names are capped, the count is not");
        assert!(view.apply(&change("r", "bob", false)));
        assert!(!view.apply(&change("r", "bob", false)));
        assert!(!view.apply(&change("elsewhere", "bob", false)));
        assert_eq!(view.members("r", &HashMap::<Arc<str>, u32>::new(), 100).1, 1);
    }

    #[test]
    fn a_snapshot_reports_what_changed() {
        let view = MembershipView::default();
        view.apply(&change("r", "gone", true));
        view.apply(&change("r", "stays", true));
        let snapshot: Snapshot =
            [(Arc::from("r"), [Arc::from("stays"), Arc::from("new")].into_iter().collect())].into_iter().collect();
        let mut changes = view.replace(snapshot);
        changes.sort_by(|a, b| a.user.cmp(&b.user));
        assert_eq!(changes, [change("r", "gone", false), change("r", "new", true)]);
        assert!(view.replace(Snapshot::new()).len() == 2);
    }
}
