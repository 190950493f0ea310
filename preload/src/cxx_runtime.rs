//! Finding the C++ runtime's own operators for [`crate::cxx`].
//!
//! The operator hooks forward to the next definition, found with
//! `dlsym(RTLD_NEXT)`. That finds nothing when the C++ runtime was loaded by
//! a `dlopen(RTLD_LOCAL)`: a plugin that needs libstdc++ in a C program (GNU
//! `ar` loading binutils' LLVM plugin). Its libraries still bind their
//! `operator new` to ours — memtrace is in the global scope, searched first —
//! so the hook must find the runtime in the plugin's local scope: the loaded
//! objects named `libstdc++*` or `libc++*` are opened again (`RTLD_NOLOAD`,
//! which only takes a reference) and asked by handle. Called outside any
//! recording, on the hook's first use while the definition is unknown.

use core::ffi::{CStr, c_char, c_int, c_void};
use core::sync::atomic::Ordering;

/// Names of candidate runtimes copied during `dl_iterate_phdr` (an object
/// may be unloaded once the iteration ends; its name with it).
const MAX: usize = 4;
const NAME: usize = 512;

struct Found {
    n: usize,
    names: [[u8; NAME]; MAX],
}

/// Whether the file name of `path` begins with a C++ runtime's name.
fn is_runtime(path: &[u8]) -> bool {
    let file = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    file.starts_with(b"libstdc++") || file.starts_with(b"libc++")
}

unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our `Found`.
    let (info, found) = unsafe { (&*info, &mut *(data as *mut Found)) };
    if info.dlpi_name.is_null() || found.n == MAX {
        return 0;
    }
    // SAFETY: a loaded object's name is a NUL-terminated string while the
    // iteration holds the loader's lock.
    let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
    if name.len() < NAME && is_runtime(name) {
        let slot = &mut found.names[found.n];
        slot[..name.len()].copy_from_slice(name);
        slot[name.len()] = 0;
        found.n += 1;
    }
    0
}

/// The definition of `symbol` in a C++ runtime loaded outside the global
/// scope, other than `own` (ours); 0 if there is none.
pub fn find(symbol: &CStr, own: usize) -> usize {
    let mut found = Found {
        n: 0,
        names: [[0; NAME]; MAX],
    };
    // SAFETY: the callback only reads the info it is given and writes `found`.
    unsafe { libc::dl_iterate_phdr(Some(collect), &mut found as *mut Found as *mut c_void) };
    let open = crate::modules::MEMTRACE_REAL_DLOPEN.load(Ordering::Acquire);
    let close = crate::real::DLCLOSE.get();
    if open == 0 || close == 0 {
        return 0;
    }
    // SAFETY: the real dlopen and dlclose, with their C signatures.
    let (open, close) = unsafe {
        (
            core::mem::transmute::<usize, unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void>(
                open,
            ),
            core::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void) -> c_int>(close),
        )
    };
    for name in &found.names[..found.n] {
        // SAFETY: a NUL-terminated copy; RTLD_NOLOAD never loads anything.
        let h = unsafe {
            open(
                name.as_ptr() as *const c_char,
                libc::RTLD_NOLOAD | libc::RTLD_LAZY,
            )
        };
        if h.is_null() {
            continue;
        }
        // SAFETY: a handle just returned, a NUL-terminated name.
        let a = unsafe { libc::dlsym(h, symbol.as_ptr()) } as usize;
        // SAFETY: gives back the reference RTLD_NOLOAD took.
        unsafe { close(h) };
        if a != 0 && a != own {
            return a;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn runtimes_are_named() {
        assert!(super::is_runtime(
            b"/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
        ));
        assert!(super::is_runtime(b"libc++.so.1"));
        assert!(!super::is_runtime(b"/opt/libstdc++/libz3.so.4"));
        assert!(!super::is_runtime(b"/lib/libc.so.6"));
    }
}
