//! Windows: another process's memory, through a process handle.
//!
//! Windows has the calls Linux lacks: `VirtualAllocEx` reserves at an
//! exact address of another process (failing, never replacing, when
//! anything is reserved there, as `VirtualAlloc` does for this one), and
//! `VirtualQueryEx` walks its address space the way `read_maps` in
//! `windows.rs` walks this one's.
//!
//! The target's highest address is its own, not this process's: a 32-bit
//! (WoW64) target of a 64-bit caller has 4 GiB less 64 KiB if its main
//! image is large-address-aware and 2 GiB less 64 KiB if not, whatever the
//! caller has. It is read once, when the process is opened, from the image
//! characteristics the kernel keeps for the process
//! (`ProcessImageInformation`), or else from the image's file header in
//! the target's memory (its PEB's `ImageBaseAddress`). It is never taken
//! from where an allocation landed: Wine 8 grants addresses above 2 GiB
//! even to a program without the flag, which may then misread its
//! pointers as negative.
//!
//! # References
//!
//! `OpenProcess` and "Process Security and Access Rights", `VirtualQueryEx`,
//! `VirtualAllocEx`, `VirtualFreeEx`, `ReadProcessMemory`,
//! `WriteProcessMemory`, `GetExitCodeProcess`, `IsWow64Process`,
//! `NtQueryInformationProcess` and "Memory Limits for Windows and Windows
//! Server Releases" in the Win32 API documentation; the PE format
//! specification (`IMAGE_DOS_HEADER.e_lfanew`, `IMAGE_FILE_HEADER`,
//! `IMAGE_FILE_LARGE_ADDRESS_AWARE`); `SECTION_IMAGE_INFORMATION` and
//! `PEB` in the Windows Driver Kit headers.

use super::{Errno, Protection};
use crate::error::ErrorKind;
use crate::error::TargetProcessError;
use crate::space::maps::MapsEntry;
use std::ffi::c_void;
use std::mem::size_of;
use std::ops::ControlFlow;
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_INVALID_ADDRESS, ERROR_INVALID_PARAMETER,
    ERROR_PARTIAL_COPY, GetLastError, HANDLE, NTSTATUS, STILL_ACTIVE,
};
use windows_sys::Win32::System::Diagnostics::Debug::{
    IMAGE_FILE_LARGE_ADDRESS_AWARE, ReadProcessMemory, WriteProcessMemory,
};
use windows_sys::Win32::System::Memory::{
    MEM_COMMIT, MEM_FREE, MEM_RELEASE, MEM_RESERVE, MEMORY_BASIC_INFORMATION, PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE, PAGE_READWRITE, VirtualAllocEx, VirtualFreeEx, VirtualProtectEx,
    VirtualQueryEx,
};
use windows_sys::Win32::System::SystemInformation::{
    IMAGE_FILE_MACHINE_ARMNT, IMAGE_FILE_MACHINE_I386,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetExitCodeProcess, IsWow64Process, OpenProcess, PROCESS_QUERY_INFORMATION,
    PROCESS_VM_OPERATION, PROCESS_VM_READ, PROCESS_VM_WRITE,
};

// Declared as windows-sys declares it behind its `Wdk_System_Threading`
// feature (an import by name from ntdll.dll, with no import library), so
// that one function does not need another feature of the dependency.
#[cfg_attr(
    target_arch = "x86",
    link(
        name = "ntdll.dll",
        kind = "raw-dylib",
        modifiers = "+verbatim",
        import_name_type = "undecorated"
    )
)]
#[cfg_attr(
    not(target_arch = "x86"),
    link(name = "ntdll.dll", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    fn NtQueryInformationProcess(
        process: HANDLE,
        class: i32,
        information: *mut c_void,
        length: u32,
        returned: *mut u32,
    ) -> NTSTATUS;
}

/// The call that maps memory in a target, as error messages name it.
pub(crate) const REMOTE_MAP_CALL: &str = "VirtualAllocEx";

/// The call that changes the rights of memory in a target.
pub(crate) const REMOTE_PROTECT_CALL: &str = "VirtualProtectEx";

/// The page protection constant of `protection`.
fn page_flags(protection: Protection) -> u32 {
    match protection {
        Protection::ReadWrite => PAGE_READWRITE,
        Protection::ReadExecute => PAGE_EXECUTE_READ,
        Protection::ReadWriteExecute => PAGE_EXECUTE_READWRITE,
    }
}

/// The rights asked for, and no more: query (for `VirtualQueryEx` and the
/// exit code), operate on memory (allocate, free), read and write it.
const RIGHTS: u32 =
    PROCESS_QUERY_INFORMATION | PROCESS_VM_OPERATION | PROCESS_VM_READ | PROCESS_VM_WRITE;

fn last_error() -> Errno {
    // SAFETY: `GetLastError` only reads this thread's last-error value.
    let code = unsafe { GetLastError() };
    code as Errno
}

fn target(reason: TargetProcessError) -> ErrorKind {
    ErrorKind::TargetProcess(reason)
}

/// An open handle to another process, closed on drop.
#[derive(Debug)]
pub(crate) struct RemoteProcess {
    handle: HANDLE,
    /// The highest address (inclusive) the process can map: its own (see
    /// the module documentation).
    highest_address: usize,
}

// SAFETY: a process handle is a kernel object reference that any thread may
// use; the calls made with it are thread-safe.
unsafe impl Send for RemoteProcess {}

impl RemoteProcess {
    /// Opens the process with the rights in [`RIGHTS`].
    pub(crate) fn open(process_id: u32) -> Result<RemoteProcess, ErrorKind> {
        if process_id == 0 {
            // The idle process: never a target.
            return Err(target(TargetProcessError::NotRunning));
        }
        // SAFETY: `OpenProcess` only creates a handle, closed by `Drop`.
        let handle = unsafe { OpenProcess(RIGHTS, 0, process_id) };
        if handle.is_null() {
            return Err(match last_error() as u32 {
                ERROR_INVALID_PARAMETER => target(TargetProcessError::NotRunning),
                ERROR_ACCESS_DENIED => target(TargetProcessError::AccessDenied),
                _ => ErrorKind::Os {
                    call: "OpenProcess",
                    errno: last_error(),
                },
            });
        }
        let mut process = RemoteProcess {
            handle,
            highest_address: 0,
        };
        if !process.is_running() {
            return Err(target(TargetProcessError::NotRunning));
        }
        process.highest_address = process.query_highest_address()?;
        Ok(process)
    }

    /// The highest address (inclusive) the process can map, which may be
    /// lower or higher than this process's.
    pub(crate) fn highest_user_address(&self) -> usize {
        self.highest_address
    }

    /// The target's highest address, from its width and its main image.
    fn query_highest_address(&self) -> Result<usize, ErrorKind> {
        // SAFETY: the pseudo-handle of this process needs no closing.
        let this_process = unsafe { GetCurrentProcess() };
        let system_is_64_bit = cfg!(target_pointer_width = "64")
            || is_wow64(this_process)
                .ok_or_else(|| self.failure("IsWow64Process", last_error()))?;
        // On 32-bit Windows every process is 32-bit, and none is WoW64.
        let target_is_32_bit = !system_is_64_bit
            || is_wow64(self.handle).ok_or_else(|| self.failure("IsWow64Process", last_error()))?;
        let large_address_aware = self
            .image_characteristics(target_is_32_bit)
            .map(|characteristics| characteristics & IMAGE_FILE_LARGE_ADDRESS_AWARE != 0);
        Ok(highest_address_of(
            target_is_32_bit,
            large_address_aware,
            system_is_64_bit,
            super::highest_user_address(),
        ))
    }

    /// `IMAGE_FILE_HEADER.Characteristics` of the target's main image: as
    /// the kernel recorded it when it mapped the image, or else as the
    /// image's header in the target's memory says (the target could have
    /// changed those bytes, which are therefore checked as untrusted).
    /// `None` if neither can be read.
    fn image_characteristics(&self, target_is_32_bit: bool) -> Option<u16> {
        self.information::<SectionImageInformation>()
            .map(|image| image.image_characteristics)
            .or_else(|| self.characteristics_in_memory(target_is_32_bit))
    }

    /// The characteristics in the file header of the image that the
    /// target's PEB names as its own.
    fn characteristics_in_memory(&self, target_is_32_bit: bool) -> Option<u16> {
        let basic = self.information::<ProcessBasicInformation>()?;
        if basic.peb_base_address == 0 {
            return None;
        }
        // The PEB described is of this process's width: for a WoW64 target
        // of a 64-bit caller the 64-bit one, which names the same image.
        let field = basic
            .peb_base_address
            .checked_add(PEB_IMAGE_BASE_ADDRESS_OFFSET)?;
        let mut word = [0u8; size_of::<usize>()];
        self.read(field, &mut word).ok()?;
        let image = usize::from_ne_bytes(word);
        if image == 0 || image % IMAGE_ALIGNMENT != 0 {
            return None;
        }
        let mut dos_header = [0u8; DOS_HEADER_LEN];
        self.read(image, &mut dos_header).ok()?;
        let offset = nt_headers_offset(&dos_header)?;
        let mut nt_headers = [0u8; NT_HEADERS_PREFIX_LEN];
        self.read(image.checked_add(offset)?, &mut nt_headers)
            .ok()?;
        file_header_characteristics(&nt_headers, target_is_32_bit)
    }

    /// What `NtQueryInformationProcess` says about the target in `T`;
    /// `None` if it fails or fills less than all of `T`.
    fn information<T: ProcessInformation>(&self) -> Option<T> {
        let mut value = std::mem::MaybeUninit::<T>::zeroed();
        let length = size_of::<T>() as u32;
        let mut returned = 0u32;
        // SAFETY: the call writes at most `length` bytes, the size of
        // `value`, and `returned`; the handle has
        // `PROCESS_QUERY_INFORMATION`.
        let status = unsafe {
            NtQueryInformationProcess(
                self.handle,
                T::CLASS,
                value.as_mut_ptr().cast(),
                length,
                &mut returned,
            )
        };
        // SAFETY: `T` is plain data (the contract of `ProcessInformation`),
        // valid when all-zero as `value` began and with whatever bytes the
        // call wrote.
        (status >= 0 && returned == length).then(|| unsafe { value.assume_init() })
    }

    /// Whether the process has not exited (a handle keeps an exited
    /// process's object, not its memory).
    fn is_running(&self) -> bool {
        let mut code = 0u32;
        // SAFETY: `code` is writable; the handle has
        // `PROCESS_QUERY_INFORMATION`.
        let ok = unsafe { GetExitCodeProcess(self.handle, &mut code) };
        ok != 0 && code == STILL_ACTIVE as u32
    }

    /// The error for a failed call: the process exited, or `call` failed.
    fn failure(&self, call: &'static str, errno: Errno) -> ErrorKind {
        if self.is_running() {
            ErrorKind::Os { call, errno }
        } else {
            target(TargetProcessError::NotRunning)
        }
    }

    fn query(&self, address: usize) -> Option<MEMORY_BASIC_INFORMATION> {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: `VirtualQueryEx` only describes the other process's
        // address space, writing at most `size_of` bytes into `info`.
        let written = unsafe {
            VirtualQueryEx(
                self.handle,
                address as *const c_void,
                &mut info,
                std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        (written != 0).then_some(info)
    }

    /// Walks the target's address space with `VirtualQueryEx`, calling
    /// `visit` with each run of reserved regions, merged, as `read_maps`
    /// does for this process, up to the target's highest address (a
    /// WoW64 target has 64-bit regions above its 4 GiB, which it cannot
    /// use). Where the walk stops earlier, the rest up to that address is
    /// reported occupied.
    pub(crate) fn read_maps(
        &mut self,
        _buffer: &mut Vec<u8>,
        mut visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
    ) -> Result<(), Errno> {
        let entry = |start: usize, end: usize| MapsEntry::unnamed(start, end, Default::default());
        let top = self.highest_address;
        let mut address = super::lowest_mappable_address();
        let mut run: Option<(usize, usize)> = None;
        let mut walked = false;
        while address <= top {
            let Some(region) = self.query(address) else {
                break;
            };
            walked = true;
            let start = region.BaseAddress as usize;
            let end = start.saturating_add(region.RegionSize.max(1));
            if region.State != MEM_FREE {
                run = match run {
                    Some((run_start, run_end)) if run_end == start => Some((run_start, end)),
                    Some((run_start, run_end)) => {
                        if visit(&entry(run_start, run_end)).is_break() {
                            return Ok(());
                        }
                        Some((start, end))
                    }
                    None => Some((start, end)),
                };
            }
            if end <= address {
                break;
            }
            address = end;
        }
        if !walked {
            return Err(last_error());
        }
        if let Some((start, end)) = run
            && visit(&entry(start, end)).is_break()
        {
            return Ok(());
        }
        if address <= top {
            let _ = visit(&entry(address, top.saturating_add(1)));
        }
        Ok(())
    }

    /// Reserves and commits `len` bytes with `protection` at exactly
    /// `address` in the target. `Ok(Ok(true))` when mapped there,
    /// `Ok(Ok(false))` when placed elsewhere (given back),
    /// `Ok(Err(error))` when refused (`ERROR_INVALID_ADDRESS` if anything
    /// is reserved there).
    pub(crate) fn map_fixed_noreplace(
        &mut self,
        address: usize,
        len: usize,
        protection: Protection,
    ) -> Result<Result<bool, Errno>, ErrorKind> {
        if len == 0
            || address
                .checked_add(len - 1)
                .is_none_or(|last| last > self.highest_address)
        {
            // Not asked of the system, which may grant it (Wine does, above
            // 2 GiB of a 32-bit target without large-address awareness):
            // beyond the target's top is no place for the target's memory.
            return Ok(Err(ERROR_INVALID_ADDRESS as Errno));
        }
        // SAFETY: an exact-address reservation fails rather than touch an
        // existing one, so nothing the target uses is affected.
        let result = unsafe {
            VirtualAllocEx(
                self.handle,
                address as *const c_void,
                len,
                MEM_RESERVE | MEM_COMMIT,
                page_flags(protection),
            )
        };
        if result.is_null() {
            let error = last_error();
            if !self.is_running() {
                return Err(target(TargetProcessError::NotRunning));
            }
            return Ok(Err(error));
        }
        if result as usize == address {
            return Ok(Ok(true));
        }
        // SAFETY: the reservation was just made for us; nobody knows it.
        unsafe { VirtualFreeEx(self.handle, result, 0, MEM_RELEASE) };
        Ok(Ok(false))
    }

    /// Changes the rights of `[address, address + len)` in the target;
    /// `Ok(Err(error))` when the system refused.
    pub(crate) fn protect(
        &mut self,
        address: usize,
        len: usize,
        protection: Protection,
    ) -> Result<Result<(), Errno>, ErrorKind> {
        let mut former = 0u32;
        // SAFETY: changes the rights of pages this library mapped in the
        // target for the caller, who owns them; `former` is writable.
        let ok = unsafe {
            VirtualProtectEx(
                self.handle,
                address as *const c_void,
                len,
                page_flags(protection),
                &mut former,
            )
        };
        if ok != 0 {
            return Ok(Ok(()));
        }
        let error = last_error();
        if !self.is_running() {
            return Err(target(TargetProcessError::NotRunning));
        }
        Ok(Err(error))
    }

    /// Releases the reservation at `address` in the target.
    pub(crate) fn unmap(&mut self, address: usize, _len: usize) -> Result<(), ErrorKind> {
        // SAFETY: releases a reservation this library made in the target;
        // the caller owns it.
        let ok = unsafe { VirtualFreeEx(self.handle, address as *mut c_void, 0, MEM_RELEASE) };
        if ok == 0 {
            return Err(self.failure("VirtualFreeEx", last_error()));
        }
        Ok(())
    }

    /// Copies `bytes` into the target at `address`.
    pub(crate) fn write(&self, address: usize, bytes: &[u8]) -> Result<(), ErrorKind> {
        let mut written = 0usize;
        // SAFETY: `bytes` is readable for its length; the destination is
        // in the other process and checked by the system.
        let ok = unsafe {
            WriteProcessMemory(
                self.handle,
                address as *const c_void,
                bytes.as_ptr().cast(),
                bytes.len(),
                &mut written,
            )
        };
        self.transferred("WriteProcessMemory", ok, written, bytes.len())
    }

    /// Copies `out.len()` bytes of the target at `address` into `out`.
    pub(crate) fn read(&self, address: usize, out: &mut [u8]) -> Result<(), ErrorKind> {
        let mut read = 0usize;
        // SAFETY: `out` is writable for its length; the source is in the
        // other process and checked by the system.
        let ok = unsafe {
            ReadProcessMemory(
                self.handle,
                address as *const c_void,
                out.as_mut_ptr().cast(),
                out.len(),
                &mut read,
            )
        };
        self.transferred("ReadProcessMemory", ok, read, out.len())
    }

    fn transferred(
        &self,
        call: &'static str,
        ok: i32,
        done: usize,
        len: usize,
    ) -> Result<(), ErrorKind> {
        if ok == 0 {
            Err(self.failure(call, last_error()))
        } else if done != len {
            Err(self.failure(call, ERROR_PARTIAL_COPY as Errno))
        } else {
            Ok(())
        }
    }
}

impl Drop for RemoteProcess {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and closed exactly once.
        unsafe { CloseHandle(self.handle) };
    }
}

/// Whether `process` is a 32-bit process on 64-bit Windows; `None` if the
/// call fails.
fn is_wow64(process: HANDLE) -> Option<bool> {
    let mut wow64 = 0;
    // SAFETY: `wow64` is writable; `process` is this process's
    // pseudo-handle or a handle with `PROCESS_QUERY_INFORMATION`.
    let ok = unsafe { IsWow64Process(process, &mut wow64) };
    (ok != 0).then_some(wow64 != 0)
}

/// The highest address of a 32-bit process without large-address
/// awareness (and of a 64-bit one, whose image clears the flag): 2 GiB
/// less the 64 KiB the system keeps below it.
const TOP_OF_2_GIB: usize = 0x7FFE_FFFF;

/// The highest address of a large-address-aware 32-bit process on 64-bit
/// Windows: 4 GiB less 64 KiB.
const TOP_OF_4_GIB: usize = 0xFFFE_FFFF;

/// The highest address of a large-address-aware 64-bit process on Windows
/// 7 and 8 (8 TiB less 64 KiB); later versions give 128 TiB less 64 KiB.
#[cfg(target_pointer_width = "64")]
const TOP_OF_8_TIB: usize = 0x7FF_FFFE_FFFF;

/// The highest address a Windows process can map, from its width and
/// whether its main image is large-address-aware (`None` if that could
/// not be read).
///
/// `own_top` is this process's: for a 64-bit target of a 64-bit caller it
/// is the system's limit if this process is large-address-aware itself;
/// it also stands for the limit of a large-address-aware 32-bit target on
/// 32-bit Windows, where that depends on the boot configuration (3 GiB
/// with `increaseuserva`), and this process knows it only if it is
/// large-address-aware too. A 32-bit target whose image could not be read
/// gets 2 GiB: granting it more is how the wrong addresses would come.
fn highest_address_of(
    target_is_32_bit: bool,
    large_address_aware: Option<bool>,
    system_is_64_bit: bool,
    own_top: usize,
) -> usize {
    if target_is_32_bit {
        let aware = large_address_aware == Some(true);
        return match (system_is_64_bit, aware) {
            (true, true) => TOP_OF_4_GIB,
            (false, true) => own_top,
            (_, false) => own_top.min(TOP_OF_2_GIB),
        };
    }
    if large_address_aware == Some(false) {
        return TOP_OF_2_GIB;
    }
    #[cfg(target_pointer_width = "64")]
    {
        own_top.max(TOP_OF_8_TIB)
    }
    // A 32-bit caller names no address above 4 GiB.
    #[cfg(not(target_pointer_width = "64"))]
    {
        TOP_OF_4_GIB
    }
}

/// A `#[repr(C)]` structure that `NtQueryInformationProcess` fills for its
/// `CLASS`.
///
/// # Safety
///
/// Only for structures of integers (no references, no enums, no `bool`),
/// valid with any bytes, all-zero included.
unsafe trait ProcessInformation: Sized {
    /// The `PROCESSINFOCLASS` that fills it.
    const CLASS: i32;
}

/// `PROCESS_BASIC_INFORMATION`, with its pointers as addresses.
#[repr(C)]
#[allow(dead_code)] // every field is part of the layout; one is read
struct ProcessBasicInformation {
    exit_status: NTSTATUS,
    peb_base_address: usize,
    affinity_mask: usize,
    base_priority: i32,
    unique_process_id: usize,
    inherited_from_unique_process_id: usize,
}

// SAFETY: integers only.
unsafe impl ProcessInformation for ProcessBasicInformation {
    /// `ProcessBasicInformation`.
    const CLASS: i32 = 0;
}

/// `SECTION_IMAGE_INFORMATION`: what the kernel recorded of the process's
/// main image when it mapped it (64 bytes in a 64-bit process, 48 in a
/// 32-bit one).
#[repr(C)]
#[allow(dead_code)] // every field is part of the layout; one is read
struct SectionImageInformation {
    transfer_address: usize,
    zero_bits: u32,
    maximum_stack_size: usize,
    committed_stack_size: usize,
    subsystem_type: u32,
    subsystem_version: u32,
    operating_system_version: u32,
    /// `IMAGE_FILE_HEADER.Characteristics`.
    image_characteristics: u16,
    dll_characteristics: u16,
    machine: u16,
    image_contains_code: u8,
    image_flags: u8,
    loader_flags: u32,
    image_file_size: u32,
    check_sum: u32,
}

const _: () = assert!(size_of::<SectionImageInformation>() == 4 * size_of::<usize>() + 32);

// SAFETY: integers only.
unsafe impl ProcessInformation for SectionImageInformation {
    /// `ProcessImageInformation`.
    const CLASS: i32 = 37;
}

/// Where `PEB.ImageBaseAddress` is: after four one-byte fields (padded to
/// a pointer) and the `Mutant` handle.
const PEB_IMAGE_BASE_ADDRESS_OFFSET: usize = 2 * size_of::<usize>();

/// Images are mapped at a multiple of the allocation granularity.
const IMAGE_ALIGNMENT: usize = 0x1_0000;

/// `IMAGE_DOS_HEADER`, whose last field is `e_lfanew`.
const DOS_HEADER_LEN: usize = 64;

/// The `PE\0\0` signature and the `IMAGE_FILE_HEADER` after it.
const NT_HEADERS_PREFIX_LEN: usize = 4 + 20;

/// Beyond this `e_lfanew` the Windows loader takes no image for one
/// (256 MiB).
const MAX_NT_HEADERS_OFFSET: u32 = 256 << 20;

/// Where the NT headers start in an image whose first bytes are
/// `dos_header` (`e_lfanew`); `None` unless it is a DOS header with an
/// offset a loader would accept.
fn nt_headers_offset(dos_header: &[u8; DOS_HEADER_LEN]) -> Option<usize> {
    if dos_header[..2] != *b"MZ" {
        return None;
    }
    // `e_lfanew` is the header's last field, at 0x3C.
    let offset = u32::from_le_bytes(*dos_header.last_chunk::<4>()?);
    (offset < MAX_NT_HEADERS_OFFSET).then_some(offset as usize)
}

/// `Characteristics` of the file header in `nt_headers` (the signature
/// and file header); `None` unless the signature is right and the machine
/// is of the target's width.
fn file_header_characteristics(
    nt_headers: &[u8; NT_HEADERS_PREFIX_LEN],
    target_is_32_bit: bool,
) -> Option<u16> {
    if nt_headers[..4] != *b"PE\0\0" {
        return None;
    }
    let machine = u16::from_le_bytes([nt_headers[4], nt_headers[5]]);
    let machine_is_32_bit = matches!(machine, IMAGE_FILE_MACHINE_I386 | IMAGE_FILE_MACHINE_ARMNT);
    // `Characteristics` is the file header's last field, 18 bytes in.
    (machine_is_32_bit == target_is_32_bit)
        .then(|| u16::from_le_bytes([nt_headers[4 + 18], nt_headers[4 + 19]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first bytes of an image: a DOS header pointing at `offset`.
    fn dos_header(offset: u32) -> [u8; DOS_HEADER_LEN] {
        let mut header = [0u8; DOS_HEADER_LEN];
        header[..2].copy_from_slice(b"MZ");
        header[60..].copy_from_slice(&offset.to_le_bytes());
        header
    }

    fn nt_headers(machine: u16, characteristics: u16) -> [u8; NT_HEADERS_PREFIX_LEN] {
        let mut headers = [0u8; NT_HEADERS_PREFIX_LEN];
        headers[..4].copy_from_slice(b"PE\0\0");
        headers[4..6].copy_from_slice(&machine.to_le_bytes());
        headers[22..].copy_from_slice(&characteristics.to_le_bytes());
        headers
    }

    #[test]
    fn the_nt_headers_offset_is_read_only_from_a_dos_header_within_bounds() {
        assert_eq!(nt_headers_offset(&dos_header(0x80)), Some(0x80));
        assert_eq!(
            nt_headers_offset(&dos_header(MAX_NT_HEADERS_OFFSET - 1)),
            Some(MAX_NT_HEADERS_OFFSET as usize - 1)
        );
        assert_eq!(nt_headers_offset(&dos_header(MAX_NT_HEADERS_OFFSET)), None);
        assert_eq!(nt_headers_offset(&dos_header(u32::MAX)), None);
        let mut not_dos = dos_header(0x80);
        not_dos[1] = b'X';
        assert_eq!(nt_headers_offset(&not_dos), None);
        assert_eq!(nt_headers_offset(&[0u8; DOS_HEADER_LEN]), None);
    }

    #[test]
    fn characteristics_come_from_a_file_header_of_the_targets_width() {
        const LAA_EXE: u16 = 0x0122;
        assert_eq!(
            file_header_characteristics(&nt_headers(IMAGE_FILE_MACHINE_I386, LAA_EXE), true),
            Some(LAA_EXE)
        );
        assert_eq!(
            file_header_characteristics(&nt_headers(IMAGE_FILE_MACHINE_ARMNT, 0x0102), true),
            Some(0x0102)
        );
        assert_eq!(
            file_header_characteristics(&nt_headers(0x8664, LAA_EXE), false),
            Some(LAA_EXE)
        );
        // Another width's image is not the target's main image.
        assert_eq!(
            file_header_characteristics(&nt_headers(0x8664, LAA_EXE), true),
            None
        );
        assert_eq!(
            file_header_characteristics(&nt_headers(IMAGE_FILE_MACHINE_I386, LAA_EXE), false),
            None
        );
        let mut bad_signature = nt_headers(IMAGE_FILE_MACHINE_I386, LAA_EXE);
        bad_signature[2] = b'X';
        assert_eq!(file_header_characteristics(&bad_signature, true), None);
    }

    #[test]
    fn a_32_bit_target_has_its_own_top_whatever_the_caller_has() {
        for own_top in [0x7FFE_FFFF, 0xBFFE_FFFF, 0xFFFE_FFFF, usize::MAX >> 1] {
            assert_eq!(
                highest_address_of(true, Some(true), true, own_top),
                0xFFFE_FFFF
            );
            assert_eq!(
                highest_address_of(true, Some(false), true, own_top),
                0x7FFE_FFFF
            );
            // Unreadable: the flag is not assumed.
            assert_eq!(highest_address_of(true, None, true, own_top), 0x7FFE_FFFF);
        }
        // 32-bit Windows booted with a 3 GiB user space, seen from a
        // large-address-aware caller, and from one without the flag.
        assert_eq!(
            highest_address_of(true, Some(true), false, 0xBFFE_FFFF),
            0xBFFE_FFFF
        );
        assert_eq!(
            highest_address_of(true, Some(false), false, 0xBFFE_FFFF),
            0x7FFE_FFFF
        );
        assert_eq!(
            highest_address_of(true, Some(true), false, 0x7FFE_FFFF),
            0x7FFE_FFFF
        );
    }

    #[test]
    fn a_64_bit_target_without_the_flag_has_2_gib() {
        assert_eq!(
            highest_address_of(
                false,
                Some(false),
                true,
                super::super::highest_user_address()
            ),
            0x7FFE_FFFF
        );
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_64_bit_target_has_the_systems_top() {
        let top = 0x7FFF_FFFE_FFFF;
        assert_eq!(highest_address_of(false, Some(true), true, top), top);
        assert_eq!(highest_address_of(false, None, true, top), top);
        // A caller without the flag sees 2 GiB of its own, not the system's.
        assert_eq!(
            highest_address_of(false, Some(true), true, 0x7FFE_FFFF),
            TOP_OF_8_TIB
        );
    }

    /// Both ways of reading the image's characteristics agree on
    /// `process`, and say whether it is large-address-aware.
    fn both_readings_agree(process: &RemoteProcess, target_is_32_bit: bool) -> u16 {
        let from_kernel = process
            .information::<SectionImageInformation>()
            .map(|image| image.image_characteristics);
        let from_memory = process.characteristics_in_memory(target_is_32_bit);
        assert!(from_kernel.is_some(), "ProcessImageInformation failed");
        assert_eq!(from_kernel, from_memory);
        from_kernel.unwrap_or_default()
    }

    #[test]
    fn this_processs_image_reads_the_same_from_the_kernel_and_from_memory() {
        let process = RemoteProcess::open(std::process::id()).unwrap();
        let characteristics = both_readings_agree(&process, cfg!(target_pointer_width = "32"));
        // An executable image.
        assert_ne!(characteristics & 0x0002, 0, "{characteristics:#x}");
        let aware = characteristics & IMAGE_FILE_LARGE_ADDRESS_AWARE != 0;
        assert_eq!(
            aware,
            super::super::highest_user_address() > 0x7FFF_FFFF,
            "{characteristics:#x}"
        );
        #[cfg(target_pointer_width = "64")]
        assert_eq!(
            process.highest_user_address(),
            super::super::highest_user_address().max(TOP_OF_8_TIB)
        );
    }

    /// The 32-bit programs of `tests/wow64/` (see `tests/target_process.rs`),
    /// opened from here: both readings agree, and give the top the flag
    /// gives. Skipped (saying so) when the programs were not built.
    #[test]
    fn a_32_bit_targets_image_reads_the_same_both_ways() {
        for (variable, aware) in [
            ("MEMORY_BUFFERS_WOW64_TARGET_LAA", true),
            ("MEMORY_BUFFERS_WOW64_TARGET_NO_LAA", false),
        ] {
            let Some(path) = std::env::var_os(variable).filter(|path| !path.is_empty()) else {
                eprintln!("skipped, {variable} is not set (.ci/windows builds the program)");
                continue;
            };
            let mut child = std::process::Command::new(&path)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|error| panic!("start {path:?}: {error}"));
            // Once it speaks, its PEB is filled in (Wine fills it from inside
            // the new process).
            let mut ready = String::new();
            let stdout = child.stdout.take().unwrap();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready).unwrap();
            assert!(ready.starts_with("ready "), "{path:?} said {ready:?}");
            let process = RemoteProcess::open(child.id()).unwrap();
            let characteristics = both_readings_agree(&process, true);
            assert_eq!(
                characteristics & IMAGE_FILE_LARGE_ADDRESS_AWARE != 0,
                aware,
                "{path:?}: {characteristics:#x}"
            );
            if cfg!(target_pointer_width = "64") {
                assert_eq!(
                    process.highest_user_address(),
                    if aware { 0xFFFE_FFFF } else { 0x7FFE_FFFF }
                );
            }
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}
