//! Where appends through a guard must stop, when that is before the end of
//! its buffer.
//!
//! A guard may only append up to the `max_address` of the request that
//! produced it. Usually the range reaches past the buffer's end and the
//! buffer's size is the only limit; the guard then records nothing. When
//! the range ends inside the buffer, the guard sets a flag in its word and
//! the limit is kept here, keyed by the guard's word (the item's address
//! and the generation of the process state it was taken for, so that the
//! entries a forked child inherits never match its own guards), until the
//! guard is dropped.
//!
//! The guard stays one word: returning a two-word guard through memory made
//! every `get_buffer` on the hot path half again as slow (a store-forwarding
//! stall), while the limit is needed only by appends.
//!
//! An item is held by at most one guard of this library copy at a time, so
//! each key is in the table at most once, and only its holder touches its
//! entry. Entries are claimed with a compare-and-swap; the table is a
//! fixed array in zeroed static memory, with a locked list behind it for
//! the unlikely case of more limited guards held at once than it has slots.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Entries of the lock-free table.
const SLOTS: usize = 1024;

/// One entry: the guard's key (0 when free) and the limit.
struct Entry {
    item: AtomicU64,
    limit: AtomicUsize,
}

static TABLE: [Entry; SLOTS] = [const {
    Entry {
        item: AtomicU64::new(0),
        limit: AtomicUsize::new(0),
    }
}; SLOTS];

/// Entries that found the table full.
static OVERFLOW: Mutex<Vec<(u64, usize)>> = Mutex::new(Vec::new());

/// Where a key's search starts: items are 4-byte aligned and spread over
/// pages, so the bits above the alignment mix well enough.
fn first_slot(item: u64) -> usize {
    ((item >> 2).wrapping_mul(0x9e37_79b9) % SLOTS as u64) as usize
}

fn overflow() -> std::sync::MutexGuard<'static, Vec<(u64, usize)>> {
    // No code that can panic runs under the lock.
    OVERFLOW
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records `limit` for the guard whose key is `item` (never 0).
pub(crate) fn record(item: u64, limit: usize) {
    let start = first_slot(item);
    for step in 0..SLOTS {
        let entry = &TABLE[(start + step) % SLOTS];
        if entry.item.load(Ordering::Relaxed) == 0
            && entry
                .item
                .compare_exchange(0, item, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // Only the holder reads it, on this thread or after the guard
            // was handed to another thread (which synchronises).
            entry.limit.store(limit, Ordering::Relaxed);
            return;
        }
    }
    overflow().push((item, limit));
}

/// The limit recorded for `item`, if any.
pub(crate) fn limit_of(item: u64) -> Option<usize> {
    let start = first_slot(item);
    for step in 0..SLOTS {
        let entry = &TABLE[(start + step) % SLOTS];
        if entry.item.load(Ordering::Relaxed) == item {
            return Some(entry.limit.load(Ordering::Relaxed));
        }
    }
    overflow()
        .iter()
        .find(|(held, _)| *held == item)
        .map(|&(_, limit)| limit)
}

/// Forgets the limit of `item`, whose guard is being dropped.
pub(crate) fn forget(item: u64) {
    let start = first_slot(item);
    for step in 0..SLOTS {
        let entry = &TABLE[(start + step) % SLOTS];
        if entry.item.load(Ordering::Relaxed) == item {
            // Release: the next claim of the slot comes after our last read.
            entry.item.store(0, Ordering::Release);
            return;
        }
    }
    let mut overflow = overflow();
    if let Some(at) = overflow.iter().position(|(held, _)| *held == item) {
        overflow.swap_remove(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_found_until_forgotten() {
        // Addresses no real item has, so other tests' entries never clash.
        let items: Vec<u64> = (1..=40).map(|n| 0xdead_0000_0000 + 4 * n).collect();
        for (n, &item) in items.iter().enumerate() {
            record(item, n * 10);
        }
        for (n, &item) in items.iter().enumerate() {
            assert_eq!(limit_of(item), Some(n * 10));
        }
        for &item in &items[..20] {
            forget(item);
        }
        for (n, &item) in items.iter().enumerate() {
            let expected = (n >= 20).then_some(n * 10);
            assert_eq!(limit_of(item), expected);
        }
        for &item in &items[20..] {
            forget(item);
        }
        assert!(items.iter().all(|&item| limit_of(item).is_none()));
    }

    #[test]
    fn a_full_table_spills_into_the_overflow_list() {
        let items: Vec<u64> = (1..=SLOTS as u64 + 50)
            .map(|n| 0xbeef_0000_0000 + 4 * n)
            .collect();
        for &item in &items {
            record(item, item as usize + 1);
        }
        for &item in &items {
            assert_eq!(limit_of(item), Some(item as usize + 1));
        }
        for &item in &items {
            forget(item);
        }
        assert!(items.iter().all(|&item| limit_of(item).is_none()));
        assert!(overflow().is_empty());
    }
}
