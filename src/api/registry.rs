//! Every WebSocket connection by user name, on this node: whom a disconnect or a ban closes, and
//! what `GET /api/users/{user}/connections` lists. A connection is added at its upgrade and removed
//! when it is reaped (by shard and slab key, unique among live connections). In cluster mode it
//! keeps the cluster's view of this node's counts current (`cluster::user_conns`), and the
//! `--max-conns-per-user` check adds the other nodes' counts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::cluster::user_conns::UserConns;
use crate::types::{ConnRef, Format};

/// One live WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnEntry {
    /// Where it lives.
    pub(crate) conn: ConnRef,
    /// Its wire format.
    pub(crate) format: Format,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// When it upgraded, ms since the epoch.
    pub(crate) connected_at_ms: i64,
}

/// The connections of every user.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    users: Mutex<HashMap<Arc<str>, Vec<ConnEntry>>>,
    /// Connections added and removed so far (the cluster's listing rows are rebuilt only when it
    /// moved).
    changes: AtomicU64,
    /// Cluster mode with `--max-conns-per-user`: the counts across nodes.
    cluster: Option<Arc<UserConns>>,
}

impl Registry {
    /// A registry; `cluster`: in cluster mode, the counts across nodes it keeps current.
    pub(crate) fn new(cluster: Option<Arc<UserConns>>) -> Registry {
        Registry { users: Mutex::default(), changes: AtomicU64::new(0), cluster }
    }

    /// Connections added and removed so far: when it has not moved, the registry is as it was.
    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// `user` has a new connection, unless they have `max` already (`--max-conns-per-user`; 0: no
    /// limit), on this node and, in cluster mode, on the others as last heard: checked and added
    /// under one lock, so two shards upgrading the same user at once cannot both slip under the
    /// limit. Returns whether it was added.
    pub(crate) fn add_within(&self, user: &Arc<str>, entry: ConnEntry, max: usize) -> bool {
        let mut users = self.users.lock();
        let conns = users.entry(Arc::clone(user)).or_default();
        let elsewhere = match (&self.cluster, max) {
            (Some(cluster), 1..) => cluster.remote(user),
            _ => 0,
        };
        if max > 0 && conns.len() + elsewhere >= max {
            if conns.is_empty() {
                users.remove(user);
            }
            return false;
        }
        if conns.capacity() == 0 {
            // Most users have one connection: one slot, not the four a first push would allocate.
            conns.reserve_exact(1);
        }
        conns.push(entry);
        self.changes.fetch_add(1, Ordering::Relaxed);
        if let Some(cluster) = &self.cluster {
            cluster.set_local(user, conns.len());
        }
        true
    }

    /// `user`'s connection at `shard`/`key` is gone.
    pub(crate) fn remove(&self, user: &str, shard: usize, key: usize) {
        let mut users = self.users.lock();
        let Some(conns) = users.get_mut(user) else { return };
        conns.retain(|e| !(e.conn.shard == shard && e.conn.key == key));
        self.changes.fetch_add(1, Ordering::Relaxed);
        if let Some(cluster) = &self.cluster {
            cluster.set_local(user, conns.len());
        }
        if conns.is_empty() {
            users.remove(user);
        }
    }

    /// `user`'s connections.
    pub(crate) fn of(&self, user: &str) -> Vec<ConnEntry> {
        self.users.lock().get(user).cloned().unwrap_or_default()
    }

    /// Every user's connections.
    pub(crate) fn all(&self) -> Vec<(Arc<str>, Vec<ConnEntry>)> {
        self.users.lock().iter().map(|(user, conns)| (Arc::clone(user), conns.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_come_and_go() {
        let reg = Registry::default();
        let al: Arc<str> = Arc::from("al");
        let entry = |shard, key| ConnEntry {
            conn: ConnRef { shard, key, serial: 9 },
            format: Format::Json,
            peer: "127.0.0.1:1".parse().expect("addr"),
            connected_at_ms: 0,
        };
        assert!(reg.add_within(&al, entry(0, 1), 0));
        assert!(reg.add_within(&al, entry(1, 1), 0));
        assert_eq!(reg.of("al").len(), 2);
        reg.remove("al", 0, 1);
        assert_eq!(reg.of("al"), vec![entry(1, 1)]);
        reg.remove("al", 1, 1);
        assert!(reg.of("al").is_empty());
        assert!(reg.users.lock().is_empty());
        assert!(reg.add_within(&al, entry(0, 1), 2) && reg.add_within(&al, entry(0, 2), 2));
        assert!(!reg.add_within(&al, entry(0, 3), 2), "over the limit");
        assert!(reg.add_within(&al, entry(0, 3), 0), "0: no limit");
        assert_eq!(reg.of("al").len(), 3);
    }
}
