//! Rewriting code already written into shared buffers, and making written
//! code safe to execute.

use crate::size_t;
use crate::status::*;
use memory_buffers::Buffers;
use std::ffi::c_void;

#[cfg(doc)]
use crate::memory_buffers_buffer_append_code;

/// Writes `size` bytes from `source` to `target` for
/// [`memory_buffers_overwrite_allocated_code_ex`]. `context` is the pointer
/// passed to that function, untouched.
///
/// It is called while `[target, target + size)` is writable and must write
/// only inside that range. It must not unwind (throw a C++ exception or
/// `longjmp`) out of the call.
pub type MemoryBuffersWriteCallback = Option<
    unsafe extern "C" fn(context: *mut c_void, source: *const u8, target: *mut u8, size: size_t),
>;

/// Rewrites code already written into a shared buffer: copies `size` bytes
/// from `source` to `target`, then flushes the instruction cache for the
/// target range. Used to re-point a hook.
///
/// # Errors
///
/// Nothing is written on failure.
///
/// - [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `source` or `target` is
///   `NULL`; [`MEMORY_BUFFERS_STATUS_ZERO_SIZE`] if `size` is 0.
/// - [`MEMORY_BUFFERS_STATUS_OUTSIDE_BUFFERS`] unless the whole target range
///   lies inside the written part of one registered buffer.
///
/// # Safety
///
/// - `source` must be valid for reading `size` bytes, which nobody writes
///   during the call.
/// - No thread may be executing the target bytes while they are rewritten,
///   unless every intermediate state is valid code (for example a single
///   aligned store the CPU performs atomically).
/// - No other thread may be rewriting the same target range at the same
///   time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_overwrite_allocated_code(
    source: *const u8,
    target: *mut u8,
    size: size_t,
) -> MemoryBuffersStatus {
    run("memory_buffers_overwrite_allocated_code", || {
        check_pointers(source, target)?;
        // SAFETY: forwarded from the caller's contract, which is the
        // library function's: `source` is readable for `size` bytes, and the
        // library checks the target range before the copy runs.
        unsafe {
            Buffers::overwrite_allocated_code_ex(target as usize, size, |target, size| {
                std::ptr::copy(source, target, size)
            })
        }?;
        Ok(())
    })
}

/// Like [`memory_buffers_overwrite_allocated_code`], but `write` does the
/// writing: it is called once with `context`, `source`, `target` and `size`
/// while the target range is writable, and the instruction cache is flushed
/// after it returns. `write` is not called on failure.
///
/// # Errors
///
/// As for [`memory_buffers_overwrite_allocated_code`], and
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `write` is `NULL`.
///
/// # Safety
///
/// As for [`memory_buffers_overwrite_allocated_code`]; in addition `write`
/// must be `NULL` or a function that may be called with these arguments,
/// writes only inside `[target, target + size)` and does not unwind.
/// `context` is passed through untouched and may be any value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_overwrite_allocated_code_ex(
    source: *const u8,
    target: *mut u8,
    size: size_t,
    write: MemoryBuffersWriteCallback,
    context: *mut c_void,
) -> MemoryBuffersStatus {
    run("memory_buffers_overwrite_allocated_code_ex", || {
        check_pointers(source, target)?;
        let write = write.ok_or(Failure::new(
            MEMORY_BUFFERS_STATUS_NULL_POINTER,
            "`write` is NULL",
        ))?;
        // SAFETY: forwarded from the caller's contract, which is the
        // library function's plus the callback's: `write` writes only
        // inside the target range, which the library checks before calling
        // it.
        unsafe {
            Buffers::overwrite_allocated_code_ex(target as usize, size, |target, size| {
                write(context, source, target, size)
            })
        }?;
        Ok(())
    })
}

/// Writes `size` bytes from `source` over code that is not in a buffer,
/// such as the first bytes of a function being hooked: makes the pages
/// writable, copies the bytes, gives each page back the exact protection it
/// had, and flushes the instruction cache. Patches made through this
/// library are serialised.
///
/// # Errors
///
/// - [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `source` or `target` is
///   `NULL`; [`MEMORY_BUFFERS_STATUS_ZERO_SIZE`] if `size` is 0.
/// - [`MEMORY_BUFFERS_STATUS_NOT_MAPPED`] if part of the range is not
///   mapped; nothing is written.
/// - [`MEMORY_BUFFERS_STATUS_OS_ERROR`] if the protection cannot be changed
///   (nothing written), or cannot be restored after the write.
///
/// # Safety
///
/// - `source` must be valid for reading `size` bytes.
/// - The target range must be memory that may be overwritten: no thread
///   executes or reads it mid-write unless every intermediate state is valid
///   for it.
/// - No other code may change the same pages' protection meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_patch_code(
    source: *const u8,
    target: *mut u8,
    size: size_t,
) -> MemoryBuffersStatus {
    run("memory_buffers_patch_code", || {
        check_pointers(source, target)?;
        if size == 0 {
            return Err(Failure::new(MEMORY_BUFFERS_STATUS_ZERO_SIZE, "`size` is 0"));
        }
        // SAFETY: `source` is non-null and readable for `size` bytes (the
        // caller's contract).
        let bytes = unsafe { std::slice::from_raw_parts(source, size) };
        // SAFETY: forwarded from the caller's contract.
        unsafe { Buffers::patch_code(target as usize, bytes) }?;
        Ok(())
    })
}

fn check_pointers(source: *const u8, target: *mut u8) -> Result<(), Failure> {
    if source.is_null() {
        return Err(Failure::new(
            MEMORY_BUFFERS_STATUS_NULL_POINTER,
            "`source` is NULL",
        ));
    }
    if target.is_null() {
        return Err(Failure::new(
            MEMORY_BUFFERS_STATUS_NULL_POINTER,
            "`target` is NULL",
        ));
    }
    Ok(())
}

/// Makes code just written at `[address, address + size)` safe to execute.
/// A no-op on x86-64; required on AArch64 after writing code by any means
/// other than [`memory_buffers_buffer_append_code`]
/// or the overwrite functions, which flush by themselves.
///
/// Always returns [`MEMORY_BUFFERS_STATUS_OK`] (or
/// [`MEMORY_BUFFERS_STATUS_PANIC`] on a library bug).
///
/// # Safety
///
/// `[address, address + size)` must be mapped in this process (normally:
/// code the caller just wrote). The bytes are not read or written, but on
/// AArch64 cache maintenance on an unmapped address faults; on x86-64 the
/// range is not used at all.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_flush_instruction_cache(
    address: usize,
    size: size_t,
) -> MemoryBuffersStatus {
    run("memory_buffers_flush_instruction_cache", || {
        // SAFETY: the caller guarantees the range is mapped (see above).
        unsafe { Buffers::flush_instruction_cache(address, size) };
        Ok(())
    })
}
