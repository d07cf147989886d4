//! What the Unix backends (Linux, which Android uses too, macOS, FreeBSD)
//! share: POSIX calls that behave the same on all three. Each backend file re-exports what it uses
//! from here and adds what its kernel does differently (how a fixed
//! address is claimed without replacing anything, where the list of
//! mappings comes from, which locks outlive a descriptor).
//!
//! # References
//!
//! POSIX `mmap`, `munmap`, `msync`, `openat`, `mkdirat`, `fstatat`,
//! `linkat`, `renameat`, `unlinkat`, `flock`, `pwritev`; Arm Architecture
//! Reference Manual, "Cache maintenance instructions" (`DC CVAU`,
//! `IC IVAU`) and the `CTR_EL0` register.

use super::fault::{self, FaultPoint};
#[cfg(any(linux_like, target_os = "freebsd"))]
use super::{ForkMarker, process_id};
use super::{OwnedMapping, Protection};
use crate::space::maps::Access;
use std::ffi::CString;
#[cfg(not(linux_like))]
use std::ffi::{CStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
#[cfg(not(linux_like))]
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// An `errno` value.
pub(crate) type Errno = i32;

/// The error number for an invalid argument.
pub(crate) const INVALID_ARGUMENT: Errno = libc::EINVAL;

/// The error number for "not enough memory".
pub(crate) const OUT_OF_MEMORY: Errno = libc::ENOMEM;

/// `Ok` for a system call that returned 0, the `errno` otherwise.
pub(super) fn zero_or_errno(result: libc::c_int) -> Result<(), Errno> {
    if result == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Calls `call` (a system call returning -1 with `errno` on failure) again
/// while it fails with `EINTR`: a signal storm must not turn into errors.
pub(super) fn retry_interrupted(mut call: impl FnMut() -> libc::c_int) -> libc::c_int {
    loop {
        let result = call();
        if result != -1 || last_errno() != libc::EINTR {
            return result;
        }
    }
}

pub(super) fn last_errno() -> Errno {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

pub(crate) fn query_granularity() -> usize {
    // SAFETY: `sysconf` has no preconditions; it returns -1 on error.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    match usize::try_from(size) {
        Ok(size) if size.is_power_of_two() => size,
        _ => 4096,
    }
}

/// The `PROT_*` bits of `protection`.
pub(super) fn protection_bits(protection: Protection) -> libc::c_int {
    match protection {
        Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        Protection::ReadExecute => libc::PROT_READ | libc::PROT_EXEC,
        Protection::ReadWriteExecute => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
    }
}

/// A mapping's protection exactly as the system states it (`PROT_*` bits),
/// so that it can be put back as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageProtection(libc::c_int);

impl PageProtection {
    /// The same rights plus write.
    pub(crate) fn with_write(self) -> PageProtection {
        PageProtection(self.0 | libc::PROT_WRITE)
    }
}

/// The unit in which protections change: the page.
pub(crate) fn page_size() -> usize {
    super::allocation_granularity()
}

/// The name of the call that changes protections, for error messages.
pub(crate) const PROTECT_CALL: &str = "mprotect";

impl PageProtection {
    /// The `PROT_*` bits of the rights a list of mappings shows; the
    /// facade's `visit_protections` reads them from the backend's list,
    /// since no Unix has a system call that reports a page's protection.
    pub(super) fn of_access(access: Access) -> PageProtection {
        PageProtection(
            if access.read { libc::PROT_READ } else { 0 }
                | if access.write { libc::PROT_WRITE } else { 0 }
                | if access.execute { libc::PROT_EXEC } else { 0 },
        )
    }
}

/// Sets the protection of the pages of `[address, address + len)`.
/// `address` must be page-aligned.
pub(crate) fn set_page_protection(
    address: usize,
    len: usize,
    protection: PageProtection,
) -> Result<(), Errno> {
    fault::check(FaultPoint::Protect)?;
    // SAFETY: `mprotect` changes only access rights; the callers pass pages
    // they are about to write (made writable) or restore to the exact
    // rights read from the map, or pages of an allocation they own.
    let result = unsafe { libc::mprotect(address as *mut libc::c_void, len, protection.0) };
    if result == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Sets the protection of pages this library mapped.
pub(crate) fn protect(address: usize, len: usize, protection: Protection) -> Result<(), Errno> {
    set_page_protection(address, len, PageProtection(protection_bits(protection)))
}

/// Whether an `errno` from `mmap` means the execute right was refused by
/// policy (SELinux `execmem`, PaX `MPROTECT`, a hardened runtime without
/// the JIT entitlement), not that memory ran out.
pub(crate) fn is_execute_refusal(errno: Errno) -> bool {
    errno == libc::EACCES || errno == libc::EPERM
}

/// Unmaps `[address, address + len)`.
///
/// # Safety
///
/// The range was mapped by this library, and nothing uses it any more.
pub(crate) unsafe fn unmap(address: usize, len: usize) {
    // SAFETY: the caller's contract. `munmap` of a range we mapped fails
    // only for invalid arguments, which these are not; it runs from a
    // destructor, which must not panic, so the result is ignored.
    unsafe { libc::munmap(address as *mut libc::c_void, len) };
}

/// `mmap` of `len` bytes of private anonymous memory with `protection`,
/// `hint` as the address (0 for none) and `flags` added to
/// `MAP_PRIVATE | MAP_ANONYMOUS`. Returns the address the kernel chose.
///
/// # Safety
///
/// `flags` must not contain `MAP_FIXED` without a flag that forbids
/// replacing existing mappings (`MAP_FIXED_NOREPLACE`, `MAP_EXCL`).
pub(super) unsafe fn map_anonymous(
    hint: usize,
    len: usize,
    protection: Protection,
    flags: libc::c_int,
) -> Result<usize, Errno> {
    fault::check(FaultPoint::MapMemory)?;
    // SAFETY: without a replacing `MAP_FIXED` (the caller's contract) the
    // kernel only ever uses free address space; existing mappings are
    // untouched.
    let result = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            len,
            protection_bits(protection),
            libc::MAP_PRIVATE | libc::MAP_ANON | flags,
            -1,
            0,
        )
    };
    if result == libc::MAP_FAILED {
        Err(last_errno())
    } else {
        Ok(result as usize)
    }
}

/// Maps `len` bytes of private anonymous memory wherever the kernel likes
/// (macOS has its own, for `MAP_JIT`).
#[cfg(any(linux_like, target_os = "freebsd"))]
pub(crate) fn map_anywhere(len: usize, protection: Protection) -> Result<OwnedMapping, Errno> {
    // SAFETY: no hint and no `MAP_FIXED`: the kernel chooses a free range.
    let address = unsafe { map_anonymous(0, len, protection, 0)? };
    Ok(OwnedMapping::new(address, len, unmap))
}

/// Runs `write` while `[address, address + len)` is writable. Linux and
/// FreeBSD do not enforce W^X on the read/write/execute buffers this
/// library maps, so this only calls `write` (macOS on Apple Silicon has
/// its own).
#[cfg(any(linux_like, target_os = "freebsd"))]
pub(crate) fn with_code_writable<R>(_address: usize, _len: usize, write: impl FnOnce() -> R) -> R {
    write()
}

/// A [`ForkMarker`] in a fresh private page that
/// `zero_in_child` (given the page's address and length) arranges for a
/// forked child to inherit zeroed, so checking it is a load or two. Where
/// that fails or no page can be had, the marker is on the heap and records
/// the process id, which is then compared.
#[cfg(any(linux_like, target_os = "freebsd"))]
pub(super) fn fork_marker_in_wiped_page(
    zero_in_child: impl FnOnce(usize, usize) -> bool,
) -> &'static ForkMarker {
    let granularity = super::allocation_granularity();
    if std::mem::size_of::<ForkMarker>() <= granularity {
        // SAFETY: no hint and no `MAP_FIXED`: the kernel chooses a free range.
        if let Ok(address) = unsafe { map_anonymous(0, granularity, Protection::ReadWrite, 0) } {
            let page = OwnedMapping::new(address, granularity, unmap);
            if zero_in_child(address, granularity) {
                let page = page.leak();
                // SAFETY: the page is mapped read/write for the rest of the
                // process, page-aligned (so aligned for the marker), larger
                // than the marker, and all zero: a valid marker of generation
                // 0 and process id 0 ("wiped in a child"), which is what a
                // forked child sees again.
                return unsafe { &*(page as *const ForkMarker) };
            }
        }
    }
    Box::leak(Box::new(ForkMarker::unwiped(process_id())))
}

/// Makes freshly written code in `[address, address + len)` visible to
/// instruction fetch.
///
/// - x86 and x86-64: nothing to do; their instruction caches are coherent
///   with data writes (the CPU snoops stores into fetched lines).
/// - AArch64 (but Apple's): the Arm sequence, with the line sizes read from
///   `CTR_EL0`: `DC CVAU` (clean each data-cache line to the point of
///   unification, so that instruction fetch can see the bytes), `DSB ISH`,
///   `IC IVAU` (invalidate each instruction-cache line, on every core of
///   the inner shareable domain), `DSB ISH`, `ISB` (drop instructions this
///   core already fetched). `CTR_EL0.IDC` and `.DIC` say when a CPU needs
///   no cleaning or no invalidation. Without this, a core may run the
///   stale bytes that its instruction cache still holds for the address.
/// - Apple AArch64: `sys_icache_invalidate`, which Apple documents for code
///   written to `MAP_JIT` memory.
/// - Other architectures: the compiler runtime's `__clear_cache`.
///
/// The caller guarantees that the whole range is mapped: cache
/// maintenance of an unmapped address faults on AArch64.
pub(crate) fn flush_instruction_cache(address: usize, len: usize) {
    if len == 0 {
        return;
    }
    let lines = maintain_caches(address, len);
    fault::record_flush(address, len, lines);
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
fn maintain_caches(_address: usize, _len: usize) -> usize {
    0
}

#[cfg(all(target_arch = "aarch64", not(target_vendor = "apple")))]
fn maintain_caches(address: usize, len: usize) -> usize {
    use crate::code::cache_geometry::{CacheGeometry, line_starts};
    use std::arch::asm;
    let ctr: u64;
    // SAFETY: reading `CTR_EL0` has no side effects; Linux and FreeBSD let
    // user space read it (directly, or by trapping and emulating the read).
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let geometry = CacheGeometry::from_ctr_el0(ctr);
    let end = address.saturating_add(len);
    let mut lines = 0;
    if !geometry.data_clean_not_needed {
        for line in line_starts(address, end, geometry.data_line) {
            // SAFETY: cleaning a data-cache line of mapped memory (the
            // caller's guarantee) writes dirty bytes back and changes no
            // value a program can observe.
            unsafe { asm!("dc cvau, {}", in(reg) line, options(nostack, preserves_flags)) };
            lines += 1;
        }
    }
    // SAFETY: a barrier; it only orders the cleaning before what follows.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    if !geometry.instruction_invalidate_not_needed {
        for line in line_starts(address, end, geometry.instruction_line) {
            // SAFETY: invalidating instruction-cache lines of mapped memory
            // only makes later fetches read memory again.
            unsafe { asm!("ic ivau, {}", in(reg) line, options(nostack, preserves_flags)) };
            lines += 1;
        }
        // SAFETY: a barrier, as above.
        unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    }
    // SAFETY: discards instructions this core fetched before the barrier.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
    lines
}

#[cfg(all(target_arch = "aarch64", target_vendor = "apple"))]
fn maintain_caches(address: usize, len: usize) -> usize {
    unsafe extern "C" {
        /// `<libkern/OSCacheControl.h>`.
        fn sys_icache_invalidate(start: *mut libc::c_void, len: libc::size_t);
    }
    // SAFETY: cache maintenance over a range the caller guarantees mapped;
    // the bytes are neither read nor written.
    unsafe { sys_icache_invalidate(address as *mut libc::c_void, len) };
    len.div_ceil(64)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
fn maintain_caches(address: usize, len: usize) -> usize {
    unsafe extern "C" {
        fn __clear_cache(start: *mut libc::c_char, end: *mut libc::c_char);
    }
    // SAFETY: `__clear_cache` only performs cache maintenance over the
    // range; it does not read or write the bytes.
    unsafe {
        __clear_cache(
            address as *mut libc::c_char,
            address.saturating_add(len) as *mut libc::c_char,
        )
    };
    len.div_ceil(64)
}

pub(crate) fn effective_user_id() -> u32 {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Now on the monotonic clock (`CLOCK_MONOTONIC`), as a time since an
/// arbitrary start; never goes back, whatever happens to the wall clock.
pub(crate) fn monotonic_now() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable `timespec`; `CLOCK_MONOTONIC`
    // always exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Sleeps until the monotonic clock reads `deadline`.
///
/// The deadline is absolute, so a signal storm cannot stretch the wait: a
/// relative sleep restarted after each signal (what `std::thread::sleep`
/// does) gets the timer slack added every time and, with a signal every
/// 50 µs, never completes. Here an interrupted sleep is resumed towards the
/// same deadline, and returns at once once it has passed.
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn sleep_until(deadline: Duration) {
    let target = libc::timespec {
        tv_sec: libc::time_t::try_from(deadline.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below 10^9, so it fits a `c_long` of 32 bits (32-bit targets).
        tv_nsec: deadline.subsec_nanos() as libc::c_long,
    };
    loop {
        // SAFETY: `target` is a valid `timespec`; with `TIMER_ABSTIME` the
        // remaining-time pointer is not used and may be null. The error is
        // returned, not set in `errno`.
        let result = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &target,
                std::ptr::null_mut(),
            )
        };
        if result != libc::EINTR || monotonic_now() >= deadline {
            return;
        }
    }
}

/// Sleeps until the monotonic clock reads `deadline`. macOS has no
/// `clock_nanosleep`: each relative `nanosleep` is computed afresh from the
/// clock, so an interrupted sleep still ends at the same deadline.
#[cfg(target_vendor = "apple")]
pub(crate) fn sleep_until(deadline: Duration) {
    loop {
        let Some(left) = deadline
            .checked_sub(monotonic_now())
            .filter(|left| !left.is_zero())
        else {
            return;
        };
        let request = libc::timespec {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: left.subsec_nanos().into(),
        };
        // SAFETY: `request` is a valid `timespec`; the remainder is not
        // wanted, so its pointer may be null.
        unsafe { libc::nanosleep(&request, std::ptr::null_mut()) };
    }
}

/// Sleeps for `duration` on the monotonic clock; see [`sleep_until`].
pub(crate) fn sleep(duration: Duration) {
    sleep_until(monotonic_now().saturating_add(duration));
}

/// Whether a process with this id exists (it may belong to another user).
pub(crate) fn process_is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || last_errno() != libc::ESRCH
}

/// Whether every page of `[address, address + len)` is mapped, asked with
/// `msync(MS_ASYNC)`, which does nothing to the pages but fails with
/// `ENOMEM` when part of the range is unmapped. Needs no `/proc` and no
/// buffer, whatever the length. `address` must be page-aligned.
pub(crate) fn is_mapped(address: usize, len: usize) -> Result<bool, Errno> {
    // SAFETY: `MS_ASYNC` without `MS_INVALIDATE` only checks the range
    // (and schedules nothing on modern kernels); no memory is touched.
    let result = unsafe { libc::msync(address as *mut libc::c_void, len, libc::MS_ASYNC) };
    if result == 0 {
        return Ok(true);
    }
    match last_errno() {
        libc::ENOMEM => Ok(false),
        errno => Err(errno),
    }
}

// What `fstat` fills: on Linux (and Android) the large-file `stat64`, whose
// inode and size are 64 bits on every width (the plain `fstat` of a 32-bit
// program fails with `EOVERFLOW` for a file whose inode number needs more
// than 32 bits); the BSDs' and macOS's `stat` has 64-bit fields already.
#[cfg(not(linux_like))]
use libc::{fstat, fstatat, stat as FileStat};
#[cfg(linux_like)]
use libc::{fstat64 as fstat, fstatat64 as fstatat, stat64 as FileStat};

/// What `fstat` says about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStatus {
    pub(crate) kind: FileKind,
    pub(crate) owner: u32,
    pub(crate) mode: u32,
    pub(crate) size: u64,
    pub(crate) dev_major: u32,
    pub(crate) dev_minor: u32,
    pub(crate) inode: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Regular,
    Directory,
    Symlink,
    Other,
}

/// The sticky bit of a mode (`S_ISVTX`, whose type differs between
/// systems).
const STICKY: u32 = 0o1000;

/// The major and minor numbers of a device, split the way the system's
/// list of mappings splits the device of a mapped file, so the two
/// compare. Like the `stat` type above, how a `dev_t` is encoded is a
/// property of the C library and kernel, not of a backend's calls.
#[cfg(linux_like)]
fn device_numbers(device: libc::dev_t) -> (u32, u32) {
    // bionic's `major` and `minor` return an `int`, glibc's and musl's an
    // `unsigned int`; the numbers are masked bit fields, never negative.
    #[cfg(target_os = "android")]
    {
        (libc::major(device) as u32, libc::minor(device) as u32)
    }
    #[cfg(not(target_os = "android"))]
    {
        (libc::major(device), libc::minor(device))
    }
}

/// A Darwin `dev_t` (major in the top 8 bits, minor in the low 24).
#[cfg(target_os = "macos")]
fn device_numbers(device: libc::dev_t) -> (u32, u32) {
    let device = device as u32;
    (device >> 24, device & 0x00ff_ffff)
}

/// A FreeBSD `dev_t`, split as `KERN_PROC_VMMAP` records are parsed.
#[cfg(target_os = "freebsd")]
fn device_numbers(device: libc::dev_t) -> (u32, u32) {
    crate::space::kinfo_vmmap::split_device(device)
}

impl FileStatus {
    fn from_stat(stat: &FileStat) -> FileStatus {
        let kind = match stat.st_mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        };
        let (dev_major, dev_minor) = device_numbers(stat.st_dev);
        FileStatus {
            kind,
            owner: stat.st_uid,
            // `mode_t` is 16 bits on macOS, 32 elsewhere.
            #[allow(clippy::useless_conversion)]
            mode: u32::from(stat.st_mode),
            size: u64::try_from(stat.st_size).unwrap_or(0),
            dev_major,
            dev_minor,
            // `ino_t` is 64 bits wherever `FileStat` is used.
            #[allow(clippy::useless_conversion)]
            inode: u64::from(stat.st_ino),
        }
    }

    /// Whether users other than the owner may create or delete entries
    /// without the sticky bit stopping them from removing ours.
    pub(crate) fn is_writable_by_others_without_sticky(&self) -> bool {
        self.mode & 0o022 != 0 && self.mode & STICKY == 0
    }

    /// Whether this is a directory every user may create entries in, with
    /// the sticky bit (like `/tmp`): only an entry's owner (or the
    /// directory's) can remove or rename it.
    pub(crate) fn is_shared_sticky(&self) -> bool {
        self.mode & 0o7777 == 0o1777
    }
}

fn status_of_fd(fd: libc::c_int) -> Result<FileStatus, Errno> {
    let mut stat = std::mem::MaybeUninit::<FileStat>::uninit();
    // SAFETY: `stat` points to writable memory of the type `fstat` fills.
    if unsafe { fstat(fd, stat.as_mut_ptr()) } != 0 {
        return Err(last_errno());
    }
    // SAFETY: `fstat` succeeded, so it initialised `stat`.
    Ok(FileStatus::from_stat(unsafe { stat.assume_init_ref() }))
}

/// Status of an open file.
pub(crate) fn file_status(file: &File) -> Result<FileStatus, Errno> {
    status_of_fd(file.as_raw_fd())
}

/// A directory opened without following symlinks; entries are named
/// relative to it, so nobody can swap a path component under us.
pub(crate) struct Directory {
    pub(super) fd: OwnedFd,
}

/// `mode` as the system's `mode_t` (16 bits on macOS, which no mode this
/// library uses exceeds).
#[allow(clippy::unnecessary_cast)]
pub(super) fn mode_bits(mode: u32) -> libc::mode_t {
    mode as libc::mode_t
}

pub(super) fn c_name(name: &str) -> Result<CString, Errno> {
    CString::new(name).map_err(|_| libc::EINVAL)
}

impl Directory {
    /// Opens (creating it if missing, with exactly `mode` whatever the
    /// umask) the directory `name` inside `parent`, or the absolute path
    /// `name` when `parent` is `None`. Refuses symlinks.
    pub(crate) fn open_or_create(
        parent: Option<&Directory>,
        name: &str,
        mode: u32,
    ) -> Result<Directory, Errno> {
        fault::check(FaultPoint::OpenRendezvous)?;
        let name = c_name(name)?;
        let parent_fd = parent.map_or(libc::AT_FDCWD, |parent| parent.fd.as_raw_fd());
        let open = || {
            // SAFETY: `name` is a valid NUL-terminated string and `parent_fd`
            // an open directory or `AT_FDCWD`; `O_NOFOLLOW` refuses a
            // symlink in place of the directory and `O_DIRECTORY` anything
            // that is not one.
            let fd = retry_interrupted(|| unsafe {
                libc::openat(
                    parent_fd,
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            });
            if fd < 0 {
                Err(last_errno())
            } else {
                // SAFETY: `openat` returned a new descriptor nothing else owns.
                Ok(Directory {
                    fd: unsafe { OwnedFd::from_raw_fd(fd) },
                })
            }
        };
        // The directory exists in every process but the first: open first,
        // create only when it is missing.
        match open() {
            Err(libc::ENOENT) => {}
            other => return other,
        }
        // SAFETY: as above.
        if unsafe { libc::mkdirat(parent_fd, name.as_ptr(), mode_bits(mode)) } != 0 {
            let errno = last_errno();
            if errno != libc::EEXIST {
                return Err(errno);
            }
            // Someone else created it: its mode is theirs to have chosen.
            return open();
        }
        let directory = open()?;
        // The umask took bits away from `mode` (0755 from 01777 with the
        // usual 022): set it exactly, or other users cannot share.
        directory.set_mode(mode)?;
        Ok(directory)
    }

    /// Sets the permission bits (and sticky bit) of this directory.
    pub(crate) fn set_mode(&self, mode: u32) -> Result<(), Errno> {
        // SAFETY: `fchmod` on a descriptor we own.
        zero_or_errno(unsafe { libc::fchmod(self.fd.as_raw_fd(), mode_bits(mode)) })
    }

    pub(crate) fn status(&self) -> Result<FileStatus, Errno> {
        status_of_fd(self.fd.as_raw_fd())
    }

    /// Status of the entry `name`, without following a symlink.
    pub(crate) fn entry_status(&self, name: &str) -> Result<FileStatus, Errno> {
        let name = c_name(name)?;
        let mut stat = std::mem::MaybeUninit::<FileStat>::uninit();
        // SAFETY: valid directory fd, NUL-terminated name, writable `stat`
        // of the type `fstatat` fills.
        let result = unsafe {
            fstatat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                stat.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if result != 0 {
            return Err(last_errno());
        }
        // SAFETY: `fstatat` succeeded, so it initialised `stat`.
        Ok(FileStatus::from_stat(unsafe { stat.assume_init_ref() }))
    }

    pub(super) fn open_at(&self, name: &str, flags: libc::c_int) -> Result<File, Errno> {
        fault::check(FaultPoint::OpenRendezvous)?;
        let name = c_name(name)?;
        // SAFETY: valid directory fd and NUL-terminated name; the mode is
        // only used with `O_CREAT`.
        let fd = retry_interrupted(|| unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        });
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: `openat` returned a new descriptor that nothing else owns.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Opens the existing regular file `name` read/write; a symlink fails
    /// with `ELOOP`.
    pub(crate) fn open_existing(&self, name: &str) -> Result<File, Errno> {
        fault::check(FaultPoint::OpenRendezvousFile)?;
        self.open_at(name, 0)
    }

    /// Creates `name` read/write for the owner only; fails with `EEXIST` if
    /// anything (even a dangling symlink) has that name.
    pub(crate) fn create_new(&self, name: &str) -> Result<File, Errno> {
        self.open_at(name, libc::O_CREAT | libc::O_EXCL)
    }

    /// Takes an exclusive `flock` on this directory, waiting at most
    /// `patience`. Returns `None` if the lock is not had by then (another
    /// user may hold it forever: callers go on without it) or if the
    /// file system does not support it.
    pub(crate) fn lock_exclusive(&self, patience: Duration) -> Option<DirectoryLock<'_>> {
        // Monotonic deadlines throughout: every wait is bounded even under
        // a storm of signals (see `sleep_until`).
        let deadline = monotonic_now().saturating_add(patience);
        loop {
            // SAFETY: `flock` on a directory descriptor we own.
            if unsafe { libc::flock(self.fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Some(DirectoryLock { directory: self });
            }
            let errno = last_errno();
            let now = monotonic_now();
            if errno != libc::EWOULDBLOCK && errno != libc::EINTR || now >= deadline {
                return None;
            }
            sleep_until(now.saturating_add(Duration::from_millis(1)).min(deadline));
        }
    }

    /// Gives the file `from` the additional name `to`; fails with `EEXIST`
    /// if `to` exists, so publishing a file this way is exclusive.
    pub(crate) fn link(&self, from: &str, to: &str) -> Result<(), Errno> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid directory fd and NUL-terminated names; flags 0 does
        // not follow a symlink at `from`.
        zero_or_errno(unsafe { libc::linkat(fd, from.as_ptr(), fd, to.as_ptr(), 0) })
    }

    /// Renames `from` to `to`, replacing `to` atomically.
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), Errno> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid directory fd and NUL-terminated names.
        zero_or_errno(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) })
    }

    /// Removes the entry `name` (not a directory).
    pub(crate) fn remove(&self, name: &str) -> Result<(), Errno> {
        let name = c_name(name)?;
        // SAFETY: valid directory fd and NUL-terminated name.
        zero_or_errno(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) })
    }
}

/// What Linux does with calls of its own (`openat2`, `O_TMPFILE`,
/// `getdents64`), the other systems do the portable way, or not at all.
#[cfg(not(linux_like))]
impl Directory {
    /// Not available: callers walk the path one component at a time.
    pub(crate) fn open_without_symlinks(_path: &str) -> Result<Directory, Errno> {
        Err(libc::ENOSYS)
    }

    /// Not available (no `O_TMPFILE`): callers use a temporary name.
    pub(crate) fn create_unnamed(&self) -> Result<File, Errno> {
        Err(libc::EOPNOTSUPP)
    }

    /// Never called, since [`Directory::create_unnamed`] always fails.
    pub(crate) fn link_unnamed(&self, _file: &File, _to: &str) -> Result<(), Errno> {
        Err(libc::EOPNOTSUPP)
    }

    /// Names of the entries, without `.` and `..`, read with `readdir`
    /// through a duplicate of this descriptor.
    pub(crate) fn entry_names(&self) -> Result<Vec<OsString>, Errno> {
        // SAFETY: duplicating a descriptor we own.
        let fd = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: `fd` is a new descriptor owned here; on success the
        // stream takes it over and `closedir` closes it.
        let stream = unsafe { libc::fdopendir(fd) };
        if stream.is_null() {
            let errno = last_errno();
            // SAFETY: `fdopendir` failed, so `fd` is still ours to close.
            unsafe { libc::close(fd) };
            return Err(errno);
        }
        // SAFETY: an open stream; the duplicate shares its offset with
        // `self.fd`, which an earlier listing may have moved.
        unsafe { libc::rewinddir(stream) };
        let mut names = Vec::new();
        loop {
            // SAFETY: an open stream, used by this thread only.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                break;
            }
            // SAFETY: `readdir` returned a valid entry whose name is
            // NUL-terminated and lives until the next call on the stream.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        // SAFETY: closes the stream and its descriptor, once.
        unsafe { libc::closedir(stream) };
        Ok(names)
    }
}

/// An exclusive `flock` on a [`Directory`], released on drop.
pub(crate) struct DirectoryLock<'a> {
    directory: &'a Directory,
}

impl Drop for DirectoryLock<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we own; failure leaves the lock to
        // be released when the descriptor closes, moments later.
        unsafe { libc::flock(self.directory.fd.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Registers `function` to run when the process exits normally (`exit`,
/// a return from `main`), or when this library is unloaded, whichever
/// comes first. `false` if it could not be registered.
///
/// glibc's `atexit` is a static stub that registers with this shared
/// object's own handle, so `dlclose` runs the function before the code is
/// unmapped; musl never unloads libraries.
pub(crate) fn run_at_exit(function: extern "C" fn()) -> bool {
    // SAFETY: `function` is a plain function with no preconditions, and
    // it stays mapped as long as the registration can run it (above).
    unsafe { libc::atexit(function) == 0 }
}

/// Sets the permission bits of `file` exactly (`fchmod`), whatever the
/// umask took away when it was created.
pub(crate) fn set_file_mode(file: &File, mode: u32) -> Result<(), Errno> {
    // SAFETY: `fchmod` on a descriptor we own.
    zero_or_errno(unsafe { libc::fchmod(file.as_raw_fd(), mode_bits(mode)) })
}

/// Takes a shared `flock` on the whole of `file`. A `flock` belongs to the
/// open file description, and BSD kernels drop it when its last
/// descriptor closes (a mapping does not keep it), so the holder keeps the
/// descriptor open for the life of the process ([`keep_liveness_lock`]).
/// Other processes test it with [`is_locked_elsewhere`].
#[cfg(not(linux_like))]
pub(crate) fn hold_liveness_lock(file: &File) -> Result<(), Errno> {
    // SAFETY: `flock` on a descriptor we own.
    let result = retry_interrupted(|| unsafe {
        libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB)
    });
    zero_or_errno(result)
}

/// Releases the lock taken with [`hold_liveness_lock`] on this open file.
#[cfg(not(linux_like))]
pub(crate) fn release_liveness_lock(file: &File) -> Result<(), Errno> {
    // SAFETY: `flock` on a descriptor we own.
    zero_or_errno(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) })
}

/// Keeps the liveness lock on `file` for the rest of the process: the
/// descriptor stays open, since closing it would drop the lock.
#[cfg(not(linux_like))]
pub(crate) fn keep_liveness_lock(file: File) {
    std::mem::forget(file);
}

/// Whether an open file description other than `file`'s holds a lock on
/// it: an exclusive `flock` that cannot be had says so. `file` must be a
/// fresh open of the file, holding no lock itself.
#[cfg(not(linux_like))]
pub(crate) fn is_locked_elsewhere(file: &File) -> Result<bool, Errno> {
    // SAFETY: `flock` on a descriptor we own.
    let result = retry_interrupted(|| unsafe {
        libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB)
    });
    if result == 0 {
        // SAFETY: as above; drops the lock just taken.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return Ok(false);
    }
    match last_errno() {
        libc::EWOULDBLOCK => Ok(true),
        errno => Err(errno),
    }
}

/// Keeps `mapping` out of children made by `fork` (`minherit` with
/// `INHERIT_NONE`): in a child the address is simply unmapped. Used for
/// the shared locator this process publishes, so that no child can ever
/// take its parent's locator for its own.
#[cfg(not(linux_like))]
pub(crate) fn exclude_from_fork(mapping: &OwnedMapping) -> Result<(), Errno> {
    /// `INHERIT_NONE` (FreeBSD) and `VM_INHERIT_NONE` (macOS) are both 2.
    const INHERIT_NONE: libc::c_int = 2;
    // SAFETY: changes only what a future child inherits of a mapping we
    // own, not this process's memory.
    zero_or_errno(unsafe {
        libc::minherit(
            mapping.address() as *mut libc::c_void,
            mapping.len(),
            INHERIT_NONE,
        )
    })
}

/// Writes the first `len` bytes of a new, unpublished `file`: `start`,
/// then zeros (`pwrite`). The write sets the length and gets the blocks
/// from the file system, so a full file system answers `ENOSPC` here
/// instead of `SIGBUS` at the first write through a shared mapping, and it
/// leaves the page in the page cache, where a mapping finds it without a
/// write fault. One `pwritev` for a 4 KiB file, where `ftruncate`,
/// `posix_fallocate` and the first store through the mapping cost three
/// times as much.
pub(crate) fn write_new_file(file: &File, start: &[u8], len: usize) -> Result<(), Errno> {
    fault::check(FaultPoint::ResizeRendezvous)?;
    fault::check(FaultPoint::AllocateRendezvous)?;
    /// Zeros to write from. Never written, so its page is the kernel's
    /// shared zero page: writing from it costs no memory, where a zeroed
    /// buffer on the stack cost the first `get_buffer` a page.
    static ZEROS: [AtomicU64; 512] = [const { AtomicU64::new(0) }; 512];
    let zeros_len = std::mem::size_of_val(&ZEROS);
    let zeros = ZEROS.as_ptr().cast::<libc::c_void>().cast_mut();
    let mut offset = 0;
    while offset < len {
        let head = start.get(offset..).unwrap_or_default();
        let tail = (len - offset - head.len().min(len - offset)).min(zeros_len);
        let parts = [
            libc::iovec {
                iov_base: head.as_ptr().cast::<libc::c_void>().cast_mut(),
                iov_len: head.len().min(len - offset),
            },
            libc::iovec {
                iov_base: zeros,
                iov_len: tail,
            },
        ];
        let offset_arg = libc::off_t::try_from(offset).map_err(|_| libc::EFBIG)?;
        // SAFETY: both vectors describe readable memory of their length:
        // part of `start`, and part of `ZEROS`, which nothing ever writes
        // (the kernel only reads it).
        let written = unsafe { libc::pwritev(file.as_raw_fd(), parts.as_ptr(), 2, offset_arg) };
        match usize::try_from(written) {
            Ok(0) => return Err(libc::EIO),
            Ok(written) => offset += written,
            Err(_) if last_errno() == libc::EINTR => {}
            Err(_) => return Err(last_errno()),
        }
    }
    Ok(())
}

/// Maps the first `len` bytes of `file` shared and read/write.
pub(crate) fn map_file_shared(file: &File, len: usize) -> Result<OwnedMapping, Errno> {
    fault::check(FaultPoint::MapRendezvous)?;
    // SAFETY: a new shared mapping at a kernel-chosen address; the fd is
    // open for reading and writing.
    let result = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if result == libc::MAP_FAILED {
        Err(last_errno())
    } else {
        Ok(OwnedMapping::new(result as usize, len, unmap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::process_id;

    #[test]
    fn a_new_file_is_written_with_its_start_then_zeros() {
        let path = std::env::temp_dir().join(format!("memory-buffers-new-file-{}", process_id()));
        let _ = std::fs::remove_file(&path);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        write_new_file(&file, &[1, 2, 3], 10_000).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(bytes.len(), 10_000);
        assert_eq!(bytes[..3], [1, 2, 3]);
        assert!(bytes[3..].iter().all(|&byte| byte == 0));
    }

    #[test]
    fn a_directory_lists_its_entries() {
        let path = std::env::temp_dir().join(format!("memory-buffers-listing-{}", process_id()));
        std::fs::create_dir_all(&path).unwrap();
        let expected: Vec<String> = (0..200).map(|i| format!("entry number {i:04}")).collect();
        for name in &expected {
            std::fs::write(path.join(name), b"").unwrap();
        }
        let directory = Directory::open_or_create(None, path.to_str().unwrap(), 0o700).unwrap();
        for _ in 0..2 {
            let mut names: Vec<String> = directory
                .entry_names()
                .unwrap()
                .into_iter()
                .map(|name| name.into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(names, expected);
        }
        std::fs::remove_dir_all(&path).unwrap();
    }
}
