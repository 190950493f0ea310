//! memtrace's own suppression format (`suppress NAME TERM...`): its parser
//! and its terms' matching. Uses the parent's [`Suppression`] and frame
//! helpers, and [`super::wildcard`].

use super::wildcard::glob;
use super::{Rule, Suppression, SuppressionFile, Syntax, at, basename, fun_matches};
use crate::analysis::symbolize::Frame;

#[derive(Clone, Debug)]
pub(super) enum Term {
    Fun(String),
    File(String),
    Obj(String),
}

impl Term {
    pub(super) fn matches(&self, f: &Frame) -> bool {
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

pub(super) fn parse_memtrace(
    lines: &[(usize, &str)],
    file: &mut SuppressionFile,
) -> Result<(), String> {
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
            program: None,
            rule: Rule::Terms(terms),
        });
    }
    Ok(())
}

/// A `max:` size: digits with an optional `k`/`m`/`g` suffix (KiB, MiB, GiB), any case.
fn parse_size(s: &str) -> Option<u64> {
    crate::units::parse_size(s).ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bare, error, frame, one, p, stack};
    use super::*;
    use memtrace_format::Func;

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
}
