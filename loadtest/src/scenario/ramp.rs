//! `ramp`: repeated broadcast steps at increasing rates (fresh connections per step) until the
//! corrected p99 exceeds `--p99-bound` or messages are lost; reports the highest sustainable rate.

use crate::cli::RampArgs;
use crate::engine::{self, Mode};
use crate::error::LoadError;
use crate::progress::Progress;
use crate::report::{RampStep, Report};
use crate::stats::new_hist;

pub fn run(a: RampArgs) -> Result<i32, LoadError> {
    let base = super::run_config(Mode::Broadcast, &a.common, Some(&a.traffic))?;
    let step = a.ramp_step.unwrap_or(a.traffic.rate).max(1.0);
    let bound_us = a.p99_bound.as_micros() as u64;
    let mut steps = Vec::new();
    let mut best: Option<f64> = None;
    let mut last = None;
    let mut all = new_hist();
    for i in 0..a.max_steps.max(1) {
        let mut cfg = base.clone();
        cfg.rate = a.traffic.rate + step * i as f64;
        cfg.run_id = super::new_run_id();
        let rate = cfg.rate;
        let progress = Progress::new(a.common.output.quiet);
        let outcome = engine::run(cfg, &progress)?;
        let s = &outcome.stats;
        let p99 = if s.corrected.is_empty() { u64::MAX } else { s.corrected.value_at_quantile(0.99) };
        let lost = s.lost();
        let ok = s.connects_ok > 0 && lost == 0 && p99 <= bound_us;
        let secs = outcome.measured_secs.max(1e-9);
        steps.push(RampStep {
            rate,
            sent: s.sent,
            delivered: s.delivered,
            lost,
            deliveries_per_sec_out: crate::report::round3(s.delivered as f64 / secs),
            p99_us: if p99 == u64::MAX { 0 } else { p99 },
            sustainable: ok,
        });
        if !a.common.output.quiet {
            eprintln!(
                "ramp: {rate:.0} msgs/s -> p99 {} lost {lost} {}",
                crate::report::fmt_us(p99.min(crate::stats::MAX_US)),
                if ok { "ok" } else { "over the bound" }
            );
        }
        let _ = all.add(&s.corrected);
        last = Some(outcome);
        if !ok {
            break;
        }
        best = Some(rate);
    }
    let Some(outcome) = last else {
        return Err(LoadError::Other("ramp ran no step".into()));
    };
    let mut config = super::config_map(&base, &a.common.url);
    config.insert("ramp_step".into(), serde_json::json!(step));
    config.insert("p99_bound_us".into(), serde_json::json!(bound_us));
    let mut report = Report::from_run("ramp", base.run_id, config, &outcome, base.threads);
    report.ramp = steps;
    report.ramp_max_sustainable_rate = best;
    super::finish(report, &a.common.output, &all, None)
}
