//! Placement policies replayed against one simulated address space: how
//! much free space each leaves in one piece, and how near its proximity
//! requests land to their targets.
//!
//! Nothing is mapped for real. The crate's placement is a pure function of
//! what is mapped and of the request, so the same candidate order the
//! library uses (`internals::candidates`) is run over a `MappedRanges` this
//! bench keeps up to date, and the first candidate is taken as the library
//! takes it. The four policies differ only in the target each request is
//! given:
//!
//! - **ours**: proximity requests aim at their target; plain `[min, max]`
//!   requests have none, so the library takes the smallest free hole that
//!   holds them, against its edge;
//! - **target, else lowest first**: plain requests aim at the low end of
//!   their range instead;
//! - **old policy**: plain requests aim at the middle of their range (what
//!   the crate did before);
//! - **original**: every request aims at the low end of its range,
//!   proximity ones included (the original library walks free regions from
//!   the lowest address of the range it was given).
//!
//! The space is a 32-bit Windows process: `[0x1_0000, 0x7fff_ffff]` with the
//! 64 KiB allocation granularity of `VirtualAlloc`, so every request of
//! 4 KiB to 64 KiB takes a whole granule. Modules are mapped first, then a
//! mixed sequence of requests and frees is replayed against each policy.
//! The sequence comes from a fixed-seed generator, so every run prints the
//! same figures; a sweep over more seeds follows the main table, to tell a
//! property of the policies from a property of one layout.

use memory_buffers::internals::{
    MappedRanges, PlacementRequest, candidates, proximity_range, validate_request,
};
use std::time::Instant;

/// Allocation granularity of Windows.
const GRANULARITY: usize = 0x1_0000;
/// Lowest address Windows maps at.
const LOWEST: usize = 0x1_0000;
/// Highest user address of the simulated 2 GiB space (inclusive).
const TOP: usize = 0x7fff_ffff;
/// Requests per sequence.
const REQUESTS: usize = 2_000;
/// The largest hole is also sampled after every this many requests.
const SAMPLE_EVERY: usize = 200;
/// Chance, in percent, that a live block is freed after a request.
const FREE_PERCENT: u64 = 20;
/// Chance, in percent, that a request is a proximity request.
const PROXIMITY_PERCENT: u64 = 60;
/// Every address below this is within 256 MiB of the executable, whose
/// hooks compete there with what plain requests place.
const LOW_SPACE: usize = 0x1000_0000;
/// DLL-like images mapped between `DLL_LOW` and `DLL_HIGH`.
const DLLS: usize = 40;
const DLL_LOW: usize = 0x1000_0000;
const DLL_HIGH: usize = 0x7800_0000;
/// The seed of the main table; the sweep uses `1 ..= SWEEP_SEEDS`.
const SEED: u64 = 0x6d65_6d6f_7279;
const SWEEP_SEEDS: u64 = 50;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// SplitMix64: small, fast, and the same sequence on every machine, which
/// is all a replayable scenario needs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (multiply-shift; the bias is far below what
    /// matters here).
    fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next()) * bound as u128) >> 64) as usize
    }

    fn percent(&mut self, chance: u64) -> bool {
        self.next() % 100 < chance
    }

    /// Spread evenly over the powers of two from `2^low_bit` up to
    /// `2^high_bit` (exclusive): small sizes are as common as large ones
    /// per doubling, as sizes of code buffers and images are.
    fn log_uniform(&mut self, low_bit: u32, high_bit: u32) -> usize {
        let bit = low_bit + self.below((high_bit - low_bit) as usize) as u32;
        (1 << bit) + self.below(1 << bit)
    }
}

fn align_down(value: usize) -> usize {
    value & !(GRANULARITY - 1)
}

#[derive(Clone, Copy)]
struct Request {
    min: usize,
    max: usize,
    /// Bytes mapped: the requested size rounded up to the granularity.
    len: usize,
    /// The function a proximity request is made near; `None` for a plain
    /// range.
    near: Option<usize>,
    /// Whether that function is in the executable (rather than a DLL).
    in_executable: bool,
}

#[derive(Clone, Copy)]
enum Event {
    Allocate(Request),
    /// Frees the block of the request with this index (if it got one).
    Free(usize),
}

struct Scenario {
    /// Mapped before the first request: images, stack, heaps.
    modules: Vec<(usize, usize)>,
    events: Vec<Event>,
}

impl Scenario {
    fn new(seed: u64) -> Scenario {
        let mut rng = Rng(seed);
        // The executable at its default base, a thread stack and a small
        // process heap below it, a large heap above it, and the pages
        // Windows keeps at the top of user space.
        let executable = (0x40_0000, 0xc0_0000);
        let mut modules = vec![
            (0x10_0000, 0x20_0000),
            (0x20_0000, 0x30_0000),
            executable,
            (0x100_0000, 0x500_0000),
            (0x7ffd_0000, 0x8000_0000),
        ];
        let mut images = vec![executable];
        while images.len() < DLLS + 1 {
            let len = align_down(rng.log_uniform(16, 24));
            let start = align_down(DLL_LOW + rng.below(DLL_HIGH - DLL_LOW - len));
            let end = start + len;
            if modules.iter().all(|&(s, e)| end <= s || e <= start) {
                modules.push((start, end));
                images.push((start, end));
            }
        }

        let mut events = Vec::with_capacity(REQUESTS * 2);
        let mut live = Vec::new();
        for index in 0..REQUESTS {
            let size = rng.log_uniform(12, 20);
            let (min, max, near, in_executable) = if rng.percent(PROXIMITY_PERCENT) {
                // A hooked function: in the executable for a third of the
                // hooks, otherwise in any of the DLLs.
                let in_executable = rng.percent(33);
                let (start, end) = if in_executable {
                    executable
                } else {
                    images[1 + rng.below(DLLS)]
                };
                let function = (start + rng.below(end - start)) & !0xf;
                let proximity = if rng.percent(60) { 256 * MIB } else { 1 << 30 };
                let (min, max) = proximity_range(proximity, function, TOP);
                (min, max, Some(function), in_executable)
            } else if rng.percent(50) {
                (0, TOP, None, false)
            } else {
                (LOW_SPACE, TOP, None, false)
            };
            let valid =
                validate_request(min, max, size, GRANULARITY, TOP).expect("a valid request");
            events.push(Event::Allocate(Request {
                min: valid.min,
                max: valid.max,
                len: valid.rounded_size,
                near,
                in_executable,
            }));
            live.push(index);
            if rng.percent(FREE_PERCENT) {
                let freed = live.swap_remove(rng.below(live.len()));
                events.push(Event::Free(freed));
            }
        }
        Scenario { modules, events }
    }
}

#[derive(Clone, Copy)]
enum Policy {
    Snug,
    LowestFirst,
    Middle,
    Original,
}

impl Policy {
    const ALL: [Policy; 4] = [
        Policy::Snug,
        Policy::LowestFirst,
        Policy::Middle,
        Policy::Original,
    ];

    fn name(self) -> &'static str {
        match self {
            Policy::Snug => "ours (target, else smallest hole, at its edge)",
            Policy::LowestFirst => "target, else lowest first",
            Policy::Middle => "old policy (target, else middle)",
            Policy::Original => "original (lowest first everywhere)",
        }
    }

    /// The target the placement gets: `None` leaves the library to choose
    /// (the snuggest hole), and the range's low end walks it lowest first.
    fn target(self, request: &Request) -> Option<usize> {
        match (self, request.near) {
            (Policy::Snug, None) => None,
            (Policy::Original, _) | (Policy::LowestFirst, None) => Some(request.min),
            (Policy::Snug | Policy::LowestFirst | Policy::Middle, Some(function)) => Some(function),
            (Policy::Middle, None) => Some(request.min + (request.max - request.min) / 2),
        }
    }
}

/// Kinds of request, by who makes them, for the per-kind figures.
const PLAIN: usize = 0;
const EXECUTABLE_HOOK: usize = 1;
const DLL_HOOK: usize = 2;

impl Request {
    fn kind(&self) -> usize {
        match (self.near, self.in_executable) {
            (None, _) => PLAIN,
            (Some(_), true) => EXECUTABLE_HOOK,
            (Some(_), false) => DLL_HOOK,
        }
    }
}

#[derive(Default)]
struct Outcome {
    /// Requests that found no space, by kind.
    failed: [usize; 3],
    /// The largest hole after every `SAMPLE_EVERY` requests.
    largest_samples: Vec<usize>,
    largest_at_end: usize,
    holes_at_end: usize,
    /// Bytes of plain blocks placed below `LOW_SPACE` over the run.
    plain_placed_low: usize,
    /// From each placed proximity request's target to the nearest byte of
    /// its block, by kind (sorted); the plain entry stays empty.
    distances: [Vec<usize>; 3],
}

impl Outcome {
    /// Every proximity request's distance, sorted.
    fn all_distances(&self) -> Vec<usize> {
        let mut all = [
            &self.distances[EXECUTABLE_HOOK][..],
            &self.distances[DLL_HOOK][..],
        ]
        .concat();
        all.sort_unstable();
        all
    }
}

/// The number of free holes in the space and the largest one.
fn holes(mapped: &MappedRanges) -> (usize, usize) {
    let (mut count, mut largest, mut free_from) = (0, 0, LOWEST);
    for (start, end) in mapped.iter().chain([(TOP + 1, TOP + 1)]) {
        if start > free_from {
            count += 1;
            largest = largest.max(start - free_from);
        }
        free_from = free_from.max(end);
    }
    (count, largest)
}

/// From `target` to the nearest byte of `[start, start + len)`; 0 inside.
fn distance(target: usize, start: usize, len: usize) -> usize {
    if target < start {
        start - target
    } else {
        target.saturating_sub(start + len - 1)
    }
}

fn replay(scenario: &Scenario, policy: Policy) -> Outcome {
    let mut mapped = MappedRanges::from_ranges(scenario.modules.iter().copied());
    let mut blocks: Vec<Option<(usize, usize)>> = Vec::with_capacity(REQUESTS);
    let mut outcome = Outcome::default();
    for event in &scenario.events {
        match *event {
            Event::Allocate(request) => {
                let placement = PlacementRequest {
                    min: request.min,
                    max: request.max,
                    block_len: request.len,
                    range_len: request.len,
                    granularity: GRANULARITY,
                    lowest_address: LOWEST,
                    highest_address: TOP,
                    target: policy.target(&request),
                };
                let start = candidates(&mapped, &placement)
                    .expect("a request that meets the placement's preconditions")
                    .next();
                match start {
                    Some(start) => {
                        debug_assert!(mapped.is_free(start, start + request.len));
                        mapped.insert(start, start + request.len);
                        match request.near {
                            Some(function) => {
                                let gap = distance(function, start, request.len);
                                outcome.distances[request.kind()].push(gap);
                            }
                            None if start < LOW_SPACE => outcome.plain_placed_low += request.len,
                            None => {}
                        }
                    }
                    None => outcome.failed[request.kind()] += 1,
                }
                blocks.push(start.map(|start| (start, request.len)));
                if blocks.len().is_multiple_of(SAMPLE_EVERY) {
                    outcome.largest_samples.push(holes(&mapped).1);
                }
            }
            Event::Free(index) => {
                if let Some((start, len)) = blocks[index].take() {
                    mapped.remove(start, start + len);
                }
            }
        }
    }
    (outcome.holes_at_end, outcome.largest_at_end) = holes(&mapped);
    for distances in &mut outcome.distances {
        distances.sort_unstable();
    }
    outcome
}

/// The median of sorted values (the lower middle one of an even count, so
/// that it is always a value that occurred).
fn median(sorted: &[usize]) -> usize {
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

fn percentile(sorted: &[usize], percent: usize) -> usize {
    sorted
        .get((sorted.len() * percent / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

fn mean(values: &[usize]) -> f64 {
    values.iter().map(|&value| value as f64).sum::<f64>() / values.len().max(1) as f64
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

fn length(bytes: f64) -> String {
    if bytes >= MIB as f64 {
        format!("{:.2} MiB", bytes / MIB as f64)
    } else {
        format!("{:.0} KiB", bytes / KIB as f64)
    }
}

fn print_scenario(scenario: &Scenario) {
    let mapped: usize = scenario
        .modules
        .iter()
        .map(|(start, end)| end - start)
        .sum();
    let (mut plain, mut proximity, mut frees, mut bytes) = (0, 0, 0, 0);
    for event in &scenario.events {
        match event {
            Event::Allocate(request) => {
                if request.near.is_some() {
                    proximity += 1;
                } else {
                    plain += 1;
                }
                bytes += request.len;
            }
            Event::Free(_) => frees += 1,
        }
    }
    println!(
        "Space [{LOWEST:#x}, {TOP:#x}], granularity {} KiB; {} mappings before the first \
         request ({}); {plain} plain and {proximity} proximity requests ({} requested, \
         rounded), {frees} frees; seed {SEED:#x}.",
        GRANULARITY / KIB,
        scenario.modules.len(),
        mib(mapped),
        mib(bytes),
    );
    println!();
}

fn print_tables(outcomes: &[(Policy, Outcome)]) {
    println!(
        "| policy | failed: plain / hooks in the exe / hooks in DLLs | largest hole at end \
         | median of the largest hole after every {SAMPLE_EVERY} requests | holes at end \
         | plain blocks placed below {LOW_SPACE:#x} |"
    );
    println!("|---|---|---|---|---|---|");
    for (policy, outcome) in outcomes {
        let mut samples = outcome.largest_samples.clone();
        samples.sort_unstable();
        let [plain, executable, dll] = outcome.failed;
        println!(
            "| {} | {plain} / {executable} / {dll} | {} | {} | {} | {} |",
            policy.name(),
            mib(outcome.largest_at_end),
            mib(median(&samples)),
            outcome.holes_at_end,
            mib(outcome.plain_placed_low),
        );
    }
    println!();
    println!(
        "| policy | distance, all hooks: mean | median | 90th percentile | max \
         | hooks in the exe: mean | median | hooks in DLLs: mean | median |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (policy, outcome) in outcomes {
        let all = outcome.all_distances();
        let executable = &outcome.distances[EXECUTABLE_HOOK];
        let dll = &outcome.distances[DLL_HOOK];
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            policy.name(),
            length(mean(&all)),
            length(median(&all) as f64),
            length(percentile(&all, 90) as f64),
            length(all.last().copied().unwrap_or(0) as f64),
            length(mean(executable)),
            length(median(executable) as f64),
            length(mean(dll)),
            length(median(dll) as f64),
        );
    }
    println!();
}

/// The smallest, median and largest of `values` (which it sorts).
fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let middle = values[values.len().saturating_sub(1) / 2];
    (values[0], middle, values[values.len() - 1])
}

/// Over many layouts and sequences: the median of each figure per policy,
/// and how ours compares with the policy each goal names, seed by
/// seed.
fn print_sweep() {
    const POLICIES: usize = Policy::ALL.len();
    let mut largest = [const { Vec::new() }; POLICIES];
    let mut mean_distance = [const { Vec::new() }; POLICIES];
    let mut executable_distance = [const { Vec::new() }; POLICIES];
    let mut dll_distance = [const { Vec::new() }; POLICIES];
    let mut failed = [0usize; POLICIES];
    // Ours minus the original and minus the old policy, largest hole at
    // end, in MiB; ours over the old policy, mean distance.
    let (mut hole_gain, mut hole_gain_on_old) = (Vec::new(), Vec::new());
    let mut distance_ratio = Vec::new();
    for seed in 1..=SWEEP_SEEDS {
        let scenario = Scenario::new(seed);
        let outcomes = Policy::ALL.map(|policy| replay(&scenario, policy));
        for (index, outcome) in outcomes.iter().enumerate() {
            largest[index].push(outcome.largest_at_end);
            mean_distance[index].push(mean(&outcome.all_distances()));
            executable_distance[index].push(mean(&outcome.distances[EXECUTABLE_HOOK]));
            dll_distance[index].push(mean(&outcome.distances[DLL_HOOK]));
            failed[index] += outcome.failed.iter().sum::<usize>();
        }
        let [ours, _, old, original] = &outcomes;
        let gain = |other: &Outcome| {
            (ours.largest_at_end as f64 - other.largest_at_end as f64) / MIB as f64
        };
        hole_gain.push(gain(original));
        hole_gain_on_old.push(gain(old));
        distance_ratio.push(mean(&ours.all_distances()) / mean(&old.all_distances()));
    }
    println!("Seeds 1 to {SWEEP_SEEDS}, one layout and sequence each, medians over the seeds:");
    println!();
    println!(
        "| policy | largest hole at end | mean distance, all hooks | hooks in the exe \
         | hooks in DLLs | failed requests, all seeds |"
    );
    println!("|---|---|---|---|---|---|");
    for (index, policy) in Policy::ALL.iter().enumerate() {
        largest[index].sort_unstable();
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            policy.name(),
            mib(median(&largest[index])),
            length(spread(&mut mean_distance[index]).1),
            length(spread(&mut executable_distance[index]).1),
            length(spread(&mut dll_distance[index]).1),
            failed[index],
        );
    }
    println!();
    for (gains, other) in [
        (&mut hole_gain, "the original"),
        (&mut hole_gain_on_old, "the old policy"),
    ] {
        let at_least = gains.iter().filter(|&&gain| gain >= 0.0).count();
        let (least, middle, most) = spread(gains);
        println!(
            "Largest hole at end, ours minus {other}: >= 0 in {at_least} of \
             {SWEEP_SEEDS} seeds; from {least:+.1} MiB to {most:+.1} MiB, median {middle:+.1} MiB."
        );
    }
    let no_worse = distance_ratio.iter().filter(|&&ratio| ratio <= 1.0).count();
    let (least, middle, most) = spread(&mut distance_ratio);
    println!(
        "Mean distance, ours over the old policy: <= 1 in {no_worse} of {SWEEP_SEEDS} \
         seeds; from {least:.2}x to {most:.2}x, median {middle:.2}x."
    );
}

fn main() {
    let started = Instant::now();
    let scenario = Scenario::new(SEED);
    print_scenario(&scenario);
    let outcomes = Policy::ALL.map(|policy| (policy, replay(&scenario, policy)));
    print_tables(&outcomes);
    print_sweep();
    println!();
    println!("({:.2} s)", started.elapsed().as_secs_f64());
}
