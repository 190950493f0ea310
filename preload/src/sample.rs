//! Sampling mode (`MEMTRACE_SAMPLE=<bytes>`): record allocations chosen by a
//! Poisson process over the bytes allocated, as heapprofd and tcmalloc do.
//!
//! Each thread counts down the bytes to its next sample point, drawn from an
//! exponential distribution with mean `T` (the interval). An allocation of at
//! least `T` bytes is always recorded exactly; a smaller one is recorded when
//! one or more sample points fall in it, with that number `k`, and stands for
//! `k * T` bytes (see the format crate's docs). Everything else costs one
//! subtraction and no stack walk.
//!
//! Frees must be recorded only for recorded blocks, so the addresses of
//! recorded blocks live in a lock-free open-addressing set (raw `mmap`ed, so
//! a fork child inherits a copy that matches its copy of the heap). An
//! address is forgotten *before* the block is released (free, and realloc
//! before the call), so another thread that gets the same address from the
//! allocator afterwards can remember it without a race.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::sys;

/// The interval used when `MEMTRACE_SAMPLE` is set but is not a size
/// (heapprofd's default too).
pub const DEFAULT_INTERVAL: u64 = 4096;

/// Sampling interval in bytes; 0: every allocation is recorded.
static INTERVAL: AtomicU64 = AtomicU64::new(0);
/// Seed for the threads' generators.
static SEED: AtomicU64 = AtomicU64::new(0);
/// Threads that have drawn their first sample point (part of their seed).
static THREADS: AtomicU64 = AtomicU64::new(0);

/// Slots of the set of recorded addresses (2 MiB, touched on demand).
const SLOTS: usize = 1 << 18;
/// Longest probe sequence; an insert that finds no room counts an overflow.
const MAX_PROBE: usize = 512;
const EMPTY: u64 = 0;
const TOMBSTONE: u64 = 1;
static SET: AtomicPtr<AtomicU64> = AtomicPtr::new(core::ptr::null_mut());

/// The sampling interval (0: off).
#[inline(always)]
pub fn interval() -> u64 {
    INTERVAL.load(Ordering::Relaxed)
}

/// Parses `MEMTRACE_SAMPLE` (`MEMTRACE_SAMPLE_SEED`): a size in bytes with an
/// optional `k`, `m` or `g` suffix (binary units); `0` turns sampling off; any
/// other value means the default interval.
pub fn init(value: Option<&[u8]>, seed: Option<&[u8]>) {
    let Some(v) = value else { return };
    let interval = parse_size(v).unwrap_or(DEFAULT_INTERVAL);
    if interval == 0 {
        return;
    }
    let Some(p) = sys::alloc_pages(SLOTS * 8) else {
        // Without the set frees could not be matched: record everything.
        return;
    };
    SET.store(p.cast(), Ordering::Release);
    let seed = match seed.and_then(parse_size) {
        Some(s) => s,
        None => sys::now_ns() ^ ((sys::getpid() as u64) << 32),
    };
    SEED.store(seed, Ordering::Relaxed);
    INTERVAL.store(interval, Ordering::Release);
}

fn parse_size(v: &[u8]) -> Option<u64> {
    let digits = v.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let n = sys::parse_decimal(&v[..digits])?;
    let shift = match &v[digits..] {
        b"" | b"b" | b"B" => 0,
        b"k" | b"K" | b"KiB" | b"kiB" => 10,
        b"m" | b"M" | b"MiB" => 20,
        b"g" | b"G" | b"GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// One thread's (one nesting level's) position in the sampling process.
/// Zeroed memory is a valid, not yet started sampler.
pub struct Sampler {
    /// Bytes to the next sample point.
    left: i64,
    /// xorshift64* state; 0 until the first draw.
    rng: u64,
}

impl Sampler {
    fn next_u64(&mut self) -> u64 {
        if self.rng == 0 {
            let n = THREADS.fetch_add(1, Ordering::Relaxed);
            self.rng = mix(SEED.load(Ordering::Relaxed) ^ mix(n + 1)) | 1;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// An exponentially distributed distance with mean `t`, at least 1.
    fn draw(&mut self, t: u64) -> i64 {
        // 53 random bits -> u in (0, 1].
        let u = ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        // libm (musl's log in Rust), not f64::ln: that calls the C library's
        // libm, a whole shared object more to load into every traced process.
        let d = -libm::log(u) * t as f64;
        if d < 1.0 {
            1
        } else if d > (i64::MAX / 4) as f64 {
            i64::MAX / 4
        } else {
            d as i64
        }
    }

    /// Advances the process over an allocation of `size < t` bytes; returns
    /// the number of sample points that fell in it (0: not recorded).
    #[inline(always)]
    pub fn take(&mut self, size: u64, t: u64) -> u64 {
        if self.rng == 0 {
            self.left = self.draw(t);
        }
        self.left -= size as i64;
        if self.left > 0 {
            return 0;
        }
        self.points(t)
    }

    #[cold]
    fn points(&mut self, t: u64) -> u64 {
        let mut k = 0;
        while self.left <= 0 {
            self.left += self.draw(t);
            k += 1;
        }
        k
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The sampled-address set's memory (start, bytes), if mapped: it holds the
/// addresses of live blocks, so the reachability scan must not take it for a
/// root.
pub fn set_range() -> Option<(u64, u64)> {
    let p = SET.load(Ordering::Acquire);
    (!p.is_null()).then_some((p as u64, (SLOTS * 8) as u64))
}

fn set() -> Option<&'static [AtomicU64]> {
    let p = SET.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: SET points to SLOTS zero-initialised u64s mapped for the life
    // of the process; AtomicU64 has the layout of u64.
    Some(unsafe { core::slice::from_raw_parts(p, SLOTS) })
}

#[inline(always)]
fn home(addr: u64) -> usize {
    ((addr >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros())) as usize
}

/// Remembers a recorded block's address. `false`: no room (its free will
/// not be recorded).
pub fn remember(addr: usize) -> bool {
    let Some(set) = set() else { return false };
    let a = addr as u64;
    if a <= TOMBSTONE {
        return false;
    }
    let h = home(a);
    for i in 0..MAX_PROBE {
        let slot = &set[(h + i) & (SLOTS - 1)];
        let v = slot.load(Ordering::Relaxed);
        if v == a {
            return true;
        }
        if (v == EMPTY || v == TOMBSTONE)
            && slot
                .compare_exchange(v, a, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return true;
        }
    }
    false
}

/// Forgets `addr` if it is a recorded block's; returns whether it was.
#[inline(always)]
pub fn forget(addr: usize) -> bool {
    let Some(set) = set() else { return false };
    let a = addr as u64;
    let h = home(a);
    for i in 0..MAX_PROBE {
        let slot = &set[(h + i) & (SLOTS - 1)];
        let v = slot.load(Ordering::Relaxed);
        if v == a {
            return slot
                .compare_exchange(a, TOMBSTONE, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        }
        if v == EMPTY {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size(b"4096"), Some(4096));
        assert_eq!(parse_size(b"512k"), Some(512 << 10));
        assert_eq!(parse_size(b"2M"), Some(2 << 20));
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"yes"), None);
        assert_eq!(parse_size(b"12q"), None);
    }

    /// The number of sample points is a Poisson process over bytes: over many
    /// allocations, `k * T` sums to the bytes allocated.
    #[test]
    fn points_estimate_bytes() {
        let mut s = Sampler { left: 0, rng: 0 };
        let t = 4096;
        let (mut bytes, mut est) = (0u64, 0u64);
        let mut x = 7u64;
        for _ in 0..2_000_000 {
            x = mix(x);
            let size = 16 + x % 2000;
            bytes += size;
            est += s.take(size, t) * t;
        }
        let err = (est as f64 - bytes as f64).abs() / bytes as f64;
        assert!(err < 0.01, "estimate off by {err}");
    }

    #[test]
    fn set_remembers_and_forgets() {
        if set().is_none() {
            let p = sys::alloc_pages(SLOTS * 8).unwrap();
            SET.store(p.cast(), Ordering::Release);
        }
        let base = 0x5555_0000_0000usize;
        let addrs: Vec<usize> = (0..20_000).map(|i| base + i * 48).collect();
        for &a in &addrs {
            assert!(remember(a));
        }
        assert!(!forget(base + 8));
        for &a in addrs.iter().step_by(2) {
            assert!(forget(a));
            assert!(!forget(a));
        }
        for &a in addrs.iter().skip(1).step_by(2) {
            assert!(forget(a));
        }
        // Slots freed by forgetting are reused.
        for &a in &addrs {
            assert!(remember(a));
        }
    }
}
