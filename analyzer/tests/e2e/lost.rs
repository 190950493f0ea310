//! diskfull.c: the log's file system fills up while the program runs.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use crate::util::{output_with_timeout, report, traced_command};

// With no room left for the log (RLIMIT_FSIZE 64 KiB), the program runs on with the same
// output and status, and the report counts every event it could not record.
#[test]
fn full_disk_loses_events_but_not_the_program() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = traced_command("diskfull", dir.path(), "%e.%p.mtr");
    // SAFETY: setrlimit and signal are async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64 * 1024,
                rlim_max: 64 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = output_with_timeout(&mut cmd, Duration::from_secs(120));
    assert_eq!(
        out.status.code(),
        Some(0),
        "exit status; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done 20000 1995050\n");
    let logs = crate::util::logs_in(dir.path());
    assert_eq!(logs.len(), 1, "one log: {logs:?}");
    let size = std::fs::metadata(&logs[0]).expect("log metadata").len();
    assert!(
        size <= 64 * 1024,
        "the log respects the limit: {size} bytes"
    );
    let r = report(&logs[0]);
    let lost = r.summary("events_lost");
    assert!(lost > 0, "events were lost");
    let seen = r.summary("allocations") + r.summary("frees") + r.summary("unknown_frees");
    assert!(
        seen + lost >= 40_000,
        "every malloc and free is recorded or counted as lost: {seen} recorded + {lost} lost"
    );
}
