//! Process figures from `/proc/self` (Linux): resident memory, open and maximum file descriptors, CPU
//! time, threads and start time. Each is `None` where it cannot be read (other systems), and is then
//! left out of `/metrics`.

use std::fs;

/// One reading of the process figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ProcessStats {
    /// Resident set size, bytes.
    pub(crate) resident_bytes: Option<u64>,
    /// Open file descriptors.
    pub(crate) open_fds: Option<u64>,
    /// Soft limit on file descriptors.
    pub(crate) max_fds: Option<u64>,
    /// User + system CPU time, seconds.
    pub(crate) cpu_seconds: Option<f64>,
    /// Threads.
    pub(crate) threads: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub(crate) start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the figures now (a few small `/proc` reads).
    pub(crate) fn read() -> ProcessStats {
        // SAFETY: sysconf only reads a configuration value.
        let (page_size, ticks) = unsafe { (libc::sysconf(libc::_SC_PAGESIZE), libc::sysconf(libc::_SC_CLK_TCK)) };
        let stat = fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let field = |n: usize| fields.as_ref().and_then(|f| f.get(n - 3)).and_then(|v| v.parse::<u64>().ok());
        let ticks = (ticks > 0).then_some(ticks as f64);
        let cpu_seconds = match (field(14), field(15), ticks) {
            (Some(user), Some(system), Some(ticks)) => Some((user + system) as f64 / ticks),
            _ => None,
        };
        let start_time_seconds = match (field(22), ticks, boot_time()) {
            (Some(start), Some(ticks), Some(boot)) => Some(boot as f64 + start as f64 / ticks),
            _ => None,
        };
        let resident_bytes = fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
            .and_then(|pages| u64::try_from(page_size).ok().map(|size| pages * size));
        // The directory handle used for counting is itself an open descriptor: leave it out.
        let open_fds = fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64).map(|n| n.saturating_sub(1));
        ProcessStats {
            resident_bytes,
            open_fds,
            max_fds: max_fds(),
            cpu_seconds,
            threads: field(20),
            start_time_seconds,
        }
    }
}

/// The fields of `/proc/self/stat` after the command name (which may contain spaces and parentheses);
/// index 0 is field 3 (`state`).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().collect())
}

/// Boot time, seconds since the epoch (`btime` in `/proc/stat`).
fn boot_time() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

fn max_fds() -> Option<u64> {
    crate::config::fd_limits().map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_a_tricky_command_name() {
        let fields = stat_fields("42 (a) b (c)) S 1 2 3").expect("fields");
        assert_eq!(fields, vec!["S", "1", "2", "3"]);
    }

    #[test]
    fn reads_this_process_on_linux() {
        let stats = ProcessStats::read();
        if cfg!(target_os = "linux") {
            assert!(stats.resident_bytes.is_some_and(|b| b > 0));
            assert!(stats.open_fds.is_some_and(|n| n >= 3));
            assert!(stats.cpu_seconds.is_some());
            assert!(stats.threads.is_some_and(|n| n >= 1));
            assert!(stats.start_time_seconds.is_some_and(|t| t > 1e9));
        }
    }
}
