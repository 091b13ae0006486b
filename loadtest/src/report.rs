//! The run report: a serializable structure with stable field names (`--json`), the human
//! table printed at the end, and the unit formatting helpers.

use crate::engine::RunOutcome;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Latency percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
}

impl Latency {
    pub fn from_hist(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Connections {
    pub requested: u64,
    pub connected: u64,
    pub failed: u64,
    pub reconnects: u64,
    pub disconnects: u64,
    pub connect_secs: f64,
    pub connects_per_sec: f64,
}

/// Bytes on the wire (every socket read and write: handshakes and frames) and permessage-deflate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Wire {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `--deflate` was given (the offer was sent).
    pub deflate_offered: bool,
    /// Handshakes in which the server accepted it.
    pub deflate_negotiated: u64,
    /// `wss://`: TLS handshakes completed in full and by resuming a session (ticket).
    #[serde(default)]
    pub tls_full_handshakes: u64,
    #[serde(default)]
    pub tls_resumed_handshakes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Messages {
    pub sent: u64,
    pub sent_warmup: u64,
    pub recipients: u64,
    pub expected: u64,
    pub delivered: u64,
    pub delivered_warmup: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub misrouted: u64,
    pub foreign_frames: u64,
    /// delivered / expected (1.0 when nothing was expected).
    pub completeness: f64,
    pub msgs_per_sec_in: f64,
    pub deliveries_per_sec_out: f64,
    /// Seconds waited after the last send for stragglers.
    pub drain_secs: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latencies {
    pub corrected: Latency,
    pub raw: Latency,
    pub send_lag: Latency,
    pub handshake: Latency,
    pub ping_rtt: Latency,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Generator {
    pub threads: usize,
    pub cores_available: usize,
    pub cpu_user_secs: f64,
    pub cpu_sys_secs: f64,
    pub wall_secs: f64,
    pub cores_used: f64,
    pub saturated: bool,
    pub behind_schedule: bool,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ping {
    pub sent: u64,
    pub pongs: u64,
    pub server_pings: u64,
}

/// The spread of per-connection p99 latency: each receiving connection's own corrected p99 is one
/// value; these are its percentiles over the connections (µs).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnSpread {
    pub connections: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl ConnSpread {
    /// `None` when no connection received a measured message.
    pub fn from_hist(h: &Histogram<u64>) -> Option<ConnSpread> {
        (!h.is_empty()).then(|| ConnSpread {
            connections: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

/// One step of a ramp.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RampStep {
    pub rate: f64,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub deliveries_per_sec_out: f64,
    pub p99_us: u64,
    pub sustainable: bool,
}

/// HTTP history scenario figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Http {
    pub requests: u64,
    pub ok: u64,
    pub non_2xx: u64,
    pub errors: u64,
    pub messages_returned: u64,
    pub requests_per_sec: f64,
    pub latency_corrected: Latency,
    pub latency_raw: Latency,
}

/// The avalanche's own figures (see loadtest/README.md, "Avalanche").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Avalanche {
    /// `drop` or `restart`.
    pub mode: String,
    /// Seconds into the measured window when the outage began.
    pub outage_at_secs: f64,
    /// Counting recipients (every client connected when measuring began).
    pub clients: u64,
    /// Connections that ended (dropped by us, or closed by the server).
    pub disconnected: u64,
    pub reconnect_attempts: u64,
    /// Reconnect attempts that failed (refused, timed out, handshake status, closed before `joined`).
    pub reconnect_failures: u64,
    /// Failed reconnect attempts by kind (`connect_refused`, `handshake_status_503`, ...).
    pub reconnect_errors: BTreeMap<String, u64>,
    /// First connects (before the measured run) that failed and were tried again
    /// (`--connect-retries`); a client that connected at last counts among `connections.connected`.
    #[serde(default)]
    pub first_connect_retries: u64,
    /// ... by the kind of failure that made them retry.
    #[serde(default)]
    pub first_connect_retry_errors: BTreeMap<String, u64>,
    /// Reconnected clients whose catch-up completed (first live message received).
    pub caught_up: u64,
    /// Clients still without a live message after their reconnect when the run ended.
    pub not_caught_up: u64,
    /// Clients without a joined connection when the run ended (still reconnecting).
    pub not_connected_at_end: u64,
    /// From the start of the successful reconnect to the end of its replay (the last replayed
    /// message, or `joined` when nothing was missed), counted once a live message confirmed it.
    pub catchup_us: Latency,
    /// Like `catchup_us`, but from the client's first reconnect attempt since it lost its
    /// connection: refused or failed attempts and the backoff between them included.
    #[serde(default)]
    pub recovery_us: Latency,
    /// From the start of the successful reconnect to the first live message after the replay
    /// (includes waiting for the room's sender, who reconnects too).
    pub first_live_us: Latency,
    /// Messages received as catch-up (resume replay).
    pub replayed: u64,
    /// Measured messages that reached at least one client (the server accepted them).
    pub accepted: u64,
    /// ... of which were sent after the outage (see `lost_after_outage`).
    pub accepted_after_outage: u64,
    /// Measured messages sent that reached nobody: never acknowledged, e.g. written into a socket
    /// the outage cut ("lost in the crash window" when the server was killed).
    pub unconfirmed: u64,
    /// Deliveries of accepted messages that never arrived (= `messages.lost`) ...
    pub lost: u64,
    /// ... of messages meant to be sent before the outage ended: before the drop (`--drop`), or
    /// before the restart command returned (they may have met the old server: a kill -9's crash
    /// window) ...
    pub lost_during_outage: u64,
    /// ... and of messages sent after it (only the server that came back saw them).
    pub lost_after_outage: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Scheduled sends skipped because the sender was disconnected.
    pub sends_skipped_disconnected: u64,
    /// Restart mode: the command's exit code (absent when killed by a signal or not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_exit: Option<i32>,
    #[serde(default)]
    pub restart_secs: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_error: Option<String>,
    /// The server's CPU and RSS from the outage to the end (with `--server-pid`/`--server-pid-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<crate::procstat::ServerUsage>,
}

/// Edits and typing (`--edit-fraction`, `--typists`): latency by kind, and `typing` events
/// received against the server's forwarding limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Semantics {
    /// Measured sends that went out as `edit`s (the rest were new messages).
    pub edits_sent: u64,
    /// Corrected latency of the deliveries of new messages, and of edits (`edited` events).
    pub message_latency_us: Latency,
    pub edit_latency_us: Latency,
    pub typing_sent: u64,
    /// `typing` events received by counting connections from the start of the measured window.
    pub typing_received: u64,
    /// (typist, other member) pairs in the same room.
    pub typing_pairs: u64,
    /// The most `typing` events the server may forward in the measured window plus 1 s in flight:
    /// one per pair every 2 s, `pairs × (⌊(duration + 1 s) / 2 s⌋ + 1)`.
    pub typing_limit: u64,
    /// Whether `typing_received <= typing_limit`.
    pub typing_within_limit: bool,
}

impl Semantics {
    fn from_run(s: &crate::stats::Stats, config: &BTreeMap<String, serde_json::Value>) -> Option<Semantics> {
        let num = |k: &str| config.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        let (edit_fraction, typists, rooms) =
            (num("edit_fraction"), num("typists") as u64, num("rooms").max(1.0) as u64);
        if edit_fraction <= 0.0 && typists == 0 {
            return None;
        }
        // Typist i is in room i % rooms; it does not get its own `typing` back.
        let typing_pairs: u64 = (0..rooms)
            .map(|r| {
                let in_room = (0..typists).filter(|i| i % rooms == r).count() as u64;
                let members = s.rooms.get(r as usize).map_or(0, |t| t.recipients);
                in_room * members.saturating_sub(1)
            })
            .sum();
        let windows = ((num("duration_secs") + 1.0) / 2.0).floor() as u64 + 1;
        let typing_limit = typing_pairs * windows;
        Some(Semantics {
            edits_sent: s.edits_sent,
            message_latency_us: Latency::from_hist(&s.corrected_messages),
            edit_latency_us: Latency::from_hist(&s.corrected_edits),
            typing_sent: s.typing_sent,
            typing_received: s.typing_received,
            typing_pairs,
            typing_limit,
            typing_within_limit: s.typing_received <= typing_limit,
        })
    }
}

/// The complete report (`--json`). Field names are stable; see loadtest/README.md.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub scenario: String,
    pub run_id: String,
    pub config: BTreeMap<String, serde_json::Value>,
    pub connections: Connections,
    #[serde(default)]
    pub wire: Wire,
    pub messages: Messages,
    pub latency_us: Latencies,
    /// Spread of the per-connection corrected p99s (broadcast and churn runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_conn_p99_us: Option<ConnSpread>,
    pub ping: Ping,
    pub generator: Generator,
    pub frames_by_type: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ramp: Vec<RampStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_max_sustainable_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Http>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avalanche: Option<Avalanche>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantics: Option<Semantics>,
    /// Threshold checks that failed (`--fail-if-*`); empty when the run passed.
    pub failures: Vec<String>,
}

impl Report {
    /// Builds the report from a finished run.
    pub fn from_run(
        scenario: &str,
        run_id: u64,
        config: BTreeMap<String, serde_json::Value>,
        o: &RunOutcome,
        threads: usize,
    ) -> Report {
        let s = &o.stats;
        let totals = s.room_sum();
        let expected = s.expected();
        let secs = o.measured_secs;
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let cores = crate::cpu::cores();
        let cores_used = o.cpu.cores_used();
        let send_lag = Latency::from_hist(&s.send_lag);
        let saturated = cores_used >= 0.9 * threads.min(cores) as f64;
        let behind = send_lag.p99 > 5_000;
        let mut warnings = Vec::new();
        if saturated {
            warnings.push(format!(
                "generator CPU is saturated ({cores_used:.2} of {} cores): results may measure the generator",
                threads.min(cores)
            ));
        }
        if behind {
            warnings.push(format!("generator fell behind its send schedule (send lag p99 {})", fmt_us(send_lag.p99)));
        }
        let completeness = if expected == 0 { 1.0 } else { s.delivered as f64 / expected as f64 };
        let deflate_offered = config.get("deflate").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let semantics = Semantics::from_run(s, &config);
        Report {
            tool: "roomcast-load".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            scenario: scenario.into(),
            run_id: format!("{run_id:016x}"),
            config,
            connections: Connections {
                requested: s.connects_ok + s.connects_failed,
                connected: s.connects_ok,
                failed: s.connects_failed,
                reconnects: s.reconnects,
                disconnects: s.disconnects,
                connect_secs: round3(o.connect_secs),
                connects_per_sec: if o.connect_secs > 0.0 {
                    round3(s.connects_ok as f64 / o.connect_secs)
                } else {
                    0.0
                },
            },
            wire: Wire {
                bytes_in: s.wire_in,
                bytes_out: s.wire_out,
                deflate_offered,
                deflate_negotiated: s.deflate_negotiated,
                tls_full_handshakes: s.tls_full,
                tls_resumed_handshakes: s.tls_resumed,
            },
            messages: Messages {
                sent: s.sent,
                sent_warmup: s.sent_warmup,
                recipients: totals.recipients,
                expected,
                delivered: s.delivered,
                delivered_warmup: s.delivered_warmup,
                lost: s.lost(),
                duplicates: s.duplicates,
                reordered: s.reordered,
                misrouted: s.misrouted,
                foreign_frames: s.foreign_frames,
                completeness: (completeness * 1e6).round() / 1e6,
                msgs_per_sec_in: round3(per_sec(s.sent)),
                deliveries_per_sec_out: round3(per_sec(s.delivered)),
                drain_secs: round3(o.drain_secs),
            },
            latency_us: Latencies {
                corrected: Latency::from_hist(&s.corrected),
                raw: Latency::from_hist(&s.raw),
                send_lag,
                handshake: Latency::from_hist(&s.handshake),
                ping_rtt: Latency::from_hist(&s.ping_rtt),
            },
            per_conn_p99_us: ConnSpread::from_hist(&s.conn_p99),
            ping: Ping { sent: s.pings_sent, pongs: s.pongs_received, server_pings: s.server_pings },
            generator: Generator {
                threads,
                cores_available: cores,
                cpu_user_secs: round3(o.cpu.user_secs),
                cpu_sys_secs: round3(o.cpu.sys_secs),
                wall_secs: round3(o.cpu.wall_secs),
                cores_used: round3(cores_used),
                saturated,
                behind_schedule: behind,
                warnings,
            },
            frames_by_type: s.frames_by_type.clone(),
            errors: s.errors.clone(),
            semantics,
            ..Report::default()
        }
    }
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Formats microseconds as `µs`, `ms` or `s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

fn latency_rows(out: &mut String, title: (&str, &str), a: &Latency, b: &Latency) {
    use std::fmt::Write;
    let _ = writeln!(out, "  {:<10} {:>12} {:>12}", "latency", title.0, title.1);
    let rows = [
        ("p50", a.p50, b.p50),
        ("p90", a.p90, b.p90),
        ("p99", a.p99, b.p99),
        ("p99.9", a.p99_9, b.p99_9),
        ("p99.99", a.p99_99, b.p99_99),
        ("max", a.max, b.max),
    ];
    for (name, x, y) in rows {
        let _ = writeln!(out, "  {:<10} {:>12} {:>12}", name, fmt_us(x), fmt_us(y));
    }
}

/// The human-readable summary table.
pub fn render_table(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let c = &r.connections;
    let m = &r.messages;
    let _ = writeln!(out, "roomcast-load {} — scenario {} (run {})", r.version, r.scenario, r.run_id);
    let _ = writeln!(
        out,
        "  connections  {} connected, {} failed, {} reconnects, {} disconnects ({:.2}s to connect, {:.0}/s)",
        c.connected, c.failed, c.reconnects, c.disconnects, c.connect_secs, c.connects_per_sec
    );
    let w = &r.wire;
    let deflate = if w.deflate_offered {
        format!("deflate negotiated on {} of {} handshakes", w.deflate_negotiated, c.connected + c.reconnects)
    } else {
        "deflate not offered".to_string()
    };
    let _ = writeln!(out, "  wire         {} bytes in, {} bytes out; {deflate}", w.bytes_in, w.bytes_out);
    if w.tls_full_handshakes + w.tls_resumed_handshakes > 0 {
        let _ = writeln!(
            out,
            "  tls          {} full handshakes, {} resumed",
            w.tls_full_handshakes, w.tls_resumed_handshakes
        );
    }
    if ["broadcast", "churn", "ramp", "avalanche"].contains(&r.scenario.as_str()) {
        let _ = writeln!(out, "  sent         {} (+{} warmup) to {} recipients", m.sent, m.sent_warmup, m.recipients);
        let _ = writeln!(
            out,
            "  delivered    {} of {} expected — lost {}, duplicates {}, reordered {}, misrouted {} ({:.4}% complete)",
            m.delivered,
            m.expected,
            m.lost,
            m.duplicates,
            m.reordered,
            m.misrouted,
            m.completeness * 100.0
        );
        let _ = writeln!(
            out,
            "  throughput   {:.1} msgs/s in, {:.1} deliveries/s out",
            m.msgs_per_sec_in, m.deliveries_per_sec_out
        );
        latency_rows(&mut out, ("corrected", "raw"), &r.latency_us.corrected, &r.latency_us.raw);
        if let Some(sp) = &r.per_conn_p99_us {
            let _ = writeln!(
                out,
                "  per-conn p99 min {}  median {}  p90 {}  p99 {}  max {} (over {} connections)",
                fmt_us(sp.min),
                fmt_us(sp.p50),
                fmt_us(sp.p90),
                fmt_us(sp.p99),
                fmt_us(sp.max),
                sp.connections
            );
        }
        let _ = writeln!(
            out,
            "  send lag     p50 {}  p99 {}  max {}",
            fmt_us(r.latency_us.send_lag.p50),
            fmt_us(r.latency_us.send_lag.p99),
            fmt_us(r.latency_us.send_lag.max)
        );
    }
    if let Some(x) = &r.semantics {
        let _ = writeln!(
            out,
            "  by kind      messages p50 {}  p99 {}; edits ({} sent) p50 {}  p99 {}",
            fmt_us(x.message_latency_us.p50),
            fmt_us(x.message_latency_us.p99),
            x.edits_sent,
            fmt_us(x.edit_latency_us.p50),
            fmt_us(x.edit_latency_us.p99)
        );
        let _ = writeln!(
            out,
            "  typing       {} sent, {} received over {} pairs (limit {}: {})",
            x.typing_sent,
            x.typing_received,
            x.typing_pairs,
            x.typing_limit,
            if x.typing_within_limit { "within" } else { "OVER" }
        );
    }
    if let Some(a) = &r.avalanche {
        let _ = writeln!(
            out,
            "  avalanche    {} at {:.1}s: {} clients, {} disconnected, {} reconnect attempts ({} failed: {:?})",
            a.mode,
            a.outage_at_secs,
            a.clients,
            a.disconnected,
            a.reconnect_attempts,
            a.reconnect_failures,
            a.reconnect_errors
        );
        if a.first_connect_retries > 0 {
            let _ = writeln!(
                out,
                "  first connect {} retries ({:?})",
                a.first_connect_retries, a.first_connect_retry_errors
            );
        }
        let _ = writeln!(
            out,
            "  exactly once accepted {}, lost {} (sent during the outage {}, after {}), duplicates {}, reordered {}, unconfirmed {}",
            a.accepted, a.lost, a.lost_during_outage, a.lost_after_outage, a.duplicates, a.reordered, a.unconfirmed
        );
        let _ = writeln!(
            out,
            "  catch-up     p50 {}  p99 {}  max {}; first live p50 {}  p99 {}  max {} ({} caught up, {} not, {} replayed, {} not connected at the end)",
            fmt_us(a.catchup_us.p50),
            fmt_us(a.catchup_us.p99),
            fmt_us(a.catchup_us.max),
            fmt_us(a.first_live_us.p50),
            fmt_us(a.first_live_us.p99),
            fmt_us(a.first_live_us.max),
            a.caught_up,
            a.not_caught_up,
            a.replayed,
            a.not_connected_at_end
        );
        let _ = writeln!(
            out,
            "  recovery     p50 {}  p99 {}  max {} (catch-up from the first reconnect attempt, failed attempts and backoff included)",
            fmt_us(a.recovery_us.p50),
            fmt_us(a.recovery_us.p99),
            fmt_us(a.recovery_us.max)
        );
        if let Some(sv) = &a.server {
            let _ = writeln!(
                out,
                "  server       pid {}: {:.2} CPU s over {:.1}s, peak {:.2} cores, peak RSS {} MiB",
                sv.pid,
                sv.cpu_secs,
                sv.window_secs,
                sv.cpu_peak_cores,
                sv.rss_peak_kib / 1024
            );
        }
    }
    if r.latency_us.handshake.count > 0 {
        let h = &r.latency_us.handshake;
        let _ = writeln!(
            out,
            "  handshake    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            fmt_us(h.p50),
            fmt_us(h.p90),
            fmt_us(h.p99),
            fmt_us(h.p99_9),
            fmt_us(h.max)
        );
    }
    if r.ping.sent > 0 {
        let p = &r.latency_us.ping_rtt;
        let _ = writeln!(
            out,
            "  pings        {} sent, {} pongs; rtt p50 {} p99 {} max {}",
            r.ping.sent,
            r.ping.pongs,
            fmt_us(p.p50),
            fmt_us(p.p99),
            fmt_us(p.max)
        );
    }
    if let Some(h) = &r.http {
        let _ = writeln!(
            out,
            "  requests     {} ({} ok, {} non-2xx, {} errors), {:.1}/s, {} messages returned",
            h.requests, h.ok, h.non_2xx, h.errors, h.requests_per_sec, h.messages_returned
        );
        latency_rows(&mut out, ("corrected", "raw"), &h.latency_corrected, &h.latency_raw);
    }
    for s in &r.ramp {
        let _ = writeln!(
            out,
            "  ramp step    {:>8.0} msgs/s: {:>10.1} deliveries/s, lost {}, p99 {} {}",
            s.rate,
            s.deliveries_per_sec_out,
            s.lost,
            fmt_us(s.p99_us),
            if s.sustainable { "ok" } else { "NOT sustainable" }
        );
    }
    if let Some(rate) = r.ramp_max_sustainable_rate {
        let _ = writeln!(out, "  highest sustainable rate: {rate:.0} msgs/s");
    }
    let g = &r.generator;
    let _ =
        writeln!(out, "  generator    {:.2} cores used of {} ({} threads)", g.cores_used, g.cores_available, g.threads);
    for w in &g.warnings {
        let _ = writeln!(out, "  WARNING: {w}");
    }
    if !r.frames_by_type.is_empty() {
        let list: Vec<String> = r.frames_by_type.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "  frames       {}", list.join(" "));
    }
    if !r.errors.is_empty() {
        let list: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "  errors       {}", list.join(" "));
    }
    for f in &r.failures {
        let _ = writeln!(out, "  FAILED: {f}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_switch_at_thresholds() {
        assert_eq!(fmt_us(999), "999µs");
        assert_eq!(fmt_us(1_500), "1.50ms");
        assert_eq!(fmt_us(2_000_000), "2.00s");
    }
}
