//! Shared buffers: getting one, reading its state, appending to it, and
//! releasing it.

use crate::settings::MemoryBuffersSearchSettings;
use crate::slots;
use crate::status::*;
use crate::{readable, size_t, writable};
use memory_buffers::{Buffers, LockedBuffer};
use std::ptr::NonNull;

/// Exclusive use of one shared buffer (opaque).
///
/// Obtained from [`memory_buffers_get_buffer`] and released with
/// [`memory_buffers_release_buffer`]. Bytes appended through it stay at
/// their address for the life of the process; whoever gets the buffer next
/// continues after them.
///
/// A handle is an opaque token of this copy of the library: never read or
/// write through it.
pub struct MemoryBuffersLockedBuffer {
    _opaque: [u8; 0],
}

/// Validates the arguments of a get, gets the buffer and hands out its
/// handle.
///
/// # Safety
///
/// As for [`memory_buffers_get_buffer_aligned`].
unsafe fn get(
    settings: *const MemoryBuffersSearchSettings,
    alignment: usize,
    buffer: *mut *mut MemoryBuffersLockedBuffer,
) -> Result<(), Failure> {
    let out = writable(buffer, "`buffer` is NULL")?;
    // SAFETY: `out` is non-null and valid for an aligned write (contract).
    // Cleared first so that a caller ignoring the status sees NULL.
    unsafe { out.write(std::ptr::null_mut()) };
    let settings = readable(settings, "`settings` is NULL")?;
    // SAFETY: `settings` is non-null and valid for an aligned read (contract).
    let settings = unsafe { settings.read() };
    let guard = Buffers::get_buffer_aligned(&settings.into(), alignment)?;
    let handle = slots::insert(guard)?;
    // SAFETY: as above.
    unsafe { out.write(handle) };
    Ok(())
}

/// Gets exclusive use of a shared buffer with at least `settings->size` free
/// bytes, all inside `[settings->min_address, settings->max_address]`,
/// creating one (nearest to `settings->target`, or if it is 0 in the
/// smallest free hole that holds it) if none exists, and
/// writes its handle to `*buffer`.
///
/// The buffer is shared with every buffers library in the process: other
/// callers do not get it until it is released with
/// [`memory_buffers_release_buffer`].
///
/// # Errors
///
/// On any failure `*buffer` is set to `NULL` (when `buffer` is not `NULL`).
///
/// - [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `settings` or `buffer` is
///   `NULL`.
/// - An invalid request code ([`MEMORY_BUFFERS_STATUS_ZERO_SIZE`],
///   [`MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX`],
///   [`MEMORY_BUFFERS_STATUS_RANGE_SMALLER_THAN_SIZE`],
///   [`MEMORY_BUFFERS_STATUS_SIZE_TOO_LARGE`],
///   [`MEMORY_BUFFERS_STATUS_RANGE_ABOVE_USER_SPACE`]) for bad settings.
/// - [`MEMORY_BUFFERS_STATUS_NO_SPACE_IN_RANGE`],
///   [`MEMORY_BUFFERS_STATUS_EXECUTABLE_MEMORY_REFUSED`] or
///   [`MEMORY_BUFFERS_STATUS_OS_ERROR`] when no buffer could be found or
///   made.
///
/// # Safety
///
/// - `settings` must be `NULL` or valid for reading one, suitably aligned,
///   `MemoryBuffersSearchSettings`.
/// - `buffer` must be `NULL` or valid for writing one aligned pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_get_buffer(
    settings: *const MemoryBuffersSearchSettings,
    buffer: *mut *mut MemoryBuffersLockedBuffer,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract, which is the same.
    run("memory_buffers_get_buffer", || unsafe {
        get(settings, 1, buffer)
    })
}

/// Like [`memory_buffers_get_buffer`], and the buffer's next write position
/// is a multiple of `alignment` (a power of two, at most the allocation
/// granularity). Padding skipped to align counts as used.
///
/// # Errors
///
/// As for [`memory_buffers_get_buffer`], and
/// [`MEMORY_BUFFERS_STATUS_ALIGNMENT_NOT_POWER_OF_TWO`] or
/// [`MEMORY_BUFFERS_STATUS_ALIGNMENT_ABOVE_GRANULARITY`] for a bad alignment.
///
/// # Safety
///
/// As for [`memory_buffers_get_buffer`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_get_buffer_aligned(
    settings: *const MemoryBuffersSearchSettings,
    alignment: size_t,
    buffer: *mut *mut MemoryBuffersLockedBuffer,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract, which is the same.
    run("memory_buffers_get_buffer_aligned", || unsafe {
        get(settings, alignment, buffer)
    })
}

/// Reads one property of a live buffer handle into `*out`.
///
/// # Safety
///
/// `out` must be `NULL` or valid for an aligned write of a `T`.
unsafe fn read_property<T>(
    buffer: *const MemoryBuffersLockedBuffer,
    out: *mut T,
    property: impl FnOnce(&LockedBuffer) -> T,
) -> Result<(), Failure> {
    let out: NonNull<T> = writable(out, "the output pointer is NULL")?;
    let handle = slots::check_out(buffer)?;
    // SAFETY: `out` is non-null and valid for an aligned write (contract).
    unsafe { out.write(property(&handle)) };
    Ok(())
}

/// Writes the address of the first byte of the buffer to `*base_address`.
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `base_address` is `NULL`;
/// [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`] if `buffer` is not a live handle
/// of this copy of the library (including `NULL`);
/// [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] if another thread is using it.
///
/// # Safety
///
/// `base_address` must be `NULL` or valid for writing one aligned
/// `uintptr_t`. `buffer` may be any value: it is looked up, never
/// dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_buffer_base_address(
    buffer: *const MemoryBuffersLockedBuffer,
    base_address: *mut usize,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract.
    run("memory_buffers_buffer_base_address", || unsafe {
        read_property(buffer, base_address, LockedBuffer::base_address)
    })
}

/// Writes the total size of the buffer in bytes to `*size`.
///
/// # Errors
///
/// As for [`memory_buffers_buffer_base_address`].
///
/// # Safety
///
/// `size` must be `NULL` or valid for writing one aligned `size_t`.
/// `buffer` may be any value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_buffer_size(
    buffer: *const MemoryBuffersLockedBuffer,
    size: *mut size_t,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract.
    run("memory_buffers_buffer_size", || unsafe {
        read_property(buffer, size, LockedBuffer::size)
    })
}

/// Writes the number of bytes already used in the buffer (by this and all
/// earlier holders) to `*position`.
///
/// # Errors
///
/// As for [`memory_buffers_buffer_base_address`].
///
/// # Safety
///
/// `position` must be `NULL` or valid for writing one aligned `size_t`.
/// `buffer` may be any value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_buffer_position(
    buffer: *const MemoryBuffersLockedBuffer,
    position: *mut size_t,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract.
    run("memory_buffers_buffer_position", || unsafe {
        read_property(buffer, position, LockedBuffer::position)
    })
}

/// Writes the number of bytes that can still be appended to `*bytes_left`.
///
/// # Errors
///
/// As for [`memory_buffers_buffer_base_address`].
///
/// # Safety
///
/// `bytes_left` must be `NULL` or valid for writing one aligned `size_t`.
/// `buffer` may be any value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_buffer_bytes_left(
    buffer: *const MemoryBuffersLockedBuffer,
    bytes_left: *mut size_t,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract.
    run("memory_buffers_buffer_bytes_left", || unsafe {
        read_property(buffer, bytes_left, LockedBuffer::bytes_left)
    })
}

/// Writes the address the next append will write to (base address plus
/// position) to `*next_address`.
///
/// # Errors
///
/// As for [`memory_buffers_buffer_base_address`].
///
/// # Safety
///
/// `next_address` must be `NULL` or valid for writing one aligned
/// `uintptr_t`. `buffer` may be any value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_buffer_next_address(
    buffer: *const MemoryBuffersLockedBuffer,
    next_address: *mut usize,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract.
    run("memory_buffers_buffer_next_address", || unsafe {
        read_property(buffer, next_address, LockedBuffer::next_address)
    })
}

/// Appends `length` bytes at `bytes` through the handle, optionally flushing
/// the instruction cache.
///
/// # Safety
///
/// As for [`memory_buffers_buffer_append_bytes`].
unsafe fn append(
    buffer: *mut MemoryBuffersLockedBuffer,
    bytes: *const u8,
    length: usize,
    address: *mut usize,
    as_code: bool,
) -> Result<(), Failure> {
    if bytes.is_null() && length != 0 {
        return Err(Failure::new(
            MEMORY_BUFFERS_STATUS_NULL_POINTER,
            "`bytes` is NULL",
        ));
    }
    let slice: &[u8] = if length == 0 {
        &[]
    } else {
        // SAFETY: `bytes` is non-null, and by the caller's contract valid
        // for reading `length` bytes that nobody writes during the call;
        // `u8` has no alignment requirement.
        unsafe { std::slice::from_raw_parts(bytes, length) }
    };
    let mut handle = slots::check_out(buffer)?;
    let written = if as_code {
        handle.guard_mut().append_code(slice)?
    } else {
        handle.guard_mut().append_bytes(slice)?
    };
    if let Some(out) = NonNull::new(address) {
        // SAFETY: non-null, and valid for an aligned write (contract).
        unsafe { out.write(written) };
    }
    Ok(())
}

/// Copies `length` bytes from `bytes` to the buffer's current position and
/// advances the position past them. When `address` is not `NULL`, the
/// address the bytes were written to is stored in `*address`.
///
/// # Errors
///
/// Nothing is written on failure.
///
/// - [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `bytes` is `NULL` while
///   `length` is not 0.
/// - [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`] /
///   [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] as for
///   [`memory_buffers_buffer_base_address`].
/// - [`MEMORY_BUFFERS_STATUS_DOES_NOT_FIT`] if fewer than `length` bytes are
///   left.
/// - [`MEMORY_BUFFERS_STATUS_PROCESS_FORKED`] in a child process, for a
///   buffer taken before `fork()`.
///
/// # Safety
///
/// - `bytes` must be `NULL` (only with `length` 0) or valid for reading
///   `length` bytes, which nobody writes during the call.
/// - `address` must be `NULL` or valid for writing one aligned `uintptr_t`.
/// - `buffer` may be any value: it is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_buffer_append_bytes(
    buffer: *mut MemoryBuffersLockedBuffer,
    bytes: *const u8,
    length: size_t,
    address: *mut usize,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract.
    run("memory_buffers_buffer_append_bytes", || unsafe {
        append(buffer, bytes, length, address, false)
    })
}

/// Appends machine code: like [`memory_buffers_buffer_append_bytes`], then
/// flushes the instruction cache for the written range so the code can be
/// executed (a no-op on x86-64, required on AArch64).
///
/// # Errors
///
/// As for [`memory_buffers_buffer_append_bytes`].
///
/// # Safety
///
/// As for [`memory_buffers_buffer_append_bytes`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_buffer_append_code(
    buffer: *mut MemoryBuffersLockedBuffer,
    code: *const u8,
    length: size_t,
    address: *mut usize,
) -> MemoryBuffersStatus {
    // SAFETY: forwarded from the caller's contract.
    run("memory_buffers_buffer_append_code", || unsafe {
        append(buffer, code, length, address, true)
    })
}

/// Releases the buffer so other callers (in any buffers library of the
/// process) can get it, and sets `*buffer` to `NULL`. The bytes appended
/// stay where they are.
///
/// # Errors
///
/// - [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `buffer` or `*buffer` is
///   `NULL` — in particular on a second release through the same variable.
/// - [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`] if `*buffer` is not a live
///   handle of this copy of the library: already released through another
///   copy of the pointer, or never handed out. `*buffer` is left unchanged.
/// - [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] if another thread is using the
///   handle; it stays live and `*buffer` is unchanged.
///
/// # Safety
///
/// `buffer` must be `NULL` or valid for reading and writing one aligned
/// pointer. `*buffer` may be any value: it is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_release_buffer(
    buffer: *mut *mut MemoryBuffersLockedBuffer,
) -> MemoryBuffersStatus {
    run("memory_buffers_release_buffer", || {
        let variable = writable(buffer, "`buffer` is NULL")?;
        // SAFETY: `variable` is non-null and valid for an aligned read and
        // write (contract).
        let handle = unsafe { variable.read() };
        if handle.is_null() {
            return Err(Failure::new(
                MEMORY_BUFFERS_STATUS_NULL_POINTER,
                "`*buffer` is NULL",
            ));
        }
        let guard = slots::remove(handle)?;
        // SAFETY: as above.
        unsafe { variable.write(std::ptr::null_mut()) };
        // Dropping the guard releases the buffer.
        drop(guard);
        Ok(())
    })
}
