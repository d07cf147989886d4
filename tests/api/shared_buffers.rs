//! Shared buffers through the public API: discovery, exclusive use, appends,
//! and the concurrency promise.

use memory_buffers::{
    BufferSearchSettings, Buffers, ErrorKind, InvalidRequest, LocatorKind, allocation_granularity,
    highest_user_address,
};
use std::collections::HashSet;

use crate::support;

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

/// Whether this process got the shared locator. Where an earlier run (of
/// another user, or of an older version) left directories this user cannot
/// use, the library rightly falls back to a private locator; the test then
/// says so (`support::skip`) and is skipped rather than failed. Any other
/// private reason fails.
#[cfg(unix)]
fn shared_or_skipped() -> bool {
    use memory_buffers::PrivateLocatorReason;
    match Buffers::locator_kind().unwrap() {
        LocatorKind::Shared => true,
        LocatorKind::Private(
            reason @ (PrivateLocatorReason::DirectoryNotTrusted
            | PrivateLocatorReason::DirectoryUnavailable { .. }
            | PrivateLocatorReason::FileUnavailable {
                errno: libc::EACCES | libc::EPERM | libc::EROFS,
            }),
        ) => {
            support::skip::skip(&format!(
                "/tmp/.reloaded/memory.buffers is not usable by this user ({reason:?}), so \
                 the locator is private; remove the directory or run as its owner"
            ));
            false
        }
        other => panic!("unexpected locator kind {other:?}"),
    }
}

/// On Windows no earlier run can leave anything behind: the named section
/// dies with its process. The locator must be shared.
#[cfg(windows)]
fn shared_or_skipped() -> bool {
    let kind = Buffers::locator_kind().unwrap();
    assert_eq!(kind, LocatorKind::Shared, "unexpected locator kind");
    true
}

fn target() -> usize {
    target as *const () as usize
}

#[test]
fn a_second_discovery_finds_the_same_locator() {
    let first = Buffers::locator_address().unwrap();
    if !shared_or_skipped() {
        return;
    }
    // Do what a second library instance does: open the rendezvous file (or
    // section), map it, read "this address" from the header, unmap.
    let this_address = support::this_address_through_a_second_view();
    assert_eq!(this_address, first);
    assert_eq!(Buffers::locator_address().unwrap(), first);
}

#[test]
fn a_taken_buffer_is_not_handed_out_twice() {
    let settings = BufferSearchSettings::from_proximity(GIB, target(), 64);
    let first = Buffers::get_buffer(&settings).unwrap();
    let second = Buffers::get_buffer(&settings).unwrap();
    assert_ne!(first.base_address(), second.base_address());
}

#[test]
fn appended_bytes_stay_and_the_next_holder_continues_after_them() {
    // A narrow range of its own keeps other tests' buffers out: 1.5 GiB
    // above this binary's code on 64-bit, in a quiet part of the first
    // GiB on 32-bit (Wine keeps most of the space above it for itself).
    let base = if usize::BITS == 64 {
        target().wrapping_add(1536 * MIB) & !0xffff
    } else {
        0x3400_0000
    };
    let settings = BufferSearchSettings::new(base, base + 64 * MIB, 16);
    let (buffer_base, address, position) = {
        let mut buffer = Buffers::get_buffer(&settings).unwrap();
        let address = buffer.append_bytes(b"sixteen bytes!!!").unwrap();
        assert_eq!(address, buffer.base_address() + buffer.position() - 16);
        (buffer.base_address(), address, buffer.position())
    };
    // The same buffer is handed out again, and continues after our bytes.
    let mut buffer = Buffers::get_buffer(&settings).unwrap();
    assert_eq!(buffer.base_address(), buffer_base);
    assert_eq!(buffer.position(), position);
    let next = buffer.append_copy(&0x1122_3344_5566_7788u64).unwrap();
    assert_eq!(next, address + 16);
    // SAFETY: the bytes were appended above and buffers are never unmapped.
    let kept = unsafe { std::slice::from_raw_parts(address as *const u8, 16) };
    assert_eq!(kept, b"sixteen bytes!!!");
    // SAFETY: as above.
    assert_eq!(
        unsafe { std::ptr::read_unaligned(next as *const u64) },
        0x1122_3344_5566_7788
    );
}

#[test]
fn aligned_gets_return_an_aligned_position() {
    let settings = BufferSearchSettings::from_proximity(GIB, target(), 24);
    for alignment in [1, 2, 8, 16, 64, 256, 4096] {
        let mut buffer = Buffers::get_buffer_aligned(&settings, alignment).unwrap();
        assert_eq!(
            buffer.next_address() % alignment,
            0,
            "alignment {alignment}"
        );
        assert!(buffer.bytes_left() >= 24);
        buffer.append_bytes(&[0x90; 3]).unwrap();
    }
}

#[test]
fn appends_past_the_end_fail_without_writing() {
    let settings = BufferSearchSettings::from_proximity(GIB, target(), 4096);
    let mut buffer = Buffers::get_buffer(&settings).unwrap();
    let left = buffer.bytes_left();
    let next = buffer.next_address();
    let too_much = vec![0xee; left + 1];
    let error = buffer.append_bytes(&too_much).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DoesNotFit);
    assert_eq!(buffer.bytes_left(), left);
    assert_eq!(buffer.next_address(), next);
    // Fresh pages are zero; nothing was written.
    if left > 0 {
        // SAFETY: `next` is inside the buffer, which is never unmapped.
        assert_eq!(unsafe { *(next as *const u8) }, 0);
    }
    buffer.append_bytes(&vec![0x11; left]).unwrap();
    assert_eq!(buffer.bytes_left(), 0);
    assert_eq!(
        buffer.append_copy(&1u8).unwrap_err().kind(),
        ErrorKind::DoesNotFit
    );
}

#[test]
fn invalid_requests_return_errors() {
    let valid = BufferSearchSettings::from_proximity(GIB, target(), 16);
    let reason = |settings: BufferSearchSettings, alignment| {
        Buffers::get_buffer_aligned(&settings, alignment)
            .unwrap_err()
            .invalid_request()
    };
    assert_eq!(
        reason(
            BufferSearchSettings::new(valid.min_address, valid.max_address, 0),
            1
        ),
        Some(InvalidRequest::ZeroSize)
    );
    assert_eq!(
        reason(BufferSearchSettings::new(10, 9, valid.size), 1),
        Some(InvalidRequest::MinAboveMax)
    );
    assert_eq!(
        reason(
            BufferSearchSettings::new(0x1000, 0x1000 + 14, valid.size),
            1
        ),
        Some(InvalidRequest::RangeSmallerThanSize)
    );
    assert_eq!(
        reason(
            // 4 GiB where a `usize` holds it (an item's size is 32 bits),
            // the largest `usize` elsewhere.
            BufferSearchSettings::new(
                0,
                highest_user_address(),
                (u32::MAX as usize).saturating_add(1)
            ),
            1
        ),
        Some(InvalidRequest::SizeTooLarge)
    );
    assert_eq!(
        reason(valid, 0),
        Some(InvalidRequest::AlignmentNotPowerOfTwo)
    );
    assert_eq!(
        reason(valid, 24),
        Some(InvalidRequest::AlignmentNotPowerOfTwo)
    );
    assert_eq!(
        reason(valid, 2 * allocation_granularity()),
        Some(InvalidRequest::AlignmentAboveGranularity)
    );
}

/// A small deterministic generator (xorshift) so the test needs no crate.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The byte pattern a thread writes on an iteration: it names both.
fn pattern(thread: u64, iteration: u64, len: usize) -> impl Iterator<Item = u8> {
    let seed = (thread << 32) | iteration;
    (0..len).map(move |index| {
        let word = seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left((index % 64) as u32);
        (word >> 24) as u8 ^ index as u8
    })
}

#[derive(Clone, Copy)]
struct Append {
    address: usize,
    len: usize,
    thread: u64,
    iteration: u64,
    min: usize,
    max: usize,
}

#[test]
fn eight_threads_share_buffers_without_overlap_or_corruption() {
    const THREADS: u64 = 8;
    let iterations = support::count_for_this_machine(100_000, 5_000, "iterations per thread");
    // Around this binary's code on 64-bit; on 32-bit, in the quiet part
    // of the first GiB (a 32-bit Windows program's code is at 4 MiB, and
    // Wine keeps most of the space above 1 GiB for itself).
    let (center, span) = if usize::BITS == 64 {
        (target(), GIB)
    } else {
        (0x2000_0000, 256 * MIB)
    };
    let ranges = [
        (center - span, center + span),
        (center - span / 4, center + span / 2),
        (center, center + span),
        (center - span, center),
    ];
    let results: Vec<(Vec<Append>, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                scope.spawn(move || {
                    let mut random = Random(0x2545_f491_4f6c_dd1d ^ ((thread + 1) * 0x9e37_79b9));
                    let mut appends = Vec::with_capacity(iterations as usize);
                    let mut short_handed = 0u64;
                    let mut bytes = Vec::with_capacity(512);
                    for iteration in 0..iterations {
                        let len = (random.next() % 512) as usize + 1;
                        let (min, max) = ranges[(random.next() % ranges.len() as u64) as usize];
                        let settings = BufferSearchSettings::new(min, max, len);
                        let mut buffer = Buffers::get_buffer(&settings).unwrap();
                        if buffer.bytes_left() < len {
                            short_handed += 1;
                        }
                        bytes.clear();
                        bytes.extend(pattern(thread, iteration, len));
                        let address = buffer.append_bytes(&bytes).unwrap();
                        appends.push(Append {
                            address,
                            len,
                            thread,
                            iteration,
                            min,
                            max,
                        });
                    }
                    (appends, short_handed)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .collect()
    });
    let mut all: Vec<Append> = Vec::new();
    for (appends, short_handed) in results {
        assert_eq!(
            short_handed, 0,
            "a buffer was handed out with less room than asked"
        );
        all.extend(appends);
    }
    assert_eq!(all.len() as u64, THREADS * iterations);
    for append in &all {
        assert!(append.address >= append.min && append.address + append.len - 1 <= append.max);
        // SAFETY: appended bytes live in buffers that are never unmapped.
        let written =
            unsafe { std::slice::from_raw_parts(append.address as *const u8, append.len) };
        assert!(
            written
                .iter()
                .copied()
                .eq(pattern(append.thread, append.iteration, append.len)),
            "pattern of thread {} iteration {} was overwritten",
            append.thread,
            append.iteration
        );
    }
    all.sort_unstable_by_key(|append| append.address);
    for pair in all.windows(2) {
        assert!(
            pair[0].address + pair[0].len <= pair[1].address,
            "two appends overlap"
        );
    }
    let distinct: HashSet<usize> = all.iter().map(|append| append.address).collect();
    assert_eq!(distinct.len(), all.len());
}

/// A buffer may extend past the requested `max_address` (buffers
/// are whole pages), but appends through the guard stop at it. The last
/// byte that fits ends exactly at `max_address`; one more byte fails with
/// `OutsideRequestedRange` and writes nothing.
#[test]
fn appends_stop_at_the_requested_range() {
    // A buffer with some bytes used, so that its free part starts mid-page.
    let mut first =
        Buffers::get_buffer(&BufferSearchSettings::from_proximity(GIB, target(), 4096)).unwrap();
    first.append_bytes(&[0x90; 8]).unwrap();
    let min = first.next_address();
    drop(first);
    // Whichever buffer serves a 16-byte request inside a 64-byte window has
    // free bytes starting inside it and continuing past it.
    let max = min + 63;
    let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(min, max, 16)).unwrap();
    assert_eq!(buffer.limit(), max);
    let start = buffer.next_address();
    assert!((min..=max - 15).contains(&start), "{start:#x}");
    assert!(
        buffer.base_address() + buffer.size() - 1 > max,
        "the buffer itself ends past the window"
    );
    let too_long = buffer.append_bytes(&[0xaa; 65]).unwrap_err();
    assert_eq!(too_long.kind(), ErrorKind::OutsideRequestedRange);
    assert_eq!(too_long.max_address(), max);
    assert_eq!(
        buffer.next_address(),
        start,
        "a failed append writes nothing"
    );
    let exact = max - start + 1;
    let address = buffer.append_bytes(&vec![0xbb; exact]).unwrap();
    assert_eq!(address, start);
    assert_eq!(buffer.next_address(), max + 1);
    assert!(
        buffer.bytes_left() > 0,
        "the buffer has room, the range has not"
    );
    assert_eq!(
        buffer.append_copy(&0u8).unwrap_err().kind(),
        ErrorKind::OutsideRequestedRange
    );
    assert_eq!(
        buffer.append_code(&[0xc3]).unwrap_err().kind(),
        ErrorKind::OutsideRequestedRange
    );
    // Appending nothing stays allowed at the limit.
    assert_eq!(buffer.append_bytes(&[]).unwrap(), max + 1);
}
