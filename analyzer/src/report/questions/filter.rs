//! `--filter PATTERN`: only the stacks through a frame whose function or
//! module matches. A pattern without `*` or `?` matches a substring of the
//! frame's (demangled) function name or of its module's file name (the last
//! component of its path); with them, it is a glob over the whole of either
//! (`*`: any run of characters, `?`: any one). Case counts. Inlined frames
//! are frames: a function inlined into its caller still matches.

use std::collections::HashSet;

use crate::analysis::replay::{BrkTotal, StackTotal};
use crate::frames::{Frame, file_name};
use crate::hash::FastMap;

use super::super::stacks::Stacks;
use super::Filtered;

/// A `--filter` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub text: String,
}

impl Pattern {
    pub fn new(text: &str) -> Self {
        Pattern { text: text.into() }
    }

    /// Whether the pattern is a glob (has `*` or `?`).
    pub fn is_glob(&self) -> bool {
        self.text.contains(['*', '?'])
    }

    /// Whether `name` matches: contains it, or matches the glob whole.
    pub fn matches(&self, name: &str) -> bool {
        if self.is_glob() {
            let p: Vec<char> = self.text.chars().collect();
            let s: Vec<char> = name.chars().collect();
            glob(&p, &s)
        } else {
            name.contains(&self.text)
        }
    }

    /// Whether the frame's function or module file name matches.
    pub fn frame(&self, f: &Frame) -> bool {
        f.function.as_deref().is_some_and(|n| self.matches(n))
            || f.module
                .as_deref()
                .is_some_and(|m| self.matches(file_name(m)))
    }
}

/// A glob of `*` and `?` against the whole of `s`, without backtracking
/// blow-up (the last `*` is the only one retried).
fn glob(p: &[char], s: &[char]) -> bool {
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && (p[i] == '?' || (p[i] != '*' && p[i] == s[j])) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Which stacks the pattern keeps, each stack symbolized and judged once.
pub(in crate::report) struct Kept<'p> {
    pattern: &'p Pattern,
    memo: FastMap<u32, bool>,
}

impl<'p> Kept<'p> {
    pub(in crate::report) fn new(pattern: &'p Pattern) -> Self {
        Kept {
            pattern,
            memo: FastMap::default(),
        }
    }

    /// Whether `stack` passes through a matching frame.
    pub(in crate::report) fn keeps(&mut self, stacks: &mut Stacks<'_>, stack: u32) -> bool {
        if let Some(&k) = self.memo.get(&stack) {
            return k;
        }
        let k = stacks.resolve(stack).iter().any(|f| self.pattern.frame(f));
        self.memo.insert(stack, k);
        k
    }
}

/// The lists of the replay a filter narrows.
pub(in crate::report) struct Lists<'a> {
    pub heap_leaks: &'a mut Vec<StackTotal>,
    pub mmap_leaks: &'a mut Vec<StackTotal>,
    pub peak: &'a mut Vec<StackTotal>,
    pub allocated: &'a mut Vec<StackTotal>,
    pub temporary: &'a mut Vec<StackTotal>,
    pub brk: &'a mut Vec<BrkTotal>,
}

/// Keeps only the stacks through a matching frame in every list of `l`, and
/// returns the totals of what remains.
pub(in crate::report) fn narrow(
    kept: &mut Kept<'_>,
    stacks: &mut Stacks<'_>,
    l: &mut Lists<'_>,
) -> Filtered {
    let mut all: HashSet<u32> = HashSet::new();
    all.extend(l.allocated.iter().map(|t| t.stack));
    all.extend(l.heap_leaks.iter().map(|t| t.stack));
    all.extend(l.mmap_leaks.iter().map(|t| t.stack));
    all.extend(l.temporary.iter().map(|t| t.stack));
    all.extend(l.brk.iter().map(|t| t.stack));
    let stacks_total = all.len() as u64;
    let mut ids: Vec<u32> = all.into_iter().collect();
    ids.sort_unstable();
    let stacks_kept = ids.iter().filter(|&&s| kept.keeps(stacks, s)).count() as u64;
    // The peak's stacks are among those above, but judge any that is not.
    let peak_ids: Vec<u32> = l.peak.iter().map(|t| t.stack).collect();
    for s in peak_ids {
        kept.keeps(stacks, s);
    }
    let keep = |v: &mut Vec<StackTotal>| {
        v.retain(|t| kept.memo.get(&t.stack).copied().unwrap_or(false));
        let sum = |f: fn(&StackTotal) -> u64| v.iter().fold(0u64, |a, t| a.saturating_add(f(t)));
        (sum(|t| t.bytes), sum(|t| t.count), v.len() as u64)
    };
    let (leaked_heap_bytes, leaked_heap_blocks, heap_leak_stacks) = keep(&mut *l.heap_leaks);
    let (leaked_mmap_bytes, leaked_mmap_regions, mmap_leak_stacks) = keep(&mut *l.mmap_leaks);
    let (bytes_allocated, allocations, _) = keep(&mut *l.allocated);
    let (temporary_bytes, temporary_allocations, _) = keep(&mut *l.temporary);
    let (peak_heap_bytes, peak_heap_blocks, _) = keep(&mut *l.peak);
    l.brk
        .retain(|t| kept.memo.get(&t.stack).copied().unwrap_or(false));
    Filtered {
        pattern: kept.pattern.clone(),
        stacks: stacks_kept,
        stacks_total,
        allocations,
        bytes_allocated,
        temporary_allocations,
        temporary_bytes,
        leaked_heap_bytes,
        leaked_heap_blocks,
        leaked_mmap_bytes,
        leaked_mmap_regions,
        peak_heap_bytes,
        peak_heap_blocks,
        heap_leak_stacks,
        mmap_leak_stacks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_and_glob() {
        let p = Pattern::new("b1");
        assert!(!p.is_glob());
        assert!(p.matches("b1") && p.matches("xb12") && !p.matches("B1"));
        let g = Pattern::new("a?");
        assert!(g.is_glob());
        assert!(g.matches("a1") && g.matches("a2") && !g.matches("a12") && !g.matches("ba1"));
        let g = Pattern::new("std::*::push_back*");
        assert!(g.matches("std::vector<int>::push_back(int const&)"));
        assert!(!g.matches("std::vector<int>::size()"));
        assert!(Pattern::new("*").matches(""));
        assert!(Pattern::new("*a*a*a*b").matches("aaaaaaaaaaaab"));
        assert!(!Pattern::new("*a*a*a*b").matches(&"a".repeat(200)));
    }

    #[test]
    fn frames_match_by_function_or_module_file_name() {
        let f = Frame {
            function: Some("g".into()),
            mangled: None,
            file: Some("/src/q.c".into()),
            line: Some(3),
            module: Some("/tmp/questions".into()),
            address: 0x1000,
            offset: None,
            inlined: false,
        };
        assert!(Pattern::new("g").frame(&f));
        assert!(Pattern::new("questions").frame(&f));
        assert!(Pattern::new("quest*").frame(&f));
        assert!(
            !Pattern::new("/tmp*").frame(&f),
            "the module's file name, not its path"
        );
        assert!(!Pattern::new("q.c").frame(&f), "not the source file");
    }
}
