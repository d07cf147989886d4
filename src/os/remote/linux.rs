//! Linux: another process's memory, through `/proc/<pid>`, ptrace and
//! `process_vm_readv`/`process_vm_writev`.
//!
//! Mapping and unmapping are done by the target itself: one of its threads
//! is stopped (`PTRACE_SEIZE` + `PTRACE_INTERRUPT`), made to execute one
//! system-call instruction found in its own code (`syscall` in an x86-64
//! process, `int 0x80` in a 32-bit one, whichever its executable's ELF
//! header says it is), and restored exactly. What the registers are set
//! to, and what the answers mean, is decided in `injection.rs`; this file
//! only makes the calls. An x86-64 build makes both kinds of process call,
//! an i686 build 32-bit ones; other architectures have no injector and
//! answer `Unsupported` (reading and writing bytes work everywhere).
//!
//! Android takes this file as it is: the kernel calls are the same, and
//! bionic has them all. An app's sandbox and SELinux policy usually refuse
//! it another process's `/proc` files and ptrace, which then fail as they
//! would on a Linux that refuses them.
//!
//! Each injection runs on a short-lived thread of its own. ptrace ties a
//! tracee to the tracing *thread*, and a tracing thread that exits detaches
//! from its tracees: so whatever happens (a target that never stops, an
//! error half-way), the target is let go when the thread ends, and never
//! stays stopped because a caller's thread lingers.
//!
//! # References
//!
//! `ptrace(2)` (`PTRACE_SEIZE`, `PTRACE_INTERRUPT`, group-stop and
//! signal-delivery-stop), `process_vm_readv(2)`, `proc_pid_maps(5)`,
//! `proc_pid_status(5)`, the kernel's `Documentation/admin-guide/LSM/Yama.rst`.

use crate::error::ErrorKind;
use crate::error::TargetProcessError;
use crate::remote::injection::{self, Abi, ProcessStatus, RefusalFacts, SyscallRequest};
use crate::space::maps::{self, Access, MapsEntry};
use std::fs::File;
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use super::{Errno, Protection};

/// The call that maps memory in a target, as error messages name it.
pub(crate) const REMOTE_MAP_CALL: &str = "mmap (made by the target through ptrace)";

/// The call that unmaps memory in a target, as error messages name it.
const REMOTE_UNMAP_CALL: &str = "munmap (made by the target through ptrace)";

/// The call that changes the rights of memory in a target, as error
/// messages name it.
pub(crate) const REMOTE_PROTECT_CALL: &str = "mprotect (made by the target through ptrace)";

/// The `PROT_*` bits of `protection`, as the target's `mmap` and
/// `mprotect` take them: this process's own bits (the same kernel).
fn protection_bits(protection: Protection) -> u64 {
    super::unix::protection_bits(protection) as u64
}

/// Longest wait for the target's thread to stop after `PTRACE_INTERRUPT`.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for the injected call to complete: `mmap` can wait for the
/// target's memory-map lock, but not for long. The registers are set by
/// then, so giving up earlier would leave the thread running the injected
/// state.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Stops (other than the step's own) tolerated while single-stepping: each
/// is a signal arriving or a group-stop. A storm of them ends the attempt.
const MAX_STRAY_STOPS: u32 = 64;

/// The maps text read when looking for a `syscall` instruction, at most.
const MAX_MAPS_TEXT: u64 = maps::MAX_TOTAL;

fn last_errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn errno_of(error: &std::io::Error) -> Errno {
    error.raw_os_error().unwrap_or(libc::EIO)
}

fn target(reason: TargetProcessError) -> ErrorKind {
    ErrorKind::TargetProcess(reason)
}

/// Another process, by id.
#[derive(Debug)]
pub(crate) struct RemoteProcess {
    pid: libc::pid_t,
    /// A thread of it that has not exited: the main thread unless that one
    /// called `pthread_exit` (its `/proc` files and memory calls then fail
    /// as for an exited process). Atomic so that the byte calls, which
    /// take `&self`, can move on to another thread.
    thread: AtomicI32,
    /// A system-call instruction in the target, found once; its bytes are
    /// checked again (while the thread is stopped) before every use.
    site: Option<usize>,
    /// What the target's executable says about it, read once.
    shape: Option<Shape>,
}

/// What kind of process a target is: its system-call convention (`None`
/// for a program that is neither an x86-64 nor an i386 one), and the
/// highest address it may map, which is its own and not this process's
/// (4 GiB less a page for a 32-bit target of a 64-bit caller).
#[derive(Clone, Copy, Debug)]
struct Shape {
    abi: Option<Abi>,
    highest_address: usize,
}

/// Whether this build can make a target call anything at all.
const HAS_INJECTOR: bool = cfg!(any(target_arch = "x86_64", target_arch = "x86"));

/// The ELF header's bytes read from a target's executable: up to
/// `e_machine`.
const ELF_HEADER_READ: usize = 20;

impl RemoteProcess {
    /// Checks that the process exists and that its map may be read (the
    /// kernel's "may read" check, which ptrace's "may attach" includes).
    pub(crate) fn open(process_id: u32) -> Result<RemoteProcess, ErrorKind> {
        let pid = match libc::pid_t::try_from(process_id) {
            Ok(pid) if pid > 0 => pid,
            _ => return Err(target(TargetProcessError::NotRunning)),
        };
        let mut process = RemoteProcess {
            pid,
            thread: AtomicI32::new(pid),
            site: None,
            shape: None,
        };
        process.choose_thread()?;
        File::open(process.maps_path())
            .map_err(|error| process.access_error(errno_of(&error), "open /proc/<pid>/maps"))?;
        // Best effort: read again when first needed if it fails now.
        let _ = process.shape();
        Ok(process)
    }

    /// The highest address (inclusive) the process can map, its own: 4 GiB
    /// less a page, or 3 GiB, for a 32-bit target; this process's for a
    /// 64-bit one, and for one whose executable could not be read (every
    /// mapping is checked against the target's own top all the same).
    pub(crate) fn highest_user_address(&self) -> usize {
        self.shape
            .map_or(super::highest_user_address(), |shape| shape.highest_address)
    }

    /// Picks a live thread again: the main thread if it still runs.
    fn choose_thread(&self) -> Result<libc::pid_t, ErrorKind> {
        let thread = live_thread(self.pid).ok_or(target(TargetProcessError::NotRunning))?;
        // Relaxed: a thread id is a plain value; any live one will do.
        self.thread.store(thread, Ordering::Relaxed);
        Ok(thread)
    }

    fn thread(&self) -> libc::pid_t {
        self.thread.load(Ordering::Relaxed)
    }

    /// The maps file, read through a live thread: a main thread that
    /// exited shows an empty one.
    fn maps_path(&self) -> String {
        format!("/proc/{}/task/{}/maps", self.pid, self.thread())
    }

    /// The error for a failed access to the process: gone, refused (and
    /// why), or another failure of `call`.
    fn access_error(&self, errno: Errno, call: &'static str) -> ErrorKind {
        match errno {
            libc::ESRCH | libc::ENOENT => target(TargetProcessError::NotRunning),
            libc::EPERM | libc::EACCES => target(diagnose(self.pid)),
            errno => ErrorKind::Os { call, errno },
        }
    }

    /// Reads `/proc/<pid>/maps`, calling `visit` for each line until it
    /// breaks; then, for a target whose space ends below this process's
    /// (a 32-bit one), once more with the addresses above its top as if
    /// they were mapped, so that placement, which knows only this
    /// process's top, never picks them.
    pub(crate) fn read_maps(
        &mut self,
        buffer: &mut Vec<u8>,
        mut visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
    ) -> Result<(), Errno> {
        let _ = self.choose_thread();
        let mut file = File::open(self.maps_path()).map_err(|error| errno_of(&error))?;
        let mut stopped = false;
        maps::for_each_entry(
            |out| file.read(out),
            buffer,
            |entry| {
                let flow = visit(entry);
                stopped = flow.is_break();
                flow
            },
        )
        .map_err(|error| errno_of(&error))?;
        // Unknown until the executable can be read: `map_fixed_noreplace`
        // checks the top again anyway.
        let top = self.shape().map(|shape| shape.highest_address);
        let below_own_top = top.ok().filter(|&top| top < super::highest_user_address());
        if let (false, Some(top)) = (stopped, below_own_top) {
            let _ = visit(&MapsEntry::unnamed(top + 1, usize::MAX, Access::default()));
        }
        Ok(())
    }

    /// The target's [`Shape`]: cached, or read from its executable's ELF
    /// header and (for a 32-bit one) its personality.
    fn shape(&mut self) -> Result<Shape, ErrorKind> {
        if let Some(shape) = self.shape {
            return Ok(shape);
        }
        let task = format!("/proc/{}/task/{}", self.pid, self.thread());
        let mut header = [0u8; ELF_HEADER_READ];
        let mut filled = 0;
        let mut exe = File::open(format!("{task}/exe"))
            .map_err(|error| self.access_error(errno_of(&error), "open /proc/<pid>/exe"))?;
        while filled < header.len() {
            match exe.read(&mut header[filled..]) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(self.access_error(errno_of(&error), "read /proc/<pid>/exe"));
                }
            }
        }
        let abi = Abi::of_elf_header(&header[..filled]);
        let highest_address = match abi {
            Some(Abi::I386) => {
                // Unreadable, it is taken as the smaller space.
                let personality = std::fs::read_to_string(format!("{task}/personality"))
                    .ok()
                    .and_then(|text| injection::parse_personality(&text));
                let top =
                    injection::highest_address_of_i386_process(kernel_is_64_bit(), personality);
                usize::try_from(top).unwrap_or(usize::MAX)
            }
            // Not made to call by a 32-bit build, and of this process's
            // size for a 64-bit one.
            Some(Abi::X86_64) | None => super::highest_user_address(),
        };
        let shape = Shape {
            abi,
            highest_address,
        };
        self.shape = Some(shape);
        Ok(shape)
    }

    /// Makes the target map `len` bytes with `protection` at exactly
    /// `address` without replacing anything. `Ok(Ok(true))` when mapped
    /// there, `Ok(Ok(false))` when the kernel placed them elsewhere (it
    /// treats `MAP_FIXED_NOREPLACE` as a hint before Linux 4.17; they have
    /// been unmapped), `Ok(Err(errno))` when the target's `mmap` failed.
    pub(crate) fn map_fixed_noreplace(
        &mut self,
        address: usize,
        len: usize,
        protection: Protection,
    ) -> Result<Result<bool, Errno>, ErrorKind> {
        if !HAS_INJECTOR {
            return Err(ErrorKind::Unsupported);
        }
        // Beyond the target's top, placement (which knows this process's)
        // is told the range is taken, as `read_maps` shows it.
        let top = self.shape()?.highest_address;
        let fits = len > 0 && address.checked_add(len - 1).is_some_and(|last| last <= top);
        if !fits {
            return Ok(Ok(false));
        }
        let protection = protection_bits(protection);
        let placed = match self.call(Call::Map {
            address,
            len,
            protection,
        })? {
            // A value wider than this process's addresses is not the
            // address asked for either.
            Ok(placed) => usize::try_from(placed).unwrap_or(0),
            Err(errno) => return Ok(Err(errno)),
        };
        if placed == address {
            return Ok(Ok(true));
        }
        if placed == 0 || placed > top {
            // Outside the target's space: no mapping of its to give back.
            return Ok(Ok(false));
        }
        // Nobody else knows of the stray mapping; give it back.
        let _ = self.call(Call::Unmap {
            address: placed,
            len,
        });
        Ok(Ok(false))
    }

    /// Makes the target change the rights of `[address, address + len)`;
    /// `Ok(Err(errno))` when its `mprotect` failed.
    pub(crate) fn protect(
        &mut self,
        address: usize,
        len: usize,
        protection: Protection,
    ) -> Result<Result<(), Errno>, ErrorKind> {
        let protection = protection_bits(protection);
        Ok(self
            .call(Call::Protect {
                address,
                len,
                protection,
            })?
            .map(drop))
    }

    /// Makes the target unmap `[address, address + len)`.
    pub(crate) fn unmap(&mut self, address: usize, len: usize) -> Result<(), ErrorKind> {
        match self.call(Call::Unmap { address, len })? {
            Ok(_) => Ok(()),
            Err(errno) => Err(ErrorKind::Os {
                call: REMOTE_UNMAP_CALL,
                errno,
            }),
        }
    }

    /// Copies `bytes` into the target at `address` (`process_vm_writev`).
    pub(crate) fn write(&self, address: usize, bytes: &[u8]) -> Result<(), ErrorKind> {
        self.through_live_thread(|thread| Self::write_through(thread, address, bytes))
            .map_err(|errno| self.access_error(errno, "process_vm_writev"))
    }

    /// Copies `out.len()` bytes of the target at `address` into `out`
    /// (`process_vm_readv`).
    pub(crate) fn read(&self, address: usize, out: &mut [u8]) -> Result<(), ErrorKind> {
        self.through_live_thread(|thread| Self::read_through(thread, address, out))
            .map_err(|errno| self.access_error(errno, "process_vm_readv"))
    }

    /// Runs `access` with the chosen thread, and once more with another if
    /// that one has exited (`ESRCH`).
    fn through_live_thread(
        &self,
        mut access: impl FnMut(libc::pid_t) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let thread = self.thread();
        match access(thread) {
            Err(libc::ESRCH) => match self.choose_thread() {
                Ok(other) if other != thread => access(other),
                _ => Err(libc::ESRCH),
            },
            result => result,
        }
    }

    fn write_through(thread: libc::pid_t, address: usize, bytes: &[u8]) -> Result<(), Errno> {
        let local = libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
        let remote = libc::iovec {
            iov_base: address as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        // SAFETY: `local` describes `bytes`, which the kernel only reads;
        // the remote range is checked by the kernel and is in the other
        // process, so nothing of this process is written.
        let written = unsafe { libc::process_vm_writev(thread, &local, 1, &remote, 1, 0) };
        transferred(written, bytes.len())
    }

    fn read_through(thread: libc::pid_t, address: usize, out: &mut [u8]) -> Result<(), Errno> {
        super::backend::read_process_memory(thread, address, out)
    }

    /// A system-call instruction of `abi` in the target's code: the cached
    /// one, or the first found in the regions
    /// `injection::syscall_search_regions` ranks.
    fn syscall_site(&mut self, abi: Abi) -> Result<usize, ErrorKind> {
        if let Some(site) = self.site {
            return Ok(site);
        }
        let mut text = Vec::new();
        File::open(self.maps_path())
            .and_then(|file| file.take(MAX_MAPS_TEXT).read_to_end(&mut text))
            .map_err(|error| self.access_error(errno_of(&error), "read /proc/<pid>/maps"))?;
        const CHUNK: usize = 64 * 1024;
        let mut code = vec![0u8; CHUNK];
        for (start, end) in injection::syscall_search_regions(&text) {
            let searched_end = start.saturating_add(injection::SEARCH_LIMIT).min(end);
            let mut at = start;
            while at < searched_end {
                // Chunks overlap by one byte, so a pair split between two
                // chunks is found.
                let len = CHUNK.min(searched_end - at);
                if self.read(at, &mut code[..len]).is_err() {
                    break;
                }
                if let Some(offset) = injection::find_syscall_instruction(abi, &code[..len]) {
                    self.site = Some(at + offset);
                    return Ok(at + offset);
                }
                at += len.saturating_sub(1).max(1);
            }
        }
        Err(target(TargetProcessError::NoSyscallInstruction))
    }

    /// Makes the target execute `call`; the raw result (a value or an
    /// `errno`), or why it could not be made.
    fn call(&mut self, call: Call) -> Result<Result<u64, Errno>, ErrorKind> {
        if !HAS_INJECTOR {
            return Err(ErrorKind::Unsupported);
        }
        let abi = match self.shape()?.abi {
            Some(abi) if injection::can_drive(abi) => abi,
            _ => return Err(target(TargetProcessError::OtherArchitecture)),
        };
        let Some(request) = call.request(abi) else {
            // An address the target's registers cannot hold: no such
            // mapping of its.
            return Ok(Err(libc::EINVAL));
        };
        // A site found earlier may have been unmapped since (a library
        // unloaded): then look again, once.
        for _ in 0..2 {
            let site = self.syscall_site(abi)?;
            let thread = self.choose_thread()?;
            match inject_on_own_thread(thread, site, request) {
                Err(Injection::SiteGone) => self.site = None,
                Err(Injection::Failed(kind)) => {
                    if kind == target(TargetProcessError::OtherArchitecture) {
                        // The thread runs other code than the executable
                        // said (or the process ran another program since):
                        // read both again next time.
                        self.shape = None;
                        self.site = None;
                    }
                    return Err(kind);
                }
                Ok(raw) => return Ok(injection::syscall_result(abi, raw)),
            }
        }
        Err(target(TargetProcessError::NoSyscallInstruction))
    }
}

/// Whether the kernel is a 64-bit one, for the top of a 32-bit target. A
/// 64-bit caller runs on one; a 32-bit caller does if its own space ends
/// above 3 GiB, or (when its own personality gives it 3 GiB) if the sysctl
/// that only an x86-64 kernel has for its 32-bit programs is there.
fn kernel_is_64_bit() -> bool {
    cfg!(target_pointer_width = "64")
        || super::highest_user_address() > 0xbfff_ffff
        || std::path::Path::new("/proc/sys/abi/vsyscall32").exists()
}

/// `Ok` for a `process_vm_*` call that moved all `len` bytes; a short
/// transfer means the range ends in unmapped memory (`EFAULT`).
fn transferred(result: isize, len: usize) -> Result<(), Errno> {
    match usize::try_from(result) {
        Ok(done) if done == len => Ok(()),
        Ok(_) => Err(libc::EFAULT),
        Err(_) => Err(last_errno()),
    }
}

/// A system call to make the target make.
#[derive(Clone, Copy, Debug)]
enum Call {
    Map {
        address: usize,
        len: usize,
        protection: u64,
    },
    Protect {
        address: usize,
        len: usize,
        protection: u64,
    },
    Unmap {
        address: usize,
        len: usize,
    },
}

impl Call {
    /// The call in the target's convention; `None` if an argument does not
    /// fit its registers.
    fn request(self, abi: Abi) -> Option<SyscallRequest> {
        match self {
            Call::Map {
                address,
                len,
                protection,
            } => SyscallRequest::map_fixed_noreplace(abi, address, len, protection),
            Call::Protect {
                address,
                len,
                protection,
            } => SyscallRequest::protect(abi, address, len, protection),
            Call::Unmap { address, len } => SyscallRequest::unmap(abi, address, len),
        }
    }
}

/// Why an injection did not complete.
#[derive(Debug)]
enum Injection {
    /// The bytes at the site are no longer a system-call instruction.
    SiteGone,
    Failed(ErrorKind),
}

impl From<ErrorKind> for Injection {
    fn from(kind: ErrorKind) -> Self {
        Injection::Failed(kind)
    }
}

/// Runs [`inject`] on a thread of its own (see the module docs).
fn inject_on_own_thread(
    pid: libc::pid_t,
    site: usize,
    request: SyscallRequest,
) -> Result<u64, Injection> {
    std::thread::scope(|scope| {
        let injector = std::thread::Builder::new()
            .name("memory-buffers-ptrace".into())
            .spawn_scoped(scope, || inject(pid, site, request))
            .map_err(|error| {
                Injection::Failed(ErrorKind::Os {
                    call: "pthread_create",
                    errno: errno_of(&error),
                })
            })?;
        match injector.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

use injector::inject;

/// No injector: the register sets are x86's (`RemoteProcess::call` says
/// `Unsupported` before getting here).
#[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
mod injector {
    use super::{ErrorKind, Injection, SyscallRequest};

    pub(super) fn inject(
        _pid: libc::pid_t,
        _site: usize,
        _request: SyscallRequest,
    ) -> Result<u64, Injection> {
        Err(Injection::Failed(ErrorKind::Unsupported))
    }
}

/// The ptrace side, the same for an x86-64 and an i686 caller: what
/// differs (the register set) is `injection`'s `registers` module.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
mod injector {
    use super::{
        Errno, ErrorKind, Injection, MAX_STRAY_STOPS, STEP_TIMEOUT, STOP_TIMEOUT, SyscallRequest,
        TargetProcessError, diagnose, last_errno, target,
    };
    use crate::remote::injection::{self, Registers, Stop};
    use std::time::{Duration, Instant};

    /// Stops `tid`, makes it execute `request` at `site`, restores it and
    /// lets it go. Returns the raw value of the result register after the
    /// call.
    pub(super) fn inject(
        tid: libc::pid_t,
        site: usize,
        request: SyscallRequest,
    ) -> Result<u64, Injection> {
        let abi = request.abi;
        let mut tracee = Tracee::seize(tid)?;
        ptrace(PTRACE_INTERRUPT, tid, 0, 0).map_err(|errno| tracee.error(errno, "ptrace"))?;
        if let Stop::Signal(signal) = tracee.wait(STOP_TIMEOUT)? {
            tracee.hold_signal(signal);
        }
        let saved = get_registers(tid).map_err(|errno| tracee.error(errno, "ptrace"))?;
        tracee.saved = Some(saved);
        // The executable said which code the process runs; the thread must
        // be running that code now, or the call would be made with the
        // other convention's numbers.
        if injection::running_abi(&saved) != Some(abi) {
            return Err(target(TargetProcessError::OtherArchitecture).into());
        }
        // Read while the thread is stopped, with the access a debugger has:
        // the site may have been unmapped since it was found.
        let code = read_code(tid, site).map_err(|errno| match errno {
            libc::EIO | libc::EFAULT => Injection::SiteGone,
            errno => tracee.error(errno, "ptrace").into(),
        })?;
        if code != abi.instruction() {
            return Err(Injection::SiteGone);
        }
        let injected = injection::injected_registers(&saved, site, request).ok_or(
            Injection::Failed(target(TargetProcessError::OtherArchitecture)),
        )?;
        set_registers(tid, &injected).map_err(|errno| tracee.error(errno, "ptrace"))?;
        // Both instructions are two bytes long.
        let after_site = site as u64 + 2;
        for _ in 0..MAX_STRAY_STOPS {
            ptrace(PTRACE_SINGLESTEP, tid, 0, 0).map_err(|errno| tracee.error(errno, "ptrace"))?;
            let stop = tracee.wait(STEP_TIMEOUT)?;
            let now = get_registers(tid).map_err(|errno| tracee.error(errno, "ptrace"))?;
            match stop {
                Stop::Signal(libc::SIGTRAP)
                    if injection::instruction_pointer(&now) == after_site =>
                {
                    return Ok(injection::result_register(&now));
                }
                // A signal arrived first (or a group-stop came): keep it for
                // later and step again. If the call has run already, the
                // step's SIGTRAP is pending and stops the thread before it
                // executes anything more.
                Stop::Signal(signal) => tracee.hold_signal(signal),
                _ => {}
            }
        }
        Err(target(TargetProcessError::DidNotStop).into())
    }

    /// A thread attached with `PTRACE_SEIZE`; dropping restores its saved
    /// registers, hands back the signals it was stopped for, and detaches.
    struct Tracee {
        tid: libc::pid_t,
        /// The registers to put back, once read.
        saved: Option<Registers>,
        /// Signals the thread was stopped to receive, with their details, in
        /// the order they came; delivered again when it is let go.
        held: Vec<(i32, Option<libc::siginfo_t>)>,
    }

    impl Tracee {
        fn seize(tid: libc::pid_t) -> Result<Tracee, ErrorKind> {
            ptrace(PTRACE_SEIZE, tid, 0, 0).map_err(|errno| match errno {
                libc::ESRCH => target(TargetProcessError::NotRunning),
                libc::EPERM => target(diagnose(tid)),
                errno => ErrorKind::Os {
                    call: "ptrace",
                    errno,
                },
            })?;
            Ok(Tracee {
                tid,
                saved: None,
                held: Vec::new(),
            })
        }

        /// The error for a ptrace call that failed while attached: `ESRCH`
        /// means the thread is gone (or no longer stopped, which only its exit
        /// causes here).
        fn error(&self, errno: Errno, call: &'static str) -> ErrorKind {
            match errno {
                libc::ESRCH => target(TargetProcessError::NotRunning),
                errno => ErrorKind::Os { call, errno },
            }
        }

        /// Records the signal of the signal-delivery-stop the thread is in.
        fn hold_signal(&mut self, signal: i32) {
            // SAFETY: all-zero is a valid `siginfo_t` (plain integers and
            // padding).
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let read = ptrace(
                PTRACE_GETSIGINFO,
                self.tid,
                0,
                &mut info as *mut libc::siginfo_t as usize,
            );
            self.held.push((signal, read.ok().map(|_| info)));
        }

        /// Waits until the thread stops, exits, or `timeout` passes. An exit
        /// is seen without being collected (`WNOWAIT`), so the target's parent
        /// (which may be this process) still gets its status.
        fn wait(&self, timeout: Duration) -> Result<Stop, ErrorKind> {
            let deadline = Instant::now() + timeout;
            let mut idle = 0u32;
            loop {
                // SAFETY: all-zero is a valid `siginfo_t`.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: `info` is writable; `WNOWAIT` leaves the event to be
                // collected.
                let peeked = unsafe {
                    libc::waitid(
                        libc::P_PID,
                        self.tid as libc::id_t,
                        &mut info,
                        libc::WEXITED
                            | libc::WSTOPPED
                            | libc::WNOHANG
                            | libc::WNOWAIT
                            | libc::__WALL,
                    )
                };
                if peeked == -1 {
                    match last_errno() {
                        libc::EINTR => continue,
                        libc::ECHILD => return Err(target(TargetProcessError::NotRunning)),
                        errno => {
                            return Err(ErrorKind::Os {
                                call: "waitid",
                                errno,
                            });
                        }
                    }
                }
                // SAFETY: `waitid` filled `info` (or left it zero: no event).
                let pid = unsafe { info.si_pid() };
                if pid != 0 {
                    if matches!(
                        info.si_code,
                        libc::CLD_EXITED | libc::CLD_KILLED | libc::CLD_DUMPED
                    ) {
                        return Err(target(TargetProcessError::NotRunning));
                    }
                    // Collect the stop, and only a stop: without `WEXITED` an
                    // exit in between is left to the target's parent. For a
                    // traced stop `si_status` is the whole stop code (signal,
                    // and event in the next byte), which a `waitpid` status
                    // holds shifted by 8 above `0x7f`.
                    // SAFETY: all-zero is a valid `siginfo_t`.
                    let mut stopped: libc::siginfo_t = unsafe { std::mem::zeroed() };
                    // SAFETY: `stopped` is writable.
                    let collected = unsafe {
                        libc::waitid(
                            libc::P_PID,
                            self.tid as libc::id_t,
                            &mut stopped,
                            libc::WSTOPPED | libc::WNOHANG | libc::__WALL,
                        )
                    };
                    // SAFETY: filled by `waitid`, or zero (nothing collected).
                    let (pid, code) = unsafe { (stopped.si_pid(), stopped.si_status()) };
                    if collected == 0 && pid == self.tid {
                        match injection::classify_stop((code << 8) | 0x7f) {
                            Stop::Other => {}
                            stop => return Ok(stop),
                        }
                    }
                    continue;
                }
                if Instant::now() >= deadline {
                    return Err(target(TargetProcessError::DidNotStop));
                }
                // The stop usually comes within microseconds: yield first, then
                // sleep, lengthening to a millisecond.
                idle += 1;
                if idle < 64 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(u64::from(idle.min(1000))));
                }
            }
        }
    }

    impl Drop for Tracee {
        fn drop(&mut self) {
            // Every step is best effort: if the thread is not stopped (it
            // exited, or never stopped) these fail with ESRCH, and the thread
            // running this ends right after, which detaches it anyway.
            if let Some(saved) = &self.saved {
                let _ = set_registers(self.tid, saved);
            }
            let mut held = self.held.drain(..);
            let first = held.next();
            for (signal, _) in held {
                // Queued again for after the detach: the details of these
                // (rarely more than one) are lost.
                // SAFETY: sends a signal to the thread it was meant for.
                unsafe { libc::syscall(libc::SYS_tgkill, self.tid, self.tid, signal) };
            }
            let signal = match first {
                Some((signal, Some(info))) => {
                    // With its own details back, the signal is delivered as it
                    // came, not as one sent by the tracer.
                    let _ = ptrace(
                        PTRACE_SETSIGINFO,
                        self.tid,
                        0,
                        &info as *const libc::siginfo_t as usize,
                    );
                    signal
                }
                Some((signal, None)) => signal,
                None => 0,
            };
            let _ = ptrace(PTRACE_DETACH, self.tid, 0, signal as usize);
        }
    }

    // ptrace requests (`<sys/ptrace.h>`), numbered by the kernel's ABI (the
    // same on x86-64 and i386): glibc and musl name them with different
    // types.
    const PTRACE_PEEKTEXT: libc::c_long = 1;
    const PTRACE_SINGLESTEP: libc::c_long = 9;
    const PTRACE_GETREGS: libc::c_long = 12;
    const PTRACE_SETREGS: libc::c_long = 13;
    const PTRACE_DETACH: libc::c_long = 17;
    const PTRACE_GETSIGINFO: libc::c_long = 0x4202;
    const PTRACE_SETSIGINFO: libc::c_long = 0x4203;
    const PTRACE_SEIZE: libc::c_long = 0x4206;
    const PTRACE_INTERRUPT: libc::c_long = 0x4207;

    /// The raw `ptrace` system call (not the C library's wrapper, whose
    /// `PEEK*` requests return the word instead of storing it).
    fn ptrace(
        request: libc::c_long,
        tid: libc::pid_t,
        address: usize,
        data: usize,
    ) -> Result<libc::c_long, Errno> {
        // SAFETY: every request made here either takes plain integers or a
        // `data` pointer to a live, writable (GETREGS, GETSIGINFO, PEEK) or
        // readable (SETREGS, SETSIGINFO) value of the type the request
        // expects for this build's width, as each caller documents.
        let result = unsafe { libc::syscall(libc::SYS_ptrace, request, tid, address, data) };
        if result == -1 {
            Err(last_errno())
        } else {
            Ok(result)
        }
    }

    /// The thread's registers, in this build's register set (a 64-bit
    /// caller sees a 32-bit thread's registers zero-extended).
    fn get_registers(tid: libc::pid_t) -> Result<Registers, Errno> {
        // SAFETY: all-zero is a valid value of this plain integer struct.
        let mut registers: Registers = unsafe { std::mem::zeroed() };
        ptrace(
            PTRACE_GETREGS,
            tid,
            0,
            &mut registers as *mut Registers as usize,
        )?;
        Ok(registers)
    }

    fn set_registers(tid: libc::pid_t, registers: &Registers) -> Result<(), Errno> {
        ptrace(
            PTRACE_SETREGS,
            tid,
            0,
            registers as *const Registers as usize,
        )
        .map(drop)
    }

    /// The word of the target's memory at `address` (aligned), read with
    /// ptrace's access (code that is not readable included). A word is a
    /// `long` of this build: the kernel stores 4 bytes for a 32-bit
    /// caller.
    fn peek(tid: libc::pid_t, address: usize) -> Result<libc::c_ulong, Errno> {
        let mut word: libc::c_ulong = 0;
        ptrace(
            PTRACE_PEEKTEXT,
            tid,
            address,
            &mut word as *mut libc::c_ulong as usize,
        )?;
        Ok(word)
    }

    /// The two bytes at `site`, from the aligned words that hold them: an
    /// aligned word never crosses into the next page, which may be
    /// unmapped.
    fn read_code(tid: libc::pid_t, site: usize) -> Result<[u8; 2], Errno> {
        const WORD: usize = std::mem::size_of::<libc::c_ulong>();
        let first = site - site % WORD;
        let mut bytes = [0u8; 2 * WORD];
        let words = if site % WORD == WORD - 1 { 2 } else { 1 };
        for (index, chunk) in bytes.chunks_exact_mut(WORD).take(words).enumerate() {
            let address = first.checked_add(index * WORD).ok_or(libc::EFAULT)?;
            chunk.copy_from_slice(&peek(tid, address)?.to_ne_bytes());
        }
        let at = site - first;
        Ok([bytes[at], bytes[at + 1]])
    }
}

/// A thread of process `pid` that has not exited: the main thread if it
/// still runs (it usually does), another one if it called `pthread_exit`.
fn live_thread(pid: libc::pid_t) -> Option<libc::pid_t> {
    let alive = |tid: libc::pid_t| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
            .ok()
            .and_then(|text| ProcessStatus::parse(&text))
            .is_some_and(|status| !status.has_exited())
    };
    if alive(pid) {
        return Some(pid);
    }
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .find(|&tid| alive(tid))
}

fn read_status(pid: libc::pid_t) -> Option<ProcessStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    ProcessStatus::parse(&text)
}

/// Why the kernel refused access to `pid`: the facts, read from `/proc`,
/// judged by `injection::diagnose_refusal`.
fn diagnose(pid: libc::pid_t) -> TargetProcessError {
    let Some(tracer) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| ProcessStatus::parse(&text))
    else {
        return TargetProcessError::AccessDenied;
    };
    let target = read_status(pid);
    let yama_scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|text| text.trim().parse().ok());
    // Walk up from the target's parent; a short chain, bounded anyway.
    let own = std::process::id();
    let mut ancestor = target.map_or(0, |status| status.parent);
    let mut target_is_descendant = false;
    for _ in 0..256 {
        if ancestor == own {
            target_is_descendant = true;
            break;
        }
        match libc::pid_t::try_from(ancestor)
            .ok()
            .filter(|&pid| pid > 1)
            .and_then(read_status)
        {
            Some(status) => ancestor = status.parent,
            None => break,
        }
    }
    injection::diagnose_refusal(&RefusalFacts {
        tracer,
        target,
        yama_scope,
        target_is_descendant,
    })
}
