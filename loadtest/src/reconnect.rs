//! Reconnect timing for the avalanche: the first attempt after a drop is spread uniformly over the
//! jitter window; a failed attempt waits like the web client (static/app.js `scheduleReconnect`): the
//! nth retry waits a random time between half and all of min(15 s, 500 ms × 2ⁿ).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// app.js `BACKOFF_BASE_MS`.
pub const BACKOFF_BASE_NS: u64 = 500_000_000;
/// app.js `BACKOFF_MAX_MS`.
pub const BACKOFF_MAX_NS: u64 = 15_000_000_000;

/// A small xorshift generator (jitter needs no quality, only spread).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 { 0 } else { self.0 % n }
    }
}

/// Delay before retry number `attempt` (0 = the first retry after a failed attempt).
pub fn backoff_ns(attempt: u32, rng: &mut Rng) -> u64 {
    let ceiling = BACKOFF_BASE_NS.saturating_mul(1u64 << attempt.min(20)).min(BACKOFF_MAX_NS);
    ceiling / 2 + rng.below(ceiling / 2 + 1)
}

/// Slots waiting to reconnect, earliest first.
#[derive(Debug, Default)]
pub struct RetryQueue {
    heap: BinaryHeap<Reverse<(u64, usize)>>,
}

impl RetryQueue {
    pub fn push(&mut self, at_ns: u64, slot: usize) {
        self.heap.push(Reverse((at_ns, slot)));
    }

    pub fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|r| r.0.0)
    }

    /// The next slot due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, usize)> {
        let &Reverse((t, slot)) = self.heap.peek()?;
        if t > now {
            return None;
        }
        self.heap.pop();
        Some((t, slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_web_client() {
        let mut rng = Rng::new(42);
        for _ in 0..1000 {
            let d0 = backoff_ns(0, &mut rng);
            assert!((250_000_000..=500_000_000).contains(&d0), "{d0}");
            let d3 = backoff_ns(3, &mut rng);
            assert!((2_000_000_000..=4_000_000_000).contains(&d3), "{d3}");
            let d9 = backoff_ns(9, &mut rng);
            assert!((7_500_000_000..=15_000_000_000).contains(&d9), "{d9}");
        }
        assert!(backoff_ns(u32::MAX, &mut rng) <= BACKOFF_MAX_NS);
    }

    #[test]
    fn retry_queue_pops_in_time_order() {
        let mut q = RetryQueue::default();
        q.push(30, 1);
        q.push(10, 2);
        q.push(20, 3);
        assert_eq!(q.next_due(), Some(10));
        assert_eq!(q.pop_due(25), Some((10, 2)));
        assert_eq!(q.pop_due(25), Some((20, 3)));
        assert_eq!(q.pop_due(25), None);
        assert_eq!(q.next_due(), Some(30));
    }
}
