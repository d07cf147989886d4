//! FreeBSD backend of the OS layer. Compiled in CI (`.ci/other-os`), not
//! run here: no FreeBSD machine is available.
//!
//! What differs from Linux: a fixed address is claimed with
//! `MAP_FIXED | MAP_EXCL`, which fails rather than replacing a mapping;
//! the list of mappings comes from `sysctl` `KERN_PROC_VMMAP`, since
//! `/proc` is usually not mounted (its records are parsed in
//! `src/space/kinfo_vmmap.rs`, tested on every host); a forked child is noticed
//! through a page inherited zeroed (`minherit(INHERIT_ZERO)`). The
//! rendezvous file, its path and its protocol are Linux's (`unix.rs`).
//!
//! # References
//!
//! `mmap(2)` (`MAP_EXCL`), `sysctl(3)` and `<sys/user.h>`
//! (`KERN_PROC_VMMAP`, `struct kinfo_vmentry`), `minherit(2)`,
//! `posix_fallocate(2)`.

use super::unix::{last_errno, map_anonymous};
use super::{FixedMapping, OwnedMapping, Protection, process_id};
use crate::space::kinfo_vmmap;
use crate::space::maps::MapsEntry;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;

pub(crate) use super::unix::{
    Directory, Errno, FileKind, FileStatus, INVALID_ARGUMENT, OUT_OF_MEMORY, PROTECT_CALL,
    effective_user_id, exclude_from_fork, file_status, flush_instruction_cache, hold_liveness_lock,
    is_execute_refusal, is_locked_elsewhere, is_mapped, keep_liveness_lock, map_anywhere,
    map_file_shared, page_size, process_is_alive, protect, query_granularity,
    release_liveness_lock, run_at_exit, set_file_mode, set_page_protection, sleep, unmap,
    with_code_writable, write_new_file,
};

/// The call that maps memory, as error messages name it.
pub(crate) const MAP_CALL: &str = "mmap";

/// The error number for "not implemented on this system": what the calls
/// on another process's memory answer on FreeBSD (`os/remote/unsupported.rs`).
pub(crate) const UNSUPPORTED: Errno = libc::ENOSYS;

/// Whether an error means "not implemented on this system" ([`UNSUPPORTED`]).
pub(crate) fn is_unsupported(errno: Errno) -> bool {
    errno == UNSUPPORTED
}

/// The lowest address placement tries. FreeBSD refuses page 0 unless
/// `security.bsd.map_at_zero` is set; 64 KiB keeps clear of it either way,
/// as on Linux.
pub(crate) fn query_lowest_address() -> usize {
    65536
}

/// The highest address (inclusive) a user mapping can reach:
/// `VM_MAXUSER_ADDRESS - 1` below the shared page, with 47-bit (amd64, 4-level
/// paging) or 48-bit (arm64) user addresses.
pub(crate) fn query_highest_user_address() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        (1usize << 47) - 4096 - 1
    }
    #[cfg(target_arch = "aarch64")]
    {
        (1usize << 48) - 4096 - 1
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        usize::MAX - 1
    }
}

/// Whether an `errno` from a fixed mapping means "something is already
/// mapped there": `MAP_EXCL` reports an occupied range as `ENOMEM` (the
/// kernel's `KERN_NO_SPACE`). Real memory exhaustion looks the same; the
/// placement loop then runs out of candidates and retries, both bounded,
/// and reports `NoSpaceInRange`.
pub(crate) fn is_occupied(errno: Errno) -> bool {
    errno == libc::ENOMEM
}

/// Maps `len` bytes of private anonymous memory at exactly `address`,
/// never replacing an existing mapping (`MAP_FIXED | MAP_EXCL`).
pub(crate) fn map_fixed_noreplace(
    address: usize,
    len: usize,
    protection: Protection,
) -> Result<FixedMapping, Errno> {
    // SAFETY: `MAP_EXCL` makes `MAP_FIXED` fail instead of replacing an
    // existing mapping, so no memory the process uses can be affected.
    let result =
        unsafe { map_anonymous(address, len, protection, libc::MAP_FIXED | libc::MAP_EXCL)? };
    if result == address {
        Ok(FixedMapping::Mapped(OwnedMapping::new(address, len, unmap)))
    } else {
        // Not expected with `MAP_FIXED`; given back all the same.
        // SAFETY: the kernel just made this mapping for us alone.
        unsafe { libc::munmap(result as *mut libc::c_void, len) };
        Ok(FixedMapping::Elsewhere)
    }
}

/// A [`ForkMarker`](super::ForkMarker) in a page inherited zeroed by a
/// forked child (`minherit(INHERIT_ZERO)`, FreeBSD 12).
pub(crate) fn new_fork_marker() -> &'static super::ForkMarker {
    super::unix::fork_marker_in_wiped_page(|address, len| {
        // SAFETY: the page is a fresh private mapping owned by the marker;
        // the call changes only what a child inherits.
        unsafe { libc::minherit(address as *mut libc::c_void, len, libc::INHERIT_ZERO) == 0 }
    })
}

/// Reads this process's mappings with `sysctl` `KERN_PROC_VMMAP` into
/// `buffer` and calls `visit` for each until it breaks.
pub(crate) fn read_maps(
    buffer: &mut Vec<u8>,
    visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> Result<(), Errno> {
    super::fault::check(super::fault::FaultPoint::ReadMaps)?;
    let pid = libc::c_int::try_from(process_id()).map_err(|_| libc::EINVAL)?;
    let name = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_VMMAP, pid];
    // The list can grow between asking its size and reading it: ask again
    // a few times, with room to spare.
    for _ in 0..8 {
        let mut len: libc::size_t = 0;
        // SAFETY: a null output buffer asks for the size only; `name` is a
        // valid MIB of four integers.
        let sized = unsafe {
            libc::sysctl(
                name.as_ptr(),
                4,
                std::ptr::null_mut(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if sized != 0 {
            return Err(last_errno());
        }
        let wanted = len.saturating_add(len / 4);
        if buffer.len() < wanted {
            buffer
                .try_reserve_exact(wanted - buffer.len())
                .map_err(|_| libc::ENOMEM)?;
            buffer.resize(wanted, 0);
        }
        let mut len = buffer.len();
        // SAFETY: `buffer` is writable for `len` bytes, which the kernel
        // does not exceed; it reports what it wrote in `len`.
        let read = unsafe {
            libc::sysctl(
                name.as_ptr(),
                4,
                buffer.as_mut_ptr().cast(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if read == 0 {
            let written = &buffer[..len.min(buffer.len())];
            return kinfo_vmmap::for_each_entry(written, visit).map_err(|_| libc::EIO);
        }
        if last_errno() != libc::ENOMEM {
            return Err(last_errno());
        }
    }
    Err(libc::ENOMEM)
}

/// The mappings of files, with their device, inode and offset
/// (`KERN_PROC_VMMAP` names them).
pub(crate) fn read_file_mappings(
    buffer: &mut Vec<u8>,
    visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> Result<(), Errno> {
    read_maps(buffer, visit)
}

/// Not available: FreeBSD has no `process_vm_readv`. The rendezvous check
/// does not need it there, since `KERN_PROC_VMMAP` always answers.
pub(crate) fn read_own_memory(_address: usize, _out: &mut [u8]) -> Result<(), Errno> {
    super::fault::check(super::fault::FaultPoint::ReadOwnMemory)?;
    Err(libc::ENOSYS)
}

/// Gets the blocks of the first `len` bytes of an existing `file`
/// (`posix_fallocate`, which never changes its bytes). A file system that
/// cannot (ZFS answers `EINVAL`) is left as it is.
pub(crate) fn allocate_existing_file(file: &File, len: u64) -> Result<(), Errno> {
    super::fault::check(super::fault::FaultPoint::AllocateRendezvous)?;
    let len = libc::off_t::try_from(len).map_err(|_| libc::EFBIG)?;
    loop {
        // SAFETY: `posix_fallocate` on a descriptor we own only allocates
        // missing blocks; it returns the error instead of setting `errno`.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
            0 => return Ok(()),
            libc::EINTR => continue,
            libc::EINVAL | libc::EOPNOTSUPP => return Ok(()),
            errno => return Err(errno),
        }
    }
}
