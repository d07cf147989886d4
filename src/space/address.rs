//! Address arithmetic and request validation, free of system calls.
//!
//! Everything here is a pure function of its arguments so that it can be
//! tested on literal values and with proptest, including the edges near 0 and
//! near the top of the address space where overflow hides.

use crate::error::InvalidRequest;

/// Rounds `value` down to a multiple of `align` (a power of two).
pub(crate) const fn align_down(value: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two());
    value & !(align - 1)
}

/// Rounds `value` up to a multiple of `align` (a power of two), or `None`
/// when the result does not fit in a `usize`.
pub(crate) const fn align_up(value: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    match value.checked_add(align - 1) {
        Some(bumped) => Some(bumped & !(align - 1)),
        None => None,
    }
}

/// A request whose range and size have been checked.
///
/// Invariants: `size > 0`, `min <= max <= highest user address`,
/// `max - min + 1 >= size`, `rounded_size` is `size` rounded up to the
/// granularity (so it is non-zero and does not overflow). `pub` (in a
/// crate-private module) only so that `internals` can re-export it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidRequest {
    /// Lowest address.
    pub min: usize,
    /// Highest address (inclusive), clamped to user space.
    pub max: usize,
    /// Requested size.
    pub size: usize,
    /// Size rounded up to the granularity.
    pub rounded_size: usize,
    /// Where placement aims (the settings' `target`); `None` for a plain
    /// range, which takes the smallest free hole that holds it. May lie
    /// outside `[min, max]`.
    pub target: Option<usize>,
}

/// Checks a `[min, max]` / `size` request and clamps `max` to the highest
/// user-space address.
pub(crate) fn validate_request(
    min: usize,
    max: usize,
    size: usize,
    granularity: usize,
    highest_user_address: usize,
) -> Result<ValidRequest, InvalidRequest> {
    if size == 0 {
        return Err(InvalidRequest::ZeroSize);
    }
    let rounded_size = align_up(size, granularity).ok_or(InvalidRequest::SizeTooLarge)?;
    if min > max {
        return Err(InvalidRequest::MinAboveMax);
    }
    let max = max.min(highest_user_address);
    if min > max {
        return Err(InvalidRequest::RangeAboveUserSpace);
    }
    // `max - min` is the range length minus one; comparing against
    // `size - 1` avoids the overflow of `max - min + 1` for the full range.
    if max - min < size - 1 {
        return Err(InvalidRequest::RangeSmallerThanSize);
    }
    Ok(ValidRequest {
        min,
        max,
        size,
        rounded_size,
        target: None,
    })
}

/// Checks that an alignment is a power of two no larger than the granularity.
pub(crate) fn validate_alignment(
    alignment: usize,
    granularity: usize,
) -> Result<(), InvalidRequest> {
    if !alignment.is_power_of_two() {
        return Err(InvalidRequest::AlignmentNotPowerOfTwo);
    }
    if alignment > granularity {
        return Err(InvalidRequest::AlignmentAboveGranularity);
    }
    Ok(())
}

/// The range `[target - proximity, target + proximity]`, saturating at 0 and
/// at `highest_user_address`.
pub(crate) fn proximity_range(
    proximity: usize,
    target: usize,
    highest_user_address: usize,
) -> (usize, usize) {
    let min = target.saturating_sub(proximity);
    let max = target.saturating_add(proximity).min(highest_user_address);
    (min, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::TEST_TOP as TOP;

    /// Every top a 32-bit process can have, checked on every width.
    const TOPS_OF_32_BIT_PROCESSES: [usize; 4] =
        [0x7ffe_ffff, 0xbfff_ffff, 0xfffe_ffff, 0xffff_dfff];

    #[test]
    fn ranges_ending_at_the_top_of_a_32_bit_space_are_clamped_without_wrapping() {
        for top in TOPS_OF_32_BIT_PROCESSES {
            // "Anywhere above 2 GiB", as a 32-bit caller asks for it.
            let request = validate_request(0x8000_0000, 0xffff_ffff, 0x1000, 0x1_0000, top);
            if top < 0x8000_0000 {
                assert_eq!(request, Err(InvalidRequest::RangeAboveUserSpace));
                continue;
            }
            let request = request.unwrap();
            assert_eq!((request.min, request.max), (0x8000_0000, top));
            assert_eq!(request.rounded_size, 0x1_0000);
            // The last whole granule below the top still fits exactly.
            let last = validate_request(top - 0xffff, 0xffff_ffff, 0x1_0000, 0x1_0000, top);
            assert_eq!(last.map(|request| request.max), Ok(top));
            assert_eq!(
                validate_request(top - 0xfffe, 0xffff_ffff, 0x1_0000, 0x1_0000, top),
                Err(InvalidRequest::RangeSmallerThanSize)
            );
            assert_eq!(
                proximity_range(0x7fff_ffff, top - 1, top),
                (top - 0x8000_0000, top)
            );
        }
    }

    #[test]
    fn align_up_reports_overflow_at_the_top() {
        assert_eq!(align_up(usize::MAX, 4096), None);
        assert_eq!(align_up(usize::MAX - 4095, 4096), Some(usize::MAX - 4095));
        assert_eq!(align_up(1, 4096), Some(4096));
        assert_eq!(align_up(0, 4096), Some(0));
    }

    #[test]
    fn validation_rejects_each_malformed_request() {
        assert_eq!(
            validate_request(0, 100, 0, 4096, TOP),
            Err(InvalidRequest::ZeroSize)
        );
        assert_eq!(
            validate_request(0, usize::MAX, usize::MAX, 4096, TOP),
            Err(InvalidRequest::SizeTooLarge)
        );
        assert_eq!(
            validate_request(10, 9, 1, 4096, TOP),
            Err(InvalidRequest::MinAboveMax)
        );
        assert_eq!(
            validate_request(0, 99, 101, 4096, TOP),
            Err(InvalidRequest::RangeSmallerThanSize)
        );
        assert_eq!(
            validate_request(TOP + 1, usize::MAX, 1, 4096, TOP),
            Err(InvalidRequest::RangeAboveUserSpace)
        );
    }

    #[test]
    fn validation_accepts_exact_ranges_and_clamps_max() {
        let request = validate_request(0, 99, 100, 4096, TOP).unwrap();
        assert_eq!(
            (request.min, request.max, request.rounded_size),
            (0, 99, 4096)
        );
        let request = validate_request(0, usize::MAX, 1, 4096, TOP).unwrap();
        assert_eq!(request.max, TOP);
    }

    #[test]
    fn alignment_must_be_a_power_of_two_up_to_the_granularity() {
        assert_eq!(
            validate_alignment(0, 4096),
            Err(InvalidRequest::AlignmentNotPowerOfTwo)
        );
        assert_eq!(
            validate_alignment(3, 4096),
            Err(InvalidRequest::AlignmentNotPowerOfTwo)
        );
        assert_eq!(
            validate_alignment(8192, 4096),
            Err(InvalidRequest::AlignmentAboveGranularity)
        );
        assert_eq!(validate_alignment(4096, 4096), Ok(()));
        assert_eq!(validate_alignment(1, 4096), Ok(()));
    }

    #[test]
    fn proximity_saturates_at_both_ends() {
        assert_eq!(proximity_range(100, 50, TOP), (0, 150));
        assert_eq!(proximity_range(100, TOP - 50, TOP), (TOP - 150, TOP));
        assert_eq!(proximity_range(usize::MAX, usize::MAX, TOP), (0, TOP));
    }

    proptest! {
        #[test]
        fn validation_never_panics_and_keeps_its_invariants(
            min in any::<usize>(), max in any::<usize>(), size in any::<usize>(), shift in 0u32..17,
        ) {
            let granularity = 1usize << shift;
            if let Ok(request) = validate_request(min, max, size, granularity, TOP) {
                prop_assert!(request.size > 0);
                prop_assert!(request.min <= request.max && request.max <= TOP);
                prop_assert!(request.max - request.min >= request.size - 1);
                prop_assert!(request.rounded_size >= request.size);
                prop_assert_eq!(request.rounded_size % granularity, 0);
            }
        }

        #[test]
        fn proximity_range_always_contains_the_clamped_target(
            proximity in any::<usize>(), target in any::<usize>(),
        ) {
            let (min, max) = proximity_range(proximity, target, TOP);
            prop_assert!(max <= TOP);
            if target <= TOP {
                prop_assert!(min <= target && target <= max);
            }
        }
    }
}
