//! Leak suppressions: which leaks `memtrace check` drops, read from files in
//! the three formats users already have.
//!
//! ## Formats (detected from a file's first line that is neither blank nor a `#` comment)
//! - **memtrace** (`suppress ...`): one suppression a line,
//!   `suppress NAME TERM...`; a term is `fun:GLOB` (the demangled function
//!   name, or the mangled one), `file:GLOB` (the source file's full path or
//!   its basename), `obj:GLOB` (the module's full path or its basename) or
//!   `max:SIZE` (a byte limit, digits with an optional `k`, `m` or `g`
//!   suffix for KiB, MiB, GiB; the caller applies it). It matches a stack
//!   when every fun/file/obj term matches some frame, anywhere, in any order.
//! - **LeakSanitizer** (`leak:PATTERN`): as compiler-rt's `TemplateMatch`,
//!   the pattern matches a frame's function name (demangled, or mangled),
//!   module path or source file path as a substring, anchored at the start by
//!   a leading `^` and at the end by a trailing `$`; `*` is a wildcard (and
//!   `?` an ordinary character). Other sanitizers' kinds (`race:`,
//!   `called_from_lib:`, `interceptor_via_fun:`, `src:`, `fun:` ...) are
//!   parsed and counted in [`SuppressionFile::ignored`] (LSan itself refuses
//!   a file holding them).
//! - **valgrind** (`{`): memcheck's entries as valgrind's manual documents
//!   them and `--gen-suppressions=all` prints them: `{`, a name, `TOOL:KIND`,
//!   an optional `match-leak-kinds:` line, frame lines (`fun:GLOB`, `obj:GLOB`,
//!   `src:FILE[:LINE]`, `...`), `}`; `#` comment lines anywhere. Only
//!   `Memcheck:Leak` entries apply; the others are counted in
//!   [`SuppressionFile::ignored`]. `match-leak-kinds:` applies as in
//!   valgrind (see [Leak kinds](#leak-kinds-valgrind) below). Frame patterns match
//!   the stack as a prefix from the innermost frame on (outer frames left
//!   over do not matter); `...` matches zero or more frames. `fun:` matches
//!   the mangled or the demangled name, `obj:` the module's full path, `src:`
//!   the source file's basename (and line); a frame without a function or a
//!   module is `???` to `fun:` and `obj:`, as in valgrind.
//!
//! ## Leak kinds (valgrind)
//! `memtrace run` classifies the blocks live at exit by reachability
//! ([`crate::analysis::reach`]): definitely, indirectly, possibly lost, still
//! reachable. An entry with `match-leak-kinds: K1,K2` (or `all`, or `none`)
//! applies only to the blocks of those kinds ([`Suppression::covers`]): a
//! leak site whose blocks are of several kinds is suppressed kind by kind,
//! the other kinds still count (as in valgrind, where each kind is a loss
//! record of its own). Without the line, an entry applies to every kind; the
//! other formats always do. A leak whose blocks were not classified
//! (`memtrace run --no-reachability`, a plain `LD_PRELOAD` log, a failed
//! scan) could be of any kind: only an entry that applies to every kind (no
//! line, or `all`) suppresses it, so that a `match-leak-kinds: reachable`
//! entry written for a cache never hides a leak that may be lost. The
//! gate counts such leaks whole, and says which entries could not apply.
//!
//! ## The allocator's frame (valgrind)
//! valgrind's stacks begin in its replacement of the allocator (`malloc`,
//! `_Znwm`...), memtrace's at the allocator's caller. A valgrind entry is
//! therefore matched against the stack with a synthetic allocator frame in
//! front, named after the leak's [`Func`] (any allocator when there is none);
//! an `obj:` pattern matches that frame when it can name valgrind's
//! replacement library (`*`, `*/vgpreload_memcheck-amd64-linux.so`, but not
//! `*/libfoo.so`), and so does `src:vg_replace_malloc.c`. Some
//! valgrind versions implement one allocator with another (valgrind 3.19
//! shows `aligned_alloc` and `valloc` as `memalign`, `posix_memalign` as
//! `memalign` then `posix_memalign`, `reallocarray` as `realloc`), so each
//! allocator has a few alternative synthetic prologues. An entry whose first
//! pattern matches no synthetic frame is also tried against the stack alone,
//! so hand-written entries that start at the caller work.
//!
//! ## Globs
//! [`glob`]: `*` matches any run of characters (`/` and `:` included), `?`
//! exactly one, anchored at both ends; no escapes. Matching is the two-pointer
//! algorithm, O(pattern x text) at worst: no exponential backtracking.

use std::fmt::{Display, Write as _};
use std::path::{Path, PathBuf};

use memtrace_format::Func;

use crate::analysis::reach::Kind;
use crate::analysis::symbolize::Frame;

/// The format a suppression was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// memtrace's own: `suppress NAME TERM...`.
    Memtrace,
    /// LeakSanitizer's: `leak:PATTERN`.
    Lsan,
    /// valgrind memcheck's: `{ NAME Memcheck:Leak frames... }`.
    Valgrind,
}

impl Syntax {
    /// `"memtrace"`, `"lsan"` or `"valgrind"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Syntax::Memtrace => "memtrace",
            Syntax::Lsan => "lsan",
            Syntax::Valgrind => "valgrind",
        }
    }
}

/// One suppression, from any of the three formats.
#[derive(Clone, Debug)]
pub struct Suppression {
    /// Its name: memtrace's NAME, valgrind's name line, LSan's pattern.
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// 1-based line where the entry starts (valgrind: the `{`).
    pub line: usize,
    /// The format it was written in.
    pub syntax: Syntax,
    /// Byte limit (memtrace's `max:` only).
    pub limit: Option<u64>,
    rule: Rule,
}

/// What a suppression matches.
#[derive(Clone, Debug)]
enum Rule {
    /// memtrace: every term matches some frame.
    Terms(Vec<Term>),
    /// LSan: the glob (anchors already turned into `*`, `?` literal) matches
    /// some frame's function, module or file.
    Lsan(String),
    /// valgrind: frame patterns, innermost first, matching a prefix of the
    /// stack behind the synthetic allocator frame.
    Valgrind {
        /// `match-leak-kinds:` as written (empty when absent).
        leak_kinds: Vec<String>,
        /// The kinds it applies to (every kind when the line is absent).
        kinds: Vec<Kind>,
        frames: Vec<VgFrame>,
    },
}

#[derive(Clone, Debug)]
enum Term {
    Fun(String),
    File(String),
    Obj(String),
}

#[derive(Clone, Debug)]
enum VgFrame {
    Fun(String),
    Obj(String),
    Src { file: String, line: Option<u32> },
    Dots,
}

impl Suppression {
    /// Whether the suppression matches a leak's stack (innermost frame first)
    /// made by `func` (the allocating function; only valgrind entries use it).
    pub fn matches(&self, stack: &[Frame], func: Option<Func>) -> bool {
        match &self.rule {
            Rule::Terms(terms) => terms.iter().all(|t| stack.iter().any(|f| t.matches(f))),
            Rule::Lsan(pattern) => stack.iter().any(|f| {
                [
                    f.function.as_deref(),
                    f.mangled.as_deref(),
                    f.module.as_deref(),
                    f.file.as_deref(),
                ]
                .into_iter()
                .flatten()
                .any(|s| wildcard(pattern, s, false))
            }),
            Rule::Valgrind { frames, .. } => valgrind_matches(frames, stack, func),
        }
    }

    /// valgrind's `match-leak-kinds:` list as written (empty when absent, and
    /// for the other formats), for messages; [`Suppression::kinds`] is what
    /// it means.
    pub fn leak_kinds(&self) -> &[String] {
        match &self.rule {
            Rule::Valgrind { leak_kinds, .. } => leak_kinds,
            _ => &[],
        }
    }

    /// The leak kinds it applies to, in the order of [`Kind::ALL`]: those of
    /// valgrind's `match-leak-kinds:`; every kind when the line is absent,
    /// and for the other formats.
    pub fn kinds(&self) -> &[Kind] {
        match &self.rule {
            Rule::Valgrind { kinds, .. } => kinds,
            _ => &Kind::ALL,
        }
    }

    /// Whether it applies to blocks of `kind`; `None`, blocks that were not
    /// classified, which could be of any kind: only when it applies to every
    /// kind (see the module docs).
    pub fn covers(&self, kind: Option<Kind>) -> bool {
        match kind {
            Some(k) => self.kinds().contains(&k),
            None => self.kinds().len() == Kind::ALL.len(),
        }
    }

    /// Whether it suppresses the blocks of `kind` (`None`: not classified)
    /// of a leak with this stack made by `func`: [`Suppression::covers`] and
    /// [`Suppression::matches`].
    pub fn matches_leak(&self, stack: &[Frame], func: Option<Func>, kind: Option<Kind>) -> bool {
        self.covers(kind) && self.matches(stack, func)
    }
}

impl Term {
    fn matches(&self, f: &Frame) -> bool {
        match self {
            Term::Fun(g) => fun_matches(g, f),
            Term::File(g) => f
                .file
                .as_deref()
                .is_some_and(|p| glob(g, p) || glob(g, basename(p))),
            Term::Obj(g) => f
                .module
                .as_deref()
                .is_some_and(|p| glob(g, p) || glob(g, basename(p))),
        }
    }
}

/// The demangled or the mangled name matches, or the public name of a C
/// library function that debug information names by an internal alias
/// (`__GI___strdup`, `__strdup`: `strdup`, as valgrind, which replaces it,
/// names it).
fn fun_matches(g: &str, f: &Frame) -> bool {
    f.function.as_deref().is_some_and(|n| {
        glob(g, n) || {
            let public = n.strip_prefix("__GI_").unwrap_or(n).trim_start_matches('_');
            public.len() != n.len() && !public.is_empty() && glob(g, public)
        }
    }) || f.mangled.as_deref().is_some_and(|n| glob(g, n))
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// One file's suppressions.
#[derive(Clone, Debug, Default)]
pub struct SuppressionFile {
    /// The file.
    pub path: PathBuf,
    /// Its format; `None` when it holds no entry at all (only comments).
    pub syntax: Option<Syntax>,
    /// The suppressions that apply to leaks, in file order.
    pub entries: Vec<Suppression>,
    /// Entries parsed but not for leaks (other sanitizers' kinds, valgrind
    /// entries of another tool or kind).
    pub ignored: usize,
}

/// Reads and parses one file (format auto-detected). Error strings name the
/// file and line.
pub fn load(path: &Path) -> Result<SuppressionFile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&String::from_utf8_lossy(&bytes), path)
}

/// Parses text as if read from `path`.
pub fn parse(text: &str, path: &Path) -> Result<SuppressionFile, String> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut file = SuppressionFile {
        path: path.to_path_buf(),
        ..SuppressionFile::default()
    };
    let Some(&(n, first)) = lines.first() else {
        return Ok(file);
    };
    let syntax = detect(first).ok_or_else(|| {
        at(
            path,
            n,
            format_args!(
                "`{first}` starts no known suppression format; accepted: memtrace's \
                 (`suppress NAME fun:GLOB...`), LeakSanitizer's (`leak:PATTERN`) and \
                 valgrind's (`{{` NAME, `Memcheck:Leak`, frame lines, `}}`)"
            ),
        )
    })?;
    file.syntax = Some(syntax);
    match syntax {
        Syntax::Memtrace => parse_memtrace(&lines, &mut file)?,
        Syntax::Lsan => parse_lsan(&lines, &mut file)?,
        Syntax::Valgrind => parse_valgrind(&lines, &mut file)?,
    }
    Ok(file)
}

/// `path:line: msg`.
fn at(path: &Path, line: usize, msg: impl Display) -> String {
    format!("{}:{line}: {msg}", path.display())
}

/// Kinds of sanitizer suppression and ignore-list lines: `leak` applies, the
/// others are parsed and ignored (ThreadSanitizer, AddressSanitizer,
/// UndefinedBehaviorSanitizer, and the special-case lists' `src:`/`fun:`).
const LSAN_KINDS: &[&str] = &[
    "leak",
    "race",
    "race_top",
    "mutex",
    "thread",
    "signal",
    "deadlock",
    "called_from_lib",
    "interceptor_name",
    "interceptor_via_fun",
    "interceptor_via_lib",
    "odr_violation",
    "src",
    "fun",
    "global",
    "type",
    "mainfile",
    "alignment",
    "bool",
    "bounds",
    "enum",
    "float-cast-overflow",
    "float-divide-by-zero",
    "function",
    "implicit-conversion",
    "integer-divide-by-zero",
    "nonnull-attribute",
    "null",
    "object-size",
    "pointer-overflow",
    "return",
    "returns-nonnull-attribute",
    "shift",
    "shift-base",
    "shift-exponent",
    "signed-integer-overflow",
    "unreachable",
    "unsigned-integer-overflow",
    "vla-bound",
    "vptr",
];

fn detect(line: &str) -> Option<Syntax> {
    if line.starts_with('{') {
        return Some(Syntax::Valgrind);
    }
    if line.split_whitespace().next() == Some("suppress") {
        return Some(Syntax::Memtrace);
    }
    let (kind, _) = line.split_once(':')?;
    LSAN_KINDS.contains(&kind).then_some(Syntax::Lsan)
}

fn parse_memtrace(lines: &[(usize, &str)], file: &mut SuppressionFile) -> Result<(), String> {
    let path = file.path.clone();
    for &(n, l) in lines {
        let mut words = l.split_whitespace();
        if words.next() != Some("suppress") {
            return Err(at(
                &path,
                n,
                format_args!("expected `suppress NAME TERM...` (memtrace format), found `{l}`"),
            ));
        }
        let Some(name) = words.next() else {
            return Err(at(
                &path,
                n,
                "`suppress` needs a NAME and at least one fun:, file: or obj: term",
            ));
        };
        if ["fun:", "file:", "obj:", "max:"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            return Err(at(
                &path,
                n,
                format_args!(
                    "missing NAME: the word after `suppress` is the suppression's name, \
                     found the term `{name}`"
                ),
            ));
        }
        let mut terms = Vec::new();
        let mut limit = None;
        for w in words {
            let Some((kind, value)) = w.split_once(':') else {
                return Err(at(
                    &path,
                    n,
                    format_args!(
                        "unknown term `{w}`: expected fun:GLOB, file:GLOB, obj:GLOB or max:SIZE"
                    ),
                ));
            };
            if value.is_empty() {
                return Err(at(&path, n, format_args!("`{w}` has an empty pattern")));
            }
            match kind {
                "fun" => terms.push(Term::Fun(value.to_string())),
                "file" => terms.push(Term::File(value.to_string())),
                "obj" => terms.push(Term::Obj(value.to_string())),
                "max" => {
                    if limit.is_some() {
                        return Err(at(&path, n, "more than one max: term"));
                    }
                    limit = Some(parse_size(value).ok_or_else(|| {
                        at(
                            &path,
                            n,
                            format_args!(
                                "bad size in `{w}`: expected digits with an optional k, m or g \
                                 suffix (KiB, MiB, GiB)"
                            ),
                        )
                    })?);
                }
                _ => {
                    return Err(at(
                        &path,
                        n,
                        format_args!(
                            "unknown term `{w}`: expected fun:GLOB, file:GLOB, obj:GLOB or \
                             max:SIZE"
                        ),
                    ));
                }
            }
        }
        if terms.is_empty() {
            return Err(at(
                &path,
                n,
                format_args!("suppression `{name}` has no fun:, file: or obj: term"),
            ));
        }
        file.entries.push(Suppression {
            name: name.to_string(),
            file: path.clone(),
            line: n,
            syntax: Syntax::Memtrace,
            limit,
            rule: Rule::Terms(terms),
        });
    }
    Ok(())
}

/// A `max:` size: digits with an optional `k`/`m`/`g` suffix (KiB, MiB, GiB), any case.
fn parse_size(s: &str) -> Option<u64> {
    crate::units::parse_size(s).ok()
}

fn parse_lsan(lines: &[(usize, &str)], file: &mut SuppressionFile) -> Result<(), String> {
    let path = file.path.clone();
    for &(n, l) in lines {
        let Some((kind, pattern)) = l.split_once(':') else {
            return Err(at(
                &path,
                n,
                format_args!("expected `leak:PATTERN` (LeakSanitizer format), found `{l}`"),
            ));
        };
        if kind != "leak" {
            if LSAN_KINDS.contains(&kind) {
                file.ignored += 1;
                continue;
            }
            return Err(at(
                &path,
                n,
                format_args!(
                    "unknown suppression kind `{kind}:` (LeakSanitizer format: `leak:PATTERN`; \
                     other sanitizers' kinds such as `race:` or `called_from_lib:` are ignored)"
                ),
            ));
        }
        let pattern = pattern.trim();
        let (start, core) = match pattern.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let (end, core) = match core.strip_suffix('$') {
            Some(rest) => (true, rest),
            None => (false, core),
        };
        if core.is_empty() {
            return Err(at(&path, n, format_args!("`{l}` has an empty pattern")));
        }
        let glob = format!(
            "{}{core}{}",
            if start { "" } else { "*" },
            if end { "" } else { "*" }
        );
        file.entries.push(Suppression {
            name: pattern.to_string(),
            file: path.clone(),
            line: n,
            syntax: Syntax::Lsan,
            limit: None,
            rule: Rule::Lsan(glob),
        });
    }
    Ok(())
}

fn parse_valgrind(lines: &[(usize, &str)], file: &mut SuppressionFile) -> Result<(), String> {
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
        let unterminated = || {
            at(
                &path,
                start,
                "unterminated `{`: the suppression has no closing `}`",
            )
        };
        // A `{` before the `}` means the entry opened at `start` was never closed.
        fn take<'a>(
            it: &mut impl Iterator<Item = (usize, &'a str)>,
            unterminated: &dyn Fn() -> String,
        ) -> Result<(usize, &'a str), String> {
            match it.next() {
                Some((_, "{")) | None => Err(unterminated()),
                Some(x) => Ok(x),
            }
        }
        let next = |it: &mut _| take(it, &unterminated);
        let (n, name) = next(&mut it)?;
        if name == "}" {
            return Err(at(
                &path,
                n,
                "suppression without a name (the line after `{` is its name)",
            ));
        }
        let (n, kind_line) = next(&mut it)?;
        if kind_line == "}" {
            return Err(at(
                &path,
                n,
                format_args!(
                    "suppression `{name}` has no `TOOL:KIND` line (such as `Memcheck:Leak`)"
                ),
            ));
        }
        if parse_frame(kind_line).is_some() || kind_line.starts_with("match-leak-kinds:") {
            return Err(at(
                &path,
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
                    &path,
                    n,
                    format_args!(
                        "expected `TOOL:KIND` (such as `Memcheck:Leak`), found `{kind_line}`"
                    ),
                )
            })?;
        let leak = tools.split(',').any(|t| t.trim() == "Memcheck") && kind.trim() == "Leak";
        if !leak {
            // Another tool's or kind's entry: its body (which may hold extra
            // lines, like `Memcheck:Param`'s) is not ours to check.
            while next(&mut it)?.1 != "}" {}
            file.ignored += 1;
            continue;
        }
        let mut leak_kinds = Vec::new();
        let mut frames = Vec::new();
        loop {
            let (n, l) = next(&mut it)?;
            if l == "}" {
                break;
            }
            if let Some(list) = l.strip_prefix("match-leak-kinds:") {
                if !frames.is_empty() || !leak_kinds.is_empty() {
                    return Err(at(
                        &path,
                        n,
                        "`match-leak-kinds:` must come right after the `Memcheck:Leak` line",
                    ));
                }
                for k in list.split(',').map(str::trim) {
                    if Kind::parse_list(k).is_err() {
                        return Err(at(
                            &path,
                            n,
                            format_args!(
                                "unknown leak kind `{k}` (expected definite, indirect, \
                                 possible, reachable, all or none, separated by commas)"
                            ),
                        ));
                    }
                    leak_kinds.push(k.to_string());
                }
                continue;
            }
            frames.push(parse_frame(l).ok_or_else(|| {
                at(
                    &path,
                    n,
                    format_args!(
                        "unknown frame line `{l}` (expected fun:NAME, obj:PATH, \
                         src:FILE[:LINE] or `...`)"
                    ),
                )
            })?);
        }
        if frames.is_empty() {
            return Err(at(
                &path,
                start,
                format_args!("suppression `{name}` has no frame lines"),
            ));
        }
        let kinds = if leak_kinds.is_empty() {
            Kind::ALL.to_vec()
        } else {
            Kind::parse_list(&leak_kinds.join(","))
                .map_err(|e| at(&path, start, format_args!("match-leak-kinds: {e}")))?
        };
        file.entries.push(Suppression {
            name: name.to_string(),
            file: path.clone(),
            line: start,
            syntax: Syntax::Valgrind,
            limit: None,
            rule: Rule::Valgrind {
                leak_kinds,
                kinds,
                frames,
            },
        });
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

/// Names of one synthetic allocator frame: valgrind's replacement function,
/// mangled and demangled.
type Names = &'static [&'static str];
/// Synthetic frames put in front of the stack, innermost first.
type Prologue = &'static [Names];

const MALLOC: Names = &["malloc"];
const CALLOC: Names = &["calloc"];
const REALLOC: Names = &["realloc"];
const REALLOCARRAY: Names = &["reallocarray"];
const POSIX_MEMALIGN: Names = &["posix_memalign"];
const ALIGNED_ALLOC: Names = &["aligned_alloc"];
const MEMALIGN: Names = &["memalign"];
const VALLOC: Names = &["valloc"];
const PVALLOC: Names = &["pvalloc"];
const NEW: Names = &[
    "_Znwm",
    "operator new(unsigned long)",
    "_ZnwmRKSt9nothrow_t",
    "operator new(unsigned long, std::nothrow_t const&)",
    "_ZnwmSt11align_val_t",
    "operator new(unsigned long, std::align_val_t)",
    "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "operator new(unsigned long, std::align_val_t, std::nothrow_t const&)",
    "__builtin_new",
];
const NEW_ARRAY: Names = &[
    "_Znam",
    "operator new[](unsigned long)",
    "_ZnamRKSt9nothrow_t",
    "operator new[](unsigned long, std::nothrow_t const&)",
    "_ZnamSt11align_val_t",
    "operator new[](unsigned long, std::align_val_t)",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
    "operator new[](unsigned long, std::align_val_t, std::nothrow_t const&)",
    "__builtin_vec_new",
];
const MMAP: Names = &["mmap", "mmap64", "mremap"];
const BRK: Names = &["brk", "sbrk"];
const FREE: Names = &["free"];
const MUNMAP: Names = &["munmap"];
const DELETE: Names = &["_ZdlPv", "operator delete(void*)"];
const DELETE_ARRAY: Names = &["_ZdaPv", "operator delete[](void*)"];

/// The file names of valgrind's replacement library (memcheck's preload),
/// on the platforms valgrind supports on Linux.
const VGPRELOAD: &[&str] = &[
    "vgpreload_memcheck-amd64-linux.so",
    "vgpreload_memcheck-x86-linux.so",
    "vgpreload_memcheck-arm64-linux.so",
    "vgpreload_memcheck-arm-linux.so",
    "vgpreload_memcheck-ppc64le-linux.so",
    "vgpreload_memcheck-ppc64be-linux.so",
    "vgpreload_memcheck-ppc32-linux.so",
    "vgpreload_memcheck-s390x-linux.so",
    "vgpreload_memcheck-mips64-linux.so",
    "vgpreload_memcheck-mips32-linux.so",
    "vgpreload_memcheck-nanomips-linux.so",
    "vgpreload_memcheck-riscv64-linux.so",
];

/// The allocating functions, for a leak whose function is unknown.
const ALLOCATORS: &[Func] = &[
    Func::Malloc,
    Func::Calloc,
    Func::Realloc,
    Func::Reallocarray,
    Func::PosixMemalign,
    Func::AlignedAlloc,
    Func::Memalign,
    Func::Valloc,
    Func::Pvalloc,
    Func::New,
    Func::NewArray,
    Func::Mmap,
    Func::Mmap64,
    Func::Mremap,
];

/// The synthetic frames valgrind's stack has in front of memtrace's, one
/// alternative per behaviour of some valgrind version: the function's own
/// replacement first, then the ones valgrind 3.19 shows (its `valloc`,
/// `aligned_alloc` and `posix_memalign` call its `memalign`, and glibc's
/// `reallocarray` tail-calls `realloc`).
fn prologues(func: Func) -> &'static [Prologue] {
    match func {
        Func::Malloc => &[&[MALLOC]],
        Func::Calloc => &[&[CALLOC]],
        Func::Realloc => &[&[REALLOC], &[MALLOC, REALLOC]],
        Func::Reallocarray => &[&[REALLOCARRAY], &[REALLOC], &[REALLOC, REALLOCARRAY]],
        Func::PosixMemalign => &[&[POSIX_MEMALIGN], &[MEMALIGN, POSIX_MEMALIGN]],
        Func::AlignedAlloc => &[&[ALIGNED_ALLOC], &[MEMALIGN], &[MEMALIGN, ALIGNED_ALLOC]],
        Func::Memalign => &[&[MEMALIGN]],
        Func::Valloc => &[&[VALLOC], &[MEMALIGN], &[MEMALIGN, VALLOC]],
        Func::Pvalloc => &[&[PVALLOC], &[MEMALIGN, PVALLOC]],
        Func::New => &[&[NEW]],
        Func::NewArray => &[&[NEW_ARRAY]],
        Func::Mmap | Func::Mmap64 | Func::Mremap => &[&[MMAP]],
        Func::Brk | Func::Sbrk => &[&[BRK]],
        Func::Free => &[&[FREE]],
        Func::Munmap => &[&[MUNMAP]],
        Func::Delete => &[&[DELETE]],
        Func::DeleteArray => &[&[DELETE_ARRAY]],
    }
}

/// The name valgrind gives the allocator's frame in its suppressions
/// (`malloc` when unknown).
fn valgrind_name(func: Option<Func>) -> &'static str {
    func.map_or("malloc", |f| prologues(f)[0][0][0])
}

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

fn valgrind_matches(pats: &[VgFrame], stack: &[Frame], func: Option<Func>) -> bool {
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

// ---- globs -----------------------------------------------------------------

/// Glob match: `*` any run, `?` one char, anchored; linear-time-ish (no
/// exponential backtracking: the classic two-pointer star algorithm).
pub fn glob(pattern: &str, s: &str) -> bool {
    wildcard(pattern, s, true)
}

/// `*` any run; `?` one char when `question` (else an ordinary character).
fn wildcard(pattern: &str, s: &str, question: bool) -> bool {
    // Bytes are exact unless `?` must match one (multi-byte) character:
    // a literal UTF-8 sequence can only match at a character boundary.
    if question && pattern.contains('?') && !s.is_ascii() {
        let p: Vec<char> = pattern.chars().collect();
        let s: Vec<char> = s.chars().collect();
        two_pointer(&p, &s, '*', Some('?'))
    } else {
        two_pointer(
            pattern.as_bytes(),
            s.as_bytes(),
            b'*',
            question.then_some(b'?'),
        )
    }
}

/// The classic wildcard matcher: on a mismatch, back up to just after the
/// last `*` and let it swallow one more character. O(|p| x |s|) at worst.
fn two_pointer<T: Copy + PartialEq>(p: &[T], s: &[T], star: T, any: Option<T>) -> bool {
    let (mut i, mut j) = (0, 0);
    // (pattern index after the last star, text index it resumes from)
    let mut back: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && p[i] == star {
            i += 1;
            back = Some((i, j));
        } else if i < p.len() && (p[i] == s[j] || Some(p[i]) == any) {
            i += 1;
            j += 1;
        } else if let Some((bi, bj)) = back {
            i = bi;
            j = bj + 1;
            back = Some((bi, j));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == star)
}

// ---- generation ------------------------------------------------------------

/// Whitespace in a name or pattern of the one-line formats, made one word.
fn one_word(s: &str, with: char) -> String {
    s.chars()
        .map(|c| if c.is_whitespace() { with } else { c })
        .collect()
}

fn named(n: Option<&str>) -> Option<&str> {
    n.filter(|n| !n.trim().is_empty())
}

/// A memtrace-format entry: `suppress NAME fun:F1 fun:F2 fun:F3` with the
/// demangled names of the (up to) 3 innermost frames that have one, each
/// whitespace character replaced by `?`; without any function, `obj:` of
/// the innermost module (else `file:` of the innermost source file, else a
/// comment saying there is nothing to suppress by). Whitespace in NAME
/// becomes `_`.
pub fn gen_memtrace(name: &str, stack: &[Frame]) -> String {
    let name = match one_word(name.trim(), '_') {
        n if n.is_empty() => "leak".to_string(),
        n => n,
    };
    let funs: Vec<String> = stack
        .iter()
        .filter_map(|f| named(f.function.as_deref()))
        .take(3)
        .map(|f| format!(" fun:{}", one_word(f, '?')))
        .collect();
    if !funs.is_empty() {
        return format!("suppress {name}{}\n", funs.concat());
    }
    if let Some(m) = stack.iter().find_map(|f| named(f.module.as_deref())) {
        return format!("suppress {name} obj:{}\n", one_word(m, '?'));
    }
    if let Some(p) = stack.iter().find_map(|f| named(f.file.as_deref())) {
        return format!("suppress {name} file:{}\n", one_word(p, '?'));
    }
    format!("# {name}: no frame has a function, module or source file to suppress by\n")
}

/// A valgrind entry as `valgrind --gen-suppressions=all` prints it: `{`,
/// the name, `Memcheck:Leak`, `match-leak-kinds:` with `kinds` (the kinds of
/// the leak's blocks, `definite,indirect`; `all` when `None` or when they
/// are every kind, as for a leak that was not classified), the allocator's frame
/// (`fun:malloc`, `fun:_Znwm`...; `malloc` when `func` is `None`), then the
/// stack's frames (23 at most, so 24 with the allocator's, valgrind's limit;
/// inlined ones included): `fun:` with the mangled name (else the demangled
/// one), else `obj:` with the module, else `obj:*` (valgrind's line for a
/// frame it knows nothing about); `}`.
pub fn gen_valgrind(
    name: &str,
    stack: &[Frame],
    func: Option<Func>,
    kinds: Option<&[Kind]>,
) -> String {
    let name = match one_word(name.trim(), ' ') {
        n if n.is_empty() || n == "{" || n == "}" => "<insert_a_suppression_name_here>".into(),
        n => n,
    };
    let kinds = match kinds {
        Some(k) if !k.is_empty() && Kind::ALL.iter().any(|a| !k.contains(a)) => {
            let names: Vec<&str> = Kind::ALL
                .iter()
                .filter(|a| k.contains(a))
                .map(|a| a.as_str())
                .collect();
            names.join(",")
        }
        _ => "all".into(),
    };
    let mut s = format!(
        "{{\n   {name}\n   Memcheck:Leak\n   match-leak-kinds: {kinds}\n   fun:{}\n",
        valgrind_name(func)
    );
    for f in stack.iter().take(23) {
        if let Some(n) = named(f.mangled.as_deref()).or(named(f.function.as_deref())) {
            let _ = writeln!(s, "   fun:{}", n.trim());
        } else if let Some(m) = named(f.module.as_deref()) {
            let _ = writeln!(s, "   obj:{}", m.trim());
        } else {
            s.push_str("   obj:*\n");
        }
    }
    s.push_str("}\n");
    s
}

/// A LeakSanitizer entry: `leak:FUNCTION` with the innermost function's
/// demangled name, else `leak:MODULE` with the innermost module's basename
/// (else the innermost source file's basename, else a comment).
pub fn gen_lsan(stack: &[Frame]) -> String {
    if let Some(f) = stack.iter().find_map(|f| named(f.function.as_deref())) {
        return format!("leak:{}\n", f.trim());
    }
    if let Some(m) = stack.iter().find_map(|f| named(f.module.as_deref())) {
        return format!("leak:{}\n", basename(m.trim()));
    }
    if let Some(p) = stack.iter().find_map(|f| named(f.file.as_deref())) {
        return format!("leak:{}\n", basename(p.trim()));
    }
    "# no frame has a function, module or source file to suppress by\n".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: Option<&str>, mangled: Option<&str>, file: Option<&str>) -> Frame {
        Frame {
            function: function.map(Into::into),
            mangled: mangled.map(Into::into),
            file: file.map(Into::into),
            line: file.map(|_| 10),
            module: Some("/usr/bin/app".into()),
            address: 0x1000,
            inlined: false,
        }
    }

    fn fun(name: &str) -> Frame {
        frame(Some(name), None, Some(&format!("/src/{name}.c")))
    }

    fn bare(module: Option<&str>) -> Frame {
        Frame {
            function: None,
            mangled: None,
            file: None,
            line: None,
            module: module.map(Into::into),
            address: 0x2000,
            inlined: false,
        }
    }

    fn stack(names: &[&str]) -> Vec<Frame> {
        names.iter().map(|n| fun(n)).collect()
    }

    fn p(text: &str) -> SuppressionFile {
        parse(text, Path::new("t.supp")).unwrap()
    }

    fn one(text: &str) -> Suppression {
        let f = p(text);
        assert_eq!(f.entries.len(), 1, "{text}");
        f.entries.into_iter().next().unwrap()
    }

    fn error(text: &str) -> String {
        parse(text, Path::new("t.supp")).unwrap_err()
    }

    #[test]
    fn glob_basics() {
        assert!(glob("abc", "abc"));
        assert!(!glob("abc", "abcd"));
        assert!(!glob("abc", "xabc"));
        assert!(glob("*", ""));
        assert!(glob("*", "anything/at:all"));
        assert!(glob("a*", "a"));
        assert!(glob("a*", "abc/def"));
        assert!(glob("*c", "abc"));
        assert!(!glob("*c", "abcd"));
        assert!(glob("*b*", "abc"));
        assert!(glob("a*b*c", "a__b__b__c"));
        assert!(!glob("a*b*c", "a__c__b"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("?", "é"));
        assert!(glob("a?c", "aéc"));
        assert!(glob("*é*", "caféine"));
        assert!(glob("ns::*::make", "ns::Widget::make"));
        assert!(glob("*/lib?.so", "/usr/lib/libm.so"));
        assert!(!glob("", "a"));
        assert!(glob("", ""));
        assert!(glob("**", "x"));
    }

    #[test]
    fn glob_no_blowup() {
        let s = "a".repeat(100_000);
        let t = std::time::Instant::now();
        assert!(!glob("a*a*a*a*a*b", &s));
        assert!(glob("a*a*a*a*a*", &s));
        assert!(!glob("*a*a*a*a*a*b*", &s));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn lsan_question_mark_is_literal() {
        assert!(!wildcard("a?c", "abc", false));
        assert!(wildcard("a?c", "a?c", false));
        assert!(wildcard("*b*", "abc", false));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("2m"), Some(2 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size("4kb"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999999999999"), None);
        assert_eq!(parse_size("17179869184g"), None);
    }

    #[test]
    fn detection() {
        assert_eq!(p("").syntax, None);
        assert_eq!(p("# only\n\n  # comments\n").syntax, None);
        assert_eq!(
            p("# c\n\nsuppress a fun:x\n").syntax,
            Some(Syntax::Memtrace)
        );
        assert_eq!(p("\n# c\nleak:x\n").syntax, Some(Syntax::Lsan));
        assert_eq!(p("race:x\nleak:y\n").syntax, Some(Syntax::Lsan));
        assert_eq!(
            p("{\n n\n Memcheck:Leak\n fun:f\n}\n").syntax,
            Some(Syntax::Valgrind)
        );
        let e = error("# header\n\nhello world\n");
        assert!(e.starts_with("t.supp:3: "), "{e}");
        assert!(
            e.contains("memtrace") && e.contains("LeakSanitizer") && e.contains("valgrind"),
            "{e}"
        );
        assert!(error("foo:bar\n").starts_with("t.supp:1: "));
        assert_eq!(Syntax::Memtrace.as_str(), "memtrace");
        assert_eq!(Syntax::Lsan.as_str(), "lsan");
        assert_eq!(Syntax::Valgrind.as_str(), "valgrind");
    }

    #[test]
    fn load_reads_a_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.supp");
        std::fs::write(&path, "# x\nsuppress a fun:f\n").unwrap();
        let f = load(&path).unwrap();
        assert_eq!(f.path, path);
        assert_eq!(f.entries[0].file, path);
        assert_eq!(f.entries[0].line, 2);
        let missing = dir.path().join("missing.supp");
        let e = load(&missing).unwrap_err();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
        std::fs::write(&path, "suppress a fun:f\nbad line\n").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.starts_with(&format!("{}:2: ", path.display())), "{e}");
    }

    #[test]
    fn memtrace_parse() {
        let f = p(
            "# comment\n\nsuppress one fun:f\n  suppress two\tfun:g file:*.c obj:libx.so max:4k  \r\n",
        );
        assert_eq!(f.syntax, Some(Syntax::Memtrace));
        assert_eq!(f.ignored, 0);
        assert_eq!(f.entries.len(), 2);
        assert_eq!(f.entries[0].name, "one");
        assert_eq!(f.entries[0].line, 3);
        assert_eq!(f.entries[0].limit, None);
        assert_eq!(f.entries[0].syntax, Syntax::Memtrace);
        assert_eq!(f.entries[1].name, "two");
        assert_eq!(f.entries[1].line, 4);
        assert_eq!(f.entries[1].limit, Some(4096));
        assert!(f.entries[1].leak_kinds().is_empty());
    }

    #[test]
    fn memtrace_errors() {
        let cases = [
            ("suppress a fun:f\nsuppress\n", 2, "needs a NAME"),
            ("suppress fun:f\n", 1, "missing NAME"),
            ("suppress a\n", 1, "no fun:, file: or obj: term"),
            ("suppress a max:4k\n", 1, "no fun:, file: or obj: term"),
            (
                "suppress a fun:f\n\nsuppress b bogus:x\n",
                3,
                "unknown term `bogus:x`",
            ),
            ("suppress a f\n", 1, "unknown term `f`"),
            ("suppress a fun:\n", 1, "empty pattern"),
            ("suppress a fun:f max:4x\n", 1, "bad size"),
            ("suppress a fun:f max:1 max:2\n", 1, "more than one max:"),
            (
                "suppress a fun:f\nleak:x\n",
                2,
                "expected `suppress NAME TERM...`",
            ),
        ];
        for (text, line, what) in cases {
            let e = error(text);
            assert!(e.starts_with(&format!("t.supp:{line}: ")), "{text:?}: {e}");
            assert!(e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn memtrace_matching() {
        let s = one("suppress a fun:outer fun:inner\n");
        // Anywhere, in any order.
        assert!(s.matches(&stack(&["inner", "mid", "outer", "main"]), None));
        assert!(s.matches(&stack(&["outer", "inner"]), Some(Func::Malloc)));
        assert!(!s.matches(&stack(&["inner", "main"]), None));
        assert!(!s.matches(&[], None));
        // Globs on function names, mangled names too.
        let s = one("suppress a fun:ns::*::make()\n");
        assert!(s.matches(&stack(&["ns::Widget::make()"]), None));
        let s = one("suppress a fun:_Z8leak_cppi\n");
        let cpp = frame(Some("leak_cpp(int)"), Some("_Z8leak_cppi"), None);
        assert!(s.matches(std::slice::from_ref(&cpp), None));
        assert!(one("suppress a fun:leak_cpp(*)\n").matches(std::slice::from_ref(&cpp), None));
        // file: full path or basename; obj: likewise.
        let st = vec![frame(Some("f"), None, Some("/src/dir/heap.c"))];
        assert!(one("suppress a file:heap.c\n").matches(&st, None));
        assert!(one("suppress a file:/src/*/heap.c\n").matches(&st, None));
        assert!(one("suppress a file:*.c\n").matches(&st, None));
        assert!(!one("suppress a file:dir\n").matches(&st, None));
        assert!(one("suppress a obj:app\n").matches(&st, None));
        assert!(one("suppress a obj:/usr/*\n").matches(&st, None));
        assert!(!one("suppress a obj:/usr\n").matches(&st, None));
        // Every term must match some frame.
        assert!(one("suppress a fun:f file:heap.c obj:app\n").matches(&st, None));
        assert!(!one("suppress a fun:f file:other.c\n").matches(&st, None));
        // Frames without the field never match it.
        assert!(!one("suppress a fun:*\n").matches(&[bare(Some("/lib/x.so"))], None));
        assert!(!one("suppress a file:*\n").matches(&[bare(None)], None));
        assert!(!one("suppress a obj:*\n").matches(&[bare(None)], None));
    }

    #[test]
    fn lsan_parse() {
        let f = p(
            "# LSan\nleak:foo\n\n  leak:^bar$  \ncalled_from_lib:libfoo.so\nrace:x\nsrc:y\nfun:z\ninterceptor_via_fun:w\n",
        );
        assert_eq!(f.syntax, Some(Syntax::Lsan));
        assert_eq!(f.ignored, 5);
        assert_eq!(f.entries.len(), 2);
        assert_eq!(f.entries[0].name, "foo");
        assert_eq!(f.entries[0].line, 2);
        assert_eq!(f.entries[1].name, "^bar$");
        assert_eq!(f.entries[1].line, 4);
        assert_eq!(f.entries[1].syntax, Syntax::Lsan);
        assert_eq!(f.entries[1].limit, None);
        for (text, line, what) in [
            ("leak:a\nnot a line\n", 2, "expected `leak:PATTERN`"),
            ("leak:a\nbogus:b\n", 2, "unknown suppression kind `bogus:`"),
            ("leak:\n", 1, "empty pattern"),
            ("leak:^$\n", 1, "empty pattern"),
        ] {
            let e = error(text);
            assert!(e.starts_with(&format!("t.supp:{line}: ")), "{text:?}: {e}");
            assert!(e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn lsan_matching() {
        let st = vec![
            frame(Some("leak_realloc_chain"), None, Some("/src/heap.c")),
            Frame {
                module: Some("/usr/lib/libfoo.so.1".into()),
                ..frame(Some("foo::bar(int)"), Some("_ZN3foo3barEi"), None)
            },
            fun("main"),
        ];
        let m = |pat: &str| one(&format!("leak:{pat}\n")).matches(&st, None);
        // Substrings of functions, mangled names, modules, files.
        assert!(m("realloc"));
        assert!(m("leak_realloc_chain"));
        assert!(m("foo::bar"));
        assert!(m("3foo3bar"));
        assert!(m("libfoo.so"));
        assert!(m("/usr/lib/"));
        assert!(m("heap.c"));
        assert!(m("ai"));
        assert!(!m("nothere"));
        // Anchors.
        assert!(m("^leak_"));
        assert!(!m("^realloc"));
        assert!(m("_chain$"));
        assert!(!m("leak_realloc$"));
        assert!(m("^main$"));
        assert!(!m("^mai$"));
        assert!(m("^/usr/lib/libfoo.so.1$"));
        // Wildcards; `?` is literal.
        assert!(m("leak_*_chain"));
        assert!(m("^leak*chain$"));
        assert!(!m("leak_?ealloc"));
        assert!(!one("leak:x\n").matches(&[], None));
    }

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

    /// Generated valgrind entries name the leak's kinds (`all` when unknown).
    #[test]
    fn gen_valgrind_kinds() {
        use Kind::*;
        let st = stack(&["f", "main"]);
        let text = gen_valgrind("n", &st, None, Some(&[IndirectlyLost, DefinitelyLost]));
        assert!(
            text.contains("   match-leak-kinds: definite,indirect\n"),
            "{text}"
        );
        let e = one(&text);
        assert!(e.matches_leak(&st, None, Some(IndirectlyLost)));
        assert!(!e.matches_leak(&st, None, Some(StillReachable)));
        for k in [None, Some(&Kind::ALL[..]), Some(&[][..])] {
            let text = gen_valgrind("n", &st, None, k);
            assert!(text.contains("   match-leak-kinds: all\n"), "{k:?}: {text}");
        }
        let text = gen_valgrind("n", &st, None, Some(&[StillReachable]));
        assert!(text.contains("match-leak-kinds: reachable\n"), "{text}");
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

    fn sample_stack() -> Vec<Frame> {
        vec![
            Frame {
                inlined: true,
                ..frame(Some("inline_helper"), None, Some("/src/a.h"))
            },
            frame(
                Some("operator new(unsigned long)"),
                Some("_Znwm"),
                Some("/gcc/new_op.cc"),
            ),
            frame(
                Some("ns::Widget::make()"),
                Some("_ZN2ns6Widget4makeEv"),
                None,
            ),
            bare(Some("/usr/lib/libbar.so")),
            bare(None),
            fun("main"),
        ]
    }

    #[test]
    fn gen_round_trips() {
        let stacks = [
            sample_stack(),
            stack(&["leak_malloc", "main"]),
            vec![bare(Some("/usr/lib/my lib.so")), bare(None)],
            vec![bare(None), fun("f")],
            (0..40).map(|i| fun(&format!("f{i}"))).collect(),
            vec![Frame {
                module: None,
                ..frame(None, None, Some("/src/only file.c"))
            }],
        ];
        for st in &stacks {
            let text = gen_memtrace("my name", st);
            let f = p(&text);
            assert_eq!(f.syntax, Some(Syntax::Memtrace), "{text}");
            assert!(f.entries[0].matches(st, None), "{text}");
            assert_eq!(f.entries[0].name, "my_name");

            let text = gen_lsan(st);
            let f = p(&text);
            assert!(f.entries[0].matches(st, None), "{text}");

            for func in [
                None,
                Some(Func::Malloc),
                Some(Func::New),
                Some(Func::NewArray),
                Some(Func::PosixMemalign),
                Some(Func::Mmap),
            ] {
                let text = gen_valgrind("my name", st, func, None);
                let f = p(&text);
                assert_eq!(f.syntax, Some(Syntax::Valgrind), "{text}");
                assert_eq!(f.entries.len(), 1, "{text}");
                assert_eq!(f.entries[0].name, "my name");
                assert!(f.entries[0].matches(st, func), "{func:?}\n{text}");
            }
        }
        // A stack with nothing to suppress by: a comment, read back as nothing.
        let nothing = vec![bare(None)];
        assert!(p(&gen_memtrace("n", &nothing)).entries.is_empty());
        assert!(p(&gen_lsan(&nothing)).entries.is_empty());
    }

    #[test]
    fn gen_texts() {
        let st = sample_stack();
        assert_eq!(
            gen_memtrace("widget", &st),
            "suppress widget fun:inline_helper fun:operator?new(unsigned?long) \
             fun:ns::Widget::make()\n"
        );
        assert_eq!(
            gen_memtrace("x", &[bare(Some("/lib/libz.so"))]),
            "suppress x obj:/lib/libz.so\n"
        );
        assert_eq!(
            gen_valgrind(
                "<insert_a_suppression_name_here>",
                &st,
                Some(Func::New),
                None
            ),
            "{\n   <insert_a_suppression_name_here>\n   Memcheck:Leak\n   match-leak-kinds: all\n   \
             fun:_Znwm\n   fun:inline_helper\n   fun:_Znwm\n   fun:_ZN2ns6Widget4makeEv\n   \
             obj:/usr/lib/libbar.so\n   obj:*\n   fun:main\n}\n"
        );
        assert!(
            gen_valgrind("", &st, None, None)
                .starts_with("{\n   <insert_a_suppression_name_here>\n")
        );
        assert!(gen_valgrind("n", &[], None, None).contains("   fun:malloc\n}"));
        assert!(gen_valgrind("n", &[], Some(Func::NewArray), None).contains("   fun:_Znam\n}"));
        assert!(gen_valgrind("n", &[], Some(Func::Calloc), None).contains("   fun:calloc\n}"));
        let long: Vec<Frame> = (0..40).map(|i| fun(&format!("f{i}"))).collect();
        let text = gen_valgrind("n", &long, None, None);
        assert_eq!(text.matches("   fun:").count(), 24);
        assert_eq!(gen_lsan(&st), "leak:inline_helper\n");
        assert_eq!(
            gen_lsan(&[bare(Some("/usr/lib/libbar.so"))]),
            "leak:libbar.so\n"
        );
    }

    #[test]
    fn example_files() {
        let f = p(include_str!("../../../tests/suppressions/valgrind.supp"));
        assert_eq!(f.syntax, Some(Syntax::Valgrind));
        assert_eq!(f.entries.len(), 7);
        assert_eq!(f.ignored, 2);
        let kinds: Vec<&[String]> = f.entries.iter().map(|e| e.leak_kinds()).collect();
        assert!(kinds.contains(&&["definite".to_string(), "possible".to_string()][..]));

        let f = p(include_str!("../../../tests/suppressions/reach.supp"));
        assert_eq!(f.syntax, Some(Syntax::Valgrind));
        let kinds: Vec<&[Kind]> = f.entries.iter().map(|e| e.kinds()).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            [
                &[DefinitelyLost][..],
                &[PossiblyLost, StillReachable][..],
                &[PossiblyLost][..],
                &[StillReachable][..]
            ]
        );

        let f = p(include_str!("../../../tests/suppressions/lsan.supp"));
        assert_eq!(f.syntax, Some(Syntax::Lsan));
        assert_eq!(f.entries.len(), 4);
        assert_eq!(f.ignored, 0);

        let f = p(include_str!("../../../tests/suppressions/memtrace.supp"));
        assert_eq!(f.syntax, Some(Syntax::Memtrace));
        assert_eq!(f.entries.len(), 5);
        assert!(f.entries.iter().any(|e| e.limit.is_some()));
    }

    #[test]
    fn example_files_target_fixture_stacks() {
        // The stacks memtrace records for the fixtures' leaks (innermost
        // first, from the allocator's caller), as far as the entries look.
        let heap = |f: &str| {
            vec![
                frame(Some(f), None, Some("/w/tests/fixtures/heap.c")),
                fun("main"),
            ]
        };
        let strdup = vec![
            Frame {
                module: Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into()),
                ..frame(Some("__strdup"), None, None)
            },
            frame(Some("leak_strdup"), None, Some("/w/tests/fixtures/heap.c")),
            fun("main"),
        ];
        let widget = vec![
            frame(
                Some("ns::Widget::make()"),
                Some("_ZN2ns6Widget4makeEv"),
                Some("/w/tests/fixtures/cpp.cpp"),
            ),
            fun("main"),
        ];
        let cpp = vec![
            frame(
                Some("leak_cpp(int)"),
                Some("_Z8leak_cppi"),
                Some("/w/tests/fixtures/cpp.cpp"),
            ),
            fun("main"),
        ];
        let lib = |site: &str, outer: &str, so: &str| {
            vec![
                Frame {
                    module: Some(format!("/t/e2e-fixtures/{so}").into()),
                    ..frame(Some(site), None, Some("/w/tests/fixtures/x.c"))
                },
                Frame {
                    module: Some(format!("/t/e2e-fixtures/{so}").into()),
                    ..frame(Some(outer), None, Some("/w/tests/fixtures/x.c"))
                },
                fun("main"),
            ]
        };
        let other = lib("other_leak_site", "other_leak", "libdlother.so");
        let dl = lib("lib_leak_site", "dl_leak", "libdlleak.so");
        let thread = vec![
            frame(
                Some("thread_leak_site"),
                None,
                Some("/w/tests/fixtures/threads.c"),
            ),
            fun("worker"),
            fun("start_thread"),
        ];
        let names = |text: &str, st: &[Frame], func| -> Vec<String> {
            p(text)
                .entries
                .iter()
                .filter(|e| e.matches(st, func))
                .map(|e| e.name.clone())
                .collect()
        };
        use Func::*;
        let vg = include_str!("../../../tests/suppressions/valgrind.supp");
        assert_eq!(
            names(vg, &heap("leak_malloc"), Some(Malloc)),
            ["heap-leak_malloc"]
        );
        assert_eq!(names(vg, &strdup, Some(Malloc)), ["heap-leak_strdup"]);
        assert_eq!(
            names(vg, &heap("leak_calloc"), Some(Calloc)),
            ["heap-leak_calloc"]
        );
        for f in [PosixMemalign, AlignedAlloc, Memalign, Valloc] {
            assert_eq!(
                names(vg, &heap("leak_aligned"), Some(f)),
                ["heap-leak_aligned"],
                "{f:?}"
            );
        }
        assert_eq!(names(vg, &cpp, Some(NewArray)), ["cpp-leak_cpp"]);
        assert_eq!(names(vg, &other, Some(Malloc)), ["dlopen-other_leak_site"]);
        assert_eq!(
            names(vg, &thread, Some(Malloc)),
            ["threads-thread_leak_site"]
        );
        assert!(names(vg, &heap("leak_realloc_chain"), Some(Realloc)).is_empty());
        assert!(names(vg, &widget, Some(New)).is_empty());
        assert!(names(vg, &dl, Some(Malloc)).is_empty());

        let lsan = include_str!("../../../tests/suppressions/lsan.supp");
        assert_eq!(
            names(lsan, &heap("leak_realloc_chain"), Some(Realloc)),
            ["leak_realloc_chain"]
        );
        assert_eq!(
            names(lsan, &heap("leak_reallocarray"), Some(Reallocarray)),
            ["^leak_reallocarray$"]
        );
        assert_eq!(names(lsan, &dl, Some(Malloc)), ["libdlleak.so"]);
        assert_eq!(names(lsan, &widget, Some(New)), ["ns::Widget::make"]);
        assert!(names(lsan, &heap("leak_malloc"), Some(Malloc)).is_empty());
        assert!(names(lsan, &other, Some(Malloc)).is_empty());

        let mt = include_str!("../../../tests/suppressions/memtrace.supp");
        let pv = vec![
            frame(
                Some("leak_pvalloc"),
                None,
                Some("/w/tests/fixtures/pvalloc.c"),
            ),
            fun("main"),
        ];
        assert_eq!(names(mt, &pv, Some(Pvalloc)), ["pvalloc"]);
        assert_eq!(names(mt, &thread, Some(Malloc)), ["threads"]);
        assert_eq!(names(mt, &cpp, Some(NewArray)), ["cpp-array"]);
        assert_eq!(names(mt, &dl, Some(Malloc)), ["dlopen-unloaded"]);
        let mmap = |f: &str| {
            vec![
                frame(Some(f), None, Some("/w/tests/fixtures/mmap.c")),
                fun("main"),
            ]
        };
        assert_eq!(
            names(mt, &mmap("mmap_partial_site"), Some(Mmap)),
            ["mmap-partial"]
        );
        assert!(names(mt, &mmap("mmap64_site"), Some(Mmap64)).is_empty());
        assert!(names(mt, &heap("leak_malloc"), Some(Malloc)).is_empty());
        let mp = p(mt);
        let partial = mp
            .entries
            .iter()
            .find(|e| e.name == "mmap-partial")
            .unwrap();
        assert_eq!(partial.limit, Some(20480));
        let threads = mp.entries.iter().find(|e| e.name == "threads").unwrap();
        assert_eq!(threads.limit, Some(4096));
    }
}
