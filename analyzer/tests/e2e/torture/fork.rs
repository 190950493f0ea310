//! fork while other threads malloc (and dlopen), with the regressions found that way;
//! vfork+exec and posix_spawn.

use super::*;

/// Checks the log of one torture_fork/torture_fork_dlparked child: forked from
/// `parent`, ended by _exit(0), one 48-byte leak at `site`, symbolized, and what it
/// inherited: the blocks live in the parent at the fork (the other threads', the
/// loader's). libc's clean-up at the child's exit frees some of them (the parent's
/// threads' TLS blocks), as ordinary frees; the others are its leaks.
fn assert_fork_child(c: &Report, parent: u64, site: &str) {
    assert_eq!(
        c.process("forked_from").as_u64(),
        Some(parent),
        "child {}'s forked_from",
        pid_of(c)
    );
    c.assert_ended("_exit");
    assert_eq!(c.process("exit_status"), 0, "process = {}", c.v["process"]);
    c.assert_leak("heap", site, 48, 1);
    assert!(
        !c.v["summary"]["inherited"].is_null(),
        "the parent's log is found: {}",
        c.v["summary"]
    );
    let freed = c.summary("frees") - 1;
    assert_eq!(
        c.summary("libc_freeres_frees"),
        freed,
        "one free of its own, the others libc's clean-up's: {}",
        c.v["summary"]
    );
    assert_eq!(
        c.summary("leaked_heap_blocks") + freed,
        1 + c.summary("inherited_blocks"),
        "the leak of its own, and the inherited blocks not freed: {}",
        c.v["summary"]
    );
    assert!(
        c.summary("leaked_heap_bytes") <= 48 + c.summary("inherited_bytes"),
        "{}",
        c.v["summary"]
    );
    assert_eq!(c.summary("anomalies"), 0, "{}", c.v["summary"]);
    assert_eq!(c.summary("unknown_frees"), 0, "{}", c.v["summary"]);
    assert_eq!(c.summary("allocations"), 2, "{}", c.v["summary"]);
    assert_eq!(c.summary("events_lost"), 0, "{}", c.v["summary"]);
}

/// Splits the reports of a fork test into (parent, children) by forked_from.
fn parent_and_children(reports: Vec<Report>) -> (Report, Vec<Report>) {
    let (mut parents, children): (Vec<Report>, Vec<Report>) = reports
        .into_iter()
        .partition(|r| r.process("forked_from").as_u64().unwrap_or(0) == 0);
    assert_eq!(parents.len(), 1, "one parent log");
    (parents.pop().unwrap(), children)
}

// 4 threads hammer malloc/calloc/realloc/free while main forks 200 times: every child
// exits by itself (no deadlock) within the timeout; every child's log decodes, lists the
// loaded objects and holds exactly its 2 allocations, 1 free and the 48-byte leak; the
// parent's and a sample of the children's full reports are exact.
#[test]
fn fork_while_other_threads_malloc() {
    let t = run("torture_fork", &["200", "4"], 600);
    assert_eq!(
        t.stdout(),
        "forks=200 ok=200 hung=0\n",
        "every child exits by itself\n{}",
        t.describe()
    );
    t.assert_exit(0);
    let logs = t.logs();
    assert_eq!(logs.len(), 201, "one log per process");
    let quick: Vec<(PathBuf, QuickLog)> =
        logs.iter().map(|l| (l.clone(), quick_decode(l))).collect();
    let parents: Vec<&(PathBuf, QuickLog)> =
        quick.iter().filter(|(_, q)| q.forked_from == 0).collect();
    assert_eq!(parents.len(), 1, "one parent log");
    let (parent_log, pq) = parents[0];
    let mut sampled = 0;
    for (log, q) in quick.iter().filter(|(_, q)| q.forked_from != 0) {
        assert_eq!(q.forked_from, pq.pid, "{q:?}");
        assert_eq!((q.state, q.exit_status), (3, 0), "ended by _exit(0): {q:?}");
        assert_eq!(
            (q.allocs, q.frees, &q.live[..], q.lost),
            (2, 1, &[48][..], 0),
            "{q:?}"
        );
        assert!(
            q.modules > 0,
            "the child's log lists the loaded objects: {q:?}"
        );
        if q.pid % 25 == 0 || sampled == 0 {
            sampled += 1;
            let c = report(log);
            assert_fork_child(&c, pq.pid.into(), "fork_child_leak_site");
            c.assert_complete();
        }
    }
    let p = report(parent_log);
    p.assert_ended("exit");
    p.assert_complete();
    p.assert_heap_leaked(0, 0);
}

// Found by torture_fork with dlopen/dlclose hammers: a fork child hangs when another
// thread of the parent held the loader's dl_load_write_lock at the fork (the child's
// memtrace calls dl_iterate_phdr in its atfork handler). Deterministic: a thread is
// parked inside dl_iterate_phdr while main forks.
#[test]
fn regression_fork_child_deadlocks_in_dl_iterate_phdr() {
    let t = run("torture_fork_dlparked", &["parked"], 30);
    let p = kv(&t.stdout());
    assert_eq!(
        val(&p, "exited"),
        1,
        "the child must exit by itself (without memtrace it does)\n{}",
        t.describe()
    );
    t.assert_exit(0);
    let (parent, children) = parent_and_children(all_reports(t.dir.path()));
    assert_eq!(children.len(), 1);
    assert_eq!(pid_of(&children[0]), val(&p, "child"));
    assert_fork_child(&children[0], pid_of(&parent), "dlparked_child_leak_site");
}

// Found the same way: when a parent thread is inside memtrace's module rescan (holding
// memtrace's module-table try-lock) at the fork, the child inherited the lock held
// forever: its log never listed the loaded objects (leaks unsymbolized), and its _exit
// hung in find_cxx_freeres's dl_iterate_phdr. Deterministic: a dlclose (hooked: it
// rescans) waits for the loader lock held by a thread parked in dl_iterate_phdr.
#[test]
fn regression_fork_child_inherits_held_module_lock() {
    let lib = fixture("libtorture_dl");
    let t = run(
        "torture_fork_dlparked",
        &[OsStr::new("parked_sync"), lib.as_os_str()],
        30,
    );
    let p = kv(&t.stdout());
    assert_eq!(
        val(&p, "exited"),
        1,
        "the child must exit by itself (without memtrace it does)\n{}",
        t.describe()
    );
    t.assert_exit(0);
    let (parent, children) = parent_and_children(all_reports(t.dir.path()));
    assert_eq!(children.len(), 1);
    let c = &children[0];
    assert_fork_child(c, pid_of(&parent), "dlparked_child_leak_site");
    let own: Vec<&serde_json::Value> = c
        .leaks("heap")
        .into_iter()
        .filter(|l| stack_has(l, &fn_is("dlparked_child_leak_site")))
        .collect();
    assert!(
        !own.is_empty()
            && own
                .iter()
                .all(|l| stack_has(l, &fn_is("child")) && stack_has(l, &fn_is("main"))),
        "the child's leak is symbolized through child() and main() (its log lists the \
         loaded objects)\n{}",
        c.describe_leaks()
    );
}

// The realistic form of the two above: 4 hammers, two of them also dlopen/dlclose a
// library, while main forks up to 200 times; every child must exit by itself and its log
// must list the loaded objects (the fixture stops forking at the first hung child).
#[test]
fn regression_fork_during_dlopen_hangs_child() {
    let lib = fixture("libtorture_dl");
    let t = run(
        "torture_fork",
        &[OsStr::new("200"), OsStr::new("4"), lib.as_os_str()],
        600,
    );
    let p = kv(&t.stdout());
    let quick: Vec<QuickLog> = t.logs().iter().map(|l| quick_decode(l)).collect();
    let without_modules: Vec<u32> = quick
        .iter()
        .filter(|q| q.forked_from != 0 && q.modules == 0)
        .map(|q| q.pid)
        .collect();
    assert_eq!(
        (val(&p, "ok"), val(&p, "hung"), &without_modules[..]),
        (200, 0, &[][..]),
        "(children that exited, hung, children whose log lists no loaded object)\n{}",
        t.describe()
    );
    t.assert_exit(0);
    for q in quick.iter().filter(|q| q.forked_from != 0) {
        assert_eq!((q.state, q.exit_status), (3, 0), "ended by _exit(0): {q:?}");
        assert_eq!((q.allocs, q.frees, &q.live[..]), (2, 1, &[48][..]), "{q:?}");
    }
}

// 20 vfork+execv and 20 posix_spawn of the program itself, and a vfork whose exec fails
// (_exit(127) in the shared address space): one log per image (each decodes, with its
// own exact leak), the parent's log is not marked by the vfork children; full reports
// of the parent and a sample of the children.
#[test]
fn vfork_exec_and_posix_spawn() {
    let t = run("torture_spawn", &["20"], 60);
    assert_eq!(
        t.stdout(),
        "spawned=40 ok=40 failed_exec=1\n",
        "{}",
        t.describe()
    );
    t.assert_exit(0);
    let logs = t.logs();
    assert_eq!(logs.len(), 41, "one log per exec'd image and the parent");
    let mut parent = None;
    let mut seen = BTreeMap::<u64, u32>::new();
    for log in &logs {
        let q = quick_decode(log);
        assert_eq!(q.forked_from, 0, "a new image, not a fork child: {q:?}");
        if q.cmdline.get(1).map(String::as_str) != Some("child") {
            assert!(parent.is_none(), "one parent log");
            parent = Some((log.clone(), q));
            continue;
        }
        let i: u64 = q.cmdline[2].parse().expect("child index in cmdline");
        assert_eq!((q.state, q.exit_status), (2, 0), "ended by exit(0): {q:?}");
        assert_eq!(
            (q.allocs, q.frees, &q.live[..], q.lost),
            (2, 1, &[i + 1][..], 0),
            "{q:?}"
        );
        *seen.entry(i).or_default() += 1;
        if i == 0 || i == 19 {
            let c = report(log);
            c.assert_complete();
            c.assert_ended("exit");
            c.assert_leak("heap", "spawn_child_leak_site", i + 1, 1);
            c.assert_heap_leaked(i + 1, 1);
        }
    }
    let want: BTreeMap<u64, u32> = (0..20).map(|i| (i, 2)).collect();
    assert_eq!(seen, want, "each index once by vfork, once by posix_spawn");
    let (parent_log, pq) = parent.expect("the parent's log");
    let p = report(&parent_log);
    assert_eq!(pid_of(&p), u64::from(pq.pid));
    p.assert_complete();
    p.assert_ended("exit");
    assert_eq!(p.process("exit_status"), 0);
    p.assert_leak("heap", "spawn_parent_leak_site", 32, 1);
    p.assert_heap_leaked(32, 1);
    p.assert_no_leak("heap", "spawn_child_leak_site");
}
