//! Linux backend of the OS layer.
//!
//! Each function is one system call (or a short, fixed sequence of them) with
//! its error turned into an `errno` value. Placement policy, parsing and
//! retries live elsewhere; this file only talks to the kernel.
//!
//! # References
//!
//! `mmap(2)` (`MAP_FIXED_NOREPLACE`, Linux 4.17), `madvise(2)`
//! (`MADV_WIPEONFORK`, Linux 4.14), `proc_pid_maps(5)`, `openat(2)`,
//! `linkat(2)`.

use super::fault::{self, FaultPoint};
use super::{FixedMapping, OwnedMapping};
use crate::maps::{self, MapsEntry};
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// An `errno` value.
pub(crate) type Errno = i32;

/// The error number for an invalid argument.
pub(crate) const INVALID_ARGUMENT: Errno = libc::EINVAL;

/// The call that maps memory, as error messages name it.
pub(crate) const MAP_CALL: &str = "mmap";

/// The error number for "not enough memory".
pub(crate) const OUT_OF_MEMORY: Errno = libc::ENOMEM;

/// Linux implements every call; nothing is reported as unsupported.
pub(crate) fn is_unsupported(_errno: Errno) -> bool {
    false
}

/// `Ok` for a system call that returned 0, the `errno` otherwise.
fn zero_or_errno(result: libc::c_int) -> Result<(), Errno> {
    if result == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Calls `call` (a system call returning -1 with `errno` on failure) again
/// while it fails with `EINTR`: a signal storm must not turn into errors.
fn retry_interrupted(mut call: impl FnMut() -> libc::c_int) -> libc::c_int {
    loop {
        let result = call();
        if result != -1 || last_errno() != libc::EINTR {
            return result;
        }
    }
}

fn last_errno() -> Errno {
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

pub(crate) fn query_lowest_address() -> usize {
    // The kernel default; used when the sysctl cannot be read.
    const DEFAULT: usize = 65536;
    // One `open`, one `read` into the stack, one `close`: the value is a
    // short line, and `read_to_string` spent two more calls (`statx`, a
    // `read` of the end) and a heap buffer on it.
    let mut text = [0u8; 32];
    let read = File::open("/proc/sys/vm/mmap_min_addr").and_then(|mut file| file.read(&mut text));
    match read {
        // A read that fills the buffer is not a number this file holds.
        Ok(len) if len < text.len() => std::str::from_utf8(&text[..len])
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(DEFAULT),
        _ => DEFAULT,
    }
}

/// The highest address (inclusive) a user-space mapping can reach without
/// opting in to larger address spaces: `TASK_SIZE - 1` with 47-bit (x86-64)
/// or 48-bit (AArch64) virtual addresses.
pub(crate) const fn highest_user_address() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        (1usize << 47) - 4096 - 1
    }
    #[cfg(target_arch = "aarch64")]
    {
        (1usize << 48) - 1
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        usize::MAX - 1
    }
}

/// Access rights of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the rights, spelled out
pub(crate) enum Protection {
    ReadWrite,
    ReadExecute,
    ReadWriteExecute,
}

impl Protection {
    fn bits(self) -> libc::c_int {
        match self {
            Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
            Protection::ReadExecute => libc::PROT_READ | libc::PROT_EXEC,
            Protection::ReadWriteExecute => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        }
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

/// Calls `visit` with each mapping that overlaps `[start, end)` and its
/// protection, in address order, from `/proc/self/maps` (Linux has no
/// system call that reports a page's protection).
pub(crate) fn visit_protections(
    start: usize,
    end: usize,
    mut visit: impl FnMut(usize, usize, PageProtection),
) -> Result<(), Errno> {
    let mut buffer = Vec::new();
    read_maps(&mut buffer, |entry| {
        if entry.start >= end {
            return ControlFlow::Break(());
        }
        if entry.end > start {
            let access = entry.access;
            let bits = if access.read { libc::PROT_READ } else { 0 }
                | if access.write { libc::PROT_WRITE } else { 0 }
                | if access.execute { libc::PROT_EXEC } else { 0 };
            visit(entry.start, entry.end, PageProtection(bits));
        }
        ControlFlow::Continue(())
    })
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
    set_page_protection(address, len, PageProtection(protection.bits()))
}

/// Whether an `errno` from `mmap` means the execute right was refused by
/// policy (SELinux `execmem`, PaX `MPROTECT`), not that memory ran out.
pub(crate) fn is_execute_refusal(errno: Errno) -> bool {
    errno == libc::EACCES || errno == libc::EPERM
}

/// Whether an `errno` from a fixed mapping means "something is already
/// mapped there".
pub(crate) fn is_occupied(errno: Errno) -> bool {
    errno == libc::EEXIST
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

/// Maps `len` bytes of private anonymous memory at exactly `address`,
/// never replacing an existing mapping.
pub(crate) fn map_fixed_noreplace(
    address: usize,
    len: usize,
    protection: Protection,
) -> Result<FixedMapping, Errno> {
    fault::check(FaultPoint::MapMemory)?;
    // SAFETY: `MAP_FIXED_NOREPLACE` never replaces an existing mapping, so
    // no memory the process uses can be affected; the kernel validates the
    // address and length.
    let result = unsafe {
        libc::mmap(
            address as *mut libc::c_void,
            len,
            protection.bits(),
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if result == libc::MAP_FAILED {
        return Err(last_errno());
    }
    if result as usize == address {
        return Ok(FixedMapping::Mapped(OwnedMapping::new(address, len)));
    }
    // SAFETY: the kernel just created this mapping for us at `result`; no
    // one else knows its address, so unmapping it affects nothing else.
    unsafe { libc::munmap(result, len) };
    Ok(FixedMapping::Elsewhere)
}

/// Maps `len` bytes of private anonymous memory wherever the kernel likes.
pub(crate) fn map_anywhere(len: usize, protection: Protection) -> Result<OwnedMapping, Errno> {
    fault::check(FaultPoint::MapMemory)?;
    // SAFETY: a null hint without `MAP_FIXED*` lets the kernel choose a free
    // range; existing mappings are untouched.
    let result = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            protection.bits(),
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if result == libc::MAP_FAILED {
        Err(last_errno())
    } else {
        Ok(OwnedMapping::new(result as usize, len))
    }
}

/// Makes freshly written code in `[address, address + len)` visible to
/// instruction fetch. A no-op on x86-64, whose instruction cache is coherent
/// with data writes; other architectures call the compiler runtime's
/// `__clear_cache`.
pub(crate) fn flush_instruction_cache(address: usize, len: usize) {
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    {
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
    }
    let _ = (address, len);
}

/// Runs `write` while `[address, address + len)` is writable. Linux does not
/// enforce W^X on the read/write/execute buffers this library maps, so this
/// only calls `write`.
pub(crate) fn with_code_writable<R>(_address: usize, _len: usize, write: impl FnOnce() -> R) -> R {
    write()
}

/// A [`ForkMarker`](super::ForkMarker) in a private page advised
/// `MADV_WIPEONFORK`, which the kernel hands to a forked child zeroed, so
/// checking it is a load or two. Where the advice is unsupported (before
/// Linux 4.14) or no page can be had, the marker is on the heap and records
/// the process id, which is then compared.
pub(crate) fn new_fork_marker() -> &'static super::ForkMarker {
    let granularity = super::allocation_granularity();
    if std::mem::size_of::<super::ForkMarker>() <= granularity
        && let Ok(page) = map_anywhere(granularity, Protection::ReadWrite)
    {
        // SAFETY: `page` is a fresh private mapping of `granularity` bytes
        // owned by this marker.
        let advised = unsafe {
            libc::madvise(
                page.address() as *mut libc::c_void,
                granularity,
                libc::MADV_WIPEONFORK,
            )
        };
        if advised == 0 {
            let page = page.leak();
            // SAFETY: the page is mapped read/write for the rest of the
            // process, page-aligned (so aligned for the marker), larger than
            // the marker, and all zero: a valid marker of generation 0 and
            // process id 0 ("wiped in a child"), which is what a forked child
            // sees again.
            return unsafe { &*(page as *const super::ForkMarker) };
        }
    }
    Box::leak(Box::new(super::ForkMarker::unwiped(process_id())))
}

pub(crate) fn process_id() -> u32 {
    std::process::id()
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
pub(crate) fn sleep_until(deadline: Duration) {
    let target = libc::timespec {
        tv_sec: libc::time_t::try_from(deadline.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: deadline.subsec_nanos().into(),
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

/// Reads `/proc/self/maps`, calling `visit` for each line until it breaks.
pub(crate) fn read_maps(
    buffer: &mut Vec<u8>,
    visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> Result<(), Errno> {
    fault::check(FaultPoint::ReadMaps)?;
    let mut file =
        File::open("/proc/self/maps").map_err(|error| error.raw_os_error().unwrap_or(libc::EIO))?;
    maps::for_each_entry(|out| file.read(out), buffer, visit)
        .map_err(|error| error.raw_os_error().unwrap_or(libc::EIO))
}

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

impl FileStatus {
    fn from_stat(stat: &libc::stat) -> FileStatus {
        let kind = match stat.st_mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        };
        FileStatus {
            kind,
            owner: stat.st_uid,
            mode: stat.st_mode,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            dev_major: libc::major(stat.st_dev),
            dev_minor: libc::minor(stat.st_dev),
            inode: stat.st_ino,
        }
    }

    /// Whether users other than the owner may create or delete entries
    /// without the sticky bit stopping them from removing ours.
    pub(crate) fn is_writable_by_others_without_sticky(&self) -> bool {
        self.mode & 0o022 != 0 && self.mode & libc::S_ISVTX == 0
    }

    /// Whether this is a directory every user may create entries in, with
    /// the sticky bit (like `/tmp`): only an entry's owner (or the
    /// directory's) can remove or rename it.
    pub(crate) fn is_shared_sticky(&self) -> bool {
        self.mode & 0o7777 == 0o1777
    }
}

fn status_of_fd(fd: libc::c_int) -> Result<FileStatus, Errno> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` points to writable memory of the right size.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
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
    fd: OwnedFd,
}

fn c_name(name: &str) -> Result<CString, Errno> {
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
        if unsafe { libc::mkdirat(parent_fd, name.as_ptr(), mode) } != 0 {
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

    /// Opens the existing directory at the absolute `path` in one call,
    /// refusing a symlink in any component (`openat2` with
    /// `RESOLVE_NO_SYMLINKS`, Linux 5.6). Fails where the kernel lacks the
    /// call or a filter refuses it; callers then walk the path one
    /// component at a time, which costs two calls more per component.
    pub(crate) fn open_without_symlinks(path: &str) -> Result<Directory, Errno> {
        fault::check(FaultPoint::OpenRendezvous)?;
        let path = c_name(path)?;
        /// `struct open_how` of `openat2(2)`.
        #[repr(C)]
        struct OpenHow {
            flags: u64,
            mode: u64,
            resolve: u64,
        }
        /// `RESOLVE_NO_SYMLINKS` of `<linux/openat2.h>`.
        const RESOLVE_NO_SYMLINKS: u64 = 0x04;
        let how = OpenHow {
            flags: (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: RESOLVE_NO_SYMLINKS,
        };
        // SAFETY: a NUL-terminated path and a valid `open_how` of the size
        // passed; the kernel only reads them.
        let fd = retry_interrupted(|| unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                path.as_ptr(),
                &how,
                std::mem::size_of::<OpenHow>(),
            ) as libc::c_int
        });
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: `openat2` returned a new descriptor nothing else owns.
        Ok(Directory {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Sets the permission bits (and sticky bit) of this directory.
    pub(crate) fn set_mode(&self, mode: u32) -> Result<(), Errno> {
        // SAFETY: `fchmod` on a descriptor we own.
        zero_or_errno(unsafe { libc::fchmod(self.fd.as_raw_fd(), mode) })
    }

    pub(crate) fn status(&self) -> Result<FileStatus, Errno> {
        status_of_fd(self.fd.as_raw_fd())
    }

    /// Status of the entry `name`, without following a symlink.
    pub(crate) fn entry_status(&self, name: &str) -> Result<FileStatus, Errno> {
        let name = c_name(name)?;
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: valid directory fd, NUL-terminated name, writable `stat`.
        let result = unsafe {
            libc::fstatat(
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

    fn open_at(&self, name: &str, flags: libc::c_int) -> Result<File, Errno> {
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

    /// Creates an unnamed regular file in this directory (`O_TMPFILE`),
    /// readable and writable by the owner only, to be named later with
    /// [`Directory::link_unnamed`]. Fails with `EOPNOTSUPP`, `EISDIR` or
    /// `EINVAL` where the kernel or file system lacks `O_TMPFILE`.
    pub(crate) fn create_unnamed(&self) -> Result<File, Errno> {
        self.open_at(".", libc::O_TMPFILE)
    }

    /// Names a file from [`Directory::create_unnamed`] `to`; fails with
    /// `EEXIST` if `to` exists, so publishing this way is exclusive.
    ///
    /// One `linkat(fd, "", …, AT_EMPTY_PATH)` where the kernel allows it
    /// (Linux 6.10 for a file the caller opened, earlier only with
    /// `CAP_DAC_READ_SEARCH`), otherwise through the `/proc/self/fd` magic
    /// link, whose path walk costs several times more.
    pub(crate) fn link_unnamed(&self, file: &File, to: &str) -> Result<(), Errno> {
        let to = c_name(to)?;
        // SAFETY: an empty NUL-terminated path with `AT_EMPTY_PATH` names
        // the open file itself; valid directory fd and target name.
        let direct = zero_or_errno(unsafe {
            libc::linkat(
                file.as_raw_fd(),
                c"".as_ptr(),
                self.fd.as_raw_fd(),
                to.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        });
        match direct {
            // Not allowed to this caller, or not known to this kernel.
            Err(libc::ENOENT | libc::EPERM | libc::EINVAL) => {}
            done => return done,
        }
        let from = c_name(&format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        // SAFETY: NUL-terminated paths and a valid directory fd;
        // `AT_SYMLINK_FOLLOW` resolves the `/proc` magic link to the open
        // file itself, which needs no privilege.
        zero_or_errno(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                self.fd.as_raw_fd(),
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })
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

    /// Names of the entries, without `.` and `..`.
    ///
    /// Read with `getdents64` straight from this descriptor into a stack
    /// buffer: `fdopendir` cost a duplicate descriptor, four bookkeeping
    /// calls and a 32 KiB heap buffer.
    pub(crate) fn entry_names(&self) -> Result<Vec<OsString>, Errno> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: `lseek` on a descriptor we own. Directory offsets are
        // opaque, but 0 is always the start; another listing of this
        // descriptor may have moved it.
        if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
            return Err(last_errno());
        }
        // 8-byte aligned, as `struct linux_dirent64` needs.
        let mut buffer = [0u64; 256];
        let mut names = Vec::new();
        loop {
            // SAFETY: `buffer` is writable for its whole length.
            let read = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    fd,
                    buffer.as_mut_ptr(),
                    std::mem::size_of_val(&buffer),
                )
            };
            let read = match usize::try_from(read) {
                Ok(0) => return Ok(names),
                Ok(read) => read.min(std::mem::size_of_val(&buffer)),
                Err(_) if last_errno() == libc::EINTR => continue,
                Err(_) => return Err(last_errno()),
            };
            // SAFETY: plain bytes of the initialised `buffer`, of which the
            // kernel filled the first `read`.
            let bytes = unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), read) };
            for_each_dirent_name(bytes, |name| {
                if name != b"." && name != b".." {
                    names.push(OsString::from_vec(name.to_vec()));
                }
            });
        }
    }
}

/// Calls `visit` with the name of each `struct linux_dirent64` record in
/// `bytes` (`d_ino: u64, d_off: i64, d_reclen: u16, d_type: u8, d_name`,
/// NUL-terminated). A malformed record ends the walk.
fn for_each_dirent_name(bytes: &[u8], mut visit: impl FnMut(&[u8])) {
    const NAME_OFFSET: usize = 19;
    let mut rest = bytes;
    while rest.len() > NAME_OFFSET {
        let record_len = usize::from(u16::from_ne_bytes([rest[16], rest[17]]));
        if record_len <= NAME_OFFSET || record_len > rest.len() {
            return;
        }
        let name = &rest[NAME_OFFSET..record_len];
        let name = name.split(|&byte| byte == 0).next().unwrap_or(name);
        visit(name);
        rest = &rest[record_len..];
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
    zero_or_errno(unsafe { libc::fchmod(file.as_raw_fd(), mode) })
}

/// Copies `out.len()` bytes of this process's memory at `address` into
/// `out` with `process_vm_readv`, which reports an unmapped or unreadable
/// address as `EFAULT` instead of faulting. Needs no `/proc`; a seccomp
/// filter may refuse it (`ENOSYS`, `EPERM`).
pub(crate) fn read_own_memory(address: usize, out: &mut [u8]) -> Result<(), Errno> {
    fault::check(FaultPoint::ReadOwnMemory)?;
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: out.len(),
    };
    // SAFETY: `local` describes `out`, which is writable for its length;
    // the remote range is only read by the kernel, which checks it.
    let read = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    match usize::try_from(read) {
        Ok(read) if read == out.len() => Ok(()),
        // A short read: the range ends in unmapped memory.
        Ok(_) => Err(libc::EFAULT),
        Err(_) => Err(last_errno()),
    }
}

fn whole_file_lock(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        // Must be 0 for open-file-description locks.
        l_pid: 0,
    }
}

/// Takes a shared open-file-description lock (`F_OFD_SETLK`) on the whole
/// of `file`. It lasts as long as the open file description: while a
/// descriptor of it is open *or a mapping made from it exists* (a mapping
/// holds a reference to the open file). Closing other descriptors of the
/// same file does not drop it, unlike a POSIX record lock, and the kernel
/// drops it when the process exits or `exec`s. Other processes (in any PID
/// namespace) can test it with [`is_locked_elsewhere`].
pub(crate) fn hold_liveness_lock(file: &File) -> Result<(), Errno> {
    let lock = whole_file_lock(libc::F_RDLCK);
    // SAFETY: `fcntl` on a descriptor we own with a valid `flock`.
    let result =
        retry_interrupted(|| unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) });
    zero_or_errno(result)
}

/// Releases the lock taken with [`hold_liveness_lock`] on this open file.
pub(crate) fn release_liveness_lock(file: &File) -> Result<(), Errno> {
    let lock = whole_file_lock(libc::F_UNLCK);
    // SAFETY: `fcntl` on a descriptor we own with a valid `flock`.
    let result =
        retry_interrupted(|| unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) });
    zero_or_errno(result)
}

/// Whether an open file description other than `file`'s holds a lock on
/// it (`F_OFD_GETLK`, which tests without taking anything). Fails where the
/// kernel (before 3.15) or the file system has no such locks.
pub(crate) fn is_locked_elsewhere(file: &File) -> Result<bool, Errno> {
    let mut lock = whole_file_lock(libc::F_WRLCK);
    // SAFETY: `fcntl` on a descriptor we own with a valid, writable `flock`.
    let result = retry_interrupted(|| unsafe {
        libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock)
    });
    zero_or_errno(result)?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Keeps `mapping` out of children made by `fork` (`MADV_DONTFORK`): in a
/// child the address is simply unmapped. Used for the shared locator this
/// process publishes, so that no child can ever take its parent's locator
/// for its own (a child finds the address dead and makes its own).
pub(crate) fn exclude_from_fork(mapping: &OwnedMapping) -> Result<(), Errno> {
    // SAFETY: advice on a mapping we own; `MADV_DONTFORK` changes only what
    // a future child inherits, not this process's memory.
    zero_or_errno(unsafe {
        libc::madvise(
            mapping.address() as *mut libc::c_void,
            mapping.len(),
            libc::MADV_DONTFORK,
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

/// Gets the blocks of the first `len` bytes of an existing (possibly live)
/// `file`, so that even reading it through a mapping cannot fault on a full
/// file system (tmpfs allocates pages on a read fault too). Uses the
/// `fallocate` system call only, which never changes the file's bytes; a
/// file system without it (`EOPNOTSUPP`) is left as it is.
pub(crate) fn allocate_existing_file(file: &File, len: u64) -> Result<(), Errno> {
    fault::check(FaultPoint::AllocateRendezvous)?;
    let len = libc::off_t::try_from(len).map_err(|_| libc::EFBIG)?;
    loop {
        // SAFETY: `fallocate` with mode 0 on a descriptor we own only
        // allocates blocks that are missing; existing bytes are untouched.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } == 0 {
            return Ok(());
        }
        match last_errno() {
            libc::EINTR => continue,
            libc::EOPNOTSUPP => return Ok(()),
            errno => return Err(errno),
        }
    }
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
        Ok(OwnedMapping::new(result as usize, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &[u8], padded_len: usize) -> Vec<u8> {
        let mut record = vec![0u8; padded_len];
        record[16..18].copy_from_slice(&(padded_len as u16).to_ne_bytes());
        record[18] = libc::DT_REG;
        record[19..19 + name.len()].copy_from_slice(name);
        record
    }

    #[test]
    fn directory_records_are_walked_and_a_malformed_one_ends_the_walk() {
        let mut bytes = record(b".", 24);
        bytes.extend(record(b"Reloaded.Memory.Buffers.MemoryBuffer, PID 7", 64));
        let mut names = Vec::new();
        for_each_dirent_name(&bytes, |name| names.push(name.to_vec()));
        assert_eq!(
            names,
            vec![
                b".".to_vec(),
                b"Reloaded.Memory.Buffers.MemoryBuffer, PID 7".to_vec()
            ]
        );
        let mut broken = record(b"a", 24);
        broken[16..18].copy_from_slice(&1000u16.to_ne_bytes());
        let mut seen = 0;
        for_each_dirent_name(&broken, |_| seen += 1);
        for_each_dirent_name(&bytes[..30], |_| seen += 1);
        assert_eq!(seen, 1, "only the whole first record of the cut bytes");
    }

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
