//! The threads of a process stopped with ptrace while its memory is read, as
//! LeakSanitizer stops the world: `PTRACE_SEIZE` then `PTRACE_INTERRUPT` on
//! each thread (no signal is sent and no handler runs; a blocked system call
//! is restarted afterwards, without `EINTR`), its registers read
//! (`PTRACE_GETREGS`, and the whole `PTRACE_GETREGSET NT_X86_XSTATE` area:
//! the vector registers), and every thread let go when the value is dropped
//! (the kernel lets them go too if this process dies first).
//!
//! Used by the scanner (`memtrace __scan`), a child of the process it stops;
//! the process has allowed it to trace it (`PR_SET_PTRACER`).

use std::collections::BTreeSet;

/// One stopped thread.
pub struct Thread {
    pub tid: u32,
    /// Its stack pointer, when known (from its registers, or from
    /// `/proc/PID/task/TID/syscall` for a thread blocked in a system call
    /// that could not be stopped).
    pub sp: Option<u64>,
    /// Its general-purpose registers, empty when they could not be read.
    pub registers: Vec<u64>,
    /// Its XSAVE area's words (the x87, SSE and AVX state: the vector
    /// registers), empty when they could not be read.
    pub vector: Vec<u64>,
    /// Stopped inside a system call (blocked in `read`, `pause`, a futex...).
    pub in_syscall: bool,
}

/// The threads of a process, stopped until this is dropped.
pub struct Stopped {
    pub threads: Vec<Thread>,
    attached: Vec<u32>,
}

/// `NT_X86_XSTATE` (<elf.h>): the XSAVE area, for `PTRACE_GETREGSET`.
const NT_X86_XSTATE: libc::c_int = 0x202;

impl Stopped {
    /// Stops every thread of `pid` but `except` (the exiting thread, which
    /// waits for the scan), reading the task list again until no new thread
    /// appears.
    pub fn all(pid: u32, except: u32) -> Stopped {
        let mut s = Stopped {
            threads: Vec::new(),
            attached: Vec::new(),
        };
        let mut seen: BTreeSet<u32> = BTreeSet::from([except]);
        for _ in 0..16 {
            let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                break;
            };
            let new: Vec<u32> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|t| !seen.contains(t))
                .collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                seen.insert(tid);
                let t = s.stop(pid, tid);
                s.threads.push(t);
            }
        }
        s
    }

    /// Stops `tid` and reads its registers, or falls back to what /proc shows.
    fn stop(&mut self, pid: u32, tid: u32) -> Thread {
        let t = tid as libc::pid_t;
        // SAFETY: ptrace requests on a thread id with null or integer
        // arguments; failures are returned, nothing is written.
        let seized = unsafe {
            libc::ptrace(libc::PTRACE_SEIZE, t, 0usize, 0usize) == 0
                && libc::ptrace(libc::PTRACE_INTERRUPT, t, 0usize, 0usize) == 0
        };
        if seized {
            self.attached.push(tid);
            let mut st = 0;
            let r = loop {
                // SAFETY: waits for our tracee's stop into a local.
                let r = unsafe { libc::waitpid(t, &mut st, libc::__WALL) };
                if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break r;
                }
            };
            if r == t && libc::WIFSTOPPED(st) {
                let mut regs: libc::user_regs_struct =
                    // SAFETY: a plain C struct of integers: zero is valid.
                    unsafe { std::mem::zeroed() };
                // SAFETY: PTRACE_GETREGS writes a user_regs_struct.
                if unsafe { libc::ptrace(libc::PTRACE_GETREGS, t, 0usize, &mut regs) } == 0 {
                    return Thread {
                        tid,
                        sp: Some(regs.rsp),
                        registers: gp_words(&regs),
                        vector: xstate_words(t),
                        // orig_rax is the system call's number inside one, -1 outside.
                        in_syscall: (regs.orig_rax as i64) >= 0,
                    };
                }
            }
        }
        let sp = blocked_sp(pid, tid);
        Thread {
            tid,
            in_syscall: sp.is_some(),
            sp,
            registers: Vec::new(),
            vector: Vec::new(),
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for &tid in &self.attached {
            // SAFETY: detaching our own tracee, without a signal.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, tid as libc::pid_t, 0usize, 0usize) };
        }
    }
}

/// The general-purpose registers as words.
fn gp_words(r: &libc::user_regs_struct) -> Vec<u64> {
    vec![
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi, r.orig_rax, r.rip, r.rsp, r.fs_base, r.gs_base,
    ]
}

/// The XSAVE area of a stopped thread as words (x87 and SSE state, then the
/// extended components present: AVX's upper halves, AVX-512's), or, where
/// the kernel has no XSAVE, the FXSAVE area.
fn xstate_words(t: libc::pid_t) -> Vec<u64> {
    let mut buf = vec![0u64; 8192 / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len() * 8,
    };
    // SAFETY: PTRACE_GETREGSET writes at most iov_len bytes into buf and
    // stores the length written in iov_len.
    if unsafe { libc::ptrace(libc::PTRACE_GETREGSET, t, NT_X86_XSTATE, &mut iov) } == 0 {
        buf.truncate(iov.iov_len / 8);
        return buf;
    }
    // SAFETY: a plain C struct of integers: zero is valid.
    let mut fp: libc::user_fpregs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETFPREGS writes a user_fpregs_struct.
    if unsafe { libc::ptrace(libc::PTRACE_GETFPREGS, t, 0usize, &mut fp) } != 0 {
        return Vec::new();
    }
    fp.xmm_space
        .chunks_exact(2)
        .map(|w| w[0] as u64 | (w[1] as u64) << 32)
        .collect()
}

/// The stack pointer of a thread blocked in a system call, from
/// `/proc/PID/task/TID/syscall` (`NR args... SP PC`; `running` otherwise).
fn blocked_sp(pid: u32, tid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() < 9 {
        return None;
    }
    u64::from_str_radix(f[f.len() - 2].trim_start_matches("0x"), 16).ok()
}
