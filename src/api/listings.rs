//! The listings of the server API (`GET /api/rooms`, `GET /api/rooms/{room}/presence`,
//! `GET /api/users/{user}/connections`): this node's rooms and connections, merged in cluster mode
//! with what the other nodes last told of theirs ([`NodeUser`] rows, read from Redis by the cluster's
//! listing thread: up to a heartbeat old) and with the cluster's membership view, and the rows this
//! node tells the others ([`Api::local_users`], which the cluster's publisher writes at every
//! heartbeat).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{Api, MAX_LISTED};
use crate::api::registry::ConnEntry;
use crate::protocol::api::{ConnectionRow, NodeUser, PresenceRow, RoomRow};
use crate::room::hub::Hub;
use crate::types::Format;

impl Api {
    /// `GET /api/rooms`: every room with members, by name, on this node and, in cluster mode, on
    /// every node: `connections` this node's plus the other nodes' (`remote`), `members` the distinct
    /// users of both or the membership view's count, whichever is larger (the view may have heard of
    /// a join before its node's next rows).
    pub(crate) fn rooms(hub: &Hub, remote: &[NodeUser]) -> Vec<RoomRow> {
        let remote = by_room(remote);
        let mut rows: BTreeMap<String, RoomRow> = BTreeMap::new();
        for room in hub.directory.rooms().iter() {
            let state = room.state.lock();
            if state.members() == 0 {
                continue;
            }
            let elsewhere = remote.get(&*room.name);
            let others = elsewhere.map_or(0, |users| users.keys().filter(|u| !state.users.contains_key(**u)).count());
            let row = RoomRow {
                room: room.name.to_string(),
                members: state.users.len() + others,
                connections: u64::from(state.members()) + elsewhere.map_or(0, |users| sum(users.values())),
            };
            rows.insert(row.room.clone(), row);
        }
        for (room, users) in &remote {
            rows.entry((*room).to_string()).or_insert_with(|| RoomRow {
                room: (*room).to_string(),
                members: users.len(),
                connections: sum(users.values()),
            });
        }
        for (room, members) in hub.cluster_rooms().unwrap_or_default() {
            let row = rows.entry(room.to_string()).or_insert_with(|| RoomRow {
                room: room.to_string(),
                members: 0,
                connections: 0,
            });
            row.members = row.members.max(members);
        }
        rows.into_values().collect()
    }

    /// `GET /api/rooms/{room}/presence`: the users present, by name, on this node and, in cluster
    /// mode, on every node (from the other nodes' rows and the membership view; `connections` counts
    /// each user's connections in the room on every node, 0 for a user the view lists before its
    /// node's rows do). At most [`MAX_LISTED`] users.
    pub(crate) fn presence(hub: &Hub, room_name: &str, remote: &[NodeUser]) -> Vec<PresenceRow> {
        let mut rows: BTreeMap<String, u32> = hub
            .directory
            .get(room_name)
            .map(|room| room.state.lock().users.iter().map(|(user, &n)| (user.to_string(), n)).collect())
            .unwrap_or_default();
        for node_user in remote {
            if let Some(&n) = node_user.rooms.get(room_name) {
                let count = rows.entry(node_user.user.clone()).or_insert(0);
                *count = count.saturating_add(n);
            }
        }
        if let Some((names, _)) = hub.cluster_members(room_name, MAX_LISTED) {
            for name in names {
                rows.entry(name.to_string()).or_insert(0);
            }
        }
        rows.into_iter().take(MAX_LISTED).map(|(user, connections)| PresenceRow { user, connections }).collect()
    }

    /// `GET /api/users/{user}/connections`: the user's connections (this node's first, then the
    /// other nodes' from `remote`) and the rooms they are in anywhere, by name.
    pub(crate) fn connections(&self, hub: &Hub, user: &str, remote: &[NodeUser]) -> (Vec<ConnectionRow>, Vec<String>) {
        let mut rows: Vec<ConnectionRow> = self.registry.of(user).iter().map(|e| self.row(e)).collect();
        let mut rooms: BTreeSet<String> = hub
            .directory
            .rooms()
            .iter()
            .filter(|room| room.state.lock().users.contains_key(user))
            .map(|room| room.name.to_string())
            .collect();
        for node_user in remote.iter().filter(|n| n.user == user) {
            rows.extend(node_user.connections.iter().cloned());
            rooms.extend(node_user.rooms.keys().cloned());
        }
        (rows, rooms.into_iter().collect())
    }

    /// Changes so far to what [`Api::local_users`] returns: connections added or removed, joins and
    /// leaves (both counts only grow, so their sum moves with any of them).
    pub(crate) fn users_generation(&self, hub: &Hub) -> u64 {
        self.registry.changes().wrapping_add(hub.directory.changes())
    }

    /// Every user connected to this node, with their connections and the rooms they are in here
    /// (connections per room): the rows this node tells the other nodes of a cluster.
    pub(crate) fn local_users(&self, hub: &Hub) -> Vec<NodeUser> {
        let mut rooms_of: HashMap<Arc<str>, BTreeMap<String, u32>> = HashMap::new();
        for room in hub.directory.rooms().iter() {
            let state = room.state.lock();
            for (user, &n) in &state.users {
                rooms_of.entry(Arc::clone(user)).or_default().insert(room.name.to_string(), n);
            }
        }
        self.registry
            .all()
            .into_iter()
            .map(|(user, entries)| NodeUser {
                user: user.to_string(),
                connections: entries.iter().map(|e| self.row(e)).collect(),
                rooms: rooms_of.remove(&user).unwrap_or_default(),
            })
            .collect()
    }

    /// How `entry` is listed: named by this node in cluster mode.
    fn row(&self, entry: &ConnEntry) -> ConnectionRow {
        ConnectionRow {
            id: entry.conn.serial,
            format: match entry.format {
                Format::Json => "json",
                Format::Text => "text",
            }
            .to_string(),
            peer: entry.peer.to_string(),
            connected_at_ms: entry.connected_at_ms,
            node: self.node_name.as_deref().map(str::to_string),
        }
    }
}

/// The other nodes' users per room, with their connections there (summed over nodes).
fn by_room(remote: &[NodeUser]) -> BTreeMap<&str, HashMap<&str, u32>> {
    let mut rooms: BTreeMap<&str, HashMap<&str, u32>> = BTreeMap::new();
    for node_user in remote {
        for (room, &n) in &node_user.rooms {
            let count = rooms.entry(room.as_str()).or_default().entry(node_user.user.as_str()).or_insert(0);
            *count = count.saturating_add(n);
        }
    }
    rooms
}

fn sum<'a>(counts: impl Iterator<Item = &'a u32>) -> u64 {
    counts.map(|&n| u64::from(n)).sum()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn node_user(user: &str, node: &str, rooms: &[(&str, u32)]) -> NodeUser {
        let conns = rooms.iter().map(|(_, n)| *n).max().unwrap_or(0);
        NodeUser {
            user: user.into(),
            connections: (0..conns)
                .map(|id| ConnectionRow {
                    id: u64::from(id),
                    format: "json".into(),
                    peer: "127.0.0.1:1".into(),
                    connected_at_ms: 0,
                    node: Some(node.into()),
                })
                .collect(),
            rooms: rooms.iter().map(|(r, n)| ((*r).to_string(), *n)).collect(),
        }
    }

    #[test]
    fn other_nodes_users_are_summed_per_room_and_counted_once_per_user() {
        let remote = [node_user("al", "b", &[("x", 2), ("y", 1)]), node_user("al", "c", &[("x", 1)])];
        let rooms = by_room(&remote);
        assert_eq!(rooms["x"], HashMap::from([("al", 3)]));
        assert_eq!(rooms["y"], HashMap::from([("al", 1)]));
        assert_eq!(sum(rooms["x"].values()), 3);
        let users: HashSet<&str> = rooms.values().flat_map(|u| u.keys().copied()).collect();
        assert_eq!(users.len(), 1);
    }
}
