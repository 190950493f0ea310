//! Feeding a log's merged events to a consumer from a decoding thread
//! ([`for_each_event`]): the decoder runs a few batches ahead on a core of
//! its own, and the batches cross between the cores in a slim form.

use memtrace_format::{Func, Record};

use super::{Event, Index, Log};
use crate::error::Result;

/// Events handed from the decoding thread to the consumer at a time.
const BATCH: usize = 4096;
/// Logs smaller than this are decoded on the caller's thread.
const INLINE_BELOW: usize = 1 << 20;

/// An unsampled allocation's own fields, as a decoder hands it to a
/// [`Sink`] without building an [`Event`].
#[derive(Clone, Copy)]
pub(crate) struct Alloc {
    pub time: u64,
    pub func: Func,
    pub addr: u64,
    pub size: u64,
    /// [`Event::slot`].
    pub slot: u32,
}

impl Alloc {
    /// The allocation as stream `stream`'s event, from `stack`.
    #[inline(always)]
    fn event<'a>(self, stream: usize, stack: u32) -> Event<'a> {
        Event {
            time: self.time,
            stream,
            chunk_offset: 0,
            record: Record::Alloc {
                time: self.time,
                func: self.func,
                addr: self.addr,
                size: self.size,
                stack,
                samples: 0,
            },
            realloc_end: false,
            slot: self.slot,
        }
    }
}

/// Stream `stream`'s FREE of `addr` (in `slot`) as an event.
#[inline(always)]
fn free_event<'a>(stream: usize, time: u64, func: Func, addr: u64, slot: u32) -> Event<'a> {
    Event {
        time,
        stream,
        chunk_offset: 0,
        record: Record::Free { time, func, addr },
        realloc_end: false,
        slot,
    }
}

/// Where a decoder puts the events it decodes a batch at a time
/// ([`super::Merge::fill`]).
pub(crate) trait Sink<'a> {
    fn push(&mut self, ev: Event<'a>);
    fn len(&self) -> usize;

    /// Appends a copy of `ev`.
    #[inline(always)]
    fn push_ref(&mut self, ev: &Event<'a>) {
        self.push(ev.clone())
    }

    /// Appends stream `stream`'s unsampled ALLOC `a` from `stack`.
    #[inline(always)]
    fn alloc(&mut self, stream: usize, a: Alloc, stack: u32) {
        self.push(a.event(stream, stack))
    }

    /// Appends stream `stream`'s FREE of `addr` (in `slot`).
    #[inline(always)]
    fn free(&mut self, stream: usize, time: u64, func: Func, addr: u64, slot: u32) {
        self.push(free_event(stream, time, func, addr, slot))
    }
}

impl<'a> Sink<'a> for Vec<Event<'a>> {
    #[inline(always)]
    fn push(&mut self, ev: Event<'a>) {
        Vec::push(self, ev)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// What a [`Slim`] event is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An unsampled ALLOC.
    Alloc,
    /// A FREE.
    Free,
    /// Any other event: `addr` is its index in [`Batch::other`].
    Other,
}

/// An event as it crosses to the consumer: the allocations and frees that
/// make up nearly all of a log in 48 bytes instead of an [`Event`]'s 104
/// (a batch is written by one core and read by the other, so its size is
/// what the hand-off costs), anything else by its index among the batch's
/// full events.
#[derive(Clone, Copy)]
struct Slim {
    time: u64,
    addr: u64,
    size: u64,
    chunk_offset: u64,
    stack: u32,
    stream: u32,
    slot: u32,
    func: Func,
    kind: Kind,
}

// The sizes the doc above gives.
const _: () = assert!(std::mem::size_of::<Slim>() == 48);
const _: () = assert!(std::mem::size_of::<Event<'static>>() == 104);

impl Slim {
    /// `ev` in slim form, if it is an unsampled ALLOC or a FREE (with the
    /// event's time, and a stream index that fits).
    #[inline(always)]
    fn of(ev: &Event<'_>) -> Option<Slim> {
        let (kind, time, func, addr, size, stack) = match ev.record {
            Record::Alloc {
                time,
                func,
                addr,
                size,
                stack,
                samples: 0,
            } => (Kind::Alloc, time, func, addr, size, stack),
            Record::Free { time, func, addr } => (Kind::Free, time, func, addr, 0, 0),
            _ => return None,
        };
        let stream = u32::try_from(ev.stream).ok()?;
        (time == ev.time && !ev.realloc_end).then_some(Slim {
            time,
            addr,
            size,
            chunk_offset: ev.chunk_offset,
            stack,
            stream,
            slot: ev.slot,
            func,
            kind,
        })
    }

    /// The full event (`None` for [`Kind::Other`]).
    #[inline(always)]
    fn event<'a>(&self) -> Option<Event<'a>> {
        let (time, func, addr) = (self.time, self.func, self.addr);
        let record = match self.kind {
            Kind::Alloc => Record::Alloc {
                time,
                func,
                addr,
                size: self.size,
                stack: self.stack,
                samples: 0,
            },
            Kind::Free => Record::Free { time, func, addr },
            Kind::Other => return None,
        };
        Some(Event {
            time,
            stream: self.stream as usize,
            chunk_offset: self.chunk_offset,
            record,
            realloc_end: false,
            slot: self.slot,
        })
    }
}

/// A batch of events in merged order: the slim ones, and the full events
/// the [`Kind::Other`] entries stand for.
#[derive(Default)]
struct Batch<'a> {
    slim: Vec<Slim>,
    other: Vec<Event<'a>>,
}

impl<'a> Sink<'a> for Batch<'a> {
    #[inline(always)]
    fn push_ref(&mut self, ev: &Event<'a>) {
        match Slim::of(ev) {
            Some(s) => self.slim.push(s),
            None => self.push_other(ev.clone()),
        }
    }

    #[inline(always)]
    fn push(&mut self, ev: Event<'a>) {
        match Slim::of(&ev) {
            Some(s) => self.slim.push(s),
            None => self.push_other(ev),
        }
    }

    fn len(&self) -> usize {
        self.slim.len()
    }

    #[inline(always)]
    fn alloc(&mut self, stream: usize, a: Alloc, stack: u32) {
        let Ok(stream32) = u32::try_from(stream) else {
            return self.push(a.event(stream, stack));
        };
        self.slim.push(Slim {
            time: a.time,
            addr: a.addr,
            size: a.size,
            chunk_offset: 0,
            stack,
            stream: stream32,
            slot: a.slot,
            func: a.func,
            kind: Kind::Alloc,
        })
    }

    #[inline(always)]
    fn free(&mut self, stream: usize, time: u64, func: Func, addr: u64, slot: u32) {
        let Ok(stream32) = u32::try_from(stream) else {
            return self.push(free_event(stream, time, func, addr, slot));
        };
        self.slim.push(Slim {
            time,
            addr,
            size: 0,
            chunk_offset: 0,
            stack: 0,
            stream: stream32,
            slot,
            func,
            kind: Kind::Free,
        })
    }
}

impl<'a> Batch<'a> {
    /// Appends an event that has no slim form, by its index in `other`.
    fn push_other(&mut self, ev: Event<'a>) {
        self.slim.push(Slim {
            time: 0,
            addr: self.other.len() as u64,
            size: 0,
            chunk_offset: 0,
            stack: 0,
            stream: 0,
            slot: 0,
            func: Func::Free,
            kind: Kind::Other,
        });
        self.other.push(ev);
    }

    fn with_capacity(n: usize) -> Self {
        Batch {
            slim: Vec::with_capacity(n),
            other: Vec::new(),
        }
    }

    /// Calls `each` on the events in order, with the address of the heap
    /// event [`AHEAD`] places later in the batch (0: none).
    fn each(&self, each: &mut impl FnMut(&Event<'a>, u64) -> Result<()>) -> Result<()> {
        for (k, s) in self.slim.iter().enumerate() {
            let ahead = match self.slim.get(k + AHEAD) {
                Some(a) if a.kind != Kind::Other => a.addr,
                _ => 0,
            };
            match s.event() {
                Some(ev) => each(&ev, ahead)?,
                None => each(&self.other[s.addr as usize], ahead)?,
            }
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.slim.clear();
        self.other.clear();
    }
}

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
    hand_off(log, index, INLINE_BELOW, |ev, _| each(ev))
}

/// [`for_each_event`], handing `each` with every event the address of the
/// heap event 16 places later (`AHEAD`; 0 when there is none at hand), so
/// that the caller can prefetch what it keeps of that address while it
/// works on this one (see [`crate::hash::AddrMap::prefetch`]).
pub fn for_each_event_ahead<'a>(
    log: &'a Log,
    index: &'a Index,
    each: impl FnMut(&Event<'a>, u64) -> Result<()>,
) -> Result<u64> {
    hand_off(log, index, INLINE_BELOW, each)
}

/// How far ahead [`for_each_event_ahead`] looks.
const AHEAD: usize = 16;

/// [`for_each_event`], on the caller's thread for logs under `inline_below` bytes.
pub(super) fn hand_off<'a>(
    log: &'a Log,
    index: &'a Index,
    inline_below: usize,
    mut each: impl FnMut(&Event<'a>, u64) -> Result<()>,
) -> Result<u64> {
    if log.bytes().len() < inline_below {
        let mut merge = log.merge(index);
        for ev in merge.by_ref() {
            each(&ev?, 0)?;
        }
        return Ok(merge.cut_records());
    }
    std::thread::scope(|s| -> Result<u64> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Batch<'a>>>(4);
        let (back, spare) = std::sync::mpsc::channel::<Batch<'a>>();
        let producer = s.spawn(move || {
            let mut merge = log.merge(index);
            let mut batch = Batch::with_capacity(BATCH);
            loop {
                let more = merge.fill(&mut batch, BATCH);
                let full = std::mem::take(&mut batch);
                if full.len() != 0 && tx.send(Ok(full)).is_err() {
                    return 0;
                }
                match more {
                    Ok(true) => {
                        batch = spare
                            .try_recv()
                            .unwrap_or_else(|_| Batch::with_capacity(BATCH));
                    }
                    Ok(false) => break,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return 0;
                    }
                }
            }
            merge.cut_records()
        });
        for batch in rx {
            let mut batch = batch?;
            batch.each(&mut each)?;
            batch.clear();
            let _ = back.send(batch);
        }
        Ok(producer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}
