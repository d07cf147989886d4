//! The locator: the process-wide registry of permanent shared buffers.
//!
//! This module implements the protocol of `FORMAT.md` on top of the raw
//! layout: scan the chain for a buffer with enough free bytes in range, take
//! it with a compare-and-swap, re-check the fit (someone may have appended
//! between the check and the take), and release it if it no longer fits;
//! when nothing fits, map new pages nearest to the request and publish them
//! as a new item under the header lock. Two local accelerators keep the hot
//! path flat: each thread first retries the few buffers it used last, and
//! [`index::LocatorIndex`] skips locators that cannot hold the request.

#![allow(unsafe_code)]

mod index;

use crate::error::{ErrorKind, Failure, PrivateLocatorReason};
use crate::os::{self, Protection};
use crate::shared::layout::{ItemRef, LOCATOR_SIZE, LocatorRef, MAX_ITEMS};
use crate::shared::locked_buffer::LockedBuffer;
use crate::shared::rendezvous;
use crate::space::address::{ValidRequest, align_up};
use crate::space::address_space::SharedAddressSpace;
use crate::space::placement::PlacementRequest;
use index::LocatorIndex;
use std::cell::Cell;
use std::ops::{ControlFlow, Range};
use std::sync::atomic::{AtomicU8, Ordering};

/// Which locator the library uses, and why.
///
/// ```
/// use memory_buffers::{Buffers, LocatorKind, PrivateLocatorReason};
///
/// match Buffers::locator_kind()? {
///     LocatorKind::Shared => println!("one registry with every buffers library here"),
///     LocatorKind::Private(PrivateLocatorReason::DirectoryNotTrusted) => {
///         println!("/tmp/.reloaded is someone else's: buffers are private")
///     }
///     LocatorKind::Private(reason) => println!("private locator: {reason:?}"),
///     _ => println!("a kind added after this code was written"),
/// }
/// # Ok::<(), memory_buffers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocatorKind {
    /// The process-wide locator shared through the rendezvous file with
    /// every other buffers library in the process.
    Shared,
    /// A locator private to this copy of the library; buffers still work,
    /// but other libraries in the process do not see them.
    Private(PrivateLocatorReason),
}

/// The locator of one process, with its local accelerators.
pub(crate) struct Locator {
    kind: LocatorKind,
    /// Where this process stands with the sweep of stale rendezvous files
    /// it owes after publishing one (see [`SweepState`]).
    sweep: AtomicU8,
    index: LocatorIndex,
    /// Buffers based in this range are never handed out: ready-made
    /// buffers another library mapped without execute rights.
    unusable: Range<usize>,
}

/// Steps of the sweep of stale rendezvous files that a process owes once
/// it has published one (`rendezvous::owe_sweep`). It is not paid by the
/// request that creates the locator (the first `get_buffer` of a process,
/// whose time users notice), but by the next request that reaches the
/// locator's slow path, or at exit, whichever comes first.
struct SweepState;

impl SweepState {
    /// Nothing owed (found another instance's locator, or swept already).
    const NONE: u8 = 0;
    /// Owed; the request that created the locator is still running.
    const AFTER_THIS_REQUEST: u8 = 1;
    /// Owed; the next request pays it.
    const DUE: u8 = 2;
}

/// Items a thread remembers having used, most recent first.
const RECENT_ITEMS: usize = 8;

/// One cell per word, so the hot path reads the two words it needs instead
/// of copying the whole record out of thread-local storage.
struct RecentItems {
    /// Address of the `Locator` the items belong to; 0 if none.
    locator: Cell<usize>,
    items: [Cell<usize>; RECENT_ITEMS],
}

thread_local! {
    // Where thread locals are not native (Android), clippy asks for the
    // `const` initialiser this already has.
    #[cfg_attr(
        target_os = "android",
        allow(clippy::missing_const_for_thread_local)
    )]
    static RECENT: RecentItems = const {
        RecentItems {
            locator: Cell::new(0),
            items: [const { Cell::new(0) }; RECENT_ITEMS],
        }
    };
}

/// What a request needs from a buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fit {
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) size: usize,
    pub(crate) alignment: usize,
}

impl Fit {
    /// The aligned position at which the request fits in a buffer with this
    /// base, size and position, if it does.
    #[inline]
    fn position_in(&self, base: usize, size: u32, position: u32) -> Option<u32> {
        if position > size {
            return None;
        }
        let start = base.checked_add(position as usize)?;
        let aligned = align_up(start, self.alignment)?;
        let end = aligned.checked_add(self.size)?;
        if end > base.checked_add(size as usize)? || aligned < self.min || end - 1 > self.max {
            return None;
        }
        Some((aligned - base) as u32)
    }
}

/// Free bytes of an item, as far as a racy read can tell.
#[inline]
fn free_bytes(item: ItemRef) -> u32 {
    // Relaxed: a hint; the fit is re-checked after taking the item.
    item.size()
        .load(Ordering::Relaxed)
        .saturating_sub(item.position().load(Ordering::Relaxed))
}

/// An item this thread has just taken, with what it read while taking it.
#[derive(Clone, Copy)]
struct Taken {
    item: ItemRef,
    /// The position after the take.
    position: u32,
    /// Where the request starts: `position` rounded up to the alignment.
    aligned: u32,
}

/// Takes `item` if the request fits in it.
#[inline]
fn try_take(item: ItemRef, fit: &Fit) -> Option<Taken> {
    // Relaxed: a hint to avoid writing the cache line of a busy item.
    if item.taken().load(Ordering::Relaxed) != 0 {
        return None;
    }
    let base = item.base_address();
    // Relaxed: the size is fixed once the item is published, and publication
    // was observed through an Acquire load of the item count.
    let size = item.size().load(Ordering::Relaxed);
    // Relaxed pre-check: avoids taking (and writing) items that cannot fit.
    let seen = item.position().load(Ordering::Relaxed);
    let aligned = fit.position_in(base, size, seen)?;
    // Acquire: pairs with the Release store of 0 by the previous holder, so
    // the position it last stored is visible to the re-check below.
    if item
        .taken()
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    // Re-check: someone may have appended between the check and the take.
    let position = item.position().load(Ordering::Relaxed);
    let refit = if position == seen {
        Some(aligned)
    } else {
        fit.position_in(base, size, position)
    };
    match refit {
        Some(aligned) => Some(Taken {
            item,
            position,
            aligned,
        }),
        None => {
            // Release: hands the item back with everything we read ordered
            // before the next holder's take.
            item.taken().store(0, Ordering::Release);
            None
        }
    }
}

/// Spins until the header lock of `locator` is ours.
fn lock_header(locator: LocatorRef) {
    let mut spins = 0u32;
    // Acquire: everything the previous holder wrote under the lock (items,
    // counts, links) is visible once we hold it.
    while locator
        .lock()
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            // The holder may be mapping pages; let it run.
            std::thread::yield_now();
        }
    }
}

fn unlock_header(locator: LocatorRef) {
    // Release: publishes what we wrote under the lock to the next holder.
    locator.lock().store(0, Ordering::Release);
}

/// Maps and initialises a locator page that only this process knows.
fn map_private_locator() -> Result<LocatorRef, ErrorKind> {
    let len = LOCATOR_SIZE.max(os::allocation_granularity());
    let mapping = os::map_anywhere(len, Protection::ReadWrite)
        .map_err(|errno| os::error_kind(os::MAP_CALL, errno))?;
    let address = mapping.address();
    // SAFETY: a fresh, page-aligned read/write mapping of at least
    // LOCATOR_SIZE bytes that is never unmapped.
    let locator = unsafe { LocatorRef::from_address(address) }.ok_or(ErrorKind::Os {
        call: os::MAP_CALL,
        errno: os::INVALID_ARGUMENT,
    })?;
    // SAFETY: nobody else knows the page yet.
    unsafe { locator.initialise(address) };
    mapping.leak();
    Ok(locator)
}

impl Locator {
    /// Finds or creates the shared locator of the running process, falling
    /// back to a private one when the shared one cannot be trusted or made.
    pub(crate) fn open() -> Result<Locator, ErrorKind> {
        let (shared, sweep) = match rendezvous::meet(os::process_id()) {
            Ok(meeting) => {
                let sweep = if meeting.owes_sweep {
                    SweepState::AFTER_THIS_REQUEST
                } else {
                    SweepState::NONE
                };
                (Ok((meeting.head, meeting.unusable)), sweep)
            }
            Err(reason) => (Err(reason), SweepState::NONE),
        };
        let (head, unusable, kind) = match shared {
            Ok((head, unusable)) => (head, unusable, LocatorKind::Shared),
            Err(reason) => (map_private_locator()?, 0..0, LocatorKind::Private(reason)),
        };
        Ok(Locator {
            kind,
            sweep: AtomicU8::new(sweep),
            index: LocatorIndex::new(head),
            unusable,
        })
    }

    /// Which locator this is. Pays an owed sweep: callers asking this are
    /// past their first request.
    pub(crate) fn kind(&self) -> LocatorKind {
        self.pay_owed_sweep();
        self.kind
    }

    /// Address of the first locator of the chain. Pays an owed sweep, as
    /// [`Locator::kind`] does.
    pub(crate) fn head_address(&self) -> usize {
        self.pay_owed_sweep();
        self.index.head().address()
    }

    /// Runs the sweep of stale rendezvous files if this process owes it.
    fn pay_owed_sweep(&self) {
        // Relaxed: a flag for a best-effort task whose data the rendezvous
        // module guards with its own lock.
        if self.sweep.load(Ordering::Relaxed) != SweepState::NONE
            && self.sweep.swap(SweepState::NONE, Ordering::Relaxed) != SweepState::NONE
        {
            rendezvous::pay_owed_sweep();
        }
    }

    /// Called at the end of each slow-path request: the one that created
    /// the locator leaves an owed sweep to the next.
    #[inline]
    fn after_slow_request(&self) {
        // Relaxed: as in `pay_owed_sweep`.
        match self.sweep.load(Ordering::Relaxed) {
            SweepState::NONE => {}
            SweepState::AFTER_THIS_REQUEST => {
                let _ = self.sweep.compare_exchange(
                    SweepState::AFTER_THIS_REQUEST,
                    SweepState::DUE,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            _ => self.pay_owed_sweep(),
        }
    }

    fn key(&self) -> usize {
        self as *const Locator as usize
    }

    /// Gets exclusive use of a buffer that fits `fit`, creating one if
    /// needed. The caller has tried [`Locator::take_recent`] already.
    pub(crate) fn get_buffer(
        &'static self,
        generation: u16,
        space: &SharedAddressSpace,
        request: &ValidRequest,
        fit: Fit,
    ) -> Result<LockedBuffer, Failure> {
        let buffer = match self.take_any(generation, &fit) {
            Some(buffer) => Ok(buffer),
            None => self.register_new(generation, space, request, &fit),
        };
        self.after_slow_request();
        buffer
    }

    #[inline]
    fn locked(&self, generation: u16, taken: Taken, fit: &Fit) -> LockedBuffer {
        if taken.aligned != taken.position {
            // Alignment padding counts as used. Relaxed: ordered before the
            // eventual release of the item by its Release store.
            taken
                .item
                .position()
                .store(taken.aligned, Ordering::Relaxed);
        }
        LockedBuffer::new(taken.item, generation, fit.max)
    }

    /// Takes one of the buffers this thread used last, if one fits: the
    /// common case of many requests near the same place costs one
    /// compare-and-swap, whatever the number of buffers.
    #[inline]
    pub(crate) fn take_recent(&'static self, generation: u16, fit: &Fit) -> Option<LockedBuffer> {
        let (locator, first) = RECENT
            .try_with(|recent| (recent.locator.get(), recent.items[0].get()))
            .ok()?;
        if locator != self.key() {
            return None;
        }
        // The most recent item inline; the others out of line.
        // SAFETY: recorded by `remember` from an item of this locator, whose
        // pages are never unmapped.
        let item = unsafe { ItemRef::from_address(first) }?;
        match try_take(item, fit) {
            Some(taken) => Some(self.locked(generation, taken, fit)),
            None => self.take_older(generation, fit),
        }
    }

    #[inline(never)]
    fn take_older(&'static self, generation: u16, fit: &Fit) -> Option<LockedBuffer> {
        let items: [usize; RECENT_ITEMS] = RECENT
            .try_with(|recent| std::array::from_fn(|index| recent.items[index].get()))
            .ok()?;
        for address in &items[1..] {
            // SAFETY: as in `take_recent`.
            let item = unsafe { ItemRef::from_address(*address) }?;
            if let Some(taken) = try_take(item, fit) {
                return Some(self.locked(generation, taken, fit));
            }
        }
        None
    }

    fn remember(&self, item: ItemRef) {
        let _ = RECENT.try_with(|recent| {
            if recent.locator.get() != self.key() {
                recent.locator.set(self.key());
                recent.items.iter().for_each(|cell| cell.set(0));
            }
            let address = item.address();
            let keep = recent
                .items
                .iter()
                .position(|known| known.get() == address)
                .unwrap_or(RECENT_ITEMS - 1);
            for index in (1..=keep).rev() {
                recent.items[index].set(recent.items[index - 1].get());
            }
            recent.items[0].set(address);
        });
    }

    fn take_any(&'static self, generation: u16, fit: &Fit) -> Option<LockedBuffer> {
        let class = index::skip_class(fit.size);
        let taken = self
            .index
            .visit_from(self.index.first_with_space(), |position, locator| {
                if !self.index.may_fit(position, locator, fit.size) {
                    return ControlFlow::Continue(());
                }
                let count = locator.item_count();
                // Items skipped by the bitmaps have fewer free bytes than this.
                let mut max_free = index::skipped_free_bound(class);
                for word in 0..index::BITMAP_WORDS {
                    let first = word * 64;
                    if first >= count {
                        break;
                    }
                    let in_use = match count - first {
                        64.. => u64::MAX,
                        used => (1u64 << used) - 1,
                    };
                    let mut candidates = in_use & !self.index.too_small(position, class, word);
                    while candidates != 0 {
                        let slot = first + candidates.trailing_zeros() as usize;
                        candidates &= candidates - 1;
                        let item = locator.item(slot);
                        let free = free_bytes(item);
                        self.index.note_free(position, slot, free);
                        max_free = max_free.max(free);
                        if free as usize >= fit.size
                            && LockedBuffer::can_hold(item.address())
                            && !self.unusable.contains(&item.base_address())
                            && let Some(taken) = try_take(item, fit)
                        {
                            return ControlFlow::Break(taken);
                        }
                    }
                }
                self.index.record(position, count, max_free);
                ControlFlow::Continue(())
            })?;
        self.remember(taken.item);
        Some(self.locked(generation, taken, fit))
    }

    fn register_new(
        &'static self,
        generation: u16,
        space: &SharedAddressSpace,
        request: &ValidRequest,
        fit: &Fit,
    ) -> Result<LockedBuffer, Failure> {
        let block_len = request.rounded_size;
        let size = u32::try_from(block_len).map_err(|_| ErrorKind::NoSpaceInRange)?;
        let placement = PlacementRequest {
            min: fit.min,
            max: fit.max,
            block_len,
            range_len: fit.size,
            granularity: os::allocation_granularity(),
            lowest_address: os::lowest_mappable_address(),
            highest_address: crate::settings::highest_user_address(),
            target: request.target,
        };
        // Pages are mapped before the header lock is taken so that other
        // registrations never wait on a system call; the outcome is the same
        // as mapping under the lock.
        let mapping = space
            .lock()
            .map_nearest(placement, crate::settings::DEFAULT_RETRY_COUNT)?;
        let base = mapping.address();
        let (_, mut locator) = self.index.last();
        loop {
            // Guards hold items by a 48-bit address (all user space on the
            // supported systems); a locator beyond cannot lend its items.
            if !LockedBuffer::can_hold(locator.address() + LOCATOR_SIZE) {
                break;
            }
            lock_header(locator);
            // Acquire: see a locator linked by another library copy.
            let next = locator.next_locator().load(Ordering::Acquire);
            if next != 0 {
                unlock_header(locator);
                // SAFETY: a non-zero next pointer is written only after the
                // next locator is initialised, and locators are never unmapped.
                match unsafe { LocatorRef::from_address(next) } {
                    Some(next) => {
                        locator = next;
                        continue;
                    }
                    None => break,
                }
            }
            let count = locator.item_count();
            if count < MAX_ITEMS {
                let item = locator.item(count);
                // SAFETY: we hold the header lock and slot `count` is not yet
                // counted, so no one else reads or writes it.
                unsafe { item.write_new(base, size, 0) };
                // Release: publishes the item's fields to every Acquire load
                // of the count.
                locator
                    .raw_item_count()
                    .store(count as u8 + 1, Ordering::Release);
                unlock_header(locator);
                // Registered buffers are permanent.
                mapping.leak();
                self.remember(item);
                return Ok(LockedBuffer::new(item, generation, fit.max));
            }
            match map_private_locator() {
                Ok(next) => {
                    // Release: the next locator's initialised header is
                    // visible to whoever follows the link.
                    locator
                        .next_locator()
                        .store(next.address(), Ordering::Release);
                    unlock_header(locator);
                    locator = next;
                }
                Err(kind) => {
                    unlock_header(locator);
                    space.lock().unmap(mapping);
                    return Err(kind.into());
                }
            }
        }
        // A corrupt next pointer, or a locator no guard can address: give
        // the pages back rather than register them where no one can find
        // them.
        space.lock().unmap(mapping);
        Err(ErrorKind::NoSpaceInRange.into())
    }

    /// Whether `[start, start + len)` lies inside the written part of one
    /// registered buffer.
    pub(crate) fn contains_written(&self, start: usize, len: usize) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        self.index
            .visit(|_, locator| {
                for slot in 0..locator.item_count() {
                    let item = locator.item(slot);
                    let base = item.base_address();
                    // Acquire: pairs with the Release position store of the
                    // appender, so the written bytes are ours to overwrite.
                    let written = item
                        .position()
                        .load(Ordering::Acquire)
                        .min(item.size().load(Ordering::Relaxed));
                    if start >= base
                        && base
                            .checked_add(written as usize)
                            .is_some_and(|written_end| end <= written_end)
                    {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            })
            .is_some()
    }
}
