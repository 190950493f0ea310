//! Frames and stacks: what one symbolized return address says, and the one
//! rule every list, renderer, export and the gate use to merge, name and
//! identify a stack — so `memtrace check` and the HTML page never disagree
//! about the same stack.
//!
//! - [`Frame`]: one frame as the symbolizer gives it (function, file, line,
//!   module, address, inlined).
//! - [`merge_key`]: when two stacks are the same stack — every frame the same
//!   function, file, line and inlined flag, or, where the function is unknown,
//!   the same module and address. A stack that was not recorded is never the
//!   same as another: nothing says it is.
//! - [`naming_frame`] and [`name`]: the frame a stack is named by (the
//!   innermost one of the program itself, past the C, C++ and Rust runtimes:
//!   `strdup`'s caller, not `strdup`) and how that name is written.
//! - [`stack_key`]: a leak's identity across runs and builds (baselines):
//!   function names only, no addresses, lines or pids.
//! - [`above_main`]: the frames shown, down to `main`, as valgrind shows them.
//! - [`label`]: one frame in one line (folded stacks, flame graphs).
//!
//! Uses nothing of the crate: it is the shared vocabulary below every layer.

use std::sync::Arc;

/// One symbolized frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Demangled function name, if known.
    pub function: Option<String>,
    /// The symbol's name as the binary spells it, when demangling changed
    /// it (valgrind's suppressions name C++ functions this way).
    pub mangled: Option<String>,
    /// Source file, if known.
    pub file: Option<String>,
    /// Source line, if known.
    pub line: Option<u32>,
    /// Path of the module holding the address, if any.
    pub module: Option<Arc<str>>,
    /// The recorded return address.
    pub address: u64,
    /// The address in the module's own ELF address space (the runtime
    /// address minus the module's load bias): what `addr2line -e MODULE`
    /// takes, the same in every run. `None` outside any module.
    pub offset: Option<u64>,
    /// The function was inlined into the next frame.
    pub inlined: bool,
}

/// What makes two frames the same frame: function, file, line and inlined
/// flag when the function is known; module and address when it is not.
pub type FrameKey<'a> = (Option<&'a str>, Option<&'a str>, Option<u32>, bool, u64);

/// A frame's [`FrameKey`].
pub fn frame_key(f: &Frame) -> FrameKey<'_> {
    match &f.function {
        Some(func) => (Some(func.as_str()), f.file.as_deref(), f.line, f.inlined, 0),
        None => (None, f.module.as_deref(), None, f.inlined, f.address),
    }
}

/// The key under which stacks merge: equal keys are the same stack. `None`
/// for a stack that was not recorded, which merges with no other.
pub fn merge_key(stack: &[Frame]) -> Option<Vec<FrameKey<'_>>> {
    if stack.is_empty() {
        return None;
    }
    Some(stack.iter().map(frame_key).collect())
}

/// The last component of a path.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether a frame is in the C, C++ or Rust runtime (libc's `strdup`,
/// libstdc++, the standard library's containers): a stack is named by the
/// caller of such frames.
pub fn in_runtime(f: &Frame) -> bool {
    const LIBS: [&str; 8] = [
        "libc.so",
        "libc-",
        "ld-linux",
        "libstdc++.so",
        "libgcc_s.so",
        "libm.so",
        "libpthread.so",
        "libdl.so",
    ];
    const NAMESPACES: [&str; 7] = [
        "std::",
        "__gnu_cxx::",
        "alloc::",
        "core::",
        "<alloc::",
        "<core::",
        "<std::",
    ];
    let lib = f.module.as_deref().is_some_and(|m| {
        let name = file_name(m);
        LIBS.iter().any(|l| name.starts_with(l))
    });
    // A demangled template function may start with its return type: `void std::...`.
    let ns = f.function.as_deref().is_some_and(|n| {
        let bare = match n.split_once(' ') {
            Some((ret, rest)) if ret.chars().all(|c| c.is_alphanumeric() || c == '_') => rest,
            _ => n,
        };
        NAMESPACES
            .iter()
            .any(|p| n.starts_with(p) || bare.starts_with(p))
    });
    lib || ns
}

/// The frame a stack is named by: the innermost one outside the runtime
/// ([`in_runtime`]) with a function and a source file, else outside the
/// runtime with a function, else the innermost with a function, else the
/// innermost.
pub fn naming_frame(stack: &[Frame]) -> Option<&Frame> {
    let own = |f: &&Frame| f.function.is_some() && !in_runtime(f);
    stack
        .iter()
        .filter(own)
        .find(|f| f.file.is_some())
        .or_else(|| stack.iter().find(own))
        .or_else(|| stack.iter().find(|f| f.function.is_some()))
        .or_else(|| stack.first())
}

/// A frame's function, or its [`address_text`] when the function is
/// unknown.
pub fn function_or_address(f: &Frame) -> String {
    match &f.function {
        Some(func) => func.clone(),
        None => address_text(f),
    }
}

/// Where a frame is without its function: `libx.so+0x1a2b` (the module's
/// file name and the [`Frame::offset`], what `addr2line -e` takes), else the
/// absolute address `0x4011d6`.
pub fn address_text(f: &Frame) -> String {
    match (&f.module, f.offset) {
        (Some(m), Some(off)) => format!("{}+{off:#x}", file_name(m)),
        _ => format!("{:#x}", f.address),
    }
}

/// The name of a stack in messages and generated names: its
/// [`naming_frame`]'s function or address.
pub fn name(stack: &[Frame]) -> String {
    naming_frame(stack)
        .map(function_or_address)
        .unwrap_or_else(|| "an unrecorded stack".into())
}

/// The key that identifies a leak's stack across runs and builds: the kind,
/// then each frame's function name (else its module's file name, else `?`),
/// innermost first. Addresses, lines and pids are left out: they change
/// with every build or run. Takes `(function, module)` pairs, so a stack
/// read back from a JSON report keys the same as a symbolized one.
pub fn stack_key<'a>(
    kind: &str,
    frames: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> String {
    let mut key = String::from(kind);
    key.push('|');
    for (i, (function, module)) in frames.enumerate() {
        if i > 0 {
            key.push(';');
        }
        match (function, module) {
            (Some(f), _) => key.push_str(f),
            (None, Some(m)) => key.push_str(file_name(m)),
            (None, None) => key.push('?'),
        }
    }
    key
}

/// [`stack_key`] of symbolized frames.
pub fn key_of(kind: &str, stack: &[Frame]) -> String {
    stack_key(
        kind,
        stack
            .iter()
            .map(|f| (f.function.as_deref(), f.module.as_deref())),
    )
}

/// The frames down to `main`, as valgrind shows stacks (`--show-below-main=no`):
/// the C library's start-up frames under it say nothing. In Rust programs,
/// the frames down to the one under `__rust_begin_short_backtrace`, as Rust's
/// own backtraces show them.
pub fn above_main(stack: &[Frame]) -> &[Frame] {
    for (i, f) in stack.iter().enumerate() {
        match f.function.as_deref() {
            Some("main") => return &stack[..=i],
            Some(n) if n.ends_with("__rust_begin_short_backtrace") && i > 0 => {
                // Skip the closure-call frames between it and the program's main.
                let mut end = i;
                while end > 1
                    && stack[end - 1]
                        .function
                        .as_deref()
                        .is_some_and(|n| n.starts_with("core::ops::function::"))
                {
                    end -= 1;
                }
                return &stack[..end];
            }
            _ => {}
        }
    }
    stack
}

/// A frame in one line: its function, else `libx.so+0x20` ([`address_text`]),
/// else `0x20 (libx.so)`, else `0x20`;
/// `;` becomes `:` (it separates the frames of a folded stack) and control
/// characters become spaces (they would break the line, and XML).
pub fn label(f: &Frame) -> String {
    let name = match (&f.function, &f.module) {
        (Some(func), _) => func.clone(),
        (None, Some(m)) if f.offset.is_none() => format!("{:#x} ({})", f.address, file_name(m)),
        (None, _) => address_text(f),
    };
    name.chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: Option<&str>, module: Option<&str>, address: u64) -> Frame {
        Frame {
            function: function.map(str::to_owned),
            mangled: None,
            file: None,
            line: None,
            module: module.map(Arc::from),
            address,
            offset: None,
            inlined: false,
        }
    }

    #[test]
    fn stacks_merge_by_symbol_or_by_address() {
        let a = [
            frame(Some("f"), Some("/a"), 1),
            frame(None, Some("/lib"), 7),
        ];
        let b = [
            frame(Some("f"), Some("/b"), 2),
            frame(None, Some("/lib"), 7),
        ];
        let c = [
            frame(Some("f"), Some("/a"), 1),
            frame(None, Some("/lib"), 8),
        ];
        assert_eq!(merge_key(&a), merge_key(&b));
        assert_ne!(merge_key(&a), merge_key(&c));
        let mut inl = a.clone();
        inl[0].inlined = true;
        assert_ne!(merge_key(&a), merge_key(&inl));
        assert_eq!(merge_key(&[]), None);
    }

    #[test]
    fn stacks_are_named_past_the_runtime() {
        let mut own = frame(Some("make_name"), Some("/bin/app"), 3);
        own.file = Some("app.c".into());
        let stack = [
            frame(
                Some("strdup"),
                Some("/usr/lib/x86_64-linux-gnu/libc.so.6"),
                1,
            ),
            frame(Some("std::vector<int>::push_back"), Some("/bin/app"), 2),
            own,
            frame(Some("main"), Some("/bin/app"), 4),
        ];
        assert_eq!(name(&stack), "make_name");
        assert_eq!(name(&stack[..2]), "strdup");
        assert_eq!(name(&[frame(None, None, 0x4011d6)]), "0x4011d6");
        assert_eq!(name(&[]), "an unrecorded stack");
    }

    #[test]
    fn keys_and_labels() {
        let s = [
            frame(Some("leak"), None, 1),
            frame(None, Some("/lib/libc.so.6"), 2),
            frame(None, None, 3),
        ];
        assert_eq!(key_of("heap", &s), "heap|leak;libc.so.6;?");
        assert_eq!(label(&s[1]), "0x2 (libc.so.6)");
        assert_eq!(label(&frame(Some("a;b\nc"), None, 0)), "a:b c");
        let below = [
            frame(Some("f"), None, 1),
            frame(Some("main"), None, 2),
            frame(Some("__libc_start_main"), None, 3),
        ];
        assert_eq!(above_main(&below).len(), 2);
    }
}
