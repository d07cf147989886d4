//! Loom models of the shared-buffer protocol.
//!
//! Built only with `RUSTFLAGS="--cfg loom"`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --test loom --release
//! ```
//!
//! The locator lives in memory shared with other libraries, so the crate
//! cannot swap its atomics for loom's; instead these models restate the
//! protocol step by step with loom types, keeping every atomic operation and
//! ordering of the real code. Each function names the one it mirrors; if
//! that code changes its orderings, change them here too.
//!
//! What is checked, over every interleaving loom explores:
//!
//! - an item has at most one holder at a time (the holder writes a
//!   model-only `holder` cell while it holds the item: two holders would be
//!   a data race, which loom reports);
//! - a counted item is fully written: a reader that sees the count sees the
//!   base address (a plain store in the real code, an `UnsafeCell` here, so
//!   a missing happens-before is a reported race) and the size;
//! - two registrations racing for the header lock are both counted;
//! - appended bytes stay inside their buffer, are written once, never
//!   overlap another append, and are visible to whoever reads them after an
//!   Acquire load of the position.
//! - a C interface buffer handle (a slot of `ffi/src/slots.rs`) is never
//!   lent to two calls at once, never used after its release, released
//!   exactly once, and its slot can be claimed again once free.

#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use loom::thread;

/// Items per locator in the model (203 in the real layout).
const ITEMS: usize = 3;
/// Bytes per buffer in the model.
const BUFFER_LEN: usize = 4;

/// `LocatorItem` (`src/locator/layout.rs`) plus the bytes of its buffer.
struct Item {
    /// `base_address`: a plain unaligned store in `ItemRef::write_new`, a
    /// plain unaligned load in `ItemRef::base_address`.
    base: UnsafeCell<usize>,
    /// `size`: an atomic, fixed once published.
    size: AtomicU32,
    /// `position`: bytes used; only grows.
    position: AtomicU32,
    /// `taken`: 0 free, 1 held.
    taken: AtomicU32,
    /// The buffer's bytes (the mapped pages in reality).
    bytes: [UnsafeCell<u8>; BUFFER_LEN],
    /// Model only: who holds the item. Written by a holder on take and
    /// checked on release; two simultaneous holders race on it.
    holder: UnsafeCell<u32>,
}

/// `LocatorHeader` with its items (`src/locator/layout.rs`).
struct Locator {
    /// `lock`: 0 free, 1 held.
    lock: AtomicU32,
    /// `item_count`.
    count: AtomicU8,
    items: [Item; ITEMS],
}

impl Locator {
    fn new() -> Locator {
        Locator {
            lock: AtomicU32::new(0),
            count: AtomicU8::new(0),
            items: std::array::from_fn(|_| Item {
                base: UnsafeCell::new(0),
                size: AtomicU32::new(0),
                position: AtomicU32::new(0),
                taken: AtomicU32::new(0),
                bytes: std::array::from_fn(|_| UnsafeCell::new(0)),
                holder: UnsafeCell::new(0),
            }),
        }
    }

    /// Mirrors `LocatorRef::item_count`: Acquire, clamped to the capacity.
    fn item_count(&self) -> usize {
        usize::from(self.count.load(Ordering::Acquire)).min(ITEMS)
    }
}

impl Item {
    /// Mirrors `ItemRef::base_address`.
    fn base_address(&self) -> usize {
        // SAFETY: a plain read, as in the real code; loom reports it if it
        // is not ordered after the write in `write_new`.
        self.base.with(|base| unsafe { *base })
    }

    /// Mirrors `ItemRef::write_new`.
    fn write_new(&self, base: usize, size: u32, position: u32) {
        // SAFETY: a plain write, as in the real code; the caller holds the
        // header lock and the slot is not counted yet.
        self.base.with_mut(|slot| unsafe { *slot = base });
        self.size.store(size, Ordering::Relaxed);
        self.position.store(position, Ordering::Relaxed);
        self.taken.store(1, Ordering::Relaxed);
    }
}

/// Mirrors `Fit::position_in` for alignment 1 and a range that covers the
/// whole buffer: the position at which `len` bytes fit, if they do.
fn position_in(size: u32, position: u32, len: u32) -> Option<u32> {
    if position > size || position.checked_add(len)? > size {
        return None;
    }
    Some(position)
}

/// Mirrors `free_bytes` in `src/locator/mod.rs`.
fn free_bytes(item: &Item) -> u32 {
    item.size
        .load(Ordering::Relaxed)
        .saturating_sub(item.position.load(Ordering::Relaxed))
}

/// What `try_take` read while taking an item: mirrors `Taken` in
/// `src/locator/mod.rs` (alignment 1, so `aligned == position`).
struct Taken {
    base: usize,
    size: u32,
    position: u32,
}

/// Mirrors `try_take` in `src/locator/mod.rs`, operation for operation.
fn try_take(item: &Item, len: u32) -> Option<Taken> {
    if item.taken.load(Ordering::Relaxed) != 0 {
        return None;
    }
    let base = item.base_address();
    let size = item.size.load(Ordering::Relaxed);
    let seen = item.position.load(Ordering::Relaxed);
    let aligned = position_in(size, seen, len)?;
    if item
        .taken
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    let position = item.position.load(Ordering::Relaxed);
    let refit = if position == seen {
        Some(aligned)
    } else {
        position_in(size, position, len)
    };
    match refit {
        Some(position) => Some(Taken {
            base,
            size,
            position,
        }),
        None => {
            item.taken.store(0, Ordering::Release);
            None
        }
    }
}

/// Mirrors `lock_header` in `src/locator/mod.rs` (the spin becomes a loom
/// yield so that loom schedules the holder).
fn lock_header(locator: &Locator) {
    while locator
        .lock
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        thread::yield_now();
    }
}

/// Mirrors `unlock_header` in `src/locator/mod.rs`.
fn unlock_header(locator: &Locator) {
    locator.lock.store(0, Ordering::Release);
}

/// Exclusive use of an item: mirrors `LockedBuffer` (`src/locked_buffer.rs`).
struct Held<'a> {
    item: &'a Item,
    base: usize,
    size: u32,
    position: u32,
    who: u32,
}

impl<'a> Held<'a> {
    /// Mirrors `Locator::locked` and `LockedBuffer::new`: the guard keeps
    /// the base and size read while taking (with alignment 1 the padding
    /// store of `locked` never happens).
    fn new(item: &'a Item, taken: Taken, who: u32) -> Held<'a> {
        assert!(taken.position <= taken.size);
        // SAFETY: model-only bookkeeping; a second holder would race here.
        item.holder.with_mut(|holder| unsafe { *holder = who });
        Held {
            item,
            base: taken.base,
            size: taken.size,
            position: taken.position,
            who,
        }
    }

    /// Mirrors `LockedBuffer::append_bytes` (`reserve`, the copy, `advance`).
    /// Returns the offset written to.
    fn append(&mut self, len: u32) -> Option<u32> {
        if len > self.size - self.position {
            return None;
        }
        let start = self.position;
        for offset in start..start + len {
            let cell = &self.item.bytes[offset as usize];
            // SAFETY: model of the copy into the buffer; loom reports a
            // write that races with another holder or an unordered reader.
            cell.with_mut(|byte| unsafe {
                assert_eq!(*byte, 0, "byte {offset} written twice");
                *byte = self.who as u8;
            });
        }
        self.position += len;
        self.item.position.store(self.position, Ordering::Release);
        Some(start)
    }

    /// Mirrors `Drop for LockedBuffer`.
    fn release(self) {
        // SAFETY: model-only bookkeeping, see `new`.
        self.item
            .holder
            .with(|holder| unsafe { assert_eq!(*holder, self.who) });
        self.item.taken.store(0, Ordering::Release);
    }
}

/// Mirrors the scan of `Locator::take_any` over one locator. The real scan
/// also consults the locator index's hints first; they only skip items that
/// cannot fit, so they are left out.
fn take_any(locator: &Locator, len: u32, who: u32) -> Option<Held<'_>> {
    let count = locator.item_count();
    for item in &locator.items[..count] {
        if free_bytes(item) < len {
            continue;
        }
        if let Some(taken) = try_take(item, len) {
            return Some(Held::new(item, taken, who));
        }
    }
    None
}

/// Mirrors the part of `Locator::register_new` that runs under the header
/// lock, for one locator: write the item already taken, publish the count,
/// unlock. `None` when the locator is full (the real code then links a new
/// locator, which these models do not reach).
fn register_new(locator: &Locator, base: usize, who: u32) -> Option<Held<'_>> {
    lock_header(locator);
    let count = locator.item_count();
    if count >= ITEMS {
        unlock_header(locator);
        return None;
    }
    let item = &locator.items[count];
    item.write_new(base, BUFFER_LEN as u32, 0);
    locator.count.store(count as u8 + 1, Ordering::Release);
    unlock_header(locator);
    let taken = Taken {
        base,
        size: BUFFER_LEN as u32,
        position: 0,
    };
    Some(Held::new(item, taken, who))
}

/// Mirrors `Locator::get_buffer`: reuse an item, else register one.
fn get_buffer(locator: &Locator, len: u32, who: u32) -> Held<'_> {
    take_any(locator, len, who)
        .or_else(|| register_new(locator, 0x1000 * who as usize, who))
        .expect("the model locator has room")
}

/// A locator holding one free, empty item registered before the threads
/// start.
fn locator_with_one_item() -> Arc<Locator> {
    let locator = Locator::new();
    let held = register_new(&locator, 0x10_000, 9).expect("room");
    held.release();
    Arc::new(locator)
}

/// Checks that the bytes of every item are the concatenation of whole
/// appends, each by one writer, and zero after the position.
fn check_bytes(locator: &Locator, appends: &[(usize, u32, u32, u32)]) {
    for (slot, item) in locator.items[..locator.item_count()].iter().enumerate() {
        let position = item.position.load(Ordering::Acquire);
        assert!(position as usize <= BUFFER_LEN);
        let mut expected = [0u8; BUFFER_LEN];
        for &(append_slot, offset, len, who) in appends {
            if append_slot == slot {
                for byte in &mut expected[offset as usize..(offset + len) as usize] {
                    assert_eq!(*byte, 0, "appends overlap in item {slot}");
                    *byte = who as u8;
                }
            }
        }
        for (index, cell) in item.bytes.iter().enumerate() {
            // SAFETY: every thread was joined.
            let byte = cell.with(|byte| unsafe { *byte });
            assert_eq!(byte, expected[index], "item {slot} byte {index}");
            assert_eq!(byte != 0, index < position as usize);
        }
    }
}

/// Runs `model` under loom and returns how many executions loom explored.
///
/// Every test asserts a minimum: loom 0.7 can silently stop after one
/// execution when a thread's first operation is an atomic load racing with
/// the main thread (tokio-rs/loom#392), which would turn a model into a
/// single ordinary run. The models keep the main thread out of the race
/// (it only spawns and joins) and the count proves the exploration happened.
fn explore(model: impl Fn() + Sync + Send + 'static) -> usize {
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    loom::model(move || {
        // Relaxed: a plain tally outside the model, read after it ends.
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    executions.load(std::sync::atomic::Ordering::Relaxed)
}

/// Fails unless loom explored more than a handful of executions.
fn assert_explored(executions: usize) {
    assert!(
        executions >= 8,
        "loom explored only {executions} executions"
    );
}

fn slot_of(locator: &Locator, item: &Item) -> usize {
    locator
        .items
        .iter()
        .position(|candidate| std::ptr::eq(candidate, item))
        .expect("an item of this locator")
}

/// Two threads race for one item wanting 2 and 3 of its 4 bytes. At most
/// one holds it at a time, and the re-check after the take stops the
/// second from writing past the end after the first appended.
#[test]
fn one_item_never_has_two_holders_and_the_fit_is_rechecked() {
    assert_explored(explore(|| {
        let locator = locator_with_one_item();
        let threads: Vec<_> = [(1u32, 2u32), (2, 3)]
            .into_iter()
            .map(|(who, len)| {
                let locator = Arc::clone(&locator);
                thread::spawn(move || {
                    let mut held = try_take(&locator.items[0], len)
                        .map(|taken| Held::new(&locator.items[0], taken, who))?;
                    let offset = held.append(len).expect("the re-checked fit holds");
                    held.release();
                    Some((0, offset, len, who))
                })
            })
            .collect();
        let appends: Vec<_> = threads
            .into_iter()
            .filter_map(|thread| thread.join().expect("no panic"))
            .collect();
        assert!(!appends.is_empty(), "the first taker always fits");
        check_bytes(&locator, &appends);
    }));
}

/// One thread registers a new item while another scans: the scanner never
/// sees a counted item whose base or size is not yet written.
#[test]
fn a_counted_item_is_always_fully_written() {
    assert_explored(explore(|| {
        let locator = Arc::new(Locator::new());
        let registrar = {
            let locator = Arc::clone(&locator);
            thread::spawn(move || {
                let mut held = register_new(&locator, 0x2000, 1).expect("room");
                held.append(1).expect("fits");
                held.release();
            })
        };
        let scanner = {
            let locator = Arc::clone(&locator);
            thread::spawn(move || {
                let count = locator.item_count();
                for item in &locator.items[..count] {
                    assert_eq!(item.base_address(), 0x2000);
                    assert_eq!(item.size.load(Ordering::Relaxed), BUFFER_LEN as u32);
                    if let Some(taken) = try_take(item, 2) {
                        let mut held = Held::new(item, taken, 2);
                        let offset = held.append(2).expect("fits");
                        held.release();
                        return Some((0, offset, 2, 2));
                    }
                }
                None
            })
        };
        registrar.join().expect("no panic");
        let mut appends = vec![(0, 0, 1, 1)];
        appends.extend(scanner.join().expect("no panic"));
        assert_eq!(locator.item_count(), 1);
        check_bytes(&locator, &appends);
    }));
}

/// Two registrations race for the header lock while a third thread reads
/// the count: both end up counted, in distinct slots, fully written.
#[test]
fn racing_registrations_are_both_counted() {
    assert_explored(explore(|| {
        let locator = Arc::new(Locator::new());
        let threads: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|who| {
                let locator = Arc::clone(&locator);
                thread::spawn(move || {
                    let held = register_new(&locator, 0x1000 * who as usize, who).expect("room");
                    let slot = slot_of(&locator, held.item);
                    held.release();
                    slot
                })
            })
            .collect();
        let scanner = {
            let locator = Arc::clone(&locator);
            thread::spawn(move || {
                for item in &locator.items[..locator.item_count()] {
                    let base = item.base_address();
                    assert!(base == 0x1000 || base == 0x2000, "base {base:#x}");
                }
            })
        };
        scanner.join().expect("no panic");
        let mut slots: Vec<usize> = threads
            .into_iter()
            .map(|thread| thread.join().expect("no panic"))
            .collect();
        slots.sort_unstable();
        assert_eq!(slots, [0, 1]);
        assert_eq!(locator.item_count(), 2);
        let mut bases: Vec<usize> = locator.items[..2].iter().map(Item::base_address).collect();
        bases.sort_unstable();
        assert_eq!(bases, [0x1000, 0x2000]);
    }));
}

/// A reader that loads the position with Acquire (as
/// `Locator::contains_written` does) sees every byte below it written,
/// while the holder keeps appending above it.
#[test]
fn bytes_below_an_acquired_position_are_visible() {
    assert_explored(explore(|| {
        let locator = locator_with_one_item();
        let writer = {
            let locator = Arc::clone(&locator);
            thread::spawn(move || {
                let item = &locator.items[0];
                let taken = try_take(item, 2).expect("nobody else takes it");
                let mut held = Held::new(item, taken, 1);
                held.append(2).expect("fits");
                held.append(2).expect("fits");
                held.release();
            })
        };
        let reader = {
            let locator = Arc::clone(&locator);
            thread::spawn(move || {
                let item = &locator.items[0];
                let written = item.position.load(Ordering::Acquire);
                assert!(written == 0 || written == 2 || written == 4);
                for cell in &item.bytes[..written as usize] {
                    // SAFETY: reading written bytes, as an overwrite check
                    // does; loom reports it if the write is not ordered
                    // before.
                    assert_eq!(cell.with(|byte| unsafe { *byte }), 1);
                }
            })
        };
        writer.join().expect("no panic");
        reader.join().expect("no panic");
    }));
}

/// The whole `get_buffer` path from two threads over one existing item:
/// each request of 3 bytes either reuses the item or registers a new one;
/// the appends land in disjoint ranges and nothing is lost.
#[test]
fn two_getters_append_without_overlap() {
    assert_explored(explore(|| {
        let locator = locator_with_one_item();
        let threads: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|who| {
                let locator = Arc::clone(&locator);
                thread::spawn(move || {
                    let mut held = get_buffer(&locator, 3, who);
                    let offset = held.append(3).expect("a fitting buffer was returned");
                    let slot = slot_of(&locator, held.item);
                    let base = held.base;
                    held.release();
                    (slot, offset, base)
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|thread| thread.join().expect("no panic"))
            .collect();
        let appends: Vec<_> = results
            .iter()
            .zip([1u32, 2])
            .map(|(&(slot, offset, _), who)| (slot, offset, 3, who))
            .collect();
        check_bytes(&locator, &appends);
        // Two 3-byte appends cannot share a 4-byte buffer: at least one new
        // item was registered, and each append is in its own item.
        assert_ne!(results[0].0, results[1].0);
        assert!(locator.item_count() >= 2);
        for &(slot, _, base) in &results {
            assert_eq!(locator.items[slot].base_address(), base);
        }
    }));
}

// --- C interface buffer handles (`ffi/src/slots.rs`) ------------------------

/// The busy bit of a slot (`slots::BUSY`).
const SLOT_BUSY: u64 = 1;

/// One slot of the handle table, with the guard it lends. Guard words are
/// modelled by the value 4 (non-zero, busy bit clear); `uses` is model-only
/// state that whoever holds a guard made from the slot's word writes, so
/// two guards alive at once from one word are a data race loom reports.
struct Slot {
    word: loom::sync::atomic::AtomicU64,
    uses: UnsafeCell<u32>,
}

/// Mirrors `slots::check_out` + `CheckedOut::drop`: lend the guard for one
/// call, or fail (not live, or busy).
fn use_handle(slot: &Slot) -> bool {
    let word = slot.word.load(Ordering::Acquire);
    if word == 0 || word & SLOT_BUSY != 0 {
        return false;
    }
    if slot
        .word
        .compare_exchange(word, word | SLOT_BUSY, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    // SAFETY (model): only the holder of the busy bit touches `uses`.
    slot.uses.with_mut(|uses| unsafe { *uses += 1 });
    slot.word.store(word, Ordering::Release);
    true
}

/// Mirrors `slots::remove`: take the guard out for good (and drop it).
fn release_handle(slot: &Slot) -> bool {
    let word = slot.word.load(Ordering::Acquire);
    if word == 0 || word & SLOT_BUSY != 0 {
        return false;
    }
    if slot
        .word
        .compare_exchange(word, 0, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    // The dropped guard releases its buffer: a last use of `uses`.
    // SAFETY (model): the slot is free now; this is the only guard.
    slot.uses.with_mut(|uses| unsafe { *uses += 1 });
    true
}

/// Mirrors `slots::insert` on one slot: claim it if free.
fn claim_slot(slot: &Slot) -> bool {
    slot.word.load(Ordering::Relaxed) == 0
        && slot
            .word
            .compare_exchange(0, 4, Ordering::Release, Ordering::Relaxed)
            .is_ok()
}

/// Two threads use a handle while a third releases it (a caller's bug the
/// interface must turn into error codes): the guard is never lent twice at
/// once nor used after its release, it is released exactly once, and a
/// freed slot can be claimed again.
#[test]
fn a_handle_is_never_used_by_two_calls_at_once_nor_after_its_release() {
    assert_explored(explore(|| {
        let slot = Arc::new(Slot {
            word: loom::sync::atomic::AtomicU64::new(0),
            uses: UnsafeCell::new(0),
        });
        // The claim that hands the handle out, made by the getter thread
        // before it shares the handle.
        let getter = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || {
                assert!(claim_slot(&slot));
                use_handle(&slot)
            })
        };
        let user = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || use_handle(&slot))
        };
        let releaser = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || release_handle(&slot))
        };
        let used = [getter.join().unwrap(), user.join().unwrap()];
        let released = releaser.join().unwrap();
        // SAFETY (model): every thread was joined.
        let uses = slot.uses.with(|uses| unsafe { *uses });
        let expected = used.iter().filter(|&&used| used).count() as u32 + u32::from(released);
        assert_eq!(uses, expected);
        let word = slot.word.load(Ordering::Relaxed);
        assert_eq!(
            word == 0,
            released,
            "a released slot is free, a live one is not"
        );
        if released {
            assert!(claim_slot(&slot), "a freed slot can be claimed again");
        } else {
            assert!(release_handle(&slot), "a live handle can be released");
        }
    }));
}
