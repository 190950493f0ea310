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
        let r = match &mut self.events {
            Events::Packed(e, _) => e.fill(out, max),
            Events::Raw(m) => m.fill(out, max),
            Events::Failed(_) => {
                while out.len() < max {
                    match self.next() {
                        Some(ev) => out.push(ev?),
                        None => return Ok(false),
                    }
                }
                return Ok(true);
            }
        };
        if let Ok(true) = r {
            return r;
        }
        self.done = true;
        self.log.checked(r)
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
    /// Two places per stream for its head (`2 * stream + front[stream]` is
    /// the current one), so that the next event is read into the other
    /// place while the current one is handed on by reference, never copied
    /// whole (see [`super::stream::Cursor::advance`]).
    heads: Vec<Option<Event<'a>>>,
    front: Vec<u8>,
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
            heads: (0..2 * n).map(|_| None).collect(),
            front: vec![0; n],
            heap: BinaryHeap::with_capacity(n),
            hot: None,
            started: false,
            failed: false,
            sweep: (n > SWEEP_STREAMS).then_some(SWEEP_PAGES),
            cut_records: 0,
        }
    }

    /// Stream `i`'s current head.
    #[inline(always)]
    fn head(&self, i: usize) -> &Option<Event<'a>> {
        &self.heads[2 * i + self.front[i] as usize]
    }

    /// Reads stream `i`'s next event into its other place, which becomes
    /// the current head (the previous head stays readable in its place
    /// until the next refill; on an error there is no current head).
    fn refill(&mut self, i: usize) -> Result<()> {
        self.front[i] ^= 1;
        let place = 2 * i + self.front[i] as usize;
        self.heads[place] = None;
        self.cursors[i].advance(
            self.log,
            self.index,
            &mut self.cut_records,
            &mut self.heads[place],
        )?;
        // Count the pages the record touched (at least one) towards the next sweep.
        if let Some(left) = &mut self.sweep {
            let pages = self.cursors[i].last_len.div_ceil(page_size()) + 1;
            *left = left.saturating_sub(pages);
            if *left == 0 {
                *left = SWEEP_PAGES;
                self.log.release(0, usize::MAX);
            }
        }
        Ok(())
    }

    /// Queues stream `i`'s head: as the hot stream if it comes before every
    /// other head (by time, then stream: a tie goes to the lower stream, as
    /// the heap orders it), else in the heap.
    fn queue(&mut self, i: usize, hot_ok: bool) {
        if let Some(ev) = self.head(i) {
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

impl<'a> RawMerge<'a> {
    /// Reads every stream's first event (once).
    fn start(&mut self) -> Result<()> {
        if !self.started {
            self.started = true;
            for i in 0..self.cursors.len() {
                if let Err(e) = self.refill(i) {
                    self.failed = true;
                    return Err(e);
                }
                self.queue(i, false);
            }
        }
        Ok(())
    }

    /// Moves on to the next event in merged order and returns its place in
    /// `heads` (`Ok(None)` at the end); its stream's next event is read in
    /// the stream's other place.
    #[inline(always)]
    fn take_next(&mut self) -> Result<Option<usize>> {
        let i = match self.hot.take() {
            Some(i) => i,
            None => match self.heap.pop() {
                Some(Reverse((_, i))) => i,
                None => return Ok(None),
            },
        };
        let place = 2 * i + self.front[i] as usize;
        debug_assert!(self.heads[place].is_some(), "a queued stream has a head");
        if let Err(e) = self.refill(i) {
            self.failed = true;
            return Err(e);
        }
        self.queue(i, true);
        Ok(Some(place))
    }

    /// Appends the next events to `out` until it holds `max`: `Ok(false)`
    /// at the end, or the error the iterator would yield (the events before
    /// it appended). The batch form of the iterator, handing each event on
    /// by reference from where it was decoded.
    fn fill(&mut self, out: &mut impl super::Sink<'a>, max: usize) -> Result<bool> {
        if self.failed {
            return Ok(false);
        }
        self.start()?;
        while out.len() < max {
            match self.take_next()? {
                Some(place) => match &self.heads[place] {
                    Some(ev) => out.push_ref(ev),
                    None => unreachable!("a queued stream always has a head"),
                },
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

impl<'a> Iterator for RawMerge<'a> {
    type Item = Result<Event<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Err(e) = self.start() {
            return Some(Err(e));
        }
        match self.take_next() {
            Ok(Some(place)) => self.heads[place].take().map(Ok),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
