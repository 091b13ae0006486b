//! Connections per user across the cluster, for `--max-conns-per-user`: this node's counts
//! (kept by the server API's registry under its own lock, `api::registry`) and the other nodes'
//! (as Redis last told), so an upgrade is judged from memory, never by a round trip to Redis.
//!
//! The publisher thread, at every heartbeat (1 s) and only when the limit is on, writes this node's
//! counts to a hash `rc:conns:<origin>` with the heartbeat's TTL (a node that dies takes its counts
//! with it within 5 s) and reads the other registered nodes' hashes into [`UserConns::remote`].
//! The view is up to about a heartbeat old: two nodes admitting the same user within that time may
//! together exceed the limit (documented in CONFIG.md).
//!
//! Bounded: both maps hold only users with at least one connection somewhere.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// This node's and the other nodes' connections per user.
#[derive(Debug, Default)]
pub(crate) struct UserConns {
    local: Mutex<HashMap<Arc<str>, u32>>,
    remote: Mutex<HashMap<String, u32>>,
}

impl UserConns {
    /// `user`'s connections on the other nodes, as last read from Redis.
    pub(crate) fn remote(&self, user: &str) -> usize {
        self.remote.lock().get(user).map_or(0, |n| *n as usize)
    }

    /// `user` now has `count` connections on this node (0: none; forgotten).
    pub(crate) fn set_local(&self, user: &str, count: usize) {
        let mut local = self.local.lock();
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        if count == 0 {
            local.remove(user);
        } else if let Some(n) = local.get_mut(user) {
            *n = count;
        } else {
            local.insert(Arc::from(user), count);
        }
    }

    /// This node's counts, for the publisher to write.
    pub(crate) fn local_snapshot(&self) -> Vec<(String, u32)> {
        self.local.lock().iter().map(|(user, n)| (user.to_string(), *n)).collect()
    }

    /// Replaces the other nodes' counts (summed per user).
    pub(crate) fn set_remote(&self, remote: HashMap<String, u32>) {
        *self.remote.lock() = remote;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_counts_come_and_go_and_remote_is_replaced() {
        let conns = UserConns::default();
        let ann: Arc<str> = Arc::from("ann");
        conns.set_local(&ann, 2);
        assert_eq!(conns.local_snapshot(), vec![("ann".to_string(), 2)]);
        conns.set_local(&ann, 0);
        assert!(conns.local_snapshot().is_empty(), "a user without connections is forgotten");
        conns.set_remote(HashMap::from([("ann".to_string(), 3)]));
        assert_eq!(conns.remote("ann"), 3);
        conns.set_remote(HashMap::new());
        assert_eq!(conns.remote("ann"), 0);
    }
}
