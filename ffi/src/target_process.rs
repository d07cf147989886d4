//! Reading and writing the bytes of a private allocation, wherever its
//! pages are: in this process, or in the process that
//! `MemoryBuffersAllocatorSettings::target_process_id` named, whose memory
//! cannot be reached through the address.

use crate::allocation::{ALLOCATIONS, MemoryBuffersPrivateAllocation, Pages};
use crate::status::*;
use crate::{readable, size_t, writable};

/// The bytes `[offset, offset + len)` of `pages`, as an address in the
/// process that holds them, or a [`MEMORY_BUFFERS_STATUS_DOES_NOT_FIT`]
/// failure if they reach past the end.
fn address_of(pages: &Pages, offset: size_t, len: size_t) -> Result<usize, Failure> {
    match offset.checked_add(len) {
        Some(end) if end <= pages.size() => Ok(pages.base_address() + offset),
        _ => Err(Failure::new(
            MEMORY_BUFFERS_STATUS_DOES_NOT_FIT,
            "the bytes reach past the end of the allocation",
        )),
    }
}

/// Writes the id of the process that holds the allocation's pages to
/// `*process_id` (this process's id for pages in this process).
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `process_id` is `NULL`;
/// [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`] or
/// [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] as for
/// `memory_buffers_private_allocation_base_address`.
///
/// # Safety
///
/// `process_id` must be `NULL` or valid for writing one aligned `uint32_t`.
/// `allocation` may be any value: it is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_private_allocation_process_id(
    allocation: *const MemoryBuffersPrivateAllocation,
    process_id: *mut u32,
) -> MemoryBuffersStatus {
    run("memory_buffers_private_allocation_process_id", || {
        let out = writable(process_id, "`process_id` is NULL")?;
        let handle = ALLOCATIONS.check_out(allocation)?;
        let id = match &handle.allocation {
            Pages::Local(_) => std::process::id(),
            Pages::Remote(pages) => pages.process_id(),
        };
        // SAFETY: `out` is non-null and valid for an aligned write (contract).
        unsafe { out.write(id) };
        Ok(())
    })
}

/// Copies `len` bytes from `bytes` to `offset` bytes into the allocation,
/// in whichever process its pages are (another process's through
/// `process_vm_writev` on Linux, `WriteProcessMemory` on Windows).
///
/// # Errors
///
/// - [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `bytes` is `NULL` and `len`
///   is not 0.
/// - [`MEMORY_BUFFERS_STATUS_DOES_NOT_FIT`] (nothing written) if the bytes
///   reach past the end of the allocation.
/// - [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`] or
///   [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] for a handle that is not live or
///   is in use.
/// - [`MEMORY_BUFFERS_STATUS_PROCESS_NOT_RUNNING`] if the process holding
///   the pages exited.
///
/// # Safety
///
/// `bytes` must be `NULL` or valid for reading `len` bytes. `allocation`
/// may be any value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_private_allocation_write(
    allocation: *const MemoryBuffersPrivateAllocation,
    offset: size_t,
    bytes: *const u8,
    len: size_t,
) -> MemoryBuffersStatus {
    run("memory_buffers_private_allocation_write", || {
        if len == 0 {
            return ALLOCATIONS.check_out(allocation).map(drop);
        }
        let source = readable(bytes, "`bytes` is NULL")?;
        // SAFETY: non-null and readable for `len` bytes (contract).
        let source = unsafe { std::slice::from_raw_parts(source.as_ptr(), len) };
        let handle = ALLOCATIONS.check_out(allocation)?;
        let address = address_of(&handle.allocation, offset, len)?;
        match &handle.allocation {
            Pages::Local(_) => {
                // SAFETY: `[address, address + len)` lies inside pages this
                // handle owns, mapped read/write while it is checked out
                // (so not released meanwhile); the caller's bytes cannot
                // overlap them unless the caller passed part of the
                // allocation itself, which `copy` allows.
                unsafe { std::ptr::copy(source.as_ptr(), address as *mut u8, len) };
            }
            Pages::Remote(pages) => pages.write(offset, source)?,
        }
        Ok(())
    })
}

/// Copies `len` bytes from `offset` bytes into the allocation to `out`, in
/// whichever process its pages are.
///
/// # Errors
///
/// As for [`memory_buffers_private_allocation_write`], with `out` for
/// `bytes`.
///
/// # Safety
///
/// `out` must be `NULL` or valid for writing `len` bytes. `allocation` may
/// be any value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_private_allocation_read(
    allocation: *const MemoryBuffersPrivateAllocation,
    offset: size_t,
    out: *mut u8,
    len: size_t,
) -> MemoryBuffersStatus {
    run("memory_buffers_private_allocation_read", || {
        if len == 0 {
            return ALLOCATIONS.check_out(allocation).map(drop);
        }
        let destination = writable(out, "`out` is NULL")?;
        let handle = ALLOCATIONS.check_out(allocation)?;
        let address = address_of(&handle.allocation, offset, len)?;
        match &handle.allocation {
            Pages::Local(_) => {
                // SAFETY: the source lies inside pages this handle owns
                // (see the write above); `out` is writable for `len` bytes
                // (contract).
                unsafe { std::ptr::copy(address as *const u8, destination.as_ptr(), len) };
            }
            Pages::Remote(pages) => {
                // SAFETY: `out` is non-null and writable for `len` bytes.
                let destination =
                    unsafe { std::slice::from_raw_parts_mut(destination.as_ptr(), len) };
                pages.read(offset, destination)?;
            }
        }
        Ok(())
    })
}
