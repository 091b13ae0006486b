//! Bans and mutes in force, in memory (the store's `api_bans` / `api_mutes` make them survive a
//! restart: loaded at start, written by the control thread).
//!
//! Looked up on every chat message (mutes) and every upgrade (bans): with none in force the check is
//! one relaxed atomic load; otherwise a read lock and a lookup by `&str`, no allocation. Expired
//! entries count as absent and are dropped at the next change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

/// The mutes of one room: user → expiry.
type RoomMutes = HashMap<Arc<str>, i64>;

/// Bans and mutes, each with its expiry (ms since the epoch).
#[derive(Debug, Default)]
pub(crate) struct Moderation {
    bans: RwLock<HashMap<Arc<str>, i64>>,
    /// Room → user → expiry.
    mutes: RwLock<HashMap<Arc<str>, RoomMutes>>,
    /// Entries in `bans` plus entries in `mutes` (the fast path's "none").
    entries: AtomicUsize,
}

impl Moderation {
    fn recount(&self, bans: usize, mutes: usize) {
        self.entries.store(bans + mutes, Ordering::Relaxed);
    }

    fn counts(&self) -> (usize, usize) {
        let mutes = self.mutes.read().values().map(HashMap::len).sum();
        (self.bans.read().len(), mutes)
    }

    /// Until when `user` is banned, if they are at `now_ms`.
    pub(crate) fn banned_until(&self, user: &str, now_ms: i64) -> Option<i64> {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.bans.read().get(user).copied().filter(|&until| until > now_ms)
    }

    /// Until when `user` is muted in `room`, if they are at `now_ms()` (asked only when some ban or
    /// mute is in force: the hot path reads no clock).
    pub(crate) fn muted_until(&self, room: &str, user: &str, now_ms: impl FnOnce() -> i64) -> Option<i64> {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let until = self.mutes.read().get(room).and_then(|users| users.get(user)).copied()?;
        (until > now_ms()).then_some(until)
    }

    /// Bans `user` until `until_ms` (replacing an earlier ban); drops expired bans.
    pub(crate) fn ban(&self, user: &str, until_ms: i64, now_ms: i64) {
        let mut bans = self.bans.write();
        bans.retain(|_, until| *until > now_ms);
        bans.insert(Arc::from(user), until_ms);
        let n = bans.len();
        drop(bans);
        self.recount(n, self.counts().1);
    }

    /// Lifts `user`'s ban; returns whether one was in force.
    pub(crate) fn unban(&self, user: &str, now_ms: i64) -> bool {
        let mut bans = self.bans.write();
        let lifted = bans.remove(user).is_some_and(|until| until > now_ms);
        let n = bans.len();
        drop(bans);
        self.recount(n, self.counts().1);
        lifted
    }

    /// Mutes `user` in `room` until `until_ms`; drops expired mutes.
    pub(crate) fn mute(&self, room: &str, user: &str, until_ms: i64, now_ms: i64) {
        let mut mutes = self.mutes.write();
        for users in mutes.values_mut() {
            users.retain(|_, until| *until > now_ms);
        }
        mutes.retain(|_, users| !users.is_empty());
        mutes.entry(Arc::from(room)).or_default().insert(Arc::from(user), until_ms);
        let n = mutes.values().map(HashMap::len).sum();
        drop(mutes);
        self.recount(self.counts().0, n);
    }

    /// Lifts `user`'s mute in `room`; returns whether one was in force.
    pub(crate) fn unmute(&self, room: &str, user: &str, now_ms: i64) -> bool {
        let mut mutes = self.mutes.write();
        let lifted = mutes.get_mut(room).and_then(|users| users.remove(user)).is_some_and(|until| until > now_ms);
        mutes.retain(|_, users| !users.is_empty());
        let n = mutes.values().map(HashMap::len).sum();
        drop(mutes);
        self.recount(self.counts().0, n);
        lifted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_and_mutes_expire_and_lift() {
        let m = Moderation::default();
        assert_eq!(m.banned_until("al", 0), None);
        m.ban("al", 100, 0);
        assert_eq!(m.banned_until("al", 50), Some(100));
        assert_eq!(m.banned_until("al", 100), None, "expired");
        assert_eq!(m.banned_until("bo", 50), None);
        assert!(m.unban("al", 50));
        assert!(!m.unban("al", 50));
        m.mute("r", "al", 100, 0);
        assert_eq!(m.muted_until("r", "al", || 10), Some(100));
        assert_eq!(m.muted_until("r", "al", || 100), None, "expired");
        assert_eq!(m.muted_until("s", "al", || 10), None, "another room");
        assert!(m.unmute("r", "al", 10));
        assert_eq!(m.muted_until("r", "al", || 10), None);
        assert_eq!(m.entries.load(Ordering::Relaxed), 0);
    }
}
