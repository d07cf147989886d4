//! Windows: another process's memory, through a process handle.
//!
//! Windows has the calls Linux lacks: `VirtualAllocEx` reserves at an
//! exact address of another process (failing, never replacing, when
//! anything is reserved there, as `VirtualAlloc` does for this one), and
//! `VirtualQueryEx` walks its address space the way `read_maps` in
//! `windows.rs` walks this one's.
//!
//! # References
//!
//! `OpenProcess` and "Process Security and Access Rights", `VirtualQueryEx`,
//! `VirtualAllocEx`, `VirtualFreeEx`, `ReadProcessMemory`,
//! `WriteProcessMemory`, `GetExitCodeProcess` in the Win32 API documentation.

use super::{Errno, Protection};
use crate::error::ErrorKind;
use crate::maps::MapsEntry;
use crate::target_process::TargetProcessError;
use std::ffi::c_void;
use std::ops::ControlFlow;
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, ERROR_PARTIAL_COPY, GetLastError,
    HANDLE, STILL_ACTIVE,
};
use windows_sys::Win32::System::Diagnostics::Debug::{ReadProcessMemory, WriteProcessMemory};
use windows_sys::Win32::System::Memory::{
    MEM_COMMIT, MEM_FREE, MEM_RELEASE, MEM_RESERVE, MEMORY_BASIC_INFORMATION, PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE, PAGE_READWRITE, VirtualAllocEx, VirtualFreeEx, VirtualProtectEx,
    VirtualQueryEx,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, PROCESS_QUERY_INFORMATION, PROCESS_VM_OPERATION,
    PROCESS_VM_READ, PROCESS_VM_WRITE,
};

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
        let process = RemoteProcess { handle };
        if !process.is_running() {
            return Err(target(TargetProcessError::NotRunning));
        }
        Ok(process)
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
    /// does for this process. Where the walk stops (the top of the
    /// target's space: lower for a 32-bit target), the rest up to the
    /// highest user address is reported occupied.
    pub(crate) fn read_maps(
        &mut self,
        _buffer: &mut Vec<u8>,
        mut visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
    ) -> Result<(), Errno> {
        let entry = |start: usize, end: usize| MapsEntry {
            start,
            end,
            offset: 0,
            dev_major: 0,
            dev_minor: 0,
            inode: 0,
            access: crate::maps::Access::default(),
        };
        let top = super::highest_user_address();
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
