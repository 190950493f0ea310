//! A program's own LeakSanitizer suppressions: the string its
//! `__lsan_default_suppressions()` returns, which LSan applies to that
//! program's leaks, and `memtrace check` does too (for that program's
//! processes only: [`Suppression::program`](super::Suppression::program)).
//!
//! LSan calls the function inside the process; memtrace does not run code of
//! the program, so it reads the string out of the executable: the function
//! is found in the ELF symbol tables, its first instructions are searched
//! for the `lea disp32(%rip), %rax` that loads the string's address (what
//! gcc and clang emit for `return "...";` at every optimization level, with
//! or without a frame pointer, on x86-64), and the NUL-terminated string is
//! read from the segment holding that address. A function of another shape
//! (one that computes its string) is reported as unreadable, never guessed.
//! Uses the parent's parser and `object` (ELF reading).

use std::path::Path;

use object::{Object, ObjectSegment, ObjectSymbol};

use super::{SuppressionFile, parse};

/// The hook's name, as LSan looks it up.
pub const HOOK: &str = "__lsan_default_suppressions";

/// Bytes of the function searched for the `lea`.
const SEARCHED: usize = 32;

/// What a program's executable says about its own suppressions.
#[derive(Debug)]
pub enum ProgramSuppressions {
    /// The program defines no `__lsan_default_suppressions`.
    None,
    /// The parsed entries, scoped to the program.
    Found(SuppressionFile),
    /// It defines one whose string cannot be read without running it.
    Unreadable(String),
}

/// Reads `exe`'s `__lsan_default_suppressions()` (see the module docs).
/// `Err` when the file cannot be read or parsed as ELF, or its string is
/// not a valid suppression list.
pub fn lsan_defaults(exe: &Path) -> Result<ProgramSuppressions, String> {
    let data = std::fs::read(exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    let elf = object::File::parse(&*data).map_err(|e| format!("{}: {e}", exe.display()))?;
    let Some(addr) = hook_address(&elf) else {
        return Ok(ProgramSuppressions::None);
    };
    let Some(code) = bytes_at(&elf, addr, SEARCHED) else {
        return Ok(ProgramSuppressions::Unreadable(format!(
            "{HOOK} at {addr:#x} is not in a loaded segment of the file"
        )));
    };
    let Some(target) = lea_rax_target(code, addr) else {
        return Ok(ProgramSuppressions::Unreadable(format!(
            "{HOOK} does not return a constant string (no `lea ...(%rip), %rax` in its first {SEARCHED} bytes)"
        )));
    };
    let Some(text) = c_string_at(&elf, target) else {
        return Ok(ProgramSuppressions::Unreadable(format!(
            "the string {HOOK} returns ({target:#x}) is not in the file"
        )));
    };
    let shown = format!("{}: {HOOK}()", exe.display());
    let mut file = parse(&text, Path::new(&shown))?;
    let program = exe.to_string_lossy().into_owned();
    for e in &mut file.entries {
        e.program = Some(program.clone());
    }
    Ok(ProgramSuppressions::Found(file))
}

/// The hook's address: a defined function symbol of that name.
fn hook_address(elf: &object::File) -> Option<u64> {
    elf.symbols()
        .chain(elf.dynamic_symbols())
        .find(|s| s.is_definition() && s.name() == Ok(HOOK))
        .map(|s| s.address())
}

/// `len` bytes (or fewer, up to the segment's end) at virtual address
/// `addr`, from the segment's file contents.
fn bytes_at<'d>(elf: &object::File<'d>, addr: u64, len: usize) -> Option<&'d [u8]> {
    elf.segments().find_map(|seg| {
        let start = seg.address();
        let data = seg.data().ok()?;
        let off = usize::try_from(addr.checked_sub(start)?).ok()?;
        (off < data.len()).then(|| &data[off..data.len().min(off + len)])
    })
}

/// The target of the first `lea disp32(%rip), %rax` (REX.W 8D /r with
/// ModRM 0x05) in `code`, which starts at `addr`.
fn lea_rax_target(code: &[u8], addr: u64) -> Option<u64> {
    (0..code.len().saturating_sub(6)).find_map(|i| {
        if code[i..i + 3] != [0x48, 0x8d, 0x05] {
            return None;
        }
        let disp = i32::from_le_bytes(code[i + 3..i + 7].try_into().ok()?);
        let next = addr.checked_add(i as u64 + 7)?;
        Some(next.wrapping_add_signed(i64::from(disp)))
    })
}

/// The NUL-terminated string at `addr` (at most 1 MiB), lossily UTF-8.
fn c_string_at(elf: &object::File, addr: u64) -> Option<String> {
    let bytes = bytes_at(elf, addr, 1 << 20)?;
    let end = bytes.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `lea` is found after a frame-pointer prologue, its target is
    /// relative to the next instruction, and other code has none.
    #[test]
    fn finds_the_lea() {
        // push %rbp; mov %rsp,%rbp; lea 0xec0(%rip),%rax; pop %rbp; ret
        let o0 = [
            0x55, 0x48, 0x89, 0xe5, 0x48, 0x8d, 0x05, 0xc0, 0x0e, 0, 0, 0x5d, 0xc3,
        ];
        assert_eq!(lea_rax_target(&o0, 0x1139), Some(0x2004));
        // lea 0xe7d(%rip),%rax; ret
        let o2 = [0x48, 0x8d, 0x05, 0x7d, 0x0e, 0, 0, 0xc3];
        assert_eq!(lea_rax_target(&o2, 0x1180), Some(0x2004));
        // A negative displacement.
        let back = [0x48, 0x8d, 0x05, 0xf9, 0xff, 0xff, 0xff];
        assert_eq!(lea_rax_target(&back, 0x1000), Some(0x1000));
        // mov $0,%eax; ret: no string.
        assert_eq!(lea_rax_target(&[0xb8, 0, 0, 0, 0, 0xc3], 0x1000), None);
    }

    /// This test binary defines no hook.
    #[test]
    fn no_hook_is_none() {
        let exe = std::env::current_exe().unwrap();
        assert!(matches!(lsan_defaults(&exe), Ok(ProgramSuppressions::None)));
    }
}
