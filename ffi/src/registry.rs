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

use crate::status::*;
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};

/// The live handles of one type.
pub(crate) struct HandleRegistry<T> {
    /// Address of each live box -> the box, or `None` while it is checked
    /// out. Invariant: every `Some(value)` is stored under the address of
    /// `*value`, and a checked-out box is stored under its address again
    /// when it comes back.
    live: Mutex<BTreeMap<usize, Option<Box<T>>>>,
    /// Error detail for an address that is not a live handle.
    not_live: &'static str,
    /// Error detail for a handle that is checked out.
    in_use: &'static str,
}

impl<T> HandleRegistry<T> {
    pub(crate) const fn new(not_live: &'static str, in_use: &'static str) -> Self {
        HandleRegistry {
            live: Mutex::new(BTreeMap::new()),
            not_live,
            in_use,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Option<Box<T>>>> {
        // Every update of the map under this lock is a single insert or
        // remove, complete or not started when a panic could occur, so a
        // poisoned map is still consistent.
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    fn status_of<T>(result: Result<T, Failure>) -> MemoryBuffersStatus {
        match result {
            Ok(_) => MEMORY_BUFFERS_STATUS_OK,
            Err(Failure::Interface { status, .. }) => status,
            Err(Failure::Library(error)) => error.kind().into(),
        }
    }

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
}
