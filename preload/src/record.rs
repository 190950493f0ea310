//! Turning one intercepted call into records: capture the stack, intern it,
//! encode the event into the level's scratch buffer, append it to the stream.
//!
//! Every function here is `#[inline(never)]` so that the stack walk starts in
//! a frame of this library (skipped by address) and reaches the caller of the
//! hook through the CFI of the hook itself.

use memtrace_format::{Func, encode};

use crate::thread::{Guard, Level};
use crate::{modules, sample, stacks, sys, unwind};

/// Captures the caller's stack and returns its interned id (writing a STACK
/// record first if the stack is new). `None` if the definition could not be
/// written (the log is full): the caller's event is then lost.
#[inline(always)]
fn stack_id(l: &mut Level) -> Option<u32> {
    let regs = unwind::current_regs();
    // SAFETY: `regs` describes the current frame, which is live during the call.
    let n = unsafe { unwind::capture_from(regs, &mut l.frames, &mut l.ctx, &mut l.recent) };
    modules::sync(&mut l.stream, &mut l.rec);
    let every = unwind::VERIFY_EVERY.load(core::sync::atomic::Ordering::Relaxed);
    if every != 0 {
        if l.check_countdown == 0 {
            l.check_countdown = every;
            let same = unwind::verify(&l.frames[..n], &mut l.check);
            crate::writer::count_unwind_check(!same);
        }
        l.check_countdown -= 1;
    }
    // The same frames as the previous capture, whose id is `last_id` (the
    // unwinder compared every frame): no need to hash them again.
    if l.recent.repeated() && l.last_id != 0 {
        return Some(l.last_id);
    }
    let frames = &l.frames[..n];
    let cut = l.recent.cut();
    let epoch = unwind::EPOCH.load(core::sync::atomic::Ordering::Relaxed);
    // A truncated stack is another stack than a whole one with the same
    // frames (a recursion cut at MAX_FRAMES): the flag goes into the hash.
    let h = stacks::hash(frames, epoch ^ (cut.is_some() as u32) << 31);
    if h == l.last_hash && l.last_id != 0 {
        return Some(l.last_id);
    }
    let id = match stacks::lookup(h) {
        Ok(id) => id,
        Err(slot) => {
            let id = stacks::next_id();
            let written = match encode::stack(&mut l.rec, id, frames, cut) {
                Some(len) => l.stream.define(&l.rec[..len], None),
                None => false,
            };
            match slot {
                Some(slot) if written => stacks::publish(slot, id),
                // Leave the slot claimed but unpublished: later users define
                // the stack again under fresh ids.
                _ => {}
            }
            if !written {
                // `last_id` no longer names the previous capture's frames.
                l.last_id = 0;
                return None;
            }
            id
        }
    };
    l.last_hash = h;
    l.last_id = id;
    Some(id)
}

/// Records one event that carries the caller's stack: `encode` gets the
/// scratch buffer, the time delta (of a stamp taken after the stack walk, or
/// of `t0` if given: a "before the call" stamp) and the stack id. The event is
/// counted as lost if its stack or the event cannot be written.
#[inline(always)]
fn with_stack(t0: Option<u64>, encode: impl FnOnce(&mut [u8], u64, u32) -> Option<usize>) {
    use core::sync::atomic::Ordering;
    if crate::init::FREERES_PENDING.load(Ordering::Relaxed)
        && crate::init::FREERES_PENDING.swap(false, Ordering::Relaxed)
    {
        crate::init::resolve_cxx_freeres();
    }
    let Some(mut g) = Guard::enter() else { return };
    let l = g.level();
    let Some(stack) = stack_id(l) else {
        l.stream.lose();
        return;
    };
    let last = l.stream.last_time;
    let t = match t0 {
        Some(t0) => t0.max(last),
        None => sys::now_ns(),
    };
    match encode(&mut l.rec, t.wrapping_sub(last), stack) {
        Some(n) => {
            let end = t.max(l.stream.last_time);
            let _ = l.stream.write(&l.rec[..n], Some(end));
        }
        None => l.stream.lose(),
    }
}

/// An allocation that returned `addr` (0 if it failed).
#[inline(never)]
pub fn alloc(func: Func, addr: usize, size: usize) {
    if addr != 0 {
        crate::scan::heap_used();
    }
    let interval = sample::interval();
    if interval != 0 {
        alloc_sampled(func, addr, size, interval);
        return;
    }
    with_stack(None, |b, dt, stack| {
        encode::alloc(b, dt, func, addr as u64, size as u64, stack)
    });
}

/// An allocation in sampling mode: recorded only if it is at least the
/// interval or sample points fall in it; its address is then remembered so
/// that its free is recorded too. Failed allocations are not recorded.
#[inline(always)]
fn alloc_sampled(func: Func, addr: usize, size: usize, interval: u64) {
    if addr == 0 {
        return;
    }
    let size64 = size as u64;
    let samples = if size64 >= interval {
        0
    } else {
        let Some(mut g) = Guard::enter() else { return };
        match g.level().sampler.take(size64, interval) {
            0 => return,
            k => k,
        }
    };
    if !sample::remember(addr) {
        crate::writer::count_sample_overflow();
    }
    with_stack(None, |b, dt, stack| {
        if samples == 0 {
            encode::alloc(b, dt, func, addr as u64, size64, stack)
        } else {
            encode::sampled(b, dt, func, addr as u64, size64, stack, samples)
        }
    });
}

/// A free of `addr`, recorded before the block is released (`t` taken before the call).
#[inline(never)]
pub fn free(func: Func, addr: usize) {
    if sample::interval() != 0 && !sample::forget(addr) {
        return;
    }
    let Some(mut g) = Guard::enter() else { return };
    let l = g.level();
    let t = sys::now_ns();
    match encode::free(
        &mut l.rec,
        t.wrapping_sub(l.stream.last_time),
        func,
        addr as u64,
    ) {
        Some(n) => {
            let _ = l.stream.write(&l.rec[..n], Some(t));
        }
        None => l.stream.lose(),
    }
}

/// A realloc: `t0` before the call, the result `new`. The record's time is
/// `t0` (the old block's free) and its second time, now, the new block's birth.
/// Before a realloc of `old` in sampling mode: forgets `old` before the
/// allocator can hand its address to another thread. Returns whether `old`
/// was a recorded block (always `false` when every allocation is recorded).
#[inline(always)]
pub fn realloc_begin(old: usize) -> bool {
    old != 0 && sample::interval() != 0 && sample::forget(old)
}

#[inline(never)]
pub fn realloc(func: Func, t0: u64, old: usize, new: usize, size: usize, old_recorded: bool) {
    if new != 0 {
        crate::scan::heap_used();
    }
    if sample::interval() != 0 {
        realloc_sampled(func, t0, old, new, size, old_recorded);
        return;
    }
    let Some(mut g) = Guard::enter() else { return };
    let l = g.level();
    let Some(stack) = stack_id(l) else {
        l.stream.lose();
        return;
    };
    let t1 = sys::now_ns();
    let t0 = t0.max(l.stream.last_time);
    let t1 = t1.max(t0);
    let rec = encode::realloc(
        &mut l.rec,
        t0 - l.stream.last_time,
        t1 - t0,
        func,
        old as u64,
        new as u64,
        size as u64,
        stack,
    );
    match rec {
        Some(n) => {
            let _ = l.stream.write(&l.rec[..n], Some(t1));
        }
        None => l.stream.lose(),
    }
}

/// A realloc in sampling mode: a FREE of the old block if it was recorded
/// (and released), then the new block as a fresh allocation.
#[inline(never)]
fn realloc_sampled(func: Func, t0: u64, old: usize, new: usize, size: usize, old_recorded: bool) {
    let released = memtrace_format::realloc_released(old as u64, new as u64, size as u64);
    if old_recorded {
        if !released {
            // The call failed: the old block is still the program's.
            sample::remember(old);
        } else if let Some(mut g) = Guard::enter() {
            let l = g.level();
            let t = t0.max(l.stream.last_time);
            match encode::free(&mut l.rec, t - l.stream.last_time, func, old as u64) {
                Some(n) => {
                    let _ = l.stream.write(&l.rec[..n], Some(t));
                }
                None => l.stream.lose(),
            }
        }
    }
    if new != 0 {
        alloc_sampled(func, new, size, sample::interval());
    }
}

/// A successful mmap/mmap64.
#[inline(never)]
pub fn mmap(func: Func, addr: usize, len: usize, prot: i32, flags: i32, fd: i32, off: i64) {
    with_stack(None, |b, dt, stack| {
        let (prot, flags) = (prot as u32 as u64, flags as u32 as u64);
        encode::mmap(
            b,
            dt,
            func,
            addr as u64,
            len as u64,
            prot,
            flags,
            fd as i64,
            off as u64,
            stack,
        )
    });
}

/// A successful munmap; `t0` taken before the call.
#[inline(never)]
pub fn munmap(t0: u64, addr: usize, len: usize) {
    with_stack(Some(t0), |b, dt, stack| {
        encode::munmap(b, dt, addr as u64, len as u64, stack)
    });
}

/// A successful mremap.
#[inline(never)]
pub fn mremap(old: usize, old_len: usize, new: usize, new_len: usize, flags: i32) {
    with_stack(None, |b, dt, stack| {
        let flags = flags as u32 as u64;
        encode::mremap(
            b,
            dt,
            old as u64,
            old_len as u64,
            new as u64,
            new_len as u64,
            flags,
            stack,
        )
    });
}

/// A successful brk or sbrk that moved the break from `old` to `new`.
#[inline(never)]
pub fn brk(func: Func, arg: i64, old: usize, new: usize) {
    with_stack(None, |b, dt, stack| {
        encode::brk(b, dt, func, arg, old as u64, new as u64, stack)
    });
}

/// Rescans loaded objects now (after dlclose), so UNMODULE is stamped with the right time.
#[inline(never)]
pub fn modules_changed() {
    modules::mark_dirty();
    let Some(mut g) = Guard::enter() else { return };
    let l = g.level();
    modules::sync(&mut l.stream, &mut l.rec);
}

/// Lists the inherited loaded objects in a fork child's new log.
#[inline(never)]
pub fn modules_after_fork() {
    let Some(mut g) = Guard::enter() else { return };
    let l = g.level();
    modules::relist_after_fork(&mut l.stream, &mut l.rec);
}

/// A process-level marker (FORK, EXEC, EXIT, FREERES).
#[inline(never)]
pub fn marker(f: impl FnOnce(&mut [u8], u64) -> Option<usize>) {
    let Some(mut g) = Guard::enter() else { return };
    let l = g.level();
    let t = sys::now_ns();
    if let Some(n) = f(&mut l.rec, t.wrapping_sub(l.stream.last_time)) {
        l.stream.write(&l.rec[..n], Some(t));
    }
}
