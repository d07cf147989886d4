//! Private allocations through the public API: placement inside
//! `[min, max]`, nearest to the target first, because a hook's trampoline
//! must stay within a short jump of the function it hooks and reach around
//! it is spent slowly that way.
//!
//! A binary of its own: its tests read the address map and punch holes in
//! it, so they must not see other tests' mappings come and go.

use memory_buffers::{
    BufferAllocatorSettings, Buffers, ErrorKind, InvalidRequest, allocation_granularity,
    highest_user_address,
};
use std::sync::Mutex;
use support::{RegionWithHole, is_mapped};

mod support;

/// Tests that read `/proc/self/maps` or punch holes must not see other tests'
/// mappings come and go (another test near the same target would take a page
/// the moment it is freed), so every test in this file runs alone.
static MAPPING_SENSITIVE: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    MAPPING_SENSITIVE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const GIB: usize = 1 << 30;

fn a_function_of_this_binary() -> usize {
    a_function_of_this_binary as *const () as usize
}

#[test]
fn allocates_inside_the_first_two_gib() {
    let _alone = alone();
    let settings = BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096);
    let allocation = Buffers::allocate_private_memory(&settings).unwrap();
    assert!(allocation.base_address() + allocation.size() - 1 <= 0x7fff_ffff);
    assert_eq!(allocation.base_address() % allocation_granularity(), 0);
}

#[test]
fn allocates_within_one_gib_of_a_function() {
    let _alone = alone();
    let target = a_function_of_this_binary();
    let settings = BufferAllocatorSettings::from_proximity(GIB, target, 4096);
    let allocation = Buffers::allocate_private_memory(&settings).unwrap();
    let start = allocation.base_address();
    let end = start + allocation.size() - 1;
    assert!(
        // Saturating: a 32-bit program's code lies below 1 GiB.
        start >= target.saturating_sub(GIB) && end <= target.saturating_add(GIB),
        "{allocation:?} target {target:#x}"
    );
    // Nearest first: with free space around any binary, the allocation is
    // far closer than the limit.
    assert!(
        start.abs_diff(target) < 64 << 20,
        "{allocation:?} target {target:#x}"
    );
}

#[test]
fn allocates_near_the_top_of_user_space() {
    let _alone = alone();
    let top = highest_user_address();
    if let Some(reason) = support::top_of_user_space_unreachable() {
        support::skip::skip(reason);
        return;
    }
    let settings = BufferAllocatorSettings::new(top - GIB, usize::MAX, 8192);
    let allocation = Buffers::allocate_private_memory(&settings).unwrap();
    assert!(allocation.base_address() >= top - GIB);
    assert!(allocation.base_address() + allocation.size() - 1 <= top);
    assert_eq!(
        allocation.size(),
        8192usize.next_multiple_of(allocation_granularity())
    );
}

#[test]
fn two_hundred_allocations_near_one_target_are_distinct_and_in_range() {
    let _alone = alone();
    let target = a_function_of_this_binary();
    let settings = BufferAllocatorSettings::from_proximity(GIB, target, 100);
    let allocations: Vec<_> = (0..200)
        .map(|_| Buffers::allocate_private_memory(&settings).unwrap())
        .collect();
    let mut ranges: Vec<(usize, usize)> = allocations
        .iter()
        .map(|allocation| {
            (
                allocation.base_address(),
                allocation.base_address() + allocation.size(),
            )
        })
        .collect();
    ranges.sort_unstable();
    for window in ranges.windows(2) {
        assert!(window[0].1 <= window[1].0, "overlap: {window:x?}");
    }
    for &(start, end) in &ranges {
        assert!(start >= settings.min_address && end - 1 <= settings.max_address);
        assert_eq!(end - start, allocation_granularity());
    }
    // Nearest first keeps them packed around the target.
    let farthest = ranges
        .iter()
        .map(|&(start, _)| start.abs_diff(target))
        .max()
        .unwrap();
    assert!(farthest < 64 << 20, "farthest {farthest:#x}");
}

#[test]
fn a_dropped_allocation_is_gone_from_the_address_space() {
    let _alone = alone();
    let settings =
        BufferAllocatorSettings::from_proximity(GIB, a_function_of_this_binary(), 3 * 4096);
    let allocation = Buffers::allocate_private_memory(&settings).unwrap();
    let (start, end) = (
        allocation.base_address(),
        allocation.base_address() + allocation.size(),
    );
    assert!(is_mapped(start, end));
    drop(allocation);
    assert!(!is_mapped(start, end));
}

#[test]
fn the_hole_next_to_the_target_is_taken_first() {
    let _alone = alone();
    let page = allocation_granularity();
    // Make the library read the address map now, so that no first read can
    // fall between the two calls below and see the region without its hole.
    drop(Buffers::allocate_private_memory(&BufferAllocatorSettings::default()).unwrap());
    // The system's own allocations (Wine's heap, the harness's threads) may
    // take the hole between its making and the request: a try where the
    // hole is someone else's afterwards says nothing, and is made again.
    for _ in 0..5 {
        // Map 64 granules somewhere, leaving the middle one free.
        let region = RegionWithHole::new(64, page);
        let hole = region.hole;
        let target = hole + page / 2;
        // Keep the range centred on the target: Windows maps the region
        // low, where ±1 GiB would be cut off at 0, and a 32-bit Linux
        // process high, where it would be cut off at the top of user space.
        let reach = GIB
            .min(target - page)
            .min(memory_buffers::highest_user_address() - target);
        let allocation = Buffers::allocate_private_memory(
            &BufferAllocatorSettings::from_proximity(reach, target, page),
        );
        let base = allocation
            .as_ref()
            .map(|allocation| allocation.base_address())
            .map_err(|error| *error);
        drop(allocation);
        let taken_by_another = base != Ok(hole) && is_mapped(hole, hole + page);
        drop(region);
        if !taken_by_another {
            assert_eq!(base, Ok(hole));
            return;
        }
    }
    panic!("the hole was taken by another mapping in each of 5 tries");
}

#[test]
fn the_memory_is_readable_writable_and_released() {
    let _alone = alone();
    let allocation = Buffers::allocate_private_memory(&BufferAllocatorSettings::default()).unwrap();
    let pointer = allocation.as_ptr();
    // SAFETY: the allocation owns `size` bytes of read/write memory.
    unsafe {
        pointer.write_bytes(0xab, allocation.size());
        assert_eq!(*pointer.add(allocation.size() - 1), 0xab);
    }
}

fn invalid(settings: BufferAllocatorSettings) -> Option<InvalidRequest> {
    let error = Buffers::allocate_private_memory(&settings).unwrap_err();
    assert_eq!(
        (error.min_address(), error.max_address(), error.size()),
        (settings.min_address, settings.max_address, settings.size),
        "the error names the request"
    );
    assert!(!error.to_string().is_empty());
    error.invalid_request()
}

#[test]
fn every_invalid_request_returns_its_documented_error() {
    let _alone = alone();
    let base = BufferAllocatorSettings::default();
    assert_eq!(
        invalid(BufferAllocatorSettings::new(
            base.min_address,
            base.max_address,
            0
        )),
        Some(InvalidRequest::ZeroSize)
    );
    assert_eq!(
        invalid(BufferAllocatorSettings::new(
            base.min_address,
            usize::MAX,
            usize::MAX
        )),
        Some(InvalidRequest::SizeTooLarge)
    );
    assert_eq!(
        invalid(BufferAllocatorSettings::new(0x2000, 0x1000, base.size)),
        Some(InvalidRequest::MinAboveMax)
    );
    assert_eq!(
        invalid(BufferAllocatorSettings::new(0x10_0000, 0x10_0000 + 99, 101)),
        Some(InvalidRequest::RangeSmallerThanSize)
    );
    assert_eq!(
        invalid(BufferAllocatorSettings::new(usize::MAX - 10, usize::MAX, 1)),
        Some(InvalidRequest::RangeAboveUserSpace)
    );
}

#[test]
fn a_range_without_a_free_page_reports_no_space() {
    let _alone = alone();
    // Page-sized range starting mid-page: no aligned page fits in it.
    let target = a_function_of_this_binary();
    let settings =
        BufferAllocatorSettings::new((target & !0xfff) + 1, (target & !0xfff) + 4096, 4096)
            .with_retry_count(1);
    let error = Buffers::allocate_private_memory(&settings).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoSpaceInRange);
}

#[test]
fn a_max_above_user_space_is_clamped() {
    let _alone = alone();
    let allocation =
        Buffers::allocate_private_memory(&BufferAllocatorSettings::new(0, usize::MAX, 4096))
            .unwrap();
    assert!(allocation.base_address() + allocation.size() - 1 <= highest_user_address());
}
