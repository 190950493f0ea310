//! LeakSanitizer's suppression format (`leak:PATTERN`) and the other
//! sanitizers' kinds it tolerates. Uses the parent's [`Suppression`].

use super::{Rule, Suppression, SuppressionFile, Syntax, at};

/// Kinds of sanitizer suppression and ignore-list lines: `leak` applies, the
/// others are parsed and ignored (ThreadSanitizer, AddressSanitizer,
/// UndefinedBehaviorSanitizer, and the special-case lists' `src:`/`fun:`).
pub(super) const LSAN_KINDS: &[&str] = &[
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

pub(super) fn parse_lsan(
    lines: &[(usize, &str)],
    file: &mut SuppressionFile,
) -> Result<(), String> {
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
            program: None,
            rule: Rule::Lsan(glob),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, frame, fun, one, p};
    use super::super::*;

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
}
