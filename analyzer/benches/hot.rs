//! Benchmarks of the analyzer's hot spots, so that regressions show:
//!
//! - `decode`: memtrace-format's `RecordIter` over one full (1 MiB) chunk of
//!   ALLOC/FREE/REALLOC records, and `ChunkIter` plus `RecordIter` over a
//!   whole log;
//! - `replay`: indexing and replaying a log of about a million events (live
//!   block map, peak, leaks), alone and as the whole `analyze_bytes` pipeline,
//!   and the exit scan's pass over it (`live_set`: the live blocks alone);
//! - `snapshot`: the incremental step of a snapshot of a running process
//!   (`live::follow`): reading the next 10k or 100k events of the log from
//!   where a retained `Tail` stopped, and applying them to the retained
//!   catalog and replay;
//! - `pack`: packing the log at once, packing it in rounds while it is
//!   written (`LivePack`, as `memtrace run` does beside the program), and
//!   reading the packed log back;
//! - `symbolize`: frames in this executable and in libc, with a fresh
//!   symbolizer (ELF and DWARF read anew) and with a warm one (cache hits);
//! - `stacks`: the catalog's stack table taking in 2^18 distinct stacks of
//!   24 frames (shaped as scripts/bench/stacks.c's: each a path of its own
//!   down a binary tree of call sites), and finding the ids with equal
//!   frames among them (the pass that lists each stack once).
//!
//! The log is synthetic but shaped like a real one: four threads, chunks
//! growing from 4 KiB to 1 MiB as the preload's writer makes them, stacks
//! written once before their first use, addresses reused LIFO as an
//! allocator does, a live set that grows to a peak and shrinks, with leaks
//! left at the end; with `MEMTRACE_BENCH_RAW=LOG` the live packer's
//! benchmarks run on that raw log of a real program too. Run:
//! `cargo bench -p memtrace --bench hot` (add
//! `-- --quick` for a fast pass, or a name filter such as `-- replay`).

use std::ffi::CStr;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use memtrace_analyzer::analysis::reach::live_set;
use memtrace_analyzer::analysis::replay;
use memtrace_analyzer::analysis::symbolize::{Module, Modules, Symbolizer};
use memtrace_analyzer::log::Log;
use memtrace_analyzer::pack::LivePack;
use memtrace_analyzer::{Options, analyze_bytes};
use memtrace_format::hdr::{ChunkHeader, off, write_header};
use memtrace_format::{
    CHUNK_HEADER_SIZE, CHUNK_MAGIC, ChunkIter, ExitHow, Func, HEADER_SIZE, Record, RecordIter,
    encode,
};

/// Allocation-family events in the synthetic log (a REALLOC counts once).
const EVENTS: u64 = 1_000_000;
/// Threads writing the log, one stream each.
const STREAMS: usize = 4;
/// Distinct allocation stacks.
const STACKS: u32 = 2000;
/// Live blocks (all threads) at the peak.
const PEAK_LIVE: usize = 40_000;
/// The preload's first and largest chunk sizes.
const FIRST_CHUNK: usize = 4096;
const MAX_CHUNK: usize = 1 << 20;
/// Start of the monotonic clock in the log.
const T0: u64 = 1_000_000_000;

/// xorshift64*: deterministic, so every run benchmarks the same log.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One thread's stream under construction.
struct Stream {
    id: u32,
    seq: u32,
    /// The current chunk's records area (chunk size less the header).
    body: Vec<u8>,
    pos: usize,
    base: u64,
    /// Time of the chunk's previous record (deltas are taken from it).
    last: u64,
    next_size: usize,
    /// Live blocks: (address, size).
    live: Vec<(u64, u64)>,
    /// Freed addresses, reused last-in first-out.
    free_list: Vec<u64>,
    bump: u64,
}

impl Stream {
    fn new(id: u32) -> Self {
        Stream {
            id,
            seq: 0,
            body: Vec::new(),
            pos: 0,
            base: T0,
            last: T0,
            next_size: FIRST_CHUNK,
            live: Vec::new(),
            free_list: Vec::new(),
            bump: 0x5555_0000_0000 + (u64::from(id) << 32),
        }
    }

    /// Appends the current chunk to `file` and starts one of the next size at `now`.
    fn flush(&mut self, file: &mut Vec<u8>, now: u64) {
        if !self.body.is_empty() {
            let size = CHUNK_HEADER_SIZE + self.body.len();
            let h = ChunkHeader {
                size: size as u32,
                stream: self.id,
                tid: 1000 + self.id,
                seq: self.seq,
                base_time: self.base,
            };
            self.seq += 1;
            let mut hb = [0u8; CHUNK_HEADER_SIZE];
            h.encode_without_magic(&mut hb);
            hb[..4].copy_from_slice(&CHUNK_MAGIC.to_le_bytes());
            self.body[self.pos..].fill(0);
            file.extend_from_slice(&hb);
            file.extend_from_slice(&self.body);
        }
        self.body = vec![0; self.next_size - CHUNK_HEADER_SIZE];
        self.next_size = (self.next_size * 2).min(MAX_CHUNK);
        self.pos = 0;
        self.base = now;
        self.last = now;
    }

    /// Encodes one record at time `t` (ending at `after`) with `f`, which
    /// gets the delta time; opens a new chunk when the record does not fit.
    fn put(
        &mut self,
        file: &mut Vec<u8>,
        t: u64,
        after: u64,
        f: impl Fn(&mut [u8], u64) -> Option<usize>,
    ) {
        loop {
            // A record needs 3 bytes past the data: a zero length ends the chunk.
            let end = self.body.len().saturating_sub(3);
            if let Some(n) = f(&mut self.body[self.pos..end.max(self.pos)], t - self.last) {
                self.pos += n;
                self.last = after;
                return;
            }
            self.flush(file, self.last);
        }
    }

    fn stack(&mut self, file: &mut Vec<u8>, id: u32, frames: &[u64]) {
        let t = self.last;
        self.put(file, t, t, |b, _| encode::stack(b, id, frames, None));
    }
}

/// Builds the synthetic log; returns it with the number of records.
fn build_log() -> (Vec<u8>, u64) {
    let mut file = vec![0u8; HEADER_SIZE];
    let page: &mut [u8; HEADER_SIZE] = (&mut file[..HEADER_SIZE]).try_into().unwrap();
    write_header(page, 4096, 4242, 1, 0, T0, 0, 0, b"/bin/bench", b"bench\0");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut streams: Vec<Stream> = (0..STREAMS as u32).map(Stream::new).collect();
    for s in &mut streams {
        s.flush(&mut file, T0);
    }
    let mut stack_written = vec![false; STACKS as usize + 1];
    let mut frames = Vec::new();
    let (mut t, mut records, mut live) = (T0, 0u64, 0usize);
    for i in 0..EVENTS {
        t += 1 + rng.below(300);
        let s = &mut streams[rng.below(STREAMS as u64) as usize];
        // The live set grows to PEAK_LIVE over 60% of the run, then shrinks to a twentieth.
        let target = if i < EVENTS * 6 / 10 {
            PEAK_LIVE as u64 * i / (EVENTS * 6 / 10)
        } else {
            PEAK_LIVE as u64
                - PEAK_LIVE as u64 * 19 / 20 * (i - EVENTS * 6 / 10) / (EVENTS * 4 / 10)
        };
        let grow = if (live as u64) < target { 60 } else { 40 };
        let dice = rng.below(100);
        if s.live.is_empty() || dice < grow {
            let size = match rng.below(100) {
                0..70 => 8 + rng.below(120),
                70..95 => 128 + rng.below(1920),
                _ => 2048 + rng.below(62 * 1024),
            };
            // Small ids are the common call sites.
            let stack = 1 + rng
                .below(u64::from(STACKS))
                .min(rng.below(u64::from(STACKS))) as u32;
            if !stack_written[stack as usize] {
                stack_written[stack as usize] = true;
                frames.clear();
                let mut pc = 0x5555_5555_4000 + u64::from(stack) * 0x40;
                for _ in 0..6 + rng.below(25) {
                    frames.push(pc);
                    pc = 0x5555_5555_4000 + rng.below(0x20_0000);
                }
                s.stack(&mut file, stack, &frames);
                records += 1;
            }
            let addr = s.free_list.pop().unwrap_or_else(|| {
                s.bump += 0x10000;
                s.bump
            });
            s.live.push((addr, size));
            live += 1;
            s.put(&mut file, t, t, |b, dt| {
                encode::alloc(b, dt, Func::Malloc, addr, size, stack)
            });
        } else if dice < grow + 3 {
            // realloc of a live block to a new address
            let k = rng.below(s.live.len() as u64) as usize;
            let old = s.live[k].0;
            s.bump += 0x10000;
            let new = s.bump;
            let size = (s.live[k].1 * 2).min(1 << 20);
            s.live[k] = (new, size);
            s.free_list.push(old);
            let after = t + 1 + rng.below(50);
            let stack = 1 + rng.below(u64::from(STACKS) / 10) as u32;
            // A stack the alloc branch has not written yet: realloc sites are few.
            if !stack_written[stack as usize] {
                stack_written[stack as usize] = true;
                s.stack(&mut file, stack, &[0x5555_5555_8000 + u64::from(stack)]);
                records += 1;
            }
            s.put(&mut file, t, after, |b, dt| {
                encode::realloc(b, dt, after - t, Func::Realloc, old, new, size, stack)
            });
            t = after;
        } else {
            let k = rng.below(s.live.len() as u64) as usize;
            let (addr, _) = s.live.swap_remove(k);
            s.free_list.push(addr);
            live -= 1;
            s.put(&mut file, t, t, |b, dt| {
                encode::free(b, dt, Func::Free, addr)
            });
        }
        records += 1;
    }
    for s in &mut streams {
        s.flush(&mut file, t);
    }
    let set = |file: &mut Vec<u8>, o: usize, v: &[u8]| file[o..o + v.len()].copy_from_slice(v);
    let end = file.len() as u64;
    set(&mut file, off::RESERVED_END, &end.to_le_bytes());
    set(&mut file, off::STATE, &(ExitHow::Exit as u32).to_le_bytes());
    set(&mut file, off::END_MONO, &(t + 1000).to_le_bytes());
    (file, records)
}

/// Decodes every record of `it`, folding them so nothing is optimized away.
fn decode_all(it: RecordIter<'_>) -> u64 {
    let mut acc = 0u64;
    for r in it {
        acc = acc.wrapping_add(match r.expect("valid record") {
            Record::Alloc { addr, size, .. } => addr ^ size,
            Record::Free { addr, .. } => addr,
            Record::Realloc { new, .. } => new,
            Record::Stack { frames, .. } => frames.len() as u64,
            _ => 1,
        });
    }
    acc
}

fn decode(c: &mut Criterion, log: &[u8]) {
    let reserved_end = log.len() as u64;
    let chunks: Vec<_> = ChunkIter::new(log, reserved_end)
        .map(|c| c.expect("valid chunk"))
        .collect();
    let full = chunks
        .iter()
        .find(|c| c.body.len() + CHUNK_HEADER_SIZE == MAX_CHUNK)
        .expect("a 1 MiB chunk");
    let in_chunk = full.records().count() as u64;
    let in_log: u64 = chunks.iter().map(|c| c.records().count() as u64).sum();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(in_chunk));
    g.bench_function("records_1MiB_chunk", |b| {
        b.iter(|| decode_all(black_box(full).records()))
    });
    g.throughput(Throughput::Elements(in_log));
    g.bench_function("chunks_whole_log", |b| {
        b.iter(|| {
            ChunkIter::new(black_box(log), reserved_end)
                .map(|c| decode_all(c.expect("valid chunk").records()))
                .fold(0u64, u64::wrapping_add)
        })
    });
    g.finish();
}

/// A group of benchmarks that each take a good part of a second over
/// `records` records: ten flat samples in five seconds.
fn slow_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    records: u64,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(records));
    g
}

fn replay_bench(c: &mut Criterion, bytes: &[u8], records: u64) {
    let log = Log::from_bytes(Path::new("bench.mtr"), bytes);
    // Half a second an iteration: ten samples of one iteration each.
    let mut g = slow_group(c, "replay", records);
    g.bench_function("index_and_replay_1M", |b| {
        b.iter(|| {
            let h = log.header().expect("header");
            let idx = log.index(&h).expect("index");
            replay::replay(&log, &idx, replay::Config::of(&h)).expect("replay")
        })
    });
    // The exit scan's pass: the live set alone, chunks decoded on every core
    // without merging the streams.
    g.bench_function("index_and_live_set_1M", |b| {
        b.iter(|| {
            let h = log.header().expect("header");
            let idx = log.index(&h).expect("index");
            live_set::end_state(&log, &idx, replay::Config::of(&h), &[]).expect("live set")
        })
    });
    g.bench_function("analyze_bytes_1M", |b| {
        b.iter(|| analyze_bytes(black_box(bytes), &Options::default()).expect("report"))
    });
    g.finish();
}

/// The incremental step of a snapshot: from a state retained at the log's
/// middle, the next `n` events read (`Tail::read` up to their time) and
/// applied to the catalog and the replay.
fn snapshot_bench(c: &mut Criterion, bytes: &[u8]) {
    use memtrace_analyzer::analysis::catalog::Catalog;
    use memtrace_analyzer::log::tail::Tail;
    let log = Log::from_bytes(Path::new("bench.mtr"), bytes);
    let h = log.header().expect("header");
    let (end, cfg) = (h.reserved_end, replay::Config::of(&h));
    let times: Vec<u64> = Tail::default()
        .read(bytes, end, u64::MAX)
        .expect("tail")
        .iter()
        .map(|e| e.time)
        .collect();
    let mid = times[times.len() / 2];
    let mut tail = Tail::default();
    let mut cat = Catalog::default();
    let mut r = replay::Replay::new(cfg);
    for ev in tail.read(bytes, end, mid).expect("tail") {
        cat.observe(&ev, &log, &tail.index).expect("observe");
        r.apply(&ev);
    }
    let mut g = c.benchmark_group("snapshot");
    for n in [10_000usize, 100_000] {
        let until = times[times.len() / 2 + n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("tail_read_apply_{}k", n / 1000), |b| {
            b.iter_batched(
                || (tail.clone(), cat.clone(), r.clone()),
                |(mut tail, mut cat, mut r)| {
                    for ev in tail.read(bytes, end, until).expect("tail") {
                        cat.observe(&ev, &log, &tail.index).expect("observe");
                        r.apply(&ev);
                    }
                    (r.live_blocks(), tail, cat, r)
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// Packing the log, and reading the packed log's events back (the path of
/// every `memtrace report` after `memtrace run`).
fn pack_bench(c: &mut Criterion, bytes: &[u8], records: u64) {
    let log = Log::from_bytes(Path::new("bench.mtr"), bytes);
    let mut packed = std::io::Cursor::new(Vec::new());
    memtrace_analyzer::pack::pack(&log, &mut packed).expect("pack");
    let packed = packed.into_inner();
    eprintln!(
        "packed: {} KiB ({:.2} bytes per record)",
        packed.len() >> 10,
        packed.len() as f64 / records as f64
    );
    let plog = Log::from_bytes(Path::new("bench.mtz"), &packed);
    let mut g = slow_group(c, "pack", records);
    g.bench_function("pack_1M", |b| {
        b.iter(|| {
            let mut out = std::io::Cursor::new(Vec::with_capacity(packed.len() * 2));
            memtrace_analyzer::pack::pack(&log, &mut out).expect("pack")
        })
    });
    g.bench_function("decode_packed_1M", |b| {
        b.iter(|| {
            let h = plog.header().expect("header");
            let idx = plog.index(&h).expect("index");
            plog.merge(&idx)
                .map(|e| e.expect("event").time)
                .fold(0u64, u64::wrapping_add)
        })
    });
    // What `memtrace report` does with it: decoding on one core, handing
    // the events over to the replay on the other.
    g.bench_function("replay_packed_1M", |b| {
        b.iter(|| {
            let h = plog.header().expect("header");
            let idx = plog.index(&h).expect("index");
            replay::replay(&plog, &idx, replay::Config::of(&h)).expect("replay")
        })
    });
    g.finish();
}

/// Packing the log while it is written (`memtrace run`'s live packer): the
/// rounds alone (`LivePack::advance` over the whole log, in rounds of
/// about 65k events, the size `memtrace run` gives a round when behind),
/// and the whole path with `LivePack::finish` and the commit. The rounds'
/// rate is what the packer must sustain beside the program.
fn live_pack_bench(c: &mut Criterion, bytes: &[u8], records: u64, name: &str) {
    let rounds_n = records.div_ceil(1 << 16).max(1);
    let dir = tempfile::tempdir().expect("temporary directory");
    let raw = dir.path().join("raw.mtr");
    std::fs::write(&raw, bytes).expect("write the raw log");
    let h = Log::from_bytes(&raw, bytes);
    let h = h.header().expect("header");
    let (start, end) = (h.start_mono_ns, h.end_mono_ns);
    let rounds = |lp: &mut LivePack| {
        let mut n = 0;
        for r in 1..=rounds_n {
            n += lp
                .advance(start + (end - start) * r / rounds_n)
                .expect("advance");
        }
        n
    };
    {
        let mut lp = LivePack::new(&raw).expect("live pack");
        let n = rounds(&mut lp);
        assert!(n * 10 > records * 9, "{n} of {records} packed in rounds");
        lp.finish(&dir.path().join("check.mtr")).expect("finish");
    }
    let mut g = slow_group(c, "pack", records);
    g.bench_function(format!("live_rounds_{name}"), |b| {
        b.iter_batched(
            || LivePack::new(&raw).expect("live pack"),
            |mut lp| {
                black_box(rounds(&mut lp));
                lp
            },
            BatchSize::PerIteration,
        )
    });
    let dst = dir.path().join("live.mtr");
    g.bench_function(format!("live_whole_{name}"), |b| {
        b.iter(|| {
            let mut lp = LivePack::new(&raw).expect("live pack");
            rounds(&mut lp);
            lp.finish(&dst).expect("finish").commit().expect("commit")
        })
    });
    g.finish();
}

/// The objects loaded in this process, as MODULE records would list them.
fn loaded_modules() -> Modules {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our `data`, a `Vec<Module>`.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Module>)) };
        // SAFETY: dlpi_phdr holds dlpi_phnum headers.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let (mut start, mut end) = (u64::MAX, 0);
        for p in phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD) {
            start = start.min(info.dlpi_addr + p.p_vaddr);
            end = end.max(info.dlpi_addr + p.p_vaddr + p.p_memsz);
        }
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null name is NUL-terminated.
            let name = unsafe { CStr::from_ptr(info.dlpi_name) };
            name.to_string_lossy().into_owned()
        };
        let path = if name.is_empty() {
            // The main program.
            std::env::current_exe()
                .expect("current_exe")
                .display()
                .to_string()
        } else {
            name
        };
        if start < end {
            out.push(Module {
                path: path.into(),
                build_id: Vec::new(),
                bias: info.dlpi_addr,
                start,
                end,
                loaded: T0,
                unloaded: None,
            });
        }
        0
    }
    let mut list: Vec<Module> = Vec::new();
    // SAFETY: the callback only reads what it is given and writes to `list`.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each),
            &mut list as *mut Vec<Module> as *mut libc::c_void,
        )
    };
    let mut modules = Modules::default();
    for m in list {
        modules.add(m);
    }
    modules
}

/// Return addresses in this executable (Rust code with inlining and DWARF)
/// and in libc (symbol table only), as stacks of eight frames.
fn stacks_to_symbolize() -> Vec<Vec<u64>> {
    let exe: [usize; 8] = [
        build_log as *const () as usize,
        decode_all as *const () as usize,
        loaded_modules as *const () as usize,
        Rng::next as *const () as usize,
        memtrace_analyzer::units::thousands as *const () as usize,
        memtrace_analyzer::analysis::symbolize::demangle as *const () as usize,
        Symbolizer::stack as *const () as usize,
        replay::replay as *const () as usize,
    ];
    let libc: [usize; 8] = [
        libc::malloc as *const () as usize,
        libc::free as *const () as usize,
        libc::calloc as *const () as usize,
        libc::realloc as *const () as usize,
        libc::qsort as *const () as usize,
        libc::fopen as *const () as usize,
        libc::getenv as *const () as usize,
        libc::dl_iterate_phdr as *const () as usize,
    ];
    // Inside each function, as a return address would be.
    let at = |f: usize, k: u64| f as u64 + 4 + 4 * k;
    (0..8u64)
        .map(|k| {
            exe.iter()
                .chain(&libc)
                .skip(k as usize)
                .take(8)
                .map(|&f| at(f, k))
                .collect()
        })
        .collect()
}

fn symbolize(c: &mut Criterion) {
    let modules = loaded_modules();
    let stacks = stacks_to_symbolize();
    let frames: u64 = stacks.iter().map(|s| s.len() as u64).sum();
    let run = |sym: &mut Symbolizer| {
        stacks
            .iter()
            .map(|s| sym.stack(&modules, s, Some(T0)).len())
            .sum::<usize>()
    };
    let mut warm = Symbolizer::new();
    let named = stacks
        .iter()
        .flat_map(|s| warm.stack(&modules, s, Some(T0)))
        .filter(|f| f.function.is_some())
        .count();
    assert!(
        named as u64 >= frames,
        "only {named} frames of {frames} symbolized: {:?}",
        warm.unusable(&modules)
    );
    let paths: Vec<Arc<str>> = (0..modules.len())
        .map(|i| modules.get(i).path.clone())
        .collect();
    assert!(
        paths.iter().any(|p| p.contains("libc.so")),
        "libc not found in {paths:?}"
    );

    let mut g = c.benchmark_group("symbolize");
    g.throughput(Throughput::Elements(frames));
    g.sample_size(10);
    g.bench_function("cold_exe_and_libc", |b| {
        b.iter_batched_ref(Symbolizer::new, |sym| run(sym), BatchSize::PerIteration)
    });
    g.sample_size(50);
    g.bench_function("cached", |b| b.iter(|| run(&mut warm)));
    g.finish();
}

/// Distinct stacks of the `stacks` group, and their depth in the tree.
const TREE_DEPTH: u32 = 18;

/// Stack `i` of the `stacks` group, innermost first: a leaf, then one of two
/// call sites per level as bit k of `i` says, then four outer frames.
fn tree_stack(i: u32) -> impl Iterator<Item = u64> {
    let leaf = std::iter::once(0x40_1000u64);
    let path = (0..TREE_DEPTH)
        .rev()
        .map(move |k| 0x40_2000 + 0x100 * k as u64 + 8 * ((i >> k) & 1) as u64);
    let outer = [0x40_3000u64, 0x7f00_0002_9d90, 0x7f00_0002_9e40, 0x40_0a25].into_iter();
    leaf.chain(path)
        .chain(outer)
        .chain(std::iter::once(0x40_0b00))
}

fn stacks_bench(c: &mut Criterion) {
    use memtrace_analyzer::analysis::stack_store::StackStore;
    let n = 1u32 << TREE_DEPTH;
    let fill = || {
        let mut s = StackStore::default();
        for i in 0..n {
            s.insert(i + 1, tree_stack(i));
        }
        s
    };
    let full = fill();
    assert_eq!(full.len(), n as usize);
    assert!(
        full.twins().is_empty(),
        "every stack of the tree is distinct"
    );
    let mut g = c.benchmark_group("stacks");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("intern_256k", |b| b.iter(|| black_box(fill()).len()));
    g.bench_function("twins_256k", |b| b.iter(|| black_box(full.twins()).len()));
    g.finish();
}

fn benches(c: &mut Criterion) {
    let (log, records) = build_log();
    // The log must be one the analyzer accepts and finds a peak and leaks in.
    let report = analyze_bytes(&log, &Options::default()).expect("synthetic log analyzes");
    let s = &report.summary;
    assert!(s.allocations > EVENTS / 2 && s.frees > EVENTS / 3, "{s:?}");
    assert!(
        s.peak_heap_bytes > s.leaked_heap_bytes && s.leaked_heap_blocks > 0,
        "{s:?}"
    );
    assert_eq!(
        (s.unknown_frees, s.anomalies, s.torn_records),
        (0, 0, 0),
        "{s:?}"
    );
    eprintln!(
        "synthetic log: {} MiB, {records} records, {} allocs, {} frees, peak {} bytes, \
         {} leaked blocks",
        log.len() >> 20,
        s.allocations,
        s.frees,
        s.peak_heap_bytes,
        s.leaked_heap_blocks,
    );
    decode(c, &log);
    replay_bench(c, &log, records);
    pack_bench(c, &log, records);
    live_pack_bench(c, &log, records, "1M");
    // A raw log of a real run, for the live packer on a real program's events.
    if let Some(raw) = std::env::var_os("MEMTRACE_BENCH_RAW") {
        let bytes = std::fs::read(&raw).expect("MEMTRACE_BENCH_RAW: a raw log");
        let l = Log::from_bytes(Path::new("raw.mtr"), &bytes);
        let idx = l.index(&l.header().expect("header")).expect("index");
        let n = l.merge(&idx).count() as u64;
        live_pack_bench(c, &bytes, n, "real");
    }
    snapshot_bench(c, &log);
    symbolize(c);
    stacks_bench(c);
}

criterion_group!(hot, benches);
criterion_main!(hot);
