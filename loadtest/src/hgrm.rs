//! Writer for the HdrHistogram percentile-distribution text (`.hgrm`), byte-for-byte the format
//! of Java HdrHistogram's `outputPercentileDistribution(out, ticks, scalingRatio)`.

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Renders `h` like Java's `outputPercentileDistribution(ps, ticks_per_half, scaling)`.
/// Values are divided by `scaling` (histograms here are in µs, so 1000.0 prints milliseconds).
pub fn percentile_distribution(h: &Histogram<u64>, ticks_per_half: u32, scaling: f64) -> String {
    let digits = h.sigfig() as usize;
    let mut out = String::new();
    let _ = write!(out, "{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total: u64 = 0;
    if !h.is_empty() {
        for v in h.iter_quantiles(ticks_per_half) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / scaling;
            let q = v.quantile_iterated_to();
            if q != 1.0 {
                let _ = writeln!(out, "{:>12.*} {:>2.12} {:>10} {:>14.2}", digits, value, q, total, 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(out, "{:>12.*} {:>2.12} {:>10}", digits, value, q, total);
            }
        }
    }
    let mean = h.mean() / scaling;
    let sd = h.stdev() / scaling;
    let _ = writeln!(out, "#[Mean    = {:>12.*}, StdDeviation   = {:>12.*}]", digits, mean, digits, sd);
    let _ = writeln!(out, "#[Max     = {:>12.*}, Total count    = {:>12}]", digits, h.max() as f64 / scaling, h.len());
    let _ = writeln!(out, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", h.buckets(), sub_bucket_count(h.sigfig()));
    out
}

/// Java's `subBucketCount`: the power of two covering `2 * 10^sigfig`.
fn sub_bucket_count(sigfig: u8) -> u64 {
    let single_unit = 2 * 10u64.pow(sigfig as u32);
    single_unit.next_power_of_two().max(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    #[test]
    fn format_matches_java_layout() {
        let mut h = new_hist();
        for v in 1..=100u64 {
            h.record(v * 1000).unwrap();
        }
        let text = percentile_distribution(&h, 5, 1000.0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines[1], "");
        // First data row: min value at percentile 0.
        assert_eq!(lines[2], "       1.000 0.000000000000          1           1.00");
        // The 50% row: value, fixed 12-decimal percentile, cumulative count, 1/(1-p).
        let median = lines.iter().find(|l| l.contains(" 0.500000000000 ")).unwrap();
        assert_eq!(*median, "      50.015 0.500000000000         50           2.00");
        // The 100% row has no last column.
        let last_data = lines[lines.len() - 4];
        assert_eq!(last_data, "     100.031 1.000000000000        100");
        assert_eq!(lines[lines.len() - 3], "#[Mean    =       50.504, StdDeviation   =       28.866]");
        assert_eq!(lines[lines.len() - 2], "#[Max     =      100.031, Total count    =          100]");
        assert_eq!(lines[lines.len() - 1], format!("#[Buckets = {:>12}, SubBuckets     =         2048]", h.buckets()));
    }

    #[test]
    fn empty_histogram_prints_header_and_footer() {
        let h = new_hist();
        let text = percentile_distribution(&h, 5, 1.0);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n#[Mean"));
        assert!(text.contains("Total count    =            0]"));
    }
}
