//! The baseline: leaks and peaks of an earlier run, read from its logs or
//! from a JSON document, that a run is compared against. Uses the parent's
//! stack keys and program names, and `crate::report`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{program_name, site_key, stack_key};
use crate::analysis::reach::Kind;
use crate::kinds::{ByKind, counted_part};
use crate::report::Report;

/// Leaks and peaks of an earlier run, to compare against.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    /// Where it was read from.
    pub source: PathBuf,
    /// Leaked bytes and blocks by [`stack_key`], over all processes.
    pub stacks: HashMap<String, (u64, u64)>,
    /// Highest peak heap bytes by [`program_name`].
    pub peaks: HashMap<String, u64>,
}

impl Baseline {
    /// The baseline of analyzed logs: of their classified heap leaks, the
    /// blocks of `kinds` (the kinds that count, [`Rules::counted_kinds`](super::Rules::counted_kinds)).
    pub fn from_reports(reports: &[Report], source: &Path, kinds: &[Kind]) -> Baseline {
        let mut b = Baseline {
            source: source.to_owned(),
            ..Baseline::default()
        };
        for r in reports {
            let leaks = r.heap_leaks.iter().map(|s| ("heap", s));
            for (kind, s) in leaks.chain(r.mmap_leaks.iter().map(|s| ("mmap", s))) {
                if let Some((bytes, count)) =
                    counted_part(s.bytes, s.count, s.kinds.as_ref(), kinds)
                {
                    b.add_leak(site_key(kind, s), bytes, count);
                }
            }
            b.add_peak(&r.process.exe, r.summary.peak_heap_bytes);
        }
        b
    }

    /// The baseline in a JSON document written by `memtrace check --json`
    /// (`processes[]`) or `memtrace report --format json` (one process); of a
    /// leak with a `reachability` object, the blocks of `kinds`.
    pub fn from_json(
        doc: &serde_json::Value,
        source: &Path,
        kinds: &[Kind],
    ) -> Result<Baseline, String> {
        use serde_json::Value;
        let mut b = Baseline {
            source: source.to_owned(),
            ..Baseline::default()
        };
        let processes: Vec<&Value> = match doc.get("processes") {
            Some(Value::Array(v)) => v.iter().collect(),
            Some(_) => return Err("\"processes\" is not an array".into()),
            None if doc.get("leaks").is_some() => vec![doc],
            None => {
                return Err(
                    "neither a `memtrace check --json` nor a `memtrace report --format json` document"
                        .into(),
                );
            }
        };
        for p in processes {
            let exe = p
                .get("exe")
                .or_else(|| p.get("process").and_then(|q| q.get("exe")))
                .and_then(Value::as_str)
                .unwrap_or("");
            let peak = p
                .get("peak_heap_bytes")
                .or_else(|| p.get("summary").and_then(|s| s.get("peak_heap_bytes")))
                .and_then(Value::as_u64);
            if let Some(peak) = peak {
                b.add_peak(exe, peak);
            }
            let Some(leaks) = p.get("leaks") else {
                continue;
            };
            let leaks = leaks
                .as_array()
                .ok_or_else(|| format!("\"leaks\" of {exe:?} is not an array"))?;
            for (i, l) in leaks.iter().enumerate() {
                let bad = || format!("leak {i} of {exe:?} lacks kind, bytes, count or stack");
                let kind = l.get("kind").and_then(Value::as_str).ok_or_else(bad)?;
                let bytes = l.get("bytes").and_then(Value::as_u64).ok_or_else(bad)?;
                let count = l.get("count").and_then(Value::as_u64).ok_or_else(bad)?;
                let frames = l.get("stack").and_then(Value::as_array).ok_or_else(bad)?;
                let reach = match l.get("reachability") {
                    Some(Value::Object(m)) => {
                        let mut k: ByKind = [(0, 0); 4];
                        for kind in Kind::ALL {
                            if let Some(v) = m.get(kind.as_str()) {
                                k[kind.index()] = (
                                    v.get("bytes").and_then(Value::as_u64).unwrap_or(0),
                                    v.get("count").and_then(Value::as_u64).unwrap_or(0),
                                );
                            }
                        }
                        Some(k)
                    }
                    _ => None,
                };
                let Some((bytes, count)) = counted_part(bytes, count, reach.as_ref(), kinds) else {
                    continue;
                };
                let key = stack_key(
                    kind,
                    frames.iter().map(|f| {
                        (
                            f.get("function").and_then(Value::as_str),
                            f.get("module").and_then(Value::as_str),
                        )
                    }),
                );
                b.add_leak(key, bytes, count);
            }
        }
        Ok(b)
    }

    fn add_leak(&mut self, key: String, bytes: u64, count: u64) {
        let e = self.stacks.entry(key).or_default();
        e.0 = e.0.saturating_add(bytes);
        e.1 = e.1.saturating_add(count);
    }

    fn add_peak(&mut self, exe: &str, peak: u64) {
        let e = self.peaks.entry(program_name(exe)).or_default();
        *e = (*e).max(peak);
    }
}

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_LEAK_KINDS;
    use super::super::tests::reach_report;
    use super::*;

    /// The JSON baseline reads both check's and report's documents.
    #[test]
    fn baseline_from_json() {
        let check = serde_json::json!({"processes": [{"exe": "/bin/a-0123456789abcdef",
            "peak_heap_bytes": 77, "leaks": [{"kind": "heap", "bytes": 5, "count": 1,
            "stack": [{"function": "f", "module": "/bin/a"}, {"function": null, "module": null}]}]}]});
        let b = Baseline::from_json(&check, Path::new("b.json"), &DEFAULT_LEAK_KINDS).unwrap();
        assert_eq!(b.stacks["heap|f;?"], (5, 1));
        assert_eq!(b.peaks["a"], 77);
        let report = serde_json::json!({"process": {"exe": "/bin/a"}, "summary":
            {"peak_heap_bytes": 9}, "leaks": []});
        let b = Baseline::from_json(&report, Path::new("r.json"), &DEFAULT_LEAK_KINDS).unwrap();
        assert_eq!(b.peaks["a"], 9);
        assert!(
            Baseline::from_json(
                &serde_json::json!({"x": 1}),
                Path::new("x"),
                &DEFAULT_LEAK_KINDS
            )
            .is_err()
        );
        let bad = serde_json::json!({"leaks": [{"kind": "heap"}]});
        assert!(
            Baseline::from_json(&bad, Path::new("x"), &DEFAULT_LEAK_KINDS)
                .unwrap_err()
                .contains("leak 0")
        );
    }

    /// A baseline counts only the kinds that count: a log's reachable blocks
    /// allow nothing; a JSON leak's `reachability` is read the same way.
    #[test]
    fn baseline_of_the_counted_kinds() {
        let old = [reach_report()];
        let base = Baseline::from_reports(&old, Path::new("old.mtr"), &DEFAULT_LEAK_KINDS);
        assert_eq!(base.stacks["heap|lost_list;main"], (128, 4));
        assert_eq!(base.stacks["heap|plain_lost;main"], (48, 1));
        assert!(!base.stacks.contains_key("heap|kept_by_global;main"));
        let all = Baseline::from_reports(&old, Path::new("old.mtr"), &Kind::ALL);
        assert_eq!(all.stacks["heap|kept_by_global;main"], (64, 1));

        let doc = serde_json::json!({"leaks": [{"kind": "heap", "bytes": 200, "count": 2,
            "reachability": {"definite": {"bytes": 100, "count": 1},
                "indirect": {"bytes": 0, "count": 0}, "possible": {"bytes": 0, "count": 0},
                "reachable": {"bytes": 100, "count": 1}},
            "stack": [{"function": "f", "module": "/bin/a"}]},
            {"kind": "heap", "bytes": 64, "count": 1,
            "reachability": {"reachable": {"bytes": 64, "count": 1}},
            "stack": [{"function": "g", "module": "/bin/a"}]}]});
        let b = Baseline::from_json(&doc, Path::new("r.json"), &DEFAULT_LEAK_KINDS).unwrap();
        assert_eq!(b.stacks["heap|f"], (100, 1));
        assert!(!b.stacks.contains_key("heap|g"));
        let b = Baseline::from_json(&doc, Path::new("r.json"), &Kind::ALL).unwrap();
        assert_eq!(b.stacks["heap|f"], (200, 2));
        assert_eq!(b.stacks["heap|g"], (64, 1));
    }
}
