//! Windows: the named section, `VirtualQueryEx` and `ReadProcessMemory`.
//!
//! The process is opened with `PROCESS_VM_READ | PROCESS_QUERY_INFORMATION`
//! only. Its locator is found through the named section
//! `/Reloaded.Memory.Buffers.MemoryBuffer, PID <pid>`, opened read-only:
//! our own view gives *this address*, which is trusted only once
//! `VirtualQueryEx` shows a committed `MEM_MAPPED` view starting there in
//! the process, and the locator page copied from that address with
//! `ReadProcessMemory` equals the page in our view (the library proves the
//! same with a probe write; the inspector writes nothing, so it compares
//! what it reads, a few times if the page changes under it). Nothing of
//! the other process is dereferenced here.
//!
//! A 32-bit process (WOW64, as `IsWow64Process` tells) has a 32-bit locator
//! layout and a space of 2 GiB, or 4 GiB if its program is
//! large-address-aware, which its `.exe` file's PE header says.

#![allow(unsafe_code)]

use super::FoundLocator;
use crate::failure::{Failure, ReadFailure};
use crate::free_ranges::Space;
use crate::width::{self, Width};
use memory_buffers::internals::layout::LOCATOR_SIZE;
use memory_buffers::internals::{self};
use std::ffi::{OsString, c_void};
use std::io::{self, Read};
use std::os::windows::ffi::OsStringExt;
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_INVALID_ADDRESS,
    ERROR_INVALID_PARAMETER, ERROR_NOACCESS, ERROR_PARTIAL_COPY, GetLastError, HANDLE,
};
use windows_sys::Win32::System::Diagnostics::Debug::ReadProcessMemory;
use windows_sys::Win32::System::Memory::{
    FILE_MAP_READ, MEM_COMMIT, MEM_FREE, MEM_MAPPED, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    VirtualQueryEx,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetExitCodeProcess, IsWow64Process, OpenProcess, PROCESS_NAME_WIN32,
    PROCESS_QUERY_INFORMATION, PROCESS_VM_READ, QueryFullProcessImageNameW,
};
use windows_sys::core::BOOL;

/// `STILL_ACTIVE`: the exit code of a process that has not exited.
const STILL_ACTIVE: u32 = 259;

/// Times the page in our view and the page read from the process are
/// compared before they are judged different: the process may be changing
/// its locator between the two reads.
const COMPARISONS: usize = 5;

fn last_error() -> u32 {
    // SAFETY: `GetLastError` has no preconditions.
    unsafe { GetLastError() }
}

fn os_failure(what: String, code: u32) -> Failure {
    Failure::Os {
        what,
        error: io::Error::from_raw_os_error(code as i32),
    }
}

/// An open handle, closed on drop.
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by us and is closed once, here; a
        // failure to close leaves nothing to do.
        let _ = unsafe { CloseHandle(self.0) };
    }
}

/// A read-only view of a section in this process, unmapped on drop.
struct View(*mut c_void);

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: the view was mapped by us and is unmapped once, here.
        let _ = unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: self.0 }) };
    }
}

/// One region, as `VirtualQuery(Ex)` describes it.
struct Region {
    start: usize,
    len: usize,
    allocation_base: usize,
    state: u32,
    kind: u32,
}

fn region_of(info: &MEMORY_BASIC_INFORMATION) -> Region {
    Region {
        start: info.BaseAddress as usize,
        len: info.RegionSize,
        allocation_base: info.AllocationBase as usize,
        state: info.State,
        kind: info.Type,
    }
}

/// A process being inspected.
pub(crate) struct Process {
    pid: u32,
    handle: Handle,
}

impl Process {
    pub(crate) fn open(pid: u32) -> Result<Process, Failure> {
        // SAFETY: plain call; the returned handle is owned by `Handle`.
        let raw = unsafe { OpenProcess(PROCESS_VM_READ | PROCESS_QUERY_INFORMATION, 0, pid) };
        if raw.is_null() {
            return Err(match last_error() {
                ERROR_INVALID_PARAMETER => Failure::NoSuchProcess { pid },
                ERROR_ACCESS_DENIED => Failure::PermissionDenied {
                    pid,
                    what: "open (PROCESS_VM_READ | PROCESS_QUERY_INFORMATION)".into(),
                },
                code => os_failure(format!("opening process {pid}"), code),
            });
        }
        let process = Process {
            pid,
            handle: Handle(raw),
        };
        if process.has_exited() {
            return Err(Failure::NoSuchProcess { pid });
        }
        Ok(process)
    }

    /// Whether the process has exited (its handle keeps the id alive).
    fn has_exited(&self) -> bool {
        let mut code = 0u32;
        // SAFETY: the handle is a live process handle with query rights,
        // and `code` is writable.
        unsafe { GetExitCodeProcess(self.handle.0, &mut code) != 0 && code != STILL_ACTIVE }
    }

    /// The process's pointer width, from `IsWow64Process` of it and of us.
    fn width(&self) -> Result<Width, Failure> {
        let theirs = is_wow64(self.handle.0).ok_or_else(|| {
            os_failure(
                format!(
                    "asking whether process {} is 32-bit (IsWow64Process)",
                    self.pid
                ),
                last_error(),
            )
        })?;
        Ok(width::from_wow64(
            Width::NATIVE,
            inspector_is_wow64(),
            theirs,
        ))
    }

    /// Whether the process's program is large-address-aware, from its PE
    /// header; `None` if its file cannot be read.
    fn is_large_address_aware(&self) -> Option<bool> {
        let mut name = vec![0u16; 32768];
        let mut len = name.len() as u32;
        // SAFETY: the handle has PROCESS_QUERY_INFORMATION; `name` is
        // writable for `len` UTF-16 units, which the call writes at most.
        let ok = unsafe {
            QueryFullProcessImageNameW(
                self.handle.0,
                PROCESS_NAME_WIN32,
                name.as_mut_ptr(),
                &mut len,
            )
        };
        if ok == 0 {
            return None;
        }
        let path = OsString::from_wide(name.get(..len as usize)?);
        let mut image = Vec::with_capacity(4096);
        std::fs::File::open(path)
            .and_then(|file| file.take(4096).read_to_end(&mut image))
            .ok()?;
        width::pe_is_large_address_aware(&image)
    }

    pub(crate) fn find_locator(&self) -> Result<FoundLocator, Failure> {
        let pid = self.pid;
        let width = self.width()?;
        if !width.is_readable_here() {
            return Err(Failure::WiderProcess { pid });
        }
        let layout = width.layout();
        let name = internals::rendezvous_section_name(pid);
        let invalid = |why: String| Failure::InvalidLocator {
            pid,
            why: format!("the section {name:?}: {why}"),
        };
        let wide: Vec<u16> = name.encode_utf16().chain(std::iter::once(0)).collect();
        // SAFETY: `wide` is a NUL-terminated UTF-16 string that outlives the
        // call; the handle is owned by `Handle`.
        let raw = unsafe { OpenFileMappingW(FILE_MAP_READ, 0, wide.as_ptr()) };
        if raw.is_null() {
            return Err(match last_error() {
                ERROR_FILE_NOT_FOUND => Failure::NoLocator {
                    pid,
                    why: format!(
                        "there is no section {name:?} (the process has not asked for a \
                         shared buffer, uses a private locator, or runs in another session)"
                    ),
                },
                ERROR_ACCESS_DENIED => Failure::PermissionDenied {
                    pid,
                    what: format!("open the section {name:?}"),
                },
                code => os_failure(format!("opening the section {name:?}"), code),
            });
        }
        let section = Handle(raw);
        // SAFETY: a read-only view of the whole section; unmapped by `View`.
        let mapped = unsafe { MapViewOfFile(section.0, FILE_MAP_READ, 0, 0, 0) };
        if mapped.Value.is_null() {
            return Err(os_failure(
                format!("mapping the section {name:?}"),
                last_error(),
            ));
        }
        let view = View(mapped.Value);
        let view_len = self_region(view.0 as usize).map_or(0, |region| region.len);
        let expected = LOCATOR_SIZE.max(memory_buffers::allocation_granularity());
        if view_len != expected {
            return Err(invalid(format!(
                "it is {view_len} bytes long, not {expected}"
            )));
        }
        let ours = |out: &mut [u8]| {
            // SAFETY: the view is mapped readable for `view_len >=
            // LOCATOR_SIZE` bytes until `view` drops, after this closure's
            // last use; volatile, since the other process may write it.
            for (offset, byte) in out.iter_mut().enumerate() {
                *byte = unsafe { std::ptr::read_volatile((view.0 as *const u8).add(offset)) };
            }
        };
        let mut page = vec![0u8; LOCATOR_SIZE];
        ours(&mut page);
        let mut word = [0u8; 8];
        word[..layout.pointer]
            .copy_from_slice(&page[layout.this_address..layout.this_address + layout.pointer]);
        // Fits: the process is no wider than we are.
        let this_address = usize::try_from(u64::from_le_bytes(word)).unwrap_or(0);
        if this_address == 0 || !this_address.is_multiple_of(expected) {
            return Err(invalid(format!(
                "its \"this address\" {this_address:#x} is not a view address"
            )));
        }
        match self.query(this_address) {
            Some(region)
                if region.start == this_address
                    && region.allocation_base == this_address
                    && region.state == MEM_COMMIT
                    && region.kind == MEM_MAPPED
                    && region.len >= LOCATOR_SIZE => {}
            _ => {
                return Err(invalid(format!(
                    "its \"this address\" {this_address:#x} is not the start of a view \
                     of a section in the process"
                )));
            }
        }
        let mut theirs = vec![0u8; LOCATOR_SIZE];
        for _ in 0..COMPARISONS {
            self.read(this_address, &mut theirs)
                .map_err(|failure| failure.into_failure(pid, "the locator", this_address))?;
            ours(&mut page);
            if theirs == page {
                return Ok(FoundLocator {
                    address: this_address,
                    rendezvous: name,
                    width,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Err(invalid(format!(
            "the memory at its \"this address\" {this_address:#x} is not the section's \
             page"
        )))
    }

    /// What `VirtualQueryEx` says about the region containing `address`.
    fn query(&self, address: usize) -> Option<Region> {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: the handle has PROCESS_QUERY_INFORMATION; the call only
        // writes at most `size_of` bytes into `info`.
        let written = unsafe {
            VirtualQueryEx(
                self.handle.0,
                address as *const c_void,
                &mut info,
                size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        (written != 0).then(|| region_of(&info))
    }

    pub(crate) fn read(&self, address: usize, out: &mut [u8]) -> Result<(), ReadFailure> {
        let mut read = 0usize;
        // SAFETY: `out` is writable for its length; the source is an
        // address in the other process, which the system checks
        // (unreadable memory is an error, not a fault).
        let ok = unsafe {
            ReadProcessMemory(
                self.handle.0,
                address as *const c_void,
                out.as_mut_ptr().cast(),
                out.len(),
                &mut read,
            )
        };
        if ok == 0 {
            let code = last_error();
            if self.has_exited() {
                return Err(ReadFailure::Gone);
            }
            return Err(match code {
                // Windows says ERROR_PARTIAL_COPY; Wine ERROR_NOACCESS.
                ERROR_PARTIAL_COPY | ERROR_NOACCESS | ERROR_INVALID_ADDRESS => {
                    ReadFailure::Unmapped
                }
                ERROR_ACCESS_DENIED => ReadFailure::Denied,
                code => ReadFailure::Other(io::Error::from_raw_os_error(code as i32)),
            });
        }
        if read != out.len() {
            return Err(ReadFailure::Unmapped);
        }
        Ok(())
    }

    /// The regions `VirtualQueryEx` shows reserved or committed, up to the
    /// top of the process's `space` (a 64-bit inspector sees the 64-bit
    /// regions of a WOW64 process too, which it cannot use).
    pub(crate) fn mapped_ranges(&self, space: Space) -> Result<Vec<(usize, usize)>, Failure> {
        let mut ranges = Vec::new();
        let mut address = 0usize;
        loop {
            let Some(region) = self.query(address) else {
                // Beyond what the system offers: nothing may go there.
                ranges.push((address, space.highest.saturating_add(1)));
                break;
            };
            let end = region.start.saturating_add(region.len.max(1));
            if region.state != MEM_FREE {
                ranges.push((region.start, end));
            }
            if end <= address || end > space.highest {
                break;
            }
            address = end;
        }
        if ranges.is_empty() {
            return Err(Failure::PermissionDenied {
                pid: self.pid,
                what: "query the memory (VirtualQueryEx)".into(),
            });
        }
        Ok(ranges)
    }

    /// Its space, as its own `GetSystemInfo` reports it: the granularity
    /// and lowest address are the system's, the top depends on its width
    /// and, for a 32-bit process, on whether it is large-address-aware
    /// (assumed not if its program cannot be read: its space is then shown
    /// smaller, never larger, than it is).
    pub(crate) fn space(&self, width: Width) -> Space {
        let highest = match width {
            // Only a 64-bit inspector gets here with a 64-bit process.
            Width::Bits64 => memory_buffers::highest_user_address(),
            Width::Bits32 => width::highest_address_of_32_bit_windows_process(
                self.is_large_address_aware().unwrap_or(false),
                Width::NATIVE == Width::Bits64 || inspector_is_wow64(),
                memory_buffers::highest_user_address(),
            ),
        };
        Space {
            granularity: memory_buffers::allocation_granularity(),
            lowest: internals::lowest_mappable_address(),
            highest,
        }
    }
}

/// `IsWow64Process` of `process`; `None` if the call fails.
fn is_wow64(process: HANDLE) -> Option<bool> {
    let mut wow64: BOOL = 0;
    // SAFETY: `process` is a live process handle with query rights (or our
    // own pseudo-handle), and `wow64` is writable.
    let ok = unsafe { IsWow64Process(process, &mut wow64) };
    (ok != 0).then_some(wow64 != 0)
}

/// Whether the inspector itself runs under WOW64 (a 32-bit program on a
/// 64-bit system).
fn inspector_is_wow64() -> bool {
    // SAFETY: `GetCurrentProcess` has no preconditions; its pseudo-handle
    // needs no closing.
    is_wow64(unsafe { GetCurrentProcess() }).unwrap_or(false)
}

/// What `VirtualQuery` says about a region of this process.
fn self_region(address: usize) -> Option<Region> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: the call only describes our address space and writes at most
    // `size_of` bytes into `info`.
    let written = unsafe {
        VirtualQuery(
            address as *const c_void,
            &mut info,
            size_of::<MEMORY_BASIC_INFORMATION>(),
        )
    };
    (written != 0).then(|| region_of(&info))
}
