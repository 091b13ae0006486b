//! `history`: HTTP GETs of `/rooms/{room}/messages?before_id=&limit=` at a constant total rate
//! over keep-alive connections (one thread each), following the `before_id` cursor to page
//! backwards and restarting from the newest page at the end; latency from intended send time.

use crate::cli::HistoryArgs;
use crate::clock;
use crate::error::LoadError;
use crate::http::HttpClient;
use crate::report::{Http, Latency, Report, round3};
use crate::schedule::Schedule;
use crate::stats::{new_hist, record_ns};
use crate::target::{Target, encode_component};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

#[derive(Default)]
struct Counts {
    requests: u64,
    ok: u64,
    non_2xx: u64,
    errors: u64,
    messages: u64,
    errors_by_kind: BTreeMap<String, u64>,
}

/// Lowest message id in a page (`[...]`, `{"messages":[...]}` or `{"items":[...]}`) and its size.
fn page_cursor(body: &[u8]) -> (Option<u64>, u64) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, 0);
    };
    let arr = match &v {
        serde_json::Value::Array(a) => Some(a),
        serde_json::Value::Object(o) => o.get("messages").or_else(|| o.get("items")).and_then(|x| x.as_array()),
        _ => None,
    };
    let Some(arr) = arr else { return (None, 0) };
    let min = arr.iter().filter_map(|m| m.get("id")?.as_u64()).min();
    (min, arr.len() as u64)
}

fn worker(t: &Target, a: &HistoryArgs, sched: Schedule, me: u32, end: u64) -> (Histogram<u64>, Histogram<u64>, Counts) {
    let mut client = HttpClient::new(t.addr, t.host_header());
    let (mut corrected, mut raw, mut c) = (new_hist(), new_hist(), Counts::default());
    let base = format!("/rooms/{}/messages", encode_component(&a.room));
    let mut cursor: Option<u64> = None;
    let mut seq = 0;
    loop {
        let intended = sched.intended(me, seq);
        if intended >= end {
            break;
        }
        seq += 1;
        let now = clock::now_ns();
        if intended > now {
            std::thread::sleep(clock::ns_to_duration(intended - now));
        }
        let path = match cursor {
            Some(id) => format!("{base}?before_id={id}&limit={}", a.limit),
            None => format!("{base}?limit={}", a.limit),
        };
        let sent = clock::now_ns();
        let result = client.get(&path);
        let done = clock::now_ns();
        c.requests += 1;
        match result {
            Ok(r) if (200..300).contains(&r.status) => {
                c.ok += 1;
                record_ns(&mut corrected, done - intended);
                record_ns(&mut raw, done - sent);
                let (min, n) = page_cursor(&r.body);
                c.messages += n;
                cursor = if n == 0 { None } else { min };
            }
            Ok(r) => {
                c.non_2xx += 1;
                *c.errors_by_kind.entry(format!("http_status_{}", r.status)).or_default() += 1;
                cursor = None;
            }
            Err(e) => {
                c.errors += 1;
                *c.errors_by_kind.entry(crate::net::io_kind(&e).to_string()).or_default() += 1;
            }
        }
    }
    (corrected, raw, c)
}

pub fn run(a: HistoryArgs) -> Result<i32, LoadError> {
    let target = Target::parse(&a.url)?;
    if target.secure {
        return Err(LoadError::BadArg("the history scenario speaks plain http:// only".into()));
    }
    if a.rate.is_nan() || a.rate <= 0.0 || a.connections == 0 {
        return Err(LoadError::BadArg("--rate and --connections must be positive".into()));
    }
    let start = clock::now_ns() + 20_000_000;
    let end = start + a.duration.as_nanos() as u64;
    let sched = Schedule::new(start, a.rate, a.connections);
    let cpu0 = crate::cpu::CpuUsage::snapshot();
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..a.connections)
            .map(|i| {
                let (t, a, sched) = (&target, &a, sched.clone());
                s.spawn(move || worker(t, a, sched, i, end))
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let cpu = crate::cpu::CpuUsage::snapshot().since(&cpu0);
    let (mut corrected, mut raw, mut total) = (new_hist(), new_hist(), Counts::default());
    for (c, r, n) in &results {
        let _ = corrected.add(c);
        let _ = raw.add(r);
        total.requests += n.requests;
        total.ok += n.ok;
        total.non_2xx += n.non_2xx;
        total.errors += n.errors;
        total.messages += n.messages;
        for (k, v) in &n.errors_by_kind {
            *total.errors_by_kind.entry(k.clone()).or_default() += v;
        }
    }
    let secs = a.duration.as_secs_f64().max(1e-9);
    let mut config = BTreeMap::new();
    config.insert("url".into(), serde_json::json!(a.url));
    config.insert("room".into(), serde_json::json!(a.room));
    config.insert("rate".into(), serde_json::json!(a.rate));
    config.insert("limit".into(), serde_json::json!(a.limit));
    config.insert("connections".into(), serde_json::json!(a.connections));
    config.insert("duration_secs".into(), serde_json::json!(secs));
    let mut report = Report {
        tool: "roomcast-load".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        scenario: "history".into(),
        run_id: format!("{:016x}", super::new_run_id()),
        config,
        http: Some(Http {
            requests: total.requests,
            ok: total.ok,
            non_2xx: total.non_2xx,
            errors: total.errors,
            messages_returned: total.messages,
            requests_per_sec: round3(total.requests as f64 / secs),
            latency_corrected: Latency::from_hist(&corrected),
            latency_raw: Latency::from_hist(&raw),
        }),
        errors: total.errors_by_kind,
        ..Report::default()
    };
    report.generator.threads = a.connections as usize;
    report.generator.cores_available = crate::cpu::cores();
    report.generator.cpu_user_secs = round3(cpu.user_secs);
    report.generator.cpu_sys_secs = round3(cpu.sys_secs);
    report.generator.wall_secs = round3(cpu.wall_secs);
    report.generator.cores_used = round3(cpu.cores_used());
    super::finish(report, &a.output, &corrected, Some(&raw))
}

#[cfg(test)]
mod tests {
    use super::page_cursor;

    #[test]
    fn cursor_is_lowest_id_of_page() {
        assert_eq!(page_cursor(br#"[{"id":9},{"id":7},{"id":8}]"#), (Some(7), 3));
        assert_eq!(page_cursor(br#"{"messages":[{"id":3}]}"#), (Some(3), 1));
        assert_eq!(page_cursor(b"[]"), (None, 0));
        assert_eq!(page_cursor(b"oops"), (None, 0));
    }
}
