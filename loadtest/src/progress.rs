//! Live progress line (indicatif): phase, elapsed, connections, sent, delivered, recent p99.
//! Disabled with `--quiet` or when stdout is not a terminal.

use crate::engine::Control;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    last: Mutex<Instant>,
    started: Instant,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stdout().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                b.set_style(style);
            }
            b
        });
        Progress { bar, last: Mutex::new(Instant::now()), started: Instant::now() }
    }

    /// Refreshes the line at most four times a second.
    pub fn tick(&self, ctl: &Control, phase: &str) {
        let Some(bar) = &self.bar else { return };
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.elapsed() < Duration::from_millis(250) {
            return;
        }
        *last = Instant::now();
        let p99 = match ctl.interval.lock() {
            Ok(mut h) => {
                let v = if h.is_empty() { None } else { Some(h.value_at_quantile(0.99)) };
                h.reset();
                v
            }
            Err(_) => None,
        };
        let p99 = p99.map(crate::report::fmt_us).unwrap_or_else(|| "-".into());
        bar.set_message(format!(
            "{phase:7} {:>6.1}s  conns {} (failed {})  sent {}  delivered {}  p99 {}",
            self.started.elapsed().as_secs_f64(),
            ctl.connected.load(Ordering::Relaxed),
            ctl.failed.load(Ordering::Relaxed),
            ctl.sent.load(Ordering::Relaxed),
            ctl.delivered.load(Ordering::Relaxed),
            p99
        ));
        bar.tick();
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
