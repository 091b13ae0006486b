//! The log output chosen by `--log-format` and `--log-level`: a `tracing` subscriber on stderr; and
//! what a panic does ([`exit_on_panic`]).

use std::sync::atomic::{AtomicBool, Ordering};

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

/// Exit status of a process that ended because a thread panicked (the status Rust gives a panic in
/// `main`).
pub const PANIC_EXIT_STATUS: i32 = 101;

/// Makes a panic on any thread end the whole process with status [`PANIC_EXIT_STATUS`], after the
/// usual panic message (thread, location, message; stderr) and one `error` log line.
///
/// Without it a panicking shard thread dies alone while the process keeps its listening socket: every
/// client gets a reset, and a supervisor sees a live process and never restarts it. A panic is a bug
/// and leaves shared state unknown, so the process stops and the supervisor restarts it
/// (`Restart=on-failure`); a crash loses at most what `kill -9` loses (see `store`). Decision: a
/// hook rather than `panic = "abort"` in the release profile, because it behaves the same in debug
/// builds (which the integration tests run), logs through the configured format, and ends with an
/// exit status rather than SIGABRT and a core dump of the whole heap.
///
/// Unwinding never happens after the hook, so `catch_unwind` no longer contains a panic in a process
/// that installed it (only the binary does; the library's tests do not).
pub fn exit_on_panic() {
    static EXITING: AtomicBool = AtomicBool::new(false);
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            panic = %info,
            "a thread panicked (a bug): exiting with status {PANIC_EXIT_STATUS}"
        );
        if EXITING.swap(true, Ordering::SeqCst) {
            // Another thread is already exiting: `exit` must not run twice at once.
            loop {
                std::thread::park();
            }
        }
        std::process::exit(PANIC_EXIT_STATUS);
    }));
}
