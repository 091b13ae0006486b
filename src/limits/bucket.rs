//! A token bucket: `rate` tokens per second refill it up to `burst`; taking more than it holds fails.
//!
//! O(1) and allocation-free; the caller passes the current time (one `Instant::now()` per read batch
//! serves every frame of that batch).

use std::time::Instant;

/// A token bucket that starts full.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens at `now`.
    pub(crate) fn full(burst: f64, now: Instant) -> Self {
        TokenBucket { tokens: burst, last: now }
    }

    /// Refills for the time since the last call, then takes `cost` tokens if there are that many.
    /// A `cost` above `burst` can never be paid and always fails.
    pub(crate) fn try_take(&mut self, now: Instant, rate: f64, burst: f64, cost: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_refill_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(3.0, t0);
        assert!((0..3).all(|_| b.try_take(t0, 1.0, 3.0, 1.0)));
        assert!(!b.try_take(t0, 1.0, 3.0, 1.0), "empty after the burst");
        let t1 = t0 + Duration::from_millis(1500);
        assert!(b.try_take(t1, 1.0, 3.0, 1.0), "one token back after a second and a half");
        assert!(!b.try_take(t1, 1.0, 3.0, 1.0), "half a token is not enough");
        let t2 = t1 + Duration::from_secs(100);
        assert!((0..3).all(|_| b.try_take(t2, 1.0, 3.0, 1.0)), "refill is capped at the burst");
        assert!(!b.try_take(t2, 1.0, 3.0, 1.0));
    }

    #[test]
    fn costs_above_the_burst_never_pass_and_time_going_backwards_is_harmless() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(10.0, t0 + Duration::from_secs(1));
        assert!(!b.try_take(t0, 5.0, 10.0, 11.0));
        assert!(b.try_take(t0, 5.0, 10.0, 10.0), "an earlier `now` neither refills nor panics");
    }
}
