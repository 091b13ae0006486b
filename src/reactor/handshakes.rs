//! The shard's per-turn budget of HTTP work: requests and upgrades handled per loop turn, and the
//! connections waiting for a later turn, in arrival order.
//!
//! Handshakes and live delivery share the shard's turn. A connect storm (thousands of clients
//! connecting at once, more so with TLS) would otherwise fill one turn with handshakes while the
//! deliveries of established connections wait behind them. So each turn serves at most
//! [`PER_TURN`] HTTP-phase connections' input; a readable one past the budget waits here (its socket
//! left unread, so it stays readable) and is served in the next turns, first in first out, before
//! any connection that became readable after it: every waiting handshake is served, none starves.

use std::collections::VecDeque;

/// HTTP-phase connections whose input is handled per shard turn.
pub(crate) const PER_TURN: usize = 32;

/// This turn's handshake budget and the connections waiting for a later turn (slab keys).
#[derive(Debug)]
pub(crate) struct Handshakes {
    waiting: VecDeque<usize>,
    left: usize,
}

impl Default for Handshakes {
    fn default() -> Self {
        Handshakes { waiting: VecDeque::new(), left: PER_TURN }
    }
}

impl Handshakes {
    /// A new turn: the budget is whole again.
    pub(crate) fn new_turn(&mut self) {
        self.left = PER_TURN;
    }

    /// Whether a connection that just became readable may be served now: budget left, and nobody
    /// waiting before it (a late arrival does not overtake the queue). Takes one from the budget.
    pub(crate) fn admit(&mut self) -> bool {
        if !self.waiting.is_empty() || self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }

    /// Connection `key` waits for a later turn (the caller marks it so it is queued once).
    pub(crate) fn defer(&mut self, key: usize) {
        self.waiting.push_back(key);
    }

    /// The next waiting connection to serve this turn, if the budget allows; takes one from it.
    pub(crate) fn next_waiting(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let key = self.waiting.pop_front()?;
        self.left -= 1;
        Some(key)
    }

    /// Whether connections wait for a turn (the shard's poll must not sleep then).
    pub(crate) fn any_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_serves_the_budget_then_waiting_ones_go_first_in_arrival_order() {
        let mut hs = Handshakes::default();
        for _ in 0..PER_TURN {
            assert!(hs.admit());
        }
        assert!(!hs.admit(), "the budget is spent");
        hs.defer(7);
        hs.defer(3);
        assert_eq!(hs.next_waiting(), None, "not in the spent turn");
        hs.new_turn();
        assert!(!hs.admit(), "a new arrival does not overtake the waiting ones");
        hs.defer(9);
        assert_eq!([hs.next_waiting(), hs.next_waiting(), hs.next_waiting()], [Some(7), Some(3), Some(9)]);
        assert!(!hs.any_waiting());
        assert!(hs.admit(), "the rest of the turn's budget is there for new arrivals");
    }
}
