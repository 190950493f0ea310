//! speedscope's file format (<https://www.speedscope.app/file-format-schema.json>):
//! one JSON document that speedscope opens directly (drag and drop, or
//! `speedscope FILE`).
//!
//! The document has one shared frame table and one "sampled" profile per
//! metric, in this order: leaked bytes, peak bytes, allocated bytes,
//! allocations ([`METRICS`]). Each sample is one stack of the report's list
//! for that metric (frame indices outermost first, as speedscope wants),
//! its weight the stack's bytes or count; stacks of no weight are left out,
//! so each profile's weights sum to the metric's total over the report's
//! list. Frames are deduplicated by (name, file, line); an inlined function
//! is a frame of its own, as in the report. `activeProfileIndex` is 0 (the
//! leaks).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{NO_STACK, exporter, weighted_sites};
use crate::analysis::symbolize::Frame;
use crate::flame::Metric;
use crate::report::Report;

/// The URL of the schema, the document's `$schema`.
pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

/// The metrics exported, one profile each, in order.
pub const METRICS: [Metric; 4] = [
    Metric::Leaked,
    Metric::Peak,
    Metric::Allocated,
    Metric::Allocations,
];

/// A profile's name: what its weights measure.
pub fn profile_name(m: Metric) -> &'static str {
    match m {
        Metric::Leaked => "leaked bytes",
        Metric::Peak => "peak bytes",
        Metric::Allocated => "allocated bytes",
        Metric::Allocations => "allocations",
        Metric::Temporary => "temporary allocations",
    }
}

#[derive(Default)]
struct Frames {
    list: Vec<Value>,
    ids: HashMap<(String, Option<String>, Option<u32>), usize>,
}

impl Frames {
    fn id(&mut self, name: String, file: Option<&str>, line: Option<u32>) -> usize {
        let key = (name, file.map(str::to_owned), line);
        if let Some(&i) = self.ids.get(&key) {
            return i;
        }
        let mut f = json!({ "name": key.0 });
        if let Some(file) = &key.1 {
            f["file"] = json!(file);
        }
        if let Some(line) = key.2 {
            f["line"] = json!(line);
        }
        let i = self.list.len();
        self.list.push(f);
        self.ids.insert(key, i);
        i
    }

    fn frame(&mut self, f: &Frame) -> usize {
        let name = match &f.function {
            Some(n) => n.clone(),
            None => crate::frames::label(f),
        };
        self.id(name, f.file.as_deref(), f.line)
    }

    /// A stack's frame indices, outermost first.
    fn stack(&mut self, frames: &[Frame]) -> Vec<usize> {
        if frames.is_empty() {
            return vec![self.id(NO_STACK.to_owned(), None, None)];
        }
        frames.iter().rev().map(|f| self.frame(f)).collect()
    }
}

/// The speedscope document of a report made with [`crate::flame::all`].
pub fn document(r: &Report) -> Value {
    let mut frames = Frames::default();
    let profiles: Vec<Value> = METRICS
        .iter()
        .map(|&m| {
            let mut samples = Vec::new();
            let mut weights = Vec::new();
            let mut total = 0u64;
            for (stack, w) in weighted_sites(r, m) {
                samples.push(frames.stack(stack));
                weights.push(w);
                total = total.saturating_add(w);
            }
            json!({
                "type": "sampled",
                "name": profile_name(m),
                "unit": if m.is_bytes() { "bytes" } else { "none" },
                "startValue": 0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            })
        })
        .collect();
    let exe = r.process.exe.rsplit('/').next().unwrap_or(&r.process.exe);
    json!({
        "$schema": SCHEMA,
        "shared": { "frames": frames.list },
        "profiles": profiles,
        "name": format!("{exe} (pid {})", r.process.pid),
        "activeProfileIndex": 0,
        "exporter": exporter(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::frame;
    use crate::report::Site;
    use crate::testlog::*;
    use std::sync::Arc;

    /// Frames shared and outermost first; weights per metric; stacks not
    /// recorded keep their weight.
    #[test]
    fn builds_the_document() {
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 2, 0x10, 40, 1);
        let mut b = LogBuilder::new();
        b.push(0, &c).ended(T0 + 10);
        let mut r = crate::report::analyze_bytes(&b.bytes, &crate::flame::all()).unwrap();
        let st: Arc<[Frame]> = vec![
            frame(Some("leaf"), 0x10, true),
            frame(Some("main"), 0x10, false),
        ]
        .into();
        r.heap_leaks = vec![
            Site {
                bytes: 40,
                count: 1,
                func: None,
                kinds: None,
                heuristics: Default::default(),
                stack: st.clone(),
            },
            Site {
                bytes: 2,
                count: 1,
                func: None,
                kinds: None,
                heuristics: Default::default(),
                stack: Arc::from(vec![]),
            },
        ];
        r.allocated = r.heap_leaks.clone();
        r.peak.clear();
        let d = document(&r);
        assert_eq!(d["$schema"], SCHEMA);
        let frames = d["shared"]["frames"].as_array().unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0]["name"], "main");
        assert_eq!(frames[0]["line"], 7);
        assert_eq!(frames[2]["name"], NO_STACK);
        assert!(frames[2].get("file").is_none());
        let p = d["profiles"].as_array().unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0]["samples"], json!([[0, 1], [2]]));
        assert_eq!(p[0]["weights"], json!([40, 2]));
        assert_eq!(p[0]["endValue"], 42);
        assert_eq!(p[1]["samples"], json!([]));
        assert_eq!(p[3]["unit"], "none");
        assert_eq!(p[3]["weights"], json!([1, 1]));
    }
}
