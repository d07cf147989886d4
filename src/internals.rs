//! Pure internals exposed to fuzz targets (feature `internals`); not a stable API.
//!
//! The maps parser, the placement arithmetic and the request validation are
//! plain functions over plain data, which makes them good fuzzing targets,
//! but they are `pub(crate)` so that the public API stays small. This module
//! re-exports the plain data types as they are (`MapsEntry`, `Access`,
//! `ValidRequest`) and forwards to the functions, for the fuzz targets in
//! `fuzz/`, the benchmarks and the inspector. Two types are wrapped instead:
//! `PlacementRequest`, whose wrapper checks the preconditions the crate's
//! callers always meet but arbitrary input does not, and `MappedRanges`,
//! whose wrapper offers only the queries those tools need. Nothing here is
//! covered by semver.

use crate::error::{Error, InvalidRequest};
use crate::settings::{BufferAllocatorSettings, BufferSearchSettings};
use crate::space::{address, maps, placement, range_set};
use std::io;
use std::ops::ControlFlow;

pub use crate::space::maps::{Access, MapsEntry};

/// Parses one maps line (without its newline); `None` if malformed.
pub fn parse_maps_line(line: &[u8]) -> Option<MapsEntry> {
    maps::parse_maps_line(line)
}

/// Reads maps text through `read` and visits every well-formed line; see
/// `maps::for_each_entry`.
///
/// # Errors
///
/// The first error `read` returns other than `Interrupted`.
pub fn for_each_entry(
    read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    buffer: &mut Vec<u8>,
    visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> io::Result<()> {
    maps::for_each_entry(read, buffer, visit)
}

/// Disjoint address ranges believed mapped (see `range_set::MappedRanges`).
#[derive(Clone, Debug, Default)]
pub struct MappedRanges(range_set::MappedRanges);

impl MappedRanges {
    /// Builds the set from half-open ranges in any order; empty or reversed
    /// ranges are dropped and overlapping ones merged.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        MappedRanges(range_set::MappedRanges::from_ranges(ranges))
    }

    /// Marks `[start, end)` as mapped.
    pub fn insert(&mut self, start: usize, end: usize) {
        self.0.insert(start, end);
    }

    /// Marks `[start, end)` as free.
    pub fn remove(&mut self, start: usize, end: usize) {
        self.0.remove(start, end);
    }

    /// Whether `[start, end)` overlaps nothing in the set.
    pub fn is_free(&self, start: usize, end: usize) -> bool {
        self.0.last_overlapping(start, end).is_none()
    }

    /// Number of disjoint ranges.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// The disjoint ranges, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.0.iter()
    }
}

/// What a new mapping must satisfy (see `placement::PlacementRequest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacementRequest {
    /// Lowest address the leading `range_len` bytes may use.
    pub min: usize,
    /// Highest address (inclusive) the leading `range_len` bytes may use.
    pub max: usize,
    /// Bytes to map: a non-zero multiple of `granularity`.
    pub block_len: usize,
    /// Leading bytes that must lie inside `[min, max]`: `1 ..= block_len`.
    pub range_len: usize,
    /// Alignment of every candidate: a power of two.
    pub granularity: usize,
    /// Lowest mappable address.
    pub lowest_address: usize,
    /// Highest user-space address (inclusive): below `usize::MAX`.
    pub highest_address: usize,
    /// Where candidates are ordered around. Without one, [`candidates`]
    /// takes the snuggest hole first and [`nearest_candidates`] aims at the
    /// middle of the range.
    pub target: Option<usize>,
}

impl PlacementRequest {
    /// The request as the crate sees it, if it meets the documented
    /// preconditions of `NearestCandidates::new` (which the crate's callers
    /// always meet: they build requests from validated settings).
    fn checked(&self) -> Option<placement::PlacementRequest> {
        let valid = self.granularity.is_power_of_two()
            && self.block_len > 0
            && self.block_len & (self.granularity - 1) == 0
            && (1..=self.block_len).contains(&self.range_len)
            && self.min <= self.max
            && self.highest_address < usize::MAX;
        valid.then_some(placement::PlacementRequest {
            min: self.min,
            max: self.max,
            block_len: self.block_len,
            range_len: self.range_len,
            granularity: self.granularity,
            lowest_address: self.lowest_address,
            highest_address: self.highest_address,
            target: self.target,
        })
    }

    /// The granule candidates are ordered around, if the request is valid.
    pub fn pivot(&self) -> Option<usize> {
        self.checked().map(|request| request.pivot())
    }
}

/// Candidate start addresses for `request` around `mapped`, nearest to the
/// pivot first; `None` if the request breaks its preconditions.
pub fn nearest_candidates<'a>(
    mapped: &'a MappedRanges,
    request: &PlacementRequest,
) -> Option<impl Iterator<Item = usize> + 'a> {
    Some(placement::NearestCandidates::new(
        &mapped.0,
        request.checked()?,
    ))
}

/// Candidate start addresses for `request` around `mapped`, in the order
/// the library tries them: nearest to the target first with one, the
/// smallest hole that holds the block first without; `None` if the request
/// breaks its preconditions.
pub fn candidates<'a>(
    mapped: &'a MappedRanges,
    request: &PlacementRequest,
) -> Option<impl Iterator<Item = usize> + 'a> {
    Some(placement::Candidates::new(&mapped.0, request.checked()?))
}

pub use crate::space::address::ValidRequest;

/// Checks a `[min, max]` / `size` request (see `address::validate_request`).
///
/// # Errors
///
/// Why the request is invalid.
pub fn validate_request(
    min: usize,
    max: usize,
    size: usize,
    granularity: usize,
    highest_user_address: usize,
) -> Result<ValidRequest, InvalidRequest> {
    address::validate_request(min, max, size, granularity, highest_user_address)
}

/// Checks an alignment against the granularity.
///
/// # Errors
///
/// Why the alignment is invalid.
pub fn validate_alignment(alignment: usize, granularity: usize) -> Result<(), InvalidRequest> {
    address::validate_alignment(alignment, granularity)
}

/// `[target - proximity, target + proximity]`, saturating.
pub fn proximity_range(
    proximity: usize,
    target: usize,
    highest_user_address: usize,
) -> (usize, usize) {
    address::proximity_range(proximity, target, highest_user_address)
}

/// Validates allocator settings as `Buffers::allocate_private_memory` does.
///
/// # Errors
///
/// The error the allocation would return before any system call.
pub fn validate_allocator_settings(
    settings: &BufferAllocatorSettings,
) -> Result<ValidRequest, Error> {
    settings.validate()
}

/// Validates search settings as `Buffers::get_buffer` does.
///
/// # Errors
///
/// The error the request would return before any system call.
pub fn validate_search_settings(settings: &BufferSearchSettings) -> Result<ValidRequest, Error> {
    settings.validate()
}

/// The lowest address a mapping may start at in this process
/// (`vm.mmap_min_addr` on Linux, 64 KiB on Windows).
pub fn lowest_mappable_address() -> usize {
    crate::os::lowest_mappable_address()
}

/// The binary layout of a locator (`FORMAT.md`), as byte offsets for code
/// that decodes a copy of a locator's bytes (the inspector reads another
/// process's locators this way). Taken from the library's own packed
/// structs, so they cannot drift from what the library writes.
pub mod layout {
    use crate::shared::layout::{self, LocatorHeader, LocatorItem};
    use std::mem::{offset_of, size_of};

    /// Size of every locator in bytes.
    pub const LOCATOR_SIZE: usize = layout::LOCATOR_SIZE;
    /// Items one locator holds.
    pub const MAX_ITEMS: usize = layout::MAX_ITEMS;
    /// Size of the locator header.
    pub const HEADER_SIZE: usize = size_of::<LocatorHeader>();
    /// Size of one item; items follow the header back to back.
    pub const ITEM_SIZE: usize = size_of::<LocatorItem>();
    /// Header: where the first instance mapped the locator (pointer).
    pub const THIS_ADDRESS: usize = offset_of!(LocatorHeader, this_address);
    /// Header: the next locator of the chain, 0 if none (pointer).
    pub const NEXT_LOCATOR: usize = offset_of!(LocatorHeader, next_locator);
    /// Header: the header lock (u32, 0 free, 1 held).
    pub const LOCK: usize = offset_of!(LocatorHeader, lock);
    /// Header: flags (u8; low 3 bits the version, 0).
    pub const FLAGS: usize = offset_of!(LocatorHeader, flags);
    /// Header: number of items in use (u8).
    pub const ITEM_COUNT: usize = offset_of!(LocatorHeader, item_count);
    /// Header: reserved bytes, 0 (2 bytes).
    pub const RESERVED: usize = offset_of!(LocatorHeader, reserved);
    /// Item: base address of the buffer (pointer, unaligned).
    pub const ITEM_BASE_ADDRESS: usize = offset_of!(LocatorItem, base_address);
    /// Item: size in bytes (u32).
    pub const ITEM_SIZE_FIELD: usize = offset_of!(LocatorItem, size);
    /// Item: bytes used (u32).
    pub const ITEM_POSITION: usize = offset_of!(LocatorItem, position);
    /// Item: 0 free, 1 taken (u32).
    pub const ITEM_TAKEN: usize = offset_of!(LocatorItem, taken);
    /// Mask of the version bits in the flags.
    pub const VERSION_MASK: u8 = 0b111;
    /// Most bytes one ready-made buffer of a first locator gets.
    pub const READY_MADE_BUFFER_SIZE: usize = layout::READY_MADE_BUFFER_SIZE;
}

/// The rendezvous file of process `pid`, as the library looks for it:
/// `/tmp/.reloaded/memory.buffers/Reloaded.Memory.Buffers.MemoryBuffer, PID <pid>`.
#[cfg(all(linux_like, not(memory_buffers_unsupported)))]
pub fn rendezvous_path(pid: u32) -> std::path::PathBuf {
    let mut path = std::path::PathBuf::from(crate::shared::rendezvous::backend::RENDEZVOUS_BASE);
    path.extend(crate::shared::rendezvous::backend::DIRECTORY_COMPONENTS);
    path.push(crate::shared::rendezvous::backend::file_name(pid));
    path
}

/// The library's rule for a directory on the rendezvous path (see
/// `rendezvous::directory_is_trusted`): may a directory with this owner and
/// mode (`st_mode`) hold the files of `user`?
#[cfg(all(linux_like, not(memory_buffers_unsupported)))]
pub fn rendezvous_directory_is_trusted(owner: u32, mode: u32, user: u32) -> bool {
    crate::shared::rendezvous::backend::directory_is_trusted(
        &file_status(owner, mode, 0, 0, 0),
        user,
    )
}

/// The library's rule for a rendezvous file's *this address* (see
/// `rendezvous::is_locator_mapping`): is `entry`, the maps line containing
/// `this_address`, the live mapping of the file with this device and inode?
#[cfg(all(linux_like, not(memory_buffers_unsupported)))]
pub fn is_rendezvous_mapping(
    entry: &MapsEntry,
    this_address: usize,
    dev_major: u32,
    dev_minor: u32,
    inode: u64,
) -> bool {
    let file = file_status(0, 0, dev_major, dev_minor, inode);
    crate::shared::rendezvous::backend::is_locator_mapping(entry, this_address, &file)
}

#[cfg(all(linux_like, not(memory_buffers_unsupported)))]
fn file_status(
    owner: u32,
    mode: u32,
    dev_major: u32,
    dev_minor: u32,
    inode: u64,
) -> crate::os::FileStatus {
    crate::os::FileStatus {
        kind: crate::os::FileKind::Other,
        owner,
        mode,
        size: 0,
        dev_major,
        dev_minor,
        inode,
    }
}

/// The named section of process `pid`:
/// `/Reloaded.Memory.Buffers.MemoryBuffer, PID <pid>`.
#[cfg(all(windows, not(memory_buffers_unsupported)))]
pub fn rendezvous_section_name(pid: u32) -> String {
    crate::shared::rendezvous::backend::section_name(pid)
}
