//! The thin layer between the library and the operating system.
//!
//! Every system call the library makes goes through the backend chosen here:
//! one file per operating system (`linux.rs`, `macos.rs`, `freebsd.rs`,
//! `windows.rs`), each defining the same `pub(crate)` items; the three Unix
//! backends take what POSIX gives them alike from `unix/`. Android is
//! Linux under another C library, so `linux.rs` serves it too (the build
//! script's `linux_like` cfg names both).
//! Targets without a backend get `unsupported.rs`, whose calls fail with
//! [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) instead of failing
//! to compile. Values that never change during a process (page size, lowest
//! mappable address) are read once and cached here in atomics.
//!
//! What every backend hands back is defined once, apart from them: the
//! access rights and the owned mapping (`mapping.rs`, each backend
//! converting the rights to its own bits) and the fork marker
//! (`fork_marker.rs`). What needs both `unix.rs` and a Unix backend (the
//! protections read from the backend's list of mappings) is written here,
//! so that `unix.rs` never calls back into a backend.

#![allow(unsafe_code)]

// `memory_buffers_unsupported` builds the stub on Linux too, so CI checks
// that it still compiles.
#[cfg_attr(all(linux_like, not(memory_buffers_unsupported)), path = "linux.rs")]
#[cfg_attr(
    all(target_os = "macos", not(memory_buffers_unsupported)),
    path = "macos.rs"
)]
#[cfg_attr(
    all(target_os = "freebsd", not(memory_buffers_unsupported)),
    path = "freebsd.rs"
)]
#[cfg_attr(all(windows, not(memory_buffers_unsupported)), path = "windows.rs")]
#[cfg_attr(
    any(
        not(any(linux_like, target_os = "macos", target_os = "freebsd", windows)),
        memory_buffers_unsupported
    ),
    path = "unsupported.rs"
)]
mod backend;

/// What the Unix backends share.
#[cfg(all(
    any(linux_like, target_os = "macos", target_os = "freebsd"),
    not(memory_buffers_unsupported)
))]
mod unix;

// Another process's memory (`remote/target_process.rs`): a file per system, apart
// from the backends above, with the same items in each.
#[cfg_attr(
    all(linux_like, not(memory_buffers_unsupported)),
    path = "remote/linux.rs"
)]
#[cfg_attr(
    all(windows, not(memory_buffers_unsupported)),
    path = "remote/windows.rs"
)]
#[cfg_attr(
    any(not(any(linux_like, windows)), memory_buffers_unsupported),
    path = "remote/unsupported.rs"
)]
// Linux makes a target call mmap on x86-64 only: elsewhere the injector's
// plumbing is compiled but unused.
#[cfg_attr(all(linux_like, not(target_arch = "x86_64")), allow(dead_code))]
#[cfg(feature = "external-processes")]
mod remote;

pub(crate) mod fault;
mod fork_marker;
mod mapping;

pub(crate) use backend::*;
pub(crate) use fork_marker::{ForkMarker, process_id};
pub(crate) use mapping::{FixedMapping, OwnedMapping, Protection};
#[cfg(feature = "external-processes")]
pub(crate) use remote::{REMOTE_MAP_CALL, REMOTE_PROTECT_CALL, RemoteProcess};
#[cfg(all(
    any(linux_like, target_os = "macos", target_os = "freebsd"),
    not(memory_buffers_unsupported)
))]
use unix::PageProtection;

use std::sync::atomic::{AtomicUsize, Ordering};

/// Cached allocation granularity; 0 until first read.
static GRANULARITY: AtomicUsize = AtomicUsize::new(0);
/// Cached lowest mappable address plus one; 0 until first read.
static LOWEST_ADDRESS: AtomicUsize = AtomicUsize::new(0);
/// Cached highest user-space address; 0 until first read.
static HIGHEST_ADDRESS: AtomicUsize = AtomicUsize::new(0);

/// The unit in which memory is mapped (the page size on Linux).
///
/// Read from the system once; later calls are one relaxed load. Relaxed is
/// enough: the value is a plain number that is the same whichever thread
/// reads it first, so racing initialisations store the same value.
#[inline]
pub(crate) fn allocation_granularity() -> usize {
    match GRANULARITY.load(Ordering::Relaxed) {
        0 => {
            let value = backend::query_granularity();
            GRANULARITY.store(value, Ordering::Relaxed);
            value
        }
        value => value,
    }
}

/// The lowest address a mapping may start at (`vm.mmap_min_addr`).
///
/// Cached like [`allocation_granularity`], stored plus one so that a real
/// value of 0 is not mistaken for "not read yet".
pub(crate) fn lowest_mappable_address() -> usize {
    match LOWEST_ADDRESS.load(Ordering::Relaxed) {
        0 => {
            let value = backend::query_lowest_address();
            LOWEST_ADDRESS.store(value.saturating_add(1), Ordering::Relaxed);
            value
        }
        stored => stored - 1,
    }
}

/// The highest address (inclusive) a mapping of this process can reach.
///
/// Known only at run time where the process decides it: a 32-bit Windows
/// program sees 4 GiB if its image is large-address-aware and 2 GiB if
/// not, a 32-bit Linux program 4 GiB on a 64-bit kernel and 3 GiB on a
/// 32-bit one. Cached like [`allocation_granularity`] (never 0 once read).
#[inline]
pub(crate) fn highest_user_address() -> usize {
    match HIGHEST_ADDRESS.load(Ordering::Relaxed) {
        0 => {
            let value = backend::query_highest_user_address().max(1);
            HIGHEST_ADDRESS.store(value, Ordering::Relaxed);
            value
        }
        value => value,
    }
}

/// Calls `visit` with each mapping that overlaps `[start, end)` and its
/// protection, in address order, from the backend's list of mappings
/// (`/proc/self/maps`, `KERN_PROC_VMMAP`, the `mach_vm_region` walk): no
/// Unix has a system call that reports a page's protection. It lives here,
/// over both `unix.rs` and the backend, so that the shared Unix calls never
/// call back into a backend.
#[cfg(all(
    any(linux_like, target_os = "macos", target_os = "freebsd"),
    not(memory_buffers_unsupported)
))]
pub(crate) fn visit_protections(
    start: usize,
    end: usize,
    mut visit: impl FnMut(usize, usize, PageProtection),
) -> Result<(), Errno> {
    let mut buffer = Vec::new();
    backend::read_maps(&mut buffer, |entry| {
        if entry.start >= end {
            return std::ops::ControlFlow::Break(());
        }
        if entry.end > start {
            visit(
                entry.start,
                entry.end,
                PageProtection::of_access(entry.access),
            );
        }
        std::ops::ControlFlow::Continue(())
    })
}

use crate::error::ErrorKind;

/// The error kind for a failed system call.
pub(crate) fn error_kind(call: &'static str, errno: Errno) -> ErrorKind {
    if backend::is_unsupported(errno) {
        ErrorKind::Unsupported
    } else {
        ErrorKind::Os { call, errno }
    }
}
