//! pprof's `profile.proto` (github.com/google/pprof, `proto/profile.proto`),
//! gzip-compressed: the heap profile `go tool pprof` and Pyroscope read.
//!
//! The messages are derived by hand with `prost` (no build script, no
//! `protoc`); field numbers and types are the `.proto`'s. A test vendors the
//! official `.proto` (`tests/proto/profile.proto`) and decodes exports with
//! Python's protobuf package, an independent reader.
//!
//! ## What the profile holds
//! - Sample types, as Go's heap profiles: `alloc_objects/count`,
//!   `alloc_space/bytes` (every allocation of the run: the report's
//!   `allocated` list), `inuse_objects/count`, `inuse_space/bytes` (blocks
//!   live at exit: the report's heap leaks). The default sample type is
//!   `inuse_space`. Mmap leaks and the peak are not in it (Go's heap profile
//!   has no such types; the folded and speedscope exports have the peak).
//! - One sample per distinct stack, its location ids innermost first.
//! - One location per distinct return address of a module: `address` is the
//!   recorded return address (one past the call instruction), and the
//!   functions inlined at it are several `Line`s of that one location,
//!   innermost first, the function they were inlined into last.
//! - One mapping per loaded object the locations use, with its file name,
//!   GNU build-id (lowercase hex; empty when the object has none), and its
//!   address range when the log recorded the object. The main executable's
//!   mapping comes first when the log recorded it.
//! - Functions deduplicated by (name, system name, file): `name` demangled,
//!   `system_name` the symbol as the binary spells it.
//! - `time_nanos` (process start, wall clock), `duration_nanos`,
//!   `period_type` `space/bytes` with `period` the sampling interval (0 when
//!   every allocation was recorded; when sampled, values are the report's
//!   estimates), comments naming the exporter, the log and the command.
//!
//! ## Constraints
//! A frame names its module by path only. When the log recorded several
//! objects at one path (a library loaded, unloaded and loaded again), the
//! location goes to the latest one whose range holds the address: the same
//! choice the symbolizer makes when it has no time to go by.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

use super::{Input, NO_STACK, address_groups, exporter};
use crate::analysis::symbolize::{Frame, Module};

/// A profile (`perftools.profiles.Profile`).
#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    /// What each value of a sample means.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Loaded objects; the main binary first.
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// Locations referenced by samples.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions referenced by locations.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Strings referenced by index; `string_table[0]` is "".
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// Regexp of frames to drop (string index).
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// Regexp of frames to keep (string index).
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// Time of collection, nanoseconds since the Unix epoch.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// Duration of the profile.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// The kind of events between sampled occurrences.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// The number of events between sampled occurrences.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form comments (string indices).
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// The preferred sample type (string index).
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
    /// Documentation link (string index).
    #[prost(int64, tag = "15")]
    pub doc_url: i64,
}

/// The meaning of a value (`perftools.profiles.ValueType`).
#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    /// Type name (string index).
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// Unit (string index).
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// A stack and its values (`perftools.profiles.Sample`).
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Location ids, the leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per sample type.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels (none are written).
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// A sample's label (`perftools.profiles.Label`).
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Key (string index).
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String value (string index).
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// Numeric value.
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// Unit of `num` (string index).
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A loaded object (`perftools.profiles.Mapping`).
#[derive(Clone, PartialEq, Message)]
pub struct Mapping {
    /// Unique nonzero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Start of the mapped range.
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// End (exclusive) of the mapped range.
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// File offset of `memory_start`.
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// The object's file (string index).
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// Build-id, hex (string index).
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    /// Locations in it have function names.
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// Locations in it have file names.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// Locations in it have line numbers.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// Inlined functions were resolved.
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// An address and its functions (`perftools.profiles.Location`).
#[derive(Clone, PartialEq, Message)]
pub struct Location {
    /// Unique nonzero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Its mapping's id (0: none).
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// The instruction address (here the return address).
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Inlined functions first, the function they were inlined into last.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    /// Several symbols share the address.
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// A function and line of a location (`perftools.profiles.Line`).
#[derive(Clone, PartialEq, Message)]
pub struct Line {
    /// The function's id.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Source line (0: unknown).
    #[prost(int64, tag = "2")]
    pub line: i64,
    /// Source column (0: unknown).
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// A function (`perftools.profiles.Function`).
#[derive(Clone, PartialEq, Message)]
pub struct Function {
    /// Unique nonzero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Human-readable (demangled) name (string index).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// The name as the binary spells it (string index).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// Source file (string index).
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line of the function (0: unknown).
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// The sample types, in the order of each sample's values.
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Lowercase hex of a build-id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A location's identity: its module and return address, or the stand-in
/// for a stack that was not recorded.
#[derive(Clone, PartialEq, Eq, Hash)]
enum LocKey {
    Frame(Option<Arc<str>>, u64),
    NoStack,
}

/// A mapping's identity.
type MapKey = (Arc<str>, Vec<u8>, u64, u64);

struct Builder<'a> {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<Function>,
    function_ids: HashMap<(i64, i64, i64), u64>,
    locations: Vec<Location>,
    location_ids: HashMap<LocKey, u64>,
    mappings: Vec<Mapping>,
    mapping_ids: HashMap<MapKey, u64>,
    /// The log's modules by path, in the order recorded.
    by_path: HashMap<&'a str, Vec<&'a Module>>,
}

impl<'a> Builder<'a> {
    fn new(modules: &'a [Module]) -> Self {
        let mut by_path: HashMap<&str, Vec<&Module>> = HashMap::new();
        for m in modules {
            by_path.entry(&*m.path).or_default().push(m);
        }
        let mut b = Builder {
            strings: Vec::new(),
            string_ids: HashMap::new(),
            functions: Vec::new(),
            function_ids: HashMap::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
            mappings: Vec::new(),
            mapping_ids: HashMap::new(),
            by_path,
        };
        b.string(""); // index 0, as the format requires
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.string_ids.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), i);
        i
    }

    fn function(&mut self, name: &str, system_name: &str, file: &str) -> u64 {
        let key = (
            self.string(name),
            self.string(system_name),
            self.string(file),
        );
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        self.functions.push(Function {
            id,
            name: key.0,
            system_name: key.1,
            filename: key.2,
            start_line: 0,
        });
        self.function_ids.insert(key, id);
        id
    }

    /// The mapping of the object at `path` that holds `address`.
    fn mapping(&mut self, path: &Arc<str>, address: u64) -> u64 {
        let module = self.by_path.get(&**path).and_then(|ms| {
            ms.iter()
                .rev()
                .find(|m| m.start <= address && address < m.end)
                .or(ms.last())
                .copied()
        });
        let key: MapKey = match module {
            Some(m) => (path.clone(), m.build_id.clone(), m.start, m.end),
            None => (path.clone(), Vec::new(), 0, 0),
        };
        if let Some(&id) = self.mapping_ids.get(&key) {
            return id;
        }
        let id = self.mappings.len() as u64 + 1;
        let filename = self.string(path);
        let build_id = self.string(&hex(&key.1));
        self.mappings.push(Mapping {
            id,
            memory_start: key.2,
            memory_limit: key.3,
            file_offset: 0,
            filename,
            build_id,
            has_functions: false,
            has_filenames: false,
            has_line_numbers: false,
            has_inline_frames: false,
        });
        self.mapping_ids.insert(key, id);
        id
    }

    /// The location of one return address's frames (see [`address_groups`]).
    fn location(&mut self, group: &[Frame]) -> u64 {
        let Some(last) = group.last() else {
            return self.no_stack();
        };
        let key = LocKey::Frame(last.module.clone(), last.address);
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        let mapping_id = match &last.module {
            Some(path) => self.mapping(path, last.address),
            None => 0,
        };
        let mut lines = Vec::with_capacity(group.len());
        for f in group {
            let Some(name) = &f.function else { continue };
            let system = f.mangled.as_deref().unwrap_or(name);
            let function_id = self.function(name, system, f.file.as_deref().unwrap_or(""));
            lines.push(Line {
                function_id,
                line: f.line.map_or(0, i64::from),
                column: 0,
            });
        }
        if mapping_id != 0 {
            let m = &mut self.mappings[mapping_id as usize - 1];
            if !lines.is_empty() {
                m.has_functions = true;
                m.has_inline_frames = true;
            }
            m.has_filenames |= group.iter().any(|f| f.file.is_some());
            m.has_line_numbers |= group.iter().any(|f| f.line.is_some());
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(Location {
            id,
            mapping_id,
            address: last.address,
            line: lines,
            is_folded: false,
        });
        self.location_ids.insert(key, id);
        id
    }

    /// The one location standing for every stack that was not recorded.
    fn no_stack(&mut self) -> u64 {
        if let Some(&id) = self.location_ids.get(&LocKey::NoStack) {
            return id;
        }
        let function_id = self.function(NO_STACK, NO_STACK, "");
        let id = self.locations.len() as u64 + 1;
        self.locations.push(Location {
            id,
            mapping_id: 0,
            address: 0,
            line: vec![Line {
                function_id,
                line: 0,
                column: 0,
            }],
            is_folded: false,
        });
        self.location_ids.insert(LocKey::NoStack, id);
        id
    }

    /// A stack's location ids, innermost first.
    fn stack(&mut self, frames: &[Frame]) -> Vec<u64> {
        if frames.is_empty() {
            return vec![self.no_stack()];
        }
        address_groups(frames)
            .into_iter()
            .map(|g| self.location(g))
            .collect()
    }
}

/// The profile of an export's input (see the module docs for what it holds).
pub fn profile(input: &Input) -> Profile {
    let r = &input.report;
    let mut b = Builder::new(&input.modules);
    // The main executable's mapping first, as pprof expects, when recorded.
    if let Some(m) = input.modules.iter().find(|m| *m.path == *r.process.exe) {
        b.mapping(&m.path.clone(), m.start);
    }
    let sample_type: Vec<ValueType> = SAMPLE_TYPES
        .iter()
        .map(|(t, u)| ValueType {
            r#type: b.string(t),
            unit: b.string(u),
        })
        .collect();

    // Values by stack: [alloc_objects, alloc_space, inuse_objects, inuse_space].
    let mut samples: BTreeMap<Vec<u64>, [u64; 4]> = BTreeMap::new();
    let lists = [(&r.allocated, 0), (&r.heap_leaks, 2)];
    for (sites, at) in lists {
        for s in sites {
            if s.count == 0 && s.bytes == 0 {
                continue;
            }
            let ids = b.stack(&s.stack);
            let v = samples.entry(ids).or_default();
            v[at] = v[at].saturating_add(s.count);
            v[at + 1] = v[at + 1].saturating_add(s.bytes);
        }
    }
    let sample = samples
        .into_iter()
        .map(|(location_id, v)| Sample {
            location_id,
            value: v.iter().map(|&x| to_i64(x)).collect(),
            label: Vec::new(),
        })
        .collect();

    let mut comments = vec![exporter(), format!("log: {}", r.path.display())];
    if !r.process.cmdline.is_empty() {
        comments.push(format!("command: {}", r.process.cmdline.join(" ")));
    }
    comments.push(format!("pid: {}", r.process.pid));
    if r.summary.sample_interval != 0 {
        comments.push(format!(
            "sampled: one sample point per {} bytes on average; values are estimates",
            r.summary.sample_interval
        ));
    }
    let comment = comments.iter().map(|c| b.string(c)).collect();
    let period_type = Some(ValueType {
        r#type: b.string("space"),
        unit: b.string("bytes"),
    });
    let default_sample_type = b.string("inuse_space");
    Profile {
        sample_type,
        sample,
        mapping: b.mappings,
        location: b.locations,
        function: b.functions,
        string_table: b.strings,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: to_i64(input.start_realtime_ns),
        duration_nanos: (r.process.duration_ms * 1e6).round() as i64,
        period_type,
        period: to_i64(r.summary.sample_interval),
        comment,
        default_sample_type,
        doc_url: 0,
    }
}

/// The profile, serialized and gzip-compressed: the bytes of a `.pb.gz` file.
pub fn encode(input: &Input) -> std::io::Result<Vec<u8>> {
    let raw = profile(input).encode_to_vec();
    let mut gz = GzEncoder::new(
        Vec::with_capacity(raw.len() / 4 + 64),
        Compression::default(),
    );
    gz.write_all(&raw)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::frame;
    use crate::report::Site;
    use crate::testlog::*;
    use std::io::Read;

    /// A report with two leaking stacks and a third that only allocated,
    /// the first with inlined frames.
    fn input() -> Input {
        let mut c = LogBuilder::chunk(T0);
        c.stack(1, &[0x1234])
            .alloc(T0 + 2, 0x10, 40, 1)
            .alloc(T0 + 3, 0x20, 60, 1);
        let mut b = LogBuilder::new();
        b.push(0, &c).ended(T0 + 10);
        let mut r = crate::report::analyze_bytes(&b.bytes, &crate::flame::all()).unwrap();
        let inl: Arc<[Frame]> = vec![
            frame(Some("inner"), 0x10, true),
            frame(Some("outer"), 0x10, false),
            frame(Some("main"), 0x20, false),
        ]
        .into();
        let other: Arc<[Frame]> =
            vec![frame(None, 0x30, false), frame(Some("main"), 0x20, false)].into();
        let site = |bytes, count, stack: &Arc<[Frame]>| Site {
            bytes,
            count,
            func: None,
            kinds: None,
            heuristics: Default::default(),
            stack: stack.clone(),
        };
        r.heap_leaks = vec![site(40, 1, &inl), site(20, 2, &other)];
        r.allocated = vec![
            site(100, 3, &inl),
            site(20, 2, &other),
            site(5, 1, &Arc::from(vec![])),
        ];
        let m = Module {
            path: "/usr/bin/prog".into(),
            build_id: vec![0xab, 0x01],
            bias: 0,
            start: 0,
            end: 0x1000,
            loaded: 0,
            unloaded: None,
        };
        Input {
            report: r,
            modules: vec![m],
            start_realtime_ns: 1_700_000_000_000_000_000,
        }
    }

    /// Samples, locations with inlined lines, deduplicated functions and
    /// mappings, and the string table; the gzip round trip decodes.
    #[test]
    fn builds_the_profile() {
        let p = profile(&input());
        assert_eq!(p.string_table[0], "");
        let s = |i: i64| p.string_table[i as usize].as_str();
        let types: Vec<_> = p
            .sample_type
            .iter()
            .map(|t| (s(t.r#type), s(t.unit)))
            .collect();
        assert_eq!(types, SAMPLE_TYPES);
        assert_eq!(p.sample.len(), 3);
        let mut total = [0i64; 4];
        for smp in &p.sample {
            for (t, v) in total.iter_mut().zip(&smp.value) {
                *t += v;
            }
        }
        assert_eq!(total, [6, 125, 3, 60]);
        // 0x10 (inner+outer), 0x20 (main), 0x30 (unsymbolized), no-stack.
        assert_eq!(p.location.len(), 4);
        let l0 = &p.location[0];
        assert_eq!(l0.address, 0x10);
        let names: Vec<_> = l0
            .line
            .iter()
            .map(|l| s(p.function[l.function_id as usize - 1].name))
            .collect();
        assert_eq!(names, ["inner", "outer"]);
        assert!(p.location[2].line.is_empty());
        // inner, outer, main, [stack not recorded]
        assert_eq!(p.function.len(), 4);
        assert_eq!(s(p.function[0].system_name), "_Zinner");
        assert_eq!(p.mapping.len(), 1);
        assert_eq!(s(p.mapping[0].build_id), "ab01");
        assert_eq!(s(p.mapping[0].filename), "/usr/bin/prog");
        assert_eq!(p.mapping[0].memory_limit, 0x1000);
        assert!(p.mapping[0].has_functions && p.mapping[0].has_line_numbers);
        assert!(p.location.iter().all(|l| l.mapping_id <= 1));
        assert_eq!(s(p.default_sample_type), "inuse_space");
        assert!(s(p.comment[0]).starts_with("memtrace "));
        assert_eq!(p.time_nanos, 1_700_000_000_000_000_000);

        let gz = encode(&input()).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(Profile::decode(&raw[..]).unwrap(), p);
    }

    /// Without module information a frame's mapping has its path only.
    #[test]
    fn without_modules() {
        let mut i = input();
        i.modules.clear();
        let p = profile(&i);
        assert_eq!(p.mapping.len(), 1);
        assert_eq!(p.mapping[0].build_id, 0);
        assert_eq!(p.mapping[0].memory_limit, 0);
    }
}
