//! The words that tell a forked child its library state is its parent's.
//!
//! Kept apart from the backends that make a marker, and from the process
//! state that owns one, so that a buffer guard can check its generation
//! against the marker without depending on either.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The id of the running process. The same call on every system with a
/// backend (`getpid`, `GetCurrentProcessId`), through the standard library.
pub(crate) fn process_id() -> u32 {
    std::process::id()
}

/// What tells a forked child that the library state it inherited belongs to
/// its parent: words that read 0 in a child. Two of them serve the hot path:
/// a generation number (non-zero) that buffer guards carry, and the address
/// of the process's locator. One load of each tells a request whether the
/// process is the one that set them, and where its buffers are.
///
/// Made by the backend's `new_fork_marker`, in a page the kernel wipes in a
/// forked child where it can (`MADV_WIPEONFORK`); elsewhere `pid` records
/// the process that made it, and a different process id means a fork.
#[repr(C)]
pub(crate) struct ForkMarker {
    /// The generation of the process state that owns the marker; 0 until
    /// set, and in a forked child.
    pub(crate) generation: AtomicUsize,
    /// Address of the state's `Locator` once it exists; 0 before, and in a
    /// forked child.
    pub(crate) locator: AtomicUsize,
    /// 0 in a wiped page (wiping is the fork test); otherwise the id of the
    /// process that made the marker.
    pid: u32,
}

impl ForkMarker {
    /// A marker on the heap, not wiped by a fork, which therefore compares
    /// process ids when `pid` is not 0.
    #[allow(dead_code)]
    pub(crate) const fn unwiped(pid: u32) -> ForkMarker {
        ForkMarker {
            generation: AtomicUsize::new(0),
            locator: AtomicUsize::new(0),
            pid,
        }
    }

    /// Whether this process is the one that set `generation` (non-zero):
    /// not a child forked since.
    #[inline]
    pub(crate) fn is_live(&self, generation: usize) -> bool {
        // Relaxed: the words change only by being set before the state is
        // published, and by the kernel wiping them before a child runs.
        generation != 0
            && self.generation.load(Ordering::Relaxed) == generation
            && (self.pid == 0 || self.pid == process_id())
    }
}
