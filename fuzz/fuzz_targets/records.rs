//! Arbitrary bytes as record streams inside a valid header and valid chunk
//! headers, so every mutation reaches the record decoder, the merge and the
//! replay instead of being refused by the header check.
//!
//! Input: byte 0 picks the number of streams (1 to 4) and the page size;
//! the rest is split at each `0xFE 0xFE` into chunk bodies, assigned to the
//! streams in turn.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(&common::raw_log(data)));
