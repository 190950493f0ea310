//! Packing a raw log while its process still writes it (`memtrace run`, on
//! the core the program leaves idle), so that little is left to pack once
//! the program has ended.
//!
//! A [`LivePack`] reads the log with a [`Tail`] up to a time the caller
//! knows no record can still come before ([`LivePack::advance`]: the
//! caller judges it from [`LivePack::bounds`] and the threads alive), and
//! encodes those events into blocks in a file of its own with no name
//! (`O_TMPFILE` beside the log). Once the writer is gone,
//! [`LivePack::finish`] encodes the rest with the merge of a finished log
//! (from where each stream stopped, with [`Tail::rest`]: torn records,
//! records cut by the file's end and unwritten slots count as
//! [`super::pack`] counts them) and writes the packed log as [`super::stage`]
//! does. Records appended after their time was passed (the kernel's
//! samples, which `memtrace run` appends at the end) come after the events
//! packed already: the packed log's times then go back, which its time
//! deltas carry, and what is built from them (the kernel's view, the exit
//! scan) does not depend on the order. Uses `crate::log` and `crate::error`.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memtrace_format::{HEADER_SIZE, Record};

use super::encoder::{Enc, MISC_FLUSH};
use super::{
    BLOCK_OPS, BlockWriter, Staged, Stats, open_ended_raw, staged_beside, write_end, write_head,
};
use crate::error::{Error, Result};
use crate::log::packed::layout::col;
use crate::log::tail::Tail;
use crate::log::{Log, exit_scan_values};

/// A raw log being packed while it is written (see the module docs).
pub struct LivePack {
    path: PathBuf,
    tail: Tail,
    enc: Enc,
    blocks: BlockWriter<BufWriter<File>>,
    events: u64,
    started: u64,
    /// The values of the latest exit-scan record packed.
    exit_scan: Option<Vec<u64>>,
}

impl LivePack {
    /// Begins packing the raw log at `path`, whose writer may still run.
    pub fn new(path: &Path) -> Result<LivePack> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let body = nameless_file(dir).map_err(io)?;
        let started = Log::open(path)?.header()?.start_mono_ns;
        Ok(LivePack {
            path: path.to_owned(),
            tail: Tail::default(),
            enc: Enc::new(BLOCK_OPS * 4),
            blocks: BlockWriter::new(BufWriter::new(body)).map_err(io)?,
            events: 0,
            started,
            exit_scan: None,
        })
    }

    /// The raw log being packed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the log's process started (CLOCK_MONOTONIC, from its header).
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Events packed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Each stream's thread and the time none of its records still to come
    /// can be earlier than ([`Tail::bounds`]).
    pub fn bounds(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.tail.bounds()
    }

    /// Packs the events written since the last call with times up to
    /// `until`; the caller vouches that no record up to `until` is still to
    /// be stored. Returns how many were packed.
    pub fn advance(&mut self, until: u64) -> Result<u64> {
        let log = Log::open_growing(&self.path)?;
        let header = log.header()?;
        let bad = |err| Error::Chunk {
            path: self.path.clone(),
            offset: 0,
            err,
        };
        let events = self
            .tail
            .read(log.bytes(), header.reserved_end, until)
            .map_err(bad);
        let events = log.checked(events)?;
        for (i, ev) in events.iter().enumerate() {
            // What the encoder keeps of an address a few events on, loaded
            // meanwhile (a cache miss per event otherwise, as when packing at
            // once).
            if let Some(next) = events.get(i + AHEAD) {
                self.enc.prefetch(heap_addr(next));
            }
            if let Some(values) = exit_scan_values(&ev.record) {
                self.exit_scan = values.ok();
            }
            self.enc.event(ev).map_err(|why| Error::Pack {
                path: self.path.clone(),
                why: format!("cannot re-encode a {why}"),
            })?;
            if self.enc.cols[col::KIND].len() >= BLOCK_OPS
                || self.enc.cols[col::MISC].len() >= MISC_FLUSH
            {
                self.flush()?;
            }
        }
        // The events borrow the mapping: a hole read as zeros since voids them.
        log.checked(Ok(()))?;
        self.events += events.len() as u64;
        Ok(events.len() as u64)
    }

    /// How far it packed, for the scan at exit ([`Progress`]).
    pub fn progress(&self) -> Progress {
        let mut blocks: Vec<(u64, u64)> = (self.enc.m.slots.iter())
            .filter(|(addr, _)| *addr != 0)
            .copied()
            .collect();
        blocks.sort_unstable();
        Progress {
            path: self.path.clone(),
            tail: self.tail.clone(),
            blocks,
            exit_scan: self.exit_scan.clone(),
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.blocks
            .block(&self.enc.cols)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        self.enc.cols.iter_mut().for_each(Vec::clear);
        Ok(())
    }

    /// Packs the rest once the log's writer is gone, into a temporary file
    /// beside `dst`, to be put in its place by [`Staged::commit`] or
    /// [`super::commit_all`] (as [`super::stage`] does).
    pub fn finish(self, dst: &Path) -> Result<Staged> {
        let LivePack {
            path,
            tail,
            mut enc,
            blocks,
            events: live_events,
            ..
        } = self;
        let log = open_ended_raw(&path)?;
        let header = log.header()?;
        let fin = log.index(&header)?;
        let Some((rest, mut half)) = tail.rest(&fin) else {
            return Err(Error::Pack {
                path,
                why: "the log changed under its packer".into(),
            });
        };
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| Error::Io { path: p, source }
        };
        let live_section = blocks.written;
        let mut body = blocks
            .out
            .into_inner()
            .map_err(|e| io(&path)(e.into_error()))?;
        let (rest_events, cut, rest_section) = log.checked(super::encode_blocks(
            &log, &rest, &mut enc, &mut body, &mut half,
        ))?;
        staged_beside(&log, dst, |out, tmp| {
            let written = (|| -> std::io::Result<Stats> {
                let mut w = BufWriter::new(&mut *out);
                write_head(&mut w, &log.bytes()[..HEADER_SIZE], &rest)?;
                w.flush()?;
                drop(w);
                body.seek(SeekFrom::Start(0))?;
                std::io::copy(&mut body, out)?;
                let section = live_section + rest_section;
                let events = live_events + rest_events;
                write_end(out, &enc, &rest, events, cut, section)
            })();
            written.map_err(io(tmp))
        })
    }
}

/// How many events ahead [`LivePack::advance`] prefetches an address.
const AHEAD: usize = 16;

/// The address a heap event looks up in the encoder (0: none).
fn heap_addr(ev: &crate::log::Event<'_>) -> u64 {
    match ev.record {
        Record::Alloc { addr, .. } | Record::Free { addr, .. } => addr,
        Record::Realloc { new, .. } if ev.realloc_end => new,
        Record::Realloc { old, .. } => old,
        _ => 0,
    }
}

/// What a [`LivePack`] has packed, as the scan at exit needs it: the blocks
/// live after those events and where each stream stopped (taken at once
/// from the packer, so that the rest is read without it).
#[derive(Clone, Debug)]
pub struct Progress {
    path: PathBuf,
    tail: Tail,
    blocks: Vec<(u64, u64)>,
    exit_scan: Option<Vec<u64>>,
}

impl Progress {
    /// The raw log.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The heap blocks live after the events packed (address and requested
    /// size, sorted by address): the encoder's live slots.
    pub fn live_blocks(&self) -> &[(u64, u64)] {
        &self.blocks
    }

    /// The values of the latest exit-scan record (`KIND_EXIT_SCAN`) among
    /// the events packed.
    pub fn exit_scan(&self) -> Option<&[u64]> {
        self.exit_scan.as_deref()
    }

    /// What is left of the log `fin` indexes after the events packed, as
    /// [`Tail::rest`] gives it: the index of the rest, and per stream
    /// whether its first record is a REALLOC whose first half was packed.
    pub fn rest(&self, fin: &crate::log::Index) -> Option<(crate::log::Index, Vec<bool>)> {
        self.tail.rest(fin)
    }
}

/// A file with no name in `dir` (`O_TMPFILE`, mode 0600): nothing can be
/// planted at it or find it, and it goes when closed.
fn nameless_file(dir: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(crate::outfile::LOG_MODE)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)
}
