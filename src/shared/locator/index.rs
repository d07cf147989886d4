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
//! - for each item, whether its free bytes have fallen below a few fixed
//!   thresholds (1, 16, 64, 256, 1024 bytes). Free space only shrinks, so
//!   once below, always below: a scan for 100 bytes skips every item known
//!   to have fewer than 64 free bytes with one bit test per 64 items.
//!
//! Other library copies in the process keep working on the shared pages
//! unchanged; anything they add shows up as a longer chain or a new count.

use crate::shared::layout::{LocatorRef, MAX_ITEMS};
use std::alloc::{Layout, alloc_zeroed};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Types for which all-zero bytes are a valid value.
///
/// # Safety
///
/// Implementors must be valid when every byte is zero.
unsafe trait Zeroable {}

// SAFETY: an atomic integer has the bit validity of its integer; 0 is valid.
unsafe impl Zeroable for AtomicU64 {}
// SAFETY: as above.
unsafe impl Zeroable for AtomicUsize {}

/// `len` zeroed values from `alloc_zeroed`, whose large blocks the kernel
/// backs with zero pages on first touch: an index sized for thousands of
/// locators costs memory only for the locators that exist. `None` when the
/// allocator refuses (a tight `RLIMIT_AS`, `vm.max_map_count` reached): the
/// library runs inside someone else's process and must not abort it.
fn zeroed_slice<T: Zeroable>(len: usize) -> Option<Box<[T]>> {
    let layout = Layout::array::<T>(len).ok()?;
    if layout.size() == 0 {
        return Some(Vec::new().into_boxed_slice());
    }
    // SAFETY: the layout has a non-zero size.
    let pointer = unsafe { alloc_zeroed(layout) }.cast::<T>();
    if pointer.is_null() {
        return None;
    }
    // SAFETY: the block was allocated with the layout of `[T; len]`, which
    // is what `Box<[T]>` frees it with, and zero bytes are a valid `T`.
    Some(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(pointer, len)) })
}

/// Locators whose address and summary are cached, at most; later ones are
/// reached by following `next_locator` (832,000 buffers in, so rarely).
/// When memory is short the index is made smaller, down to nothing: see
/// [`INDEX_CAPACITIES`].
const INDEXED_LOCATORS: usize = 4096;

/// Capacities tried in turn until the allocator grants one. The first costs
/// about 700 KiB of address space (mostly never touched); an index of 0
/// locators needs no memory and still works, only without shortcuts.
const INDEX_CAPACITIES: [usize; 4] = [INDEXED_LOCATORS, 256, 16, 0];

pub(crate) struct LocatorIndex {
    head: LocatorRef,
    /// One zeroed allocation holding, for `capacity` locators, the chain
    /// addresses, then the summaries, then the bitmaps (see the accessors).
    /// One block large enough to come from fresh zero pages: neither
    /// cleared nor resident until written, where three smaller ones came
    /// from the heap and were cleared page by page on the first request.
    tables: Box<[AtomicU64]>,
    /// Locators the tables cover.
    capacity: usize,
    /// The highest `i` with `chain[i]` known: where to start looking for
    /// the end of the chain.
    known_last: AtomicUsize,
    /// Leading locators that are full and whose items have no free byte
    /// left; final, since positions only grow. Scans start after them.
    exhausted: AtomicUsize,
}

/// Which bitmap a request of `size` bytes may skip by: the highest
/// threshold not above the size.
#[inline]
pub(crate) fn skip_class(size: usize) -> usize {
    THRESHOLDS
        .iter()
        .rposition(|&threshold| threshold as usize <= size)
        .unwrap_or(0)
}

/// Free bytes an item skipped by `class` may still have (at most).
#[inline]
pub(crate) fn skipped_free_bound(class: usize) -> u32 {
    THRESHOLDS[class] - 1
}

/// Free-byte thresholds of the per-item bitmaps, ascending.
const THRESHOLDS: [u32; 5] = [1, 16, 64, 256, 1024];

/// 64-bit words per bitmap: enough bits for every item of a locator.
pub(crate) const BITMAP_WORDS: usize = MAX_ITEMS.div_ceil(64);

/// Bitmap words per locator: one bitmap per threshold.
const WORDS_PER_LOCATOR: usize = THRESHOLDS.len() * BITMAP_WORDS;

/// The summary of a full locator none of whose items has a free byte.
const EXHAUSTED: u64 = (MAX_ITEMS as u64 + 1) << 32;

impl LocatorIndex {
    /// An index over the chain starting at `head`, as large as memory
    /// allows (see [`INDEX_CAPACITIES`]); never fails.
    pub(crate) fn new(head: LocatorRef) -> LocatorIndex {
        Self::with_capacities(head, &INDEX_CAPACITIES)
    }

    fn with_capacities(head: LocatorRef, capacities: &[usize]) -> LocatorIndex {
        let (tables, capacity) = capacities
            .iter()
            .find_map(|&capacity| {
                let words = capacity.checked_mul(2 + WORDS_PER_LOCATOR)?;
                Some((zeroed_slice::<AtomicU64>(words)?, capacity))
            })
            .unwrap_or_default();
        let index = LocatorIndex {
            head,
            tables,
            capacity,
            known_last: AtomicUsize::new(0),
            exhausted: AtomicUsize::new(0),
        };
        if let Some(first) = index.chain(0) {
            // Relaxed: the index is shared only after construction, through
            // the `OnceLock` that publishes the locator.
            first.store(head.address() as u64, Ordering::Relaxed);
        }
        index
    }

    /// Locators this index caches (0 when memory was too short for any).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The address of the `i`-th locator, or 0 if not yet known; slot 0 is
    /// the head.
    #[inline]
    fn chain(&self, index: usize) -> Option<&AtomicU64> {
        (index < self.capacity).then(|| &self.tables[index])
    }

    /// `(count + 1) << 32 | max_free` for cached locator `index`, 0 if
    /// unknown.
    #[inline]
    fn summary(&self, index: usize) -> Option<&AtomicU64> {
        (index < self.capacity).then(|| &self.tables[self.capacity + index])
    }

    /// For cached locator `index`, threshold `class` and word `word`: bit
    /// `b` is set once item `64 * word + b` was seen with fewer than
    /// `THRESHOLDS[class]` free bytes.
    #[inline]
    fn below(&self, index: usize, class: usize, word: usize) -> Option<&AtomicU64> {
        (index < self.capacity).then(|| {
            &self.tables
                [2 * self.capacity + (index * THRESHOLDS.len() + class) * BITMAP_WORDS + word]
        })
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
        visit: impl FnMut(usize, LocatorRef) -> ControlFlow<R>,
    ) -> Option<R> {
        self.visit_from(0, visit)
    }

    /// Like [`LocatorIndex::visit`], starting at position `start` if its
    /// address is cached (at the head otherwise).
    pub(crate) fn visit_from<R>(
        &self,
        start: usize,
        mut visit: impl FnMut(usize, LocatorRef) -> ControlFlow<R>,
    ) -> Option<R> {
        // Acquire pairs with the Release store that cached the address.
        let cached = self
            .chain(start)
            .map_or(0, |slot| slot.load(Ordering::Acquire) as usize);
        let (mut index, mut locator) = match self.locator_from(cached) {
            Some(locator) => (start, locator),
            None => (0, self.head()),
        };
        loop {
            if let ControlFlow::Break(result) = visit(index, locator) {
                return Some(result);
            }
            let next_index = index + 1;
            let cached = self
                .chain(next_index)
                // Acquire pairs with the Release store below, so the
                // locator's contents are visible.
                .map_or(0, |slot| slot.load(Ordering::Acquire) as usize);
            let next = if cached != 0 {
                cached
            } else {
                // Acquire pairs with the Release store that linked the next
                // locator after initialising it.
                let next = locator.next_locator().load(Ordering::Acquire);
                if next != 0
                    && let Some(slot) = self.chain(next_index)
                {
                    // Release: readers of the slot see the locator the
                    // way we saw it. Racing stores write the same value.
                    slot.store(next as u64, Ordering::Release);
                    // Relaxed: only a starting point for `last`.
                    self.known_last.fetch_max(next_index, Ordering::Relaxed);
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
        // Relaxed: any cached position is a valid place to start walking.
        self.visit_from(self.known_last.load(Ordering::Relaxed), |index, locator| {
            last = (index, locator);
            ControlFlow::<()>::Continue(())
        });
        last
    }

    /// Whether locator `index` may hold an item with `size` free bytes.
    #[inline]
    pub(crate) fn may_fit(&self, index: usize, locator: LocatorRef, size: usize) -> bool {
        let Some(slot) = self.summary(index) else {
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
        if let Some(slot) = self.summary(index) {
            let summary = ((count as u64 + 1) << 32) | u64::from(max_free);
            // Relaxed: a hint; any value stored is a valid upper bound.
            slot.store(summary, Ordering::Relaxed);
            if summary == EXHAUSTED {
                self.advance_exhausted();
            }
        }
    }

    /// Items of bitmap word `word` of locator `index` that cannot hold a
    /// request of skip class `class` (see [`skip_class`]).
    #[inline]
    pub(crate) fn too_small(&self, index: usize, class: usize, word: usize) -> u64 {
        // Relaxed: each bit is a final fact about one item; see module docs.
        self.below(index, class, word)
            .map_or(0, |bits| bits.load(Ordering::Relaxed))
    }

    /// Records that item `slot` of locator `index` had `free` free bytes.
    #[inline]
    pub(crate) fn note_free(&self, index: usize, slot: usize, free: u32) {
        if index >= self.capacity || free >= THRESHOLDS[THRESHOLDS.len() - 1] {
            return;
        }
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        for (class, &threshold) in THRESHOLDS.iter().enumerate().rev() {
            if free >= threshold {
                break;
            }
            let Some(bits) = self.below(index, class, word) else {
                break;
            };
            // Relaxed: a final fact; the load avoids writing a shared line
            // when the bit is already known.
            if bits.load(Ordering::Relaxed) & bit != 0 {
                break;
            }
            bits.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// Where scans for free space may start: every locator before it is
    /// exhausted for good.
    #[inline]
    pub(crate) fn first_with_space(&self) -> usize {
        // Relaxed: a hint; the value only grows and is always valid.
        self.exhausted.load(Ordering::Relaxed)
    }

    fn advance_exhausted(&self) {
        // Relaxed throughout: each step is justified by a final summary,
        // whichever thread wrote it.
        let mut first = self.exhausted.load(Ordering::Relaxed);
        while self
            .summary(first)
            .is_some_and(|slot| slot.load(Ordering::Relaxed) == EXHAUSTED)
        {
            match self.exhausted.compare_exchange(
                first,
                first + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => first += 1,
                Err(current) => first = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::layout::LOCATOR_SIZE;

    /// Two chained locators in heap pages that outlive the test.
    fn chain_of_two() -> (LocatorRef, LocatorRef) {
        let pages: &'static mut [u64] =
            Box::leak(vec![0u64; 2 * LOCATOR_SIZE / 8].into_boxed_slice());
        let first_address = pages.as_mut_ptr() as usize;
        let second_address = first_address + LOCATOR_SIZE;
        // SAFETY: two leaked, 8-aligned LOCATOR_SIZE regions used only here.
        let (first, second) = unsafe {
            (
                LocatorRef::from_address(first_address).unwrap(),
                LocatorRef::from_address(second_address).unwrap(),
            )
        };
        // SAFETY: nobody else sees the pages.
        unsafe {
            first.initialise(first_address);
            second.initialise(second_address);
        }
        first
            .next_locator()
            .store(second_address, Ordering::Release);
        (first, second)
    }

    #[test]
    fn the_chain_is_walked_and_its_end_found() {
        let (first, second) = chain_of_two();
        let index = LocatorIndex::new(first);
        let mut seen = Vec::new();
        index.visit(|position, locator| {
            seen.push((position, locator));
            ControlFlow::<()>::Continue(())
        });
        assert_eq!(seen, vec![(0, first), (1, second)]);
        assert_eq!(index.last(), (1, second));
        assert_eq!(
            index.visit_from(1, |position, _| ControlFlow::Break(position)),
            Some(1)
        );
    }

    #[test]
    fn summaries_skip_only_what_cannot_fit() {
        let (first, _) = chain_of_two();
        let index = LocatorIndex::new(first);
        first.raw_item_count().store(3, Ordering::Release);
        index.record(0, 3, 100);
        assert!(index.may_fit(0, first, 100));
        assert!(!index.may_fit(0, first, 101));
        // A new item invalidates the bound.
        first.raw_item_count().store(4, Ordering::Release);
        assert!(index.may_fit(0, first, 101));
        assert_eq!(index.first_with_space(), 0);
        // A full locator with no free byte is skipped for good.
        first
            .raw_item_count()
            .store(MAX_ITEMS as u8, Ordering::Release);
        index.record(0, MAX_ITEMS, 0);
        assert_eq!(index.first_with_space(), 1);
        assert!(!index.may_fit(0, first, 1));
    }

    #[test]
    fn items_below_a_threshold_are_skipped_by_requests_above_it() {
        let (first, _) = chain_of_two();
        let index = LocatorIndex::new(first);
        assert_eq!(
            (
                skip_class(1),
                skip_class(15),
                skip_class(16),
                skip_class(100)
            ),
            (0, 0, 1, 2)
        );
        assert_eq!(skip_class(1 << 20), 4);
        index.note_free(0, 70, 10);
        index.note_free(0, 3, 0);
        // 10 free bytes: too small for 16 and above, not for 1.
        assert_eq!(index.too_small(0, skip_class(16), 1), 1 << 6);
        assert_eq!(index.too_small(0, skip_class(1), 1), 0);
        assert_eq!(index.too_small(0, skip_class(1), 0), 1 << 3);
        assert_eq!(index.too_small(0, skip_class(2000), 0), 1 << 3);
        assert_eq!(skipped_free_bound(skip_class(100)), 63);
    }

    /// The index used to abort the process when its
    /// 640 KiB of bitmaps could not be allocated.
    #[test]
    fn an_index_the_allocator_refuses_falls_back_to_a_smaller_one_that_works() {
        let (first, second) = chain_of_two();
        // No allocator grants `isize::MAX` bytes; the next capacity is used.
        let index = LocatorIndex::with_capacities(first, &[usize::MAX / 64, 1, 0]);
        assert_eq!(index.capacity(), 1);
        let empty = LocatorIndex::with_capacities(first, &[usize::MAX / 64, 0]);
        assert_eq!(empty.capacity(), 0);
        for index in [&index, &empty] {
            assert_eq!(index.last(), (1, second));
            let mut seen = Vec::new();
            index.visit(|position, locator| {
                seen.push((position, locator));
                ControlFlow::<()>::Continue(())
            });
            assert_eq!(seen, vec![(0, first), (1, second)]);
            index.note_free(1, 5, 0);
            index.note_free(0, 5, 0);
            index.record(1, 0, 0);
            assert!(index.may_fit(1, second, 1));
            assert_eq!(index.too_small(1, 0, 0), 0);
        }
        assert_eq!(index.too_small(0, 0, 0), 1 << 5, "the one cached locator");
        assert_eq!(empty.too_small(0, 0, 0), 0);
    }
}
