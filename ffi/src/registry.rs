//! Handles: boxed Rust values handed to C as opaque pointers, validated on
//! every use so that a stale, foreign or garbage pointer is an error code and
//! never undefined behaviour.
//!
//! The registry owns every live box, keyed by the box's address, which is
//! also the pointer C receives. The library never dereferences a pointer that
//! came from C: it looks the address up and uses the box it finds. A released
//! handle's address is removed from the map before its box is freed, so a
//! second release (or any use) of the same pointer finds nothing and fails
//! with [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`].
//!
//! A call that uses a handle *checks it out*: the box is moved out of the map
//! (its address stays as a key, marked busy) for the duration of the call
//! and put back when the call ends, even by a panic. A concurrent call on the
//! same handle therefore gets [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] instead
//! of aliasing a `&mut`, and a concurrent release cannot free the value in
//! use.
//!
//! One limit is inherent to handing out addresses: once a handle is
//! released, the allocator may give the same address to a later handle of
//! the same type, and a stale copy of the old pointer then names the new
//! handle. That is still memory-safe (the value is live and of the right
//! type), but it is the caller's logic error; the release functions take the
//! caller's pointer variable by address and set it to `NULL` to make that
//! mistake unlikely.
//!
//! # fork
//!
//! A host may `fork` while another of its threads is inside a call here. In
//! the child that thread does not exist, so a lock it held would never be
//! released, and the map it was changing may be half-changed. The lock is
//! therefore a word holding the *process id* of its holder, not a
//! `std::sync::Mutex`: a child that finds it held by another process knows
//! the holder was a thread of its parent, takes the lock over, and starts
//! from an empty map (the old one is leaked, never read: it may be
//! inconsistent). The parent's handles are then unknown in the child
//! ([`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`]), and everything else works; no
//! call ever waits for a thread that is gone. When the lock was free at the
//! fork, the child keeps the parent's handles. (One case is not caught: a
//! grandchild that got, by reuse, the process id of an ancestor that held
//! the lock while forking a child that never used the registry.)

use crate::status::*;
use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};

/// The handle map: address of each live box -> the box, or `None` while it
/// is checked out.
type LiveMap<T> = BTreeMap<usize, Option<Box<T>>>;

/// The value of [`HandleRegistry::holder`] when nobody holds the lock;
/// process ids are never 0.
const FREE: u32 = 0;

/// The live handles of one type.
pub(crate) struct HandleRegistry<T> {
    /// Process id of the process one of whose threads holds the lock on
    /// `live`, or [`FREE`].
    holder: AtomicU32,
    /// Invariant: every `Some(value)` is stored under the address of
    /// `*value`, and a checked-out box is stored under its address again
    /// when it comes back. Accessed only through a [`RegistryGuard`].
    live: UnsafeCell<LiveMap<T>>,
    /// Error detail for an address that is not a live handle.
    not_live: &'static str,
    /// Error detail for a handle that is checked out.
    in_use: &'static str,
}

// SAFETY: `live` is only reached through a `RegistryGuard`, and at most one
// guard exists at a time in a process: a guard is made only by the thread
// whose compare-and-swap set `holder` from FREE (or from another process's
// id, which no thread of this process can hold) to this process's id, and
// `holder` returns to FREE only when that guard drops. Boxes move between
// threads through the map, hence `T: Send` (as `Mutex` required before).
unsafe impl<T: Send> Sync for HandleRegistry<T> {}

/// Exclusive access to a registry's map; releases the lock on drop.
struct RegistryGuard<'a, T> {
    registry: &'a HandleRegistry<T>,
}

impl<T> Deref for RegistryGuard<'_, T> {
    type Target = LiveMap<T>;

    fn deref(&self) -> &LiveMap<T> {
        // SAFETY: this guard holds the lock (see the `Sync` impl).
        unsafe { &*self.registry.live.get() }
    }
}

impl<T> DerefMut for RegistryGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut LiveMap<T> {
        // SAFETY: this guard holds the lock, and `&mut self` makes this the
        // only reference made through it.
        unsafe { &mut *self.registry.live.get() }
    }
}

impl<T> Drop for RegistryGuard<'_, T> {
    fn drop(&mut self) {
        // Release: our changes to the map are visible to the next holder's
        // Acquire. Also runs when a panic unwinds through a call: each
        // update of the map is a single insert or remove, complete or not
        // started, so the map stays consistent.
        self.registry.holder.store(FREE, Ordering::Release);
    }
}

impl<T> HandleRegistry<T> {
    pub(crate) const fn new(not_live: &'static str, in_use: &'static str) -> Self {
        HandleRegistry {
            holder: AtomicU32::new(FREE),
            live: UnsafeCell::new(BTreeMap::new()),
            not_live,
            in_use,
        }
    }

    /// Takes the lock; see the module docs for what happens after `fork`.
    fn lock(&self) -> RegistryGuard<'_, T> {
        let me = std::process::id();
        let mut spins = 0u32;
        loop {
            // Acquire: the previous holder's changes to the map are visible.
            match self
                .holder
                .compare_exchange_weak(FREE, me, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return RegistryGuard { registry: self },
                Err(FREE) => {}
                Err(holder) if holder == me => {
                    // Another thread of this process; its call is short.
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                Err(parent) => {
                    // Held by a thread of another process: we are a child
                    // forked while a parent's thread was in a call. Acquire
                    // as above (nothing to see, but harmless).
                    if self
                        .holder
                        .compare_exchange(parent, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        // SAFETY: the lock is ours now; the value is moved
                        // out bitwise and never dropped or read, since it
                        // may be half-updated.
                        let abandoned = std::mem::take(unsafe { &mut *self.live.get() });
                        std::mem::forget(abandoned);
                        return RegistryGuard { registry: self };
                    }
                }
            }
        }
    }

    /// Takes ownership of `value` and returns the pointer that names it.
    pub(crate) fn insert(&self, value: Box<T>) -> *mut T {
        // A zero-sized value would share its address with others.
        const { assert!(size_of::<T>() > 0) };
        let pointer = std::ptr::from_ref::<T>(&value).cast_mut();
        let previous = self.lock().insert(pointer.addr(), Some(value));
        // Two live boxes cannot share an address.
        debug_assert!(previous.is_none());
        pointer
    }

    /// Borrows the value named by `handle` for one call.
    ///
    /// # Errors
    ///
    /// [`MEMORY_BUFFERS_STATUS_INVALID_HANDLE`] if no live handle has that
    /// address, [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] if it is checked out.
    pub(crate) fn check_out(&self, handle: *const T) -> Result<CheckedOut<'_, T>, Failure> {
        let address = handle.addr();
        let mut live = self.lock();
        match live.get_mut(&address) {
            None => Err(self.invalid()),
            Some(slot) => match slot.take() {
                None => Err(self.busy()),
                Some(value) => Ok(CheckedOut {
                    registry: self,
                    address,
                    value: Some(value),
                }),
            },
        }
    }

    /// Removes the handle and returns its value, which the caller drops.
    ///
    /// # Errors
    ///
    /// As for [`HandleRegistry::check_out`]; a busy handle stays live.
    pub(crate) fn remove(&self, handle: *const T) -> Result<Box<T>, Failure> {
        let address = handle.addr();
        let mut live = self.lock();
        match live.get(&address) {
            None => Err(self.invalid()),
            Some(None) => Err(self.busy()),
            Some(Some(_)) => match live.remove(&address) {
                Some(Some(value)) => Ok(value),
                // Unreachable: the entry was just seen holding a value under
                // the same lock.
                _ => Err(self.invalid()),
            },
        }
    }

    fn invalid(&self) -> Failure {
        Failure::new(MEMORY_BUFFERS_STATUS_INVALID_HANDLE, self.not_live)
    }

    fn busy(&self) -> Failure {
        Failure::new(MEMORY_BUFFERS_STATUS_HANDLE_BUSY, self.in_use)
    }

    #[cfg(test)]
    pub(crate) fn live_count(&self) -> usize {
        self.lock().len()
    }
}

/// A handle's value, borrowed for one call; returned to the registry on
/// drop.
pub(crate) struct CheckedOut<'a, T> {
    registry: &'a HandleRegistry<T>,
    address: usize,
    /// `Some` until dropped.
    value: Option<Box<T>>,
}

impl<T> Deref for CheckedOut<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // `value` is `Some` from construction until `drop`.
        self.value.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl<T> DerefMut for CheckedOut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl<T> Drop for CheckedOut<'_, T> {
    fn drop(&mut self) {
        let value = self.value.take();
        // The key stayed in the map while the value was out: removal of a
        // busy handle is refused, so the slot is still there to refill.
        if let Some(slot) = self.registry.lock().get_mut(&self.address) {
            *slot = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_handle_is_rejected_on_second_release_and_use() {
        let registry = HandleRegistry::new("not live", "in use");
        let handle = registry.insert(Box::new(7_u64));
        assert_eq!(*registry.check_out(handle).unwrap(), 7);
        assert_eq!(*registry.remove(handle).unwrap(), 7);
        assert_eq!(
            status_of(registry.remove(handle)),
            MEMORY_BUFFERS_STATUS_INVALID_HANDLE
        );
        assert_eq!(
            status_of(registry.check_out(handle)),
            MEMORY_BUFFERS_STATUS_INVALID_HANDLE
        );
        assert_eq!(registry.live_count(), 0);
    }

    #[test]
    fn a_checked_out_handle_is_busy_until_returned() {
        let registry = HandleRegistry::new("not live", "in use");
        let handle = registry.insert(Box::new(1_u32));
        {
            let mut value = registry.check_out(handle).unwrap();
            *value += 1;
            assert_eq!(
                status_of(registry.check_out(handle)),
                MEMORY_BUFFERS_STATUS_HANDLE_BUSY
            );
            assert_eq!(
                status_of(registry.remove(handle)),
                MEMORY_BUFFERS_STATUS_HANDLE_BUSY
            );
        }
        assert_eq!(*registry.remove(handle).unwrap(), 2);
    }

    #[test]
    #[cfg_attr(
        all(windows, target_pointer_width = "32"),
        ignore = "a panic cannot be caught in a 32-bit Windows program under Wine 8: it faults in the unwinder"
    )]
    fn a_handle_comes_back_after_a_panic_during_use() {
        let registry = HandleRegistry::new("not live", "in use");
        let handle = registry.insert(Box::new(5_i16));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _value = registry.check_out(handle).unwrap();
            panic!("deliberate test panic");
        }));
        assert!(result.is_err());
        assert_eq!(*registry.remove(handle).unwrap(), 5);
    }

    #[test]
    fn unknown_addresses_are_rejected_without_dereferencing() {
        let registry: HandleRegistry<u64> = HandleRegistry::new("not live", "in use");
        let live = registry.insert(Box::new(9));
        for bogus in [
            std::ptr::null(),
            std::ptr::dangling::<u64>(),
            usize::MAX as *const u64,
            live.wrapping_byte_add(1),
        ] {
            assert_eq!(
                status_of(registry.check_out(bogus)),
                MEMORY_BUFFERS_STATUS_INVALID_HANDLE
            );
            assert_eq!(
                status_of(registry.remove(bogus)),
                MEMORY_BUFFERS_STATUS_INVALID_HANDLE
            );
        }
        assert_eq!(registry.live_count(), 1);
    }

    /// A lock left held by a parent's thread at `fork`
    /// must not block the child. Simulated here by a holder id that is not
    /// this process's; `tests/fork.rs` does it with real threads and forks.
    #[test]
    fn a_lock_held_by_another_process_is_taken_over_with_a_fresh_map() {
        let registry = HandleRegistry::new("not live", "in use");
        let inherited = registry.insert(Box::new(11_u64));
        let parent = std::process::id().wrapping_add(1).max(1);
        registry.holder.store(parent, Ordering::Relaxed);
        assert_eq!(
            status_of(registry.check_out(inherited)),
            MEMORY_BUFFERS_STATUS_INVALID_HANDLE,
            "the possibly half-updated map was abandoned"
        );
        assert_eq!(registry.holder.load(Ordering::Relaxed), FREE);
        let fresh = registry.insert(Box::new(12_u64));
        assert_eq!(*registry.check_out(fresh).unwrap(), 12);
        assert_eq!(registry.live_count(), 1);
    }
}
