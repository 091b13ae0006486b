//! `churn`: broadcast while a fraction of the non-sending clients drop abruptly (RST) and
//! reconnect each interval; with `--format json` they resume with `since=<last id>`. The
//! report's completeness tells how much of the traffic the churned clients still received.

use crate::cli::ChurnArgs;
use crate::engine::Mode;
use crate::error::LoadError;

pub fn run(a: ChurnArgs) -> Result<i32, LoadError> {
    let mut cfg = super::run_config(Mode::Churn, &a.common, Some(&a.traffic))?;
    if !(0.0..=1.0).contains(&a.churn_fraction) {
        return Err(LoadError::BadArg("--churn-fraction must be within 0..=1".into()));
    }
    cfg.churn_fraction = a.churn_fraction;
    cfg.churn_interval = a.churn_interval.max(std::time::Duration::from_millis(10));
    let mut config = super::config_map(&cfg, &a.common.url);
    config.insert("churn_fraction".into(), serde_json::json!(a.churn_fraction));
    config.insert("churn_interval_secs".into(), serde_json::json!(cfg.churn_interval.as_secs_f64()));
    let (report, outcome) = super::run_connected("churn", cfg, config, a.common.output.quiet)?;
    super::finish(report, &a.common.output, &outcome.stats.corrected, Some(&outcome.stats.raw))
}
