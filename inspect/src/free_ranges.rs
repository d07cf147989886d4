//! The free address ranges near `--near` in which a new buffer could be
//! placed, free of system calls.
//!
//! The mapped ranges come from the other process (`/proc/<pid>/maps`, or a
//! `VirtualQueryEx` walk); merging them and choosing the place of a new
//! buffer reuse the library's own code (`memory_buffers::internals`), so the
//! inspector predicts what `get_buffer` would do in that process, not what a
//! second implementation would.

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
///
/// In `u64`: a range that reaches the top of a 32-bit space ends at 2^32,
/// one more than a 32-bit `usize` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FreeRange {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl FreeRange {
    /// Signed offset from `near` to the nearest byte of the range (0 if it
    /// contains `near`).
    pub(crate) fn distance_from(&self, near: usize) -> i128 {
        let near = i128::from(near as u64);
        let (start, end) = (i128::from(self.start), i128::from(self.end));
        if near < start {
            start - near
        } else if near >= end {
            (end - 1) - near
        } else {
            0
        }
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// Signed offset from `from` to `to`.
pub(crate) fn signed_offset(from: usize, to: u64) -> i128 {
    i128::from(to) - i128::from(from as u64)
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
///
/// `space` is the inspected process's, which may be narrower than the
/// inspector's own (a 32-bit process seen from a 64-bit inspector): the
/// query is clamped to it, as the library in that process clamps its own.
pub(crate) fn free_ranges_near(
    mapped: &[(usize, usize)],
    query: Query,
    space: Space,
    limit: usize,
) -> Result<Placement, InvalidQuery> {
    let (min, max) = match query.reach {
        Some(reach) => internals::proximity_range(reach, query.near, space.highest),
        None => rel32_range(query.near),
    };
    let request =
        internals::validate_request(min, max, query.size, space.granularity, space.highest)
            .map_err(|why| {
                // Say so plainly when the range lies wholly above the
                // process's space (an address of a 64-bit process asked of
                // a 32-bit one): the library's reason for a proximity range
                // clamped below its own start is "min above max".
                if min > space.highest {
                    InvalidQuery(format!(
                        "the range searched starts at {min:#x}, above the process's user \
                         space, which ends at {:#x}",
                        space.highest
                    ))
                } else {
                    InvalidQuery(format!("{why}"))
                }
            })?;
    let mapped = MappedRanges::from_ranges(mapped.iter().copied());
    let placement = PlacementRequest {
        min: request.min,
        max: request.max,
        block_len: request.rounded_size,
        range_len: request.size,
        granularity: space.granularity,
        lowest_address: space.lowest,
        // The library's placement needs its top below `usize::MAX` (one
        // past a block must be a `usize`). No system gives a process the
        // last byte of its width's space, but should a 32-bit one reach
        // it, a library of that width could not place a block in its last
        // page either: the ranges below still list that page as free.
        highest_address: space.highest.min(usize::MAX - 1),
        // Both ways of asking aim at `near`, as the library does.
        target: Some(query.near),
    };
    let next_buffer_at = internals::nearest_candidates(&mapped, &placement)
        .ok_or_else(|| InvalidQuery("the placement request is inconsistent".into()))?
        .next();
    let granularity = space.granularity as u64;
    let (min, end) = (request.min as u64, request.max as u64 + 1);
    let block_len = request.rounded_size as u64;
    let mut ranges = gaps(&mapped, space)
        .filter_map(|(start, stop)| {
            // The part of the gap inside `[min, max]`, on granule bounds.
            let start = align_up(start.max(min), granularity)?;
            let stop = align_down(stop.min(end), granularity);
            (stop > start && stop - start >= block_len).then_some(FreeRange { start, end: stop })
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

/// The range of `BufferSearchSettings::within_rel32_reach(near, _)`: for
/// every `p` in `[min, max + 1]`, `p - near` and `near - p` fit in an
/// `i32`. Before the library's clamp, which is to the top of the process
/// it runs in, here the inspector's: the inspected process's top may be
/// higher (a large-address-aware 32-bit program seen from one that is
/// not), and `validate_request` clamps to that instead.
fn rel32_range(near: usize) -> (usize, usize) {
    let reach = i32::MAX as usize;
    (near.saturating_sub(reach), near.saturating_add(reach - 1))
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// The unmapped ranges `[start, end)` between `space.lowest` and
/// `space.highest`, in `u64` so that the last one may end at
/// `space.highest + 1` even when that is 2^32 on a 32-bit inspector.
fn gaps(mapped: &MappedRanges, space: Space) -> impl Iterator<Item = (u64, u64)> + '_ {
    let top = space.highest as u64 + 1;
    let mut cursor = space.lowest as u64;
    let mut ranges = mapped.iter();
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            match ranges.next() {
                Some((start, end)) => {
                    let gap = (cursor, (start as u64).min(top));
                    cursor = cursor.max(end as u64);
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
    use memory_buffers::BufferSearchSettings;

    /// A 32-bit process under a 64-bit Linux kernel: its space stops a
    /// page below 4 GiB.
    const SPACE: Space = Space {
        granularity: 0x1000,
        lowest: 0x1_0000,
        highest: 0xffff_dfff,
    };

    /// A 32-bit space that reaches its last byte, where `highest + 1`
    /// wraps to 0 in a 32-bit `usize`.
    const SPACE_TO_THE_TOP: Space = Space {
        highest: 0xffff_ffff,
        ..SPACE
    };

    /// A 64-bit x86-64 process: 47 bits less a page.
    #[cfg(target_pointer_width = "64")]
    const SPACE_47: Space = Space {
        highest: 0x7fff_ffff_efff,
        ..SPACE
    };

    #[test]
    fn gaps_lie_between_the_mappings_and_the_ends_of_user_space() {
        let mapped = MappedRanges::from_ranges([(0x2_0000, 0x3_0000), (0x3_0000, 0x4_0000)]);
        let found: Vec<_> = gaps(&mapped, SPACE).collect();
        assert_eq!(found, [(0x1_0000, 0x2_0000), (0x4_0000, 0xffff_e000)]);
        let below_lowest = MappedRanges::from_ranges([(0x1000, 0x2000)]);
        assert_eq!(
            gaps(&below_lowest, SPACE).collect::<Vec<_>>(),
            [(0x1_0000, 0xffff_e000)]
        );
        // A mapping across the top ends the space there.
        let across_the_top = MappedRanges::from_ranges([(0xffff_0000, 0xffff_f000)]);
        assert_eq!(
            gaps(&across_the_top, SPACE).collect::<Vec<_>>(),
            [(0x1_0000, 0xffff_0000)]
        );
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn the_last_gap_of_a_47_bit_space_ends_at_its_top() {
        let mapped = MappedRanges::from_ranges([(0x2_0000, 0x3_0000), (0x3_0000, 0x4_0000)]);
        let found: Vec<_> = gaps(&mapped, SPACE_47).collect();
        assert_eq!(found, [(0x1_0000, 0x2_0000), (0x4_0000, 0x7fff_ffff_f000)]);
        let below_lowest = MappedRanges::from_ranges([(0x1000, 0x2000)]);
        assert_eq!(
            gaps(&below_lowest, SPACE_47).collect::<Vec<_>>(),
            [(0x1_0000, 0x7fff_ffff_f000)]
        );
    }

    #[test]
    fn the_last_gap_of_a_full_32_bit_space_ends_at_4_gib() {
        let mapped = MappedRanges::from_ranges([(0x2_0000, 0x3_0000), (0xfffe_0000, 0xffff_0000)]);
        let found: Vec<_> = gaps(&mapped, SPACE_TO_THE_TOP).collect();
        assert_eq!(
            found,
            [
                (0x1_0000, 0x2_0000),
                (0x3_0000, 0xfffe_0000),
                (0xffff_0000, 0x1_0000_0000)
            ]
        );
        // Mapped up to the last byte: no gap after it.
        let to_the_end = MappedRanges::from_ranges([(0x2_0000, 0xffff_f000)]);
        let found: Vec<_> = gaps(&to_the_end, SPACE_TO_THE_TOP).collect();
        assert_eq!(found, [(0x1_0000, 0x2_0000), (0xffff_f000, 0x1_0000_0000)]);
    }

    #[test]
    fn a_free_range_may_end_at_the_top_of_a_32_bit_space() {
        let near = 0xffff_f800;
        let mapped = [(0xfffe_0000, 0xffff_0000)];
        let query = Query {
            near,
            reach: Some(0x1_0000),
            size: 0x1000,
        };
        let placement = free_ranges_near(&mapped, query, SPACE_TO_THE_TOP, 8).unwrap();
        assert_eq!((placement.min, placement.max), (0xfffe_f800, 0xffff_ffff));
        assert_eq!(
            placement.ranges,
            [FreeRange {
                start: 0xffff_0000,
                end: 0x1_0000_0000
            }]
        );
        assert_eq!(placement.ranges[0].len(), 0x1_0000);
        assert_eq!(placement.ranges[0].distance_from(near), 0);
        // The library aims at `near`, in the top page, which a 32-bit
        // library cannot take (the end of its block would be 2^32): then
        // the page below.
        let expected = if usize::BITS == 64 {
            0xffff_f000
        } else {
            0xffff_e000
        };
        assert_eq!(placement.next_buffer_at, Some(expected));
        // Aimed at the top page, it takes it if it can represent its end.
        let at_the_top = Query {
            near: 0xffff_ffff,
            reach: Some(0x1000),
            size: 0x1000,
        };
        let placement = free_ranges_near(&mapped, at_the_top, SPACE_TO_THE_TOP, 8).unwrap();
        assert_eq!(
            placement.ranges,
            [FreeRange {
                start: 0xffff_f000,
                end: 0x1_0000_0000
            }]
        );
        let expected = if usize::BITS == 64 {
            Some(0xffff_f000)
        } else {
            None
        };
        assert_eq!(placement.next_buffer_at, expected);
        // The same query a page lower, where a 64-bit kernel stops a
        // 32-bit process, loses the top page.
        let placement = free_ranges_near(&mapped, query, SPACE, 8).unwrap();
        assert_eq!(
            placement.ranges,
            [FreeRange {
                start: 0xffff_0000,
                end: 0xffff_e000
            }]
        );
        assert_eq!(placement.ranges[0].distance_from(near), -0x1801);
    }

    #[test]
    fn the_nearest_ranges_come_first_and_contain_the_libraries_choice() {
        let near = 0x5550_0800;
        let mapped = [
            (0x554f_0000, 0x5550_2000),
            (0x5551_0000, 0x5552_0000),
            (0x5553_0000, 0x5553_1000),
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
                    start: 0x5550_2000,
                    end: 0x5551_0000
                },
                FreeRange {
                    start: 0x5540_1000,
                    end: 0x554f_0000
                },
                FreeRange {
                    start: 0x5552_0000,
                    end: 0x5553_0000
                },
            ]
        );
        assert_eq!(placement.total_ranges, 4);
        assert_eq!(placement.ranges[0].distance_from(near), 0x1800);
        assert_eq!(placement.ranges[1].distance_from(near), -0x1_0801);
        assert_eq!(placement.next_buffer_at, Some(0x5550_2000));
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

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn without_a_reach_the_range_is_the_rel32_reach_of_the_libraries_settings() {
        let near = 0x5555_0000_0000;
        let query = Query {
            near,
            reach: None,
            size: 64,
        };
        let placement = free_ranges_near(&[], query, SPACE_47, 8).unwrap();
        let settings = BufferSearchSettings::within_rel32_reach(near, 64);
        assert_eq!(placement.min, near - 0x7fff_ffff);
        assert_eq!(
            (placement.min, placement.max),
            (settings.min_address, settings.max_address)
        );
        // The library aims at `near` itself (its granule).
        assert_eq!(placement.next_buffer_at, Some(near & !0xfff));
    }

    #[test]
    fn without_a_reach_a_32_bit_space_clamps_the_rel32_reach() {
        // In 4 GiB, `near ± 2 GiB` always runs into an end: here the top,
        // a page below 4 GiB, is where the process's space stops, however
        // wide or narrow the inspector's own (a 32-bit Windows inspector's
        // is 0xFFFE_FFFF, or 0x7FFE_FFFF without large-address awareness).
        let near = 0x8000_0000;
        let query = Query {
            near,
            reach: None,
            size: 64,
        };
        let placement = free_ranges_near(&[], query, SPACE, 8).unwrap();
        let settings = BufferSearchSettings::within_rel32_reach(near, 64);
        assert_eq!(placement.min, near - 0x7fff_ffff);
        assert_eq!(placement.min, settings.min_address);
        assert_eq!(placement.max, SPACE.highest);
        assert_eq!(rel32_range(near), (1, 0xffff_fffe));
        // The library's range, but for its clamp to its own top.
        assert_eq!(
            settings.max_address,
            0xffff_fffe.min(memory_buffers::highest_user_address())
        );
        // `near`, where the library aims, though the range is cut at the
        // top (its middle would be 0x7fff_f000).
        assert_eq!(placement.next_buffer_at, Some(near));
        assert_eq!(
            placement.ranges,
            [FreeRange {
                start: 0x1_0000,
                end: 0xffff_e000
            }]
        );
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn an_address_above_a_32_bit_space_is_refused() {
        // A 64-bit inspector asked about a 32-bit process for an address
        // that process cannot have.
        for reach in [None, Some(0x10_0000)] {
            let query = Query {
                near: 0x7f00_0000_0000,
                reach,
                size: 64,
            };
            let why = free_ranges_near(&[], query, SPACE, 8).unwrap_err();
            assert!(
                why.0
                    .contains("above the process's user space, which ends at 0xffffdfff"),
                "{reach:?}: {why:?}"
            );
        }
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
        let at_the_top = FreeRange {
            start: 0xffff_f000,
            end: 0x1_0000_0000,
        };
        assert_eq!(at_the_top.distance_from(0xffff_ffff), 0);
        assert_eq!(at_the_top.distance_from(0xffff_efff), 1);
        assert_eq!(at_the_top.len(), 0x1000);
        assert_eq!(signed_offset(0xffff_ffff, 0x1_0000_0000), 1);
        assert_eq!(signed_offset(0x1000, 0), -0x1000);
    }
}
