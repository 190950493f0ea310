//! memcheck's leak heuristics (`--leak-check-heuristics`): interior pointers
//! that C++ makes for good reasons, which count as pointers to the start of
//! their block.
//!
//! An interior pointer `p` into block `b` (`b.addr < p < b.addr + b.size`),
//! seen from a root or from a still reachable block, makes `b` still
//! reachable, as a start pointer would, when one of the enabled heuristics
//! recognizes it (they are tried in this order, the first match names it):
//!
//! - **stdstring**: the buffer of a copy-on-write `std::string` (the old
//!   libstdc++ ABI, `_GLIBCXX_USE_CXX11_ABI=0`): the block begins with the
//!   length, the capacity and the reference count (3 words), and the string
//!   points at the characters after them. `p == b.addr + 24`, the second
//!   word (capacity) satisfies `24 + capacity + 1 == b.size` and the first
//!   (length) `length <= capacity`. The new ABI's strings point at their
//!   buffer's start and need no heuristic.
//! - **length64**: a block that begins with the length of the rest as a
//!   64-bit number (sqlite's allocator does this): `p == b.addr + 8` and the
//!   first word is `b.size - 8`, not 0.
//! - **newarray**: `new T[n]` of a `T` with a destructor stores `n` before
//!   the elements and returns the address after it: `p == b.addr + 8`, the
//!   first word `n` is not 0 and divides `b.size - 8`. (A length64 block
//!   matches too; length64 comes first.)
//! - **multipleinheritance**: a pointer to a second base class's part of an
//!   object: `p` is 8-byte aligned, and both the word at `p` and the block's
//!   first word are vtable addresses (8-byte aligned, at least 4096, in a
//!   readable file-backed mapping, and among the table's first 21 words,
//!   within that mapping, two non-null ones come before any non-null one
//!   that does not point into an executable file-backed mapping).
//!
//! As in memcheck, a heuristic only rescues a block from being possibly
//! lost: what a possibly lost block points to stays possibly lost whatever
//! the pointer, and in the search for the leaders of lost groups (definitely
//! against indirectly lost) start and interior pointers are alike. A still
//! reachable block is *reachable via a heuristic* when no start pointer from
//! a root or a still reachable block reaches it; if interior pointers of
//! several heuristics do, the first in the order above names it.
//!
//! Differences from memcheck. Two where its answer depends on the order
//! of its scan: memcheck keeps the heuristic of the first pointer that made
//! the block reachable (here: the first in the order above), and it also
//! counts in its "reachable via heuristic" lines a block left possibly lost
//! whose last interior pointer examined came from a possibly lost block and
//! matched a heuristic (here such a block is possibly lost only). And where
//! memcheck asks whether code was ever run from a mapping (its `hasT`), the
//! vtable test asks whether the mapping is executable. memcheck also applies
//! its tests only to initialized words; a scan of a memory image cannot tell,
//! so a block's uninitialized first word may fit here where it does not there.

use std::cell::RefCell;
use std::collections::HashMap;

use super::Block;
pub use crate::kinds::Heuristic;

/// A set of heuristics, as `--leak-check-heuristics` gives it. The default
/// is all of them, as in memcheck since valgrind 3.11.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heuristics(u8);

impl Default for Heuristics {
    fn default() -> Heuristics {
        Heuristics::ALL
    }
}

impl Heuristics {
    pub const ALL: Heuristics = Heuristics(0b1111);
    pub const NONE: Heuristics = Heuristics(0);
    /// The environment variable that passes the set to the traced
    /// command (and to a scan started from it), in [`Heuristics::parse`]'s
    /// syntax.
    pub const ENV: &'static str = "MEMTRACE_LEAK_HEURISTICS";

    /// memcheck's syntax: `all`, `none`, or names separated by commas
    /// (`stdstring`, `length64`, `newarray`, `multipleinheritance`).
    pub fn parse(s: &str) -> Result<Heuristics, String> {
        let mut set = 0u8;
        for part in s.split(',').map(str::trim) {
            match part {
                "all" => set = Heuristics::ALL.0,
                "none" => {}
                p => match Heuristic::ALL.iter().find(|h| h.name() == p) {
                    Some(h) => set |= h.bit(),
                    None => {
                        return Err(format!(
                            "unknown leak heuristic {p:?} (expected stdstring, length64, \
                             newarray, multipleinheritance, all or none, separated by commas)"
                        ));
                    }
                },
            }
        }
        Ok(Heuristics(set))
    }

    /// The set [`Heuristics::ENV`] names; all of them when it is unset or
    /// empty; an error for a value [`Heuristics::parse`] refuses.
    pub fn from_env() -> Result<Heuristics, String> {
        Heuristics::from_var(std::env::var(Heuristics::ENV).ok().as_deref())
    }

    /// [`Heuristics::from_env`] given the variable's value.
    fn from_var(v: Option<&str>) -> Result<Heuristics, String> {
        match v {
            Some(v) if !v.trim().is_empty() => {
                Heuristics::parse(v).map_err(|e| format!("{}: {e}", Heuristics::ENV))
            }
            _ => Ok(Heuristics::ALL),
        }
    }

    /// Whether `h` is in the set.
    pub fn contains(self, h: Heuristic) -> bool {
        self.0 & h.bit() != 0
    }

    /// The heuristics of the set, in memcheck's order.
    pub fn iter(self) -> impl Iterator<Item = Heuristic> {
        Heuristic::ALL
            .into_iter()
            .filter(move |h| self.contains(*h))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for Heuristics {
    /// `all`, `none`, or the names joined by commas: what
    /// [`Heuristics::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Heuristics::ALL {
            return f.write_str("all");
        }
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(Heuristic::name).collect();
        f.write_str(&names.join(","))
    }
}

/// One mapping of the address space, as `/proc/PID/maps` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub exec: bool,
    /// Backed by a file (a path that is not `[heap]`, `[stack]`, ...).
    pub file: bool,
}

/// What the multipleinheritance heuristic reads outside the heap: the
/// mappings, and the words of the vtables they hold. Answers are cached by
/// address.
pub struct AddressSpace<'a> {
    /// Sorted by start, not overlapping.
    maps: Vec<Mapping>,
    /// The aligned word at an address (`None`: unreadable).
    word: Box<dyn Fn(u64) -> Option<u64> + 'a>,
    vtables: RefCell<HashMap<u64, bool>>,
}

/// The words a vtable test looks at past the address itself (memcheck's
/// `VTABLE_MAX_CHECK`; it looks at this many more words than that, up to the
/// end of the mapping).
const VTABLE_MAX_CHECK: u64 = 20;

/// memcheck skips words below this before the vtable test (no vtable lives
/// in page 0).
const PAGE_SIZE: u64 = 4096;

impl<'a> AddressSpace<'a> {
    /// `maps` in any order; `word(a)` reads the 8-byte word at `a`.
    pub fn new(mut maps: Vec<Mapping>, word: Box<dyn Fn(u64) -> Option<u64> + 'a>) -> Self {
        maps.sort_by_key(|m| m.start);
        AddressSpace {
            maps,
            word,
            vtables: RefCell::new(HashMap::new()),
        }
    }

    /// No mappings: nothing is a vtable.
    pub fn empty() -> AddressSpace<'static> {
        AddressSpace::new(Vec::new(), Box::new(|_| None))
    }

    fn mapping(&self, a: u64) -> Option<&Mapping> {
        let i = self.maps.partition_point(|m| m.start <= a).checked_sub(1)?;
        let m = &self.maps[i];
        (a < m.end).then_some(m)
    }

    /// Whether `p` (aligned, at least 4096) looks like a vtable
    /// address: in a readable file-backed mapping, where two non-null words
    /// pointing into executable file-backed mappings come before any other
    /// non-null word, among the words from `p` to `p + 8 × 20` (and before
    /// the mapping's last word).
    pub fn is_vtable(&self, p: u64) -> bool {
        // Most candidates (heap addresses) fail here, uncached.
        let Some(m) = self.mapping(p).filter(|m| m.file && m.read) else {
            return false;
        };
        if let Some(&v) = self.vtables.borrow().get(&p) {
            return v;
        }
        let v = self.test_vtable(p, m);
        self.vtables.borrow_mut().insert(p, v);
        v
    }

    fn test_vtable(&self, p: u64, m: &Mapping) -> bool {
        // memcheck stops 8 bytes before the mapping's last byte (its
        // segments' ends are inclusive): the last word is never looked at.
        let last = p
            .saturating_add(VTABLE_MAX_CHECK * 8)
            .min(m.end.saturating_sub(9));
        let mut fns = 0;
        let mut at = p;
        while at <= last {
            let Some(f) = (self.word)(at) else {
                return false;
            };
            at += 8;
            if f == 0 {
                continue;
            }
            if !self.mapping(f).is_some_and(|m| m.file && m.exec) {
                return false;
            }
            fns += 1;
            if fns == 2 {
                return true;
            }
        }
        false
    }
}

/// The little-endian word at byte `off` of `bytes`.
pub(super) fn word_at(bytes: &[u8], off: u64) -> Option<u64> {
    let off = usize::try_from(off).ok()?;
    let w = bytes.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(w.try_into().ok()?))
}

/// The heuristic of `set` that recognizes `p`, an interior pointer into
/// `block`, whose word at byte `off` is `word(off)` (`None`: unreadable, or
/// past its end; an unreadable block is recognized by none), tried in
/// memcheck's order.
pub fn recognize(
    set: Heuristics,
    p: u64,
    block: Block,
    word: &dyn Fn(u64) -> Option<u64>,
    space: &AddressSpace<'_>,
) -> Option<Heuristic> {
    if set.is_empty() {
        return None;
    }
    let off = p.checked_sub(block.addr)?;
    let first = word(0);
    if set.contains(Heuristic::StdString)
        && off == 24
        && let (Some(length), Some(capacity)) = (first, word(8))
        && capacity.wrapping_add(24 + 1) == block.size
        && length <= capacity
    {
        return Some(Heuristic::StdString);
    }
    if set.contains(Heuristic::Length64)
        && off == 8
        && let Some(length) = first
        && length > 0
        && block.size.wrapping_sub(8) == length
    {
        return Some(Heuristic::Length64);
    }
    if set.contains(Heuristic::NewArray)
        && off == 8
        && let Some(n) = first
        && n > 0
        && block.size.wrapping_sub(8).is_multiple_of(n)
    {
        return Some(Heuristic::NewArray);
    }
    if set.contains(Heuristic::MultipleInheritance)
        && p.is_multiple_of(8)
        && let (Some(inner), Some(first)) = (word(off), first)
        && inner.is_multiple_of(8)
        && inner >= PAGE_SIZE
        && first.is_multiple_of(8)
        && first >= PAGE_SIZE
        && space.is_vtable(inner)
        && space.is_vtable(first)
    {
        return Some(Heuristic::MultipleInheritance);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        assert_eq!(Heuristics::parse("all"), Ok(Heuristics::ALL));
        assert_eq!(Heuristics::parse("none"), Ok(Heuristics::NONE));
        let two = Heuristics::parse("newarray, stdstring").unwrap();
        assert!(two.contains(Heuristic::StdString) && two.contains(Heuristic::NewArray));
        assert!(!two.contains(Heuristic::Length64));
        assert_eq!(two.to_string(), "stdstring,newarray");
        assert_eq!(Heuristics::parse(&two.to_string()), Ok(two));
        assert_eq!(Heuristics::ALL.to_string(), "all");
        assert_eq!(Heuristics::NONE.to_string(), "none");
        assert_eq!(
            Heuristics::parse("stdstring,length64,newarray,multipleinheritance"),
            Ok(Heuristics::ALL)
        );
        assert!(Heuristics::parse("").is_err());
        assert!(Heuristics::parse("std").unwrap_err().contains("\"std\""));
        assert_eq!(Heuristics::default(), Heuristics::ALL);
        // The environment: unset or empty is all; a bad value says which variable.
        assert_eq!(Heuristics::from_var(None), Ok(Heuristics::ALL));
        assert_eq!(Heuristics::from_var(Some(" ")), Ok(Heuristics::ALL));
        assert_eq!(Heuristics::from_var(Some("none")), Ok(Heuristics::NONE));
        assert_eq!(Heuristics::from_var(Some(&two.to_string())), Ok(two));
        assert!(
            Heuristics::from_var(Some("x"))
                .unwrap_err()
                .starts_with("MEMTRACE_LEAK_HEURISTICS: unknown leak heuristic \"x\"")
        );
        for h in Heuristic::ALL {
            assert_eq!(Heuristic::from_code(h.code()), Some(h));
        }
        assert_eq!(
            Heuristic::from_code(memtrace_format::kernel::REACH_REACHABLE),
            None
        );
    }

    /// The word reader of a block whose bytes are `bytes` (`None`: unreadable).
    fn at(bytes: Option<&[u8]>) -> impl Fn(u64) -> Option<u64> + '_ {
        move |off| word_at(bytes?, off)
    }

    fn block_with(words: &[u64], size: u64) -> Vec<u8> {
        let mut v: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        v.resize(size as usize, 0);
        v
    }

    /// Each heuristic's rule, and its edges, as memcheck states them.
    #[test]
    fn rules() {
        let none = AddressSpace::empty();
        let b = |size| Block { addr: 0x1000, size };
        let all = Heuristics::ALL;
        // stdstring: length 5, capacity 15 in a block of 24 + 15 + 1.
        let s = block_with(&[5, 15, 0], 40);
        assert_eq!(
            recognize(all, 0x1000 + 24, b(40), &at(Some(&s)), &none),
            Some(Heuristic::StdString)
        );
        // Only at +24; not if the capacity does not give the size, nor if
        // the length exceeds the capacity; not when the set lacks it.
        assert_eq!(
            recognize(all, 0x1000 + 16, b(40), &at(Some(&s)), &none),
            None
        );
        let s2 = block_with(&[5, 14, 0], 40);
        assert_eq!(
            recognize(all, 0x1000 + 24, b(40), &at(Some(&s2)), &none),
            None
        );
        let s3 = block_with(&[16, 15, 0], 40);
        assert_eq!(
            recognize(all, 0x1000 + 24, b(40), &at(Some(&s3)), &none),
            None
        );
        let only_na = Heuristics::parse("newarray").unwrap();
        assert_eq!(
            recognize(only_na, 0x1000 + 24, b(40), &at(Some(&s)), &none),
            None
        );
        // length64: the first word is the size after it; it also fits
        // newarray, which comes after it.
        let l = block_with(&[24], 32);
        assert_eq!(
            recognize(all, 0x1008, b(32), &at(Some(&l)), &none),
            Some(Heuristic::Length64)
        );
        assert_eq!(
            recognize(only_na, 0x1008, b(32), &at(Some(&l)), &none),
            Some(Heuristic::NewArray)
        );
        // newarray: a count that divides the rest; not 0, not one that does
        // not divide.
        let a = block_with(&[3], 8 + 3 * 16);
        assert_eq!(
            recognize(all, 0x1008, b(56), &at(Some(&a)), &none),
            Some(Heuristic::NewArray)
        );
        let a0 = block_with(&[0], 56);
        assert_eq!(recognize(all, 0x1008, b(56), &at(Some(&a0)), &none), None);
        let a5 = block_with(&[5], 56);
        assert_eq!(recognize(all, 0x1008, b(56), &at(Some(&a5)), &none), None);
        // Unreadable contents: nothing.
        assert_eq!(recognize(all, 0x1008, b(56), &at(None), &none), None);
        assert_eq!(
            recognize(Heuristics::NONE, 0x1008, b(56), &at(Some(&a)), &none),
            None
        );
    }

    /// A hand-built address space: text at 0x40_0000 (r-x, file), vtables
    /// in 0x60_0000 (r--, file), anonymous memory at 0x70_0000.
    fn space(words: &[(u64, u64)]) -> AddressSpace<'static> {
        let words: HashMap<u64, u64> = words.iter().copied().collect();
        let map = |start, end, exec, file| Mapping {
            start,
            end,
            read: true,
            exec,
            file,
        };
        AddressSpace::new(
            vec![
                map(0x60_0000, 0x60_1000, false, true),
                map(0x40_0000, 0x40_1000, true, true),
                map(0x70_0000, 0x70_1000, true, false),
            ],
            Box::new(move |a| Some(words.get(&a).copied().unwrap_or(0))),
        )
    }

    /// Vtables: two function pointers, nulls skipped, before anything else,
    /// within 21 words and the mapping.
    #[test]
    fn vtables() {
        let s = space(&[
            // Two functions.
            (0x60_0010, 0x40_0100),
            (0x60_0018, 0x40_0200),
            // A null, then two functions.
            (0x60_0100, 0x40_0100),
            (0x60_0110, 0x40_0300),
            // A function, then a pointer to data.
            (0x60_0200, 0x40_0100),
            (0x60_0208, 0x60_0010),
            (0x60_0210, 0x40_0100),
            // A function in anonymous executable memory.
            (0x60_0300, 0x70_0100),
            (0x60_0308, 0x40_0100),
            // The second function is the 22nd word: too far.
            (0x60_0400, 0x40_0100),
            (0x60_0400 + 21 * 8, 0x40_0100),
            // The 21st is still looked at.
            (0x60_0500, 0x40_0100),
            (0x60_0500 + 20 * 8, 0x40_0100),
            // The second would be the mapping's last word: not looked at.
            (0x60_0ff0, 0x40_0100),
            (0x60_0ff8, 0x40_0100),
            // A table in the text mapping: any readable file mapping will do.
            (0x40_0800, 0x40_0100),
            (0x40_0808, 0x40_0100),
        ]);
        assert!(s.is_vtable(0x60_0010));
        assert!(s.is_vtable(0x60_0100));
        assert!(!s.is_vtable(0x60_0200));
        assert!(!s.is_vtable(0x60_0300));
        assert!(!s.is_vtable(0x60_0400));
        assert!(s.is_vtable(0x60_0500));
        assert!(!s.is_vtable(0x60_0ff0));
        assert!(s.is_vtable(0x40_0800));
        // Not in a file mapping, or nowhere.
        assert!(!s.is_vtable(0x70_0000));
        assert!(!s.is_vtable(0x50_0000));
        // Cached answers agree.
        assert!(s.is_vtable(0x60_0010) && !s.is_vtable(0x60_0200));

        // An object of 32 bytes: vtable, field, second vtable, field; a
        // pointer to its third word is recognized; to its second is not
        // (a field there); nor when the first word is not a vtable.
        let b = Block {
            addr: 0x1000,
            size: 32,
        };
        let all = Heuristics::ALL;
        let obj = block_with(&[0x60_0010, 7, 0x60_0100, 9], 32);
        assert_eq!(
            recognize(all, 0x1010, b, &at(Some(&obj)), &s),
            Some(Heuristic::MultipleInheritance)
        );
        assert_eq!(recognize(all, 0x1008, b, &at(Some(&obj)), &s), None);
        assert_eq!(recognize(all, 0x1014, b, &at(Some(&obj)), &s), None);
        let bad = block_with(&[0x60_0200, 7, 0x60_0100, 9], 32);
        assert_eq!(recognize(all, 0x1010, b, &at(Some(&bad)), &s), None);
        let only_mi = Heuristics::parse("multipleinheritance").unwrap();
        assert_eq!(
            recognize(only_mi, 0x1010, b, &at(Some(&obj)), &s),
            Some(Heuristic::MultipleInheritance)
        );
        let no_mi = Heuristics::parse("stdstring,length64,newarray").unwrap();
        assert_eq!(recognize(no_mi, 0x1010, b, &at(Some(&obj)), &s), None);
    }
}
