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
//! threads and reads the process itself ([`classify_process`], module
//! `process`), with the live blocks from the log ([`scan_input`], found by
//! [`live_set`] without merging the log's streams, on every core); the kinds
//! go back to the process, which writes them into its log ([`records`]). A snapshot of a running
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
pub mod live_set;
mod process;

pub use crate::analysis::catalog::{ExitScan, ScanDone};
pub use crate::kinds::Kind;
pub use heuristics::{AddressSpace, Heuristic, Heuristics, Mapping};
pub use process::{Pages, RED_ZONE, Roots, classify_process, own_mappings};

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

/// The words of [`words`] that lie within the span of `blocks` (sorted):
/// the only ones that can point into a block, for [`find`] to look up. Most
/// of memory holds no heap address, so the words are tested 8 at a time (a
/// test the compiler vectorizes), and a group none of which is in the span
/// is passed over whole.
fn candidates<'a>(blocks: &[Block], at: u64, bytes: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
    const GROUP: usize = 8;
    // Nothing is in the span of no block (u64::MAX is no block's).
    let (lo, span) = match (blocks.first(), blocks.last()) {
        (Some(f), Some(l)) => (f.addr, l.addr.saturating_add(l.size) - f.addr),
        _ => (u64::MAX, 0),
    };
    let inside = move |w: u64| w.wrapping_sub(lo) <= span;
    let skip = ((8 - (at % 8)) % 8) as usize;
    let body = bytes.get(skip..).unwrap_or(&[]);
    let grouped = body.len() / (8 * GROUP) * (8 * GROUP);
    let (groups, rest) = body.split_at(grouped);
    groups
        .chunks_exact(8 * GROUP)
        .flat_map(move |g| {
            let w: [u64; GROUP] = core::array::from_fn(|k| {
                u64::from_le_bytes(g[8 * k..8 * k + 8].try_into().unwrap_or([0; 8]))
            });
            let any = w.iter().fold(false, |a, &x| a | inside(x));
            w.into_iter().take(if any { GROUP } else { 0 })
        })
        .chain(words(0, rest))
        .filter(move |&w| inside(w))
}

/// The outcome of a scan: each block's kind and, for a still reachable one
/// that only a heuristic's interior pointers reach, that heuristic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub kinds: Vec<Kind>,
    pub heuristics: Vec<Option<Heuristic>>,
}

/// Where a scan reads the live blocks' bytes: from memory it holds
/// ([`InMemory`]), or from the process on demand, block by block, into a
/// buffer each scanning thread reuses (`process`), so that a heap of large
/// blocks is never held whole. Shared by the threads of a scan.
pub trait Contents: Sync {
    /// Calls `f` with block `i`'s bytes, read into `buf` if they are not at
    /// hand; `false` (and `f` not called): unreadable, scanned as empty.
    fn with(&self, i: usize, buf: &mut Vec<u8>, f: &mut dyn FnMut(&[u8])) -> bool;
    /// The little-endian word at byte `off` of block `i` (`None`: unreadable,
    /// or not all inside the block), for the heuristics.
    fn word(&self, i: usize, off: u64) -> Option<u64>;
}

/// Blocks' bytes held in memory: `.0(i)` gives block `i`'s (`None`:
/// unreadable).
pub struct InMemory<'a>(pub &'a (dyn Fn(usize) -> Option<&'a [u8]> + Sync));

impl Contents for InMemory<'_> {
    fn with(&self, i: usize, _: &mut Vec<u8>, f: &mut dyn FnMut(&[u8])) -> bool {
        (self.0)(i).map(f).is_some()
    }

    fn word(&self, i: usize, off: u64) -> Option<u64> {
        heuristics::word_at((self.0)(i)?, off)
    }
}

/// Classifies `blocks` (sorted by address, not overlapping). `roots` are the
/// root regions as (start address, bytes); `contents` gives the blocks'
/// bytes. `heur` are the leak heuristics to apply to interior pointers;
/// `space` serves the multipleinheritance heuristic's vtable test.
pub fn classify<'a>(
    blocks: &[Block],
    roots: impl IntoIterator<Item = (u64, &'a [u8])>,
    contents: &dyn Contents,
    heur: Heuristics,
    space: &AddressSpace<'_>,
) -> Scan {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    classify_on(blocks, roots, contents, heur, space, threads)
}

/// [`classify`], scanning large rounds of marked blocks on `threads` threads.
fn classify_on<'a>(
    blocks: &[Block],
    roots: impl IntoIterator<Item = (u64, &'a [u8])>,
    contents: &dyn Contents,
    heur: Heuristics,
    space: &AddressSpace<'_>,
    threads: usize,
) -> Scan {
    let n = blocks.len();
    let Marks { mark, direct, via } = mark_reached(blocks, roots, contents, heur, space, threads);
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
    group_lost(blocks, contents, &mut kind);
    Scan {
        kinds: kind
            .into_iter()
            .map(|k| k.unwrap_or(Kind::DefinitelyLost))
            .collect(),
        heuristics,
    }
}

/// What steps 1 and 2 of the algorithm found, by block.
struct Marks {
    mark: Vec<Mark>,
    /// Reached by a start pointer from a root or a reachable block.
    direct: Vec<bool>,
    /// The first heuristic (in memcheck's order) whose interior pointer from a
    /// root or a reachable block reaches it.
    via: Vec<Option<Heuristic>>,
}

/// Steps 1 and 2 of the algorithm (module docs): the blocks marked from the
/// roots, then from the marked blocks, until nothing changes.
fn mark_reached<'a>(
    blocks: &[Block],
    roots: impl IntoIterator<Item = (u64, &'a [u8])>,
    contents: &dyn Contents,
    heur: Heuristics,
    space: &AddressSpace<'_>,
    threads: usize,
) -> Marks {
    let n = blocks.len();
    let mut mark = vec![Mark::Unreached; n];
    let mut direct = vec![false; n];
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
        } else if let Some(h) =
            heuristics::recognize(heur, w, blocks[j], &|off| contents.word(j, off), space)
        {
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
        for w in candidates(blocks, at, bytes) {
            if let Some((i, start)) = find(blocks, w) {
                // glibc's own pointer, unless a heuristic recognizes it (an
                // object's second base there: memcheck would see the
                // program's pointer to it).
                if !start
                    && w == glibc_next_chunk(blocks[i])
                    && heuristics::recognize(
                        heur,
                        w,
                        blocks[i],
                        &|off| contents.word(i, off),
                        space,
                    )
                    .is_none()
                {
                    continue;
                }
                reach(&mut mark, &mut work, i, w, start, true);
            }
        }
    }
    // The marked blocks, scanned in rounds of the last ones marked: a large
    // round on every core (each thread lists the pointers it finds, applied
    // here in order: the marks only rise, so the result is the same), a
    // small one on this thread.
    // A buffer per thread, kept from round to round: a new one would be
    // new pages for the kernel to clear at each round.
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); threads.max(1)];
    while !work.is_empty() {
        let mut bytes = 0u64;
        let mut from = work.len();
        while from > 0 && bytes < ROUND_BYTES {
            from -= 1;
            bytes = bytes.saturating_add(blocks[work[from]].size);
        }
        let round = work.split_off(from);
        if threads > 1 && bytes >= PARALLEL_FROM {
            for (i, j, w) in scan_round(blocks, &round, contents, &mut bufs) {
                let definite = mark[i] == Mark::Reachable;
                reach(&mut mark, &mut work, j, w, w == blocks[j].addr, definite);
            }
            continue;
        }
        for i in round {
            let definite = mark[i] == Mark::Reachable;
            contents.with(i, &mut bufs[0], &mut |bytes| {
                for w in candidates(blocks, blocks[i].addr, bytes) {
                    if let Some((j, start)) = find(blocks, w) {
                        reach(&mut mark, &mut work, j, w, start, definite);
                    }
                }
            });
        }
    }
    Marks { mark, direct, via }
}

/// The bytes of marked blocks scanned in one round (it bounds the pointers
/// a round lists: at most one per word).
const ROUND_BYTES: u64 = 8 << 20;

/// Rounds of fewer bytes are scanned on the caller's thread.
const PARALLEL_FROM: u64 = 1 << 20;

/// Scans the blocks of `round` on a thread per buffer of `bufs`, each given
/// an equal share of the bytes: (block, block it points into, pointer), in
/// the order of `round` and of the words.
fn scan_round(
    blocks: &[Block],
    round: &[usize],
    contents: &dyn Contents,
    bufs: &mut [Vec<u8>],
) -> Vec<(usize, usize, u64)> {
    let total: u64 = round.iter().map(|&i| blocks[i].size).sum();
    let share = total.div_ceil(bufs.len() as u64).max(1);
    let mut parts: Vec<&[usize]> = Vec::new();
    let (mut start, mut acc) = (0, 0u64);
    for (k, &i) in round.iter().enumerate() {
        acc += blocks[i].size;
        if parts.len() + 1 < bufs.len() && acc >= share * (parts.len() as u64 + 1) {
            parts.push(&round[start..=k]);
            start = k + 1;
        }
    }
    if start < round.len() {
        parts.push(&round[start..]);
    }
    std::thread::scope(|s| {
        let scans: Vec<_> = parts
            .into_iter()
            .zip(bufs.iter_mut())
            .map(|(part, buf)| {
                s.spawn(move || {
                    let mut hits = Vec::new();
                    for &i in part {
                        contents.with(i, buf, &mut |bytes| {
                            for w in candidates(blocks, blocks[i].addr, bytes) {
                                if let Some((j, _)) = find(blocks, w) {
                                    hits.push((i, j, w));
                                }
                            }
                        });
                    }
                    hits
                })
            })
            .collect();
        scans
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    })
}

/// Step 3 of the algorithm (module docs): each block not marked (`None`)
/// leads a group, definitely lost, of the unmarked blocks it reaches,
/// indirectly lost.
fn group_lost(blocks: &[Block], contents: &dyn Contents, kind: &mut [Option<Kind>]) {
    let mut buf = Vec::new();
    for leader in 0..kind.len() {
        if kind[leader].is_some() {
            continue;
        }
        kind[leader] = Some(Kind::DefinitelyLost);
        let mut stack = vec![leader];
        while let Some(i) = stack.pop() {
            contents.with(i, &mut buf, &mut |bytes| {
                for w in candidates(blocks, blocks[i].addr, bytes) {
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
            });
        }
    }
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
/// classifies (see [`scan_input`]). The pass for the blocks alone reads a
/// parent's log of 10 MiB in about 17 ms on this project's 2-core machines
/// (`scripts/bench-fork.py`: 21.5 ms per scan, 4.5 ms of it for a parent
/// with an empty log), so the child waits for it a quarter of a second at
/// most.
pub const SCAN_INHERIT_MAX: u64 = 128 << 20;

/// The most values in one REACH record.
pub const REACH_VALUES: usize = 700;

/// What a log says the scan at exit needs (see [`ScanInput`]): `None` when
/// the process recorded no `KIND_EXIT_SCAN`. The live
/// blocks of a fork child include those it inherited from its parent and
/// never freed ([`crate::analysis::inherit::blocks::at_start`], its parent's log looked
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
    // A fork child's inherited blocks come from its parent's log, replayed up
    // to the fork for the blocks alone (`inherit::blocks`), which the child's
    // exit waits for: only up to [`SCAN_INHERIT_MAX`] bytes of parent's log
    // (beyond, the inherited blocks are not classified, and the report counts
    // them definitely lost: the gate errs towards failing).
    let inherited =
        crate::analysis::inherit::blocks::at_start(path, &header, peers, SCAN_INHERIT_MAX)
            .unwrap_or_default();
    // The live set alone, without merging the streams, on every core: the
    // process waits for it.
    let end = live_set::end_state(
        &log,
        &index,
        crate::analysis::replay::Config::of(&header),
        &inherited,
    )?;
    let Some(exit) = end.exit else {
        return Ok(None);
    };
    let blocks = end.blocks;
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
mod tests;
