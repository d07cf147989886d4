//! macOS backend of the OS layer (Intel and Apple Silicon). Compiled in CI
//! for `x86_64-apple-darwin` and `aarch64-apple-darwin` (`.ci/other-os`),
//! not run here: no Mac is available.
//!
//! What differs from Linux:
//! - free ranges come from walking `mach_vm_region` (the walk itself is in
//!   `src/region_walk.rs`, tested on every host);
//! - a fixed address is claimed with `mach_vm_allocate` without
//!   `VM_FLAGS_ANYWHERE`, which fails with `KERN_NO_SPACE` rather than
//!   replacing anything;
//! - on Apple Silicon, where the kernel enforces W^X, executable memory is
//!   mapped `MAP_JIT` (with the address as a hint, checked, since
//!   `mach_vm_allocate` cannot make JIT memory) and every write to it runs
//!   between `pthread_jit_write_protect_np(0)` and `(1)`, which switch the
//!   calling thread's view of all JIT pages between writable and
//!   executable; the instruction cache is flushed with
//!   `sys_icache_invalidate`;
//! - the rendezvous file is Linux's, named through `/private/tmp` (the
//!   target of the `/tmp` symlink). Its liveness is proven by the probe
//!   word read back with `mach_vm_read_overwrite`, since the region walk
//!   does not name files; the creator's `flock` stays held through a
//!   descriptor kept open. With 16 KiB pages the file is 16 KiB, and the
//!   bytes after the first locator are further chained locator headers
//!   (`FORMAT.md`): they stay in the writable file mapping, not in
//!   executable buffers.
//!
//! # References
//!
//! `<mach/mach_vm.h>` (`mach_vm_allocate`, `mach_vm_region`,
//! `mach_vm_read_overwrite`), Apple's "Porting just-in-time compilers to
//! Apple silicon" (`MAP_JIT`, `pthread_jit_write_protect_np`,
//! `sys_icache_invalidate`).

use super::unix::map_anonymous;
use super::unix::protection_bits;
use super::{FixedMapping, OwnedMapping, Protection, process_id};
use crate::space::maps::{Access, MapsEntry};
use crate::space::region_walk;
use std::fs::File;
use std::ops::ControlFlow;

pub(crate) use super::unix::{
    Directory, Errno, FileKind, FileStatus, INVALID_ARGUMENT, OUT_OF_MEMORY, PROTECT_CALL,
    effective_user_id, exclude_from_fork, file_status, flush_instruction_cache, hold_liveness_lock,
    is_execute_refusal, is_locked_elsewhere, is_mapped, keep_liveness_lock, map_file_shared,
    page_size, process_is_alive, protect, query_granularity, release_liveness_lock, run_at_exit,
    set_file_mode, set_page_protection, sleep, unmap, write_new_file,
};

/// Mach calls the `libc` crate does not declare (`<mach/mach_vm.h>`); all
/// are in libSystem.
mod mach {
    use libc::{c_int, kern_return_t, mach_msg_type_number_t, mach_port_t, mach_vm_address_t};
    use libc::{mach_vm_size_t, vm_map_t};

    /// `VM_FLAGS_FIXED`: allocate exactly at the address given, or fail
    /// (the absence of `VM_FLAGS_ANYWHERE`).
    pub(super) const VM_FLAGS_FIXED: c_int = 0;

    /// `VM_REGION_BASIC_INFO_64`.
    pub(super) const VM_REGION_BASIC_INFO_64: c_int = 9;

    /// `struct vm_region_basic_info_64` (`#pragma pack(4)`).
    #[repr(C, packed(4))]
    #[derive(Clone, Copy, Default)]
    pub(super) struct RegionBasicInfo64 {
        pub(super) protection: c_int,
        pub(super) max_protection: c_int,
        pub(super) inheritance: u32,
        pub(super) shared: u32,
        pub(super) reserved: u32,
        pub(super) offset: u64,
        pub(super) behavior: c_int,
        pub(super) user_wired_count: u16,
    }

    /// `VM_REGION_BASIC_INFO_COUNT_64`: the size in 32-bit words.
    pub(super) const REGION_BASIC_INFO_64_COUNT: mach_msg_type_number_t =
        (std::mem::size_of::<RegionBasicInfo64>() / 4) as mach_msg_type_number_t;

    unsafe extern "C" {
        /// The task port of this process, set before `main` runs
        /// (`mach_task_self()` is a macro that reads it).
        pub(super) static mach_task_self_: mach_port_t;

        pub(super) fn mach_vm_allocate(
            target: vm_map_t,
            address: *mut mach_vm_address_t,
            size: mach_vm_size_t,
            flags: c_int,
        ) -> kern_return_t;

        pub(super) fn mach_vm_region(
            target: vm_map_t,
            address: *mut mach_vm_address_t,
            size: *mut mach_vm_size_t,
            flavor: c_int,
            info: *mut c_int,
            count: *mut mach_msg_type_number_t,
            object_name: *mut mach_port_t,
        ) -> kern_return_t;

        pub(super) fn mach_vm_read_overwrite(
            target: vm_map_t,
            address: mach_vm_address_t,
            size: mach_vm_size_t,
            data: mach_vm_address_t,
            out_size: *mut mach_vm_size_t,
        ) -> kern_return_t;
    }
}

/// The call that claims memory at a fixed address, as error messages name
/// it.
pub(crate) const MAP_CALL: &str = "mach_vm_allocate";

/// The error number for "not implemented on this system": what the calls
/// on another process's memory answer on macOS (`os/remote/unsupported.rs`).
pub(crate) const UNSUPPORTED: Errno = libc::ENOSYS;

/// Whether an error means "not implemented on this system" ([`UNSUPPORTED`]).
pub(crate) fn is_unsupported(errno: Errno) -> bool {
    errno == UNSUPPORTED
}

/// A Mach error as an `errno`, so that one error type serves both kinds of
/// call. `KERN_NO_SPACE` from a fixed allocation means the range is taken.
fn errno_of(result: libc::kern_return_t) -> Errno {
    match result {
        libc::KERN_NO_SPACE => libc::EEXIST,
        libc::KERN_INVALID_ADDRESS => libc::EFAULT,
        libc::KERN_PROTECTION_FAILURE => libc::EACCES,
        libc::KERN_RESOURCE_SHORTAGE => libc::ENOMEM,
        _ => libc::EINVAL,
    }
}

/// The task port of this process.
fn this_task() -> libc::mach_port_t {
    // SAFETY: a plain read of a word the system set before `main` and
    // never changes.
    unsafe { mach::mach_task_self_ }
}

/// The lowest address placement tries. A main executable's `__PAGEZERO`
/// (4 GiB on 64-bit) shows up in the region walk, so it is avoided there.
pub(crate) fn query_lowest_address() -> usize {
    65536
}

/// The highest address (inclusive) a user mapping can reach:
/// `MACH_VM_MAX_ADDRESS - 1` for macOS (`0x7fff_ffe0_0000` on Intel,
/// `0x7fff_fe00_0000` on Apple Silicon).
pub(crate) fn query_highest_user_address() -> usize {
    #[cfg(target_arch = "aarch64")]
    {
        0x7fff_fe00_0000 - 1
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        0x7fff_ffe0_0000 - 1
    }
}

/// Whether an `errno` from a fixed mapping means "something is already
/// mapped there" (`KERN_NO_SPACE`, see [`errno_of`]).
pub(crate) fn is_occupied(errno: Errno) -> bool {
    errno == libc::EEXIST
}

/// Whether executable memory must be `MAP_JIT`: Apple Silicon.
const NEEDS_JIT: bool = cfg!(target_arch = "aarch64");

/// Maps `len` bytes at exactly `address`, never replacing anything.
///
/// Read/write memory, and executable memory on Intel, is claimed with
/// `mach_vm_allocate` at a fixed address (which fails if anything is in
/// the range), then given the rights asked for with `mprotect`. Executable
/// memory on Apple Silicon must be `MAP_JIT`, which only `mmap` makes: the
/// address is passed as a hint, which never replaces a mapping either, and
/// memory placed elsewhere is given back.
pub(crate) fn map_fixed_noreplace(
    address: usize,
    len: usize,
    protection: Protection,
) -> Result<FixedMapping, Errno> {
    super::fault::check(super::fault::FaultPoint::MapMemory)?;
    if NEEDS_JIT && protection == Protection::ReadWriteExecute {
        // SAFETY: a hint without `MAP_FIXED` never replaces a mapping.
        let result = unsafe { map_anonymous(address, len, protection, libc::MAP_JIT)? };
        if result == address {
            return Ok(FixedMapping::Mapped(OwnedMapping::new(address, len, unmap)));
        }
        // SAFETY: the kernel just made this mapping for us alone.
        unsafe { libc::munmap(result as *mut libc::c_void, len) };
        return Ok(FixedMapping::Elsewhere);
    }
    let mut claimed = address as libc::mach_vm_address_t;
    // SAFETY: without `VM_FLAGS_ANYWHERE` the kernel allocates exactly at
    // `claimed` or fails; it never replaces an existing mapping.
    let result = unsafe {
        mach::mach_vm_allocate(
            this_task(),
            &mut claimed,
            len as libc::mach_vm_size_t,
            mach::VM_FLAGS_FIXED,
        )
    };
    if result != libc::KERN_SUCCESS {
        return Err(errno_of(result));
    }
    let mapping = OwnedMapping::new(address, len, unmap);
    // `mach_vm_allocate` makes read/write pages; other rights are set after.
    if protection != Protection::ReadWrite {
        // SAFETY: changes the rights of the pages just allocated for us.
        let protected = unsafe {
            libc::mprotect(
                address as *mut libc::c_void,
                len,
                protection_bits(protection),
            )
        };
        if protected != 0 {
            // Dropping `mapping` gives the pages back.
            return Err(super::unix::last_errno());
        }
    }
    Ok(FixedMapping::Mapped(mapping))
}

/// Maps `len` bytes of private anonymous memory wherever the kernel likes
/// (`MAP_JIT` for executable memory on Apple Silicon).
pub(crate) fn map_anywhere(len: usize, protection: Protection) -> Result<OwnedMapping, Errno> {
    let flags = if NEEDS_JIT && protection == Protection::ReadWriteExecute {
        libc::MAP_JIT
    } else {
        0
    };
    // SAFETY: no hint and no `MAP_FIXED`: the kernel chooses a free range.
    let address = unsafe { map_anonymous(0, len, protection, flags)? };
    Ok(OwnedMapping::new(address, len, unmap))
}

/// Runs `write` while `MAP_JIT` memory is writable for this thread: on
/// Apple Silicon the thread's view of every JIT page is switched to
/// writable (and not executable) around it, and back to executable after.
/// Intel Macs do not enforce W^X on these buffers.
///
/// The switch is per thread and has no "previous state" to restore: a
/// caller that keeps its own JIT pages writable across this call finds
/// them executable afterwards.
pub(crate) fn with_code_writable<R>(_address: usize, _len: usize, write: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "aarch64")]
    {
        /// Switches JIT pages back to executable for this thread on drop,
        /// even if `write` unwinds.
        struct Executable;
        impl Drop for Executable {
            fn drop(&mut self) {
                // SAFETY: changes only this thread's view of JIT pages.
                unsafe { libc::pthread_jit_write_protect_np(1) };
            }
        }
        // SAFETY: as above.
        unsafe { libc::pthread_jit_write_protect_np(0) };
        let _executable = Executable;
        write()
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        write()
    }
}

/// A [`ForkMarker`](super::ForkMarker) on the heap that records the
/// process id: macOS has no wipe-on-fork advice (`minherit` can only share,
/// copy or drop a page), so a forked child is told by its different id.
pub(crate) fn new_fork_marker() -> &'static super::ForkMarker {
    Box::leak(Box::new(super::ForkMarker::unwiped(process_id())))
}

/// The region at or above `address`, from `mach_vm_region`, as
/// `(start, len, rights)`; `None` when there is none above.
fn region_at_or_above(address: usize) -> Result<Option<(usize, usize, Access)>, Errno> {
    let mut start = address as libc::mach_vm_address_t;
    let mut size: libc::mach_vm_size_t = 0;
    let mut info = mach::RegionBasicInfo64::default();
    let mut count = mach::REGION_BASIC_INFO_64_COUNT;
    let mut object_name: libc::mach_port_t = 0;
    // SAFETY: every pointer is to a live local of the type the call
    // expects, `info` is `count` words long, and the call only writes them.
    let result = unsafe {
        mach::mach_vm_region(
            this_task(),
            &mut start,
            &mut size,
            mach::VM_REGION_BASIC_INFO_64,
            (&mut info as *mut mach::RegionBasicInfo64).cast(),
            &mut count,
            &mut object_name,
        )
    };
    match result {
        libc::KERN_SUCCESS => {
            let protection = info.protection;
            Ok(Some((
                usize::try_from(start).map_err(|_| libc::EOVERFLOW)?,
                usize::try_from(size).map_err(|_| libc::EOVERFLOW)?,
                Access {
                    read: protection & libc::PROT_READ != 0,
                    write: protection & libc::PROT_WRITE != 0,
                    execute: protection & libc::PROT_EXEC != 0,
                },
            )))
        }
        // No region at or above the address.
        libc::KERN_INVALID_ADDRESS => Ok(None),
        other => Err(errno_of(other)),
    }
}

/// Walks the address space with `mach_vm_region`, calling `visit` for each
/// run of touching regions until it breaks.
pub(crate) fn read_maps(
    _buffer: &mut Vec<u8>,
    visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> Result<(), Errno> {
    super::fault::check(super::fault::FaultPoint::ReadMaps)?;
    region_walk::for_each_mapped_run(0, region_at_or_above, visit)
}

/// Not available: the region walk does not say which file a region maps.
/// The rendezvous check then proves liveness with the probe word instead
/// (see [`read_own_memory`]).
pub(crate) fn read_file_mappings(
    _buffer: &mut Vec<u8>,
    _visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> Result<(), Errno> {
    Err(libc::ENOTSUP)
}

/// Copies `out.len()` bytes of this process's memory at `address` into
/// `out` with `mach_vm_read_overwrite`, which reports an unmapped or
/// unreadable address as an error instead of faulting.
pub(crate) fn read_own_memory(address: usize, out: &mut [u8]) -> Result<(), Errno> {
    super::fault::check(super::fault::FaultPoint::ReadOwnMemory)?;
    let mut copied: libc::mach_vm_size_t = 0;
    // SAFETY: `out` is writable for its length; the kernel checks the
    // source range and copies into `out` only.
    let result = unsafe {
        mach::mach_vm_read_overwrite(
            this_task(),
            address as libc::mach_vm_address_t,
            out.len() as libc::mach_vm_size_t,
            out.as_mut_ptr() as libc::mach_vm_address_t,
            &mut copied,
        )
    };
    match result {
        libc::KERN_SUCCESS if copied == out.len() as libc::mach_vm_size_t => Ok(()),
        libc::KERN_SUCCESS | libc::KERN_INVALID_ADDRESS | libc::KERN_PROTECTION_FAILURE => {
            Err(libc::EFAULT)
        }
        other => Err(errno_of(other)),
    }
}

/// Nothing to do: macOS has no `fallocate`, and reading a sparse file
/// through a mapping on APFS does not fault for lack of blocks the way
/// tmpfs can.
pub(crate) fn allocate_existing_file(_file: &File, _len: u64) -> Result<(), Errno> {
    super::fault::check(super::fault::FaultPoint::AllocateRendezvous)?;
    Ok(())
}
