//! The free address ranges near `--near` in which a new buffer could be
//! placed, free of system calls.
//!
//! The mapped ranges come from the other process (`/proc/<pid>/maps`, or a
//! `VirtualQueryEx` walk); merging them and choosing the place of a new
//! buffer reuse the library's own code (`memory_buffers::internals`), so the
//! inspector predicts what `get_buffer` would do in that process, not what a
//! second implementation would.

use memory_buffers::BufferSearchSettings;
use memory_buffers::internals::{self, MappedRanges, PlacementRequest};

/// What to look for: a new buffer of `size` bytes within `reach` bytes of
/// `near`, as `BufferSearchSettings::from_proximity(reach, near, size)`
/// asks, or without `reach` within `rel32` reach of `near`, as
/// `BufferSearchSettings::within_rel32_reach(near, size)` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Query {
    pub(crate) near: usize,
    pub(crate) reach: Option<usize>,
    pub(crate) size: usize,
}

/// The address-space facts of the other process that placement needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Space {
    /// Allocation granularity (page size; 64 KiB on Windows).
    pub(crate) granularity: usize,
    /// Lowest mappable address.
    pub(crate) lowest: usize,
    /// Highest user-space address (inclusive).
    pub(crate) highest: usize,
}

/// A free, granularity-aligned range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FreeRange {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl FreeRange {
    /// Signed offset from `near` to the nearest byte of the range (0 if it
    /// contains `near`).
    pub(crate) fn distance_from(&self, near: usize) -> i128 {
        signed_distance(near, self.start, self.end)
    }
}

/// Signed offset from `near` to the nearest byte of `[start, end)`.
pub(crate) fn signed_distance(near: usize, start: usize, end: usize) -> i128 {
    if near < start {
        start as i128 - near as i128
    } else if near >= end {
        (end as i128 - 1) - near as i128
    } else {
        0
    }
}

/// What the query found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// `[min, max]` of the query (inclusive), clamped to user space.
    pub(crate) min: usize,
    pub(crate) max: usize,
    /// The size a new buffer would have: `size` rounded up to the
    /// granularity.
    pub(crate) block_len: usize,
    /// Free ranges inside `[min, max]` that can hold a block, nearest to
    /// `near` first, at most `limit` of them.
    pub(crate) ranges: Vec<FreeRange>,
    /// All such ranges, of which `ranges` are the nearest.
    pub(crate) total_ranges: usize,
    /// Where the library would map a new buffer: its nearest candidate.
    pub(crate) next_buffer_at: Option<usize>,
}

/// Why the query cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InvalidQuery(pub(crate) String);

/// Finds the free ranges near `query.near` given what is `mapped`.
pub(crate) fn free_ranges_near(
    mapped: &[(usize, usize)],
    query: Query,
    space: Space,
    limit: usize,
) -> Result<Placement, InvalidQuery> {
    let (min, max) = match query.reach {
        Some(reach) => internals::proximity_range(reach, query.near, space.highest),
        None => {
            let settings = BufferSearchSettings::within_rel32_reach(query.near, query.size);
            (settings.min_address, settings.max_address)
        }
    };
    let request =
        internals::validate_request(min, max, query.size, space.granularity, space.highest)
            .map_err(|why| InvalidQuery(format!("{why}")))?;
    let mapped = MappedRanges::from_ranges(mapped.iter().copied());
    let placement = PlacementRequest {
        min: request.min,
        max: request.max,
        block_len: request.rounded_size,
        range_len: request.size,
        granularity: space.granularity,
        lowest_address: space.lowest,
        highest_address: space.highest,
    };
    let next_buffer_at = internals::nearest_candidates(&mapped, &placement)
        .ok_or_else(|| InvalidQuery("the placement request is inconsistent".into()))?
        .next();
    let mut ranges = gaps(&mapped, space)
        .filter_map(|(start, end)| {
            // The part of the gap inside `[min, max]`, on granule bounds.
            let start = align_up(start.max(request.min), space.granularity)?;
            let end = align_down(end.min(request.max.saturating_add(1)), space.granularity);
            (end > start && end - start >= request.rounded_size).then_some(FreeRange { start, end })
        })
        .collect::<Vec<_>>();
    ranges.sort_by_key(|range| (range.distance_from(query.near).unsigned_abs(), range.start));
    let total_ranges = ranges.len();
    ranges.truncate(limit);
    Ok(Placement {
        min: request.min,
        max: request.max,
        block_len: request.rounded_size,
        ranges,
        total_ranges,
        next_buffer_at,
    })
}

fn align_up(value: usize, align: usize) -> Option<usize> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

fn align_down(value: usize, align: usize) -> usize {
    value & !(align - 1)
}

/// The unmapped ranges between `space.lowest` and `space.highest`.
fn gaps(mapped: &MappedRanges, space: Space) -> impl Iterator<Item = (usize, usize)> + '_ {
    let top = space.highest.saturating_add(1);
    let mut cursor = space.lowest;
    let mut ranges = mapped.iter();
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            match ranges.next() {
                Some((start, end)) => {
                    let gap = (cursor, start.min(top));
                    cursor = cursor.max(end);
                    if gap.0 < gap.1 {
                        return Some(gap);
                    }
                }
                None => {
                    done = true;
                    if cursor < top {
                        return Some((cursor, top));
                    }
                }
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: Space = Space {
        granularity: 0x1000,
        lowest: 0x1_0000,
        highest: 0x7fff_ffff_efff,
    };

    #[test]
    fn gaps_lie_between_the_mappings_and_the_ends_of_user_space() {
        let mapped = MappedRanges::from_ranges([(0x2_0000, 0x3_0000), (0x3_0000, 0x4_0000)]);
        let found: Vec<_> = gaps(&mapped, SPACE).collect();
        assert_eq!(found, [(0x1_0000, 0x2_0000), (0x4_0000, 0x7fff_ffff_f000)]);
        let below_lowest = MappedRanges::from_ranges([(0x1000, 0x2000)]);
        assert_eq!(
            gaps(&below_lowest, SPACE).collect::<Vec<_>>(),
            [(0x1_0000, 0x7fff_ffff_f000)]
        );
    }

    #[test]
    fn the_nearest_ranges_come_first_and_contain_the_libraries_choice() {
        let near = 0x5555_0000_0800;
        let mapped = [
            (0x5554_ffff_0000, 0x5555_0000_2000),
            (0x5555_0001_0000, 0x5555_0002_0000),
            (0x5555_0003_0000, 0x5555_0003_1000),
        ];
        let query = Query {
            near,
            reach: Some(0x10_0000),
            size: 100,
        };
        let placement = free_ranges_near(&mapped, query, SPACE, 3).unwrap();
        assert_eq!(placement.block_len, 0x1000);
        assert_eq!(
            placement.ranges,
            [
                FreeRange {
                    start: 0x5555_0000_2000,
                    end: 0x5555_0001_0000
                },
                FreeRange {
                    start: 0x5554_fff0_1000,
                    end: 0x5554_ffff_0000
                },
                FreeRange {
                    start: 0x5555_0002_0000,
                    end: 0x5555_0003_0000
                },
            ]
        );
        assert_eq!(placement.total_ranges, 4);
        assert_eq!(placement.ranges[0].distance_from(near), 0x1800);
        assert_eq!(placement.ranges[1].distance_from(near), -0x1_0801);
        assert_eq!(placement.next_buffer_at, Some(0x5555_0000_2000));
    }

    #[test]
    fn ranges_too_small_for_the_buffer_are_left_out() {
        let mapped = [(0x10_0000, 0x10_8000), (0x10_9000, 0x20_0000)];
        let query = Query {
            near: 0x10_8800,
            reach: Some(0x8000),
            size: 0x2000,
        };
        let placement = free_ranges_near(&mapped, query, SPACE, 8).unwrap();
        assert!(placement.ranges.is_empty(), "{placement:?}");
        assert_eq!(placement.next_buffer_at, None);
        let one_page = Query {
            size: 0x1000,
            ..query
        };
        let placement = free_ranges_near(&mapped, one_page, SPACE, 8).unwrap();
        assert_eq!(placement.next_buffer_at, Some(0x10_8000));
        assert_eq!(
            placement.ranges,
            [FreeRange {
                start: 0x10_8000,
                end: 0x10_9000
            }]
        );
    }

    #[test]
    fn without_a_reach_the_range_is_the_rel32_reach_of_the_libraries_settings() {
        let near = 0x5555_0000_0000;
        let query = Query {
            near,
            reach: None,
            size: 64,
        };
        let placement = free_ranges_near(&[], query, SPACE, 8).unwrap();
        let settings = BufferSearchSettings::within_rel32_reach(near, 64);
        assert_eq!(placement.min, near - 0x7fff_ffff);
        assert_eq!(
            (placement.min, placement.max),
            (settings.min_address, settings.max_address)
        );
        // The middle of `[near - 0x7fff_ffff, near + 0x7fff_fffe]` is
        // `near - 1`, in the granule below `near`.
        assert_eq!(placement.next_buffer_at, Some(near - 0x1000));
    }

    #[test]
    fn an_impossible_query_says_why() {
        let query = Query {
            near: 0x1000,
            reach: Some(0),
            size: 0,
        };
        assert!(free_ranges_near(&[], query, SPACE, 8).is_err());
    }

    #[test]
    fn distances_are_signed_and_zero_inside() {
        let range = FreeRange {
            start: 0x2000,
            end: 0x3000,
        };
        assert_eq!(range.distance_from(0x1000), 0x1000);
        assert_eq!(range.distance_from(0x2800), 0);
        assert_eq!(range.distance_from(0x4000), -0x1001);
    }
}
