//! Merging the streams by time ([`Merge`], [`RawMerge`]), and feeding the merged events to a
//! consumer from a decoding thread ([`for_each_event`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::stream::Cursor;
use super::{
    Event, Index, Log, RELEASE_BUDGET, RELEASE_WINDOW, SWEEP_PAGES, SWEEP_STREAMS, packed,
    page_size,
};
use crate::error::{Error, Result};

impl Log {
    /// Merges all streams of `index` by time (a packed log's events come
    /// merged already).
    pub fn merge<'a>(&'a self, index: &'a Index) -> Merge<'a> {
        let events = match &index.packed {
            Some(p) => match packed::Events::new(self, index, p) {
                Ok(ev) => Events::Packed(Box::new(ev), p.cut_records),
                Err(e) => Events::Failed(Some(e)),
            },
            None => Events::Raw(RawMerge::new(self, index)),
        };
        Merge {
            log: self,
            events,
            done: false,
        }
    }
}

/// Events handed from the decoding thread to the consumer at a time.
const BATCH: usize = 4096;
/// Logs smaller than this are decoded on the caller's thread.
const INLINE_BELOW: usize = 1 << 20;

/// Calls `each` on every event of the log in merged order, decoding (and
/// merging) on a thread of its own a few batches ahead, so that decoding and
/// the caller's work overlap on two cores. Returns the records cut short by
/// the end of a truncated file. The first error, from either side, ends it.
pub fn for_each_event<'a>(
    log: &'a Log,
    index: &'a Index,
    mut each: impl FnMut(&Event<'a>) -> Result<()>,
) -> Result<u64> {
    // A small log is not worth a thread.
    if log.bytes().len() < INLINE_BELOW {
        let mut merge = log.merge(index);
        for ev in merge.by_ref() {
            each(&ev?)?;
        }
        return Ok(merge.cut_records());
    }
    std::thread::scope(|s| -> Result<u64> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Event<'a>>>>(4);
        let (back, spare) = std::sync::mpsc::channel::<Vec<Event<'a>>>();
        let producer = s.spawn(move || {
            let mut merge = log.merge(index);
            let mut batch = Vec::with_capacity(BATCH);
            for ev in merge.by_ref() {
                match ev {
                    Ok(ev) => {
                        batch.push(ev);
                        if batch.len() == BATCH {
                            let next = spare
                                .try_recv()
                                .unwrap_or_else(|_| Vec::with_capacity(BATCH));
                            if tx.send(Ok(std::mem::replace(&mut batch, next))).is_err() {
                                return 0;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return 0;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Ok(batch));
            }
            merge.cut_records()
        });
        for batch in rx {
            let mut batch = batch?;
            for ev in &batch {
                each(ev)?;
            }
            batch.clear();
            let _ = back.send(batch);
        }
        Ok(producer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// Every event of a log in merged order: a raw log's streams merged by
/// time, or a packed log's events as stored. Its last item is an error if
/// the file shrank while it was read ([`Log::checked`]).
pub struct Merge<'a> {
    log: &'a Log,
    events: Events<'a>,
    done: bool,
}

enum Events<'a> {
    Raw(RawMerge<'a>),
    /// The events and the records the packer found cut short.
    Packed(Box<packed::Events<'a>>, u64),
    /// The packed events could not be opened: yields this error once.
    Failed(Option<Error>),
}

impl Merge<'_> {
    /// Records cut short by the end of a truncated file (final once the
    /// iterator is exhausted).
    pub fn cut_records(&self) -> u64 {
        match &self.events {
            Events::Raw(m) => m.cut_records,
            Events::Packed(_, n) => *n,
            Events::Failed(_) => 0,
        }
    }
}

impl<'a> Iterator for Merge<'a> {
    type Item = Result<Event<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = match &mut self.events {
            Events::Raw(m) => m.next(),
            Events::Packed(e, _) => e.next(),
            Events::Failed(e) => e.take().map(Err),
        };
        match next {
            Some(Ok(ev)) => Some(Ok(ev)),
            // The end, or an error: either may come from the zeros that
            // replaced a truncated file's pages.
            end => {
                self.done = true;
                match self.log.checked(Ok(())) {
                    Err(e) => Some(Err(e)),
                    Ok(()) => end,
                }
            }
        }
    }
}

/// A k-way merge of all streams by time; yields every record, timeless ones included.
pub struct RawMerge<'a> {
    log: &'a Log,
    index: &'a Index,
    cursors: Vec<Cursor<'a>>,
    heads: Vec<Option<Event<'a>>>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// The stream whose head is known to come first without asking the heap
    /// (it was just taken and its next event is not later than the heap's
    /// top): a single thread's log, or a run of one thread's events, never
    /// touches the heap.
    hot: Option<usize>,
    started: bool,
    failed: bool,
    /// Pages left to decode before the next sweep of the whole mapping
    /// (`None`: few streams, each releases its own pages; see [`SWEEP_STREAMS`]).
    sweep: Option<usize>,
    /// Records cut short by the end of a truncated file.
    pub cut_records: u64,
}

impl<'a> RawMerge<'a> {
    fn new(log: &'a Log, index: &'a Index) -> Self {
        let n = index.streams.len();
        let window = (RELEASE_BUDGET / n.max(1)).clamp(page_size(), RELEASE_WINDOW);
        RawMerge {
            log,
            index,
            cursors: (0..n)
                .map(|stream| Cursor {
                    stream,
                    next_chunk: 0,
                    records: None,
                    pending: None,
                    released: 0,
                    window,
                    last_len: 0,
                })
                .collect(),
            heads: (0..n).map(|_| None).collect(),
            heap: BinaryHeap::with_capacity(n),
            hot: None,
            started: false,
            failed: false,
            sweep: (n > SWEEP_STREAMS).then_some(SWEEP_PAGES),
            cut_records: 0,
        }
    }

    fn fill(&mut self, i: usize) -> Result<()> {
        let ev = self.cursors[i].advance(self.log, self.index, &mut self.cut_records)?;
        // Count the pages the record touched (at least one) towards the next sweep.
        if let Some(left) = &mut self.sweep {
            let pages = self.cursors[i].last_len.div_ceil(page_size()) + 1;
            *left = left.saturating_sub(pages);
            if *left == 0 {
                *left = SWEEP_PAGES;
                self.log.release(0, usize::MAX);
            }
        }
        self.heads[i] = ev;
        Ok(())
    }

    /// Queues stream `i`'s head: as the hot stream if it comes before every
    /// other head (by time, then stream: a tie goes to the lower stream, as
    /// the heap orders it), else in the heap.
    fn queue(&mut self, i: usize, hot_ok: bool) {
        if let Some(ev) = &self.heads[i] {
            match self.heap.peek() {
                Some(Reverse(top)) if !hot_ok || *top < (ev.time, i) => {
                    self.heap.push(Reverse((ev.time, i)))
                }
                _ if hot_ok => self.hot = Some(i),
                _ => self.heap.push(Reverse((ev.time, i))),
            }
        }
    }
}

impl<'a> Iterator for RawMerge<'a> {
    type Item = Result<Event<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if !self.started {
            self.started = true;
            for i in 0..self.cursors.len() {
                if let Err(e) = self.fill(i) {
                    self.failed = true;
                    return Some(Err(e));
                }
                self.queue(i, false);
            }
        }
        let i = match self.hot.take() {
            Some(i) => i,
            None => self.heap.pop()?.0.1,
        };
        let ev = self.heads[i]
            .take()
            .expect("a queued stream always has a head");
        if let Err(e) = self.fill(i) {
            self.failed = true;
            return Some(Err(e));
        }
        self.queue(i, true);
        Some(Ok(ev))
    }
}
