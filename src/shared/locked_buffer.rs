//! Exclusive use of one shared buffer, for as long as the guard lives.
//!
//! The guard is where bytes are copied into shared buffers; those copies are
//! the only unsafe code outside the OS layer and the locator layout, each
//! justified by the bounds check right before it.

#![allow(unsafe_code)]

use crate::error::{Error, ErrorKind};
use crate::os;
use crate::shared::append_limit;
use crate::shared::generation;
use crate::shared::layout::ItemRef;
use std::num::NonZeroU64;
use std::sync::atomic::Ordering;

/// Exclusive use of a shared buffer, released when dropped.
///
/// Obtained from [`Buffers::get_buffer`](crate::Buffers::get_buffer). Bytes
/// appended through it stay at their address for the life of the process and
/// are never overwritten by the library; the next holder continues after
/// them.
///
/// Appends stay inside the range of the request that produced the guard:
/// the buffer may extend past its `max_address` (buffers are whole pages),
/// but an append that would end beyond it fails with
/// [`ErrorKind::OutsideRequestedRange`] and writes nothing, so code written
/// for a target in reach stays in reach.
///
/// If the process forks while a guard is held, the guard in the child refers
/// to the parent's locator, which the child may not even have mapped: there
/// its appends fail with [`ErrorKind::ProcessForked`], its accessors return
/// 0, and dropping it releases nothing.
#[must_use = "the buffer is released as soon as the guard is dropped"]
pub struct LockedBuffer {
    /// The item's address in bits 0 to 47 (user-space addresses on every
    /// supported system fit), and the generation of the process state it
    /// was taken for in bits 48 to 63. Bit 1 (items are 4-byte aligned) is
    /// [`LIMITED`]. One word, so that returning a guard is one store and
    /// one load: a wider guard returned through memory costs a stalled load
    /// on the hot path. The base address and size are read from the item
    /// (fixed once published), and so is the position, which only this
    /// guard changes while it lives.
    word: NonZeroU64,
}

/// Set in a guard's word when the request's range ends inside the buffer:
/// the limit is then kept in [`append_limit`].
const LIMITED: u64 = 2;

/// Bits of [`LockedBuffer::word`] that hold the item's address.
const ADDRESS_BITS: u32 = 48;

/// A word of generation 0, which no process state has: a guard holding it
/// never touches its item. Stands in for words that cannot occur.
const DEAD: NonZeroU64 = NonZeroU64::new(4).unwrap();

impl LockedBuffer {
    /// Wraps an item the caller has just taken for the process state of
    /// `generation`, for a request whose range ends at `limit`.
    #[inline]
    pub(crate) fn new(item: ItemRef, generation: u16, limit: usize) -> LockedBuffer {
        let address = item.address() as u64;
        debug_assert!(address >> ADDRESS_BITS == 0, "item above 2^48");
        debug_assert!(address & 3 == 0, "items are 4-byte aligned");
        // Relaxed: fixed once the item is published.
        let size = item.size().load(Ordering::Relaxed) as usize;
        let last = item.base_address().saturating_add(size).saturating_sub(1);
        let key = address | u64::from(generation) << ADDRESS_BITS;
        let flag = if limit < last {
            append_limit::record(key, limit);
            LIMITED
        } else {
            0
        };
        // An item address is never 0 (`ItemRef` is non-null).
        let word = NonZeroU64::new(key | flag);
        LockedBuffer {
            word: word.unwrap_or(DEAD),
        }
    }

    /// Turns the guard into one word, for a foreign-function layer that
    /// keeps guards where Rust values cannot live (a C handle table). The
    /// buffer stays held until [`LockedBuffer::from_raw`] gives the guard
    /// back and it is dropped. The word is never 0, and its lowest bit is
    /// always clear (free for the caller's own use, such as a busy flag).
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers, LockedBuffer};
    /// let guard = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 16))?;
    /// let word = guard.into_raw();
    /// assert_eq!(word & 1, 0);
    /// // SAFETY: the word came from `into_raw` and makes one guard.
    /// drop(unsafe { LockedBuffer::from_raw(word) });
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    #[must_use = "the buffer stays held until the word is turned back into a guard and dropped"]
    pub fn into_raw(self) -> u64 {
        let word = self.word.get();
        std::mem::forget(self);
        word
    }

    /// The guard [`LockedBuffer::into_raw`] turned into `word`.
    ///
    /// # Safety
    ///
    /// `word` must come from [`LockedBuffer::into_raw`] of this copy of the
    /// library, with its lowest bit clear again, and each such word must be
    /// turned back into at most one guard at a time (two live guards for one
    /// word would both append to the buffer).
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers, LockedBuffer};
    /// let word = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 16))?.into_raw();
    /// // ... the word is kept where a guard cannot be, then turned back:
    /// // SAFETY: the word came from `into_raw` and makes this one guard.
    /// let mut buffer = unsafe { LockedBuffer::from_raw(word) };
    /// assert!(buffer.append_bytes(&[0x90])? <= 0x7fff_ffff);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub unsafe fn from_raw(word: u64) -> LockedBuffer {
        LockedBuffer {
            // Not 0 (contract); should it be, a dead guard is harmless.
            word: NonZeroU64::new(word).unwrap_or(DEAD),
        }
    }

    /// The last address appends through this guard may write: the
    /// `max_address` of the request that produced it, or the buffer's last
    /// byte if the requested range reaches past the buffer (0 in a forked
    /// child).
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers, ErrorKind};
    /// // A range no other example uses, so that the buffer released below is
    /// // still free when it is asked for again (on 32-bit, one below 2 GiB,
    /// // which every 32-bit program has).
    /// # #[cfg(target_pointer_width = "64")]
    /// let (min, max) = (0x5_0000_0000, 0x5_ffff_ffff);
    /// # #[cfg(target_pointer_width = "32")]
    /// # let (min, max) = (0x3000_0000, 0x3fff_ffff);
    /// let buffer = Buffers::get_buffer(&BufferSearchSettings::new(min, max, 64))?;
    /// assert!(buffer.limit() <= max);
    /// let start = buffer.next_address();
    /// drop(buffer);
    ///
    /// // Ask for 16 bytes that must start at `start`: the same buffer, which
    /// // has room for more, but appends stop at the range asked for.
    /// let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(start, start + 15, 16))?;
    /// assert_eq!((buffer.next_address(), buffer.limit()), (start, start + 15));
    /// let error = buffer.append_bytes(&[0; 17]).unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::OutsideRequestedRange);
    /// assert_eq!(buffer.append_bytes(&[0; 16])?, start);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn limit(&self) -> usize {
        let Some(item) = self.live_item() else {
            return 0;
        };
        self.recorded_limit().unwrap_or_else(|| {
            // Relaxed: fixed once the item is published.
            let size = item.size().load(Ordering::Relaxed) as usize;
            item.base_address().saturating_add(size).saturating_sub(1)
        })
    }

    /// The limit kept for this guard, if its range ends inside the buffer.
    fn recorded_limit(&self) -> Option<usize> {
        if self.word.get() & LIMITED == 0 {
            return None;
        }
        // Recorded when the guard was made; only this guard forgets it.
        append_limit::limit_of(self.word.get() & !LIMITED)
    }

    /// Whether an item at `address` can be held by a guard.
    #[inline]
    pub(crate) fn can_hold(address: usize) -> bool {
        (address as u64) >> ADDRESS_BITS == 0
    }

    #[inline]
    fn item(&self) -> ItemRef {
        let address = (self.word.get() & ((1 << ADDRESS_BITS) - 1) & !LIMITED) as usize;
        // SAFETY: `new` stored the address of a live item, and items live
        // in locator pages that are never unmapped.
        unsafe { ItemRef::from_address_unchecked(address) }
    }

    #[inline]
    fn generation(&self) -> u16 {
        (self.word.get() >> ADDRESS_BITS) as u16
    }

    /// The item, unless this is a forked child, where the item's page may
    /// not be mapped at all.
    #[inline]
    fn live_item(&self) -> Option<ItemRef> {
        generation::is_current(self.generation()).then(|| self.item())
    }

    /// Address of the first byte of the buffer (0 in a forked child).
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// let buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 16))?;
    /// assert_ne!(buffer.base_address(), 0);
    /// assert_eq!(buffer.base_address() + buffer.position(), buffer.next_address());
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn base_address(&self) -> usize {
        self.live_item().map_or(0, |item| item.base_address())
    }

    /// Total size of the buffer in bytes (0 in a forked child).
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// let buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 16))?;
    /// assert!(buffer.size() >= 16);
    /// assert_eq!(buffer.size(), buffer.position() + buffer.bytes_left());
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn size(&self) -> usize {
        // Relaxed: fixed once the item is published.
        self.live_item()
            .map_or(0, |item| item.size().load(Ordering::Relaxed) as usize)
    }

    /// Bytes already used (0 in a forked child).
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 16))?;
    /// let before = buffer.position();
    /// buffer.append_bytes(&[1, 2, 3, 4])?;
    /// assert_eq!(buffer.position(), before + 4);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn position(&self) -> usize {
        // Relaxed: only this guard changes it while it lives.
        self.live_item()
            .map_or(0, |item| item.position().load(Ordering::Relaxed) as usize)
    }

    /// Bytes that can still be appended before the end of the buffer
    /// (appends also stop at the [`limit`](Self::limit)).
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 16))?;
    /// let left = buffer.bytes_left();
    /// assert!(left >= 16);
    /// buffer.append_bytes(&[0; 16])?;
    /// assert_eq!(buffer.bytes_left(), left - 16);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn bytes_left(&self) -> usize {
        self.size().saturating_sub(self.position())
    }

    /// Address the next append will write to.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 16))?;
    /// let next = buffer.next_address();
    /// assert_eq!(buffer.append_bytes(&[0xc3])?, next);
    /// assert_eq!(buffer.next_address(), next + 1);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn next_address(&self) -> usize {
        self.base_address().wrapping_add(self.position())
    }

    /// Reserves `len` bytes at the position, returning their address and
    /// the position after them.
    fn reserve(&self, len: usize) -> Result<(usize, u32), Error> {
        let Some(item) = self.live_item() else {
            // Nothing of the item may be read here (see `live_item`).
            return Err(Error::new(ErrorKind::ProcessForked, 0, 0, len));
        };
        let base = item.base_address();
        // Relaxed: see `size` and `position`.
        let size = item.size().load(Ordering::Relaxed);
        let position = item.position().load(Ordering::Relaxed);
        let start = base.wrapping_add(position as usize);
        let last = base.wrapping_add(size as usize).saturating_sub(1);
        let fail = |kind| Error::new(kind, start, last, len);
        // Checked against the size: a position out of bounds (written by a
        // misbehaving library) leaves nothing to append to.
        let after = match u32::try_from(len) {
            Ok(len) if len <= size.saturating_sub(position) => position + len,
            _ => return Err(fail(ErrorKind::DoesNotFit)),
        };
        // The bytes fit the buffer, so `start + len` does not overflow.
        if len != 0
            && let Some(limit) = self.recorded_limit()
            && start + (len - 1) > limit
        {
            return Err(Error::new(
                ErrorKind::OutsideRequestedRange,
                start,
                limit,
                len,
            ));
        }
        Ok((start, after))
    }

    fn advance(&mut self, position: u32) {
        // Release: the bytes just written happen-before any Acquire load of
        // the position (overwrite checks in other threads).
        self.item().position().store(position, Ordering::Release);
    }

    /// Copies `bytes` to the position and advances past them.
    ///
    /// Returns the address the bytes were written to. If they do not fit,
    /// returns [`ErrorKind::DoesNotFit`] and writes nothing.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers, ErrorKind};
    /// let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 4))?;
    /// let address = buffer.append_bytes(b"abcd")?;
    /// // SAFETY: the 4 bytes were just written there, and stay.
    /// assert_eq!(unsafe { *(address as *const [u8; 4]) }, *b"abcd");
    ///
    /// let too_many = vec![0; buffer.bytes_left() + 1];
    /// let error = buffer.append_bytes(&too_many).unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::DoesNotFit);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn append_bytes(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        let (address, after) = self.reserve(bytes.len())?;
        let item = self.item();
        // Writable around the write where W^X is enforced (Apple Silicon's
        // `MAP_JIT` buffers); elsewhere this only runs the closure.
        // SAFETY: `reserve` checked that the bytes fit between the position
        // and the end of the buffer, and this guard holds the item.
        os::with_code_writable(address, bytes.len(), || unsafe {
            item.write_bytes(address, bytes)
        });
        self.advance(after);
        Ok(address)
    }

    /// Copies `value` (unaligned) to the position and advances past it.
    ///
    /// Returns the address written to, or [`ErrorKind::DoesNotFit`] without
    /// writing anything.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 8))?;
    /// let address = buffer.append_copy(&0x1122_3344_5566_7788u64)?;
    /// // SAFETY: 8 bytes were just written there; they may be unaligned.
    /// let value = unsafe { (address as *const u64).read_unaligned() };
    /// assert_eq!(value, 0x1122_3344_5566_7788);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn append_copy<T: Copy>(&mut self, value: &T) -> Result<usize, Error> {
        let (address, after) = self.reserve(std::mem::size_of::<T>())?;
        let item = self.item();
        // SAFETY: as in `append_bytes`, for `size_of::<T>()` bytes.
        os::with_code_writable(address, std::mem::size_of::<T>(), || unsafe {
            item.write_value(address, value)
        });
        self.advance(after);
        Ok(address)
    }

    /// Appends machine code and makes it safe to execute: like
    /// [`append_bytes`](Self::append_bytes), then flushes the instruction
    /// cache for exactly the written range. On x86-64 the flush is a no-op
    /// (its instruction cache is coherent with data writes); on AArch64 and
    /// other architectures it is required and performed.
    ///
    /// Returns the address of the first instruction.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 6))?;
    /// // x86-64: mov eax, 42; ret
    /// let code = buffer.append_code(&[0xb8, 42, 0, 0, 0, 0xc3])?;
    /// #[cfg(target_arch = "x86_64")]
    /// {
    ///     // SAFETY: a complete function in executable memory that stays.
    ///     let answer: extern "C" fn() -> u32 = unsafe { std::mem::transmute(code) };
    ///     assert_eq!(answer(), 42);
    /// }
    /// # let _ = code;
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn append_code(&mut self, code: &[u8]) -> Result<usize, Error> {
        let address = self.append_bytes(code)?;
        os::flush_instruction_cache(address, code.len());
        Ok(address)
    }
}

impl std::fmt::Debug for LockedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockedBuffer")
            .field("base_address", &format_args!("{:#x}", self.base_address()))
            .field("size", &self.size())
            .field("position", &self.position())
            .finish()
    }
}

impl Drop for LockedBuffer {
    #[inline]
    fn drop(&mut self) {
        // In a forked child the item lives in the parent's shared locator;
        // releasing it there would hand the parent's buffer to a second
        // holder.
        if generation::is_current(self.generation()) {
            if self.word.get() & LIMITED != 0 {
                // Before the release: the next holder may record its own.
                append_limit::forget(self.word.get() & !LIMITED);
            }
            // Release: our appends and position are visible to the next
            // holder's Acquire take.
            self.item().taken().store(0, Ordering::Release);
        }
    }
}
