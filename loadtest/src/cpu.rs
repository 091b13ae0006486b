//! Generator CPU accounting via getrusage(RUSAGE_SELF): user+system seconds over wall time.

use std::time::Instant;

/// CPU time consumed and wall time elapsed.
#[derive(Debug, Clone, Copy)]
pub struct CpuUsage {
    pub user_secs: f64,
    pub sys_secs: f64,
    pub wall_secs: f64,
    at: Instant,
}

impl CpuUsage {
    pub fn snapshot() -> CpuUsage {
        // SAFETY: zeroed rusage is valid; getrusage fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a local.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        CpuUsage { user_secs: tv(ru.ru_utime), sys_secs: tv(ru.ru_stime), wall_secs: 0.0, at: Instant::now() }
    }

    /// Usage between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuUsage) -> CpuUsage {
        CpuUsage {
            user_secs: self.user_secs - earlier.user_secs,
            sys_secs: self.sys_secs - earlier.sys_secs,
            wall_secs: self.at.duration_since(earlier.at).as_secs_f64(),
            at: self.at,
        }
    }

    /// CPU seconds per wall second (1.0 = one core busy).
    pub fn cores_used(&self) -> f64 {
        if self.wall_secs > 0.0 { (self.user_secs + self.sys_secs) / self.wall_secs } else { 0.0 }
    }
}

/// Number of CPUs available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
