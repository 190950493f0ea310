//! The kernel's view of a traced process: what it charged the process, as
//! opposed to what the process asked for.
//!
//! `memtrace run` samples, from outside and without touching the target,
//! every process of the run at a fixed interval ([`Sampler`]):
//! `/proc/PID/smaps_rollup` (RSS, PSS, USS = private clean + private dirty,
//! swap, anonymous) and, when the process is in a cgroup v2 with the memory
//! controller, its `memory.current` and `memory.stat` (anon, file). Once a
//! second per process, or sooner (at most every 100 ms) when RSS has moved by
//! a tenth, it also reads `/proc/PID/smaps` whole and sums its mappings by
//! category (`[heap]`, `[stack]`, anonymous, file-backed,
//! memtrace's own: the preload and the log; other): the table taken when RSS
//! was highest, and the last one. Once a process has ended, its samples are
//! appended to its log as KERNEL records ([`append_records`]), in a chunk of a
//! stream of their own, so the log carries them (packing keeps them).
//!
//! At exit the process itself records its counters and its map table once
//! more (the preload's `kernel` module, asked for through
//! `MEMTRACE_KERNEL_INTERVAL`), so that the table "at the end" is exact.
//!
//! The analyzer side collects them back into a [`KernelView`].

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use memtrace_format::hdr::off;
use memtrace_format::kernel::{
    CATEGORIES, COUNTERS, KIND_COUNTERS, KIND_MAPS_AT_END, KIND_MAPS_AT_PEAK, STREAM,
};
use memtrace_format::{CHUNK_ALIGN, CHUNK_HEADER_SIZE, CHUNK_MAGIC, ChunkHeader, HEADER_SIZE};

/// Counters of one sample, in the order of [`COUNTERS`].
pub type Counters = [u64; COUNTERS.len()];

/// Size, RSS, PSS and swap of each category of [`CATEGORIES`].
pub type MapTable = [[u64; 4]; CATEGORIES.len()];

/// CLOCK_MONOTONIC in nanoseconds, the clock of the logs.
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The CPU time the calling thread has used, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Clock `clock`'s time in nanoseconds (0 if it cannot be read).
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; an unknown clock only fails.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// The value in bytes of a `Name:   123 kB` line, if `line` is about `name`.
fn kb_field(line: &str, name: &str) -> Option<u64> {
    let rest = line.strip_prefix(name)?.strip_prefix(':')?;
    let n: u64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(n.saturating_mul(1024))
}

/// Parses `smaps_rollup` into the first five counters (rss, pss, uss, swap,
/// anonymous); `None` when it has no Rss line (a zombie, or no such file).
pub fn parse_rollup(text: &str) -> Option<[u64; 5]> {
    let mut v = [0u64; 5];
    let mut seen = false;
    for line in text.lines() {
        if let Some(x) = kb_field(line, "Rss") {
            v[0] = x;
            seen = true;
        } else if let Some(x) = kb_field(line, "Pss") {
            v[1] = x;
        } else if let Some(x) = kb_field(line, "Private_Clean") {
            v[2] += x;
        } else if let Some(x) = kb_field(line, "Private_Dirty") {
            v[2] += x;
        } else if let Some(x) = kb_field(line, "Swap") {
            v[3] = x;
        } else if let Some(x) = kb_field(line, "Anonymous") {
            v[4] = x;
        }
    }
    seen.then_some(v)
}

/// The category (index into [`CATEGORIES`]) of a mapping named `path`.
fn category(path: &str, is_memtrace: &dyn Fn(&str) -> bool) -> usize {
    match path {
        "[heap]" => 0,
        p if p.starts_with("[stack") => 1,
        "" => 2,
        p if p.starts_with("[anon") => 2,
        p if is_memtrace(p) => 4,
        p if p.starts_with('/') => 3,
        _ => 5,
    }
}

/// Sums `/proc/PID/smaps` by category; `is_memtrace` tells memtrace's own
/// files (the preload library, the log).
pub fn parse_smaps(text: &str, is_memtrace: &dyn Fn(&str) -> bool) -> MapTable {
    let mut t: MapTable = [[0; 4]; CATEGORIES.len()];
    let mut cur = 5;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            // A mapping's header: start-end perms offset dev inode [path]
            let path = line
                .split_whitespace()
                .skip(5)
                .collect::<Vec<_>>()
                .join(" ");
            let path = path.strip_suffix(" (deleted)").unwrap_or(&path);
            cur = category(path, is_memtrace);
        } else if let Some(x) = kb_field(line, "Size") {
            t[cur][0] += x;
        } else if let Some(x) = kb_field(line, "Rss") {
            t[cur][1] += x;
        } else if let Some(x) = kb_field(line, "Pss") {
            t[cur][2] += x;
        } else if let Some(x) = kb_field(line, "Swap") {
            t[cur][3] += x;
        }
    }
    t
}

/// The cgroup v2 directory of `pid`, if it has the memory controller.
fn cgroup_dir(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let rel = rel.trim_start_matches('/');
    // The unified hierarchy, or its mount in a hybrid set-up.
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|root| Path::new(root).join(rel))
        .find(|dir| dir.join("memory.current").is_file())
}

/// `memory.current`, and `anon` and `file` of `memory.stat`.
fn read_cgroup(dir: &Path) -> Option<[u64; 3]> {
    let current: u64 = std::fs::read_to_string(dir.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
    let field = |name: &str| {
        stat.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    Some([current, field("anon"), field("file")])
}

/// The process `pid` and its descendants (through `/proc/PID/task/*/children`).
fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() && out.len() < 4096 {
        let p = out[i];
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(t.path().join("children")) else {
                continue;
            };
            for c in text.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// Everything sampled of one pid.
#[derive(Clone, Debug, Default)]
pub struct PidSamples {
    pub counters: Vec<(u64, Counters)>,
    /// The map table taken when RSS was highest, with its time.
    pub maps_at_peak: Option<(u64, MapTable)>,
    /// The last map table taken.
    pub maps_at_end: Option<(u64, MapTable)>,
    last_table: u64,
    last_table_rss: u64,
}

/// A round of samples is followed by a wait of at least this many times the
/// CPU time it took: the kernel walks a process's page tables for its
/// `smaps_rollup`, which for a heap of gigabytes takes milliseconds, and the
/// sampling is to cost at most a fiftieth of a core however large the tree.
const SAMPLING_SHARE: u32 = 50;

/// The wait after a round of samples that took `cost` of CPU time.
fn next_wait(interval: Duration, cost: Duration) -> Duration {
    interval.max(cost * SAMPLING_SHARE)
}

/// Samples a process tree from a thread of its own until stopped: every
/// interval, or less often when a round takes long (at most a fiftieth of a core).
pub struct Sampler {
    /// Dropped to stop the thread: its wait between samples ends at once
    /// (a sleep made every `memtrace run` last at least one interval).
    stop: std::sync::mpsc::Sender<()>,
    thread: JoinHandle<HashMap<u32, PidSamples>>,
    sampled: Sampled,
}

/// The pids a [`Sampler`] has tried to sample so far (each is added before
/// its first sample is taken), shared with the thread that packs logs while
/// the command runs: the log of a process that has ended and is not in the
/// set has all it will ever get.
#[derive(Clone, Default)]
pub struct Sampled(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<u32>>>);

impl Sampled {
    /// Whether process `pid` may have samples.
    pub fn contains(&self, pid: u32) -> bool {
        self.0.lock().is_ok_and(|s| s.contains(&pid))
    }

    fn insert(&self, pid: u32) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(pid);
        }
    }
}

impl Sampler {
    /// Starts sampling `pid`'s tree every `interval`; `is_memtrace` tells
    /// memtrace's own files in the smaps tables.
    pub fn start(
        pid: u32,
        interval: Duration,
        is_memtrace: Box<dyn Fn(&str) -> bool + Send>,
    ) -> std::io::Result<Sampler> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let sampled = Sampled::default();
        let seen = sampled.clone();
        let thread = std::thread::Builder::new()
            .name("kernel-sampler".into())
            .spawn(move || {
                let mut all: HashMap<u32, PidSamples> = HashMap::new();
                let mut cgroups: HashMap<u32, Option<PathBuf>> = HashMap::new();
                loop {
                    let began = thread_cpu_ns();
                    for p in tree(pid) {
                        // Before the sample is taken: a packer that finds
                        // `p` ended and not in the set knows that no sample of
                        // it can come any more.
                        seen.insert(p);
                        sample(p, &mut all, &mut cgroups, &*is_memtrace);
                    }
                    let cost = Duration::from_nanos(thread_cpu_ns().saturating_sub(began));
                    let wait = next_wait(interval, cost);
                    match stopped.recv_timeout(wait) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
                all
            })?;
        Ok(Sampler {
            stop,
            thread,
            sampled,
        })
    }

    /// The pids sampled so far, kept up to date as the sampler runs.
    pub fn sampled(&self) -> Sampled {
        self.sampled.clone()
    }

    /// Stops and returns the samples by pid.
    pub fn finish(self) -> HashMap<u32, PidSamples> {
        drop(self.stop);
        self.thread.join().unwrap_or_default()
    }
}

fn sample(
    pid: u32,
    all: &mut HashMap<u32, PidSamples>,
    cgroups: &mut HashMap<u32, Option<PathBuf>>,
    is_memtrace: &dyn Fn(&str) -> bool,
) {
    let t = mono_ns();
    let Some(r) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| parse_rollup(&s))
    else {
        return;
    };
    let cg = cgroups
        .entry(pid)
        .or_insert_with(|| cgroup_dir(pid))
        .as_deref()
        .and_then(read_cgroup)
        .unwrap_or([0; 3]);
    let c: Counters = [r[0], r[1], r[2], r[3], r[4], cg[0], cg[1], cg[2]];
    let s = all.entry(pid).or_default();
    s.counters.push((t, c));
    // Tables cost more: take one a second, or sooner when RSS has moved by a
    // tenth since the last one, so that the ones at the peak and at the end
    // are near them.
    let since = t.saturating_sub(s.last_table);
    let moved = c[0].abs_diff(s.last_table_rss) > s.last_table_rss / 10;
    if s.maps_at_end.is_none() || since >= 1_000_000_000 || (moved && since >= 100_000_000) {
        s.last_table = t;
        s.last_table_rss = c[0];
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) {
            let table = parse_smaps(&text, is_memtrace);
            let rss: u64 = table.iter().map(|c| c[1]).sum();
            let best = s
                .maps_at_peak
                .as_ref()
                .map(|(_, t)| t.iter().map(|c| c[1]).sum::<u64>());
            if best.is_none_or(|b| rss > b) {
                s.maps_at_peak = Some((t, table));
            }
            s.maps_at_end = Some((t, table));
        }
    }
}

/// The KERNEL records of the samples taken between `from` and `to`: (time,
/// kind, values), by time.
pub fn kernel_events(s: &PidSamples, from: u64, to: u64) -> Vec<(u64, u8, Vec<u64>)> {
    let within = |t: u64| t >= from && t <= to;
    let mut events: Vec<(u64, u8, Vec<u64>)> = s
        .counters
        .iter()
        .filter(|(t, _)| within(*t))
        .map(|(t, c)| (*t, KIND_COUNTERS, c.to_vec()))
        .collect();
    for (kind, table) in [
        (KIND_MAPS_AT_PEAK, &s.maps_at_peak),
        (KIND_MAPS_AT_END, &s.maps_at_end),
    ] {
        if let Some((t, table)) = table
            && within(*t)
        {
            events.push((*t, kind, table.iter().flatten().copied().collect()));
        }
    }
    events.sort_by_key(|e| (e.0, e.1));
    events
}

/// Appends KERNEL records (time, kind, values) to the log at `path`, whose
/// process has ended, as one chunk of the stream [`STREAM`] at the end of the
/// reserved space; the header's reserved end then moves past it. Returns the
/// number of records written. Call it once per log: a second chunk of the
/// stream would repeat its sequence number.
pub fn append_records(path: &Path, mut events: Vec<(u64, u8, Vec<u64>)>) -> std::io::Result<usize> {
    events.sort_by_key(|e| e.0);
    let mut body: Vec<u8> = Vec::new();
    let mut n = 0;
    let base = events.first().map_or(0, |e| e.0);
    let mut last = base;
    let mut buf = vec![0u8; memtrace_format::MAX_RECORD];
    for (t, kind, values) in &events {
        let dt = t.saturating_sub(last);
        last = last.max(*t);
        if let Some(len) = memtrace_format::encode::kernel(&mut buf, dt, *kind, values) {
            body.extend_from_slice(&buf[..len]);
            n += 1;
        }
    }
    if n == 0 {
        return Ok(0);
    }
    let f = crate::outfile::open_log_for_update(path)?;
    let mut word = [0u8; 8];
    f.read_exact_at(&mut word, off::RESERVED_END as u64)?;
    let reserved = u64::from_le_bytes(word).max(HEADER_SIZE as u64);
    let at = reserved.next_multiple_of(CHUNK_ALIGN as u64);
    let size = (CHUNK_HEADER_SIZE + body.len() + 3).next_multiple_of(CHUNK_ALIGN);
    let mut chunk = vec![0u8; size];
    let mut head = [0u8; CHUNK_HEADER_SIZE];
    ChunkHeader {
        size: size as u32,
        stream: STREAM,
        tid: 0,
        seq: 0,
        base_time: base,
    }
    .encode_without_magic(&mut head);
    chunk[..CHUNK_HEADER_SIZE].copy_from_slice(&head);
    chunk[CHUNK_HEADER_SIZE..CHUNK_HEADER_SIZE + body.len()].copy_from_slice(&body);
    f.write_all_at(&chunk, at)?;
    // The magic last: until it is there the chunk reads as never written.
    f.write_all_at(&CHUNK_MAGIC.to_le_bytes(), at)?;
    f.write_all_at(&(at + size as u64).to_le_bytes(), off::RESERVED_END as u64)?;
    // No fsync: every reader reads the page cache, where the writes land in
    // this order, and the raw log is usually packed next, which makes its
    // packed copy durable and drops the raw one. A `sync_data` here wrote
    // the whole raw log to the disk first (0.5 s of a 107 MiB log).
    Ok(n)
}

/// The kernel's view as read back from a log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelView {
    /// Samples: time (ns since the process started) and counters.
    pub samples: Vec<(u64, Counters)>,
    pub maps_at_peak: Option<(u64, MapTable)>,
    pub maps_at_end: Option<(u64, MapTable)>,
}

impl KernelView {
    /// Takes one KERNEL record (time already relative to the start).
    pub fn observe(&mut self, t: u64, kind: u8, values: &[u64]) {
        match kind {
            KIND_COUNTERS => {
                let mut c: Counters = [0; COUNTERS.len()];
                for (d, v) in c.iter_mut().zip(values) {
                    *d = *v;
                }
                // Bounded: a hostile log cannot make this grow past its own size.
                self.samples.push((t, c));
            }
            KIND_MAPS_AT_PEAK | KIND_MAPS_AT_END => {
                let mut m: MapTable = [[0; 4]; CATEGORIES.len()];
                for (i, v) in values.iter().take(4 * CATEGORIES.len()).enumerate() {
                    m[i / 4][i % 4] = *v;
                }
                if kind == KIND_MAPS_AT_PEAK {
                    self.maps_at_peak = Some((t, m));
                } else {
                    self.maps_at_end = Some((t, m));
                }
            }
            _ => {}
        }
    }

    /// The sample with the highest RSS.
    pub fn peak_rss(&self) -> Option<(u64, Counters)> {
        self.samples
            .iter()
            .copied()
            .max_by_key(|(t, c)| (c[0], u64::MAX - t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap round waits the interval; one that took 5 ms of CPU waits
    /// 250 ms (a fiftieth of a core), whatever the interval below that.
    #[test]
    fn sampling_costs_at_most_a_fiftieth_of_a_core() {
        let ms = Duration::from_millis;
        assert_eq!(next_wait(ms(100), ms(1)), ms(100));
        assert_eq!(next_wait(ms(100), ms(2)), ms(100));
        assert_eq!(next_wait(ms(100), ms(5)), ms(250));
        assert_eq!(next_wait(ms(10), ms(5)), ms(250));
        assert_eq!(next_wait(ms(1000), ms(5)), ms(1000));
    }

    const ROLLUP: &str = "00400000-7ffd1000 ---p 00000000 00:00 0                          [rollup]
Rss:                3000 kB
Pss:                2000 kB
Pss_Anon:           1000 kB
Shared_Clean:        500 kB
Private_Clean:       300 kB
Private_Dirty:      1200 kB
Anonymous:          1100 kB
Swap:                 64 kB
";

    /// smaps_rollup: USS is private clean + dirty; kB become bytes.
    #[test]
    fn rollup() {
        assert_eq!(
            parse_rollup(ROLLUP),
            Some([3000 << 10, 2000 << 10, 1500 << 10, 64 << 10, 1100 << 10])
        );
        assert_eq!(parse_rollup(""), None);
    }

    /// smaps: mappings go to their categories.
    #[test]
    fn smaps_categories() {
        let text = "55d0c2a4a000-55d0c2a6b000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Rss:                  12 kB
Pss:                  12 kB
Swap:                  0 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Size:               1024 kB
Rss:                 512 kB
Pss:                 512 kB
Swap:                  4 kB
7f1000000000-7f1000002000 r-xp 00000000 08:01 1234                       /usr/lib/libc.so.6
Size:                  8 kB
Rss:                   8 kB
Pss:                   2 kB
7f2000000000-7f2000100000 rw-s 00000000 08:01 99                         /tmp/x/memtrace.a.1.mtr
Size:               1024 kB
Rss:                1024 kB
Pss:                1024 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  16 kB
Pss:                  16 kB
7ffd10000000-7ffd10002000 r-xp 00000000 00:00 0                          [vdso]
Size:                  8 kB
Rss:                   4 kB
Pss:                   0 kB
";
        let t = parse_smaps(text, &|p| p.ends_with(".mtr"));
        assert_eq!(t[0], [132 << 10, 12 << 10, 12 << 10, 0]);
        assert_eq!(t[1][1], 16 << 10);
        assert_eq!(t[2], [1024 << 10, 512 << 10, 512 << 10, 4 << 10]);
        assert_eq!(t[3][2], 2 << 10);
        assert_eq!(t[4][1], 1024 << 10);
        assert_eq!(t[5][1], 4 << 10);
    }

    /// cgroup v2 files: memory.current, and anon and file of memory.stat.
    #[test]
    fn cgroup_files() {
        let d = std::env::temp_dir().join(format!("memtrace-cg-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("memory.current"), "123456\n").unwrap();
        std::fs::write(d.join("memory.stat"), "anon 1000\nfile 2000\nanon_thp 0\n").unwrap();
        assert_eq!(read_cgroup(&d), Some([123456, 1000, 2000]));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Our own process can be sampled.
    #[test]
    fn samples_self() {
        let mut all = HashMap::new();
        let mut cg = HashMap::new();
        sample(std::process::id(), &mut all, &mut cg, &|_| false);
        let s = &all[&std::process::id()];
        assert!(s.counters[0].1[0] > 0, "rss");
        assert!(s.maps_at_end.is_some());
    }
}
