//! Throughput of the common pattern "get a buffer for 64 bytes near a
//! target, append 64 bytes, release it", by 1, 2 and 4 threads at once, in
//! operations per second.
//!
//! Baseline: each thread takes its own lock word with a compare-and-swap,
//! copies 64 bytes into its own page and releases the word with a store: the
//! same memory traffic with no search, no registration and no sharing.
//!
//! Every operation writes 64 bytes that stay for the life of the process (a
//! new page-sized buffer every 64 operations), so each thread count runs in
//! its own child process: memory and the locator start empty each time, and
//! the reach of the target is not used up by an earlier run.
//!
//! Targets: at least 2,000,000 operations per second with one
//! thread, and no fewer in total with four threads than with one.

use criterion::Throughput;
use memory_buffers::{BufferSearchSettings, Buffers};
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

use common::{PAGE, Row, criterion_median_ns, print_summary, target_address};

const GROUP: &str = "throughput";
const THREADS: [usize; 3] = [1, 2, 4];
const PAYLOAD: [u8; 64] = [0x90; 64];
/// Environment variable that makes this binary a child measuring one thread
/// count (its value).
const CHILD: &str = "MEMORY_BUFFERS_BENCH_THROUGHPUT_THREADS";

fn library_operation(settings: &mut BufferSearchSettings) {
    let mut buffer = Buffers::get_buffer(black_box(settings)).expect("get_buffer");
    buffer
        .append_bytes(black_box(&PAYLOAD))
        .expect("append_bytes");
    drop(buffer);
}

/// Per-thread state of the baseline: its own lock word and page, each on
/// its own cache lines.
#[repr(align(128))]
struct BaselineSlot {
    lock: AtomicU32,
    page: Box<[u8]>,
    position: usize,
}

impl BaselineSlot {
    fn new() -> BaselineSlot {
        BaselineSlot {
            lock: AtomicU32::new(0),
            page: vec![0; PAGE].into_boxed_slice(),
            position: 0,
        }
    }

    fn operation(&mut self) {
        let lock = black_box(&self.lock);
        if lock
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            if self.position + PAYLOAD.len() > self.page.len() {
                self.position = 0;
            }
            self.page[self.position..self.position + PAYLOAD.len()]
                .copy_from_slice(black_box(&PAYLOAD));
            self.position += PAYLOAD.len();
            lock.store(0, Ordering::Release);
        }
    }
}

/// Runs `iterations` operations split over `threads` threads that start
/// together; returns the time from the first start to the last finish.
fn run_threads<S: Send + 'static>(
    threads: usize,
    iterations: u64,
    make_state: impl Fn() -> S,
    operation: fn(&mut S),
) -> Duration {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads as u64)
        .map(|index| {
            let share =
                iterations / threads as u64 + u64::from(index < iterations % threads as u64);
            let barrier = Arc::clone(&barrier);
            let mut state = make_state();
            std::thread::spawn(move || {
                barrier.wait();
                let started = Instant::now();
                for _ in 0..share {
                    operation(&mut state);
                }
                (started, Instant::now())
            })
        })
        .collect();
    let spans: Vec<(Instant, Instant)> = handles
        .into_iter()
        .map(|handle| handle.join().expect("thread"))
        .collect();
    let first = spans.iter().map(|span| span.0).min().expect("threads");
    let last = spans.iter().map(|span| span.1).max().expect("threads");
    last - first
}

fn child(threads: usize) -> ! {
    let mut c = common::criterion()
        .sample_size(15)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("baseline_{threads}_threads"), |b| {
        b.iter_custom(|iterations| {
            run_threads(
                threads,
                iterations,
                BaselineSlot::new,
                BaselineSlot::operation,
            )
        })
    });
    let settings =
        BufferSearchSettings::from_proximity(0x7fff_0000, target_address(), PAYLOAD.len());
    group.bench_function(format!("get_append_drop_{threads}_threads"), |b| {
        b.iter_custom(|iterations| run_threads(threads, iterations, || settings, library_operation))
    });
    group.finish();
    std::process::exit(0);
}

fn operations_per_second(function: &str) -> Option<f64> {
    criterion_median_ns(GROUP, function).map(|ns| 1e9 / ns)
}

fn main() {
    if let Some(threads) = std::env::var_os(CHILD) {
        child(
            threads
                .to_str()
                .and_then(|threads| threads.parse().ok())
                .expect("thread count"),
        );
    }
    for threads in THREADS {
        common::run_child_passing_arguments(CHILD, &threads.to_string());
    }

    let rows: Vec<Row> = THREADS
        .iter()
        .map(|threads| Row {
            name: format!("get 64 + append 64 + drop, {threads} thread(s)"),
            value_ns: criterion_median_ns(GROUP, &format!("get_append_drop_{threads}_threads")),
            baseline_name: "CAS + 64-byte copy + store".to_owned(),
            baseline_ns: criterion_median_ns(GROUP, &format!("baseline_{threads}_threads")),
            max_ratio: None,
        })
        .collect();
    print_summary(
        "throughput (time per operation, all threads together)",
        &rows,
    );
    let single = operations_per_second("get_append_drop_1_threads");
    for threads in THREADS {
        let total = operations_per_second(&format!("get_append_drop_{threads}_threads"));
        let baseline = operations_per_second(&format!("baseline_{threads}_threads"));
        let verdict = match (threads, total, single) {
            (1, Some(total), _) if total >= 2e6 => "target >= 2,000,000/s: met",
            (1, Some(_), _) => "target >= 2,000,000/s: MISSED",
            (4, Some(total), Some(single)) if total >= single => "target >= 1 thread: met",
            (4, Some(_), Some(_)) => "target >= 1 thread: MISSED",
            _ => "",
        };
        println!(
            "{threads} thread(s): {:>12} ops/s total (baseline {:>12} ops/s)   {verdict}",
            total.map_or("n/a".to_owned(), |total| format!("{total:.0}")),
            baseline.map_or("n/a".to_owned(), |baseline| format!("{baseline:.0}")),
        );
    }
}
