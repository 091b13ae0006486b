//! Single-writer counter and gauge: one relaxed load and one relaxed store per update.
//!
//! A `fetch_add` would be a locked read-modify-write on x86; with one writing thread per cell a plain
//! load + store is exact and costs no more than an ordinary add. Readers (the scrape) see a recent value.
//! Calling the update methods from two threads at once is not undefined behaviour but may lose updates,
//! so every cell has one owner (documented on the struct holding it).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count, updated by one thread.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (owner thread only).
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one (owner thread only).
    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    /// The current value (any thread).
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, updated by one thread.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `n`, which may be negative (owner thread only).
    #[inline]
    pub(crate) fn add(&self, n: i64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Replaces the value (owner thread only).
    #[inline]
    pub(crate) fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value (any thread).
    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_and_gauge_add_up() {
        let c = Counter::default();
        c.inc();
        c.add(41);
        assert_eq!(c.get(), 42);
        let g = Gauge::default();
        g.add(3);
        g.add(-5);
        assert_eq!(g.get(), -2);
    }
}
