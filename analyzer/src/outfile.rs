//! Creating the files memtrace writes, safely in a directory others can write
//! (a sticky `/tmp`, a shared build directory).
//!
//! - A **temporary** file (`<log>.packing`, a snapshot's `.tmp`) is created
//!   exclusively (`O_CREAT|O_EXCL`) without following a symlink, mode 0600,
//!   then renamed into place: whatever was planted at its name is never
//!   written through. A leftover at that name (ours from a killed run, or
//!   planted) is unlinked first — unlinking a symlink removes the link, never
//!   its target.
//! - An **output** the user names (a report, an SVG, JSON, JUnit, an export)
//!   is opened with `O_NOFOLLOW`: a symlink at that name is refused with a
//!   clear error rather than followed.
//!
//! Files holding a log (raw, packed, snapshot, temporary) are 0600; the
//! rest get the usual 0666 less the umask. Uses only std and libc.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Mode of a file that holds a log: its owner's only.
pub const LOG_MODE: u32 = 0o600;

/// Creates the temporary file `path` for a log (see the module docs).
pub fn create_temp(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(LOG_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

/// Creates (or truncates) the output file `path` the user named, refusing a
/// symlink there; `private`: it holds a log (mode 0600).
pub fn create_output(path: &Path, private: bool) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { LOG_MODE } else { 0o666 })
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    e.kind(),
                    format!("{} is a symbolic link: not written through", path.display()),
                )
            } else {
                e
            }
        })
}

/// Opens the existing log `path` to update it in place (read and write),
/// never through a symlink planted at its name.
pub fn open_log_for_update(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Writes `bytes` to the output file `path` (see [`create_output`]).
pub fn write_output(path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    use std::io::Write;
    create_output(path, private)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn temp_is_private_and_never_follows_a_planted_link() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let tmp = d.path().join("x.packing");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        use std::io::Write;
        create_temp(&tmp).unwrap().write_all(b"log").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&tmp).unwrap(), b"log");
        let m = std::fs::symlink_metadata(&tmp).unwrap();
        assert!(m.file_type().is_file());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn output_refuses_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let out = d.path().join("report.html");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        let e = write_output(&out, b"<html>", false).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let plain = d.path().join("snap.mtr");
        write_output(&plain, b"x", true).unwrap();
        let mode = std::fs::metadata(&plain).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
