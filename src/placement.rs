//! Nearest-first placement of new mappings, free of system calls.
//!
//! Given what is mapped, [`NearestCandidates`] yields every
//! granularity-aligned start address where a block fits in a free gap and its
//! leading bytes lie inside `[min, max]`, ordered by distance from the target
//! of the request (the middle of the range without one). A proximity
//! request aims at its target even where its range is cut short at 0 or at
//! the top of user space (a function low in a 32-bit program), so a
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
    /// The address candidates are ordered by their distance from; the
    /// middle of `[min, max]` when `None`.
    pub(crate) target: Option<usize>,
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

    /// The granule containing the target (a target outside the range
    /// counts as its nearest end), or the middle of `[min, max]` without
    /// one: candidates are ordered by their distance from it. (Lowest
    /// first, as the original places plain ranges, was tried: a simulated
    /// 32-bit space kept no larger holes with it and hooks of a low
    /// executable got memory farther away, see BENCHMARKS.md, and under
    /// Wine a range from 3 GiB to the top found no block the middle finds.)
    pub(crate) fn pivot(&self) -> usize {
        let aim = match self.target {
            Some(target) => target.clamp(self.min, self.max),
            None => self.min + (self.max - self.min) / 2,
        };
        align_down(aim, self.granularity)
    }
}

/// Where one side of the outward walk stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cursor {
    /// No candidates left on this side.
    Done,
    /// This start address is a free candidate.
    Free(usize),
    /// No free candidate lies between the pivot and this start address; the
    /// search on this side continues here.
    Searching(usize),
}

/// Candidate start addresses, nearest to the pivot first; on equal distance
/// the lower address comes first.
///
/// Each side of the pivot is searched one mapped range at a time, and only
/// as far as the other side's best candidate: a side crowded with gaps too
/// small for the block costs nothing while the other side has a nearer
/// fit.
pub(crate) struct NearestCandidates<'a> {
    mapped: &'a MappedRanges,
    request: PlacementRequest,
    lowest: usize,
    highest: usize,
    pivot: usize,
    /// The walk at or below the pivot.
    down: Cursor,
    /// The walk above the pivot.
    up: Cursor,
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
            down: Cursor::Done,
            up: Cursor::Done,
        };
        if let Some((lowest, highest)) = request.start_bounds() {
            candidates.lowest = lowest;
            candidates.highest = highest;
            if pivot >= lowest {
                candidates.down = Cursor::Searching(pivot.min(highest));
            }
            if let Some(above) = pivot.checked_add(request.granularity) {
                let above = above.max(lowest);
                if above <= highest {
                    candidates.up = Cursor::Searching(above);
                }
            }
        }
        candidates
    }

    fn block_end(&self, start: usize) -> usize {
        // Cannot overflow: `start + block_len - 1 <= highest_address < usize::MAX`.
        start + self.request.block_len
    }

    /// One step of the downward walk from `start`: a free candidate, or
    /// where to continue below the mapping in the way.
    fn step_down(&self, start: usize) -> Cursor {
        if start < self.lowest {
            return Cursor::Done;
        }
        match self.mapped.last_overlapping(start, self.block_end(start)) {
            None => Cursor::Free(start),
            Some((mapped_start, _)) => match mapped_start.checked_sub(self.request.block_len) {
                Some(below) => Cursor::Searching(align_down(below, self.request.granularity)),
                None => Cursor::Done,
            },
        }
    }

    /// One step of the upward walk from `start`.
    fn step_up(&self, start: usize) -> Cursor {
        if start > self.highest {
            return Cursor::Done;
        }
        match self.mapped.last_overlapping(start, self.block_end(start)) {
            None => Cursor::Free(start),
            Some((_, mapped_end)) => match align_up(mapped_end, self.request.granularity) {
                Some(above) => Cursor::Searching(above),
                None => Cursor::Done,
            },
        }
    }

    fn yield_down(&mut self, start: usize) -> Option<usize> {
        self.down = match start.checked_sub(self.request.granularity) {
            Some(below) => Cursor::Searching(below),
            None => Cursor::Done,
        };
        Some(start)
    }

    fn yield_up(&mut self, start: usize) -> Option<usize> {
        self.up = match start.checked_add(self.request.granularity) {
            Some(above) => Cursor::Searching(above),
            None => Cursor::Done,
        };
        Some(start)
    }
}

impl Iterator for NearestCandidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        // Distances from the pivot: down positions are at or below it, up
        // positions above it. A `Searching` position bounds every remaining
        // candidate on its side from below; ties go to the lower address.
        loop {
            let pivot = self.pivot;
            match (self.down, self.up) {
                (Cursor::Done, Cursor::Done) => return None,
                (Cursor::Free(down), Cursor::Done) => return self.yield_down(down),
                (Cursor::Done, Cursor::Free(up)) => return self.yield_up(up),
                (Cursor::Free(down), Cursor::Free(up)) => {
                    return if pivot - down <= up - pivot {
                        self.yield_down(down)
                    } else {
                        self.yield_up(up)
                    };
                }
                (Cursor::Searching(down), Cursor::Free(up)) if pivot - down > up - pivot => {
                    return self.yield_up(up);
                }
                (Cursor::Free(down), Cursor::Searching(up)) if up - pivot >= pivot - down => {
                    return self.yield_down(down);
                }
                (Cursor::Searching(down), Cursor::Searching(up)) if up - pivot < pivot - down => {
                    self.up = self.step_up(up);
                }
                (Cursor::Searching(down), _) => self.down = self.step_down(down),
                (_, Cursor::Searching(up)) => self.up = self.step_up(up),
            }
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
            highest_address: crate::TEST_TOP,
            target: None,
        }
    }

    #[test]
    fn the_targets_own_page_comes_first_when_free() {
        let mapped = MappedRanges::from_ranges([(0x40_0000, 0x40_5000), (0x40_6000, 0x50_0000)]);
        let target = 0x40_5ff0;
        let mut aimed = request(target - 0x10_0000, target + 0x10_0000, PAGE);
        aimed.target = Some(target);
        let first = NearestCandidates::new(&mapped, aimed).next();
        assert_eq!(first, Some(0x40_5000));
    }

    #[test]
    fn a_proximity_range_cut_at_0_still_aims_at_its_target() {
        // A function low in a 32-bit program, ±1 GiB: the range is
        // [0, target + 1 GiB], whose middle is far from the target.
        let target = 0x40_2100;
        let mapped = MappedRanges::from_ranges([(0x40_0000, 0x50_0000)]);
        let mut aimed = request(0, target + (1 << 30), PAGE);
        aimed.target = Some(target);
        let first = NearestCandidates::new(&mapped, aimed).next().unwrap();
        assert_eq!(first, 0x3f_f000, "the page right below the image");
        // Without a target, the middle of the range is where it aims.
        let middle = NearestCandidates::new(&mapped, request(0, target + (1 << 30), PAGE))
            .next()
            .unwrap();
        assert_eq!(middle, align_down((target + (1 << 30)) / 2, PAGE));
        // A target outside the range aims at the range's nearest end.
        let mut beyond = request(0x100_0000, 0x200_0000, PAGE);
        beyond.target = Some(0x4000_0000);
        let first = NearestCandidates::new(&mapped, beyond).next();
        assert_eq!(first, Some(0x200_0000 - PAGE));
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
    fn the_top_of_a_32_bit_space_is_reachable_and_nothing_wraps_past_it() {
        let mapped = MappedRanges::from_ranges([(0xfff0_0000, 0xfffe_0000)]);
        for top in [0xfffe_ffff_usize, 0xffff_dfff] {
            let mut above_2_gib = request(0x8000_0000, 0xffff_ffff, PAGE);
            above_2_gib.highest_address = top;
            let all: Vec<_> = NearestCandidates::new(&mapped, above_2_gib).collect();
            assert!(!all.is_empty(), "top {top:#x}");
            for &start in &all {
                assert!(
                    start >= 0x8000_0000 && start <= top - (PAGE - 1),
                    "{start:#x}"
                );
                assert!(
                    start + PAGE <= 0xfff0_0000 || start >= 0xfffe_0000,
                    "{start:#x}"
                );
            }
            assert!(
                all.contains(&(0xfffe_0000)),
                "the block above the mapping, top {top:#x}"
            );
        }
    }

    #[test]
    fn the_top_of_user_space_is_reachable_but_not_exceeded() {
        let mapped = MappedRanges::new();
        let top = crate::TEST_TOP;
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
                target: None,
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
