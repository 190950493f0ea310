//! The global rule cache: a lock-free table from an address to its [`Rule`].
//!
//! One mapping of [`CACHE_SLOTS`] slots (1 MiB), made once at start-up by
//! [`init_cache`] and never unmapped. A slot is a pair (address, rule),
//! found by hashing the address; a newer entry simply overwrites an older
//! one. An entry is valid only when the address read before and after the
//! rule is the same; writers clear the address first, then store the rule,
//! then the address. A rule of another epoch is stale (see
//! [`Rule::is_of_epoch`]). Without the mapping every lookup misses.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::rule::Rule;
use crate::sys;

/// log2 of the number of slots.
const CACHE_BITS: u32 = 16;
/// Number of slots.
const CACHE_SLOTS: usize = 1 << CACHE_BITS;

/// One slot: the address (0: empty, or being written) and the packed rule.
type Slot = [AtomicU64; 2];

/// 2^64 / the golden ratio: Fibonacci hashing spreads nearby addresses over the table.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

/// The address of the mapping of [`CACHE_SLOTS`] slots (0: not mapped).
static CACHE: AtomicUsize = AtomicUsize::new(0);

/// Maps the cache; called once at start-up. Without it every lookup takes the slow path.
pub fn init_cache() {
    if CACHE.load(Ordering::Acquire) != 0 {
        return;
    }
    if let Some(p) = sys::alloc_pages(CACHE_SLOTS * size_of::<Slot>())
        && CACHE
            .compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        sys::free_pages(p, CACHE_SLOTS * size_of::<Slot>());
    }
}

/// The slot of `pc`, if the cache is mapped.
#[inline]
fn slot(pc: u64) -> Option<&'static Slot> {
    let base = CACHE.load(Ordering::Relaxed);
    if base == 0 {
        return None;
    }
    let i = (pc.wrapping_mul(FIBONACCI) >> (64 - CACHE_BITS)) as usize;
    // SAFETY: the cache mapping holds CACHE_SLOTS entries of two u64 and is never unmapped.
    Some(unsafe { &*((base + i * size_of::<Slot>()) as *const Slot) })
}

/// The cached rule of `pc` computed in `epoch`, if there is one.
#[inline]
pub(super) fn get(pc: u64, epoch: u32) -> Option<Rule> {
    let s = slot(pc)?;
    let k1 = s[0].load(Ordering::Acquire);
    if k1 != pc {
        return None;
    }
    let r = Rule::from_bits(s[1].load(Ordering::Acquire));
    let k2 = s[0].load(Ordering::Acquire);
    if k2 != pc || !r.is_of_epoch(epoch) {
        return None;
    }
    Some(r)
}

/// Caches `r` as the rule of `pc`, in place of whatever held its slot.
pub(super) fn put(pc: u64, r: Rule) {
    if let Some(s) = slot(pc) {
        s[0].store(0, Ordering::Release);
        s[1].store(r.to_bits(), Ordering::Release);
        s[0].store(pc, Ordering::Release);
    }
}
