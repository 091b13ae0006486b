//! `compare A.json B.json`: key figures of two reports side by side with the ratio B/A.

use crate::error::LoadError;
use serde_json::Value;
use std::path::Path;

/// Figures compared, as JSON pointers into the report, with a label.
const FIELDS: &[(&str, &str)] = &[
    ("connections", "/connections/connected"),
    ("connect failures", "/connections/failed"),
    ("sent", "/messages/sent"),
    ("delivered", "/messages/delivered"),
    ("lost", "/messages/lost"),
    ("duplicates", "/messages/duplicates"),
    ("reordered", "/messages/reordered"),
    ("msgs/s in", "/messages/msgs_per_sec_in"),
    ("deliveries/s out", "/messages/deliveries_per_sec_out"),
    ("corrected p50 µs", "/latency_us/corrected/p50"),
    ("corrected p90 µs", "/latency_us/corrected/p90"),
    ("corrected p99 µs", "/latency_us/corrected/p99"),
    ("corrected p99.9 µs", "/latency_us/corrected/p99_9"),
    ("corrected max µs", "/latency_us/corrected/max"),
    ("raw p50 µs", "/latency_us/raw/p50"),
    ("raw p99 µs", "/latency_us/raw/p99"),
    ("handshake p50 µs", "/latency_us/handshake/p50"),
    ("handshake p99 µs", "/latency_us/handshake/p99"),
    ("ping rtt p99 µs", "/latency_us/ping_rtt/p99"),
    ("http req/s", "/http/requests_per_sec"),
    ("http p99 µs", "/http/latency_corrected/p99"),
    ("generator cores", "/generator/cores_used"),
];

/// Renders the comparison table.
pub fn compare(a: &Value, b: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let name =
        |v: &Value| format!("{} {}", v["scenario"].as_str().unwrap_or("?"), v["config"]["url"].as_str().unwrap_or(""));
    let _ = writeln!(out, "A: {}\nB: {}", name(a), name(b));
    let _ = writeln!(out, "{:<22} {:>14} {:>14} {:>8}", "figure", "A", "B", "B/A");
    for (label, ptr) in FIELDS {
        let (Some(x), Some(y)) = (a.pointer(ptr).and_then(Value::as_f64), b.pointer(ptr).and_then(Value::as_f64))
        else {
            continue;
        };
        if x == 0.0 && y == 0.0 {
            continue;
        }
        let ratio = if x != 0.0 { format!("{:.2}", y / x) } else { "-".into() };
        let _ = writeln!(out, "{label:<22} {x:>14.1} {y:>14.1} {ratio:>8}");
    }
    out
}

pub fn run(a: &Path, b: &Path) -> Result<i32, LoadError> {
    let read = |p: &Path| -> Result<Value, LoadError> { Ok(serde_json::from_slice(&std::fs::read(p)?)?) };
    print!("{}", compare(&read(a)?, &read(b)?));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ratios_and_missing_fields() {
        let a = json!({"scenario":"broadcast","messages":{"sent":100,"delivered":1000},"latency_us":{"corrected":{"p99":200}}});
        let b = json!({"scenario":"broadcast","messages":{"sent":100,"delivered":900},"latency_us":{"corrected":{"p99":400}}});
        let t = compare(&a, &b);
        assert!(t.contains("corrected p99 µs"));
        assert!(t.lines().any(|l| l.starts_with("corrected p99 µs") && l.ends_with("2.00")));
        assert!(t.lines().any(|l| l.starts_with("delivered") && l.ends_with("0.90")));
        assert!(!t.contains("http req/s"));
    }
}
