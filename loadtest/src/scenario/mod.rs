//! Scenario dispatch plus what scenarios share: turning options into a `RunConfig`, and
//! finishing a run (threshold checks, table, `--json`, `--hgrm`, `--svg`, exit status).

mod avalanche;
mod broadcast;
mod churn;
mod connect;
mod history;
mod hold;
mod ramp;

use crate::cli::{Command, Common, Output, Traffic};
use crate::engine::{self, Mode, RunConfig, RunOutcome};
use crate::error::LoadError;
use crate::progress::Progress;
use crate::protocol::Format;
use crate::report::{Report, fmt_us};
use crate::target::Target;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Exit status when a `--fail-if-*` threshold is crossed.
pub const EXIT_THRESHOLD: i32 = 3;

pub fn dispatch(cmd: Command) -> Result<i32, LoadError> {
    match cmd {
        Command::Broadcast(a) => broadcast::run(a),
        Command::Connect(a) => connect::run(a),
        Command::Hold(a) => hold::run(a),
        Command::History(a) => history::run(a),
        Command::Ramp(a) => ramp::run(a),
        Command::Churn(a) => churn::run(a),
        Command::Avalanche(a) => avalanche::run(a),
        Command::Compare(a) => crate::compare::run(&a.a, &a.b),
    }
}

/// A fresh run identifier (distinguishes this run's markers from anyone else's).
pub fn new_run_id() -> u64 {
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut x = t ^ ((std::process::id() as u64) << 32) ^ 0x2545_F491_4F6C_DD1D;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

/// Builds the engine configuration from the shared options.
pub fn run_config(mode: Mode, c: &Common, t: Option<&Traffic>) -> Result<RunConfig, LoadError> {
    let target = Target::parse(&c.url)?.with_tls(c.ca.as_deref(), c.insecure, !c.no_tls_resumption)?;
    if c.conns == 0 {
        return Err(LoadError::BadArg("--conns must be at least 1".into()));
    }
    if c.rooms == 0 || c.rooms > c.conns {
        return Err(LoadError::BadArg("--rooms must be between 1 and --conns".into()));
    }
    if c.no_room_param && (c.rooms != 1 || c.format == Format::Json) {
        return Err(LoadError::BadArg("--no-room-param needs --rooms 1 and --format text".into()));
    }
    let source_ips = match &c.source_ips {
        Some(s) => crate::net::parse_source_ips(s)?,
        None => Vec::new(),
    };
    let threads = c.threads.unwrap_or_else(crate::cpu::cores).clamp(1, c.conns as usize);
    let (edit_fraction, typists, typing_interval) = match t {
        Some(t) => semantics(c, t)?,
        None => (0.0, 0, Duration::from_millis(500)),
    };
    let text = t.map_or(crate::marker::Text::Pad, |t| t.text);
    let (senders, rate, size, warmup, duration, drain) = match t {
        Some(t) => {
            if t.senders == 0 || t.senders > c.conns {
                return Err(LoadError::BadArg("--senders must be between 1 and --conns".into()));
            }
            if !(t.rate > 0.0 && t.rate.is_finite()) {
                return Err(LoadError::BadArg("--rate must be positive".into()));
            }
            (t.senders, t.rate, t.size, t.warmup, t.duration, t.drain)
        }
        None => (0, 0.0, 0, Duration::ZERO, Duration::ZERO, Duration::ZERO),
    };
    Ok(RunConfig {
        mode,
        target,
        format: c.format,
        deflate: c.deflate,
        conns: c.conns,
        rooms: c.rooms,
        room_param: !c.no_room_param,
        senders,
        rate,
        size,
        text,
        warmup,
        duration,
        drain,
        threads,
        source_ips,
        connect_rate: c.connect_rate,
        connect_timeout: c.connect_timeout,
        ping_interval: Duration::from_secs(1),
        churn_fraction: 0.0,
        churn_interval: Duration::from_secs(1),
        avalanche: None,
        edit_fraction,
        typists,
        typing_interval,
        run_id: new_run_id(),
    })
}

/// Checks `--edit-fraction`, `--typists` and `--typing-interval` (JSON only).
fn semantics(c: &Common, t: &Traffic) -> Result<(f64, u32, Duration), LoadError> {
    if !(0.0..=1.0).contains(&t.edit_fraction) {
        return Err(LoadError::BadArg("--edit-fraction must be between 0 and 1".into()));
    }
    if t.typists > c.conns {
        return Err(LoadError::BadArg("--typists must be at most --conns".into()));
    }
    if (t.edit_fraction > 0.0 || t.typists > 0) && c.format != Format::Json {
        return Err(LoadError::BadArg("--edit-fraction and --typists need --format json".into()));
    }
    if t.typists > 0 && t.typing_interval < Duration::from_millis(20) {
        return Err(LoadError::BadArg("--typing-interval must be at least 20ms".into()));
    }
    Ok((t.edit_fraction, t.typists, t.typing_interval))
}

/// Runs the engine for a scenario that needs at least one connection and builds its report.
///
/// # Errors
/// The engine's error, or [`LoadError::NoConnections`] when no connection could be opened.
pub fn run_connected(
    scenario: &str,
    cfg: RunConfig,
    config: BTreeMap<String, Value>,
    quiet: bool,
) -> Result<(Report, RunOutcome), LoadError> {
    let (run_id, threads) = (cfg.run_id, cfg.threads);
    let progress = Progress::new(quiet);
    let outcome = engine::run(cfg, &progress)?;
    if outcome.stats.connects_ok == 0 {
        return Err(LoadError::NoConnections(format!("{:?}", outcome.stats.errors)));
    }
    let report = Report::from_run(scenario, run_id, config, &outcome, threads);
    Ok((report, outcome))
}

/// The configuration echoed into the report.
pub fn config_map(cfg: &RunConfig, url: &str) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    m.insert("url".into(), json!(url));
    m.insert("format".into(), json!(cfg.format));
    m.insert("conns".into(), json!(cfg.conns));
    m.insert("deflate".into(), json!(cfg.deflate));
    m.insert("rooms".into(), json!(cfg.rooms));
    m.insert("senders".into(), json!(cfg.senders));
    m.insert("rate".into(), json!(cfg.rate));
    m.insert("size".into(), json!(cfg.size));
    m.insert("text".into(), json!(cfg.text));
    if cfg.edit_fraction > 0.0 {
        m.insert("edit_fraction".into(), json!(cfg.edit_fraction));
    }
    if cfg.typists > 0 {
        m.insert("typists".into(), json!(cfg.typists));
        m.insert("typing_interval_secs".into(), json!(cfg.typing_interval.as_secs_f64()));
    }
    m.insert("warmup_secs".into(), json!(cfg.warmup.as_secs_f64()));
    m.insert("duration_secs".into(), json!(cfg.duration.as_secs_f64()));
    m.insert("drain_secs".into(), json!(cfg.drain.as_secs_f64()));
    m.insert("threads".into(), json!(cfg.threads));
    m.insert("source_ips".into(), json!(cfg.source_ips.len()));
    m.insert("connect_rate".into(), json!(cfg.connect_rate));
    m
}

/// Checks thresholds, prints the table and writes the requested files. `main` is the histogram
/// the thresholds and `--hgrm` use; `raw` (if any) is plotted next to it in `--svg`.
pub fn finish(
    mut report: Report,
    out: &Output,
    main: &Histogram<u64>,
    raw: Option<&Histogram<u64>>,
) -> Result<i32, LoadError> {
    if let Some(bound) = out.fail_if_p99_over {
        let p99 = if main.is_empty() { 0 } else { main.value_at_quantile(0.99) };
        if p99 as u128 > bound.as_micros() {
            report.failures.push(format!(
                "p99 {} exceeds --fail-if-p99-over {}",
                fmt_us(p99),
                fmt_us(bound.as_micros() as u64)
            ));
        }
        if main.is_empty() {
            report.failures.push("no latency samples were recorded".into());
        }
    }
    if out.fail_if_lost {
        let lost = report.messages.lost + report.http.as_ref().map_or(0, |h| h.errors + h.non_2xx);
        if lost > 0 {
            report.failures.push(format!("{lost} messages lost (--fail-if-lost)"));
        }
    }
    print!("{}", crate::report::render_table(&report));
    if let Some(p) = &out.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(p) = &out.hgrm {
        std::fs::write(p, crate::hgrm::percentile_distribution(main, 5, 1000.0))?;
    }
    if let Some(p) = &out.svg {
        crate::svg::write_plot(p, &report.scenario, main, raw)?;
    }
    Ok(if report.failures.is_empty() { 0 } else { EXIT_THRESHOLD })
}
