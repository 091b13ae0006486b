//! The membership calls on a [`RedisLink`]: heartbeat and registration of a node incarnation,
//! resynchronising its members after a (re)connect, reaping the members of incarnations whose
//! heartbeat expired, the snapshot of every room's cluster-wide users, and the exchange of
//! connections per user (`super::user_conns`).
//!
//! Cross-slot keys: `rc:nodes` and the heartbeat keys are global, and the presence script reads the
//! heartbeat key beside the room's keys; in Redis Cluster the heartbeat would move into the room's
//! slot (one per room and node) or reaping would check it outside the script first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use redis::{RedisResult, Value};

use super::ClusterError;
use super::keys;
use super::membership::Snapshot;
use super::redis_link::RedisLink;

impl RedisLink {
    /// Writes `origin`'s connections per user (`local`, replacing what it wrote before; expiring
    /// after `ttl` like the heartbeat) and returns the other registered nodes' counts, summed per
    /// user.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn exchange_user_conns(
        &mut self,
        origin: &str,
        local: &[(String, u32)],
        ttl: Duration,
    ) -> RedisResult<HashMap<String, u32>> {
        let key = keys::user_conns(origin);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(&key).ignore();
        if !local.is_empty() {
            pipe.cmd("HSET").arg(&key);
            for (user, count) in local {
                pipe.arg(user).arg(*count);
            }
            pipe.ignore().cmd("PEXPIRE").arg(&key).arg(ttl_ms(ttl)).ignore();
        }
        pipe.query::<()>(&mut self.conn)?;
        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(keys::NODES).query(&mut self.conn)?;
        let mut remote: HashMap<String, u32> = HashMap::new();
        for node in nodes.iter().filter(|n| n.as_str() != origin) {
            let counts: HashMap<String, u32> =
                redis::cmd("HGETALL").arg(keys::user_conns(node)).query(&mut self.conn)?;
            for (user, count) in counts {
                let sum = remote.entry(user).or_insert(0);
                *sum = sum.saturating_add(count);
            }
        }
        Ok(remote)
    }

    /// Sets the heartbeat of `origin` (expiring after `ttl`) and registers it in `rc:nodes`.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn register(&mut self, origin: &str, ttl: Duration) -> RedisResult<()> {
        redis::pipe()
            .cmd("SET")
            .arg(keys::heartbeat(origin))
            .arg(1)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .ignore()
            .cmd("SADD")
            .arg(keys::NODES)
            .arg(origin)
            .ignore()
            .query(&mut self.conn)
    }

    /// Renews the heartbeat of `origin`; `false` when it had expired (the survivors may have reaped
    /// this node's members: resynchronise them).
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn renew(&mut self, origin: &str, ttl: Duration) -> RedisResult<bool> {
        let reply: Option<String> = redis::cmd("SET")
            .arg(keys::heartbeat(origin))
            .arg(1)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .arg("XX")
            .query(&mut self.conn)?;
        Ok(reply.is_some())
    }

    /// Rooms where `origin` has members in Redis.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn rooms_of(&mut self, origin: &str) -> RedisResult<Vec<String>> {
        let keys = self.scan(&keys::on_node_pattern(origin), "set")?;
        Ok(keys.iter().filter_map(|k| keys::room_of_on_node(k, origin)).map(str::to_string).collect())
    }

    /// Makes `origin`'s members in Redis exactly `local` (every room `origin` has in Redis and every
    /// room of `local`), publishing the presence changes that follow; returns how many changed.
    ///
    /// # Errors
    /// A Redis error or [`ClusterError::Reply`].
    pub(crate) fn sync_members(
        &mut self,
        origin: &str,
        local: &HashMap<Arc<str>, HashSet<Arc<str>>>,
    ) -> Result<u64, ClusterError> {
        let mut rooms: HashSet<String> = self.rooms_of(origin)?.into_iter().collect();
        rooms.extend(local.keys().map(|r| r.to_string()));
        if rooms.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for room in &rooms {
            let users: Vec<&str> = local.get(room.as_str()).map_or_else(Vec::new, |u| u.iter().map(|u| &**u).collect());
            self.presence_cmd(&mut pipe, room, origin, "s", &users);
        }
        count_changes(pipe.query(&mut self.conn)?)
    }

    /// Removes every member of `origin` from Redis (a clean shutdown).
    ///
    /// # Errors
    /// A Redis error or [`ClusterError::Reply`].
    pub(crate) fn deregister(&mut self, origin: &str) -> Result<u64, ClusterError> {
        let changed = self.sync_members(origin, &HashMap::new())?;
        redis::pipe()
            .cmd("DEL")
            .arg(keys::heartbeat(origin))
            .ignore()
            .cmd("DEL")
            .arg(keys::user_conns(origin))
            .ignore()
            .cmd("DEL")
            .arg(keys::user_rows(origin))
            .ignore()
            .cmd("SREM")
            .arg(keys::NODES)
            .arg(origin)
            .ignore()
            .query::<()>(&mut self.conn)?;
        Ok(changed)
    }

    /// Reaps every registered incarnation but `own` whose heartbeat expired: its members leave (the
    /// script publishes each `leave` once, whichever survivor gets there first) and it is unregistered.
    /// Returns the incarnations reaped.
    ///
    /// # Errors
    /// A Redis error or [`ClusterError::Reply`].
    pub(crate) fn reap_dead(&mut self, own: &str) -> Result<Vec<String>, ClusterError> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(keys::NODES).query(&mut self.conn)?;
        let mut reaped = Vec::new();
        for origin in nodes.into_iter().filter(|o| o != own) {
            let alive: bool = redis::cmd("EXISTS").arg(keys::heartbeat(&origin)).query(&mut self.conn)?;
            if alive {
                continue;
            }
            let rooms = self.rooms_of(&origin)?;
            if !rooms.is_empty() {
                let mut pipe = redis::pipe();
                for room in &rooms {
                    self.presence_cmd(&mut pipe, room, &origin, "r", &[]);
                }
                count_changes(pipe.query(&mut self.conn)?)?;
            }
            // Unregister only if it did not come back meanwhile (then it resyncs by itself).
            let alive: bool = redis::cmd("EXISTS").arg(keys::heartbeat(&origin)).query(&mut self.conn)?;
            if !alive {
                redis::cmd("SREM").arg(keys::NODES).arg(&origin).query::<()>(&mut self.conn)?;
                reaped.push(origin);
            }
        }
        Ok(reaped)
    }

    /// Every room's cluster-wide users.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn membership_snapshot(&mut self) -> RedisResult<Snapshot> {
        let mut snapshot = Snapshot::new();
        for key in self.scan(keys::USERS_PATTERN, "hash")? {
            let Some(room) = keys::room_of_users(&key) else { continue };
            let users: Vec<String> = redis::cmd("HKEYS").arg(&key).query(&mut self.conn)?;
            if !users.is_empty() {
                snapshot.insert(Arc::from(room), users.into_iter().map(Arc::from).collect());
            }
        }
        Ok(snapshot)
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Sums the presence script's answers in a pipeline reply.
fn count_changes(replies: Vec<Value>) -> Result<u64, ClusterError> {
    replies.into_iter().try_fold(0u64, |sum, reply| match reply {
        Value::Int(n) => Ok(sum + u64::try_from(n).unwrap_or(0)),
        _ => Err(ClusterError::Reply("presence script did not answer a number")),
    })
}
