//! Linux backend of the OS layer, for Android too.
//!
//! Each function is one system call (or a short, fixed sequence of them) with
//! its error turned into an `errno` value. Placement policy, parsing and
//! retries live elsewhere; this file only talks to the kernel. What every
//! Unix does alike is in `unix/`; this file has what is Linux's own.
//!
//! Android runs the same kernel under bionic instead of glibc or musl, so
//! it gets this file whole; the few places where bionic's bindings differ
//! (`MAP_FIXED_NOREPLACE`, the type `major` returns) say so. The locator
//! does not open the rendezvous file there (`shared::rendezvous`, `RENDEZVOUS_FILE_SHARED`),
//! so the file calls below are compiled but unused on Android.
//!
//! # References
//!
//! `mmap(2)` (`MAP_FIXED_NOREPLACE`, Linux 4.17), `madvise(2)`
//! (`MADV_WIPEONFORK`, Linux 4.14), `proc_pid_maps(5)`, `openat(2)`,
//! `openat2(2)`, `linkat(2)`, `fcntl(2)` (open file description locks),
//! `process_vm_readv(2)`.

use super::fault::{self, FaultPoint};
use super::unix::{c_name, last_errno, map_anonymous, retry_interrupted, zero_or_errno};
use super::{FixedMapping, OwnedMapping, Protection};
use crate::space::maps::{self, MapsEntry};
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

pub(crate) use super::unix::{
    Directory, Errno, FileKind, FileStatus, INVALID_ARGUMENT, OUT_OF_MEMORY, PROTECT_CALL,
    effective_user_id, file_status, flush_instruction_cache, is_execute_refusal, is_mapped,
    map_anywhere, map_file_shared, page_size, process_is_alive, protect, query_granularity,
    run_at_exit, set_file_mode, set_page_protection, sleep, unmap, with_code_writable,
    write_new_file,
};

/// The call that maps memory, as error messages name it.
pub(crate) const MAP_CALL: &str = "mmap";

/// Linux implements every call; nothing is reported as unsupported.
pub(crate) fn is_unsupported(_errno: Errno) -> bool {
    false
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
/// or 48-bit (AArch64) virtual addresses; for a 32-bit process, what its
/// kernel gives it (see [`highest_address_of_32_bit_process`]).
pub(crate) fn query_highest_user_address() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        (1usize << 47) - 4096 - 1
    }
    #[cfg(target_arch = "aarch64")]
    {
        (1usize << 48) - 1
    }
    #[cfg(target_pointer_width = "32")]
    {
        highest_address_of_32_bit_process(kernel_is_64_bit(), has_3gb_personality())
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_pointer_width = "32"
    )))]
    {
        usize::MAX - 1
    }
}

/// `ADDR_LIMIT_3GB` of `<linux/personality.h>`: `setarch --3gb`.
#[cfg(target_pointer_width = "32")]
const ADDR_LIMIT_3GB: libc::c_int = 0x0800_0000;

/// The top of a 32-bit process's address space. Under a 64-bit kernel it
/// is `TASK_SIZE` of a compat task, 4 GiB less one page (`0xFFFF_E000`),
/// or 3 GiB with the `ADDR_LIMIT_3GB` personality. A 32-bit kernel gives
/// the user part of its split, 3 GiB with the default `VMSPLIT_3G` (a
/// kernel built with another split maps less, and placement's `mmap`
/// then fails above it).
#[cfg(any(target_pointer_width = "32", test))]
fn highest_address_of_32_bit_process(kernel_is_64_bit: bool, limit_3gb: bool) -> usize {
    if kernel_is_64_bit && !limit_3gb {
        0xffff_dfff
    } else {
        0xbfff_ffff
    }
}

/// Whether the kernel is a 64-bit one: `uname`'s machine name says so, or
/// the sysctl that only an x86-64 kernel has for its 32-bit programs
/// (`abi.vsyscall32`) is there. The second catches `linux32`, whose
/// personality makes `uname` report `i686` on an x86-64 kernel.
#[cfg(target_pointer_width = "32")]
fn kernel_is_64_bit() -> bool {
    uname_machine_is_64_bit() || std::path::Path::new("/proc/sys/abi/vsyscall32").exists()
}

/// Whether `uname`'s machine name is a 64-bit one.
#[cfg(target_pointer_width = "32")]
fn uname_machine_is_64_bit() -> bool {
    // SAFETY: an all-zero `utsname` (arrays of `c_char`) is a valid value.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is writable memory of the right type.
    if unsafe { libc::uname(&mut name) } != 0 {
        return false;
    }
    let machine: Vec<u8> = name
        .machine
        .iter()
        .take_while(|&&byte| byte != 0)
        .map(|&byte| byte as u8)
        .collect();
    matches!(machine.as_slice(), b"x86_64" | b"aarch64")
}

/// Whether this process runs with the `ADDR_LIMIT_3GB` personality.
#[cfg(target_pointer_width = "32")]
fn has_3gb_personality() -> bool {
    // SAFETY: `personality(0xffffffff)` only reads the current persona.
    let persona = unsafe { libc::personality(0xffff_ffff) };
    persona != -1 && persona & ADDR_LIMIT_3GB != 0
}

/// `MAP_FIXED_NOREPLACE` (Linux 4.17) for Android: bionic's headers have
/// it, but the libc crate names it only for glibc and musl. The value is
/// the kernel's, the same on every architecture Android runs on (a test
/// compares it with glibc's).
#[cfg(any(target_os = "android", test))]
const BIONIC_MAP_FIXED_NOREPLACE: libc::c_int = 0x10_0000;
/// The flag that claims an exact address without replacing anything, as
/// this target's C library spells it.
#[cfg(target_os = "android")]
pub(crate) const MAP_FIXED_NOREPLACE: libc::c_int = BIONIC_MAP_FIXED_NOREPLACE;
#[cfg(not(target_os = "android"))]
pub(crate) use libc::MAP_FIXED_NOREPLACE;

/// Whether an `errno` from a fixed mapping means "something is already
/// mapped there".
pub(crate) fn is_occupied(errno: Errno) -> bool {
    errno == libc::EEXIST
}

/// Maps `len` bytes of private anonymous memory at exactly `address`,
/// never replacing an existing mapping.
pub(crate) fn map_fixed_noreplace(
    address: usize,
    len: usize,
    protection: Protection,
) -> Result<FixedMapping, Errno> {
    if fault::is_refused(address, len) {
        return Err(libc::EEXIST);
    }
    // SAFETY: `MAP_FIXED_NOREPLACE` never replaces an existing mapping, so
    // no memory the process uses can be affected.
    let result = unsafe { map_anonymous(address, len, protection, MAP_FIXED_NOREPLACE)? };
    if result == address {
        return Ok(FixedMapping::Mapped(OwnedMapping::new(address, len, unmap)));
    }
    // SAFETY: the kernel just created this mapping for us at `result` (a
    // kernel older than 4.17 takes the flag for a hint); no one else knows
    // its address, so unmapping it affects nothing else.
    unsafe { libc::munmap(result as *mut libc::c_void, len) };
    Ok(FixedMapping::Elsewhere)
}

/// A [`ForkMarker`](super::ForkMarker) in a page advised `MADV_WIPEONFORK`
/// (Linux 4.14), which the kernel hands to a forked child zeroed.
pub(crate) fn new_fork_marker() -> &'static super::ForkMarker {
    super::unix::fork_marker_in_wiped_page(|address, len| {
        // SAFETY: the page is a fresh private mapping owned by the marker;
        // the advice changes only what a child inherits.
        unsafe { libc::madvise(address as *mut libc::c_void, len, libc::MADV_WIPEONFORK) == 0 }
    })
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

/// The mappings of files, to check that an address is a live mapping of
/// the rendezvous file: `/proc/self/maps` shows the device, inode and
/// offset of each.
pub(crate) fn read_file_mappings(
    buffer: &mut Vec<u8>,
    visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> Result<(), Errno> {
    read_maps(buffer, visit)
}

/// Linux's own ways to open, create and list entries.
impl Directory {
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

/// Copies `out.len()` bytes of this process's memory at `address` into
/// `out` with `process_vm_readv`, which reports an unmapped or unreadable
/// address as `EFAULT` instead of faulting. Needs no `/proc`; a seccomp
/// filter may refuse it (`ENOSYS`, `EPERM`).
pub(crate) fn read_own_memory(address: usize, out: &mut [u8]) -> Result<(), Errno> {
    fault::check(FaultPoint::ReadOwnMemory)?;
    // SAFETY: `getpid` has no preconditions and cannot fail.
    read_process_memory(unsafe { libc::getpid() }, address, out)
}

/// Copies `out.len()` bytes at `address` in the process (or thread) `pid`
/// into `out` with `process_vm_readv`: for this process's own probes and
/// for another process's memory (`remote/linux.rs`) alike. A short read
/// (the range ends in unmapped memory) is `EFAULT`.
pub(super) fn read_process_memory(
    pid: libc::pid_t,
    address: usize,
    out: &mut [u8],
) -> Result<(), Errno> {
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
    let read = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
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

/// Keeps the liveness lock on `file` for the rest of the process: an open
/// file description lock lasts as long as the mapping made from the file,
/// so the descriptor itself can close.
pub(crate) fn keep_liveness_lock(file: File) {
    drop(file);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_os = "android"))]
    #[test]
    fn the_value_given_to_android_is_the_kernels_map_fixed_noreplace() {
        assert_eq!(BIONIC_MAP_FIXED_NOREPLACE, libc::MAP_FIXED_NOREPLACE);
    }

    #[test]
    fn a_32_bit_process_gets_4_gib_less_a_page_under_a_64_bit_kernel() {
        assert_eq!(highest_address_of_32_bit_process(true, false), 0xffff_dfff);
    }

    #[test]
    fn a_32_bit_process_gets_3_gib_under_a_32_bit_kernel_or_setarch_3gb() {
        assert_eq!(highest_address_of_32_bit_process(false, false), 0xbfff_ffff);
        assert_eq!(highest_address_of_32_bit_process(true, true), 0xbfff_ffff);
        assert_eq!(highest_address_of_32_bit_process(false, true), 0xbfff_ffff);
    }

    #[test]
    fn this_process_reports_a_top_it_can_map_below() {
        let top = super::super::highest_user_address();
        #[cfg(target_pointer_width = "32")]
        {
            // This machine's kernel is 64-bit; the test runs there natively.
            let expected = if kernel_is_64_bit() && !has_3gb_personality() {
                0xffff_dfff
            } else {
                0xbfff_ffff
            };
            assert_eq!(top, expected);
        }
        #[cfg(target_pointer_width = "64")]
        assert!(top > u32::MAX as usize);
        assert_eq!((top + 1) % 4096, 0, "{top:#x} ends a page");
    }

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
}
