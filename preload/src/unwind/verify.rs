//! The cross-check against libgcc's unwinder (`MEMTRACE_VERIFY_UNWIND`).
//!
//! Off by default. When on, it is not held to the hot path's constraints:
//! libgcc's `_Unwind_Backtrace` is uncached and finds objects its own way,
//! which may take locks of its own (the loader's, through `dl_iterate_phdr`,
//! where `_dl_find_object` is missing).

use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, Ordering};

use super::{SELF_END, SELF_START};

/// `_URC_NO_REASON` (<unwind.h>), from the callback: go on to the next frame.
const URC_NO_REASON: i32 = 0;
/// `_URC_END_OF_STACK` (<unwind.h>), from the callback: stop the backtrace.
const URC_END_OF_STACK: i32 = 5;

/// `MEMTRACE_VERIFY_UNWIND=N`: every N-th captured stack is also taken by
/// libgcc's `_Unwind_Backtrace` (uncached, the reference) and compared; the
/// header counts checks and disagreements. 0: off.
pub static VERIFY_EVERY: AtomicU32 = AtomicU32::new(0);

/// Takes the current stack with libgcc's unwinder into `scratch` (same
/// conventions as [`capture_from`](super::capture_from): frames of this
/// library skipped, exact PCs as PC + 1) and returns whether it equals `ours`.
#[inline(never)]
pub fn verify(ours: &[u64], scratch: &mut [u64]) -> bool {
    struct Acc<'a> {
        out: &'a mut [u64],
        n: usize,
        lo: u64,
        hi: u64,
    }
    unsafe extern "C" {
        fn _Unwind_Backtrace(
            cb: unsafe extern "C" fn(*mut c_void, *mut c_void) -> i32,
            arg: *mut c_void,
        ) -> i32;
        fn _Unwind_GetIPInfo(ctx: *mut c_void, before: *mut i32) -> u64;
    }
    unsafe extern "C" fn cb(ctx: *mut c_void, arg: *mut c_void) -> i32 {
        // SAFETY: `arg` is the Acc passed below; libgcc passes a valid context.
        let (acc, ip) = unsafe {
            let mut before = 0i32;
            let ip = _Unwind_GetIPInfo(ctx, &mut before);
            (
                &mut *(arg as *mut Acc),
                if before != 0 { ip.wrapping_add(1) } else { ip },
            )
        };
        if ip == 0 || (ip >= acc.lo && ip < acc.hi) {
            return URC_NO_REASON;
        }
        match acc.out.get_mut(acc.n) {
            Some(slot) => {
                *slot = ip;
                acc.n += 1;
                URC_NO_REASON
            }
            None => URC_END_OF_STACK,
        }
    }
    let mut acc = Acc {
        out: scratch,
        n: 0,
        lo: SELF_START.load(Ordering::Relaxed),
        hi: SELF_END.load(Ordering::Relaxed),
    };
    // SAFETY: the callback only writes into `acc`, which outlives the call.
    unsafe { _Unwind_Backtrace(cb, &mut acc as *mut Acc as *mut c_void) };
    // Both stop at the same capacity (MAX_FRAMES), so truncated stacks compare too.
    let n = acc.n;
    n == ours.len() && acc.out[..n] == *ours
}
