//! Per-process state, replaced in a forked child.
//!
//! After `fork()` the child has a new process id but inherits the parent's
//! shared mapping of the locator. If the child kept using it, it would
//! register its own (private, copy-on-write) pages in the parent's registry
//! and release the parent's buffers. So all state lives in one
//! [`ProcessState`] that records which process made it; the first call in a
//! child notices the fork (one load of a wipe-on-fork word) and builds a
//! fresh state with its own locator. Old states are leaked on purpose: a
//! guard taken before the fork may still point at one.

#![allow(unsafe_code)]

use crate::address_space::AddressSpace;
use crate::error::ErrorKind;
use crate::locator::Locator;
use crate::os;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Everything the library keeps for one process.
pub(crate) struct ProcessState {
    fork_marker: os::ForkMarker,
    address_space: Mutex<AddressSpace>,
    locator: OnceLock<Locator>,
    /// Serialises locator creation, which may fail and be retried.
    locator_creation: Mutex<()>,
}

/// The state of the current process; null until first use. Only ever holds
/// pointers from `Box::into_raw` that are never freed once published.
static CURRENT: AtomicPtr<ProcessState> = AtomicPtr::new(std::ptr::null_mut());

impl ProcessState {
    fn new() -> ProcessState {
        ProcessState {
            fork_marker: os::ForkMarker::new(),
            address_space: Mutex::new(AddressSpace::new()),
            locator: OnceLock::new(),
            locator_creation: Mutex::new(()),
        }
    }

    /// Whether this state belongs to a parent of the running process.
    #[inline]
    pub(crate) fn is_stale(&self) -> bool {
        self.fork_marker.is_forked()
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

    /// The locator if it exists already; the hot path does not create it.
    #[inline]
    pub(crate) fn existing_locator(&self) -> Option<&Locator> {
        self.locator.get()
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
        Ok(self.locator.get_or_init(|| locator))
    }
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
        // SAFETY: published just now and never freed from here on.
        Ok(_) => unsafe { &*fresh_pointer },
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
