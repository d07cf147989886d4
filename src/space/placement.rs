//! Where new mappings go, free of system calls.
//!
//! Given what is mapped, the candidates are every granularity-aligned start
//! address where a block fits in a free gap and its leading bytes lie
//! inside `[min, max]`, in the order they are tried:
//!
//! - a request with a target (a proximity request) takes the free space
//!   nearest to it first ([`NearestCandidates`]). It aims at its target
//!   even where its range is cut short at 0 or at the top of user space (a
//!   function low in a 32-bit program), so a trampoline lands as close to
//!   its hook as the address space allows and the reach of a `jmp rel32`
//!   around the target is spent slowly;
//! - a plain `[min, max]` request takes the smallest free hole that holds
//!   it, against the hole's edge ([`SnugCandidates`]), so that the large
//!   holes stay whole.
//!
//! Both are lazy: they stop as soon as the caller has claimed a candidate.
use crate::space::address::{align_down, align_up};
use crate::space::range_set::MappedRanges;

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
    /// The address candidates are ordered by their distance from. `None`
    /// for a plain range: [`Candidates`] then takes the snuggest hole first,
    /// and [`NearestCandidates`] alone aims at the middle of `[min, max]`.
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
    /// one: [`NearestCandidates`] are ordered by their distance from it.
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

/// Candidates for a request, in the order the library tries them: nearest
/// to the target first when the request has one ([`NearestCandidates`]),
/// otherwise the snuggest hole first ([`SnugCandidates`]).
pub(crate) enum Candidates<'a> {
    Nearest(NearestCandidates<'a>),
    Snug(SnugCandidates<'a>),
}

impl<'a> Candidates<'a> {
    pub(crate) fn new(mapped: &'a MappedRanges, request: PlacementRequest) -> Self {
        match request.target {
            Some(_) => Candidates::Nearest(NearestCandidates::new(mapped, request)),
            None => Candidates::Snug(SnugCandidates::new(mapped, request)),
        }
    }
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Candidates::Nearest(candidates) => candidates.next(),
            Candidates::Snug(candidates) => candidates.next(),
        }
    }
}

/// A free hole of the address space: `[start, end)`, between two mappings
/// (or an end of user space), in full even where the request's range cuts
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Hole {
    /// Bytes in the hole: the key that orders holes, smallest first.
    len: usize,
    start: usize,
}

/// Where a [`SnugCandidates`] walk stands inside the hole it is using.
#[derive(Clone, Copy, Debug)]
struct HoleWalk {
    hole: Hole,
    /// The next candidate in this hole.
    next: usize,
    /// The last candidate in this hole, in walking order.
    last: usize,
    /// Whether the walk goes up from the hole's low edge (else down from
    /// its high edge).
    upward: bool,
}

/// Candidate start addresses for a request without a target: the smallest
/// free hole that holds the block comes first (on equal size, the lower
/// one), and inside a hole the block goes against one of its edges, next
/// to what is mapped there, so that what stays free stays in one piece.
///
/// This is best fit, the classic answer to fragmentation: a plain request
/// uses up a gap too small for most others and leaves the large holes
/// whole for the requests that need them. The edge is the low one where
/// the range reaches it (lowest first, as the original places), else the
/// high one; where the range lies inside a hole and reaches neither, the
/// side with less free space left outside the range. See BENCHMARKS.md
/// ("Placement policies and fragmentation, simulated") for how this
/// compares with lowest first and with aiming at the middle.
///
/// Each new hole costs a walk over the mappings inside the range, so the
/// iterator is meant for the first few candidates (the claiming loop asks a
/// fresh one for its first after every refusal).
pub(crate) struct SnugCandidates<'a> {
    mapped: &'a MappedRanges,
    request: PlacementRequest,
    /// The feasible start addresses, ignoring what is mapped.
    bounds: Option<(usize, usize)>,
    /// The hole being walked, if it has candidates left.
    walk: Option<HoleWalk>,
    /// The last hole walked: the next one is the smallest above it.
    previous: Option<Hole>,
}

impl<'a> SnugCandidates<'a> {
    pub(crate) fn new(mapped: &'a MappedRanges, request: PlacementRequest) -> Self {
        SnugCandidates {
            mapped,
            request,
            bounds: request.start_bounds(),
            walk: None,
            previous: None,
        }
    }

    /// Every free hole that some feasible start lies in, in address order:
    /// `(start, end)` with `end` exclusive, not cut at the range.
    fn holes(&self, lowest: usize, highest: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let space_end = self.request.highest_address + 1;
        // Where the hole that `lowest` may lie in begins.
        let mut free_from = match self.mapped.last_starting_below(lowest + 1) {
            Some((_, end)) => end.max(self.request.lowest_address),
            None => self.request.lowest_address,
        };
        let mut mappings = self.mapped.starting_from(lowest + 1);
        let mut finished = false;
        std::iter::from_fn(move || {
            while !finished {
                if free_from > highest || free_from >= space_end {
                    finished = true;
                    break;
                }
                let (hole_end, next_free) = match mappings.next() {
                    Some((start, end)) => (start.min(space_end), end),
                    None => {
                        finished = true;
                        (space_end, space_end)
                    }
                };
                let hole_start = free_from;
                free_from = free_from.max(next_free);
                if hole_end > hole_start {
                    return Some((hole_start, hole_end));
                }
            }
            None
        })
    }

    /// How a hole would be walked, if the block fits in it anywhere the
    /// request allows.
    fn walk_of(&self, start: usize, end: usize, lowest: usize, highest: usize) -> Option<HoleWalk> {
        let granularity = self.request.granularity;
        let low_edge = align_up(start, granularity)?;
        let high_edge = align_down(end.checked_sub(self.request.block_len)?, granularity);
        let first = low_edge.max(lowest);
        let last = high_edge.min(highest);
        if first > last || low_edge > high_edge {
            return None;
        }
        let upward = if first == low_edge {
            true
        } else if last == high_edge {
            false
        } else {
            // The range lies inside the hole: keep the larger remainder
            // outside it whole.
            first - start <= end - (last + self.request.block_len)
        };
        let hole = Hole {
            len: end - start,
            start,
        };
        Some(if upward {
            HoleWalk {
                hole,
                next: first,
                last,
                upward,
            }
        } else {
            HoleWalk {
                hole,
                next: last,
                last: first,
                upward,
            }
        })
    }

    /// The smallest hole above the last one walked that holds the block.
    fn next_hole(&self, lowest: usize, highest: usize) -> Option<HoleWalk> {
        self.holes(lowest, highest)
            .filter_map(|(start, end)| self.walk_of(start, end, lowest, highest))
            .filter(|walk| self.previous.is_none_or(|previous| walk.hole > previous))
            .min_by_key(|walk| walk.hole)
    }
}

impl Iterator for SnugCandidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let (lowest, highest) = self.bounds?;
        let mut walk = match self.walk {
            Some(walk) => walk,
            None => {
                let walk = self.next_hole(lowest, highest);
                if walk.is_none() {
                    self.bounds = None;
                }
                walk?
            }
        };
        let start = walk.next;
        if start == walk.last {
            self.previous = Some(walk.hole);
            self.walk = None;
        } else {
            let granularity = self.request.granularity;
            walk.next = if walk.upward {
                start + granularity
            } else {
                start - granularity
            };
            self.walk = Some(walk);
        }
        Some(start)
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

    #[test]
    fn a_plain_request_takes_the_smallest_hole_that_holds_it() {
        // Holes of 3, 1 and 2 pages, then free space to the top.
        let mapped = MappedRanges::from_ranges([
            (0x10000, 0x20000),
            (0x23000, 0x30000),
            (0x31000, 0x40000),
            (0x42000, 0x50000),
        ]);
        let all: Vec<_> = Candidates::new(&mapped, request(0x10000, 0x7fff_ffff, PAGE))
            .take(8)
            .collect();
        assert_eq!(
            all,
            [
                0x30000, 0x40000, 0x41000, 0x20000, 0x21000, 0x22000, 0x50000, 0x51000
            ],
            "{all:x?}"
        );
        // Two pages fit only the 2- and 3-page holes, and the open space.
        let mut two = Candidates::new(&mapped, request(0x10000, 0x7fff_ffff, 2 * PAGE));
        assert_eq!(two.next(), Some(0x40000));
        assert_eq!(two.next(), Some(0x20000));
    }

    #[test]
    fn a_wide_range_inside_one_hole_goes_against_the_mapping_that_bounds_it() {
        // A 32-bit space, free from 0x1000_0000 to the libraries at the top:
        // [0x8000_0000, top] cuts that hole's low end, so the block goes
        // against the libraries, not at 2 GiB and not at 3 GiB.
        let mapped =
            MappedRanges::from_ranges([(0x40_0000, 0x1000_0000), (0xf700_0000, 0xffff_0000)]);
        let mut wide = request(0x8000_0000, 0xfffe_ffff, 0x10000);
        wide.highest_address = 0xffff_dfff;
        let first = Candidates::new(&mapped, wide).next();
        assert_eq!(first, Some(0xf6ff_0000));
        // The smaller hole above the libraries comes first, at its low edge.
        let mapped =
            MappedRanges::from_ranges([(0x40_0000, 0x1000_0000), (0xf700_0000, 0xf800_0000)]);
        assert_eq!(Candidates::new(&mapped, wide).next(), Some(0xf800_0000));
        // A gap between two libraries that holds the block is smaller still.
        let mapped = MappedRanges::from_ranges([
            (0x40_0000, 0x1000_0000),
            (0xf700_0000, 0xf710_0000),
            (0xf712_0000, 0xf800_0000),
        ]);
        assert_eq!(Candidates::new(&mapped, wide).next(), Some(0xf710_0000));
        // With no mapping against either end, the side with less left
        // outside the range is used: here the low one.
        let empty = MappedRanges::new();
        let mut inside = request(0x3000, 0x8fff, PAGE);
        inside.lowest_address = 0x1000;
        assert_eq!(Candidates::new(&empty, inside).next(), Some(0x3000));
        // Nearer the top of the hole, the high side.
        let mut high = request(crate::TEST_TOP - 0x8fff, crate::TEST_TOP - 0x3000, PAGE);
        high.lowest_address = 0x1000;
        assert_eq!(
            Candidates::new(&empty, high).next(),
            Some(crate::TEST_TOP - 0x3fff)
        );
    }

    #[test]
    fn a_request_with_a_target_still_takes_the_nearest_space() {
        let mapped = MappedRanges::from_ranges([(0x40_0000, 0x50_0000), (0x60_0000, 0x60_1000)]);
        let mut aimed = request(0x10000, 0x7fff_ffff, PAGE);
        aimed.target = Some(0x40_0100);
        assert_eq!(Candidates::new(&mapped, aimed).next(), Some(0x3f_f000));
    }

    /// Every candidate of a plain request in snug order, by brute force:
    /// each feasible start with the hole it lies in, holes smallest first,
    /// each walked from the edge the rule picks.
    fn brute_force_snug(mapped: &MappedRanges, request: PlacementRequest) -> Vec<usize> {
        let Some((lowest, highest)) = request.start_bounds() else {
            return Vec::new();
        };
        let granularity = request.granularity;
        let free = |address: usize| {
            address >= request.lowest_address
                && address <= request.highest_address
                && mapped.is_free(address, address + 1)
        };
        let mut keyed = Vec::new();
        for start in (lowest..=highest).step_by(granularity) {
            if !mapped.is_free(start, start + request.block_len) {
                continue;
            }
            let mut hole_start = start;
            while hole_start > 0 && free(hole_start - 1) {
                hole_start -= 1;
            }
            let mut hole_end = start + request.block_len;
            while free(hole_end) {
                hole_end += 1;
            }
            keyed.push((hole_end - hole_start, hole_start, hole_end, start));
        }
        keyed.sort_unstable();
        let mut order = Vec::new();
        for chunk in keyed.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let (_, hole_start, hole_end, _) = chunk[0];
            let starts: Vec<usize> = chunk.iter().map(|entry| entry.3).collect();
            let (first, last) = (starts[0], starts[starts.len() - 1]);
            let low_edge = hole_start.div_ceil(granularity) * granularity;
            let high_edge = (hole_end - request.block_len) / granularity * granularity;
            let upward = first == low_edge
                || (last != high_edge
                    && first - hole_start <= hole_end - (last + request.block_len));
            if upward {
                order.extend(starts);
            } else {
                order.extend(starts.into_iter().rev());
            }
        }
        order
    }

    prop_compose! {
        /// Mappings somewhere in a 1 KiB space and a request in it, with
        /// granularities of 1 to 8 bytes: small enough for brute force.
        fn layout_and_request()(
            ranges in proptest::collection::vec((0usize..1024, 1usize..64), 0..24),
            shift in 0u32..4,
            lowest in 0usize..64,
            min in 0usize..1100,
            span in 0usize..1100,
            block_units in 1usize..6,
            range_fraction in 1usize..=8,
        ) -> (MappedRanges, PlacementRequest) {
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
            (mapped, request)
        }
    }

    proptest! {
        #[test]
        fn snug_order_matches_brute_force((mapped, request) in layout_and_request()) {
            let found: Vec<usize> = Candidates::new(&mapped, request).collect();
            prop_assert_eq!(&found, &brute_force_snug(&mapped, request));
        }

        #[test]
        fn matches_brute_force_order((mapped, request) in layout_and_request()) {
            let (granularity, lowest, min, block_len) =
                (request.granularity, request.lowest_address, request.min, request.block_len);
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
