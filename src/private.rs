//! Private allocations: pages inside `[min, max]` owned by the caller.
//!
//! The allocation owns its pages, so it lends them as slices: reads always,
//! writes while they are writable. Those two slices over the mapping are
//! the only unsafe code here.

#![allow(unsafe_code)]

use crate::error::{Error, ErrorKind};
use crate::os;
use crate::settings::BufferAllocatorSettings;
use crate::shared::process::{self, ProcessState};
use crate::space::placement::PlacementRequest;

/// Pages mapped inside a requested range, unmapped when dropped.
///
/// Obtained from [`Buffers::allocate_private_memory`](crate::Buffers::allocate_private_memory).
/// The pages are read/write/execute, or, with
/// [`write_then_execute`](crate::BufferAllocatorSettings::write_then_execute),
/// read/write until [`make_executable`](Self::make_executable) turns them
/// read/execute.
///
/// ```
/// use memory_buffers::{BufferAllocatorSettings, Buffers};
///
/// let mut allocation = Buffers::allocate_private_memory(&BufferAllocatorSettings::new(0, 0x7fff_ffff, 64))?;
/// allocation.write(0, b"data")?;
/// assert_eq!(&allocation.as_slice()[..4], b"data");
/// assert_eq!(allocation.size(), memory_buffers::allocation_granularity());
/// # Ok::<(), memory_buffers::Error>(())
/// ```
#[must_use = "the pages are unmapped when the allocation is dropped"]
pub struct PrivateAllocation {
    /// The pages; `None` only while dropping.
    mapping: Option<os::OwnedMapping>,
    /// Start of the mapping; aligned to the allocation granularity.
    base_address: usize,
    /// Length of the mapping; a non-zero multiple of the granularity.
    size: usize,
    /// The process state whose address-space view recorded the mapping.
    owner: &'static ProcessState,
    /// Write-then-execute allocation (never writable and executable).
    write_then_execute: bool,
    /// Executable now, so not writable (write-then-execute only).
    executable: bool,
}

impl PrivateAllocation {
    /// Address of the first byte; a multiple of the
    /// [`allocation_granularity`](crate::allocation_granularity).
    ///
    /// ```
    /// use memory_buffers::{BufferAllocatorSettings, Buffers};
    /// let settings = BufferAllocatorSettings::new(0x1000_0000, 0x2fff_ffff, 4096);
    /// let allocation = Buffers::allocate_private_memory(&settings)?;
    /// let base = allocation.base_address();
    /// assert!(base >= 0x1000_0000 && base + allocation.size() - 1 <= 0x2fff_ffff);
    /// assert_eq!(base % memory_buffers::allocation_granularity(), 0);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn base_address(&self) -> usize {
        self.base_address
    }

    /// Length in bytes (the requested size rounded up to the granularity).
    ///
    /// ```
    /// use memory_buffers::{BufferAllocatorSettings, Buffers, allocation_granularity};
    /// let settings = BufferAllocatorSettings::new(0, 0x7fff_ffff, allocation_granularity() + 1);
    /// let allocation = Buffers::allocate_private_memory(&settings)?;
    /// assert_eq!(allocation.size(), 2 * allocation_granularity());
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn size(&self) -> usize {
        self.size
    }

    /// Pointer to the first byte. Writing through it is the caller's
    /// business: it faults while a write-then-execute allocation is
    /// executable.
    ///
    /// ```
    /// use memory_buffers::Buffers;
    /// let allocation = Buffers::allocate_private_memory(&Default::default())?;
    /// // SAFETY: inside the allocation, which is writable.
    /// unsafe { allocation.as_ptr().add(1).write(7) };
    /// assert_eq!(allocation.as_slice()[1], 7);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        self.base_address as *mut u8
    }

    /// The bytes, to read. Readable in every state.
    ///
    /// ```
    /// use memory_buffers::Buffers;
    /// let allocation = Buffers::allocate_private_memory(&Default::default())?;
    /// assert_eq!(allocation.as_slice().len(), allocation.size());
    /// // New pages are zeroed.
    /// assert!(allocation.as_slice().iter().all(|&byte| byte == 0));
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `size` readable bytes owned by `self` for
        // as long as the borrow lasts (unmapped only on drop).
        unsafe { std::slice::from_raw_parts(self.base_address as *const u8, self.size) }
    }

    /// The bytes, to write; [`ErrorKind::NotWritable`] while a
    /// write-then-execute allocation is executable.
    ///
    /// ```
    /// # use memory_buffers::Buffers;
    /// let mut allocation = Buffers::allocate_private_memory(&Default::default())?;
    /// allocation.as_mut_slice()?[..2].copy_from_slice(&[0x90, 0xc3]);
    /// assert_eq!(allocation.as_slice()[..2], [0x90, 0xc3]);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8], Error> {
        if self.executable {
            return Err(self.error(ErrorKind::NotWritable, 0, self.size));
        }
        // SAFETY: the mapping is `size` bytes owned by `self`, writable in
        // this state, and `&mut self` makes the slice the only access
        // through the allocation.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.base_address as *mut u8, self.size) })
    }

    /// Copies `bytes` to `offset`. Fails without writing with
    /// [`ErrorKind::DoesNotFit`] past the end, or [`ErrorKind::NotWritable`]
    /// while a write-then-execute allocation is executable.
    ///
    /// ```
    /// # use memory_buffers::Buffers;
    /// let mut allocation = Buffers::allocate_private_memory(&Default::default())?;
    /// allocation.write(8, &[1, 2, 3])?;
    /// assert!(allocation.write(allocation.size() - 1, &[1, 2]).is_err());
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        let fits = offset
            .checked_add(bytes.len())
            .is_some_and(|end| end <= self.size);
        if !fits {
            return Err(self.error(ErrorKind::DoesNotFit, offset, bytes.len()));
        }
        let target = &mut self.as_mut_slice()?[offset..offset + bytes.len()];
        let address = target.as_ptr() as usize;
        // Writable around the copy where W^X is enforced (Apple Silicon's
        // `MAP_JIT` pages); elsewhere this only runs the closure.
        os::with_code_writable(address, bytes.len(), || target.copy_from_slice(bytes));
        Ok(())
    }

    /// Makes the pages executable and flushes the instruction cache. For a
    /// write-then-execute allocation the pages become read/execute and
    /// writes fail until [`make_writable`](Self::make_writable); for the
    /// default read/write/execute allocation only the flush is done.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Os`] if the system refuses the change (then nothing
    /// changed), [`ErrorKind::ExecutableMemoryRefused`] if a policy forbids
    /// executable memory.
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::{BufferAllocatorSettings, Buffers, ErrorKind};
    /// let settings = BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096).write_then_execute();
    /// let mut code = Buffers::allocate_private_memory(&settings)?;
    /// code.write(0, &[0xb8, 7, 0, 0, 0, 0xc3])?; // x86-64: mov eax, 7; ret
    /// code.make_executable()?;
    /// assert!(code.is_executable() && !code.is_writable());
    /// assert_eq!(code.write(0, &[0x90]).unwrap_err().kind(), ErrorKind::NotWritable);
    /// #[cfg(target_arch = "x86_64")]
    /// {
    ///     // SAFETY: a complete function, in pages that are executable now.
    ///     let seven: extern "C" fn() -> u32 = unsafe { std::mem::transmute(code.as_ptr()) };
    ///     assert_eq!(seven(), 7);
    /// }
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn make_executable(&mut self) -> Result<(), Error> {
        if self.write_then_execute && !self.executable {
            self.set(os::Protection::ReadExecute)?;
            self.executable = true;
        }
        os::flush_instruction_cache(self.base_address, self.size);
        Ok(())
    }

    /// Makes a write-then-execute allocation read/write again (no longer
    /// executable); does nothing for a read/write/execute allocation.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Os`] if the system refuses the change.
    ///
    /// # Example
    ///
    /// ```
    /// use memory_buffers::{BufferAllocatorSettings, Buffers};
    /// let settings = BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096).write_then_execute();
    /// let mut code = Buffers::allocate_private_memory(&settings)?;
    /// code.make_executable()?;
    /// code.make_writable()?;
    /// assert!(code.is_writable() && !code.is_executable());
    /// code.write(0, &[0xc3])?;
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn make_writable(&mut self) -> Result<(), Error> {
        if self.executable {
            self.set(os::Protection::ReadWrite)?;
            self.executable = false;
        }
        Ok(())
    }

    /// Whether the pages can be written now.
    ///
    /// ```
    /// use memory_buffers::Buffers;
    /// // The default allocation is read/write/execute, always.
    /// let mut allocation = Buffers::allocate_private_memory(&Default::default())?;
    /// allocation.make_executable()?;
    /// assert!(allocation.is_writable() && allocation.is_executable());
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn is_writable(&self) -> bool {
        !self.executable
    }

    /// Whether the pages can run code now.
    ///
    /// ```
    /// use memory_buffers::{BufferAllocatorSettings, Buffers};
    /// let settings = BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096).write_then_execute();
    /// let mut code = Buffers::allocate_private_memory(&settings)?;
    /// assert!(!code.is_executable());
    /// code.make_executable()?;
    /// assert!(code.is_executable());
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn is_executable(&self) -> bool {
        !self.write_then_execute || self.executable
    }

    fn set(&self, protection: os::Protection) -> Result<(), Error> {
        os::protect(self.base_address, self.size, protection).map_err(|errno| {
            let kind = if os::is_execute_refusal(errno) && protection == os::Protection::ReadExecute
            {
                ErrorKind::ExecutableMemoryRefused
            } else {
                ErrorKind::Os {
                    call: os::PROTECT_CALL,
                    errno,
                }
            };
            self.error(kind, 0, self.size)
        })
    }

    fn error(&self, kind: ErrorKind, offset: usize, len: usize) -> Error {
        Error::new(
            kind,
            self.base_address.wrapping_add(offset),
            self.base_address + (self.size - 1),
            len,
        )
    }

    /// Gives up ownership without unmapping; the pages stay mapped for the
    /// life of the process. Returns the base address.
    ///
    /// ```
    /// use memory_buffers::Buffers;
    /// let mut allocation = Buffers::allocate_private_memory(&Default::default())?;
    /// allocation.write(0, &[42])?;
    /// let address = allocation.leak();
    /// // SAFETY: leaked pages stay mapped for the rest of the process.
    /// assert_eq!(unsafe { *(address as *const u8) }, 42);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    #[must_use = "the address is the only way left to the pages"]
    pub fn leak(mut self) -> usize {
        self.mapping
            .take()
            .map_or(self.base_address, os::OwnedMapping::leak)
    }
}

impl std::fmt::Debug for PrivateAllocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateAllocation")
            .field("base_address", &format_args!("{:#x}", self.base_address))
            .field("size", &self.size)
            .finish()
    }
}

impl Drop for PrivateAllocation {
    fn drop(&mut self) {
        let Some(mapping) = self.mapping.take() else {
            return;
        };
        if self.owner.is_stale() {
            // A child after fork() unmaps its own copy of the pages but must
            // not touch the parent's state: its lock may have been held by a
            // thread that does not exist in the child.
            drop(mapping);
        } else {
            self.owner.address_space().unmap(mapping);
        }
    }
}

/// Maps pages for `settings`; see [`crate::Buffers::allocate_private_memory`].
pub(crate) fn allocate(settings: &BufferAllocatorSettings) -> Result<PrivateAllocation, Error> {
    let request = settings.validate()?;
    let owner = process::current();
    let placement = PlacementRequest {
        min: request.min,
        max: request.max,
        block_len: request.rounded_size,
        range_len: request.rounded_size,
        granularity: os::allocation_granularity(),
        lowest_address: os::lowest_mappable_address(),
        highest_address: crate::settings::highest_user_address(),
        target: request.target,
    };
    let fail = |kind: ErrorKind| Error::new(kind, request.min, request.max, request.size);
    if request.max - request.min < request.rounded_size - 1 {
        return Err(fail(ErrorKind::NoSpaceInRange));
    }
    let protection = if settings.write_then_execute {
        os::Protection::ReadWrite
    } else {
        os::Protection::ReadWriteExecute
    };
    let mapping = owner
        .address_space()
        .map_nearest_with(placement, settings.retry_count, protection)
        .map_err(|failure| Error::from_failure(failure, request.min, request.max, request.size))?;
    Ok(PrivateAllocation {
        base_address: mapping.address(),
        mapping: Some(mapping),
        size: request.rounded_size,
        owner,
        write_then_execute: settings.write_then_execute,
        executable: false,
    })
}
