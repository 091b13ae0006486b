//! What a WebSocket connection carries for the security limits: the rooms it may use, its rate
//! throttle, and its liveness clock (when it last sent a frame, whether a ping is outstanding).
//!
//! [`ClientLimits::liveness`] is the pure decision the shard's 250 ms sweep acts on: send a heartbeat ping
//! after `--ping-interval` of client silence, close a client that answered nothing within
//! `--ping-timeout` (1001), close one that sent no frame at all for `--idle-timeout` (1008). Any frame
//! from the client, a pong included, counts as life.

use std::time::{Duration, Instant};

use super::throttle::{RateLimits, Throttle};
use crate::auth::RoomGrant;

/// Per-connection security state, inside the connection's `WsState`.
#[derive(Debug)]
pub(crate) struct ClientLimits {
    /// Rooms the connection may join, post to and read (`All` without auth).
    pub(crate) grant: RoomGrant,
    /// Message and byte buckets.
    pub(crate) throttle: Throttle,
    /// When the client's last complete frame arrived (the upgrade, at first).
    pub(crate) last_seen: Instant,
    /// When the outstanding heartbeat ping was queued, if one is.
    pub(crate) ping_sent: Option<Instant>,
}

/// What the sweep must do about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Nothing.
    Alive,
    /// Queue a ping (it now counts as outstanding).
    SendPing,
    /// No frame for `--idle-timeout`: close with 1008.
    Idle,
    /// No answer to the ping within `--ping-timeout`: close with 1001, the peer is gone.
    Unresponsive,
}

impl ClientLimits {
    /// The limits of a connection upgraded at `now`.
    pub(crate) fn new(grant: RoomGrant, limits: &RateLimits, now: Instant) -> Self {
        ClientLimits { grant, throttle: Throttle::new(limits, now), last_seen: now, ping_sent: None }
    }

    /// Records that the client sent a frame at `now` (answers any outstanding ping).
    pub(crate) fn seen(&mut self, now: Instant) {
        self.last_seen = now;
        self.ping_sent = None;
    }

    /// Decides what the sweep at `now` must do, given the idle timeout and the heartbeat
    /// (`(interval, timeout)`), each `None` when off.
    pub(crate) fn liveness(
        &mut self,
        now: Instant,
        idle_timeout: Option<Duration>,
        heartbeat: Option<(Duration, Duration)>,
    ) -> Liveness {
        let quiet = now.saturating_duration_since(self.last_seen);
        if idle_timeout.is_some_and(|idle| quiet >= idle) {
            return Liveness::Idle;
        }
        let Some((interval, timeout)) = heartbeat else { return Liveness::Alive };
        match self.ping_sent {
            Some(sent) if now.saturating_duration_since(sent) >= timeout => Liveness::Unresponsive,
            Some(_) => Liveness::Alive,
            None if quiet >= interval => {
                self.ping_sent = Some(now);
                Liveness::SendPing
            }
            None => Liveness::Alive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LIMITS: RateLimits = RateLimits {
        messages_per_sec: 0.0,
        message_burst: 1.0,
        frames_per_sec: 0.0,
        frame_burst: 1.0,
        bytes_per_sec: 0.0,
        byte_burst: 1.0,
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn ping_after_silence_then_close_without_answer() {
        let t0 = Instant::now();
        let mut g = ClientLimits::new(RoomGrant::All, &NO_LIMITS, t0);
        let hb = Some((secs(30), secs(10)));
        assert_eq!(g.liveness(t0 + secs(29), None, hb), Liveness::Alive);
        assert_eq!(g.liveness(t0 + secs(30), None, hb), Liveness::SendPing);
        assert_eq!(g.liveness(t0 + secs(31), None, hb), Liveness::Alive, "one ping outstanding at a time");
        assert_eq!(g.liveness(t0 + secs(40), None, hb), Liveness::Unresponsive);
    }

    #[test]
    fn any_frame_answers_the_ping() {
        let t0 = Instant::now();
        let mut g = ClientLimits::new(RoomGrant::All, &NO_LIMITS, t0);
        let hb = Some((secs(30), secs(10)));
        assert_eq!(g.liveness(t0 + secs(30), None, hb), Liveness::SendPing);
        g.seen(t0 + secs(35));
        assert_eq!(g.liveness(t0 + secs(45), None, hb), Liveness::Alive);
        assert_eq!(g.liveness(t0 + secs(65), None, hb), Liveness::SendPing, "silent again for an interval");
    }

    #[test]
    fn idle_timeout_and_off_switches() {
        let t0 = Instant::now();
        let mut g = ClientLimits::new(RoomGrant::All, &NO_LIMITS, t0);
        assert_eq!(g.liveness(t0 + secs(299), Some(secs(300)), None), Liveness::Alive);
        assert_eq!(g.liveness(t0 + secs(300), Some(secs(300)), None), Liveness::Idle);
        assert_eq!(g.liveness(t0 + secs(100_000), None, None), Liveness::Alive);
    }
}
