//! The hot path: `Buffers::get_buffer` and dropping the guard when a fitting
//! buffer already exists, beside an uncontended compare-and-swap plus release
//! store on an `AtomicU32` (the least a take/release protocol can cost).
//!
//! Targets: at most 2x the CAS pair with one buffer registered, at
//! most 20x with 1,000 buffers registered, most of them full.

use criterion::Criterion;
use memory_buffers::{BufferAllocatorSettings, BufferSearchSettings, Buffers};
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

#[path = "common/mod.rs"]
mod common;

use common::{PAGE, Row, criterion_median_ns, print_summary, target_address};

const GROUP: &str = "hot_path";
/// Proximity for a `jmp rel32` from the target.
const JUMP_REACH: usize = 0x7fff_0000;
/// Buffers registered (besides the fitting one) for the crowded case.
const REGISTERED: usize = 1_000;
/// Distinct narrow requests cycled through to defeat the per-thread cache of
/// the eight most recently used buffers.
const ROTATING: usize = 12;

fn cas_pair(c: &mut Criterion) {
    let lock = AtomicU32::new(0);
    c.benchmark_group(GROUP).bench_function("cas_pair", |b| {
        b.iter(|| {
            let lock = black_box(&lock);
            let taken = lock
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
            lock.store(0, Ordering::Release);
            taken
        })
    });
}

fn get_buffer_and_drop(settings: &BufferSearchSettings) {
    let buffer = Buffers::get_buffer(black_box(settings)).expect("get_buffer");
    drop(black_box(buffer));
}

fn one_buffer(c: &mut Criterion) {
    let settings = BufferSearchSettings::from_proximity(JUMP_REACH, target_address(), 64);
    get_buffer_and_drop(&settings);
    c.benchmark_group(GROUP)
        .bench_function("get_buffer_fitting", |b| {
            b.iter(|| get_buffer_and_drop(&settings))
        });
}

/// Registers `count` page-sized buffers near the target and fills each one
/// completely, so that no later request fits in them.
fn register_full_buffers(count: usize) {
    let settings = BufferSearchSettings::from_proximity(JUMP_REACH, target_address(), PAGE);
    let filler = vec![0xcc_u8; PAGE];
    for _ in 0..count {
        let mut buffer = Buffers::get_buffer(&settings).expect("get_buffer for a full buffer");
        let left = buffer.bytes_left();
        buffer.append_bytes(&filler[..left]).expect("fill buffer");
    }
}

/// Requests whose ranges are single free pages near the target, so that
/// each one fits only the buffer registered for it.
fn narrow_requests(count: usize) -> Vec<BufferSearchSettings> {
    let allocation = BufferAllocatorSettings::from_proximity(JUMP_REACH, target_address(), PAGE);
    let pages: Vec<_> = (0..count)
        .map(|_| Buffers::allocate_private_memory(&allocation).expect("find a free page"))
        .collect();
    let addresses: Vec<usize> = pages.iter().map(|page| page.base_address()).collect();
    drop(pages);
    addresses
        .into_iter()
        .map(|base| BufferSearchSettings::new(base, base + PAGE - 1, 64))
        .collect()
}

fn many_buffers(c: &mut Criterion) {
    register_full_buffers(REGISTERED);
    let settings = BufferSearchSettings::from_proximity(JUMP_REACH, target_address(), 64);
    get_buffer_and_drop(&settings);
    let narrow = narrow_requests(ROTATING);
    for request in &narrow {
        let buffer = Buffers::get_buffer(request).expect("register a narrow buffer");
        assert_eq!(
            buffer.base_address(),
            request.min_address,
            "narrow buffer not where asked"
        );
    }

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("get_buffer_1000_registered", |b| {
        b.iter(|| get_buffer_and_drop(&settings))
    });
    let mut next = 0;
    group.bench_function("get_buffer_1000_registered_recent_miss", |b| {
        b.iter(|| {
            next = (next + 1) % ROTATING;
            get_buffer_and_drop(&narrow[next]);
        })
    });
    group.finish();
}

fn summary() {
    let baseline = criterion_median_ns(GROUP, "cas_pair");
    let row = |name: &str, function: &str, max_ratio: f64| Row {
        name: name.to_owned(),
        value_ns: criterion_median_ns(GROUP, function),
        baseline_name: "CAS + release store".to_owned(),
        baseline_ns: baseline,
        max_ratio: Some(max_ratio),
    };
    print_summary(
        "hot_path",
        &[
            row("get_buffer + drop, 1 buffer", "get_buffer_fitting", 2.0),
            row(
                "get_buffer + drop, 1,000 full + 1 fitting",
                "get_buffer_1000_registered",
                20.0,
            ),
            row(
                "  same, thread cache missed (12 rotating)",
                "get_buffer_1000_registered_recent_miss",
                20.0,
            ),
        ],
    );
}

fn main() {
    let mut c = common::criterion();
    cas_pair(&mut c);
    one_buffer(&mut c);
    many_buffers(&mut c);
    c.final_summary();
    summary();
}
