//! The set of address ranges known to be mapped.
//!
//! Placement asks two questions of it many times per allocation: "what is the
//! last mapped range that starts before this address" and "insert or remove
//! this range". A `BTreeMap` of disjoint, non-touching ranges answers both in
//! `O(log n)`, which keeps the cold path flat at tens of thousands of
//! mappings.

use std::collections::BTreeMap;

/// Disjoint half-open ranges `[start, end)`, merged when they touch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MappedRanges {
    /// `start -> end`. Invariant: for consecutive entries `a` and `b`,
    /// `a.end < b.start` (strictly: touching ranges are merged), and every
    /// `start < end`.
    ranges: BTreeMap<usize, usize>,
}

impl MappedRanges {
    pub(crate) const fn new() -> Self {
        MappedRanges {
            ranges: BTreeMap::new(),
        }
    }

    /// Builds the set from ranges in any order, merging overlaps.
    pub(crate) fn from_ranges(ranges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut sorted: Vec<(usize, usize)> = ranges
            .into_iter()
            .filter(|&(start, end)| start < end)
            .collect();
        // Already sorted for `/proc/self/maps`, where this sort is linear.
        sorted.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(sorted.len());
        for (start, end) in sorted {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let set = MappedRanges {
            ranges: merged.into_iter().collect(),
        };
        set.debug_check();
        set
    }

    /// Number of disjoint ranges.
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The mapped range with the greatest start below `address`, if any.
    pub(crate) fn last_starting_below(&self, address: usize) -> Option<(usize, usize)> {
        self.ranges
            .range(..address)
            .next_back()
            .map(|(&start, &end)| (start, end))
    }

    /// The mapped range overlapping `[start, end)` with the greatest start.
    pub(crate) fn last_overlapping(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        // Ranges are disjoint, so only the last one starting below `end` can
        // reach past `start`.
        self.last_starting_below(end)
            .filter(|&(_, range_end)| range_end > start)
    }

    /// Whether `[start, end)` overlaps nothing in the set.
    pub(crate) fn is_free(&self, start: usize, end: usize) -> bool {
        self.last_overlapping(start, end).is_none()
    }

    /// Marks `[start, end)` as mapped.
    pub(crate) fn insert(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        let mut new_start = start;
        let mut new_end = end;
        // Absorb a range that starts at or before `start` and touches it.
        if let Some((left_start, left_end)) = self
            .ranges
            .range(..=start)
            .next_back()
            .map(|(&s, &e)| (s, e))
            && left_end >= start
        {
            new_start = left_start;
            new_end = new_end.max(left_end);
            self.ranges.remove(&left_start);
        }
        // Absorb every range starting inside or touching `[start, new_end]`.
        while let Some((next_start, next_end)) =
            self.ranges.range(new_start..).next().map(|(&s, &e)| (s, e))
        {
            if next_start > new_end {
                break;
            }
            new_end = new_end.max(next_end);
            self.ranges.remove(&next_start);
        }
        self.ranges.insert(new_start, new_end);
        self.debug_check();
    }

    /// Marks `[start, end)` as free.
    pub(crate) fn remove(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        while let Some((range_start, range_end)) = self.last_overlapping(start, end) {
            self.ranges.remove(&range_start);
            if range_start < start {
                self.ranges.insert(range_start, start);
            }
            if range_end > end {
                self.ranges.insert(end, range_end);
            }
            if range_start <= start {
                break;
            }
        }
        self.debug_check();
    }

    /// Iterates the ranges that start at or above `address`, in address
    /// order.
    pub(crate) fn starting_from(
        &self,
        address: usize,
    ) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges
            .range(address..)
            .map(|(&start, &end)| (start, end))
    }

    /// Iterates the ranges in address order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges.iter().map(|(&start, &end)| (start, end))
    }

    fn debug_check(&self) {
        if cfg!(debug_assertions) && self.ranges.len() < 4096 {
            let mut previous_end = None;
            for (&start, &end) in &self.ranges {
                debug_assert!(start < end);
                if let Some(previous_end) = previous_end {
                    debug_assert!(previous_end < start);
                }
                previous_end = Some(end);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn touching_ranges_merge_and_removal_splits() {
        let mut set = MappedRanges::new();
        set.insert(0x1000, 0x2000);
        set.insert(0x3000, 0x4000);
        set.insert(0x2000, 0x3000);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![(0x1000, 0x4000)]);
        set.remove(0x2000, 0x3000);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![(0x1000, 0x2000), (0x3000, 0x4000)]
        );
        assert!(set.is_free(0x2000, 0x3000));
        assert!(!set.is_free(0x1fff, 0x2001));
    }

    proptest! {
        #[test]
        fn matches_a_page_bitmap(operations in proptest::collection::vec((any::<bool>(), 0usize..64, 1usize..16), 0..60)) {
            let mut set = MappedRanges::new();
            let mut pages = [false; 80];
            for (insert, start, length) in operations {
                if insert { set.insert(start, start + length) } else { set.remove(start, start + length) }
                for page in &mut pages[start..start + length] { *page = insert; }
            }
            for (page, &mapped) in pages.iter().enumerate() {
                prop_assert_eq!(set.is_free(page, page + 1), !mapped);
            }
            let rebuilt = MappedRanges::from_ranges(set.iter());
            prop_assert_eq!(rebuilt, set);
        }
    }
}
