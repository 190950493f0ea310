//! Shared by the fuzz targets: run the analyzer's whole pipeline and both renderers.

pub fn run(bytes: &[u8]) {
    let opts = memtrace_analyzer::Options::default();
    if let Ok(report) = memtrace_analyzer::analyze_bytes(bytes, &opts) {
        memtrace_analyzer::render::text::render(&report, &mut std::io::sink()).expect("sink");
        memtrace_analyzer::render::json::render(&report, &mut std::io::sink()).expect("sink");
    }
}

use memtrace_format::hdr::{ChunkHeader, off, write_header};
use memtrace_format::{CHUNK_ALIGN, CHUNK_HEADER_SIZE, CHUNK_MAGIC, HEADER_SIZE};

/// A raw log from fuzz input: byte 0 picks the number of streams (1 to 4) and the
/// page size; the rest is split at each `0xFE 0xFE` into chunk bodies, assigned to
/// the streams in turn, each inside a valid chunk header after a valid header.
pub fn raw_log(data: &[u8]) -> Vec<u8> {
    let (sel, rest) = data.split_first().map_or((0, &[][..]), |(a, b)| (*a, b));
    let streams = u32::from(sel & 3) + 1;
    let page_size = if sel & 4 != 0 { 4096 } else { 65536 };
    let mut page = [0u8; HEADER_SIZE];
    write_header(
        &mut page,
        page_size,
        7,
        1,
        0,
        1000,
        0x1000,
        0,
        b"/bin/fuzz",
        b"fuzz\0a\0",
    );
    let mut file = page.to_vec();
    let mut seq = [0u32; 4];
    let mut i = 0usize;
    let mut start = 0usize;
    let mut bodies = Vec::new();
    while i + 1 < rest.len() {
        if rest[i] == 0xfe && rest[i + 1] == 0xfe {
            bodies.push(&rest[start..i]);
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    bodies.push(&rest[start..]);
    for (n, body) in bodies.into_iter().enumerate() {
        let stream = n as u32 % streams;
        let size = (CHUNK_HEADER_SIZE + body.len()).next_multiple_of(CHUNK_ALIGN);
        let mut h = [0u8; CHUNK_HEADER_SIZE];
        ChunkHeader {
            size: size as u32,
            stream,
            tid: 100 + stream,
            seq: seq[stream as usize],
            base_time: 1000 + n as u64,
        }
        .encode_without_magic(&mut h);
        h[..4].copy_from_slice(&CHUNK_MAGIC.to_le_bytes());
        seq[stream as usize] += 1;
        let at = file.len();
        file.extend_from_slice(&h);
        file.extend_from_slice(body);
        file.resize(at + size, 0);
    }
    let end = file.len() as u64;
    file[off::RESERVED_END..off::RESERVED_END + 8].copy_from_slice(&end.to_le_bytes());
    file[off::STATE..off::STATE + 4].copy_from_slice(&2u32.to_le_bytes());
    file
}

