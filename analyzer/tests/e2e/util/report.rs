//! `memtrace report --format json`, read back as a [`Report`], and what tests ask of it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

/// Runs `memtrace report --format json LOG`, asserting success, and parses the output.
pub fn report(log: &Path) -> Report {
    report_with(log, &[])
}

/// [`report`] with extra options.
pub fn report_with(log: &Path, opts: &[&str]) -> Report {
    let mut cmd = memtrace();
    cmd.arg("report")
        .arg("--format")
        .arg("json")
        .args(opts)
        .arg(log);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "memtrace report {} failed: {:?}\n{stderr}",
        log.display(),
        out.status
    );
    assert!(
        !stderr.contains("panicked"),
        "memtrace report panicked:\n{stderr}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    Report {
        v,
        log: log.to_path_buf(),
    }
}

/// Totals over the leak (or peak or brk) entries whose stack matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Site {
    pub bytes: u64,
    pub count: u64,
    /// How many entries matched (stacks are grouped by the analyzer; not asserted).
    pub entries: u64,
}

/// A parsed JSON report.
pub struct Report {
    pub v: Value,
    pub log: PathBuf,
}

/// The function name of a frame, if symbolized.
pub fn frame_function(frame: &Value) -> Option<&str> {
    frame.get("function").and_then(Value::as_str)
}

/// Does any frame of `entry["stack"]` satisfy `pred`?
pub fn stack_has(entry: &Value, pred: &dyn Fn(&Value) -> bool) -> bool {
    entry
        .get("stack")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(pred))
}

/// A frame predicate: the function is exactly `name`.
pub fn fn_is(name: &str) -> impl Fn(&Value) -> bool + '_ {
    move |f| frame_function(f) == Some(name)
}

/// A frame predicate: the function name contains `part` (for Rust paths with a hash).
pub fn fn_contains(part: &str) -> impl Fn(&Value) -> bool + '_ {
    move |f| frame_function(f).is_some_and(|n| n.contains(part))
}

impl Report {
    /// `summary[key]` as a number.
    pub fn summary(&self, key: &str) -> u64 {
        self.v["summary"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("summary.{key} is not a number: {}", self.v["summary"]))
    }

    /// `summary[key]` as a bool.
    pub fn summary_bool(&self, key: &str) -> bool {
        self.v["summary"][key]
            .as_bool()
            .unwrap_or_else(|| panic!("summary.{key} is not a bool: {}", self.v["summary"]))
    }

    /// `process[key]`.
    pub fn process(&self, key: &str) -> &Value {
        &self.v["process"][key]
    }

    fn array(&self, key: &str) -> &[Value] {
        self.v[key]
            .as_array()
            .unwrap_or_else(|| panic!("report.{key} is not an array"))
            .as_slice()
    }

    /// The leak entries of `kind` ("heap" or "mmap").
    pub fn leaks(&self, kind: &str) -> Vec<&Value> {
        self.array("leaks")
            .iter()
            .filter(|l| l["kind"] == kind)
            .collect()
    }

    /// Totals over the `kind` leaks whose stack has a frame satisfying `pred`.
    pub fn leak_site_by(&self, kind: &str, pred: &dyn Fn(&Value) -> bool) -> Site {
        sum(self.leaks(kind).into_iter().filter(|l| stack_has(l, pred)))
    }

    /// Totals over the `kind` leaks whose stack has a frame in function `name`.
    pub fn leak_site(&self, kind: &str, name: &str) -> Site {
        self.leak_site_by(kind, &fn_is(name))
    }

    /// Totals over the `peak` entries whose stack has a frame in function `name`.
    pub fn peak_site(&self, name: &str) -> Site {
        let f = fn_is(name);
        sum(self.array("peak").iter().filter(|l| stack_has(l, &f)))
    }

    /// Totals over the `allocated` entries whose stack has a frame in function `name`.
    pub fn allocated_site(&self, name: &str) -> Site {
        let f = fn_is(name);
        sum(self.array("allocated").iter().filter(|l| stack_has(l, &f)))
    }

    /// Totals over the `temporary` entries whose stack has a frame in function `name`.
    pub fn temporary_site(&self, name: &str) -> Site {
        let f = fn_is(name);
        sum(self.array("temporary").iter().filter(|l| stack_has(l, &f)))
    }

    /// Totals over the `brk` entries whose stack has a frame in function `name`.
    pub fn brk_site(&self, name: &str) -> Site {
        let f = fn_is(name);
        sum(self.array("brk").iter().filter(|l| stack_has(l, &f)))
    }

    /// The first frame (innermost first) in function `name` of any `kind` leak.
    pub fn leak_frame(&self, kind: &str, name: &str) -> Option<&Value> {
        self.leaks(kind)
            .into_iter()
            .filter_map(|l| l["stack"].as_array())
            .flat_map(|s| s.iter())
            .find(|f| frame_function(f) == Some(name))
    }

    /// A short dump of the leaks for assertion messages: bytes, count, functions.
    pub fn describe_leaks(&self) -> String {
        let mut s = format!(
            "log {}\nsummary {}\n",
            self.log.display(),
            self.v["summary"]
        );
        for l in self.array("leaks") {
            let fns: Vec<&str> = l["stack"]
                .as_array()
                .map(|st| {
                    st.iter()
                        .map(|f| frame_function(f).unwrap_or("?"))
                        .collect()
                })
                .unwrap_or_default();
            s += &format!(
                "  {} {} bytes in {}: {}\n",
                l["kind"],
                l["bytes"],
                l["count"],
                fns.join(" <- ")
            );
        }
        s
    }

    /// Asserts the totals of the `kind` leaks in function `name`.
    pub fn assert_leak(&self, kind: &str, name: &str, bytes: u64, count: u64) {
        let s = self.leak_site(kind, name);
        assert_eq!(
            (s.bytes, s.count),
            (bytes, count),
            "{kind} leaks in {name}: (bytes, count)\n{}",
            self.describe_leaks()
        );
    }

    /// Asserts no `kind` leak has function `name` on its stack.
    pub fn assert_no_leak(&self, kind: &str, name: &str) {
        let s = self.leak_site(kind, name);
        assert_eq!(
            s,
            Site::default(),
            "no {kind} leak expected in {name}\n{}",
            self.describe_leaks()
        );
    }

    /// Asserts the heap totals `leaked_heap_bytes` and `leaked_heap_blocks`.
    pub fn assert_heap_leaked(&self, bytes: u64, blocks: u64) {
        assert_eq!(
            (
                self.summary("leaked_heap_bytes"),
                self.summary("leaked_heap_blocks")
            ),
            (bytes, blocks),
            "(leaked_heap_bytes, leaked_heap_blocks)\n{}",
            self.describe_leaks()
        );
    }

    /// Asserts the log was complete: nothing lost, torn or truncated.
    pub fn assert_complete(&self) {
        assert_eq!(
            self.summary("events_lost"),
            0,
            "events_lost\n{}",
            self.describe_leaks()
        );
        assert_eq!(
            self.summary("torn_records"),
            0,
            "torn_records\n{}",
            self.describe_leaks()
        );
        assert!(
            !self.summary_bool("truncated"),
            "truncated\n{}",
            self.describe_leaks()
        );
    }

    /// Asserts no hook was entered re-entrantly (`summary.nested_hooks == 0`): the hook path
    /// never allocates through the hooked allocator. Only for fixtures where no signal
    /// handler can interrupt a hook.
    pub fn assert_no_nested_hooks(&self) {
        assert_eq!(
            self.summary("nested_hooks"),
            0,
            "nested_hooks\n{}",
            self.describe_leaks()
        );
    }

    /// Asserts how the process ended (`process.ended`).
    pub fn assert_ended(&self, how: &str) {
        assert_eq!(
            self.process("ended"),
            how,
            "process.ended; process = {}",
            self.v["process"]
        );
    }
}

fn sum<'a>(entries: impl Iterator<Item = &'a Value>) -> Site {
    let mut s = Site::default();
    for e in entries {
        s.bytes += e["bytes"].as_u64().expect("entry.bytes is a number");
        // `brk` entries have no count.
        s.count += e.get("count").and_then(Value::as_u64).unwrap_or(0);
        s.entries += 1;
    }
    s
}
