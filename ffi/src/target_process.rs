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
            #[cfg(feature = "external-processes")]
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
/// `bytes` must be `NULL` or valid for reading `len` bytes, and not
/// overlap the allocation's own pages. `allocation` may be any value.
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
        let mut handle = ALLOCATIONS.check_out(allocation)?;
        address_of(&handle.allocation, offset, len)?;
        match &mut handle.allocation {
            Pages::Local(pages) => pages.write(offset, source)?,
            #[cfg(feature = "external-processes")]
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
/// `out` must be `NULL` or valid for writing `len` bytes, and not overlap
/// the allocation's own pages. `allocation` may be any value.
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
        let start = address_of(&handle.allocation, offset, len)? - handle.allocation.base_address();
        // SAFETY: `out` is non-null and writable for `len` bytes (contract).
        let destination = unsafe { std::slice::from_raw_parts_mut(destination.as_ptr(), len) };
        match &handle.allocation {
            Pages::Local(pages) => {
                destination.copy_from_slice(&pages.as_slice()[start..start + len])
            }
            #[cfg(feature = "external-processes")]
            Pages::Remote(pages) => pages.read(offset, destination)?,
        }
        Ok(())
    })
}
