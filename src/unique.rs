//! [`unique_u64`]: a number that differs between processes and calls, for names that must not
//! collide (default node ids, cluster incarnations, database epochs). Not cryptographic.

use std::hash::{BuildHasher, Hasher};

/// Time, pid and a per-process random key (`RandomState`), hashed.
pub(crate) fn unique_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_calls_differ() {
        assert_ne!(super::unique_u64(), super::unique_u64());
    }
}
