//! `/metrics` after real traffic: the counters move by exactly what the traffic implies, every metric is
//! documented, and connection closes are counted under the right reason.

use std::collections::HashMap;

use serde_json::json;

use crate::support::*;

/// One scrape, parsed: sample name with labels (as rendered) → value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self.0.get(key).unwrap_or_else(|| panic!("no sample {key} in /metrics"))
    }

    /// Sum of every sample of a family with labels (`name{…}`).
    fn sum(&self, name: &str) -> f64 {
        let prefix = format!("{name}{{");
        self.0.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, v)| v).sum()
    }

    fn closed(&self, reason: &str) -> f64 {
        self.get(&format!("roomcast_connections_closed_total{{reason=\"{reason}\"}}"))
    }
}

/// Parses the text format: `name{labels} value` lines; `#` lines are metadata.
fn parse(text: &str) -> Scrape {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("malformed line {line:?}"));
        let value = if value == "+Inf" { f64::INFINITY } else { value.parse().expect("numeric value") };
        samples.insert(key.to_string(), value);
    }
    Scrape(samples)
}

/// Scrapes `/metrics`; `None` if the server refused the connection (over its limit).
fn try_scrape(server: &Server) -> Option<(Scrape, String)> {
    let (status, head, body) = http_get(server, "/metrics");
    if status == 503 {
        return None;
    }
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{head}");
    let text = String::from_utf8(body).expect("utf-8");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    Some((parse(&text), text))
}

/// Scrapes until `cond` holds (counters are updated by other threads) and returns that scrape. A scrape
/// refused with 503 (a test at its connection limit) counts as "not yet".
fn scrape_until(server: &Server, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut found = None;
    wait_until(what, || match try_scrape(server) {
        Some((s, _)) if cond(&s) => {
            found = Some(s);
            true
        }
        _ => false,
    });
    found.expect("scraped")
}

#[test]
fn counters_move_by_exactly_what_the_traffic_implies() {
    const N: usize = 5;
    const M: usize = 3;
    let server = Server::start(&[]);
    let mut members: Vec<Client> = (0..M).map(|_| connect_ws(&server, "/ws/chat?room=metrics")).collect();
    let mut json_client = connect_json(&server, "metrics-json", "erin");
    assert_eq!(recv_json(&mut json_client)["type"], "presence", "own join presence");
    let before = scrape_until(&server, "memberships", |s| s.sum("roomcast_room_members") == (M + 1) as f64);
    assert_eq!(before.get("roomcast_rooms"), 2.0);

    // N messages into a room of M members: N received, N×M deliveries.
    for i in 0..N {
        send_text(&mut members[0], &format!("m{i}"));
    }
    for member in &mut members {
        for i in 0..N {
            assert_eq!(recv_text(member), format!("m{i}"));
        }
    }
    let d0 = before.get("roomcast_deliveries_total");
    let after = scrape_until(&server, "deliveries", |s| s.get("roomcast_deliveries_total") >= d0 + (N * M) as f64);
    assert_eq!(after.get("roomcast_deliveries_total"), d0 + (N * M) as f64, "one delivery per recipient");
    let received = |s: &Scrape| s.get("roomcast_messages_received_total");
    assert_eq!(received(&after), received(&before) + N as f64);
    let fanouts = |s: &Scrape| s.get("roomcast_fanout_latency_seconds_count");
    let shards_reached = fanouts(&after) - fanouts(&before);
    assert!((N as f64..=(2 * N) as f64).contains(&shards_reached), "one observation per message and shard");
    assert!(after.get("roomcast_received_bytes_total") > before.get("roomcast_received_bytes_total"));
    assert!(after.get("roomcast_sent_bytes_total") > before.get("roomcast_sent_bytes_total"));
    assert!(
        after.get("roomcast_event_loop_iteration_seconds_count")
            > before.get("roomcast_event_loop_iteration_seconds_count")
    );

    // The store commits the N rows in batches.
    let rows = |s: &Scrape| s.get("roomcast_store_rows_written_total");
    let stored = scrape_until(&server, "rows written", |s| rows(s) >= rows(&before) + N as f64);
    assert_eq!(rows(&stored), rows(&before) + N as f64);
    assert!(stored.get("roomcast_store_batch_rows_count") > before.get("roomcast_store_batch_rows_count"));
    assert_eq!(stored.get("roomcast_store_batch_rows_sum"), stored.get("roomcast_store_rows_written_total"));
    assert!(stored.get("roomcast_store_commit_duration_seconds_count") >= 1.0);

    // One error frame with its code.
    send_json(&mut json_client, json!({"type": "message", "room": "elsewhere", "content": "x"}));
    assert_eq!(recv_event(&mut json_client, "error")["code"], "not_joined");
    let key = "roomcast_error_frames_sent_total{code=\"not_joined\"}";
    let errored = scrape_until(&server, "error frame", |s| s.get(key) >= before.get(key) + 1.0);
    assert_eq!(errored.get(key), before.get(key) + 1.0);
    let all_errors = |s: &Scrape| s.sum("roomcast_error_frames_sent_total");
    assert_eq!(all_errors(&errored), all_errors(&before) + 1.0, "no other code moved");
    assert_eq!(received(&errored), received(&before) + N as f64, "a refused message is not received");

    // One protocol violation: closed{protocol_error} + 1.
    let mut raw = Raw::websocket(&server, "/ws/chat?room=violations");
    raw.send(&client_frame(0x81, b"unmasked", false));
    assert_eq!(raw.expect_close(), Some(1002));
    drop(raw);
    let closed = scrape_until(&server, "protocol close", |s| {
        s.closed("protocol_error") >= before.closed("protocol_error") + 1.0
    });
    assert_eq!(closed.closed("protocol_error"), before.closed("protocol_error") + 1.0);

    // History over REST: one request of kind rest, one latency observation.
    let (status, _, body) = http_get(&server, "/rooms/metrics/messages");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).expect("json").as_array().map(Vec::len), Some(N));
    let rest = "roomcast_history_requests_total{kind=\"rest\"}";
    let hist = scrape_until(&server, "history", |s| s.get(rest) >= before.get(rest) + 1.0);
    assert_eq!(hist.get(rest), before.get(rest) + 1.0);
    assert_eq!(
        hist.get("roomcast_history_request_duration_seconds_count"),
        before.get("roomcast_history_request_duration_seconds_count") + 1.0
    );

    // Bookkeeping: accepted = closed + open once the scrape connections are reaped; the gauge counts the
    // M text clients, the JSON client and the scrape's own connection.
    let settled = scrape_until(&server, "connection bookkeeping", |s| {
        s.sum("roomcast_connections_open") == (M + 2) as f64
            && s.get("roomcast_connections_accepted_total")
                == s.sum("roomcast_connections_closed_total") + (M + 2) as f64
    });
    assert_eq!(settled.get("roomcast_ready"), 1.0);
    assert_eq!(settled.get("roomcast_store_enabled"), 1.0);
    // Single-node mode: no Redis, so the cluster figures stay 0 (tests/it/cluster.rs checks they move).
    for name in
        ["published", "received", "errors", "connects", "user_rate_limited", "refused_unavailable", "binary_dropped"]
    {
        assert_eq!(settled.get(&format!("roomcast_redis_{name}_total")), 0.0, "redis {name} without cluster mode");
    }
    assert_eq!(settled.get("roomcast_redis_up"), 0.0);
    assert!(settled.get("process_resident_memory_bytes") > 0.0);
    assert!(settled.get("process_open_fds") > 0.0);
    assert!(settled.get("process_cpu_seconds_total") >= 0.0);
    let build = format!("roomcast_build_info{{version=\"{}\",git_commit=\"", env!("CARGO_PKG_VERSION"));
    assert!(settled.0.iter().any(|(k, v)| k.starts_with(&build) && *v == 1.0), "build info");
}

#[test]
fn closes_are_counted_by_reason() {
    let server = Server::start(&["--max-connections", "1", "--handshake-timeout", "1"]);
    let before = scrape_until(&server, "first scrape", |_| true);

    // A client that never sends its request is dropped at the handshake deadline.
    let mut idle = Raw::connect(&server);
    assert!(idle.reads_eof());
    drop(idle);
    let timed_out = scrape_until(&server, "timeout close", |s| s.closed("timeout") >= before.closed("timeout") + 1.0);
    assert_eq!(timed_out.closed("timeout"), before.closed("timeout") + 1.0);

    // At the limit, the next connection is answered 503 and counted as over_limit. (Taking the one slot
    // may itself be refused while an earlier scrape connection is still being reaped; those count too,
    // hence `>` rather than an exact figure.)
    let mut holder = None;
    wait_until("the only slot", || {
        holder = try_connect_ws(&server, "/ws/chat").ok();
        holder.is_some()
    });
    let mut holder = holder.expect("connected");
    let (status, _, _) = http_get(&server, "/healthz");
    assert_eq!(status, 503);
    holder.close(None).expect("close");
    assert_eq!(expect_close(&mut holder), 1000);
    drop(holder);
    let s = scrape_until(&server, "over_limit close", |s| s.closed("over_limit") > before.closed("over_limit"));
    assert_eq!(s.closed("protocol_error"), before.closed("protocol_error"));
    assert_eq!(s.closed("slow_consumer"), 0.0);
}

#[test]
fn every_metric_is_documented() {
    let server = Server::start(&[]);
    let (_, text) = try_scrape(&server).expect("scrape");
    let docs = std::fs::read_to_string(repo_path("docs/METRICS.md")).expect("docs/METRICS.md");
    let families: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert!(families.len() > 30, "found the families");
    let missing: Vec<&&str> = families.iter().filter(|f| !docs.contains(&format!("`{f}"))).collect();
    assert!(missing.is_empty(), "metrics missing from docs/METRICS.md: {missing:?}");
}

/// The store writer is woken per batch or per flush tick, never per message: 10,000 messages sent as
/// fast as one client can wake it at most twice per `--batch-size` records (the queue reaching a
/// batch, and the first record after each idle spell, which follows a commit) plus once per tick.
/// Waking it per message (what it did when it blocked on the record channel) fails this.
#[test]
fn store_writer_wakes_per_batch_or_tick_not_per_message() {
    const N: usize = 10_000;
    const BATCH: usize = 512;
    let server = Server::start(&["--rate-limit", "0", "--rate-limit-bytes", "0", "--batch-size", "512"]);
    let mut sender = connect_ws(&server, "/ws/chat?room=wakeups");
    let before = scrape_until(&server, "memberships", |s| s.sum("roomcast_room_members") == 1.0);
    let wakeups = |s: &Scrape, cause: &str| s.get(&format!("roomcast_store_writer_wakeups_total{{cause=\"{cause}\"}}"));
    // Send in chunks, reading the echoes of each chunk, so the output bound never closes the client.
    for chunk in 0..N / 500 {
        for i in 0..500 {
            send_text(&mut sender, &format!("w{}", chunk * 500 + i));
        }
        for i in 0..500 {
            assert_eq!(recv_text(&mut sender), format!("w{}", chunk * 500 + i));
        }
    }
    let rows = |s: &Scrape| s.get("roomcast_store_rows_written_total");
    let after = scrape_until(&server, "rows written", |s| rows(s) >= rows(&before) + N as f64);
    assert_eq!(rows(&after), rows(&before) + N as f64);
    let timer = wakeups(&after, "timer") - wakeups(&before, "timer");
    let producer = wakeups(&after, "producer") - wakeups(&before, "producer");
    let bound = 2.0 * (N / BATCH + 1) as f64 + timer + 2.0;
    assert!(
        producer <= bound,
        "{producer} producer wake-ups for {N} messages (timer ticks {timer}): more than {bound}, \
         the writer is being woken per message"
    );
    assert_eq!(
        wakeups(&after, "control"),
        wakeups(&before, "control"),
        "no history read, flush or shutdown asked for a commit"
    );
}
