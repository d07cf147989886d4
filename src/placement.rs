//! Nearest-first placement of new mappings, free of system calls.
//!
//! Given what is mapped, [`NearestCandidates`] yields every
//! granularity-aligned start address where a block fits in a free gap and its
//! leading bytes lie inside `[min, max]`, ordered by distance from the middle
//! of the range. For a proximity request the middle is the target, so a
//! trampoline lands as close to its hook as the address space allows and the
//! reach of a `jmp rel32` around the target is spent slowly. The iterator is
//! lazy: it walks outward from the target and stops as soon as the caller has
//! claimed a candidate, so its cost does not depend on the size of the map.

use crate::address::{align_down, align_up};
use crate::range_set::MappedRanges;

/// What a new mapping must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlacementRequest {
    /// Lowest address the leading `range_len` bytes may use.
    pub(crate) min: usize,
    /// Highest address (inclusive) the leading `range_len` bytes may use.
    pub(crate) max: usize,
    /// Bytes to map; all of them must lie in a free gap. A non-zero multiple
    /// of `granularity`.
    pub(crate) block_len: usize,
    /// How many leading bytes of the block must lie inside `[min, max]`;
    /// `1 ..= block_len`.
    pub(crate) range_len: usize,
    /// Alignment of every candidate; a power of two.
    pub(crate) granularity: usize,
    /// Lowest mappable address (`vm.mmap_min_addr`).
    pub(crate) lowest_address: usize,
    /// Highest user-space address (inclusive); below `usize::MAX`.
    pub(crate) highest_address: usize,
}

impl PlacementRequest {
    /// The first and last feasible start addresses, ignoring what is mapped.
    fn start_bounds(&self) -> Option<(usize, usize)> {
        let lowest = align_up(self.min.max(self.lowest_address), self.granularity)?;
        let highest_by_range = self.max.checked_sub(self.range_len - 1)?;
        let highest_by_space = self.highest_address.checked_sub(self.block_len - 1)?;
        let highest = align_down(highest_by_range.min(highest_by_space), self.granularity);
        (lowest <= highest).then_some((lowest, highest))
    }

    /// The granule containing the middle of `[min, max]`: candidates are
    /// ordered by their distance from it.
    pub(crate) fn pivot(&self) -> usize {
        align_down(self.min + (self.max - self.min) / 2, self.granularity)
    }
}

/// Candidate start addresses, nearest to the pivot first; on equal distance
/// the lower address comes first.
pub(crate) struct NearestCandidates<'a> {
    mapped: &'a MappedRanges,
    request: PlacementRequest,
    lowest: usize,
    highest: usize,
    pivot: usize,
    /// Next free candidate at or below the pivot.
    down: Option<usize>,
    /// Next free candidate above the pivot.
    up: Option<usize>,
}

impl<'a> NearestCandidates<'a> {
    pub(crate) fn new(mapped: &'a MappedRanges, request: PlacementRequest) -> Self {
        debug_assert!(request.granularity.is_power_of_two());
        debug_assert!(
            request.block_len > 0 && request.block_len.is_multiple_of(request.granularity)
        );
        debug_assert!(request.range_len >= 1 && request.range_len <= request.block_len);
        debug_assert!(request.min <= request.max && request.highest_address < usize::MAX);
        let pivot = request.pivot();
        let mut candidates = NearestCandidates {
            mapped,
            request,
            lowest: 0,
            highest: 0,
            pivot,
            down: None,
            up: None,
        };
        if let Some((lowest, highest)) = request.start_bounds() {
            candidates.lowest = lowest;
            candidates.highest = highest;
            let down = (pivot >= lowest).then(|| pivot.min(highest));
            let up = pivot
                .checked_add(request.granularity)
                .map(|above| above.max(lowest))
                .filter(|&above| above <= highest);
            candidates.down = down.and_then(|start| candidates.free_at_or_below(start));
            candidates.up = up.and_then(|start| candidates.free_at_or_above(start));
        }
        candidates
    }

    fn block_end(&self, start: usize) -> usize {
        // Cannot overflow: `start + block_len - 1 <= highest_address < usize::MAX`.
        start + self.request.block_len
    }

    /// The highest free candidate `<= start`.
    fn free_at_or_below(&self, mut start: usize) -> Option<usize> {
        loop {
            if start < self.lowest {
                return None;
            }
            match self.mapped.last_overlapping(start, self.block_end(start)) {
                None => return Some(start),
                Some((mapped_start, _)) => {
                    let below = mapped_start.checked_sub(self.request.block_len)?;
                    start = align_down(below, self.request.granularity);
                }
            }
        }
    }

    /// The lowest free candidate `>= start`.
    fn free_at_or_above(&self, mut start: usize) -> Option<usize> {
        loop {
            if start > self.highest {
                return None;
            }
            match self.mapped.last_overlapping(start, self.block_end(start)) {
                None => return Some(start),
                Some((_, mapped_end)) => start = align_up(mapped_end, self.request.granularity)?,
            }
        }
    }
}

impl Iterator for NearestCandidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let take_down = match (self.down, self.up) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(down), Some(up)) => self.pivot - down <= up - self.pivot,
        };
        let granularity = self.request.granularity;
        if take_down {
            let found = self.down?;
            self.down = found
                .checked_sub(granularity)
                .and_then(|below| self.free_at_or_below(below));
            Some(found)
        } else {
            let found = self.up?;
            self.up = found
                .checked_add(granularity)
                .and_then(|above| self.free_at_or_above(above));
            Some(found)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: usize = 0x1000;

    fn request(min: usize, max: usize, block_len: usize) -> PlacementRequest {
        PlacementRequest {
            min,
            max,
            block_len,
            range_len: block_len,
            granularity: PAGE,
            lowest_address: 0x10000,
            highest_address: 0x7fff_ffff_efff,
        }
    }

    #[test]
    fn the_targets_own_page_comes_first_when_free() {
        let mapped = MappedRanges::from_ranges([(0x40_0000, 0x40_5000), (0x40_6000, 0x50_0000)]);
        let target = 0x40_5ff0;
        let first = NearestCandidates::new(
            &mapped,
            request(target - 0x10_0000, target + 0x10_0000, PAGE),
        )
        .next();
        assert_eq!(first, Some(0x40_5000));
    }

    #[test]
    fn an_exact_fit_gap_is_used() {
        let mapped = MappedRanges::from_ranges([(0x10000, 0x80000), (0x82000, 0x100000)]);
        let mut candidates = NearestCandidates::new(&mapped, request(0x10000, 0xfffff, 0x2000));
        assert_eq!(candidates.next(), Some(0x80000));
        assert_eq!(candidates.next(), None);
    }

    #[test]
    fn nothing_below_the_lowest_mappable_address() {
        let mapped = MappedRanges::new();
        let all: Vec<_> = NearestCandidates::new(&mapped, request(0, 0x12fff, PAGE)).collect();
        assert_eq!(all.first(), Some(&0x10000));
        assert!(all.iter().all(|&start| start >= 0x10000));
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn the_top_of_user_space_is_reachable_but_not_exceeded() {
        let mapped = MappedRanges::new();
        let top = 0x7fff_ffff_efff;
        let mut candidates =
            NearestCandidates::new(&mapped, request(top - 0x3fff, usize::MAX - 1, PAGE));
        let first = candidates.next().unwrap();
        assert!(first + PAGE - 1 <= top);
        assert!(candidates.all(|start| start + PAGE - 1 <= top));
    }

    #[test]
    fn only_the_range_part_must_lie_in_range() {
        let mapped = MappedRanges::new();
        let mut narrow = request(0x20000, 0x20000 + 99, 0x4000);
        narrow.range_len = 100;
        let all: Vec<_> = NearestCandidates::new(&mapped, narrow).collect();
        assert_eq!(all, vec![0x20000]);
    }

    /// Every candidate in nearest-first order, by brute force.
    fn brute_force(mapped: &MappedRanges, request: PlacementRequest) -> Vec<usize> {
        let pivot = request.pivot();
        let mut all: Vec<usize> = (0..=request.highest_address)
            .step_by(request.granularity)
            .filter(|&start| {
                start >= request.lowest_address
                    && start >= request.min
                    && start + request.range_len - 1 <= request.max
                    && start + request.block_len - 1 <= request.highest_address
                    && mapped.is_free(start, start + request.block_len)
            })
            .collect();
        all.sort_by_key(|&start| (start.abs_diff(pivot), start));
        all
    }

    proptest! {
        #[test]
        fn matches_brute_force_order(
            ranges in proptest::collection::vec((0usize..1024, 1usize..64), 0..24),
            shift in 0u32..4,
            lowest in 0usize..64,
            min in 0usize..1100,
            span in 0usize..1100,
            block_units in 1usize..6,
            range_fraction in 1usize..=8,
        ) {
            let granularity = 1usize << shift;
            let mapped = MappedRanges::from_ranges(ranges.iter().map(|&(start, len)| (start, start + len)));
            let block_len = block_units * granularity;
            let request = PlacementRequest {
                min,
                max: min + span,
                block_len,
                range_len: (block_len * range_fraction / 8).max(1),
                granularity,
                lowest_address: lowest,
                highest_address: 1023,
            };
            let found: Vec<usize> = NearestCandidates::new(&mapped, request).collect();
            let expected = brute_force(&mapped, request);
            prop_assert_eq!(&found, &expected);
            for &start in &found {
                prop_assert_eq!(start % granularity, 0);
                prop_assert!(start >= lowest && start >= min);
                prop_assert!(mapped.is_free(start, start + block_len));
            }
        }
    }
}
