//! The packed-log encoder (`memtrace pack`, and `memtrace run` after the
//! command ends): a finished raw log's merged events, re-encoded against the
//! model of [`crate::log::packed`] and compressed. The format is described in
//! [`crate::log::packed`]; this module only writes it. Uses `crate::log`
//! (the raw log and its merge) and `crate::error`.

mod encoder;
mod live;
mod staged;

pub use live::{LivePack, Progress};

pub use staged::{SYNCFS_FROM, Staged, commit_all};

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::log::Log;
use crate::log::packed::layout::*;
use encoder::Enc;
use encoder::MISC_FLUSH;
use memtrace_format::HEADER_SIZE;

/// zstd level: 3 is zstd's default, fast to write and to read.
pub(crate) const LEVEL: i32 = 3;

/// Ops per block.
pub(crate) const BLOCK_OPS: usize = 1 << 18;

/// Raw logs from this size on are packed on three threads (decoding,
/// encoding, compressing); smaller ones on the caller's thread alone.
const THREADED_FROM: usize = 1 << 20;

/// What packing a log did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub raw_bytes: u64,
    pub packed_bytes: u64,
}

/// Compresses and writes full blocks, with one zstd context for all of a
/// log's columns: a context per column (`zstd::bulk::compress`) was a fifth
/// of the time to pack a process tree's small logs. The output is the same.
struct BlockWriter<W: Write> {
    out: W,
    z: zstd::bulk::Compressor<'static>,
    written: u64,
}

impl<W: Write> BlockWriter<W> {
    fn new(out: W) -> std::io::Result<Self> {
        Ok(Self {
            out,
            z: zstd::bulk::Compressor::new(LEVEL)?,
            written: 0,
        })
    }

    /// Writes the columns as one block (nothing if they are empty).
    fn block(&mut self, cols: &[Vec<u8>; NCOL]) -> std::io::Result<()> {
        let ops = cols[col::KIND].len();
        if ops == 0 {
            return Ok(());
        }
        let mut frames = Vec::with_capacity(NCOL);
        for c in cols {
            frames.push(self.z.compress(c)?);
        }
        let mut head = Vec::with_capacity(4 + 8 * NCOL);
        head.extend_from_slice(&(ops as u32).to_le_bytes());
        for (c, f) in cols.iter().zip(&frames) {
            head.extend_from_slice(&(c.len() as u32).to_le_bytes());
            head.extend_from_slice(&(f.len() as u32).to_le_bytes());
        }
        self.out.write_all(&head)?;
        self.written += head.len() as u64;
        for f in &frames {
            self.out.write_all(f)?;
            self.written += f.len() as u64;
        }
        Ok(())
    }

    /// Flushes the output; returns the bytes of blocks written.
    fn finish(mut self) -> std::io::Result<u64> {
        self.out.flush()?;
        Ok(self.written)
    }
}

/// Packs the raw log `src` into `dst` (written whole, synced, then renamed
/// over `dst`: a failure leaves `dst` untouched).
pub fn pack_file(src: &Path, dst: &Path) -> Result<Stats> {
    stage(src, dst)?.commit()
}

/// The extension of the temporary file a log is packed into beside itself
/// (`x.mtr` is packed into `x.packing`): never a log of a run.
const STAGED_EXTENSION: &str = "packing";

/// Whether the file name `name` is that of a staged packed log.
pub fn is_staged_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| ext == STAGED_EXTENSION)
}

/// Raw logs up to this size (the header page and one 4 KiB chunk: a short
/// process of a shell loop or a `make` recipe) are not worth packing in a
/// run of many logs ([`TREE_FROM`]): packed, they still take two 4 KiB
/// blocks (403 such logs of 200 `/bin/true`: 8.0 KiB each raw, 4.8 KiB
/// packed on average), while putting each in place costs a file, a share of
/// the filesystem's sync and a rename that frees the raw log's blocks, which
/// waits for the device on a filesystem mounted with `discard`.
/// `memtrace pack` packs them when asked.
pub const SMALLEST_WORTH_PACKING: u64 = 8 << 10;

/// From this many logs in a run on, its logs of one chunk stay raw (as
/// [`commit_all`] syncs the filesystem once from this many on).
pub const TREE_FROM: usize = SYNCFS_FROM;

/// Whether `memtrace run` packs a raw log of `len` bytes in a run of `logs`
/// logs ([`SMALLEST_WORTH_PACKING`]).
pub fn worth_packing(len: u64, logs: usize) -> bool {
    len > SMALLEST_WORTH_PACKING || logs < TREE_FROM
}

/// Packs the raw log `src` into a temporary file beside `dst`, to be put in
/// its place by [`Staged::commit`] or, with others, [`commit_all`].
pub fn stage(src: &Path, dst: &Path) -> Result<Staged> {
    let log = open_ended_raw(src)?;
    // A log truncated under the packer would be packed from zeros.
    staged_beside(&log, dst, |file, _| log.checked(pack(&log, file)))
}

/// Opens the raw log at `src` to be packed: refused when it is packed
/// already, or while its writer still appends to it (packing it then would
/// lose the later events).
fn open_ended_raw(src: &Path) -> Result<Log> {
    let log = Log::open(src)?;
    if log.is_packed() {
        return Err(Error::Pack {
            path: src.to_owned(),
            why: "already packed".into(),
        });
    }
    if let Some(pid) = crate::log::live::writer(src, &log.header()?) {
        return Err(Error::Live {
            path: src.to_owned(),
            pid,
        });
    }
    Ok(log)
}

/// Writes the packed form of the raw `log` into a temporary file beside
/// `dst` with `write` (given the file and its path), to be put in place by
/// [`Staged::commit`]; on failure the temporary file is removed.
fn staged_beside(
    log: &Log,
    dst: &Path,
    write: impl FnOnce(&mut std::fs::File, &Path) -> Result<Stats>,
) -> Result<Staged> {
    let tmp = dst.with_extension(STAGED_EXTENSION);
    let mut file = crate::outfile::create_temp(&tmp).map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    match write(&mut file, &tmp) {
        Ok(mut stats) => {
            stats.raw_bytes = log.bytes().len() as u64;
            Ok(Staged {
                tmp,
                dst: dst.to_owned(),
                stats,
                done: false,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Packs `log` into `out`.
pub fn pack<W: Write + Seek + Send>(log: &Log, out: &mut W) -> Result<Stats> {
    let path = log.path().to_owned();
    let header = log.header()?;
    let index = log.index(&header)?;
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    write_head(out, &log.bytes()[..HEADER_SIZE], &index).map_err(io)?;
    let mut enc = Enc::new(log.bytes().len());
    let (events, cut, section) = encode_blocks(log, &index, &mut enc, &mut *out, &mut [])?;
    write_end(out, &enc, &index, events, cut, section).map_err(io)
}

/// Writes the fixed part of a packed log (its lengths and counts zero, set
/// by [`write_end`]), the raw `header` page and the stream table of `index`.
fn write_head<W: Write>(
    out: &mut W,
    header: &[u8],
    index: &crate::log::Index,
) -> std::io::Result<()> {
    out.write_all(&fixed_part())?;
    out.write_all(header)?;
    let mut table = Vec::with_capacity(index.streams.len() * 8);
    for s in &index.streams {
        table.extend_from_slice(&s.id.to_le_bytes());
        table.extend_from_slice(&s.tid.to_le_bytes());
    }
    out.write_all(&table)
}

/// The fixed part of a packed log with its magic and version, its lengths
/// and counts zero.
fn fixed_part() -> [u8; FIXED] {
    let mut fixed = [0u8; FIXED];
    fixed[..8].copy_from_slice(&MAGIC);
    fixed[off::VERSION..off::VERSION + 4].copy_from_slice(&VERSION.to_le_bytes());
    fixed
}

/// Ends a packed log whose blocks (`section` bytes of them, holding
/// `events`) follow [`write_head`]'s part: writes the metadata, then the
/// lengths and counts into the fixed part.
fn write_end<W: Write + Seek>(
    out: &mut W,
    enc: &Enc,
    index: &crate::log::Index,
    events: u64,
    cut: u64,
    section: u64,
) -> std::io::Result<Stats> {
    let meta = zstd::bulk::compress(&enc.meta, LEVEL)?;
    out.write_all(&meta)?;
    let end = out.stream_position()?;
    let mut fixed = fixed_part();
    let mut put = |o: usize, b: &[u8]| fixed[o..o + b.len()].copy_from_slice(b);
    put(off::EVENTS_LEN, &section.to_le_bytes());
    put(off::META_LEN, &(meta.len() as u64).to_le_bytes());
    put(off::META_RAW_LEN, &(enc.meta.len() as u64).to_le_bytes());
    put(off::EVENTS, &events.to_le_bytes());
    put(off::CUT_RECORDS, &(cut as u32).to_le_bytes());
    put(off::EMPTY_SLOTS, &(index.empty_slots as u32).to_le_bytes());
    put(off::TRUNCATED, &(index.truncated as u16).to_le_bytes());
    put(off::STREAMS, &(index.streams.len() as u16).to_le_bytes());
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&fixed)?;
    out.seek(SeekFrom::Start(end))?;
    Ok(Stats {
        events,
        raw_bytes: 0,
        packed_bytes: end,
    })
}

/// Encodes `log`'s merged events into `enc`'s columns and writes them to
/// `out` as blocks; returns the events, the records cut, and the bytes of
/// blocks written. `half[s]`: stream `s` begins with a REALLOC whose first
/// half was encoded already (by a [`LivePack`]), which is skipped.
fn encode_blocks<W: Write + Send>(
    log: &Log,
    index: &crate::log::Index,
    enc: &mut Enc,
    out: &mut W,
    half: &mut [bool],
) -> Result<(u64, u64, u64)> {
    let path = log.path().to_owned();
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let mut events = 0u64;
    let mut encode = |flush: &mut dyn FnMut(&mut [Vec<u8>; NCOL]) -> Result<()>| {
        crate::log::for_each_event_ahead(log, index, |ev, ahead| {
            if let Some(h) = half.get_mut(ev.stream)
                && std::mem::take(h)
                && !ev.realloc_end
            {
                return Ok(());
            }
            enc.prefetch(ahead);
            enc.event(ev).map_err(|why| Error::Pack {
                path: path.clone(),
                why: format!("cannot re-encode a {why}"),
            })?;
            events += 1;
            if enc.cols[col::KIND].len() >= BLOCK_OPS || enc.cols[col::MISC].len() >= MISC_FLUSH {
                flush(&mut enc.cols)?;
            }
            Ok(())
        })
        .and_then(|cut| {
            flush(&mut enc.cols)?;
            Ok(cut)
        })
    };
    let (cut, section) = if log.bytes().len() < THREADED_FROM {
        // A small log (a process tree's many) on this thread alone: two
        // threads more per log cost more than its whole packing.
        let mut w = BlockWriter::new(std::io::BufWriter::new(&mut *out)).map_err(io)?;
        let cut = encode(&mut |cols| {
            w.block(cols).map_err(io)?;
            cols.iter_mut().for_each(Vec::clear);
            Ok(())
        })?;
        (cut, w.finish().map_err(io)?)
    } else {
        // Three threads: decoding the raw log (see `for_each_event`),
        // encoding (this one), and compressing and writing full blocks.
        std::thread::scope(|s| -> Result<(u64, u64)> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<[Vec<u8>; NCOL]>(1);
            let (back, spare) = std::sync::mpsc::channel::<[Vec<u8>; NCOL]>();
            let mut w = BlockWriter::new(std::io::BufWriter::new(&mut *out)).map_err(io)?;
            let writer = s.spawn(move || -> std::io::Result<u64> {
                for mut cols in rx {
                    w.block(&cols)?;
                    cols.iter_mut().for_each(Vec::clear);
                    let _ = back.send(cols);
                }
                w.finish()
            });
            let fresh = || std::array::from_fn(|_| Vec::with_capacity(BLOCK_OPS));
            let written = encode(&mut |cols| {
                let next = spare.try_recv().unwrap_or_else(|_| fresh());
                tx.send(std::mem::replace(cols, next))
                    .map_err(|_| Error::Pack {
                        path: path.clone(),
                        why: "the writer stopped".into(),
                    })
            });
            drop(tx);
            let section = writer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .map_err(io)?;
            Ok((written?, section))
        })?
    };
    Ok((events, cut, section))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::packed::is_packed;
    use crate::testlog::*;
    use memtrace_format::hdr::off as hoff;
    use memtrace_format::{Func, encode};
    use std::io::Cursor;

    fn packed(raw: &[u8]) -> Vec<u8> {
        let log = Log::from_bytes(Path::new("raw.mtr"), raw);
        let mut out = Cursor::new(Vec::new());
        pack(&log, &mut out).unwrap();
        out.into_inner()
    }

    fn events(bytes: &[u8]) -> (Vec<String>, u64, bool, u64) {
        let log = Log::from_bytes(Path::new("x"), bytes);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let mut m = log.merge(&idx);
        let v = m.by_ref().map(|e| event_key(&e.unwrap())).collect();
        (v, idx.empty_slots, idx.truncated, m.cut_records())
    }

    /// Two threads, every kind of heap event (slot and raw frees, reallocs
    /// that move, fail, free and start from NULL, an address allocated twice,
    /// a sampled record), stacks, a module, mappings, damage: the packed log
    /// yields the same events, and the same report.
    fn rich_log(scale: u64) -> Vec<u8> {
        let t = |i: u64| T0 + i * scale;
        let mut a = LogBuilder::chunk(T0);
        a.stack(1, &[0x401000, 0x402000])
            .put(|b| encode::module(b, 0, 0, 0x400000, 0x500000, b"\x01\x02", b"/bin/prog"))
            .alloc(t(1), 0x1000, 100, 1)
            .alloc(t(2), 0x2000, 200, 1)
            .free(t(3), 0x1000)
            .free(t(4), 0x9999) // never allocated
            .alloc(t(5), 0x1000, 300, 2)
            .realloc(t(6), t(8), 0x2000, 0x3000, 400, 1) // moves
            .realloc(t(9), t(10), 0x3000, 0, 1 << 40, 1) // fails
            .realloc(t(11), t(12), 0, 0x4000, 50, 1) // from NULL
            .alloc(t(13), 0x1000, 64, 1) // 0x1000 again while live
            .put(|b| encode::sampled(b, scale, Func::Calloc, 0x5000, 16, 1, 3))
            .mmap(t(15), 0x7f00_0000_0000, 8192, 0x22, 1)
            .munmap(t(16), 0x7f00_0000_0000, 4096)
            .put(|b| encode::lost(b, scale, 7));
        let mut b = LogBuilder::chunk(T0);
        b.stack(2, &[0x401100])
            .cut_stack(3, &[0x401200, 0x401300], memtrace_format::Cut::Limit)
            .alloc(t(1), 0x8000, 8, 2)
            .alloc(t(2), 0x8800, 24, 3)
            .realloc(t(8), t(9), 0x8000, 0, 0, 2) // realloc(p, 0) frees
            .free(t(13), 0x4000) // another thread's block
            .free(t(20), 0x1000);
        // A torn record: length and payload, tag never stored.
        b.body.extend_from_slice(&[5, 0, 0, 1, 2]);
        let mut c = LogBuilder::chunk(t(20));
        c.put(|b| encode::exit(b, scale, 2, 0));
        // The kernel's samples, in a stream of their own, as `memtrace run` appends them.
        let mut k = LogBuilder::chunk(t(2));
        k.put(|b| encode::kernel(b, 0, 1, &[4096, 2048, 1024, 0, 512, 0, 0, 0]))
            .put(|b| encode::kernel(b, 3 * scale, 2, &[1; 24]))
            .put(|b| encode::kernel(b, 2 * scale, 1, &[8192, 4096, 2048, 0, 1024, 7, 6, 5]));
        let mut l = LogBuilder::new();
        l.set_u64(hoff::SAMPLE_INTERVAL, 4096);
        l.push(0, &a)
            .push(1, &b)
            .empty_slot()
            .push(0, &c)
            .push(memtrace_format::kernel::STREAM, &k)
            .ended(t(30));
        l.bytes
    }

    #[test]
    fn packed_events_equal_raw() {
        let raw = rich_log(1000);
        let p = packed(&raw);
        assert!(is_packed(&p));
        let (a, a_empty, a_trunc, _) = events(&raw);
        let (b, b_empty, b_trunc, _) = events(&p);
        assert_eq!(a, b);
        assert_eq!((a_empty, a_trunc), (b_empty, b_trunc));
        assert_eq!(a_empty, 1);
        let opts = crate::Options::default();
        let ra = crate::analyze_bytes(&raw, &opts).unwrap();
        let rb = crate::analyze_bytes(&p, &opts).unwrap();
        assert_eq!(format!("{:?}", ra.summary), format!("{:?}", rb.summary));
        assert_eq!(format!("{:?}", ra.process), format!("{:?}", rb.process));
        let sites = |r: &crate::Report| {
            [&r.heap_leaks, &r.mmap_leaks, &r.peak, &r.allocated]
                .map(|v| v.iter().map(|s| (s.bytes, s.count)).collect::<Vec<_>>())
        };
        assert_eq!(sites(&ra), sites(&rb));
        assert_eq!(ra.kernel, rb.kernel);
        let k = ra.kernel.as_ref().expect("kernel samples");
        assert_eq!(k.samples.len(), 2);
        assert_eq!(k.peak.1[0], 8192);
        assert_eq!(k.peak.1[5..], [7, 6, 5]);
        assert_eq!(k.maps_at_peak.unwrap().1[5], [1; 4]);
        assert_eq!(ra.summary.unknown_frees, 1);
        assert_eq!(ra.summary.anomalies, 1);
        assert_eq!(ra.summary.torn_records, 1);
        // The cut stack stays cut (summaries are equal), for the frame limit.
        assert_eq!(ra.summary.truncated_stacks, [0, 0, 1]);
    }

    /// The report of a log, for comparing two forms of it.
    fn report_key(bytes: &[u8]) -> String {
        let r = crate::analyze_bytes(bytes, &crate::Options::default()).unwrap();
        let sites = [&r.heap_leaks, &r.mmap_leaks, &r.peak, &r.allocated]
            .map(|v| v.iter().map(|s| (s.bytes, s.count)).collect::<Vec<_>>());
        format!("{:?} {:?} {sites:?} {:?}", r.summary, r.process, r.kernel)
    }

    /// A log packed while it is written, read in steps up to times that cut
    /// a REALLOC between its halves, a stream before its first record and
    /// the kernel's samples (appended at the end, as `memtrace run` does,
    /// after their times were passed), holds the same events, stream table
    /// and counts as the log packed at once, and gives the same report.
    #[test]
    fn packed_live_equals_packed_at_once() {
        let d = tempfile::tempdir().unwrap();
        let t = |i: u64| T0 + i * 1000;
        let steps: [&[u64]; 5] = [
            &[],
            &[t(7)],
            &[t(0), t(2), t(7), t(9), t(12), t(19)],
            &[t(1), t(13), t(25)],
            &[u64::MAX],
        ];
        for (n, steps) in steps.iter().enumerate() {
            for appended in [false, true] {
                let full = rich_log(1000);
                let raw = d.path().join(format!("raw{n}{appended}.mtr"));
                let written = if appended {
                    // The same log with its kernel chunk (the last one) left out.
                    let h = Log::from_bytes(&raw, &full);
                    let idx = h.index(&h.header().unwrap()).unwrap();
                    let k = idx
                        .streams
                        .iter()
                        .find(|s| s.id == memtrace_format::kernel::STREAM)
                        .unwrap();
                    let at = k.chunks[0].offset as usize;
                    let mut b = full.clone();
                    b[at..].fill(0);
                    b[hoff::RESERVED_END..hoff::RESERVED_END + 8]
                        .copy_from_slice(&(at as u64).to_le_bytes());
                    b.truncate(at);
                    b
                } else {
                    full.clone()
                };
                std::fs::write(&raw, &written).unwrap();
                let mut lp = LivePack::new(&raw).unwrap();
                for &u in *steps {
                    lp.advance(u).unwrap();
                }
                if appended {
                    let events = vec![
                        (
                            t(2),
                            memtrace_format::kernel::KIND_COUNTERS,
                            vec![4096, 2048, 1024, 0, 512, 0, 0, 0],
                        ),
                        (
                            t(4),
                            memtrace_format::kernel::KIND_COUNTERS,
                            vec![8192, 4096, 2048, 0, 1024, 7, 6, 5],
                        ),
                    ];
                    crate::analysis::kernel::append_records(&raw, events).unwrap();
                }
                let dst = d.path().join(format!("live{n}{appended}.mtr"));
                lp.finish(&dst).unwrap().commit().unwrap();
                let live = std::fs::read(&dst).unwrap();
                assert!(is_packed(&live));
                let raw_now = std::fs::read(&raw).unwrap();
                let at_once = packed(&raw_now);
                let (mut a, a_empty, a_trunc, a_cut) = events(&at_once);
                let (mut b, b_empty, b_trunc, b_cut) = events(&live);
                assert_eq!(
                    (a_empty, a_trunc, a_cut),
                    (b_empty, b_trunc, b_cut),
                    "steps {steps:?}"
                );
                if !appended {
                    // A torn record stops a live read (it may be one being
                    // written) and comes with the rest at the end: it has no
                    // time of its own, and only its count matters.
                    let timed = |v: &[String]| {
                        v.iter()
                            .filter(|k| !k.ends_with(" torn"))
                            .cloned()
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(timed(&a), timed(&b), "steps {steps:?}: same order");
                }
                a.sort();
                b.sort();
                assert_eq!(a, b, "steps {steps:?}, appended {appended}");
                assert_eq!(report_key(&at_once), report_key(&live), "steps {steps:?}");
                assert_eq!(report_key(&raw_now), report_key(&live), "steps {steps:?}");
            }
        }
    }

    /// Times are rounded down to microseconds; the order stays the raw merge's.
    #[test]
    fn times_round_down_to_microseconds() {
        let raw = rich_log(337);
        let p = packed(&raw);
        let (a, ..) = events(&raw);
        let (b, ..) = events(&p);
        assert_eq!(a.len(), b.len());
        let log = Log::from_bytes(Path::new("x"), &raw);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let plog = Log::from_bytes(Path::new("p"), &p);
        let pidx = plog.index(&h).unwrap();
        for (x, y) in log.merge(&idx).zip(plog.merge(&pidx)) {
            let (x, y) = (x.unwrap(), y.unwrap());
            assert_eq!(y.time, x.time / 1000 * 1000);
            assert_eq!((x.stream, x.realloc_end), (y.stream, y.realloc_end));
        }
    }

    /// Damage is an error, never a panic: every truncation and a flipped byte in every position.
    #[test]
    fn damaged_packed_logs_are_refused() {
        let p = packed(&rich_log(1000));
        let opts = crate::Options::default();
        for n in [0, 8, 63, 100, 4160, p.len() - 20, p.len() - 1] {
            assert!(crate::analyze_bytes(&p[..n], &opts).is_err(), "cut at {n}");
        }
        for i in (0..p.len()).step_by(3) {
            let mut q = p.clone();
            q[i] ^= 0x5a;
            let _ = crate::analyze_bytes(&q, &opts);
        }
    }
}
