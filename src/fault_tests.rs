//! Fault-injection tests (see `os::fault`).
//!
//! Each test makes chosen system calls fail on its own thread and checks that
//! the failure becomes an error value or the documented fallback, never a
//! panic, and that nothing is left behind: no mapping at the address that
//! was being claimed, no rendezvous file or temporary, no view of a file.
//!
//! Rendezvous tests never touch the real `/tmp/.reloaded`: each one works in
//! a fresh base directory under `/tmp` with a made-up process id. Placement
//! tests that need an exact address work far from anything the kernel or the
//! other tests map (around 42 TiB), so parallel tests cannot disturb them.
//!
//! Global state (the process state and its locator) is created before any
//! fault is switched on, so that a fault meant for one test cannot turn the
//! whole test process's locator into a private one.

#![allow(unsafe_code)]

use crate::error::ErrorKind;
use crate::error::PrivateLocatorReason;
use crate::os::fault::{FaultPoint, fail, fail_with};
use crate::settings::{BufferAllocatorSettings, BufferSearchSettings, highest_user_address};
use crate::shared::layout::LOCATOR_SIZE;
use crate::shared::locator::{Fit, Locator, LocatorKind};
use crate::shared::process;
use crate::shared::rendezvous::backend::unix_tests::{TempBase, locator_of, race_find_or_create};
use crate::shared::rendezvous::backend::{self as rendezvous, Rendezvous};
use crate::space::address_space::AddressSpace;
use crate::space::maps::parse_maps_line;
use crate::space::placement::{Candidates, PlacementRequest};
use crate::space::range_set::MappedRanges;
use crate::{Buffers, os};
use std::path::Path;
use std::sync::atomic::Ordering;

const PAGE: usize = 4096;

/// Start of the quiet area used by tests that need exact addresses; each
/// such test has its own slot above it: 4 GiB on 64-bit, 32 MiB between
/// 256 MiB and 576 MiB on 32-bit (below the executable, the heap and the
/// libraries, which a 32-bit Linux process has above 1 GiB).
#[cfg(target_pointer_width = "64")]
const QUIET_AREA: (usize, usize) = (0x2a00_0000_0000, 0x1_0000_0000);
#[cfg(target_pointer_width = "32")]
const QUIET_AREA: (usize, usize) = (0x1000_0000, 0x0200_0000);

fn quiet_slot(slot: usize) -> usize {
    QUIET_AREA.0 + slot * QUIET_AREA.1
}

/// Creates the process state and its locator with no fault active.
fn warm_up() {
    let state = process::current();
    state
        .locator()
        .expect("the test process must have a locator");
}

/// The mappings of the running process, as `(start, end, line)`.
fn mappings() -> Vec<(usize, usize, String)> {
    let text =
        std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps must be readable");
    text.lines()
        .map(|line| {
            let entry =
                parse_maps_line(line.as_bytes()).expect("every line of /proc/self/maps must parse");
            (entry.start, entry.end, line.to_owned())
        })
        .collect()
}

/// Mappings overlapping `[start, end)`.
fn mapped_in(start: usize, end: usize) -> Vec<(usize, usize, String)> {
    mappings()
        .into_iter()
        .filter(|&(s, e, _)| s < end && start < e)
        .collect()
}

/// A private anonymous read/write mapping made with plain `mmap`, so that
/// tests have an occupant the library did not create. Unmapped on drop.
struct Occupant {
    address: usize,
    len: usize,
}

impl Occupant {
    /// Maps `len` bytes at exactly `address`, filled with `pattern`.
    fn at(address: usize, len: usize, pattern: u8) -> Occupant {
        // SAFETY: `MAP_FIXED_NOREPLACE` cannot replace anything; the result
        // is checked below.
        let result = unsafe {
            libc::mmap(
                address as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert_eq!(
            result as usize, address,
            "the quiet area must be free at {address:#x}"
        );
        // SAFETY: the mapping was just created for this value, is `len`
        // bytes long and writable.
        unsafe { std::ptr::write_bytes(address as *mut u8, pattern, len) };
        Occupant { address, len }
    }

    /// Maps one page wherever the kernel likes.
    fn anywhere(pattern: u8) -> Occupant {
        // SAFETY: a null hint lets the kernel choose a free range.
        let result = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(result, libc::MAP_FAILED);
        let address = result as usize;
        // SAFETY: as in `at`.
        unsafe { std::ptr::write_bytes(address as *mut u8, pattern, PAGE) };
        Occupant { address, len: PAGE }
    }

    fn holds(&self, pattern: u8) -> bool {
        // SAFETY: the mapping lives as long as `self` and is readable.
        let bytes = unsafe { std::slice::from_raw_parts(self.address as *const u8, self.len) };
        bytes.iter().all(|&byte| byte == pattern)
    }
}

impl Drop for Occupant {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by this value alone.
        unsafe { libc::munmap(self.address as *mut libc::c_void, self.len) };
    }
}

/// A request aimed at the middle of `[min, max]`, where these tests put
/// their target.
fn placement(min: usize, max: usize, block_len: usize) -> PlacementRequest {
    PlacementRequest {
        min,
        max,
        block_len,
        range_len: block_len,
        granularity: os::allocation_granularity(),
        lowest_address: os::lowest_mappable_address(),
        highest_address: highest_user_address(),
        target: Some(min + (max - min) / 2),
    }
}

#[test]
fn refused_mmap_makes_private_allocation_fail_with_an_os_error() {
    warm_up();
    let settings = BufferAllocatorSettings::from_proximity(0x1000_0000, quiet_slot(0), 3 * PAGE);
    let _failing = fail(&[FaultPoint::MapMemory]);
    let error = Buffers::allocate_private_memory(&settings).expect_err("mmap is refused");
    assert_eq!(
        error.kind(),
        ErrorKind::Os {
            call: "mmap",
            errno: libc::EIO
        }
    );
    assert_eq!(
        (error.min_address(), error.max_address(), error.size()),
        (settings.min_address, settings.max_address, 3 * PAGE)
    );
    assert_eq!(error.errno(), Some(libc::EIO));
}

#[test]
fn refused_mmap_makes_map_nearest_fail_and_leaves_the_candidate_unmapped() {
    warm_up();
    let target = quiet_slot(1);
    let request = placement(target - 0x10_0000, target + 0x10_0000, 2 * PAGE);
    let mut ranges = Vec::new();
    for (start, end, _) in mappings() {
        ranges.push((start, end));
    }
    let known = MappedRanges::from_ranges(ranges);
    let candidate = Candidates::new(&known, request)
        .next()
        .expect("the quiet area has room");
    assert_eq!(
        candidate, target,
        "the first candidate is the target's own page"
    );
    assert!(mapped_in(candidate, candidate + request.block_len).is_empty());

    let mut space = AddressSpace::new();
    {
        let _failing = fail(&[FaultPoint::MapMemory]);
        let error = space.map_nearest(request, 3).expect_err("mmap is refused");
        assert_eq!(
            error.kind,
            ErrorKind::Os {
                call: "mmap",
                errno: libc::EIO
            }
        );
    }
    assert!(mapped_in(candidate, candidate + request.block_len).is_empty());
    // The refusal did not poison the view: without the fault the same
    // request lands on the same candidate.
    let mapping = space.map_nearest(request, 3).expect("mmap works again");
    assert_eq!(mapping.address(), candidate);
    assert_eq!(mapped_in(candidate, candidate + request.block_len).len(), 1);
    space.unmap(mapping);
    assert!(mapped_in(candidate, candidate + request.block_len).is_empty());
}

#[test]
fn refused_mmap_makes_a_new_shared_buffer_fail_with_an_os_error() {
    warm_up();
    // No buffer exists this far up, so the request must map new pages.
    let target = quiet_slot(2);
    let settings = BufferSearchSettings::from_proximity(0x100_0000, target, 64);
    {
        let _failing = fail(&[FaultPoint::MapMemory]);
        let error = Buffers::get_buffer(&settings).expect_err("mmap is refused");
        assert_eq!(
            error.kind(),
            ErrorKind::Os {
                call: "mmap",
                errno: libc::EIO
            }
        );
    }
    assert!(mapped_in(settings.min_address, settings.max_address + 1).is_empty());
    // The failure left no lock held and no half-registered item: the same
    // request now succeeds, and a second one finds the buffer again.
    let mut buffer = Buffers::get_buffer(&settings).expect("mmap works again");
    let written = buffer.append_bytes(&[0x5a; 8]).expect("the bytes fit");
    assert!(written >= settings.min_address && written + 7 <= settings.max_address);
    let base = buffer.base_address();
    drop(buffer);
    let again = Buffers::get_buffer(&settings).expect("the buffer is found again");
    assert_eq!(again.base_address(), base);
    assert_eq!(again.position(), 8);
}

#[test]
fn unreadable_proc_maps_degrades_to_probing_next_to_an_occupied_target() {
    warm_up();
    let target = quiet_slot(3);
    let occupant = Occupant::at(target, PAGE, 0xa5);
    // Pivot = the occupant's page; with no map to read, placement must
    // probe it, be refused with EEXIST, and take the nearest page below
    // (ties go to the lower address).
    let request = placement(target - 8 * PAGE, target + 9 * PAGE - 1, PAGE);
    let mut space = AddressSpace::new();
    let mapping = {
        let _failing = fail(&[FaultPoint::ReadMaps]);
        space
            .map_nearest(request, 3)
            .expect("probing finds a free page")
    };
    assert_eq!(
        space.known_ranges(),
        1,
        "only what was learned by probing is known"
    );
    assert_eq!(mapping.address(), target - PAGE);
    assert!(occupant.holds(0xa5), "the occupant was not replaced");
    assert_eq!(mapped_in(target, target + PAGE).len(), 1);
    space.unmap(mapping);
    assert!(mapped_in(target - PAGE, target).is_empty());
    drop(occupant);
}

#[test]
fn unreadable_proc_maps_still_allows_private_allocation_through_the_api() {
    warm_up();
    let target = refused_mmap_makes_private_allocation_fail_with_an_os_error as *const () as usize;
    let settings = BufferAllocatorSettings::from_proximity(0x7fff_0000, target, PAGE);
    let _failing = fail(&[FaultPoint::ReadMaps]);
    let allocation =
        Buffers::allocate_private_memory(&settings).expect("allocation works without /proc");
    assert!(allocation.base_address() >= settings.min_address);
    assert!(allocation.base_address() + PAGE - 1 <= settings.max_address);
    // SAFETY: the allocation is PAGE writable bytes owned by this test.
    unsafe { std::ptr::write_bytes(allocation.as_ptr(), 0x77, PAGE) };
}

#[test]
fn a_fully_occupied_range_reports_no_space_and_leaves_the_occupant_intact() {
    warm_up();
    let start = quiet_slot(4);
    let occupant = Occupant::at(start, 4 * PAGE, 0x3c);
    let before = mapped_in(start, start + 4 * PAGE);
    for failing_maps in [true, false] {
        let mut space = AddressSpace::new();
        let _failing = failing_maps.then(|| fail(&[FaultPoint::ReadMaps]));
        let error = space
            .map_nearest(placement(start, start + 4 * PAGE - 1, PAGE), 2)
            .expect_err("every candidate is occupied");
        assert_eq!(error.kind, ErrorKind::NoSpaceInRange);
    }
    assert!(occupant.holds(0x3c));
    assert_eq!(mapped_in(start, start + 4 * PAGE), before);
}

/// `retry_count = u32::MAX` on a full range used to
/// re-read the map four billion times. It must stop after the first fresh
/// picture without a candidate, with or without `/proc`.
#[test]
fn a_huge_retry_count_on_a_full_range_stops_after_one_fresh_picture() {
    warm_up();
    let start = quiet_slot(6);
    let occupant = Occupant::at(start, 4 * PAGE, 0x4d);
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reads = Vec::new();
        for failing_maps in [false, true] {
            let mut space = AddressSpace::new();
            let _failing = failing_maps.then(|| fail(&[FaultPoint::ReadMaps]));
            let error = space
                .map_nearest(placement(start, start + 4 * PAGE - 1, PAGE), u32::MAX)
                .expect_err("every candidate is occupied");
            assert_eq!(error.kind, ErrorKind::NoSpaceInRange);
            reads.push(space.reads());
        }
        let _ = done.send(reads);
    });
    let reads = outcome
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("map_nearest returns within 20 s");
    assert!(
        reads.iter().all(|&reads| reads <= 2),
        "reads of the map: {reads:?}"
    );
    assert!(occupant.holds(0x4d));
}

/// Without `/proc`, probing gave up after a few dozen
/// pages on each side (32 refused candidates per "refresh", 3 refreshes).
/// 150 occupied pages on each side of the target, in many separate
/// mappings, must not hide the free page just past them.
#[test]
fn without_proc_probing_finds_a_free_page_far_beyond_the_occupied_ones() {
    warm_up();
    let target = quiet_slot(9);
    // Alternating protections keep neighbouring mappings apart, as the
    // many small mappings near code are.
    let occupants: Vec<Occupant> = (0..30)
        .map(|block| Occupant::at(target - 150 * PAGE + block * 10 * PAGE, 10 * PAGE, 0x42))
        .collect();
    for (block, occupant) in occupants.iter().enumerate() {
        if block % 2 == 1 {
            // SAFETY: our own mapping; read-only keeps its bytes readable.
            unsafe {
                libc::mprotect(
                    occupant.address as *mut libc::c_void,
                    occupant.len,
                    libc::PROT_READ,
                )
            };
        }
    }
    let mut space = AddressSpace::new();
    let mapping = {
        let _unreadable = fail(&[FaultPoint::ReadMaps]);
        space
            .map_nearest(
                placement(target - 400 * PAGE, target + 400 * PAGE, PAGE),
                crate::settings::DEFAULT_RETRY_COUNT,
            )
            .expect("a free page lies 150 pages from the target")
    };
    assert_eq!(
        mapping.address(),
        target + 150 * PAGE,
        "the nearest free page"
    );
    assert!(occupants.iter().all(|occupant| occupant.holds(0x42)));
    space.unmap(mapping);
}

fn file_unavailable_eio() -> PrivateLocatorReason {
    PrivateLocatorReason::FileUnavailable { errno: libc::EIO }
}

#[test]
fn an_unopenable_rendezvous_directory_is_reported_and_nothing_is_created() {
    let base = TempBase::new();
    let result = {
        let _failing = fail(&[FaultPoint::OpenRendezvous]);
        base.find_or_create()
    };
    assert_eq!(
        result,
        Err(PrivateLocatorReason::DirectoryUnavailable { errno: libc::EIO })
    );
    assert!(!base.path.exists());
    assert_eq!(base.mappings(), Some(0));
}

#[test]
fn a_file_that_cannot_be_sized_reports_file_unavailable_and_leaves_no_file_or_mapping() {
    let base = TempBase::new();
    let result = {
        let _failing = fail(&[FaultPoint::ResizeRendezvous]);
        base.find_or_create()
    };
    assert_eq!(result, Err(file_unavailable_eio()));
    assert!(
        base.directory().is_dir(),
        "the directories were created before the failure"
    );
    assert_eq!(
        base.entries(),
        Vec::<String>::new(),
        "the temporary file was removed"
    );
    assert_eq!(base.mappings(), Some(0));
}

#[test]
fn a_full_file_system_reports_enospc_and_leaves_no_file_or_mapping() {
    let base = TempBase::new();
    let result = {
        let _failing = fail_with(&[FaultPoint::AllocateRendezvous], libc::ENOSPC);
        base.find_or_create()
    };
    assert_eq!(
        result,
        Err(PrivateLocatorReason::FileUnavailable {
            errno: libc::ENOSPC
        })
    );
    assert_eq!(base.entries(), Vec::<String>::new());
    assert_eq!(base.mappings(), Some(0), "nothing was mapped");
}

#[test]
fn an_existing_file_whose_blocks_cannot_be_had_is_not_read_through_a_mapping() {
    let base = TempBase::new();
    let created = base.create();
    let result = {
        let _failing = fail_with(&[FaultPoint::AllocateRendezvous], libc::ENOSPC);
        base.find_or_create()
    };
    assert_eq!(
        result,
        Err(PrivateLocatorReason::FileUnavailable {
            errno: libc::ENOSPC
        })
    );
    assert_eq!(base.mappings(), Some(1), "only the creator's mapping");
    assert_eq!(base.stored_address(), created.address());
}

/// A signal delivered to one thread every `interval`, until dropped, with a
/// handler that does nothing and no `SA_RESTART`: every blocking call of
/// that thread is interrupted again and again, as under a sampling profiler.
struct SignalStorm {
    timer: libc::timer_t,
}

extern "C" fn ignore_signal(_signal: libc::c_int) {}

impl SignalStorm {
    fn on_this_thread(interval: std::time::Duration) -> SignalStorm {
        let signal = libc::SIGRTMIN() + 5;
        // SAFETY: a zeroed `sigaction` is valid; the handler is an
        // async-signal-safe function that does nothing. The signal is one no
        // other code in the test process uses.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as *const () as usize;
            action.sa_flags = 0;
            libc::sigemptyset(&mut action.sa_mask);
            assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
        }
        // SAFETY: a zeroed `sigevent` is valid; the fields set make the
        // timer signal this thread.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal;
        // SAFETY: `gettid` has no preconditions.
        event.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to a `sigevent` and a `timer_t`.
        assert_eq!(
            unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) },
            0
        );
        let period = libc::timespec {
            tv_sec: 0,
            tv_nsec: interval.as_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: period,
            it_value: period,
        };
        // SAFETY: `timer` was just created; `spec` is valid.
        assert_eq!(
            unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) },
            0
        );
        SignalStorm { timer }
    }
}

impl Drop for SignalStorm {
    fn drop(&mut self) {
        // SAFETY: deleting the timer created in `on_this_thread`; pending
        // signals are harmless (the handler does nothing).
        unsafe { libc::timer_delete(self.timer) };
    }
}

/// With a signal every 50 µs, the 1 ms sleeps of the
/// stale-file check and of the takeover lock must still end; the
/// whole takeover must take milliseconds, not forever.
#[test]
fn a_stale_file_is_taken_over_under_a_signal_storm() {
    let base = TempBase::new();
    base.create_directories();
    std::fs::write(base.file(), b"").expect("an empty stale file");
    let base = std::sync::Arc::new(base);
    let (done, outcome) = std::sync::mpsc::channel();
    let worker = {
        let base = std::sync::Arc::clone(&base);
        std::thread::spawn(move || {
            let storm = SignalStorm::on_this_thread(std::time::Duration::from_micros(50));
            let started = std::time::Instant::now();
            let result = base.find_or_create();
            let elapsed = started.elapsed();
            drop(storm);
            let _ = done.send((result.is_ok(), elapsed));
        })
    };
    let (created, elapsed) = outcome
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the takeover ends within 20 s under the storm");
    worker.join().expect("the worker does not panic");
    assert!(created, "the stale file is taken over");
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "took {elapsed:?}"
    );
}

#[test]
fn the_directory_lock_wait_is_bounded_under_a_signal_storm() {
    let base = TempBase::new();
    base.create_directories();
    let directory = os::Directory::open_or_create(None, base.directory().to_str().unwrap(), 0o700)
        .expect("the directory opens");
    let other = os::Directory::open_or_create(None, base.directory().to_str().unwrap(), 0o700)
        .expect("the directory opens twice");
    let held = directory
        .lock_exclusive(std::time::Duration::ZERO)
        .expect("the first lock is free");
    let (done, outcome) = std::sync::mpsc::channel();
    // Not a scoped thread: if the wait never ended, the test must fail at
    // the timeout rather than hang joining it.
    std::thread::spawn(move || {
        let _storm = SignalStorm::on_this_thread(std::time::Duration::from_micros(50));
        let started = std::time::Instant::now();
        let second = other.lock_exclusive(std::time::Duration::from_millis(50));
        let _ = done.send((second.is_none(), started.elapsed()));
    });
    let (refused, elapsed) = outcome
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the wait ends within 20 s under the storm");
    assert!(refused, "the lock is held by the other descriptor");
    assert!(
        elapsed < std::time::Duration::from_secs(2),
        "waited {elapsed:?}"
    );
    drop(held);
}

#[test]
fn a_failing_rendezvous_mmap_reports_file_unavailable_and_leaves_no_file_or_mapping() {
    let base = TempBase::new();
    let result = {
        let _failing = fail(&[FaultPoint::MapRendezvous]);
        base.find_or_create()
    };
    assert_eq!(result, Err(file_unavailable_eio()));
    assert_eq!(base.entries(), Vec::<String>::new());
    assert_eq!(base.mappings(), Some(0));
}

/// A policy that refuses the shared mapping of the rendezvous file
/// (`EACCES` from an LSM, `EPERM` from a seccomp filter or a sealed file)
/// leaves the process with a private locator, as any other failure does:
/// never an error for the caller, never a crash.
#[test]
fn a_refused_rendezvous_mapping_gives_a_private_locator_that_works() {
    warm_up();
    for errno in [libc::EACCES, libc::EPERM] {
        let base = TempBase::new();
        let result = {
            let _failing = fail_with(&[FaultPoint::MapRendezvous], errno);
            base.find_or_create()
        };
        assert_eq!(result, Err(PrivateLocatorReason::FileUnavailable { errno }));
        assert_eq!(base.entries(), Vec::<String>::new());
        assert_eq!(base.mappings(), Some(0));

        // Through the real `/tmp`, where this process's file exists (the
        // locator mapping it is refused): only where the process shares
        // its locator, or something else would be found wrong first.
        let shared = process::current()
            .locator()
            .expect("the test process has a locator");
        if shared.kind() != LocatorKind::Shared {
            continue;
        }
        let locator = {
            let _failing = fail_with(&[FaultPoint::MapRendezvous], errno);
            Locator::open().expect("a private locator can always be mapped")
        };
        assert_eq!(
            locator.kind(),
            LocatorKind::Private(PrivateLocatorReason::FileUnavailable { errno })
        );
        assert_ne!(
            locator.head_address(),
            shared.head_address(),
            "the private locator is not the shared one"
        );
    }
}

#[test]
fn a_failing_view_of_an_existing_rendezvous_is_reported_and_leaves_only_the_creators_mapping() {
    let base = TempBase::new();
    let created = base.create();
    assert_eq!(base.mappings(), Some(1));
    let result = {
        let _failing = fail(&[FaultPoint::MapRendezvous]);
        base.find_or_create()
    };
    assert_eq!(result, Err(file_unavailable_eio()));
    assert_eq!(base.mappings(), Some(1));
    assert_eq!(
        base.stored_address(),
        created.address(),
        "the file was not replaced"
    );
}

#[test]
fn the_shared_locator_falls_back_to_a_private_one_that_works() {
    warm_up();
    let locator = {
        let _failing = fail(&[FaultPoint::OpenRendezvous]);
        Locator::open().expect("a private locator can always be mapped")
    };
    assert_eq!(
        locator.kind(),
        LocatorKind::Private(PrivateLocatorReason::DirectoryUnavailable { errno: libc::EIO })
    );
    // Buffers need a `'static` locator. Kept in a static rather than
    // leaked, so that LeakSanitizer still sees it referenced.
    static FALLBACK: std::sync::OnceLock<Locator> = std::sync::OnceLock::new();
    let locator: &'static Locator = FALLBACK.get_or_init(|| locator);
    let settings = BufferSearchSettings::from_proximity(0x100_0000, quiet_slot(5), 32);
    let request = settings.validate().expect("valid settings");
    let fit = Fit {
        min: request.min,
        max: request.max,
        size: request.size,
        alignment: 1,
    };
    let owner = process::current();
    let mut buffer = locator
        .get_buffer(
            owner.generation(),
            owner.shared_address_space(),
            &request,
            fit,
        )
        .expect("the private locator hands out buffers");
    let address = buffer.append_bytes(&[1, 2, 3, 4]).expect("the bytes fit");
    assert!(address >= request.min && address + 3 <= request.max);
    drop(buffer);
    assert!(locator.contains_written(address, 4));
    let again = locator
        .get_buffer(
            owner.generation(),
            owner.shared_address_space(),
            &request,
            fit,
        )
        .expect("the buffer is found again");
    assert_eq!(again.next_address(), address + 4);
}

#[test]
fn without_memory_for_a_private_locator_the_mmap_error_is_returned() {
    warm_up();
    let _failing = fail(&[FaultPoint::OpenRendezvous, FaultPoint::MapMemory]);
    let error = Locator::open().err().expect("no locator can be made");
    assert_eq!(
        error,
        ErrorKind::Os {
            call: "mmap",
            errno: libc::EIO
        }
    );
}

/// Says that the calling test is skipped, and why, past the test
/// harness's capture of standard error, so that the skip is seen.
fn skip(reason: &str) {
    use std::io::Write;
    let name = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr(), "{name}: skipped, {reason}");
}

/// Why the check without `/proc` cannot run here, if it cannot: QEMU user
/// mode does not implement `process_vm_readv` (it answers `ENOSYS`), so
/// without `/proc` the library cannot prove a rendezvous live and, rightly,
/// uses a private locator (`FileUnavailable { errno: ENOSYS }`), which the
/// test below counts as a failure.
fn own_memory_unreadable() -> Option<String> {
    let word = 0x5a5au16;
    let mut read = [0u8; 2];
    match os::read_own_memory(&word as *const u16 as usize, &mut read) {
        Ok(()) if read == word.to_ne_bytes() => None,
        Ok(()) => Some("process_vm_readv read other bytes than memory holds".into()),
        Err(errno) => Some(format!(
            "process_vm_readv fails here with errno {errno} (QEMU user mode does not \
             implement it), so there is no way to check a rendezvous without /proc"
        )),
    }
}

/// Without `/proc`, a second instance judged the live
/// file stale and replaced it: two instances, two registries, both
/// "shared". Now the page is checked through `process_vm_readv`.
#[test]
fn without_proc_a_live_rendezvous_is_found_not_replaced() {
    if let Some(reason) = own_memory_unreadable() {
        skip(&reason);
        return;
    }
    let base = TempBase::new();
    let created = base.create();
    for _ in 0..3 {
        let _unreadable = fail(&[FaultPoint::ReadMaps]);
        assert_eq!(base.find_or_create(), Ok(Rendezvous::Found(created)));
    }
    assert_eq!(base.stored_address(), created.address());
    assert_eq!(base.mappings(), Some(1), "the check's views were unmapped");
    assert_eq!(created.lock().load(Ordering::Relaxed), 0, "lock released");
    assert_eq!(
        created.probe().load(Ordering::Relaxed),
        0,
        "the check value was cleared"
    );
}

#[test]
fn without_proc_a_rendezvous_naming_unmapped_or_unrelated_memory_is_taken_over() {
    if let Some(reason) = own_memory_unreadable() {
        skip(&reason);
        return;
    }
    let base = TempBase::new();
    let first = base.create();
    // Unmapped: the quiet area is empty.
    first.this_address().store(quiet_slot(7), Ordering::Relaxed);
    let second = {
        let _unreadable = fail(&[FaultPoint::ReadMaps]);
        base.create()
    };
    assert_ne!(second, first);
    // Mapped, but not the file: read, never written.
    let decoy = Occupant::anywhere(0x11);
    second
        .this_address()
        .store(decoy.address, Ordering::Relaxed);
    let third = {
        let _unreadable = fail(&[FaultPoint::ReadMaps]);
        base.create()
    };
    assert!(decoy.holds(0x11), "the decoy was not written");
    // Another rendezvous file's live locator: not this file's page.
    let other = TempBase::new();
    let foreign = other.create();
    third
        .this_address()
        .store(foreign.address(), Ordering::Relaxed);
    let fourth = {
        let _unreadable = fail(&[FaultPoint::ReadMaps]);
        base.create()
    };
    assert_ne!(fourth, foreign);
    assert_eq!(foreign.lock().load(Ordering::Relaxed), 0);
    assert_eq!(base.find_or_create(), Ok(Rendezvous::Found(fourth)));
}

#[test]
fn without_proc_or_process_vm_readv_a_possibly_live_rendezvous_is_not_replaced() {
    let base = TempBase::new();
    let created = base.create();
    let result = {
        let _blind = fail(&[FaultPoint::ReadMaps, FaultPoint::ReadOwnMemory]);
        base.find_or_create()
    };
    assert_eq!(result, Err(file_unavailable_eio()));
    assert_eq!(base.stored_address(), created.address());
}

/// A file of ours that cannot be opened (read-only after
/// a umask of 0277) was taken for stale and replaced.
#[test]
fn a_rendezvous_file_of_ours_that_cannot_be_opened_is_not_taken_over() {
    let base = TempBase::new();
    let created = base.create();
    let result = {
        let _refused = fail_with(&[FaultPoint::OpenRendezvousFile], libc::EACCES);
        base.find_or_create()
    };
    assert_eq!(
        result,
        Err(PrivateLocatorReason::FileUnavailable {
            errno: libc::EACCES
        })
    );
    assert_eq!(base.stored_address(), created.address());
    assert_eq!(base.find_or_create(), Ok(Rendezvous::Found(created)));
}
/// Writing code flushes the instruction cache for exactly the
/// written range, and on AArch64 the flush cleans and invalidates cache
/// lines covering it. QEMU cannot show that the flush is *needed* (it
/// notices modified code by itself); this shows that it is *done*.
#[test]
fn code_writes_flush_exactly_the_written_range() {
    use crate::os::fault::flushes;
    let settings = BufferSearchSettings::new(0, highest_user_address(), 64);
    let mut buffer = Buffers::get_buffer(&settings).unwrap();
    let before = flushes();
    buffer.append_bytes(&[1, 2, 3]).unwrap();
    assert_eq!(flushes(), before, "data is not flushed");
    let code = [0u8; 24];
    let address = buffer.append_code(&code).unwrap();
    let after_append = flushes();
    assert_eq!(after_append.count, before.count + 1);
    assert_eq!(after_append.last, (address, code.len()));
    drop(buffer);
    // SAFETY: the target is the code just written, which nothing runs.
    unsafe { Buffers::overwrite_allocated_code(address + 4, &code[..8]) }.unwrap();
    let after_overwrite = flushes();
    assert_eq!(after_overwrite.count, after_append.count + 1);
    assert_eq!(after_overwrite.last, (address + 4, 8));
    // AArch64 cleans and invalidates at least one line (both steps unless
    // `CTR_EL0` says one is not needed); x86 needs no maintenance.
    if cfg!(target_arch = "aarch64") {
        assert!(after_append.last_lines >= 1, "{after_append:?}");
    } else {
        assert_eq!(after_append.last_lines, 0);
    }
}

// Two rendezvous tests that need no fault stay here because
// `.ci/sanitizers` runs them by these paths: the one that needs root under
// AddressSanitizer, the race under ThreadSanitizer. The rest are in
// `shared/rendezvous/unix_tests.rs`.

/// Changes the owner of `path` (not following symlinks).
fn change_owner(path: &Path, user: u32) {
    let name = std::ffi::CString::new(path.to_str().expect("ASCII path")).expect("no NUL");
    // SAFETY: `name` is a valid NUL-terminated path; `lchown` has no other
    // preconditions.
    let result = unsafe { libc::lchown(name.as_ptr(), user, user) };
    assert_eq!(
        result,
        0,
        "lchown failed: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
#[ignore = "needs root to give a file to another user; .ci/sanitizers runs it"]
fn files_and_directories_of_another_user_are_not_trusted() {
    const STRANGER: u32 = 54_321;
    let base = TempBase::new();
    base.create_directories();
    std::fs::write(base.file(), [0u8; LOCATOR_SIZE]).expect("the file can be written");
    change_owner(&base.file(), STRANGER);
    assert_eq!(
        base.find_or_create(),
        Err(PrivateLocatorReason::FileNotTrusted)
    );
    assert_eq!(base.mappings(), Some(0));
    // Someone else's symlink is not ours to replace either.
    std::fs::remove_file(base.file()).expect("the file can be removed");
    std::os::unix::fs::symlink("/nonexistent", base.file()).expect("the symlink can be planted");
    change_owner(&base.file(), STRANGER);
    assert_eq!(
        base.find_or_create(),
        Err(PrivateLocatorReason::FileNotTrusted)
    );
    std::fs::remove_file(base.file()).expect("the symlink can be removed");
    // Another user's directory that only they may write to: they could
    // replace our files at will.
    use std::os::unix::fs::PermissionsExt;
    change_owner(&base.directory(), STRANGER);
    std::fs::set_permissions(base.directory(), std::fs::Permissions::from_mode(0o755))
        .expect("the mode can be changed");
    assert_eq!(
        base.find_or_create(),
        Err(PrivateLocatorReason::DirectoryNotTrusted)
    );
    // Another user's shared sticky directory (what the
    // library creates when that user came first) is fine: files in it are
    // checked one by one, and only their owner may remove them.
    std::fs::set_permissions(base.directory(), std::fs::Permissions::from_mode(0o1777))
        .expect("the mode can be changed");
    base.create();
}

#[test]
fn instances_starting_together_share_one_new_locator() {
    for _ in 0..20 {
        let base = TempBase::new();
        let outcomes = race_find_or_create(&base, 4);
        let created = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Ok(Rendezvous::Created(_))))
            .count();
        assert_eq!(created, 1, "exactly one instance creates: {outcomes:?}");
        let first = locator_of(&outcomes[0]);
        assert!(
            outcomes.iter().all(|outcome| locator_of(outcome) == first),
            "{outcomes:?}"
        );
        assert_eq!(base.stored_address(), first.address());
        assert_eq!(base.entries(), vec![rendezvous::file_name(base.pid)]);
    }
}
