//! Open connections per client IP address (`--max-conns-per-ip`).
//!
//! The acceptor takes an [`IpSlot`] for every connection; the slot knows whether the address was over
//! its limit (then the session answers 429) and gives its count back when it is dropped with the
//! connection, whatever the path that reaped it. With the limit off no slot is counted and no lock is
//! taken. Behind a reverse proxy every client has the proxy's address, so leave the limit off there.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// Connection counts per address, shared by the acceptor (takes) and the shards (drop slots).
#[derive(Debug, Default)]
pub(crate) struct PerIpLimiter {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIpLimiter {
    /// A limiter allowing `max` connections per address; 0 turns it off.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(PerIpLimiter { max, counts: Mutex::new(HashMap::new()) })
    }

    /// Counts one more connection from `ip`.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> IpSlot {
        if self.max == 0 {
            return IpSlot::untracked();
        }
        let mut counts = self.counts.lock();
        let count = counts.entry(ip).or_insert(0);
        *count += 1;
        IpSlot { held: Some((Arc::clone(self), ip)), over_limit: *count > self.max }
    }

    /// Connections counted for `ip` right now.
    #[cfg(test)]
    pub(crate) fn count(&self, ip: IpAddr) -> usize {
        self.counts.lock().get(&ip).copied().unwrap_or(0)
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }
}

/// One connection's share of its address's count; released on drop.
#[derive(Debug, Default)]
pub(crate) struct IpSlot {
    held: Option<(Arc<PerIpLimiter>, IpAddr)>,
    over_limit: bool,
}

impl IpSlot {
    /// A slot that counts nothing (limit off).
    pub(crate) fn untracked() -> Self {
        IpSlot::default()
    }

    /// Whether the address already had `max` connections when this one arrived.
    pub(crate) fn over_limit(&self) -> bool {
        self.over_limit
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some((limiter, ip)) = self.held.take() {
            limiter.release(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_releases_on_drop() {
        let limiter = PerIpLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let s1 = limiter.acquire(a);
        let s2 = limiter.acquire(a);
        let s3 = limiter.acquire(a);
        assert!(!s1.over_limit() && !s2.over_limit() && s3.over_limit());
        assert!(!limiter.acquire(b).over_limit(), "other addresses are counted apart");
        drop((s1, s3));
        assert_eq!(limiter.count(a), 1);
        assert!(!limiter.acquire(a).over_limit());
        drop(s2);
        assert_eq!(limiter.count(a), 0);
        assert!(limiter.counts.lock().is_empty(), "no entry is kept for an address with no connection");
    }

    #[test]
    fn zero_turns_it_off() {
        let limiter = PerIpLimiter::new(0);
        let ip: IpAddr = "::1".parse().expect("ip");
        let slots: Vec<_> = (0..100).map(|_| limiter.acquire(ip)).collect();
        assert!(slots.iter().all(|s| !s.over_limit()));
        assert_eq!(limiter.count(ip), 0);
    }
}
