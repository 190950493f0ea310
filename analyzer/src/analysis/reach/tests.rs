//! The reachability tests: memcheck's kinds and heuristics on small built images.

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
        self.scan_on(heur, 1)
    }

    /// The scan with large rounds of marked blocks on `threads` threads.
    fn scan_on(&self, heur: Heuristics, threads: usize) -> Scan {
        let data = &self.data;
        let vtables = &self.vtables;
        let space = AddressSpace::new(
            self.maps.clone(),
            Box::new(move |a| Some(vtables.get(&a).copied().unwrap_or(0))),
        );
        classify_on(
            &self.blocks,
            self.roots.iter().map(|(a, b)| (*a, b.as_slice())),
            &InMemory(&|i| data.get(i).map(Vec::as_slice)),
            heur,
            &space,
            threads,
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
        &InMemory(&|_| None),
        Heuristics::ALL,
        &AddressSpace::empty(),
    );
    assert_eq!(none.kinds, [DefinitelyLost, DefinitelyLost]);
    assert_eq!(none.heuristics, [None, None]);
}

/// Rounds of marked blocks large enough to be scanned on several threads
/// classify as on one. 221 blocks of 16 KiB; the root points to blocks 0-99
/// (1.6 MiB marked at once: one parallel round), each of which points into
/// block 100 + k at byte 40 (possibly lost), and blocks 0-49 to the start of
/// block 100 + 2k as well (those 50 still reachable, the 50 odd ones
/// possibly lost); blocks 200-219 are a lost chain (1 definitely, 19
/// indirectly lost); block 220 is reached only at its byte 8 from block 5,
/// its first word its length after that word (still reachable via length64).
#[test]
fn parallel_rounds_classify_as_one_thread() {
    const SIZE: u64 = 16 << 10;
    let at = |k: u64| 0x10_0000 + k * 0x8000;
    let mut m = Image::new();
    for k in 0..221 {
        m.block(at(k), SIZE);
    }
    let all: Vec<u64> = (0..100).map(at).collect();
    m.root(0x1000, &all);
    for k in 0..100 {
        m.ptr(at(k), 9000, at(100 + k) + 40);
    }
    for k in 0..50 {
        m.ptr(at(k), 12000, at(100 + 2 * k));
    }
    for k in 200..219 {
        m.ptr(at(k), 4096, at(k + 1));
    }
    m.word(at(220), 0, SIZE - 8);
    m.ptr(at(5), 104, at(220) + 8);
    let one = m.scan_on(Heuristics::ALL, 1);
    let count = |s: &Scan, k: Kind| s.kinds.iter().filter(|&&x| x == k).count();
    assert_eq!(count(&one, StillReachable), 151);
    assert_eq!(count(&one, PossiblyLost), 50);
    assert_eq!(count(&one, DefinitelyLost), 1);
    assert_eq!(count(&one, IndirectlyLost), 19);
    assert_eq!(one.heuristics[220], Some(Heuristic::Length64));
    assert_eq!(one.heuristics.iter().flatten().count(), 1);
    for threads in [2, 3, 8] {
        assert_eq!(
            m.scan_on(Heuristics::ALL, threads),
            one,
            "{threads} threads"
        );
    }
}

/// `candidates` passes over only words that no block could hold: from every
/// start offset, on groups with one word in the span at each position, at
/// the span's edges, and with no block at all, it yields exactly the words
/// of `words` that `find` finds, in order.
#[test]
fn candidates_keep_every_word_find_finds() {
    let blocks = [
        Block {
            addr: 0x1000,
            size: 64,
        },
        Block {
            addr: 0x2000,
            size: 24,
        },
        Block {
            addr: 0x9000,
            size: 8,
        },
    ];
    let edges = [
        0x0fff, 0x1000, 0x1008, 0x1040, 0x2017, 0x9000, 0x9007, 0x9008, 0x9009,
    ];
    let mut ws: Vec<u64> = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..2000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ws.push(match i % 23 {
            0 => edges[(x % edges.len() as u64) as usize],
            5 => 0x1000 + x % 0x9000,
            _ => x,
        });
    }
    let bytes: Vec<u8> = ws.iter().flat_map(|w| w.to_le_bytes()).collect();
    for from in 0..17 {
        let at = 0x7000_0000 + from as u64;
        let part = &bytes[from..];
        let want: Vec<u64> = words(at, part)
            .filter(|&w| find(&blocks, w).is_some())
            .collect();
        let got: Vec<u64> = candidates(&blocks, at, part)
            .filter(|&w| find(&blocks, w).is_some())
            .collect();
        assert_eq!(got, want, "from byte {from}");
        assert!(!want.is_empty());
        let all_in: Vec<u64> = words(at, part)
            .filter(|w| (0x1000..=0x9008).contains(w))
            .collect();
        assert_eq!(candidates(&blocks, at, part).collect::<Vec<_>>(), all_in);
    }
    assert_eq!(candidates(&[], 0, &bytes).count(), 0);
}
