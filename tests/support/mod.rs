//! What the integration tests need to know about the address space, and to
//! change in it, on each operating system: the library's own OS layer is
//! private, and tests should not trust it to check itself anyway.

#![allow(dead_code, unsafe_code)]

use std::process::Command;

pub mod skip;

/// What a child-process scenario returns: `Err` with what went wrong.
pub type Outcome = Result<(), String>;

/// Returns `Err(format!(...))` from a scenario unless `condition` holds.
/// (Test binaries without scenarios include this module too.)
#[allow(unused_macros)]
macro_rules! check {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}
#[allow(unused_imports)]
pub(crate) use check;

/// A scenario with the name it is run and reported by.
pub type Scenario = (&'static str, fn() -> Outcome);

/// Runs the scenario `name` of `scenarios` in this child process and exits:
/// 0 when it passes, 1 with what went wrong on standard error otherwise.
pub fn run_child(scenarios: &[Scenario], name: &str) -> ! {
    let outcome = match scenarios.iter().find(|(known, _)| *known == name) {
        Some((_, run)) => run(),
        None => Err(format!("unknown scenario {name}")),
    };
    match outcome {
        Ok(()) => std::process::exit(0),
        Err(message) => {
            eprintln!("{name}: {message}");
            std::process::exit(1)
        }
    }
}

/// Set in a child process to the name of the scenario it is to run.
pub const SCENARIO_VARIABLE: &str = "MEMORY_BUFFERS_SCENARIO";

/// The scenario this process is to run, if it is a scenario child.
pub fn scenario_of_this_child() -> Option<String> {
    std::env::var(SCENARIO_VARIABLE).ok()
}

/// Set by `.ci/qemu-aarch64-runner` (the cargo runner for AArch64 Linux)
/// to the emulator command line that runs this test binary, so that child
/// processes run under it too: an AArch64 executable cannot be started
/// directly on an x86-64 host unless `binfmt_misc` knows QEMU, which
/// containers do not offer. Arguments are separated by spaces.
pub const RUNNER_VARIABLE: &str = "MEMORY_BUFFERS_TEST_RUNNER";

/// A command that runs `executable`: under the emulator named by
/// [`RUNNER_VARIABLE`] if set (the child is then the emulator, which runs
/// `executable`), directly otherwise.
pub fn command_for(executable: &std::path::Path) -> Command {
    runner_command(std::env::var(RUNNER_VARIABLE).ok().as_deref(), executable)
}

/// `full`, or `emulated` (with a printed note saying so) when the tests run
/// under an emulator ([`RUNNER_VARIABLE`] set): QEMU runs atomics and
/// threads of a stress test one to two orders of magnitude slower, and
/// the full count took over twelve minutes there.
pub fn count_for_this_machine(full: u64, emulated: u64, what: &str) -> u64 {
    if std::env::var_os(RUNNER_VARIABLE).is_some() {
        // Past the test harness's capture, so that it is seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{what}: {emulated} instead of {full} under the emulator"
        );
        emulated
    } else {
        full
    }
}

/// [`command_for`] with the runner given, for testing.
pub fn runner_command(runner: Option<&str>, executable: &std::path::Path) -> Command {
    let mut words = runner.unwrap_or_default().split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut command = Command::new(emulator);
            command.args(words).arg(executable);
            command
        }
        None => Command::new(executable),
    }
}

/// Runs each scenario of `names` in a fresh child process (this executable,
/// with [`SCENARIO_VARIABLE`] naming it), except those the command line
/// filters out and those for which `why_skipped` gives a reason, which is printed
/// (and counted) by [`skip::skip_named`]. Prints one line per scenario and
/// a `label: N passed, N failed, N skipped` summary; exits with 1 if any
/// failed.
pub fn run_in_children<'a>(
    label: &str,
    names: impl IntoIterator<Item = &'a str>,
    why_skipped: impl Fn(&str) -> Option<&'static str>,
) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|argument| !argument.starts_with('-'))
        .collect();
    let executable = std::env::current_exe().expect("the test has a path");
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for name in names {
        if !filter.is_empty() && !filter.iter().any(|wanted| name.contains(wanted.as_str())) {
            continue;
        }
        if let Some(reason) = why_skipped(name) {
            skip::skip_named(name, reason);
            skipped += 1;
            continue;
        }
        let output = command_for(&executable)
            .env(SCENARIO_VARIABLE, name)
            .output()
            .expect("the test can run itself");
        if output.status.success() {
            println!("test {name} ... ok");
            passed += 1;
        } else {
            println!(
                "test {name} ... FAILED ({})\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            failed += 1;
        }
    }
    println!("\n{label}: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Whether any mapping or reservation overlaps `[start, end)`.
#[cfg(target_os = "linux")]
pub fn is_mapped(start: usize, end: usize) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().any(|line| {
        let range = line.split(' ').next().unwrap();
        let (low, high) = range.split_once('-').unwrap();
        let low = usize::from_str_radix(low, 16).unwrap();
        let high = usize::from_str_radix(high, 16).unwrap();
        low < end && start < high
    })
}

/// Whether any mapping or reservation overlaps `[start, end)`.
#[cfg(windows)]
pub fn is_mapped(start: usize, end: usize) -> bool {
    let mut address = start;
    while address < end {
        let region = windows::query(address);
        if region.State != windows_sys::Win32::System::Memory::MEM_FREE {
            return true;
        }
        address = region.BaseAddress as usize + region.RegionSize;
    }
    false
}

/// `count` read-only granules somewhere, except that the one in the middle
/// (granule `count / 2`) is left free. Released on drop.
pub struct RegionWithHole {
    pub start: usize,
    pub hole: usize,
    granule: usize,
    count: usize,
}

#[cfg(target_os = "linux")]
impl RegionWithHole {
    pub fn new(count: usize, granule: usize) -> RegionWithHole {
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address.
        let region = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                count * granule,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(region, libc::MAP_FAILED);
        let hole = region as usize + count / 2 * granule;
        // SAFETY: the page is part of the mapping made just above.
        assert_eq!(
            unsafe { libc::munmap(hole as *mut libc::c_void, granule) },
            0
        );
        RegionWithHole {
            start: region as usize,
            hole,
            granule,
            count,
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for RegionWithHole {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped (the hole may hold a test's
        // allocation, which the test has dropped by now).
        unsafe { libc::munmap(self.start as *mut libc::c_void, self.count * self.granule) };
    }
}

#[cfg(windows)]
impl RegionWithHole {
    /// A reservation cannot be split on Windows, so one granule is reserved
    /// at a time over a range that was free a moment ago (tests that use
    /// this run alone). The system (Wine's own threads, the harness's) may
    /// still map something there in between: then everything is given back
    /// and another free range is tried.
    pub fn new(count: usize, granule: usize) -> RegionWithHole {
        for _ in 0..20 {
            let start = windows::reserve(0, count * granule).expect("reserve the region");
            windows::release(start);
            let hole = start + count / 2 * granule;
            let mut reserved = Vec::new();
            let complete = (0..count)
                .map(|index| start + index * granule)
                .filter(|&address| address != hole)
                .all(|address| {
                    let done = windows::reserve(address, granule) == Some(address);
                    if done {
                        reserved.push(address);
                    }
                    done
                });
            if complete {
                return RegionWithHole {
                    start,
                    hole,
                    granule,
                    count,
                };
            }
            reserved.into_iter().for_each(windows::release);
        }
        panic!("no free range of {count} granules stayed free long enough to reserve");
    }
}

#[cfg(windows)]
impl Drop for RegionWithHole {
    fn drop(&mut self) {
        for index in 0..self.count {
            let address = self.start + index * self.granule;
            if address != self.hole {
                windows::release(address);
            }
        }
    }
}

/// Maps `len` read/write bytes at exactly `address` without replacing
/// anything; false if anything is in the way.
#[cfg(target_os = "linux")]
pub fn map_exact(address: usize, len: usize) -> bool {
    // SAFETY: `MAP_FIXED_NOREPLACE` never replaces an existing mapping; the
    // result is checked before use.
    let result = unsafe {
        libc::mmap(
            address as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if result == libc::MAP_FAILED {
        return false;
    }
    if result as usize != address {
        // An old kernel treated the flag as a hint: not ours to keep.
        // SAFETY: the kernel just made this mapping for us.
        unsafe { libc::munmap(result, len) };
        return false;
    }
    true
}

/// Unmaps what [`map_exact`] mapped.
#[cfg(target_os = "linux")]
pub fn unmap_exact(address: usize, len: usize) {
    // SAFETY: the range was mapped by the caller alone.
    let result = unsafe { libc::munmap(address as *mut libc::c_void, len) };
    assert_eq!(result, 0);
}

/// Maps `len` read/write bytes at exactly `address` without replacing
/// anything; false if anything is in the way.
#[cfg(windows)]
pub fn map_exact(address: usize, len: usize) -> bool {
    windows::commit(address, len) == Some(address)
}

/// Unmaps what [`map_exact`] mapped.
#[cfg(windows)]
pub fn unmap_exact(address: usize, _len: usize) {
    windows::release(address);
}

/// Why the top gibibyte of user space cannot be mapped here, if it cannot.
///
/// QEMU user mode runs AArch64 code in the host's address space: on an
/// x86-64 host the guest's 48-bit space (up to 2^48) is cut at the host's
/// 47 bits, so nothing can be mapped in the top half of the guest's range.
/// QEMU 7.2 also does not know `MAP_FIXED_NOREPLACE` and maps with the
/// address as a mere hint, returning memory elsewhere (as a kernel older
/// than 4.17 would). The library sees the pages land elsewhere, gives them
/// back and reports `NoSpaceInRange`, which is right; the test cannot show
/// placement there.
pub fn top_of_user_space_unreachable() -> Option<&'static str> {
    #[cfg(target_os = "linux")]
    {
        let top = memory_buffers::highest_user_address();
        let probe = (top - (1 << 29)) & !0xffff;
        if map_exact(probe, 65536) {
            unmap_exact(probe, 65536);
        } else if !is_mapped(probe, probe + 65536) {
            return Some(
                "the top of user space cannot be mapped here (QEMU user mode keeps the guest \
                 in the host's 47-bit address space, below the top of AArch64's 48 bits, and \
                 takes MAP_FIXED_NOREPLACE for a hint)",
            );
        }
    }
    // A 32-bit Windows program under Wine: Wine reserves the top of a
    // large-address-aware program's 4 GiB for itself (from just above
    // 2 GiB), and `VirtualQuery` reports that as one `MEM_RESERVE` region.
    // The library trusts the walk, as it must on Windows, and places
    // nothing there (although Wine would grant an exact `VirtualAlloc`
    // inside its own reservation). Probed: the region a little below the
    // top is one reservation reaching from below the top GiB.
    #[cfg(all(windows, target_pointer_width = "32"))]
    {
        let top = memory_buffers::highest_user_address();
        let region = windows::query(top - (1 << 28));
        // The reservation's start (`BaseAddress` is only the queried page).
        let start = region.AllocationBase as usize;
        if region.State == 0x2000 && start <= top - (1 << 30) + 1 {
            return Some(
                "the top GiB of this 32-bit program is one reservation in the system's map \
                 (Wine reserves it for itself), which the library does not place into",
            );
        }
    }
    None
}

/// Why the rights of each page cannot be read back from
/// `/proc/self/maps` here, if they cannot.
///
/// QEMU user mode writes the guest's `/proc/self/maps` from the host's,
/// one line per host mapping, with the rights of that mapping's first guest
/// page. It does not pass execute rights to the host, so two neighbouring
/// guest pages that differ only in execute (`r-x` then `r--`) are one host
/// mapping, and both read back as `r-x`. Tested, not assumed: two such
/// pages are made and read back.
#[cfg(target_os = "linux")]
pub fn page_rights_unreadable() -> Option<&'static str> {
    // SAFETY: a fresh private mapping of two pages, unmapped below.
    let pages = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(pages, libc::MAP_FAILED);
    let second = pages as usize + 4096;
    // SAFETY: changing the rights of our own pages.
    unsafe {
        assert_eq!(
            libc::mprotect(pages, 4096, libc::PROT_READ | libc::PROT_EXEC),
            0
        );
        assert_eq!(
            libc::mprotect(second as *mut libc::c_void, 4096, libc::PROT_READ),
            0
        );
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let read_back = maps.lines().find_map(|line| {
        let (range, rest) = line.split_once(' ')?;
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        (start..end)
            .contains(&second)
            .then(|| rest.get(..3).map(str::to_owned))?
    });
    // SAFETY: unmapping the pages made above.
    unsafe { libc::munmap(pages, 8192) };
    (read_back.as_deref() != Some("r--")).then_some(
        "/proc/self/maps does not show each page's rights here (QEMU user mode shows one \
         line per host mapping, and merges guest pages that differ only in execute)",
    )
}

/// *This address* of the process's shared locator, read the way a second
/// library instance reads it: through a view of its own of the rendezvous
/// file (Linux) or named section (Windows), which is then unmapped.
#[cfg(target_os = "linux")]
pub fn this_address_through_a_second_view() -> usize {
    let path = format!(
        "/tmp/.reloaded/memory.buffers/Reloaded.Memory.Buffers.MemoryBuffer, PID {}",
        std::process::id()
    );
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    assert_eq!(file.metadata().unwrap().len(), 4096);
    // SAFETY: a shared read-only view of the 4096-byte file, unmapped below.
    let view = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    assert_ne!(view, libc::MAP_FAILED);
    // SAFETY: the view is 4096 readable bytes; the field is at offset 0.
    let this_address = unsafe { std::ptr::read_unaligned(view as *const usize) };
    // SAFETY: unmapping the view made above.
    unsafe { libc::munmap(view, 4096) };
    this_address
}

#[cfg(windows)]
pub fn this_address_through_a_second_view() -> usize {
    let name = format!(
        "/Reloaded.Memory.Buffers.MemoryBuffer, PID {}",
        std::process::id()
    );
    let section = windows::open_section(&name).expect("the named section exists");
    let view = section.view();
    assert_eq!(windows::query(view).RegionSize, 65536);
    // SAFETY: the view is 64 KiB of readable bytes; the field is at offset 0.
    unsafe { std::ptr::read_unaligned(view as *const usize) }
}

/// Win32 calls the Windows tests make themselves.
#[cfg(windows)]
pub mod windows {
    use std::ffi::c_void;
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Memory::{
        CreateFileMappingW, FILE_MAP_ALL_ACCESS, MEM_COMMIT, MEM_RELEASE, MEM_RESERVE,
        MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, OpenFileMappingW,
        PAGE_EXECUTE_READWRITE, PAGE_READONLY, PAGE_READWRITE, UnmapViewOfFile, VirtualAlloc,
        VirtualFree, VirtualQuery,
    };

    pub fn query(address: usize) -> MEMORY_BASIC_INFORMATION {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: VirtualQuery only writes `info`.
        let written = unsafe {
            VirtualQuery(
                address as *const c_void,
                &mut info,
                std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        assert_ne!(written, 0, "VirtualQuery({address:#x})");
        info
    }

    /// Reserves `len` bytes (read-only when committed) at `address`, or
    /// anywhere if 0.
    pub fn reserve(address: usize, len: usize) -> Option<usize> {
        // SAFETY: MEM_RESERVE never replaces an existing reservation.
        let result =
            unsafe { VirtualAlloc(address as *const c_void, len, MEM_RESERVE, PAGE_READONLY) };
        (!result.is_null()).then_some(result as usize)
    }

    /// Reserves and commits `len` read/write bytes at `address`; a result
    /// elsewhere (an unaligned address is rounded down) is released.
    pub fn commit(address: usize, len: usize) -> Option<usize> {
        // SAFETY: MEM_RESERVE never replaces an existing reservation.
        let result = unsafe {
            VirtualAlloc(
                address as *const c_void,
                len,
                MEM_RESERVE | MEM_COMMIT,
                PAGE_READWRITE,
            )
        };
        if result.is_null() {
            return None;
        }
        if result as usize != address {
            release(result as usize);
            return None;
        }
        Some(address)
    }

    pub fn release(address: usize) {
        // SAFETY: releases a reservation the test made.
        unsafe { VirtualFree(address as *mut c_void, 0, MEM_RELEASE) };
    }

    fn wide(name: &str) -> Vec<u16> {
        name.encode_utf16().chain(std::iter::once(0)).collect()
    }

    /// A handle to a named section and one read/write view of it, both
    /// closed on drop.
    pub struct Section {
        handle: HANDLE,
        view: usize,
    }

    impl Section {
        pub fn view(&self) -> usize {
            self.view
        }

        /// Keeps the handle and the view for the rest of the process, as
        /// a library that created the section would.
        pub fn keep(self) -> usize {
            let view = self.view;
            std::mem::forget(self);
            view
        }

        fn from_handle(handle: HANDLE) -> Option<Section> {
            if handle.is_null() {
                return None;
            }
            // SAFETY: maps the whole section read/write.
            let view = unsafe { MapViewOfFile(handle, FILE_MAP_ALL_ACCESS, 0, 0, 0) };
            assert!(!view.Value.is_null(), "MapViewOfFile");
            Some(Section {
                handle,
                view: view.Value as usize,
            })
        }
    }

    impl Drop for Section {
        fn drop(&mut self) {
            // SAFETY: the view and handle are this value's own.
            unsafe {
                UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                    Value: self.view as *mut c_void,
                });
                CloseHandle(self.handle);
            }
        }
    }

    pub fn open_section(name: &str) -> Option<Section> {
        let name = wide(name);
        // SAFETY: a NUL-terminated name.
        Section::from_handle(unsafe { OpenFileMappingW(FILE_MAP_ALL_ACCESS, 0, name.as_ptr()) })
    }

    /// Creates a pagefile-backed section of `len` bytes, as another
    /// process of the session could.
    pub fn create_section(name: &str, len: usize) -> Section {
        let name = wide(name);
        // SAFETY: a NUL-terminated name and default security.
        let handle = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_EXECUTE_READWRITE,
                0,
                len as u32,
                name.as_ptr(),
            )
        };
        Section::from_handle(handle).expect("CreateFileMappingW")
    }
}
