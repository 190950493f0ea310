//! Frame addresses to functions, source lines and inlined frames.
//!
//! A frame is a return address recorded in the target: it is mapped to the
//! module (ELF object) whose `[start, end)` holds it and whose lifetime
//! (MODULE time up to UNMODULE time) covers the stack's first use, falling
//! back to any module that holds it. The module file is symbolized with
//! blazesym at the ELF virtual address `addr - 1 - bias`: `- 1` puts the
//! address inside the call instruction, so the line is the call's, not the
//! next statement's.
//!
//! ## Invariants
//! - Each distinct (module, address) is symbolized once (cached).
//! - A module whose file is missing, not absolute (the vdso), unreadable, or
//!   whose build-id differs from the recorded one yields frames that keep the
//!   module and address but have no function: symbols from another build
//!   would be wrong, and silently so.
//! - An address in no module yields a frame with neither module nor function.
//! - Names are demangled here, not by blazesym, and only when they look
//!   mangled (`_Z...` for C++ and legacy Rust, `_R...` for Rust v0): a C
//!   function called `b` is not the C++ type code for `bool`.
//! - One address can become several frames: inlined functions come first
//!   (innermost first, `inlined: true`), then the function they were inlined
//!   into.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized};

/// A loaded ELF object, from a MODULE record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Path of the object as the target saw it (shared by every frame in it).
    pub path: Arc<str>,
    /// GNU build-id (empty when the object has none).
    pub build_id: Vec<u8>,
    /// Load bias: ELF virtual address = runtime address - bias.
    pub bias: u64,
    /// Start of the mapped range.
    pub start: u64,
    /// End (exclusive) of the mapped range.
    pub end: u64,
    /// When the object was seen loaded.
    pub loaded: u64,
    /// When it was unloaded, if it was.
    pub unloaded: Option<u64>,
}

/// All modules of a log.
///
/// Lookups are logarithmic whatever the log holds (a program that calls
/// `dlopen`/`dlclose` in a loop records a module per cycle, and a hostile
/// log can record millions): [`Modules::remove`] finds the instance to close
/// in a map, and [`Modules::find`] uses a segment tree over the modules'
/// address ranges, built on first use after the last change.
#[derive(Clone, Debug, Default)]
pub struct Modules {
    list: Vec<Module>,
    /// Indices of the instances not yet unloaded, by (bias, start), oldest first.
    open: HashMap<(u64, u64), Vec<usize>>,
    tree: OnceCell<RangeTree>,
}

/// A segment tree over the elementary intervals between module boundaries.
/// Each module sits in the O(log n) nodes that exactly cover its range, so
/// the modules holding an address are those in the nodes on the path from
/// its leaf to the root.
#[derive(Clone, Debug, Default)]
struct RangeTree {
    /// Sorted distinct range boundaries; leaf `i` is `[bounds[i], bounds[i + 1])`.
    bounds: Vec<u64>,
    /// Number of leaves, rounded up to a power of two.
    leaves: usize,
    /// Per node (1-based heap layout): module indices sorted by load time, then index.
    nodes: Vec<Vec<usize>>,
    /// Per node: the largest module index in it.
    max: Vec<Option<usize>>,
}

impl RangeTree {
    fn build(list: &[Module]) -> RangeTree {
        let mut bounds: Vec<u64> = list
            .iter()
            .filter(|m| m.start < m.end)
            .flat_map(|m| [m.start, m.end])
            .collect();
        bounds.sort_unstable();
        bounds.dedup();
        let leaves = bounds.len().saturating_sub(1).max(1).next_power_of_two();
        let mut nodes: Vec<Vec<usize>> = vec![Vec::new(); 2 * leaves];
        let leaf = |a: u64| bounds.partition_point(|&b| b < a);
        for (i, m) in list.iter().enumerate().filter(|(_, m)| m.start < m.end) {
            // Iterative bottom-up cover of the leaves [l, r).
            let (mut l, mut r) = (leaf(m.start) + leaves, leaf(m.end) + leaves);
            while l < r {
                if l & 1 == 1 {
                    nodes[l].push(i);
                    l += 1;
                }
                if r & 1 == 1 {
                    r -= 1;
                    nodes[r].push(i);
                }
                l >>= 1;
                r >>= 1;
            }
        }
        let max = nodes.iter().map(|n| n.iter().copied().max()).collect();
        for n in &mut nodes {
            n.sort_by_key(|&i| (list[i].loaded, i));
        }
        RangeTree {
            bounds,
            leaves,
            nodes,
            max,
        }
    }

    /// See [`Modules::find`]. Among the holders of `addr` in one node, the
    /// one alive at `time` is taken to be the last loaded at or before it: in
    /// a real process two objects never occupy the same address at once.
    fn find(&self, list: &[Module], addr: u64, time: Option<u64>) -> Option<usize> {
        let k = self.bounds.partition_point(|&b| b <= addr);
        if k == 0 || k >= self.bounds.len() {
            return None;
        }
        let mut node = k - 1 + self.leaves;
        let (mut alive, mut any) = (None::<usize>, None::<usize>);
        while node >= 1 {
            any = any.max(self.max[node]);
            if let Some(t) = time {
                let n = &self.nodes[node];
                let p = n.partition_point(|&i| list[i].loaded <= t);
                if let Some(&i) = p.checked_sub(1).and_then(|p| n.get(p))
                    && list[i].unloaded.is_none_or(|u| t <= u)
                {
                    alive = alive.max(Some(i));
                }
            }
            node >>= 1;
        }
        alive.or(any)
    }
}

impl Modules {
    /// Records a loaded object.
    pub fn add(&mut self, m: Module) {
        self.open
            .entry((m.bias, m.start))
            .or_default()
            .push(self.list.len());
        self.list.push(m);
        self.tree = OnceCell::new();
    }

    /// Marks the most recent still-loaded object at `bias`/`start` as unloaded at `time`.
    pub fn remove(&mut self, bias: u64, start: u64, time: u64) {
        let Some(open) = self.open.get_mut(&(bias, start)) else {
            return;
        };
        if let Some(i) = open.pop() {
            self.list[i].unloaded = Some(time);
            self.tree = OnceCell::new();
        }
        if open.is_empty() {
            self.open.remove(&(bias, start));
        }
    }

    /// The module holding `addr` at `time` (when known), else any module
    /// holding it; the most recently recorded one when several qualify.
    pub fn find(&self, addr: u64, time: Option<u64>) -> Option<usize> {
        self.tree
            .get_or_init(|| RangeTree::build(&self.list))
            .find(&self.list, addr, time)
    }

    /// The module at index `i` (from [`Modules::find`]).
    pub fn get(&self, i: usize) -> &Module {
        &self.list[i]
    }

    /// Number of modules recorded.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No modules recorded.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

pub use crate::frames::Frame;

/// Why a module's symbols are not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// The file does not exist (or is not an absolute path, like the vdso).
    Missing,
    /// The file's build-id differs from the recorded one.
    BuildIdMismatch,
    /// The file could not be read as ELF.
    Unreadable(String),
}

/// Symbolizes frames with a cache; one per report.
pub struct Symbolizer {
    /// `None`: symbolization is off, frames keep only module and address.
    inner: Option<blazesym::symbolize::Symbolizer>,
    /// Per module index: `None` when usable.
    checked: HashMap<usize, Option<Unusable>>,
    /// Per file (path and recorded build-id): the check's outcome, so a
    /// library loaded many times is read once.
    checked_files: HashMap<(Arc<str>, Vec<u8>), Option<Unusable>>,
    cache: HashMap<(Option<usize>, u64), Vec<Frame>>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    /// A symbolizer with demangling, source lines and inlined frames.
    pub fn new() -> Self {
        let inner = blazesym::symbolize::Symbolizer::builder()
            .enable_code_info(true)
            .enable_inlined_fns(true)
            .enable_demangling(false)
            .build();
        Symbolizer {
            inner: Some(inner),
            checked: HashMap::new(),
            checked_files: HashMap::new(),
            cache: HashMap::new(),
        }
    }

    /// A symbolizer that reads no file: every frame keeps its module and
    /// address only (for fuzzing and for logs from another machine).
    pub fn disabled() -> Self {
        Symbolizer {
            inner: None,
            checked: HashMap::new(),
            checked_files: HashMap::new(),
            cache: HashMap::new(),
        }
    }

    /// Modules whose symbols could not be used, with the reason; one entry
    /// per path (a library loaded many times is named once).
    pub fn unusable<'m>(&self, modules: &'m Modules) -> Vec<(&'m Module, Unusable)> {
        let mut v: Vec<_> = self
            .checked
            .iter()
            .filter_map(|(&i, u)| u.clone().map(|u| (i, u)))
            .collect();
        v.sort_by_key(|(i, _)| *i);
        let mut seen = std::collections::HashSet::new();
        v.into_iter()
            .map(|(i, u)| (modules.get(i), u))
            .filter(|(m, _)| seen.insert(m.path.clone()))
            .collect()
    }

    fn check(&mut self, modules: &Modules, i: usize) -> Option<Unusable> {
        if let Some(r) = self.checked.get(&i) {
            return r.clone();
        }
        let m = modules.get(i);
        let key = (m.path.clone(), m.build_id.clone());
        if let Some(r) = self.checked_files.get(&key) {
            let r = r.clone();
            self.checked.insert(i, r.clone());
            return r;
        }
        let path = Path::new(&*m.path);
        let r = if !path.is_absolute() || !path.is_file() {
            Some(Unusable::Missing)
        } else {
            match blazesym::helper::read_elf_build_id(path) {
                Ok(found) => {
                    if !m.build_id.is_empty() && found.as_deref() != Some(&m.build_id[..]) {
                        Some(Unusable::BuildIdMismatch)
                    } else {
                        None
                    }
                }
                Err(e) => Some(Unusable::Unreadable(e.to_string())),
            }
        };
        self.checked.insert(i, r.clone());
        self.checked_files.insert(key, r.clone());
        r
    }

    /// Symbolizes a stack (innermost first) first used at `time`.
    pub fn stack(&mut self, modules: &Modules, frames: &[u64], time: Option<u64>) -> Vec<Frame> {
        let mut out = Vec::with_capacity(frames.len());
        for &addr in frames {
            let module = modules.find(addr, time);
            if let Some(f) = self.cache.get(&(module, addr)) {
                out.extend_from_slice(f);
                continue;
            }
            let f = self.frame(modules, module, addr);
            out.extend_from_slice(&f);
            self.cache.insert((module, addr), f);
        }
        out
    }

    fn frame(&mut self, modules: &Modules, module: Option<usize>, addr: u64) -> Vec<Frame> {
        let bare = Frame {
            function: None,
            mangled: None,
            file: None,
            line: None,
            module: module.map(|i| modules.get(i).path.clone()),
            address: addr,
            offset: module.map(|i| addr.wrapping_sub(modules.get(i).bias)),
            inlined: false,
        };
        let Some(i) = module else {
            return vec![bare];
        };
        if self.inner.is_none() || self.check(modules, i).is_some() {
            return vec![bare];
        }
        let Some(inner) = &self.inner else {
            return vec![bare];
        };
        let m = modules.get(i);
        let virt = addr.wrapping_sub(1).wrapping_sub(m.bias);
        let src = Source::Elf(Elf::new(&*m.path));
        let sym = match inner.symbolize_single(&src, Input::VirtOffset(virt)) {
            Ok(Symbolized::Sym(sym)) => sym,
            Ok(Symbolized::Unknown(_)) => return vec![bare],
            Err(e) => {
                self.checked
                    .insert(i, Some(Unusable::Unreadable(e.to_string())));
                return vec![bare];
            }
        };
        let loc = |ci: Option<&CodeInfo<'_>>| match ci {
            Some(ci) => (Some(ci.to_path().display().to_string()), ci.line),
            None => (None, None),
        };
        let mut out = Vec::with_capacity(1 + sym.inlined.len());
        for inl in sym.inlined.iter().rev() {
            let (file, line) = loc(inl.code_info.as_ref());
            let (function, mangled) = names(&inl.name);
            out.push(Frame {
                function,
                mangled,
                file,
                line,
                inlined: true,
                ..bare.clone()
            });
        }
        let (file, line) = loc(sym.code_info.as_deref());
        let (function, mangled) = names(&sym.name);
        out.push(Frame {
            function,
            mangled,
            file,
            line,
            ..bare
        });
        out
    }
}

/// A frame's function name, demangled, and the symbol's own name if that differs.
fn names(symbol: &str) -> (Option<String>, Option<String>) {
    let d = demangle(symbol);
    let mangled = (d != symbol).then(|| symbol.to_owned());
    (Some(d), mangled)
}

/// Demangles a Rust or C++ symbol name; returns other names unchanged.
/// Rust names lose their hash (`{:#}`), as in panics and backtraces.
pub fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z")
        && let Ok(sym) = cpp_demangle::Symbol::new(name)
        && let Ok(s) = sym.demangle()
    {
        return s;
    }
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker() -> u64 {
        std::hint::black_box(7)
    }

    fn module(path: &str, start: u64, end: u64, loaded: u64, unloaded: Option<u64>) -> Module {
        Module {
            path: path.into(),
            build_id: vec![],
            bias: start,
            start,
            end,
            loaded,
            unloaded,
        }
    }

    /// C++ and Rust names are demangled; plain C names are left alone.
    #[test]
    fn demangling() {
        assert_eq!(demangle("_ZN2ns6Widget4makeEv"), "ns::Widget::make()");
        assert_eq!(demangle("_Z8leak_cppi"), "leak_cpp(int)");
        assert_eq!(
            demangle("_ZN9rust_leak13leak_rust_box17h0123456789abcdefE"),
            "rust_leak::leak_rust_box"
        );
        assert_eq!(demangle("b"), "b");
        assert_eq!(demangle("main"), "main");
        assert_eq!(demangle("_Zgarbage"), "_Zgarbage");
    }

    /// A frame maps to the module alive when the stack was used, else to any module holding it.
    #[test]
    fn module_lifetimes() {
        let mut m = Modules::default();
        m.add(module("/a.so", 0x1000, 0x2000, 10, None));
        m.remove(0x1000, 0x1000, 20);
        m.add(module("/b.so", 0x1000, 0x3000, 30, None));
        assert_eq!(m.find(0x1800, Some(15)), Some(0));
        assert_eq!(m.find(0x1800, Some(35)), Some(1));
        assert_eq!(m.find(0x2800, Some(15)), Some(1));
        assert_eq!(m.find(0x5000, Some(15)), None);
    }

    /// Missing files and wrong build-ids keep module and address but give no function.
    #[test]
    fn unusable_modules_have_no_function() {
        let mut m = Modules::default();
        m.add(module("[vdso]", 0x1000, 0x2000, 0, None));
        m.add(module("/nonexistent/lib.so", 0x3000, 0x4000, 0, None));
        let exe = std::env::current_exe().unwrap();
        let mut wrong = module(exe.to_str().unwrap(), 0x5000, 0x6000, 0, None);
        wrong.build_id = vec![1, 2, 3];
        m.add(wrong);
        let mut s = Symbolizer::new();
        let f = s.stack(&m, &[0x1100, 0x3100, 0x5100, 0x9000], Some(1));
        assert_eq!(f.len(), 4);
        assert!(f.iter().all(|f| f.function.is_none()));
        assert_eq!(f[0].module.as_deref(), Some("[vdso]"));
        assert_eq!(f[1].address, 0x3100);
        assert_eq!(f[3].module, None);
        assert_eq!(s.unusable(&m).len(), 3);
    }

    /// A return address in this test binary symbolizes to the function containing the call.
    #[test]
    fn symbolizes_own_binary() {
        let exe = std::env::current_exe().unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let addr = marker as *const () as usize as u64 + 1;
        // Bias: the lowest mapping of our own file, offset 0 (PIE: first PT_LOAD at vaddr 0).
        let exe_s = exe.to_str().unwrap();
        let (mut start, mut end) = (u64::MAX, 0);
        for l in maps.lines().filter(|l| l.ends_with(exe_s)) {
            let r = l.split_whitespace().next().unwrap();
            let (a, b) = r.split_once('-').unwrap();
            start = start.min(u64::from_str_radix(a, 16).unwrap());
            end = end.max(u64::from_str_radix(b, 16).unwrap());
        }
        let mut m = Modules::default();
        m.add(Module {
            path: exe_s.into(),
            build_id: vec![],
            bias: start,
            start,
            end,
            loaded: 0,
            unloaded: None,
        });
        let mut s = Symbolizer::new();
        let f = s.stack(&m, &[addr], None);
        let last = f.last().unwrap();
        assert!(
            last.function.as_deref().unwrap_or("").contains("marker"),
            "{f:?}"
        );
        assert_eq!(last.module.as_deref(), Some(exe_s));
    }

    /// The linear scan `find` replaced, as the reference.
    fn find_slow(m: &[Module], addr: u64, time: Option<u64>) -> Option<usize> {
        let holds = |m: &Module| m.start <= addr && addr < m.end;
        let alive = |m: &Module, t: u64| m.loaded <= t && m.unloaded.is_none_or(|u| t <= u);
        let mut fallback = None;
        for (i, m) in m.iter().enumerate().rev() {
            if holds(m) {
                match time {
                    Some(t) if alive(m, t) => return Some(i),
                    _ => {
                        fallback.get_or_insert(i);
                    }
                }
            }
        }
        fallback
    }

    /// The range tree agrees with a linear scan on logs where, as in a real
    /// process, no two objects hold one address at the same time.
    #[test]
    fn find_agrees_with_linear_scan() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..50 {
            let mut m = Modules::default();
            let mut list = Vec::new();
            let mut t = 0;
            // A handful of slots; each is reloaded (maybe with another size) over time.
            for _ in 0..rnd(40) {
                t += 1 + rnd(5);
                let slot = rnd(6) * 0x1000;
                let end = slot + 0x100 + rnd(0x2000);
                // Unload whatever overlaps first, as a real loader would have.
                for (i, o) in list.iter_mut().enumerate() {
                    let o: &mut Module = o;
                    if o.unloaded.is_none() && o.start < end && slot < o.end {
                        o.unloaded = Some(t);
                        m.remove(o.bias, o.start, t);
                        let _ = i;
                    }
                }
                t += 1;
                let md = module("/x.so", slot, end, t, None);
                list.push(md.clone());
                m.add(md);
            }
            for _ in 0..200 {
                let addr = rnd(0x8000);
                let time = if rnd(4) == 0 { None } else { Some(rnd(t + 3)) };
                assert_eq!(
                    m.find(addr, time),
                    find_slow(&list, addr, time),
                    "{addr:#x} {time:?}"
                );
            }
        }
    }

    /// Many overlapping modules and many UNMODULE records stay fast (both
    /// used to be linear scans per frame and per record).
    #[test]
    fn many_modules_stay_fast() {
        let mut m = Modules::default();
        let n = 100_000u64;
        for i in 0..n {
            m.add(module(
                "/x.so",
                0x1000 + (i % 7) * 0x10,
                0x9000_0000 - i,
                i * 2,
                None,
            ));
        }
        for i in 0..n {
            m.remove(0x1000 + (i % 7) * 0x10, 0x1000 + (i % 7) * 0x10, i * 2 + 1);
        }
        let start = std::time::Instant::now();
        for a in 0..n {
            assert!(m.find(0x2000 + a, Some(a)).is_some());
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    /// Every frame in a module shares its path: a long path is not copied per frame.
    #[test]
    fn frames_share_the_module_path() {
        let mut m = Modules::default();
        m.add(module(&"/p".repeat(30000), 0x1000, 0x2000, 0, None));
        let mut s = Symbolizer::disabled();
        let f = s.stack(&m, &[0x1100, 0x1200, 0x1100], None);
        let a = f[0].module.as_ref().unwrap();
        assert!(f.iter().all(|g| Arc::ptr_eq(g.module.as_ref().unwrap(), a)));
        assert!(f.iter().all(|g| g.function.is_none()));
    }
}
