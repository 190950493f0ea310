//! Prints every record of a log, for debugging the format: `cargo run -p memtrace-format --example dump LOG`.
use memtrace_format::{ChunkIter, Header, Record};

fn main() {
    let path = std::env::args().nth(1).expect("usage: dump LOG");
    let data = std::fs::read(&path).expect("read");
    let h = Header::parse(&data).expect("header");
    println!("{h:?}");
    let mut it = ChunkIter::new(&data, h.reserved_end);
    for c in it.by_ref() {
        let c = c.expect("chunk");
        println!("chunk @{} {:?}", c.offset, c.header);
        for r in c.records() {
            match r {
                Ok(Record::Stack { id, frames }) => {
                    let f: Vec<String> = frames.map(|f| format!("{:#x}", f.unwrap())).collect();
                    println!("  STACK {id} [{}]", f.join(" "));
                }
                Ok(Record::Module {
                    time,
                    bias,
                    start,
                    end,
                    build_id,
                    path,
                }) => println!(
                    "  MODULE t={time} bias={bias:#x} [{start:#x},{end:#x}) id={} {}",
                    build_id
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>(),
                    String::from_utf8_lossy(path)
                ),
                Ok(Record::Alloc {
                    time,
                    func,
                    addr,
                    size,
                    stack,
                    samples,
                }) => println!("  ALLOC t={time} {func:?} {addr:#x} {size} s{stack} k{samples}"),
                Ok(Record::Free { time, addr, .. }) => println!("  FREE t={time} {addr:#x}"),
                Ok(Record::Realloc {
                    time,
                    old,
                    new,
                    size,
                    stack,
                    ..
                }) => println!("  REALLOC t={time} {old:#x}->{new:#x} {size} s{stack}"),
                Ok(Record::Mmap {
                    addr, len, stack, ..
                }) => println!("  MMAP {addr:#x} {len} s{stack}"),
                Ok(Record::Munmap { addr, len, .. }) => println!("  MUNMAP {addr:#x} {len}"),
                Ok(Record::Brk {
                    func,
                    arg,
                    old_break,
                    new_break,
                    ..
                }) => println!("  BRK {func:?} {arg} {old_break:#x}->{new_break:#x}"),
                Ok(Record::Freeres { phase, .. }) => println!("  FREERES {phase}"),
                Ok(Record::Exit { how, status, .. }) => println!("  EXIT {how} {status}"),
                Ok(Record::Torn) => println!("  TORN"),
                Ok(other) => println!("  other t={:?}", other.time()),
                Err(e) => println!("  ERROR {e}"),
            }
        }
    }
    println!(
        "empty slots: {} truncated: {}",
        it.empty_slots, it.truncated
    );
}
