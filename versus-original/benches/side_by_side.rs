//! The same workloads on this crate and on the original (reloaded-memory-buffers
//! 4.1.0), measured the same way in the same run.
//!
//! Both libraries share one locator when they live in one process, and most
//! workloads leave buffers behind, so every measurement is made in a fresh
//! child process (this binary re-run with `MEMORY_BUFFERS_SIDE_BY_SIDE` set
//! to `<library>:<workload>`), and children of the two libraries are
//! interleaved. A child prints one figure; the table shows the median over
//! [`RUNS`] children. Loops inside a child time a fixed number of calls
//! [`harness::ROUNDS`] times and report the median round.
//!
//! The hot path, the first call and first-use memory are also measured in
//! a second shape, in the same run: each library alone in its own small
//! program (`versus-original/alone/`), built with fat LTO and one codegen
//! unit and called with its own highest address, as a user comparing the
//! two crates would build them. This bench builds those programs itself
//! (`cargo build --profile alone`) the first time it needs them.
//!
//! ```sh
//! cargo bench -p memory-buffers-versus-original        # about 2 minutes
//! ```

use memory_buffers::{
    BufferAllocatorSettings, BufferSearchSettings, Buffers, LocatorKind, highest_user_address,
};
use memory_buffers_c::{
    MEMORY_BUFFERS_STATUS_OK, MemoryBuffersLockedBuffer, MemoryBuffersSearchSettings,
    memory_buffers_buffer_append_bytes, memory_buffers_get_buffer, memory_buffers_release_buffer,
};
use reloaded_memory_buffers::buffers::Buffers as Original;
use reloaded_memory_buffers::structs::params::{
    BufferAllocatorSettings as OriginalAllocatorSettings,
    BufferSearchSettings as OriginalSearchSettings,
};
use std::hint::black_box;
use std::process::Command;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

// The helpers of the crate's own benches (a criterion set-up among them,
// unused here).
#[path = "../../benchmarks/benches/common/mod.rs"]
mod common;

use common::{ExtraMappings, PAGE, median, target_address};

// The timing and memory helpers of the single-library programs, so that
// both shapes measure alike.
#[path = "../alone/harness.rs"]
#[allow(dead_code)] // its `run` is the programs' entry point
mod harness;

use harness::{per_call_ns, status_kib};

const CHILD: &str = "MEMORY_BUFFERS_SIDE_BY_SIDE";
/// Fresh processes per library and workload.
const RUNS: usize = 7;
/// Timed rounds inside one process.
const JUMP_REACH: usize = 0x7fff_0000;
const GIB: usize = 1 << 30;

/// Resident memory of this process, in KiB (`VmRSS`).
fn resident_kib() -> f64 {
    status_kib("VmRSS:")
}

/// One library's side of every workload.
trait Library {
    /// Gets a buffer for `size` bytes in `[min, max]`, runs `use_it` on it
    /// (given a way to append), and releases it.
    fn with_buffer(min: usize, max: usize, size: usize, use_it: impl FnOnce(&mut dyn FnMut(&[u8])));
    /// Allocates `size` private bytes within `reach` of `target` and frees
    /// them.
    fn private_allocation(reach: usize, target: usize, size: usize);
    /// Whether the shared locator was used (not a private fallback).
    fn shared() -> bool;
}

struct Ours;
struct TheOriginal;

impl Library for Ours {
    #[inline]
    fn with_buffer(
        min: usize,
        max: usize,
        size: usize,
        use_it: impl FnOnce(&mut dyn FnMut(&[u8])),
    ) {
        let settings = BufferSearchSettings::new(min, max, size);
        let mut buffer = Buffers::get_buffer(black_box(&settings)).expect("get_buffer");
        use_it(&mut |bytes| {
            buffer.append_bytes(bytes).expect("append");
        });
        drop(black_box(buffer));
    }

    fn private_allocation(reach: usize, target: usize, size: usize) {
        let allocation = Buffers::allocate_private_memory(
            &BufferAllocatorSettings::from_proximity(reach, target, size),
        )
        .expect("allocate_private_memory");
        drop(black_box(allocation));
    }

    fn shared() -> bool {
        Buffers::locator_kind().expect("locator kind") == LocatorKind::Shared
    }
}

impl Library for TheOriginal {
    #[inline]
    fn with_buffer(
        min: usize,
        max: usize,
        size: usize,
        use_it: impl FnOnce(&mut dyn FnMut(&[u8])),
    ) {
        let settings = OriginalSearchSettings {
            min_address: min,
            max_address: max,
            size: size as u32,
        };
        let item = Original::get_buffer(black_box(&settings)).expect("original get_buffer");
        use_it(&mut |bytes| {
            // SAFETY: the item is held and was found with room for `size`.
            unsafe { item.append_bytes(bytes) };
        });
        drop(black_box(item));
    }

    fn private_allocation(reach: usize, target: usize, size: usize) {
        let mut settings = OriginalAllocatorSettings::from_proximity(reach, target, size);
        let allocation =
            Original::allocate_private_memory(&mut settings).expect("original allocation");
        drop(black_box(allocation));
    }

    fn shared() -> bool {
        true
    }
}

fn near_target(size: usize) -> (usize, usize, usize) {
    let target = target_address();
    (
        target.saturating_sub(JUMP_REACH),
        target
            .saturating_add(JUMP_REACH)
            .min(highest_user_address()),
        size,
    )
}

/// `get_buffer(0, max, 64)` and release, with a fitting buffer registered.
fn hot_path<L: Library>() -> f64 {
    let top = highest_user_address();
    L::with_buffer(0, top, 64, |_| {});
    per_call_ns(2_000_000, || L::with_buffer(0, top, 64, |_| {}))
}

/// The same, with 1,000 full page-sized buffers registered first.
fn crowded<L: Library>() -> f64 {
    let (min, max, _) = near_target(PAGE);
    let filler = vec![0xcc_u8; PAGE];
    for _ in 0..1_000 {
        // Each buffer is a fresh page: filled completely, it never fits again.
        L::with_buffer(min, max, PAGE, |append| append(&filler));
    }
    L::with_buffer(min, max, 64, |_| {});
    per_call_ns(200_000, || L::with_buffer(min, max, 64, |_| {}))
}

fn private<L: Library>() -> f64 {
    per_call_ns(20_000, || {
        L::private_allocation(GIB, target_address(), PAGE)
    })
}

/// The first private allocation of a process with 30,000 extra mappings.
fn mappings<L: Library>() -> f64 {
    let mut extra = ExtraMappings::new();
    extra.grow_to(30_000);
    let started = Instant::now();
    L::private_allocation(GIB, target_address(), PAGE);
    let elapsed = started.elapsed().as_nanos() as f64;
    drop(extra);
    elapsed
}

/// Operations per second: get 64 + append 64 + release, on `threads`
/// threads released together.
fn throughput<L: Library>(threads: usize) -> f64 {
    const OPERATIONS: usize = 400_000;
    let (min, max, size) = near_target(64);
    let bytes = [0x90u8; 64];
    L::with_buffer(min, max, size, |_| {});
    let barrier = Barrier::new(threads);
    let started = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let started = Instant::now();
                    for _ in 0..OPERATIONS / threads {
                        L::with_buffer(min, max, size, |append| append(&bytes));
                    }
                    started
                })
            })
            .collect();
        let starts: Vec<Instant> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        starts.into_iter().min().unwrap()
    });
    OPERATIONS as f64 / started.elapsed().as_secs_f64()
}

/// The first `get_buffer` of the process: its time, the resident memory it
/// added, and the anonymous part of that (`RssAnon`: what the library
/// allocated and touched, without the file-backed pages of its code that
/// the kernel maps in 64 KiB fault-around windows, or the locator's page).
fn first_use<L: Library>() -> (f64, f64, f64) {
    let (min, max, size) = near_target(64);
    let before = resident_kib();
    let anonymous_before = status_kib("RssAnon:");
    let started = Instant::now();
    L::with_buffer(min, max, size, |_| {});
    let elapsed = started.elapsed().as_nanos() as f64;
    let added = resident_kib() - before;
    let anonymous_added = status_kib("RssAnon:") - anonymous_before;
    assert!(L::shared(), "the first use fell back to a private locator");
    (elapsed, added, anonymous_added)
}

/// The same append workload through the C interface (this crate only).
fn c_interface() -> f64 {
    let (min_address, max_address, size) = near_target(64);
    let settings = MemoryBuffersSearchSettings {
        min_address,
        max_address,
        size,
        target: 0,
    };
    let bytes = [0x90u8; 64];
    per_call_ns(200_000, || {
        let mut handle: *mut MemoryBuffersLockedBuffer = std::ptr::null_mut();
        let mut address = 0usize;
        // SAFETY: valid settings, out pointers to locals, and a handle from
        // `get_buffer` released exactly once.
        unsafe {
            assert_eq!(
                memory_buffers_get_buffer(black_box(&settings), &mut handle),
                MEMORY_BUFFERS_STATUS_OK
            );
            memory_buffers_buffer_append_bytes(handle, bytes.as_ptr(), 64, &mut address);
            memory_buffers_release_buffer(&mut handle);
        }
    })
}

/// The Rust path of [`c_interface`].
fn rust_append() -> f64 {
    let (min, max, size) = near_target(64);
    let bytes = [0x90u8; 64];
    per_call_ns(200_000, || {
        Ours::with_buffer(min, max, size, |append| append(&bytes))
    })
}

/// A compare-and-swap and a release store on one word: the least a
/// take/release protocol costs.
fn cas_pair() -> f64 {
    let lock = AtomicU32::new(0);
    per_call_ns(20_000_000, || {
        let lock = black_box(&lock);
        let _ = lock.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed);
        lock.store(0, Ordering::Release);
    })
}

fn run_child(spec: &str) {
    let (library, workload) = spec.split_once(':').expect("library:workload");
    let ours = library == "ours";
    let value = match (workload, ours) {
        ("hot", true) => hot_path::<Ours>(),
        ("hot", false) => hot_path::<TheOriginal>(),
        ("crowded", true) => crowded::<Ours>(),
        ("crowded", false) => crowded::<TheOriginal>(),
        ("private", true) => private::<Ours>(),
        ("private", false) => private::<TheOriginal>(),
        ("mappings", true) => mappings::<Ours>(),
        ("mappings", false) => mappings::<TheOriginal>(),
        ("throughput1", true) => throughput::<Ours>(1),
        ("throughput1", false) => throughput::<TheOriginal>(1),
        ("throughput2", true) => throughput::<Ours>(2),
        ("throughput2", false) => throughput::<TheOriginal>(2),
        ("throughput4", true) => throughput::<Ours>(4),
        ("throughput4", false) => throughput::<TheOriginal>(4),
        ("first_use", _) | ("first_use_rss", _) | ("first_use_anon", _) => {
            let (time, memory, anonymous) = if ours {
                first_use::<Ours>()
            } else {
                first_use::<TheOriginal>()
            };
            match workload {
                "first_use" => time,
                "first_use_rss" => memory,
                _ => anonymous,
            }
        }
        ("c_interface", _) => c_interface(),
        ("rust_append", _) => rust_append(),
        ("cas", _) => cas_pair(),
        _ => panic!("unknown workload {spec}"),
    };
    println!("value={value}");
}

/// The figure one fresh child prints for `spec`; NaN when a child of the
/// original fails (its 32-bit build crashes with `SIGSEGV` under two
/// threads), which the table shows. A child of this crate must not fail.
fn one_child(spec: &str) -> f64 {
    let output = match spec.strip_prefix("alone:") {
        // `alone:<library>:<workload>`: that library's single-library
        // program, given the workload as its argument.
        Some(rest) => {
            let (library, workload) = rest.split_once(':').expect("alone:library:workload");
            Command::new(alone_program(library))
                .arg(workload)
                .output()
                .expect("run a single-library program")
        }
        None => Command::new(std::env::current_exe().expect("own path"))
            .env(CHILD, spec)
            .output()
            .expect("run a child"),
    };
    let spec = spec.strip_prefix("alone:").unwrap_or(spec);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() && spec.starts_with("original:") {
        eprintln!("{spec} failed: {}", output.status);
        return f64::NAN;
    }
    assert!(
        output.status.success(),
        "{spec} failed: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("value="))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{spec} printed no value:\n{stdout}"))
}

/// The median of the fresh processes' figures, and their spread.
#[derive(Clone, Copy)]
struct Figure {
    median: f64,
    least: f64,
    most: f64,
}

/// Medians over [`RUNS`] fresh children of each spec, run in turns so that
/// drift in the machine's speed hits every spec alike.
fn measure<const N: usize>(specs: [&str; N]) -> [Figure; N] {
    let mut values: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(RUNS));
    for _ in 0..RUNS {
        for (spec, values) in specs.iter().zip(values.iter_mut()) {
            values.push(one_child(spec));
        }
    }
    values.map(|mut values| {
        // Any failed run makes the figure "failed": a median of the runs
        // that survived would flatter a library that crashes.
        if values.iter().any(|value| value.is_nan()) {
            return Figure {
                median: f64::NAN,
                least: f64::NAN,
                most: f64::NAN,
            };
        }
        let median = median(&mut values);
        let (least, most) = values.iter().fold(
            (f64::INFINITY, f64::NEG_INFINITY),
            |(least, most), &value| (least.min(value), most.max(value)),
        );
        Figure {
            median,
            least,
            most,
        }
    })
}

/// Where the single-library program of `library` (`ours` or `original`)
/// is, built with the workspace's `alone` profile (fat LTO, one codegen
/// unit) the first time it is asked for.
fn alone_program(library: &str) -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let directory = BUILT.get_or_init(|| {
        let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--profile",
                "alone",
                "--manifest-path",
                workspace,
            ])
            .args([
                "-p",
                "memory-buffers-alone-ours",
                "-p",
                "memory-buffers-alone-original",
            ])
            .status()
            .expect("run cargo build for the single-library programs");
        assert!(
            status.success(),
            "building the single-library programs failed"
        );
        // This bench is `<target>/release/deps/side_by_side-…`.
        let executable = std::env::current_exe().expect("own path");
        let target = executable
            .ancestors()
            .nth(3)
            .expect("the bench lies three levels below the target directory");
        target.join("alone")
    });
    directory.join(format!(
        "memory-buffers-alone-{library}{}",
        std::env::consts::EXE_SUFFIX
    ))
}

struct Comparison {
    row: &'static str,
    workload: &'static str,
    /// The same workload in the single-library programs, if they run it.
    alone: Option<&'static str>,
    unit: &'static str,
    /// Higher is better (a rate), rather than lower (a time or a size).
    higher_is_better: bool,
}

fn format(value: f64, unit: &str) -> String {
    if value.is_nan() {
        return "failed (see above)".into();
    }
    match unit {
        "ns" if value >= 1e6 => format!("{:.2} ms", value / 1e6),
        "ns" if value >= 1e3 => format!("{:.1} us", value / 1e3),
        "ns" => format!("{value:.1} ns"),
        "ops/s" => format!("{:.2} M ops/s", value / 1e6),
        _ => format!("{value:.0} {unit}"),
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        run_child(&spec);
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument picks workloads.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|argument| !argument.starts_with('-'))
        .collect();
    let wanted = |workload: &str| filter.is_empty() || filter.iter().any(|f| workload.contains(f));
    let comparisons = [
        Comparison {
            row: "get_buffer(0, max, 64) + release, buffer exists",
            workload: "hot",
            alone: Some("hot"),
            unit: "ns",
            higher_is_better: false,
        },
        Comparison {
            row: "same, 1,000 full buffers registered",
            workload: "crowded",
            alone: None,
            unit: "ns",
            higher_is_better: false,
        },
        Comparison {
            row: "first get_buffer of a process",
            workload: "first_use",
            alone: Some("first"),
            unit: "ns",
            higher_is_better: false,
        },
        Comparison {
            row: "resident memory the first get_buffer adds",
            workload: "first_use_rss",
            alone: Some("rss"),
            unit: "KiB",
            higher_is_better: false,
        },
        Comparison {
            row: "of which anonymous (RssAnon: heap, stack, private pages)",
            workload: "first_use_anon",
            alone: Some("anon"),
            unit: "KiB",
            higher_is_better: false,
        },
        Comparison {
            row: "private 4 KiB within 1 GiB, allocate + free",
            workload: "private",
            alone: None,
            unit: "ns",
            higher_is_better: false,
        },
        Comparison {
            row: "first private allocation, 30,000 mappings",
            workload: "mappings",
            alone: None,
            unit: "ns",
            higher_is_better: false,
        },
        Comparison {
            row: "get + append 64 + release, 1 thread",
            workload: "throughput1",
            alone: None,
            unit: "ops/s",
            higher_is_better: true,
        },
        Comparison {
            row: "same, 2 threads",
            workload: "throughput2",
            alone: None,
            unit: "ops/s",
            higher_is_better: true,
        },
        Comparison {
            row: "same, 4 threads",
            workload: "throughput4",
            alone: None,
            unit: "ops/s",
            higher_is_better: true,
        },
    ];
    // Two shapes of the same comparison, measured in one run: both
    // libraries in this bench binary (no LTO, the original handed this
    // crate's highest address), and each library alone in its own small
    // program (fat LTO, one codegen unit, each with its own highest
    // address). Each figure is the median of fresh processes, with the
    // spread (least to most) beside it.
    println!(
        "| workload | this crate | original 4.1.0 | ratio | alone, LTO: this crate | original \
         4.1.0 | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for comparison in comparisons.iter().filter(|c| wanted(c.workload)) {
        let ours_spec = format!("ours:{}", comparison.workload);
        let original_spec = format!("original:{}", comparison.workload);
        let (ours, original, alone) = match comparison.alone {
            Some(workload) => {
                let ours_alone = format!("alone:ours:{workload}");
                let original_alone = format!("alone:original:{workload}");
                let [ours, original, ours_alone, original_alone] =
                    measure([&ours_spec, &original_spec, &ours_alone, &original_alone]);
                (ours, original, Some((ours_alone, original_alone)))
            }
            None => {
                let [ours, original] = measure([&ours_spec, &original_spec]);
                (ours, original, None)
            }
        };
        let cells = |ours: Figure, original: Figure| {
            format!(
                "{} | {} | {}",
                spread(ours, comparison.unit),
                spread(original, comparison.unit),
                ratio(ours.median, original.median, comparison.higher_is_better)
            )
        };
        let alone = alone.map_or_else(
            || "- | - | -".to_string(),
            |(ours, original)| cells(ours, original),
        );
        println!(
            "| {} | {} | {alone} |",
            comparison.row,
            cells(ours, original)
        );
    }
    if wanted("cas") || wanted("c_interface") {
        println!();
        println!("| baseline | figure |");
        println!("|---|---|");
    }
    if wanted("cas") {
        let [cas, cas_alone] = measure(["baseline:cas", "alone:ours:cas"]);
        println!(
            "| CAS + release store on one word: this bench {}, alone with LTO {} |  |",
            spread(cas, "ns"),
            spread(cas_alone, "ns")
        );
    }
    if wanted("c_interface") {
        let [c, rust] = measure(["ours:c_interface", "ours:rust_append"]);
        println!(
            "| get + append 64 + release: C interface {} / Rust {} | {:.2}x |",
            spread(c, "ns"),
            spread(rust, "ns"),
            c.median / rust.median
        );
    }
}

/// A figure with its spread: `12.3 ns (11.9-13.0)`.
fn spread(figure: Figure, unit: &str) -> String {
    if figure.median.is_nan() {
        return format(figure.median, unit);
    }
    format!(
        "{} ({}-{})",
        format(figure.median, unit),
        format(figure.least, unit),
        format(figure.most, unit)
    )
}

/// This crate's figure over the original's, as time (or size) per
/// operation; `-` where a run failed.
fn ratio(ours: f64, original: f64, higher_is_better: bool) -> String {
    let ratio = if higher_is_better {
        original / ours
    } else {
        ours / original
    };
    if ratio.is_nan() {
        "-".to_string()
    } else if higher_is_better {
        format!("{ratio:.2}x (time per op)")
    } else {
        format!("{ratio:.2}x")
    }
}
