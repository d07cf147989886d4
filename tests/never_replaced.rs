//! A stale picture of the address space never costs more than a refused
//! system call: memory the library did not map is never replaced.
//!
//! In a test binary of its own because it leaves the library believing a
//! range is mapped after the test unmaps it (the library only learns of
//! other code's unmappings when it next reads the whole map), which would
//! make the nearest-first tests of `private_allocation.rs` flaky if the
//! system handed the same range to one of them.

use memory_buffers::{BufferAllocatorSettings, Buffers, ErrorKind, allocation_granularity};
use support::RegionWithHole;

mod support;

#[test]
fn occupied_memory_is_never_replaced() {
    let granule = allocation_granularity();
    // Occupy the only granules of a range with known bytes, on a fresh
    // mapping the library has not seen yet.
    let region = RegionWithHole::new(4, granule);
    let end = region.hole + granule;
    assert!(support::map_exact(region.hole, granule));
    // SAFETY: the granule was mapped read/write just above.
    unsafe { std::ptr::write_bytes(region.hole as *mut u8, 0x5a, granule) };
    let settings = BufferAllocatorSettings::new(region.hole, end - 1, granule).with_retry_count(2);
    let error = Buffers::allocate_private_memory(&settings).unwrap_err();
    // SAFETY: still mapped by this test.
    let intact = unsafe { std::slice::from_raw_parts(region.hole as *const u8, granule) }
        .iter()
        .all(|&byte| byte == 0x5a);
    support::unmap_exact(region.hole, granule);
    drop(region);
    assert_eq!(error.kind(), ErrorKind::NoSpaceInRange);
    assert!(intact, "the library mapped over memory it did not own");
}

/// Child processes of the scenario tests run under the emulator that runs
/// the test (`.ci/qemu-aarch64-runner` names it), or directly without one.
#[test]
fn children_run_under_the_runner_named_in_the_environment() {
    let executable = std::path::Path::new("/tests/scenarios");
    let command = support::runner_command(
        Some("qemu-aarch64-static -L /usr/aarch64-linux-gnu"),
        executable,
    );
    assert_eq!(command.get_program(), "qemu-aarch64-static");
    let arguments: Vec<_> = command.get_args().collect();
    assert_eq!(
        arguments,
        ["-L", "/usr/aarch64-linux-gnu", "/tests/scenarios"]
    );
    for runner in [None, Some(""), Some("  ")] {
        let command = support::runner_command(runner, executable);
        assert_eq!(command.get_program(), executable);
        assert_eq!(command.get_args().count(), 0);
    }
}
