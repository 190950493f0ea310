//! Leak classification by reachability, as valgrind's memcheck does it: the
//! core algorithm over a memory image (the live blocks at exit, their
//! contents, and the root regions), independent of how the image is taken.
//!
//! ## Kinds (memcheck's)
//! - **still reachable**: a chain of *start* pointers leads to it from a root
//!   (or of interior pointers that one of memcheck's leak heuristics
//!   recognizes: *reachable via* that heuristic, see [`heuristics`]);
//! - **possibly lost**: reachable from a root, but only through a chain with
//!   at least one *interior* pointer (into the middle of a block);
//! - **indirectly lost**: not reachable from a root, but pointed to by a lost
//!   block;
//! - **definitely lost**: the rest: the "leader" of each group of lost blocks
//!   that point to one another (a lost list's head, one block of a lost cycle).
//!
//! ## Algorithm
//! 1. Every aligned 8-byte word of the roots (the writable data of the
//!    modules, thread stacks, TLS) that points into a live block marks it:
//!    reachable for a start pointer, possibly lost for an interior one,
//!    unless one of memcheck's leak heuristics ([`heuristics`]) recognizes
//!    the interior pointer: then reachable (*via* that heuristic, unless a
//!    start pointer reaches it too).
//! 2. Marked blocks are scanned in turn; what a reachable block points to is
//!    reachable (start, or interior recognized by a heuristic) or possible
//!    (interior); what a possible block points to is possible. A block
//!    upgraded from possible to reachable is scanned again (worklist), so
//!    the result does not depend on the order.
//! 3. The unmarked blocks are grouped, in address order: each one not yet
//!    claimed leads a group (definitely lost) and every unmarked block reached
//!    from it, by start or interior pointers, is indirectly lost; a former
//!    leader reached that way becomes indirectly lost too (its group merges).
//!
//! ## The image
//! At exit the process starts the scanner (`memtrace __scan`, see the
//! preload's `scan` module and `cmd::scan`), which stops the process's other
//! threads and reads the process itself ([`classify_process`]), with the live
//! blocks from the log ([`scan_input`]); the kinds go back to the process,
//! which writes them into its log ([`records`]). A snapshot of a running
//! process is classified the same way from a frozen copy (`crate::live::snapshot`).
//!
//! ## Limits
//! - Pointers hidden from a word-by-word scan (tagged, XOR-ed, compressed,
//!   or stored unaligned) are not seen: their blocks look lost.
//! - A frozen copy (snapshots only) has one thread: a pointer held only in
//!   another thread's registers is missed there.
//! - Stale pointers in the roots (uninitialized slots of live frames, a
//!   register not yet overwritten, freed-but-unscrubbed memory outside the
//!   allocator's arenas) can make a lost block look reachable; memcheck
//!   follows only defined words, and memtrace cannot tell them apart.

pub mod heuristics;

pub use crate::analysis::catalog::{ExitScan, ScanDone};
pub use crate::kinds::Kind;
pub use heuristics::{AddressSpace, Heuristic, Heuristics, Mapping};

/// A live heap block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub addr: u64,
    pub size: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mark {
    Unreached,
    Possible,
    Reachable,
}

/// The block holding `p`, and whether `p` is its start: blocks are sorted by
/// address and do not overlap. A pointer to a zero-sized block's address
/// counts as a start pointer.
fn find(blocks: &[Block], p: u64) -> Option<(usize, bool)> {
    // Most words are not heap addresses: rule them out before the search.
    let (first, last) = (blocks.first()?, blocks.last()?);
    if p < first.addr || p > last.addr.saturating_add(last.size) {
        return None;
    }
    let i = blocks.partition_point(|b| b.addr <= p).checked_sub(1)?;
    let b = blocks[i];
    if p == b.addr {
        Some((i, true))
    } else if p < b.addr.saturating_add(b.size) {
        Some((i, false))
    } else {
        None
    }
}

/// Where glibc's malloc puts the chunk after `b`'s: its chunk header is 16
/// bytes before the block, and the chunk spans the size plus 8, rounded up to
/// 16 (32 at least). For a size whose remainder modulo 16 is 1 to 8, that
/// address falls inside the block's last 8 bytes (the next chunk's header
/// overlaps them), and glibc's own state in libc's data (the arena's `top`
/// and `last_remainder`) points there: not a pointer to the block, though a
/// word-by-word scan would take it for an interior one and call the last
/// block allocated before the top chunk possibly lost. memcheck never sees
/// it (its allocator replaces glibc's), so roots' pointers at exactly that
/// address are ignored (unless a leak heuristic recognizes them).
fn glibc_next_chunk(b: Block) -> u64 {
    let chunk = (b.size.saturating_add(8 + 15) & !15).max(32);
    b.addr.wrapping_sub(16).wrapping_add(chunk)
}

/// The 8-byte aligned words of `bytes`, which starts at address `at`.
fn words(at: u64, bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let skip = ((8 - (at % 8)) % 8) as usize;
    bytes
        .get(skip..)
        .unwrap_or(&[])
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
}

/// The outcome of a scan: each block's kind and, for a still reachable one
/// that only a heuristic's interior pointers reach, that heuristic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub kinds: Vec<Kind>,
    pub heuristics: Vec<Option<Heuristic>>,
}

/// Classifies `blocks` (sorted by address, not overlapping). `roots` are the
/// root regions as (start address, bytes); `contents(i)` gives block `i`'s
/// bytes (`None`: unreadable, scanned as empty). `heur` are the leak
/// heuristics to apply to interior pointers; `space` serves the
/// multipleinheritance heuristic's vtable test.
pub fn classify<'a>(
    blocks: &[Block],
    roots: impl IntoIterator<Item = (u64, &'a [u8])>,
    contents: &dyn Fn(usize) -> Option<&'a [u8]>,
    heur: Heuristics,
    space: &AddressSpace<'_>,
) -> Scan {
    let n = blocks.len();
    let mut mark = vec![Mark::Unreached; n];
    // Reached by a start pointer from a root or a reachable block.
    let mut direct = vec![false; n];
    // The first heuristic (in memcheck's order) whose interior pointer from a
    // root or a reachable block reaches it.
    let mut via: Vec<Option<Heuristic>> = vec![None; n];
    let mut work: Vec<usize> = Vec::new();
    // A pointer `w` into block `j` (`start`: to its start) from a root or a
    // reachable block (`definite`) or from a possibly lost one.
    let mut reach = |mark: &mut Vec<Mark>,
                     work: &mut Vec<usize>,
                     j: usize,
                     w: u64,
                     start: bool,
                     definite: bool| {
        let to = if !definite {
            Mark::Possible
        } else if start {
            direct[j] = true;
            Mark::Reachable
        } else if direct[j] {
            // Reachable already, and not through a heuristic.
            Mark::Reachable
        } else if let Some(h) = heuristics::recognize(heur, w, blocks[j], contents(j), space) {
            via[j] = Some(via[j].map_or(h, |v| v.min(h)));
            Mark::Reachable
        } else {
            Mark::Possible
        };
        if to > mark[j] {
            mark[j] = to;
            work.push(j);
        }
    };
    for (at, bytes) in roots {
        for w in words(at, bytes) {
            if let Some((i, start)) = find(blocks, w) {
                // glibc's own pointer, unless a heuristic recognizes it (an
                // object's second base there: memcheck would see the
                // program's pointer to it).
                if !start
                    && w == glibc_next_chunk(blocks[i])
                    && heuristics::recognize(heur, w, blocks[i], contents(i), space).is_none()
                {
                    continue;
                }
                reach(&mut mark, &mut work, i, w, start, true);
            }
        }
    }
    while let Some(i) = work.pop() {
        let definite = mark[i] == Mark::Reachable;
        let Some(bytes) = contents(i) else { continue };
        for w in words(blocks[i].addr, bytes) {
            if let Some((j, start)) = find(blocks, w) {
                reach(&mut mark, &mut work, j, w, start, definite);
            }
        }
    }
    let heuristics = (0..n)
        .map(|i| {
            (mark[i] == Mark::Reachable && !direct[i])
                .then_some(via[i])
                .flatten()
        })
        .collect();
    let mut kind: Vec<Option<Kind>> = mark
        .iter()
        .map(|m| match m {
            Mark::Reachable => Some(Kind::StillReachable),
            Mark::Possible => Some(Kind::PossiblyLost),
            Mark::Unreached => None,
        })
        .collect();
    for leader in 0..n {
        if kind[leader].is_some() {
            continue;
        }
        kind[leader] = Some(Kind::DefinitelyLost);
        let mut stack = vec![leader];
        while let Some(i) = stack.pop() {
            let Some(bytes) = contents(i) else { continue };
            for w in words(blocks[i].addr, bytes) {
                let Some((j, _)) = find(blocks, w) else {
                    continue;
                };
                if j == leader {
                    continue;
                }
                match kind[j] {
                    None | Some(Kind::DefinitelyLost) => {
                        kind[j] = Some(Kind::IndirectlyLost);
                        stack.push(j);
                    }
                    _ => {}
                }
            }
        }
    }
    Scan {
        kinds: kind
            .into_iter()
            .map(|k| k.unwrap_or(Kind::DefinitelyLost))
            .collect(),
        heuristics,
    }
}

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

/// One writable private mapping, read whole.
struct Region {
    start: u64,
    bytes: Vec<u8>,
    /// The allocator's (an arena holding live blocks, glibc's `[heap]` or a
    /// thread heap): read for the blocks' contents, never a root.
    heap: bool,
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
pub fn classify_process(
    pid: u32,
    roots: &Roots,
    blocks: &[Block],
    heur: Heuristics,
) -> std::io::Result<Scan> {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut regions: Vec<Region> = Vec::new();
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3).unwrap_or("");
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let p = perms.as_bytes();
        if p.len() >= 3 {
            mappings.push(Mapping {
                start,
                end,
                read: p[0] == b'r',
                exec: p[2] == b'x',
                file: !path.is_empty() && !path.starts_with('['),
            });
        }
        if p.len() < 4 || p[0] != b'r' || p[1] != b'w' || p[3] != b'p' {
            continue;
        }
        if path.starts_with("[vvar") || path.starts_with("[vsyscall") {
            continue;
        }
        let i = blocks.partition_point(|b| b.addr < start);
        let holds_blocks = blocks.get(i).is_some_and(|b| b.addr < end);
        // A thread heap of glibc's: anonymous, 64 MiB-aligned, holding no
        // thread's stack, and opening with its `heap_info`, whose first word
        // points to its arena (a thread stack's lowest word is 0: unused).
        let thread_heap = || {
            let mut w = [0u8; 8];
            path.is_empty()
                && start % GLIBC_HEAP_ALIGN == 0
                && !roots
                    .stack_starts
                    .iter()
                    .any(|sp| (start..end).contains(sp))
                && mem.read_exact_at(&mut w, start).is_ok()
                && u64::from_le_bytes(w) != 0
        };
        let glibc_heap = path == "[heap]" || thread_heap();
        let heap = holds_blocks || glibc_heap;
        // Neither a root nor holding blocks: nothing to read.
        if (heap && !holds_blocks) || (!heap && end - start > MAX_ROOT_MAPPING) {
            continue;
        }
        // memtrace's own mappings (its tables, thread states) whole: not read.
        if roots
            .not_roots
            .iter()
            .any(|&(a, n)| a <= start && end <= a.saturating_add(n))
        {
            continue;
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
        let mut bytes = vec![0u8; (end - start) as usize];
        // Unreadable pages (guard pages) read as zeros.
        let mut off = 0usize;
        while off < bytes.len() {
            match mem.read_at(&mut bytes[off..], start + off as u64) {
                Ok(0) => break,
                Ok(n) => off += n,
                Err(_) => off = (off + 4096) & !4095,
            }
        }
        for &(a, n) in &roots.not_roots {
            let (from, to) = (a.max(start), a.saturating_add(n).min(end));
            if from < to {
                bytes[(from - start) as usize..(to - start) as usize].fill(0);
            }
        }
        regions.push(Region { start, bytes, heap });
    }
    let region_of = |addr: u64| -> Option<&Region> {
        let r = regions
            .partition_point(|r| r.start <= addr)
            .checked_sub(1)?;
        let r = &regions[r];
        (addr < r.start + r.bytes.len() as u64).then_some(r)
    };
    let contents = |i: usize| -> Option<&[u8]> {
        let b = blocks[i];
        let r = region_of(b.addr)?;
        let from = (b.addr - r.start) as usize;
        r.bytes.get(from..from.checked_add(b.size as usize)?)
    };
    // Threads running on a stack inside a live block.
    let mut on_block: Vec<(u64, &[u8])> = Vec::new();
    for &sp in &roots.stack_starts {
        if let Some((i, _)) = find(blocks, sp)
            && let Some(bytes) = contents(i)
        {
            let from = ((sp & !7) - blocks[i].addr) as usize;
            on_block.push((sp & !7, &bytes[from.min(bytes.len())..]));
        }
    }
    let registers: Vec<u8> = roots
        .registers
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    // The vtable test reads words outside the regions read whole (vtables
    // live in read-only mappings).
    let space = AddressSpace::new(
        mappings,
        Box::new(|a: u64| {
            let mut w = [0u8; 8];
            mem.read_exact_at(&mut w, a).ok()?;
            Some(u64::from_le_bytes(w))
        }),
    );
    Ok(classify(
        blocks,
        regions
            .iter()
            .filter(|r| !r.heap)
            .map(|r| (r.start, r.bytes.as_slice()))
            .chain(on_block)
            .chain([(0u64, registers.as_slice())]),
        &contents,
        heur,
        &space,
    ))
}

/// The REACH records of a scan of `blocks`: (code, first address, then
/// deltas), in records of at most [`REACH_VALUES`] values (the preload relays
/// them into its log through a buffer of a few KiB); one set per
/// kind, then one per heuristic for the still reachable blocks it saved
/// (which are in the still reachable records as well).
pub fn records(blocks: &[Block], scan: &Scan) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    let mut push = |code: u64, addrs: Vec<u64>| {
        for part in addrs.chunks(REACH_VALUES - 1) {
            let mut v = vec![code];
            let mut prev = 0u64;
            for &a in part {
                v.push(a.wrapping_sub(prev));
                prev = a;
            }
            out.push(v);
        }
    };
    for k in Kind::ALL {
        let addrs: Vec<u64> = blocks
            .iter()
            .zip(&scan.kinds)
            .filter(|(_, kk)| **kk == k)
            .map(|(b, _)| b.addr)
            .collect();
        push(k.code(), addrs);
    }
    for h in Heuristic::ALL {
        let addrs: Vec<u64> = blocks
            .iter()
            .zip(&scan.heuristics)
            .filter(|(_, hh)| **hh == Some(h))
            .map(|(b, _)| b.addr)
            .collect();
        push(h.code(), addrs);
    }
    out
}

/// The largest parent's log whose blocks a fork child's exit scan
/// classifies (see [`scan_input`]).
pub const SCAN_INHERIT_MAX: u64 = 32 << 20;

/// The most values in one REACH record.
pub const REACH_VALUES: usize = 700;

/// What a log says the scan at exit needs (see [`ScanInput`]): `None` when
/// the process recorded no `KIND_EXIT_SCAN`. The live
/// blocks of a fork child include those it inherited from its parent and
/// never freed ([`crate::analysis::inherit::live_at_start`], its parent's log looked
/// for in `peers`, then in the child log's directory); when that log is not
/// found, only the child's own blocks are classified (its report says why).
pub fn scan_input(
    path: &std::path::Path,
    peers: &[std::path::PathBuf],
) -> crate::Result<Option<ScanInput>> {
    let log = crate::log::Log::open(path)?;
    let header = log.header()?;
    let index = log.index(&header)?;
    // The scan runs at the exit, before the log says how the process ended.
    // It replays the parent's log up to the fork for the inherited blocks,
    // which the child's exit waits for: only up to [`SCAN_INHERIT_MAX`] bytes
    // of parent's log (beyond, the inherited blocks are not classified, and
    // the report counts them definitely lost: the gate errs towards failing).
    let small = crate::analysis::inherit::parent_log_bytes(path, &header)
        .is_none_or(|n| n <= SCAN_INHERIT_MAX);
    let inherited = match small {
        true => crate::analysis::inherit::of_header(path, &header, peers).unwrap_or(None),
        false => None,
    };
    let mut cat = crate::analysis::catalog::Catalog::default();
    let out = crate::analysis::replay::replay_seeded(
        &log,
        &index,
        crate::analysis::replay::Config::of(&header),
        inherited.as_ref().map(|i| &i.seed),
        |ev| cat.observe(ev, &log, &index),
    )?;
    let Some(exit) = cat.exit_scan else {
        return Ok(None);
    };
    let blocks = out
        .live
        .iter()
        .map(|(a, b)| Block {
            addr: *a,
            size: b.size,
        })
        .collect();
    Ok(Some(ScanInput {
        pid: header.pid,
        exit,
        blocks,
    }))
}

/// The process, what its exit recorded for the scan, and the blocks live at
/// the end (sorted by address).
pub struct ScanInput {
    pub pid: u32,
    pub exit: ExitScan,
    pub blocks: Vec<Block>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// valgrind's kind lists parse to sets in report order; phrases read well.
    #[test]
    fn kind_lists_and_phrases() {
        use Kind::*;
        assert_eq!(Kind::parse_list("all"), Ok(Kind::ALL.to_vec()));
        assert_eq!(Kind::parse_list("none"), Ok(vec![]));
        assert_eq!(
            Kind::parse_list("reachable, definite,definite"),
            Ok(vec![DefinitelyLost, StillReachable])
        );
        assert!(Kind::parse_list("lost").unwrap_err().contains("\"lost\""));
        assert!(Kind::parse_list("").is_err());
        assert_eq!(
            Kind::phrase(&[DefinitelyLost, IndirectlyLost], "and"),
            "definitely and indirectly lost"
        );
        assert_eq!(
            Kind::phrase(&Kind::ALL, "and"),
            "definitely, indirectly, possibly lost and still reachable"
        );
        assert_eq!(
            Kind::phrase(&[DefinitelyLost, StillReachable], "or"),
            "definitely lost or still reachable"
        );
        assert_eq!(Kind::phrase(&[StillReachable], "or"), "still reachable");
        assert_eq!(
            Kind::phrase(&[DefinitelyLost, IndirectlyLost, PossiblyLost], "or"),
            "definitely, indirectly or possibly lost"
        );
        assert_eq!(Kind::phrase(&[PossiblyLost], "or"), "possibly lost");
        assert_eq!(Kind::phrase(&[], "and"), "no");
        assert!(Kind::ALL.iter().enumerate().all(|(i, k)| k.index() == i));
    }

    /// A heap of blocks with contents, and root regions, built by address.
    struct Image {
        blocks: Vec<Block>,
        data: Vec<Vec<u8>>,
        roots: Vec<(u64, Vec<u8>)>,
        /// The mappings and vtable words the multipleinheritance heuristic
        /// looks at.
        maps: Vec<Mapping>,
        vtables: std::collections::HashMap<u64, u64>,
    }

    const TEXT: u64 = 0x40_0000;
    const VTABLES: u64 = 0x60_0000;

    impl Image {
        fn new() -> Image {
            Image {
                blocks: vec![],
                data: vec![],
                roots: vec![],
                maps: vec![],
                vtables: Default::default(),
            }
        }

        /// A block of `size` bytes at `addr`.
        fn block(&mut self, addr: u64, size: u64) -> &mut Self {
            self.blocks.push(Block { addr, size });
            self.data.push(vec![0; size as usize]);
            self
        }

        /// Stores pointer `p` at byte `off` of the block at `addr`.
        fn ptr(&mut self, addr: u64, off: usize, p: u64) -> &mut Self {
            let i = self.blocks.iter().position(|b| b.addr == addr).unwrap();
            self.data[i][off..off + 8].copy_from_slice(&p.to_le_bytes());
            self
        }

        /// A root region at `at` holding the pointers `ps`.
        fn root(&mut self, at: u64, ps: &[u64]) -> &mut Self {
            let bytes = ps.iter().flat_map(|p| p.to_le_bytes()).collect();
            self.roots.push((at, bytes));
            self
        }

        fn classify(&self) -> Vec<Kind> {
            self.scan(Heuristics::ALL).kinds
        }

        fn scan(&self, heur: Heuristics) -> Scan {
            let data = &self.data;
            let vtables = &self.vtables;
            let space = AddressSpace::new(
                self.maps.clone(),
                Box::new(move |a| Some(vtables.get(&a).copied().unwrap_or(0))),
            );
            classify(
                &self.blocks,
                self.roots.iter().map(|(a, b)| (*a, b.as_slice())),
                &|i| data.get(i).map(Vec::as_slice),
                heur,
                &space,
            )
        }

        /// Stores word `w` at byte `off` of the block at `addr`.
        fn word(&mut self, addr: u64, off: usize, w: u64) -> &mut Self {
            self.ptr(addr, off, w)
        }

        /// A read-only file mapping of vtables at `VTABLES` and a text
        /// mapping at `TEXT`; `vtable(a)` makes `a` (in the former) a vtable
        /// of two functions.
        fn with_mappings(&mut self) -> &mut Self {
            self.maps = vec![
                Mapping {
                    start: TEXT,
                    end: TEXT + 0x1000,
                    read: true,
                    exec: true,
                    file: true,
                },
                Mapping {
                    start: VTABLES,
                    end: VTABLES + 0x1000,
                    read: true,
                    exec: false,
                    file: true,
                },
            ];
            self
        }

        fn vtable(&mut self, a: u64) -> &mut Self {
            self.vtables.insert(a, TEXT + 0x10);
            self.vtables.insert(a + 8, TEXT + 0x20);
            self
        }
    }

    use Kind::*;

    /// memcheck's categories: a lost linked list is 1 definitely + N indirectly
    /// lost; a block kept by a global is still reachable; a block kept only
    /// through a pointer into its middle is possibly lost; what a reachable
    /// block points to is reachable.
    #[test]
    fn memcheck_categories() {
        let mut m = Image::new();
        // A lost list 0x1000 -> 0x2000 -> 0x3000.
        m.block(0x1000, 16).ptr(0x1000, 8, 0x2000);
        m.block(0x2000, 16).ptr(0x2000, 8, 0x3000);
        m.block(0x3000, 16);
        // Kept by a global, and what it points to.
        m.block(0x4000, 32).ptr(0x4000, 0, 0x5000);
        m.block(0x5000, 8);
        // Kept only by an interior pointer, and what it points to.
        m.block(0x6000, 64).ptr(0x6000, 0, 0x7000);
        m.block(0x7000, 8);
        m.root(0x10_0000, &[0x4000, 0x6000 + 24, 0x12345]);
        assert_eq!(
            m.classify(),
            [
                DefinitelyLost,
                IndirectlyLost,
                IndirectlyLost,
                StillReachable,
                StillReachable,
                PossiblyLost,
                PossiblyLost
            ]
        );
    }

    /// A lost cycle has one leader; a later leader reached from an earlier
    /// group merges into it; a start pointer found later upgrades a possible
    /// block (and what it points to) to reachable.
    #[test]
    fn cycles_merges_and_upgrades() {
        let mut m = Image::new();
        m.block(0x1000, 8).ptr(0x1000, 0, 0x2000);
        m.block(0x2000, 8).ptr(0x2000, 0, 0x1000);
        // 0x3000 points into 0x4000's middle; 0x4000 comes first as a leader
        // only if scanned first: address order makes 0x3000 the leader.
        m.block(0x3000, 8).ptr(0x3000, 0, 0x4004);
        m.block(0x4000, 16);
        // Reached by an interior pointer from the root, then by a start
        // pointer from a reachable block.
        m.block(0x5000, 16).ptr(0x5000, 0, 0x6000);
        m.block(0x6000, 8);
        m.block(0x7000, 8).ptr(0x7000, 0, 0x5000);
        m.root(0x20_0000, &[0x5008, 0x7000]);
        assert_eq!(
            m.classify(),
            [
                DefinitelyLost,
                IndirectlyLost,
                DefinitelyLost,
                IndirectlyLost,
                StillReachable,
                StillReachable,
                StillReachable
            ]
        );
    }

    /// A root pointing where glibc puts the next chunk's header (inside the last 8
    /// bytes of a 40-byte block: `top` after the last allocation) is not an interior
    /// pointer; one byte further it is.
    #[test]
    fn glibc_top_chunk_is_not_a_pointer() {
        let mut m = Image::new();
        m.block(0x1010, 40);
        m.block(0x2010, 40);
        m.root(0x10_0000, &[0x1010 + 32, 0x2010 + 33]);
        assert_eq!(m.classify(), [DefinitelyLost, PossiblyLost]);
        // Unless a heuristic recognizes it: a 24-byte object whose second base
        // (at byte 16) is where glibc puts the next chunk.
        let mut m = Image::new();
        m.with_mappings()
            .vtable(VTABLES + 0x10)
            .vtable(VTABLES + 0x40);
        m.block(0x1010, 24)
            .word(0x1010, 0, VTABLES + 0x10)
            .word(0x1010, 16, VTABLES + 0x40);
        m.root(0x10_0000, &[0x1010 + 16]);
        let s = m.scan(Heuristics::ALL);
        assert_eq!(s.kinds, [StillReachable]);
        assert_eq!(s.heuristics, [Some(Heuristic::MultipleInheritance)]);
        assert_eq!(m.scan(Heuristics::NONE).kinds, [DefinitelyLost]);
    }

    /// Each heuristic saves a block that a root reaches only through the
    /// interior pointer it recognizes; with the heuristics off, or another
    /// set, the block is possibly lost.
    #[test]
    fn heuristics_save_blocks_from_roots() {
        use Heuristic::*;
        let mut m = Image::new();
        m.with_mappings()
            .vtable(VTABLES + 0x10)
            .vtable(VTABLES + 0x40);
        // An old std::string: length 3, capacity 7, refcount; 24 + 7 + 1.
        m.block(0x1000, 32).word(0x1000, 0, 3).word(0x1000, 8, 7);
        // length64: 40 bytes after the length.
        m.block(0x2000, 48).word(0x2000, 0, 40);
        // new T[3] with sizeof(T) = 16.
        m.block(0x3000, 56).word(0x3000, 0, 3);
        // An object: vtable, field, second base's vtable, field.
        m.block(0x4000, 32)
            .word(0x4000, 0, VTABLES + 0x10)
            .word(0x4000, 16, VTABLES + 0x40);
        // An interior pointer that no heuristic recognizes.
        m.block(0x5000, 56).word(0x5000, 0, 3);
        m.root(0x10_0000, &[0x1000 + 24, 0x2008, 0x3008, 0x4010, 0x5010]);
        let all = m.scan(Heuristics::ALL);
        assert_eq!(
            all.kinds,
            [StillReachable; 4]
                .iter()
                .copied()
                .chain([PossiblyLost])
                .collect::<Vec<_>>()
        );
        assert_eq!(
            all.heuristics,
            [
                Some(StdString),
                Some(Length64),
                Some(NewArray),
                Some(MultipleInheritance),
                None
            ]
        );
        let none = m.scan(Heuristics::NONE);
        assert_eq!(none.kinds, [PossiblyLost; 5]);
        assert_eq!(none.heuristics, [None; 5]);
        // Only newarray: the length64 block fits it too.
        let na = m.scan(Heuristics::parse("newarray").unwrap());
        assert_eq!(
            na.kinds,
            [
                PossiblyLost,
                StillReachable,
                StillReachable,
                PossiblyLost,
                PossiblyLost
            ]
        );
        assert_eq!(
            na.heuristics,
            [None, Some(NewArray), Some(NewArray), None, None]
        );
    }

    /// A start pointer from a root or a reachable block makes a block plainly
    /// still reachable, whatever else points into it; among several
    /// heuristics' pointers, the first heuristic in memcheck's order names it.
    #[test]
    fn start_pointers_win_and_first_heuristic_names() {
        use Heuristic::*;
        let mut m = Image::new();
        // new T[2] (sizeof 8) via +8 from the root, and its start from a
        // reachable block.
        m.block(0x1000, 24).word(0x1000, 0, 2);
        m.block(0x2000, 8).ptr(0x2000, 0, 0x1000);
        // A block that fits newarray at +8 (2 divides 32) and stdstring at
        // +24 (capacity 15, length 2): pointers to both.
        m.block(0x3000, 40).word(0x3000, 0, 2).word(0x3000, 8, 15);
        m.root(0x10_0000, &[0x1008, 0x2000, 0x3008, 0x3000 + 24]);
        let s = m.scan(Heuristics::ALL);
        assert_eq!(s.kinds, [StillReachable; 3]);
        assert_eq!(s.heuristics, [None, None, Some(StdString)]);
    }

    /// A heuristic only rescues what a root or a reachable block points to:
    /// what it saved is reachable and so is what it points to; a heuristic
    /// pointer from a possibly lost block leaves its target possibly lost;
    /// among lost blocks it is a pointer like any (indirectly lost).
    #[test]
    fn heuristics_and_possible_and_lost_blocks() {
        use Heuristic::*;
        let mut m = Image::new();
        // Root -> A (start) -> B at +8 (newarray) -> C (start).
        m.block(0x1000, 16).ptr(0x1000, 0, 0x2008);
        m.block(0x2000, 24)
            .word(0x2000, 0, 2)
            .ptr(0x2000, 8, 0x3000);
        m.block(0x3000, 8);
        // Root -> D at +16 (interior, no heuristic) -> E at +8 (newarray
        // shape): E stays possibly lost.
        m.block(0x4000, 32).ptr(0x4000, 0, 0x5008);
        m.block(0x5000, 24).word(0x5000, 0, 2);
        // Lost: F -> G at +8 (newarray shape).
        m.block(0x6000, 8).ptr(0x6000, 0, 0x7008);
        m.block(0x7000, 24).word(0x7000, 0, 2);
        m.root(0x10_0000, &[0x1000, 0x4010]);
        let s = m.scan(Heuristics::ALL);
        assert_eq!(
            s.kinds,
            [
                StillReachable,
                StillReachable,
                StillReachable,
                PossiblyLost,
                PossiblyLost,
                DefinitelyLost,
                IndirectlyLost
            ]
        );
        assert_eq!(
            s.heuristics,
            [None, Some(NewArray), None, None, None, None, None]
        );
        // Without heuristics B is possibly lost, and C with it.
        let n = m.scan(Heuristics::NONE);
        assert_eq!(
            n.kinds,
            [
                StillReachable,
                PossiblyLost,
                PossiblyLost,
                PossiblyLost,
                PossiblyLost,
                DefinitelyLost,
                IndirectlyLost
            ]
        );
    }

    /// The multipleinheritance heuristic needs both words to be vtables.
    #[test]
    fn multiple_inheritance_needs_two_vtables() {
        let mut m = Image::new();
        m.with_mappings()
            .vtable(VTABLES + 0x10)
            .vtable(VTABLES + 0x40);
        // First word not a vtable (a vtable-shaped address in no mapping).
        m.block(0x1000, 32)
            .word(0x1000, 0, 0x90_0000)
            .word(0x1000, 16, VTABLES + 0x40);
        // Second word a data pointer.
        m.block(0x2000, 32)
            .word(0x2000, 0, VTABLES + 0x10)
            .word(0x2000, 16, VTABLES + 0x800);
        // Both vtables, but the pointer is not 8-byte aligned.
        m.block(0x3000, 32)
            .word(0x3000, 0, VTABLES + 0x10)
            .word(0x3000, 16, VTABLES + 0x40);
        m.root(0x10_0000, &[0x1010, 0x2010, 0x3014]);
        let s = m.scan(Heuristics::ALL);
        assert_eq!(s.kinds, [PossiblyLost; 3]);
    }

    /// A later block pointing back to an earlier leader takes it into its group.
    #[test]
    fn later_group_absorbs_earlier_leader() {
        let mut m = Image::new();
        m.block(0x1000, 8);
        m.block(0x2000, 8).ptr(0x2000, 0, 0x1000);
        assert_eq!(m.classify(), [IndirectlyLost, DefinitelyLost]);
    }

    /// Unaligned roots are scanned from their first aligned word; pointers past
    /// a block's end and unreadable blocks are nothing.
    #[test]
    fn alignment_and_bounds() {
        let mut m = Image::new();
        m.block(0x1000, 16);
        m.block(0x2000, 16);
        let mut root = vec![0xaa; 4];
        root.extend_from_slice(&0x1000u64.to_le_bytes());
        root.extend_from_slice(&0x2010u64.to_le_bytes());
        m.roots.push((0x3004, root));
        assert_eq!(m.classify(), [StillReachable, DefinitelyLost]);
        assert_eq!(find(&m.blocks, 0x0fff), None);
        assert_eq!(find(&m.blocks, 0x100f), Some((0, false)));
        let none = classify(
            &m.blocks,
            [],
            &|_| None,
            Heuristics::ALL,
            &AddressSpace::empty(),
        );
        assert_eq!(none.kinds, [DefinitelyLost, DefinitelyLost]);
        assert_eq!(none.heuristics, [None, None]);
    }
}
