//! Reading a stopped process's memory image for [`classify`]: its writable
//! private mappings, which of them are roots and which the allocator's,
//! the live parts of its stacks, and its registers (`/proc/PID/maps` and
//! `/proc/PID/mem`; of an anonymous mapping only the pages ever written,
//! which `/proc/PID/pagemap` tells).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{AddressSpace, Block, Contents, Heuristics, Mapping, Scan, classify, find};

/// Mappings larger than this are not read unless they hold live blocks
/// (address-space reservations, not data).
const MAX_ROOT_MAPPING: u64 = 1 << 30;

/// glibc's non-main heaps (its arenas for threads) are mapped at multiples of
/// `HEAP_MAX_SIZE` (64 MiB on 64-bit systems).
const GLIBC_HEAP_ALIGN: u64 = 64 << 20;

/// The red zone below a stopped thread's stack pointer, which its innermost
/// function may use without moving the pointer (x86-64 System V ABI).
pub const RED_ZONE: u64 = 128;

/// Where the scan of a process starts on its stacks, what registers hold,
/// and what is not the program's memory.
#[derive(Clone, Debug, Default)]
pub struct Roots {
    /// A stack pointer of each thread (the exiting thread's at the entry to
    /// `exit`; the others' minus the red zone): the mapping holding it is
    /// scanned from there up; below it the stack is dead.
    pub stack_starts: Vec<u64>,
    /// The threads' register values, each a root word.
    pub registers: Vec<u64>,
    /// Memory that is never a root (start, bytes): memtrace's own, and the
    /// allocator's state that is not in an arena.
    pub not_roots: Vec<(u64, u64)>,
}

/// An arena holding fewer live blocks than one per this many bytes is not
/// read whole: its blocks are read one at a time as the scan comes to them
/// (a system call each, into one buffer), so that a heap of large blocks is
/// never held twice, and its free chunks are not read at all. Denser arenas
/// (small blocks) are read whole, in one pass.
const SPARSE_ARENA: u64 = 2048;

/// Whose pages a scanned process holds, which decides how they are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pages {
    /// Its own (the process at exit): read with `process_vm_readv`, which
    /// copies each page once (a page it still shares with a child it forked
    /// is given a copy of its own, which goes when it exits).
    Own,
    /// Shared with the process it was copied from (a frozen copy): read
    /// through `/proc/PID/mem`. `process_vm_readv` pins each page it reads,
    /// and the kernel gives a copy-on-write page that is pinned a copy of
    /// its own first: reading a frozen copy that way would copy the whole
    /// heap. `/proc/PID/mem` copies each page twice but unshares none.
    Shared,
}

/// A stopped process's memory: read with `process_vm_readv` (see
/// [`Pages`]), or through `/proc/PID/mem` where that system call is refused
/// (no such system call, or denied). Either needs the right to trace the
/// process.
struct Memory {
    pid: libc::pid_t,
    file: File,
    /// `process_vm_readv` has not been refused.
    direct: AtomicBool,
    /// `/proc/PID/pagemap`, when it can be read.
    pagemap: Option<File>,
}

impl Memory {
    fn open(pid: u32, pages: Pages) -> std::io::Result<Memory> {
        Ok(Memory {
            pid: pid as libc::pid_t,
            file: File::open(format!("/proc/{pid}/mem"))?,
            direct: AtomicBool::new(pages == Pages::Own),
            pagemap: File::open(format!("/proc/{pid}/pagemap")).ok(),
        })
    }

    /// The parts of `start..end`, in order, on pages that are in memory or
    /// in swap (bits 63 and 62 of their `/proc/PID/pagemap` entries); in an
    /// anonymous mapping the others were never written and read as zeros,
    /// so they need not be read: most of a thread's 8 MiB stack, of a heap
    /// reservation. All of it when the pagemap cannot be read.
    fn populated(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        const PAGE: u64 = 4096;
        const BATCH: u64 = 4096;
        let all = vec![(start, end)];
        let Some(map) = &self.pagemap else {
            return all;
        };
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut entries = vec![0u8; (BATCH * 8) as usize];
        let (mut page, last) = (start / PAGE, end.div_ceil(PAGE));
        while page < last {
            let n = (last - page).min(BATCH);
            let bytes = &mut entries[..(n * 8) as usize];
            if map.read_exact_at(bytes, page * 8).is_err() {
                return all;
            }
            for (k, e) in bytes.chunks_exact(8).enumerate() {
                let e = u64::from_le_bytes(e.try_into().unwrap_or_default());
                if e >> 62 == 0 {
                    continue;
                }
                let p = page + k as u64;
                let (from, to) = ((p * PAGE).max(start), ((p + 1) * PAGE).min(end));
                match runs.last_mut() {
                    Some(run) if run.1 == from => run.1 = to,
                    _ => runs.push((from, to)),
                }
            }
            page += n;
        }
        runs
    }

    /// Reads at `addr` into `buf`: the bytes read (fewer at an unreadable
    /// page), or an error (the page at `addr` is not readable).
    fn read_at(&self, buf: &mut [u8], addr: u64) -> std::io::Result<usize> {
        if self.direct.load(Ordering::Relaxed) {
            let local = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let remote = libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: buf.len(),
            };
            // SAFETY: `local` describes `buf`, writable and borrowed
            // exclusively for the call; `remote` is only an address range in
            // the other process, which the kernel checks.
            let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
                return Err(e);
            }
            self.direct.store(false, Ordering::Relaxed);
        }
        self.file.read_at(buf, addr)
    }

    /// The word at `addr`.
    fn word(&self, addr: u64) -> Option<u64> {
        let mut w = [0u8; 8];
        (self.read_at(&mut w, addr).ok()? == 8).then(|| u64::from_le_bytes(w))
    }
}

/// One writable private mapping.
struct Region {
    start: u64,
    end: u64,
    /// Its bytes, read whole; `None`: a sparse arena (see [`SPARSE_ARENA`]),
    /// whose blocks are read on demand.
    bytes: Option<Vec<u8>>,
    /// The allocator's (an arena holding live blocks, glibc's `[heap]` or a
    /// thread heap): read for the blocks' contents, never a root.
    heap: bool,
    /// Anonymous: its pages that were never written are not read.
    anon: bool,
}

/// The process's blocks for the scan ([`Contents`]): from the regions read
/// whole, or read from the process (`/proc/PID/mem`) into the caller's buffer.
struct Image<'a> {
    mem: &'a Memory,
    blocks: &'a [Block],
    regions: &'a [Region],
    not_roots: &'a [(u64, u64)],
}

impl Image<'_> {
    /// The region holding the whole of block `i`.
    fn region(&self, i: usize) -> Option<&Region> {
        let b = self.blocks[i];
        let r = self
            .regions
            .partition_point(|r| r.start <= b.addr)
            .checked_sub(1)?;
        let r = &self.regions[r];
        (b.addr.checked_add(b.size)? <= r.end).then_some(r)
    }
}

impl Contents for Image<'_> {
    fn with(&self, i: usize, buf: &mut Vec<u8>, f: &mut dyn FnMut(&[u8])) -> bool {
        let Some(r) = self.region(i) else {
            return false;
        };
        let b = self.blocks[i];
        match &r.bytes {
            Some(bytes) => {
                let from = (b.addr - r.start) as usize;
                f(&bytes[from..from + b.size as usize]);
            }
            None => {
                buf.clear();
                buf.resize(b.size as usize, 0);
                read_into(self.mem, b.addr, buf, self.not_roots, r.anon);
                f(buf);
            }
        }
        true
    }

    fn word(&self, i: usize, off: u64) -> Option<u64> {
        let r = self.region(i)?;
        let b = self.blocks[i];
        if off.checked_add(8)? > b.size {
            return None;
        }
        match &r.bytes {
            Some(bytes) => super::heuristics::word_at(bytes, b.addr - r.start + off),
            None => {
                let mut w = [0u8; 8];
                read_into(self.mem, b.addr + off, &mut w, self.not_roots, false);
                Some(u64::from_le_bytes(w))
            }
        }
    }
}

/// One line of `/proc/PID/maps`: the range, the permissions, the path.
struct MapsLine<'a> {
    start: u64,
    end: u64,
    perms: &'a [u8],
    path: &'a str,
}

impl<'a> MapsLine<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            return None;
        };
        let path = f.nth(3).unwrap_or("");
        let (a, b) = range.split_once('-')?;
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            return None;
        };
        Some(MapsLine {
            start,
            end,
            perms: perms.as_bytes(),
            path,
        })
    }

    /// Anonymous (`[heap]`, `[stack]`, a named or unnamed anonymous
    /// mapping), private and writable: no file behind it, so a page never
    /// written holds zeros.
    fn anonymous_private_writable(&self) -> bool {
        let p = self.perms;
        p.len() >= 4
            && p[..2] == *b"rw"
            && p[3] == b'p'
            && (self.path.is_empty()
                || ["[heap]", "[stack", "[anon:"]
                    .iter()
                    .any(|a| self.path.starts_with(a)))
    }

    /// The mapping for the multipleinheritance heuristic, when the
    /// permissions say enough.
    fn mapping(&self) -> Option<Mapping> {
        let p = self.perms;
        (p.len() >= 3).then(|| Mapping {
            start: self.start,
            end: self.end,
            read: p[0] == b'r',
            exec: p[2] == b'x',
            file: !self.path.is_empty() && !self.path.starts_with('['),
        })
    }
}

/// Reads process `pid`'s writable private mappings and classifies `blocks`
/// (sorted by address).
///
/// **Roots are the program's memory, never the allocator's or memtrace's.**
/// Every writable private mapping is the program's (module data and bss,
/// stacks and the TLS in them, its own mmaps) except those the allocator
/// keeps for itself: a mapping holding a live block (an arena), glibc's
/// `[heap]` and its 64 MiB-aligned thread heaps (arenas whose blocks may all
/// be free: their free chunks' stale words are not roots). Inside the C
/// library's data, glibc keeps its arena state (`main_arena`), whose words point at chunk headers: a
/// pointer at exactly the header of the chunk after a block is the
/// allocator's, not an interior pointer into that block (see
/// `glibc_next_chunk`). memtrace's own memory ([`Roots::not_roots`]) reads
/// as zeros. A stack mapping is scanned from the lowest thread stack pointer
/// in it; a thread running on a stack inside a live block (a coroutine's)
/// makes that block's part above its stack pointer a root too. Needs the right
/// to read the process's memory (ptrace access).
/// `heur`: the leak heuristics to apply (the multipleinheritance one reads
/// the vtables it tests from the process's read-only mappings, word by word).
/// `pages`: whose pages the process holds (how to read them).
pub fn classify_process(
    pid: u32,
    roots: &Roots,
    blocks: &[Block],
    heur: Heuristics,
    pages: Pages,
) -> std::io::Result<Scan> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mem = Memory::open(pid, pages)?;
    let mut regions: Vec<Region> = Vec::new();
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in maps.lines() {
        let Some(line) = MapsLine::parse(line) else {
            continue;
        };
        mappings.extend(line.mapping());
        regions.extend(read_region(&mem, roots, blocks, &line));
    }
    let image = Image {
        mem: &mem,
        blocks,
        regions: &regions,
        not_roots: &roots.not_roots,
    };
    // Threads running on a stack inside a live block.
    let mut on_block: Vec<(u64, Vec<u8>)> = Vec::new();
    for &sp in &roots.stack_starts {
        if let Some((i, _)) = find(blocks, sp) {
            let from = ((sp & !7) - blocks[i].addr) as usize;
            image.with(i, &mut Vec::new(), &mut |bytes| {
                on_block.push((sp & !7, bytes[from.min(bytes.len())..].to_vec()));
            });
        }
    }
    let registers: Vec<u8> = roots
        .registers
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    // The vtable test reads words outside the regions read whole (vtables
    // live in read-only mappings).
    let space = AddressSpace::new(mappings, Box::new(|a: u64| mem.word(a)));
    Ok(classify(
        blocks,
        regions
            .iter()
            .filter(|r| !r.heap)
            .filter_map(|r| Some((r.start, r.bytes.as_deref()?)))
            .chain(on_block.iter().map(|(a, b)| (*a, b.as_slice())))
            .chain([(0u64, registers.as_slice())]),
        &image,
        heur,
        &space,
    ))
}

/// The preload's own mappings (start, bytes), listed in its table in the
/// memory of process `pid` (`table`: its address and slots, from the
/// `KIND_EXIT_SCAN` or `KIND_SNAPSHOT_RUNNING` record): never roots. Empty
/// when the table is not known or cannot be read.
pub fn own_mappings(pid: u32, table: (u64, u64)) -> Vec<(u64, u64)> {
    let (at, slots) = table;
    if at == 0 || slots == 0 {
        return Vec::new();
    }
    let Ok(mem) = File::open(format!("/proc/{pid}/mem")) else {
        return Vec::new();
    };
    let mut bytes = vec![0u8; (slots.min(1 << 20) * 16) as usize];
    if mem.read_exact_at(&mut bytes, at).is_err() {
        return Vec::new();
    }
    bytes
        .chunks_exact(16)
        .map(|p| {
            let w = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().unwrap_or([0; 8]));
            (w(0), w(8))
        })
        .filter(|&(a, n)| a != 0 && n != 0)
        .collect()
}

/// The region to read for a line of the maps: `None` for a mapping that is
/// not writable and private, neither a root nor holding blocks, or
/// memtrace's own.
fn read_region(
    mem: &Memory,
    roots: &Roots,
    blocks: &[Block],
    line: &MapsLine<'_>,
) -> Option<Region> {
    let MapsLine {
        start,
        end,
        perms: p,
        path,
    } = *line;
    if p.len() < 4 || p[0] != b'r' || p[1] != b'w' || p[3] != b'p' {
        return None;
    }
    if path.starts_with("[vvar") || path.starts_with("[vsyscall") {
        return None;
    }
    let i = blocks.partition_point(|b| b.addr < start);
    let held = blocks[i..].partition_point(|b| b.addr < end) as u64;
    let holds_blocks = held > 0;
    // A thread heap of glibc's: anonymous, 64 MiB-aligned, holding no
    // thread's stack, and opening with its `heap_info`, whose first word
    // points to its arena (a thread stack's lowest word is 0: unused).
    let thread_heap = || {
        path.is_empty()
            && start % GLIBC_HEAP_ALIGN == 0
            && !roots
                .stack_starts
                .iter()
                .any(|sp| (start..end).contains(sp))
            && mem.word(start).is_some_and(|w| w != 0)
    };
    let anon = line.anonymous_private_writable();
    let glibc_heap = path == "[heap]" || thread_heap();
    let heap = holds_blocks || glibc_heap;
    // Neither a root nor holding blocks: nothing to read.
    if (heap && !holds_blocks) || (!heap && end - start > MAX_ROOT_MAPPING) {
        return None;
    }
    // memtrace's own mappings (its tables, thread states) whole: not read
    // (the kernel may have merged several of them into one mapping).
    if uncovered(start, end, &roots.not_roots).is_empty() {
        return None;
    }
    // A stack: the live part only.
    let start = match roots
        .stack_starts
        .iter()
        .filter(|&&sp| (start..end).contains(&sp))
        .min()
    {
        Some(&sp) if !heap => sp & !7,
        _ => start,
    };
    let bytes = (!heap || held.saturating_mul(SPARSE_ARENA) > end - start).then(|| {
        let mut bytes = vec![0u8; (end - start) as usize];
        read_into(mem, start, &mut bytes, &roots.not_roots, anon);
        bytes
    });
    Some(Region {
        start,
        end,
        bytes,
        heap,
        anon,
    })
}

/// Reads the bytes at `start` into `buf`, zeros to begin with: unreadable
/// pages (guard pages) and the ranges of `not_roots` are left as zeros (and
/// those ranges are not read at all), and so are, in an anonymous mapping
/// (`anon`), the pages never written (see [`Memory::populated`]).
fn read_into(mem: &Memory, start: u64, buf: &mut [u8], not_roots: &[(u64, u64)], anon: bool) {
    let parts = uncovered(start, start + buf.len() as u64, not_roots);
    let parts = parts.into_iter().flat_map(|(from, to)| match anon {
        true => mem.populated(from, to),
        false => vec![(from, to)],
    });
    for (from, to) in parts {
        let part = &mut buf[(from - start) as usize..(to - start) as usize];
        let mut off = 0usize;
        while off < part.len() {
            match mem.read_at(&mut part[off..], from + off as u64) {
                Ok(0) => break,
                Ok(n) => off += n,
                // On to the next page.
                Err(_) => off = ((((from + off as u64) | 4095) + 1) - from) as usize,
            }
        }
    }
}

/// The parts of `start..end` that no range `(address, length)` of
/// `not_roots` covers, in order.
fn uncovered(start: u64, end: u64, not_roots: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut cover: Vec<(u64, u64)> = not_roots
        .iter()
        .map(|&(a, n)| (a.max(start), a.saturating_add(n).min(end)))
        .filter(|(a, b)| a < b)
        .collect();
    cover.sort_unstable();
    let mut gaps = Vec::new();
    let mut at = start;
    for (a, b) in cover {
        if a > at {
            gaps.push((at, a));
        }
        at = at.max(b);
    }
    if at < end {
        gaps.push((at, end));
    }
    gaps
}

#[cfg(test)]
mod tests {
    /// Overlapping, touching and outlying ranges: what is left between them.
    #[test]
    fn uncovered_parts() {
        use super::uncovered;
        assert_eq!(uncovered(100, 200, &[]), [(100, 200)]);
        assert_eq!(uncovered(100, 200, &[(0, 100), (200, 50)]), [(100, 200)]);
        let not_roots = [(150, 10), (120, 20), (130, 15), (190, 100), (0, 105)];
        assert_eq!(
            uncovered(100, 200, &not_roots),
            [(105, 120), (145, 150), (160, 190)]
        );
        // Several ranges that cover a mapping only together.
        assert!(uncovered(100, 200, &[(100, 50), (150, 50)]).is_empty());
        assert!(uncovered(100, 200, &[(50, u64::MAX)]).is_empty());
    }

    use super::*;

    /// Of a fresh anonymous mapping, only the pages written are read: the
    /// runs `populated` gives are exactly them, clipped to the range asked
    /// for, and the bytes read are the mapping's (zeros elsewhere).
    #[test]
    fn only_written_pages_are_read() {
        const PAGES: usize = 64;
        // SAFETY: a new private anonymous mapping of our own, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGES * 4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the mapping is ours, PAGES pages long.
        let map = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, PAGES * 4096) };
        for (page, v) in [(0, 1u8), (1, 2), (5, 3), (63, 4)] {
            map[page * 4096 + 100] = v;
        }
        let at = p as u64;
        let mem = Memory::open(std::process::id(), Pages::Own).unwrap();
        let pages = |runs: Vec<(u64, u64)>| -> Vec<(u64, u64)> {
            runs.iter().map(|&(a, b)| (a - at, b - at)).collect()
        };
        let whole = mem.populated(at, at + (PAGES * 4096) as u64);
        assert_eq!(
            pages(whole),
            [(0, 2 * 4096), (5 * 4096, 6 * 4096), (63 * 4096, 64 * 4096)]
        );
        // A range that starts and ends inside written pages.
        let part = mem.populated(at + 4000, at + 5 * 4096 + 8);
        assert_eq!(pages(part), [(4000, 2 * 4096), (5 * 4096, 5 * 4096 + 8)]);
        let mut buf = vec![0u8; PAGES * 4096];
        read_into(&mem, at, &mut buf, &[], true);
        assert!(buf == *map);
        // SAFETY: unmaps the mapping made above; `map` is not used after.
        unsafe { libc::munmap(p, PAGES * 4096) };
    }

    /// How many of the pages of `[start, start + len)` process `pid` maps
    /// exclusively (bit 56 of `/proc/PID/pagemap`): a page still shared
    /// with its parent after a fork is not. Counted on the range alone, as
    /// the parent (the test harness, running other tests) unshares pages of
    /// its own elsewhere meanwhile.
    fn exclusive_pages(pid: libc::pid_t, start: u64, len: usize) -> usize {
        use std::os::unix::fs::FileExt;
        let map = std::fs::File::open(format!("/proc/{pid}/pagemap")).unwrap();
        let (first, last) = (start / 4096, (start + len as u64 - 1) / 4096);
        let mut entries = vec![0u8; ((last - first + 1) * 8) as usize];
        map.read_exact_at(&mut entries, first * 8).unwrap();
        entries
            .chunks_exact(8)
            .map(|e| u64::from_le_bytes(e.try_into().unwrap()))
            .filter(|e| e >> 63 == 1 && (e >> 56) & 1 == 1)
            .count()
    }

    /// A frozen copy's heap is read whole without unsharing its pages: after
    /// 8 MiB are read from a forked child (`Pages::Shared`), none of those
    /// 2048 pages is the child's alone; both ways read the same bytes.
    #[test]
    fn a_frozen_copys_pages_stay_shared() {
        const N: usize = 8 << 20;
        let heap: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
        // SAFETY: the child only waits in pause(2), which is
        // async-signal-safe, until it is killed.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            loop {
                // SAFETY: see above.
                unsafe { libc::pause() };
            }
        }
        let read = |pages| {
            let mem = Memory::open(child as u32, pages).unwrap();
            let mut buf = vec![0u8; N];
            read_into(&mem, heap.as_ptr() as u64, &mut buf, &[], true);
            buf == heap
        };
        let exclusive = || exclusive_pages(child, heap.as_ptr() as u64, N);
        let before = exclusive();
        let shared_same = read(Pages::Shared);
        let after = exclusive();
        let own_same = read(Pages::Own);
        // SAFETY: kill(2) and waitpid(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        assert!(shared_same && own_same);
        assert_eq!((before, after), (0, 0), "pages the child alone maps");
    }
}
