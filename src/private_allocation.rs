//! Private allocations: pages inside `[min, max]` owned by the caller.

use crate::error::{Error, ErrorKind};
use crate::os;
use crate::placement::PlacementRequest;
use crate::process::{self, ProcessState};
use crate::settings::BufferAllocatorSettings;

/// Read/write/execute pages mapped inside a requested range, unmapped when
/// dropped.
///
/// Obtained from [`Buffers::allocate_private_memory`](crate::Buffers::allocate_private_memory).
pub struct PrivateAllocation {
    /// The pages; `None` only while dropping.
    mapping: Option<os::OwnedMapping>,
    /// Start of the mapping; aligned to the allocation granularity.
    base_address: usize,
    /// Length of the mapping; a non-zero multiple of the granularity.
    size: usize,
    /// The process state whose address-space view recorded the mapping.
    owner: &'static ProcessState,
}

impl PrivateAllocation {
    /// Address of the first byte.
    pub fn base_address(&self) -> usize {
        self.base_address
    }

    /// Length in bytes (the requested size rounded up to the granularity).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Pointer to the first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base_address as *mut u8
    }

    /// Gives up ownership without unmapping; the pages stay mapped for the
    /// life of the process. Returns the base address.
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
    };
    let fail = |kind: ErrorKind| Error::new(kind, request.min, request.max, request.size);
    if request.max - request.min < request.rounded_size - 1 {
        return Err(fail(ErrorKind::NoSpaceInRange));
    }
    let mapping = owner
        .address_space()
        .map_nearest(placement, settings.retry_count)
        .map_err(fail)?;
    Ok(PrivateAllocation {
        base_address: mapping.address(),
        mapping: Some(mapping),
        size: request.rounded_size,
        owner,
    })
}
