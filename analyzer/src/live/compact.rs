//! A snapshot written from the watcher's retained state
//! ([`crate::live::follow`]) instead of a copy of the whole log: a small
//! raw log holding only what was live at the snapshot's time `t`.
//!
//! It has the traced log's header page (the process, its command line, its
//! start), with `SNAPSHOT_AT = t` and its own reserved end, then one stream of
//! records in time order: the MODULE (and UNMODULE) records of the objects
//! seen loaded, the STACK records of the stacks the live blocks and mappings
//! use, one ALLOC per live block (its address, size, stack, allocating
//! function and allocation time as recorded), one MMAP per live piece of the
//! program's mappings (at `t`), and the `KIND_SNAPSHOT_RUNNING` record of the
//! frozen copy. The classification (`KIND_REACH`) is appended after it as
//! in any snapshot. So `memtrace report SNAP` lists the same live blocks
//! with the same stacks and kinds, and `--since SNAP` compares with them;
//! what the snapshot does not keep is the history: its allocation and free
//! counts and its peak are those of the live set at `t`.

use std::path::Path;

use memtrace_format::hdr::{ChunkHeader, off};
use memtrace_format::{CHUNK_ALIGN, CHUNK_HEADER_SIZE, CHUNK_MAGIC, Func, HEADER_SIZE, encode};

use crate::analysis::catalog::Catalog;
use crate::analysis::replay::Replay;

/// Stream id of the snapshot's records.
const STREAM: u32 = 1;
/// Records area of one chunk at most (the preload's largest chunk).
const CHUNK_BODY: usize = (1 << 20) - CHUNK_HEADER_SIZE - 16;

/// One record of the snapshot, before its time delta is known.
enum Item<'a> {
    Module(usize),
    Unmodule(usize),
    Stack(u32, Vec<u64>),
    Alloc(u64, crate::analysis::replay::Block),
    Mmap(u64, u64, u32),
    Running(&'a [u64]),
}

/// Writes the snapshot at time `t` into the new file `path` (created
/// exclusively): `header` is the traced log's header page, `running` the
/// values of its `KIND_SNAPSHOT_RUNNING` record.
pub fn write(
    path: &Path,
    header: &[u8],
    t: u64,
    running: &[u64],
    cat: &Catalog,
    replay: &Replay,
) -> std::io::Result<()> {
    let mut items: Vec<(u64, Item<'_>)> = Vec::new();
    let mut stacks: Vec<u32> = replay.live().map(|(_, b)| b.stack).collect();
    stacks.extend(replay.regions.pieces().map(|p| p.2));
    stacks.sort_unstable();
    stacks.dedup();
    for id in stacks {
        if let Some(frames) = cat.stacks.get(id) {
            items.push((0, Item::Stack(id, frames.to_vec())));
        }
    }
    for i in 0..cat.modules.len() {
        let m = cat.modules.get(i);
        items.push((m.loaded, Item::Module(i)));
        if let Some(u) = m.unloaded.filter(|&u| u <= t) {
            items.push((u, Item::Unmodule(i)));
        }
    }
    items.extend(replay.live().map(|(a, b)| (b.time, Item::Alloc(a, b))));
    items.extend(
        replay
            .regions
            .pieces()
            .map(|(s, e, stack)| (t, Item::Mmap(s, e, stack))),
    );
    items.push((t, Item::Running(running)));
    // Stable: the stacks (time 0) come first, then everything by time.
    items.sort_by_key(|i| i.0);
    let mut chunks: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut body = Vec::new();
    let mut base = items.iter().map(|i| i.0).find(|&x| x != 0).unwrap_or(t);
    let mut last = base;
    let mut buf = vec![0u8; memtrace_format::MAX_RECORD];
    for (time, item) in &items {
        let time = (*time).max(last);
        let dt = time - last;
        let n = encode_item(&mut buf, dt, item, cat, replay);
        let Some(n) = n else { continue };
        if body.len() + n > CHUNK_BODY {
            chunks.push((base, std::mem::take(&mut body)));
            base = last;
            // The delta was from `last`, which is the new chunk's base too.
        }
        body.extend_from_slice(&buf[..n]);
        if !matches!(item, Item::Stack(..)) {
            last = time;
        }
    }
    chunks.push((base, body));
    let mut file = header[..HEADER_SIZE].to_vec();
    for (seq, (base, body)) in chunks.iter().enumerate() {
        let size = (CHUNK_HEADER_SIZE + body.len() + 3).next_multiple_of(CHUNK_ALIGN);
        let mut head = [0u8; CHUNK_HEADER_SIZE];
        ChunkHeader {
            size: size as u32,
            stream: STREAM,
            tid: 0,
            seq: seq as u32,
            base_time: *base,
        }
        .encode_without_magic(&mut head);
        head[..4].copy_from_slice(&CHUNK_MAGIC.to_le_bytes());
        let at = file.len();
        file.extend_from_slice(&head);
        file.extend_from_slice(body);
        file.resize(at + size, 0);
    }
    let end = file.len() as u64;
    file[off::RESERVED_END..off::RESERVED_END + 8].copy_from_slice(&end.to_le_bytes());
    file[off::SNAPSHOT_AT..off::SNAPSHOT_AT + 8].copy_from_slice(&t.to_le_bytes());
    use std::io::Write;
    let mut f = crate::outfile::create_temp(path)?;
    f.write_all(&file)?;
    Ok(())
}

/// Encodes `item` with time delta `dt` into `buf`; its length (`None`: it
/// does not fit a record, and is left out).
fn encode_item(
    buf: &mut [u8],
    dt: u64,
    item: &Item<'_>,
    cat: &Catalog,
    replay: &Replay,
) -> Option<usize> {
    match *item {
        Item::Stack(id, ref frames) => encode::stack(buf, id, frames, cat.cut.get(&id).copied()),
        Item::Module(i) => {
            let m = cat.modules.get(i);
            encode::module(
                buf,
                dt,
                m.bias,
                m.start,
                m.end,
                &m.build_id,
                m.path.as_bytes(),
            )
        }
        Item::Unmodule(i) => {
            let m = cat.modules.get(i);
            encode::unmodule(buf, dt, m.bias, m.start)
        }
        Item::Alloc(addr, b) => {
            let func = replay.alloc_func(b.stack).unwrap_or(Func::Malloc);
            encode::alloc(buf, dt, func, addr, b.size, b.stack)
        }
        Item::Mmap(start, end, stack) => encode::mmap(
            buf,
            dt,
            Func::Mmap,
            start,
            end - start,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
            -1,
            0,
            stack,
        ),
        Item::Running(values) => encode::kernel(
            buf,
            dt,
            memtrace_format::kernel::KIND_SNAPSHOT_RUNNING,
            values,
        ),
    }
}
