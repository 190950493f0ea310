//! The fixtures of `tests/fixtures/`, built once per test run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use super::*;

fn fixture_src_dir() -> PathBuf {
    root().join("tests").join("fixtures")
}

fn fixture_out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-fixtures");
    std::fs::create_dir_all(&d).expect("create the fixture build directory");
    d
}

/// The path of the built fixture `name` (`heap`, `cpp`, `rust_leak`, `libdlleak`, ...),
/// building it on first use in this test run.
pub fn fixture(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, Arc<OnceLock<PathBuf>>>> = Mutex::new(BTreeMap::new());
    let cell = BUILT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| build_fixture(name)).clone()
}

fn build_fixture(name: &str) -> PathBuf {
    let src_dir = fixture_src_dir();
    let find = |ext: &str| {
        let p = src_dir.join(format!("{name}.{ext}"));
        p.is_file().then_some(p)
    };
    let out_dir = fixture_out_dir();
    let shared = name.starts_with("lib");
    let out = out_dir.join(if shared {
        format!("{name}.so")
    } else {
        name.to_string()
    });
    // Build under a private name and rename, so a half-written file is never run.
    let tmp = out_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut cmd;
    if let Some(src) = find("c") {
        cmd = Command::new(std::env::var_os("CC").unwrap_or_else(|| "gcc".into()));
        cmd.args(["-O1", "-g", "-Wall"]);
        if shared {
            cmd.args(["-shared", "-fPIC"]);
        }
        cmd.arg("-o").arg(&tmp).arg(&src).args(["-pthread", "-ldl"]);
    } else if let Some(src) = find("cpp") {
        cmd = Command::new(std::env::var_os("CXX").unwrap_or_else(|| "g++".into()));
        cmd.args(["-O1", "-g", "-Wall"]);
        if shared {
            cmd.args(["-shared", "-fPIC"]);
        }
        cmd.arg("-o").arg(&tmp).arg(&src);
    } else if let Some(src) = find("rs") {
        cmd = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
        cmd.args(["-O", "-g", "--edition", "2021", "--crate-name", name])
            .arg("-o")
            .arg(&tmp)
            .arg(&src);
    } else {
        panic!(
            "no fixture source {name}.{{c,cpp,rs}} in {}",
            src_dir.display()
        );
    }
    // A fixture may ask for extra linker arguments in a `link-flags:` line of
    // its header comment (`$ORIGIN` is passed through literally).
    let src_text = ["c", "cpp", "rs"]
        .iter()
        .find_map(|e| find(e))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    for line in src_text.lines().filter(|l| l.contains("link-flags:")) {
        let flags = line.split("link-flags:").nth(1).unwrap_or("");
        cmd.args(flags.split_whitespace().filter(|f| *f != "*/"));
    }
    let out_put = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out_put.status.success(),
        "building fixture {name} failed: {cmd:?}\n{}",
        String::from_utf8_lossy(&out_put.stderr)
    );
    std::fs::rename(&tmp, &out).expect("move the built fixture into place");
    out
}
