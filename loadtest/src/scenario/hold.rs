//! `hold`: N idle connections kept open for a duration and pinged; reports how many survive,
//! ping round-trip percentiles and disconnect reasons.

use crate::cli::HoldArgs;
use crate::engine::Mode;
use crate::error::LoadError;

pub fn run(a: HoldArgs) -> Result<i32, LoadError> {
    let mut cfg = super::run_config(Mode::Hold, &a.common, None)?;
    cfg.duration = a.duration;
    cfg.ping_interval = a.ping_interval.max(std::time::Duration::from_millis(10));
    let config = super::config_map(&cfg, &a.common.url);
    let (mut report, outcome) = super::run_connected("hold", cfg, config, a.common.output.quiet)?;
    if a.common.output.fail_if_lost && report.connections.disconnects > 0 {
        report
            .failures
            .push(format!("{} connections dropped during hold (--fail-if-lost)", report.connections.disconnects));
    }
    super::finish(report, &a.common.output, &outcome.stats.ping_rtt, None)
}
