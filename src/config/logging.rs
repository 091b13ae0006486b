//! The log output chosen by `--log-format` and `--log-level`: a `tracing` subscriber on stderr.

use clap::ValueEnum;
use serde::Serialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for log shippers.
    Json,
}

/// The `--log-level` value is not a valid filter.
#[derive(Debug, thiserror::Error)]
#[error("invalid --log-level {value:?} (use error, warn, info, debug, trace or RUST_LOG-style directives): {reason}")]
pub struct LogFilterError {
    /// The value given.
    pub value: String,
    /// The parser's explanation.
    pub reason: String,
}

/// Installs the global subscriber writing to stderr.
///
/// # Errors
/// [`LogFilterError`] when `level` is not a valid filter.
pub fn init(level: &str, format: LogFormat) -> Result<(), LogFilterError> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| LogFilterError { value: level.to_string(), reason: e.to_string() })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
