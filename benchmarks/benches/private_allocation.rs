//! Private allocations near a target, beside a bare
//! `mmap(MAP_FIXED_NOREPLACE)` + `munmap` of the same size at a free address
//! near the same target.
//!
//! Targets:
//! - within 1.5x of the bare pair in a plain process;
//! - within 3x of the bare pair after the process has 1,000, 10,000 and
//!   30,000 extra mappings (once the first allocation has read the map);
//! - the first allocation of a fresh process (which reads
//!   `/proc/self/maps`) within 1.3x of one read and parse of that file in the
//!   same process with the same mappings, measured in child processes.
//!
//! The extra mappings are single pages with single-page holes, packed
//! downwards from the first page below the executable's image (see
//! `common::ExtraMappings`): the hole nearest the target is the page two
//! below the image, so 4 KiB allocations land among them, and an 8 KiB
//! allocation cannot use any hole. Both are measured.

use criterion::Criterion;
use memory_buffers::{BufferAllocatorSettings, Buffers};
use std::hint::black_box;
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;

use common::{
    ExtraMappings, PAGE, Row, criterion_median_ns, field, median, print_summary, target_address,
};

const GROUP: &str = "private_allocation";
const PROXIMITY: usize = 1 << 30;
const MAPPING_COUNTS: [usize; 3] = [1_000, 10_000, 30_000];
/// Fresh processes per mapping count for the first-allocation measurement.
const CHILDREN: usize = 15;
/// Environment variable that turns this binary into a child measuring its
/// first allocation; the value is the number of extra mappings to make.
const COLD_CHILD: &str = "MEMORY_BUFFERS_BENCH_COLD_ALLOCATION";
/// Environment variable that turns this binary into a child running the
/// benches with that many extra mappings.
const WARM_CHILD: &str = "MEMORY_BUFFERS_BENCH_WARM_ALLOCATION";

fn settings(size: usize) -> BufferAllocatorSettings {
    BufferAllocatorSettings::from_proximity(PROXIMITY, target_address(), size)
}

fn allocate_and_drop(settings: &BufferAllocatorSettings) {
    let allocation =
        Buffers::allocate_private_memory(black_box(settings)).expect("allocate_private_memory");
    drop(black_box(allocation));
}

/// Where the library places an allocation right now: the free address the
/// bare pair then uses, so both map the same pages.
fn library_choice(settings: &BufferAllocatorSettings) -> usize {
    Buffers::allocate_private_memory(settings)
        .expect("allocate_private_memory")
        .base_address()
}

/// Maps `len` read/write/execute bytes at exactly `address` with
/// `MAP_FIXED_NOREPLACE` and unmaps them again.
fn bare_pair(address: usize, len: usize) {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the
    // result is checked before anything else happens.
    let mapped = unsafe {
        libc::mmap(
            black_box(address) as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    assert_eq!(mapped as usize, address, "bare mmap at {address:#x} failed");
    // SAFETY: unmaps exactly the pages mapped just above, which nothing else
    // refers to.
    let result = unsafe { libc::munmap(mapped, len) };
    assert_eq!(result, 0, "munmap failed");
}

fn pair_of_benches(c: &mut Criterion, suffix: &str, size: usize) {
    let settings = settings(size);
    allocate_and_drop(&settings);
    let address = library_choice(&settings);
    let mut group = c.benchmark_group(GROUP);
    group.bench_function(format!("bare_mmap_munmap{suffix}"), |b| {
        b.iter(|| bare_pair(address, size))
    });
    group.bench_function(format!("allocate_drop{suffix}"), |b| {
        b.iter(|| allocate_and_drop(&settings))
    });
    group.finish();
}

/// What one child reports: `(one read + parse of the maps, first allocation)`
/// in nanoseconds.
fn cold_child(extra_mappings: usize) -> ! {
    let mut extra = ExtraMappings::new();
    extra.grow_to(extra_mappings);
    let settings = settings(PAGE);
    let (mut buffer, mut ranges) = (Vec::new(), Vec::new());
    let started = Instant::now();
    common::read_and_parse_maps(&mut buffer, &mut ranges);
    let maps_read = started.elapsed();
    let lines = ranges.len();
    let started = Instant::now();
    let allocation = Buffers::allocate_private_memory(&settings);
    let first_allocation = started.elapsed();
    let allocation = allocation.expect("first allocation");
    println!(
        "maps_read_ns={} first_allocation_ns={} maps_lines={lines} base={:#x}",
        maps_read.as_nanos(),
        first_allocation.as_nanos(),
        allocation.base_address()
    );
    drop(allocation);
    drop(extra);
    std::process::exit(0);
}

/// Medians over fresh processes: `(maps read, first allocation, maps lines)`.
fn cold_samples(extra_mappings: usize) -> (f64, f64, f64) {
    let (mut reads, mut allocations, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..CHILDREN {
        let output = common::run_child(COLD_CHILD, &extra_mappings.to_string());
        reads.push(field(&output, "maps_read_ns"));
        allocations.push(field(&output, "first_allocation_ns"));
        lines.push(field(&output, "maps_lines"));
    }
    (
        median(&mut reads),
        median(&mut allocations),
        median(&mut lines),
    )
}

/// Runs the benches with `count` extra mappings. Called in a child process
/// that made the mappings before its first use of the library, so the
/// library's view of the address space (read once, on first use) includes
/// all of them, and the parent's other benches never see them.
fn warm_child(count: usize) -> ! {
    let mut extra = ExtraMappings::new();
    extra.grow_to(count);
    let mut c = common::criterion();
    pair_of_benches(&mut c, &format!("_{count}_mappings"), PAGE);
    pair_of_benches(&mut c, &format!("_8k_{count}_mappings"), 2 * PAGE);
    println!(
        "{count} extra mappings: one page each with one-page holes, downwards from {:#x}; \
         4 KiB allocations land at {:#x}, 8 KiB ones at {:#x}; target {:#x}",
        extra.nearest_hole() + PAGE,
        library_choice(&settings(PAGE)),
        library_choice(&settings(2 * PAGE)),
        target_address()
    );
    drop(extra);
    std::process::exit(0);
}

fn parse_count(value: std::ffi::OsString) -> usize {
    value
        .to_str()
        .and_then(|count| count.parse().ok())
        .expect("mapping count")
}

fn main() {
    if let Some(count) = std::env::var_os(COLD_CHILD) {
        cold_child(parse_count(count));
    }
    if let Some(count) = std::env::var_os(WARM_CHILD) {
        warm_child(parse_count(count));
    }

    // A plain process first, before any extra mapping exists.
    let mut c = common::criterion();
    pair_of_benches(&mut c, "", PAGE);
    c.final_summary();
    for count in MAPPING_COUNTS {
        common::run_child_passing_arguments(WARM_CHILD, &count.to_string());
    }

    let mut rows = Vec::new();
    let row = |name: String, function: String, baseline: String, max_ratio: Option<f64>| Row {
        name,
        value_ns: criterion_median_ns(GROUP, &function),
        baseline_name: "bare mmap + munmap, same size".to_owned(),
        baseline_ns: criterion_median_ns(GROUP, &baseline),
        max_ratio,
    };
    rows.push(row(
        "4 KiB within 1 GiB, no extra mappings".to_owned(),
        "allocate_drop".to_owned(),
        "bare_mmap_munmap".to_owned(),
        Some(1.5),
    ));
    for count in MAPPING_COUNTS {
        let suffix = format!("_{count}_mappings");
        rows.push(row(
            format!("4 KiB, {count} extra mappings"),
            format!("allocate_drop{suffix}"),
            format!("bare_mmap_munmap{suffix}"),
            Some(3.0),
        ));
        let suffix = format!("_8k_{count}_mappings");
        rows.push(row(
            format!("8 KiB (no hole fits), {count} extra"),
            format!("allocate_drop{suffix}"),
            format!("bare_mmap_munmap{suffix}"),
            None,
        ));
    }
    for count in [0].into_iter().chain(MAPPING_COUNTS) {
        let (read, first, lines) = cold_samples(count);
        rows.push(Row {
            name: format!("first allocation, {count} extra ({lines:.0} lines)"),
            value_ns: Some(first),
            baseline_name: "one read + parse of the maps".to_owned(),
            baseline_ns: Some(read),
            max_ratio: (count > 0).then_some(1.3),
        });
    }
    print_summary("private_allocation", &rows);
}
