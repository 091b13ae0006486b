//! Repeated-message detection (`--repeat-limit`, `--repeat-window`): the same content from the same
//! user more than the limit times within the window, in any room and from any of the user's
//! connections, is refused.
//!
//! Content is compared normalised (Unicode-lowercased, whitespace runs as one space, trimmed) and
//! kept only as a 64-bit keyed hash (SipHash with this process's random keys: a client cannot
//! craft collisions). Per user a ring of [`RING`] recent contents `(hash, count, first seen)`: the
//! window runs from the first of the identical messages, to the second; a content not among the
//! ring's entries replaces an expired entry or else the oldest one. At most [`MAX_USERS`] users are
//! tracked; a new user past that evicts the one tracked longest (who then starts afresh). About
//! 150 bytes per user: ~10 MiB at the cap.
//!
//! One table per server, split into [`TABLES`] mutex-protected parts by the user's hash, so the
//! shards rarely contend; a part's lock is held for one ring lookup (no IO, no allocation beyond a
//! new user's entry).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Author;

/// Recent distinct contents remembered per user.
pub(crate) const RING: usize = 8;
/// Users tracked at most (across all parts).
pub(crate) const MAX_USERS: usize = 65_536;
/// Parts of the table (each its own lock).
const TABLES: usize = 16;

/// One remembered content.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    hash: u64,
    /// Messages with this content since `first` (0: the slot is free).
    count: u32,
    /// Seconds since the tracker started, when the first of them was sent.
    first: u32,
}

/// A user's recent contents.
#[derive(Debug, Default)]
struct Ring {
    seen: [Seen; RING],
    /// The slot replaced next when none is free or expired.
    next: u8,
}

/// One part of the table.
#[derive(Debug, Default)]
struct Table {
    users: HashMap<u64, Ring>,
    /// Users in the order they started being tracked (the front is evicted first).
    order: VecDeque<u64>,
}

/// The server's repeated-message detector.
#[derive(Debug)]
pub(crate) struct Repeats {
    limit: u32,
    window_secs: u32,
    start: Instant,
    keys: RandomState,
    tables: Box<[Mutex<Table>]>,
}

impl Repeats {
    /// A detector refusing the message after `limit` identical ones within `window`; `None` when
    /// `limit` is 0 (off).
    pub(crate) fn new(limit: u32, window: Duration) -> Option<Repeats> {
        (limit > 0).then(|| Repeats {
            limit,
            window_secs: u32::try_from(window.as_secs()).unwrap_or(u32::MAX).max(1),
            start: Instant::now(),
            keys: RandomState::new(),
            tables: (0..TABLES).map(|_| Mutex::new(Table::default())).collect(),
        })
    }

    /// Records a message of `author` with `content` sent at `now`: `false` (and not recorded) when
    /// it would be one more than the limit within the window.
    pub(crate) fn admit(&self, author: Author<'_>, content: &str, now: Instant) -> bool {
        let user_hash = self.keys.hash_one(author);
        let hash = self.content_hash(content);
        let now = u32::try_from(now.saturating_duration_since(self.start).as_secs()).unwrap_or(u32::MAX);
        let per_table = MAX_USERS / TABLES;
        let index = usize::try_from(user_hash % TABLES as u64).unwrap_or(0);
        let Some(table) = self.tables.get(index) else { return true };
        let mut table = table.lock();
        let Table { users, order } = &mut *table;
        if !users.contains_key(&user_hash) {
            while users.len() >= per_table {
                let Some(oldest) = order.pop_front() else { break };
                users.remove(&oldest);
            }
            order.push_back(user_hash);
        }
        let ring = users.entry(user_hash).or_default();
        let live = |s: &Seen| s.count > 0 && now.saturating_sub(s.first) < self.window_secs;
        if let Some(seen) = ring.seen.iter_mut().find(|s| s.count > 0 && s.hash == hash) {
            if !live(seen) {
                *seen = Seen { hash, count: 1, first: now };
                return true;
            }
            if seen.count >= self.limit {
                return false;
            }
            seen.count += 1;
            return true;
        }
        let slot = match ring.seen.iter().position(|s| !live(s)) {
            Some(free) => free,
            None => {
                let next = usize::from(ring.next) % RING;
                ring.next = u8::try_from((next + 1) % RING).unwrap_or(0);
                next
            }
        };
        ring.seen[slot] = Seen { hash, count: 1, first: now };
        true
    }

    /// Users tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.tables.iter().map(|t| t.lock().users.len()).sum()
    }

    /// The keyed hash of `content` normalised: lowercased, whitespace runs as one separator, trimmed.
    fn content_hash(&self, content: &str) -> u64 {
        let mut hasher = self.keys.build_hasher();
        for word in content.split_whitespace() {
            for c in word.chars().flat_map(char::to_lowercase) {
                hasher.write_u32(u32::from(c));
            }
            // Not a `char`: a separator no content can imitate.
            hasher.write_u32(u32::MAX);
        }
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: Author<'static> = Author::User("ann");

    fn repeats(limit: u32) -> Repeats {
        Repeats::new(limit, Duration::from_secs(30)).expect("on")
    }

    #[test]
    fn off_at_zero() {
        assert!(Repeats::new(0, Duration::from_secs(30)).is_none());
    }

    #[test]
    fn the_message_after_the_limit_is_refused_within_the_window() {
        let r = repeats(3);
        let now = Instant::now();
        assert!((0..3).all(|_| r.admit(ANN, "buy now", now)));
        assert!(!r.admit(ANN, "buy now", now));
        // Normalised: case and whitespace.
        assert!(!r.admit(ANN, "  BUY\t now ", now));
        assert!(r.admit(ANN, "buy nowx", now), "other content passes");
        assert!(r.admit(Author::User("bob"), "buy now", now), "another user passes");
        // The window runs from the first of them.
        assert!(r.admit(ANN, "buy now", now + Duration::from_secs(31)));
    }

    #[test]
    fn words_are_not_merged() {
        let r = repeats(1);
        let now = Instant::now();
        assert!(r.admit(ANN, "ab c", now));
        assert!(r.admit(ANN, "a bc", now));
        assert!(r.admit(ANN, "abc", now));
        assert!(!r.admit(ANN, "AB   C", now));
    }

    #[test]
    fn the_ring_keeps_the_latest_contents() {
        let r = repeats(1);
        let now = Instant::now();
        for i in 0..RING {
            assert!(r.admit(ANN, &format!("m{i}"), now));
        }
        assert!(!r.admit(ANN, "m0", now));
        // One more distinct content replaces the oldest entry.
        assert!(r.admit(ANN, "new", now));
        assert!(r.admit(ANN, "m0", now), "m0 was forgotten");
    }

    #[test]
    fn tracked_users_are_bounded() {
        let r = repeats(1);
        let now = Instant::now();
        for i in 0..MAX_USERS + 5_000 {
            r.admit(Author::User(&format!("user{i}")), "hello", now);
        }
        assert!(r.tracked() <= MAX_USERS, "{}", r.tracked());
        // The newest user is tracked: its repeat is refused.
        assert!(!r.admit(Author::User(&format!("user{}", MAX_USERS + 4_999)), "hello", now));
        assert!(r.admit(Author::Connection(7), "hello", now), "a connection is not the user of that name");
    }
}
