//! Fuzzes request validation against an independent statement of the rules
//! in 128-bit arithmetic (which cannot overflow), for the raw validator and
//! for the public settings types as `Buffers` validates them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use memory_buffers::internals::{
    ValidRequest, proximity_range, validate_alignment, validate_allocator_settings,
    validate_request, validate_search_settings,
};
use memory_buffers::{
    BufferAllocatorSettings, BufferSearchSettings, InvalidRequest, allocation_granularity,
    highest_user_address,
};

/// The rules of `validate_request`, restated.
fn expected(
    min: usize,
    max: usize,
    size: usize,
    granularity: usize,
    highest: usize,
) -> Result<ValidRequest, InvalidRequest> {
    let (min128, max128, size128, granularity128) =
        (min as u128, max as u128, size as u128, granularity as u128);
    if size == 0 {
        return Err(InvalidRequest::ZeroSize);
    }
    let rounded = size128.div_ceil(granularity128) * granularity128;
    if rounded > usize::MAX as u128 {
        return Err(InvalidRequest::SizeTooLarge);
    }
    if min > max {
        return Err(InvalidRequest::MinAboveMax);
    }
    let clamped = max128.min(highest as u128);
    if min128 > clamped {
        return Err(InvalidRequest::RangeAboveUserSpace);
    }
    if clamped - min128 + 1 < size128 {
        return Err(InvalidRequest::RangeSmallerThanSize);
    }
    Ok(ValidRequest {
        min,
        max: clamped as usize,
        size,
        rounded_size: rounded as usize,
        // The plain constructors aim at nothing.
        target: None,
    })
}

fn word(bytes: &[u8], index: usize) -> usize {
    let mut chunk = [0u8; 8];
    for (slot, byte) in chunk.iter_mut().zip(bytes.iter().skip(index * 8)) {
        *slot = *byte;
    }
    let value = u64::from_le_bytes(chunk) as usize;
    // Bias towards the edges, where the bugs live.
    match bytes.get(40 + index).copied().unwrap_or(0) % 4 {
        0 => value,
        1 => value % 0x1_0000,
        2 => usize::MAX - value % 0x1_0000,
        _ => highest_user_address()
            .wrapping_add(value % 0x2_0000)
            .wrapping_sub(0x1_0000),
    }
}

fuzz_target!(|data: &[u8]| {
    let (min, max, size, other) = (word(data, 0), word(data, 1), word(data, 2), word(data, 3));
    let shift = u32::from(data.get(32).copied().unwrap_or(12) % 24);
    let granularity = 1usize << shift;
    let highest = if data.get(33).copied().unwrap_or(0) % 2 == 0 {
        highest_user_address()
    } else {
        other
    };

    let result = validate_request(min, max, size, granularity, highest);
    assert_eq!(result, expected(min, max, size, granularity, highest));

    // Alignment: a power of two no larger than the granularity.
    let alignment = other;
    let alignment_expected = if !alignment.is_power_of_two() {
        Err(InvalidRequest::AlignmentNotPowerOfTwo)
    } else if alignment > granularity {
        Err(InvalidRequest::AlignmentAboveGranularity)
    } else {
        Ok(())
    };
    assert_eq!(
        validate_alignment(alignment, granularity),
        alignment_expected
    );

    // Proximity: saturating at 0 and at the highest address.
    let (low, high) = proximity_range(size, other, highest);
    assert_eq!(low as u128, (other as u128).saturating_sub(size as u128));
    assert_eq!(
        high as u128,
        (other as u128 + size as u128)
            .min(usize::MAX as u128)
            .min(highest as u128)
    );

    // The public settings, validated with the real granularity and top.
    let real = expected(
        min,
        max,
        size,
        allocation_granularity(),
        highest_user_address(),
    );
    let allocator = BufferAllocatorSettings::new(min, max, size);
    let checked = validate_allocator_settings(&allocator);
    assert_eq!(
        checked.map_err(|error| error.invalid_request()),
        real.map_err(Some)
    );
    if let Err(error) = checked {
        assert_eq!(
            (error.min_address(), error.max_address(), error.size()),
            (min, max, size)
        );
    }
    let search = BufferSearchSettings::new(min, max, size);
    let search_expected = real.and_then(|request| {
        if request.rounded_size > u32::MAX as usize {
            Err(InvalidRequest::SizeTooLarge)
        } else {
            Ok(request)
        }
    });
    assert_eq!(
        validate_search_settings(&search).map_err(|error| error.invalid_request()),
        search_expected.map_err(Some)
    );

    // Proximity constructors never panic and bracket the target.
    let near = BufferSearchSettings::from_proximity(size, other, 1);
    assert!(near.min_address <= near.max_address || other > highest_user_address());
    assert!(near.max_address <= highest_user_address());
    let near = BufferAllocatorSettings::from_proximity(size, other, 1);
    assert!(near.max_address <= highest_user_address());
});
