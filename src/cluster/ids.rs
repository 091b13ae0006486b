//! Message ids in cluster mode: Redis hands out multiples of [`ID_STRIDE`]; a node cut off from Redis
//! hands out ids of its own residue class (its *slot*), so ids never collide and the replay after the
//! outage keeps them.
//!
//! Redis's counter (`rc:ids`) only ever takes values that are multiples of the stride when it
//! allocates, and the floor script raises it past every id a node has seen (its provisional ids
//! included) before that node publishes anything after a reconnect. A provisional id is the smallest
//! id above everything the node has seen whose residue is its slot, so it is above every id its local
//! members received (order) and differs from every id Redis or another slot can produce (uniqueness),
//! as long as live nodes have distinct slots (checked in Redis at connect, see `redis_link`).

/// Ids allocated by Redis are multiples of this; residues `1..ID_STRIDE` belong to node slots.
pub(crate) const ID_STRIDE: u64 = 1024;

/// The slot of `node_id`: a stable hash into `1..ID_STRIDE` (0 is Redis's residue).
pub(crate) fn slot_for(node_id: &str) -> u64 {
    // FNV-1a: stable across builds and platforms (std's hasher is not guaranteed to be).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % (ID_STRIDE - 1) + 1
}

/// The smallest id above `max_seen` in residue class `slot` (a provisional id during an outage).
pub(crate) fn next_provisional(max_seen: u64, slot: u64) -> u64 {
    let candidate = max_seen - max_seen % ID_STRIDE + slot;
    if candidate > max_seen { candidate } else { candidate + ID_STRIDE }
}

/// The id Redis allocates after a counter at `counter` (mirrors the publish script; for tests).
#[cfg(test)]
pub(crate) fn next_redis_id(counter: u64) -> u64 {
    (counter / ID_STRIDE + 1) * ID_STRIDE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_never_redis_residue() {
        assert_eq!(slot_for("node-a"), slot_for("node-a"));
        for name in ["a", "b", "c", "node-1", "node-2", ""] {
            let slot = slot_for(name);
            assert!((1..ID_STRIDE).contains(&slot), "{name} → {slot}");
        }
        assert_ne!(slot_for("a"), slot_for("b"));
    }

    #[test]
    fn provisional_ids_increase_and_avoid_other_residues() {
        let slot = 7;
        let mut seen = 5 * ID_STRIDE + 3;
        let mut previous = seen;
        for _ in 0..5 {
            let id = next_provisional(seen, slot);
            assert!(id > previous);
            assert_eq!(id % ID_STRIDE, slot);
            previous = id;
            seen = id;
        }
        assert_eq!(next_provisional(5 * ID_STRIDE + 7, 7), 6 * ID_STRIDE + 7);
        assert_eq!(next_provisional(0, 7), 7);
        // Redis ids after a floor at the provisional maximum are above it and multiples of the stride.
        let floor = next_provisional(9 * ID_STRIDE, 1000);
        let id = next_redis_id(floor);
        assert!(id > floor && id.is_multiple_of(ID_STRIDE));
        assert_eq!(next_redis_id(2 * ID_STRIDE), 3 * ID_STRIDE);
    }
}
