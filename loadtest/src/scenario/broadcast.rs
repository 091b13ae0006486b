//! `broadcast`: N connections in R rooms, S senders at a constant total rate; latency from
//! intended and actual send time to every recipient, with loss/duplicate/reorder accounting.

use crate::cli::BroadcastArgs;
use crate::engine::Mode;
use crate::error::LoadError;

pub fn run(a: BroadcastArgs) -> Result<i32, LoadError> {
    let cfg = super::run_config(Mode::Broadcast, &a.common, Some(&a.traffic))?;
    let config = super::config_map(&cfg, &a.common.url);
    let (report, outcome) = super::run_connected("broadcast", cfg, config, a.common.output.quiet)?;
    super::finish(report, &a.common.output, &outcome.stats.corrected, Some(&outcome.stats.raw))
}
