//! Stack interning: each distinct stack is written to the log once.
//!
//! A global open-addressing table maps a 64-bit hash of the frames (and the
//! module epoch) to a small sequential id. Inserting is a single CAS on an
//! empty slot; the winner writes the STACK record into its own stream and then
//! publishes the id. Readers that find the hash but no id yet simply define
//! the stack again under a fresh id: blocking would be worse, and the analyzer
//! merges ids with equal frames.
//!
//! The table grows without moving anything: when a hash's window of
//! `PROBES` slots in the first table (2^20 slots) holds neither it nor an
//! empty slot, the lookup goes on in a second table twice as large, mapped
//! (raw `mmap`) by the first thread that needs it, and so on up to
//! `TABLES` tables (2^28 stacks in all). A window never empties, so every
//! lookup of a hash walks the same tables in the same order and finds it
//! where it was put. Stacks in the first table, the usual case, cost what
//! they did before the table could grow.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::sys;

/// Slots of the first table: 2^BITS. Table `k` has 2^(BITS + k).
const BITS: u32 = 20;
const PROBES: usize = 32;
/// Tables in all; the last has 2^27 slots (2 GiB virtual, touched on demand).
const TABLES: usize = 8;

/// The first table.
static TABLE: AtomicUsize = AtomicUsize::new(0);
/// Tables 1.. (`MORE[k - 1]`), 0 until a lookup first needs them.
static MORE: [AtomicUsize; TABLES - 1] = [const { AtomicUsize::new(0) }; TABLES - 1];
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Bytes of table `k`.
const fn table_bytes(k: usize) -> usize {
    16 << (BITS as usize + k)
}

/// Maps a fresh, empty table (also in a fork child, whose ids start over);
/// unmaps the grown ones. Runs single-threaded (at start and in a fork child).
pub fn reset() {
    let old = TABLE.swap(0, Ordering::AcqRel);
    if old != 0 {
        sys::free_pages(old as *mut u8, table_bytes(0));
    }
    for (i, t) in MORE.iter().enumerate() {
        let old = t.swap(0, Ordering::AcqRel);
        if old != 0 {
            sys::free_pages(old as *mut u8, table_bytes(i + 1));
        }
    }
    NEXT_ID.store(1, Ordering::Release);
    if let Some(p) = map_table(table_bytes(0)) {
        TABLE.store(p as usize, Ordering::Release);
    }
}

/// Maps a table of `len` bytes that a fork does not copy (`MADV_WIPEONFORK`):
/// a fork child starts a table of its own ([`reset`]), so copying the
/// parent's page tables for it made every fork of the program slower, and
/// every page the parent then wrote a copy-on-write fault. Where the advice
/// is not known (before Linux 4.14), or the program's seccomp filter might
/// not expect it (see `crate::sandbox`), the table is copied as before.
fn map_table(len: usize) -> Option<*mut u8> {
    let p = sys::alloc_pages(len)?;
    if !crate::sandbox::active() {
        sys::wipe_on_fork(p as usize, len);
    }
    Some(p)
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
    match probe(base, BITS, h) {
        Some(r) => r,
        None => lookup_grown(h),
    }
}

/// [`lookup`] in the tables after the first, whose window for `h` is full.
#[cold]
#[inline(never)]
fn lookup_grown(h: u64) -> Result<u32, Option<&'static AtomicU64>> {
    for (i, t) in MORE.iter().enumerate() {
        let k = i + 1;
        let mut base = t.load(Ordering::Acquire);
        if base == 0 {
            // Map it; the loser of a race unmaps its own and takes the winner's.
            let Some(p) = map_table(table_bytes(k)) else {
                return Err(None);
            };
            base = match t.compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => p as usize,
                Err(winner) => {
                    sys::free_pages(p, table_bytes(k));
                    winner
                }
            };
        }
        if let Some(r) = probe(base, BITS + k as u32, h) {
            return r;
        }
    }
    // Every table's window is full: define it again (the analyzer merges).
    Err(None)
}

/// Probes the window of `h` in the table of 2^`bits` slots at `base`:
/// `Some` as [`lookup`] returns, or `None` if the window is full of other
/// hashes.
#[inline(always)]
fn probe(base: usize, bits: u32, h: u64) -> Option<Result<u32, Option<&'static AtomicU64>>> {
    let mask = (1usize << bits) - 1;
    let mut i = (h >> (64 - bits)) as usize;
    for _ in 0..PROBES {
        // SAFETY: the table at `base` has 2^bits entries of (key, id) as two
        // u64 (`i` is masked) and stays mapped (only replaced in a fork
        // child, which is single-threaded).
        let s = unsafe { &*((base + i * 16) as *const [AtomicU64; 2]) };
        let k = s[0].load(Ordering::Acquire);
        if k == h {
            let id = s[1].load(Ordering::Acquire);
            return Some(if id != 0 { Ok(id as u32) } else { Err(None) });
        }
        if k == 0 {
            match s[0].compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Err(Some(&s[1]))),
                Err(k2) if k2 == h => {
                    let id = s[1].load(Ordering::Acquire);
                    return Some(if id != 0 { Ok(id as u32) } else { Err(None) });
                }
                Err(_) => {}
            }
        }
        i = (i + 1) & mask;
    }
    None
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
    use super::*;

    /// More stacks than the first table has slots: every one is claimed
    /// once (none left to define again), found again under its id, and the
    /// second table was mapped for those that did not fit. The only test
    /// that touches the global table (the hooks are not exported in tests).
    #[test]
    fn table_grows_past_its_first_size() {
        reset();
        let n = (1u64 << BITS) + (1 << 18);
        let mut ids = std::vec::Vec::with_capacity(n as usize);
        for i in 0..n {
            let h = hash(&[0x40_0000 + i * 16, 0x40_1000], 0);
            match lookup(h) {
                Err(Some(slot)) => {
                    let id = next_id();
                    publish(slot, id);
                    ids.push((h, id));
                }
                Ok(id) => panic!("stack {i}: found under {id}, never defined"),
                Err(None) => panic!("stack {i}: no slot, defined again"),
            }
        }
        assert_ne!(MORE[0].load(Ordering::Acquire), 0, "no second table");
        for &(h, id) in &ids {
            assert!(
                matches!(lookup(h), Ok(x) if x == id),
                "stack {h:#x} lost its id"
            );
        }
        reset();
        assert_eq!(MORE[0].load(Ordering::Acquire), 0, "reset unmaps it");
        assert!(matches!(lookup(ids[0].0), Err(Some(_))));
    }

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
