//! Run orchestration: the run configuration, the atomics shared between the main thread and the
//! workers, and `run`, which spawns workers, paces the phases (connect, warmup+measure, drain,
//! stop) and merges the per-thread statistics.

use crate::clock;
use crate::cpu::CpuUsage;
use crate::error::LoadError;
use crate::procstat::{PidSource, Sampler, ServerUsage};
use crate::progress::Progress;
use crate::protocol::Format;
use crate::stats::{Stats, new_hist};
use crate::target::Target;
use crate::worker::Worker;
use hdrhistogram::Histogram;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which engine behaviour a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Open connections, then stop.
    Connect,
    /// Keep connections idle and ping them.
    Hold,
    /// Constant-rate broadcast with latency markers.
    Broadcast,
    /// Broadcast while clients drop and reconnect.
    Churn,
    /// Broadcast; at one moment every client is dropped (or the server restarted) and all
    /// reconnect with resume.
    Avalanche,
}

/// How the avalanche's outage is made.
#[derive(Debug, Clone)]
pub struct AvalancheCfg {
    /// How far into the measured window the outage begins.
    pub outage_at: Duration,
    /// `true`: drop every client's connection; `false`: run `restart_cmd`.
    pub drop: bool,
    /// Drop mode: how long clients stay away before their reconnects start.
    pub outage: Duration,
    /// First reconnect attempts are spread uniformly over this.
    pub jitter: Duration,
    /// Shell command (`sh -c`) that restarts the server.
    pub restart_cmd: Option<String>,
    /// A failed first connect is tried again up to this many times (with backoff).
    pub connect_retries: u32,
    /// Whose CPU and RSS to sample from the outage on.
    pub server: Option<PidSource>,
}

/// What the avalanche's outage did.
#[derive(Debug, Clone, Default)]
pub struct AvalancheOutcome {
    /// When the outage began (clock ns).
    pub outage_ns: u64,
    /// Exit status of the restart command (`None`: killed by a signal or could not run).
    pub restart_exit: Option<i32>,
    /// How long the restart command ran.
    pub restart_secs: f64,
    /// When the restart command returned (clock ns; 0 without one).
    pub restart_end_ns: u64,
    pub restart_error: Option<String>,
    pub server: Option<ServerUsage>,
}

/// Everything a run needs; shared read-only by the workers.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub mode: Mode,
    pub target: Target,
    pub format: Format,
    /// Offer permessage-deflate.
    pub deflate: bool,
    pub conns: u32,
    pub rooms: u32,
    pub room_param: bool,
    pub senders: u32,
    pub rate: f64,
    pub size: usize,
    /// What fills the payload after the marker.
    pub text: crate::marker::Text,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    pub threads: usize,
    pub source_ips: Vec<IpAddr>,
    pub connect_rate: Option<f64>,
    pub connect_timeout: Duration,
    pub ping_interval: Duration,
    pub churn_fraction: f64,
    pub churn_interval: Duration,
    pub avalanche: Option<AvalancheCfg>,
    /// Fraction of scheduled sends that are edits (JSON).
    pub edit_fraction: f64,
    /// Connections 0..typists send `typing` every `typing_interval` (JSON).
    pub typists: u32,
    pub typing_interval: Duration,
    pub run_id: u64,
}

impl RunConfig {
    /// Room of connection `i`.
    pub fn room_of(&self, i: u32) -> u32 {
        i % self.rooms.max(1)
    }
}

/// State shared between the main thread and the workers.
pub struct Control {
    /// 0 until measuring is scheduled; then the start of warmup (clock ns).
    pub start_ns: AtomicU64,
    /// Avalanche: 0 until the outage begins; then its start (clock ns).
    pub outage_ns: AtomicU64,
    /// Avalanche: live connections lost, and reconnects that became ready again.
    pub went_down: AtomicU64,
    pub rejoined: AtomicU64,
    pub stop: AtomicBool,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub room_sent: Vec<AtomicU64>,
    pub room_recipients: Vec<AtomicU64>,
    /// Corrected latencies since the progress line last looked.
    pub interval: Mutex<Histogram<u64>>,
}

impl Control {
    fn new(rooms: usize) -> Control {
        Control {
            start_ns: AtomicU64::new(0),
            outage_ns: AtomicU64::new(0),
            went_down: AtomicU64::new(0),
            rejoined: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            room_sent: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
            room_recipients: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
            interval: Mutex::new(new_hist()),
        }
    }

    /// Deliveries owed so far: per room, measured sends times ready recipients.
    pub fn expected(&self) -> u64 {
        self.room_sent
            .iter()
            .zip(&self.room_recipients)
            .map(|(s, r)| s.load(Ordering::Relaxed) * r.load(Ordering::Relaxed))
            .sum()
    }
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub stats: Stats,
    /// Seconds spent establishing connections.
    pub connect_secs: f64,
    /// Length of the measured window in seconds.
    pub measured_secs: f64,
    /// Seconds spent waiting for stragglers.
    pub drain_secs: f64,
    pub cpu: CpuUsage,
    /// Start of the send schedule (clock ns; 0 when nothing was sent).
    pub start_ns: u64,
    pub avalanche: Option<AvalancheOutcome>,
}

/// Runs the restart command in the background; its outcome is collected at the end.
/// Exit code, seconds, error, and when the command returned (clock ns).
type RestartResult = (Option<i32>, f64, Option<String>, u64);

fn spawn_restart(cmd: String) -> std::thread::JoinHandle<RestartResult> {
    std::thread::spawn(move || {
        let t = Instant::now();
        match std::process::Command::new("sh").arg("-c").arg(&cmd).stdin(std::process::Stdio::null()).status() {
            Ok(st) => (st.code(), t.elapsed().as_secs_f64(), None, clock::now_ns()),
            Err(e) => (None, t.elapsed().as_secs_f64(), Some(e.to_string()), clock::now_ns()),
        }
    })
}

/// The avalanche's moving parts on the main thread: triggers the outage once and samples the
/// server from then on.
struct Outage {
    cfg: AvalancheCfg,
    at_ns: u64,
    restart: Option<std::thread::JoinHandle<RestartResult>>,
    sampler: Option<Sampler>,
    outcome: AvalancheOutcome,
}

impl Outage {
    fn new(cfg: AvalancheCfg, start_ns: u64, warmup: Duration) -> Outage {
        let at_ns = start_ns + (warmup + cfg.outage_at).as_nanos() as u64;
        let sampler = cfg.server.clone().map(Sampler::new);
        Outage { cfg, at_ns, restart: None, sampler, outcome: AvalancheOutcome::default() }
    }

    /// Call often: begins the outage when its time has come, then samples the server.
    fn tick(&mut self, ctl: &Control) {
        let now = clock::now_ns();
        if self.outcome.outage_ns == 0 && now >= self.at_ns {
            self.outcome.outage_ns = now;
            if let Some(s) = self.sampler.as_mut() {
                s.sample();
            }
            ctl.outage_ns.store(now, Ordering::SeqCst);
            if !self.cfg.drop
                && let Some(cmd) = self.cfg.restart_cmd.clone()
            {
                self.restart = Some(spawn_restart(cmd));
            }
        } else if self.outcome.outage_ns != 0
            && let Some(s) = self.sampler.as_mut()
        {
            s.sample();
        }
    }

    fn finish(mut self) -> AvalancheOutcome {
        if let Some(h) = self.restart.take() {
            match h.join() {
                Ok((code, secs, err, end_ns)) => {
                    self.outcome.restart_end_ns = end_ns;
                    self.outcome.restart_exit = code;
                    self.outcome.restart_secs = crate::report::round3(secs);
                    self.outcome.restart_error = err;
                }
                Err(_) => self.outcome.restart_error = Some("restart thread panicked".into()),
            }
        }
        self.outcome.server = self.sampler.map(|s| s.usage);
        self.outcome
    }
}

/// Runs one load run to completion.
pub fn run(cfg: RunConfig, progress: &Progress) -> Result<RunOutcome, LoadError> {
    crate::net::check_fd_limit(cfg.conns as usize, cfg.threads)?;
    let _ = clock::now_ns();
    let cfg = Arc::new(cfg);
    let ctl = Arc::new(Control::new(cfg.rooms as usize));
    let cpu0 = CpuUsage::snapshot();
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for id in 0..cfg.threads {
        let mut w = Worker::new(id, cfg.clone(), ctl.clone())?;
        let h = std::thread::Builder::new().name(format!("load-{id}")).spawn(move || w.run())?;
        handles.push(h);
    }
    let total = cfg.conns as u64;
    let connect_deadline = t0 + cfg.connect_timeout + Duration::from_millis(500);
    let settled = || ctl.connected.load(Ordering::Relaxed) + ctl.failed.load(Ordering::Relaxed);
    while settled() < total && Instant::now() < connect_deadline {
        progress.tick(&ctl, "connect");
        std::thread::sleep(Duration::from_millis(20));
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let mut measured_secs = 0.0;
    let mut drain_secs = 0.0;
    let mut start_ns = 0;
    let mut outage: Option<Outage> = None;
    if cfg.mode != Mode::Connect && ctl.connected.load(Ordering::Relaxed) > 0 {
        let start = clock::now_ns() + 50_000_000;
        start_ns = start;
        outage = cfg.avalanche.clone().map(|a| Outage::new(a, start, cfg.warmup));
        ctl.start_ns.store(start, Ordering::SeqCst);
        let end = start + (cfg.warmup + cfg.duration).as_nanos() as u64;
        // The outage and the server samples want a finer tick than the progress line.
        let tick_ns = if outage.is_some() { 20_000_000 } else { 100_000_000 };
        while clock::now_ns() < end {
            let phase = if clock::now_ns() < start + cfg.warmup.as_nanos() as u64 { "warmup" } else { "run" };
            progress.tick(&ctl, phase);
            if let Some(o) = outage.as_mut() {
                o.tick(&ctl);
            }
            let left = end.saturating_sub(clock::now_ns());
            std::thread::sleep(Duration::from_nanos(left.min(tick_ns)));
        }
        measured_secs = cfg.duration.as_secs_f64();
        if matches!(cfg.mode, Mode::Broadcast | Mode::Churn | Mode::Avalanche) {
            let d0 = Instant::now();
            // Let in-flight sends leave the workers before comparing counts.
            std::thread::sleep(Duration::from_millis(20));
            let mut quiet = (ctl.delivered.load(Ordering::Relaxed), Instant::now());
            while d0.elapsed() < cfg.drain && ctl.delivered.load(Ordering::Relaxed) < ctl.expected() {
                progress.tick(&ctl, "drain");
                if let Some(o) = outage.as_mut() {
                    o.tick(&ctl);
                    // Messages nobody acknowledged are never delivered: the avalanche's drain also
                    // ends once every client is back and deliveries stopped for a second.
                    let delivered = ctl.delivered.load(Ordering::Relaxed);
                    if delivered != quiet.0 {
                        quiet = (delivered, Instant::now());
                    }
                    let all_back = ctl.rejoined.load(Ordering::Relaxed) >= ctl.went_down.load(Ordering::Relaxed);
                    if all_back && quiet.1.elapsed() >= Duration::from_secs(1) {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            drain_secs = d0.elapsed().as_secs_f64();
        }
    }
    ctl.stop.store(true, Ordering::SeqCst);
    let mut stats = Stats::new(cfg.rooms as usize);
    for h in handles {
        match h.join() {
            Ok(s) => stats.merge(&s),
            Err(_) => return Err(LoadError::Other("a worker thread panicked".into())),
        }
    }
    progress.finish();
    let cpu = CpuUsage::snapshot().since(&cpu0);
    let avalanche = outage.map(Outage::finish);
    Ok(RunOutcome { stats, connect_secs, measured_secs, drain_secs, cpu, start_ns, avalanche })
}
