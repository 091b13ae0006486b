//! Delivery accounting per recipient: which `(sender, seq)` pairs arrived, so that loss,
//! duplicates, out-of-order deliveries (per sender) and misrouted messages can be counted.

/// What one arrival meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First copy, in order.
    New,
    /// First copy, but an older seq than one already seen from the same sender.
    Reordered,
    /// Seen before.
    Duplicate,
}

#[derive(Debug, Default, Clone)]
struct Track {
    bits: Vec<u64>,
    max_seq: Option<u64>,
}

/// The arrivals one recipient connection has seen, per sender.
#[derive(Debug, Default, Clone)]
pub struct Recipient {
    tracks: Vec<Track>,
    /// Distinct messages received.
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl Recipient {
    /// Records the arrival of message `seq` from `sender`.
    pub fn record(&mut self, sender: u32, seq: u64) -> Arrival {
        let s = sender as usize;
        if self.tracks.len() <= s {
            self.tracks.resize_with(s + 1, Track::default);
        }
        let t = &mut self.tracks[s];
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if t.bits.len() <= word {
            t.bits.resize(word + 1, 0);
        }
        if t.bits[word] & bit != 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        t.bits[word] |= bit;
        self.unique += 1;
        match t.max_seq {
            Some(m) if seq < m => {
                self.reordered += 1;
                Arrival::Reordered
            }
            _ => {
                t.max_seq = Some(seq);
                Arrival::New
            }
        }
    }
}

/// Totals for one room, merged across workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoomTotals {
    /// Measured messages sent into the room.
    pub sent: u64,
    /// Connections that were ready when measuring began.
    pub recipients: u64,
    /// Distinct measured messages received, summed over recipients.
    pub unique: u64,
}

impl RoomTotals {
    pub fn merge(&mut self, o: &RoomTotals) {
        self.sent += o.sent;
        self.recipients += o.recipients;
        self.unique += o.unique;
    }

    /// Deliveries the room owed: every message to every recipient (sender included).
    pub fn expected(&self) -> u64 {
        self.sent * self.recipients
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_duplicates_and_reordering_per_sender() {
        let mut r = Recipient::default();
        assert_eq!(r.record(0, 0), Arrival::New);
        assert_eq!(r.record(0, 2), Arrival::New);
        assert_eq!(r.record(0, 1), Arrival::Reordered);
        assert_eq!(r.record(0, 1), Arrival::Duplicate);
        // Another sender's sequence is independent.
        assert_eq!(r.record(5, 0), Arrival::New);
        assert_eq!(r.record(0, 200), Arrival::New);
        assert_eq!((r.unique, r.duplicates, r.reordered), (5, 1, 1));
    }

    #[test]
    fn loss_is_expected_minus_unique() {
        let mut room = RoomTotals { sent: 10, recipients: 3, unique: 28 };
        assert_eq!(room.expected(), 30);
        assert_eq!(room.lost(), 2);
        room.merge(&RoomTotals { sent: 0, recipients: 0, unique: 5 });
        assert_eq!(room.lost(), 0, "surplus never goes negative");
    }
}
