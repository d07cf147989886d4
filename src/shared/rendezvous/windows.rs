//! Finding the process's shared locator, or creating it (Windows).
//!
//! On Windows the rendezvous is a pagefile-backed named section,
//! `/Reloaded.Memory.Buffers.MemoryBuffer, PID <pid>`, one allocation
//! granularity (64 KiB) long, exactly as the original library makes it, so
//! that every buffers library in the process shares one locator:
//!
//! - the first instance creates the section, maps a read/write/execute view,
//!   writes the locator header at its start with the view's address as
//!   *this address*, registers the bytes after the first 4096 as four
//!   ready-made buffers (`FORMAT.md`), and keeps both the view and the handle
//!   for the life of the process (a section's name disappears with its last
//!   handle, even while views remain);
//! - later instances open the section, read *this address* through a view of
//!   their own, and unmap that view.
//!
//! Section names are per session, not per process: any process of the
//! user's session may create ours first and write anything in it. So *this
//! address* is used only once it is proven to be a live view of this very
//! section in this process:
//!
//! 1. `VirtualQuery` says it starts a committed, read/write view
//!    (`MEM_MAPPED`) of at least one locator;
//! 2. holding the header lock through our own view, we write two different
//!    values to a probe word that no field uses ([`PROBE_OFFSET`]) and read
//!    each back at *this address* with `ReadProcessMemory`, which fails
//!    instead of faulting. Only the same physical pages can follow our
//!    writes; the word is zero again before the lock is released.
//!
//! A section that fails the proof, has the wrong size, or whose header lock
//! stays held, leads to a private locator with the reason. Windows has no
//! `fork` and no stale files: a section dies with its last handle and view.

#![allow(unsafe_code)]

use super::Meeting;
use crate::error::PrivateLocatorReason;
use crate::os::{self, NamedSection};
use crate::shared::layout::{LOCATOR_SIZE, LocatorRef, PROBE_OFFSET};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Prefix of the section name; the decimal process id follows.
const SECTION_PREFIX: &str = "/Reloaded.Memory.Buffers.MemoryBuffer, PID ";

/// How long a found section may show *this address* as 0 (its creator, in
/// this process, is still writing the header) before it is judged garbage.
const INITIALISATION_PATIENCE: Duration = Duration::from_millis(200);

/// How long the proof waits for the header lock. Holders keep it for a
/// system call or two; a lock held longer belongs to someone we cannot
/// trust.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// The section name for a process.
pub(crate) fn section_name(pid: u32) -> String {
    format!("{SECTION_PREFIX}{pid}")
}

/// The shared locator, and what this library must not use of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SharedLocator {
    /// The first locator of the chain.
    pub(crate) head: LocatorRef,
    /// Whether this call created the section.
    pub(crate) created: bool,
    /// Base addresses of ready-made buffers that are not executable: the
    /// original library maps its view without `FILE_MAP_EXECUTE`, so code
    /// written there would fault. Empty when they are usable.
    pub(crate) non_executable: Range<usize>,
}

/// The contract's name for [`find_or_create`]: Windows owes no sweep.
pub(crate) fn meet(pid: u32) -> Result<Meeting, PrivateLocatorReason> {
    find_or_create(pid).map(|found| Meeting {
        head: found.head,
        unusable: found.non_executable,
        owes_sweep: false,
    })
}

/// Nothing is ever owed: a section dies with its last handle and view.
pub(crate) fn pay_owed_sweep() {}

/// Finds or creates the shared locator of process `pid`.
pub(crate) fn find_or_create(pid: u32) -> Result<SharedLocator, PrivateLocatorReason> {
    let len = LOCATOR_SIZE.max(os::allocation_granularity());
    let unavailable = |errno| PrivateLocatorReason::SectionUnavailable { errno };
    let section = NamedSection::create_or_open(&section_name(pid), len).map_err(unavailable)?;
    if !section.existed() {
        let view = section.map_view(true).map_err(unavailable)?;
        if view.len() < len {
            return Err(PrivateLocatorReason::SectionWrongSize { len: view.len() });
        }
        let address = view.address();
        // SAFETY: a fresh view of `len` read/write/execute bytes that is kept
        // (leaked) below for the life of the process; views start at the
        // allocation granularity, so it is page-aligned.
        let head = unsafe { LocatorRef::from_address(address) }
            .ok_or_else(|| unavailable(os::INVALID_ARGUMENT))?;
        // SAFETY: nobody can read *this address* before the Release store at
        // the end of `initialise_first`; until then other instances wait.
        unsafe { head.initialise_first(address, len) };
        view.leak();
        section.leak();
        return Ok(SharedLocator {
            head,
            created: true,
            non_executable: 0..0,
        });
    }
    // Read/write is all a later instance needs of its own view.
    let view = section.map_view(false).map_err(unavailable)?;
    if view.len() != len {
        return Err(PrivateLocatorReason::SectionWrongSize { len: view.len() });
    }
    // SAFETY: our own view of `len` bytes, page-aligned, unmapped only when
    // `view` drops at the end of this function, after the last use of `ours`.
    let ours = unsafe { LocatorRef::from_address(view.address()) }
        .ok_or_else(|| unavailable(os::INVALID_ARGUMENT))?;
    let claimed = wait_for_this_address(ours)?;
    let head = prove_live_view(ours, claimed, view.address())?;
    drop(view);
    drop(section);
    let non_executable = match os::query_region(claimed + LOCATOR_SIZE) {
        Some(region) if !region.is_executable && region.allocation_base == claimed => {
            claimed + LOCATOR_SIZE..claimed + len
        }
        _ => 0..0,
    };
    Ok(SharedLocator {
        head,
        created: false,
        non_executable,
    })
}

/// Reads *this address* through our view, waiting a little while it is 0.
fn wait_for_this_address(ours: LocatorRef) -> Result<usize, PrivateLocatorReason> {
    let deadline = Instant::now() + INITIALISATION_PATIENCE;
    loop {
        // Acquire: pairs with the creator's Release store, so the header and
        // ready-made items are complete once the address is seen.
        let claimed = ours.this_address().load(Ordering::Acquire);
        if claimed != 0 {
            return Ok(claimed);
        }
        if Instant::now() >= deadline {
            return Err(PrivateLocatorReason::SectionNotProven);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Returns the locator at `claimed` once it is proven to be a live view, in
/// this process, of the section `ours` (at `our_address`) is a view of.
fn prove_live_view(
    ours: LocatorRef,
    claimed: usize,
    our_address: usize,
) -> Result<LocatorRef, PrivateLocatorReason> {
    let not_proven = Err(PrivateLocatorReason::SectionNotProven);
    // Our own view was mapped just now: nobody could have published it.
    if claimed == our_address || !claimed.is_multiple_of(os::allocation_granularity()) {
        return not_proven;
    }
    match os::query_region(claimed) {
        Some(region)
            if region.start == claimed
                && region.allocation_base == claimed
                && region.is_committed_view
                && region.is_read_write
                && region.len >= LOCATOR_SIZE => {}
        _ => return not_proven,
    }
    if !lock_header_within(ours, LOCK_PATIENCE) {
        return not_proven;
    }
    let probe = ours.probe();
    // Two values that differ from each other and from the resting 0.
    let first = 0x5a00 | (our_address >> 16) as u16 & 0xff;
    let follows = [first, !first].into_iter().all(|value| {
        // SeqCst: the store must reach the shared pages before the read
        // through the other address, which is not an atomic of ours.
        probe.store(value, Ordering::SeqCst);
        let mut seen = [0u8; 2];
        os::read_own_memory(claimed + PROBE_OFFSET, &mut seen).is_ok()
            && u16::from_le_bytes(seen) == value
    });
    probe.store(0, Ordering::SeqCst);
    // Release: publishes the cleared probe with the lock.
    ours.lock().store(0, Ordering::Release);
    if !follows {
        return not_proven;
    }
    // SAFETY: `claimed` is proven to start a live, read/write view of this
    // section of at least LOCATOR_SIZE bytes, aligned to the allocation
    // granularity; by the protocol its creator keeps it for the life of the
    // process.
    unsafe { LocatorRef::from_address(claimed) }.ok_or(PrivateLocatorReason::SectionNotProven)
}

/// Takes the header lock of `locator`, giving up after `patience`.
fn lock_header_within(locator: LocatorRef, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    let mut spins = 0u32;
    loop {
        // Acquire: as for any holder of the header lock.
        if locator
            .lock()
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else if Instant::now() >= deadline {
            return false;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_name_is_the_originals() {
        assert_eq!(
            section_name(4242),
            "/Reloaded.Memory.Buffers.MemoryBuffer, PID 4242"
        );
    }
}
