//! Per-connection latency: a compact histogram each receiving connection keeps, and the spread of
//! the per-connection p99s over all connections (does any connection wait behind the others?).
//!
//! The per-connection histogram is log-linear: exact below 16 µs, then 16 sub-buckets per power of
//! two (at most 6.25 % above the true value), up to 2^32 µs, in 464 `u32` counters (1.8 KiB). It is
//! allocated on a connection's first measured delivery, so idle connections (hold) cost nothing.

/// Sub-buckets per power of two.
const SUB: u64 = 16;
const SUB_BITS: u32 = 4;
/// Buckets covering 0 ..= u32::MAX µs.
const BUCKETS: usize = 464;

/// One connection's corrected latencies (µs).
#[derive(Debug, Clone)]
pub struct ConnHist {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl Default for ConnHist {
    fn default() -> Self {
        ConnHist { counts: Box::new([0; BUCKETS]), total: 0 }
    }
}

fn index(us: u64) -> usize {
    let v = us.min(u32::MAX as u64);
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // 4..=31
    let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
    ((e - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The highest value that falls into bucket `i` (so a quantile never understates).
fn highest(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let e = (i / SUB) as u32 + SUB_BITS - 1;
    let low = (SUB + i % SUB) << (e - SUB_BITS);
    low + (1u64 << (e - SUB_BITS)) - 1
}

impl ConnHist {
    pub fn record(&mut self, us: u64) {
        let c = &mut self.counts[index(us)];
        *c = c.saturating_add(1);
        self.total += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The value at quantile `q` (0..=1), rounded up to its bucket's highest value; 0 when empty.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return highest(i);
            }
        }
        highest(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_in_order_within_6_percent() {
        assert_eq!(index(u32::MAX as u64), BUCKETS - 1);
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, 3_600_000_000, u32::MAX as u64]) {
            let i = index(v);
            assert!(i >= last, "index is monotonic at {v}");
            last = i;
            let h = highest(i);
            assert!(h >= v, "{v} lands in a bucket whose top {h} is below it");
            assert!((h - v) as f64 <= v as f64 * 0.0625, "{v} -> {h}");
        }
    }

    #[test]
    fn quantiles_of_a_connection() {
        let mut h = ConnHist::default();
        assert_eq!(h.value_at_quantile(0.99), 0);
        for v in 1..=100 {
            h.record(v * 100);
        }
        assert_eq!(h.total, 100);
        let p99 = h.value_at_quantile(0.99);
        assert!((9_900..=9_900 + 9_900 / 16).contains(&p99), "{p99}");
        let p50 = h.value_at_quantile(0.5);
        assert!((5_000..=5_000 + 5_000 / 16).contains(&p50), "{p50}");
        assert_eq!(h.value_at_quantile(0.0), highest(index(100)));
    }
}
