//! Per-process state, replaced in a forked child.
//!
//! After `fork()` the child has a new process id but inherits the parent's
//! shared mapping of the locator. If the child kept using it, it would
//! register its own (private, copy-on-write) pages in the parent's registry
//! and release the parent's buffers. So all state lives in one
//! [`ProcessState`] that records which process made it; the first call in a
//! child notices the fork (its marker, a wipe-on-fork word, reads 0) and
//! builds a fresh state with its own locator. Old states are leaked on
//! purpose: the hot path may be reading one.
//!
//! Each state has a generation number, which buffer guards carry (see
//! `LockedBuffer`). A guard may append and release only while its
//! generation is the current state's and that state's marker is intact: in
//! a forked child the marker is wiped, and a new state has a new number, so
//! a guard inherited from the parent never releases the parent's buffer.

#![allow(unsafe_code)]

use crate::error::ErrorKind;
use crate::os;
use crate::shared::generation;
use crate::shared::locator::Locator;
use crate::space::address_space::{AddressSpace, SharedAddressSpace};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Everything the library keeps for one process.
pub(crate) struct ProcessState {
    /// Reads 0 in a forked child; holds `generation` and the locator's
    /// address for the hot path.
    marker: &'static os::ForkMarker,
    /// This state's number, never 0, different from every state the
    /// process inherited (see [`next_generation`]). Buffer guards carry it.
    generation: u16,
    address_space: SharedAddressSpace,
    locator: OnceLock<Locator>,
    /// Serialises locator creation, which may fail and be retried.
    locator_creation: Mutex<()>,
}

/// The state of the current process; null until first use. Only ever holds
/// pointers from `Box::into_raw` that are never freed once published.
static CURRENT: AtomicPtr<ProcessState> = AtomicPtr::new(std::ptr::null_mut());

/// Generations handed out so far. A forked child inherits the count, so a
/// state it makes never has the number of one it inherited (until 65,535
/// states later, which would take that many nested forks).
static GENERATIONS: AtomicUsize = AtomicUsize::new(0);

/// The next generation: 1 to 65,535, wrapping past 0.
fn next_generation() -> u16 {
    loop {
        // Relaxed: only distinct numbers are needed.
        let generation = GENERATIONS.fetch_add(1, Ordering::Relaxed).wrapping_add(1) as u16;
        if generation != 0 {
            return generation;
        }
    }
}

impl ProcessState {
    fn new() -> ProcessState {
        let generation = next_generation();
        let marker = os::new_fork_marker();
        // Relaxed: the state is published by the AcqRel exchange in
        // `replace_state`, and the marker by a Release store after it.
        marker
            .generation
            .store(usize::from(generation), Ordering::Relaxed);
        ProcessState {
            marker,
            generation,
            address_space: SharedAddressSpace::new(),
            locator: OnceLock::new(),
            locator_creation: Mutex::new(()),
        }
    }

    /// Whether this state belongs to a parent of the running process.
    #[inline]
    pub(crate) fn is_stale(&self) -> bool {
        !self.marker.is_live(usize::from(self.generation))
    }

    /// The number buffer guards taken for this state carry.
    pub(crate) fn generation(&self) -> u16 {
        self.generation
    }

    /// The cached address space view (see [`SharedAddressSpace::lock`]).
    pub(crate) fn address_space(&self) -> MutexGuard<'_, AddressSpace> {
        self.address_space.lock()
    }

    /// The lock around the cached address space view, for the locator,
    /// which maps new buffers through it.
    pub(crate) fn shared_address_space(&self) -> &SharedAddressSpace {
        &self.address_space
    }

    /// This process's locator, found or created on first use. A failure
    /// (not even a private page could be mapped) is returned, and the next
    /// call tries again.
    #[inline]
    pub(crate) fn locator(&'static self) -> Result<&'static Locator, ErrorKind> {
        if let Some(locator) = self.locator.get() {
            return Ok(locator);
        }
        self.create_locator()
    }

    #[cold]
    fn create_locator(&'static self) -> Result<&'static Locator, ErrorKind> {
        let _creating = self
            .locator_creation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(locator) = self.locator.get() {
            return Ok(locator);
        }
        let locator = Locator::open()?;
        let locator = self.locator.get_or_init(|| locator);
        // Release: a hot-path reader that sees the address with Acquire sees
        // the initialised locator.
        self.marker
            .locator
            .store(locator as *const Locator as usize, Ordering::Release);
        Ok(locator)
    }
}

/// The locator of the running process and the generation its guards carry,
/// if the process has a locator and was not forked since: the hot path's
/// view, two loads from the marker.
#[inline]
pub(crate) fn live_locator() -> Option<(&'static Locator, u16)> {
    let marker = generation::current_marker()?;
    // Relaxed: compared before use; Acquire on the locator address below.
    let generation = marker.generation.load(Ordering::Relaxed);
    // Acquire: pairs with the Release store in `create_locator`.
    let locator = marker.locator.load(Ordering::Acquire);
    if locator == 0 || !marker.is_live(generation) {
        return None;
    }
    // SAFETY: set in `create_locator` from the `OnceLock` of a state that
    // is never freed; the marker proved this process set it.
    Some((unsafe { &*(locator as *const Locator) }, generation as u16))
}

/// The state of the running process.
#[inline]
pub(crate) fn current() -> &'static ProcessState {
    // Acquire pairs with the AcqRel exchange below, so the state's fields are
    // seen initialised.
    let pointer = CURRENT.load(Ordering::Acquire);
    if !pointer.is_null() {
        // SAFETY: non-null values of `CURRENT` come from `Box::into_raw` and are
        // never freed, so the reference is valid for `'static`.
        let state = unsafe { &*pointer };
        if !state.is_stale() {
            return state;
        }
    }
    replace_state(pointer)
}

#[cold]
fn replace_state(seen: *mut ProcessState) -> &'static ProcessState {
    let fresh_pointer = Box::into_raw(Box::new(ProcessState::new()));
    // AcqRel: Release publishes the new state's fields to later Acquire
    // loads; Acquire makes a competing winner's fields visible to us.
    match CURRENT.compare_exchange(seen, fresh_pointer, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: published just now and never freed from here on.
            let state = unsafe { &*fresh_pointer };
            generation::publish_marker(state.marker);
            state
        }
        Err(winner) => {
            // Another thread installed a state first. Ours was never shared,
            // so it is freed here; only its fork-marker page stays mapped
            // (one page per lost race, at most once per thread and fork).
            // SAFETY: `fresh_pointer` came from `Box::into_raw` above and was
            // never published, so this is its only owner.
            drop(unsafe { Box::from_raw(fresh_pointer) });
            // Use the winner unless it is stale too.
            // SAFETY: see `current`.
            let winner_state = unsafe { &*winner };
            if winner_state.is_stale() {
                replace_state(winner)
            } else {
                winner_state
            }
        }
    }
}
