//! Process-wide monotonic clock: every timestamp in the generator (intended send time, actual
//! send time, receipt time) is nanoseconds since one shared `Instant`, so threads compare freely.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static BASE: OnceLock<Instant> = OnceLock::new();

/// The shared origin; the first call fixes it.
pub fn base() -> Instant {
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the shared origin.
pub fn now_ns() -> u64 {
    base().elapsed().as_nanos() as u64
}

/// Converts a nanosecond timestamp to a `Duration` from the origin.
pub fn ns_to_duration(ns: u64) -> Duration {
    Duration::from_nanos(ns)
}
