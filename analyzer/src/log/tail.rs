//! Reading a raw log that is still being written, a piece at a time: a
//! [`Tail`] remembers how far it read each stream, and each call reads only
//! what was written since (the watcher's incremental snapshots,
//! `crate::live::follow`).
//!
//! ## What is safe to read
//! The writer stores a chunk header's magic last and each record's tag byte
//! last (release stores, see the preload's `writer`). So a reader may stop at
//! any moment and come back:
//! - a slot without a magic is not written *yet*: it is remembered as a hole
//!   and looked at again on the next call (a hole left by a failed mapping
//!   stays one, for the cost of one word read per call);
//! - in a stream's current chunk, a record whose length or tag is still 0 is
//!   the writer's frontier: reading stops there, and resumes there. Only once
//!   the stream's next chunk exists is the rest of a chunk known to be unused
//!   (and a tag-0 record there torn for good, skipped as the merge does).
//!
//! ## Order
//! [`Tail::read`] returns the new events with times up to `until`, sorted by
//! (time, stream), which is the merge's order ([`super::Merge`]); a stream
//! stops at its first later record, left for the next call, and a REALLOC
//! whose second half (`time_after`) is later gives its first half now and its
//! second then. Stream indices are given in the order streams are found and
//! never change, so state kept across calls (the replay's per-stream
//! figures) stays valid. A record that reaches the log only after a call
//! that read past its time (another thread's, stamped just before `until`
//! and stored just after the read) comes in the next call, after events
//! later than itself: the cut of a snapshot is "what the log held", as
//! with a copy of the log.

use std::collections::{BTreeMap, HashMap};

use memtrace_format::decode::DecodeError;
use memtrace_format::hdr::ChunkHeader;
use memtrace_format::{CHUNK_ALIGN, CHUNK_HEADER_SIZE, HEADER_SIZE, Record, RecordIter};

use super::{ChunkRef, Event, Index, StreamChunks};

/// How far one stream was read.
#[derive(Clone, Debug, Default)]
struct Stream {
    /// Chunks found but not begun, by `seq`.
    ahead: BTreeMap<u32, ChunkRef>,
    /// The chunk being read, the body offset of its next record, and the
    /// stream's time before that record.
    current: Option<(ChunkRef, usize, u64)>,
    /// The `seq` of the chunk that follows the current one.
    next_seq: u32,
    /// The record at the current position is a REALLOC whose first half was
    /// given already.
    half: bool,
    /// The latest time of a record read (a REALLOC's `time_after`
    /// included), of the record the last read stopped at, or of the latest
    /// chunk's base (its writer's time when it began the chunk): times of
    /// records stored already, so no record the stream's writer stores from
    /// now on is earlier ([`Tail::bounds`]).
    bound: u64,
}

/// Where a [`Tail`] stopped reading a live raw log (see the module docs).
#[derive(Clone, Debug)]
pub struct Tail {
    /// File offset where the chunk walk goes on.
    walked: usize,
    /// Runs of slots found empty, `[start, end)`, to look at again.
    holes: Vec<(usize, usize)>,
    by_id: HashMap<u32, usize>,
    streams: Vec<Stream>,
    /// The streams found, in index order (for messages; no chunks listed).
    pub index: Index,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            walked: HEADER_SIZE,
            holes: Vec::new(),
            by_id: HashMap::new(),
            streams: Vec::new(),
            index: Index::default(),
        }
    }
}

impl Tail {
    /// Finds the chunks written since the last call in `file` (the whole
    /// log, its header's reserved end `reserved_end`).
    fn walk(&mut self, file: &[u8], reserved_end: u64) -> Result<(), DecodeError> {
        let end = (reserved_end.min(file.len() as u64)) as usize;
        let mut holes = Vec::new();
        for (s, e) in std::mem::take(&mut self.holes) {
            self.walk_range(file, s, e.min(end), &mut holes)?;
        }
        let from = self.walked;
        self.walked = self.walk_range(file, from, end, &mut holes)?.max(from);
        self.holes = holes;
        Ok(())
    }

    /// Walks the slots of `[from, end)`; returns where the walk ended.
    fn walk_range(
        &mut self,
        file: &[u8],
        from: usize,
        end: usize,
        holes: &mut Vec<(usize, usize)>,
    ) -> Result<usize, DecodeError> {
        let mut pos = from;
        while pos + CHUNK_HEADER_SIZE <= end {
            let Some(h) = ChunkHeader::parse(&file[pos..end])? else {
                match holes.last_mut() {
                    Some(last) if last.1 == pos => last.1 += CHUNK_ALIGN,
                    _ => holes.push((pos, pos + CHUNK_ALIGN)),
                }
                pos += CHUNK_ALIGN;
                continue;
            };
            let size = h.size as usize;
            if size < CHUNK_ALIGN || !size.is_multiple_of(CHUNK_ALIGN) {
                return Err(DecodeError::BadChunk("size"));
            }
            let stop = pos.saturating_add(size).min(file.len());
            let r = ChunkRef {
                offset: pos as u64,
                body: (pos + CHUNK_HEADER_SIZE, stop),
                base_time: h.base_time,
                seq: h.seq,
                cut: pos.saturating_add(size) > file.len(),
            };
            let i = *self.by_id.entry(h.stream).or_insert_with(|| {
                self.streams.push(Stream::default());
                self.index.streams.push(StreamChunks {
                    id: h.stream,
                    tid: h.tid,
                    chunks: Vec::new(),
                });
                self.streams.len() - 1
            });
            // The base time is that of the stream's latest record before
            // this chunk: a record stored already.
            self.streams[i].bound = self.streams[i].bound.max(h.base_time);
            self.streams[i].ahead.insert(h.seq, r);
            pos = pos.saturating_add(size);
        }
        Ok(pos)
    }

    /// The events written since the last call with times up to `until`, in
    /// merged order (see the module docs); they are consumed. `file` is the
    /// whole log as it is now.
    pub fn read<'a>(
        &mut self,
        file: &'a [u8],
        reserved_end: u64,
        until: u64,
    ) -> Result<Vec<Event<'a>>, DecodeError> {
        self.walk(file, reserved_end)?;
        let mut out = Vec::new();
        for (i, s) in self.streams.iter_mut().enumerate() {
            s.read(file, i, until, &mut out)?;
        }
        // Stable: each stream's events are in file order already.
        out.sort_by_key(|e| (e.time, e.stream));
        Ok(out)
    }

    /// [`Tail::read`] without consuming anything: what a read with no time
    /// limit would give now.
    pub fn peek<'a>(
        &mut self,
        file: &'a [u8],
        reserved_end: u64,
    ) -> Result<Vec<Event<'a>>, DecodeError> {
        self.walk(file, reserved_end)?;
        let mut out = Vec::new();
        for (i, s) in self.streams.iter().enumerate() {
            s.clone().read(file, i, u64::MAX, &mut out)?;
        }
        out.sort_by_key(|e| (e.time, e.stream));
        Ok(out)
    }

    /// Streams found so far.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Each stream's thread and the time no record its writer stores from
    /// now on can be earlier than (a thread's records are stamped in the
    /// order it stores them; a thread in a signal handler writes to a stream
    /// of its own). What a live packer may read up to, with the threads'
    /// states, see `memtrace run`'s `livepack`.
    pub fn bounds(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.index
            .streams
            .iter()
            .zip(&self.streams)
            .map(|(c, s)| (c.tid, s.bound))
    }

    /// What is left to read once the log's writer is gone, as an index for
    /// [`super::Merge`] over the final log whose chunk index is `fin`: each
    /// stream read so far keeps its index, with the rest of its current
    /// chunk and its later chunks; streams found only now follow. Also says,
    /// per stream, whether its first record left is a REALLOC whose first
    /// half was given already. `None` when `fin` does not hold a chunk this
    /// tail read from (the file changed under it).
    pub fn rest(&self, fin: &Index) -> Option<(Index, Vec<bool>)> {
        let by_id: HashMap<u32, &StreamChunks> = fin.streams.iter().map(|s| (s.id, s)).collect();
        let mut streams = Vec::with_capacity(fin.streams.len().max(self.streams.len()));
        let mut half = Vec::with_capacity(streams.capacity());
        for (c, s) in self.index.streams.iter().zip(&self.streams) {
            let f = by_id.get(&c.id)?;
            let mut chunks = Vec::new();
            if let Some((cur, pos, time)) = s.current {
                let mut now = *f.chunks.iter().find(|x| x.offset == cur.offset)?;
                now.body.0 = (now.body.0 + pos).min(now.body.1);
                now.base_time = time;
                chunks.push(now);
            }
            chunks.extend(f.chunks.iter().filter(|x| x.seq >= s.next_seq).copied());
            streams.push(StreamChunks {
                id: c.id,
                tid: c.tid,
                chunks,
            });
            half.push(s.half && s.current.is_some());
        }
        for f in &fin.streams {
            if !self.by_id.contains_key(&f.id) {
                streams.push(f.clone());
                half.push(false);
            }
        }
        let index = Index {
            streams,
            empty_slots: fin.empty_slots,
            truncated: fin.truncated,
            packed: None,
        };
        Some((index, half))
    }
}

impl Stream {
    /// Appends this stream's events up to `until` to `out` (see [`Tail::read`]).
    fn read<'a>(
        &mut self,
        file: &'a [u8],
        stream: usize,
        until: u64,
        out: &mut Vec<Event<'a>>,
    ) -> Result<(), DecodeError> {
        loop {
            let Some((chunk, mut pos, mut time)) = self.current else {
                match self.ahead.remove(&self.next_seq) {
                    Some(c) => {
                        self.current = Some((c, 0, c.base_time));
                        self.next_seq += 1;
                        continue;
                    }
                    None => return Ok(()),
                }
            };
            let body = &file[chunk.body.0..chunk.body.1];
            // One decoder for the chunk's run of records; the position is
            // stored back wherever the read stops.
            let mut it = RecordIter::resume(body, pos, time);
            loop {
                let rest = &body[pos.min(body.len())..];
                let len = if rest.len() < 3 {
                    0
                } else {
                    u16::from_le_bytes([rest[0], rest[1]]) as usize
                };
                if len == 0 || rest[2] == 0 {
                    // The writer's frontier, unless the stream went on to its next chunk.
                    if !self.ahead.contains_key(&self.next_seq) {
                        self.current = Some((chunk, pos, time));
                        return Ok(());
                    }
                    if len == 0 || len > rest.len() {
                        self.current = None;
                    } else {
                        self.current = Some((chunk, pos + len, time));
                    }
                    break;
                }
                let record = match it.next() {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => {
                        self.current = Some((chunk, pos, time));
                        return Err(e);
                    }
                    None => {
                        self.current = Some((chunk, pos, time));
                        return Err(DecodeError::BadRecord("record length"));
                    }
                };
                let t = record.time().unwrap_or(time);
                self.bound = self.bound.max(t);
                if t > until {
                    self.current = Some((chunk, pos, time));
                    return Ok(());
                }
                let ev = |time, realloc_end| Event {
                    time,
                    stream,
                    chunk_offset: chunk.offset,
                    record: record.clone(),
                    realloc_end,
                    slot: super::NO_SLOT,
                };
                if let Record::Realloc { time_after, .. } = record {
                    if !self.half {
                        out.push(ev(t, false));
                    }
                    self.bound = self.bound.max(time_after);
                    if time_after > until {
                        self.half = true;
                        self.current = Some((chunk, pos, time));
                        return Ok(());
                    }
                    self.half = false;
                    out.push(ev(time_after, true));
                } else {
                    out.push(ev(t, false));
                }
                (pos, time) = (it.offset(), it.time());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testlog::{LogBuilder, T0};

    /// A stream's records come piece by piece: a later read gives only the
    /// new ones, and a record later than `until` waits for the next read.
    #[test]
    fn reads_on_where_it_stopped() {
        let mut b = LogBuilder::new();
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 1, 0x1000, 8, 1).alloc(T0 + 5, 0x2000, 8, 1);
        b.push(1, &c);
        let mut tail = Tail::default();
        let end = b.bytes.len() as u64;
        let first = tail.read(&b.bytes, end, T0 + 2).unwrap();
        assert_eq!(first.iter().map(|e| e.time).collect::<Vec<_>>(), [T0 + 1]);
        let second = tail.read(&b.bytes, end, T0 + 10).unwrap();
        assert_eq!(second.iter().map(|e| e.time).collect::<Vec<_>>(), [T0 + 5]);
        assert!(tail.read(&b.bytes, end, u64::MAX).unwrap().is_empty());
    }

    /// A record whose tag is not stored yet stops the stream; once stored,
    /// the next read gives it.
    #[test]
    fn waits_at_the_frontier() {
        let mut b = LogBuilder::new();
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 1, 0x1000, 8, 1).alloc(T0 + 2, 0x2000, 8, 1);
        let first_len = u16::from_le_bytes([c.body[0], c.body[1]]) as usize;
        let tag = c.body[first_len + 2];
        c.body[first_len + 2] = 0;
        b.push(1, &c);
        let at = HEADER_SIZE + CHUNK_HEADER_SIZE + first_len + 2;
        let end = b.bytes.len() as u64;
        let mut tail = Tail::default();
        assert_eq!(tail.read(&b.bytes, end, u64::MAX).unwrap().len(), 1);
        assert!(tail.read(&b.bytes, end, u64::MAX).unwrap().is_empty());
        b.bytes[at] = tag;
        let later = tail.read(&b.bytes, end, u64::MAX).unwrap();
        assert_eq!(later.iter().map(|e| e.time).collect::<Vec<_>>(), [T0 + 2]);
    }
}
