//! One install: the `memtrace` binary carries its preload (embedded by
//! `analyzer/build.rs`, written on first use to a private per-user cache), so
//! a copy of it alone runs programs from anywhere; `memtrace lib` prints the
//! library's path; `scripts/package.sh` builds a Debian package that runs from
//! wherever it is unpacked.
//!
//! Every run here traces `reach.c`, whose header states memcheck's kinds:
//! definitely lost 80 bytes in 2 blocks, indirectly 96 in 3, possibly 128 in
//! 1, still reachable 80 in 2 — classified only if the preload found its
//! scanner, so each figure also proves the scanner was found.

use crate::util::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// FNV-1a, 64 bits, as `analyzer/build.rs` names the cached copy: the hash
/// directory's name is this of the embedded bytes, so a cached file whose
/// bytes hash to its directory's name holds exactly what was embedded. (The
/// nested build's output on disk is not compared: a later build of another
/// profile may have rewritten it after this binary embedded its bytes.)
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A copy of the memtrace binary alone in `dir/bin/`: a hard link where the
/// file system allows one (no 95 MB copy of the debug build per test, and no
/// file open for writing that a concurrent test's fork could inherit, which
/// makes executing it fail with ETXTBSY), else a copy.
fn lone_copy(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("memtrace");
    if std::fs::hard_link(memtrace_bin(), &exe).is_err() {
        std::fs::copy(memtrace_bin(), &exe).unwrap();
    }
    exe
}

/// `exe lib` with the cache in `cache`; (exit status, stdout, stderr).
fn lib_of(exe: &Path, cache: &Path) -> (i32, String, String) {
    let mut cmd = clean_command(exe);
    cmd.arg("lib").env("XDG_CACHE_HOME", cache);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The leak kinds of the one log in `dir`, as (bytes, blocks).
fn kinds_in(dir: &Path) -> Vec<(u64, u64)> {
    let logs = logs_in(dir);
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report(&logs[0]);
    let totals = &r.v["summary"]["leak_kinds"];
    ["definite", "indirect", "possible", "reachable"]
        .iter()
        .map(|k| {
            (
                totals[k]["bytes"].as_u64().unwrap(),
                totals[k]["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

const REACH_KINDS: [(u64, u64); 4] = [(80, 2), (96, 3), (128, 1), (80, 2)];

/// `memtrace run` with `exe`, from the directory `cwd`, logs into `logs`.
fn run_reach(exe: &Path, cwd: &Path, logs: &Path, cache: &Path) {
    let mut cmd = clean_command(exe);
    cmd.current_dir(cwd)
        .env("XDG_CACHE_HOME", cache)
        .arg("run")
        .arg("-o")
        .arg(logs.join("reach.%p.mtr"))
        .arg("--")
        .arg(fixture("reach"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In the workspace, the library is the one built beside the binary.
#[test]
fn lib_prints_the_library_beside_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (code, path, err) = lib_of(&memtrace_bin(), dir.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        Path::new(&path),
        memtrace_bin().with_file_name("libmemtrace.so")
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing is written to the cache when the library is beside memtrace"
    );
}

/// A lone copy writes its embedded library to `<cache>/memtrace/<hash>/`,
/// 0700 directories and a 0600 file holding exactly the embedded bytes, once;
/// a tampered copy is replaced; a `memtrace` link beside it names the binary.
#[test]
fn embedded_library_goes_to_a_private_cache() {
    let dir = tempfile::tempdir().unwrap();
    let exe = lone_copy(dir.path());
    let cache = dir.path().join("cache");
    let (code, path, err) = lib_of(&exe, &cache);
    assert_eq!(code, 0, "`{} lib` failed: {err}", exe.display());
    let lib = PathBuf::from(&path);
    let hash_dir = lib.parent().expect("the library is in a directory");
    // memtrace names its cache from XDG_CACHE_HOME as given; the temporary
    // directory may sit behind a symlink (TMPDIR), so compare real paths.
    let real = |p: &Path| {
        p.canonicalize()
            .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", p.display()))
    };
    assert_eq!(
        real(hash_dir.parent().expect("the hash directory has a parent")),
        real(&cache.join("memtrace")),
        "the library {path} is not in {}/memtrace/<hash>/",
        cache.display()
    );
    let hash = hash_dir.file_name().unwrap().to_str().unwrap();
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "the cache directory {hash:?} is not named by a 64-bit hash"
    );
    assert_eq!(lib.file_name().unwrap(), "libmemtrace.so", "{path}");
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    for (p, want) in [
        (cache.join("memtrace"), 0o700),
        (hash_dir.to_path_buf(), 0o700),
        (lib.clone(), 0o600),
    ] {
        assert_eq!(mode(&p), want, "mode of {} is {:o}", p.display(), mode(&p));
    }
    let embedded = std::fs::read(&lib).unwrap();
    assert!(
        embedded.starts_with(b"\x7fELF"),
        "the cached copy {path} is not a shared object ({} bytes)",
        embedded.len()
    );
    assert_eq!(
        format!("{:016x}", fnv1a(&embedded)),
        hash,
        "the cached copy's bytes ({} of them) do not hash to its directory's name",
        embedded.len()
    );
    let link = hash_dir.join("memtrace");
    let target = std::fs::read_link(&link)
        .unwrap_or_else(|e| panic!("no `memtrace` symlink at {}: {e}", link.display()));
    assert_eq!(
        real(&target),
        real(&exe),
        "{} names {}, not the binary that wrote it",
        link.display(),
        target.display()
    );

    let ino = std::fs::metadata(&lib).unwrap().ino();
    let (code, again, err) = lib_of(&exe, &cache);
    assert_eq!(
        (code, again.as_str()),
        (0, path.as_str()),
        "a second `lib`: {err}"
    );
    assert_eq!(
        std::fs::metadata(&lib).unwrap().ino(),
        ino,
        "an intact copy is not rewritten"
    );

    std::fs::write(&lib, vec![0u8; embedded.len()]).unwrap();
    let (code, again, err) = lib_of(&exe, &cache);
    assert_eq!(
        (code, again.as_str()),
        (0, path.as_str()),
        "`lib` after tampering: {err}"
    );
    assert!(
        std::fs::read(&lib).unwrap() == embedded,
        "a tampered copy is replaced by the embedded bytes"
    );
}

/// The cache is refused when its directory is a symlink or others can write
/// it, and a missing HOME is a clear error, not a guess.
#[test]
fn cache_refuses_unsafe_directories() {
    let dir = tempfile::tempdir().unwrap();
    let exe = lone_copy(dir.path());

    let linked = dir.path().join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), linked.join("memtrace")).unwrap();
    let (code, out, err) = lib_of(&exe, &linked);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("refusing the cache directory"), "{err}");
    assert!(
        std::fs::read_dir(dir.path().join("elsewhere"))
            .unwrap()
            .next()
            .is_none(),
        "nothing is written through the link"
    );

    let open = dir.path().join("open");
    std::fs::create_dir_all(open.join("memtrace")).unwrap();
    std::fs::set_permissions(
        open.join("memtrace"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let (code, _, err) = lib_of(&exe, &open);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("others cannot write"), "{err}");

    let mut cmd = clean_command(&exe);
    cmd.arg("lib")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("HOME");
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("neither XDG_CACHE_HOME nor HOME"), "{err}");
}

/// A lone copy traces a program from an unrelated directory with `memtrace
/// run`, and plain `LD_PRELOAD=$(memtrace lib)` works too: both classify.
#[test]
fn lone_copy_runs_programs_from_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let exe = lone_copy(dir.path());
    let cache = dir.path().join("cache");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    run_reach(&exe, cwd.path(), &logs, &cache);
    assert_eq!(kinds_in(&logs), REACH_KINDS);

    let (code, lib, err) = lib_of(&exe, &cache);
    assert_eq!(code, 0, "{err}");
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let mut cmd = clean_command(fixture("reach"));
    cmd.current_dir(cwd.path())
        .env("LD_PRELOAD", &lib)
        .env("MEMTRACE_OUTPUT", plain.join("reach.%p.mtr"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        kinds_in(&plain),
        REACH_KINDS,
        "the scanner is found beside the cached library"
    );
}

/// `scripts/package.sh` makes a .deb of the build under test; unpacked into
/// a scratch prefix, its memtrace uses its own `usr/lib/memtrace/` library.
#[test]
fn debian_package_runs_where_it_is_unpacked() {
    require_tool("dpkg-deb", "dpkg");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("scripts/package.sh"))
        .args(["--profile", "dev", "--no-build", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        deb.starts_with(dir.path()) && deb.extension().is_some_and(|e| e == "deb"),
        "{deb:?}"
    );
    let info = Command::new("dpkg-deb")
        .arg("--field")
        .arg(&deb)
        .arg("Package")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&info.stdout).trim(), "memtrace");

    let prefix = dir.path().join("root");
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&prefix)
        .status()
        .unwrap();
    assert!(st.success());
    let exe = prefix.join("usr/bin/memtrace");
    let cache = dir.path().join("cache");
    let (code, lib, err) = lib_of(&exe, &cache);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        Path::new(&lib),
        prefix.join("usr/lib/memtrace/libmemtrace.so")
    );
    assert!(
        !cache.exists(),
        "the packaged library is used, not the embedded one"
    );
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    run_reach(&exe, dir.path(), &logs, &cache);
    assert_eq!(kinds_in(&logs), REACH_KINDS);
}
