//! Making another Linux process call `mmap` and `munmap` itself: the
//! decisions, free of system calls.
//!
//! No system call lets one process map memory into another on Linux, so the
//! target is made to make the call: one of its threads is stopped with
//! ptrace, its registers are saved, its instruction pointer is set to a
//! `syscall` instruction already in its code with the call's number and
//! arguments in registers, and one instruction is single-stepped. Then the
//! registers are put back exactly and the thread is let go. The OS layer
//! (`os/remote_linux.rs`) makes those calls; what to call them with, and
//! what their answers mean, is decided here, so it can be tested on literal
//! inputs:
//!
//! - where a `syscall` instruction may be found ([`syscall_search_regions`],
//!   [`find_syscall_instruction`]);
//! - the register set of the injected call ([`injected_registers`]), and how
//!   its result reads ([`syscall_result`]);
//! - what a `waitpid` status says ([`classify_stop`]);
//! - why the kernel refused ([`diagnose_refusal`], from [`ProcessStatus`]).
//!
//! # Restarting an interrupted system call
//!
//! A thread stopped while blocked in `read` or `nanosleep` stops with the
//! call's number in `orig_rax` and `-ERESTARTSYS` (or a sibling code) in
//! `rax`. When it resumes, the kernel looks at those two registers to decide
//! whether to restart the call (backing the instruction pointer up over the
//! `syscall` instruction). The injected call therefore runs with `orig_rax`
//! set to -1, so that no restart is applied to it, and the saved registers,
//! `orig_rax` included, are restored before the thread goes: the kernel then
//! restarts the original call exactly once, as if it had only been stopped.

use crate::maps;
use crate::target_process::TargetProcessError;

/// The bytes of the x86-64 `syscall` instruction.
pub(crate) const SYSCALL_INSTRUCTION: [u8; 2] = [0x0f, 0x05];

/// Bytes read from each region when looking for a `syscall` instruction:
/// the vDSO is a few KiB; any C library has one in its first pages.
pub(crate) const SEARCH_LIMIT: usize = 1 << 20;

/// Regions searched for a `syscall` instruction, at most.
const MAX_SEARCH_REGIONS: usize = 8;

/// Executable, readable, not writable mappings that may hold a `syscall`
/// instruction, best first: the vDSO (the kernel's own code, in every process), then the
/// C library's text, then other file-backed code. Each is `(start, end)`.
///
/// `[vsyscall]` is left out: it is emulated, and cannot be read.
pub(crate) fn syscall_search_regions(maps_text: &[u8]) -> Vec<(usize, usize)> {
    let mut regions: Vec<(u8, usize, usize)> = maps_text
        .split(|&byte| byte == b'\n')
        .filter_map(|line| {
            let entry = maps::parse_maps_line(line)?;
            // Writable code (a JIT's) could change under the step.
            if !entry.access.read || entry.access.write || !entry.access.execute {
                return None;
            }
            // The path is what follows the five fixed fields.
            let path = line
                .split(|&byte| byte == b' ')
                .filter(|field| !field.is_empty())
                .nth(5)
                .map_or(&[][..], |first| {
                    let at = first.as_ptr() as usize - line.as_ptr() as usize;
                    &line[at..]
                });
            let rank = if path == b"[vdso]" {
                0
            } else if path.starts_with(b"[") {
                return None;
            } else if is_c_library(path) {
                1
            } else if path.starts_with(b"/") {
                2
            } else {
                3
            };
            Some((rank, entry.start, entry.end))
        })
        .collect();
    regions.sort_by_key(|&(rank, start, _)| (rank, start));
    regions.truncate(MAX_SEARCH_REGIONS);
    regions
        .into_iter()
        .map(|(_, start, end)| (start, end))
        .collect()
}

/// Whether a mapped file's path names a C library (`libc.so.6`,
/// `libc-2.31.so`, musl's `ld-musl-x86_64.so.1`).
fn is_c_library(path: &[u8]) -> bool {
    let name = path.rsplit(|&byte| byte == b'/').next().unwrap_or(path);
    name.starts_with(b"libc.so") || name.starts_with(b"libc-") || name.starts_with(b"ld-musl")
}

/// The offset of the first `syscall` instruction's bytes in `code`. They
/// need not start an instruction of the code around them: the processor
/// decodes from wherever the instruction pointer is set.
pub(crate) fn find_syscall_instruction(code: &[u8]) -> Option<usize> {
    code.windows(2).position(|pair| pair == SYSCALL_INSTRUCTION)
}

/// A system call to make in the target: its number and six arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyscallRequest {
    pub(crate) number: u64,
    pub(crate) arguments: [u64; 6],
}

impl SyscallRequest {
    /// `mmap(address, len, protection, MAP_PRIVATE | MAP_ANONYMOUS |
    /// MAP_FIXED_NOREPLACE, -1, 0)`; `protection` is `PROT_*` bits.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn map_fixed_noreplace(
        address: usize,
        len: usize,
        protection: u64,
    ) -> SyscallRequest {
        const FLAGS: u64 = 0x02 | 0x20 | 0x10_0000;
        SyscallRequest {
            number: 9,
            arguments: [address as u64, len as u64, protection, FLAGS, u64::MAX, 0],
        }
    }

    /// `mprotect(address, len, protection)`.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn protect(address: usize, len: usize, protection: u64) -> SyscallRequest {
        SyscallRequest {
            number: 10,
            arguments: [address as u64, len as u64, protection, 0, 0, 0],
        }
    }

    /// `munmap(address, len)`.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn unmap(address: usize, len: usize) -> SyscallRequest {
        SyscallRequest {
            number: 11,
            arguments: [address as u64, len as u64, 0, 0, 0, 0],
        }
    }
}

/// The registers that make the thread execute `request` at `site` (the
/// address of a `syscall` instruction): everything as saved, except the
/// instruction pointer, the call number and arguments (x86-64 system call
/// convention: `rax`; `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`), and
/// `orig_rax`, set to -1 so that the kernel applies no system-call restart
/// to this call (see the module docs).
#[cfg(target_arch = "x86_64")]
pub(crate) fn injected_registers(
    saved: &libc::user_regs_struct,
    site: usize,
    request: SyscallRequest,
) -> libc::user_regs_struct {
    let mut registers = *saved;
    let [rdi, rsi, rdx, r10, r8, r9] = request.arguments;
    registers.rip = site as u64;
    registers.rax = request.number;
    registers.orig_rax = u64::MAX;
    registers.rdi = rdi;
    registers.rsi = rsi;
    registers.rdx = rdx;
    registers.r10 = r10;
    registers.r8 = r8;
    registers.r9 = r9;
    registers
}

/// Whether saved registers show a thread running 32-bit code (the
/// compatibility code segment `__USER32_CS`), which cannot be made to run
/// a 64-bit `syscall` with these numbers.
#[cfg(target_arch = "x86_64")]
pub(crate) fn is_32_bit(saved: &libc::user_regs_struct) -> bool {
    saved.cs == 0x23
}

/// A raw system call return value: a value, or an `errno` (the kernel
/// returns `-errno`, from -4095 to -1).
pub(crate) fn syscall_result(rax: u64) -> Result<u64, i32> {
    let signed = rax as i64;
    if (-4095..0).contains(&signed) {
        Err((-signed) as i32)
    } else {
        Ok(rax)
    }
}

/// `PTRACE_EVENT_STOP`: the stop of `PTRACE_INTERRUPT`, or a group-stop of
/// a seized thread.
const PTRACE_EVENT_STOP: i32 = 128;

/// What a `waitpid` status says about a traced thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The thread exited or was killed.
    Exited,
    /// A signal-delivery-stop: the signal is about to be delivered, and is
    /// not unless the tracer passes it on.
    Signal(i32),
    /// An event stop (the interrupt, or a group-stop); nothing to pass on.
    Event,
    /// Some other status (an event this tracer did not ask for).
    Other,
}

/// Reads a `waitpid` status of a thread attached with `PTRACE_SEIZE`.
pub(crate) fn classify_stop(status: i32) -> Stop {
    if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
        return Stop::Exited;
    }
    if !libc::WIFSTOPPED(status) {
        return Stop::Other;
    }
    match status >> 16 {
        0 => Stop::Signal(libc::WSTOPSIG(status)),
        PTRACE_EVENT_STOP => Stop::Event,
        _ => Stop::Other,
    }
}

/// What `/proc/<pid>/status` says about a process, as far as ptrace's
/// permission checks care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcessStatus {
    /// The state letter (`R`, `S`, `D`, `Z`...).
    pub(crate) state: u8,
    /// The parent's process id.
    pub(crate) parent: u32,
    /// The process id of the thread tracing it, 0 if none.
    pub(crate) tracer: u32,
    /// Real, effective, saved and file-system user ids.
    pub(crate) user_ids: [u32; 4],
    /// Real, effective, saved and file-system group ids.
    pub(crate) group_ids: [u32; 4],
    /// The effective capability set.
    pub(crate) effective_capabilities: u64,
}

/// The bit of `CAP_SYS_PTRACE` in a capability set.
const CAP_SYS_PTRACE: u64 = 1 << 19;

impl ProcessStatus {
    /// Parses the text of `/proc/<pid>/status`; `None` if a field that is
    /// always there is missing or malformed.
    pub(crate) fn parse(text: &str) -> Option<ProcessStatus> {
        let mut status = ProcessStatus::default();
        let mut seen = 0u8;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "State" => {
                    status.state = *value.as_bytes().first()?;
                    seen |= 1;
                }
                "PPid" => {
                    status.parent = value.parse().ok()?;
                    seen |= 2;
                }
                "TracerPid" => {
                    status.tracer = value.parse().ok()?;
                    seen |= 4;
                }
                "Uid" => {
                    status.user_ids = four_ids(value)?;
                    seen |= 8;
                }
                "Gid" => {
                    status.group_ids = four_ids(value)?;
                    seen |= 16;
                }
                "CapEff" => {
                    status.effective_capabilities = u64::from_str_radix(value, 16).ok()?;
                    seen |= 32;
                }
                _ => {}
            }
        }
        (seen == 63).then_some(status)
    }

    /// A zombie (`Z`) or dead (`X`) process, which cannot be attached to.
    pub(crate) fn has_exited(&self) -> bool {
        matches!(self.state, b'Z' | b'X')
    }

    /// Whether the capability to trace any process is effective.
    pub(crate) fn may_trace_anyone(&self) -> bool {
        self.effective_capabilities & CAP_SYS_PTRACE != 0
    }
}

fn four_ids(value: &str) -> Option<[u32; 4]> {
    let mut ids = [0; 4];
    let mut fields = value.split_ascii_whitespace();
    for id in &mut ids {
        *id = fields.next()?.parse().ok()?;
    }
    Some(ids)
}

/// What is known about a refusal (`EPERM` from `PTRACE_SEIZE`, `EACCES`
/// from `/proc/<pid>/maps`) when diagnosing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RefusalFacts {
    /// The caller, from `/proc/self/status`.
    pub(crate) tracer: ProcessStatus,
    /// The target, if its status could be read.
    pub(crate) target: Option<ProcessStatus>,
    /// `kernel.yama.ptrace_scope`, if Yama is present.
    pub(crate) yama_scope: Option<u8>,
    /// Whether the target descends from the caller.
    pub(crate) target_is_descendant: bool,
}

/// Why the kernel refused, checked in the kernel's own order: ownership
/// (`__ptrace_may_access`), then Yama, then an existing tracer.
pub(crate) fn diagnose_refusal(facts: &RefusalFacts) -> TargetProcessError {
    let Some(target) = facts.target else {
        return TargetProcessError::NotRunning;
    };
    if target.has_exited() {
        return TargetProcessError::NotRunning;
    }
    let privileged = facts.tracer.may_trace_anyone();
    // The kernel compares the caller's real user and group ids (and the
    // file-system ones, for reads through /proc) with all of the target's.
    let own_uid = facts.tracer.user_ids[0];
    let own_gid = facts.tracer.group_ids[0];
    let same_user = target.user_ids[..3].iter().all(|&id| id == own_uid)
        && target.group_ids[..3].iter().all(|&id| id == own_gid);
    if !same_user && !privileged {
        return TargetProcessError::OtherUser;
    }
    match facts.yama_scope {
        Some(scope @ 3..) => return TargetProcessError::PtraceScope(scope),
        Some(2) if !privileged => return TargetProcessError::PtraceScope(2),
        Some(1) if !privileged && !facts.target_is_descendant => {
            return TargetProcessError::PtraceScope(1);
        }
        _ => {}
    }
    if target.tracer != 0 {
        return TargetProcessError::AlreadyTraced;
    }
    TargetProcessError::AccessDenied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_pointer_width = "64")]
    const MAPS: &str = "\
55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 1234                       /usr/bin/game
55d0c0a21000-55d0c0b21000 r-xp 00021000 08:01 1234                       /usr/bin/game
7f1c2e600000-7f1c2e800000 rwxp 00000000 00:00 0 
7f1c2e828000-7f1c2e9bd000 r-xp 00028000 08:01 5678                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2ea00000-7f1c2ea10000 --xp 00000000 08:01 9999                       /usr/lib/libexeconly.so
7ffd1c1f0000-7ffd1c212000 rw-p 00000000 00:00 0                          [stack]
7ffd1c3f8000-7ffd1c3fa000 r-xp 00000000 00:00 0                          [vdso]
7ffd1c3fc000-7ffd1c3fe000 r--p 00000000 00:00 0                          [vvar]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    /// The injector makes x86-64 processes call; their maps need a 64-bit
    /// `usize`, and a 32-bit build has no injector to test.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn the_vdso_is_searched_first_then_the_c_library_then_other_code() {
        assert_eq!(
            syscall_search_regions(MAPS.as_bytes()),
            vec![
                (0x7ffd_1c3f_8000, 0x7ffd_1c3f_a000),
                (0x7f1c_2e82_8000, 0x7f1c_2e9b_d000),
                (0x55d0_c0a2_1000, 0x55d0_c0b2_1000),
            ]
        );
    }

    #[test]
    fn anonymous_code_is_a_last_resort_and_unreadable_code_is_skipped() {
        let maps = "7f00-8000 r-xp 00000000 00:00 0 \n9000-a000 --xp 0 08:01 3 /lib/x.so\n";
        assert_eq!(
            syscall_search_regions(maps.as_bytes()),
            vec![(0x7f00, 0x8000)]
        );
        assert!(syscall_search_regions(b"garbage\n\n1-0 r-xp 0 0:0 0 [vdso]").is_empty());
    }

    #[test]
    fn c_libraries_are_recognised_by_name() {
        for path in [
            &b"/usr/lib/x86_64-linux-gnu/libc.so.6"[..],
            b"/lib/libc-2.31.so",
            b"/lib/ld-musl-x86_64.so.1",
        ] {
            assert!(is_c_library(path));
        }
        assert!(!is_c_library(b"/usr/lib/libcrypto.so.3"));
    }

    #[test]
    fn a_syscall_instruction_is_found_anywhere_in_code() {
        assert_eq!(find_syscall_instruction(&[0x90, 0x0f, 0x05, 0xc3]), Some(1));
        assert_eq!(find_syscall_instruction(&[0x05, 0x0f, 0x0f, 0x05]), Some(2));
        assert_eq!(find_syscall_instruction(&[0x0f, 0x04, 0x05, 0x0f]), None);
        assert_eq!(find_syscall_instruction(&[]), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_injected_call_changes_only_its_registers_and_disables_restart() {
        let mut saved = libc::user_regs_struct {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbp: 0,
            rbx: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rax: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            orig_rax: 0,
            rip: 0,
            cs: 0,
            eflags: 0,
            rsp: 0,
            ss: 0,
            fs_base: 0,
            gs_base: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
        };
        saved.rip = 0x1234;
        saved.rax = (-512i64) as u64; // -ERESTARTSYS: stopped inside read()
        saved.orig_rax = 0; // read
        saved.rsp = 0x7ffd_0000;
        saved.rbx = 77;
        saved.eflags = 0x246;
        let request = SyscallRequest::map_fixed_noreplace(0x10_0000, 0x2000, 7);
        let injected = injected_registers(&saved, 0x7fff_1000, request);
        assert_eq!(injected.rip, 0x7fff_1000);
        assert_eq!(injected.rax, 9);
        assert_eq!(
            injected.orig_rax,
            u64::MAX,
            "no restart for the injected call"
        );
        assert_eq!(
            [
                injected.rdi,
                injected.rsi,
                injected.rdx,
                injected.r10,
                injected.r8,
                injected.r9
            ],
            [0x10_0000, 0x2000, 7, 0x10_0022, u64::MAX, 0]
        );
        assert_eq!(
            (injected.rsp, injected.rbx, injected.eflags),
            (0x7ffd_0000, 77, 0x246)
        );
        assert_eq!(SyscallRequest::unmap(0x5000, 0x1000).number, 11);
        let protect = SyscallRequest::protect(0x5000, 0x1000, 5);
        assert_eq!((protect.number, protect.arguments[2]), (10, 5));
        assert!(!is_32_bit(&saved));
        saved.cs = 0x23;
        assert!(is_32_bit(&saved));
    }

    #[test]
    fn results_from_minus_4095_to_minus_1_are_errors() {
        assert_eq!(syscall_result(0x7f00_0000_0000), Ok(0x7f00_0000_0000));
        assert_eq!(syscall_result(0), Ok(0));
        assert_eq!(syscall_result((-17i64) as u64), Err(17));
        assert_eq!(syscall_result((-4095i64) as u64), Err(4095));
        assert_eq!(syscall_result((-4096i64) as u64), Ok((-4096i64) as u64));
    }

    #[test]
    fn wait_statuses_are_classified() {
        assert_eq!(classify_stop(0), Stop::Exited); // exit(0)
        assert_eq!(classify_stop(9), Stop::Exited); // killed by SIGKILL
        assert_eq!(classify_stop(0x057f), Stop::Signal(libc::SIGTRAP));
        assert_eq!(classify_stop(0x0a7f), Stop::Signal(libc::SIGUSR1));
        assert_eq!(classify_stop((128 << 16) | 0x057f), Stop::Event);
        assert_eq!(classify_stop((128 << 16) | 0x137f), Stop::Event); // group-stop, SIGSTOP
        assert_eq!(classify_stop((1 << 16) | 0x057f), Stop::Other); // PTRACE_EVENT_FORK
        assert_eq!(classify_stop(0xffff), Stop::Other); // continued
    }

    const STATUS: &str = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\n\
        PPid:\t7\nTracerPid:\t0\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n\
        CapInh:\t0000000000000000\nCapEff:\t0000000000000000\n";

    fn status(text: &str) -> ProcessStatus {
        ProcessStatus::parse(text).unwrap()
    }

    #[test]
    fn process_status_fields_are_parsed() {
        let parsed = status(STATUS);
        assert_eq!(parsed.state, b'S');
        assert_eq!(parsed.parent, 7);
        assert_eq!(parsed.tracer, 0);
        assert_eq!(parsed.user_ids, [1000; 4]);
        assert!(!parsed.may_trace_anyone());
        let root =
            status(&STATUS.replace("CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff"));
        assert!(root.may_trace_anyone());
        assert_eq!(ProcessStatus::parse("Name:\tx\nState:\tR\n"), None);
        assert_eq!(
            ProcessStatus::parse(&STATUS.replace("Uid:\t1000\t", "Uid:\tx\t")),
            None
        );
    }

    fn facts(tracer: &str, target: &str, yama: Option<u8>, descendant: bool) -> RefusalFacts {
        RefusalFacts {
            tracer: status(tracer),
            target: Some(status(target)),
            yama_scope: yama,
            target_is_descendant: descendant,
        }
    }

    #[test]
    fn refusals_are_diagnosed_in_the_kernels_order() {
        let nobody = STATUS.replace("1000", "65534");
        let root = STATUS
            .replace("1000", "0")
            .replace("CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff");
        let zombie = STATUS.replace("S (sleeping)", "Z (zombie)");
        let traced = STATUS.replace("TracerPid:\t0", "TracerPid:\t99");
        use TargetProcessError::*;
        assert_eq!(
            diagnose_refusal(&facts(&nobody, &root, Some(1), false)),
            OtherUser
        );
        assert_eq!(
            diagnose_refusal(&facts(&nobody, STATUS, None, true)),
            OtherUser
        );
        assert_eq!(
            diagnose_refusal(&facts(STATUS, STATUS, Some(1), false)),
            PtraceScope(1)
        );
        assert_eq!(
            diagnose_refusal(&facts(STATUS, STATUS, Some(1), true)),
            AccessDenied
        );
        assert_eq!(
            diagnose_refusal(&facts(STATUS, STATUS, Some(2), true)),
            PtraceScope(2)
        );
        assert_eq!(
            diagnose_refusal(&facts(&root, STATUS, Some(2), false)),
            AccessDenied
        );
        assert_eq!(
            diagnose_refusal(&facts(&root, STATUS, Some(3), true)),
            PtraceScope(3)
        );
        assert_eq!(
            diagnose_refusal(&facts(STATUS, &traced, Some(0), true)),
            AlreadyTraced
        );
        assert_eq!(
            diagnose_refusal(&facts(&nobody, &zombie, None, false)),
            NotRunning
        );
        let gone = RefusalFacts {
            target: None,
            ..facts(STATUS, STATUS, None, false)
        };
        assert_eq!(diagnose_refusal(&gone), NotRunning);
    }
}
