//! Stack capture: a DWARF-CFI unwinder for x86_64 with a global rule cache.
//!
//! Debian's libc and libstdc++ are built without frame pointers, so walking
//! `rbp` yields two frames. Instead each frame is unwound by the call frame
//! information in `.eh_frame`: for a program counter we find the object with
//! `_dl_find_object` (lock-free, async-signal-safe), its FDE through
//! `.eh_frame_hdr`'s binary search table, and evaluate the CFA program with
//! gimli into a fixed-size context (no allocation). The result is reduced to
//! a compact rule (CFA = rsp|rbp + offset, return address at CFA-8, rbp saved
//! at CFA+k or unchanged) and cached by address in a global lock-free table,
//! so a hot stack costs one table probe and two loads per frame.
//!
//! Signal frames (glibc's `__restore_rt`, marked 'S' in its CIE) are unwound
//! through the kernel's `ucontext_t`. Anything the compact rule cannot express
//! (a CFA computed by a DWARF expression) ends the walk: the stack is
//! truncated there, never wrong.
//!
//! Cache entries carry the module epoch; `dlclose` bumps it, invalidating them.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, NativeEndian, Register, RegisterRule,
    UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow, X86_64,
};

use memtrace_format::Cut;

use crate::sys;

/// Bumped by `dlclose`: cache entries of an older epoch are stale.
pub static EPOCH: AtomicU32 = AtomicU32::new(1);

/// Fixed-size gimli storage: no allocation while evaluating CFI.
pub struct Store;
impl UnwindContextStorage<usize> for Store {
    type Rules = [(Register, RegisterRule<usize>); 24];
    type Stack = [UnwindTableRow<usize, Self>; 4];
}

/// Per-thread scratch for the slow path.
pub type Ctx = UnwindContext<usize, Store>;

/// Steps of the previous walk kept per thread (deeper steps are not kept).
const RECENT: usize = memtrace_format::MAX_FRAMES + 8;

/// Steps after which a walk gives up (a corrupt or cyclic chain).
const MAX_STEPS: usize = 4096;

/// One step of a walk: the registers it started from and the rule applied to them.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Step {
    pc: u64,
    sp: u64,
    /// rbp, relied on only if the rule computes the CFA from it (a step
    /// that does not use rbp may be kept from an earlier walk whose rbp
    /// differed: see [`same_step`]).
    bp: u64,
    /// The packed rule, with [`STEP_EXACT`] set if `pc` is exact (not a return address).
    rule: u64,
}

/// In [`Step::rule`] (bits 4 to 7 are free in a packed [`Rule`]): `pc` is
/// exact, not a return address.
const STEP_EXACT: u64 = 0x10;
/// In [`Step::rule`]: `pc` lies in this library, so the step adds no frame.
const STEP_HIDDEN: u64 = 0x20;
/// In [`Step::rule`], only while [`replay`] runs: the last step it may take
/// (bit 6 is free in a packed [`Rule`] too).
const STEP_LAST: u64 = 0x40;
/// In a packed [`Rule`] (and [`Step::rule`]): the CFA is computed from rbp.
const CFA_RBP: u64 = 4;
/// In a packed [`Rule`] (and [`Step::rule`]): rbp is restored from a slot.
const RBP_SAVED: u64 = 8;
/// The bits of [`Step::rule`] that are all 0 for the common step
/// ([`KIND_NORMAL`], CFA from sp, rbp not restored, a return address, a frame).
const FAST_MASK: u64 = 3 | CFA_RBP | RBP_SAVED | STEP_EXACT | STEP_HIDDEN;

/// The thread's previous walk, step by step, and the buffer for the current one.
///
/// Consecutive stacks of a thread share most frames (the callers of the
/// allocating function), so the walk uses it twice:
/// - **Rules by depth**: a frame whose address equals the one at the same
///   depth last time takes that step's rule with one load from a
///   thread-private line, instead of a hash and a probe of the global cache.
/// - **Replay**: when the walk reaches a state (pc, sp, exactness) equal to
///   a step of the previous walk, the next step is fully determined except
///   for the memory it reads: the same rule gives the same CFA (if it is
///   computed from rbp, only for the recorded rbp, which is then compared),
///   so the same return-address (and saved-rbp) slots. The replay loop still
///   reads those slots and compares each return address with the previous
///   walk's next state; while they are equal the states are equal except
///   perhaps in rbp, which no replayed step uses without comparing it, so the
///   frames are exactly the ones a full walk would find (a popped and
///   re-pushed frame with another return address differs right there, and
///   the walk goes on the slow way). It only saves the rule lookups and
///   bounds checks, not a single read. A walk that replays the whole previous
///   one leaves the record as it is (no copy).
pub struct Recent {
    /// Two walks: the previous one (`prev`) and the one being recorded.
    steps: [[Step; RECENT]; 2],
    /// Steps recorded in each buffer.
    len: [usize; 2],
    /// Which buffer holds the previous walk.
    prev: usize,
    /// The module epoch of the previous walk (0: none; EPOCH starts at 1).
    epoch: u32,
    /// This library's bounds during the previous walk (which steps were hidden).
    self_range: (u64, u64),
    /// Whether the last walk took exactly the steps of the one before it.
    repeated: bool,
    /// Why the last walk stopped before the thread's entry, if it did.
    cut: Option<Cut>,
}

impl Recent {
    /// An empty record (all-zero memory is one too).
    pub const fn new() -> Recent {
        const Z: Step = Step {
            pc: 0,
            sp: 0,
            bp: 0,
            rule: 0,
        };
        Recent {
            steps: [[Z; RECENT]; 2],
            len: [0; 2],
            prev: 0,
            epoch: 0,
            self_range: (0, 0),
            repeated: false,
            cut: None,
        }
    }

    /// Whether the last capture took exactly the same steps as the one
    /// before it on this record, so returned the same frames (same epoch,
    /// every state equal, the same number of steps).
    pub fn repeated(&self) -> bool {
        self.repeated
    }

    /// Why the last capture on this record stopped before the thread's
    /// entry, if it did: a frame without unwind information or with a rule
    /// the unwinder cannot evaluate, a bad return address or CFA, or the
    /// frame or step limit. A walk that reaches the outermost frame (return
    /// address undefined in its CFI, as in `_start` and a new thread's
    /// `clone`) or a return address of 0 (libgcc's end of stack) is whole.
    pub fn cut(&self) -> Option<Cut> {
        self.cut
    }
}

impl Default for Recent {
    fn default() -> Self {
        Recent::new()
    }
}

/// A compact unwind rule. Layout of the packed u64:
/// bits 0..2 kind, bit 2 CFA base (0 rsp, 1 rbp), bit 3 rbp saved,
/// bits 8..32 CFA offset (i24), bits 32..48 rbp offset from CFA (i16),
/// bits 48..64 epoch.
#[derive(Clone, Copy)]
struct Rule(u64);

// KIND_NORMAL is 0, so that the common step is told by one `test`.
const KIND_NORMAL: u64 = 0;
const KIND_NONE: u64 = 1; // cannot unwind: stop here
const KIND_SIGNAL: u64 = 2;
const KIND_END: u64 = 3; // outermost frame (return address undefined)

impl Rule {
    fn pack(
        kind: u64,
        cfa_rbp: bool,
        cfa_off: i64,
        rbp_saved: bool,
        rbp_off: i64,
        epoch: u32,
    ) -> Rule {
        Rule(
            kind | (cfa_rbp as u64) << 2
                | (rbp_saved as u64) << 3
                | ((cfa_off as u64) & 0xff_ffff) << 8
                | ((rbp_off as u64) & 0xffff) << 32
                | ((epoch as u64) & 0xffff) << 48,
        )
    }
    fn kind(self) -> u64 {
        self.0 & 3
    }
    fn cfa_rbp(self) -> bool {
        self.0 & 4 != 0
    }
    fn rbp_saved(self) -> bool {
        self.0 & 8 != 0
    }
    fn cfa_off(self) -> i64 {
        (((self.0 >> 8) as u32) << 8) as i32 as i64 >> 8
    }
    fn rbp_off(self) -> i64 {
        (self.0 >> 32) as u16 as i16 as i64
    }
    fn epoch(self) -> u32 {
        (self.0 >> 48) as u32 & 0xffff
    }
}

const CACHE_BITS: u32 = 16;
const CACHE_SLOTS: usize = 1 << CACHE_BITS;

/// Global cache: CACHE_SLOTS pairs of (address, rule). An entry is valid only
/// when the address read before and after the rule is the same; writers clear
/// the address first, then store the rule, then the address.
static CACHE: AtomicUsize = AtomicUsize::new(0);

/// Maps the cache; called once at start-up. Without it every lookup takes the slow path.
pub fn init_cache() {
    if CACHE.load(Ordering::Acquire) != 0 {
        return;
    }
    if let Some(p) = sys::alloc_pages(CACHE_SLOTS * 16)
        && CACHE
            .compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        sys::free_pages(p, CACHE_SLOTS * 16);
    }
}

#[inline]
fn slot(pc: u64) -> Option<&'static [AtomicU64; 2]> {
    let base = CACHE.load(Ordering::Relaxed);
    if base == 0 {
        return None;
    }
    let i = (pc.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CACHE_BITS)) as usize;
    // SAFETY: the cache mapping holds CACHE_SLOTS entries of two u64 and is never unmapped.
    Some(unsafe { &*((base + i * 16) as *const [AtomicU64; 2]) })
}

#[inline]
fn cache_get(pc: u64, epoch: u32) -> Option<Rule> {
    let s = slot(pc)?;
    let k1 = s[0].load(Ordering::Acquire);
    if k1 != pc {
        return None;
    }
    let r = Rule(s[1].load(Ordering::Acquire));
    let k2 = s[0].load(Ordering::Acquire);
    if k2 != pc || r.epoch() != (epoch & 0xffff) {
        return None;
    }
    Some(r)
}

fn cache_put(pc: u64, r: Rule) {
    if let Some(s) = slot(pc) {
        s[0].store(0, Ordering::Release);
        s[1].store(r.0, Ordering::Release);
        s[0].store(pc, Ordering::Release);
    }
}

/// The end of the mapped segment of `obj` (as found for a code address) that
/// holds `addr`: `obj`'s own bounds if they contain it, else those
/// `_dl_find_object` gives for `addr`, if they belong to the same object
/// (the same link map). `None` if `addr` is not mapped in that object.
fn segment_end(obj: &sys::DlFindObject, addr: usize) -> Option<usize> {
    let (start, end) = (obj.map_start as usize, obj.map_end as usize);
    if (start..end).contains(&addr) {
        return Some(end);
    }
    let seg = sys::DlFindObject::find(addr)?;
    let (start, end) = (seg.map_start as usize, seg.map_end as usize);
    (seg.link_map == obj.link_map && (start..end).contains(&addr)).then_some(end)
}

/// Looks up the rule for `pc` (an exact instruction address) the slow way.
fn compute(pc: u64, ctx: &mut Ctx, epoch: u32) -> Rule {
    let none = Rule::pack(KIND_NONE, false, 0, false, 0, epoch);
    let Some(obj) = sys::DlFindObject::find(pc as usize) else {
        return none;
    };
    if obj.eh_frame.is_null() {
        return none;
    }
    if !obj.link_map.is_null() {
        // SAFETY: `link_map` is the object's `struct link_map`, whose first
        // field (public ABI, <link.h>) is the load bias; it lives while the
        // object is loaded.
        let bias = unsafe { (obj.link_map as *const u64).read() };
        crate::modules::note_object(bias, obj.map_start as u64);
    }
    // In an executable whose segments leave gaps, `_dl_find_object` gives the
    // bounds of the segment holding `pc` only; .eh_frame_hdr and .eh_frame may
    // lie in another segment of the same object (after the code, with
    // `-z separate-code`): each is bounded by its own segment.
    let hdr_addr = obj.eh_frame as usize;
    let Some(hdr_end) = segment_end(&obj, hdr_addr) else {
        return none;
    };
    // SAFETY: .eh_frame_hdr lies in a read-only PT_LOAD segment of a loaded
    // object that stays mapped while its code can be on our stack; the slice
    // ends at that segment's end, and gimli reads only what the
    // (length-checked) CFI structures name.
    let hdr_bytes =
        unsafe { core::slice::from_raw_parts(hdr_addr as *const u8, hdr_end - hdr_addr) };
    let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_addr as u64);
    let Ok(hdr) = EhFrameHdr::new(hdr_bytes, NativeEndian).parse(&bases, 8) else {
        return none;
    };
    let Ok(eh_ptr) = hdr.eh_frame_ptr().direct() else {
        return none;
    };
    let eh_addr = eh_ptr as usize;
    let Some(end) = segment_end(&obj, eh_addr) else {
        return none;
    };
    // SAFETY: as above, inside the segment of the same object that holds .eh_frame.
    let eh_bytes = unsafe { core::slice::from_raw_parts(eh_addr as *const u8, end - eh_addr) };
    let mut eh = EhFrame::new(eh_bytes, NativeEndian);
    eh.set_address_size(8);
    let bases = bases.set_eh_frame(eh_addr as u64);
    let Some(table) = hdr.table() else {
        return none;
    };
    let Ok(fde) = table.fde_for_address(&eh, &bases, pc, EhFrame::cie_from_offset) else {
        return none;
    };
    let signal = fde.is_signal_trampoline();
    let Ok(row) = fde.unwind_info_for_address(&eh, &bases, ctx, pc) else {
        return none;
    };
    if signal {
        return Rule::pack(KIND_SIGNAL, false, 0, false, 0, epoch);
    }
    if matches!(row.register(X86_64::RA), Some(RegisterRule::Undefined)) {
        return Rule::pack(KIND_END, false, 0, false, 0, epoch);
    }
    let (cfa_rbp, cfa_off) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RSP => {
            (false, *offset)
        }
        CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RBP => {
            (true, *offset)
        }
        _ => return none,
    };
    if !matches!(row.register(X86_64::RA), Some(RegisterRule::Offset(-8)))
        || !(-(1 << 23)..(1 << 23)).contains(&cfa_off)
    {
        return none;
    }
    let (rbp_saved, rbp_off) = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::Undefined | RegisterRule::SameValue) => (false, 0),
        Some(RegisterRule::Offset(o)) if (-32768..32768).contains(&o) => (true, o),
        _ => return none,
    };
    Rule::pack(KIND_NORMAL, cfa_rbp, cfa_off, rbp_saved, rbp_off, epoch)
}

/// Registers at the point of capture.
#[derive(Clone, Copy)]
pub struct Regs {
    pub pc: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Reads the current registers. Always inlined into the caller, whose frame
/// becomes the first to unwind.
#[inline(always)]
pub fn current_regs() -> Regs {
    let (pc, sp, bp): (u64, u64, u64);
    // SAFETY: reads rip (via lea), rsp and rbp into registers; no memory is touched.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags)
        );
    }
    Regs { pc, sp, bp }
}

/// Bounds of this library's own code: frames inside it are not reported.
static SELF_START: AtomicU64 = AtomicU64::new(0);
static SELF_END: AtomicU64 = AtomicU64::new(0);

/// Finds this library's mapping; call once at start-up.
pub fn init_self() {
    if let Some(obj) = sys::DlFindObject::find(init_self as *const () as usize) {
        SELF_START.store(obj.map_start as u64, Ordering::Relaxed);
        SELF_END.store(obj.map_end as u64, Ordering::Relaxed);
    }
}

/// Unwinds from `regs` into `out`, innermost first, skipping frames inside
/// this library. Returns the number of frames. Frames are return addresses,
/// except a frame interrupted by a signal, which is stored as its exact PC + 1
/// so that consumers can uniformly look up `address - 1`.
///
/// # Safety
/// `regs` must describe a live frame of the calling thread (from
/// [`current_regs`] in a caller that is still on the stack).
#[inline(never)]
pub unsafe fn capture_from(
    regs: Regs,
    out: &mut [u64],
    ctx: &mut Ctx,
    recent: &mut Recent,
) -> usize {
    let epoch = EPOCH.load(Ordering::Acquire);
    let self_start = SELF_START.load(Ordering::Relaxed);
    let self_len = SELF_END.load(Ordering::Relaxed).wrapping_sub(self_start);
    let pi = recent.prev & 1;
    // Rules of an older epoch may be stale: forget that walk.
    let prev_len = if recent.epoch == epoch && recent.self_range == (self_start, self_len) {
        recent.len[pi].min(RECENT)
    } else {
        0
    };
    // The common case, a hot stack: the previous walk started from this very
    // state (but perhaps rbp). Replay it here, without the general walk's
    // setup; `walk` goes on from wherever the replay stops.
    let prev = &mut recent.steps[pi][..prev_len];
    if let Some(e) = prev.first()
        && e.sp == regs.sp
        && e.pc == regs.pc
        && e.rule & STEP_EXACT != 0
    {
        // SAFETY: prev[0] is the current state but perhaps rbp (the caller's guarantee).
        let r = unsafe { replay(prev, out, 0, RECENT.min(MAX_STEPS), regs.bp) };
        // The replayed steps are those of the previous walk, in place.
        let mut w = Walk {
            pc: 0,
            sp: 0,
            bp: r.bp,
            exact: false,
            n: r.n,
            d: r.steps,
            j: r.steps,
            try_replay: true,
            same: true,
            done: false,
            cut: Some(Cut::Limit),
        };
        match r.end {
            ReplayEnd::Ended(cut) => {
                // The walk is over. The record (same epoch and bounds) stays as it is.
                let pi = recent.prev & 1;
                let prev_len = recent.len[pi].min(RECENT);
                recent.repeated = r.steps == prev_len && prev_len < RECENT;
                recent.len[pi] = r.steps.min(prev_len);
                recent.cut = cut;
                return r.n;
            }
            ReplayEnd::Diverged(npc, nsp) => {
                (w.pc, w.sp) = (npc, nsp);
                w.done = npc < 4096;
                w.cut = bad_pc(npc);
            }
            ReplayEnd::Stopped => {
                if let Some(e) = prev.get(r.steps) {
                    (w.pc, w.sp) = (e.pc, e.sp);
                    w.exact = e.rule & STEP_EXACT != 0;
                }
                w.try_replay = false;
            }
        }
        // The epoch and bounds are the record's (checked above): read them
        // again rather than keeping them in registers through the replay.
        let (epoch, range) = (recent.epoch, recent.self_range);
        let prev_len = recent.len[recent.prev & 1].min(RECENT);
        // SAFETY: w is the state of a walk from `regs`, a live frame (the caller's guarantee).
        return unsafe { walk(w, out, ctx, recent, prev_len, epoch, range) };
    }
    let w = Walk {
        pc: regs.pc,
        sp: regs.sp,
        bp: regs.bp,
        // The first PC is exact; later ones are return addresses (look up pc - 1).
        exact: true,
        n: 0,
        d: 0,
        j: 0,
        try_replay: true,
        same: true,
        done: false,
        cut: Some(Cut::Limit),
    };
    // SAFETY: w is the state at `regs`, a live frame (the caller's guarantee).
    unsafe { walk(w, out, ctx, recent, prev_len, epoch, (self_start, self_len)) }
}

/// A walk in progress: the current state and what [`walk`] tracks.
struct Walk {
    pc: u64,
    sp: u64,
    bp: u64,
    /// Whether `pc` is exact (not a return address).
    exact: bool,
    /// Frames in `out`.
    n: usize,
    /// Steps taken (= the depth of the current state).
    d: usize,
    /// The first step of the previous walk whose sp is not below ours.
    j: usize,
    /// Whether to look for the current state in the previous walk.
    try_replay: bool,
    /// Whether the steps so far are those of the previous walk (see
    /// [`same_step`]), which are then not copied into the current buffer
    /// (the previous walk's buffer stays the record).
    same: bool,
    /// Whether the walk has ended already.
    done: bool,
    /// Why the walk stopped before the thread's entry (see [`Recent::cut`]):
    /// the limit until something else ends it.
    cut: Option<Cut>,
}

/// The general walk, from the state `w` (whose steps so far are those of the
/// previous walk if `w.same`), then records it in `recent`.
///
/// # Safety
/// As for [`capture_from`]: the state describes a live frame of the calling
/// thread (or one reached from it by unwinding).
#[inline(never)]
unsafe fn walk(
    w: Walk,
    out: &mut [u64],
    ctx: &mut Ctx,
    recent: &mut Recent,
    prev_len: usize,
    epoch: u32,
    (self_start, self_len): (u64, u64),
) -> usize {
    let pi = recent.prev & 1;
    let [b0, b1] = &mut recent.steps;
    let (prev, cur): (&mut [Step], &mut [Step; RECENT]) = if pi == 0 {
        (&mut b0[..prev_len], b1)
    } else {
        (&mut b1[..prev_len], b0)
    };
    let Walk {
        mut pc,
        mut sp,
        mut bp,
        mut exact,
        mut n,
        mut d,
        mut j,
        mut try_replay,
        mut same,
        done,
        mut cut,
    } = w;
    while !done && n < out.len() && d < MAX_STEPS {
        if try_replay {
            // Along a walk sp grows (except across a signal frame, where a
            // replay may then be missed, never be wrong).
            while j < prev.len() && prev[j].sp < sp {
                j += 1;
            }
            // rbp is not compared: the replay checks it where a step uses it.
            if let Some(e) = prev.get(j)
                && e.sp == sp
                && e.pc == pc
                && (e.rule & STEP_EXACT != 0) == exact
            {
                // SAFETY: prev[j] is the current state but perhaps rbp.
                let r = unsafe {
                    replay(
                        &mut prev[j..],
                        out,
                        n,
                        (MAX_STEPS - d).min(RECENT.saturating_sub(d)),
                        bp,
                    )
                };
                // The replayed steps are this walk's too (already in place
                // while this walk is the previous one so far).
                if !(same && j == d) {
                    if same {
                        same = false;
                        copy_steps(cur, 0, prev, 0, d);
                    }
                    copy_steps(cur, d, prev, j, r.steps);
                }
                d += r.steps;
                n = r.n;
                j += r.steps;
                match r.end {
                    ReplayEnd::Diverged(npc, nsp) => {
                        // Memory differed after the last replayed step: this
                        // state is new, go on the slow way from it.
                        (pc, sp, bp, exact) = (npc, nsp, r.bp, false);
                        if pc < 4096 {
                            cut = bad_pc(pc);
                            break;
                        }
                    }
                    ReplayEnd::Stopped => {
                        // Stopped before the step at prev[j]: take it the slow way.
                        if let Some(e) = prev.get(j) {
                            (pc, sp, bp) = (e.pc, e.sp, r.bp);
                            exact = e.rule & STEP_EXACT != 0;
                        }
                        try_replay = false;
                    }
                    ReplayEnd::Ended(c) => {
                        cut = c;
                        break;
                    }
                }
                continue;
            }
        }
        try_replay = true;
        let key = if exact { pc } else { pc.wrapping_sub(1) };
        let rule = match prev.get(d) {
            Some(e) if e.pc == pc && (e.rule & STEP_EXACT != 0) == exact => {
                Rule(e.rule & !(STEP_EXACT | STEP_HIDDEN))
            }
            _ => match cache_get(key, epoch) {
                Some(r) => r,
                None => {
                    let r = compute(key, ctx, epoch);
                    cache_put(key, r);
                    r
                }
            },
        };
        let hidden = pc.wrapping_sub(self_start) < self_len;
        let step = Step {
            pc,
            sp,
            bp,
            rule: rule.0
                | if exact { STEP_EXACT } else { 0 }
                | if hidden { STEP_HIDDEN } else { 0 },
        };
        if same && !prev.get(d).is_some_and(|e| same_step(e, &step)) {
            same = false;
            copy_steps(cur, 0, prev, 0, d);
        }
        if !same && let Some(s) = cur.get_mut(d) {
            *s = step;
        }
        d += 1;
        if !hidden {
            out[n] = if exact { pc.wrapping_add(1) } else { pc };
            n += 1;
        }
        match rule.kind() {
            KIND_NORMAL => {
                let cfa =
                    (if rule.cfa_rbp() { bp } else { sp }).wrapping_add(rule.cfa_off() as u64);
                // The CFA lies above the current frame; anything else is corrupt.
                if cfa <= sp || cfa - sp > (16 << 20) || cfa % 8 != 0 {
                    cut = Some(Cut::BadFrame);
                    break;
                }
                // SAFETY: cfa-8 lies between the current sp and the caller's
                // frame on this thread's stack, per the object's CFI.
                let ra = unsafe { ((cfa - 8) as *const u64).read() };
                if rule.rbp_saved() {
                    let at = cfa.wrapping_add(rule.rbp_off() as u64);
                    if at < sp || at >= cfa {
                        cut = Some(Cut::BadFrame);
                        break;
                    }
                    // SAFETY: the saved rbp slot lies in [sp, cfa), on this stack.
                    bp = unsafe { (at as *const u64).read() };
                }
                sp = cfa;
                pc = ra;
                exact = false;
            }
            KIND_SIGNAL => {
                // sp points at the kernel's ucontext_t (the return address
                // __restore_rt was popped); gregs start at offset 40:
                // REG_RBP = 10, REG_RSP = 15, REG_RIP = 16.
                let g = sp + 40;
                // SAFETY: the kernel placed a ucontext_t at sp when it delivered
                // the signal whose trampoline frame this is.
                unsafe {
                    bp = ((g + 10 * 8) as *const u64).read();
                    sp = ((g + 15 * 8) as *const u64).read();
                    pc = ((g + 16 * 8) as *const u64).read();
                }
                exact = true;
            }
            kind => {
                cut = if kind == KIND_END {
                    None
                } else {
                    Some(Cut::NoCfi)
                };
                break;
            }
        }
        if pc < 4096 {
            cut = bad_pc(pc);
            break;
        }
    }
    // Every state equal and as many steps: the same frames as last time.
    recent.repeated = same && d == prev_len && prev_len > 0 && prev_len < RECENT;
    if same {
        // This walk is the start of the previous one.
        recent.len[pi] = d.min(prev_len);
    } else {
        recent.len[pi ^ 1] = d.min(RECENT);
        recent.prev = pi ^ 1;
    }
    recent.epoch = epoch;
    recent.self_range = (self_start, self_len);
    // The loop's own bounds (frames, steps) leave `cut` at the limit.
    recent.cut = cut;
    n
}

/// How a walk that reached the address `pc` in the first page ends: a
/// return address of 0 ends the stack (as in libgcc); any other is not code.
#[inline]
fn bad_pc(pc: u64) -> Option<Cut> {
    if pc == 0 { None } else { Some(Cut::BadFrame) }
}

/// Whether the recorded step `e` stands for the step `s` just taken: the
/// same address, sp, exactness and rule (so the same frame and the same next
/// sp and slots), and the same rbp if the rule computes the CFA from it. rbp
/// is not compared otherwise: a step that does not use it cannot tell it
/// apart (it is only carried, or reloaded from a slot that is read anyway).
#[inline(always)]
fn same_step(e: &Step, s: &Step) -> bool {
    e.pc == s.pc && e.sp == s.sp && e.rule == s.rule && (e.bp == s.bp || e.rule & CFA_RBP == 0)
}

/// `to[at..at + k] = from[from_at..from_at + k]` (nothing if out of bounds).
#[inline]
fn copy_steps(to: &mut [Step], at: usize, from: &[Step], from_at: usize, k: usize) {
    if let (Some(to), Some(from)) = (to.get_mut(at..at + k), from.get(from_at..from_at + k)) {
        to.copy_from_slice(from);
    }
}

/// How a [`replay`] ended.
enum ReplayEnd {
    /// Memory differed after the last step taken: the new state is (pc, sp,
    /// [`Replayed::bp`]; pc is a return address).
    Diverged(u64, u64),
    /// The walk stands at `seg[steps]` (`seg[0]` if no step was taken), not
    /// yet taken: the slow path takes it.
    Stopped,
    /// The last step taken ended the walk: at the outermost frame (None),
    /// or at one that cannot be unwound.
    Ended(Option<Cut>),
}

/// The outcome of [`replay`].
struct Replayed {
    /// Steps taken.
    steps: usize,
    /// The new number of frames in `out`.
    n: usize,
    end: ReplayEnd,
    /// rbp in the state the walk stands at.
    bp: u64,
}

/// Replays the previous walk from `seg[0]`, whose pc, sp and exactness equal
/// the current state's (rbp `bp` may differ), writing frames to `out` from
/// index `n`, for at most `max` steps.
///
/// Each step is the one the slow path would take from the same state: same
/// rule (a function of the address and the epoch), so the same frame (or
/// none, inside this library), the same CFA when it is computed from sp, and
/// the same slot addresses, which were checked when the previous walk took
/// it. rbp enters a step only through a CFA computed from it: such a step is
/// replayed only if rbp equals the recorded one (else the slow path takes it
/// with the real rbp). Otherwise rbp is just carried, or reloaded from its
/// slot, which is read here as in a full walk, so a state that differs from
/// the record only in rbp takes the same steps. Only the reads of the slots
/// can differ; the return address is compared with the previous walk's next
/// state.
///
/// `seg` is left as it was; it is only marked for the duration of the loop
/// (see [`STEP_LAST`]).
///
/// # Safety
/// `seg` is a stretch of the thread's previous walk (in this epoch, with
/// these bounds of this library) and `seg[0]` the current state of a walk
/// from a live frame of the calling thread, but perhaps in rbp.
#[inline(always)]
unsafe fn replay(seg: &mut [Step], out: &mut [u64], n: usize, max: usize, bp: u64) -> Replayed {
    // Steps allowed (at most one frame each), and those among them with a
    // known next state (the previous walk went on after them).
    let lim = max.min(out.len().saturating_sub(n));
    let k = lim.min(seg.len().saturating_sub(1));
    let Some(last) = seg.get_mut(k) else {
        return Replayed {
            steps: 0,
            n,
            end: ReplayEnd::Stopped,
            bp,
        };
    };
    if lim == 0 {
        return Replayed {
            steps: 0,
            n,
            end: ReplayEnd::Stopped,
            bp,
        };
    }
    // The loop needs no bound check in the common step: the step at k is
    // marked so that it never is one.
    let rule = last.rule;
    last.rule = rule | STEP_LAST;
    // SAFETY: seg[k] (k < seg.len()) is the only marked step (no rule has
    // the bit); n < out.len() (lim > 0) and out[n..] holds lim >= k frames,
    // k + 1 if k < lim; the caller's guarantees for the rest.
    let r = unsafe { replay_marked(seg, rule, out.as_mut_ptr().add(n), n, k < lim, bp) };
    // SAFETY: k < seg.len() (checked above).
    unsafe { seg.get_unchecked_mut(k).rule = rule };
    r
}

/// The loop of [`replay`]: exactly one step of `seg`, `seg[k]`, is marked
/// with [`STEP_LAST`] (its rule is `last_rule`); `o0` is `out[n]`, with room
/// for k frames (k + 1 if `room`).
///
/// # Safety
/// As stated, and as for [`replay`].
#[inline(always)]
unsafe fn replay_marked(
    seg: &[Step],
    last_rule: u64,
    o0: *mut u64,
    n: usize,
    room: bool,
    mut bp: u64,
) -> Replayed {
    let base = seg.as_ptr();
    let mut e = base;
    let mut m = 0usize;
    // Raw pointers, for a short loop: `e` stays in seg[..=k] (only seg[k]
    // is marked, and the loop stops there) and `o` in o0[..=k] (at most one
    // frame per step); `nx`, the next step, is read only while e < seg[k].
    let done = |e: *const Step, m: usize, end: ReplayEnd, bp: u64| Replayed {
        // SAFETY: both pointers stay within their buffers (see above).
        steps: unsafe { e.offset_from(base) } as usize,
        // SAFETY: as above.
        n: n + m,
        end,
        bp,
    };
    // SAFETY: k < seg.len(), so seg is not empty.
    let mut pc = unsafe { (*base).pc };
    loop {
        // SAFETY: e <= seg[k], in seg.
        let r = unsafe { (*e).rule };
        if r & (FAST_MASK | STEP_LAST) == 0 {
            // The common step: a normal rule, CFA from sp, rbp untouched, a
            // return address, a frame (and not seg[k], so e + 1 is in seg).
            // SAFETY: e is not the marked seg[k], so e + 1 <= seg[k] is in seg.
            let nx = unsafe { &*e.add(1) };
            // SAFETY: fewer than k steps taken, so o < o0 + k.
            unsafe {
                *o0.add(m) = pc;
                m += 1;
            }
            // SAFETY: nx.sp is this step's CFA; the previous walk read the
            // same slot (cfa - 8, between sp and the caller's frame on this
            // thread's stack) from the same sp after checking the CFA.
            let ra = unsafe { ((nx.sp - 8) as *const u64).read() };
            e = nx;
            if ra != nx.pc {
                return done(e, m, ReplayEnd::Diverged(ra, nx.sp), bp);
            }
            pc = ra;
            continue;
        }
        if r & (FAST_MASK & !RBP_SAVED | STEP_LAST) == 0 {
            // The same, but rbp is restored from its slot.
            // SAFETY: as above.
            let nx = unsafe { &*e.add(1) };
            // SAFETY: as above.
            unsafe {
                *o0.add(m) = pc;
                m += 1;
            }
            // SAFETY: as above; the saved-rbp slot is the one the previous
            // walk read from the same CFA, checked to lie in [sp, cfa).
            let ra = unsafe { ((nx.sp - 8) as *const u64).read() };
            // SAFETY: as above.
            bp = unsafe { (nx.sp.wrapping_add(Rule(r).rbp_off() as u64) as *const u64).read() };
            e = nx;
            if ra != nx.pc {
                return done(e, m, ReplayEnd::Diverged(ra, nx.sp), bp);
            }
            pc = ra;
            continue;
        }
        if r & STEP_LAST != 0 {
            // e == last (the only marked step).
            break;
        }
        // SAFETY: as above.
        let nx = unsafe { &*e.add(1) };
        // SAFETY: e is in seg.
        let eb = unsafe { (*e).bp };
        if r & 3 != KIND_NORMAL || (r & CFA_RBP != 0 && bp != eb) {
            // A signal frame, or a CFA from an rbp other than the recorded
            // one: the slow path takes it.
            return done(e, m, ReplayEnd::Stopped, bp);
        }
        if r & STEP_HIDDEN == 0 {
            // SAFETY: as above.
            unsafe {
                *o0.add(m) = pc.wrapping_add((r & STEP_EXACT) >> 4);
                m += 1;
            }
        }
        // SAFETY: as above (a CFA from rbp: the recorded rbp, so the same CFA).
        let ra = unsafe { ((nx.sp - 8) as *const u64).read() };
        if Rule(r).rbp_saved() {
            // SAFETY: as above.
            bp = unsafe { (nx.sp.wrapping_add(Rule(r).rbp_off() as u64) as *const u64).read() };
        }
        e = nx;
        if ra != nx.pc {
            return done(e, m, ReplayEnd::Diverged(ra, nx.sp), bp);
        }
        pc = ra;
    }
    // At seg[k]. If the previous walk ended there without reading anything
    // (the outermost frame, or no rule) and there is room, this walk ends too.
    let r = last_rule;
    if room && matches!(r & 3, KIND_END | KIND_NONE) {
        if r & STEP_HIDDEN == 0 {
            // SAFETY: k steps taken, o <= o0 + k, and there is room for k + 1.
            unsafe {
                *o0.add(m) = pc.wrapping_add((r & STEP_EXACT) >> 4);
                m += 1;
            }
        }
        let end = if r & 3 == KIND_END {
            None
        } else {
            Some(Cut::NoCfi)
        };
        // SAFETY: e + 1 is one past seg[k], within or one past seg.
        let next = unsafe { e.add(1) };
        return done(next, m, ReplayEnd::Ended(end), bp);
    }
    done(e, m, ReplayEnd::Stopped, bp)
}

/// `MEMTRACE_VERIFY_UNWIND=N`: every N-th captured stack is also taken by
/// libgcc's `_Unwind_Backtrace` (uncached, the reference) and compared; the
/// header counts checks and disagreements. 0: off.
pub static VERIFY_EVERY: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Takes the current stack with libgcc's unwinder into `scratch` (same
/// conventions as [`capture_from`]: frames of this library skipped, exact PCs
/// as PC + 1) and returns whether it equals `ours`.
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
            return 0;
        }
        match acc.out.get_mut(acc.n) {
            Some(slot) => {
                *slot = ip;
                acc.n += 1;
                0
            }
            None => 5, // _URC_END_OF_STACK: stop
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::AtomicUsize;

    /// Counts allocations made by the current test process.
    struct Counting;
    static ALLOCS: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        /// Only allocations of the thread under test count (tests run in parallel).
        static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    // SAFETY: forwards to the system allocator, only counting calls.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            if COUNTING.with(|c| c.get()) {
                ALLOCS.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(p, l) }
        }
    }
    #[global_allocator]
    static GLOBAL: Counting = Counting;

    fn ctx() -> Box<Ctx> {
        Box::new(Ctx::new_in())
    }

    #[inline(never)]
    fn capture_here(out: &mut [u64], c: &mut Ctx) -> usize {
        RECENT_FOR_TEST.with(|r| {
            let regs = current_regs();
            // SAFETY: regs describe this live frame.
            unsafe { capture_from(regs, out, c, &mut r.borrow_mut()) }
        })
    }

    thread_local! {
        /// Kept across captures, as in the preload, so later rounds hit the per-depth cache.
        static RECENT_FOR_TEST: std::cell::RefCell<Recent> = const { std::cell::RefCell::new(Recent::new()) };
    }

    #[inline(never)]
    fn deep(n: u32, out: &mut [u64], c: &mut Ctx) -> usize {
        if n == 0 {
            return capture_here(out, c);
        }
        let r = deep(n - 1, out, c);
        std::hint::black_box(r)
    }

    /// The reference: libgcc's `_Unwind_Backtrace`, uncached, as return addresses.
    #[inline(never)]
    fn reference(out: &mut Vec<u64>) {
        unsafe extern "C" fn cb(ctx: *mut c_void, arg: *mut c_void) -> i32 {
            unsafe extern "C" {
                fn _Unwind_GetIP(ctx: *mut c_void) -> u64;
            }
            // SAFETY: libgcc passes a valid context and our Vec pointer.
            unsafe {
                let v = &mut *(arg as *mut Vec<u64>);
                v.push(_Unwind_GetIP(ctx));
            }
            0
        }
        unsafe extern "C" {
            fn _Unwind_Backtrace(
                cb: unsafe extern "C" fn(*mut c_void, *mut c_void) -> i32,
                arg: *mut c_void,
            ) -> i32;
        }
        // SAFETY: the callback only pushes into `out`, which outlives the call.
        unsafe { _Unwind_Backtrace(cb, out as *mut Vec<u64> as *mut c_void) };
    }

    #[inline(never)]
    fn both(n: u32, ours: &mut [u64], c: &mut Ctx, theirs: &mut Vec<u64>) -> usize {
        if n == 0 {
            reference(theirs);
            return capture_here(ours, c);
        }
        let r = both(n - 1, ours, c, theirs);
        std::hint::black_box(r)
    }

    /// Capturing a stack, cold and cached, never allocates.
    #[test]
    fn capture_does_not_allocate() {
        // (init_self is not called: in a test binary "this library" is the
        // test executable itself, whose frames must be kept.)
        init_cache();
        let mut c = ctx();
        let mut out = vec![0u64; 512];
        let before = ALLOCS.load(Ordering::Relaxed);
        COUNTING.with(|c| c.set(true));
        let mut total = 0;
        for _ in 0..100 {
            total += deep(20, &mut out, &mut c);
        }
        COUNTING.with(|c| c.set(false));
        let after = ALLOCS.load(Ordering::Relaxed);
        assert!(total >= 100 * 20, "stacks too short: {total}");
        assert_eq!(after - before, 0, "the unwinder allocated");
    }

    /// The cached DWARF unwinder returns the same frames as libgcc's reference
    /// unwinder, through Rust frames and the test harness (libstd, libc).
    #[test]
    fn matches_reference_unwinder() {
        init_cache();
        let mut c = ctx();
        for depth in [0u32, 5, 50, 5, 0] {
            for round in 0..3 {
                let mut ours = vec![0u64; 512];
                let mut theirs = Vec::with_capacity(1024);
                let n = both(depth, &mut ours, &mut c, &mut theirs);
                let ours = &ours[..n];
                // libgcc reports the outermost frame (return address undefined) as 0.
                while theirs.last() == Some(&0) {
                    theirs.pop();
                }
                // Both lists end with the same outer frames; the reference
                // starts one frame deeper (inside `reference`), and ours at
                // `capture_here`. Compare the common caller chain above `both`.
                let k = ours.len().min(theirs.len()) - 2;
                assert!(
                    k > depth as usize,
                    "too few frames: ours {} theirs {}",
                    ours.len(),
                    theirs.len()
                );
                assert_eq!(
                    &ours[ours.len() - k..],
                    &theirs[theirs.len() - k..],
                    "depth {depth} round {round}: frames differ"
                );
            }
        }
    }

    /// Compares one capture (ours, through `f`) with the reference over the
    /// common caller chain, as in `matches_reference_unwinder`.
    fn check_against_reference(
        what: &str,
        f: impl FnOnce(&mut [u64], &mut Ctx, &mut Vec<u64>) -> usize,
        c: &mut Ctx,
    ) -> Vec<u64> {
        let mut ours = vec![0u64; 512];
        let mut theirs = Vec::with_capacity(1024);
        let n = f(&mut ours, c, &mut theirs);
        let ours = &ours[..n];
        while theirs.last() == Some(&0) {
            theirs.pop();
        }
        let k = ours.len().min(theirs.len()) - 2;
        assert!(k > 4, "{what}: too few frames");
        assert_eq!(
            &ours[ours.len() - k..],
            &theirs[theirs.len() - k..],
            "{what}: frames differ"
        );
        ours.to_vec()
    }

    // Two callers with the same frame layout: the frames below them lie at
    // the same addresses with the same return addresses, only the return
    // address into the caller differs.
    #[inline(never)]
    fn via_a(ours: &mut [u64], c: &mut Ctx, theirs: &mut Vec<u64>) -> usize {
        let r = both(std::hint::black_box(3), ours, c, theirs);
        std::hint::black_box(r)
    }
    #[inline(never)]
    fn via_b(ours: &mut [u64], c: &mut Ctx, theirs: &mut Vec<u64>) -> usize {
        let r = both(std::hint::black_box(3), ours, c, theirs);
        std::hint::black_box(r)
    }

    /// The first `k` steps (sp, pc) of the thread's last walk.
    fn last_steps(k: usize) -> Vec<(u64, u64)> {
        RECENT_FOR_TEST.with(|r| {
            let r = r.borrow();
            let p = r.prev & 1;
            r.steps[p][..r.len[p].min(k)]
                .iter()
                .map(|s| (s.sp, s.pc))
                .collect()
        })
    }

    /// A frame popped and re-pushed at the same address with another return
    /// address (another caller) is noticed: the replay of the previous walk
    /// stops there, and every capture equals the reference. Captures from
    /// other depths (a shorter or longer inner part) do too.
    #[test]
    fn replay_follows_changed_callers() {
        init_cache();
        let mut c = ctx();
        let a = check_against_reference("a", via_a, &mut c);
        let steps_a = last_steps(64);
        let b = check_against_reference("b", via_b, &mut c);
        let steps_b = last_steps(64);
        assert_ne!(a, b, "the callers differ");
        // The inner steps are identical (so the walk of b started as a
        // replay of a's) up to a step at the same address with another
        // return address, which the replay had to notice.
        let i = steps_a
            .iter()
            .zip(&steps_b)
            .take_while(|(x, y)| x == y)
            .count();
        assert!(
            i > 0 && i < steps_a.len().min(steps_b.len()) && steps_a[i].0 == steps_b[i].0,
            "the layouts differ, the test proves less: {steps_a:x?} {steps_b:x?}"
        );
        assert!(!RECENT_FOR_TEST.with(|r| r.borrow().repeated()));
        for (i, depth) in [0u32, 7, 2, 7, 7, 0, 30, 1].into_iter().enumerate() {
            let what = format!("round {i} depth {depth}");
            check_against_reference(&what, |o, c, t| both(depth, o, c, t), &mut c);
            let what = format!("round {i} a/b");
            let f = if i % 2 == 0 { via_a } else { via_b };
            check_against_reference(&what, f, &mut c);
        }
    }

    /// A capture is marked repeated only when it took the previous capture's
    /// very steps.
    #[test]
    fn repeated_only_for_the_same_walk() {
        init_cache();
        let mut c = ctx();
        let mut out = vec![0u64; 512];
        let repeated = || RECENT_FOR_TEST.with(|r| r.borrow().repeated());
        let mut prev = Vec::new();
        let mut seen = 0;
        for depth in [5u32, 5, 5, 6, 6, 5, 40, 40] {
            let n = deep(depth, &mut out, &mut c);
            let same = out[..n] == prev[..];
            assert!(
                !repeated() || same,
                "depth {depth}: repeated, yet other frames"
            );
            seen += repeated() as u32;
            prev = out[..n].to_vec();
        }
        // Unoptimised, the registers of this loop do not change rbp between
        // the calls, so every identical capture is a repeated walk. (With
        // optimisations rbp may hold a loop variable: equal frames, other
        // states, no repeat.)
        if cfg!(debug_assertions) {
            assert_eq!(seen, 4);
        }
    }

    // Two frames that control rbp, for the tests below; both call
    // `f(arg)` (rsi, rdx) and restore rbp after the call.
    // - with_rbp(v, f, arg): rbp = v during the call (saved, restored from
    //   the stack), so the states below differ only in a dead rbp.
    // - cfa_rbp(p, f, arg): the CFA of this frame is computed from rbp,
    //   which is this frame (p = 0) or `p`, a fake frame of two words
    //   {saved rbp, return address}.
    core::arch::global_asm!(
        ".text",
        ".globl memtrace_test_with_rbp",
        ".type memtrace_test_with_rbp,@function",
        "memtrace_test_with_rbp:",
        ".cfi_startproc",
        "push rbp",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset rbp, -16",
        "mov rbp, rdi",
        "mov rdi, rdx",
        "call rsi",
        "pop rbp",
        ".cfi_def_cfa_offset 8",
        ".cfi_restore rbp",
        "ret",
        ".cfi_endproc",
        ".size memtrace_test_with_rbp, .-memtrace_test_with_rbp",
        ".globl memtrace_test_cfa_rbp",
        ".type memtrace_test_cfa_rbp,@function",
        "memtrace_test_cfa_rbp:",
        ".cfi_startproc",
        "push rbp",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset rbp, -16",
        "mov rbp, rsp",
        "test rdi, rdi",
        "cmovnz rbp, rdi",
        ".cfi_def_cfa_register rbp",
        "mov rdi, rdx",
        "call rsi",
        "pop rbp",
        ".cfi_def_cfa rsp, 8",
        ".cfi_restore rbp",
        "ret",
        ".cfi_endproc",
        ".size memtrace_test_cfa_rbp, .-memtrace_test_cfa_rbp",
    );
    unsafe extern "C" {
        fn memtrace_test_with_rbp(v: u64, f: extern "C" fn(*mut c_void), arg: *mut c_void);
        fn memtrace_test_cfa_rbp(p: u64, f: extern "C" fn(*mut c_void), arg: *mut c_void);
    }

    /// What the frames above call back with: a capture and the reference.
    struct Probe<'a> {
        ours: Vec<u64>,
        n: usize,
        theirs: Vec<u64>,
        c: &'a mut Ctx,
    }

    extern "C" fn probe(arg: *mut c_void) {
        // SAFETY: `arg` is the Probe passed to the trampoline by `through`.
        let p = unsafe { &mut *(arg as *mut Probe) };
        p.n = both(6, &mut p.ours, p.c, &mut p.theirs);
    }

    /// Captures (ours and the reference) through `tramp(v, ..)`, compares
    /// them as `check_against_reference` does, and returns ours.
    #[inline(never)]
    fn through(
        what: &str,
        tramp: unsafe extern "C" fn(u64, extern "C" fn(*mut c_void), *mut c_void),
        v: u64,
        c: &mut Ctx,
    ) -> Vec<u64> {
        let mut p = Probe {
            ours: vec![0u64; 512],
            n: 0,
            theirs: Vec::with_capacity(1024),
            c,
        };
        // SAFETY: the trampolines call `probe` with the Probe, which outlives the call.
        unsafe { tramp(v, probe, &mut p as *mut Probe as *mut c_void) };
        let ours = &p.ours[..p.n];
        while p.theirs.last() == Some(&0) {
            p.theirs.pop();
        }
        let k = ours.len().min(p.theirs.len()) - 2;
        assert!(k > 4, "{what}: too few frames");
        assert_eq!(
            &ours[ours.len() - k..],
            &p.theirs[p.theirs.len() - k..],
            "{what}: frames differ"
        );
        ours.to_vec()
    }

    /// No step of the thread's record keeps the replay's mark.
    fn assert_unmarked() {
        RECENT_FOR_TEST.with(|r| {
            let r = r.borrow();
            for b in 0..2 {
                assert!(r.steps[b].iter().all(|s| s.rule & STEP_LAST == 0));
            }
        });
    }

    /// A state that differs from the previous walk's only in rbp, which is
    /// restored from a slot before any step uses it, replays the whole
    /// previous walk (through the restore, where the value read differs
    /// from the recorded one): the same frames, marked repeated.
    #[test]
    fn replay_carries_a_dead_rbp() {
        init_cache();
        let mut c = ctx();
        let mut first = None;
        for (i, v) in [0u64, 1, 0xdead_beef, u64::MAX, 0x7fff_0000_1000]
            .into_iter()
            .enumerate()
        {
            let what = format!("round {i} rbp {v:#x}");
            let ours = through(&what, memtrace_test_with_rbp, v, &mut c);
            let first = first.get_or_insert_with(|| ours.clone());
            assert_eq!(&ours, first, "{what}: other frames");
            // Only `probe` and the frames below it differ from the first
            // round's states, in rbp.
            let repeated = RECENT_FOR_TEST.with(|r| r.borrow().repeated());
            assert!(i == 0 || repeated, "{what}: not replayed");
        }
        assert_unmarked();
    }

    /// A step whose CFA is computed from rbp is replayed only with the
    /// recorded rbp: from the same pc and sp but another rbp the walk
    /// continues elsewhere (here it ends, at a fake frame whose return
    /// address is 0), exactly as the reference unwinder does.
    #[test]
    fn replay_checks_an_rbp_it_uses() {
        init_cache();
        let mut c = ctx();
        // A fake frame above the trampoline's (within reach, aligned):
        // saved rbp 0, return address 0.
        let fake = std::hint::black_box([0u64; 2]);
        let fake = fake.as_ptr() as u64;
        let mut real = Vec::new();
        for (i, p) in [0, fake, 0, 0, fake, fake, 0].into_iter().enumerate() {
            let what = format!("round {i} {}", if p == 0 { "real" } else { "fake" });
            let ours = through(&what, memtrace_test_cfa_rbp, p, &mut c);
            if i == 0 {
                real = ours;
            } else if p == 0 {
                assert_eq!(ours, real, "{what}");
            } else {
                assert!(
                    ours.len() < real.len(),
                    "{what}: went on past the fake frame"
                );
                assert_eq!(ours[..], real[..ours.len()], "{what}");
            }
        }
        assert_unmarked();
    }

    /// Rules pack and unpack losslessly, including negative offsets.
    #[test]
    fn rule_packing() {
        let r = Rule::pack(KIND_NORMAL, true, -16, true, -24, 0xabcd);
        assert_eq!(
            (
                r.kind(),
                r.cfa_rbp(),
                r.cfa_off(),
                r.rbp_saved(),
                r.rbp_off(),
                r.epoch()
            ),
            (KIND_NORMAL, true, -16, true, -24, 0xabcd)
        );
        let r = Rule::pack(KIND_SIGNAL, false, 8_000_000, false, 0, 1);
        assert_eq!((r.kind(), r.cfa_off()), (KIND_SIGNAL, 8_000_000));
    }
}
