//! The public entry point: [`Buffers`].

use crate::code::patch as code_patch;
use crate::error::{Error, ErrorKind, InvalidRequest};
use crate::os;
use crate::private::{self as private_allocation, PrivateAllocation};
use crate::settings::{BufferAllocatorSettings, BufferSearchSettings};
use crate::shared::locator::{Fit, Locator, LocatorKind};
use crate::shared::locked_buffer::LockedBuffer;
use crate::shared::process::{self, ProcessState};
use crate::space::address::validate_alignment;

/// Allocates memory inside address ranges and hands out shared buffers.
///
/// All functions are associated functions: the state they use is per
/// process (one locator shared with every buffers library in the process).
#[derive(Clone, Copy, Debug)]
pub struct Buffers;

fn locator_of(
    owner: &'static ProcessState,
    min: usize,
    max: usize,
    size: usize,
) -> Result<&'static Locator, Error> {
    owner
        .locator()
        .map_err(|kind| Error::new(kind, min, max, size))
}

impl Buffers {
    /// Maps read/write/execute pages inside `[min_address, max_address]`,
    /// as near `settings.target` as possible (without one, in the smallest
    /// free hole that holds them, against its edge), owned by the returned value and unmapped when it is
    /// dropped.
    ///
    /// The size is rounded up to the allocation granularity (the page size).
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::InvalidRequest`] for a zero size, a size that
    ///   overflows when rounded, `min_address > max_address`, or a range
    ///   smaller than the size; nothing is mapped.
    /// - [`ErrorKind::NoSpaceInRange`] when no free, aligned range of the
    ///   rounded size lies inside the range.
    /// - [`ErrorKind::ExecutableMemoryRefused`] when the kernel refuses
    ///   executable mappings.
    /// - [`ErrorKind::Os`] for other system call failures.
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::{BufferAllocatorSettings, Buffers};
    ///
    /// let target = Buffers::allocate_private_memory as *const () as usize;
    /// let settings = BufferAllocatorSettings::from_proximity(0x7fff_0000, target, 4096);
    /// let allocation = Buffers::allocate_private_memory(&settings)?;
    /// assert!(allocation.base_address().abs_diff(target) < 0x7fff_0000);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn allocate_private_memory(
        settings: &BufferAllocatorSettings,
    ) -> Result<PrivateAllocation, Error> {
        private_allocation::allocate(settings)
    }

    /// Gets exclusive use of a shared buffer with at least `settings.size`
    /// free bytes, all inside `[min_address, max_address]`, creating one
    /// (nearest to `settings.target`, or without one in the smallest free
    /// hole that holds it) if none exists.
    ///
    /// The buffer is released when the returned guard drops; bytes appended
    /// stay at their address for the life of the process.
    ///
    /// # Errors
    ///
    /// As for [`Buffers::allocate_private_memory`]; sizes must also fit in
    /// the locator's 32-bit size field.
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    ///
    /// let settings = BufferSearchSettings::new(0, 0x7fff_ffff, 16);
    /// let mut buffer = Buffers::get_buffer(&settings)?;
    /// let address = buffer.append_bytes(&[0xc3])?;
    /// assert!(address <= 0x7fff_ffff);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    #[inline]
    pub fn get_buffer(settings: &BufferSearchSettings) -> Result<LockedBuffer, Error> {
        Self::get_buffer_aligned(settings, 1)
    }

    /// Like [`Buffers::get_buffer`], and the guard's next write position is
    /// a multiple of `alignment` (a power of two, at most the allocation
    /// granularity). Padding skipped to align counts as used.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] for a bad alignment, otherwise as for
    /// [`Buffers::get_buffer`].
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    ///
    /// let settings = BufferSearchSettings::new(0, 0x7fff_ffff, 64);
    /// let mut buffer = Buffers::get_buffer_aligned(&settings, 16)?;
    /// assert_eq!(buffer.next_address() % 16, 0);
    /// let address = buffer.append_bytes(&[0xc3])?;
    /// assert_eq!(address % 16, 0);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    #[inline]
    pub fn get_buffer_aligned(
        settings: &BufferSearchSettings,
        alignment: usize,
    ) -> Result<LockedBuffer, Error> {
        // Hot path: a buffer this thread used recently still fits. A fitting
        // buffer proves the range valid, so only what a fit cannot prove is
        // checked here (size 0, the alignment); everything else is validated
        // on the way to the slow path. Every system's granularity is at
        // least 4096, so the usual alignments need no load to check.
        if settings.size != 0
            && alignment.is_power_of_two()
            && (alignment <= 4096 || alignment <= os::allocation_granularity())
            && let Some((locator, generation)) = process::live_locator()
        {
            let fit = Fit {
                min: settings.min_address,
                max: settings.max_address,
                size: settings.size,
                alignment,
            };
            if let Some(buffer) = locator.take_recent(generation, &fit) {
                return Ok(buffer);
            }
        }
        Self::get_buffer_slow(process::current(), settings, alignment)
    }

    #[cold]
    fn get_buffer_slow(
        owner: &'static ProcessState,
        settings: &BufferSearchSettings,
        alignment: usize,
    ) -> Result<LockedBuffer, Error> {
        let request = settings.validate()?;
        let fail = |kind| {
            Error::new(
                kind,
                settings.min_address,
                settings.max_address,
                settings.size,
            )
        };
        validate_alignment(alignment, os::allocation_granularity())
            .map_err(|reason| fail(ErrorKind::InvalidRequest(reason)))?;
        let locator = locator_of(
            owner,
            settings.min_address,
            settings.max_address,
            settings.size,
        )?;
        let fit = Fit {
            min: request.min,
            max: request.max,
            size: request.size,
            alignment,
        };
        // The fast path above already tried this thread's recent buffers
        // (or there were none: the locator did not exist yet).
        locator
            .get_buffer(
                owner.generation(),
                owner.shared_address_space(),
                &request,
                fit,
            )
            .map_err(|failure| {
                Error::from_failure(
                    failure,
                    settings.min_address,
                    settings.max_address,
                    settings.size,
                )
            })
    }

    /// Which locator this process uses: the shared one, or a private
    /// fallback and the reason for it. Finds or creates the locator if no
    /// buffer was requested yet.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Os`] if not even a private locator page could be mapped.
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::{Buffers, LocatorKind};
    ///
    /// let shared = match Buffers::locator_kind()? {
    ///     LocatorKind::Shared => true,
    ///     // Buffers still work, but other libraries do not see them.
    ///     LocatorKind::Private(reason) => {
    ///         eprintln!("private locator: {reason:?}");
    ///         false
    ///     }
    ///     _ => false,
    /// };
    /// // The answer does not change for the life of the process.
    /// assert_eq!(Buffers::locator_kind()? == LocatorKind::Shared, shared);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn locator_kind() -> Result<LocatorKind, Error> {
        Ok(locator_of(process::current(), 0, 0, 0)?.kind())
    }

    /// Address of the first locator of this process (what other buffers
    /// libraries in the process find through the rendezvous file).
    ///
    /// # Errors
    ///
    /// As for [`Buffers::locator_kind`].
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::Buffers;
    ///
    /// let locator = Buffers::locator_address()?;
    /// // A locator is a page of its own, found at the same address every time.
    /// assert_eq!(locator % 4096, 0);
    /// assert_eq!(Buffers::locator_address()?, locator);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn locator_address() -> Result<usize, Error> {
        Ok(locator_of(process::current(), 0, 0, 0)?.head_address())
    }

    /// Makes code just written at `[address, address + size)` safe to
    /// execute. A no-op on x86-64, whose instruction cache is coherent with
    /// data writes; required on AArch64. [`LockedBuffer::append_code`] and
    /// the overwrite functions already do this for their own writes.
    ///
    /// # Safety
    ///
    /// The whole range must be mapped in this process: on AArch64, cache
    /// maintenance on an unmapped address faults.
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::Buffers;
    ///
    /// let mut code = Buffers::allocate_private_memory(&Default::default())?;
    /// // x86-64: mov eax, 7; ret (other architectures flush and skip the call).
    /// code.write(0, &[0xb8, 7, 0, 0, 0, 0xc3])?;
    /// // SAFETY: the 6 bytes lie inside the allocation, which is mapped.
    /// unsafe { Buffers::flush_instruction_cache(code.base_address(), 6) };
    /// #[cfg(target_arch = "x86_64")]
    /// {
    ///     // SAFETY: the bytes are a complete function, and the default
    ///     // allocation is executable.
    ///     let seven: extern "C" fn() -> u32 = unsafe { std::mem::transmute(code.as_ptr()) };
    ///     assert_eq!(seven(), 7);
    /// }
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn flush_instruction_cache(address: usize, size: usize) {
        os::flush_instruction_cache(address, size);
    }

    /// Writes `bytes` over code that is not in a buffer, such as the first
    /// bytes of a function being hooked: makes the pages writable, copies
    /// the bytes, gives each page back the exact protection it had (read
    /// from the system), and flushes the instruction cache.
    ///
    /// Patches made through this library are serialised, so two threads
    /// patching one page never restore each other's temporary protection.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] for address 0 or no bytes,
    /// [`ErrorKind::NotMapped`] if part of the range is unmapped, and
    /// [`ErrorKind::Os`] if the protection cannot be changed (a policy such
    /// as SELinux `execmod` or Arbitrary Code Guard refuses writable code).
    /// Nothing is written on error, except when only restoring the former
    /// protection fails: then the bytes are written and the error names
    /// `mprotect`/`VirtualProtect`.
    ///
    /// # Safety
    ///
    /// - `[address, address + bytes.len())` must be memory that may be
    ///   overwritten: no thread may execute or read it mid-write unless every
    ///   intermediate state is valid for it, and nothing may rely on the old
    ///   bytes.
    /// - Other code (another hooking library) must not change the same
    ///   pages' protection at the same time.
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::Buffers;
    ///
    /// // A private, writable page stands in for a function's code.
    /// let page = Buffers::allocate_private_memory(&Default::default())?;
    /// // SAFETY: the page is ours and nothing runs or reads it.
    /// unsafe { Buffers::patch_code(page.base_address() + 16, &[0xc3])? };
    /// assert_eq!(page.as_slice()[16], 0xc3);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn patch_code(address: usize, bytes: &[u8]) -> Result<(), Error> {
        // SAFETY: forwarded from the caller.
        unsafe { code_patch::patch_code(address, bytes) }
    }

    /// Rewrites code already written into a shared buffer: copies `bytes`
    /// to `address`, then flushes the instruction cache for that range.
    /// Used to re-point a hook.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] for address 0 or no bytes, and
    /// [`ErrorKind::OutsideBuffers`] (nothing written) unless the whole
    /// range lies inside the written part of one registered buffer.
    ///
    /// # Safety
    ///
    /// - No thread may be executing the target bytes while they are being
    ///   rewritten, unless the rewrite is a single aligned store the CPU
    ///   performs atomically and every intermediate state is valid code
    ///   (see [`overwrite_allocated_code_ex`](Self::overwrite_allocated_code_ex));
    ///   the caller is responsible for whatever code runs afterwards.
    /// - No other thread may be rewriting the same range at the same time.
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    ///
    /// let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 16))?;
    /// let code = buffer.append_code(&[0x90, 0xc3])?; // nop; ret
    /// drop(buffer);
    /// // SAFETY: nothing runs this code yet.
    /// unsafe { Buffers::overwrite_allocated_code(code, &[0xc3])? }; // ret
    /// // Outside every buffer: refused.
    /// let local = [0u8; 4];
    /// assert!(unsafe { Buffers::overwrite_allocated_code(local.as_ptr() as usize, &[1]) }.is_err());
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn overwrite_allocated_code(address: usize, bytes: &[u8]) -> Result<(), Error> {
        // SAFETY: forwarded from the caller's guarantees. The callback copies
        // exactly `bytes.len()` bytes to the target, which is checked to be
        // inside a buffer before the callback runs; `copy` allows `bytes`
        // to overlap it.
        unsafe {
            Self::overwrite_allocated_code_ex(address, bytes.len(), |target, size| {
                std::ptr::copy(bytes.as_ptr(), target, size)
            })
        }
    }

    /// Like [`Buffers::overwrite_allocated_code`], but `write` does the
    /// writing: it receives the target pointer and the size while the
    /// target range is writable (on platforms that enforce W^X the range is
    /// made writable first and restored after), and the instruction cache
    /// is flushed after it returns. Use it for a write the CPU performs
    /// atomically, such as one aligned 8-byte store re-pointing a jump.
    ///
    /// # Errors
    ///
    /// As for [`Buffers::overwrite_allocated_code`]; `write` is not called
    /// on error.
    ///
    /// # Safety
    ///
    /// As for [`Buffers::overwrite_allocated_code`]; in addition `write`
    /// must write only inside `[address, address + size)`.
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let mut buffer = Buffers::get_buffer_aligned(&BufferSearchSettings::new(0, 0x7fff_ffff, 8), 8)?;
    /// let slot = buffer.append_bytes(&0u64.to_le_bytes())?; // a jump target, 8-byte aligned
    /// drop(buffer);
    /// // SAFETY: one aligned atomic store inside the 8 bytes.
    /// unsafe {
    ///     Buffers::overwrite_allocated_code_ex(slot, 8, |target, _| {
    ///         (*target.cast::<AtomicU64>()).store(0x1234, Ordering::Release)
    ///     })?
    /// };
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn overwrite_allocated_code_ex(
        address: usize,
        size: usize,
        write: impl FnOnce(*mut u8, usize),
    ) -> Result<(), Error> {
        let start = address;
        let fail = |kind| {
            Error::new(
                kind,
                start,
                start.saturating_add(size.saturating_sub(1)),
                size,
            )
        };
        if address == 0 {
            return Err(fail(ErrorKind::InvalidRequest(InvalidRequest::NullPointer)));
        }
        if size == 0 {
            return Err(fail(ErrorKind::InvalidRequest(InvalidRequest::ZeroSize)));
        }
        let locator = locator_of(process::current(), start, start, size)?;
        if !locator.contains_written(start, size) {
            return Err(fail(ErrorKind::OutsideBuffers));
        }
        os::with_code_writable(start, size, || write(start as *mut u8, size));
        os::flush_instruction_cache(start, size);
        Ok(())
    }
}
