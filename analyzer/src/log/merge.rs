//! Merging the streams by time ([`Merge`], [`RawMerge`]).

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

impl<'a> Merge<'a> {
    /// Appends the next events to `out` until it holds `max`: `Ok(true)`
    /// while more may follow, `Ok(false)` at the end, or the error the
    /// iterator would yield (the events before it appended).
    pub(crate) fn fill(&mut self, out: &mut impl super::Sink<'a>, max: usize) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        if let Events::Packed(e, _) = &mut self.events {
            let r = e.fill(out, max);
            if let Ok(true) = r {
                return r;
            }
            self.done = true;
            return self.log.checked(r);
        }
        while out.len() < max {
            match self.next() {
                Some(ev) => out.push(ev?),
                None => return Ok(false),
            }
        }
        Ok(true)
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
