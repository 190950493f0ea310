//! The chunk index: one walk over the chunk headers, grouping the chunks by stream.

use memtrace_format::decode::{ChunkIter, Step};
use memtrace_format::{CHUNK_HEADER_SIZE, Header};

use super::{Log, RELEASE_WINDOW, packed};
use crate::error::{Error, Result};

impl Log {
    /// Walks the chunk headers and groups the chunks by stream.
    pub fn index(&self, header: &Header<'_>) -> Result<Index> {
        let r = self.index_unchecked(header);
        self.checked(r)
    }

    fn index_unchecked(&self, header: &Header<'_>) -> Result<Index> {
        if self.is_packed() {
            return packed::index(&self.path, self.bytes());
        }
        let mut it = ChunkIter::new(self.bytes(), header.reserved_end);
        let mut streams: Vec<StreamChunks> = Vec::new();
        let mut by_id = std::collections::HashMap::new();
        let file_len = self.bytes().len() as u64;
        // Where the next chunk header is expected, to name a bad one's offset:
        // ChunkIter skips one CHUNK_ALIGN per empty slot.
        let mut next_offset = memtrace_format::HEADER_SIZE as u64;
        let mut empty_before = 0;
        // Chunk headers are read once: release their pages as the walk goes on.
        let mut released = 0usize;
        loop {
            let pos = it.position();
            if pos.saturating_sub(released) >= RELEASE_WINDOW {
                self.release(released, pos);
                released = pos;
            }
            let chunk = match it.step() {
                Step::Chunk(c) => c,
                Step::Empty => continue,
                Step::End => break,
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(err) => {
                    let offset = next_offset
                        + (it.empty_slots - empty_before) * memtrace_format::CHUNK_ALIGN as u64;
                    return Err(Error::Chunk {
                        path: self.path.clone(),
                        offset,
                        err,
                    });
                }
            };
            next_offset = chunk.offset + chunk.header.size as u64;
            empty_before = it.empty_slots;
            let h = chunk.header;
            let start = chunk.offset as usize + CHUNK_HEADER_SIZE;
            let r = ChunkRef {
                offset: chunk.offset,
                body: (start, start + chunk.body.len()),
                base_time: h.base_time,
                seq: h.seq,
                cut: chunk.offset + h.size as u64 > file_len,
            };
            let idx = *by_id.entry(h.stream).or_insert_with(|| {
                streams.push(StreamChunks {
                    id: h.stream,
                    tid: h.tid,
                    chunks: Vec::new(),
                });
                streams.len() - 1
            });
            streams[idx].chunks.push(r);
        }
        self.release(released, self.bytes().len());
        for s in &mut streams {
            // Stable: file order where seq ties (it never does in a good log).
            s.chunks.sort_by_key(|c| c.seq);
        }
        Ok(Index {
            streams,
            empty_slots: it.empty_slots,
            truncated: it.truncated,
            packed: None,
        })
    }
}

/// Where one chunk's records are.
#[derive(Clone, Copy, Debug)]
pub struct ChunkRef {
    /// File offset of the chunk header.
    pub offset: u64,
    /// File range of the records area, clamped to the file.
    pub body: (usize, usize),
    /// Time base of the chunk's first record.
    pub base_time: u64,
    /// Index of the chunk within its stream.
    pub seq: u32,
    /// The chunk extends past the end of the file (truncated log).
    pub cut: bool,
}

/// The chunks of one stream, in stream order.
#[derive(Clone, Debug)]
pub struct StreamChunks {
    /// The stream id from the chunk headers.
    pub id: u32,
    /// The thread that wrote the stream's first chunk.
    pub tid: u32,
    /// Chunks sorted by `seq`.
    pub chunks: Vec<ChunkRef>,
}

/// All chunks of a log, by stream.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Streams in order of their first chunk in the file.
    pub streams: Vec<StreamChunks>,
    /// Chunk slots reserved but never written.
    pub empty_slots: u64,
    /// The file ends before the header's `reserved_end`.
    pub truncated: bool,
    /// A packed log's sections (its streams have no chunks).
    pub packed: Option<Box<packed::Sections>>,
}
