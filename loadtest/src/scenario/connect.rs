//! `connect`: open N connections as fast as possible (or at `--connect-rate`) and report
//! handshake latency percentiles and failures by reason.

use crate::cli::ConnectArgs;
use crate::engine::{self, Mode};
use crate::error::LoadError;
use crate::progress::Progress;
use crate::report::Report;

pub fn run(a: ConnectArgs) -> Result<i32, LoadError> {
    let cfg = super::run_config(Mode::Connect, &a.common, None)?;
    let config = super::config_map(&cfg, &a.common.url);
    let (run_id, threads) = (cfg.run_id, cfg.threads);
    let progress = Progress::new(a.common.output.quiet);
    let outcome = engine::run(cfg, &progress)?;
    let mut report = Report::from_run("connect", run_id, config, &outcome, threads);
    if a.common.output.fail_if_lost && report.connections.failed > 0 {
        report.failures.push(format!("{} connections failed (--fail-if-lost)", report.connections.failed));
    }
    super::finish(report, &a.common.output, &outcome.stats.handshake, None)
}
