//! Fault injection for the OS layer.
//!
//! In the crate's own tests (and with the `fault-injection` feature) a test
//! can make chosen system calls fail on the current thread, to prove that
//! every failure becomes an error or the documented fallback and never a
//! panic or a leaked mapping. Faults are per thread because the library does
//! its work on the calling thread and tests run in parallel. In normal builds
//! [`check`] is an inlined `Ok(())`.
//!
//! The same builds record each instruction-cache flush (`record_flush`),
//! so tests can show that code writes are flushed: on AArch64 a missing
//! flush is invisible under QEMU, which notices modified code by itself.

/// A system call that can be made to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum FaultPoint {
    /// Anonymous `mmap`, fixed or anywhere.
    MapMemory = 1 << 0,
    /// Opening or reading `/proc/self/maps`.
    ReadMaps = 1 << 1,
    /// Opening or creating the rendezvous directory or file.
    OpenRendezvous = 1 << 2,
    /// `ftruncate` of the rendezvous file.
    #[cfg_attr(not(unix), allow(dead_code))]
    ResizeRendezvous = 1 << 3,
    /// `mmap` of the rendezvous file.
    MapRendezvous = 1 << 4,
    /// `fallocate` of the rendezvous file.
    #[cfg_attr(not(unix), allow(dead_code))]
    AllocateRendezvous = 1 << 5,
    /// Opening an existing rendezvous file.
    #[cfg_attr(not(unix), allow(dead_code))]
    OpenRendezvousFile = 1 << 6,
    /// Reading this process's memory with `process_vm_readv`
    /// (`ReadProcessMemory` on Windows).
    ReadOwnMemory = 1 << 7,
    /// Changing page protections (`mprotect`, `VirtualProtect`).
    Protect = 1 << 8,
}

#[cfg(any(test, feature = "fault-injection"))]
mod active {
    // Where thread locals are not native (Android), clippy asks for the
    // `const` initialisers these already have.
    #![cfg_attr(target_os = "android", allow(clippy::missing_const_for_thread_local))]

    use super::FaultPoint;
    use std::cell::Cell;

    thread_local! {
        /// Bit mask of failing points, and the errno they fail with.
        static FAILING: Cell<(u32, i32)> = const { Cell::new((0, 0)) };
    }

    pub(crate) fn check(point: FaultPoint) -> Result<(), i32> {
        let (mask, errno) = FAILING.with(Cell::get);
        if mask & point as u32 != 0 {
            Err(errno)
        } else {
            Ok(())
        }
    }

    /// An input/output error: `EIO`, or `ERROR_IO_DEVICE` on Windows.
    #[cfg(unix)]
    const IO_ERROR: i32 = libc::EIO;
    #[cfg(windows)]
    const IO_ERROR: i32 = 1117;

    /// Makes `points` fail with an input/output error on this thread until
    /// the guard drops.
    #[must_use]
    pub(crate) fn fail(points: &[FaultPoint]) -> FailingGuard {
        fail_with(points, IO_ERROR)
    }

    /// Makes `points` fail with `errno` on this thread until the guard
    /// drops.
    #[must_use]
    pub(crate) fn fail_with(points: &[FaultPoint], errno: i32) -> FailingGuard {
        let previous = FAILING.with(Cell::get);
        let added = points.iter().fold(0, |mask, &point| mask | point as u32);
        FAILING.with(|failing| failing.set((previous.0 | added, errno)));
        FailingGuard { previous }
    }

    /// The instruction-cache flushes made on a thread.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub(crate) struct Flushes {
        /// How many flushes this thread made.
        pub(crate) count: usize,
        /// The range of the last one.
        pub(crate) last: (usize, usize),
        /// Cache lines the last one cleaned or invalidated: counted on
        /// AArch64 Linux and FreeBSD, 0 where the hardware needs no
        /// maintenance (x86), 64-byte lines as an estimate where the system
        /// does the work (`sys_icache_invalidate`, `__clear_cache`,
        /// `FlushInstructionCache`, which report nothing).
        pub(crate) last_lines: usize,
    }

    thread_local! {
        static FLUSHES: Cell<Flushes> = const {
            Cell::new(Flushes { count: 0, last: (0, 0), last_lines: 0 })
        };
    }

    /// Records a flush of `[address, address + len)` that maintained
    /// `lines` cache lines, so that tests can see that writing code
    /// flushes exactly what was written.
    pub(crate) fn record_flush(address: usize, len: usize, lines: usize) {
        FLUSHES.with(|flushes| {
            let count = flushes.get().count + 1;
            flushes.set(Flushes {
                count,
                last: (address, len),
                last_lines: lines,
            });
        });
    }

    /// The flushes this thread has made so far (read by the Linux fault
    /// tests).
    #[cfg_attr(not(all(test, target_os = "linux")), allow(dead_code))]
    pub(crate) fn flushes() -> Flushes {
        FLUSHES.with(Cell::get)
    }

    thread_local! {
        /// Ranges where exact mappings are refused as occupied, however
        /// free the map shows them: what Wine does to some ranges.
        static REFUSED: std::cell::RefCell<Vec<(usize, usize)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Makes exact mappings that overlap `[start, end)` fail on this
    /// thread as if something were there (while the map shows nothing),
    /// until the guard drops.
    #[must_use]
    #[cfg_attr(not(all(test, any(target_os = "linux", windows))), allow(dead_code))]
    pub(crate) fn refuse_exact_mappings(start: usize, end: usize) -> RefusalGuard {
        REFUSED.with(|refused| refused.borrow_mut().push((start, end)));
        RefusalGuard
    }

    thread_local! {
        /// Exact mappings this thread has asked for.
        static EXACT_MAPPINGS: Cell<u64> = const { Cell::new(0) };
    }

    /// How many exact mappings this thread has asked the system for (each
    /// one system call), for tests that bound what a request costs.
    #[cfg_attr(not(all(test, any(target_os = "linux", windows))), allow(dead_code))]
    pub(crate) fn exact_mappings() -> u64 {
        EXACT_MAPPINGS.with(Cell::get)
    }

    /// Whether an exact mapping of `[address, address + len)` is to be
    /// refused on this thread; counts the attempt. Only the Linux and
    /// Windows backends ask.
    #[cfg_attr(not(any(linux_like, windows)), allow(dead_code))]
    pub(crate) fn is_refused(address: usize, len: usize) -> bool {
        EXACT_MAPPINGS.with(|count| count.set(count.get() + 1));
        let end = address.saturating_add(len);
        REFUSED.with(|refused| {
            refused
                .borrow()
                .iter()
                .any(|&(start, stop)| address < stop && start < end)
        })
    }

    /// Ends the refusal made last on drop.
    #[cfg_attr(not(all(test, any(target_os = "linux", windows))), allow(dead_code))]
    pub(crate) struct RefusalGuard;

    impl Drop for RefusalGuard {
        fn drop(&mut self) {
            REFUSED.with(|refused| refused.borrow_mut().pop());
        }
    }

    /// Restores the previous set of failing points on drop.
    pub(crate) struct FailingGuard {
        previous: (u32, i32),
    }

    impl Drop for FailingGuard {
        fn drop(&mut self) {
            FAILING.with(|failing| failing.set(self.previous));
        }
    }
}

#[cfg(any(test, feature = "fault-injection"))]
pub(crate) use active::*;

/// Does nothing: fault injection is compiled out.
#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
#[allow(dead_code)]
pub(crate) fn record_flush(_address: usize, _len: usize, _lines: usize) {}

/// Always succeeds: fault injection is compiled out.
#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
pub(crate) fn check(_point: FaultPoint) -> Result<(), i32> {
    Ok(())
}

/// Refuses nothing: fault injection is compiled out. Only the Linux and
/// Windows backends ask.
#[cfg(not(any(test, feature = "fault-injection")))]
#[cfg_attr(not(any(linux_like, windows)), allow(dead_code))]
#[inline(always)]
pub(crate) fn is_refused(_address: usize, _len: usize) -> bool {
    false
}
