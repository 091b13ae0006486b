//! `Idempotency-Key`: the first request with a key publishes; every other one with the same key
//! within [`WINDOW_MS`] gets the first one's id and publishes nothing.
//!
//! Two requests with one key at the same time: the first [`Idempotency::claim`] wins (`New`) and
//! publishes; the others join it as waiters (`Joined`) and are answered with its id when it
//! completes, so exactly one publish happens whatever the interleaving. The key is written to the
//! store (`api_idempotency`) before anyone is answered, so a retry after a restart finds it too.
//! Bounded: at most [`MAX_KEYS`] keys; when full, expired keys are dropped, and if none has expired
//! the request is refused (503) rather than remembered partly.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::types::ConnRef;

/// How long a key is remembered: 10 minutes.
pub(crate) const WINDOW_MS: i64 = 10 * 60 * 1000;
/// Keys remembered at most.
pub(crate) const MAX_KEYS: usize = 100_000;
/// Longest key, in bytes.
pub(crate) const MAX_KEY_BYTES: usize = 255;

/// A request waiting for a key's first publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiter {
    /// The HTTP connection to answer.
    pub(crate) conn: ConnRef,
    /// Whether it stays open after the answer.
    pub(crate) keep_alive: bool,
}

#[derive(Debug)]
enum Entry {
    Pending { waiters: Vec<Waiter>, at_ms: i64 },
    Done { id: u64, at_ms: i64 },
}

impl Entry {
    fn at_ms(&self) -> i64 {
        match self {
            Entry::Pending { at_ms, .. } | Entry::Done { at_ms, .. } => *at_ms,
        }
    }
}

/// What [`Idempotency::claim`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// First with this key: publish, then [`Idempotency::complete`] (the caller is the first waiter).
    New,
    /// Already published with this id: answer it, publish nothing.
    Done(u64),
    /// Being published by an earlier request: the caller was added as a waiter.
    Joined,
    /// [`MAX_KEYS`] keys in the window: refuse.
    Full,
}

/// The keys within the window.
#[derive(Debug, Default)]
pub(crate) struct Idempotency {
    entries: Mutex<HashMap<String, Entry>>,
}

/// Whether `key` is an acceptable key: 1 to [`MAX_KEY_BYTES`] visible ASCII characters.
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && key.bytes().all(|b| b.is_ascii_graphic())
}

impl Idempotency {
    /// Keys already stored (at start, from the store).
    pub(crate) fn load(keys: impl IntoIterator<Item = (String, u64, i64)>) -> Idempotency {
        let entries = keys.into_iter().map(|(key, id, at_ms)| (key, Entry::Done { id, at_ms })).collect();
        Idempotency { entries: Mutex::new(entries) }
    }

    /// Claims `key` for `waiter` at `now_ms`.
    pub(crate) fn claim(&self, key: &str, waiter: Waiter, now_ms: i64) -> Claim {
        let mut entries = self.entries.lock();
        match entries.get_mut(key) {
            Some(Entry::Done { id, at_ms }) if *at_ms > now_ms - WINDOW_MS => return Claim::Done(*id),
            Some(Entry::Pending { waiters, .. }) => {
                waiters.push(waiter);
                return Claim::Joined;
            }
            _ => {}
        }
        if entries.len() >= MAX_KEYS && !entries.contains_key(key) {
            entries.retain(|_, e| matches!(e, Entry::Pending { .. }) || e.at_ms() > now_ms - WINDOW_MS);
            if entries.len() >= MAX_KEYS {
                return Claim::Full;
            }
        }
        entries.insert(key.to_string(), Entry::Pending { waiters: vec![waiter], at_ms: now_ms });
        Claim::New
    }

    /// `key`'s publish got `id`: remembered, and its waiters (the claimer first) returned.
    pub(crate) fn complete(&self, key: &str, id: u64) -> Vec<Waiter> {
        let mut entries = self.entries.lock();
        let (waiters, at_ms) = match entries.remove(key) {
            Some(Entry::Pending { waiters, at_ms }) => (waiters, at_ms),
            Some(Entry::Done { at_ms, .. }) => (Vec::new(), at_ms),
            None => (Vec::new(), crate::protocol::json::now_millis()),
        };
        entries.insert(key.to_string(), Entry::Done { id, at_ms });
        waiters
    }

    /// `key`'s publish failed: forgotten (a retry publishes), its waiters returned.
    pub(crate) fn abandon(&self, key: &str) -> Vec<Waiter> {
        match self.entries.lock().remove(key) {
            Some(Entry::Pending { waiters, .. }) => waiters,
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(key: usize) -> Waiter {
        Waiter { conn: ConnRef { shard: 0, key, serial: key as u64 }, keep_alive: true }
    }

    #[test]
    fn one_publish_per_key_whatever_the_interleaving() {
        let idem = Idempotency::default();
        assert_eq!(idem.claim("k", waiter(1), 0), Claim::New);
        assert_eq!(idem.claim("k", waiter(2), 1), Claim::Joined, "concurrent: waits for the first");
        assert_eq!(idem.complete("k", 42), vec![waiter(1), waiter(2)]);
        assert_eq!(idem.claim("k", waiter(3), 2), Claim::Done(42));
        assert_eq!(idem.claim("k", waiter(3), WINDOW_MS + 1), Claim::New, "expired");
        assert_eq!(idem.abandon("k"), vec![waiter(3)]);
        assert_eq!(idem.claim("k", waiter(4), WINDOW_MS + 2), Claim::New, "a failed publish is retried");
    }

    #[test]
    fn keys_from_the_store_are_remembered_and_keys_are_checked() {
        let idem = Idempotency::load([("old".to_string(), 7, 100)]);
        assert_eq!(idem.claim("old", waiter(1), 200), Claim::Done(7));
        assert!(valid_key("a-b_c.1"));
        assert!(!valid_key("") && !valid_key("a b") && !valid_key(&"x".repeat(256)) && !valid_key("é"));
    }
}
