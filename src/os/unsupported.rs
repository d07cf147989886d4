//! Backend for operating systems without an implementation yet.
//!
//! Defines the same items as `linux.rs` so the crate compiles everywhere;
//! every call that would touch the system fails with [`UNSUPPORTED`], which
//! the library reports as `ErrorKind::Unsupported`. Porting the library is
//! writing one file like `linux.rs` with these items.

#![allow(dead_code)]

use super::{FixedMapping, OwnedMapping, Protection};
use crate::space::maps::MapsEntry;
use std::ops::ControlFlow;

/// An error number from the system.
pub(crate) type Errno = i32;

/// The error number used for "not implemented on this system".
pub(crate) const UNSUPPORTED: Errno = -1;

/// The error number for an invalid argument.
pub(crate) const INVALID_ARGUMENT: Errno = -2;

/// The call that maps memory, as error messages name it.
pub(crate) const MAP_CALL: &str = "mmap";

/// The error number for "not enough memory".
pub(crate) const OUT_OF_MEMORY: Errno = -3;

pub(crate) fn query_granularity() -> usize {
    4096
}

pub(crate) fn query_lowest_address() -> usize {
    65536
}

pub(crate) fn query_highest_user_address() -> usize {
    usize::MAX - 1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageProtection;

impl PageProtection {
    pub(crate) fn with_write(self) -> PageProtection {
        self
    }
}

pub(crate) const PROTECT_CALL: &str = "mprotect";

pub(crate) fn page_size() -> usize {
    4096
}

pub(crate) fn visit_protections(
    _start: usize,
    _end: usize,
    _visit: impl FnMut(usize, usize, PageProtection),
) -> Result<(), Errno> {
    Err(UNSUPPORTED)
}

pub(crate) fn set_page_protection(
    _address: usize,
    _len: usize,
    _protection: PageProtection,
) -> Result<(), Errno> {
    Err(UNSUPPORTED)
}

pub(crate) fn protect(_address: usize, _len: usize, _protection: Protection) -> Result<(), Errno> {
    Err(UNSUPPORTED)
}

pub(crate) fn is_execute_refusal(_errno: Errno) -> bool {
    false
}

pub(crate) fn is_occupied(_errno: Errno) -> bool {
    false
}

pub(crate) fn is_unsupported(errno: Errno) -> bool {
    errno == UNSUPPORTED
}

/// Nothing is ever mapped on this system, so nothing is unmapped.
///
/// # Safety
///
/// None needed; the signature matches the other backends.
pub(crate) unsafe fn unmap(_address: usize, _len: usize) {}

pub(crate) fn map_fixed_noreplace(
    _address: usize,
    _len: usize,
    _protection: Protection,
) -> Result<FixedMapping, Errno> {
    Err(UNSUPPORTED)
}

pub(crate) fn map_anywhere(_len: usize, _protection: Protection) -> Result<OwnedMapping, Errno> {
    Err(UNSUPPORTED)
}

pub(crate) fn flush_instruction_cache(_address: usize, _len: usize) {}

pub(crate) fn with_code_writable<R>(_address: usize, _len: usize, write: impl FnOnce() -> R) -> R {
    write()
}

/// A marker on the heap: nothing forks here.
pub(crate) fn new_fork_marker() -> &'static super::ForkMarker {
    Box::leak(Box::new(super::ForkMarker::unwiped(0)))
}

pub(crate) fn read_maps(
    _buffer: &mut Vec<u8>,
    _visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> Result<(), Errno> {
    Err(UNSUPPORTED)
}

pub(crate) fn is_mapped(_address: usize, _len: usize) -> Result<bool, Errno> {
    Err(UNSUPPORTED)
}
