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
//!
//! ## Modules
//! This module holds the suppression itself, loading a file (and detecting
//! its format) and the matching entry points; one module per format parses
//! it and matches its patterns (`memtrace`, `lsan`, `valgrind`, with
//! valgrind's allocator frames in `allocators`); `wildcard` matches globs;
//! `generate` writes entries for a leak; `program` reads a program's own
//! `__lsan_default_suppressions()` out of its executable. The children use this module and
//! `wildcard`, never each other, but for valgrind's and `generate`'s use of
//! `allocators`.

mod allocators;
mod generate;
mod lsan;
mod memtrace;
pub mod program;
mod valgrind;
mod wildcard;

#[cfg(test)]
mod tests;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use memtrace_format::Func;

use crate::analysis::reach::Kind;
use crate::analysis::symbolize::Frame;

pub use self::generate::{gen_lsan, gen_memtrace, gen_valgrind};
pub use self::wildcard::glob;

use self::memtrace::Term;
use self::valgrind::{VgFrame, valgrind_matches};
use self::wildcard::wildcard;

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
    /// The executable whose own `__lsan_default_suppressions()` it came
    /// from ([`program`]): it applies to that program's processes only.
    /// `None`: to every process.
    pub program: Option<String>,
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

impl Suppression {
    /// Whether it applies to a process of the executable `exe`.
    pub fn applies_to(&self, exe: &str) -> bool {
        self.program.as_deref().is_none_or(|p| p == exe)
    }

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
        Syntax::Memtrace => memtrace::parse_memtrace(&lines, &mut file)?,
        Syntax::Lsan => lsan::parse_lsan(&lines, &mut file)?,
        Syntax::Valgrind => valgrind::parse_valgrind(&lines, &mut file)?,
    }
    Ok(file)
}

/// `path:line: msg`.
fn at(path: &Path, line: usize, msg: impl Display) -> String {
    format!("{}:{line}: {msg}", path.display())
}

fn detect(line: &str) -> Option<Syntax> {
    if line.starts_with('{') {
        return Some(Syntax::Valgrind);
    }
    if line.split_whitespace().next() == Some("suppress") {
        return Some(Syntax::Memtrace);
    }
    let (kind, _) = line.split_once(':')?;
    lsan::LSAN_KINDS.contains(&kind).then_some(Syntax::Lsan)
}
