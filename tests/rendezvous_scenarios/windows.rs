//! Windows scenarios: the named section `/Reloaded.Memory.Buffers.MemoryBuffer,
//! PID <pid>` as this library creates it, as another instance may have
//! created it, and as a hostile process of the session could pre-create it.
//! Each child prepares the section before its first call into the library,
//! which is what another process creating it first looks like.

use crate::support::windows::{Section, create_section, open_section, query};
use memory_buffers::{BufferSearchSettings, Buffers, LocatorKind, PrivateLocatorReason};
const GRANULARITY: usize = 65536;

/// FORMAT.md's layout for this pointer width: a header of two pointers, the
/// lock (u32), flags and count (u8); items of a pointer and three u32.
const POINTER: usize = std::mem::size_of::<usize>();
const HEADER_SIZE: usize = 2 * POINTER + 8;
const LOCK_OFFSET: usize = 2 * POINTER;
const COUNT_OFFSET: usize = 2 * POINTER + 5;
const ITEM_SIZE: usize = POINTER + 12;

use crate::support::{Outcome, Scenario, check};

fn section_name() -> String {
    format!(
        "/Reloaded.Memory.Buffers.MemoryBuffer, PID {}",
        std::process::id()
    )
}

fn read_usize(address: usize) -> usize {
    // SAFETY: callers pass addresses inside a live view.
    unsafe { std::ptr::read_unaligned(address as *const usize) }
}

fn read_u32(address: usize) -> u32 {
    // SAFETY: as above.
    unsafe { std::ptr::read_unaligned(address as *const u32) }
}

fn write_bytes(address: usize, bytes: &[u8]) {
    // SAFETY: callers pass ranges inside a live read/write view they made.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), address as *mut u8, bytes.len()) };
}

/// Writes what a correct first instance writes: the header naming `view`,
/// and the four ready-made buffers after the first 4096 bytes.
fn write_valid_header(view: usize, this_address: usize) {
    let mut header = [0u8; HEADER_SIZE];
    header[..POINTER].copy_from_slice(&this_address.to_le_bytes());
    header[COUNT_OFFSET] = 4;
    write_bytes(view, &header);
    for index in 0..4 {
        let size: u32 = if index < 3 { 16384 } else { 12288 };
        let mut item = [0u8; ITEM_SIZE];
        item[..POINTER].copy_from_slice(&(this_address + 4096 + 16384 * index).to_le_bytes());
        item[POINTER..POINTER + 4].copy_from_slice(&size.to_le_bytes());
        write_bytes(view + HEADER_SIZE + ITEM_SIZE * index, &item);
    }
}

/// Gets a buffer, appends to it and checks the bytes.
fn buffer_works() -> Outcome {
    let mut buffer = Buffers::get_buffer(&BufferSearchSettings::default())
        .map_err(|error| format!("get_buffer: {error}"))?;
    let address = buffer
        .append_bytes(b"works")
        .map_err(|error| format!("append: {error}"))?;
    // SAFETY: appended bytes stay mapped for the life of the process.
    let written = unsafe { std::slice::from_raw_parts(address as *const u8, 5) };
    check!(
        written == b"works",
        "appended bytes read back as {written:?}"
    );
    Ok(())
}

fn expect_private(reason: PrivateLocatorReason) -> Outcome {
    let kind = Buffers::locator_kind().map_err(|error| format!("locator_kind: {error}"))?;
    check!(
        kind == LocatorKind::Private(reason),
        "locator kind {kind:?}, expected a private locator for {reason:?}"
    );
    buffer_works()
}

fn creates_the_section_with_ready_made_buffers() -> Outcome {
    let head = Buffers::locator_address().map_err(|error| format!("{error}"))?;
    check!(
        Buffers::locator_kind() == Ok(LocatorKind::Shared),
        "not shared"
    );
    let second = open_section(&section_name()).ok_or("the section has no name")?;
    let view = second.view();
    check!(
        query(view).RegionSize == GRANULARITY,
        "the section is {} bytes",
        query(view).RegionSize
    );
    check!(
        read_usize(view) == head,
        "this address differs from the head"
    );
    // SAFETY: the item count of the header, inside the view.
    let count = unsafe { *((view + COUNT_OFFSET) as *const u8) };
    check!(
        count == 4,
        "{count} items, expected the 4 ready-made buffers"
    );
    for index in 0..4 {
        let item = view + HEADER_SIZE + ITEM_SIZE * index;
        let expected_size = if index < 3 { 16384 } else { 12288 };
        check!(
            read_usize(item) == head + 4096 + 16384 * index
                && read_u32(item + POINTER) == expected_size
                && read_u32(item + POINTER + 4) == 0
                && read_u32(item + POINTER + 8) == 0,
            "ready-made item {index} is not as specified"
        );
    }
    let protection = query(head + 4096).Protect;
    check!(
        protection == windows_sys::Win32::System::Memory::PAGE_EXECUTE_READWRITE,
        "ready-made buffers have protection {protection:#x}"
    );
    // Ready-made buffers are served first.
    let buffer = Buffers::get_buffer(&BufferSearchSettings::default())
        .map_err(|error| format!("get_buffer: {error}"))?;
    check!(
        buffer.base_address() == head + 4096,
        "first buffer at {:#x}, expected the first ready-made one at {:#x}",
        buffer.base_address(),
        head + 4096
    );
    drop(buffer);
    buffer_works()
}

fn adopts_a_section_another_instance_made() -> Outcome {
    let section = create_section(&section_name(), GRANULARITY);
    let view = section.keep();
    write_valid_header(view, view);
    let head = Buffers::locator_address().map_err(|error| format!("{error}"))?;
    check!(
        head == view,
        "head {head:#x}, expected the other instance's {view:#x}"
    );
    check!(
        Buffers::locator_kind() == Ok(LocatorKind::Shared),
        "not shared"
    );
    // The test's view is read/write only, as the original maps it: its
    // ready-made buffers cannot run code, so the library must not hand
    // them out.
    let buffer = Buffers::get_buffer(&BufferSearchSettings::default())
        .map_err(|error| format!("get_buffer: {error}"))?;
    check!(
        !(view..view + GRANULARITY).contains(&buffer.base_address()),
        "a non-executable ready-made buffer was handed out"
    );
    // SAFETY: the item count of the header, inside the kept view.
    let count = unsafe { *((view + COUNT_OFFSET) as *const u8) };
    check!(
        count == 5,
        "the new buffer was not registered in the adopted locator ({count} items)"
    );
    drop(buffer);
    buffer_works()
}

fn a_garbage_header_gives_a_private_locator() -> Outcome {
    let section = create_section(&section_name(), GRANULARITY);
    write_bytes(section.view(), &[0xa5; 4096]);
    section.keep();
    expect_private(PrivateLocatorReason::SectionNotProven)
}

fn a_zeroed_header_gives_a_private_locator() -> Outcome {
    // Never initialised: the library waits a moment, then gives up.
    create_section(&section_name(), GRANULARITY).keep();
    expect_private(PrivateLocatorReason::SectionNotProven)
}

fn this_address_on_the_heap_gives_a_private_locator() -> Outcome {
    let section = create_section(&section_name(), GRANULARITY);
    let decoy = Box::leak(vec![0u8; 2 * GRANULARITY].into_boxed_slice());
    let aligned = (decoy.as_ptr() as usize).next_multiple_of(GRANULARITY);
    write_valid_header(section.view(), aligned);
    section.keep();
    expect_private(PrivateLocatorReason::SectionNotProven)?;
    check!(
        decoy.iter().all(|&byte| byte == 0),
        "the library wrote into the decoy"
    );
    Ok(())
}

fn this_address_in_a_look_alike_section_gives_a_private_locator() -> Outcome {
    // A view of another section with identical contents: everything
    // `VirtualQuery` can tell matches, only the write probe can tell.
    let section = create_section(&section_name(), GRANULARITY);
    let look_alike = create_section(
        &format!("/memory-buffers-test-look-alike-{}", std::process::id()),
        GRANULARITY,
    );
    write_valid_header(section.view(), look_alike.view());
    write_valid_header(look_alike.view(), look_alike.view());
    let before = snapshot(&look_alike);
    section.keep();
    expect_private(PrivateLocatorReason::SectionNotProven)?;
    check!(
        snapshot(&look_alike) == before,
        "the library wrote into the look-alike section"
    );
    Ok(())
}

fn snapshot(section: &Section) -> Vec<u8> {
    // SAFETY: the view is GRANULARITY readable bytes.
    unsafe { std::slice::from_raw_parts(section.view() as *const u8, GRANULARITY) }.to_vec()
}

fn a_section_of_the_wrong_size_gives_a_private_locator() -> Outcome {
    let section = create_section(&section_name(), 4096);
    write_valid_header(section.view(), section.view());
    section.keep();
    expect_private(PrivateLocatorReason::SectionWrongSize { len: 4096 })
}

fn a_header_lock_held_forever_gives_a_private_locator() -> Outcome {
    let section = create_section(&section_name(), GRANULARITY);
    let view = section.keep();
    write_valid_header(view, view);
    write_bytes(view + LOCK_OFFSET, &1u32.to_le_bytes());
    let started = std::time::Instant::now();
    expect_private(PrivateLocatorReason::SectionNotProven)?;
    check!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "gave up only after {:?}",
        started.elapsed()
    );
    Ok(())
}

const SCENARIOS: &[Scenario] = &[
    (
        "a_fresh_process_creates_the_section_with_ready_made_buffers",
        creates_the_section_with_ready_made_buffers,
    ),
    (
        "a_section_another_instance_made_is_adopted",
        adopts_a_section_another_instance_made,
    ),
    (
        "a_garbage_header_gives_a_private_locator",
        a_garbage_header_gives_a_private_locator,
    ),
    (
        "a_zeroed_header_gives_a_private_locator",
        a_zeroed_header_gives_a_private_locator,
    ),
    (
        "this_address_on_the_heap_gives_a_private_locator",
        this_address_on_the_heap_gives_a_private_locator,
    ),
    (
        "this_address_in_a_look_alike_section_gives_a_private_locator",
        this_address_in_a_look_alike_section_gives_a_private_locator,
    ),
    (
        "a_section_of_the_wrong_size_gives_a_private_locator",
        a_section_of_the_wrong_size_gives_a_private_locator,
    ),
    (
        "a_header_lock_held_forever_gives_a_private_locator",
        a_header_lock_held_forever_gives_a_private_locator,
    ),
];

pub fn main() {
    if let Some(name) = crate::support::scenario_of_this_child() {
        crate::support::run_child(SCENARIOS, &name);
    }
    crate::support::run_in_children("scenarios", SCENARIOS.iter().map(|(name, _)| *name), |_| {
        None
    });
}
