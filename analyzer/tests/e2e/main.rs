//! End-to-end tests: the fixtures of `tests/fixtures/` run under `libmemtrace.so`, and
//! `memtrace report --format json` must state exactly what each fixture's header comment
//! says. One test binary; `util` is the harness.
//!
//! Needs `libmemtrace.so` built (`cargo build --workspace`; `scripts/test.sh` does it),
//! gcc, g++ and rustc; valgrind is the oracle for heap totals. Every tool a test uses is
//! required: missing, it fails the test with the package to install (`util::require_tool`;
//! `scripts/deps.sh` installs them all), never skips it.
//!
//! Modules:
//! - `heap`: the malloc family, aligned allocations, realloc chains, peak, valgrind totals
//! - `threads`: 8 threads leaking concurrently
//! - `processes`: fork, exec, exit(), _exit(), SIGKILL
//! - `program_suppressions`: a program's own `__lsan_default_suppressions()` in `memtrace check`, against LSan
//! - `inherit`: a fork child's leaks include the blocks it inherited from its parent, against memcheck
//! - `dlopen`: a leak inside a library unloaded before exit
//! - `mapping`: mmap/munmap/mremap and brk/sbrk
//! - `signals`: allocation in signal handlers
//! - `languages`: C++ (new, containers, exceptions) and Rust
//! - `libc`: libc's own allocations are not leaks
//! - `corrupt`: damaged and truncated logs
//! - `kernel`: the kernel's view (RSS/PSS/USS samples, mapping tables, the gap) and `memtrace timeline`
//! - `live`: logs still being written: pack refuses them, report says still running
//! - `hostile`: huge logs (millions of events, a sparse gigabyte) in bounded memory
//! - `check`: `memtrace check`, the CI leak gate: rules, config, suppressions, baseline, JUnit
//! - `flamegraph`: `memtrace flamegraph` (every metric, SVGs parsed) and `memtrace diff` (JSON, text, differential SVG)
//! - `export`: `memtrace export` to pprof (read back with Python's protobuf), folded stacks and speedscope
//! - `export_valgrind`: `memtrace export` to massif (read by ms_print) and DHAT (loaded by dh_view.html in headless Chromium)
//! - `export_heaptrack`: `memtrace export` to heaptrack's data file, read by heaptrack_print: the same leaks, peak and allocations
//! - `html`: `memtrace report --html`, the page opened in headless Chromium: tables, charts, inferno's search, a screenshot
//! - `cli`: `memtrace run` and `MEMTRACE_OUTPUT`
//! - `install`: the embedded preload and its private cache, `memtrace lib`, a lone copy of the binary, the Debian package
//! - `lost`: a full file system: events are counted as lost, the program runs on
//! - `memcheck_xml`: `memtrace check --xml` against memcheck's own XML and read by ValgrindCI
//! - `security`: planted symlinks, existing files, setuid programs
//! - `reach`: leak kinds by reachability (definitely/indirectly/possibly lost, still reachable) against memcheck
//! - `scan`: the scan at exit, started by the process: the same kinds under run, check and LD_PRELOAD; failures named; nothing left behind; the snapshot signal never kills
//! - `oracles`: the cases of memcheck's and LeakSanitizer's leak suites (stale stacks, other threads' registers, cycles, TLS, swapcontext...), memtrace's kinds against memcheck's under `run`, `check` and plain LD_PRELOAD
//! - `heuristics`: memcheck's leak heuristics (stdstring, length64, newarray, multipleinheritance) against memcheck; needs valgrind
//! - `snapshot`: snapshots of a running server (`memtrace snapshot`, the signal), `report --since` and `--older-than`
//! - `questions`: `memtrace report --histogram`, `--filter`, `--by function` (heaptrack_print's questions), exact and against heaptrack_print
//! - `real_programs`: python3, perl, tclsh, sqlite3, git, gcc, bash, ripgrep, redis-server, C++, jemalloc and tcmalloc programs: same output as bare, sane logs, valgrind's totals
//! - `startup`: constructors before main, a program's own allocator (jemalloc), dlopen's RUNPATH
//! - `stacks`: more than 2^20 distinct stacks, each defined once in the log and listed once in the report
//! - `unsymbolized`: a frame without a symbol is `module+0xoffset`, checked with addr2line
//! - `unwind`: every stack against libgcc's unwinder (MEMTRACE_VERIFY_UNWIND); a bypassing malloc
//! - `tree`: `memtrace report DIR`, the processes of a run at once, and `--pid`
//! - `window`: `memtrace report --from T --to T`, a time window: its blocks live at its end, its allocations and peak; kinds only when it reaches exit
//! - `torture`: 8x1M mixed ops, 10,000 threads, fork/vfork/spawn, signals, longjmp, exceptions, dlopen x1000, abrupt ends, a full tmpfs

mod util;

mod check;
mod cli;
mod corrupt;
mod dlopen;
mod export;
mod export_heaptrack;
mod export_valgrind;
mod flamegraph;
mod golden;
mod heap;
mod heuristics;
mod hostile;
mod html;
mod inherit;
mod install;
mod kernel;
mod languages;
mod libc;
mod live;
mod lost;
mod mapping;
mod memcheck_xml;
mod oracles;
mod pack;
mod pool;
mod processes;
mod program_suppressions;
mod questions;
mod reach;
mod real_programs;
mod sampling;
mod scan;
mod security;
mod signals;
mod snapshot;
mod stacks;
mod startup;
mod threads;
mod torture;
mod tree;
mod unsymbolized;
mod unwind;
mod window;
