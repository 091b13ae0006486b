//! This node's users for the other nodes' server API listings, in Redis: the hash
//! `rc:listing:<origin>` (user → its [`NodeUser`] JSON: connections and rooms on this node),
//! expiring with the heartbeat, so a node that dies takes its rows with it within 5 s.
//!
//! The publisher writes it at every heartbeat (1 s), only what changed since the last one (it keeps
//! a hash of each row it wrote), and while the users' generation has not moved (no connection or
//! membership came or went) it does not even build the rows: the heartbeat then costs one `PEXPIRE`
//! whatever the number of users. A key that had expired or vanished (Redis restarted, or this node
//! stalled past the expiry) is written whole again. The listing thread (`super::listing`) reads the
//! other registered nodes' rows when a listing asks. The rows are up to a heartbeat old.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use redis::RedisResult;

use super::keys;
use super::redis_link::RedisLink;
use crate::protocol::api::NodeUser;

/// What this node last wrote: user → hash of the row, and the users' generation it was built at.
#[derive(Debug, Default)]
pub(crate) struct RowsWritten {
    rows: HashMap<String, u64>,
    generation: Option<u64>,
}

impl RowsWritten {
    /// Forgets what was written (the next write is whole).
    pub(crate) fn forget(&mut self) {
        self.rows.clear();
        self.generation = None;
    }
}

/// This node's rows to write: the users' generation when they were asked for (read before they
/// are built, so a change during the build shows as a new generation at the next heartbeat; `None`:
/// always build), and how to build them.
pub(crate) struct Users<F> {
    pub(crate) generation: Option<u64>,
    pub(crate) build: F,
}

impl RedisLink {
    /// Makes `origin`'s rows `users`, writing what changed since `written` (all of it when the key
    /// is gone), expiring after `ttl`; builds them only when their generation moved since `written`
    /// or the key was gone.
    ///
    /// # Errors
    /// The Redis error (`written` is then forgotten: the next write is whole).
    pub(crate) fn write_user_rows(
        &mut self,
        origin: &str,
        users: Users<impl FnOnce() -> Vec<NodeUser>>,
        written: &mut RowsWritten,
        ttl: Duration,
    ) -> RedisResult<()> {
        let result = self.write_rows(origin, users, written, ttl);
        if result.is_err() {
            written.forget();
        }
        result
    }

    fn write_rows(
        &mut self,
        origin: &str,
        users: Users<impl FnOnce() -> Vec<NodeUser>>,
        written: &mut RowsWritten,
        ttl: Duration,
    ) -> RedisResult<()> {
        let key = keys::user_rows(origin);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let kept: bool = redis::cmd("PEXPIRE").arg(&key).arg(ttl_ms).query(&mut self.conn)?;
        if !kept {
            written.forget();
        }
        if users.generation.is_some() && written.generation == users.generation {
            return Ok(());
        }
        let generation = users.generation;
        let rows = (users.build)();
        let mut now: HashMap<String, u64> = HashMap::with_capacity(rows.len());
        let mut changed: Vec<(&str, String)> = Vec::new();
        for user in &rows {
            let json = serde_json::to_string(user).unwrap_or_default();
            let mut hasher = DefaultHasher::new();
            json.hash(&mut hasher);
            let hash = hasher.finish();
            if written.rows.get(&user.user) != Some(&hash) {
                changed.push((&user.user, json));
            }
            now.insert(user.user.clone(), hash);
        }
        let gone: Vec<&String> = written.rows.keys().filter(|u| !now.contains_key(*u)).collect();
        if changed.is_empty() && gone.is_empty() {
            written.generation = generation;
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        if !gone.is_empty() {
            pipe.cmd("HDEL").arg(&key).arg(&gone).ignore();
        }
        if !changed.is_empty() {
            pipe.cmd("HSET").arg(&key);
            for (user, json) in &changed {
                pipe.arg(*user).arg(json);
            }
            pipe.ignore().cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
        }
        pipe.query::<()>(&mut self.conn)?;
        written.rows = now;
        written.generation = generation;
        Ok(())
    }

    /// The rows of every registered node but `origin`: `user`'s only, or everyone's. A row that does
    /// not parse (another version) is skipped and logged.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn read_user_rows(&mut self, origin: &str, user: Option<&str>) -> RedisResult<Vec<NodeUser>> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(keys::NODES).query(&mut self.conn)?;
        let others: Vec<&String> = nodes.iter().filter(|n| n.as_str() != origin).collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in &others {
            match user {
                Some(user) => pipe.cmd("HGET").arg(keys::user_rows(node)).arg(user),
                None => pipe.cmd("HVALS").arg(keys::user_rows(node)),
            };
        }
        let rows: Vec<Vec<String>> = match user {
            Some(_) => pipe
                .query::<Vec<Option<String>>>(&mut self.conn)?
                .into_iter()
                .map(|r| r.into_iter().collect())
                .collect(),
            None => pipe.query(&mut self.conn)?,
        };
        Ok(rows
            .iter()
            .flatten()
            .filter_map(|json| {
                serde_json::from_str::<NodeUser>(json)
                    .inspect_err(|err| tracing::warn!(%err, "cluster: a node's listing row did not parse; skipped"))
                    .ok()
            })
            .collect())
    }
}
