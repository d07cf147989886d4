//! Making another Linux process call `mmap`, `mprotect` and `munmap`
//! itself: the decisions, free of system calls.
//!
//! No system call lets one process map memory into another on Linux, so the
//! target is made to make the call: one of its threads is stopped with
//! ptrace, its registers are saved, its instruction pointer is set to a
//! system-call instruction already in its code with the call's number and
//! arguments in registers, and one instruction is single-stepped. Then the
//! registers are put back exactly and the thread is let go. The OS layer
//! (`os/remote/linux.rs`) makes those calls; what to call them with, and
//! what their answers mean, is decided here, so it can be tested on literal
//! inputs:
//!
//! - which convention the target follows ([`Abi`], from its executable's
//!   ELF header; the thread's code segment must agree, [`running_abi`]):
//!   x86-64's `syscall`, or i386's `int 0x80` for a 32-bit process, with
//!   the highest address it may map
//!   ([`highest_address_of_i386_process`]);
//! - where its instruction may be found ([`syscall_search_regions`],
//!   [`find_syscall_instruction`]);
//! - the register set of the injected call ([`injected_registers`], one
//!   module per caller's architecture: an x86-64 caller drives both
//!   conventions, an i686 caller i386's), and how its result reads
//!   ([`syscall_result`]);
//! - what a `waitpid` status says ([`classify_stop`]);
//! - why the kernel refused ([`diagnose_refusal`], from [`ProcessStatus`]).
//!
//! # Restarting an interrupted system call
//!
//! A thread stopped while blocked in `read` or `nanosleep` stops with the
//! call's number in `orig_rax` (`orig_eax` to a 32-bit caller) and
//! `-ERESTARTSYS` (or a sibling code) in `rax`. When it resumes, the kernel
//! looks at those two registers to decide whether to restart the call
//! (backing the instruction pointer up over the two-byte `syscall` or
//! `int 0x80`). The injected call therefore runs with `orig_rax` set to -1,
//! so that no restart is applied to it, and the saved registers, `orig_rax`
//! included, are restored before the thread goes: the kernel then restarts
//! the original call exactly once, as if it had only been stopped.

use crate::error::TargetProcessError;
use crate::space::maps;

/// The system-call convention of a target: x86-64's (`syscall`) or
/// i386's (`int 0x80`, which a 32-bit process uses under a 64-bit kernel
/// too). A process has one, from its executable; a thread may run code of
/// the other (by far-jumping to another code segment), which the registers
/// show ([`running_abi`]) and which is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abi {
    X86_64,
    I386,
}

/// `e_machine` of an ELF header: Intel 80386.
const EM_386: u16 = 3;
/// `e_machine` of an ELF header: AMD x86-64.
const EM_X86_64: u16 = 62;

impl Abi {
    /// The convention of the program whose ELF header starts `header` (the
    /// first bytes of `/proc/<pid>/exe`): `EI_CLASS` (byte 4: 1 for 32-bit,
    /// 2 for 64-bit) with `e_machine`, so that x32 (a 32-bit class on
    /// x86-64) and other machines are `None`, as are bytes that are not an
    /// ELF header.
    pub(crate) fn of_elf_header(header: &[u8]) -> Option<Abi> {
        let (Some(magic), Some(&class), Some(&data), Some(machine)) = (
            header.get(..4),
            header.get(4),
            header.get(5),
            header.get(18..20),
        ) else {
            return None;
        };
        // Both x86 machines are little-endian (`ELFDATA2LSB`).
        if magic != b"\x7fELF" || data != 1 {
            return None;
        }
        match (class, u16::from_le_bytes([machine[0], machine[1]])) {
            (2, EM_X86_64) => Some(Abi::X86_64),
            (1, EM_386) => Some(Abi::I386),
            _ => None,
        }
    }

    /// The bytes of the instruction that makes a system call: `syscall`
    /// (`0F 05`) or `int 0x80` (`CD 80`). Both are two bytes long, so the
    /// thread is past the call when its instruction pointer is two bytes
    /// past the site.
    pub(crate) fn instruction(self) -> [u8; 2] {
        match self {
            Abi::X86_64 => [0x0f, 0x05],
            Abi::I386 => [0xcd, 0x80],
        }
    }

    /// The largest value a register of this convention holds.
    fn register_max(self) -> u64 {
        match self {
            Abi::X86_64 => u64::MAX,
            Abi::I386 => u64::from(u32::MAX),
        }
    }
}

/// `ADDR_LIMIT_3GB` of `<linux/personality.h>` (`setarch --3gb`).
pub(crate) const ADDR_LIMIT_3GB: u32 = 0x0800_0000;

/// A process's personality from the text of `/proc/<pid>/personality`
/// (eight hexadecimal digits and a newline).
pub(crate) fn parse_personality(text: &str) -> Option<u32> {
    let digits = text.trim();
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// The highest address an i386 process may map: under a 64-bit kernel
/// `TASK_SIZE` of a compat task, 4 GiB less a page, or 3 GiB with the
/// `ADDR_LIMIT_3GB` personality; under a 32-bit kernel the user part of
/// its split, 3 GiB with the default `VMSPLIT_3G`. An unknown personality
/// is taken as the smaller space: mapping lower is never wrong.
pub(crate) fn highest_address_of_i386_process(
    kernel_is_64_bit: bool,
    personality: Option<u32>,
) -> u32 {
    match personality {
        Some(personality) if kernel_is_64_bit && personality & ADDR_LIMIT_3GB == 0 => 0xffff_dfff,
        _ => 0xbfff_ffff,
    }
}

/// Bytes read from each region when looking for a system-call
/// instruction: the vDSO is a few KiB; any C library has one in its first
/// pages.
pub(crate) const SEARCH_LIMIT: usize = 1 << 20;

/// Regions searched for a system-call instruction, at most.
const MAX_SEARCH_REGIONS: usize = 8;

/// Executable, readable, not writable mappings that may hold a system-call
/// instruction, best first: the vDSO (the kernel's own code, in every
/// process: a 32-bit one's `__kernel_vsyscall` has an `int 0x80`), then the
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
/// `libc-2.31.so`, musl's `ld-musl-x86_64.so.1` or `ld-musl-i386.so.1`).
fn is_c_library(path: &[u8]) -> bool {
    let name = path.rsplit(|&byte| byte == b'/').next().unwrap_or(path);
    name.starts_with(b"libc.so") || name.starts_with(b"libc-") || name.starts_with(b"ld-musl")
}

/// The offset of the first system-call instruction of `abi` in `code`.
/// Its bytes need not start an instruction of the code around them: the
/// processor decodes from wherever the instruction pointer is set.
pub(crate) fn find_syscall_instruction(abi: Abi, code: &[u8]) -> Option<usize> {
    let instruction = abi.instruction();
    code.windows(2).position(|pair| pair == instruction)
}

/// A system call to make in the target: its number and six arguments, in
/// the target's convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyscallRequest {
    pub(crate) abi: Abi,
    pub(crate) number: u64,
    pub(crate) arguments: [u64; 6],
}

/// `MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE`, the same bits for
/// both conventions.
const MAP_FLAGS: u64 = 0x02 | 0x20 | 0x10_0000;

impl SyscallRequest {
    /// A request whose arguments all fit the convention's registers;
    /// `None` if one does not (an address above 4 GiB for an i386 target,
    /// which the kernel would cut to its low 32 bits).
    fn new(abi: Abi, number: u64, arguments: [u64; 6]) -> Option<SyscallRequest> {
        let max = abi.register_max();
        arguments
            .iter()
            .all(|&argument| argument <= max)
            .then_some(SyscallRequest {
                abi,
                number,
                arguments,
            })
    }

    /// `mmap(address, len, protection, MAP_PRIVATE | MAP_ANONYMOUS |
    /// MAP_FIXED_NOREPLACE, -1, 0)`; `protection` is `PROT_*` bits. For
    /// i386 it is `mmap2`, whose offset counts pages (0 all the same): the
    /// old i386 `mmap` takes a pointer to its arguments instead.
    pub(crate) fn map_fixed_noreplace(
        abi: Abi,
        address: usize,
        len: usize,
        protection: u64,
    ) -> Option<SyscallRequest> {
        let (number, no_file) = match abi {
            Abi::X86_64 => (9, u64::MAX),
            Abi::I386 => (192, u64::from(u32::MAX)),
        };
        let arguments = [
            address as u64,
            len as u64,
            protection,
            MAP_FLAGS,
            no_file,
            0,
        ];
        SyscallRequest::new(abi, number, arguments)
    }

    /// `mprotect(address, len, protection)`.
    pub(crate) fn protect(
        abi: Abi,
        address: usize,
        len: usize,
        protection: u64,
    ) -> Option<SyscallRequest> {
        let number = match abi {
            Abi::X86_64 => 10,
            Abi::I386 => 125,
        };
        SyscallRequest::new(
            abi,
            number,
            [address as u64, len as u64, protection, 0, 0, 0],
        )
    }

    /// `munmap(address, len)`.
    pub(crate) fn unmap(abi: Abi, address: usize, len: usize) -> Option<SyscallRequest> {
        let number = match abi {
            Abi::X86_64 => 11,
            Abi::I386 => 91,
        };
        SyscallRequest::new(abi, number, [address as u64, len as u64, 0, 0, 0, 0])
    }
}

/// A raw system call return value: a value, or an `errno` (the kernel
/// returns `-errno`, from -4095 to -1).
///
/// An i386 call's result is the 32-bit `eax`. A 64-bit tracer reads the
/// whole 64-bit `rax`, which the kernel may have filled either way: its
/// compat handlers return a `long` (so -12 arrives sign-extended), but a
/// value stored by a 32-bit tracer, or an `int` result, arrives
/// zero-extended (the kernel itself sign-extends the low half before
/// comparing it with error codes). So only the low 32 bits are read, as
/// the target sees them, and an error is one of them from -4095 to -1 as a
/// signed 32-bit value.
pub(crate) fn syscall_result(abi: Abi, raw: u64) -> Result<u64, i32> {
    let (signed, value) = match abi {
        Abi::X86_64 => (raw as i64, raw),
        Abi::I386 => {
            let low = raw as u32;
            (i64::from(low as i32), u64::from(low))
        }
    };
    if (-4095..0).contains(&signed) {
        Err((-signed) as i32)
    } else {
        Ok(value)
    }
}

// The register sets of the callers that can trace: one module per
// architecture this library is built for, with the same items, so the OS
// layer calls one interface. A 64-bit caller drives both conventions (its
// register set holds a 32-bit thread's registers, zero-extended); a 32-bit
// caller only i386's, since it cannot set a 64-bit register's upper half.

/// The registers of an x86-64 caller's `PTRACE_GETREGS`.
#[cfg(target_arch = "x86_64")]
mod registers {
    use super::{Abi, SyscallRequest};

    pub(crate) type Registers = libc::user_regs_struct;

    /// `__USER_CS` of an x86-64 kernel: 64-bit code.
    const USER_CS: u64 = 0x33;
    /// `__USER32_CS` of an x86-64 kernel: 32-bit (compatibility mode)
    /// code.
    const USER32_CS: u64 = 0x23;

    /// The convention of the code the thread runs, from its code segment;
    /// `None` for any other segment (16-bit code of an LDT, say).
    pub(crate) fn running_abi(saved: &Registers) -> Option<Abi> {
        match saved.cs {
            USER_CS => Some(Abi::X86_64),
            USER32_CS => Some(Abi::I386),
            _ => None,
        }
    }

    /// The registers that make the thread execute `request` at `site` (the
    /// address of its system-call instruction): everything as saved, except
    /// the instruction pointer, the call number and arguments, and
    /// `orig_rax`, set to -1 so that the kernel applies no system-call
    /// restart to this call (see the module docs). x86-64 passes the
    /// arguments in `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`; i386 in `ebx`,
    /// `ecx`, `edx`, `esi`, `edi`, `ebp` (here their 64-bit names), with a
    /// site below 4 GiB. `None` if the request does not fit.
    pub(crate) fn injected_registers(
        saved: &Registers,
        site: usize,
        request: SyscallRequest,
    ) -> Option<Registers> {
        let mut registers = *saved;
        let site = site as u64;
        if site > request.abi.register_max() - 2 {
            return None;
        }
        registers.rip = site;
        registers.rax = request.number;
        registers.orig_rax = u64::MAX;
        let [first, second, third, fourth, fifth, sixth] = request.arguments;
        match request.abi {
            Abi::X86_64 => {
                registers.rdi = first;
                registers.rsi = second;
                registers.rdx = third;
                registers.r10 = fourth;
                registers.r8 = fifth;
                registers.r9 = sixth;
            }
            Abi::I386 => {
                registers.rbx = first;
                registers.rcx = second;
                registers.rdx = third;
                registers.rsi = fourth;
                registers.rdi = fifth;
                registers.rbp = sixth;
            }
        }
        Some(registers)
    }

    /// The instruction pointer, zero-extended.
    pub(crate) fn instruction_pointer(registers: &Registers) -> u64 {
        registers.rip
    }

    /// The register holding a system call's result, raw (see
    /// [`syscall_result`](super::syscall_result)).
    pub(crate) fn result_register(registers: &Registers) -> u64 {
        registers.rax
    }
}

/// The registers of an i686 caller's `PTRACE_GETREGS` (the kernel's
/// `user_regs_struct32` when it is a 64-bit one).
#[cfg(target_arch = "x86")]
mod registers {
    use super::{Abi, SyscallRequest};

    pub(crate) type Registers = libc::user_regs_struct;

    /// `__USER32_CS` of an x86-64 kernel (a compat task's code).
    const USER32_CS: u32 = 0x23;
    /// `__USER_CS` of an x86-64 kernel: 64-bit code, out of reach.
    const USER64_CS: u32 = 0x33;
    /// `__USER_CS` of a 32-bit kernel.
    const USER_CS_OF_32_BIT_KERNEL: u32 = 0x73;

    /// The convention of the code the thread runs, from its code segment;
    /// `None` for any other segment (16-bit code of an LDT, say).
    pub(crate) fn running_abi(saved: &Registers) -> Option<Abi> {
        match saved.xcs as u32 {
            USER32_CS | USER_CS_OF_32_BIT_KERNEL => Some(Abi::I386),
            USER64_CS => Some(Abi::X86_64),
            _ => None,
        }
    }

    /// The registers that make the thread execute `request` at `site`:
    /// everything as saved, except `eip`, the call number in `eax`, the
    /// arguments in `ebx`, `ecx`, `edx`, `esi`, `edi`, `ebp`, and
    /// `orig_eax`, set to -1 so that the kernel applies no system-call
    /// restart to this call (see the module docs; the kernel reads
    /// `orig_eax` as a signed 32-bit number). `None` for an x86-64
    /// request, which these registers cannot express.
    pub(crate) fn injected_registers(
        saved: &Registers,
        site: usize,
        request: SyscallRequest,
    ) -> Option<Registers> {
        if request.abi != Abi::I386 || site > u32::MAX as usize - 2 {
            return None;
        }
        // Each value fits 32 bits (checked when the request was made);
        // the registers are `long`s, which hold them bit for bit.
        let word = |value: u64| u32::try_from(value).ok().map(|bits| bits as libc::c_long);
        let [ebx, ecx, edx, esi, edi, ebp] = request.arguments;
        let mut registers = *saved;
        registers.eip = word(site as u64)?;
        registers.eax = word(request.number)?;
        registers.orig_eax = -1;
        registers.ebx = word(ebx)?;
        registers.ecx = word(ecx)?;
        registers.edx = word(edx)?;
        registers.esi = word(esi)?;
        registers.edi = word(edi)?;
        registers.ebp = word(ebp)?;
        Some(registers)
    }

    /// The instruction pointer, zero-extended.
    pub(crate) fn instruction_pointer(registers: &Registers) -> u64 {
        u64::from(registers.eip as u32)
    }

    /// The register holding a system call's result, zero-extended (see
    /// [`syscall_result`](super::syscall_result)).
    pub(crate) fn result_register(registers: &Registers) -> u64 {
        u64::from(registers.eax as u32)
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
pub(crate) use registers::{
    Registers, injected_registers, instruction_pointer, result_register, running_abi,
};

/// Whether this build can make a target of `abi` call: an x86-64 build
/// drives both conventions, an i686 build only i386's, other architectures
/// none.
pub(crate) fn can_drive(abi: Abi) -> bool {
    match abi {
        Abi::X86_64 => cfg!(target_arch = "x86_64"),
        Abi::I386 => cfg!(any(target_arch = "x86_64", target_arch = "x86")),
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

    /// An x86-64 process's map needs a 64-bit `usize` (a 32-bit build makes
    /// only 32-bit processes call; their map is tested on both widths).
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

    /// A 32-bit process under a 64-bit kernel: everything below 4 GiB, the
    /// vDSO (with `__kernel_vsyscall`'s `int 0x80`) near the top.
    const MAPS_32: &str = "\
08048000-08049000 r--p 00000000 08:01 4321                               /usr/bin/game32
08049000-0804a000 r-xp 00001000 08:01 4321                               /usr/bin/game32
f7c00000-f7c22000 r--p 00000000 08:01 8765                               /usr/lib/i386-linux-gnu/libc.so.6
f7c22000-f7da3000 r-xp 00022000 08:01 8765                               /usr/lib/i386-linux-gnu/libc.so.6
f7f8a000-f7f8e000 r--p 00000000 00:00 0                                  [vvar]
f7f8e000-f7f90000 r-xp 00000000 00:00 0                                  [vdso]
ffd5c000-ffd7d000 rw-p 00000000 00:00 0                                  [stack]
";

    #[test]
    fn a_32_bit_map_is_searched_in_the_same_order() {
        assert_eq!(
            syscall_search_regions(MAPS_32.as_bytes()),
            vec![
                (0xf7f8_e000, 0xf7f9_0000),
                (0xf7c2_2000, 0xf7da_3000),
                (0x0804_9000, 0x0804_a000),
            ]
        );
        assert!(is_c_library(b"/lib/ld-musl-i386.so.1"));
    }

    #[test]
    fn a_syscall_instruction_is_found_anywhere_in_code() {
        let x86_64 = |code: &[u8]| find_syscall_instruction(Abi::X86_64, code);
        assert_eq!(x86_64(&[0x90, 0x0f, 0x05, 0xc3]), Some(1));
        assert_eq!(x86_64(&[0x05, 0x0f, 0x0f, 0x05]), Some(2));
        assert_eq!(x86_64(&[0x0f, 0x04, 0x05, 0x0f]), None);
        assert_eq!(x86_64(&[0xcd, 0x80]), None, "int 0x80 is not x86-64's");
        assert_eq!(x86_64(&[]), None);
    }

    /// The bytes of a 32-bit vDSO's `__kernel_vsyscall` (push ecx, push
    /// edx, push ebp, mov ebp, esp, sysenter, int 0x80, pop ebp, pop edx,
    /// pop ecx, ret).
    #[test]
    fn an_int_0x80_is_found_in_32_bit_code() {
        let vsyscall = [
            0x51, 0x52, 0x55, 0x89, 0xe5, 0x0f, 0x34, 0xcd, 0x80, 0x5d, 0x5a, 0x59, 0xc3,
        ];
        assert_eq!(find_syscall_instruction(Abi::I386, &vsyscall), Some(7));
        assert_eq!(find_syscall_instruction(Abi::I386, &[0x80, 0xcd]), None);
        assert_eq!(find_syscall_instruction(Abi::I386, &[0x0f, 0x05]), None);
        assert_eq!(find_syscall_instruction(Abi::I386, &[0xcd]), None);
    }

    /// The first 20 bytes of an ELF header: magic, class, data, version,
    /// padding, type, machine.
    fn elf_header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut header = vec![0x7f, b'E', b'L', b'F', class, data, 1];
        header.resize(16, 0);
        header.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
        header.extend_from_slice(&machine.to_le_bytes());
        header
    }

    #[test]
    fn the_convention_comes_from_the_elf_class_and_machine() {
        assert_eq!(Abi::of_elf_header(&elf_header(2, 1, 62)), Some(Abi::X86_64));
        assert_eq!(Abi::of_elf_header(&elf_header(1, 1, 3)), Some(Abi::I386));
        // x32: 32-bit class, x86-64 machine; a 64-bit AArch64 program; a
        // big-endian header; a 64-bit class with the i386 machine.
        for header in [
            elf_header(1, 1, 62),
            elf_header(2, 1, 183),
            elf_header(1, 2, 3),
            elf_header(2, 1, 3),
        ] {
            assert_eq!(Abi::of_elf_header(&header), None, "{header:?}");
        }
        let mut script = elf_header(1, 1, 3);
        script[..4].copy_from_slice(b"#!/b");
        assert_eq!(Abi::of_elf_header(&script), None);
        assert_eq!(Abi::of_elf_header(&elf_header(1, 1, 3)[..19]), None);
        assert_eq!(Abi::of_elf_header(&[]), None);
    }

    #[test]
    fn a_32_bit_target_has_4_gib_less_a_page_or_3_gib() {
        assert_eq!(parse_personality("00000000\n"), Some(0));
        assert_eq!(parse_personality("08000000\n"), Some(ADDR_LIMIT_3GB));
        assert_eq!(parse_personality("0800000x\n"), None);
        assert_eq!(parse_personality("108000000\n"), None);
        assert_eq!(parse_personality(""), None);
        assert_eq!(highest_address_of_i386_process(true, Some(0)), 0xffff_dfff);
        // `linux32` (PER_LINUX32, 8) leaves the space as it is.
        assert_eq!(highest_address_of_i386_process(true, Some(8)), 0xffff_dfff);
        assert_eq!(
            highest_address_of_i386_process(true, Some(ADDR_LIMIT_3GB | 8)),
            0xbfff_ffff
        );
        assert_eq!(highest_address_of_i386_process(true, None), 0xbfff_ffff);
        assert_eq!(highest_address_of_i386_process(false, Some(0)), 0xbfff_ffff);
    }

    #[test]
    fn requests_carry_each_conventions_numbers_and_fit_its_registers() {
        let map = SyscallRequest::map_fixed_noreplace(Abi::X86_64, 0x10_0000, 0x2000, 7).unwrap();
        assert_eq!(map.number, 9);
        assert_eq!(
            map.arguments,
            [0x10_0000, 0x2000, 7, 0x10_0022, u64::MAX, 0]
        );
        let map = SyscallRequest::map_fixed_noreplace(Abi::I386, 0x8000_0000, 0x2000, 3).unwrap();
        // mmap2, with the file descriptor -1 as 32 bits and the offset in
        // pages.
        assert_eq!(map.number, 192);
        assert_eq!(
            map.arguments,
            [0x8000_0000, 0x2000, 3, 0x10_0022, 0xffff_ffff, 0]
        );
        let protect = SyscallRequest::protect(Abi::I386, 0x5000, 0x1000, 5).unwrap();
        assert_eq!((protect.number, protect.arguments[2]), (125, 5));
        assert_eq!(
            SyscallRequest::unmap(Abi::I386, 0x5000, 0x1000).map(|r| r.number),
            Some(91)
        );
        assert_eq!(
            SyscallRequest::protect(Abi::X86_64, 0x5000, 0x1000, 5).map(|r| r.number),
            Some(10)
        );
        assert_eq!(
            SyscallRequest::unmap(Abi::X86_64, 0x5000, 0x1000).map(|r| r.number),
            Some(11)
        );
        #[cfg(target_pointer_width = "64")]
        {
            // Cut to 32 bits, it would be another address: refused.
            let high = 0x1_0000_0000usize;
            assert_eq!(
                SyscallRequest::map_fixed_noreplace(Abi::I386, high, 0x1000, 3),
                None
            );
            assert_eq!(SyscallRequest::unmap(Abi::I386, 0x1000, high), None);
            assert!(SyscallRequest::unmap(Abi::X86_64, high, 0x1000).is_some());
        }
    }

    /// The register sets of an x86-64 caller, which drives both conventions.
    #[cfg(target_arch = "x86_64")]
    mod x86_64 {
        use super::*;

        #[test]
        fn the_x86_64_numbers_are_the_c_librarys() {
            let number =
                |request: Option<SyscallRequest>| request.map(|r| r.number as libc::c_long);
            assert_eq!(
                number(SyscallRequest::map_fixed_noreplace(Abi::X86_64, 0, 1, 0)),
                Some(libc::SYS_mmap)
            );
            assert_eq!(
                number(SyscallRequest::protect(Abi::X86_64, 0, 1, 0)),
                Some(libc::SYS_mprotect)
            );
            assert_eq!(
                number(SyscallRequest::unmap(Abi::X86_64, 0, 1)),
                Some(libc::SYS_munmap)
            );
            assert_eq!(
                MAP_FLAGS as libc::c_int,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | crate::os::MAP_FIXED_NOREPLACE
            );
        }

        fn x86_64_registers() -> libc::user_regs_struct {
            libc::user_regs_struct {
                r15: 15,
                r14: 14,
                r13: 13,
                r12: 12,
                rbp: 0,
                rbx: 0,
                r11: 11,
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
                cs: 0x33,
                eflags: 0x246,
                rsp: 0x7ffd_0000,
                ss: 0x2b,
                fs_base: 0x7f00_1000,
                gs_base: 0,
                ds: 0,
                es: 0,
                fs: 0,
                gs: 0,
            }
        }

        #[test]
        fn the_injected_call_changes_only_its_registers_and_disables_restart() {
            let mut saved = x86_64_registers();
            saved.rip = 0x1234;
            saved.rax = (-512i64) as u64; // -ERESTARTSYS: stopped inside read()
            saved.orig_rax = 0; // read
            saved.rbx = 77;
            let request =
                SyscallRequest::map_fixed_noreplace(Abi::X86_64, 0x10_0000, 0x2000, 7).unwrap();
            let injected = injected_registers(&saved, 0x7fff_1000, request).unwrap();
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
                (injected.rsp, injected.rbx, injected.eflags, injected.cs),
                (0x7ffd_0000, 77, 0x246, 0x33)
            );
            assert_eq!(instruction_pointer(&injected), 0x7fff_1000);
            assert_eq!(result_register(&injected), 9);
        }

        /// A 32-bit thread seen by a 64-bit caller: the i386 argument
        /// registers under their 64-bit names, the rest as saved.
        #[test]
        fn a_32_bit_thread_gets_the_i386_registers_from_a_64_bit_caller() {
            let mut saved = x86_64_registers();
            saved.cs = 0x23;
            saved.ss = 0x2b;
            saved.rip = 0xf7f8_e579;
            saved.rax = 0xffff_fe00; // -ERESTARTSYS as 32 bits
            saved.orig_rax = 3; // i386 read
            saved.rsp = 0xffd7_c000;
            saved.r8 = 8;
            let request =
                SyscallRequest::map_fixed_noreplace(Abi::I386, 0x8000_0000, 0x1000, 7).unwrap();
            let injected = injected_registers(&saved, 0xf7f8_e577, request).unwrap();
            assert_eq!((injected.rip, injected.rax), (0xf7f8_e577, 192));
            assert_eq!(injected.orig_rax, u64::MAX);
            assert_eq!(
                [
                    injected.rbx,
                    injected.rcx,
                    injected.rdx,
                    injected.rsi,
                    injected.rdi,
                    injected.rbp
                ],
                [0x8000_0000, 0x1000, 7, 0x10_0022, 0xffff_ffff, 0]
            );
            assert_eq!(
                (injected.rsp, injected.cs, injected.r8, injected.r10),
                (0xffd7_c000, 0x23, 8, 0),
                "what i386 does not pass arguments in is left as saved"
            );
            // A site above 4 GiB cannot be a 32-bit thread's.
            assert!(injected_registers(&saved, 0x1_0000_0000, request).is_none());
            assert!(injected_registers(&saved, 0xffff_fffe, request).is_none());
        }

        #[test]
        fn the_code_segment_says_which_code_the_thread_runs() {
            let mut saved = x86_64_registers();
            assert_eq!(running_abi(&saved), Some(Abi::X86_64));
            saved.cs = 0x23;
            assert_eq!(running_abi(&saved), Some(Abi::I386));
            saved.cs = 0x0f; // an LDT segment
            assert_eq!(running_abi(&saved), None);
            assert!(can_drive(Abi::X86_64) && can_drive(Abi::I386));
        }
    }

    /// The register sets of an i686 caller, which drives only i386's.
    #[cfg(target_arch = "x86")]
    mod i686 {
        use super::*;

        /// The kernel's own numbers, where this build's C library names them.
        #[test]
        fn the_i386_numbers_are_the_c_librarys() {
            let number =
                |request: Option<SyscallRequest>| request.map(|r| r.number as libc::c_long);
            assert_eq!(
                number(SyscallRequest::map_fixed_noreplace(Abi::I386, 0, 1, 0)),
                Some(libc::SYS_mmap2)
            );
            assert_eq!(
                number(SyscallRequest::protect(Abi::I386, 0, 1, 0)),
                Some(libc::SYS_mprotect)
            );
            assert_eq!(
                number(SyscallRequest::unmap(Abi::I386, 0, 1)),
                Some(libc::SYS_munmap)
            );
            assert_eq!(
                MAP_FLAGS as libc::c_int,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | crate::os::MAP_FIXED_NOREPLACE
            );
        }

        fn i386_registers() -> libc::user_regs_struct {
            libc::user_regs_struct {
                ebx: 1,
                ecx: 2,
                edx: 3,
                esi: 4,
                edi: 5,
                ebp: 6,
                eax: -512, // -ERESTARTSYS: stopped inside read()
                xds: 0x2b,
                xes: 0x2b,
                xfs: 0,
                xgs: 0x63,
                orig_eax: 3, // read
                eip: 0xf7f8_e579_u32 as libc::c_long,
                xcs: 0x23,
                eflags: 0x246,
                esp: 0xffd7_c000_u32 as libc::c_long,
                xss: 0x2b,
            }
        }

        #[test]
        fn the_injected_i386_call_changes_only_its_registers_and_disables_restart() {
            let saved = i386_registers();
            let request =
                SyscallRequest::map_fixed_noreplace(Abi::I386, 0xc000_0000, 0x2000, 7).unwrap();
            let injected = injected_registers(&saved, 0xf7f8_e577, request).unwrap();
            assert_eq!(instruction_pointer(&injected), 0xf7f8_e577);
            assert_eq!(injected.eax, 192);
            assert_eq!(injected.orig_eax, -1, "no restart for the injected call");
            let as_u32 = |value: libc::c_long| value as u32;
            assert_eq!(
                [
                    injected.ebx,
                    injected.ecx,
                    injected.edx,
                    injected.esi,
                    injected.edi,
                    injected.ebp
                ]
                .map(as_u32),
                [0xc000_0000, 0x2000, 7, 0x10_0022, 0xffff_ffff, 0]
            );
            assert_eq!(
                (
                    as_u32(injected.esp),
                    injected.xcs,
                    injected.xgs,
                    injected.eflags
                ),
                (0xffd7_c000, 0x23, 0x63, 0x246)
            );
            assert_eq!(result_register(&saved), 0xffff_fe00);
            // A 64-bit request cannot be expressed in these registers.
            let wide = SyscallRequest::unmap(Abi::X86_64, 0x5000, 0x1000).unwrap();
            assert!(injected_registers(&saved, 0x1000, wide).is_none());
            assert!(injected_registers(&saved, 0xffff_fffe, request).is_none());
        }

        #[test]
        fn the_code_segment_says_which_code_the_thread_runs() {
            let mut saved = i386_registers();
            assert_eq!(running_abi(&saved), Some(Abi::I386));
            saved.xcs = 0x73; // a 32-bit kernel's user code
            assert_eq!(running_abi(&saved), Some(Abi::I386));
            saved.xcs = 0x33; // 64-bit code: out of this caller's reach
            assert_eq!(running_abi(&saved), Some(Abi::X86_64));
            saved.xcs = 0x0f;
            assert_eq!(running_abi(&saved), None);
            assert!(can_drive(Abi::I386) && !can_drive(Abi::X86_64));
        }
    }

    #[test]
    fn results_from_minus_4095_to_minus_1_are_errors() {
        let x86_64 = |raw| syscall_result(Abi::X86_64, raw);
        assert_eq!(x86_64(0x7f00_0000_0000), Ok(0x7f00_0000_0000));
        assert_eq!(x86_64(0), Ok(0));
        assert_eq!(x86_64((-17i64) as u64), Err(17));
        assert_eq!(x86_64((-4095i64) as u64), Err(4095));
        assert_eq!(x86_64((-4096i64) as u64), Ok((-4096i64) as u64));
        // Only the low half counts: -ENOMEM truncated is still -ENOMEM.
        assert_eq!(x86_64(0xffff_fff4), Ok(0xffff_fff4));
    }

    #[test]
    fn i386_results_are_read_from_the_low_32_bits_either_extension() {
        let i386 = |raw| syscall_result(Abi::I386, raw);
        // -ENOMEM as the kernel's compat handler leaves it (sign-extended
        // long) and as a 32-bit register holds it (zero-extended).
        assert_eq!(i386((-12i64) as u64), Err(12));
        assert_eq!(i386(0xffff_fff4), Err(12));
        assert_eq!(i386(0xffff_f001), Err(4095));
        // The highest address that is not an error, and addresses above
        // 2 GiB, are values, zero-extended.
        assert_eq!(i386(0xffff_f000), Ok(0xffff_f000));
        assert_eq!(i386(0xffff_ffff_8000_0000), Ok(0x8000_0000));
        assert_eq!(i386(0x8000_0000), Ok(0x8000_0000));
        assert_eq!(i386(0), Ok(0));
        // Upper bits that are not an extension are ignored, as the target
        // ignores them.
        assert_eq!(i386(0x1234_5678_0010_0000), Ok(0x10_0000));
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
