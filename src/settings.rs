//! What a caller asks for: an address range and a size.

#[cfg(doc)]
use crate::error::InvalidRequest;
use crate::error::{Error, ErrorKind};
use crate::os;
use crate::space::address::{ValidRequest, proximity_range, validate_request};

/// Re-reads of the address map (`/proc/self/maps`, a `VirtualQuery` walk on
/// Windows) a request may make before it reports
/// [`ErrorKind::NoSpaceInRange`], unless the caller sets another count.
pub const DEFAULT_RETRY_COUNT: u32 = 3;

/// The highest address a user-space mapping of this process can reach
/// (inclusive). Larger `max_address` values are clamped to it.
///
/// The process decides it, so it is read from the system (once, then
/// cached): a 32-bit Windows program gets `0xFFFE_FFFF` if its image is
/// large-address-aware and `0x7FFE_FFFF` if not (`GetSystemInfo`); a 32-bit
/// Linux program `0xFFFF_DFFF` under a 64-bit kernel and `0xBFFF_FFFF`
/// under a 32-bit one; a 64-bit program the top of its 47- or 48-bit space.
/// A request whose whole range lies above it fails with
/// [`InvalidRequest::RangeAboveUserSpace`].
///
/// ```
/// use memory_buffers::{BufferAllocatorSettings, Buffers, highest_user_address};
///
/// let top = highest_user_address();
/// assert!(top >= 0x7ffe_ffff);
/// // "Anywhere": a `max_address` of `usize::MAX` is clamped to the top.
/// let allocation = Buffers::allocate_private_memory(&BufferAllocatorSettings::new(0, usize::MAX, 16))?;
/// assert!(allocation.base_address() + (allocation.size() - 1) <= top);
/// # Ok::<(), memory_buffers::Error>(())
/// ```
#[inline]
pub fn highest_user_address() -> usize {
    os::highest_user_address()
}

/// The unit in which memory is mapped: the page size on Linux, 64 KiB (where
/// reservations may start) on Windows.
///
/// ```
/// use memory_buffers::{BufferAllocatorSettings, Buffers, allocation_granularity};
///
/// let granularity = allocation_granularity();
/// assert!(granularity.is_power_of_two() && granularity >= 4096);
/// // Private allocations are whole granules.
/// let allocation = Buffers::allocate_private_memory(&BufferAllocatorSettings::new(0, 0x7fff_ffff, 1))?;
/// assert_eq!(allocation.size(), granularity);
/// # Ok::<(), memory_buffers::Error>(())
/// ```
#[inline]
pub fn allocation_granularity() -> usize {
    os::allocation_granularity()
}

/// The range of addresses within `rel32` reach of `x` both ways: for every
/// `p` in `[min, max + 1]`, `p - x` and `x - p` fit in an `i32`. Clamped to
/// user space.
fn rel32_range(x: usize) -> (usize, usize) {
    let reach = i32::MAX as usize;
    (
        x.saturating_sub(reach),
        x.saturating_add(reach - 1).min(highest_user_address()),
    )
}

/// Where and how much private memory to allocate.
///
/// The allocation lands inside `[min_address, max_address]` (both inclusive),
/// as close to the [`target`](Self::target) as the address space allows;
/// without one, in the smallest free hole that holds it, against the
/// hole's edge, so that large holes stay whole.
///
/// Build it with [`new`](Self::new), [`from_proximity`](Self::from_proximity)
/// or [`within_rel32_reach`](Self::within_rel32_reach); the fields stay
/// public to read and to change, and new ones may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufferAllocatorSettings {
    /// Lowest address the allocation may use.
    pub min_address: usize,
    /// Highest address (inclusive) the allocation may use; clamped to
    /// [`highest_user_address`].
    pub max_address: usize,
    /// Bytes wanted; rounded up to the [`allocation_granularity`].
    pub size: usize,
    /// How many times `/proc/self/maps` may be re-read when the cached view
    /// of the address space turns out to be out of date. Values above 64
    /// count as 64, and no re-read is made once a fresh read shows no free
    /// candidate, so any value (even an uninitialised one) is bounded.
    pub retry_count: u32,
    /// Write-then-execute: the pages start read/write, not executable, and
    /// [`PrivateAllocation::make_executable`](crate::PrivateAllocation::make_executable)
    /// turns them read/execute (and back with
    /// [`make_writable`](crate::PrivateAllocation::make_writable)). For
    /// systems and policies that refuse memory both writable and
    /// executable. Off by default: the pages are read/write/execute.
    pub write_then_execute: bool,
    /// The address placement aims at: of the free space in range, that
    /// nearest to it is tried first. Set by `from_proximity` and
    /// `within_rel32_reach` to their target, so that a range cut short at 0
    /// or at the top of user space (a function low in a 32-bit program)
    /// still puts the memory next to it. `None`, for a plain range, takes
    /// the smallest free hole that holds the memory, against its edge
    /// (best fit: the large holes stay whole for requests that need
    /// them). An address outside the range counts as the nearest end.
    pub target: Option<usize>,
}

impl BufferAllocatorSettings {
    /// Settings for `size` bytes inside `[min_address, max_address]` (both
    /// inclusive), with [`DEFAULT_RETRY_COUNT`].
    ///
    /// ```
    /// use memory_buffers::BufferAllocatorSettings;
    /// let settings = BufferAllocatorSettings::new(0x1_0000, 0x7fff_ffff, 4096);
    /// assert_eq!(settings.max_address, 0x7fff_ffff);
    /// ```
    #[must_use]
    pub const fn new(min_address: usize, max_address: usize, size: usize) -> Self {
        BufferAllocatorSettings {
            min_address,
            max_address,
            size,
            retry_count: DEFAULT_RETRY_COUNT,
            write_then_execute: false,
            target: None,
        }
    }

    /// Settings for `size` bytes all within `rel32` reach of `x`, exactly:
    /// a jump or call whose next instruction starts at `x` reaches every
    /// byte of the range, and one whose next instruction starts anywhere in
    /// the range (up to `max_address + 1`) reaches `x`. For a hook, `x` is
    /// the address right after the 5-byte jump written over the function;
    /// jumps back to other addresses need their own check
    /// ([`x86::rel32`](crate::x86::rel32)).
    ///
    /// ```
    /// use memory_buffers::{BufferAllocatorSettings, highest_user_address};
    /// #[cfg(target_pointer_width = "64")]
    /// {
    ///     let settings = BufferAllocatorSettings::within_rel32_reach(0x1_0000_0000, 64);
    ///     assert_eq!(settings.min_address, 0x1_0000_0000 - 0x7fff_ffff);
    ///     assert_eq!(settings.max_address, 0x1_0000_0000 + 0x7fff_fffe);
    /// }
    /// // Cut at 0, and at the top of user space (a 32-bit process's too).
    /// let settings = BufferAllocatorSettings::within_rel32_reach(0x7000_0000, 64);
    /// assert_eq!(settings.min_address, 0);
    /// let above = 0x7000_0000 + 0x7fff_fffe;
    /// assert_eq!(settings.max_address, above.min(highest_user_address()));
    /// ```
    #[must_use]
    pub fn within_rel32_reach(x: usize, size: usize) -> Self {
        let (min_address, max_address) = rel32_range(x);
        Self {
            target: Some(x),
            ..Self::new(min_address, max_address, size)
        }
    }

    /// The same settings with [`write_then_execute`](Self::write_then_execute)
    /// on: the allocation starts read/write and is made executable when its
    /// code is written.
    ///
    /// ```
    /// use memory_buffers::{BufferAllocatorSettings, Buffers};
    /// let settings = BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096).write_then_execute();
    /// let mut code = Buffers::allocate_private_memory(&settings)?;
    /// code.write(0, &[0xc3])?;
    /// code.make_executable()?;
    /// assert!(code.write(0, &[0x90]).is_err());
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    #[must_use]
    pub const fn write_then_execute(mut self) -> Self {
        self.write_then_execute = true;
        self
    }

    /// The same settings with another [`retry_count`](Self::retry_count).
    ///
    /// ```
    /// use memory_buffers::BufferAllocatorSettings;
    /// let settings = BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096).with_retry_count(0);
    /// assert_eq!(settings.retry_count, 0);
    /// ```
    #[must_use]
    pub const fn with_retry_count(mut self, retry_count: u32) -> Self {
        self.retry_count = retry_count;
        self
    }

    /// The same settings aiming at another [`target`](Self::target).
    ///
    /// ```
    /// use memory_buffers::BufferAllocatorSettings;
    /// // Anywhere in the first 2 GiB, as near to 0x40_0000 as possible.
    /// let settings = BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096).with_target(Some(0x40_0000));
    /// assert_eq!(settings.target, Some(0x40_0000));
    /// ```
    #[must_use]
    pub const fn with_target(mut self, target: Option<usize>) -> Self {
        self.target = target;
        self
    }

    /// Settings for `size` bytes within `proximity` bytes of `target` on
    /// either side, saturating at 0 and at the top of user space. The
    /// allocation is placed as near `target` as possible.
    ///
    /// ```
    /// use memory_buffers::BufferAllocatorSettings;
    /// let settings = BufferAllocatorSettings::from_proximity(0x7fff_ffff, 0x1000, 4096);
    /// assert_eq!(settings.min_address, 0);
    /// assert_eq!(settings.max_address, 0x1000 + 0x7fff_ffff);
    /// ```
    #[must_use]
    pub fn from_proximity(proximity: usize, target: usize, size: usize) -> Self {
        let (min_address, max_address) = proximity_range(proximity, target, highest_user_address());
        BufferAllocatorSettings {
            target: Some(target),
            ..Self::new(min_address, max_address, size)
        }
    }

    pub(crate) fn validate(&self) -> Result<ValidRequest, Error> {
        validate_request(
            self.min_address,
            self.max_address,
            self.size,
            allocation_granularity(),
            highest_user_address(),
        )
        .map(|request| ValidRequest {
            target: self.target,
            ..request
        })
        .map_err(|reason| {
            Error::new(
                ErrorKind::InvalidRequest(reason),
                self.min_address,
                self.max_address,
                self.size,
            )
        })
    }
}

impl Default for BufferAllocatorSettings {
    /// The whole user address space, 4096 bytes.
    ///
    /// ```
    /// use memory_buffers::{BufferAllocatorSettings, highest_user_address};
    /// let settings = BufferAllocatorSettings::default();
    /// assert_eq!(settings, BufferAllocatorSettings::new(0, highest_user_address(), 4096));
    /// ```
    fn default() -> Self {
        Self::new(0, highest_user_address(), 4096)
    }
}

/// Which shared buffer to get: one with at least `size` free bytes, all of
/// them inside `[min_address, max_address]`.
///
/// Build it with [`new`](Self::new), [`from_proximity`](Self::from_proximity)
/// or [`within_rel32_reach`](Self::within_rel32_reach); the fields stay
/// public to read and to change, and new ones may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufferSearchSettings {
    /// Lowest address the free bytes may start at.
    pub min_address: usize,
    /// Highest address (inclusive) the free bytes may reach; clamped to
    /// [`highest_user_address`].
    pub max_address: usize,
    /// Free bytes needed; at most `u32::MAX` rounded down to the granularity
    /// (the locator stores sizes in 32 bits).
    pub size: usize,
    /// The address placement aims at: of the free space in range, that
    /// nearest to it is tried first. Set by `from_proximity` and
    /// `within_rel32_reach` to their target, so that a range cut short at 0
    /// or at the top of user space (a function low in a 32-bit program)
    /// still puts the memory next to it. `None`, for a plain range, takes
    /// the smallest free hole that holds the memory, against its edge
    /// (best fit: the large holes stay whole for requests that need
    /// them). An address outside the range counts as the nearest end.
    pub target: Option<usize>,
}

impl BufferSearchSettings {
    /// Settings for a buffer with `size` free bytes, all inside
    /// `[min_address, max_address]` (both inclusive).
    ///
    /// ```
    /// use memory_buffers::BufferSearchSettings;
    /// let settings = BufferSearchSettings::new(0x1_0000, 0x7fff_ffff, 256);
    /// assert_eq!(settings.size, 256);
    /// ```
    #[must_use]
    pub const fn new(min_address: usize, max_address: usize, size: usize) -> Self {
        BufferSearchSettings {
            min_address,
            max_address,
            size,
            target: None,
        }
    }

    /// The same settings aiming at another [`target`](Self::target).
    ///
    /// ```
    /// use memory_buffers::BufferSearchSettings;
    /// let settings = BufferSearchSettings::new(0, 0x7fff_ffff, 64).with_target(Some(0x40_0000));
    /// assert_eq!(settings.target, Some(0x40_0000));
    /// ```
    #[must_use]
    pub const fn with_target(mut self, target: Option<usize>) -> Self {
        self.target = target;
        self
    }

    /// Settings for `size` bytes all within `rel32` reach of `x`, exactly:
    /// a jump or call whose next instruction starts at `x` reaches every
    /// byte of the range, and one whose next instruction starts anywhere in
    /// the range (up to `max_address + 1`) reaches `x`. For a hook, `x` is
    /// the address right after the 5-byte jump written over the function;
    /// jumps back to other addresses need their own check
    /// ([`x86::rel32`](crate::x86::rel32)).
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, highest_user_address};
    /// #[cfg(target_pointer_width = "64")]
    /// {
    ///     let settings = BufferSearchSettings::within_rel32_reach(0x1_0000_0000, 64);
    ///     assert_eq!(settings.min_address, 0x1_0000_0000 - 0x7fff_ffff);
    ///     assert_eq!(settings.max_address, 0x1_0000_0000 + 0x7fff_fffe);
    /// }
    /// // Cut at 0, and at the top of user space (a 32-bit process's too).
    /// let settings = BufferSearchSettings::within_rel32_reach(0x7000_0000, 64);
    /// assert_eq!(settings.min_address, 0);
    /// let above = 0x7000_0000 + 0x7fff_fffe;
    /// assert_eq!(settings.max_address, above.min(highest_user_address()));
    /// ```
    #[must_use]
    pub fn within_rel32_reach(x: usize, size: usize) -> Self {
        let (min_address, max_address) = rel32_range(x);
        Self {
            target: Some(x),
            ..Self::new(min_address, max_address, size)
        }
    }

    /// Settings for `size` bytes within `proximity` bytes of `target` on
    /// either side, saturating at 0 and at the top of user space.
    ///
    /// For a 5-byte `jmp rel32` placed in the buffer to reach `target`, use a
    /// proximity of at most `0x7fff_fff0` or so (2 GiB minus the jump and
    /// any bytes written before it).
    ///
    /// ```
    /// use memory_buffers::BufferSearchSettings;
    /// let settings = BufferSearchSettings::from_proximity(0x100_0000, 0x7000_0000, 64);
    /// assert_eq!(settings.min_address, 0x7000_0000 - 0x100_0000);
    /// assert_eq!(settings.max_address, 0x7000_0000 + 0x100_0000);
    /// // Saturates at 0.
    /// assert_eq!(BufferSearchSettings::from_proximity(0x7fff_0000, 0x1000, 64).min_address, 0);
    /// ```
    #[must_use]
    pub fn from_proximity(proximity: usize, target: usize, size: usize) -> Self {
        let (min_address, max_address) = proximity_range(proximity, target, highest_user_address());
        BufferSearchSettings {
            target: Some(target),
            ..Self::new(min_address, max_address, size)
        }
    }

    pub(crate) fn validate(&self) -> Result<ValidRequest, Error> {
        let granularity = allocation_granularity();
        let error = |reason| {
            Error::new(
                ErrorKind::InvalidRequest(reason),
                self.min_address,
                self.max_address,
                self.size,
            )
        };
        let request = validate_request(
            self.min_address,
            self.max_address,
            self.size,
            granularity,
            highest_user_address(),
        )
        .map_err(error)?;
        if u32::try_from(request.rounded_size).is_err() {
            return Err(error(crate::InvalidRequest::SizeTooLarge));
        }
        Ok(ValidRequest {
            target: self.target,
            ..request
        })
    }
}

impl Default for BufferSearchSettings {
    /// The whole user address space, 4096 bytes.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, highest_user_address};
    /// let settings = BufferSearchSettings::default();
    /// assert_eq!(settings, BufferSearchSettings::new(0, highest_user_address(), 4096));
    /// ```
    fn default() -> Self {
        Self::new(0, highest_user_address(), 4096)
    }
}

#[cfg(test)]
mod tests {
    use super::{highest_user_address, rel32_range};
    use crate::x86::rel32;

    #[test]
    fn the_rel32_range_is_exactly_the_reach_both_ways() {
        // Far from both ends on 64-bit; on 32-bit the middle, where the
        // reach is cut by 0 below and by the top of user space above.
        let x = if usize::BITS == 64 {
            0x4000_0000_0000_u64 as usize
        } else {
            0x8000_0000
        };
        let (min, max) = rel32_range(x);
        for p in [min, min + 1, x, max, max + 1] {
            assert!(rel32(x, p).is_some(), "{p:#x} from {x:#x}");
            assert!(rel32(p, x).is_some(), "{x:#x} from {p:#x}");
        }
        // One step beyond either end breaks one of the two directions.
        assert!(rel32(min - 1, x).is_none() || rel32(x, min - 1).is_none());
        if max < highest_user_address() {
            assert!(rel32(max + 2, x).is_none() || rel32(x, max + 2).is_none());
        } else {
            // The reach above ends at the top of user space (on 32-bit).
            assert_eq!(max, highest_user_address());
        }
    }

    #[test]
    fn the_rel32_range_saturates_at_both_ends_of_user_space() {
        assert_eq!(rel32_range(0x1000).0, 0);
        assert_eq!(rel32_range(usize::MAX).1, super::highest_user_address());
    }
}
