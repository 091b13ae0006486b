//! A fixed-bucket histogram written by one thread and read at scrape time.
//!
//! Values are integers in a raw unit (nanoseconds for durations, rows for batch sizes); the scrape
//! converts them with the histogram's `scale` (1e-9 turns nanoseconds into the seconds Prometheus
//! expects). An observation is a binary search over at most a few dozen bounds plus three relaxed
//! single-writer updates (bucket, count, sum): no lock, no allocation.

use std::time::Duration;

use super::cell::Counter;

/// Upper bounds, in nanoseconds, for latencies: 10 µs to 5 s.
pub(crate) const LATENCY_BOUNDS_NS: &[u64] = &[
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];

/// Scale that turns nanoseconds into seconds.
pub(crate) const NANOS: f64 = 1e-9;

/// Upper bounds for batch sizes, in rows: powers of two up to 65,536 (the largest `--batch-size`).
pub(crate) const BATCH_BOUNDS: &[u64] =
    &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16_384, 32_768, 65_536];

/// A histogram with fixed bounds, updated by one thread.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [u64],
    scale: f64,
    /// One slot per bound plus the `+Inf` slot; counts are per bucket (not cumulative).
    buckets: Box<[Counter]>,
    count: Counter,
    sum: Counter,
}

impl Histogram {
    /// A histogram over `bounds` (ascending, raw units) reported multiplied by `scale`.
    pub(crate) fn new(bounds: &'static [u64], scale: f64) -> Self {
        Histogram {
            bounds,
            scale,
            buckets: (0..=bounds.len()).map(|_| Counter::default()).collect(),
            count: Counter::default(),
            sum: Counter::default(),
        }
    }

    /// A latency histogram (seconds, 10 µs to 5 s).
    pub(crate) fn latency() -> Self {
        Histogram::new(LATENCY_BOUNDS_NS, NANOS)
    }

    /// Records `value` in raw units (owner thread only).
    #[inline]
    pub(crate) fn observe(&self, value: u64) {
        let slot = self.bounds.partition_point(|&b| b < value);
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.inc();
        }
        self.count.inc();
        self.sum.add(value);
    }

    /// Records a duration (owner thread only).
    #[inline]
    pub(crate) fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// A copy of the current values.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            scale: self.scale,
            buckets: self.buckets.iter().map(Counter::get).collect(),
            count: self.count.get(),
            sum: self.sum.get(),
        }
    }
}

/// A histogram's values at one moment; several can be merged (one per shard).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    bounds: &'static [u64],
    scale: f64,
    /// Per-bucket counts, `bounds.len() + 1` of them.
    pub(crate) buckets: Vec<u64>,
    /// Observations.
    pub(crate) count: u64,
    /// Sum of the observations, raw units.
    pub(crate) sum: u64,
}

impl HistogramSnapshot {
    /// An empty snapshot with `bounds` and `scale` (what a disabled component reports).
    pub(crate) fn empty(bounds: &'static [u64], scale: f64) -> Self {
        HistogramSnapshot { bounds, scale, buckets: vec![0; bounds.len() + 1], count: 0, sum: 0 }
    }

    /// Adds `other`'s observations (same bounds) to this one.
    pub(crate) fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// Sum of the observations in reported units.
    pub(crate) fn scaled_sum(&self) -> f64 {
        self.sum as f64 * self.scale
    }

    /// `(upper bound in reported units, per-bucket count)` pairs, ending with `+Inf`, as
    /// `prometheus_client`'s encoder expects them.
    pub(crate) fn scaled_buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .map(|&b| b as f64 * self.scale)
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_is_not_below_them() {
        let h = Histogram::new(&[10, 20], 1.0);
        for v in [0, 10, 11, 20, 21, 1000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![2, 2, 2]);
        assert_eq!((s.count, s.sum), (6, 1062));
        assert_eq!(s.scaled_buckets(), vec![(10.0, 2), (20.0, 2), (f64::INFINITY, 2)]);
    }

    #[test]
    fn snapshots_merge_and_scale() {
        let a = Histogram::latency();
        let b = Histogram::latency();
        a.observe_duration(Duration::from_millis(1));
        b.observe_duration(Duration::from_secs(10));
        let mut s = a.snapshot();
        s.merge(&b.snapshot());
        assert_eq!(s.count, 2);
        assert!((s.scaled_sum() - 10.001).abs() < 1e-9);
        let buckets = s.scaled_buckets();
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(buckets.iter().find(|(le, _)| (*le - 0.001).abs() < 1e-12).map(|b| b.1), Some(1));
        assert_eq!(HistogramSnapshot::empty(BATCH_BOUNDS, 1.0).buckets.len(), BATCH_BOUNDS.len() + 1);
    }
}
