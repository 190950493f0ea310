//! Tests of the record decoder: round trips through the encoder, torn and hostile input.

use super::*;
use crate::encode;

/// Every record kind round-trips through encode and decode.
#[test]
fn roundtrip_records() {
    let mut body = [0u8; 1024];
    let mut pos = 0;
    let mut put = |f: &dyn Fn(&mut [u8]) -> Option<usize>| {
        let n = f(&mut body[pos..]).unwrap();
        pos += n;
    };
    put(&|b| encode::alloc(b, 5, Func::Malloc, 0x1000, 24, 3));
    put(&|b| encode::free(b, 1, Func::Free, 0x1000));
    put(&|b| encode::realloc(b, 2, 3, Func::Realloc, 0x10, 0x20, 99, 4));
    put(&|b| encode::stack(b, 7, &[0x401000, 0x400ff0, 0x7fff_0000_0000], None));
    put(&|b| encode::mmap(b, 1, Func::Mmap64, 0x7f00, 8192, 3, 0x22, -1, 0, 1));
    put(&|b| encode::module(b, 1, 0x1000, 0x1000, 0x9000, b"\x01\x02", b"/lib/x.so"));
    put(&|b| encode::sampled(b, 2, Func::Calloc, 0x2000, 40, 5, 3));
    put(&|b| encode::sampled(b, 2, Func::Calloc, 0x2000, 40, 5, 0));
    let recs: [Record; 7] = {
        let mut it = RecordIter::new(&body, 100);
        core::array::from_fn(|_| it.next().unwrap().unwrap())
    };
    assert!(matches!(
        recs[0],
        Record::Alloc {
            time: 105,
            func: Func::Malloc,
            addr: 0x1000,
            size: 24,
            stack: 3,
            samples: 0
        }
    ));
    assert!(matches!(
        recs[1],
        Record::Free {
            time: 106,
            addr: 0x1000,
            ..
        }
    ));
    assert!(matches!(
        recs[2],
        Record::Realloc {
            time: 108,
            time_after: 111,
            old: 0x10,
            new: 0x20,
            size: 99,
            stack: 4,
            ..
        }
    ));
    match &recs[3] {
        Record::Stack { id: 7, frames } => {
            let mut f = frames.clone();
            assert_eq!(f.next(), Some(Ok(0x401000)));
            assert_eq!(f.next(), Some(Ok(0x400ff0)));
            assert_eq!(f.next(), Some(Ok(0x7fff_0000_0000)));
            assert_eq!(f.next(), None);
            assert!(!frames.truncated());
        }
        _ => panic!("not a stack"),
    }
    assert!(matches!(
        recs[4],
        Record::Mmap {
            time: 112,
            fd: -1,
            len: 8192,
            ..
        }
    ));
    assert!(matches!(
        recs[5],
        Record::Module {
            path: b"/lib/x.so",
            ..
        }
    ));
    assert!(matches!(
        recs[6],
        Record::Alloc {
            time: 115,
            func: Func::Calloc,
            addr: 0x2000,
            size: 40,
            stack: 5,
            samples: 3
        }
    ));
    // A SAMPLED record must carry at least one sample point.
    let mut it = RecordIter::new(&body, 100);
    assert!(it.nth(7).unwrap().is_err());
}

/// A record whose tag was never written decodes as Torn and is skipped by length.
#[test]
fn torn_record_is_skipped() {
    let mut body = [0u8; 64];
    let n = encode::free(&mut body, 1, Func::Free, 8).unwrap();
    body[2] = 0; // tag not yet stored
    let m = encode::free(&mut body[n..], 1, Func::Free, 9).unwrap();
    assert!(m > 0);
    let mut it = RecordIter::new(&body, 0);
    assert!(matches!(it.next(), Some(Ok(Record::Torn))));
    assert!(matches!(it.next(), Some(Ok(Record::Free { addr: 9, .. }))));
    assert!(it.next().is_none());
}

/// A truncated stack keeps its cut and its frames; a STACK record as
/// written before the cut existed (a plain count) reads as whole; a
/// count above MAX_FRAMES is refused with or without the flag.
#[test]
fn stack_truncated_flag() {
    let mut body = [0u8; 4096];
    let mut pos = encode::stack(&mut body, 3, &[0x10, 0x20], Some(Cut::NoCfi)).unwrap();
    // The old encoding, by hand: id 4, n 1, frame 0x30.
    let old = [6u8, 0, tag::STACK, 4, 1, 0x30];
    body[pos..pos + old.len()].copy_from_slice(&old);
    pos += old.len();
    let frames = [7u64; MAX_FRAMES];
    pos += encode::stack(&mut body[pos..], 5, &frames, Some(Cut::Limit)).unwrap();
    let mut it = RecordIter::new(&body[..pos], 0);
    let mut got = [(0u32, None, 0usize, 0u64); 3];
    for g in got.iter_mut() {
        match it.next() {
            Some(Ok(Record::Stack { id, frames })) => {
                let t = frames.cut();
                let n = frames.len();
                let last = frames.last().unwrap().unwrap();
                *g = (id, t, n, last);
            }
            _ => panic!("not a stack"),
        }
    }
    assert!(it.next().is_none());
    assert_eq!(
        got,
        [
            (3, Some(Cut::NoCfi), 2, 0x20),
            (4, None, 1, 0x30),
            (5, Some(Cut::Limit), MAX_FRAMES, 7)
        ]
    );
    assert_eq!(
        encode::stack(&mut body, 6, &[0; MAX_FRAMES + 1], None),
        None
    );
    // A count of MAX_FRAMES + 1 with the flag is still refused (with
    // enough bytes for that many frames).
    let mut b = [0u8; 700];
    b[..7].copy_from_slice(&[0, 0, tag::STACK, 1, 0x81, 0x84, 0x04]);
    b[..2].copy_from_slice(&700u16.to_le_bytes());
    assert!(matches!(
        RecordIter::new(&b, 0).next(),
        Some(Err(DecodeError::BadRecord("frame count")))
    ));
}

/// Garbage never panics: every prefix and every byte flip of a valid body decodes or errors.
#[test]
fn garbage_does_not_panic() {
    let mut body = [0u8; 256];
    let mut pos = encode::stack(&mut body, 1, &[1, 2, 3, 4], Some(Cut::BadFrame)).unwrap();
    pos += encode::alloc(&mut body[pos..], 1, Func::Calloc, 5, 6, 1).unwrap();
    for cut in 0..pos {
        for r in RecordIter::new(&body[..cut], 0) {
            if let Ok(Record::Stack { frames, .. }) = r {
                frames.for_each(drop);
            }
        }
    }
    for i in 0..pos {
        for bit in 0..8 {
            let mut b = body;
            b[i] ^= 1 << bit;
            for r in RecordIter::new(&b[..pos], 0) {
                if let Ok(Record::Stack { frames, .. }) = r {
                    frames.for_each(drop);
                }
            }
        }
    }
}

/// An overlong record is refused by the encoder instead of overflowing.
#[test]
fn encoder_reports_overflow() {
    let mut small = [0u8; 4];
    assert_eq!(
        encode::alloc(&mut small, 1, Func::Malloc, 1 << 40, 1 << 30, 7),
        None
    );
}

/// Varints of every length read back as written, one after the other, and
/// the reader stops at each one's last byte; overlong, overflowing and cut
/// varints are errors.
#[test]
fn varints_of_every_length() {
    let values = [
        0u64,
        1,
        0x7f,
        0x80,
        0x3fff,
        0x4000,
        u32::MAX as u64,
        1 << 56,
        u64::MAX,
    ];
    let mut buf = [0u8; 128];
    let mut c = encode::Cursor::new(&mut buf);
    for &v in &values {
        c.v(v);
    }
    let n = c.pos();
    // 1 + 1 + 1 + 2 + 2 + 3 + 5 + 9 + 10 bytes.
    assert_eq!(n, 34);
    let mut r = Reader::new(&buf[..n]);
    for &v in &values {
        assert_eq!(r.v(), Ok(v));
    }
    assert!(r.at_end());
    assert_eq!(r.v(), Err(DecodeError::BadRecord("length")));
    // Eleven bytes, and a tenth byte above 1 (bits past 64): errors.
    let long = [
        0x80u8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
    ];
    assert_eq!(
        Reader::new(&long).v(),
        Err(DecodeError::BadRecord("varint"))
    );
    let over = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
    assert_eq!(
        Reader::new(&over).v(),
        Err(DecodeError::BadRecord("varint"))
    );
    // A varint cut after a continuation byte.
    assert_eq!(
        Reader::new(&[0x80u8, 0x81]).v(),
        Err(DecodeError::BadRecord("length"))
    );
}

/// Every varint length read the same with 8 bytes left to load at once
/// (followed by other bytes) and without (at the end of the record): the
/// values at each bit length's edges, and a pattern in every group.
#[test]
fn varints_read_alike_near_the_end_and_far_from_it() {
    let edges = (1..64u32).flat_map(|k| [(1u64 << k) - 1, 1 << k, (1 << k) | 0x55]);
    let others = [0u64, u64::MAX, 0x5555_5555_5555_5555, 0x00ab_cdef_0123_4567];
    for v in others.into_iter().chain(edges) {
        let mut buf = [0u8; 16];
        let mut c = encode::Cursor::new(&mut buf);
        c.v(v);
        let n = c.pos();
        // Continuation bits after the varint, which a wrong length would take in.
        let mut tail = [0xffu8; 32];
        tail[..n].copy_from_slice(&buf[..n]);
        for bytes in [&buf[..n], &tail[..n + 9]] {
            let mut r = Reader::new(bytes);
            assert_eq!(r.v(), Ok(v), "{v:#x} in {bytes:02x?}");
            assert_eq!(r.rest().len(), bytes.len() - n, "{v:#x}");
        }
    }
}
