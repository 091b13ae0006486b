//! `avalanche`: broadcast; at `--outage-at` every client loses its connection at once (`--drop`
//! resets them all; `--restart-cmd` restarts the server) and all reconnect with `since=<last id>`,
//! spread over `--jitter` and backing off like the web client. Loss is counted per message and
//! recipient: a message that reached anyone was accepted, and every client of its room owes it
//! exactly once; a message that reached no one is `unconfirmed`, counted apart.

use crate::cli::AvalancheArgs;
use crate::engine::{AvalancheCfg, Mode, RunOutcome};
use crate::error::LoadError;
use crate::procstat::PidSource;
use crate::report::{Avalanche, Latency};
use crate::schedule::Schedule;

/// Exact loss of accepted messages, per recipient.
#[derive(Debug, Default, PartialEq, Eq)]
struct Loss {
    accepted: u64,
    accepted_after: u64,
    expected: u64,
    lost: u64,
    before: u64,
    after: u64,
}

/// Walks every recipient over the accepted messages of its room.
/// `boundary_ns`: messages meant to be sent before it count as lost during the outage.
fn count_loss(o: &RunOutcome, rooms: u32, senders: u32, sched: &Schedule, boundary_ns: u64) -> Loss {
    let s = &o.stats;
    let mut l = Loss::default();
    let room_senders = |room: u32| (0..senders).filter(move |x| x % rooms.max(1) == room);
    for sender in 0..senders {
        for seq in s.seen_any.seqs(sender) {
            l.accepted += 1;
            if sched.intended(sender, seq) >= boundary_ns {
                l.accepted_after += 1;
            }
        }
    }
    for (room, rec) in &s.recipients {
        for sender in room_senders(*room) {
            for seq in s.seen_any.seqs(sender) {
                l.expected += 1;
                if !rec.has(sender, seq) {
                    l.lost += 1;
                    if sched.intended(sender, seq) < boundary_ns {
                        l.before += 1;
                    } else {
                        l.after += 1;
                    }
                }
            }
        }
    }
    l
}

pub fn run(a: AvalancheArgs) -> Result<i32, LoadError> {
    let mut cfg = super::run_config(Mode::Avalanche, &a.common, Some(&a.traffic))?;
    if a.drop == a.restart_cmd.is_some() {
        return Err(LoadError::BadArg("give exactly one of --drop and --restart-cmd".into()));
    }
    let away = if a.drop { a.outage } else { std::time::Duration::ZERO };
    if a.outage_at + away + a.jitter >= a.traffic.duration {
        return Err(LoadError::BadArg(
            "--duration must be longer than --outage-at + --outage (with --drop) + --jitter, so clients \
             reconnect while messages are still sent"
                .into(),
        ));
    }
    let server = match (a.server_pid, &a.server_pid_file) {
        (Some(p), _) => Some(PidSource::Fixed(p)),
        (None, Some(f)) => Some(PidSource::File(f.clone())),
        (None, None) => None,
    };
    cfg.avalanche = Some(AvalancheCfg {
        outage_at: a.outage_at,
        drop: a.drop,
        outage: a.outage,
        jitter: a.jitter,
        restart_cmd: a.restart_cmd.clone(),
        connect_retries: a.connect_retries,
        server,
    });
    let (rooms, senders, rate) = (cfg.rooms, cfg.senders, cfg.rate);
    let mut config = super::config_map(&cfg, &a.common.url);
    config.insert("mode".into(), serde_json::json!(if a.drop { "drop" } else { "restart" }));
    config.insert("outage_at_secs".into(), serde_json::json!(a.outage_at.as_secs_f64()));
    config.insert("outage_secs".into(), serde_json::json!(away.as_secs_f64()));
    config.insert("jitter_secs".into(), serde_json::json!(a.jitter.as_secs_f64()));
    config.insert("restart_cmd".into(), serde_json::json!(a.restart_cmd));
    config.insert("connect_retries".into(), serde_json::json!(a.connect_retries));
    let (mut report, outcome) = super::run_connected("avalanche", cfg, config, a.common.output.quiet)?;
    let out = outcome.avalanche.clone().unwrap_or_default();
    let sched = Schedule::new(outcome.start_ns, rate, senders);
    // Drop: the outage is the moment of the drop. Restart: everything sent until the restart
    // command returned may have met the old server (the crash window of a kill -9).
    let boundary = match (out.outage_ns, out.restart_end_ns) {
        (0, _) => u64::MAX,
        (o, 0) => o,
        (_, r) => r,
    };
    let loss = count_loss(&outcome, rooms, senders, &sched, boundary);
    let s = &outcome.stats;
    let m = &mut report.messages;
    m.expected = loss.expected;
    m.lost = loss.lost;
    m.completeness = if loss.expected == 0 {
        1.0
    } else {
        ((loss.expected - loss.lost) as f64 / loss.expected as f64 * 1e6).round() / 1e6
    };
    report.avalanche = Some(Avalanche {
        mode: if a.drop { "drop" } else { "restart" }.into(),
        outage_at_secs: a.outage_at.as_secs_f64(),
        clients: s.recipients.len() as u64,
        disconnected: s.disconnects,
        reconnect_attempts: s.reconnect_attempts,
        reconnect_failures: s.reconnect_failures,
        reconnect_errors: s.reconnect_errors.clone(),
        first_connect_retries: s.first_connect_retries,
        first_connect_retry_errors: s.first_connect_retry_errors.clone(),
        caught_up: s.catchup.len(),
        not_caught_up: s.not_caught_up,
        not_connected_at_end: s.not_connected_at_end,
        catchup_us: Latency::from_hist(&s.catchup),
        recovery_us: Latency::from_hist(&s.recovery),
        first_live_us: Latency::from_hist(&s.first_live),
        replayed: s.replayed,
        accepted: loss.accepted,
        accepted_after_outage: loss.accepted_after,
        unconfirmed: s.sent.saturating_sub(loss.accepted),
        lost: loss.lost,
        lost_during_outage: loss.before,
        lost_after_outage: loss.after,
        duplicates: s.duplicates,
        reordered: s.reordered,
        sends_skipped_disconnected: s.errors.get("send_skipped_disconnected").copied().unwrap_or(0),
        restart_exit: out.restart_exit,
        restart_secs: out.restart_secs,
        restart_error: out.restart_error.clone(),
        server: out.server.clone(),
    });
    if out.outage_ns == 0 {
        report.failures.push("the outage never began (the run ended first)".into());
    }
    if !a.drop && out.restart_exit != Some(0) {
        report.failures.push(format!(
            "--restart-cmd did not succeed (exit {:?}{})",
            out.restart_exit,
            out.restart_error.as_deref().map(|e| format!(", {e}")).unwrap_or_default()
        ));
    }
    super::finish(report, &a.common.output, &outcome.stats.catchup, Some(&outcome.stats.corrected))
}
