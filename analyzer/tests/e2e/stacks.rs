//! many_stacks.c: more distinct stacks than the preload's first stack table holds (2^20
//! slots). The preload must define each stack once (its table grows), and the report must
//! list each stack once (the analyzer merges ids that name the same stack, whatever the
//! preload did).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::util::{frame_function, trace};

/// Distinct call paths of pass 1 (`N` in the fixture: 2^20 + 2^18).
const PATHS: u64 = (1 << 20) + (1 << 18);
/// Paths leaked twice by passes 2 and 3 (every 1024th).
const LEAKED_PATHS: u64 = PATHS / 1024;

/// The STACK records of a raw log: how many, and how many distinct frame lists.
fn stack_records(log: &Path) -> (u64, usize) {
    use memtrace_format::{ChunkIter, Header, Record};
    let data = std::fs::read(log).unwrap_or_else(|e| panic!("read {}: {e}", log.display()));
    let h = Header::parse(&data).unwrap_or_else(|e| panic!("{}: bad header: {e:?}", log.display()));
    let (mut records, mut distinct) = (0u64, HashSet::<Vec<u64>>::new());
    for c in ChunkIter::new(&data, h.reserved_end) {
        let c = c.unwrap_or_else(|e| panic!("{}: bad chunk: {e:?}", log.display()));
        for r in c.records() {
            if let Record::Stack { frames, .. } =
                r.unwrap_or_else(|e| panic!("{}: bad record: {e:?}", log.display()))
            {
                records += 1;
                distinct.insert(frames.map(|f| f.expect("frame decodes")).collect());
            }
        }
    }
    (records, distinct.len())
}

/// 1.3 million distinct stacks, 1,280 of them used again after all the others: the log
/// defines each stack exactly once, and the JSON report lists exactly 1,280 heap leak sites,
/// 2 blocks and 32 bytes each, no two with the same frames, each one path of six f-levels.
#[test]
fn more_than_2_20_stacks_each_defined_and_listed_once() {
    let t = trace::<&str>("many_stacks", &[]);
    t.assert_exit(0);
    let log = t.only_log();

    let (records, distinct) = stack_records(&log);
    assert_eq!(
        records,
        distinct as u64,
        "{} stacks defined more than once",
        records - distinct as u64
    );
    assert!(
        records >= PATHS,
        "{records} stacks defined, fewer than the fixture's {PATHS} paths"
    );

    let r = t.report();
    assert_eq!(r.summary("allocations"), PATHS + 2 * LEAKED_PATHS);
    assert_eq!(r.summary("frees"), PATHS);
    assert_eq!(r.summary("leaked_heap_blocks"), 2 * LEAKED_PATHS);
    assert_eq!(r.summary("leaked_heap_bytes"), 32 * LEAKED_PATHS);
    let leaks = r.leaks("heap");
    assert_eq!(leaks.len() as u64, LEAKED_PATHS, "heap leak sites");
    let mut seen: HashMap<Vec<(Option<&str>, &str)>, usize> = HashMap::new();
    for (i, l) in leaks.iter().enumerate() {
        assert_eq!(
            (l["bytes"].as_u64(), l["count"].as_u64()),
            (Some(32), Some(2)),
            "leak {i}: {l}"
        );
        let stack = l["stack"].as_array().expect("stack");
        let key: Vec<(Option<&str>, &str)> = stack
            .iter()
            .map(|f| (frame_function(f), f["address"].as_str().expect("address")))
            .collect();
        // The path: six frames in f0..f15, then walk.
        let names: Vec<&str> = key.iter().map(|(f, _)| f.unwrap_or("?")).collect();
        let walk = names.iter().position(|&n| n == "walk");
        assert_eq!(walk, Some(6), "leak {i}: {names:?}");
        assert!(
            names[..6].iter().all(|n| n
                .strip_prefix('f')
                .and_then(|d| d.parse::<u8>().ok())
                .is_some_and(|d| d < 16)),
            "leak {i}: {names:?}"
        );
        if let Some(j) = seen.insert(key, i) {
            panic!("leaks {j} and {i} have the same stack: {names:?}");
        }
    }
}
