//! `broadcast`: N connections in R rooms, S senders at a constant total rate; latency from
//! intended and actual send time to every recipient, with loss/duplicate/reorder accounting.

use crate::cli::BroadcastArgs;
use crate::engine::{self, Mode};
use crate::error::LoadError;
use crate::progress::Progress;
use crate::report::Report;

pub fn run(a: BroadcastArgs) -> Result<i32, LoadError> {
    let cfg = super::run_config(Mode::Broadcast, &a.common, Some(&a.traffic))?;
    let config = super::config_map(&cfg, &a.common.url);
    let (run_id, threads) = (cfg.run_id, cfg.threads);
    let progress = Progress::new(a.common.output.quiet);
    let outcome = engine::run(cfg, &progress)?;
    if outcome.stats.connects_ok == 0 {
        return Err(LoadError::NoConnections(format!("{:?}", outcome.stats.errors)));
    }
    let report = Report::from_run("broadcast", run_id, config, &outcome, threads);
    super::finish(report, &a.common.output, &outcome.stats.corrected, Some(&outcome.stats.raw))
}
