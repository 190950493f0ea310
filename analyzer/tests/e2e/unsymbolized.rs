//! A frame without a symbol reads `module+0xoffset`, the module's file name
//! and the address in its own ELF address space: what `addr2line -e MODULE`
//! takes, the same in every run (not an ASLR'd absolute address). The
//! oracle is addr2line itself, on the unstripped twin of a stripped binary.
//!
//! `reach.c` stripped: its leaks (definitely lost: lost_list's 32 bytes and
//! plain_lost's 48, see its header) come from frames of the stripped
//! executable, which has no symbols.

use crate::util::*;
use std::process::Command;

#[test]
fn unsymbolized_frames_name_module_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("reach.stripped");
    let st = Command::new(require_tool("strip", "binutils"))
        .arg("-o")
        .arg(&stripped)
        .arg(fixture("reach"))
        .status()
        .unwrap();
    assert!(st.success());
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .arg("run")
        .arg("-o")
        .arg(logs.join("r.%p.mtr"))
        .arg("--")
        .arg(&stripped);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = &logs_in(&logs)[0];
    let mut rep = memtrace();
    rep.arg("report").arg(log);
    let text = String::from_utf8(output_with_timeout(&mut rep, TIMEOUT).stdout).unwrap();

    // Every frame of the stripped executable: `#N reach.stripped+0x... (PATH)`.
    let offsets: Vec<u64> = text
        .lines()
        .filter_map(|l| l.trim().split_once(' ').map(|(_, rest)| rest))
        .filter_map(|rest| rest.strip_prefix("reach.stripped+0x"))
        .map(|rest| {
            let hex = rest.split_whitespace().next().unwrap();
            assert!(
                rest.contains(&format!("({})", stripped.display())),
                "the full path follows: {rest}"
            );
            u64::from_str_radix(hex, 16).unwrap()
        })
        .collect();
    assert!(
        !offsets.is_empty(),
        "no reach.stripped+0x... frame in:\n{text}"
    );
    assert!(
        !text.contains("#0 0x"),
        "no absolute address for a frame in a module:\n{text}"
    );

    // addr2line on the unstripped twin names the functions (a return
    // address: the call is the byte before it).
    let mut names = Vec::new();
    for off in &offsets {
        let a2l = Command::new(require_tool("addr2line", "binutils"))
            .arg("-f")
            .arg("-e")
            .arg(fixture("reach"))
            .arg(format!("{:#x}", off - 1))
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&a2l.stdout).into_owned();
        names.push(s.lines().next().unwrap_or("").to_owned());
    }
    for f in ["lost_list", "plain_lost", "main"] {
        assert!(
            names.iter().any(|n| n == f),
            "addr2line named {names:?}, not {f}"
        );
    }
}
