//! redis-server (linked against jemalloc) under load from redis-benchmark, shut down by
//! SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::time::Instant;

use super::*;

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// Waits until redis answers PING on `port`, or panics if `child` ends first.
fn wait_for_redis(port: u16, child: &mut Child) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(st) = child.try_wait().expect("wait for redis-server") {
            panic!("redis-server ended ({st:?}) before answering");
        }
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 16];
            if c.write_all(b"PING\r\n").is_ok() && c.read(&mut buf).is_ok_and(|n| n > 0) {
                assert!(buf.starts_with(b"+PONG"), "redis answered {buf:?}");
                return;
            }
        }
        assert!(Instant::now() < deadline, "redis-server did not answer");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One redis run: the server in `mode`, driven by redis-benchmark (never traced), then
/// SIGTERM. Returns the server's run and the benchmark's.
fn redis_once(s: &Scratch, mode: Mode, server: &Path, bench: &Path) -> (Run, Output) {
    s.reset();
    let port = free_port().to_string();
    let argv = argv![
        server,
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no"
    ];
    let mut cmd = s.command(mode, &argv);
    let mut child = spawn_piped(&mut cmd);
    wait_for_redis(port.parse().unwrap(), &mut child);
    let bench_argv = argv![
        bench,
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-n",
        "20000",
        "-q",
        "-t",
        "set,get,lpush"
    ];
    let mut b = s.command(Mode::Bare, &bench_argv);
    let bench_run = collect(spawn_piped(&mut b), TIMEOUT, "redis-benchmark");
    // SAFETY: signalling our own child, not yet reaped.
    let rc = unsafe { ::libc::kill(child.id() as ::libc::pid_t, ::libc::SIGTERM) };
    assert_eq!(rc, 0, "SIGTERM to redis-server");
    let server_run = collect(child, TIMEOUT, "redis-server");
    (server_run, bench_run.output)
}

// redis-server (Debian's: linked against libjemalloc2) serves redis-benchmark (20,000
// requests each of SET, GET, LPUSH, a few seconds) and is shut down with SIGTERM: it
// handles the signal and exits 0, bare and traced. Its stdout holds pids and times, and
// the benchmark's stdout rates, so only exit statuses are compared; the benchmark must
// report each test and no error, and the server's log must hold many allocations and
// end by exit.
#[test]
fn redis_server_under_benchmark() {
    let server = require_tool("/usr/bin/redis-server", "redis-server");
    let bench = require_tool("/usr/bin/redis-benchmark", "redis-tools");
    let s = Scratch::new(&[], |_| {});
    let check_bench = |mode: Mode, out: &Output| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mode:?}: redis-benchmark: {out:?}");
        for t in ["SET: ", "GET: ", "LPUSH: "] {
            assert!(
                text.contains(t) && text.contains("requests per second"),
                "{mode:?}: redis-benchmark did not report {t}:\n{text}"
            );
        }
        assert!(
            !text.to_ascii_lowercase().contains("error"),
            "{mode:?}: redis-benchmark saw errors:\n{text}"
        );
    };
    let (bare, bare_bench) = redis_once(&s, Mode::Bare, &server, &bench);
    check_bench(Mode::Bare, &bare_bench);
    let (traced, traced_bench) = redis_once(&s, Mode::Traced, &server, &bench);
    check_bench(Mode::Traced, &traced_bench);
    assert_eq!(
        bare.output.status.code(),
        Some(0),
        "bare redis-server after SIGTERM: {:?}\n{}",
        bare.output.status,
        String::from_utf8_lossy(&bare.output.stdout)
    );
    assert_eq!(
        (traced.output.status.code(), traced.output.status.signal()),
        (bare.output.status.code(), bare.output.status.signal()),
        "traced redis-server's exit status\n{}",
        String::from_utf8_lossy(&traced.output.stdout)
    );
    let r = s.only_report(traced.pid, "redis-server");
    // 60,000 requests: ~300,000 allocations measured.
    assert_exited_with_allocations(&r, 60_000);
    assert!(
        r.process("duration_ms").as_f64().unwrap_or(0.0) > 100.0,
        "the log covers the whole run: {}",
        r.v["process"]
    );
}
