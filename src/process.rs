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

use crate::address_space::AddressSpace;
use crate::error::ErrorKind;
use crate::locator::Locator;
use crate::os;
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
    address_space: Mutex<AddressSpace>,
    locator: OnceLock<Locator>,
    /// Serialises locator creation, which may fail and be retried.
    locator_creation: Mutex<()>,
}

/// The state of the current process; null until first use. Only ever holds
/// pointers from `Box::into_raw` that are never freed once published.
static CURRENT: AtomicPtr<ProcessState> = AtomicPtr::new(std::ptr::null_mut());

/// The marker of the state in `CURRENT`, kept apart so the hot path reaches
/// it with one load instead of two; null until first use.
static CURRENT_MARKER: AtomicPtr<os::ForkMarker> = AtomicPtr::new(std::ptr::null_mut());

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
            address_space: Mutex::new(AddressSpace::new()),
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

    /// The cached address space view. A panic while it was held cannot
    /// leave it inconsistent in a way that matters (it is only a hint), so
    /// poisoning is ignored.
    pub(crate) fn address_space(&self) -> MutexGuard<'_, AddressSpace> {
        self.address_space
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    // Acquire: pairs with the Release store that published the marker.
    let marker = CURRENT_MARKER.load(Ordering::Acquire);
    // SAFETY: non-null values are markers of published states, which are
    // never freed.
    let marker = unsafe { marker.as_ref() }?;
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

/// Whether `generation` is the running process's current state: a guard
/// carrying it may append and release. False in a forked child, whose
/// buffers belong to its parent.
#[inline]
pub(crate) fn is_current(generation: u16) -> bool {
    // Acquire: as in `live_locator`.
    let marker = CURRENT_MARKER.load(Ordering::Acquire);
    // SAFETY: as in `live_locator`.
    unsafe { marker.as_ref() }.is_some_and(|marker| marker.is_live(usize::from(generation)))
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
            // Release: the marker's generation is visible to the hot path.
            CURRENT_MARKER.store(
                state.marker as *const os::ForkMarker as *mut os::ForkMarker,
                Ordering::Release,
            );
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
