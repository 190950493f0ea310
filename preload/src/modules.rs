//! Loaded objects: recorded with their build-id at start-up, whenever the
//! unwinder meets code in an object not seen yet (a `dlopen`), and after
//! every `dlclose`, so frames in a library unloaded before exit still
//! symbolize.
//!
//! The table is guarded by a try-lock: a thread that cannot take it (another
//! thread is scanning, or a signal interrupted our own scan) leaves the work
//! for later instead of waiting.
//!
//! `dlopen` is hooked by a two-instruction assembly stub that sets [`DIRTY`]
//! and *jumps* to the real `dlopen`: the dynamic linker takes the caller's
//! RPATH, `$ORIGIN` and namespace from the return address, which a jump leaves
//! untouched (a Rust wrapper would make libmemtrace.so the caller). The next
//! recorded event then finds the new objects.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::writer::Stream;
use crate::{sys, unwind};

const MAX: usize = 1024;

#[derive(Clone, Copy)]
struct Entry {
    bias: u64,
    start: u64,
    end: u64,
    seen: u64,
    /// The loader's name for the object (owned by its link map, valid while
    /// the object is loaded); null for the main program.
    name: *const core::ffi::c_char,
    /// The build-id note's bytes, inside the loaded object.
    build_id: *const u8,
    build_id_len: usize,
}

struct Table {
    entries: [Entry; MAX],
    len: usize,
    generation: u64,
}

struct Locked(core::cell::UnsafeCell<Table>);
// SAFETY: the table is only accessed while LOCK is held; its raw pointers
// point into loaded objects and the loader's link maps, never to thread data.
unsafe impl Sync for Locked {}

static TABLE: Locked = Locked(core::cell::UnsafeCell::new(Table {
    entries: [Entry {
        bias: 0,
        start: 0,
        end: 0,
        seen: 0,
        name: core::ptr::null(),
        build_id: core::ptr::null(),
        build_id_len: 0,
    }; MAX],
    len: 0,
    generation: 0,
}));
static LOCK: AtomicBool = AtomicBool::new(false);
/// Set when an object may have been loaded or unloaded since the last scan.
/// (Also stored to, as a byte, by the `dlopen` stub.)
pub static DIRTY: AtomicBool = AtomicBool::new(true);

/// The real `dlopen`, for the stub (0 until resolved).
pub static MEMTRACE_REAL_DLOPEN: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(0);

/// The exported `dlopen`: marks the module table dirty and tail-jumps to the
/// real dlopen so that the caller's return address is what the dynamic linker
/// sees. Before resolution (a dlopen from an earlier constructor) it falls
/// back to a plain call through `dlopen_slow`.
///
/// # Safety
/// As `dlopen(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
#[unsafe(naked)]
pub unsafe extern "C" fn dlopen(_file: *const core::ffi::c_char, _mode: c_int) -> *mut c_void {
    core::arch::naked_asm!(
        "mov byte ptr [rip + {dirty}], 1",
        "mov byte ptr [rip + {usable}], 1",
        "mov rax, qword ptr [rip + {real}]",
        "test rax, rax",
        "je 2f",
        "jmp rax",
        "2:",
        "jmp {slow}",
        dirty = sym DIRTY,
        usable = sym LOADER_USABLE,
        real = sym MEMTRACE_REAL_DLOPEN,
        slow = sym dlopen_slow,
    )
}

/// `dlopen` before the real one was resolved: resolve, then call it.
///
/// # Safety
/// As `dlopen(3)`.
unsafe extern "C" fn dlopen_slow(file: *const core::ffi::c_char, mode: c_int) -> *mut c_void {
    crate::real::resolve();
    let f = MEMTRACE_REAL_DLOPEN.load(Ordering::Acquire);
    if f == 0 {
        return core::ptr::null_mut();
    }
    // SAFETY: f is the next `dlopen`, with this signature.
    unsafe {
        core::mem::transmute::<
            usize,
            unsafe extern "C" fn(*const core::ffi::c_char, c_int) -> *mut c_void,
        >(f)(file, mode)
    }
}
/// Start addresses of objects known to the table, as a quick filter (a small
/// direct-mapped set; a miss only costs a rescan check).
static KNOWN: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

fn known_slot(start: u64) -> &'static AtomicU64 {
    &KNOWN[((start >> 12).wrapping_mul(0x9E37_79B9) as usize) & 255]
}

/// Drops an unloaded object from the quick set: every slot holding the start
/// of one of its mappings (see [`note_object`]).
fn forget_known(e: &Entry) {
    for slot in &KNOWN {
        let v = slot.load(Ordering::Relaxed);
        if e.start <= v && v < e.end {
            slot.store(0, Ordering::Relaxed);
        }
    }
}

/// Called by the unwinder on a cache miss with the load bias of the object
/// that contains the address and the start of its mapping that does (the
/// whole object's, or one segment's in an executable whose segments leave
/// gaps): asks for a rescan if the object is new to us. The quick set can
/// forget an object (two objects may share a slot), so a miss there is
/// checked against the table before a rescan is asked for.
pub fn note_object(bias: u64, start: u64) {
    let slot = known_slot(start);
    if slot.load(Ordering::Relaxed) == start {
        return;
    }
    if LOCK.swap(true, Ordering::Acquire) {
        DIRTY.store(true, Ordering::Release);
        return;
    }
    // SAFETY: LOCK is held.
    let t = unsafe { &*TABLE.0.get() };
    let known = t.entries[..t.len]
        .iter()
        .any(|e| e.bias == bias && e.start <= start && start < e.end);
    LOCK.store(false, Ordering::Release);
    if known {
        slot.store(start, Ordering::Relaxed);
    } else {
        DIRTY.store(true, Ordering::Release);
    }
}

/// Whether the dynamic linker's locks can be taken. False in a fork child
/// until the child itself goes through dlopen or dlclose: glibc does not
/// reset those locks at fork, so one held by a parent thread at that moment
/// stays held forever in the child, and `dl_iterate_phdr` would wait on it.
/// (Set by the `dlopen` stub, as a byte, and by the `dlclose` hook.)
pub static LOADER_USABLE: AtomicBool = AtomicBool::new(true);

/// Asks for a rescan (after dlclose, or in a fork child that starts a new log).
pub fn mark_dirty() {
    DIRTY.store(true, Ordering::Release);
}

/// Fork child: writes the inherited table into the child's new log, without
/// asking the dynamic linker. glibc does not reset the loader's locks in a
/// fork child, so if another parent thread was inside dlopen, dlclose or
/// dl_iterate_phdr at the time of the fork, `dl_iterate_phdr` would wait
/// forever here. The child has one thread: a table lock held by a parent
/// thread that was scanning is taken over (that thread does not exist here).
pub fn relist_after_fork(stream: &mut Stream, buf: &mut [u8]) {
    LOADER_USABLE.store(false, Ordering::Release);
    LOCK.store(true, Ordering::Relaxed);
    // SAFETY: LOCK is held, and no other thread exists.
    let t = unsafe { &mut *TABLE.0.get() };
    let pid = sys::getpid();
    let mut all = true;
    let mut i = 0;
    while i < t.len {
        let e = t.entries[i];
        // Another parent thread may have unloaded the object before its own
        // rescan ran, so its notes and name may be gone: they are copied with
        // process_vm_readv, which fails instead of faulting, and the build-id
        // note is checked to still be one. (Neither dl_iterate_phdr nor
        // _dl_find_object is asked: a parent thread may have been inside the
        // loader at the time of the fork, leaving its locks or its lock-free
        // tables mid-update in this copy of memory.)
        let mut id = [0u8; 64];
        let mut name = [0u8; 4096];
        match copy_entry(pid, &e, &mut id, &mut name) {
            Some((id_len, name_len)) => {
                all &= emit_bytes(stream, buf, &e, &id[..id_len], name_len.map(|n| &name[..n]));
                i += 1;
            }
            None => {
                forget_known(&e);
                t.len -= 1;
                t.entries[i] = t.entries[t.len];
            }
        }
    }
    DIRTY.store(!all, Ordering::Release);
    LOCK.store(false, Ordering::Release);
}

/// Copies the bytes at `remote` of process `pid` (this one) into `local`
/// without faulting, in one `process_vm_readv`: the ranges in order (an
/// empty one is skipped), up to the first byte that cannot be read. Returns
/// how many were copied.
fn safe_read(pid: u32, local: [&mut [u8]; 2], remote: [usize; 2]) -> usize {
    let l = local.map(|b| libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: b.len(),
    });
    let mut r = l;
    for (r, &at) in r.iter_mut().zip(&remote) {
        r.iov_base = at as *mut c_void;
    }
    // SAFETY: process_vm_readv on our own pid writes at most the lengths of
    // the `local` slices into them, and reports unmapped source memory as a
    // short count or an error, not a fault.
    let got = unsafe {
        libc::syscall(
            libc::SYS_process_vm_readv,
            pid,
            l.as_ptr(),
            2usize,
            r.as_ptr(),
            2usize,
            0usize,
        )
    };
    if got < 0 { 0 } else { got as usize }
}

/// Copies an entry's build-id (checked to be preceded by its GNU note header)
/// and name, in one system call. `None` if the object's memory is gone.
fn copy_entry(
    pid: u32,
    e: &Entry,
    id: &mut [u8; 64],
    name: &mut [u8; 4096],
) -> Option<(usize, Option<usize>)> {
    // The note's header (16 bytes) and its descriptor, then the name.
    let mut note = [0u8; 16 + 64];
    let id_len = if e.build_id.is_null() {
        0
    } else {
        e.build_id_len.min(id.len())
    };
    let note_len = if id_len == 0 { 0 } else { 16 + id_len };
    let name_cap = if e.name.is_null() { 0 } else { name.len() };
    let got = safe_read(
        pid,
        [&mut note[..note_len], &mut name[..name_cap]],
        [(e.build_id as usize).wrapping_sub(16), e.name as usize],
    );
    if got < note_len {
        return None;
    }
    if note_len != 0 {
        let hdr = &note[..16];
        let namesz = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let descsz = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let ty = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
        if namesz != 4 || descsz != e.build_id_len || ty != 3 || &hdr[12..16] != b"GNU\0" {
            return None;
        }
        id[..id_len].copy_from_slice(&note[16..note_len]);
    }
    if e.name.is_null() {
        return Some((id_len, None));
    }
    let n = got - note_len;
    let len = name[..n].iter().position(|&c| c == 0)?;
    Some((id_len, Some(len)))
}

/// Writes one MODULE record for an object known to be loaded (the loader's
/// lock is held); false if the log had no room.
fn emit(stream: &mut Stream, buf: &mut [u8], e: &Entry) -> bool {
    let name = if e.name.is_null() {
        None
    } else {
        // SAFETY: the loader's NUL-terminated name, valid while the object is loaded.
        Some(unsafe { core::ffi::CStr::from_ptr(e.name) }.to_bytes())
    };
    let build_id: &[u8] = if e.build_id.is_null() {
        b""
    } else {
        // SAFETY: the note lies in the loaded object's mapped PT_NOTE segment.
        unsafe { core::slice::from_raw_parts(e.build_id, e.build_id_len) }
    };
    emit_bytes(stream, buf, e, build_id, name)
}

/// Writes one MODULE record from copied bytes (`name` None: the main program).
fn emit_bytes(
    stream: &mut Stream,
    buf: &mut [u8],
    e: &Entry,
    build_id: &[u8],
    name: Option<&[u8]>,
) -> bool {
    let mut path_buf = [0u8; 4096];
    let path: &[u8] = match name {
        None => {
            let n = sys::exe(&mut path_buf);
            &path_buf[..n]
        }
        Some(name) => absolute(name, &mut path_buf),
    };
    let t = sys::now_ns();
    let dt = t.wrapping_sub(stream.last_time);
    match memtrace_format::encode::module(buf, dt, e.bias, e.start, e.end, build_id, path) {
        Some(n) => stream.define(&buf[..n], Some(t)),
        None => false,
    }
}

/// Set once libstdc++ has been seen among the loaded objects.
pub static LIBSTDCXX_SEEN: AtomicBool = AtomicBool::new(false);

struct ScanCtx<'a> {
    table: &'a mut Table,
    stream: &'a mut Stream,
    buf: &'a mut [u8],
    first: bool,
}

/// Rescans the loaded objects if needed, writing MODULE/UNMODULE records into `stream`.
pub fn sync(stream: &mut Stream, buf: &mut [u8]) {
    if !DIRTY.load(Ordering::Acquire)
        || !LOADER_USABLE.load(Ordering::Acquire)
        || crate::sandbox::active()
    {
        return;
    }
    if LOCK.swap(true, Ordering::Acquire) {
        return;
    }
    DIRTY.store(false, Ordering::Release);
    // SAFETY: LOCK is held.
    let table = unsafe { &mut *TABLE.0.get() };
    table.generation += 1;
    let mut ctx = ScanCtx {
        table,
        stream,
        buf,
        first: true,
    };
    // SAFETY: dl_iterate_phdr calls `visit` synchronously with valid
    // dl_phdr_info pointers; `ctx` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut ctx as *mut ScanCtx as *mut c_void) };
    // Entries not seen in this scan were unloaded.
    let generation = ctx.table.generation;
    let mut unloaded = false;
    let mut i = 0;
    while i < ctx.table.len {
        let e = ctx.table.entries[i];
        if e.seen != generation {
            let t = sys::now_ns();
            if let Some(n) = memtrace_format::encode::unmodule(
                ctx.buf,
                t.wrapping_sub(ctx.stream.last_time),
                e.bias,
                e.start,
            ) {
                ctx.stream.define(&ctx.buf[..n], Some(t));
            }
            forget_known(&e);
            ctx.table.len -= 1;
            ctx.table.entries[i] = ctx.table.entries[ctx.table.len];
            unloaded = true;
        } else {
            i += 1;
        }
    }
    if unloaded {
        unwind::EPOCH.fetch_add(1, Ordering::AcqRel);
    }
    LOCK.store(false, Ordering::Release);
    if LIBSTDCXX_SEEN.load(Ordering::Relaxed) {
        crate::init::FREERES_PENDING.store(true, Ordering::Relaxed);
    }
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the ScanCtx passed to dl_iterate_phdr by `sync`, and
    // `info` is valid for the duration of this callback.
    let (ctx, info) = unsafe { (&mut *(data as *mut ScanCtx), &*info) };
    let first = core::mem::replace(&mut ctx.first, false);
    let bias = info.dlpi_addr;
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers of a loaded object.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let (mut start, mut end) = (u64::MAX, 0u64);
    for p in phdrs {
        if p.p_type == libc::PT_LOAD {
            start = start.min(bias.wrapping_add(p.p_vaddr));
            end = end.max(bias.wrapping_add(p.p_vaddr).wrapping_add(p.p_memsz));
        }
    }
    if start >= end {
        return 0;
    }
    let generation = ctx.table.generation;
    for e in ctx.table.entries[..ctx.table.len].iter_mut() {
        if e.start == start && e.bias == bias {
            e.seen = generation;
            known_slot(start).store(start, Ordering::Relaxed);
            return 0;
        }
    }
    if ctx.table.len == MAX {
        return 0;
    }
    let build_id = build_id(bias, phdrs);
    let name = if first || info.dlpi_name.is_null() {
        core::ptr::null()
    } else {
        info.dlpi_name
    };
    if !name.is_null() {
        // SAFETY: the loader's NUL-terminated name.
        let n = unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes();
        if n.windows(11).any(|w| w == b"libstdc++.s") {
            LIBSTDCXX_SEEN.store(true, Ordering::Relaxed);
        }
    }
    let e = Entry {
        bias,
        start,
        end,
        seen: generation,
        name,
        build_id: build_id.as_ptr(),
        build_id_len: build_id.len(),
    };
    if !emit(ctx.stream, ctx.buf, &e) {
        // Not recorded (the log is full): try again at the next scan.
        DIRTY.store(true, Ordering::Release);
        return 0;
    }
    let len = ctx.table.len;
    ctx.table.entries[len] = e;
    ctx.table.len += 1;
    known_slot(start).store(start, Ordering::Relaxed);
    0
}

/// The NT_GNU_BUILD_ID note of a loaded object, read from its PT_NOTE segments.
fn build_id(bias: u64, phdrs: &[libc::Elf64_Phdr]) -> &'static [u8] {
    for p in phdrs {
        if p.p_type != libc::PT_NOTE {
            continue;
        }
        let mut at = bias.wrapping_add(p.p_vaddr) as usize;
        let end = at + p.p_memsz as usize;
        while at + 12 <= end {
            // SAFETY: PT_NOTE segments are mapped readable; every read stays in [at, end).
            let (namesz, descsz, ty) = unsafe {
                let w = at as *const u32;
                (
                    w.read_unaligned() as usize,
                    w.add(1).read_unaligned() as usize,
                    w.add(2).read_unaligned(),
                )
            };
            let name_at = at + 12;
            let desc_at = name_at + namesz.next_multiple_of(4);
            let next = desc_at + descsz.next_multiple_of(4);
            if next > end || next <= at {
                break;
            }
            // SAFETY: [name_at, name_at + namesz) lies inside the segment (checked above).
            let name = unsafe { core::slice::from_raw_parts(name_at as *const u8, namesz) };
            if ty == 3 && name == b"GNU\0" {
                // SAFETY: [desc_at, desc_at + descsz) lies inside the segment.
                return unsafe { core::slice::from_raw_parts(desc_at as *const u8, descsz) };
            }
            at = next;
        }
    }
    b""
}

/// A path as the loader knows it, made absolute when it is relative (a
/// `dlopen("./x.so")`): the analyzer runs elsewhere, later.
fn absolute<'a>(name: &'a [u8], buf: &'a mut [u8]) -> &'a [u8] {
    if name.first() == Some(&b'/') || !name.contains(&b'/') {
        return name;
    }
    // SAFETY: getcwd writes at most buf.len() bytes, NUL included, and returns the length.
    let r = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if r <= 0 {
        return name;
    }
    let mut n = r as usize - 1; // without the NUL
    let rest = name.strip_prefix(b"./").unwrap_or(name);
    if n + 1 + rest.len() > buf.len() {
        return name;
    }
    buf[n] = b'/';
    n += 1;
    buf[n..n + rest.len()].copy_from_slice(rest);
    &buf[..n + rest.len()]
}
