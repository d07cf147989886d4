//! Writing over code outside the buffers (`Buffers::patch_code`) and
//! write-then-execute private allocations: the protections each leaves
//! behind, read back from the system.

#![allow(unsafe_code)]

use memory_buffers::{BufferAllocatorSettings, Buffers, ErrorKind};

use crate::support;

/// The size of a page, the unit of protections.
const PAGE: usize = 4096;

/// Two adjacent pages with different protections and no memory after
/// them, unmapped on drop.
struct TwoPages {
    start: usize,
}

/// The rights of the page at `address`, as the system reports them: the
/// `rwx` of its `/proc/self/maps` line.
#[cfg(target_os = "linux")]
fn rights(address: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let (range, rest) = line.split_once(' ').unwrap();
        let (start, end) = range.split_once('-').unwrap();
        let start = usize::from_str_radix(start, 16).unwrap();
        let end = usize::from_str_radix(end, 16).unwrap();
        if (start..end).contains(&address) {
            return rest[..3].to_string();
        }
    }
    panic!("{address:#x} is not mapped");
}

/// The rights of the page at `address`, as the system reports them: its
/// `PAGE_*` protection written as `rwx`.
#[cfg(windows)]
fn rights(address: usize) -> String {
    use windows_sys::Win32::System::Memory::*;
    let protect = support::windows::query(address).Protect;
    match protect {
        PAGE_READONLY => "r--",
        PAGE_READWRITE => "rw-",
        PAGE_EXECUTE_READ => "r-x",
        PAGE_EXECUTE_READWRITE => "rwx",
        PAGE_NOACCESS => "---",
        other => panic!("unexpected protection {other:#x}"),
    }
    .to_string()
}

/// Sets the rights of one page to `r-x`, `r--` or `rw-`.
#[cfg(target_os = "linux")]
fn set_rights(address: usize, rights: &str) {
    let bits = match rights {
        "r-x" => libc::PROT_READ | libc::PROT_EXEC,
        "r--" => libc::PROT_READ,
        _ => libc::PROT_READ | libc::PROT_WRITE,
    };
    // SAFETY: the page belongs to the test's own mapping.
    assert_eq!(
        unsafe { libc::mprotect(address as *mut libc::c_void, PAGE, bits) },
        0
    );
}

/// Sets the rights of one page to `r-x`, `r--` or `rw-`.
#[cfg(windows)]
fn set_rights(address: usize, rights: &str) {
    use windows_sys::Win32::System::Memory::*;
    let flags = match rights {
        "r-x" => PAGE_EXECUTE_READ,
        "r--" => PAGE_READONLY,
        _ => PAGE_READWRITE,
    };
    let mut former = 0;
    // SAFETY: the page belongs to the test's own allocation.
    let done = unsafe { VirtualProtect(address as *const _, PAGE, flags, &mut former) };
    assert_ne!(done, 0);
}

/// Unmaps one page of the test's own mapping.
#[cfg(target_os = "linux")]
fn remove_page(address: usize) {
    support::unmap_exact(address, PAGE);
}

/// Decommits one page of the test's own allocation (the reservation stays,
/// but nothing is mapped there).
#[cfg(windows)]
fn remove_page(address: usize) {
    use windows_sys::Win32::System::Memory::{MEM_DECOMMIT, VirtualFree};
    // SAFETY: the page belongs to the test's own allocation.
    assert_ne!(
        unsafe { VirtualFree(address as *mut _, PAGE, MEM_DECOMMIT) },
        0
    );
}

impl TwoPages {
    /// An executable page followed by a read-only one, both filled with
    /// `0x90`, then a page that is not there.
    fn new() -> TwoPages {
        let allocation = Buffers::allocate_private_memory(&BufferAllocatorSettings::new(
            0,
            memory_buffers::highest_user_address(),
            3 * PAGE,
        ))
        .unwrap();
        let start = allocation.leak();
        remove_page(start + 2 * PAGE);
        // SAFETY: the pages were just mapped read/write/execute for us.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0x90, 2 * PAGE) };
        set_rights(start, "r-x");
        set_rights(start + PAGE, "r--");
        TwoPages { start }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: both pages are readable and live until drop.
        unsafe { std::slice::from_raw_parts(self.start as *const u8, 2 * PAGE) }
    }
}

impl Drop for TwoPages {
    fn drop(&mut self) {
        support::unmap_exact(self.start, 2 * PAGE);
    }
}

#[test]
fn a_patch_across_two_pages_restores_each_ones_exact_protection() {
    #[cfg(target_os = "linux")]
    if let Some(reason) = support::page_rights_unreadable() {
        support::skip::skip(reason);
        return;
    }
    let pages = TwoPages::new();
    assert_eq!(rights(pages.start), "r-x");
    assert_eq!(rights(pages.start + PAGE), "r--");
    let at = pages.start + PAGE - 3;
    // SAFETY: the test's own pages; nothing runs or reads them meanwhile.
    unsafe { Buffers::patch_code(at, &[1, 2, 3, 4, 5, 6]).unwrap() };
    assert_eq!(
        &pages.bytes()[PAGE - 4..PAGE + 4],
        &[0x90, 1, 2, 3, 4, 5, 6, 0x90]
    );
    assert_eq!(
        rights(pages.start),
        "r-x",
        "the code page is executable again"
    );
    assert_eq!(
        rights(pages.start + PAGE),
        "r--",
        "the data page is read-only again"
    );
}

#[test]
fn a_patch_of_a_writable_page_leaves_it_writable() {
    let pages = TwoPages::new();
    set_rights(pages.start, "rw-");
    // SAFETY: as above.
    unsafe { Buffers::patch_code(pages.start + 10, &[7]).unwrap() };
    assert_eq!(pages.bytes()[10], 7);
    assert_eq!(rights(pages.start), "rw-");
}

#[test]
fn a_patch_reaching_unmapped_memory_writes_nothing() {
    #[cfg(target_os = "linux")]
    if let Some(reason) = support::page_rights_unreadable() {
        support::skip::skip(reason);
        return;
    }
    let pages = TwoPages::new();
    let end = pages.start + 2 * PAGE;
    // SAFETY: the part that is mapped is the test's own.
    let error = unsafe { Buffers::patch_code(end - 2, &[1, 2, 3, 4]).unwrap_err() };
    assert_eq!(error.kind(), ErrorKind::NotMapped);
    assert_eq!(&pages.bytes()[2 * PAGE - 2..], &[0x90, 0x90]);
    assert_eq!(rights(pages.start + PAGE), "r--");
}

#[test]
fn bad_patches_are_refused() {
    // SAFETY: refused before anything is written.
    unsafe {
        assert!(
            Buffers::patch_code(0, &[1])
                .unwrap_err()
                .invalid_request()
                .is_some()
        );
        assert!(
            Buffers::patch_code(0x1000, &[])
                .unwrap_err()
                .invalid_request()
                .is_some()
        );
        assert!(
            Buffers::patch_code(usize::MAX, &[1, 2])
                .unwrap_err()
                .invalid_request()
                .is_some()
        );
    }
}

fn write_then_execute_allocation() -> memory_buffers::PrivateAllocation {
    Buffers::allocate_private_memory(
        &BufferAllocatorSettings::new(0, 0x7fff_ffff, PAGE).write_then_execute(),
    )
    .unwrap()
}

/// `mov eax, 42; ret` (the same bytes on 32-bit x86) or `mov w0, #42; ret`.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
const RETURN_42: &[u8] = &[0xb8, 42, 0, 0, 0, 0xc3];
#[cfg(target_arch = "aarch64")]
const RETURN_42: &[u8] = &[0x40, 0x05, 0x80, 0x52, 0xc0, 0x03, 0x5f, 0xd6];

#[test]
fn write_then_execute_memory_is_never_writable_and_executable() {
    let mut code = write_then_execute_allocation();
    assert_eq!(rights(code.base_address()), "rw-");
    assert!(code.is_writable() && !code.is_executable());
    code.write(0, RETURN_42).unwrap();
    code.make_executable().unwrap();
    assert_eq!(rights(code.base_address()), "r-x");
    assert!(!code.is_writable() && code.is_executable());
    assert_eq!(
        code.write(0, &[0xc3]).unwrap_err().kind(),
        ErrorKind::NotWritable
    );
    assert_eq!(
        code.as_mut_slice().unwrap_err().kind(),
        ErrorKind::NotWritable
    );
    assert_eq!(
        &code.as_slice()[..RETURN_42.len()],
        RETURN_42,
        "still readable"
    );
    // SAFETY: the allocation holds a complete function returning 42 in
    // the C calling convention, and is executable.
    let function: extern "C" fn() -> u32 = unsafe { std::mem::transmute(code.as_ptr()) };
    assert_eq!(function(), 42);
    code.make_writable().unwrap();
    assert_eq!(rights(code.base_address()), "rw-");
    code.write(1, &[7]).unwrap();
}

#[test]
fn default_private_memory_stays_read_write_execute() {
    let mut memory =
        Buffers::allocate_private_memory(&BufferAllocatorSettings::new(0, 0x7fff_ffff, PAGE))
            .unwrap();
    assert_eq!(rights(memory.base_address()), "rwx");
    memory.make_executable().unwrap();
    memory.write(0, &[1]).unwrap();
    assert_eq!(rights(memory.base_address()), "rwx");
    assert!(memory.is_writable() && memory.is_executable());
}

/// Set in the child of the test below: the write it makes must fault.
const FAULTING_CHILD: &str = "MEMORY_BUFFERS_WRITE_AFTER_EXECUTE";

/// Not just refused by the API: once executable, a raw write through the
/// pointer faults (in a child process, which it kills).
#[test]
fn a_raw_write_after_make_executable_faults() {
    if std::env::var_os(FAULTING_CHILD).is_some() {
        let mut code = write_then_execute_allocation();
        code.make_executable().unwrap();
        // The default action for the fault, whoever installed a handler
        // (the sanitizers do): the kernel then ends the child with SIGSEGV.
        // SAFETY: `SIG_DFL` is a valid disposition; no handler code runs.
        #[cfg(unix)]
        unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
        }
        // SAFETY: none: this write is meant to fault and end the child.
        unsafe { code.as_ptr().write_volatile(0xcc) };
        println!("written");
        std::process::exit(0);
    }
    // Under the emulator that runs this test, if any (see `support`).
    let output = support::command_for(&std::env::current_exe().unwrap())
        .args([
            "--exact",
            "patching::a_raw_write_after_make_executable_faults",
            "--nocapture",
        ])
        .env(FAULTING_CHILD, "1")
        .output()
        .unwrap();
    let status = output.status;
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("written"),
        "the write went through"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status}");
    }
    // An access violation; Wine ends a process with an unhandled exception
    // with STATUS_DEBUGGER_INACTIVE when no debugger is set up.
    #[cfg(windows)]
    assert!(
        [0xC000_0005_u32, 0xC000_0354]
            .map(|code| code as i32)
            .contains(&status.code().unwrap_or(0)),
        "access violation expected: {status}"
    );
}
