//! Soak test: shared buffers and private allocations under concurrent use
//! while other threads map and unmap memory around the same targets.
//!
//! For a bounded time (`MEMORY_BUFFERS_SOAK_SECS`, default 3 seconds),
//! appender threads repeatedly get a buffer near one of a few targets,
//! append a pattern derived from a seed, check the address they got, and
//! release the buffer; now and then they take a private allocation instead.
//! Meanwhile interferer threads map and unmap their own pages near the same
//! targets with plain `mmap(MAP_FIXED_NOREPLACE)` / `munmap`, so the
//! library's cached view of the address space is constantly out of date
//! (`VirtualAlloc` at an exact address / `VirtualFree` on Windows).
//!
//! Checked at the end (and along the way):
//!
//! - every append landed inside `[min, max]` of its request and inside its
//!   buffer, aligned when asked;
//! - no two appends overlap, and every byte written is still intact;
//! - the interferers' pages were never written by the library, and every
//!   private allocation kept its contents until dropped.

use memory_buffers::{BufferAllocatorSettings, BufferSearchSettings, Buffers, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod support;

/// The unit the interferers map in: where the system lets a mapping start.
#[cfg(windows)]
const PAGE: usize = 65536;
#[cfg(not(windows))]
const PAGE: usize = 4096;

/// Appends a thread may record; bounds memory use however fast it runs.
const MAX_APPENDS_PER_THREAD: usize = 200_000;

/// A small deterministic generator (xorshift64*), so a failing run can be
/// reproduced from the seeds it prints.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// The bytes an append with this seed writes.
fn pattern(seed: u64, len: usize) -> impl Iterator<Item = u8> {
    let mut random = Random(seed | 1);
    (0..len).map(move |_| random.next() as u8)
}

/// One recorded append.
#[derive(Clone, Copy, Debug)]
struct Append {
    address: usize,
    len: usize,
    seed: u64,
}

/// Where requests are aimed, with the proximity used for each.
///
/// `MEMORY_BUFFERS_SOAK_TARGETS=near-code` keeps to the targets around the
/// test binary's code: ThreadSanitizer only allows fixed mappings inside
/// its application ranges, and the heap and high targets may fall outside.
fn targets() -> Vec<(usize, usize)> {
    let code = targets as *const () as usize;
    // Kept in a static so that the heap block stays referenced (and so
    // not reported by LeakSanitizer) while its address is a target.
    static HEAP_DATA: std::sync::OnceLock<Box<[u8; 64]>> = std::sync::OnceLock::new();
    let heap = HEAP_DATA.get_or_init(|| Box::new([0u8; 64])).as_ptr() as usize;
    let mut targets = vec![
        // A hook target in the test binary, the usual 2 GiB reach.
        (code, 0x7fff_0000),
        // The same target with a tight 16 MiB reach, so placement has to
        // fight the interferers for pages.
        (code, 0x100_0000),
    ];
    match std::env::var("MEMORY_BUFFERS_SOAK_TARGETS").as_deref() {
        Ok("near-code") => {}
        Ok("all") | Err(std::env::VarError::NotPresent) => targets.extend([
            // Heap data, 64 MiB reach.
            (heap, 0x400_0000),
            // An empty area high up (low down in a 32-bit process, whose
            // libraries and stack take its top), 32 MiB reach.
            (
                if usize::BITS == 64 {
                    0x3100_0000_0000_u64 as usize
                } else {
                    0x3000_0000
                },
                0x200_0000,
            ),
        ]),
        Ok(other) => {
            panic!("MEMORY_BUFFERS_SOAK_TARGETS must be `all` or `near-code`, not {other:?}")
        }
        Err(error) => panic!("MEMORY_BUFFERS_SOAK_TARGETS: {error}"),
    }
    targets
}

fn soak_duration() -> Duration {
    let seconds = std::env::var("MEMORY_BUFFERS_SOAK_SECS")
        .ok()
        .map(|text| {
            text.parse::<f64>()
                .expect("MEMORY_BUFFERS_SOAK_SECS must be a number of seconds")
        })
        .unwrap_or(3.0);
    Duration::from_secs_f64(seconds)
}

/// Reads `len` bytes at `address`.
///
/// # Safety
///
/// The bytes must be mapped and readable for the duration of the call.
unsafe fn bytes_at<'a>(address: usize, len: usize) -> &'a [u8] {
    // SAFETY: forwarded from the caller.
    unsafe { std::slice::from_raw_parts(address as *const u8, len) }
}

fn append_once(random: &mut Random, targets: &[(usize, usize)], appends: &mut Vec<Append>) {
    let (target, proximity) = targets[random.below(targets.len() as u64) as usize];
    let len = 1 + random.below(96) as usize;
    let settings = BufferSearchSettings::from_proximity(proximity, target, len);
    let alignment = [1, 1, 8, 16, 64][random.below(5) as usize];
    let mut buffer = match Buffers::get_buffer_aligned(&settings, alignment) {
        Ok(buffer) => buffer,
        // The tight ranges can genuinely fill up; anything else is a bug.
        Err(error) if error.kind() == ErrorKind::NoSpaceInRange => return,
        Err(error) => panic!("get_buffer failed: {error}"),
    };
    let base = buffer.base_address();
    let next = buffer.next_address();
    assert_eq!(
        next % alignment,
        0,
        "next address {next:#x} not {alignment}-aligned"
    );
    assert!(
        buffer.bytes_left() >= len,
        "{buffer:?} cannot hold {len} bytes"
    );
    let seed = random.next();
    let bytes: Vec<u8> = pattern(seed, len).collect();
    let address = if random.below(4) == 0 {
        buffer.append_code(&bytes)
    } else {
        buffer.append_bytes(&bytes)
    }
    .expect("the guard promised room");
    assert_eq!(address, next);
    assert!(
        address >= settings.min_address && address + len - 1 <= settings.max_address,
        "append at {address:#x}+{len} outside [{:#x}, {:#x}]",
        settings.min_address,
        settings.max_address
    );
    assert!(
        address >= base && address + len <= base + buffer.size(),
        "append outside {buffer:?}"
    );
    // SAFETY: the bytes were just written into a permanent buffer.
    assert_eq!(unsafe { bytes_at(address, len) }, &bytes[..]);
    appends.push(Append { address, len, seed });
}

fn allocate_once(random: &mut Random, targets: &[(usize, usize)]) {
    let (target, proximity) = targets[random.below(targets.len() as u64) as usize];
    let size = PAGE * (1 + random.below(4) as usize);
    let settings = BufferAllocatorSettings::from_proximity(proximity, target, size);
    let allocation = match Buffers::allocate_private_memory(&settings) {
        Ok(allocation) => allocation,
        Err(error) if error.kind() == ErrorKind::NoSpaceInRange => return,
        Err(error) => panic!("allocate_private_memory failed: {error}"),
    };
    let base = allocation.base_address();
    assert!(base >= settings.min_address && base + size - 1 <= settings.max_address);
    assert_eq!(allocation.size(), size);
    let fill = random.next() as u8;
    // SAFETY: the allocation owns `size` writable bytes until dropped.
    unsafe { std::ptr::write_bytes(allocation.as_ptr(), fill, size) };
    std::thread::yield_now();
    // SAFETY: as above, still owned.
    let intact = unsafe { bytes_at(base, size) }
        .iter()
        .all(|&byte| byte == fill);
    assert!(intact, "private allocation at {base:#x} was overwritten");
}

/// Maps and unmaps its own pages near the targets until `stop`, checking
/// that nobody wrote to them.
fn interfere(seed: u64, targets: &[(usize, usize)], stop: &AtomicBool) -> usize {
    let mut random = Random(seed);
    let mut live: Vec<(usize, usize, u8)> = Vec::new();
    let mut mapped = 0;
    let check_and_unmap = |(address, len, fill): (usize, usize, u8)| {
        // SAFETY: this thread mapped the range and has not unmapped it.
        let intact = unsafe { bytes_at(address, len) }
            .iter()
            .all(|&byte| byte == fill);
        assert!(
            intact,
            "the library wrote into an interferer's pages at {address:#x}"
        );
        support::unmap_exact(address, len);
    };
    // Relaxed: the flag carries no data; the threads are joined afterwards.
    while !stop.load(Ordering::Relaxed) {
        let (target, _) = targets[random.below(targets.len() as u64) as usize];
        let spread = 0x400_0000u64; // 64 MiB either side
        let offset = random.below(2 * spread) as i64 - spread as i64;
        let address = (target as i64 + offset) as usize & !(PAGE - 1);
        let len = PAGE * (1 + random.below(8) as usize);
        if support::map_exact(address, len) {
            let fill = random.next() as u8;
            // SAFETY: a fresh writable mapping of `len` bytes.
            unsafe { std::ptr::write_bytes(address as *mut u8, fill, len) };
            live.push((address, len, fill));
            mapped += 1;
        }
        if live.len() > 32 {
            let oldest = live.remove(random.below(live.len() as u64) as usize);
            check_and_unmap(oldest);
        }
    }
    live.into_iter().for_each(check_and_unmap);
    mapped
}

#[test]
fn buffers_stay_intact_while_the_address_space_churns() {
    let duration = soak_duration();
    let targets = targets();
    let base_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_nanos() as u64);
    eprintln!("soak: {duration:?}, seed {base_seed:#x}");
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + duration;
    let (appends, interferences) = std::thread::scope(|scope| {
        let interferers: Vec<_> = (0..2u64)
            .map(|index| {
                let (targets, stop) = (&targets, &stop);
                scope.spawn(move || interfere(base_seed ^ (0x1000 + index), targets, stop))
            })
            .collect();
        let appenders: Vec<_> = (0..4u64)
            .map(|index| {
                let targets = &targets;
                scope.spawn(move || {
                    let mut random = Random(base_seed.rotate_left(index as u32 * 8) | 1);
                    let mut appends = Vec::new();
                    while Instant::now() < deadline && appends.len() < MAX_APPENDS_PER_THREAD {
                        if random.below(64) == 0 {
                            allocate_once(&mut random, targets);
                        } else {
                            append_once(&mut random, targets, &mut appends);
                        }
                    }
                    appends
                })
            })
            .collect();
        let appends: Vec<Append> = appenders
            .into_iter()
            .flat_map(|appender| appender.join().expect("an appender panicked"))
            .collect();
        // Relaxed: see `interfere`.
        stop.store(true, Ordering::Relaxed);
        let interferences: usize = interferers
            .into_iter()
            .map(|interferer| interferer.join().expect("an interferer panicked"))
            .sum();
        (appends, interferences)
    });
    eprintln!(
        "soak: {} appends, {interferences} interfering mappings",
        appends.len()
    );
    assert!(
        appends.len() > 1000,
        "too few appends to mean anything: {}",
        appends.len()
    );
    assert!(
        interferences > 100,
        "too little interference: {interferences}"
    );

    let mut sorted = appends;
    sorted.sort_unstable_by_key(|append| append.address);
    for pair in sorted.windows(2) {
        assert!(
            pair[0].address + pair[0].len <= pair[1].address,
            "appends overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    for append in &sorted {
        // SAFETY: shared buffers are never unmapped.
        let bytes = unsafe { bytes_at(append.address, append.len) };
        assert!(
            bytes.iter().copied().eq(pattern(append.seed, append.len)),
            "bytes of {append:?} changed"
        );
    }
}
