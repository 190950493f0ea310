//! Test helpers for the gate and the renderers of its verdict (frames,
//! sites, reports, suppression files), and the tests of the judgement.

use std::path::Path;

use super::suppress::SuppressionFile;
use super::*;
use crate::analysis::reach::Kind;
use crate::frames::Frame;
use crate::kinds::ByKind;
use crate::report::{Ended, Process, Report, Summary};

fn frame(function: &str) -> Frame {
    Frame {
        function: Some(function.into()),
        mangled: None,
        file: Some(format!("/src/{function}.c")),
        line: Some(1),
        module: Some("/bin/app".into()),
        address: 0x1000,
        offset: None,
        inlined: false,
    }
}

pub(crate) fn site(bytes: u64, count: u64, funcs: &[&str]) -> Site {
    Site {
        bytes,
        count,
        func: Some(memtrace_format::Func::Malloc),
        kinds: None,
        heuristics: Default::default(),
        stack: funcs.iter().map(|f| frame(f)).collect::<Vec<_>>().into(),
    }
}

pub(crate) fn report(
    exe: &str,
    ended: Ended,
    peak: u64,
    heap: Vec<Site>,
    mmap: Vec<Site>,
) -> Report {
    Report {
        path: "x.mtr".into(),
        format_version: 1,
        process: Process {
            lineage: Default::default(),
            pid: 10,
            ppid: 1,
            exe: exe.into(),
            cmdline: vec![exe.into()],
            forked_from: None,
            ended,
            exit_status: Some(0),
            signal: None,
            exec: None,
            forks: vec![],
            duration_ms: 1.0,
        },
        summary: Summary {
            peak_heap_bytes: peak,
            leaked_heap_bytes: heap.iter().map(|s| s.bytes).sum(),
            leaked_heap_blocks: heap.iter().map(|s| s.count).sum(),
            ..Summary::default()
        },
        heap_leak_stacks: heap.len() as u64,
        heap_leaks: heap,
        mmap_leak_stacks: mmap.len() as u64,
        mmap_leaks: mmap,
        peak: vec![],
        allocated: vec![],
        temporary: vec![],
        timeline: vec![],
        kernel: None,
        brk: vec![],
        live_filter: None,
        warnings: vec![],
        questions: Default::default(),
    }
}

pub(crate) fn supp(text: &str) -> SuppressionFile {
    crate::gate::suppress::parse(text, Path::new("t.supp")).unwrap()
}

fn run<'a>(reports: &'a [Report], gate: &Gate<'a>) -> Verdict<'a> {
    evaluate(reports, gate)
}

const NONE: Gate<'static> = Gate {
    rules: &Rules {
        max_leaked_bytes: None,
        max_leaked_blocks: None,
        max_stack_leaked_bytes: None,
        max_stack_leaked_blocks: None,
        mmap_leaks: false,
        max_peak: None,
        tolerance: Tolerance::Bytes(0),
        peak_tolerance: Tolerance::Bytes(0),
        leak_kinds: None,
    },
    suppressions: &[],
    baseline: None,
    select: &[],
};

/// Program names drop cargo's hash; stack keys use names, not addresses.
#[test]
fn names_and_keys() {
    assert_eq!(
        program_name("/t/target/debug/deps/mylib-0123456789abcdef"),
        "mylib"
    );
    assert_eq!(program_name("/usr/bin/foo-bar"), "foo-bar");
    let s = site(8, 1, &["leak", "main"]);
    assert_eq!(site_key("heap", &s), "heap|leak;main");
    let k = stack_key(
        "mmap",
        [(None, Some("/lib/libc.so.6")), (None, None)].into_iter(),
    );
    assert_eq!(k, "mmap|libc.so.6;?");
}

/// With no rule given, any leak fails; an exact limit passes at the limit.
#[test]
fn default_and_total_limits() {
    let reports = [report(
        "/bin/a",
        Ended::Exit,
        100,
        vec![site(10, 2, &["f"])],
        vec![],
    )];
    let v = run(&reports, &NONE);
    assert!(!v.passed());
    assert_eq!(v.processes[0].failures[0].rule, "max-leaked-bytes");
    assert_eq!(v.processes[0].counted_bytes, 10);

    let rules = Rules {
        max_leaked_bytes: Some(10),
        ..Rules::default()
    };
    assert!(
        run(
            &reports,
            &Gate {
                rules: &rules,
                ..NONE
            }
        )
        .passed()
    );
    let rules = Rules {
        max_leaked_blocks: Some(1),
        ..Rules::default()
    };
    let v = run(
        &reports,
        &Gate {
            rules: &rules,
            ..NONE
        },
    );
    assert_eq!(
        v.processes[0].failures.len(),
        1,
        "only blocks: bytes unlimited"
    );
    assert_eq!(v.processes[0].failures[0].rule, "max-leaked-blocks");
}

/// Per-stack limits name the offending stack.
#[test]
fn per_stack_limits() {
    let reports = [report(
        "/bin/a",
        Ended::Exit,
        0,
        vec![site(100, 1, &["big"]), site(10, 5, &["many"])],
        vec![],
    )];
    let rules = Rules {
        max_stack_leaked_bytes: Some(50),
        max_stack_leaked_blocks: Some(4),
        ..Rules::default()
    };
    let v = run(
        &reports,
        &Gate {
            rules: &rules,
            ..NONE
        },
    );
    let f = &v.processes[0].failures;
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(f[0].message.contains("big") && f[0].rule == "max-stack-leaked-bytes");
    assert!(f[1].message.contains("many") && f[1].rule == "max-stack-leaked-blocks");
}

/// mmap leaks count only when asked; the peak rule is absolute.
#[test]
fn mmap_and_peak() {
    let reports = [report(
        "/bin/a",
        Ended::Exit,
        5000,
        vec![],
        vec![site(4096, 1, &["map"])],
    )];
    assert!(run(&reports, &NONE).passed());
    let rules = Rules {
        mmap_leaks: true,
        ..Rules::default()
    };
    let v = run(
        &reports,
        &Gate {
            rules: &rules,
            ..NONE
        },
    );
    assert!(!v.passed() && v.processes[0].leaks[0].kind == "mmap");
    let rules = Rules {
        max_peak: Some(4999),
        ..Rules::default()
    };
    let v = run(
        &reports,
        &Gate {
            rules: &rules,
            ..NONE
        },
    );
    assert_eq!(v.processes[0].failures[0].rule, "max-peak");
}

/// Exec'd, killed and unselected processes are skipped, not judged.
#[test]
fn skipped_processes() {
    let leak = || vec![site(10, 1, &["f"])];
    let reports = [
        report("/bin/sh", Ended::Exec, 0, leak(), vec![]),
        report("/bin/a", Ended::Abnormal, 0, leak(), vec![]),
        report("/bin/b", Ended::Exit, 0, leak(), vec![]),
    ];
    let v = run(&reports, &NONE);
    assert_eq!(v.processes[0].skipped, Some(Skip::Exec));
    assert_eq!(v.processes[1].skipped, Some(Skip::Abnormal));
    assert!(!v.processes[2].passed());
    let select = ["*/a".to_owned()];
    let v = run(
        &reports,
        &Gate {
            select: &select,
            ..NONE
        },
    );
    assert_eq!(v.processes[2].skipped, Some(Skip::NotSelected));
    assert!(v.passed());
}

/// Suppressions take leaks out and count what they matched; one over its
/// byte limit suppresses nothing in that process.
#[test]
fn suppressions_and_limits() {
    let reports = [report(
        "/bin/a",
        Ended::Exit,
        0,
        vec![
            site(100, 1, &["cache", "main"]),
            site(10, 1, &["init", "main"]),
        ],
        vec![],
    )];
    let files = [supp(
        "suppress cache fun:cache\nsuppress init fun:init max:8\n",
    )];
    let v = run(
        &reports,
        &Gate {
            suppressions: &files,
            ..NONE
        },
    );
    assert_eq!(
        v.usage[0],
        Usage {
            stacks: 1,
            blocks: 1,
            bytes: 100,
            over_limit: 0
        }
    );
    assert_eq!(v.usage[1].over_limit, 1);
    assert_eq!(v.processes[0].counted_bytes, 10);
    assert!(
        v.processes[0]
            .notes
            .iter()
            .any(|n| n.contains("over its max")),
        "{:?}",
        v.processes[0].notes
    );
    let files = [supp(
        "suppress cache fun:cache\nsuppress init fun:init max:10\n",
    )];
    assert!(
        run(
            &reports,
            &Gate {
                suppressions: &files,
                ..NONE
            }
        )
        .passed()
    );
}

/// A baseline allows its leaks (with tolerance) and its peak; growth fails.
#[test]
fn baseline_pass_and_fail() {
    let old = [report(
        "/bin/a",
        Ended::Exit,
        1000,
        vec![site(100, 1, &["known"])],
        vec![],
    )];
    let base = Baseline::from_reports(&old, Path::new("old.mtr"), &DEFAULT_LEAK_KINDS);
    let same = [report(
        "/bin/a",
        Ended::Exit,
        1000,
        vec![site(100, 1, &["known"])],
        vec![],
    )];
    let gate = Gate {
        baseline: Some(&base),
        ..NONE
    };
    let v = run(&same, &gate);
    assert!(v.passed(), "{:?}", v.processes[0].failures);
    assert_eq!(v.processes[0].leaks[0].status, Status::Baseline);

    let grown = [report(
        "/bin/a",
        Ended::Exit,
        1200,
        vec![site(150, 2, &["known"]), site(8, 1, &["new"])],
        vec![],
    )];
    let v = run(&grown, &gate);
    let p = &v.processes[0];
    assert_eq!((p.counted_bytes, p.counted_blocks), (58, 2));
    assert_eq!(p.failures.len(), 2, "{:?}", p.failures);
    assert_eq!(p.failures[1].rule, "peak-tolerance");

    let rules = Rules {
        tolerance: Tolerance::Percent(50.0),
        peak_tolerance: Tolerance::Percent(20.0),
        max_leaked_bytes: Some(8),
        ..Rules::default()
    };
    let v = run(
        &grown,
        &Gate {
            rules: &rules,
            ..gate
        },
    );
    assert!(v.passed(), "{:?}", v.processes[0].failures);
}

/// A site classified as `[definite, indirect, possible, reachable]`.
pub(crate) fn classified(funcs: &[&str], k: ByKind) -> Site {
    let (bytes, count) = k.iter().fold((0, 0), |(b, n), (kb, kn)| (b + kb, n + kn));
    Site {
        kinds: Some(k),
        ..site(bytes, count, funcs)
    }
}

/// reach.c's leaks, one site per allocating function, as memtrace
/// classifies them.
pub(crate) fn reach_report() -> Report {
    let mut r = report(
        "/bin/reach",
        Ended::Exit,
        0,
        vec![
            classified(&["lost_list", "main"], [(32, 1), (96, 3), (0, 0), (0, 0)]),
            classified(&["plain_lost", "main"], [(48, 1), (0, 0), (0, 0), (0, 0)]),
            classified(
                &["kept_by_global", "main"],
                [(0, 0), (0, 0), (0, 0), (64, 1)],
            ),
            classified(&["kept_child", "main"], [(0, 0), (0, 0), (0, 0), (16, 1)]),
            classified(
                &["kept_by_interior", "main"],
                [(0, 0), (0, 0), (128, 1), (0, 0)],
            ),
        ],
        vec![],
    );
    r.summary.leak_kinds = Some([(80, 2), (96, 3), (128, 1), (80, 2)]);
    r
}

fn with_kinds(kinds: &[Kind]) -> Rules {
    Rules {
        leak_kinds: Some(kinds.to_vec()),
        ..Rules::default()
    }
}

/// By default only definitely and indirectly lost blocks count (valgrind's
/// default); the other kinds are said not to count; `--leak-kinds` chooses.
#[test]
fn default_leak_kinds_are_definite_and_indirect() {
    use Kind::*;
    assert_eq!(DEFAULT_LEAK_KINDS, [DefinitelyLost, IndirectlyLost]);
    assert_eq!(Rules::default().counted_kinds(), DEFAULT_LEAK_KINDS);
    let reports = [reach_report()];
    let v = run(&reports, &NONE);
    let p = &v.processes[0];
    assert!(!p.passed());
    assert_eq!((p.counted_bytes, p.counted_blocks), (176, 5));
    assert_eq!(p.not_counted, [(0, 0), (0, 0), (128, 1), (80, 2)]);
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    // Each leak keeps only its counted kinds.
    let list = &p.leaks[0];
    assert_eq!((list.site.bytes, list.site.count), (128, 4));
    assert_eq!(list.site.kinds, Some([(32, 1), (96, 3), (0, 0), (0, 0)]));
    assert_eq!(
        p.leaks.len(),
        2,
        "reachable and possible sites are not listed"
    );

    for (kinds, bytes, blocks) in [
        (&Kind::ALL[..], 384, 8),
        (&[StillReachable][..], 80, 2),
        (&[PossiblyLost][..], 128, 1),
        (&[DefinitelyLost][..], 80, 2),
        (&[][..], 0, 0),
    ] {
        let rules = with_kinds(kinds);
        let v = run(
            &reports,
            &Gate {
                rules: &rules,
                ..NONE
            },
        );
        let p = &v.processes[0];
        assert_eq!(
            (p.counted_bytes, p.counted_blocks),
            (bytes, blocks),
            "{kinds:?}"
        );
        assert_eq!(p.passed(), bytes == 0, "{kinds:?}");
    }

    // Only still reachable blocks left: passes by default.
    let cache = [report(
        "/bin/a",
        Ended::Exit,
        0,
        vec![classified(
            &["cache", "main"],
            [(0, 0), (0, 0), (0, 0), (64, 1)],
        )],
        vec![],
    )];
    let v = run(&cache, &NONE);
    assert!(v.passed());
    assert_eq!(v.processes[0].not_counted[StillReachable.index()], (64, 1));
}

/// Leaks that were not classified count whole under any kinds, and say so.
#[test]
fn unclassified_leaks_count_whole() {
    let reports = [report(
        "/bin/a",
        Ended::Exit,
        0,
        vec![site(10, 2, &["f"])],
        vec![],
    )];
    for kinds in [&[Kind::StillReachable][..], &[][..]] {
        let rules = with_kinds(kinds);
        let v = run(
            &reports,
            &Gate {
                rules: &rules,
                ..NONE
            },
        );
        let p = &v.processes[0];
        assert_eq!((p.counted_bytes, p.counted_blocks), (10, 2));
        assert!(
            p.notes[0].contains("not classified by reachability"),
            "{:?}",
            p.notes
        );
    }
}

/// valgrind's `match-leak-kinds:` suppresses a site kind by kind: the
/// other kinds of the site still count; usage counts what was suppressed.
#[test]
fn suppressions_apply_per_kind() {
    let reports = [reach_report()];
    let files = [supp(
        "{\n n\n Memcheck:Leak\n match-leak-kinds: definite\n fun:malloc\n fun:lost_list\n}\n\
         {\n r\n Memcheck:Leak\n match-leak-kinds: reachable,possible\n fun:malloc\n ...\n fun:main\n}\n\
         {\n p\n Memcheck:Leak\n match-leak-kinds: reachable\n fun:malloc\n fun:plain_lost\n}\n",
    )];
    let rules = with_kinds(&Kind::ALL);
    let v = run(
        &reports,
        &Gate {
            rules: &rules,
            suppressions: &files,
            ..NONE
        },
    );
    let p = &v.processes[0];
    // lost_list's indirect blocks and plain_lost's block count.
    assert_eq!((p.counted_bytes, p.counted_blocks), (144, 4));
    let list: Vec<(Status, u64, u64)> = p
        .leaks
        .iter()
        .filter(|l| where_(&l.site) == "lost_list")
        .map(|l| (l.status, l.site.bytes, l.site.count))
        .collect();
    assert_eq!(
        list,
        [(Status::Counted, 96, 3), (Status::Suppressed(0), 32, 1)]
    );
    let usage = |i: usize| (v.usage[i].stacks, v.usage[i].blocks, v.usage[i].bytes);
    assert_eq!(usage(0), (1, 1, 32));
    assert_eq!(usage(1), (3, 3, 208));
    assert_eq!(usage(2), (0, 0, 0));

    // By default, only the definite blocks are there to suppress.
    let v = run(
        &reports,
        &Gate {
            suppressions: &files,
            ..NONE
        },
    );
    assert_eq!(
        (v.processes[0].counted_bytes, v.processes[0].counted_blocks),
        (144, 4)
    );
    assert_eq!(v.usage[0].bytes, 32);
    assert_eq!(v.usage[1].bytes, 0);
}

/// A leak that was not classified is suppressed only by an entry for every
/// kind; an entry for some kinds that matches its stack is named in a note.
#[test]
fn unclassified_leaks_and_leak_kinds_suppressions() {
    let reports = [report(
        "/bin/a",
        Ended::Exit,
        0,
        vec![site(10, 2, &["f", "main"])],
        vec![],
    )];
    let entry = |kinds: &str| {
        format!(
            "{{\n {kinds}\n Memcheck:Leak\n match-leak-kinds: {kinds}\n fun:malloc\n fun:f\n}}\n"
        )
    };
    let files = [supp(&(entry("definite") + &entry("definite,indirect")))];
    let v = run(
        &reports,
        &Gate {
            suppressions: &files,
            ..NONE
        },
    );
    let p = &v.processes[0];
    assert_eq!(p.leaks[0].status, Status::Counted);
    assert_eq!(p.counted_bytes, 10);
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("suppression definite (t.supp:1)")
                && n.contains("10 bytes in 2 blocks")
                && n.contains("applies only to definitely lost blocks")),
        "{:?}",
        p.notes
    );
    for kinds in ["all", "definite,indirect,possible,reachable"] {
        let files = [supp(&entry(kinds))];
        let v = run(
            &reports,
            &Gate {
                suppressions: &files,
                ..NONE
            },
        );
        assert!(v.passed(), "{kinds}");
        assert_eq!(v.processes[0].leaks[0].status, Status::Suppressed(0));
    }
    let files = [supp("{\n n\n Memcheck:Leak\n fun:malloc\n fun:f\n}\n")];
    let v = run(
        &reports,
        &Gate {
            suppressions: &files,
            ..NONE
        },
    );
    assert!(v.passed(), "no match-leak-kinds: every kind");
}
