//! Private allocations: pages inside a range, owned by the caller.

use crate::registry::HandleRegistry;
use crate::settings::MemoryBuffersAllocatorSettings;
use crate::status::*;
use crate::{readable, size_t, take_handle, writable};
use memory_buffers::BufferAllocatorSettings;
use memory_buffers::{Buffers, PrivateAllocation};
#[cfg(feature = "external-processes")]
use memory_buffers::{RemoteAllocation, TargetProcess};
use std::ptr::NonNull;

#[cfg(doc)]
use crate::{memory_buffers_private_allocation_read, memory_buffers_private_allocation_write};

/// Read/write/execute pages owned by the caller (opaque), in this process
/// or in another one.
///
/// Obtained from [`memory_buffers_allocate_private_memory`]; unmapped by
/// [`memory_buffers_release_private_allocation`], or kept for the life of
/// the process with [`memory_buffers_private_allocation_leak`].
pub struct MemoryBuffersPrivateAllocation {
    pub(crate) allocation: Pages,
}

/// Where the pages of an allocation are.
pub(crate) enum Pages {
    /// In this process.
    Local(PrivateAllocation),
    /// In the process `settings.target_process_id` named.
    #[cfg(feature = "external-processes")]
    Remote(RemoteAllocation),
}

impl Pages {
    pub(crate) fn base_address(&self) -> usize {
        match self {
            Pages::Local(pages) => pages.base_address(),
            #[cfg(feature = "external-processes")]
            Pages::Remote(pages) => pages.base_address(),
        }
    }

    pub(crate) fn size(&self) -> usize {
        match self {
            Pages::Local(pages) => pages.size(),
            #[cfg(feature = "external-processes")]
            Pages::Remote(pages) => pages.size(),
        }
    }

    fn leak(self) -> usize {
        match self {
            Pages::Local(pages) => pages.leak(),
            #[cfg(feature = "external-processes")]
            Pages::Remote(pages) => pages.leak(),
        }
    }
}

pub(crate) static ALLOCATIONS: HandleRegistry<MemoryBuffersPrivateAllocation> = HandleRegistry::new(
    "the allocation handle is not live (not from this copy of the library, or already released)",
    "the allocation handle is in use by another call",
);

/// Maps read/write/execute pages inside
/// `[settings->min_address, settings->max_address]`, as near
/// `settings->target` as possible (if it is 0, in the smallest
/// free hole that holds them), and
/// writes the handle that owns them to
/// `*allocation`. The size is rounded up to the allocation granularity.
///
/// The pages are mapped in this process when `settings->target_process_id`
/// is 0 or this process's id, and in that process otherwise (Linux: by
/// making it call `mmap` through ptrace, which needs the permissions of a
/// debugger; Windows: with `VirtualAllocEx`, which needs a handle with
/// `PROCESS_VM_OPERATION`, `PROCESS_VM_READ`, `PROCESS_VM_WRITE` and
/// `PROCESS_QUERY_INFORMATION`). Pages in another process are reached
/// through [`memory_buffers_private_allocation_write`] and
/// [`memory_buffers_private_allocation_read`], not through their address.
///
/// # Errors
///
/// On any failure nothing is mapped and `*allocation` is set to `NULL`
/// (when `allocation` is not `NULL`).
///
/// - [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `settings` or `allocation` is
///   `NULL`.
/// - An invalid request code ([`MEMORY_BUFFERS_STATUS_ZERO_SIZE`],
///   [`MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX`],
///   [`MEMORY_BUFFERS_STATUS_RANGE_SMALLER_THAN_SIZE`],
///   [`MEMORY_BUFFERS_STATUS_SIZE_TOO_LARGE`],
///   [`MEMORY_BUFFERS_STATUS_RANGE_ABOVE_USER_SPACE`]) for bad settings.
/// - [`MEMORY_BUFFERS_STATUS_NO_SPACE_IN_RANGE`] when no free, aligned range
///   of the rounded size lies inside the range;
///   [`MEMORY_BUFFERS_STATUS_EXECUTABLE_MEMORY_REFUSED`] or
///   [`MEMORY_BUFFERS_STATUS_OS_ERROR`] when the kernel refuses.
/// - For another process: [`MEMORY_BUFFERS_STATUS_PROCESS_NOT_RUNNING`]
///   when it does not exist or exited, and
///   [`MEMORY_BUFFERS_STATUS_PROCESS_ACCESS_DENIED`] or
///   [`MEMORY_BUFFERS_STATUS_PROCESS_NOT_INJECTABLE`] with the reason in
///   the last error message.
///
/// # Safety
///
/// - `settings` must be `NULL` or valid for reading one, suitably aligned,
///   `MemoryBuffersAllocatorSettings`.
/// - `allocation` must be `NULL` or valid for writing one aligned pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_allocate_private_memory(
    settings: *const MemoryBuffersAllocatorSettings,
    allocation: *mut *mut MemoryBuffersPrivateAllocation,
) -> MemoryBuffersStatus {
    run("memory_buffers_allocate_private_memory", || {
        let out = writable(allocation, "`allocation` is NULL")?;
        // SAFETY: `out` is non-null and valid for an aligned write
        // (contract). Cleared first so that a caller ignoring the status
        // sees NULL.
        unsafe { out.write(std::ptr::null_mut()) };
        let settings = readable(settings, "`settings` is NULL")?;
        // SAFETY: non-null and valid for an aligned read (contract).
        let settings = unsafe { settings.read() };
        let target = settings.target_process_id;
        let rust_settings = settings.into();
        let allocation = if target == 0 || target == std::process::id() {
            Pages::Local(Buffers::allocate_private_memory(&rust_settings)?)
        } else {
            remote_allocation(target, &rust_settings)?
        };
        let handle = ALLOCATIONS.insert(Box::new(MemoryBuffersPrivateAllocation { allocation }));
        // SAFETY: as above.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Pages in the process `target`, another than this one.
#[cfg(feature = "external-processes")]
fn remote_allocation(target: u32, settings: &BufferAllocatorSettings) -> Result<Pages, Failure> {
    Ok(Pages::Remote(
        TargetProcess::open(target)?.allocate_private_memory(settings)?,
    ))
}

/// Built without allocations in other processes: refused with a status the
/// caller can test for, before anything is looked up or mapped.
#[cfg(not(feature = "external-processes"))]
fn remote_allocation(_: u32, _: &BufferAllocatorSettings) -> Result<Pages, Failure> {
    Err(Failure::new(
        MEMORY_BUFFERS_STATUS_UNSUPPORTED,
        "allocation in another process is not built into this library (its `external-processes` feature is off)",
    ))
}

/// Reads one property of a live allocation handle into `*out`.
///
/// # Safety
///
/// `out` must be `NULL` or valid for an aligned write of a `usize`.
unsafe fn read_property(
    allocation: *const MemoryBuffersPrivateAllocation,
    out: *mut usize,
    property: impl FnOnce(&Pages) -> usize,
) -> Result<(), Failure> {
    let out = writable(out, "the output pointer is NULL")?;
    let handle = ALLOCATIONS.check_out(allocation)?;
    // SAFETY: `out` is non-null and valid for an aligned write (contract).
    unsafe { out.write(property(&handle.allocation)) };
    Ok(())
}

/// Writes the address of the allocation's first byte to `*base_address`.
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `base_address` is `NULL`;
/// [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`] if `allocation` is not a live
/// handle of this copy of the library (including `NULL`);
/// [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] if another thread is using it.
///
/// # Safety
///
/// `base_address` must be `NULL` or valid for writing one aligned
/// `uintptr_t`. `allocation` may be any value: it is looked up, never
/// dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_private_allocation_base_address(
    allocation: *const MemoryBuffersPrivateAllocation,
    base_address: *mut usize,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract.
    run(
        "memory_buffers_private_allocation_base_address",
        || unsafe { read_property(allocation, base_address, Pages::base_address) },
    )
}

/// Writes the allocation's length in bytes (the requested size rounded up
/// to the allocation granularity) to `*size`.
///
/// # Errors
///
/// As for [`memory_buffers_private_allocation_base_address`].
///
/// # Safety
///
/// `size` must be `NULL` or valid for writing one aligned `size_t`.
/// `allocation` may be any value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_private_allocation_size(
    allocation: *const MemoryBuffersPrivateAllocation,
    size: *mut size_t,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract.
    run("memory_buffers_private_allocation_size", || unsafe {
        read_property(allocation, size, Pages::size)
    })
}

/// Unmaps the allocation's pages and sets `*allocation` to `NULL`.
///
/// # Errors
///
/// - [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `allocation` or `*allocation`
///   is `NULL` — in particular on a second release through the same
///   variable.
/// - [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`] if `*allocation` is not a live
///   handle of this copy of the library: already released through another
///   copy of the pointer, or never handed out. `*allocation` is left
///   unchanged.
/// - [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] if another thread is using the
///   handle; it stays live and `*allocation` is unchanged.
///
/// # Safety
///
/// `allocation` must be `NULL` or valid for reading and writing one aligned
/// pointer. `*allocation` may be any value: it is looked up, never
/// dereferenced. Nothing may use the pages after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_release_private_allocation(
    allocation: *mut *mut MemoryBuffersPrivateAllocation,
) -> MemoryBuffersStatus {
    run("memory_buffers_release_private_allocation", || {
        // SAFETY: forwarded from the caller's contract.
        let released = unsafe {
            take_handle(
                &ALLOCATIONS,
                allocation,
                "`allocation` is NULL",
                "`*allocation` is NULL",
            )
        }?;
        // Dropping the allocation unmaps its pages.
        drop(released);
        Ok(())
    })
}

/// Gives up the handle without unmapping: the pages stay mapped for the life
/// of the process. Sets `*allocation` to `NULL` and, when `base_address` is
/// not `NULL`, writes the pages' address to `*base_address`.
///
/// # Errors
///
/// As for [`memory_buffers_release_private_allocation`].
///
/// # Safety
///
/// As for [`memory_buffers_release_private_allocation`]; `base_address`
/// must be `NULL` or valid for writing one aligned `uintptr_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_private_allocation_leak(
    allocation: *mut *mut MemoryBuffersPrivateAllocation,
    base_address: *mut usize,
) -> MemoryBuffersStatus {
    run("memory_buffers_private_allocation_leak", || {
        // SAFETY: forwarded from the caller's contract.
        let released = unsafe {
            take_handle(
                &ALLOCATIONS,
                allocation,
                "`allocation` is NULL",
                "`*allocation` is NULL",
            )
        }?;
        let address = released.allocation.leak();
        if let Some(out) = NonNull::new(base_address) {
            // SAFETY: non-null, and valid for an aligned write (contract).
            unsafe { out.write(address) };
        }
        Ok(())
    })
}

#[cfg(all(test, not(feature = "external-processes")))]
mod tests {
    use super::*;

    #[test]
    fn another_process_is_unsupported_without_external_processes() {
        let mut settings = MemoryBuffersAllocatorSettings::from(BufferAllocatorSettings::new(
            0,
            0x7fff_ffff,
            4096,
        ));
        // Any id but 0 and this process's: nothing looks it up.
        settings.target_process_id = u32::MAX;
        let mut allocation = 0x1000 as *mut MemoryBuffersPrivateAllocation;
        // SAFETY: both pointers are live locals.
        let status = unsafe { memory_buffers_allocate_private_memory(&settings, &mut allocation) };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_UNSUPPORTED);
        assert!(allocation.is_null());

        // This process's own id still allocates here.
        settings.target_process_id = std::process::id();
        // SAFETY: as above.
        let status = unsafe { memory_buffers_allocate_private_memory(&settings, &mut allocation) };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
        // SAFETY: `allocation` is a live local holding the handle just made.
        let status = unsafe { memory_buffers_release_private_allocation(&mut allocation) };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
    }
}
