//! Fuzzes nearest-first placement (`NearestCandidates`) over arbitrary
//! mapped ranges and requests near address 0, near the top of user space
//! and near `usize::MAX`, where overflow hides.
//!
//! Properties of every candidate: aligned to the granularity; the whole
//! block free and below the highest address; the leading `range_len`
//! bytes inside `[min, max]` and above the lowest address; candidates in
//! strictly increasing (distance from the pivot, address) order. When the
//! range is small enough to enumerate, the candidates are exactly the
//! feasible starts (nothing is missed).

#![no_main]

use libfuzzer_sys::fuzz_target;
use memory_buffers::internals::{MappedRanges, PlacementRequest, nearest_candidates};

/// Candidates examined per input, so that huge ranges stay fast.
const LIMIT: usize = 4096;

/// Reads integers off the front of the input, zero once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&head, rest)) => {
                self.0 = rest;
                head
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u16())
            | u64::from(self.u16()) << 16
            | u64::from(self.u16()) << 32
            | u64::from(self.u16()) << 48
    }
}

fn align_down(value: usize, granularity: usize) -> usize {
    value & !(granularity - 1)
}

/// Whether `start` is a feasible candidate, by the definition.
fn feasible(start: usize, request: &PlacementRequest, ranges: &[(usize, usize)]) -> bool {
    let Some(range_last) = start.checked_add(request.range_len - 1) else {
        return false;
    };
    let Some(block_last) = start.checked_add(request.block_len - 1) else {
        return false;
    };
    start & (request.granularity - 1) == 0
        && start >= request.min
        && start >= request.lowest_address
        && range_last <= request.max
        && block_last <= request.highest_address
        && ranges
            .iter()
            .all(|&(mapped_start, mapped_end)| mapped_end <= start || block_last < mapped_start)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let shift = u32::from(input.u8() % 17);
    let granularity = 1usize << shift;
    let highest_address = match input.u8() % 3 {
        0 => usize::MAX - 1 - usize::from(input.u16()),
        1 => (1usize << 47) - 4096 - 1,
        _ => 0x1_0000 + usize::from(input.u16()) * granularity,
    };
    // The window everything is placed in: the bottom or the top of the
    // address space, a few thousand granules wide.
    let window = granularity.saturating_mul(1 << 13);
    let near_top = input.u8() % 2 == 1;
    let window_start = if near_top {
        highest_address.saturating_sub(window)
    } else {
        0
    };
    let at = |offset: u16, input_granules: bool| -> usize {
        let offset = if input_granules {
            usize::from(offset).saturating_mul(granularity) / 8
        } else {
            usize::from(offset)
        };
        window_start.saturating_add(offset)
    };

    let range_count = input.u8() % 24;
    let mut ranges = Vec::new();
    for _ in 0..range_count {
        let start = at(input.u16(), true);
        let len = 1 + usize::from(input.u16() % 512) * granularity / 4;
        ranges.push((start, start.saturating_add(len)));
    }
    let mut mapped = MappedRanges::from_ranges(ranges.iter().copied());
    // Some ranges inserted one by one as placement learns them.
    for _ in 0..input.u8() % 4 {
        let start = at(input.u16(), true);
        let end = start.saturating_add(granularity * (1 + usize::from(input.u8() % 4)));
        mapped.insert(start, end);
        ranges.push((start, end));
    }
    ranges.retain(|&(start, end)| start < end);

    let block_len = granularity * (1 + usize::from(input.u8() % 8));
    let range_len = 1 + (input.u64() as usize) % block_len;
    let min = at(input.u16(), true);
    let span = if input.u8() % 8 == 0 {
        input.u64() as usize
    } else {
        usize::from(input.u16()).saturating_mul(granularity) / 4
    };
    let max = min.saturating_add(span);
    let lowest_address = if near_top {
        0
    } else {
        usize::from(input.u16() % 0x2000)
    };
    // Half the requests aim at a target, anywhere (inside the range or not).
    let target = (input.u8() % 2 == 0).then(|| at(input.u16(), true));
    let request = PlacementRequest {
        min,
        max,
        block_len,
        range_len,
        granularity,
        lowest_address,
        highest_address,
        target,
    };

    let pivot = request
        .pivot()
        .expect("the request meets the preconditions");
    let aim = target.map_or(min + (max - min) / 2, |target| target.clamp(min, max));
    assert_eq!(pivot, align_down(aim, granularity));
    let candidates: Vec<usize> = nearest_candidates(&mapped, &request)
        .expect("the request meets the preconditions")
        .take(LIMIT)
        .collect();
    for &start in &candidates {
        assert!(
            feasible(start, &request, &ranges),
            "infeasible candidate {start:#x} for {request:?}"
        );
        assert!(mapped.is_free(start, start + block_len));
    }
    for pair in candidates.windows(2) {
        let key = |start: usize| (start.abs_diff(pivot), start);
        assert!(
            key(pair[0]) < key(pair[1]),
            "out of order: {:#x} then {:#x}",
            pair[0],
            pair[1]
        );
    }

    // Completeness, where the feasible starts can be enumerated.
    if candidates.len() < LIMIT && (max - min) / granularity <= 1 << 14 {
        let first = align_down(min, granularity);
        let mut expected: Vec<usize> = (0..=(max - first) / granularity)
            .filter_map(|index| first.checked_add(index * granularity))
            .filter(|&start| feasible(start, &request, &ranges))
            .collect();
        expected.sort_unstable_by_key(|&start| (start.abs_diff(pivot), start));
        assert_eq!(candidates, expected, "for {request:?}");
    }
});
