//! The measuring half of the two single-library programs, `ours` and
//! `original` (and the timing helpers of the side-by-side bench): each is built alone, with fat LTO and one codegen unit (the
//! workspace's `alone` profile), and links only its own library, as a user
//! comparing the two crates would build them. The driver is
//! `versus-original/benches/side_by_side.rs`, which runs each program in
//! fresh processes and puts its figures beside those of the shared-binary
//! shape.
//!
//! One workload per process, named by the first argument; the program
//! prints `value=<figure>`:
//!
//! - `hot`: nanoseconds per `get_buffer(0, highest, 64)` + release once a
//!   fitting buffer exists (median of 9 rounds);
//! - `first`: nanoseconds of the first `get_buffer` of the process;
//! - `rss`, `anon`: KiB of resident memory (`VmRSS`), and of its anonymous
//!   part (`RssAnon`), that the first `get_buffer` adds;
//! - `cas`: nanoseconds per compare-and-swap + release store on one word,
//!   the least a take/release protocol costs, measured in the same build.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Timed rounds inside one process; the median round is reported.
pub const ROUNDS: usize = 9;

/// Median nanoseconds per call over [`ROUNDS`] rounds of `calls`, after a
/// warm-up of a tenth as many.
pub fn per_call_ns(calls: u32, mut call: impl FnMut()) -> f64 {
    for _ in 0..calls / 10 {
        call();
    }
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls {
                call();
            }
            started.elapsed().as_nanos() as f64 / f64::from(calls)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

/// One `… kB` line of `/proc/self/status`, in KiB.
pub fn status_kib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Runs the workload named on the command line with `get_and_release`,
/// which gets a 64-byte buffer anywhere below the library's own highest
/// address and releases it.
pub fn run(mut get_and_release: impl FnMut()) {
    let workload = std::env::args().nth(1).expect("a workload argument");
    let value = match workload.as_str() {
        "hot" => {
            get_and_release();
            per_call_ns(2_000_000, &mut get_and_release)
        }
        "first" => {
            let started = Instant::now();
            get_and_release();
            started.elapsed().as_nanos() as f64
        }
        "rss" | "anon" => {
            let field = if workload == "rss" {
                "VmRSS:"
            } else {
                "RssAnon:"
            };
            let before = status_kib(field);
            get_and_release();
            status_kib(field) - before
        }
        "cas" => {
            let lock = AtomicU32::new(0);
            per_call_ns(20_000_000, || {
                let lock = black_box(&lock);
                let _ = lock.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed);
                lock.store(0, Ordering::Release);
            })
        }
        other => panic!("unknown workload {other}"),
    };
    println!("value={value}");
}
