//! Per-connection rate limits: a chat-message bucket (`--rate-limit`/`--rate-burst`), a frame bucket
//! that every frame is charged to, a payload-byte bucket (`--rate-limit-bytes`, bursts of two
//! seconds' worth), and the flood rule.
//!
//! What counts against which bucket (`docs/PROTOCOL.md`, "Rate limits", says the same):
//! - every data frame and every ping, whatever it carries, is charged to the **frame** bucket and its
//!   payload to the **byte** bucket *before it is parsed* (so even frames that do not parse are
//!   counted and cost no parsing once over the limit);
//! - a chat message (a JSON `message` command, a text-format text or binary frame) is also charged to
//!   the **message** bucket.
//!
//! The frame bucket is the message bucket plus a budget of its own for control commands (`join`,
//! `leave`, `history`, `ping`, WebSocket pings): [`CONTROL_PER_SEC`] more per second and a burst of
//! [`control_burst`] more, room for a reconnecting client to rejoin every room it may be in
//! (`--max-rooms-per-conn`) and ask one history page for each, at once, on top of a full burst of
//! chat. Chat cannot eat that budget (the message bucket caps it); control commands cannot post.
//! Why a separate budget rather than a multi-room `join`: ARCHITECTURE.md, "What was decided".
//!
//! A frame or message over a limit is refused (`rate_limited`, not handled). A client refused more
//! than [`FLOOD_WARNINGS`] times within [`FLOOD_WINDOW`] keeps flooding despite the warnings and is
//! closed with 1008; from that verdict on the throttle refuses everything ([`Throttle::closing`]).
//! Checking is O(1), allocation-free and syscall-free: the caller passes `now`.

use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
use crate::config::Config;

/// Refusals (each answered with a `rate_limited` error) tolerated within [`FLOOD_WINDOW`]; one more
/// closes the connection with 1008.
pub(crate) const FLOOD_WARNINGS: u32 = 10;
/// The window over which refusals are counted.
pub(crate) const FLOOD_WINDOW: Duration = Duration::from_secs(10);
/// Control frames per second allowed on top of `--rate-limit` (the frame bucket's extra refill).
pub(crate) const CONTROL_PER_SEC: f64 = 10.0;
/// Control frames allowed in a burst beyond a rejoin of every room (pings, a few history pages).
pub(crate) const CONTROL_SLACK: usize = 16;

/// The frame bucket's burst beyond `--rate-burst`: a `join` and a `history` for each of
/// `max_rooms` rooms, plus [`CONTROL_SLACK`].
pub(crate) fn control_burst(max_rooms: usize) -> usize {
    max_rooms.saturating_mul(2).saturating_add(CONTROL_SLACK)
}

/// The configured rates; a rate of 0 turns its bucket off.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct RateLimits {
    /// Chat messages per second.
    pub(crate) messages_per_sec: f64,
    /// Chat messages in a burst.
    pub(crate) message_burst: f64,
    /// Frames (of any kind) per second: the message rate plus [`CONTROL_PER_SEC`]; 0 (off) with it.
    pub(crate) frames_per_sec: f64,
    /// Frames in a burst: the message burst plus [`control_burst`].
    pub(crate) frame_burst: f64,
    /// Payload bytes per second.
    pub(crate) bytes_per_sec: f64,
    /// Payload bytes in a burst: two seconds' worth, and never less than one largest frame.
    pub(crate) byte_burst: f64,
}

impl RateLimits {
    /// The limits `cfg` asks for.
    pub(crate) fn from_config(cfg: &Config) -> Self {
        let bytes = cfg.rate_limit_bytes as f64;
        let messages = f64::from(cfg.rate_limit);
        let message_burst = f64::from(cfg.rate_burst.max(1));
        RateLimits {
            messages_per_sec: messages,
            message_burst,
            frames_per_sec: if messages > 0.0 { messages + CONTROL_PER_SEC } else { 0.0 },
            frame_burst: message_burst + control_burst(cfg.max_rooms_per_conn) as f64,
            bytes_per_sec: bytes,
            byte_burst: (2.0 * bytes).max(cfg.max_json_frame_bytes() as f64),
        }
    }

    /// Whether any limit is on.
    pub(crate) fn enabled(&self) -> bool {
        self.messages_per_sec > 0.0 || self.frames_per_sec > 0.0 || self.bytes_per_sec > 0.0
    }
}

/// What to do with one frame or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limits: handle it.
    Allow,
    /// Over a limit: drop it and answer `rate_limited`.
    Refuse,
    /// Over a limit once too often: close the connection with 1008.
    Close,
}

/// One connection's buckets and warning count.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    messages: TokenBucket,
    frames: TokenBucket,
    bytes: TokenBucket,
    warnings: u32,
    window_start: Instant,
    closing: bool,
    /// When the last frame was charged: its chat message (if it is one) is charged at that time.
    last_frame: Instant,
}

impl Throttle {
    /// Full buckets at `now`.
    pub(crate) fn new(limits: &RateLimits, now: Instant) -> Self {
        Throttle {
            messages: TokenBucket::full(limits.message_burst, now),
            frames: TokenBucket::full(limits.frame_burst, now),
            bytes: TokenBucket::full(limits.byte_burst, now),
            warnings: 0,
            window_start: now,
            closing: false,
            last_frame: now,
        }
    }

    /// Whether a [`Verdict::Close`] was given: the connection is being closed for flooding, and
    /// nothing more it sends is handled.
    pub(crate) fn closing(&self) -> bool {
        self.closing
    }

    /// Charges one frame (data message or ping) of `payload_len` bytes received at `now`, before it
    /// is parsed: one frame token and its payload bytes.
    pub(crate) fn admit_frame(&mut self, limits: &RateLimits, now: Instant, payload_len: usize) -> Verdict {
        if self.closing {
            return Verdict::Close;
        }
        self.last_frame = now;
        let frame_ok =
            limits.frames_per_sec <= 0.0 || self.frames.try_take(now, limits.frames_per_sec, limits.frame_burst, 1.0);
        let bytes_ok = !frame_ok
            || limits.bytes_per_sec <= 0.0
            || self.bytes.try_take(now, limits.bytes_per_sec, limits.byte_burst, payload_len as f64);
        self.verdict(now, frame_ok && bytes_ok)
    }

    /// Charges one chat message, at the time its frame was charged by [`Self::admit_frame`] (the
    /// session knows a JSON frame is a `message` only once it is parsed).
    pub(crate) fn admit_message(&mut self, limits: &RateLimits) -> Verdict {
        if self.closing {
            return Verdict::Close;
        }
        let now = self.last_frame;
        let ok = limits.messages_per_sec <= 0.0
            || self.messages.try_take(now, limits.messages_per_sec, limits.message_burst, 1.0);
        self.verdict(now, ok)
    }

    fn verdict(&mut self, now: Instant, ok: bool) -> Verdict {
        if ok {
            return Verdict::Allow;
        }
        if now.saturating_duration_since(self.window_start) > FLOOD_WINDOW {
            self.window_start = now;
            self.warnings = 0;
        }
        self.warnings += 1;
        if self.warnings > FLOOD_WARNINGS {
            self.closing = true;
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `messages`/s in bursts of `burst`, frames with a control budget for `rooms` rooms, `bytes`/s.
    fn limits(messages: f64, burst: f64, rooms: usize, bytes: f64) -> RateLimits {
        RateLimits {
            messages_per_sec: messages,
            message_burst: burst,
            frames_per_sec: if messages > 0.0 { messages + CONTROL_PER_SEC } else { 0.0 },
            frame_burst: burst + control_burst(rooms) as f64,
            bytes_per_sec: bytes,
            byte_burst: 2.0 * bytes,
        }
    }

    /// One chat message as the session charges it: its frame, then the message.
    fn chat(t: &mut Throttle, l: &RateLimits, now: Instant) -> Verdict {
        match t.admit_frame(l, now, 10) {
            Verdict::Allow => t.admit_message(l),
            other => other,
        }
    }

    #[test]
    fn refuses_messages_over_the_burst_then_closes_a_flooder() {
        let l = limits(20.0, 40.0, 64, 0.0);
        let now = Instant::now();
        let mut t = Throttle::new(&l, now);
        assert!((0..40).all(|_| chat(&mut t, &l, now) == Verdict::Allow));
        for _ in 0..FLOOD_WARNINGS {
            assert_eq!(chat(&mut t, &l, now), Verdict::Refuse);
        }
        assert_eq!(chat(&mut t, &l, now), Verdict::Close);
        assert!(t.closing());
        assert_eq!(t.admit_frame(&l, now + FLOOD_WINDOW * 2, 1), Verdict::Close, "nothing is handled any more");
    }

    #[test]
    fn a_rejoin_of_every_room_fits_on_top_of_a_full_chat_burst() {
        let rooms = 64;
        let l = limits(20.0, 40.0, rooms, 0.0);
        let now = Instant::now();
        let mut t = Throttle::new(&l, now);
        assert!((0..40).all(|_| chat(&mut t, &l, now) == Verdict::Allow));
        // A join and a history page per room, and the slack: all at once.
        assert!((0..control_burst(rooms)).all(|_| t.admit_frame(&l, now, 30) == Verdict::Allow));
        assert_eq!(t.admit_frame(&l, now, 30), Verdict::Refuse, "the frame budget is bounded");
    }

    #[test]
    fn control_frames_never_buy_chat_and_chat_never_starves_control() {
        let l = limits(1.0, 2.0, 4, 0.0);
        let now = Instant::now();
        let mut t = Throttle::new(&l, now);
        assert!((0..2).all(|_| chat(&mut t, &l, now) == Verdict::Allow));
        assert_eq!(chat(&mut t, &l, now), Verdict::Refuse, "two chat messages in a burst");
        // The refused message spent a frame token: 4 × 2 + 16 - 1 control frames are left.
        assert!((0..control_burst(4) - 1).all(|_| t.admit_frame(&l, now, 1) == Verdict::Allow));
        assert_eq!(t.admit_frame(&l, now, 1), Verdict::Refuse);
        // A second later the chat bucket has one token and the frame bucket 11.
        let later = now + Duration::from_secs(1);
        assert_eq!(chat(&mut t, &l, later), Verdict::Allow);
        assert_eq!(t.admit_message(&l), Verdict::Refuse);
    }

    #[test]
    fn warnings_expire_with_the_window() {
        let l = limits(1.0, 1.0, 1, 0.0);
        let t0 = Instant::now();
        let mut t = Throttle::new(&l, t0);
        assert_eq!(chat(&mut t, &l, t0), Verdict::Allow);
        for _ in 0..FLOOD_WARNINGS {
            assert_eq!(chat(&mut t, &l, t0), Verdict::Refuse);
        }
        let later = t0 + FLOOD_WINDOW + Duration::from_secs(1);
        assert_eq!(chat(&mut t, &l, later), Verdict::Allow, "refilled");
        assert_eq!(chat(&mut t, &l, later), Verdict::Refuse, "a new window starts counting from zero");
    }

    #[test]
    fn byte_limit_and_off_switches() {
        let l = limits(0.0, 1.0, 1, 1000.0);
        let now = Instant::now();
        let mut t = Throttle::new(&l, now);
        assert_eq!(t.admit_frame(&l, now, 1500), Verdict::Allow);
        assert_eq!(t.admit_frame(&l, now, 600), Verdict::Refuse, "2000-byte burst spent");
        assert_eq!(t.admit_message(&l), Verdict::Allow, "no message limit");
        let off = limits(0.0, 1.0, 1, 0.0);
        assert!(!off.enabled());
        let mut t = Throttle::new(&off, now);
        assert!((0..10_000).all(|_| chat(&mut t, &off, now) == Verdict::Allow));
    }
}
