//! The first `Buffers::get_buffer` of a fresh process: creating the locator
//! through the rendezvous file in `/tmp/.reloaded/memory.buffers`, reading
//! the address space once and registering the first buffer.
//!
//! Only a fresh process can measure this, so the bench runs this binary again
//! as a child with an environment variable set; the child times its one call
//! with `Instant`, prints the nanoseconds and exits. The parent collects many
//! children and reports the median.
//!
//! Baseline, also in fresh children: the system calls any implementation of
//! the specification needs on first use: create a 4 KiB file with `O_EXCL`,
//! size it, map it shared and write its address; read and parse
//! `/proc/self/maps` once; map one anonymous read/write/execute page.
//!
//! Target: under 50 microseconds.

use memory_buffers::{BufferSearchSettings, Buffers, LocatorKind};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;

use common::{PAGE, Row, field, median, print_summary, target_address};

/// Fresh processes per variant.
const SAMPLES: usize = 101;
/// Environment variable that makes this binary a child; its value is
/// `library` or `baseline`.
const CHILD: &str = "MEMORY_BUFFERS_BENCH_FIRST_USE";
const TARGET_NS: f64 = 50_000.0;
const RENDEZVOUS_DIRECTORY: &str = "/tmp/.reloaded/memory.buffers";

fn baseline_directory() -> PathBuf {
    std::env::temp_dir().join(".memory-buffers-bench")
}

fn library_child() -> ! {
    let settings = BufferSearchSettings::from_proximity(0x7fff_0000, target_address(), 64);
    let started = Instant::now();
    let buffer = Buffers::get_buffer(&settings);
    let elapsed = started.elapsed();
    let buffer = buffer.expect("first get_buffer");
    let shared = Buffers::locator_kind().expect("locator kind") == LocatorKind::Shared;
    println!(
        "first_use_ns={} shared={}",
        elapsed.as_nanos(),
        u8::from(shared)
    );
    drop(buffer);
    std::process::exit(0);
}

fn baseline_child() -> ! {
    use std::io::Write;
    let path = baseline_directory().join(format!("baseline-{}", std::process::id()));
    let (mut buffer, mut ranges) = (Vec::new(), Vec::new());
    let started = Instant::now();

    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("create baseline file");
    file.set_len(PAGE as u64).expect("size baseline file");
    // SAFETY: a fresh shared mapping of a file we own, of its full length;
    // nothing else maps it.
    let view = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    assert_ne!(view, libc::MAP_FAILED, "map baseline file");
    // SAFETY: `view` is a live, page-aligned, writable mapping of PAGE bytes.
    unsafe { view.cast::<usize>().write(view as usize) };
    common::read_and_parse_maps(&mut buffer, &mut ranges);
    // SAFETY: a null hint lets the kernel choose a free range; nothing
    // existing is touched.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED, "map a page");

    let elapsed = started.elapsed();
    std::fs::remove_file(&path).expect("remove baseline file");
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "first_use_ns={} lines={}",
        elapsed.as_nanos(),
        ranges.len()
    )
    .expect("stdout");
    std::process::exit(0);
}

/// Runs one child and returns its output; removes the rendezvous file it
/// leaves behind so every child starts from the same directory.
fn sample(variant: &str) -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let child = Command::new(exe)
        .env(CHILD, variant)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for child");
    assert!(output.status.success(), "child {variant} failed");
    let leftover = Path::new(RENDEZVOUS_DIRECTORY)
        .join(format!("Reloaded.Memory.Buffers.MemoryBuffer, PID {pid}"));
    let _ = std::fs::remove_file(leftover);
    String::from_utf8(output.stdout).expect("utf-8 child output")
}

fn main() {
    match std::env::var(CHILD).as_deref() {
        Ok("library") => library_child(),
        Ok("baseline") => baseline_child(),
        _ => {}
    }
    // Under `cargo test` bench targets are only run to check they start.
    if !std::env::args().any(|argument| argument == "--bench") {
        return;
    }

    std::fs::create_dir_all(baseline_directory()).expect("create baseline directory");
    let (mut library, mut baseline) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    let mut private = 0;
    for _ in 0..SAMPLES {
        let output = sample("library");
        library.push(field(&output, "first_use_ns"));
        if field(&output, "shared") == 0.0 {
            private += 1;
        }
        baseline.push(field(&sample("baseline"), "first_use_ns"));
    }
    let library_median = median(&mut library);
    let baseline_median = median(&mut baseline);
    println!(
        "first_use: {SAMPLES} fresh processes each; library min {:.1} us, p90 {:.1} us; \
         {private} used a private locator",
        library[0] / 1e3,
        library[SAMPLES * 9 / 10] / 1e3
    );
    print_summary(
        "first_use",
        &[Row {
            name: "first get_buffer of a process".to_owned(),
            value_ns: Some(library_median),
            baseline_name: "file + map + maps read + mmap".to_owned(),
            baseline_ns: Some(baseline_median),
            max_ratio: None,
        }],
    );
    let verdict = if library_median < TARGET_NS {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "target < 50 us: {verdict} (median {:.1} us)",
        library_median / 1e3
    );
}
