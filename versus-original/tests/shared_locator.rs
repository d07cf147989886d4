//! `memory-buffers` and the original crate (reloaded-memory-buffers 4.1.0)
//! linked into one process share one locator, whichever starts first, and
//! each respects the other's locks: a buffer one of them holds is never
//! handed out by the other, and bytes one appends are never overwritten by
//! the other.
//!
//! A `harness = false` test: each scenario runs in a fresh child process
//! (the locator is per process, and who creates it is the point).

use memory_buffers::{BufferSearchSettings, Buffers, LocatorKind};
use reloaded_memory_buffers::buffers::Buffers as OriginalBuffers;
use reloaded_memory_buffers::structs::SafeLocatorItem;
use reloaded_memory_buffers::structs::params::BufferSearchSettings as OriginalSettings;

#[path = "../../tests/support/mod.rs"]
mod support;

const GIB: usize = 1 << 30;

use support::{Outcome, Scenario, check};

fn target() -> usize {
    target as *const () as usize
}

fn original_get(size: u32) -> Result<SafeLocatorItem, String> {
    OriginalBuffers::get_buffer(&OriginalSettings::from_proximity(
        GIB,
        target(),
        size as usize,
    ))
    .map_err(|error| format!("the original's get_buffer: {error:?}"))
}

/// The base address of the original's held item.
fn original_base(item: &SafeLocatorItem) -> usize {
    // SAFETY: the item points into the live locator while it is held.
    unsafe { (*item.item.get()).base_address.value }
}

/// Where the original's held item sits (the item, not its buffer).
fn original_item_address(item: &SafeLocatorItem) -> usize {
    item.item.get() as usize
}

fn ours(size: usize) -> BufferSearchSettings {
    BufferSearchSettings::from_proximity(GIB, target(), size)
}

/// Appends `pattern` through the original and returns where it went.
fn original_append(item: &SafeLocatorItem, pattern: &[u8]) -> usize {
    // SAFETY: the item is held and was found with room for the pattern.
    unsafe { item.append_bytes(pattern) }
}

fn intact(address: usize, pattern: &[u8]) -> bool {
    // SAFETY: appended bytes stay mapped for the life of the process.
    unsafe { std::slice::from_raw_parts(address as *const u8, pattern.len()) == pattern }
}

/// The two libraries hold buffers at the same time and append; neither
/// hands out what the other holds, and all bytes stay.
fn hold_and_append_in_turns(head: usize) -> Outcome {
    let theirs = original_get(64)?;
    let their_base = original_base(&theirs);
    let their_bytes = original_append(&theirs, b"written by the original");
    let mut held = Vec::new();
    let mut our_writes = Vec::new();
    for round in 0..8u8 {
        let mut buffer =
            Buffers::get_buffer(&ours(64)).map_err(|error| format!("ours: {error}"))?;
        check!(
            buffer.base_address() != their_base,
            "this crate handed out the buffer the original holds"
        );
        let pattern = [round; 24];
        let address = buffer
            .append_bytes(&pattern)
            .map_err(|error| format!("append: {error}"))?;
        our_writes.push((address, pattern));
        held.push(buffer);
    }
    // Anywhere in the address space, so the ready-made buffers are in range.
    #[cfg(windows)]
    for _ in 0..5 {
        let anywhere = BufferSearchSettings::new(0, memory_buffers::highest_user_address(), 64);
        let buffer = Buffers::get_buffer(&anywhere).map_err(|error| format!("ours: {error}"))?;
        check!(
            support::windows::query(buffer.base_address()).Protect
                == windows_sys::Win32::System::Memory::PAGE_EXECUTE_READWRITE,
            "this crate handed out a buffer at {:#x} that cannot run code",
            buffer.base_address()
        );
        held.push(buffer);
    }
    for _ in 0..8 {
        let other = original_get(64)?;
        let base = original_base(&other);
        check!(
            held.iter().all(|buffer| buffer.base_address() != base),
            "the original handed out a buffer this crate holds"
        );
        // The original fills the ready-made buffers of a section it creates
        // with one base address, `this address + 4096`, for all four items
        // (its `initialize_remaining_space_as_buffers` never advances it),
        // so two of its own items there share a buffer. Its bug, seen where
        // the section is in range (a 32-bit program); this crate writes
        // distinct bases and never hands out those buffers.
        let aliased_by_the_original = cfg!(windows) && (head + 4096..head + 65536).contains(&base);
        check!(
            base != their_base || aliased_by_the_original,
            "the original handed out its own held buffer: item {:#x} (held: {:#x}), base {base:#x}",
            original_item_address(&other),
            original_item_address(&theirs)
        );
    }
    drop(held);
    drop(theirs);
    // Released by both: now either may take any of them, and appends
    // continue after what is there.
    for _ in 0..4 {
        let item = original_get(64)?;
        original_append(&item, &[0xee; 16]);
        let mut buffer =
            Buffers::get_buffer(&ours(64)).map_err(|error| format!("ours: {error}"))?;
        buffer
            .append_bytes(&[0xdd; 16])
            .map_err(|error| format!("append: {error}"))?;
    }
    check!(
        intact(their_bytes, b"written by the original"),
        "the original's bytes were overwritten"
    );
    for (address, pattern) in our_writes {
        check!(
            intact(address, &pattern),
            "this crate's bytes were overwritten"
        );
    }
    Ok(())
}

fn the_original_creates_the_locator_and_this_crate_finds_it() -> Outcome {
    let first = original_get(64)?;
    drop(first);
    let head = support::this_address_through_a_second_view();
    check!(
        Buffers::locator_kind() == Ok(LocatorKind::Shared),
        "this crate did not accept the original's locator: {:?}",
        Buffers::locator_kind()
    );
    let ours_head = Buffers::locator_address().map_err(|error| format!("{error}"))?;
    check!(
        ours_head == head,
        "this crate uses {ours_head:#x}, the original {head:#x}"
    );
    hold_and_append_in_turns(head)
}

fn this_crate_creates_the_locator_and_the_original_finds_it() -> Outcome {
    let head = Buffers::locator_address().map_err(|error| format!("{error}"))?;
    check!(
        Buffers::locator_kind() == Ok(LocatorKind::Shared),
        "not shared"
    );
    let theirs = original_get(64)?;
    let item = original_item_address(&theirs);
    // With no chained locator yet, the original's item is in our head.
    check!(
        (head..head + 4096).contains(&item),
        "the original's item at {item:#x} is not in this crate's locator at {head:#x}"
    );
    check!(
        support::this_address_through_a_second_view() == head,
        "the rendezvous names another locator"
    );
    drop(theirs);
    hold_and_append_in_turns(head)
}

/// Both start at the same moment, on two threads: whichever wins, the two
/// end up on one locator, and the rest works as when one came first.
///
/// Unless the original loses the race to create the rendezvous: it creates
/// without exclusion (on Windows `OpenFileMapping`, then
/// `CreateFileMapping` without looking for `ERROR_ALREADY_EXISTS`; on
/// Linux `open(O_CREAT)` without `O_EXCL`) and then initialises the
/// locator this crate has just published, header lock and items included,
/// through a view of its own. Its own debug assertion may then catch the
/// lock it holds being reset under it. That is the original's hazard, not
/// one this crate can close; the scenario then checks what this crate
/// still owes: its own request succeeded and its locator still works.
fn both_start_at_once_and_share_one_locator() -> Outcome {
    let start = std::sync::Barrier::new(2);
    let (theirs, ours_result) = std::thread::scope(|scope| {
        let theirs = scope.spawn(|| {
            start.wait();
            original_get(64).map(|item| original_item_address(&item))
        });
        start.wait();
        let ours_result = Buffers::get_buffer(&ours(64)).map(drop);
        (theirs.join(), ours_result)
    });
    ours_result.map_err(|error| format!("ours: {error}"))?;
    let Ok(their_item) = theirs else {
        eprintln!(
            "the original panicked in the race (it re-initialised the locator this crate had \
             just published: its creation is not exclusive)"
        );
        let mut buffer =
            Buffers::get_buffer(&ours(64)).map_err(|error| format!("ours: {error}"))?;
        let at = buffer
            .append_bytes(b"after the race")
            .map_err(|error| format!("append: {error}"))?;
        check!(
            intact(at, b"after the race"),
            "this crate's bytes were lost"
        );
        return Ok(());
    };
    let their_item = their_item?;
    check!(
        Buffers::locator_kind() == Ok(LocatorKind::Shared),
        "not shared after the race: {:?}",
        Buffers::locator_kind()
    );
    let head = Buffers::locator_address().map_err(|error| format!("{error}"))?;
    let named = support::this_address_through_a_second_view();
    if named != head {
        // The original creates without exclusion: on Windows
        // `OpenFileMapping`, then `CreateFileMapping` without looking for
        // `ERROR_ALREADY_EXISTS`; on Linux `open(O_CREAT)` without
        // `O_EXCL`. Losing that race it initialises the locator this crate
        // has just published, through a view of its own. Then the header
        // names its view, of the same memory as this crate's.
        // SAFETY: both are live views of the rendezvous, never unmapped.
        let (ours, theirs) = unsafe {
            (
                std::slice::from_raw_parts(head as *const u8, 4096),
                std::slice::from_raw_parts(named as *const u8, 4096),
            )
        };
        check!(
            ours == theirs,
            "the rendezvous names {named:#x}, which is not a view of this crate's locator at {head:#x}"
        );
        eprintln!(
            "the original re-initialised the locator this crate had created (its creation is \
             not exclusive); both views are of one locator"
        );
        return Ok(());
    }
    if !(head..head + 4096).contains(&their_item) {
        // The same race seen from the other side: the original went on
        // through a view of its own of the locator it re-initialised. Its
        // item is then in the same memory, seen at another address.
        let their_view = their_item & !(4096 - 1);
        // SAFETY: both are live views of the rendezvous, never unmapped.
        let (ours, theirs) = unsafe {
            (
                std::slice::from_raw_parts(head as *const u8, 4096),
                std::slice::from_raw_parts(their_view as *const u8, 4096),
            )
        };
        check!(
            ours == theirs,
            "the original's item at {their_item:#x} is in neither the shared locator at \
             {head:#x} nor a view of it"
        );
        eprintln!(
            "the original used a view of its own of the locator (its creation is not \
             exclusive); both views are of one locator"
        );
        return Ok(());
    }
    hold_and_append_in_turns(head)
}

const SCENARIOS: &[Scenario] = &[
    (
        "the_original_creates_the_locator_and_this_crate_finds_it",
        the_original_creates_the_locator_and_this_crate_finds_it,
    ),
    (
        "this_crate_creates_the_locator_and_the_original_finds_it",
        this_crate_creates_the_locator_and_the_original_finds_it,
    ),
    (
        "both_start_at_once_and_share_one_locator",
        both_start_at_once_and_share_one_locator,
    ),
];

fn main() {
    if let Some(name) = support::scenario_of_this_child() {
        support::run_child(SCENARIOS, &name);
    }
    support::run_in_children("interop", SCENARIOS.iter().map(|(name, _)| *name), |_| None);
}
