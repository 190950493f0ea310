//! Writing suppressions for a leak (`memtrace check --gen-suppressions`):
//! one entry in each format, from the leak's stack. Uses the parent's
//! [`basename`](super::basename) and valgrind's allocator names
//! ([`super::allocators`]).

use std::fmt::Write as _;

use memtrace_format::Func;

use super::allocators::valgrind_name;
use super::basename;
use crate::analysis::reach::Kind;
use crate::analysis::symbolize::Frame;

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
    use super::super::Syntax;
    use super::super::tests::{bare, frame, fun, one, p, stack};
    use super::*;

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
}
