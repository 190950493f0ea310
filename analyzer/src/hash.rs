//! Hashing: the keyed fast hash map the replay, the catalog and the packed
//! log's codec key by integers (addresses, stack ids, slots). Uses only std.

use std::collections::HashMap;

/// A hash map for integer keys (addresses, stack ids) with a fast keyed hash:
/// one multiply per key instead of SipHash's rounds, the hot path of a replay.
/// The key is random per process, so a hostile log cannot aim for collisions.
pub type FastMap<K, V> = HashMap<K, V, FastState>;

/// Builds [`FastHasher`]s sharing one random key.
#[derive(Clone, Debug)]
pub struct FastState(u64);

impl Default for FastState {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let key = *KEY.get_or_init(|| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x9E37_79B9_7F4A_7C15);
            h.finish() | 1
        });
        FastState(key)
    }
}

impl std::hash::BuildHasher for FastState {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

/// Multiply-xorshift over the integers written; keyed by [`FastState`].
#[derive(Clone, Debug)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0xFF51_AFD7_ED55_8CCD)
            .rotate_left(31);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}
