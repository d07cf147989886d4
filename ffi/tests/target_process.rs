//! `target_process_id` through the C interface: pages mapped in a child
//! process this test starts, read and written through the handle, and
//! released; 0 and this process's own id keep the pages here.
//!
//! A `harness = false` test: the child is this binary again, started with
//! `MEMORY_BUFFERS_C_TARGET_CHILD` set, and `main` makes it the target
//! (it waits until its standard input closes) before any test runs.
//! Without the variable, `main` runs the tests, each on a thread named
//! after it, and reports them as libtest would.

#[path = "../../tests/support/skip.rs"]
mod skip;

use memory_buffers_c::*;
use std::io::Read;
use std::process::{Command, Stdio};

const CHILD_VARIABLE: &str = "MEMORY_BUFFERS_C_TARGET_CHILD";

const TESTS: [(&str, fn()); 3] = [
    (
        "a_target_process_id_maps_the_pages_in_that_process",
        a_target_process_id_maps_the_pages_in_that_process,
    ),
    (
        "zero_or_the_own_id_maps_the_pages_here",
        zero_or_the_own_id_maps_the_pages_here,
    ),
    (
        "a_process_that_does_not_exist_is_reported_as_such",
        a_process_that_does_not_exist_is_reported_as_such,
    ),
];

fn main() {
    if std::env::var_os(CHILD_VARIABLE).is_some() {
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|argument| !argument.starts_with('-'))
        .collect();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, test) in TESTS {
        if !filter.is_empty() && !filter.iter().any(|wanted| name.contains(wanted.as_str())) {
            continue;
        }
        let skips_before = skip::count();
        // A thread of its own, named after the test as libtest names it:
        // a failed assertion ends only that thread, and `skip` names the
        // test by its thread.
        let outcome = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(test)
            .expect("a test thread can be started")
            .join();
        match outcome {
            Ok(()) if skip::count() > skips_before => {
                println!("test {name} ... skipped");
                skipped += 1;
            }
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("\ntarget process (C interface): {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        std::process::exit(1);
    }
}

fn settings_in(process_id: u32) -> MemoryBuffersAllocatorSettings {
    let mut settings = MemoryBuffersAllocatorSettings {
        min_address: 0,
        max_address: 0,
        size: 0,
        retry_count: 0,
        target_process_id: 0,
        target: 0,
    };
    // SAFETY: a live local.
    let status = unsafe { memory_buffers_allocator_settings_default(&mut settings) };
    assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
    assert_eq!(settings.target_process_id, 0);
    settings.max_address = 0x7fff_ffff;
    settings.target_process_id = process_id;
    settings
}

fn allocate(
    settings: &MemoryBuffersAllocatorSettings,
) -> (MemoryBuffersStatus, *mut MemoryBuffersPrivateAllocation) {
    let mut allocation = std::ptr::null_mut();
    // SAFETY: valid pointers to locals.
    let status = unsafe { memory_buffers_allocate_private_memory(settings, &mut allocation) };
    (status, allocation)
}

/// Writes bytes through the handle, reads them back, and checks the
/// handle's process and that writing past the end is refused.
fn round_trip(allocation: *mut MemoryBuffersPrivateAllocation, process_id: u32) -> usize {
    let (mut base, mut size, mut owner) = (0usize, 0usize, 0u32);
    let bytes: Vec<u8> = (0..64u8).map(|i| i ^ 0xa5).collect();
    let mut back = vec![0u8; bytes.len()];
    // SAFETY: a live handle and valid pointers to locals throughout.
    unsafe {
        assert_eq!(
            memory_buffers_private_allocation_base_address(allocation, &mut base),
            MEMORY_BUFFERS_STATUS_OK
        );
        assert_eq!(
            memory_buffers_private_allocation_size(allocation, &mut size),
            MEMORY_BUFFERS_STATUS_OK
        );
        assert_eq!(
            memory_buffers_private_allocation_process_id(allocation, &mut owner),
            MEMORY_BUFFERS_STATUS_OK
        );
        assert_eq!(
            memory_buffers_private_allocation_write(allocation, 100, bytes.as_ptr(), bytes.len()),
            MEMORY_BUFFERS_STATUS_OK
        );
        assert_eq!(
            memory_buffers_private_allocation_read(allocation, 100, back.as_mut_ptr(), back.len()),
            MEMORY_BUFFERS_STATUS_OK
        );
        assert_eq!(
            memory_buffers_private_allocation_write(allocation, size - 1, bytes.as_ptr(), 2),
            MEMORY_BUFFERS_STATUS_DOES_NOT_FIT
        );
        assert_eq!(
            memory_buffers_private_allocation_read(allocation, usize::MAX, back.as_mut_ptr(), 2),
            MEMORY_BUFFERS_STATUS_DOES_NOT_FIT
        );
        assert_eq!(
            memory_buffers_private_allocation_write(allocation, 0, std::ptr::null(), 1),
            MEMORY_BUFFERS_STATUS_NULL_POINTER
        );
    }
    assert_eq!(back, bytes);
    assert_eq!(owner, process_id);
    assert!(
        base + size - 1 <= 0x7fff_ffff && size >= 4096,
        "{base:#x} {size}"
    );
    base
}

/// Whether a mapping of the process starts at `base`. The map pads
/// addresses to eight digits (`00001000-00002000`), so they are compared as
/// numbers.
#[cfg(target_os = "linux")]
fn is_mapped_in(process_id: u32, base: usize) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{process_id}/maps")).unwrap();
    maps.lines().any(|line| {
        line.split_once('-')
            .and_then(|(start, _)| usize::from_str_radix(start, 16).ok())
            == Some(base)
    })
}

/// Why another process cannot be made to map pages here, if it cannot:
/// QEMU user mode does not implement `ptrace` for its guests (`ENOSYS`;
/// tested, not assumed: attaching to a process id that cannot exist fails
/// with `ESRCH` on a kernel), and only x86 builds have an injector.
fn ptrace_unimplemented() -> Option<&'static str> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: attaching to a process that does not exist changes
        // nothing; only the error is looked at.
        let result = unsafe {
            libc::ptrace(
                libc::PTRACE_ATTACH,
                libc::pid_t::MAX,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
        let errno = std::io::Error::last_os_error().raw_os_error();
        if result == -1 && errno == Some(libc::ENOSYS) {
            return Some("ptrace is not implemented here (QEMU user mode answers ENOSYS)");
        }
        // The injector drives x86 registers: `syscall` for x86-64, `int
        // 0x80` for 32-bit x86.
        if !cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
            return Some(
                "allocating in another Linux process needs the x86 injector (x86-64 or i686)",
            );
        }
    }
    None
}

fn a_target_process_id_maps_the_pages_in_that_process() {
    if let Some(reason) = ptrace_unimplemented() {
        skip::skip(reason);
        return;
    }
    // Started directly: where a runner is needed to start this binary
    // (QEMU user mode), ptrace is missing and the test has skipped above.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_VARIABLE, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (status, mut allocation) = allocate(&settings_in(child.id()));
    assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
    let base = round_trip(allocation, child.id());
    #[cfg(target_os = "linux")]
    assert!(is_mapped_in(child.id(), base));
    // SAFETY: the address of a live handle variable.
    let status = unsafe { memory_buffers_release_private_allocation(&mut allocation) };
    assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
    assert!(allocation.is_null());
    #[cfg(target_os = "linux")]
    assert!(!is_mapped_in(child.id(), base));
    let _ = base;
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

fn zero_or_the_own_id_maps_the_pages_here() {
    for process_id in [0, std::process::id()] {
        let (status, mut allocation) = allocate(&settings_in(process_id));
        assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
        round_trip(allocation, std::process::id());
        // SAFETY: the address of a live handle variable.
        let status = unsafe { memory_buffers_release_private_allocation(&mut allocation) };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
    }
}

fn a_process_that_does_not_exist_is_reported_as_such() {
    let (status, allocation) = allocate(&settings_in(u32::MAX));
    assert_eq!(status, MEMORY_BUFFERS_STATUS_PROCESS_NOT_RUNNING);
    assert!(allocation.is_null());
}
