//! Decoding one stream's chunks lazily, record by record, releasing the pages it has read.

use memtrace_format::{DecodeError, Record, RecordIter};

use super::{ChunkRef, Index, Log};
use crate::error::{Error, Result};

/// One record in merged order.
#[derive(Clone)]
pub struct Event<'a> {
    /// When it happened (for a REALLOC: `time` or `time_after`, see `realloc_end`).
    pub time: u64,
    /// Index of the stream in [`Index::streams`].
    pub stream: usize,
    /// File offset of the chunk the record is in.
    pub chunk_offset: u64,
    /// The record.
    pub record: Record<'a>,
    /// For a REALLOC: false for its first appearance (release of the old
    /// block), true for its second (the new block). Always false otherwise.
    pub realloc_end: bool,
    /// In a packed log, the slot the codec keeps the heap block in (see
    /// [`super::packed`]): the new block of an ALLOC or of a REALLOC's
    /// second appearance, the block a FREE or a REALLOC's first appearance
    /// releases. [`NO_SLOT`] for a block without one, in a raw log, and for
    /// any other record. A slot names one live block at a time, so a replay
    /// can keep live blocks by slot instead of hashing their addresses.
    pub slot: u32,
}

/// [`Event::slot`] of an event without a slot.
pub const NO_SLOT: u32 = u32::MAX;

/// The values of an exit-scan record (`KIND_EXIT_SCAN`: what the preload
/// recorded for the scan at exit), `None` for any other record.
pub fn exit_scan_values(
    r: &Record<'_>,
) -> Option<std::result::Result<Vec<u64>, memtrace_format::DecodeError>> {
    match r {
        Record::Kernel { kind, values, .. } if *kind == memtrace_format::kernel::KIND_EXIT_SCAN => {
            Some(values.clone().collect())
        }
        _ => None,
    }
}

/// Decodes one stream lazily.
pub(super) struct Cursor<'a> {
    pub(super) stream: usize,
    pub(super) next_chunk: usize,
    pub(super) records: Option<(RecordIter<'a>, ChunkRef)>,
    pub(super) pending: Option<Event<'a>>,
    /// File offset up to which the current chunk's pages were released.
    pub(super) released: usize,
    /// Bytes consumed before they are released.
    pub(super) window: usize,
    /// Bytes of the record decoded last.
    pub(super) last_len: usize,
}

impl<'a> Cursor<'a> {
    /// Decodes the stream's next event into `out` (`None` at its end).
    /// Written in place rather than returned: an event copied whole right
    /// after its fields were stored one by one stalls on store forwarding,
    /// a cost paid at every copy on a log's hottest path.
    pub(super) fn advance(
        &mut self,
        log: &'a Log,
        index: &Index,
        cut_records: &mut u64,
        out: &mut Option<Event<'a>>,
    ) -> Result<()> {
        if let Some(ev) = self.pending.take() {
            *out = Some(ev);
            return Ok(());
        }
        let s = &index.streams[self.stream];
        loop {
            if let Some((it, chunk)) = &mut self.records {
                // Everything before the next record is consumed (a record
                // borrowed from there stays readable: released pages fault
                // back in).
                let (start, chunk_end) = (chunk.body.0 + it.offset(), chunk.body.1);
                let next = it.next();
                self.last_len = chunk.body.0 + it.offset() - start;
                if next.is_none() || matches!(next, Some(Err(_))) {
                    log.release(self.released, chunk_end);
                    self.released = chunk_end;
                } else {
                    let (released, upto) = (self.released, start);
                    if upto.saturating_sub(released) >= self.window {
                        log.release(released, upto);
                        self.released = upto;
                    }
                }
                match next {
                    Some(Ok(record)) => {
                        let time = record.time().unwrap_or_else(|| it.time());
                        if let Record::Realloc { time_after, .. } = record {
                            self.pending = Some(Event {
                                time: time_after,
                                stream: self.stream,
                                chunk_offset: chunk.offset,
                                record: record.clone(),
                                realloc_end: true,
                                slot: NO_SLOT,
                            });
                        }
                        *out = Some(Event {
                            time,
                            stream: self.stream,
                            chunk_offset: chunk.offset,
                            record,
                            realloc_end: false,
                            slot: NO_SLOT,
                        });
                        return Ok(());
                    }
                    Some(Err(err)) => {
                        if chunk.cut {
                            // The file ends inside this record: truncation, not damage.
                            *cut_records += 1;
                            self.records = None;
                            self.next_chunk = s.chunks.len();
                            *out = None;
                            return Ok(());
                        }
                        return Err(record_error(log, s.id, chunk.offset, err));
                    }
                    None => self.records = None,
                }
            }
            let Some(chunk) = s.chunks.get(self.next_chunk) else {
                *out = None;
                return Ok(());
            };
            self.next_chunk += 1;
            self.released = chunk.offset as usize;
            let body = &log.bytes()[chunk.body.0..chunk.body.1];
            self.records = Some((RecordIter::new(body, chunk.base_time), *chunk));
        }
    }
}

fn record_error(log: &Log, stream: u32, offset: u64, err: DecodeError) -> Error {
    Error::Record {
        path: log.path().to_owned(),
        stream,
        offset,
        err,
    }
}
