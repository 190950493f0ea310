//! heaptrack's own data file (the interpreted form `heaptrack_print` and
//! heaptrack_gui read), made by replaying the log once more.
//!
//! - **Lines**, numbers in lower-case hex: `v VERSION FILE_VERSION` (file
//!   version 3: strings are sized), `X` the command line, `I PAGE_SIZE
//!   PAGES`, `s LEN TEXT` the string table (1-based), `i IP MODULE
//!   [FUNCTION FILE LINE [FUNCTION FILE LINE]...]` an instruction pointer
//!   with its module, its function and the functions inlined at it, from
//!   the innermost (string indices; 1-based), `t IP PARENT` a trace node
//!   (1-based; parent 0 is the root, the outermost frame's parent), `a SIZE
//!   TRACE` an allocation info (0-based), `+ INFO` an allocation, `- INFO` a
//!   free, `c MS` the time since the start in milliseconds, `R PAGES` the
//!   RSS.
//! - **Events** follow the replay of the report ([`Replay`]): an allocation
//!   is a `+`, a free of a live block a `-`, a realloc a `-` of the old block
//!   then a `+` of the new one; a block replaced at its address (an
//!   anomaly) is freed first, as the replay does. So `heaptrack_print`'s
//!   "calls to allocation functions", "peak heap memory consumption" and
//!   "total memory leaked" equal the report's allocations, peak and heap
//!   leaks. In a sampled log each sample's estimate (bytes and blocks, the
//!   replay's) becomes that many `+` events of its share of the bytes.
//! - **Stacks** are symbolized as the report's are; a stack that was not
//!   recorded is one frame named [`NO_STACK`].
//! - **Compression** goes by the file's name, as heaptrack_print decides
//!   how to read a file: `.zst` zstd (heaptrack's own), `.gz` gzip, any
//!   other name (or stdout) plain text, which heaptrack_print reads too.
//!   The text is compressed as it is made, a MiB at a time.
//! - **A fork child's inherited blocks** (live, counted in its peak and
//!   leaks, but not its allocations) are `+` events at the start: heaptrack
//!   has no other way to hold a live block, so its "calls to allocation
//!   functions" then exceeds the report's allocations by them
//!   ([`File::inherited_blocks`]); its peak and leaks are the report's.
//! - **RSS**: the kernel's samples (`memtrace run`'s and the process's own
//!   at exit), as `R PAGES` lines at their times, after `I PAGE_SIZE 0`
//!   (the machine's pages are not recorded), so heaptrack_print's peak RSS
//!   is the report's, in whole pages.
//! - **Not carried**: mmaps.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::Arc;

use memtrace_format::Record;

use super::{NO_STACK, address_groups};
use crate::analysis::catalog;
use crate::analysis::replay::{Config, Replay};
use crate::analysis::symbolize::{Frame, Symbolizer};
use crate::error::Result;
use crate::hash::FastMap;
use crate::log::{Event, Log};
use crate::report::Report;

/// The heaptrack version the file claims to be written by (1.4.0).
pub const HEAPTRACK_VERSION: u32 = 0x010400;

/// The file format version written (sized strings).
pub const FILE_VERSION: u32 = 3;

/// How the file is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
    Plain,
}

impl Compression {
    /// As heaptrack_print reads a file of this name.
    pub fn for_name(path: Option<&Path>) -> Compression {
        let name = path.map(|p| p.to_string_lossy().into_owned());
        match name.as_deref() {
            Some(n) if n.ends_with(".zst") => Compression::Zstd,
            Some(n) if n.ends_with(".gz") => Compression::Gzip,
            _ => Compression::Plain,
        }
    }
}

/// Bytes of text buffered before they go to the compressor.
const FLUSH: usize = 1 << 20;

/// Where the text goes as it is made: compressed in memory.
enum Sink {
    Plain(Vec<u8>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
}

impl Sink {
    fn new(c: Compression) -> io::Result<Sink> {
        Ok(match c {
            Compression::Plain => Sink::Plain(Vec::new()),
            Compression::Zstd => Sink::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
            Compression::Gzip => Sink::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
        })
    }

    fn write(&mut self, text: &str) -> io::Result<()> {
        match self {
            Sink::Plain(v) => v.write_all(text.as_bytes()),
            Sink::Zstd(e) => e.write_all(text.as_bytes()),
            Sink::Gzip(e) => e.write_all(text.as_bytes()),
        }
    }

    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Sink::Plain(v) => Ok(v),
            Sink::Zstd(e) => e.finish(),
            Sink::Gzip(e) => e.finish(),
        }
    }
}

/// Moves the text made so far into the sink (keeping the first error).
fn drain(w: &mut Writer, sink: &mut io::Result<Sink>) {
    if let Ok(s) = sink
        && let Err(e) = s.write(&w.out)
    {
        *sink = Err(e);
    }
    w.out.clear();
}

/// The key of an instruction pointer: its address and module.
type IpKey = (u64, Option<Arc<str>>);

/// A live block's `+` events: `count` of them, the first `count - 1` of info
/// `share`, the last of info `last` (its share and the rest of the bytes).
#[derive(Clone, Copy)]
struct Infos {
    share: u64,
    last: u64,
    count: u64,
}

/// The file being written, with its tables.
#[derive(Default)]
struct Writer {
    out: String,
    strings: HashMap<String, u64>,
    ips: HashMap<IpKey, u64>,
    traces: HashMap<(u64, u64), u64>,
    infos: HashMap<(u64, u64), u64>,
    /// Per stack id of the log, its trace.
    stacks: FastMap<u32, u64>,
    live: FastMap<u64, Infos>,
    ms: u64,
    /// The kernel's RSS samples still to write: (ms since the start, pages).
    rss: VecDeque<(u64, u64)>,
}

impl Writer {
    fn string(&mut self, s: &str) -> u64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let clean = s.replace(['\n', '\r'], " ");
        let i = self.strings.len() as u64 + 1;
        self.strings.insert(s.to_owned(), i);
        let _ = writeln!(self.out, "s {:x} {clean}", clean.len());
        i
    }

    /// The instruction pointer of one address group (innermost first).
    fn ip(&mut self, group: &[Frame]) -> u64 {
        let f = &group[0];
        let key = (f.address, f.module.clone());
        if let Some(&i) = self.ips.get(&key) {
            return i;
        }
        let module = f.module.as_deref().map_or(0, |m| self.string(m));
        let mut line = format!("i {:x} {module:x}", f.address);
        if f.function.is_some() {
            for g in group {
                let func = self.string(g.function.as_deref().unwrap_or("??"));
                let file = g.file.as_deref().map_or(0, |p| self.string(p));
                let _ = write!(line, " {func:x} {file:x} {:x}", g.line.unwrap_or(0));
            }
        }
        let i = self.ips.len() as u64 + 1;
        self.ips.insert(key, i);
        self.out.push_str(&line);
        self.out.push('\n');
        i
    }

    /// The trace of a symbolized stack (innermost first).
    fn trace(&mut self, stack: &[Frame]) -> u64 {
        let no_stack;
        let stack = if stack.is_empty() {
            no_stack = [Frame {
                function: Some(NO_STACK.into()),
                mangled: None,
                file: None,
                line: None,
                module: None,
                address: 0,
                offset: None,
                inlined: false,
            }];
            &no_stack[..]
        } else {
            stack
        };
        let mut parent = 0;
        for group in address_groups(stack).into_iter().rev() {
            let ip = self.ip(group);
            parent = match self.traces.get(&(ip, parent)) {
                Some(&t) => t,
                None => {
                    let t = self.traces.len() as u64 + 1;
                    self.traces.insert((ip, parent), t);
                    let _ = writeln!(self.out, "t {ip:x} {parent:x}");
                    t
                }
            };
        }
        parent
    }

    fn info(&mut self, size: u64, trace: u64) -> u64 {
        if let Some(&i) = self.infos.get(&(size, trace)) {
            return i;
        }
        let i = self.infos.len() as u64;
        self.infos.insert((size, trace), i);
        let _ = writeln!(self.out, "a {size:x} {trace:x}");
        i
    }

    fn time(&mut self, ns: u64) {
        let ms = ns / 1_000_000;
        if ms > self.ms {
            self.ms = ms;
            let _ = writeln!(self.out, "c {ms:x}");
        }
        self.rss_until(ms);
    }

    /// Writes the RSS samples taken by `ms`.
    fn rss_until(&mut self, ms: u64) {
        while let Some(&(t, pages)) = self.rss.front() {
            if t > ms {
                break;
            }
            self.rss.pop_front();
            let _ = writeln!(self.out, "R {pages:x}");
        }
    }

    fn free(&mut self, addr: u64) {
        if let Some(b) = self.live.remove(&addr) {
            for _ in 1..b.count {
                let _ = writeln!(self.out, "- {:x}", b.share);
            }
            let _ = writeln!(self.out, "- {:x}", b.last);
        }
    }

    /// A block of `size` bytes standing for `count` blocks, at `addr`.
    fn alloc(&mut self, addr: u64, size: u64, count: u64, trace: u64) {
        self.free(addr);
        let count = count.max(1);
        let each = size / count;
        let share = self.info(each, trace);
        for _ in 1..count {
            let _ = writeln!(self.out, "+ {share:x}");
        }
        let last = self.info(size - each * (count - 1), trace);
        let _ = writeln!(self.out, "+ {last:x}");
        self.live.insert(addr, Infos { share, last, count });
    }
}

/// The stacks' traces: symbolizes each stack id of the log as the report does.
struct Stacks {
    cat: catalog::Catalog,
    sym: Symbolizer,
}

impl Stacks {
    /// The trace of stack `id`, first used at `time`.
    fn trace(&mut self, w: &mut Writer, id: u32, time: Option<u64>) -> u64 {
        if let Some(&t) = w.stacks.get(&id) {
            return t;
        }
        let frames = match self.cat.stacks.get(id) {
            Some(f) => self.sym.stack(&self.cat.modules, &f.to_vec(), time),
            None => Vec::new(),
        };
        let t = w.trace(&frames);
        w.stacks.insert(id, t);
        t
    }
}

/// A heaptrack file.
#[derive(Debug)]
pub struct File {
    /// The file, compressed; an error if the compressor failed.
    pub bytes: io::Result<Vec<u8>>,
    /// The blocks a fork child inherited from its parent, written as
    /// allocations at the start (heaptrack has no other way to hold them).
    pub inherited_blocks: u64,
}

/// The heaptrack file of the log at `path` (see the module docs), compressed
/// by `compression` as it is made (so memory grows with the compressed
/// file, not the text); `report` is the log's, for the command line.
pub fn file(report: &Report, path: &Path, compression: Compression) -> Result<File> {
    let log = Log::open(path)?;
    let header = log.header()?;
    let index = log.index(&header)?;
    let cfg = Config::of(&header);
    let start = header.start_mono_ns;
    let mut stacks = Stacks {
        cat: catalog::scan(&log, &index)?,
        sym: Symbolizer::new(),
    };
    let mut w = Writer::default();
    let mut sink = Sink::new(compression);
    let _ = writeln!(w.out, "v {HEAPTRACK_VERSION:x} {FILE_VERSION:x}");
    let cmd = match report.process.cmdline.is_empty() {
        true => report.process.exe.clone(),
        false => report.process.cmdline.join(" "),
    };
    let _ = writeln!(w.out, "X {}", cmd.replace(['\n', '\r'], " "));
    // Page size and physical pages (unknown: 0); RSS lines are in pages.
    let page = u64::from(header.page_size).max(1);
    let _ = writeln!(w.out, "I {page:x} 0");
    if let Some(k) = &report.kernel {
        let pages = |c: &crate::analysis::kernel::Counters| c[0] / page;
        w.rss = k
            .samples
            .iter()
            .map(|(t, c)| (*t as u64, pages(c)))
            .collect();
    }
    let mut r = Replay::new(cfg);
    let inherited = crate::analysis::inherit::of_header(path, &header, &[]).unwrap_or(None);
    let mut inherited_blocks = 0;
    if let Some(i) = &inherited {
        r.seed(&i.seed);
        let mut first_use = crate::analysis::id_table::FirstUse::default();
        i.annotate(&mut stacks.cat, &mut first_use);
        for &(addr, b) in &i.seed.blocks {
            let t = stacks.trace(&mut w, b.stack, first_use.get(b.stack));
            w.alloc(addr, b.size, u64::from(b.count), t);
            inherited_blocks += u64::from(b.count.max(1));
        }
    }
    for ev in log.merge(&index) {
        let ev = ev?;
        if !cfg.includes(&ev) {
            continue;
        }
        event(&mut w, &mut stacks, &mut r, &ev, start);
        if w.out.len() >= FLUSH {
            drain(&mut w, &mut sink);
        }
    }
    if header.end_mono_ns > start {
        w.time(header.end_mono_ns - start);
    }
    w.rss_until(u64::MAX);
    drain(&mut w, &mut sink);
    Ok(File {
        bytes: sink.and_then(Sink::finish),
        inherited_blocks,
    })
}

/// Applies one event to the replay and writes what it did.
fn event(w: &mut Writer, stacks: &mut Stacks, r: &mut Replay, ev: &Event<'_>, start: u64) {
    let (n0, b0) = (r.counts.allocations, r.counts.bytes_allocated);
    r.apply(ev);
    let (count, bytes) = (r.counts.allocations - n0, r.counts.bytes_allocated - b0);
    if ev.record.time().is_some() {
        w.time(ev.time.saturating_sub(start));
    }
    match ev.record {
        Record::Alloc { addr, stack, .. } if addr != 0 => {
            let t = stacks.trace(w, stack, r.first_use.get(stack));
            w.alloc(addr, bytes, count, t);
        }
        Record::Free { addr, .. } if addr != 0 => w.free(addr),
        Record::Realloc {
            old,
            new,
            size,
            stack,
            ..
        } => {
            if !ev.realloc_end {
                if memtrace_format::realloc_released(old, new, size) {
                    w.free(old);
                }
            } else if new != 0 {
                let t = stacks.trace(w, stack, r.first_use.get(stack));
                w.alloc(new, bytes, count, t);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::frame;

    /// Traces share their outer nodes; strings and ips are written once.
    #[test]
    fn traces_share_callers() {
        let mut w = Writer::default();
        let a = vec![
            frame(Some("leaf"), 0x10, false),
            frame(Some("main"), 0x20, false),
        ];
        let b = vec![
            frame(Some("other"), 0x30, false),
            frame(Some("main"), 0x20, false),
        ];
        assert_eq!(w.trace(&a), 2);
        assert_eq!(w.trace(&b), 3);
        assert_eq!(w.trace(&a), 2);
        assert_eq!(w.out.matches("t ").count(), 3);
        assert_eq!(w.out.matches("s 8 /src/x.c").count(), 1);
        assert!(w.out.contains("i 20 1 2 3 7\n"), "{}", w.out);
    }

    /// A block standing for several is that many events whose sizes add up.
    #[test]
    fn sampled_blocks_split() {
        let mut w = Writer::default();
        w.alloc(0x100, 10, 3, 1);
        assert_eq!(w.out, "a 3 1\n+ 0\n+ 0\na 4 1\n+ 1\n");
        w.free(0x100);
        assert!(w.out.ends_with("- 0\n- 0\n- 1\n"));
        w.free(0x100);
        assert_eq!(w.out.matches('-').count(), 3);
    }

    #[test]
    fn compression_by_name() {
        let c = |n: &str| Compression::for_name(Some(Path::new(n)));
        assert_eq!(c("x.zst"), Compression::Zstd);
        assert_eq!(c("x.gz"), Compression::Gzip);
        assert_eq!(c("x.txt"), Compression::Plain);
        assert_eq!(Compression::for_name(None), Compression::Plain);
    }

    /// The text drained in pieces comes back whole from each compressor.
    #[test]
    fn sinks_round_trip() {
        use std::io::Read;
        for c in [Compression::Plain, Compression::Zstd, Compression::Gzip] {
            let mut w = Writer::default();
            let mut sink = Sink::new(c);
            w.out.push_str("v 10400 3\n");
            drain(&mut w, &mut sink);
            w.out.push_str("c 1\n");
            drain(&mut w, &mut sink);
            let bytes = sink.and_then(Sink::finish).unwrap();
            let text = match c {
                Compression::Plain => bytes,
                Compression::Zstd => zstd::decode_all(&bytes[..]).unwrap(),
                Compression::Gzip => {
                    let mut v = Vec::new();
                    flate2::read::GzDecoder::new(&bytes[..])
                        .read_to_end(&mut v)
                        .unwrap();
                    v
                }
            };
            assert_eq!(text, b"v 10400 3\nc 1\n", "{c:?}");
        }
    }
}
