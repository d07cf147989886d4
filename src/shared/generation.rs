//! Which process state is current, as buffer guards need to know it.
//!
//! A guard may append and release only while the generation it carries is
//! the current state's and that state's fork marker is intact. Asking that
//! needs one word, the current state's marker, and nothing of the state
//! itself, its locator or its address space; so the word lives here, a
//! leaf that both the guard and the process state depend on, instead of in
//! the process state, which depends on the locator, which makes guards.

#![allow(unsafe_code)]

use crate::os::ForkMarker;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The marker of the current process state, kept apart so the hot path
/// reaches it with one load instead of two; null until first use. Only ever
/// holds markers that are never freed.
static CURRENT_MARKER: AtomicPtr<ForkMarker> = AtomicPtr::new(std::ptr::null_mut());

/// Makes `marker` the current state's, once that state is published.
pub(crate) fn publish_marker(marker: &'static ForkMarker) {
    // Release: the marker's generation is visible to the hot path.
    CURRENT_MARKER.store(
        marker as *const ForkMarker as *mut ForkMarker,
        Ordering::Release,
    );
}

/// The current state's marker, if a state was published.
#[inline]
pub(crate) fn current_marker() -> Option<&'static ForkMarker> {
    // Acquire: pairs with the Release store in `publish_marker`.
    let marker = CURRENT_MARKER.load(Ordering::Acquire);
    // SAFETY: non-null values are markers of published states, which are
    // never freed (`publish_marker` takes them `'static`).
    unsafe { marker.as_ref() }
}

/// Whether `generation` is the running process's current state: a guard
/// carrying it may append and release. False in a forked child, whose
/// buffers belong to its parent.
#[inline]
pub(crate) fn is_current(generation: u16) -> bool {
    current_marker().is_some_and(|marker| marker.is_live(usize::from(generation)))
}
