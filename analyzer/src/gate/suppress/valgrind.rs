//! valgrind memcheck's suppression format (`{ NAME Memcheck:Leak frames }`):
//! its parser, and the prefix matching of its frame patterns against a
//! stack behind the synthetic allocator frames of [`super::allocators`].
//! Uses the parent's [`Suppression`] and frame helpers, and
//! [`super::wildcard`].

use std::path::Path;

use memtrace_format::Func;

use super::allocators::{ALLOCATORS, Names, VGPRELOAD, prologues};
use super::wildcard::glob;
use super::{Rule, Suppression, SuppressionFile, Syntax, at, basename, fun_matches};
use crate::analysis::reach::Kind;
use crate::analysis::symbolize::Frame;

#[derive(Clone, Debug)]
pub(super) enum VgFrame {
    Fun(String),
    Obj(String),
    Src { file: String, line: Option<u32> },
    Dots,
}

/// Parses a valgrind file: entry after entry, each opened by `{`; the
/// entries of another tool or kind are counted in `file.ignored`.
pub(super) fn parse_valgrind(
    lines: &[(usize, &str)],
    file: &mut SuppressionFile,
) -> Result<(), String> {
    let path = file.path.clone();
    let mut it = lines.iter().copied();
    while let Some((start, open)) = it.next() {
        if open != "{" {
            return Err(at(
                &path,
                start,
                format_args!("expected `{{` to begin a valgrind suppression, found `{open}`"),
            ));
        }
        match parse_entry(&path, start, &mut it)? {
            Some(entry) => file.entries.push(entry),
            None => file.ignored += 1,
        }
    }
    Ok(())
}

/// The lines of one entry, after its `{` (at line `start`).
struct Entry<'p, I> {
    path: &'p Path,
    start: usize,
    it: I,
}

impl<'a, I: Iterator<Item = (usize, &'a str)>> Entry<'_, I> {
    /// The next line; a `{` before the `}` means the entry opened at `start`
    /// was never closed.
    fn next(&mut self) -> Result<(usize, &'a str), String> {
        match self.it.next() {
            Some((_, "{")) | None => Err(at(
                self.path,
                self.start,
                "unterminated `{`: the suppression has no closing `}`",
            )),
            Some(x) => Ok(x),
        }
    }
}

/// One entry, from the line after its `{` through its `}`: `None` when it
/// is another tool's or kind's.
fn parse_entry<'a>(
    path: &Path,
    start: usize,
    it: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<Option<Suppression>, String> {
    let mut entry = Entry { path, start, it };
    let Some(name) = parse_header(&mut entry)? else {
        // Another tool's or kind's entry: its body (which may hold extra
        // lines, like `Memcheck:Param`'s) is not ours to check.
        while entry.next()?.1 != "}" {}
        return Ok(None);
    };
    let (leak_kinds, frames) = parse_body(&mut entry)?;
    if frames.is_empty() {
        return Err(at(
            path,
            start,
            format_args!("suppression `{name}` has no frame lines"),
        ));
    }
    let kinds = if leak_kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        Kind::parse_list(&leak_kinds.join(","))
            .map_err(|e| at(path, start, format_args!("match-leak-kinds: {e}")))?
    };
    Ok(Some(Suppression {
        name: name.to_string(),
        file: path.to_path_buf(),
        line: start,
        syntax: Syntax::Valgrind,
        limit: None,
        program: None,
        rule: Rule::Valgrind {
            leak_kinds,
            kinds,
            frames,
        },
    }))
}

/// The name line and the `TOOL:KIND` line: the name of a `Memcheck:Leak`
/// entry, `None` for another tool's or kind's.
fn parse_header<'a, I: Iterator<Item = (usize, &'a str)>>(
    entry: &mut Entry<'_, I>,
) -> Result<Option<&'a str>, String> {
    let path = entry.path;
    let (n, name) = entry.next()?;
    if name == "}" {
        return Err(at(
            path,
            n,
            "suppression without a name (the line after `{` is its name)",
        ));
    }
    let (n, kind_line) = entry.next()?;
    if kind_line == "}" {
        return Err(at(
            path,
            n,
            format_args!("suppression `{name}` has no `TOOL:KIND` line (such as `Memcheck:Leak`)"),
        ));
    }
    if parse_frame(kind_line).is_some() || kind_line.starts_with("match-leak-kinds:") {
        return Err(at(
            path,
            n,
            format_args!(
                "expected the `TOOL:KIND` line (such as `Memcheck:Leak`) after the name \
                 `{name}`, found `{kind_line}`"
            ),
        ));
    }
    let (tools, kind) = kind_line
        .split_once(':')
        .filter(|(t, k)| !t.trim().is_empty() && !k.trim().is_empty())
        .ok_or_else(|| {
            at(
                path,
                n,
                format_args!("expected `TOOL:KIND` (such as `Memcheck:Leak`), found `{kind_line}`"),
            )
        })?;
    let leak = tools.split(',').any(|t| t.trim() == "Memcheck") && kind.trim() == "Leak";
    Ok(leak.then_some(name))
}

/// The lines after `Memcheck:Leak` through the `}`: the
/// `match-leak-kinds:` list as written, and the frame patterns.
fn parse_body<'a, I: Iterator<Item = (usize, &'a str)>>(
    entry: &mut Entry<'_, I>,
) -> Result<(Vec<String>, Vec<VgFrame>), String> {
    let path = entry.path;
    let mut leak_kinds = Vec::new();
    let mut frames = Vec::new();
    loop {
        let (n, l) = entry.next()?;
        if l == "}" {
            break;
        }
        if let Some(list) = l.strip_prefix("match-leak-kinds:") {
            if !frames.is_empty() || !leak_kinds.is_empty() {
                return Err(at(
                    path,
                    n,
                    "`match-leak-kinds:` must come right after the `Memcheck:Leak` line",
                ));
            }
            parse_leak_kinds(path, n, list, &mut leak_kinds)?;
            continue;
        }
        frames.push(parse_frame(l).ok_or_else(|| {
            at(
                path,
                n,
                format_args!(
                    "unknown frame line `{l}` (expected fun:NAME, obj:PATH, \
                     src:FILE[:LINE] or `...`)"
                ),
            )
        })?);
    }
    Ok((leak_kinds, frames))
}

/// The kinds of a `match-leak-kinds:` line (at line `n`), each checked,
/// appended as written.
fn parse_leak_kinds(
    path: &Path,
    n: usize,
    list: &str,
    leak_kinds: &mut Vec<String>,
) -> Result<(), String> {
    for k in list.split(',').map(str::trim) {
        if Kind::parse_list(k).is_err() {
            return Err(at(
                path,
                n,
                format_args!(
                    "unknown leak kind `{k}` (expected definite, indirect, \
                     possible, reachable, all or none, separated by commas)"
                ),
            ));
        }
        leak_kinds.push(k.to_string());
    }
    Ok(())
}

/// A valgrind frame line, or `None` when it is not one.
fn parse_frame(l: &str) -> Option<VgFrame> {
    if l == "..." {
        return Some(VgFrame::Dots);
    }
    let (kind, value) = l.split_once(':')?;
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    match kind {
        "fun" => Some(VgFrame::Fun(value.to_string())),
        "obj" => Some(VgFrame::Obj(value.to_string())),
        "src" => {
            let (file, line) = match value.rsplit_once(':') {
                Some((f, l)) if !f.is_empty() && !l.is_empty() => {
                    if l.bytes().all(|b| b.is_ascii_digit()) {
                        (f, Some(l.parse().ok()?))
                    } else {
                        (value, None)
                    }
                }
                _ => (value, None),
            };
            Some(VgFrame::Src {
                file: file.to_string(),
                line,
            })
        }
        _ => None,
    }
}

// ---- valgrind matching -----------------------------------------------------

impl VgFrame {
    /// Against a real frame. A frame without a function or module is `???`.
    fn matches(&self, f: &Frame) -> bool {
        match self {
            VgFrame::Fun(g) => {
                if f.function.is_none() && f.mangled.is_none() {
                    glob(g, "???")
                } else {
                    fun_matches(g, f)
                }
            }
            VgFrame::Obj(g) => glob(g, f.module.as_deref().unwrap_or("???")),
            VgFrame::Src { file, line } => {
                f.file.as_deref().is_some_and(|p| glob(file, basename(p)))
                    && line.is_none_or(|l| f.line == Some(l))
            }
            VgFrame::Dots => true,
        }
    }

    /// Against a synthetic allocator frame: `obj:` matches unless it names
    /// another library than valgrind's replacement one (its last path
    /// component must match `vgpreload_memcheck-ARCH-linux.so`, which `*`,
    /// `/usr/*` and valgrind's full path all do); `src:` matches valgrind's
    /// replacement source, `vg_replace_malloc.c`.
    fn matches_synthetic(&self, names: Names) -> bool {
        match self {
            VgFrame::Fun(g) => names.iter().any(|n| glob(g, n)),
            VgFrame::Obj(g) => VGPRELOAD.iter().any(|lib| glob(basename(g), lib)),
            VgFrame::Src { file, .. } => glob(file, "vg_replace_malloc.c"),
            VgFrame::Dots => true,
        }
    }
}

pub(super) fn valgrind_matches(pats: &[VgFrame], stack: &[Frame], func: Option<Func>) -> bool {
    let one;
    let funcs: &[Func] = match func {
        Some(f) => {
            one = [f];
            &one
        }
        None => ALLOCATORS,
    };
    let mut first_hits_synthetic = false;
    for prologue in funcs.iter().flat_map(|&f| prologues(f)) {
        if prefix_match(pats, prologue, stack) {
            return true;
        }
        first_hits_synthetic |= pats
            .first()
            .is_some_and(|p| p.matches_synthetic(prologue[0]));
    }
    !first_hits_synthetic && prefix_match(pats, &[], stack)
}

/// Whether `pats` match a prefix of `prologue` followed by `stack`; `...`
/// matches zero or more frames. The set of frame positions reachable after
/// each pattern is carried along: O(patterns x frames).
fn prefix_match(pats: &[VgFrame], prologue: &[Names], stack: &[Frame]) -> bool {
    let len = prologue.len() + stack.len();
    let frame_matches = |p: &VgFrame, j: usize| match prologue.get(j) {
        Some(names) => p.matches_synthetic(names),
        None => p.matches(&stack[j - prologue.len()]),
    };
    let mut cur = vec![false; len + 1];
    cur[0] = true;
    let mut next = vec![false; len + 1];
    for p in pats {
        next.fill(false);
        if let VgFrame::Dots = p {
            let mut on = false;
            for j in 0..=len {
                on |= cur[j];
                next[j] = on;
            }
        } else {
            for j in 0..len {
                if cur[j] && frame_matches(p, j) {
                    next[j + 1] = true;
                }
            }
        }
        if !next.contains(&true) {
            return false;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bare, error, frame, fun, one, p, stack};
    use super::super::*;
    use super::*;

    const VG_BASIC: &str = "\
# a comment
{
   <insert_a_suppression_name_here>
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:leak_malloc
   fun:main
}

{
   cond
   Memcheck:Cond
   fun:whatever
}
{
   param
   Memcheck:Param
   write(buf)
   fun:write
}
{
   helgrind
   Helgrind:Race
   fun:f
}
{
   multi tool   name with spaces
   Memcheck,Addrcheck:Leak
   # a comment inside
   fun:calloc
   ...
   obj:/usr/lib/libfoo.so.1
   src:foo.c:12
}
";

    #[test]
    fn valgrind_parse() {
        let f = p(VG_BASIC);
        assert_eq!(f.syntax, Some(Syntax::Valgrind));
        assert_eq!(f.ignored, 3);
        assert_eq!(f.entries.len(), 2);
        let a = &f.entries[0];
        assert_eq!(a.name, "<insert_a_suppression_name_here>");
        assert_eq!(a.line, 2);
        assert_eq!(a.syntax, Syntax::Valgrind);
        assert_eq!(a.leak_kinds(), ["definite"]);
        let b = &f.entries[1];
        assert_eq!(b.name, "multi tool   name with spaces");
        assert_eq!(b.line, 27);
        assert!(b.leak_kinds().is_empty());
        let Rule::Valgrind { frames, .. } = &b.rule else {
            panic!()
        };
        assert_eq!(frames.len(), 4);
        assert!(matches!(&frames[3], VgFrame::Src { file, line: Some(12) } if file == "foo.c"));
        let k = one(
            "{\n n\n Memcheck:Leak\n match-leak-kinds: definite, possible,reachable\n fun:f\n}\n",
        );
        assert_eq!(k.leak_kinds(), ["definite", "possible", "reachable"]);
        let Rule::Valgrind { frames, .. } = &one("{\nn\nMemcheck:Leak\nsrc:a:b.c\n}\n").rule else {
            panic!()
        };
        assert!(matches!(&frames[0], VgFrame::Src { file, line: None } if file == "a:b.c"));
    }

    /// `match-leak-kinds:` decides which kinds of blocks an entry applies to;
    /// blocks that were not classified only to entries for every kind.
    #[test]
    fn valgrind_leak_kinds_apply() {
        use Kind::*;
        let entry = |kinds: &str| {
            let line = if kinds.is_empty() {
                String::new()
            } else {
                format!("   match-leak-kinds: {kinds}\n")
            };
            one(&format!(
                "{{\n   n\n   Memcheck:Leak\n{line}   fun:malloc\n   fun:f\n}}\n"
            ))
        };
        let st = stack(&["f", "main"]);
        let m = Some(Func::Malloc);
        let d = entry("definite");
        assert_eq!(d.kinds(), [DefinitelyLost]);
        assert!(d.matches_leak(&st, m, Some(DefinitelyLost)));
        for k in [IndirectlyLost, PossiblyLost, StillReachable] {
            assert!(!d.matches_leak(&st, m, Some(k)), "{k:?}");
        }
        assert!(
            !d.matches_leak(&st, m, None),
            "unclassified: could be any kind"
        );
        assert!(d.matches(&st, m), "the stack alone still matches");
        assert!(!d.matches_leak(&stack(&["g", "main"]), m, Some(DefinitelyLost)));

        let two = entry("reachable, possible");
        assert_eq!(two.kinds(), [PossiblyLost, StillReachable]);
        assert!(two.covers(Some(StillReachable)) && !two.covers(Some(IndirectlyLost)));
        for all in [
            entry("all"),
            entry(""),
            entry("definite,indirect,possible,reachable"),
        ] {
            assert_eq!(all.kinds(), Kind::ALL);
            assert!(all.matches_leak(&st, m, None));
            assert!(Kind::ALL.iter().all(|k| all.covers(Some(*k))));
        }
        let none = entry("none");
        assert!(none.kinds().is_empty());
        assert!(!none.matches_leak(&st, m, Some(DefinitelyLost)));
        assert!(!none.matches_leak(&st, m, None));
        // The other formats apply to every kind.
        for text in ["suppress n fun:f\n", "leak:f\n"] {
            let e = one(text);
            assert_eq!(e.kinds(), Kind::ALL);
            assert!(e.matches_leak(&st, m, None) && e.matches_leak(&st, m, Some(StillReachable)));
        }
    }

    #[test]
    fn valgrind_errors() {
        let cases = [
            ("{\n n\n Memcheck:Leak\n fun:f\n", 1, "unterminated `{`"),
            (
                "# c\n{\n n\n Memcheck:Leak\n fun:f\n{\n m\n Memcheck:Leak\n fun:g\n}\n",
                2,
                "unterminated `{`",
            ),
            ("{\n n\n", 1, "unterminated `{`"),
            ("{\n n\n Memcheck:Cond\n fun:f\n", 1, "unterminated `{`"),
            ("{\n}\n", 2, "without a name"),
            ("{\n n\n}\n", 3, "no `TOOL:KIND` line"),
            (
                "{\n n\n fun:malloc\n}\n",
                3,
                "expected the `TOOL:KIND` line",
            ),
            (
                "{\n Memcheck:Leak\n fun:malloc\n fun:f\n}\n",
                3,
                "expected the `TOOL:KIND` line",
            ),
            ("{\n n\n Memcheck\n fun:f\n}\n", 3, "expected `TOOL:KIND`"),
            ("{\n n\n Memcheck:Leak\n}\n", 1, "no frame lines"),
            (
                "{\n n\n Memcheck:Leak\n fun:f\n bogus:x\n}\n",
                5,
                "unknown frame line `bogus:x`",
            ),
            (
                "{\n n\n Memcheck:Leak\n fun:\n}\n",
                4,
                "unknown frame line `fun:`",
            ),
            (
                "{\n n\n Memcheck:Leak\n fun:f\n match-leak-kinds: all\n}\n",
                5,
                "must come right after",
            ),
            (
                "{\n n\n Memcheck:Leak\n match-leak-kinds: sometimes\n fun:f\n}\n",
                4,
                "unknown leak kind `sometimes`",
            ),
            (
                "{\n n\n Memcheck:Leak\n fun:f\n}\nfun:g\n",
                6,
                "expected `{` to begin",
            ),
            (
                "{\n n\n Memcheck:Leak\n src:f.c:99999999999\n}\n",
                4,
                "unknown frame line",
            ),
        ];
        for (text, line, what) in cases {
            let e = error(text);
            assert!(e.starts_with(&format!("t.supp:{line}: ")), "{text:?}: {e}");
            assert!(e.contains(what), "{text:?}: {e}");
        }
    }

    fn vg(frames: &str) -> Suppression {
        one(&format!("{{\n   n\n   Memcheck:Leak\n{frames}}}\n"))
    }

    #[test]
    fn valgrind_prefix_matching() {
        let st = stack(&["leak_malloc", "helper", "main", "__libc_start_main"]);
        let m = |frames: &str, func| vg(frames).matches(&st, func);
        let malloc = Some(Func::Malloc);
        // As --gen-suppressions prints it: the allocator first, then a prefix.
        assert!(m("fun:malloc\nfun:leak_malloc\nfun:helper\n", malloc));
        assert!(m(
            "fun:malloc\nfun:leak_malloc\nfun:helper\nfun:main\nfun:__libc_start_main\n",
            malloc
        ));
        assert!(m("fun:malloc\n", malloc));
        // Order matters, and frames can't be skipped without `...`.
        assert!(!m("fun:malloc\nfun:helper\n", malloc));
        assert!(!m("fun:malloc\nfun:helper\nfun:leak_malloc\n", malloc));
        // Longer than the stack.
        assert!(!m(
            "fun:malloc\nfun:leak_malloc\nfun:helper\nfun:main\nfun:__libc_start_main\nfun:_start\n",
            malloc
        ));
        // `...` skips zero or more frames, the allocator's too.
        assert!(m("fun:malloc\n...\nfun:main\n", malloc));
        assert!(m("fun:malloc\n...\nfun:leak_malloc\n", malloc));
        assert!(m("...\nfun:main\n", malloc));
        assert!(m("...\nfun:malloc\n", malloc));
        assert!(m("...\n", malloc));
        assert!(m(
            "fun:malloc\n...\nfun:helper\n...\nfun:__libc_start_main\n...\n",
            malloc
        ));
        assert!(!m("fun:malloc\n...\nfun:nothere\n", malloc));
        assert!(!m("...\nfun:main\nfun:helper\n", malloc));
        // Globs.
        assert!(m("fun:*alloc\nfun:leak_?alloc\n", malloc));
        assert!(m("fun:*\nfun:*\nfun:*\n", malloc));
        // The allocator must be the right one.
        assert!(!m("fun:calloc\nfun:leak_malloc\n", malloc));
        assert!(m("fun:calloc\nfun:leak_malloc\n", Some(Func::Calloc)));
        // Unknown allocator: any allocator name.
        assert!(m("fun:calloc\nfun:leak_malloc\n", None));
        assert!(m("fun:_Znwm\nfun:leak_malloc\n", None));
        assert!(!m("fun:free\nfun:leak_malloc\n", None));
    }

    #[test]
    fn valgrind_synthetic_frame() {
        let st = stack(&["leak_malloc", "main"]);
        let m = |frames: &str, func| vg(frames).matches(&st, func);
        // Any obj: matches the allocator's frame (vgpreload_memcheck-*.so).
        assert!(m(
            "obj:/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so\nfun:leak_malloc\n",
            Some(Func::Malloc)
        ));
        assert!(m("obj:*\nfun:leak_malloc\n", Some(Func::Malloc)));
        assert!(m("obj:/usr/*\nfun:leak_malloc\n", Some(Func::Malloc)));
        assert!(m(
            "obj:/opt/vg/lib/valgrind/vgpreload_memcheck-arm64-linux.so\nfun:leak_malloc\n",
            Some(Func::Malloc)
        ));
        assert!(m("obj:*vgpreload*\nfun:leak_malloc\n", None));
        // ...but not one naming another library (tried at the caller instead).
        assert!(!m("obj:*/libfoo.so\nfun:leak_malloc\n", Some(Func::Malloc)));
        assert!(m("obj:/usr/bin/app\nfun:main\n", Some(Func::Malloc)));
        assert!(!m("fun:malloc\nobj:*/libfoo.so\n", Some(Func::Malloc)));
        assert!(m(
            "src:vg_replace_malloc.c:381\nfun:leak_malloc\n",
            Some(Func::Malloc)
        ));
        // Hand-written entries starting at the caller.
        assert!(m("fun:leak_malloc\nfun:main\n", Some(Func::Malloc)));
        assert!(m("fun:leak_*\n", None));
        // ...but not when the first pattern matched the allocator's frame:
        // valgrind would not match `fun:* fun:main` here either.
        assert!(!m("fun:*\nfun:main\n", Some(Func::Malloc)));
        assert!(m("fun:*\nfun:leak_malloc\nfun:main\n", Some(Func::Malloc)));
        // C++: valgrind names operator new by its mangled name.
        let cpp = vec![
            frame(
                Some("ns::Widget::make()"),
                Some("_ZN2ns6Widget4makeEv"),
                None,
            ),
            fun("main"),
        ];
        let s = vg("fun:_Znwm\nfun:_ZN2ns6Widget4makeEv\nfun:main\n");
        assert!(s.matches(&cpp, Some(Func::New)));
        assert!(!s.matches(&cpp, Some(Func::NewArray)));
        assert!(!s.matches(&cpp, Some(Func::Malloc)));
        assert!(s.matches(&cpp, None));
        assert!(
            vg("fun:operator new(unsigned long)\nfun:ns::Widget::make()\n")
                .matches(&cpp, Some(Func::New))
        );
        assert!(vg("fun:_Znam\nfun:_ZN2ns6*\n").matches(&cpp, Some(Func::NewArray)));
        // valgrind 3.19's names for the aligned allocators and reallocarray.
        let al = stack(&["leak_aligned", "main"]);
        let e = vg("fun:memalign\nfun:posix_memalign\nfun:leak_aligned\nfun:main\n");
        assert!(e.matches(&al, Some(Func::PosixMemalign)));
        assert!(!e.matches(&al, Some(Func::AlignedAlloc)));
        let e = vg("fun:memalign\nfun:leak_aligned\nfun:main\n");
        for f in [Func::AlignedAlloc, Func::Valloc, Func::Memalign] {
            assert!(e.matches(&al, Some(f)), "{f:?}");
        }
        assert!(!e.matches(&al, Some(Func::PosixMemalign)));
        assert!(
            vg("fun:memalign\n...\nfun:leak_aligned\n").matches(&al, Some(Func::PosixMemalign))
        );
        assert!(vg("fun:aligned_alloc\nfun:leak_aligned\n").matches(&al, Some(Func::AlignedAlloc)));
        let ra = stack(&["leak_reallocarray", "main"]);
        assert!(vg("fun:realloc\nfun:leak_reallocarray\n").matches(&ra, Some(Func::Reallocarray)));
        assert!(
            vg("fun:reallocarray\nfun:leak_reallocarray\n").matches(&ra, Some(Func::Reallocarray))
        );
        assert!(!vg("fun:malloc\nfun:leak_reallocarray\n").matches(&ra, Some(Func::Reallocarray)));
        // An empty stack: only the allocator.
        assert!(vg("fun:malloc\n").matches(&[], Some(Func::Malloc)));
        assert!(!vg("fun:malloc\nfun:f\n").matches(&[], Some(Func::Malloc)));
    }

    #[test]
    fn valgrind_frame_kinds() {
        let st = vec![
            Frame {
                module: Some("/usr/lib/x86_64-linux-gnu/libfoo.so.1".into()),
                line: Some(12),
                ..frame(Some("foo_alloc"), None, Some("/build/src/foo.c"))
            },
            bare(Some("/usr/lib/x86_64-linux-gnu/libbar.so")),
            bare(None),
            fun("main"),
        ];
        let m = |frames: &str| vg(frames).matches(&st, Some(Func::Malloc));
        // obj: the module's full path.
        assert!(m("fun:malloc\nobj:/usr/lib/x86_64-linux-gnu/libfoo.so.1\n"));
        assert!(m("fun:malloc\nobj:*/libfoo.so*\n"));
        assert!(!m("fun:malloc\nobj:libfoo.so.1\n"));
        // src: the basename, and the line if given.
        assert!(m("fun:malloc\nsrc:foo.c\n"));
        assert!(m("fun:malloc\nsrc:foo.c:12\n"));
        assert!(m("fun:malloc\nsrc:f*.c:12\n"));
        assert!(!m("fun:malloc\nsrc:foo.c:13\n"));
        assert!(!m("fun:malloc\nsrc:/build/src/foo.c\n"));
        // Frames without a function or a module are `???`.
        assert!(m(
            "fun:malloc\nfun:foo_alloc\nobj:*/libbar.so\nobj:*\nfun:main\n"
        ));
        assert!(m("fun:malloc\nfun:foo_alloc\nfun:*\nfun:???\nfun:main\n"));
        assert!(!m("fun:malloc\nfun:foo_alloc\nfun:*\nobj:/*\n"));
        assert!(!m("fun:malloc\nfun:foo_alloc\nsrc:*\n"));
    }
}
