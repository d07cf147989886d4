//! "Anywhere above 2 GiB", as a 32-bit program asks for it: a shared buffer
//! and a private allocation in `[0x8000_0000, 0xFFFE_FFFF]`.
//!
//! A process that has memory there (every 64-bit one, a 32-bit Linux one,
//! a large-address-aware 32-bit Windows one) gets both at or above
//! 0x8000_0000 and can append and write to them. A 32-bit Windows program
//! without the large-address-aware flag has nothing above 2 GiB, and gets
//! a clear error, even under Wine, which grants such a program addresses
//! up there when it asks for them itself. On 32-bit Windows the test also
//! reads its own image's flag from the file, so that the library's view
//! (`GetSystemInfo`) is checked against what the linker wrote.
//!
//! CI runs this binary built with and without `--large-address-aware` on
//! i686 Windows (see `.ci/i686-windows`).

#[path = "support/skip.rs"]
mod skip;

use memory_buffers::{
    BufferAllocatorSettings, BufferSearchSettings, Buffers, InvalidRequest, highest_user_address,
};

const ABOVE_2_GIB: (usize, usize) = (0x8000_0000, 0xfffe_ffff);

/// Whether this process can have memory above 2 GiB.
fn has_memory_above_2_gib() -> bool {
    highest_user_address() >= ABOVE_2_GIB.0
}

/// Why nothing above 2 GiB can be had here although the process has that
/// space, if so: something already maps all of it. Probed from
/// `/proc/self/maps` (AddressSanitizer's shadow memory covers it in a
/// 64-bit process).
fn all_of_it_is_mapped() -> Option<&'static str> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let (min, max) = ABOVE_2_GIB;
    let mut covered = min;
    let mut ranges: Vec<(usize, usize)> = maps
        .lines()
        .filter_map(|line| {
            let (range, _) = line.split_once(' ')?;
            let (start, end) = range.split_once('-')?;
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            ))
        })
        .collect();
    ranges.sort_unstable();
    for (start, end) in ranges {
        if start > covered {
            break;
        }
        covered = covered.max(end);
    }
    (covered > max).then_some(
        "[0x8000_0000, 0xFFFE_FFFF] is all mapped already here (a sanitizer's shadow memory)",
    )
}

/// Only for 32-bit Windows programs, whose top the image flag decides.
#[cfg(all(windows, target_pointer_width = "32"))]
#[test]
fn the_top_of_user_space_matches_the_image_flag_on_32_bit_windows() {
    let aware = image_is_large_address_aware().expect("this program's PE header is readable");
    let expected = if aware { 0xfffe_ffff } else { 0x7ffe_ffff };
    assert_eq!(
        highest_user_address(),
        expected,
        "large-address-aware: {aware}"
    );
    println!(
        "this program is {}large-address-aware: top {:#x}",
        if aware { "" } else { "not " },
        highest_user_address()
    );
}

#[test]
fn a_buffer_above_2_gib_is_there_or_refused_clearly() {
    let (min, max) = ABOVE_2_GIB;
    let settings = BufferSearchSettings::new(min, max, 64);
    let result = Buffers::get_buffer(&settings);
    if !has_memory_above_2_gib() {
        let error = result.expect_err("nothing above 2 GiB to hand out");
        assert_eq!(
            error.invalid_request(),
            Some(InvalidRequest::RangeAboveUserSpace)
        );
        println!("no memory above 2 GiB here: {error}");
        return;
    }
    if let Some(reason) = all_of_it_is_mapped() {
        skip::skip(reason);
        return;
    }
    let mut buffer = result.unwrap();
    let start = buffer.next_address();
    assert!(start >= min && start + 63 <= max, "{start:#x}");
    let written = buffer.append_bytes(b"above two gibibytes").unwrap();
    assert!(written >= min && written + 18 <= max);
    // SAFETY: the bytes were just appended there and buffers never move.
    let read = unsafe { std::slice::from_raw_parts(written as *const u8, 19) };
    assert_eq!(read, b"above two gibibytes");
    println!("shared buffer above 2 GiB: {written:#x}");
}

#[test]
fn a_private_allocation_above_2_gib_is_there_or_refused_clearly() {
    let (min, max) = ABOVE_2_GIB;
    let settings = BufferAllocatorSettings::new(min, max, 4096);
    let result = Buffers::allocate_private_memory(&settings);
    if !has_memory_above_2_gib() {
        let error = result.expect_err("nothing above 2 GiB to allocate");
        assert_eq!(
            error.invalid_request(),
            Some(InvalidRequest::RangeAboveUserSpace)
        );
        return;
    }
    if let Some(reason) = all_of_it_is_mapped() {
        skip::skip(reason);
        return;
    }
    let mut allocation = result.unwrap();
    let base = allocation.base_address();
    assert!(
        base >= min && base + (allocation.size() - 1) <= max,
        "{base:#x}"
    );
    allocation.write(0, b"private").unwrap();
    assert_eq!(&allocation.as_slice()[..7], b"private");
    println!("private allocation above 2 GiB: {base:#x}");
}

/// Whether one granule at `[start, start + granule)` can be had: probed
/// with the library itself, so it works wherever the library does.
fn granule_is_free(start: usize, granule: usize) -> bool {
    let settings = BufferAllocatorSettings::new(start, start + (granule - 1), granule);
    Buffers::allocate_private_memory(&settings).is_ok()
}

/// A plain range (no target) is placed against the edge of a free hole,
/// next to what is mapped there, or at the lowest address of the range:
/// never in the middle of a hole, cutting it in two.
#[test]
fn a_plain_range_above_2_gib_is_placed_against_an_edge_not_in_the_middle() {
    if !has_memory_above_2_gib() {
        skip::skip(&format!(
            "this process has no memory above 2 GiB (its top is {:#x})",
            highest_user_address()
        ));
        return;
    }
    if let Some(reason) = all_of_it_is_mapped() {
        skip::skip(reason);
        return;
    }
    let (min, max) = ABOVE_2_GIB;
    let granule = memory_buffers::allocation_granularity();
    let allocation =
        Buffers::allocate_private_memory(&BufferAllocatorSettings::new(min, max, granule)).unwrap();
    let (base, end) = (
        allocation.base_address(),
        allocation.base_address() + allocation.size(),
    );
    let at_low_end = base == min;
    let mapped_below = !granule_is_free(base - granule, granule);
    let at_top = end + granule > highest_user_address().min(max) + 1;
    let mapped_above = at_top || !granule_is_free(end, granule);
    println!(
        "plain [{min:#x}, {max:#x}]: {base:#x} (lowest end {at_low_end}, mapped below \
         {mapped_below}, mapped above or top {mapped_above})"
    );
    assert!(
        at_low_end || mapped_below || mapped_above,
        "{base:#x} lies inside a free hole, away from both its edges"
    );
}

#[test]
fn a_range_straddling_the_top_is_clamped_to_it() {
    // From 256 MiB to the top of 4 GiB: everything the process has counts,
    // nothing it lacks is used. (Wine keeps most of 1.5 to 2 GiB for its
    // own libraries.)
    let settings = BufferAllocatorSettings::new(0x1000_0000, 0xffff_ffff, 4096);
    let allocation = Buffers::allocate_private_memory(&settings).unwrap();
    let last = allocation.base_address() + (allocation.size() - 1);
    assert!(allocation.base_address() >= 0x1000_0000);
    assert!(last <= highest_user_address(), "{last:#x}");
    let error = Buffers::get_buffer(&BufferSearchSettings::new(0x1000_0000, 0xffff_ffff, 0))
        .err()
        .unwrap();
    assert_eq!(error.invalid_request(), Some(InvalidRequest::ZeroSize));
}

/// Only for 32-bit Linux programs, whose top depends on their kernel.
#[cfg(all(target_os = "linux", target_pointer_width = "32"))]
#[test]
fn a_32_bit_linux_program_uses_the_4th_gib_under_a_64_bit_kernel() {
    // `setarch --3gb` sets ADDR_LIMIT_3GB (0x0800_0000) in the personality.
    let personality = std::fs::read_to_string("/proc/self/personality").unwrap();
    let limited = u32::from_str_radix(personality.trim(), 16).unwrap() & 0x0800_0000 != 0;
    // Only an x86-64 kernel has this sysctl for its 32-bit programs; `uname`
    // would say `i686` under `linux32` (`setarch i686`), which CI runs too.
    let kernel_is_64_bit = std::path::Path::new("/proc/sys/abi/vsyscall32").exists();
    let expected = if kernel_is_64_bit && !limited {
        0xffff_dfff
    } else {
        0xbfff_ffff
    };
    assert_eq!(highest_user_address(), expected);
    if expected == 0xffff_dfff {
        let settings = BufferAllocatorSettings::new(0xc000_0000, 0xffff_dfff, 4096);
        let allocation = Buffers::allocate_private_memory(&settings).unwrap();
        assert!(allocation.base_address() >= 0xc000_0000);
        println!("4th GiB: {:#x}", allocation.base_address());
    }
}

#[cfg(all(windows, target_pointer_width = "32"))]
/// `IMAGE_FILE_LARGE_ADDRESS_AWARE` in this program's PE file header, read
/// from its file (`e_lfanew` at 0x3c, the characteristics 22 bytes after
/// the `PE\0\0` signature).
fn image_is_large_address_aware() -> Option<bool> {
    let image = std::fs::read(std::env::current_exe().ok()?).ok()?;
    let at = |offset: usize, len: usize| image.get(offset..offset.checked_add(len)?);
    let pe = u32::from_le_bytes(at(0x3c, 4)?.try_into().ok()?) as usize;
    if at(pe, 4)? != b"PE\0\0" {
        return None;
    }
    let characteristics = u16::from_le_bytes(at(pe + 22, 2)?.try_into().ok()?);
    Some(characteristics & 0x0020 != 0)
}
