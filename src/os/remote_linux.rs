//! Linux: another process's memory, through `/proc/<pid>`, ptrace and
//! `process_vm_readv`/`process_vm_writev`.
//!
//! Mapping and unmapping are done by the target itself: one of its threads
//! is stopped (`PTRACE_SEIZE` + `PTRACE_INTERRUPT`), made to execute one
//! `syscall` instruction found in its own code, and restored exactly. What
//! the registers are set to, and what the answers mean, is decided in
//! `injection.rs`; this file only makes the calls.
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
use crate::injection::{self, ProcessStatus, RefusalFacts};
use crate::maps::{self, MapsEntry};
use crate::target_process::TargetProcessError;
use std::fs::File;
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;
#[cfg(target_arch = "x86_64")]
use std::time::Instant;

use super::{Errno, Protection};

/// The call that maps memory in a target, as error messages name it.
pub(crate) const REMOTE_MAP_CALL: &str = "mmap (made by the target through ptrace)";

/// The call that unmaps memory in a target, as error messages name it.
const REMOTE_UNMAP_CALL: &str = "munmap (made by the target through ptrace)";

/// The call that changes the rights of memory in a target, as error
/// messages name it.
pub(crate) const REMOTE_PROTECT_CALL: &str = "mprotect (made by the target through ptrace)";

/// The `PROT_*` bits of `protection`, as the target's `mmap` and
/// `mprotect` take them.
fn protection_bits(protection: Protection) -> u64 {
    let bits = match protection {
        Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        Protection::ReadExecute => libc::PROT_READ | libc::PROT_EXEC,
        Protection::ReadWriteExecute => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
    };
    bits as u64
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
    /// A `syscall` instruction in the target, found once; its bytes are
    /// checked again (while the thread is stopped) before every use.
    site: Option<usize>,
}

impl RemoteProcess {
    /// Checks that the process exists and that its map may be read (the
    /// kernel's "may read" check, which ptrace's "may attach" includes).
    pub(crate) fn open(process_id: u32) -> Result<RemoteProcess, ErrorKind> {
        let pid = match libc::pid_t::try_from(process_id) {
            Ok(pid) if pid > 0 => pid,
            _ => return Err(target(TargetProcessError::NotRunning)),
        };
        let process = RemoteProcess {
            pid,
            thread: AtomicI32::new(pid),
            site: None,
        };
        process.choose_thread()?;
        File::open(process.maps_path())
            .map_err(|error| process.access_error(errno_of(&error), "open /proc/<pid>/maps"))?;
        Ok(process)
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
    /// breaks.
    pub(crate) fn read_maps(
        &mut self,
        buffer: &mut Vec<u8>,
        visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
    ) -> Result<(), Errno> {
        let _ = self.choose_thread();
        let mut file = File::open(self.maps_path()).map_err(|error| errno_of(&error))?;
        maps::for_each_entry(|out| file.read(out), buffer, visit).map_err(|error| errno_of(&error))
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
        let protection = protection_bits(protection);
        let placed = match self.call(Call::Map {
            address,
            len,
            protection,
        })? {
            Ok(placed) => placed as usize,
            Err(errno) => return Ok(Err(errno)),
        };
        if placed == address {
            return Ok(Ok(true));
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
        let local = libc::iovec {
            iov_base: out.as_mut_ptr().cast(),
            iov_len: out.len(),
        };
        let remote = libc::iovec {
            iov_base: address as *mut libc::c_void,
            iov_len: out.len(),
        };
        // SAFETY: `local` describes `out`, writable for its length; the
        // remote range is only read, and checked by the kernel.
        let read = unsafe { libc::process_vm_readv(thread, &local, 1, &remote, 1, 0) };
        transferred(read, out.len())
    }

    /// A `syscall` instruction in the target's code: the cached one, or the
    /// first found in the regions `injection::syscall_search_regions`
    /// ranks.
    fn syscall_site(&mut self) -> Result<usize, ErrorKind> {
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
                if let Some(offset) = injection::find_syscall_instruction(&code[..len]) {
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
        // A site found earlier may have been unmapped since (a library
        // unloaded): then look again, once.
        for _ in 0..2 {
            let site = self.syscall_site()?;
            let thread = self.choose_thread()?;
            match inject_on_own_thread(thread, site, call) {
                Err(Injection::SiteGone) => self.site = None,
                Err(Injection::Failed(kind)) => return Err(kind),
                Ok(raw) => return Ok(injection::syscall_result(raw)),
            }
        }
        Err(target(TargetProcessError::NoSyscallInstruction))
    }
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

/// Why an injection did not complete.
#[derive(Debug)]
enum Injection {
    /// The bytes at the site are no longer a `syscall` instruction.
    SiteGone,
    Failed(ErrorKind),
}

impl From<ErrorKind> for Injection {
    fn from(kind: ErrorKind) -> Self {
        Injection::Failed(kind)
    }
}

/// Runs [`inject`] on a thread of its own (see the module docs).
fn inject_on_own_thread(pid: libc::pid_t, site: usize, call: Call) -> Result<u64, Injection> {
    std::thread::scope(|scope| {
        let injector = std::thread::Builder::new()
            .name("memory-buffers-ptrace".into())
            .spawn_scoped(scope, || inject(pid, site, call))
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

#[cfg(not(target_arch = "x86_64"))]
fn inject(_pid: libc::pid_t, _site: usize, _call: Call) -> Result<u64, Injection> {
    // The instruction and register set are x86-64's; other architectures
    // have no injector yet (reading and writing bytes works everywhere).
    Err(Injection::Failed(ErrorKind::Unsupported))
}

/// Stops `tid`, makes it execute `call` at `site`, restores it and lets it
/// go. Returns the raw value of `rax` after the call.
#[cfg(target_arch = "x86_64")]
fn inject(tid: libc::pid_t, site: usize, call: Call) -> Result<u64, Injection> {
    use injection::{Stop, SyscallRequest};
    let request = match call {
        Call::Map {
            address,
            len,
            protection,
        } => SyscallRequest::map_fixed_noreplace(address, len, protection),
        Call::Protect {
            address,
            len,
            protection,
        } => SyscallRequest::protect(address, len, protection),
        Call::Unmap { address, len } => SyscallRequest::unmap(address, len),
    };
    let mut tracee = Tracee::seize(tid)?;
    ptrace(PTRACE_INTERRUPT, tid, 0, 0).map_err(|errno| tracee.error(errno, "ptrace"))?;
    if let Stop::Signal(signal) = tracee.wait(STOP_TIMEOUT)? {
        tracee.hold_signal(signal);
    }
    let saved = get_registers(tid).map_err(|errno| tracee.error(errno, "ptrace"))?;
    tracee.saved = Some(saved);
    if injection::is_32_bit(&saved) {
        return Err(target(TargetProcessError::OtherArchitecture).into());
    }
    // Read while the thread is stopped, with the access a debugger has: the
    // site may have been unmapped since it was found.
    let word = peek(tid, site).map_err(|errno| match errno {
        libc::EIO | libc::EFAULT => Injection::SiteGone,
        errno => tracee.error(errno, "ptrace").into(),
    })?;
    if word.to_ne_bytes()[..2] != injection::SYSCALL_INSTRUCTION {
        return Err(Injection::SiteGone);
    }
    set_registers(tid, &injection::injected_registers(&saved, site, request))
        .map_err(|errno| tracee.error(errno, "ptrace"))?;
    let after_site = site as u64 + 2;
    for _ in 0..MAX_STRAY_STOPS {
        ptrace(PTRACE_SINGLESTEP, tid, 0, 0).map_err(|errno| tracee.error(errno, "ptrace"))?;
        let stop = tracee.wait(STEP_TIMEOUT)?;
        let now = get_registers(tid).map_err(|errno| tracee.error(errno, "ptrace"))?;
        match stop {
            Stop::Signal(libc::SIGTRAP) if now.rip == after_site => return Ok(now.rax),
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
#[cfg(target_arch = "x86_64")]
struct Tracee {
    tid: libc::pid_t,
    /// The registers to put back, once read.
    saved: Option<libc::user_regs_struct>,
    /// Signals the thread was stopped to receive, with their details, in
    /// the order they came; delivered again when it is let go.
    held: Vec<(i32, Option<libc::siginfo_t>)>,
}

#[cfg(target_arch = "x86_64")]
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
    fn wait(&self, timeout: Duration) -> Result<injection::Stop, ErrorKind> {
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
                    libc::WEXITED | libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
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
                        injection::Stop::Other => {}
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

#[cfg(target_arch = "x86_64")]
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

// ptrace requests (`<sys/ptrace.h>`), numbered by the kernel's ABI: glibc
// and musl name them with different types.
#[cfg(target_arch = "x86_64")]
const PTRACE_PEEKTEXT: libc::c_long = 1;
#[cfg(target_arch = "x86_64")]
const PTRACE_SINGLESTEP: libc::c_long = 9;
#[cfg(target_arch = "x86_64")]
const PTRACE_GETREGS: libc::c_long = 12;
#[cfg(target_arch = "x86_64")]
const PTRACE_SETREGS: libc::c_long = 13;
#[cfg(target_arch = "x86_64")]
const PTRACE_DETACH: libc::c_long = 17;
#[cfg(target_arch = "x86_64")]
const PTRACE_GETSIGINFO: libc::c_long = 0x4202;
#[cfg(target_arch = "x86_64")]
const PTRACE_SETSIGINFO: libc::c_long = 0x4203;
#[cfg(target_arch = "x86_64")]
const PTRACE_SEIZE: libc::c_long = 0x4206;
#[cfg(target_arch = "x86_64")]
const PTRACE_INTERRUPT: libc::c_long = 0x4207;

/// The raw `ptrace` system call (not the C library's wrapper, whose
/// `PEEK*` requests return the word instead of storing it).
#[cfg(target_arch = "x86_64")]
fn ptrace(
    request: libc::c_long,
    tid: libc::pid_t,
    address: usize,
    data: usize,
) -> Result<libc::c_long, Errno> {
    // SAFETY: every request made here either takes plain integers or a
    // `data` pointer to a live, writable (GETREGS, GETSIGINFO, PEEK) or
    // readable (SETREGS, SETSIGINFO) value of the type the request expects,
    // as each caller documents.
    let result = unsafe { libc::syscall(libc::SYS_ptrace, request, tid, address, data) };
    if result == -1 {
        Err(last_errno())
    } else {
        Ok(result)
    }
}

#[cfg(target_arch = "x86_64")]
fn get_registers(tid: libc::pid_t) -> Result<libc::user_regs_struct, Errno> {
    // SAFETY: all-zero is a valid value of this plain integer struct.
    let mut registers: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    ptrace(
        PTRACE_GETREGS,
        tid,
        0,
        &mut registers as *mut libc::user_regs_struct as usize,
    )?;
    Ok(registers)
}

#[cfg(target_arch = "x86_64")]
fn set_registers(tid: libc::pid_t, registers: &libc::user_regs_struct) -> Result<(), Errno> {
    ptrace(
        PTRACE_SETREGS,
        tid,
        0,
        registers as *const libc::user_regs_struct as usize,
    )
    .map(drop)
}

/// The word of the target's memory at `address`, read with ptrace's
/// access (code that is not readable included).
#[cfg(target_arch = "x86_64")]
fn peek(tid: libc::pid_t, address: usize) -> Result<u64, Errno> {
    let mut word = 0u64;
    ptrace(
        PTRACE_PEEKTEXT,
        tid,
        address,
        &mut word as *mut u64 as usize,
    )?;
    Ok(word)
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
