//! Huge and hostile logs: `memtrace report`'s memory is bounded by what the analysis
//! keeps (live blocks, distinct stacks), not by the file's size or its number of events
//! (analyzer/src/log.rs releases the pages of the mapping it has consumed). The full
//! 20M-event figure is measured by `scripts/bench-analyzer.sh`; the fuzzer is in `fuzz/`.

use std::ffi::c_void;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use memtrace_format::hdr::{ChunkHeader, off, write_header};
use memtrace_format::{CHUNK_HEADER_SIZE, CHUNK_MAGIC, Func, HEADER_SIZE, encode};

use crate::util::{TIMEOUT, memtrace};

/// Runs `cmd` with stdout into `out`; returns its exit code and peak RSS in KiB: the
/// VmHWM of the child's own address space, read at its exit.
///
/// Why the figure is the child's own: `ru_maxrss` (wait4, getrusage(RUSAGE_CHILDREN))
/// would not be. At exec the kernel folds the high-water mark of the address space being
/// replaced into the process's maxrss, and the child's address space before the exec is
/// the test process's (a copy of it after fork, the very same one during vfork or
/// posix_spawn): in the full suite that is hundreds of MiB, so the figure was the test
/// process's and the test failed only there. VmHWM in /proc/PID/status is the high-water
/// mark of the address space the exec made, which starts empty; it is read when the child
/// is stopped at its exit (ptrace's PTRACE_EVENT_EXIT: the address space is still there,
/// after the last byte was used), so nothing is missed either, as polling while it runs
/// could miss the last growth.
/// The child is reaped with `waitpid`, not `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut Command, out: &Path) -> (Option<i32>, u64) {
    use std::os::unix::process::CommandExt;
    use std::ptr::null_mut;
    // SAFETY: the closure runs in the child between fork and exec and makes one system
    // call, ptrace(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if ::libc::ptrace(
                ::libc::PTRACE_TRACEME,
                0,
                null_mut::<c_void>(),
                null_mut::<c_void>(),
            ) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .stdout(File::create(out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn memtrace");
    let pid = child.id() as ::libc::pid_t;
    let start = Instant::now();
    // The child's next change of state (a stop or its end); it is killed if it takes
    // longer than the time allowed (it is not reaped yet when that is decided).
    let wait = || loop {
        let mut status = 0;
        // SAFETY: waiting for our own child; `status` is a valid out-pointer.
        let r = unsafe { ::libc::waitpid(pid, &mut status, ::libc::WNOHANG) };
        if r == pid {
            return status;
        }
        assert_eq!(r, 0, "waitpid: {}", std::io::Error::last_os_error());
        if start.elapsed() > TIMEOUT {
            // SAFETY: killing our own child, not yet reaped.
            unsafe { ::libc::kill(pid, ::libc::SIGKILL) };
            panic!("memtrace report timed out");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let ptrace = |request: ::libc::c_uint, data: usize, what: &str| {
        // SAFETY: a request on our own tracee, stopped (waitpid said so).
        let r = unsafe { ::libc::ptrace(request, pid, null_mut::<c_void>(), data as *mut c_void) };
        assert_eq!(r, 0, "{what}: {}", std::io::Error::last_os_error());
    };
    // Stopped at its exec: have it stop at its exit too.
    let status = wait();
    assert!(
        ::libc::WIFSTOPPED(status) && ::libc::WSTOPSIG(status) == ::libc::SIGTRAP,
        "the child did not stop at its exec: status {status:#x}"
    );
    let opts = ::libc::PTRACE_O_TRACEEXIT | ::libc::PTRACE_O_EXITKILL;
    ptrace(
        ::libc::PTRACE_SETOPTIONS,
        opts as usize,
        "PTRACE_SETOPTIONS",
    );
    ptrace(::libc::PTRACE_CONT, 0, "PTRACE_CONT");
    let mut hwm_kib = None;
    loop {
        let status = wait();
        if ::libc::WIFEXITED(status) {
            let code = Some(::libc::WEXITSTATUS(status));
            let hwm = hwm_kib.expect("the child was not stopped at its exit");
            return (code, hwm);
        }
        if ::libc::WIFSIGNALED(status) {
            return (None, hwm_kib.unwrap_or(0));
        }
        assert!(::libc::WIFSTOPPED(status), "status {status:#x}");
        if status >> 8 == ::libc::SIGTRAP | (::libc::PTRACE_EVENT_EXIT << 8) {
            let st = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .expect("read the exiting child's /proc/PID/status");
            let kib = st
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no VmHWM in the exiting child's status:\n{st}"));
            hwm_kib = Some(kib);
            ptrace(::libc::PTRACE_CONT, 0, "PTRACE_CONT");
        } else {
            // A signal for the child: delivered as it would have been untraced.
            let sig = ::libc::WSTOPSIG(status) as usize;
            ptrace(::libc::PTRACE_CONT, sig, "PTRACE_CONT");
        }
    }
}

fn header(page: &mut [u8; HEADER_SIZE]) {
    write_header(
        page,
        4096,
        4242,
        1,
        0,
        1_000,
        0,
        0,
        b"/bin/churn",
        b"churn\0",
    );
    page[off::STATE..off::STATE + 4].copy_from_slice(&2u32.to_le_bytes());
}

/// Writes one stream of 1 MiB chunks.
struct Chunks {
    f: BufWriter<File>,
    chunk: Vec<u8>,
    pos: usize,
    seq: u32,
}

impl Chunks {
    const SIZE: usize = 1 << 20;

    fn flush(&mut self) {
        let h = ChunkHeader {
            size: Self::SIZE as u32,
            stream: 0,
            tid: 4242,
            seq: self.seq,
            base_time: 1_000,
        };
        let mut hb = [0u8; CHUNK_HEADER_SIZE];
        h.encode_without_magic(&mut hb);
        hb[..4].copy_from_slice(&CHUNK_MAGIC.to_le_bytes());
        self.chunk[..CHUNK_HEADER_SIZE].copy_from_slice(&hb);
        self.f.write_all(&self.chunk).unwrap();
        self.chunk.fill(0);
        self.pos = CHUNK_HEADER_SIZE;
        self.seq += 1;
    }

    fn put(&mut self, rec: impl FnOnce(&mut [u8]) -> Option<usize>) {
        if Self::SIZE - self.pos < 64 {
            self.flush();
        }
        self.pos += rec(&mut self.chunk[self.pos..]).unwrap();
    }
}

/// A log of `pairs` malloc/free pairs over a sliding window of 1000 live blocks
/// and three stacks, in 1 MiB chunks of one stream.
fn churn_log(path: &Path, pairs: u64) {
    let mut f = BufWriter::new(File::create(path).unwrap());
    let mut page = [0u8; HEADER_SIZE];
    header(&mut page);
    f.write_all(&page).unwrap();
    let mut c = Chunks {
        f,
        chunk: vec![0u8; Chunks::SIZE],
        pos: CHUNK_HEADER_SIZE,
        seq: 0,
    };
    for id in 1..=3u32 {
        let frames = [0x40_1000 + u64::from(id), 0x40_2000, 0x40_3000];
        c.put(|b| encode::stack(b, id, &frames, None));
    }
    let addr = |i: u64| 0x5555_0000_0000u64 + (i % 7919) * 4096 + (i % 1000) * 16;
    for i in 0..pairs {
        if i >= 1000 {
            c.put(|b| encode::free(b, 1, Func::Free, addr(i - 1000)));
        }
        let size = 16 + (i * 2_654_435_761) % 4081;
        let stack = 1 + (i % 3) as u32;
        c.put(|b| encode::alloc(b, 1, Func::Malloc, addr(i), size, stack));
    }
    c.flush();
    c.f.flush().unwrap();
    drop(c);
    let end = std::fs::metadata(path).unwrap().len().to_le_bytes();
    let b = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&b, &end, off::RESERVED_END as u64).unwrap();
}

/// 4M events in a 50 MB log: the report is right and its peak RSS is far below the
/// file's size (the mapping's consumed pages are released as each pass goes on).
#[test]
fn many_events_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("churn.mtr");
    churn_log(&log, 2_000_000);
    let size_mib = std::fs::metadata(&log).unwrap().len() >> 20;
    assert!(size_mib >= 40, "log of {size_mib} MiB");
    let out = dir.path().join("report.json");
    let mut cmd = memtrace();
    cmd.args(["report", "--format", "json"]).arg(&log);
    let (code, rss_kib) = run_measured(&mut cmd, &out);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["summary"]["allocations"], 2_000_000);
    assert_eq!(v["summary"]["frees"], 2_000_000 - 1000);
    assert_eq!(v["summary"]["leaked_heap_blocks"], 1000);
    assert!(
        rss_kib < 32 * 1024,
        "memtrace report peaked at {rss_kib} KiB on a {size_mib} MiB log"
    );
}

/// A 1 GiB log that is all never-written chunk slots (a sparse file): walked in bounded
/// memory, and reported.
#[test]
fn sparse_gigabyte_of_empty_slots() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sparse.mtr");
    let mut page = [0u8; HEADER_SIZE];
    header(&mut page);
    let size = 1u64 << 30;
    page[off::RESERVED_END..off::RESERVED_END + 8].copy_from_slice(&size.to_le_bytes());
    let f = File::create(&log).unwrap();
    (&f).write_all(&page).unwrap();
    f.set_len(size).unwrap();
    drop(f);
    let out = dir.path().join("report.json");
    let mut cmd = memtrace();
    cmd.args(["report", "--format", "json"]).arg(&log);
    let (code, rss_kib) = run_measured(&mut cmd, &out);
    assert_eq!(code, Some(0));
    assert!(rss_kib < 32 * 1024, "peaked at {rss_kib} KiB");
}

// A program under its own file-size limit (RLIMIT_FSIZE) runs as bare: no SIGXFSZ when the
// log would pass the limit (exit 0, not 153), its own file intact; recording stops, the log
// stays within the limit, and the report names why and counts what was lost.
#[test]
fn file_size_limit_does_not_kill_the_program() {
    let t = crate::util::trace("fsize_limit", &[] as &[&str]);
    assert_eq!(
        t.output.status.code(),
        Some(0),
        "fsize_limit under the preload: {:?}\n{}",
        t.output.status,
        String::from_utf8_lossy(&t.output.stderr)
    );
    assert_eq!(
        std::fs::read(t.dir.path().join("own.txt")).unwrap(),
        b"sixteen bytes!!\n"
    );
    let log = t.only_log();
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size <= 256 * 1024, "the log passed the limit: {size} bytes");
    let r = crate::util::report(&log);
    assert!(r.summary_bool("file_size_limit"), "file_size_limit not set");
    let lost = r.summary("events_lost");
    let recorded = r.summary("allocations") + r.summary("frees");
    assert!(lost > 0, "no event counted as lost");
    // Every malloc and free is either recorded or counted lost (a few more events of the
    // start-up and exit are counted too).
    assert!(
        recorded + lost >= 400_000,
        "recorded {recorded} + lost {lost} < 400,000"
    );
    let mut cmd = crate::util::memtrace();
    cmd.arg("report").arg(&log);
    let out = crate::util::output_with_timeout(&mut cmd, crate::util::TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("recording stopped when the log reached the process's file-size limit"),
        "{text}"
    );
}

/// A text report of `log`.
fn text_report(log: &std::path::Path) -> String {
    let mut cmd = crate::util::memtrace();
    cmd.arg("report").arg(log);
    let out = crate::util::output_with_timeout(&mut cmd, crate::util::TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// A program that closes every descriptor from 3 up, or dup2()s a file of its own over every
// open one, then opens and writes its own file: memtrace never writes through the number it
// had (the program's file stays 16 bytes, not megabytes of log chunks), reopens its log by
// path, loses nothing, and the report says what happened.
#[test]
fn a_program_taking_every_descriptor_over_keeps_its_files() {
    for mode in ["close", "dup2"] {
        let t = crate::util::trace("fd_takeover", &[mode]);
        t.assert_exit(0);
        assert_eq!(t.stdout(), "ok\n", "{mode}: {}", t.describe());
        assert_eq!(
            std::fs::read(t.dir.path().join("own.dat")).unwrap(),
            b"sixteen bytes!!\n",
            "{mode}"
        );
        let log = t.only_log();
        let r = crate::util::report(&log);
        assert!(
            r.summary_bool("log_fd_replaced"),
            "{mode}: log_fd_replaced not set"
        );
        r.assert_complete();
        r.assert_heap_leaked(960, 20);
        r.assert_leak("heap", "before_site", 400, 10);
        r.assert_leak("heap", "after_site", 560, 10);
        assert!(
            text_report(&log).contains("the program closed memtrace's log descriptor"),
            "{mode}"
        );
    }
}

// A program that installs a seccomp allow-list of only what it needs (no fallocate, fstat,
// openat, gettid ...; anything else kills it with SIGSYS) runs as bare under memtrace, by
// prctl and by syscall(SYS_seccomp): the events after the install are recorded into the
// reserve taken just before it, exactly; what does not fit is counted, not lost silently.
#[test]
fn a_seccomp_allow_list_does_not_kill_the_program() {
    for how in ["prctl", "syscall"] {
        let t = crate::util::trace("seccomp_allowlist", &[how]);
        t.assert_exit(0);
        assert_eq!(t.stdout(), "done\n", "{how}: {}", t.describe());
        let log = t.only_log();
        let r = crate::util::report(&log);
        assert!(
            r.summary_bool("seccomp_filter"),
            "{how}: seccomp_filter not set"
        );
        r.assert_complete();
        r.assert_heap_leaked(24_000, 1000);
        r.assert_leak("heap", "leak_site", 24_000, 1000);
        assert!(
            text_report(&log).contains("the program installed a seccomp filter"),
            "{how}"
        );
    }
    let t = crate::util::trace("seccomp_allowlist", &["syscall", "flood"]);
    t.assert_exit(0);
    assert_eq!(t.stdout(), "done\n", "flood: {}", t.describe());
    let log = t.only_log();
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(
        size <= (memtrace_format::SANDBOX_RESERVE as u64) + (2 << 20),
        "log of {size} bytes"
    );
    let r = crate::util::report(&log);
    assert!(r.summary_bool("seccomp_filter"));
    r.assert_leak("heap", "leak_site", 24_000, 1000);
    let lost = r.summary("events_lost");
    let recorded = r.summary("allocations") + r.summary("frees");
    assert!(lost > 0, "nothing counted as lost");
    // 1,000 leaks and 2,000,000 malloc/free pairs after the install: each one recorded or
    // counted (libc's start-up adds a handful before it).
    assert!(
        (4_001_000..4_001_100).contains(&(recorded + lost)),
        "recorded {recorded} + lost {lost}"
    );
}

// A program that unmaps memtrace's log mappings, or maps its own memory over them with
// MAP_FIXED, runs as bare (no SIGSEGV or SIGBUS, its pages untouched): memtrace moves its
// header, stops recording, and the report says why and counts what came after.
#[test]
fn unmapping_or_mapping_over_the_log_does_not_harm_the_program() {
    for mode in ["munmap", "fixed"] {
        let t = crate::util::trace("clobber_log", &[mode]);
        t.assert_exit(0);
        assert_eq!(t.stdout(), "ok\n", "{mode}: {}", t.describe());
        let log = t.only_log();
        let r = crate::util::report(&log);
        assert!(r.summary_bool("mapping_clobbered"), "{mode}");
        r.assert_leak("heap", "before_site", 400, 10);
        assert!(
            r.summary("events_lost") >= 20_010,
            "{mode}: events_lost {}",
            r.summary("events_lost")
        );
        r.assert_ended("exit");
        assert!(
            text_report(&log).contains("the program unmapped or mapped over memory memtrace"),
            "{mode}"
        );
    }
}

/// The two blocks of rlimits.c, each classified: 1,000 bytes definitely lost from
/// leak_lost, 2,000 still reachable from keep_reachable, nothing else.
fn assert_rlimits_kinds(r: &crate::util::Report) {
    r.assert_leak("heap", "leak_lost", 1000, 1);
    r.assert_leak("heap", "keep_reachable", 2000, 1);
    let k = &r.v["summary"]["leak_kinds"];
    let bc = |n: &str| (k[n]["bytes"].as_u64(), k[n]["count"].as_u64());
    assert_eq!(
        [
            bc("definite"),
            bc("indirect"),
            bc("possible"),
            bc("reachable")
        ],
        [
            (Some(1000), Some(1)),
            (Some(0), Some(0)),
            (Some(0), Some(0)),
            (Some(2000), Some(1))
        ],
        "{}",
        r.describe_leaks()
    );
}

/// Closes every descriptor from 3 up in `cmd`'s child before it runs (descriptors the
/// test harness leaks would change rlimits.c's count).
fn only_stdio(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: close_range is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// `rlimits MODE` run bare: its exit status and standard output.
fn rlimits_bare(mode: &str) -> (Option<i32>, String) {
    let mut cmd = crate::util::clean_command(crate::util::fixture("rlimits"));
    only_stdio(cmd.arg(mode));
    let out = crate::util::output_with_timeout(&mut cmd, crate::util::TIMEOUT);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `rlimits MODE` run under the preload: its standard output and the report of its log.
fn rlimits_traced(mode: &str) -> (String, crate::util::Report) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::util::traced_command("rlimits", dir.path(), "%e.%p.mtr");
    only_stdio(cmd.arg(mode));
    let out = crate::util::output_with_timeout(&mut cmd, crate::util::TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "rlimits {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = crate::util::logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = crate::util::report(&logs[0]);
    (String::from_utf8_lossy(&out.stdout).into_owned(), r)
}

// A program that lowers RLIMIT_NOFILE to 64 and opens descriptors until EMFILE gets every
// one of them (61, as bare: memtrace holds none below the limit), and its exit scan still
// classifies the blocks though the process has no descriptor left for the scanner's pipes
// (the scanner's mailbox in the process's memory takes their place). `memtrace check` of
// the same run judges the one definitely lost block, not the reachable one.
#[test]
fn a_program_at_its_descriptor_limit_loses_nothing() {
    assert_eq!(
        rlimits_bare("nofile"),
        (Some(0), "opened 61 of 61 free\n".to_owned()),
        "bare"
    );
    let (stdout, r) = rlimits_traced("nofile");
    assert_eq!(stdout, "opened 61 of 61 free\n", "traced");
    r.assert_complete();
    assert_rlimits_kinds(&r);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::util::memtrace();
    cmd.current_dir(dir.path())
        .args(["check", "--"])
        .arg(crate::util::fixture("rlimits"))
        .arg("nofile");
    let out = crate::util::output_with_timeout(only_stdio(&mut cmd), crate::util::TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(23), "stderr:\n{err}");
    for line in [
        "1 process judged of 1, 1 failed",
        "(2,000 bytes in 1 block still reachable not counted)",
        "max-leaked-bytes: 1,000 bytes in 1 block leaked (max 0)",
    ] {
        assert!(err.contains(line), "{line}\nstderr:\n{err}");
    }
}

// A program started with a large descriptor limit (soft raised to hard, at least 4,096)
// finds memtrace's log descriptor at 1,000, not in the top quarter of the limit: the
// kernel's descriptor table of every traced process stays at 1,024 entries (at 3/4 of a
// 1M limit, as containers often have, it was an 8 MiB table copied at every fork).
#[test]
fn the_log_descriptor_stays_low_under_a_large_descriptor_limit() {
    fn fdtable(traced: Option<&Path>) -> String {
        let mut cmd = match traced {
            Some(dir) => crate::util::traced_command("fdtable", dir, "%e.%p.mtr"),
            None => crate::util::clean_command(crate::util::fixture("fdtable")),
        };
        use std::os::unix::process::CommandExt;
        // SAFETY: getrlimit/setrlimit are async-signal-safe; nothing else runs in the child.
        unsafe {
            only_stdio(&mut cmd).pre_exec(|| {
                let mut l = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                l.rlim_cur = l.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = crate::util::output_with_timeout(&mut cmd, crate::util::TIMEOUT);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into our own struct.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    assert_eq!(got, 0);
    assert!(
        hard.rlim_max >= 4096,
        "this test needs a hard RLIMIT_NOFILE of at least 4,096 (have {})",
        hard.rlim_max
    );
    assert_eq!(fdtable(None), "highest 2\n", "bare");
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(fdtable(Some(dir.path())), "highest 1000\n", "traced");
    let logs = crate::util::logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    crate::util::report(&logs[0]).assert_complete();
}

// A program that caps its address space (RLIMIT_AS) 64 MiB above what it has mapped and
// maps 1 MiB blocks until ENOMEM gets as many under memtrace as bare (64): memtrace maps
// nothing of its own after start-up on a run this small, and the scan still classifies.
#[test]
fn a_program_at_its_address_space_limit_maps_as_much_as_bare() {
    assert_eq!(
        rlimits_bare("as"),
        (Some(0), "mapped 64\n".to_owned()),
        "bare"
    );
    let (stdout, r) = rlimits_traced("as");
    assert_eq!(stdout, "mapped 64\n", "traced");
    r.assert_complete();
    assert_rlimits_kinds(&r);
}
