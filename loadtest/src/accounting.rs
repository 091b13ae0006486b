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

impl Recipient {
    /// Whether message `seq` of `sender` arrived.
    pub fn has(&self, sender: u32, seq: u64) -> bool {
        let Some(t) = self.tracks.get(sender as usize) else { return false };
        t.bits.get((seq / 64) as usize).is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }
}

/// Which measured `(sender, seq)` reached at least one recipient: one bit set per sender,
/// indexed by sender. Merged across workers with a bitwise or.
#[derive(Debug, Default, Clone)]
pub struct SeenAny {
    pub bits: Vec<Vec<u64>>,
}

impl SeenAny {
    pub fn set(&mut self, sender: u32, seq: u64) {
        let s = sender as usize;
        if self.bits.len() <= s {
            self.bits.resize_with(s + 1, Vec::new);
        }
        let w = (seq / 64) as usize;
        if self.bits[s].len() <= w {
            self.bits[s].resize(w + 1, 0);
        }
        self.bits[s][w] |= 1u64 << (seq % 64);
    }

    pub fn merge(&mut self, o: &SeenAny) {
        for (s, words) in o.bits.iter().enumerate() {
            for (w, &b) in words.iter().enumerate() {
                if b != 0 {
                    self.set_word(s, w, b);
                }
            }
        }
    }

    fn set_word(&mut self, s: usize, w: usize, b: u64) {
        if self.bits.len() <= s {
            self.bits.resize_with(s + 1, Vec::new);
        }
        if self.bits[s].len() <= w {
            self.bits[s].resize(w + 1, 0);
        }
        self.bits[s][w] |= b;
    }

    /// The sequence numbers of `sender` that reached someone, ascending.
    pub fn seqs(&self, sender: u32) -> impl Iterator<Item = u64> + '_ {
        self.bits.get(sender as usize).into_iter().flat_map(|words| {
            words
                .iter()
                .enumerate()
                .flat_map(|(w, &b)| (0..64).filter(move |i| b & (1u64 << i) != 0).map(move |i| w as u64 * 64 + i))
        })
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
    fn seen_any_unions_workers_and_recipient_has() {
        let (mut a, mut b) = (SeenAny::default(), SeenAny::default());
        a.set(0, 3);
        b.set(0, 70);
        b.set(2, 1);
        a.merge(&b);
        assert_eq!(a.seqs(0).collect::<Vec<_>>(), [3, 70]);
        assert_eq!(a.seqs(2).collect::<Vec<_>>(), [1]);
        assert_eq!(a.seqs(9).count(), 0);
        let mut r = Recipient::default();
        r.record(0, 70);
        assert!(r.has(0, 70) && !r.has(0, 3) && !r.has(4, 0));
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
