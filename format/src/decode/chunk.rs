//! The chunks of a whole file: walking the chunk headers that follow the file header.

use super::{DecodeError, RecordIter};
use crate::hdr::ChunkHeader;
use crate::{CHUNK_ALIGN, CHUNK_HEADER_SIZE, HEADER_SIZE};

/// One chunk of the file.
#[derive(Clone, Copy)]
pub struct Chunk<'a> {
    /// File offset of the chunk.
    pub offset: u64,
    pub header: ChunkHeader,
    /// The chunk's records area.
    pub body: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// The chunk's records.
    pub fn records(&self) -> RecordIter<'a> {
        RecordIter::new(self.body, self.header.base_time)
    }
}

/// Iterates over the written chunks of a whole file (header included in `file`).
pub struct ChunkIter<'a> {
    file: &'a [u8],
    pos: usize,
    end: usize,
    /// Reserved slots that were never written (the process died first).
    pub empty_slots: u64,
    /// True when the header's reserved end lies beyond the file's end.
    pub truncated: bool,
}

impl<'a> ChunkIter<'a> {
    /// Chunks of `file`, up to the header's `reserved_end` (clamped to the file).
    pub fn new(file: &'a [u8], reserved_end: u64) -> Self {
        let truncated = reserved_end > file.len() as u64;
        let end = (reserved_end.min(file.len() as u64)) as usize;
        ChunkIter {
            file,
            pos: HEADER_SIZE,
            end,
            empty_slots: 0,
            truncated,
        }
    }
}

/// One step of a [`ChunkIter`] walk.
pub enum Step<'a> {
    /// A chunk, or the corrupt chunk header that ends the walk.
    Chunk(Result<Chunk<'a>, DecodeError>),
    /// A slot that was reserved but never written (skipped).
    Empty,
    /// The end of the chunk area.
    End,
}

impl<'a> ChunkIter<'a> {
    /// File offset where the walk continues.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Moves the walk by one chunk or one empty slot, so a caller can act
    /// (release pages, say) during a long run of empty slots.
    pub fn step(&mut self) -> Step<'a> {
        if self.pos.saturating_add(CHUNK_HEADER_SIZE) > self.end {
            return Step::End;
        }
        let b = &self.file[self.pos..self.end];
        let h = match ChunkHeader::parse(b) {
            Ok(Some(h)) => h,
            Ok(None) => {
                self.empty_slots += 1;
                self.pos = self.pos.saturating_add(CHUNK_ALIGN);
                return Step::Empty;
            }
            Err(e) => {
                self.pos = self.end;
                return Step::Chunk(Err(e));
            }
        };
        let size = h.size as usize;
        if size < CHUNK_ALIGN || !size.is_multiple_of(CHUNK_ALIGN) {
            self.pos = self.end;
            return Step::Chunk(Err(DecodeError::BadChunk("size")));
        }
        let offset = self.pos as u64;
        // A chunk cut short by the end of the file still yields its records.
        let stop = self.pos.saturating_add(size).min(self.end);
        let body = &self.file[self.pos + CHUNK_HEADER_SIZE..stop];
        self.pos = self.pos.saturating_add(size);
        Step::Chunk(Ok(Chunk {
            offset,
            header: h,
            body,
        }))
    }
}

impl<'a> Iterator for ChunkIter<'a> {
    type Item = Result<Chunk<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.step() {
                Step::Chunk(c) => return Some(c),
                Step::Empty => continue,
                Step::End => return None,
            }
        }
    }
}
