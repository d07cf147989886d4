//! Windows backend of the OS layer.
//!
//! The same items as `linux.rs`, on the Win32 memory API through
//! `windows-sys`. Windows differs from Linux in ways that make parts of this
//! file simpler:
//!
//! - `VirtualAlloc(address, MEM_RESERVE | MEM_COMMIT)` at an exact address
//!   fails with `ERROR_INVALID_ADDRESS` when anything is reserved there, so
//!   claiming never replaces memory (what `MAP_FIXED_NOREPLACE` gives on
//!   Linux).
//! - The address space is read with a `VirtualQuery` walk instead of a maps
//!   file; each region that is not `MEM_FREE` becomes one [`MapsEntry`], so
//!   placement is the same code on both systems.
//! - There is no `fork`, so the fork marker never fires.
//! - The rendezvous is a named, pagefile-backed section rather than a file
//!   in `/tmp`; this file offers the calls, `shared/rendezvous/windows.rs`
//!   the protocol.
//!
//! Reservations start at multiples of the allocation granularity (64 KiB),
//! which is therefore what [`query_granularity`] returns, not the page size.
//!
//! # References
//!
//! `VirtualAlloc`, `VirtualQuery`, `CreateFileMappingW`, `MapViewOfFile`,
//! `FlushInstructionCache` and `ReadProcessMemory` in the Win32 API
//! documentation.

use super::fault::{self, FaultPoint};
use super::{FixedMapping, OwnedMapping, Protection};
use crate::space::maps::MapsEntry;
use std::ffi::c_void;
use std::ops::ControlFlow;
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ALREADY_EXISTS, ERROR_DYNAMIC_CODE_BLOCKED, ERROR_INVALID_ADDRESS,
    ERROR_INVALID_PARAMETER, ERROR_NOT_ENOUGH_MEMORY, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Diagnostics::Debug::{FlushInstructionCache, ReadProcessMemory};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_ALL_ACCESS, FILE_MAP_EXECUTE, MEM_COMMIT, MEM_FREE, MEM_MAPPED,
    MEM_RELEASE, MEM_RESERVE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile,
    PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_GUARD, PAGE_NOACCESS,
    PAGE_NOCACHE, PAGE_PROTECTION_FLAGS, PAGE_READONLY, PAGE_READWRITE, PAGE_WRITECOMBINE,
    UnmapViewOfFile, VirtualAlloc, VirtualFree, VirtualProtect, VirtualQuery,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

/// A Win32 error code (`GetLastError`), stored as `i32` like an `errno` so
/// that `std::io::Error::from_raw_os_error` describes it.
pub(crate) type Errno = i32;

/// The error number for an invalid argument.
pub(crate) const INVALID_ARGUMENT: Errno = ERROR_INVALID_PARAMETER as Errno;

/// The call that maps memory, as error messages name it.
pub(crate) const MAP_CALL: &str = "VirtualAlloc";

/// The error number for "not enough memory" (`ERROR_NOT_ENOUGH_MEMORY`).
pub(crate) const OUT_OF_MEMORY: Errno = ERROR_NOT_ENOUGH_MEMORY as Errno;

/// Windows implements every call; nothing is reported as unsupported.
pub(crate) fn is_unsupported(_errno: Errno) -> bool {
    false
}

fn last_error() -> Errno {
    // SAFETY: `GetLastError` only reads this thread's last-error value.
    let code = unsafe { GetLastError() };
    code as Errno
}

fn system_info() -> SYSTEM_INFO {
    // SAFETY: an all-zero `SYSTEM_INFO` is a valid value of this plain C
    // struct (integers, pointers and a union of integers).
    let mut info: SYSTEM_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is writable memory of the right type; the call cannot
    // fail.
    unsafe { GetSystemInfo(&mut info) };
    info
}

/// The allocation granularity: where reservations may start (64 KiB on
/// every Windows release so far).
pub(crate) fn query_granularity() -> usize {
    match system_info().dwAllocationGranularity as usize {
        granularity if granularity.is_power_of_two() && granularity >= 4096 => granularity,
        _ => 65536,
    }
}

/// The lowest address a reservation may start at (64 KiB).
pub(crate) fn query_lowest_address() -> usize {
    system_info().lpMinimumApplicationAddress as usize
}

/// The highest user-space address of this process, as the system reports
/// it: 128 TiB less 64 KiB for a 64-bit process on Windows 8.1 and later
/// (8 TiB before); for a 32-bit process 4 GiB less 64 KiB if its image is
/// large-address-aware (under a 64-bit system), 2 GiB less 64 KiB if not.
/// Never taken from where an allocation happened to land: Wine grants
/// addresses above 2 GiB to programs that did not ask for them.
pub(crate) fn query_highest_user_address() -> usize {
    match system_info().lpMaximumApplicationAddress as usize {
        0 => DEFAULT_HIGHEST_USER_ADDRESS,
        highest => highest,
    }
}

/// What a process without large-address awareness has, should the system
/// report nothing.
#[cfg(target_pointer_width = "64")]
const DEFAULT_HIGHEST_USER_ADDRESS: usize = 0x7fff_fffe_ffff;
#[cfg(not(target_pointer_width = "64"))]
const DEFAULT_HIGHEST_USER_ADDRESS: usize = 0x7ffe_ffff;

/// The `PAGE_*` flags of `protection`.
pub(super) fn protection_flags(protection: Protection) -> u32 {
    match protection {
        Protection::ReadWrite => PAGE_READWRITE,
        Protection::ReadExecute => PAGE_EXECUTE_READ,
        Protection::ReadWriteExecute => PAGE_EXECUTE_READWRITE,
    }
}

/// A region's protection exactly as `VirtualQuery` states it (`PAGE_*`
/// flags with their modifiers), so that it can be put back as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageProtection(PAGE_PROTECTION_FLAGS);

impl PageProtection {
    /// The same rights plus write; modifiers (`PAGE_GUARD`, caching) kept.
    pub(crate) fn with_write(self) -> PageProtection {
        let modifiers = self.0 & (PAGE_GUARD | PAGE_NOCACHE | PAGE_WRITECOMBINE);
        let rights = match self.0 & !modifiers {
            PAGE_EXECUTE | PAGE_EXECUTE_READ => PAGE_EXECUTE_READWRITE,
            PAGE_READONLY | PAGE_NOACCESS => PAGE_READWRITE,
            // Already writable (read/write, copy-on-write, with or without
            // execute).
            other => other,
        };
        PageProtection(rights | modifiers)
    }
}

/// The unit in which protections change: the page.
pub(crate) fn page_size() -> usize {
    4096
}

/// The name of the call that changes protections, for error messages.
pub(crate) const PROTECT_CALL: &str = "VirtualProtect";

/// Calls `visit` with each committed region that overlaps `[start, end)`
/// and its protection, in address order.
pub(crate) fn visit_protections(
    start: usize,
    end: usize,
    mut visit: impl FnMut(usize, usize, PageProtection),
) -> Result<(), Errno> {
    let mut at = start;
    while at < end {
        let Some(region) = query_region(at) else {
            break;
        };
        let region_end = region.start.saturating_add(region.len);
        if region_end <= at {
            break;
        }
        if let Some(protection) = region.protection {
            visit(region.start, region_end, protection);
        }
        at = region_end;
    }
    Ok(())
}

/// Sets the protection of the pages of `[address, address + len)`, which
/// must lie in one reservation.
pub(crate) fn set_page_protection(
    address: usize,
    len: usize,
    protection: PageProtection,
) -> Result<(), Errno> {
    fault::check(FaultPoint::Protect)?;
    let mut former: PAGE_PROTECTION_FLAGS = 0;
    // SAFETY: `VirtualProtect` changes only access rights and writes the
    // former ones into `former`; the callers pass pages they are about to
    // write (made writable) or restore to the exact rights read before, or
    // pages of an allocation they own.
    let done = unsafe { VirtualProtect(address as *const c_void, len, protection.0, &mut former) };
    if done != 0 { Ok(()) } else { Err(last_error()) }
}

/// Sets the protection of pages this library mapped.
pub(crate) fn protect(address: usize, len: usize, protection: Protection) -> Result<(), Errno> {
    set_page_protection(address, len, PageProtection(protection_flags(protection)))
}

/// Whether an error from `VirtualAlloc` means the process may not create
/// executable memory (Arbitrary Code Guard), not that memory ran out.
pub(crate) fn is_execute_refusal(errno: Errno) -> bool {
    errno == ERROR_DYNAMIC_CODE_BLOCKED as Errno
}

/// Whether an error from an exact-address `VirtualAlloc` means "something is
/// already reserved there".
pub(crate) fn is_occupied(errno: Errno) -> bool {
    errno == ERROR_INVALID_ADDRESS as Errno
}

/// Releases the reservation at `address`.
///
/// # Safety
///
/// The reservation was made by this library at `address`, and nothing uses
/// it any more.
pub(crate) unsafe fn unmap(address: usize, _len: usize) {
    // SAFETY: the caller's contract. `MEM_RELEASE` of a base we reserved
    // fails only for invalid arguments, which these are not; it runs from a
    // destructor, which must not panic, so the result is ignored.
    unsafe { VirtualFree(address as *mut c_void, 0, MEM_RELEASE) };
}

/// Reserves and commits `len` bytes at exactly `address`. Fails with
/// `ERROR_INVALID_ADDRESS` if any part of the range is reserved already:
/// existing memory is never replaced.
pub(crate) fn map_fixed_noreplace(
    address: usize,
    len: usize,
    protection: Protection,
) -> Result<FixedMapping, Errno> {
    fault::check(FaultPoint::MapMemory)?;
    if fault::is_refused(address, len) {
        return Err(ERROR_INVALID_ADDRESS as Errno);
    }
    // SAFETY: `VirtualAlloc` with `MEM_RESERVE` at an explicit address fails
    // instead of touching an existing reservation, so no memory the process
    // uses can be affected.
    let result = unsafe {
        VirtualAlloc(
            address as *const c_void,
            len,
            MEM_RESERVE | MEM_COMMIT,
            protection_flags(protection),
        )
    };
    if result.is_null() {
        return Err(last_error());
    }
    let mapping = OwnedMapping::new(result as usize, len, unmap);
    if mapping.address() == address {
        Ok(FixedMapping::Mapped(mapping))
    } else {
        // Dropping releases what nobody else knows about.
        drop(mapping);
        Ok(FixedMapping::Elsewhere)
    }
}

/// Reserves and commits `len` bytes wherever the system likes.
pub(crate) fn map_anywhere(len: usize, protection: Protection) -> Result<OwnedMapping, Errno> {
    fault::check(FaultPoint::MapMemory)?;
    // SAFETY: a null address lets the system choose a free range; existing
    // memory is untouched.
    let result = unsafe {
        VirtualAlloc(
            std::ptr::null(),
            len,
            MEM_RESERVE | MEM_COMMIT,
            protection_flags(protection),
        )
    };
    if result.is_null() {
        Err(last_error())
    } else {
        Ok(OwnedMapping::new(result as usize, len, unmap))
    }
}

/// Makes freshly written code in `[address, address + len)` visible to
/// instruction fetch.
pub(crate) fn flush_instruction_cache(address: usize, len: usize) {
    // SAFETY: `FlushInstructionCache` only performs cache maintenance for
    // the range in this process; it does not read or write the bytes, and
    // the pseudo-handle of the current process needs no closing.
    unsafe { FlushInstructionCache(GetCurrentProcess(), address as *const c_void, len) };
    // The lines maintained are the system's business here.
    super::fault::record_flush(address, len, 0);
}

/// Runs `write` while `[address, address + len)` is writable. Buffers are
/// mapped read/write/execute (a process with Arbitrary Code Guard refuses
/// that when they are created), so this only calls `write`.
pub(crate) fn with_code_writable<R>(_address: usize, _len: usize, write: impl FnOnce() -> R) -> R {
    write()
}

/// Windows has no `fork`: a process never finds itself a copy of another,
/// so the marker can live on the heap and needs no process id.
pub(crate) fn new_fork_marker() -> &'static super::ForkMarker {
    Box::leak(Box::new(super::ForkMarker::unwiped(0)))
}

/// What `VirtualQuery` says about the region containing an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    /// First address of the region (pages with the same state and rights).
    pub(crate) start: usize,
    /// Bytes in the region.
    pub(crate) len: usize,
    /// Where the reservation the region belongs to starts.
    pub(crate) allocation_base: usize,
    /// A view of a section (`MEM_MAPPED`), committed.
    pub(crate) is_committed_view: bool,
    /// Not `MEM_FREE`.
    pub(crate) is_reserved: bool,
    /// Readable and writable now, without guard or caching quirks.
    pub(crate) is_read_write: bool,
    /// Executable as well.
    pub(crate) is_executable: bool,
    /// The exact protection, if committed.
    pub(crate) protection: Option<PageProtection>,
}

/// Describes the region containing `address`, or `None` above the highest
/// user address.
pub(crate) fn query_region(address: usize) -> Option<Region> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `VirtualQuery` only describes the address space and writes at
    // most `size_of` bytes into `info`.
    let written = unsafe {
        VirtualQuery(
            address as *const c_void,
            &mut info,
            std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
        )
    };
    if written == 0 {
        return None;
    }
    let quirks = PAGE_GUARD | PAGE_NOCACHE | PAGE_WRITECOMBINE;
    let rights = info.Protect & !quirks;
    let committed = info.State == MEM_COMMIT;
    Some(Region {
        start: info.BaseAddress as usize,
        len: info.RegionSize,
        allocation_base: info.AllocationBase as usize,
        is_committed_view: committed && info.Type == MEM_MAPPED,
        is_reserved: info.State != MEM_FREE,
        is_read_write: committed
            && info.Protect & quirks == 0
            && (rights == PAGE_READWRITE || rights == PAGE_EXECUTE_READWRITE),
        is_executable: committed && rights == PAGE_EXECUTE_READWRITE,
        protection: committed.then_some(PageProtection(info.Protect)),
    })
}

/// Whether every page of `[address, address + len)` is reserved, asked with
/// `VirtualQuery` region by region.
pub(crate) fn is_mapped(address: usize, len: usize) -> Result<bool, Errno> {
    let end = address.saturating_add(len);
    let mut at = address;
    while at < end {
        let Some(region) = query_region(at) else {
            return Ok(false);
        };
        let region_end = region.start.saturating_add(region.len);
        if !region.is_reserved || region_end <= at {
            return Ok(false);
        }
        at = region_end;
    }
    Ok(true)
}

/// Walks the address space with `VirtualQuery` up to the highest user
/// address, calling `visit` with each run of reserved regions (merged)
/// until it breaks. `_buffer` exists for the Linux signature.
pub(crate) fn read_maps(
    _buffer: &mut Vec<u8>,
    mut visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> Result<(), Errno> {
    fault::check(FaultPoint::ReadMaps)?;
    let entry = |start: usize, end: usize| MapsEntry::unnamed(start, end, Default::default());
    let top = super::highest_user_address();
    let mut address = query_lowest_address();
    // A run of reserved regions not yet reported.
    let mut run: Option<(usize, usize)> = None;
    while address <= top {
        let Some(region) = query_region(address) else {
            break;
        };
        let end = region.start.saturating_add(region.len.max(1));
        if region.is_reserved {
            run = match run {
                Some((start, run_end)) if run_end == region.start => Some((start, end)),
                Some((start, run_end)) => {
                    if visit(&entry(start, run_end)).is_break() {
                        return Ok(());
                    }
                    Some((region.start, end))
                }
                None => Some((region.start, end)),
            };
        }
        if end <= address {
            break;
        }
        address = end;
    }
    if let Some((start, end)) = run {
        let _ = visit(&entry(start, end));
    }
    Ok(())
}

/// Copies `out.len()` bytes of this process's memory at `address` into
/// `out`, failing (not faulting) if any of it is not readable. Used to look
/// at an address that has not been proven to be ours yet.
pub(crate) fn read_own_memory(address: usize, out: &mut [u8]) -> Result<(), Errno> {
    fault::check(FaultPoint::ReadOwnMemory)?;
    let mut read = 0usize;
    // SAFETY: `ReadProcessMemory` on the current process copies into `out`,
    // which is writable for its length, and reports unreadable source
    // memory as an error instead of faulting.
    let ok = unsafe {
        ReadProcessMemory(
            GetCurrentProcess(),
            address as *const c_void,
            out.as_mut_ptr().cast(),
            out.len(),
            &mut read,
        )
    };
    if ok == 0 {
        Err(last_error())
    } else if read != out.len() {
        Err(ERROR_INVALID_ADDRESS as Errno)
    } else {
        Ok(())
    }
}

/// A handle to a named section (file mapping object), closed on drop
/// unless leaked.
#[derive(Debug)]
pub(crate) struct NamedSection {
    handle: HANDLE,
    /// Whether the section existed before this handle was opened.
    existed: bool,
}

impl NamedSection {
    /// Opens the pagefile-backed section `name`, creating it `len` bytes
    /// long and read/write/execute if it does not exist. Creating and
    /// opening are one call, so two threads cannot both create it.
    pub(crate) fn create_or_open(name: &str, len: usize) -> Result<NamedSection, Errno> {
        fault::check(FaultPoint::OpenRendezvous)?;
        if name.contains('\0') {
            return Err(INVALID_ARGUMENT);
        }
        let wide: Vec<u16> = name.encode_utf16().chain(std::iter::once(0)).collect();
        let len = len as u64;
        // SAFETY: `wide` is a NUL-terminated UTF-16 string that outlives the
        // call; `INVALID_HANDLE_VALUE` asks for a pagefile-backed section;
        // null security attributes mean the default descriptor.
        let handle = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_EXECUTE_READWRITE,
                (len >> 32) as u32,
                len as u32,
                wide.as_ptr(),
            )
        };
        // Read before any other call can change it.
        let error = last_error();
        if handle.is_null() {
            return Err(error);
        }
        Ok(NamedSection {
            handle,
            existed: error == ERROR_ALREADY_EXISTS as Errno,
        })
    }

    /// Whether the section existed before [`NamedSection::create_or_open`].
    pub(crate) fn existed(&self) -> bool {
        self.existed
    }

    /// Maps the whole section read/write, and executable too if
    /// `executable`.
    pub(crate) fn map_view(&self, executable: bool) -> Result<OwnedMapping, Errno> {
        fault::check(FaultPoint::MapRendezvous)?;
        let access = if executable {
            FILE_MAP_ALL_ACCESS | FILE_MAP_EXECUTE
        } else {
            FILE_MAP_ALL_ACCESS
        };
        // SAFETY: a new view of a section we hold a handle to, at an address
        // the system chooses; nothing existing is affected.
        let view = unsafe { MapViewOfFile(self.handle, access, 0, 0, 0) };
        if view.Value.is_null() {
            return Err(last_error());
        }
        let address = view.Value as usize;
        let len = query_region(address).map_or(0, |region| region.len);
        Ok(OwnedMapping::new(address, len, unmap_view))
    }

    /// Keeps the handle open for the rest of the process, so the name stays
    /// reachable: a section's name disappears with its last handle, even
    /// while views of it remain.
    pub(crate) fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for NamedSection {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and closed exactly once; views of the
        // section stay valid after it closes.
        unsafe { CloseHandle(self.handle) };
    }
}

/// Unmaps a view of a [`NamedSection`]: the release of the
/// [`OwnedMapping`] that [`NamedSection::map_view`] returns.
///
/// # Safety
///
/// `address` is the base of a view this library mapped, and nothing uses
/// it any more.
unsafe fn unmap_view(address: usize, _len: usize) {
    // SAFETY: the caller's contract (callers copy what they read, so no
    // reference into the view outlives it). It runs from a destructor,
    // which must not panic, so the result is ignored.
    unsafe {
        UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
            Value: address as *mut c_void,
        })
    };
}
