//! Constant-rate send schedule (wrk2 style): every sender owns a fixed timeline of intended send
//! times, independent of how fast the server answers, so latency includes queueing delay.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Intended send times for `senders` senders sharing `rate` messages/s in total, spread evenly:
/// sender `i` sends message `k` at `start + i*gap + k*senders*gap` with `gap = 1/rate`.
#[derive(Debug, Clone)]
pub struct Schedule {
    start_ns: u64,
    gap_ns: f64,
    senders: u64,
}

impl Schedule {
    pub fn new(start_ns: u64, rate: f64, senders: u32) -> Schedule {
        let gap_ns = if rate > 0.0 { 1e9 / rate } else { f64::INFINITY };
        Schedule { start_ns, gap_ns, senders: senders.max(1) as u64 }
    }

    /// Intended time of message `seq` of `sender`.
    pub fn intended(&self, sender: u32, seq: u64) -> u64 {
        let slot = sender as u64 + seq * self.senders;
        let off = slot as f64 * self.gap_ns;
        if off.is_finite() { self.start_ns + off as u64 } else { u64::MAX }
    }
}

/// The senders one worker owns, ordered by their next due time.
#[derive(Debug, Default)]
pub struct Due {
    heap: BinaryHeap<Reverse<(u64, u32, u64)>>,
}

impl Due {
    /// Adds a sender (global id) starting at sequence 0.
    pub fn add(&mut self, sched: &Schedule, sender: u32) {
        self.heap.push(Reverse((sched.intended(sender, 0), sender, 0)));
    }

    /// Next due time, if any.
    pub fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|r| r.0.0)
    }

    /// Pops one send due at or before `now`, returning `(sender, seq, intended)` and
    /// rescheduling the sender's next message if it is before `end_ns`.
    pub fn pop_due(&mut self, sched: &Schedule, now: u64, end_ns: u64) -> Option<(u32, u64, u64)> {
        let &Reverse((t, sender, seq)) = self.heap.peek()?;
        if t > now {
            return None;
        }
        self.heap.pop();
        let next = sched.intended(sender, seq + 1);
        if next < end_ns {
            self.heap.push(Reverse((next, sender, seq + 1)));
        }
        Some((sender, seq, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_spread_evenly_and_rate_is_exact() {
        // 4 senders, 1000 msgs/s total: one message every 1 ms overall.
        let s = Schedule::new(10, 1000.0, 4);
        assert_eq!(s.intended(0, 0), 10);
        assert_eq!(s.intended(1, 0), 10 + 1_000_000);
        assert_eq!(s.intended(3, 0), 10 + 3_000_000);
        assert_eq!(s.intended(0, 1), 10 + 4_000_000);
        let mut due = Due::default();
        for i in 0..4 {
            due.add(&s, i);
        }
        let end = 10 + 1_000_000_000; // one second
        let mut n = 0;
        let mut last = 0;
        while let Some((_, _, t)) = due.pop_due(&s, u64::MAX, end) {
            assert!(t >= last, "intended times come out in order");
            last = t;
            n += 1;
        }
        assert_eq!(n, 1000);
    }

    #[test]
    fn nothing_is_due_before_its_time() {
        let s = Schedule::new(0, 10.0, 1);
        let mut due = Due::default();
        due.add(&s, 0);
        assert_eq!(due.pop_due(&s, 0, u64::MAX), Some((0, 0, 0)));
        assert_eq!(due.pop_due(&s, 99_999_999, u64::MAX), None);
        assert_eq!(due.next_due(), Some(100_000_000));
        assert_eq!(due.pop_due(&s, 100_000_000, u64::MAX), Some((0, 1, 100_000_000)));
    }
}
