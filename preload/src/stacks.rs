//! Stack interning: each distinct stack is written to the log once.
//!
//! A global open-addressing table maps a 64-bit hash of the frames (and the
//! module epoch) to a small sequential id. Inserting is a single CAS on an
//! empty slot; the winner writes the STACK record into its own stream and then
//! publishes the id. Readers that find the hash but no id yet, or a table that
//! is full, simply define the stack again under a fresh id: duplicates are
//! harmless to the analyzer, blocking would not be.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::sys;

const BITS: u32 = 20;
const SLOTS: usize = 1 << BITS;
const PROBES: usize = 32;

static TABLE: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Maps a fresh, empty table (also in a fork child, whose ids start over).
pub fn reset() {
    let old = TABLE.swap(0, Ordering::AcqRel);
    if old != 0 {
        sys::free_pages(old as *mut u8, SLOTS * 16);
    }
    NEXT_ID.store(1, Ordering::Release);
    if let Some(p) = sys::alloc_pages(SLOTS * 16) {
        TABLE.store(p as usize, Ordering::Release);
    }
}

/// Hash of a stack under the current module epoch (never 0).
///
/// Four independent lanes, so that the multiplications of consecutive frames
/// overlap in the pipeline (deep stacks hash at ~1.5 cycles per frame, not 5).
#[inline]
pub fn hash(frames: &[u64], epoch: u32) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut lanes = [
        0x243F_6A88_85A3_08D3u64 ^ epoch as u64,
        0x1319_8A2E_0370_7344u64 ^ ((frames.len() as u64) << 40),
        0xA409_3822_299F_31D0u64,
        0x082E_FA98_EC4E_6C89u64,
    ];
    let mut chunks = frames.chunks_exact(4);
    for c in &mut chunks {
        for i in 0..4 {
            lanes[i] = (lanes[i] ^ c[i]).wrapping_mul(K).rotate_left(31);
        }
    }
    for (i, &f) in chunks.remainder().iter().enumerate() {
        lanes[i] = (lanes[i] ^ f).wrapping_mul(K).rotate_left(31);
    }
    let mut h =
        lanes[0] ^ lanes[1].rotate_left(17) ^ lanes[2].rotate_left(34) ^ lanes[3].rotate_left(51);
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^= h >> 29;
    h | 1
}

/// Looks `h` up; returns `Ok(id)` if known, or `Err(Some(slot))` if the caller
/// claimed an empty slot and must define the stack and then call [`publish`],
/// or `Err(None)` if the caller must define it without publishing.
#[inline]
pub fn lookup(h: u64) -> Result<u32, Option<&'static AtomicU64>> {
    let base = TABLE.load(Ordering::Acquire);
    if base == 0 {
        return Err(None);
    }
    let mut i = (h >> (64 - BITS)) as usize;
    for _ in 0..PROBES {
        // SAFETY: the table has SLOTS entries of (key, id) as two u64 and stays
        // mapped (only replaced in a fork child, which is single-threaded).
        let s = unsafe { &*((base + i * 16) as *const [AtomicU64; 2]) };
        let k = s[0].load(Ordering::Acquire);
        if k == h {
            let id = s[1].load(Ordering::Acquire);
            return if id != 0 { Ok(id as u32) } else { Err(None) };
        }
        if k == 0 {
            match s[0].compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Err(Some(&s[1])),
                Err(k2) if k2 == h => {
                    let id = s[1].load(Ordering::Acquire);
                    return if id != 0 { Ok(id as u32) } else { Err(None) };
                }
                Err(_) => {}
            }
        }
        i = (i + 1) & (SLOTS - 1);
    }
    Err(None)
}

/// A fresh stack id.
#[inline]
pub fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Makes `id` visible to other threads under the slot claimed by [`lookup`].
#[inline]
pub fn publish(slot: &AtomicU64, id: u32) {
    slot.store(id as u64, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::hash;

    /// Different stacks (order, length, epoch) hash differently; equal ones equally.
    #[test]
    fn hash_separates_stacks() {
        let a = [0x401000u64, 0x402000, 0x403000, 0x404000, 0x405000];
        let b = [0x402000u64, 0x401000, 0x403000, 0x404000, 0x405000];
        assert_eq!(hash(&a, 1), hash(&a, 1));
        assert_ne!(hash(&a, 1), hash(&b, 1));
        assert_ne!(hash(&a, 1), hash(&a[..4], 1));
        assert_ne!(hash(&a, 1), hash(&a, 2));
        assert_ne!(hash(&[], 1), hash(&[0], 1));
    }
}
