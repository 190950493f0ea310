//! Embeds the preload in the `memtrace` binary (feature `embed-preload`, on by
//! default), so that an installed `memtrace` (`cargo install --path analyzer`)
//! carries its `libmemtrace.so` and `memtrace run` works from anywhere.
//!
//! The preload is the `memtrace-preload` crate beside this one. It is built
//! here in release mode by a nested `cargo build` into a target directory of
//! its own (`<target>/embedded-preload`: the outer build holds the lock on
//! `<target>`), and its bytes and content hash go to `OUT_DIR`, where
//! `src/cmd/preload.rs` includes them (cfg `memtrace_embedded_preload`). Without the feature (or without the
//! preload's sources, as in a packaged crate that lacks them) nothing is
//! embedded and `memtrace` finds the library beside itself, as before.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(memtrace_embedded_preload)");
    if env::var_os("CARGO_FEATURE_EMBED_PRELOAD").is_none() {
        return;
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("analyzer/ has a parent")
        .to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let preload = workspace.join("preload");
    if !preload.join("Cargo.toml").is_file() {
        println!(
            "cargo::warning=no preload sources at {}: memtrace is built without an embedded libmemtrace.so",
            preload.display()
        );
        return;
    }
    for watched in [
        "preload/src",
        "preload/Cargo.toml",
        "preload/build.rs",
        "format/src",
        "format/Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo::rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let target_dir = embedded_target_dir(&out);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--quiet")
        .arg("-p")
        .arg("memtrace-preload")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&workspace);
    // The outer command's wrappers and lints are not the preload's: `cargo
    // clippy -D warnings` would otherwise lint it a second time here, and a
    // target directory chosen for the outer build would deadlock on its lock.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CLIPPY_ARGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cannot run cargo to build the preload");
    assert!(
        status.success(),
        "building the preload (memtrace-preload) failed: {status}"
    );
    let lib = target_dir.join("release").join("libmemtrace.so");
    let bytes = fs::read(&lib).unwrap_or_else(|e| panic!("cannot read {}: {e}", lib.display()));
    fs::write(out.join("libmemtrace.so"), &bytes).expect("cannot write OUT_DIR/libmemtrace.so");
    fs::write(
        out.join("libmemtrace.hash"),
        format!("{:016x}", fnv1a(&bytes)),
    )
    .expect("cannot write OUT_DIR/libmemtrace.hash");
    println!("cargo::rustc-cfg=memtrace_embedded_preload");
}

/// `<target>/embedded-preload`, shared by every profile (check, dev, release,
/// doc) so the preload is built once per target directory. OUT_DIR is
/// `<target>/<profile>/build/memtrace-<hash>/out`, or with `--target TRIPLE`
/// `<target>/<TRIPLE>/<profile>/build/...` (then the shared directory sits in
/// `<target>/<TRIPLE>/`, still inside the target directory). (A marker file
/// such as `CACHEDIR.TAG` is not a reliable way to find the root: cargo does
/// not write one on every version, and a fresh clone then fell back to a
/// build per OUT_DIR.) Any other layout builds inside OUT_DIR.
fn embedded_target_dir(out: &Path) -> PathBuf {
    let in_build_dir = out
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .is_some_and(|name| name == "build");
    match out.ancestors().nth(4) {
        Some(root) if in_build_dir => root.join("embedded-preload"),
        _ => out.join("embedded-preload"),
    }
}

/// FNV-1a, 64 bits: names the cached copy by its content.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
