//! Exclusive use of one shared buffer, for as long as the guard lives.
//!
//! The guard is where bytes are copied into shared buffers; those copies are
//! the only unsafe code outside the OS layer and the locator layout, each
//! justified by the bounds check right before it.

#![allow(unsafe_code)]

use crate::error::{Error, ErrorKind};
use crate::locator::layout::ItemRef;
use crate::os;
use crate::process::ProcessState;
use std::sync::atomic::Ordering;

/// Exclusive use of a shared buffer, released when dropped.
///
/// Obtained from [`Buffers::get_buffer`](crate::Buffers::get_buffer). Bytes
/// appended through it stay at their address for the life of the process and
/// are never overwritten by the library; the next holder continues after
/// them.
///
/// If the process forks while a guard is held, the guard in the child refers
/// to the parent's locator: there its appends fail with
/// [`ErrorKind::ProcessForked`] and dropping it releases nothing.
pub struct LockedBuffer {
    owner: &'static ProcessState,
    item: ItemRef,
    /// Copy of the item's base address (fixed once published).
    base_address: usize,
    /// Copy of the item's size (fixed once published).
    size: u32,
    /// The position; only this guard changes it while it lives.
    /// Invariant: `position <= size`.
    position: u32,
}

impl LockedBuffer {
    /// Wraps an item the caller has just taken, with the base address and
    /// size read from it and its position.
    #[inline]
    pub(crate) fn new(
        owner: &'static ProcessState,
        item: ItemRef,
        base_address: usize,
        size: u32,
        position: u32,
    ) -> LockedBuffer {
        debug_assert!(position <= size);
        LockedBuffer {
            owner,
            item,
            base_address,
            size,
            position: position.min(size),
        }
    }

    /// Address of the first byte of the buffer.
    pub fn base_address(&self) -> usize {
        self.base_address
    }

    /// Total size of the buffer in bytes.
    pub fn size(&self) -> usize {
        self.size as usize
    }

    /// Bytes already used.
    pub fn position(&self) -> usize {
        self.position as usize
    }

    /// Bytes that can still be appended.
    pub fn bytes_left(&self) -> usize {
        (self.size - self.position) as usize
    }

    /// Address the next append will write to.
    pub fn next_address(&self) -> usize {
        self.base_address + self.position as usize
    }

    /// Reserves `len` bytes at the position, returning their address.
    fn reserve(&self, len: usize) -> Result<usize, Error> {
        let start = self.next_address();
        let last = (self.base_address + self.size as usize).saturating_sub(1);
        let fail = |kind| Error::new(kind, start, last, len);
        if self.owner.is_stale() {
            return Err(fail(ErrorKind::ProcessForked));
        }
        if len > self.bytes_left() {
            return Err(fail(ErrorKind::DoesNotFit));
        }
        Ok(start)
    }

    fn advance(&mut self, len: usize) {
        // Cannot truncate: `reserve` checked `len <= bytes_left`.
        self.position += len as u32;
        // Release: the bytes just written happen-before any Acquire load of
        // the position (overwrite checks in other threads).
        self.item.position().store(self.position, Ordering::Release);
    }

    /// Copies `bytes` to the position and advances past them.
    ///
    /// Returns the address the bytes were written to. If they do not fit,
    /// returns [`ErrorKind::DoesNotFit`] and writes nothing.
    pub fn append_bytes(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        let address = self.reserve(bytes.len())?;
        // SAFETY: `reserve` checked that the bytes fit between the position
        // and the end of the buffer, and this guard holds the item.
        unsafe { self.item.write_bytes(address, bytes) };
        self.advance(bytes.len());
        Ok(address)
    }

    /// Copies `value` (unaligned) to the position and advances past it.
    ///
    /// Returns the address written to, or [`ErrorKind::DoesNotFit`] without
    /// writing anything.
    pub fn append_copy<T: Copy>(&mut self, value: &T) -> Result<usize, Error> {
        let len = std::mem::size_of::<T>();
        let address = self.reserve(len)?;
        // SAFETY: as in `append_bytes`, for `size_of::<T>()` bytes.
        unsafe { self.item.write_value(address, value) };
        self.advance(len);
        Ok(address)
    }

    /// Appends machine code and makes it safe to execute: like
    /// [`append_bytes`](Self::append_bytes), then flushes the instruction
    /// cache for exactly the written range. On x86-64 the flush is a no-op
    /// (its instruction cache is coherent with data writes); on AArch64 and
    /// other architectures it is required and performed.
    ///
    /// Returns the address of the first instruction.
    pub fn append_code(&mut self, code: &[u8]) -> Result<usize, Error> {
        let address = self.append_bytes(code)?;
        os::flush_instruction_cache(address, code.len());
        Ok(address)
    }
}

impl std::fmt::Debug for LockedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockedBuffer")
            .field("base_address", &format_args!("{:#x}", self.base_address))
            .field("size", &self.size)
            .field("position", &self.position)
            .finish()
    }
}

impl Drop for LockedBuffer {
    #[inline]
    fn drop(&mut self) {
        // In a forked child the item lives in the parent's shared locator;
        // releasing it there would hand the parent's buffer to a second
        // holder.
        if !self.owner.is_stale() {
            // Release: our appends and position are visible to the next
            // holder's Acquire take.
            self.item.taken().store(0, Ordering::Release);
        }
    }
}
