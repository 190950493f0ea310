//! What is judged: existing logs, `--exe`, and the README's `cargo test` recipe.

use std::process::Command;

use super::*;

/// Existing logs are checked as they are: one verdict per log.
#[test]
fn checks_existing_logs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gate = fixture("gate");
    let mut run = memtrace();
    run.current_dir(d)
        .args(["run", "-o", "a.%p.mtr", "--"])
        .arg(&gate)
        .args(["items", "2"]);
    assert!(output_with_timeout(&mut run, TIMEOUT).status.success());
    let mut run = memtrace();
    run.current_dir(d)
        .args(["run", "-o", "b.%p.mtr", "--"])
        .arg(&gate);
    assert!(output_with_timeout(&mut run, TIMEOUT).status.success());
    let logs = logs_in(d);
    assert_eq!(logs.len(), 2);
    let args: Vec<&str> = logs.iter().map(|p| p.to_str().unwrap()).collect();
    let c = check_in(d, &args);
    c.assert_code(FAILED);
    let passed: Vec<bool> = c
        .processes()
        .iter()
        .map(|p| p["passed"].as_bool().unwrap())
        .collect();
    assert_eq!(passed, vec![false, true]);
    assert!(c.json()["command"].is_null());
    let c = check_in(d, &args[1..]);
    c.assert_code(0);
}

/// `--exe` judges only the matching processes.
#[test]
fn exe_selection() {
    // A gate that judged nothing never passes (issue 13): status 2, the reason in the
    // summary and in JUnit as an error.
    let (d, c) = check_gate_junit(&["--exe", "*/no-such-program"], &["items", "2"]);
    c.assert_code(2);
    assert!(
        c.stderr().contains(
            "memtrace check: error: no process was judged (see the reasons above): the gate checked nothing, exit status 2"
        ),
        "{}",
        c.stderr()
    );
    let xml = std::fs::read_to_string(d.path().join("check.xml")).unwrap();
    assert!(
        xml.contains("errors=\"1\"")
            && xml.contains("<error type=\"nothing-judged\" message=\"no process was judged: the gate checked nothing (1 skipped)\"/>"),
        "{xml}"
    );
    let (_d, c) = check_gate(&["--exe", "gate"], &["items", "2"]);
    c.assert_code(FAILED);
}

/// The README's recipe `memtrace check --exe '*/target/*/deps/*' -- cargo test` on a
/// small crate: cargo itself is traced but not judged; a leaking test fails the gate
/// and is named, a clean one passes.
#[test]
fn cargo_test_recipe() {
    // cargo sets CARGO for the tests it runs, and for the build of this test binary: the
    // build's cargo stands in when the binary is run by hand, never a skip.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("src")).unwrap();
    std::fs::write(
        d.join("Cargo.toml"),
        "[package]\nname = \"gatedemo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
    )
    .unwrap();
    let lib = |leak: bool| {
        format!(
            "pub fn make(n: usize) -> Vec<u8> {{ vec![1; n] }}\n\
             #[inline(never)] pub fn cache_it(v: Vec<u8>) {{ {} }}\n\
             #[cfg(test)] mod tests {{\n\
               #[test] fn makes() {{ let v = super::make(4321); assert_eq!(v.len(), 4321); super::cache_it(v); }}\n\
             }}\n",
            if leak {
                "std::mem::forget(v);"
            } else {
                "drop(v);"
            }
        )
    };
    let cargo_env = |cmd: &mut Command| {
        cmd.current_dir(d)
            .env("CARGO", &cargo)
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_TARGET_DIR", d.join("target"))
            .env_remove("RUSTFLAGS");
    };
    for leak in [true, false] {
        std::fs::write(d.join("src/lib.rs"), lib(leak)).unwrap();
        let mut build = clean_command(&cargo);
        build.args(["test", "--no-run", "-q"]);
        cargo_env(&mut build);
        let out = output_with_timeout(&mut build, TIMEOUT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cmd = memtrace();
        cmd.args([
            "check",
            "--exe",
            "*/target/*/deps/*",
            "--json",
            "check.json",
            "--",
        ])
        .arg(&cargo)
        .args(["test", "-q", "--lib"]);
        cargo_env(&mut cmd);
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr);
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("check.json")).unwrap()).unwrap();
        let judged: Vec<&Value> = json["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["judged"] == true)
            .collect();
        assert_eq!(judged.len(), 1, "only the test binary is judged: {err}");
        assert!(
            judged[0]["exe"]
                .as_str()
                .unwrap()
                .contains("/deps/gatedemo-")
        );
        if leak {
            assert_eq!(out.status.code(), Some(FAILED), "{err}");
            assert_eq!(judged[0]["counted_bytes"], 4321, "{err}");
            assert!(
                err.contains("gatedemo::cache_it") || err.contains("gatedemo::tests::makes"),
                "{err}"
            );
        } else {
            assert_eq!(out.status.code(), Some(0), "{err}");
        }
    }
}
