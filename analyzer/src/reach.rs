//! Leak classification by reachability, as valgrind's memcheck does it: the
//! core algorithm over a memory image (the live blocks at exit, their
//! contents, and the root regions), independent of how the image is taken.
//!
//! ## Kinds (memcheck's)
//! - **still reachable**: a chain of *start* pointers leads to it from a root;
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
//!    reachable for a start pointer, possibly lost for an interior one.
//! 2. Marked blocks are scanned in turn; what a reachable block points to is
//!    reachable (start) or possible (interior); what a possible block points
//!    to is possible. A block upgraded from possible to reachable is scanned
//!    again (worklist), so the result does not depend on the order.
//! 3. The unmarked blocks are grouped, in address order: each one not yet
//!    claimed leads a group (definitely lost) and every unmarked block reached
//!    from it, by start or interior pointers, is indirectly lost; a former
//!    leader reached that way becomes indirectly lost too (its group merges).
//!
//! Status: the algorithm and its tests; taking the image of a real process
//! (a frozen forked copy read from outside) is issue 7's next step.

/// A live heap block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub addr: u64,
    pub size: u64,
}

/// memcheck's leak kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    DefinitelyLost,
    IndirectlyLost,
    PossiblyLost,
    StillReachable,
}

impl Kind {
    /// The name in the JSON report and in valgrind's `match-leak-kinds`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DefinitelyLost => "definite",
            Kind::IndirectlyLost => "indirect",
            Kind::PossiblyLost => "possible",
            Kind::StillReachable => "reachable",
        }
    }
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

/// The 8-byte aligned words of `bytes`, which starts at address `at`.
fn words(at: u64, bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let skip = ((8 - (at % 8)) % 8) as usize;
    bytes
        .get(skip..)
        .unwrap_or(&[])
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
}

/// Classifies `blocks` (sorted by address, not overlapping). `roots` are the
/// root regions as (start address, bytes); `contents(i)` gives block `i`'s
/// bytes (`None`: unreadable, scanned as empty).
pub fn classify<'a>(
    blocks: &[Block],
    roots: impl IntoIterator<Item = (u64, &'a [u8])>,
    contents: &dyn Fn(usize) -> Option<&'a [u8]>,
) -> Vec<Kind> {
    let n = blocks.len();
    let mut mark = vec![Mark::Unreached; n];
    let mut work: Vec<usize> = Vec::new();
    let raise = |mark: &mut Vec<Mark>, work: &mut Vec<usize>, i: usize, to: Mark| {
        if to > mark[i] {
            mark[i] = to;
            work.push(i);
        }
    };
    for (at, bytes) in roots {
        for w in words(at, bytes) {
            if let Some((i, start)) = find(blocks, w) {
                let to = if start {
                    Mark::Reachable
                } else {
                    Mark::Possible
                };
                raise(&mut mark, &mut work, i, to);
            }
        }
    }
    while let Some(i) = work.pop() {
        let from = mark[i];
        let Some(bytes) = contents(i) else { continue };
        for w in words(blocks[i].addr, bytes) {
            if let Some((j, start)) = find(blocks, w) {
                let to = if start && from == Mark::Reachable {
                    Mark::Reachable
                } else {
                    Mark::Possible
                };
                raise(&mut mark, &mut work, j, to);
            }
        }
    }
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
    kind.into_iter()
        .map(|k| k.unwrap_or(Kind::DefinitelyLost))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heap of blocks with contents, and root regions, built by address.
    struct Image {
        blocks: Vec<Block>,
        data: Vec<Vec<u8>>,
        roots: Vec<(u64, Vec<u8>)>,
    }

    impl Image {
        fn new() -> Image {
            Image {
                blocks: vec![],
                data: vec![],
                roots: vec![],
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
            let data = &self.data;
            classify(
                &self.blocks,
                self.roots.iter().map(|(a, b)| (*a, b.as_slice())),
                &|i| data.get(i).map(Vec::as_slice),
            )
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
        let none = classify(&m.blocks, [], &|_| None);
        assert_eq!(none, [DefinitelyLost, DefinitelyLost]);
    }
}
