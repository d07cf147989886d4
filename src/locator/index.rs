//! A process-local accelerator over the shared locator chain.
//!
//! The shared pages stay the truth; this index only remembers things that
//! cannot become false, so it can never send a request to the wrong buffer:
//!
//! - the address of the `i`-th locator of the chain (locators are never
//!   unmapped or unlinked), so a scan reads one contiguous array instead of
//!   chasing one page per locator;
//! - for each locator, an upper bound on the free bytes of its items, with
//!   the item count it was computed for. Positions only grow and sizes never
//!   change, so the bound stays an upper bound as long as the count is the
//!   same; a full locator's count never changes, so its bound is final. A
//!   request larger than the bound skips the locator without touching it.
//!
//! Other library copies in the process keep working on the shared pages
//! unchanged; anything they add shows up as a longer chain or a new count.

use super::layout::{LocatorRef, MAX_ITEMS};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Locators whose address and summary are cached; later ones are reached
/// by following `next_locator` (832,000 buffers in, so rarely).
const INDEXED_LOCATORS: usize = 4096;

pub(crate) struct LocatorIndex {
    head: LocatorRef,
    /// `chain[i]` is the address of the `i`-th locator, or 0 if not yet
    /// known. `chain[0]` is the head.
    chain: Box<[AtomicUsize]>,
    /// `(count + 1) << 32 | max_free` for each cached locator, 0 if unknown.
    summaries: Box<[AtomicU64]>,
}

impl LocatorIndex {
    pub(crate) fn new(head: LocatorRef) -> LocatorIndex {
        let chain: Box<[AtomicUsize]> =
            (0..INDEXED_LOCATORS).map(|_| AtomicUsize::new(0)).collect();
        // Relaxed: the index is shared only after construction, through the
        // `OnceLock` that publishes the locator.
        chain[0].store(head.address(), Ordering::Relaxed);
        LocatorIndex {
            head,
            chain,
            summaries: (0..INDEXED_LOCATORS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn head(&self) -> LocatorRef {
        self.head
    }

    fn locator_from(&self, address: usize) -> Option<LocatorRef> {
        // SAFETY: addresses come from the head (a live locator for the
        // process) or from `next_locator` fields, which registration sets
        // only after fully initialising a locator that is never unmapped.
        unsafe { LocatorRef::from_address(address) }
    }

    /// Calls `visit` with each locator of the chain and its position, in
    /// chain order, until it breaks.
    pub(crate) fn visit<R>(
        &self,
        mut visit: impl FnMut(usize, LocatorRef) -> ControlFlow<R>,
    ) -> Option<R> {
        let mut locator = self.head();
        let mut index = 0;
        loop {
            if let ControlFlow::Break(result) = visit(index, locator) {
                return Some(result);
            }
            let next_index = index + 1;
            let cached = self
                .chain
                .get(next_index)
                // Acquire pairs with the Release store below, so the
                // locator's contents are visible.
                .map_or(0, |slot| slot.load(Ordering::Acquire));
            let next = if cached != 0 {
                cached
            } else {
                // Acquire pairs with the Release store that linked the next
                // locator after initialising it.
                let next = locator.next_locator().load(Ordering::Acquire);
                if next != 0
                    && let Some(slot) = self.chain.get(next_index)
                {
                    // Release: readers of the slot see the locator the
                    // way we saw it. Racing stores write the same value.
                    slot.store(next, Ordering::Release);
                }
                next
            };
            locator = self.locator_from(next)?;
            index = next_index;
        }
    }

    /// The last locator of the chain and its position.
    pub(crate) fn last(&self) -> (usize, LocatorRef) {
        let mut last = (0, self.head());
        self.visit(|index, locator| {
            last = (index, locator);
            ControlFlow::<()>::Continue(())
        });
        last
    }

    /// Whether locator `index` may hold an item with `size` free bytes.
    #[inline]
    pub(crate) fn may_fit(&self, index: usize, locator: LocatorRef, size: usize) -> bool {
        let Some(slot) = self.summaries.get(index) else {
            return true;
        };
        // Relaxed: the summary is a self-contained hint (see module docs).
        let summary = slot.load(Ordering::Relaxed);
        if summary == 0 {
            return true;
        }
        let counted = (summary >> 32) as usize - 1;
        let max_free = summary as u32 as usize;
        if counted != MAX_ITEMS && counted != locator.item_count() {
            return true;
        }
        size <= max_free
    }

    /// Records that locator `index`, when it held `count` items, had no item
    /// with more than `max_free` free bytes.
    pub(crate) fn record(&self, index: usize, count: usize, max_free: u32) {
        if let Some(slot) = self.summaries.get(index) {
            let summary = ((count as u64 + 1) << 32) | u64::from(max_free);
            // Relaxed: a hint; any value stored is a valid upper bound.
            slot.store(summary, Ordering::Relaxed);
        }
    }
}
