//! Token revocations in force, in memory (the store's `api_revocations` makes them survive a
//! restart: loaded at start, written by the control thread).
//!
//! `POST /api/users/{user}/revoke` refuses every token of the user issued before that moment, by
//! its `iat` claim, at the upgrade and at an in-band `refresh`. `iat` has a resolution of one
//! second, so a token is refused when its `iat` second is not after the revocation's second (a
//! token issued in the same second as the revocation is refused too: issue the new one a second
//! later). A token without `iat` cannot show it is newer: it is refused for as long as a
//! revocation of its user is kept (always: see `store::control`). Looked up on every upgrade: with
//! none in force the check is one relaxed atomic load.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

/// User → tokens issued before this (ms since the epoch) are refused.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    before: RwLock<HashMap<Arc<str>, i64>>,
    /// Whether `before` holds any entry (the fast path's "none").
    any: AtomicBool,
}

impl Revocations {
    /// Refuses `user`'s tokens issued before `before_ms` (a later revocation only ever raises it).
    pub(crate) fn revoke(&self, user: &str, before_ms: i64) {
        let mut before = self.before.write();
        let at = before.entry(Arc::from(user)).or_insert(before_ms);
        *at = (*at).max(before_ms);
        self.any.store(true, Ordering::Relaxed);
    }

    /// Before when `user`'s tokens are refused, if they are.
    pub(crate) fn before(&self, user: &str) -> Option<i64> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        self.before.read().get(user).copied()
    }

    /// Whether a token of `user` issued at `iat` (seconds since the epoch; `None`: no `iat` claim)
    /// is revoked.
    pub(crate) fn refuses(&self, user: &str, iat: Option<u64>) -> bool {
        if !self.any.load(Ordering::Relaxed) {
            return false;
        }
        let Some(&before_ms) = self.before.read().get(user) else { return false };
        match iat {
            None => true,
            Some(iat) => i64::try_from(iat).is_ok_and(|iat| iat <= before_ms.div_euclid(1000)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_issued_up_to_the_revocation_second_are_refused() {
        let r = Revocations::default();
        assert!(!r.refuses("al", None), "nothing revoked: no iat is fine");
        r.revoke("al", 10_500);
        assert!(r.refuses("al", Some(9)) && r.refuses("al", Some(10)), "the same second is refused too");
        assert!(!r.refuses("al", Some(11)));
        assert!(r.refuses("al", None), "no iat: refused while a revocation is kept");
        assert!(!r.refuses("bo", None) && !r.refuses("bo", Some(1)), "another user");
        r.revoke("al", 5_000);
        assert!(r.refuses("al", Some(10)), "an older revocation does not lower it");
        r.revoke("al", 20_000);
        assert!(r.refuses("al", Some(11)) && !r.refuses("al", Some(21)));
    }
}
