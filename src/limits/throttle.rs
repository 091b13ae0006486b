//! Per-connection rate limits: a message bucket (`--rate-limit`/`--rate-burst`) and a payload-byte bucket
//! (`--rate-limit-bytes`, bursts of two seconds' worth), plus the flood rule.
//!
//! A message over either limit is refused (`rate_limited`, not delivered). A client refused more than
//! [`FLOOD_WARNINGS`] times within [`FLOOD_WINDOW`] keeps flooding despite the warnings and is closed
//! with 1008. Checking is O(1), allocation-free and syscall-free: the caller passes `now`.

use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
use crate::config::Config;

/// Refusals (each answered with a `rate_limited` error) tolerated within [`FLOOD_WINDOW`]; one more
/// closes the connection with 1008.
pub(crate) const FLOOD_WARNINGS: u32 = 10;
/// The window over which refusals are counted.
pub(crate) const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// The configured rates; a rate of 0 turns its bucket off (the default: no limits).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct RateLimits {
    /// Messages per second.
    pub(crate) messages_per_sec: f64,
    /// Messages in a burst.
    pub(crate) message_burst: f64,
    /// Payload bytes per second.
    pub(crate) bytes_per_sec: f64,
    /// Payload bytes in a burst: two seconds' worth, and never less than one largest frame.
    pub(crate) byte_burst: f64,
}

impl RateLimits {
    /// The limits `cfg` asks for.
    pub(crate) fn from_config(cfg: &Config) -> Self {
        let bytes = cfg.rate_limit_bytes as f64;
        RateLimits {
            messages_per_sec: f64::from(cfg.rate_limit),
            message_burst: f64::from(cfg.rate_burst.max(1)),
            bytes_per_sec: bytes,
            byte_burst: (2.0 * bytes).max(cfg.max_json_frame_bytes() as f64),
        }
    }

    /// Whether any limit is on.
    pub(crate) fn enabled(&self) -> bool {
        self.messages_per_sec > 0.0 || self.bytes_per_sec > 0.0
    }
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limits: handle it.
    Allow,
    /// Over a limit: drop it and answer `rate_limited`.
    Refuse,
    /// Over a limit once too often: close the connection with 1008.
    Close,
}

/// One connection's buckets and warning count.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    messages: TokenBucket,
    bytes: TokenBucket,
    warnings: u32,
    window_start: Instant,
}

impl Throttle {
    /// Full buckets at `now`.
    pub(crate) fn new(limits: &RateLimits, now: Instant) -> Self {
        Throttle {
            messages: TokenBucket::full(limits.message_burst, now),
            bytes: TokenBucket::full(limits.byte_burst, now),
            warnings: 0,
            window_start: now,
        }
    }

    /// Charges one message of `payload_len` bytes received at `now`.
    pub(crate) fn check(&mut self, limits: &RateLimits, now: Instant, payload_len: usize) -> Verdict {
        let message_ok = limits.messages_per_sec <= 0.0
            || self.messages.try_take(now, limits.messages_per_sec, limits.message_burst, 1.0);
        let bytes_ok = !message_ok
            || limits.bytes_per_sec <= 0.0
            || self.bytes.try_take(now, limits.bytes_per_sec, limits.byte_burst, payload_len as f64);
        if message_ok && bytes_ok {
            return Verdict::Allow;
        }
        if now.saturating_duration_since(self.window_start) > FLOOD_WINDOW {
            self.window_start = now;
            self.warnings = 0;
        }
        self.warnings += 1;
        if self.warnings > FLOOD_WARNINGS { Verdict::Close } else { Verdict::Refuse }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(messages: f64, burst: f64, bytes: f64) -> RateLimits {
        RateLimits { messages_per_sec: messages, message_burst: burst, bytes_per_sec: bytes, byte_burst: 2.0 * bytes }
    }

    #[test]
    fn refuses_over_the_burst_then_closes_a_flooder() {
        let l = limits(20.0, 40.0, 0.0);
        let now = Instant::now();
        let mut t = Throttle::new(&l, now);
        assert!((0..40).all(|_| t.check(&l, now, 10) == Verdict::Allow));
        for _ in 0..FLOOD_WARNINGS {
            assert_eq!(t.check(&l, now, 10), Verdict::Refuse);
        }
        assert_eq!(t.check(&l, now, 10), Verdict::Close);
    }

    #[test]
    fn warnings_expire_with_the_window() {
        let l = limits(1.0, 1.0, 0.0);
        let t0 = Instant::now();
        let mut t = Throttle::new(&l, t0);
        assert_eq!(t.check(&l, t0, 1), Verdict::Allow);
        for _ in 0..FLOOD_WARNINGS {
            assert_eq!(t.check(&l, t0, 1), Verdict::Refuse);
        }
        let later = t0 + FLOOD_WINDOW + Duration::from_secs(1);
        assert_eq!(t.check(&l, later, 1), Verdict::Allow, "refilled");
        assert_eq!(t.check(&l, later, 1), Verdict::Refuse, "a new window starts counting from zero");
    }

    #[test]
    fn byte_limit_and_off_switches() {
        let l = limits(0.0, 1.0, 1000.0);
        let now = Instant::now();
        let mut t = Throttle::new(&l, now);
        assert_eq!(t.check(&l, now, 1500), Verdict::Allow);
        assert_eq!(t.check(&l, now, 600), Verdict::Refuse, "2000-byte burst spent");
        let off = limits(0.0, 1.0, 0.0);
        assert!(!off.enabled());
        let mut t = Throttle::new(&off, now);
        assert!((0..10_000).all(|_| t.check(&off, now, 1 << 20) == Verdict::Allow));
    }
}
