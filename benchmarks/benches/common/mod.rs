//! Pieces shared by the benchmark binaries: where criterion writes its
//! estimates (so each binary can print its figures beside their baselines),
//! a plain `/proc/self/maps` reader used as a baseline, extra mappings that
//! make the address space look like a large process, and child processes for
//! measurements that need a fresh process.
//!
//! Every bench binary includes this file with `#[path]`, and each uses only
//! part of it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Size of a page on the machines these benches run on (checked at run time
/// by [`page_size`]).
pub const PAGE: usize = 4096;

/// The page size reported by the system.
pub fn page_size() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).expect("sysconf(_SC_PAGESIZE) failed")
}

/// A function of the bench binary: the "hooked function" that requests are
/// made near.
#[inline(never)]
pub fn hooked_function(value: u64) -> u64 {
    std::hint::black_box(value).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Address of [`hooked_function`].
pub fn target_address() -> usize {
    hooked_function as *const () as usize
}

/// Where criterion writes its results: the same rules criterion follows
/// (`CRITERION_HOME`, then `$CARGO_TARGET_DIR/criterion`), and otherwise the
/// target directory that holds this executable. The bench binaries hand the
/// result to criterion explicitly so that writer and reader agree.
pub fn criterion_directory() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The executable is `<target>/<profile>/deps/<name>-<hash>`.
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .nth(3)
                .map(|target| target.join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Criterion configured for this suite: short runs (the whole `cargo bench`
/// must finish in a few minutes on two cores) and no plots.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .output_directory(&criterion_directory())
        .without_plots()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// The median criterion estimated for `group/function`, in nanoseconds.
///
/// Read from `estimates.json` so the summary shows criterion's own figure;
/// `None` when the benchmark was filtered out or the file has an unexpected
/// shape.
pub fn criterion_median_ns(group: &str, function: &str) -> Option<f64> {
    let path = criterion_directory()
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    // `"median":{"confidence_interval":{...},"point_estimate":1.23,...}`
    let median = &text[text.find("\"median\"")?..];
    let estimate = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = estimate.find([',', '}'])?;
    estimate[..end].trim().parse().ok()
}

/// One line of the summary a bench binary prints at its end.
pub struct Row {
    pub name: String,
    pub value_ns: Option<f64>,
    pub baseline_name: String,
    pub baseline_ns: Option<f64>,
    /// The largest acceptable `value / baseline`, if there is a target.
    pub max_ratio: Option<f64>,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        Some(self.value_ns? / self.baseline_ns?)
    }
}

fn format_ns(value: Option<f64>) -> String {
    match value {
        None => "n/a".to_owned(),
        Some(ns) if ns >= 1_000_000.0 => format!("{:.2} ms", ns / 1_000_000.0),
        Some(ns) if ns >= 1_000.0 => format!("{:.2} us", ns / 1_000.0),
        Some(ns) => format!("{ns:.1} ns"),
    }
}

/// Prints the rows as a table with ratios and whether each target is met.
pub fn print_summary(title: &str, rows: &[Row]) {
    println!();
    println!("== {title}: medians beside their baselines ==");
    for row in rows {
        let ratio = row.ratio();
        let verdict = match (ratio, row.max_ratio) {
            (Some(ratio), Some(max)) if ratio <= max => format!("target <= {max}x: met"),
            (Some(_), Some(max)) => format!("target <= {max}x: MISSED"),
            (None, Some(max)) => format!("target <= {max}x: not measured"),
            (_, None) => "no target".to_owned(),
        };
        println!(
            "{:<46} {:>10}   {:<34} {:>10}   ratio {:>7}   {}",
            row.name,
            format_ns(row.value_ns),
            row.baseline_name,
            format_ns(row.baseline_ns),
            ratio.map_or("n/a".to_owned(), |ratio| format!("{ratio:.2}x")),
            verdict
        );
    }
    println!();
}

/// The median of `samples` (which it sorts).
pub fn median(samples: &mut [f64]) -> f64 {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_by(f64::total_cmp);
    let middle = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[middle]
    } else {
        (samples[middle - 1] + samples[middle]) / 2.0
    }
}

/// Reads `/proc/self/maps` completely and parses each line's range: the
/// least work any reader of the map must do. Used as a baseline. `buffer`
/// and `ranges` are cleared first; passing empty ones measures a cold read.
pub fn read_and_parse_maps(buffer: &mut Vec<u8>, ranges: &mut Vec<(usize, usize)>) {
    use std::io::Read;
    buffer.clear();
    ranges.clear();
    let mut file = std::fs::File::open("/proc/self/maps").expect("open /proc/self/maps");
    file.read_to_end(buffer).expect("read /proc/self/maps");
    for line in buffer.split(|&byte| byte == b'\n') {
        let Some(dash) = line.iter().position(|&byte| byte == b'-') else {
            continue;
        };
        let Some(space) = line.iter().position(|&byte| byte == b' ') else {
            continue;
        };
        if let (Some(start), Some(end)) =
            (parse_hex(&line[..dash]), parse_hex(&line[dash + 1..space]))
        {
            ranges.push((start, end));
        }
    }
}

fn parse_hex(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut value = 0usize;
    for &digit in digits {
        value = (value << 4) | (digit as char).to_digit(16)? as usize;
    }
    Some(value)
}

/// The lowest address of the run of contiguous mappings that contains
/// `address` (for a function: the start of the executable's image).
pub fn start_of_mapped_block(address: usize) -> usize {
    let (mut buffer, mut ranges) = (Vec::new(), Vec::new());
    read_and_parse_maps(&mut buffer, &mut ranges);
    let mut index = ranges
        .iter()
        .position(|&(start, end)| start <= address && address < end)
        .expect("the address is mapped");
    while index > 0 && ranges[index - 1].1 == ranges[index].0 {
        index -= 1;
    }
    ranges[index].0
}

/// Extra one-page mappings with one-page holes between them, packed
/// downwards from just below the executable's image (so right next to the
/// target, on the side the nearest-first search walks first).
///
/// Mapping `i` is at `image_start - (2 i + 1) pages`; the holes between them
/// are single free pages, so neither the kernel nor the library can merge
/// them, every one is a separate line of `/proc/self/maps`, and a request
/// larger than a page cannot use any hole.
pub struct ExtraMappings {
    image_start: usize,
    count: usize,
}

impl ExtraMappings {
    pub fn new() -> ExtraMappings {
        ExtraMappings {
            image_start: start_of_mapped_block(target_address()),
            count: 0,
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    fn page_of(&self, index: usize) -> usize {
        self.image_start - (2 * index + 1) * PAGE
    }

    /// The hole nearest the target: the first free page below the image.
    pub fn nearest_hole(&self) -> usize {
        self.image_start - 2 * PAGE
    }

    /// Adds mappings until there are `count`.
    pub fn grow_to(&mut self, count: usize) {
        assert_eq!(page_size(), PAGE, "the benches assume 4 KiB pages");
        while self.count < count {
            let address = self.page_of(self.count);
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping;
            // the result is checked below and the page is only ever unmapped
            // by `Drop`.
            let result = unsafe {
                libc::mmap(
                    address as *mut libc::c_void,
                    PAGE,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            assert!(
                result as usize == address,
                "extra mapping {} at {address:#x} failed (is the space below the executable free?)",
                self.count
            );
            self.count += 1;
        }
    }
}

impl Drop for ExtraMappings {
    fn drop(&mut self) {
        for index in 0..self.count {
            // SAFETY: these pages were mapped by `grow_to` and nothing else
            // refers to them.
            unsafe { libc::munmap(self.page_of(index) as *mut libc::c_void, PAGE) };
        }
    }
}

/// Runs this bench binary again with `variable=value` and returns what it
/// printed on stdout. The child is a fresh process: nothing of the
/// library's per-process state exists yet.
pub fn run_child(variable: &str, value: &str) -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let output = Command::new(exe)
        .env(variable, value)
        .output()
        .expect("spawn child");
    assert!(
        output.status.success(),
        "child {variable}={value} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 child output")
}

/// Runs this bench binary again with `variable=value` and the same
/// command-line arguments (so criterion filters and options apply), its
/// output going to ours.
pub fn run_child_passing_arguments(variable: &str, value: &str) {
    let exe = std::env::current_exe().expect("current_exe");
    let status = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(variable, value)
        .status()
        .expect("spawn child");
    assert!(status.success(), "child {variable}={value} failed");
}

/// The value of `key=<number>` in a child's output.
pub fn field(output: &str, key: &str) -> f64 {
    output
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in child output {output:?}"))
}
