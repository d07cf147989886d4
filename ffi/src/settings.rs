//! The request structures C passes in, and the functions that fill them.

use crate::status::*;
use crate::{size_t, writable};
use memory_buffers::{BufferAllocatorSettings, BufferSearchSettings};

#[cfg(doc)]
use crate::{memory_buffers_allocate_private_memory, memory_buffers_get_buffer};

/// How many times a private allocation may re-read the address space map
/// when its cached view is out of date, unless the settings say otherwise
/// (`memory_buffers::DEFAULT_RETRY_COUNT`).
pub const MEMORY_BUFFERS_DEFAULT_RETRY_COUNT: u32 = 3;

/// Which shared buffer to get: one with at least `size` free bytes, all of
/// them inside `[min_address, max_address]` (both inclusive).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBuffersSearchSettings {
    /// Lowest address the free bytes may start at.
    pub min_address: usize,
    /// Highest address (inclusive) the free bytes may reach; clamped to the
    /// highest user-space address.
    pub max_address: usize,
    /// Free bytes needed; at most 4 GiB minus one page (the locator stores
    /// sizes in 32 bits).
    pub size: size_t,
    /// The address placement aims at: of the free space in range, that
    /// nearest to it is tried first; 0 for none (the smallest free hole
    /// that holds the memory is used, against its edge). The
    /// `_from_proximity` functions set their target, so that a range cut
    /// short at 0 or at the top of user space still puts memory next to
    /// it.
    pub target: usize,
}

/// Where and how much private memory to allocate: `size` bytes (rounded up
/// to the allocation granularity) inside `[min_address, max_address]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBuffersAllocatorSettings {
    /// Lowest address the allocation may use.
    pub min_address: usize,
    /// Highest address (inclusive) the allocation may use; clamped to the
    /// highest user-space address.
    pub max_address: usize,
    /// Bytes wanted; rounded up to the allocation granularity.
    pub size: size_t,
    /// How many times the address space map may be re-read when the cached
    /// view turns out to be out of date;
    /// [`MEMORY_BUFFERS_DEFAULT_RETRY_COUNT`] is a good value. Values above
    /// 64 count as 64, and no re-read is made once a fresh read shows no
    /// free candidate, so even an uninitialised value cannot hang the caller.
    pub retry_count: u32,
    /// The process to allocate in: 0 (what the functions that fill settings
    /// set) or this process's id for this process; any other id for that
    /// process, as the original library's `target_process_id` does (see
    /// [`memory_buffers_allocate_private_memory`] for what that needs).
    pub target_process_id: u32,
    /// The address placement aims at: of the free space in range, that
    /// nearest to it is tried first; 0 for none (the smallest free hole
    /// that holds the memory is used, against its edge). The
    /// `_from_proximity` functions set their target, so that a range cut
    /// short at 0 or at the top of user space still puts memory next to
    /// it.
    pub target: usize,
}

impl From<BufferSearchSettings> for MemoryBuffersSearchSettings {
    fn from(settings: BufferSearchSettings) -> Self {
        MemoryBuffersSearchSettings {
            min_address: settings.min_address,
            max_address: settings.max_address,
            size: settings.size,
            target: settings.target.unwrap_or(0),
        }
    }
}

/// A C target: 0 stands for none.
fn target_of(target: usize) -> Option<usize> {
    (target != 0).then_some(target)
}

impl From<MemoryBuffersSearchSettings> for BufferSearchSettings {
    fn from(settings: MemoryBuffersSearchSettings) -> Self {
        BufferSearchSettings::new(settings.min_address, settings.max_address, settings.size)
            .with_target(target_of(settings.target))
    }
}

impl From<BufferAllocatorSettings> for MemoryBuffersAllocatorSettings {
    fn from(settings: BufferAllocatorSettings) -> Self {
        MemoryBuffersAllocatorSettings {
            min_address: settings.min_address,
            max_address: settings.max_address,
            size: settings.size,
            retry_count: settings.retry_count,
            target_process_id: 0,
            target: settings.target.unwrap_or(0),
        }
    }
}

impl From<MemoryBuffersAllocatorSettings> for BufferAllocatorSettings {
    fn from(settings: MemoryBuffersAllocatorSettings) -> Self {
        BufferAllocatorSettings::new(settings.min_address, settings.max_address, settings.size)
            .with_retry_count(settings.retry_count)
            .with_target(target_of(settings.target))
    }
}

/// Fills `*settings` for `size` bytes within `proximity` bytes of `target`
/// on either side (saturating at 0 and at the top of user space), for
/// [`memory_buffers_get_buffer`].
///
/// For a 5-byte `jmp rel32` written into the buffer to reach `target`, use
/// a proximity of at most about `0x7fff_fff0`.
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `settings` is `NULL`.
///
/// # Safety
///
/// `settings` must be `NULL` or valid for writing one, suitably aligned,
/// `MemoryBuffersSearchSettings`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_search_settings_from_proximity(
    proximity: size_t,
    target: usize,
    size: size_t,
    settings: *mut MemoryBuffersSearchSettings,
) -> MemoryBuffersStatus {
    run("memory_buffers_search_settings_from_proximity", || {
        let out = writable(settings, "`settings` is NULL")?;
        let value = BufferSearchSettings::from_proximity(proximity, target, size).into();
        // SAFETY: `out` is non-null and valid for an aligned write (contract).
        unsafe { out.write(value) };
        Ok(())
    })
}

/// Fills `*settings` for `size` bytes within `proximity` bytes of `target`
/// on either side (saturating at 0 and at the top of user space), with the
/// default retry count, for
/// [`memory_buffers_allocate_private_memory`].
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `settings` is `NULL`.
///
/// # Safety
///
/// `settings` must be `NULL` or valid for writing one, suitably aligned,
/// `MemoryBuffersAllocatorSettings`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_allocator_settings_from_proximity(
    proximity: size_t,
    target: usize,
    size: size_t,
    settings: *mut MemoryBuffersAllocatorSettings,
) -> MemoryBuffersStatus {
    run("memory_buffers_allocator_settings_from_proximity", || {
        let out = writable(settings, "`settings` is NULL")?;
        let value = BufferAllocatorSettings::from_proximity(proximity, target, size).into();
        // SAFETY: `out` is non-null and valid for an aligned write (contract).
        unsafe { out.write(value) };
        Ok(())
    })
}

/// Fills `*settings` with the defaults: the whole user address space, 4096
/// bytes.
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `settings` is `NULL`.
///
/// # Safety
///
/// `settings` must be `NULL` or valid for writing one, suitably aligned,
/// `MemoryBuffersSearchSettings`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_search_settings_default(
    settings: *mut MemoryBuffersSearchSettings,
) -> MemoryBuffersStatus {
    run("memory_buffers_search_settings_default", || {
        let out = writable(settings, "`settings` is NULL")?;
        // SAFETY: `out` is non-null and valid for an aligned write (contract).
        unsafe { out.write(BufferSearchSettings::default().into()) };
        Ok(())
    })
}

/// Fills `*settings` with the defaults: the whole user address space, 4096
/// bytes, [`MEMORY_BUFFERS_DEFAULT_RETRY_COUNT`] retries.
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `settings` is `NULL`.
///
/// # Safety
///
/// `settings` must be `NULL` or valid for writing one, suitably aligned,
/// `MemoryBuffersAllocatorSettings`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_allocator_settings_default(
    settings: *mut MemoryBuffersAllocatorSettings,
) -> MemoryBuffersStatus {
    run("memory_buffers_allocator_settings_default", || {
        let out = writable(settings, "`settings` is NULL")?;
        // SAFETY: `out` is non-null and valid for an aligned write (contract).
        unsafe { out.write(BufferAllocatorSettings::default().into()) };
        Ok(())
    })
}

/// Writes the unit in which memory is mapped (the page size on Linux) to
/// `*granularity`.
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `granularity` is `NULL`.
///
/// # Safety
///
/// `granularity` must be `NULL` or valid for writing one aligned `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_allocation_granularity(
    granularity: *mut size_t,
) -> MemoryBuffersStatus {
    run("memory_buffers_allocation_granularity", || {
        let out = writable(granularity, "`granularity` is NULL")?;
        // SAFETY: `out` is non-null and valid for an aligned write (contract).
        unsafe { out.write(memory_buffers::allocation_granularity()) };
        Ok(())
    })
}

/// Writes the highest address a user-space mapping can reach (inclusive) to
/// `*address`; larger `max_address` values in settings are clamped to it.
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `address` is `NULL`.
///
/// # Safety
///
/// `address` must be `NULL` or valid for writing one aligned `uintptr_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_highest_user_address(
    address: *mut usize,
) -> MemoryBuffersStatus {
    run("memory_buffers_highest_user_address", || {
        let out = writable(address, "`address` is NULL")?;
        // SAFETY: `out` is non-null and valid for an aligned write (contract).
        unsafe { out.write(memory_buffers::highest_user_address()) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_count_constant_matches_the_library() {
        assert_eq!(
            MEMORY_BUFFERS_DEFAULT_RETRY_COUNT,
            memory_buffers::DEFAULT_RETRY_COUNT
        );
    }

    #[test]
    fn proximity_settings_match_the_rust_constructors() {
        let mut search = MemoryBuffersSearchSettings {
            min_address: 1,
            max_address: 1,
            size: 1,
            target: 1,
        };
        // SAFETY: `search` is a live local.
        let status = unsafe {
            memory_buffers_search_settings_from_proximity(0x1000, 0x10_0000, 64, &mut search)
        };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
        assert_eq!(
            (search.min_address, search.max_address, search.size),
            (0xf_f000, 0x10_1000, 64)
        );

        let mut allocator = MemoryBuffersAllocatorSettings {
            min_address: 1,
            max_address: 1,
            size: 1,
            retry_count: 0,
            target_process_id: 7,
            target: 0,
        };
        // SAFETY: `allocator` is a live local.
        let status = unsafe {
            memory_buffers_allocator_settings_from_proximity(0x2000, 0x1000, 100, &mut allocator)
        };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
        assert_eq!(
            BufferAllocatorSettings::from(allocator),
            BufferAllocatorSettings::from_proximity(0x2000, 0x1000, 100)
        );
        assert_eq!(allocator.min_address, 0);
        assert_eq!(allocator.target, 0x1000, "aims at the target");
        assert_eq!(allocator.target_process_id, 0, "this process");
    }

    #[test]
    fn settings_functions_reject_null_outputs() {
        // SAFETY: every pointer is NULL, which the functions must reject.
        unsafe {
            let null = std::ptr::null_mut();
            assert_eq!(
                memory_buffers_search_settings_from_proximity(1, 1, 1, null),
                MEMORY_BUFFERS_STATUS_NULL_POINTER
            );
            assert_eq!(
                memory_buffers_allocator_settings_from_proximity(1, 1, 1, std::ptr::null_mut()),
                MEMORY_BUFFERS_STATUS_NULL_POINTER
            );
            assert_eq!(
                memory_buffers_search_settings_default(null),
                MEMORY_BUFFERS_STATUS_NULL_POINTER
            );
            assert_eq!(
                memory_buffers_allocator_settings_default(std::ptr::null_mut()),
                MEMORY_BUFFERS_STATUS_NULL_POINTER
            );
            assert_eq!(
                memory_buffers_allocation_granularity(std::ptr::null_mut()),
                MEMORY_BUFFERS_STATUS_NULL_POINTER
            );
            assert_eq!(
                memory_buffers_highest_user_address(std::ptr::null_mut()),
                MEMORY_BUFFERS_STATUS_NULL_POINTER
            );
        }
    }
}
