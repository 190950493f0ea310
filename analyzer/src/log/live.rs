//! Whether a raw log is still being written: its header says no exit path
//! ran and its writer is still running with the log mapped.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use memtrace_format::{ExitHow, Header};

/// The writer's pid when the log at `path` (whose header is `h`) is still
/// being written: the header's state says running, it is no snapshot, and
/// process `h.pid` is alive (not a zombie). Where the writer's mappings can
/// be read, the pid counts only if it maps this very file (a reused pid
/// does not).
pub fn writer(path: &Path, h: &Header) -> Option<u32> {
    let running = matches!(ExitHow::from_u32(h.state), Some(ExitHow::Running) | None);
    if !running || h.snapshot_at != 0 || h.pid == 0 {
        return None;
    }
    if !process_alive(h.pid) {
        return None;
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return Some(h.pid);
    };
    match std::fs::read_to_string(format!("/proc/{}/maps", h.pid)) {
        Ok(maps) => maps_file(&maps, meta.dev(), meta.ino()).then_some(h.pid),
        // Not ours to read: alive is all that can be told.
        Err(_) => Some(h.pid),
    }
}

/// Whether process `pid` still exists (a zombie counts as ended).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Whether a `/proc/PID/maps` text maps the file `dev`:`ino`.
fn maps_file(maps: &str, dev: u64, ino: u64) -> bool {
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    maps.lines().any(|line| {
        let mut f = line.split_ascii_whitespace().skip(3);
        let (Some(d), Some(i)) = (f.next(), f.next()) else {
            return false;
        };
        let Some((ma, mi)) = d.split_once(':') else {
            return false;
        };
        u64::from_str_radix(ma, 16) == Ok(major)
            && u64::from_str_radix(mi, 16) == Ok(minor)
            && i.parse::<u64>() == Ok(ino)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let maps = "7f00-7f10 rw-s 00000000 fd:01 1234  /tmp/a.mtr\n\
                    7f20-7f30 r-xp 00000000 00:00 0 \n";
        let dev = libc::makedev(0xfd, 1);
        assert!(maps_file(maps, dev, 1234));
        assert!(!maps_file(maps, dev, 123));
        assert!(!maps_file(maps, libc::makedev(0xfd, 2), 1234));
        assert!(!maps_file("", dev, 1234));
    }

    #[test]
    fn this_process_is_alive() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }
}
