//! Buffer handles without a heap allocation or a lock: a buffer guard is one
//! word ([`LockedBuffer::into_raw`]), kept in a slot of a fixed table, and
//! the handle C receives is the slot's address.
//!
//! Getting and releasing a buffer is the most frequent pair of calls (once
//! per hook installed), so its handle costs one compare-and-swap to claim a
//! slot and one to free it, instead of a box, a map insertion and a lock.
//! Validation stays as strict as the general registry's (`registry.rs`): a
//! handle is accepted only if it is the address of a slot of this copy's
//! table that holds a guard; nothing C passes is ever dereferenced. A call
//! that uses a handle sets the slot's busy bit (the guard word's lowest bit,
//! always clear in a guard) for its duration, so a concurrent call on the
//! same handle gets [`MEMORY_BUFFERS_STATUS_HANDLE_BUSY`] and a concurrent
//! release cannot take the guard away while it is in use.
//!
//! After `fork` the child's table is a copy of the parent's. The guards in
//! it belong to the parent: used in the child, they append nothing
//! ([`MEMORY_BUFFERS_STATUS_PROCESS_FORKED`]), read as empty, and release
//! nothing. No call waits for anything, so a thread lost in the fork cannot
//! block the child; a slot that was busy at the fork stays busy there.
//!
//! The table lives in zero-initialised static memory, which the system backs
//! with pages only when they are touched: held buffers cost 8 bytes each.

use crate::MemoryBuffersLockedBuffer;
use crate::status::*;
use memory_buffers::LockedBuffer;
use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

/// Buffers one copy of the library can have handed out and not released.
const SLOTS: usize = 16384;

/// The busy bit of a slot (never set in a guard word).
const BUSY: u64 = 1;

/// The slots: 0 when free, a guard word when live, the word with [`BUSY`]
/// while a call uses it.
static TABLE: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

thread_local! {
    /// Where this thread last found or freed a slot: usually free again.
    // Where thread locals are not native (Android), clippy asks for the
    // `const` initialiser this already has.
    #[cfg_attr(
        target_os = "android",
        allow(clippy::missing_const_for_thread_local)
    )]
    static HINT: Cell<usize> = const { Cell::new(0) };
}

const NOT_LIVE: &str =
    "the buffer handle is not live (not from this copy of the library, or already released)";
const IN_USE: &str = "the buffer handle is in use by another call";

fn not_live() -> Failure {
    Failure::new(MEMORY_BUFFERS_STATUS_INVALID_HANDLE, NOT_LIVE)
}

fn busy() -> Failure {
    Failure::new(MEMORY_BUFFERS_STATUS_HANDLE_BUSY, IN_USE)
}

/// The slot a handle names, from its address alone.
fn slot_of(handle: *const MemoryBuffersLockedBuffer) -> Option<(usize, &'static AtomicU64)> {
    let start = TABLE.as_ptr() as usize;
    let offset = (handle as usize).checked_sub(start)?;
    let index = offset / size_of::<AtomicU64>();
    (offset % size_of::<AtomicU64>() == 0 && index < SLOTS).then(|| (index, &TABLE[index]))
}

/// Stores `guard` in a free slot and returns the slot's address as the
/// handle. With every slot taken, the guard is dropped (releasing the
/// buffer) and the call fails.
pub(crate) fn insert(guard: LockedBuffer) -> Result<*mut MemoryBuffersLockedBuffer, Failure> {
    let word = guard.into_raw();
    debug_assert!(word != 0 && word & BUSY == 0);
    let start = HINT.try_with(Cell::get).unwrap_or(0);
    for step in 0..SLOTS {
        let index = (start + step) % SLOTS;
        let slot = &TABLE[index];
        // Relaxed look first: do not write the cache line of a live slot.
        // Release on the claim: the take of the buffer, made by this thread,
        // happens-before any call that finds the guard with Acquire.
        if slot.load(Ordering::Relaxed) == 0
            && slot
                .compare_exchange(0, word, Ordering::Release, Ordering::Relaxed)
                .is_ok()
        {
            let _ = HINT.try_with(|hint| hint.set(index + 1));
            return Ok(slot as *const AtomicU64 as *mut MemoryBuffersLockedBuffer);
        }
    }
    // SAFETY: `word` came from `into_raw` just above and was stored nowhere.
    drop(unsafe { LockedBuffer::from_raw(word) });
    Err(Failure::new(
        MEMORY_BUFFERS_STATUS_NO_SPACE_IN_RANGE,
        "too many buffers are held at once (16384 per copy of the library)",
    ))
}

/// A guard lent out of its slot for the duration of one call.
pub(crate) struct CheckedOut {
    slot: &'static AtomicU64,
    word: u64,
    guard: ManuallyDrop<LockedBuffer>,
}

impl Deref for CheckedOut {
    type Target = LockedBuffer;

    fn deref(&self) -> &LockedBuffer {
        &self.guard
    }
}

impl CheckedOut {
    /// The guard, mutably (appends change only the buffer, not the word).
    pub(crate) fn guard_mut(&mut self) -> &mut LockedBuffer {
        &mut self.guard
    }
}

impl Drop for CheckedOut {
    fn drop(&mut self) {
        // Release: what the call did through the guard is visible to the
        // next call that checks the handle out with Acquire. The guard stays
        // in the slot (its copy here is forgotten).
        self.slot.store(self.word, Ordering::Release);
    }
}

/// Lends the guard of a live, idle handle to the caller.
pub(crate) fn check_out(handle: *const MemoryBuffersLockedBuffer) -> Result<CheckedOut, Failure> {
    let (_, slot) = slot_of(handle).ok_or_else(not_live)?;
    // Acquire: see `insert` and `CheckedOut::drop`.
    let word = slot.load(Ordering::Acquire);
    if word == 0 {
        return Err(not_live());
    }
    if word & BUSY != 0 {
        return Err(busy());
    }
    slot.compare_exchange(word, word | BUSY, Ordering::Acquire, Ordering::Relaxed)
        .map_err(|now| if now == 0 { not_live() } else { busy() })?;
    Ok(CheckedOut {
        slot,
        word,
        // SAFETY: the word came from `into_raw` (only `insert` stores guard
        // words), and the busy bit makes this the only guard made from it
        // until the slot is stored again.
        guard: ManuallyDrop::new(unsafe { LockedBuffer::from_raw(word) }),
    })
}

/// Takes the guard of a live, idle handle out of its slot for good.
pub(crate) fn remove(handle: *const MemoryBuffersLockedBuffer) -> Result<LockedBuffer, Failure> {
    let (index, slot) = slot_of(handle).ok_or_else(not_live)?;
    // Acquire: see `check_out`.
    let word = slot.load(Ordering::Acquire);
    if word == 0 {
        return Err(not_live());
    }
    if word & BUSY != 0 {
        return Err(busy());
    }
    slot.compare_exchange(word, 0, Ordering::Acquire, Ordering::Relaxed)
        .map_err(|now| if now == 0 { not_live() } else { busy() })?;
    let _ = HINT.try_with(|hint| hint.set(index));
    // SAFETY: as in `check_out`; the slot is free now, so this is the only
    // guard made from the word from here on.
    Ok(unsafe { LockedBuffer::from_raw(word) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use memory_buffers::{BufferSearchSettings, Buffers};

    #[test]
    fn a_handle_is_busy_while_checked_out_and_dead_once_removed() {
        let guard = Buffers::get_buffer(&BufferSearchSettings::default()).unwrap();
        let base = guard.base_address();
        let handle = insert(guard).unwrap();
        {
            let lent = check_out(handle).unwrap();
            assert_eq!(lent.base_address(), base);
            assert_eq!(
                status_of(check_out(handle)),
                MEMORY_BUFFERS_STATUS_HANDLE_BUSY
            );
            assert_eq!(status_of(remove(handle)), MEMORY_BUFFERS_STATUS_HANDLE_BUSY);
        }
        // Returned: usable again, then removed for good.
        assert_eq!(check_out(handle).unwrap().base_address(), base);
        let guard = remove(handle).unwrap();
        assert_eq!(guard.base_address(), base);
        assert_eq!(
            status_of(check_out(handle)),
            MEMORY_BUFFERS_STATUS_INVALID_HANDLE
        );
        assert_eq!(
            status_of(remove(handle)),
            MEMORY_BUFFERS_STATUS_INVALID_HANDLE
        );
        // Still held by `guard`: another get cannot have it.
        let other = Buffers::get_buffer(&BufferSearchSettings::default()).unwrap();
        assert_ne!(other.base_address(), base);
    }

    #[test]
    fn addresses_outside_the_table_or_between_slots_name_no_slot() {
        let start = TABLE.as_ptr() as usize;
        let at = |address: usize| slot_of(address as *const MemoryBuffersLockedBuffer);
        assert!(at(0).is_none());
        assert!(at(start - 8).is_none());
        assert!(at(start + 1).is_none());
        assert!(at(start + 8 * SLOTS).is_none());
        assert!(at(usize::MAX).is_none());
        assert_eq!(at(start + 8 * 3).map(|(index, _)| index), Some(3));
        assert_eq!(at(start).map(|(index, _)| index), Some(0));
    }
}
