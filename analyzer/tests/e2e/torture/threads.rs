//! Threads: 8 threads x 1M mixed operations, 10,000 short-lived threads, and no pthread key
//! taken (the states of exited threads are reclaimed without one).

use super::*;

// 8 threads x 1M mixed malloc/calloc/realloc/free: leaks equal the program's own count
// (per site too), and allocations/frees/bytes equal the program's plus libc's (from an
// OPS=0 run); nothing lost, no nesting.
#[test]
fn mixed_8_threads_1m_ops_match_program_counts() {
    let base = run("torture_mixed", &["0", "8"], 60);
    base.assert_exit(0);
    let b = base.report();
    b.assert_complete();
    let t = run("torture_mixed", &["1000000", "8"], 120);
    t.assert_exit(0);
    let p = kv(&t.stdout());
    let r = t.report();
    r.assert_complete();
    r.assert_no_nested_hooks();
    r.assert_ended("exit");
    let (lb, lk) = (val(&p, "leaked_bytes"), val(&p, "leaked_blocks"));
    assert!(lk > 0, "the workload leaks something: {p:?}");
    r.assert_heap_leaked(lb, lk);
    let s = r.leak_site("heap", "mixed_worker");
    assert_eq!((s.bytes, s.count), (lb, lk), "{}", r.describe_leaks());
    for (key, prog) in [
        ("allocations", "allocations"),
        ("frees", "frees"),
        ("bytes_allocated", "bytes_allocated"),
    ] {
        assert_eq!(
            r.summary(key),
            b.summary(key) + val(&p, prog),
            "{key}: report vs libc's ({}) + the program's {p:?}",
            b.summary(key)
        );
    }
    assert_eq!(r.summary("unknown_frees"), b.summary("unknown_frees"));
    assert_eq!(r.summary("anomalies"), 0, "{}", r.v["summary"]);
}

// 10,000 short-lived threads (waves of 50), each leaking one block: the report has all
// 10,000 leaks at thread_leak_site, exact to the byte, and every other block freed.
#[test]
fn ten_thousand_short_lived_threads() {
    let t = run("torture_threads", &["10000"], 60);
    t.assert_exit(0);
    let p = kv(&t.stdout());
    assert_eq!(val(&p, "threads"), 10_000);
    let (lb, lk) = (val(&p, "leaked_bytes"), val(&p, "leaked_blocks"));
    assert_eq!((lb, lk), (189_994, 10_000), "{p:?}");
    let r = t.report();
    r.assert_complete();
    r.assert_no_nested_hooks();
    r.assert_ended("exit");
    r.assert_leak("heap", "thread_leak_site", lb, lk);
    r.assert_heap_leaked(lb, lk);
    r.assert_no_leak("heap", "thread_temp_site");
    assert!(
        r.summary("allocations") >= 30_000,
        "3 allocations per thread: {}",
        r.v["summary"]
    );
    assert_eq!(
        r.summary("allocations") - r.summary("frees"),
        lk,
        "everything but the leaks is freed: {}",
        r.v["summary"]
    );
}

// memtrace takes no pthread key (the program gets all 1,024 of glibc's), and the states of
// threads that have exited are reclaimed without one: 3,000 threads in turn leave the
// mapping count small, and every thread's leak is reported exactly.
#[test]
fn no_pthread_key_and_exited_threads_are_reclaimed() {
    let t = crate::util::trace("keys_and_threads", &[] as &[&str]);
    t.assert_exit(0);
    let out = t.stdout();
    let mut words = out.split_whitespace();
    assert_eq!(words.next(), Some("keys"), "{out}");
    assert_eq!(words.next(), Some("1024"), "{out}");
    assert_eq!(words.next(), Some("maps"), "{out}");
    let maps: u32 = words.next().unwrap().parse().unwrap();
    assert!(maps < 400, "{maps} mappings after 3,000 threads");
    let r = t.report();
    r.assert_complete();
    r.assert_heap_leaked(72_000, 3000);
    r.assert_leak("heap", "thread_site", 72_000, 3000);
    r.assert_no_nested_hooks();
}
