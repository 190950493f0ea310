//! The allocation-size histogram: every allocation (as the summary counts
//! them: a successful ALLOC, or the new block of a REALLOC) in the bucket of
//! its requested size. Sizes up to [`EXACT_UP_TO`] bytes have a bucket each;
//! above, the buckets are powers of two: `65..=128`, `129..=256`, ... In a
//! sampled run each recorded allocation counts as the blocks it stands for
//! (the replay's estimate), in the bucket of its recorded size.

use memtrace_format::Record;

use crate::analysis::replay::estimate;
use crate::hash::FastMap;
use crate::log::Event;

use super::SizeBucket;

/// Sizes up to this many bytes have a bucket each.
pub const EXACT_UP_TO: u64 = 64;

/// The bucket of an allocation of `size` bytes.
pub fn bucket_of(size: u64) -> u8 {
    if size <= EXACT_UP_TO {
        return size as u8;
    }
    // ceil(log2(size)): 7 for 65..=128.
    let k = 64 - (size - 1).leading_zeros();
    (EXACT_UP_TO as u32 + k - 6) as u8
}

/// The smallest and largest sizes of bucket `b`.
pub fn bucket_bounds(b: u8) -> (u64, u64) {
    let b = b as u64;
    if b <= EXACT_UP_TO {
        return (b, b);
    }
    let k = b - EXACT_UP_TO + 6;
    let max = if k >= 64 { u64::MAX } else { 1u64 << k };
    ((1u64 << (k - 1)) + 1, max)
}

/// Allocations and bytes by stack (as recorded, before aliases are folded)
/// and bucket, tallied during the pass over the events.
#[derive(Debug, Default)]
pub(in crate::report) struct Tally {
    by: FastMap<(u32, u8), (u64, u64)>,
    sample_interval: u64,
}

impl Tally {
    pub(in crate::report) fn new(sample_interval: u64) -> Self {
        Tally {
            by: FastMap::default(),
            sample_interval,
        }
    }

    /// Counts `ev` if it is an allocation.
    pub(in crate::report) fn observe(&mut self, ev: &Event<'_>) {
        let (size, stack, samples, seed) = match ev.record {
            Record::Alloc {
                time,
                addr,
                size,
                stack,
                samples,
                ..
            } if addr != 0 => (size, stack, samples, addr ^ time),
            Record::Realloc {
                new, size, stack, ..
            } if ev.realloc_end && new != 0 => (size, stack, 0, 0),
            _ => return,
        };
        let (bytes, count) = estimate(size, samples, self.sample_interval, seed);
        let e = self.by.entry((stack, bucket_of(size))).or_default();
        e.0 += count as u64;
        e.1 = e.1.saturating_add(bytes);
    }

    /// The histogram of the stacks `keep` says yes to, smallest sizes first,
    /// only the buckets with allocations.
    pub(in crate::report) fn histogram(
        &self,
        mut keep: impl FnMut(u32) -> bool,
    ) -> Vec<SizeBucket> {
        let mut by_bucket: std::collections::BTreeMap<u8, (u64, u64)> = Default::default();
        for (&(stack, b), &(n, bytes)) in &self.by {
            if keep(stack) {
                let e = by_bucket.entry(b).or_default();
                e.0 += n;
                e.1 = e.1.saturating_add(bytes);
            }
        }
        by_bucket
            .into_iter()
            .map(|(b, (allocations, bytes))| {
                let (min, max) = bucket_bounds(b);
                SizeBucket {
                    min,
                    max,
                    allocations,
                    bytes,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_bounds(bucket_of(16)), (16, 16));
        assert_eq!(bucket_bounds(bucket_of(64)), (64, 64));
        assert_eq!(bucket_bounds(bucket_of(65)), (65, 128));
        assert_eq!(bucket_bounds(bucket_of(100)), (65, 128));
        assert_eq!(bucket_bounds(bucket_of(128)), (65, 128));
        assert_eq!(bucket_bounds(bucket_of(129)), (129, 256));
        assert_eq!(bucket_bounds(bucket_of(5000)), (4097, 8192));
        assert_eq!(
            bucket_bounds(bucket_of(u64::MAX)),
            ((1 << 63) + 1, u64::MAX)
        );
        // Every size falls in its bucket's bounds.
        for s in [1u64, 63, 65, 127, 4096, 4097, 1 << 40, (1 << 40) + 1] {
            let (lo, hi) = bucket_bounds(bucket_of(s));
            assert!(lo <= s && s <= hi, "{s}: {lo}..={hi}");
        }
    }
}
