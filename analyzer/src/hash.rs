//! Hashing: the keyed fast hash map the replay, the catalog and the packed
//! log's codec key by integers (addresses, stack ids, slots), and the
//! prefetchable map of addresses the packer keeps ([`AddrMap`]). Uses only
//! std.

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

/// A map from nonzero addresses to small values, open-addressed with linear
/// probing over one array, whose entry for an address can be prefetched
/// ([`AddrMap::prefetch`]) some events before it is looked up: a table of a
/// large log's addresses misses the cache on nearly every lookup, and
/// misses started early overlap with the work in between. Keyed by the same
/// random key as [`FastMap`]. Address 0 is never stored (it marks an empty
/// entry); looking it up finds nothing.
#[derive(Clone, Debug)]
pub struct AddrMap<V> {
    entries: Vec<(u64, V)>,
    len: usize,
    state: FastState,
}

impl<V: Copy + Default> Default for AddrMap<V> {
    fn default() -> Self {
        AddrMap {
            entries: vec![(0, V::default()); 16],
            len: 0,
            state: FastState::default(),
        }
    }
}

impl<V: Copy + Default> AddrMap<V> {
    /// Entries in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    fn home(&self, addr: u64) -> usize {
        use std::hash::BuildHasher;
        self.state.hash_one(addr) as usize & (self.entries.len() - 1)
    }

    /// The place of `addr`, or of the empty entry where it would go.
    #[inline(always)]
    fn find(&self, addr: u64) -> usize {
        let mask = self.entries.len() - 1;
        let mut i = self.home(addr);
        loop {
            let k = self.entries[i].0;
            if k == addr || k == 0 {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts loading `addr`'s entry into the cache.
    #[inline(always)]
    pub fn prefetch(&self, addr: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.entries.as_ptr().wrapping_add(self.home(addr));
            // SAFETY: a prefetch only hints the cache: it reads nothing
            // and cannot fault, whatever the address (this one is inside
            // the array anyway).
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.cast::<i8>(),
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = addr;
    }

    /// The value of `addr`.
    pub fn get(&self, addr: u64) -> Option<&V> {
        if addr == 0 {
            return None;
        }
        let e = &self.entries[self.find(addr)];
        (e.0 == addr).then_some(&e.1)
    }

    /// The value of `addr`, to change.
    pub fn get_mut(&mut self, addr: u64) -> Option<&mut V> {
        if addr == 0 {
            return None;
        }
        let i = self.find(addr);
        let e = &mut self.entries[i];
        (e.0 == addr).then_some(&mut e.1)
    }

    /// Sets `addr`'s value (nothing for address 0); returns the old one.
    pub fn insert(&mut self, addr: u64, v: V) -> Option<V> {
        if addr == 0 {
            return None;
        }
        let i = self.find(addr);
        if self.entries[i].0 == addr {
            return Some(std::mem::replace(&mut self.entries[i].1, v));
        }
        self.entries[i] = (addr, v);
        self.len += 1;
        // At most half full, so that probes stay short.
        if self.len * 2 > self.entries.len() {
            self.grow();
        }
        None
    }

    /// Removes `addr`'s entry, moving back the entries of its probe run
    /// that would no longer be found past the hole.
    pub fn remove(&mut self, addr: u64) -> Option<V> {
        if addr == 0 {
            return None;
        }
        let mask = self.entries.len() - 1;
        let mut hole = self.find(addr);
        if self.entries[hole].0 != addr {
            return None;
        }
        let v = self.entries[hole].1;
        self.entries[hole] = (0, V::default());
        self.len -= 1;
        let mut i = (hole + 1) & mask;
        while self.entries[i].0 != 0 {
            let home = self.home(self.entries[i].0);
            // The entry may fill the hole if its home is not in (hole, i].
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.entries[hole] = self.entries[i];
                self.entries[i] = (0, V::default());
                hole = i;
            }
            i = (i + 1) & mask;
        }
        Some(v)
    }

    /// Keeps the entries for which `f` is true (it may change them).
    pub fn retain(&mut self, mut f: impl FnMut(u64, &mut V) -> bool) {
        let kept: Vec<(u64, V)> = self
            .entries
            .iter()
            .filter(|e| e.0 != 0)
            .filter_map(|&(a, mut v)| f(a, &mut v).then_some((a, v)))
            .collect();
        let size = (kept.len() * 2).next_power_of_two().max(16);
        self.rebuild(size, kept);
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.entries);
        self.rebuild(old.len() * 2, old.into_iter().filter(|e| e.0 != 0));
    }

    /// Puts `entries` (distinct nonzero addresses, at most `size / 2`) into
    /// a fresh array of `size` entries, a power of two.
    fn rebuild(&mut self, size: usize, entries: impl IntoIterator<Item = (u64, V)>) {
        self.entries = vec![(0, V::default()); size];
        self.len = 0;
        for (a, v) in entries {
            self.insert(a, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AddrMap;
    use std::collections::HashMap;

    /// The map agrees with a `HashMap` through inserts, replacements,
    /// removals (which move entries back along their probe runs), growth
    /// and a retain, on addresses that crowd a few homes.
    #[test]
    fn addr_map_agrees_with_a_hash_map() {
        let mut m: AddrMap<u64> = AddrMap::default();
        let mut h: HashMap<u64, u64> = HashMap::new();
        let mut x = 0x1234_5678_9abc_def1u64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct addresses, so that removals hit live entries.
            let addr = 0x5555_0000_0000 + (x % 3000) * 16;
            match x >> 61 {
                0..=3 => assert_eq!(m.insert(addr, step), h.insert(addr, step)),
                4..=6 => assert_eq!(m.remove(addr), h.remove(&addr)),
                _ => {
                    if let Some(v) = m.get_mut(addr) {
                        *v += 1;
                    }
                    if let Some(v) = h.get_mut(&addr) {
                        *v += 1;
                    }
                }
            }
            assert_eq!(m.get(addr), h.get(&addr));
            assert_eq!(m.len(), h.len());
            if step % 50_000 == 49_999 {
                m.retain(|a, v| a % 32 == 0 || *v % 2 == 0);
                h.retain(|a, v| a % 32 == 0 || *v % 2 == 0);
            }
        }
        let mut all: Vec<_> = h.iter().map(|(a, v)| (*a, *v)).collect();
        all.sort();
        for (a, v) in all {
            assert_eq!(m.get(a), Some(&v));
        }
        assert_eq!(m.get(0), None);
        assert_eq!(m.insert(0, 1), None);
        assert_eq!(m.get(0), None);
    }
}
