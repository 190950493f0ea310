//! `memtrace export`: each format read back by an independent reader and checked
//! against the fixtures' known numbers and the JSON report.
//!
//! - pprof: decoded by Python's protobuf package (Debian's `python3-protobuf`) with
//!   classes `protoc` (Debian's `protobuf-compiler`) generates from the vendored
//!   official `tests/proto/profile.proto`; a Python script prints sums as JSON.
//! - folded: the lines parsed here.
//! - speedscope: parsed with serde_json.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::{
    TIMEOUT, Traced, clean_command, memtrace, missing_tool, output_with_timeout, report_with,
    require_tool, root, trace,
};

const NO_ARGS: &[&str] = &[];

/// heap.c's leaks by function: (bytes, blocks).
const HEAP_LEAKS: [(&str, u64, u64); 6] = [
    ("leak_malloc", 300, 3),
    ("leak_calloc", 120, 1),
    ("leak_realloc_chain", 200, 1),
    ("leak_aligned", 1736, 4),
    ("leak_strdup", 16, 1),
    ("leak_reallocarray", 240, 1),
];

/// Runs `memtrace export ARGS`, returning its output.
fn export(args: &[&str]) -> Output {
    let mut cmd = memtrace();
    cmd.arg("export").args(args);
    output_with_timeout(&mut cmd, TIMEOUT)
}

/// Runs `memtrace export --format FORMAT [EXTRA] LOG -o OUT`, asserting success;
/// returns the file's bytes.
fn export_file(log: &Path, format: &str, extra: &[&str], out: &Path) -> Vec<u8> {
    let mut args = vec!["--format", format];
    args.extend_from_slice(extra);
    args.extend([log.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let o = export(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !stderr.contains("panicked"),
        "memtrace export {args:?}: {:?}\n{stderr}",
        o.status
    );
    assert!(o.stdout.is_empty(), "nothing on stdout with -o");
    std::fs::read(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

/// The fixture run and its full report (every stack of every list).
fn traced(name: &str) -> (Traced, PathBuf, crate::util::Report) {
    let t = trace(name, NO_ARGS);
    t.assert_exit(0);
    let log = t.only_log();
    let r = report_with(&log, &["--top", "1000000"]);
    r.assert_complete();
    (t, log, r)
}

// ---------------------------------------------------------------------------------------
// pprof, read by Python's protobuf
// ---------------------------------------------------------------------------------------

/// Reads a gzipped profile (argv[2]) with the classes in argv[1]; prints JSON.
const READ_PROFILE: &str = r#"
import gzip, json, sys
sys.path.insert(0, sys.argv[1])
import profile_pb2

p = profile_pb2.Profile()
p.ParseFromString(gzip.decompress(open(sys.argv[2], "rb").read()))
S = p.string_table
errors = []
if not S or S[0] != "":
    errors.append("string_table[0] is not empty")
def s(i):
    if not 0 <= i < len(S):
        errors.append("string index %d out of range" % i)
        return ""
    return S[i]
types = ["%s/%s" % (s(t.type), s(t.unit)) for t in p.sample_type]
funcs = {f.id: f for f in p.function}
locs = {l.id: l for l in p.location}
maps = {m.id: m for m in p.mapping}
for kind, items, table in (("function", p.function, funcs), ("location", p.location, locs),
                           ("mapping", p.mapping, maps)):
    if len(table) != len(items) or 0 in table:
        errors.append("%s ids are not unique and nonzero" % kind)
for l in p.location:
    if l.mapping_id and l.mapping_id not in maps:
        errors.append("location %d: no mapping %d" % (l.id, l.mapping_id))
    m = maps.get(l.mapping_id)
    if m and m.memory_limit and not (m.memory_start <= l.address < m.memory_limit):
        errors.append("location %d: address %x outside its mapping" % (l.id, l.address))
    for ln in l.line:
        if ln.function_id not in funcs:
            errors.append("location %d: no function %d" % (l.id, ln.function_id))

def names(sample):
    return [s(funcs[ln.function_id].name)
            for lid in sample.location_id if lid in locs
            for ln in locs[lid].line if ln.function_id in funcs]

totals = {t: 0 for t in types}
inuse_by_fn, alloc_by_fn = {}, {}
for smp in p.sample:
    if len(smp.value) != len(types):
        errors.append("a sample has %d values" % len(smp.value))
        continue
    if not smp.location_id:
        errors.append("a sample has no location")
    for lid in smp.location_id:
        if lid not in locs:
            errors.append("sample: no location %d" % lid)
    v = dict(zip(types, smp.value))
    for t in types:
        totals[t] += v[t]
    for n in set(names(smp)):
        inuse_by_fn[n] = inuse_by_fn.get(n, 0) + v.get("inuse_space/bytes", 0)
        alloc_by_fn[n] = alloc_by_fn.get(n, 0) + v.get("alloc_objects/count", 0)

inlined = {}
for l in p.location:
    if len(l.line) > 1:
        m = maps.get(l.mapping_id)
        key = "%s@%x" % (s(m.filename) if m else "", l.address)
        inlined[key] = [s(funcs[ln.function_id].name) for ln in l.line]

print(json.dumps({
    "errors": errors,
    "sample_types": types,
    "totals": totals,
    "inuse_by_fn": {k: v for k, v in inuse_by_fn.items() if v},
    "alloc_by_fn": alloc_by_fn,
    "multi_line_locations": sum(1 for l in p.location if len(l.line) > 1),
    "inlined": inlined,
    "mappings": [{"file": s(m.filename), "build_id": s(m.build_id),
                  "start": m.memory_start, "limit": m.memory_limit} for m in p.mapping],
    "functions": [{"name": s(f.name), "system_name": s(f.system_name),
                   "file": s(f.filename)} for f in p.function],
    "default_sample_type": s(p.default_sample_type),
    "period_type": "%s/%s" % (s(p.period_type.type), s(p.period_type.unit)),
    "comments": [s(c) for c in p.comment],
    "time_nanos": p.time_nanos,
    "duration_nanos": p.duration_nanos,
}))
"#;

/// A Python that has the protobuf package: Debian's (`/usr/bin/python3` with
/// `python3-protobuf`) before whatever `python3` is first on PATH.
fn python() -> &'static str {
    static PY: OnceLock<&'static str> = OnceLock::new();
    PY.get_or_init(|| {
        ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|py| {
                clean_command(py)
                    .args(["-c", "import google.protobuf"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .unwrap_or_else(|| {
                missing_tool(
                    "python3 with the protobuf package (`import google.protobuf`)",
                    "python3-protobuf",
                )
            })
    })
}

/// The Python classes of the vendored profile.proto, generated once per test run.
fn profile_classes() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2e-pprof-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let proto_dir = root().join("tests").join("proto");
        let mut cmd = clean_command(require_tool("protoc", "protobuf-compiler"));
        cmd.arg(format!("--python_out={}", dir.display()))
            .arg(format!("-I{}", proto_dir.display()))
            .arg(proto_dir.join("profile.proto"));
        let o = output_with_timeout(&mut cmd, TIMEOUT);
        assert!(
            o.status.success(),
            "protoc failed (install Debian's protobuf-compiler): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        dir
    })
    .clone()
}

/// Exports `log` as pprof and reads it back with Python.
fn read_pprof(log: &Path, dir: &Path) -> Value {
    let out = dir.join("heap.pb.gz");
    let bytes = export_file(log, "pprof", &[], &out);
    assert_eq!(&bytes[..2], b"\x1f\x8b", "the profile is gzipped");
    let mut cmd = Command::new(python());
    cmd.arg("-c")
        .arg(READ_PROFILE)
        .arg(profile_classes())
        .arg(&out);
    let o = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        o.status.success(),
        "reading the profile with Python failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["errors"], serde_json::json!([]), "profile integrity");
    v
}

// heap.c as pprof: Go's sample types; inuse = the leaks, alloc = every allocation;
// leak_* functions carry their leaks; mappings of files carry build-ids.
#[test]
fn pprof_heap_totals() {
    let (t, log, r) = traced("heap");
    let p = read_pprof(&log, t.dir.path());
    assert_eq!(
        p["sample_types"],
        serde_json::json!([
            "alloc_objects/count",
            "alloc_space/bytes",
            "inuse_objects/count",
            "inuse_space/bytes"
        ])
    );
    let total = |k: &str| p["totals"][k].as_u64().unwrap();
    assert_eq!(total("inuse_space/bytes"), 2612, "{p}");
    assert_eq!(total("inuse_objects/count"), 11, "{p}");
    assert_eq!(total("alloc_space/bytes"), 10_492_875, "{p}");
    assert_eq!(total("alloc_objects/count"), 22, "{p}");
    assert_eq!(total("alloc_space/bytes"), r.summary("bytes_allocated"));
    assert_eq!(total("alloc_objects/count"), r.summary("allocations"));
    for (name, bytes, _) in HEAP_LEAKS {
        assert_eq!(p["inuse_by_fn"][name], bytes, "inuse_space in {name}: {p}");
    }
    // Each leak_* function allocated at least as many blocks as it leaked.
    for (name, _, blocks) in HEAP_LEAKS {
        let a = p["alloc_by_fn"][name].as_u64().unwrap_or(0);
        assert!(a >= blocks, "alloc_objects in {name}: {a}");
    }
    let mappings = p["mappings"].as_array().unwrap();
    assert!(!mappings.is_empty());
    let exe = crate::util::fixture("heap");
    assert_eq!(
        mappings[0]["file"],
        exe.to_str().unwrap(),
        "the main binary first"
    );
    for m in mappings {
        let file = m["file"].as_str().unwrap();
        if file.starts_with('/') {
            let id = m["build_id"].as_str().unwrap();
            assert!(
                !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()),
                "{file}: build-id {id:?}"
            );
            assert!(m["start"].as_u64() < m["limit"].as_u64(), "{m}");
        }
    }
    assert!(
        p["functions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "leak_malloc" && f["file"].as_str().unwrap().ends_with("heap.c")),
        "{p}"
    );
    assert_eq!(p["default_sample_type"], "inuse_space");
    assert_eq!(p["period_type"], "space/bytes");
    assert!(p["comments"][0].as_str().unwrap().starts_with("memtrace "));
    assert!(p["time_nanos"].as_i64().unwrap() > 1_500_000_000_000_000_000);
    assert!(p["duration_nanos"].as_i64().unwrap() > 0);
}

/// For every stack of the JSON report's leaks and `allocated` lists: the frames
/// of each address that has inlined functions, innermost first, by
/// `module@address`.
fn inlined_in_report(r: &crate::util::Report) -> BTreeMap<String, Vec<String>> {
    let mut by_addr = BTreeMap::new();
    let lists = r
        .leaks("heap")
        .into_iter()
        .chain(r.v["allocated"].as_array().unwrap().iter());
    for entry in lists {
        let stack = entry["stack"].as_array().unwrap();
        let mut i = 0;
        while i < stack.len() {
            if stack[i]["inlined"] != true {
                i += 1;
                continue;
            }
            let addr = stack[i]["address"].as_str().unwrap();
            let mut names = Vec::new();
            let mut j = i;
            while j < stack.len() && stack[j]["address"] == addr {
                names.push(stack[j]["function"].as_str().unwrap_or("?").to_owned());
                j += 1;
                if stack[j - 1]["inlined"] != true {
                    break;
                }
            }
            let module = stack[i]["module"].as_str().unwrap_or("");
            let a = u64::from_str_radix(addr.trim_start_matches("0x"), 16).unwrap();
            by_addr.insert(format!("{module}@{a:x}"), names);
            i = j;
        }
    }
    by_addr
}

// C++ and Rust as pprof: demangled names with their mangled system names, and the
// functions inlined at an address as several lines of one location, innermost first,
// exactly as the report lists them.
#[test]
fn pprof_cpp_rust_names_and_inlined_lines() {
    let (t, log, r) = traced("cpp");
    let p = read_pprof(&log, t.dir.path());
    assert_eq!(p["totals"]["inuse_space/bytes"], 140, "{p}");
    assert_eq!(
        p["totals"]["alloc_objects/count"].as_u64(),
        Some(r.summary("allocations"))
    );
    let funcs = p["functions"].as_array().unwrap();
    assert!(
        funcs.iter().any(
            |f| f["name"] == "ns::Widget::make()" && f["system_name"] == "_ZN2ns6Widget4makeEv"
        ),
        "{p}"
    );
    let names: BTreeSet<&str> = funcs.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.contains("leak_cpp(int)"), "{names:?}");
    let cpp_inlined = inlined_in_report(&r);
    assert_eq!(
        serde_json::to_value(&cpp_inlined).unwrap(),
        p["inlined"],
        "multi-line locations vs the report's inlined frames"
    );

    let (t, log, r) = traced("rust_leak");
    let p = read_pprof(&log, t.dir.path());
    let expected = inlined_in_report(&r);
    assert!(
        p["multi_line_locations"].as_u64().unwrap() > 0,
        "no location with inlined lines: {p}"
    );
    assert_eq!(serde_json::to_value(&expected).unwrap(), p["inlined"]);
    assert_eq!(
        p["totals"]["inuse_space/bytes"].as_u64(),
        Some(r.summary("leaked_heap_bytes"))
    );
    let box_site = p["inuse_by_fn"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains("rust_leak::leak_rust_box"))
        .map(|(_, v)| v.as_u64().unwrap())
        .max();
    assert_eq!(box_site, Some(1000), "{p}");
}

// ---------------------------------------------------------------------------------------
// folded
// ---------------------------------------------------------------------------------------

/// `stack weight` lines.
fn parse_folded(text: &str) -> Vec<(Vec<String>, u64)> {
    text.lines()
        .map(|l| {
            let (stack, w) = l.rsplit_once(' ').unwrap_or_else(|| panic!("line {l:?}"));
            (
                stack.split(';').map(str::to_owned).collect(),
                w.parse().unwrap_or_else(|_| panic!("weight in {l:?}")),
            )
        })
        .collect()
}

// heap.c folded: leaked (default, on stdout) sums to the leaks, leak_malloc's lines to
// 300, outermost frame first; other metrics to their totals.
#[test]
fn folded_heap() {
    let (t, log, r) = traced("heap");
    let o = export(&["--format", "folded", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines = parse_folded(&text);
    assert_eq!(lines.iter().map(|l| l.1).sum::<u64>(), 2612, "{text}");
    let malloc: Vec<_> = lines
        .iter()
        .filter(|(s, _)| s.iter().any(|f| f == "leak_malloc"))
        .collect();
    assert_eq!(malloc.iter().map(|l| l.1).sum::<u64>(), 300, "{text}");
    for (stack, _) in &malloc {
        assert_eq!(
            stack.last().unwrap(),
            "leak_malloc",
            "innermost last: {stack:?}"
        );
        let main = stack.iter().position(|f| f == "main").expect("main");
        assert!(main < stack.len() - 1, "outermost first: {stack:?}");
    }
    let sorted = {
        let mut v = text.lines().collect::<Vec<_>>();
        v.sort();
        v
    };
    assert_eq!(text.lines().collect::<Vec<_>>(), sorted, "sorted lines");

    for (metric, total) in [
        ("allocations", r.summary("allocations")),
        ("allocated", r.summary("bytes_allocated")),
        ("leaked", 2612),
    ] {
        let out = t.dir.path().join(format!("{metric}.folded"));
        let bytes = export_file(&log, "folded", &["--metric", metric], &out);
        let lines = parse_folded(std::str::from_utf8(&bytes).unwrap());
        assert_eq!(lines.iter().map(|l| l.1).sum::<u64>(), total, "{metric}");
    }
}

// ---------------------------------------------------------------------------------------
// speedscope
// ---------------------------------------------------------------------------------------

// heap.c as speedscope: the schema's keys, one sampled profile per metric, weights
// summing to the report's lists, frame indices outermost first.
#[test]
fn speedscope_heap() {
    let (t, log, r) = traced("heap");
    let out = t.dir.path().join("heap.speedscope.json");
    let doc: Value = serde_json::from_slice(&export_file(&log, "speedscope", &[], &out)).unwrap();
    assert_eq!(
        doc["$schema"],
        "https://www.speedscope.app/file-format-schema.json"
    );
    assert!(doc["exporter"].as_str().unwrap().starts_with("memtrace "));
    assert!(doc["name"].as_str().unwrap().contains("heap"));
    let frames = doc["shared"]["frames"].as_array().unwrap();
    assert!(frames.iter().all(|f| f["name"].is_string()));
    let leak_malloc: BTreeSet<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f["name"] == "leak_malloc")
        .map(|(i, _)| i)
        .collect();
    assert!(!leak_malloc.is_empty(), "no frame named leak_malloc");
    assert!(frames.iter().any(|f| f["name"] == "leak_malloc"
        && f["file"].as_str().unwrap().ends_with("heap.c")
        && f["line"].is_u64()));

    let profiles = doc["profiles"].as_array().unwrap();
    let names: Vec<&str> = profiles
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "leaked bytes",
            "peak bytes",
            "allocated bytes",
            "allocations"
        ]
    );
    let peak_sum: u64 = r.v["peak"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["bytes"].as_u64().unwrap())
        .sum();
    let expected = [
        (2612, "bytes"),
        (peak_sum, "bytes"),
        (r.summary("bytes_allocated"), "bytes"),
        (r.summary("allocations"), "none"),
    ];
    for (p, (total, unit)) in profiles.iter().zip(expected) {
        assert_eq!(p["type"], "sampled");
        assert_eq!(p["unit"], unit);
        let samples = p["samples"].as_array().unwrap();
        let weights: Vec<u64> = p["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_u64().unwrap())
            .collect();
        assert_eq!(samples.len(), weights.len());
        assert_eq!(weights.iter().sum::<u64>(), total, "{}", p["name"]);
        assert_eq!(p["startValue"], 0);
        assert_eq!(p["endValue"], total);
        for s in samples {
            assert!(
                s.as_array()
                    .unwrap()
                    .iter()
                    .all(|i| (i.as_u64().unwrap() as usize) < frames.len())
            );
        }
    }
    assert!(peak_sum >= 10_485_760);
    // The leaked profile: leak_malloc's samples weigh 300, leak_malloc innermost (last).
    let leaked = &profiles[0];
    let mut malloc = 0;
    for (s, w) in leaked["samples"]
        .as_array()
        .unwrap()
        .iter()
        .zip(leaked["weights"].as_array().unwrap())
    {
        let idx: Vec<usize> = s
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as usize)
            .collect();
        if idx.iter().any(|i| leak_malloc.contains(i)) {
            malloc += w.as_u64().unwrap();
            assert!(leak_malloc.contains(idx.last().unwrap()), "innermost last");
        }
    }
    assert_eq!(malloc, 300);
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

// A missing log is an error naming it (exit 2); an unknown format or metric, or no
// format at all, is a usage error (exit 2); a file that is not a log is refused.
#[test]
fn bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let junk = d.join("junk.mtr");
    std::fs::write(&junk, b"not a log").unwrap();
    let missing = d.join("missing.mtr");
    let out = d.join("out");
    let (m, j, o) = (
        missing.to_str().unwrap(),
        junk.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--format", "pprof", m, "-o", o], "missing.mtr"),
        (vec!["--format", "folded", m], "missing.mtr"),
        (vec!["--format", "speedscope", j, "-o", o], "junk.mtr"),
        (vec!["--format", "svg", m], "invalid value 'svg'"),
        (
            vec!["--format", "folded", "--metric", "rss", m],
            "invalid value 'rss'",
        ),
        (vec![m], "--format"),
    ];
    for (args, needle) in cases {
        let o = export(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(!out.exists(), "no output file on failure");
}
