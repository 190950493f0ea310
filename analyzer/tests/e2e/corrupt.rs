//! Damaged logs, made from a real log of heap.c: `memtrace report` refuses corrupt or
//! unreadable ones with a one-line error and exit status 2, never a panic; a log cut in
//! the middle of its chunks is reported with `truncated: true` (analyzer/src/log.rs,
//! "Damage policy").

use std::path::{Path, PathBuf};
use std::process::Output;

use tempfile::TempDir;

use crate::util::{TIMEOUT, memtrace, output_with_timeout, trace};

const NO_ARGS: &[&str] = &[];

/// A copy of a real log in a fresh directory, damaged by `damage`.
fn damaged(name: &str, damage: impl FnOnce(&mut Vec<u8>)) -> (TempDir, PathBuf) {
    let t = trace("heap", NO_ARGS);
    t.assert_exit(0);
    let mut bytes = std::fs::read(t.only_log()).expect("read the log");
    assert!(
        bytes.len() >= 8192,
        "a real log has a header and a chunk: {} bytes",
        bytes.len()
    );
    damage(&mut bytes);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, &bytes).unwrap();
    (dir, path)
}

fn report_json(log: &Path) -> Output {
    let mut cmd = memtrace();
    cmd.arg("report").arg("--format").arg("json").arg(log);
    output_with_timeout(&mut cmd, TIMEOUT)
}

/// Asserts a clean refusal: exit status 2, one line on stderr naming the file, no panic.
fn assert_refused(log: &Path, what: &str) {
    let out = report_json(log);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{what}: memtrace panicked:\n{stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: exit status; stderr:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "{what}: a one-line error, got:\n{stderr}");
    let file = log.file_name().unwrap().to_string_lossy();
    assert!(
        lines[0].contains(&*file),
        "{what}: the error names the file: {stderr}"
    );
}

// A flipped magic is refused: not a memtrace log.
#[test]
fn corrupt_magic_is_refused() {
    let (_d, log) = damaged("magic.mtr", |b| b[0] ^= 0xff);
    assert_refused(&log, "flipped magic");
}

// Format version 99 is refused.
#[test]
fn unknown_version_is_refused() {
    let (_d, log) = damaged("version.mtr", |b| {
        b[8..12].copy_from_slice(&99u32.to_le_bytes())
    });
    assert_refused(&log, "version 99");
    let stderr = String::from_utf8_lossy(&report_json(&log).stderr).into_owned();
    assert!(
        stderr.contains("99"),
        "the error names the version: {stderr}"
    );
}

// A file cut inside the 4096-byte header (100 bytes) is refused.
#[test]
fn log_cut_in_header_is_refused() {
    let (_d, log) = damaged("cut100.mtr", |b| b.truncate(100));
    assert_refused(&log, "cut to 100 bytes");
}

// A corrupt chunk header (the first chunk's magic flipped) is refused.
#[test]
fn corrupt_chunk_magic_is_refused() {
    let (_d, log) = damaged("chunk.mtr", |b| {
        for x in &mut b[4096..4100] {
            *x ^= 0x5a;
        }
    });
    assert_refused(&log, "flipped chunk magic");
}

// Empty files, missing files and directories are refused cleanly.
#[test]
fn unreadable_logs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.mtr");
    std::fs::write(&empty, b"").unwrap();
    assert_refused(&empty, "empty file");
    assert_refused(&dir.path().join("missing.mtr"), "missing file");
    let sub = dir.path().join("adir.mtr");
    std::fs::create_dir(&sub).unwrap();
    assert_refused(&sub, "a directory");
}

// A log cut in the middle of its chunks is reported (nothing it holds is lost), flagged
// truncated, and the command says so in one error line and exits with status 3.
#[test]
fn log_cut_mid_chunk_is_reported_truncated() {
    let (_d, log) = damaged("cutmid.mtr", |b| {
        // Halfway through the chunk area (the header's RESERVED_END, offset 48), moved off a
        // chunk boundary so the cut falls inside a chunk.
        let reserved_end = u64::from_le_bytes(b[48..56].try_into().unwrap()) as usize;
        let end = reserved_end.min(b.len());
        let mut cut = 4096 + (end - 4096) / 2;
        if cut % 4096 < 64 {
            cut += 700;
        }
        assert!(cut < end, "the cut is inside the chunks: {cut} < {end}");
        b.truncate(cut);
    });
    let out = report_json(&log);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "memtrace panicked:\n{stderr}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "a truncated log is reported, with exit status 3: {:?}\n{stderr}",
        out.status
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("memtrace: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert!(errors[0].contains("truncated"), "{}", errors[0]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        v["summary"]["truncated"], true,
        "summary = {}",
        v["summary"]
    );
}
