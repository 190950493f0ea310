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

use std::collections::HashMap;
use std::path::Path;

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized};

/// A loaded ELF object, from a MODULE record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Path of the object as the target saw it.
    pub path: String,
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
#[derive(Clone, Debug, Default)]
pub struct Modules {
    list: Vec<Module>,
}

impl Modules {
    /// Records a loaded object.
    pub fn add(&mut self, m: Module) {
        self.list.push(m);
    }

    /// Marks the most recent still-loaded object at `bias`/`start` as unloaded at `time`.
    pub fn remove(&mut self, bias: u64, start: u64, time: u64) {
        if let Some(m) = self
            .list
            .iter_mut()
            .rev()
            .find(|m| m.bias == bias && m.start == start && m.unloaded.is_none())
        {
            m.unloaded = Some(time);
        }
    }

    /// The module holding `addr` at `time` (when known), else any module holding it.
    pub fn find(&self, addr: u64, time: Option<u64>) -> Option<usize> {
        let holds = |m: &Module| m.start <= addr && addr < m.end;
        let alive = |m: &Module, t: u64| m.loaded <= t && m.unloaded.is_none_or(|u| t <= u);
        let mut fallback = None;
        for (i, m) in self.list.iter().enumerate().rev() {
            if !holds(m) {
                continue;
            }
            match time {
                Some(t) if alive(m, t) => return Some(i),
                _ => {
                    fallback.get_or_insert(i);
                }
            }
        }
        fallback
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

/// One symbolized frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Demangled function name, if known.
    pub function: Option<String>,
    /// Source file, if known.
    pub file: Option<String>,
    /// Source line, if known.
    pub line: Option<u32>,
    /// Path of the module holding the address, if any.
    pub module: Option<String>,
    /// The recorded return address.
    pub address: u64,
    /// The function was inlined into the next frame.
    pub inlined: bool,
}

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
    inner: blazesym::symbolize::Symbolizer,
    /// Per module index: `None` when usable.
    checked: HashMap<usize, Option<Unusable>>,
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
            inner,
            checked: HashMap::new(),
            cache: HashMap::new(),
        }
    }

    /// Modules whose symbols could not be used, with the reason.
    pub fn unusable<'m>(&self, modules: &'m Modules) -> Vec<(&'m Module, Unusable)> {
        let mut v: Vec<_> = self
            .checked
            .iter()
            .filter_map(|(&i, u)| u.clone().map(|u| (i, u)))
            .collect();
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(i, u)| (modules.get(i), u)).collect()
    }

    fn check(&mut self, modules: &Modules, i: usize) -> Option<Unusable> {
        if let Some(r) = self.checked.get(&i) {
            return r.clone();
        }
        let m = modules.get(i);
        let path = Path::new(&m.path);
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
            file: None,
            line: None,
            module: module.map(|i| modules.get(i).path.clone()),
            address: addr,
            inlined: false,
        };
        let Some(i) = module else {
            return vec![bare];
        };
        if self.check(modules, i).is_some() {
            return vec![bare];
        }
        let m = modules.get(i);
        let virt = addr.wrapping_sub(1).wrapping_sub(m.bias);
        let src = Source::Elf(Elf::new(&m.path));
        let sym = match self.inner.symbolize_single(&src, Input::VirtOffset(virt)) {
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
            out.push(Frame {
                function: Some(demangle(&inl.name)),
                file,
                line,
                inlined: true,
                ..bare.clone()
            });
        }
        let (file, line) = loc(sym.code_info.as_deref());
        out.push(Frame {
            function: Some(demangle(&sym.name)),
            file,
            line,
            ..bare
        });
        out
    }
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
}
