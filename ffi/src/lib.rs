//! C interface to [`memory_buffers`]: allocate memory between a minimum and
//! a maximum address, from C, C++ or anything that can call C.
//!
//! The header `include/memory_buffers.h` is generated from this crate by
//! cbindgen (see `cbindgen.toml`); a test fails when it is out of date.
//!
//! # Conventions
//!
//! - Every function is named `memory_buffers_*` and returns a
//!   [`MemoryBuffersStatus`]: [`MEMORY_BUFFERS_STATUS_OK`] (0) on success,
//!   another `MEMORY_BUFFERS_STATUS_*` code on failure. Results are written
//!   through out pointers, and only on success (functions that hand out a
//!   handle set it to `NULL` on failure).
//! - [`memory_buffers_status_message`] turns a code into a static string
//!   (never freed). The calling thread's last failure, with the requested
//!   range and size, the `errno` and a full message, is available from
//!   [`memory_buffers_last_error`] and
//!   [`memory_buffers_last_error_message`], which copies into a caller
//!   buffer; nothing allocated by the library is ever handed to C.
//! - No panic crosses into C: each function catches it and returns
//!   [`MEMORY_BUFFERS_STATUS_PANIC`]. Built with `panic = "abort"` (the
//!   workspace's `min-size` profile), a panic aborts instead; no input
//!   leads to one, bad input is a status code.
//! - [`memory_buffers_version`] and [`memory_buffers_version_number`] give
//!   the loaded library's version, the header's `MEMORY_BUFFERS_VERSION*`
//!   macros the version a program was compiled against.
//! - `NULL` where a pointer is required is
//!   [`MEMORY_BUFFERS_STATUS_NULL_POINTER`], never undefined behaviour.
//!
//! # Handles and double release
//!
//! [`MemoryBuffersLockedBuffer`] and [`MemoryBuffersPrivateAllocation`] are
//! opaque handles. A buffer handle is the address of a slot in a fixed
//! table of this copy of the library, which holds the buffer's one-word
//! guard (no heap allocation and no lock per buffer: getting and releasing
//! buffers is the frequent pair of calls); an allocation handle is a boxed
//! Rust value kept in a registry. The library never dereferences a handle
//! it receives: it checks that the address is a live slot, or looks it up
//! in the registry, so a pointer that is not live — `NULL`, garbage,
//! already released, or handed out by another copy of the library — gets
//! [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`]. At most 16,384 buffers can be
//! held at once through one copy.
//!
//! The release functions take the address of the caller's handle variable
//! and set it to `NULL`: releasing twice through the same variable returns
//! [`MEMORY_BUFFERS_STATUS_NULL_POINTER`], through a stale copy of the
//! pointer [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`]. The one case that
//! cannot be caught is a stale copy used after the same slot (or address)
//! went to a newer handle of the same type: the call then acts on the newer
//! handle. That is memory-safe, but a bug in the caller.
//!
//! A handle may be used from any thread, by one call at a time; a call made
//! while another thread's call is using the same handle returns
//! [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] and does nothing.
//!
//! # Several copies in one process
//!
//! Every copy of this library (and of any other Memory Buffers
//! implementation) in a process shares one locator, so buffers taken
//! through one copy are not handed out by another until released, and
//! bytes appended through one are never overwritten through another.
//! Handles, however, belong to the copy that made them.
//!
//! # Features
//!
//! The default build has everything. The size build
//! (`--no-default-features --features no-format,size-opt`, see
//! `BENCHMARKS.md`, "Size of the C library") exports the same functions,
//! with two differences a program can see:
//!
//! - without `external-processes`, [`memory_buffers_allocate_private_memory`]
//!   with a `target_process_id` other than 0 or this process's id returns
//!   [`MEMORY_BUFFERS_STATUS_UNSUPPORTED`] and maps nothing;
//! - with `no-format`, [`memory_buffers_last_error_message`] gives the
//!   function's name and the fixed text of the failure, without the range,
//!   the size or the system's text for the `errno`, which
//!   [`memory_buffers_last_error`] still gives as numbers.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod allocation;
mod buffer;
mod code;
mod locator;
mod registry;
mod settings;
mod slots;
mod status;
mod target_process;
mod version;

pub use allocation::*;
pub use buffer::*;
pub use code::*;
pub use locator::*;
pub use settings::*;
pub use status::*;
pub use target_process::*;
pub use version::*;

use registry::HandleRegistry;
use std::ptr::NonNull;

/// C's `size_t`; the same type as `usize` on every platform Rust supports,
/// named so the header says `size_t` for sizes and `uintptr_t` for
/// addresses.
#[allow(non_camel_case_types)]
pub type size_t = libc::size_t;

/// `pointer` as a `NonNull`, or a [`MEMORY_BUFFERS_STATUS_NULL_POINTER`]
/// failure naming the argument.
fn writable<T>(pointer: *mut T, detail: &'static str) -> Result<NonNull<T>, Failure> {
    NonNull::new(pointer).ok_or(Failure::new(MEMORY_BUFFERS_STATUS_NULL_POINTER, detail))
}

/// As [`writable`], for a pointer the callee only reads through.
fn readable<T>(pointer: *const T, detail: &'static str) -> Result<NonNull<T>, Failure> {
    writable(pointer.cast_mut(), detail)
}

/// Removes the handle stored at `*slot` from `registry` and sets `*slot` to
/// `NULL`; the caller drops the returned value.
///
/// # Safety
///
/// `slot` must be `NULL` or valid for reading and writing one aligned
/// pointer.
unsafe fn take_handle<T>(
    registry: &HandleRegistry<T>,
    slot: *mut *mut T,
    slot_null: &'static str,
    handle_null: &'static str,
) -> Result<Box<T>, Failure> {
    let slot = writable(slot, slot_null)?;
    // SAFETY: `slot` is non-null and valid for an aligned read (contract).
    let handle = unsafe { slot.read() };
    if handle.is_null() {
        return Err(Failure::new(
            MEMORY_BUFFERS_STATUS_NULL_POINTER,
            handle_null,
        ));
    }
    let value = registry.remove(handle)?;
    // SAFETY: as above, for a write.
    unsafe { slot.write(std::ptr::null_mut()) };
    Ok(value)
}
