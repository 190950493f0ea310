//! Arbitrary bytes as a whole log file: header, chunk walk, record decoding,
//! catalog, replay, report (symbolization off) and rendering.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data));
