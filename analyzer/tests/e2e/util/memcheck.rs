//! valgrind's memcheck, the independent oracle for heap totals.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::*;

/// What memcheck's HEAP SUMMARY says about a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Valgrind {
    pub in_use_bytes: u64,
    pub in_use_blocks: u64,
    pub allocs: u64,
    pub frees: u64,
    pub bytes_allocated: u64,
}

/// valgrind, required ([`require_tool`]): the path of the program.
#[track_caller]
pub fn require_valgrind() -> PathBuf {
    let vg = require_tool("valgrind", "valgrind");
    static WORKS: OnceLock<bool> = OnceLock::new();
    let works = *WORKS.get_or_init(|| {
        Command::new(&vg)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        works,
        "{} --version failed: valgrind is broken",
        vg.display()
    );
    vg
}

/// Runs fixture `name` under memcheck (stdout piped, as under the preload) and parses
/// its HEAP SUMMARY. valgrind is required.
#[track_caller]
pub fn valgrind<S: AsRef<OsStr>>(name: &str, args: &[S]) -> Valgrind {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let mut cmd = clean_command(require_valgrind());
    if has_tls_segment(&preload_lib()) {
        // Give the process the same shape as under the preload: see libtlstwin.c.
        cmd.env("LD_PRELOAD", fixture("libtlstwin"));
    }
    cmd.current_dir(dir.path())
        .arg("--leak-check=summary")
        .arg(fixture(name))
        .args(args);
    let out = output_with_timeout(&mut cmd, Duration::from_secs(600));
    parse_heap_summary(&String::from_utf8_lossy(&out.stderr))
}

/// Parses memcheck's HEAP SUMMARY (`in use at exit`, `total heap usage`) out of its output.
pub fn parse_heap_summary(text: &str) -> Valgrind {
    let nums = |line: &str| -> Vec<u64> {
        line.split(|c: char| !c.is_ascii_digit() && c != ',')
            .map(|w| w.replace(',', ""))
            .filter(|w| !w.is_empty())
            .map(|w| w.parse().unwrap())
            .collect()
    };
    let after = |key: &str| {
        text.lines()
            .find_map(|l| l.split_once(key).map(|(_, rest)| nums(rest)))
            .unwrap_or_else(|| panic!("valgrind printed no `{key}` line:\n{text}"))
    };
    let in_use = after("in use at exit:");
    let total = after("total heap usage:");
    Valgrind {
        in_use_bytes: in_use[0],
        in_use_blocks: in_use[1],
        allocs: total[0],
        frees: total[1],
        bytes_allocated: total[2],
    }
}

/// Does the 64-bit little-endian ELF file at `path` have a PT_TLS program header?
pub fn has_tls_segment(path: &Path) -> bool {
    const PT_TLS: u32 = 7;
    let b = std::fs::read(path).expect("read the ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    assert!(
        b.len() > 64 && b[..4] == *b"\x7fELF" && b[4] == 2,
        "{} is not ELF64",
        path.display()
    );
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| u32_at(phoff + i * phentsize) == PT_TLS)
}

/// The oracle for a fixture: valgrind's numbers (valgrind is required), which must also
/// be the ones the test records (`recorded`, from its fixture's header: valgrind 3.19 on
/// Debian 12), so that the figures written in the test are checked too.
#[track_caller]
pub fn oracle<S: AsRef<OsStr>>(name: &str, args: &[S], recorded: Valgrind) -> Valgrind {
    let v = valgrind(name, args);
    assert_eq!(
        v, recorded,
        "valgrind today (left) vs the figures the test records for {name} (right): a \
         different valgrind or libc? Check, then update the test's figures"
    );
    v
}

/// Asserts a report's heap totals equal the oracle's.
pub fn assert_heap_totals(r: &Report, o: &Valgrind) {
    let got = Valgrind {
        in_use_bytes: r.summary("leaked_heap_bytes"),
        in_use_blocks: r.summary("leaked_heap_blocks"),
        allocs: r.summary("allocations"),
        frees: r.summary("frees"),
        bytes_allocated: r.summary("bytes_allocated"),
    };
    assert_eq!(
        got,
        *o,
        "memtrace (left) vs valgrind (right)\n{}",
        r.describe_leaks()
    );
}

/// memcheck runs in all, at most, for one verdict (see [`agreeing_memcheck`]).
pub const MEMCHECK_RUNS: usize = 3;

/// The first of up to [`MEMCHECK_RUNS`] memcheck verdicts (`run` runs memcheck
/// once) that equals `want`, or every verdict when none does.
///
/// memcheck's kinds are not the same in every run: now and then a word that
/// points inside a lost block makes memcheck call it possibly lost. Seen here
/// with valgrind 3.19 on the large blocks of reach_big.c (big_list's head
/// possibly lost, and so its two others with it, or one of those alone), on a
/// busy machine: 5 runs of 80 with valgrind's gdbserver on (`--vgdb=yes`, the
/// default), 1 of 240 with `--vgdb=no`; and once in CI on oracle_jemalloc.c's
/// 1 MiB block. The next run agrees with the header again. So the oracle runs
/// are made with `--vgdb=no`, a disagreeing run is run again, and the test
/// fails only when no run of the three agrees.
pub fn agreeing_memcheck<T: PartialEq>(want: &T, mut run: impl FnMut() -> T) -> Result<T, Vec<T>> {
    let mut seen = Vec::new();
    for _ in 0..MEMCHECK_RUNS {
        let got = run();
        if &got == want {
            return Ok(got);
        }
        seen.push(got);
    }
    Err(seen)
}
