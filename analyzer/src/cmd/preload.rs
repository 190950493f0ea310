//! Where the preload library is, and `memtrace lib`, which prints it.
//!
//! In order: `$MEMTRACE_PRELOAD`; `libmemtrace.so` beside this executable (a
//! workspace build: `target/*/`); `../lib/memtrace/libmemtrace.so` from it (the
//! Debian package of `scripts/package.sh`); else the copy embedded in this
//! binary at build time (`build.rs`, feature `embed-preload`), written on first
//! use to `$XDG_CACHE_HOME/memtrace/<hash>/libmemtrace.so` (`~/.cache` without
//! it), `<hash>` being the library's content hash.
//!
//! The cache is created safely: the `memtrace` directory and each `<hash>`
//! directory are made 0700 and must be real directories (not symlinks) owned
//! by the user and writable by no one else; the library is written to a new
//! file (`O_EXCL | O_NOFOLLOW`, 0600) and renamed into place, and a copy
//! already there is used only if it is a regular file of ours with exactly the
//! embedded bytes. Beside it, a symlink `memtrace` to this executable lets a
//! plain `LD_PRELOAD=$(memtrace lib) ./app` find its scanner (the preload looks
//! for `memtrace` beside itself).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// `memtrace lib`: prints the preload library's path.
pub fn run() -> anyhow::Result<u8> {
    println!("{}", library()?.display());
    Ok(crate::exit::OK)
}

/// The preload library to use (see the module docs for the order).
pub fn library() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("MEMTRACE_PRELOAD") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "MEMTRACE_PRELOAD names {}, which does not exist",
                p.display()
            );
        }
        return std::path::absolute(&p).with_context(|| format!("cannot resolve {}", p.display()));
    }
    let exe = std::env::current_exe().context("cannot find the memtrace executable's path")?;
    let beside = exe.with_file_name("libmemtrace.so");
    if beside.is_file() {
        return Ok(beside);
    }
    if let Some(packaged) = exe
        .parent()
        .and_then(Path::parent)
        .map(|prefix| prefix.join("lib/memtrace/libmemtrace.so"))
        .filter(|p| p.is_file())
    {
        return Ok(packaged);
    }
    embedded(&exe, &beside)
}

#[cfg(memtrace_embedded_preload)]
fn embedded(exe: &Path, _beside: &Path) -> anyhow::Result<PathBuf> {
    static BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libmemtrace.so"));
    static HASH: &str = include_str!(concat!(env!("OUT_DIR"), "/libmemtrace.hash"));
    cache::materialize(BYTES, HASH, exe)
}

#[cfg(not(memtrace_embedded_preload))]
fn embedded(_exe: &Path, beside: &Path) -> anyhow::Result<PathBuf> {
    bail!(
        "cannot find the preload library {} (this memtrace was built without an embedded \
         copy: build libmemtrace.so, or set MEMTRACE_PRELOAD to its path)",
        beside.display()
    )
}

#[cfg_attr(not(memtrace_embedded_preload), allow(dead_code))]
mod cache {
    //! The per-user cache the embedded library is written to.

    use anyhow::{Context, bail};
    use std::fs::{self, File, OpenOptions};
    use std::io::{Read, Write};
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    /// `<cache>/memtrace/<hash>/libmemtrace.so` holding `bytes`, written if
    /// missing or different, with the `memtrace` symlink to `exe` beside it.
    pub fn materialize(bytes: &[u8], hash: &str, exe: &Path) -> anyhow::Result<PathBuf> {
        let root = cache_root()?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .with_context(|| format!("cannot create the cache directory {}", root.display()))?;
        let dir = private_dir(&private_dir(&root.join("memtrace"))?.join(hash))?;
        let lib = dir.join("libmemtrace.so");
        if !holds(&lib, bytes)? {
            write_new(&dir, &lib, bytes)?;
        }
        link_scanner(&dir, exe)?;
        Ok(lib)
    }

    /// `$XDG_CACHE_HOME` when absolute, else `$HOME/.cache`.
    fn cache_root() -> anyhow::Result<PathBuf> {
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from)
            && x.is_absolute()
        {
            return Ok(x);
        }
        match std::env::var_os("HOME").map(PathBuf::from) {
            Some(h) if h.is_absolute() => Ok(h.join(".cache")),
            _ => bail!(
                "cannot place the embedded preload library: neither XDG_CACHE_HOME nor HOME is \
                 an absolute path (set one, or MEMTRACE_PRELOAD to a libmemtrace.so)"
            ),
        }
    }

    /// Creates `dir` (0700) if missing, then checks it is a real directory
    /// of this user that no one else can write.
    fn private_dir(dir: &Path) -> anyhow::Result<PathBuf> {
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
        let m =
            fs::symlink_metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !m.file_type().is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
            bail!(
                "refusing the cache directory {}: it must be a directory owned by uid {me} that \
                 others cannot write (set MEMTRACE_PRELOAD to a libmemtrace.so instead)",
                dir.display()
            );
        }
        Ok(dir.to_path_buf())
    }

    /// Whether `lib` is a regular file of this user holding exactly `bytes`.
    fn holds(lib: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(lib)
        {
            Ok(f) => f,
            Err(_) => return Ok(false),
        };
        let m = f.metadata()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !m.file_type().is_file() || m.uid() != me || m.len() != bytes.len() as u64 {
            return Ok(false);
        }
        let mut have = Vec::with_capacity(bytes.len());
        f.read_to_end(&mut have)?;
        Ok(have == bytes)
    }

    /// Writes `bytes` to a new file in `dir` and renames it to `lib`.
    fn write_new(dir: &Path, lib: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        let tmp = dir.join(format!(".libmemtrace.so.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut f: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, lib)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), lib.display()))
    }

    /// Points `dir/memtrace` at `exe` (replacing a link elsewhere).
    fn link_scanner(dir: &Path, exe: &Path) -> anyhow::Result<()> {
        let link = dir.join("memtrace");
        if fs::read_link(&link).is_ok_and(|t| t == exe) {
            return Ok(());
        }
        let tmp = dir.join(format!(".memtrace.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(exe, &tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        fs::rename(&tmp, &link)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), link.display()))
    }
}
