//! Samples another process's CPU time and resident memory from `/proc/<pid>/stat` and
//! `/proc/<pid>/status` (Linux), e.g. the server's during an avalanche. The pid can be re-read from
//! a file at every sample so a restarted server is followed.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// Where the server's pid comes from.
#[derive(Debug, Clone)]
pub enum PidSource {
    Fixed(u32),
    /// Re-read at every sample (the restart command rewrites it).
    File(PathBuf),
}

impl PidSource {
    fn current(&self) -> Option<u32> {
        match self {
            PidSource::Fixed(p) => Some(*p),
            PidSource::File(f) => std::fs::read_to_string(f).ok()?.trim().parse().ok(),
        }
    }
}

/// CPU ticks (user + system) and RSS of `pid`, `None` when it does not exist (or is a zombie).
fn read(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    if f.first() == Some(&"Z") {
        return None;
    }
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some((ticks, rss_kib))
}

/// Shortest window the CPU peak is measured over.
const PEAK_WINDOW_SECS: f64 = 0.2;

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// What the sampler saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerUsage {
    /// Last pid sampled.
    pub pid: u32,
    /// Samples that found the process.
    pub samples: u64,
    /// Seconds covered by the samples.
    pub window_secs: f64,
    /// CPU seconds (user + system) the server used in the window (summed over restarts).
    pub cpu_secs: f64,
    /// Highest CPU use over a window of at least 200 ms, in cores (1.0 = one core busy).
    pub cpu_peak_cores: f64,
    /// Highest resident set size seen, KiB.
    pub rss_peak_kib: u64,
}

/// Accumulates samples of one process (following pid changes).
pub struct Sampler {
    source: PidSource,
    last: Option<(u32, u64, Instant)>,
    first: Option<Instant>,
    tps: f64,
    pub usage: ServerUsage,
}

impl Sampler {
    pub fn new(source: PidSource) -> Sampler {
        Sampler { source, last: None, first: None, tps: ticks_per_sec(), usage: ServerUsage::default() }
    }

    /// Takes one sample now.
    pub fn sample(&mut self) {
        let Some(pid) = self.source.current() else { return };
        let Some((ticks, rss)) = read(pid) else { return };
        let now = Instant::now();
        let u = &mut self.usage;
        u.pid = pid;
        u.samples += 1;
        u.rss_peak_kib = u.rss_peak_kib.max(rss);
        let first = *self.first.get_or_insert(now);
        u.window_secs = crate::report::round3(now.duration_since(first).as_secs_f64());
        match self.last {
            // CPU is taken over windows of at least PEAK_WINDOW (ticks are coarse).
            Some((lpid, _, lat)) if lpid == pid && now.duration_since(lat).as_secs_f64() < PEAK_WINDOW_SECS => {}
            Some((lpid, lticks, lat)) if lpid == pid => {
                let cpu = ticks.saturating_sub(lticks) as f64 / self.tps;
                u.cpu_secs = crate::report::round3(u.cpu_secs + cpu);
                let dt = now.duration_since(lat).as_secs_f64();
                u.cpu_peak_cores = u.cpu_peak_cores.max(crate::report::round3(cpu / dt));
                self.last = Some((pid, ticks, now));
            }
            _ => self.last = Some((pid, ticks, now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let mut s = Sampler::new(PidSource::Fixed(std::process::id()));
        s.sample();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        std::thread::sleep(std::time::Duration::from_millis(250));
        s.sample();
        assert_eq!(s.usage.samples, 2);
        assert_eq!(s.usage.pid, std::process::id());
        assert!(s.usage.rss_peak_kib > 0);
        let mut none = Sampler::new(PidSource::File("/nonexistent/pid".into()));
        none.sample();
        assert_eq!(none.usage.samples, 0);
    }
}
