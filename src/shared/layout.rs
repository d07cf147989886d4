//! The binary layout of a locator, as the format contract (`FORMAT.md` at
//! the root of the repository and package) fixes it, and the only code that
//! touches locator memory.
//!
//! A locator is one 4096-byte page shared by every buffers library in the
//! process (Rust, C#, C...), so its bytes are a contract: a packed header
//! followed by packed items. Fields that several threads or libraries change
//! (the header lock, the item count, an item's position and taken flag) are
//! accessed as atomics at offsets that the layout keeps 4-byte aligned; the
//! pointer-sized item base address sits at a 20-byte stride and is read and
//! written unaligned, only while the item is not yet published or is fixed.
//! Integers read from the page are never trusted as indices: the item count
//! is clamped to the capacity.

#![allow(unsafe_code)]

use std::mem::{offset_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicUsize, Ordering};

/// Size of every locator in bytes.
pub(crate) const LOCATOR_SIZE: usize = 4096;

/// The header at the start of every locator.
///
/// 24 bytes on 64-bit targets, 16 on 32-bit; packed, little-endian.
#[repr(C, packed)]
pub(crate) struct LocatorHeader {
    /// Where the first library instance mapped this locator.
    pub(crate) this_address: usize,
    /// Address of the next locator in the chain, 0 if none.
    pub(crate) next_locator: usize,
    /// 0 free, 1 held; taken while adding an item or a next locator.
    pub(crate) lock: u32,
    /// Low 3 bits: format version (0). Other bits reserved, 0.
    pub(crate) flags: u8,
    /// Number of items in use.
    pub(crate) item_count: u8,
    /// Reserved, 0.
    pub(crate) reserved: [u8; 2],
}

/// One registered buffer.
///
/// 20 bytes on 64-bit targets, 16 on 32-bit; packed, little-endian.
#[repr(C, packed)]
pub(crate) struct LocatorItem {
    /// First address of the buffer (unaligned within the locator).
    pub(crate) base_address: usize,
    /// Size in bytes, fixed once registered.
    pub(crate) size: u32,
    /// Bytes already used; free space starts at `base_address + position`.
    pub(crate) position: u32,
    /// 0 free, 1 in exclusive use.
    pub(crate) taken: u32,
}

/// Items that fit in one locator: 203 on 64-bit, 255 on 32-bit.
pub(crate) const MAX_ITEMS: usize =
    (LOCATOR_SIZE - size_of::<LocatorHeader>()) / size_of::<LocatorItem>();

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<LocatorHeader>() == 24);
    assert!(size_of::<LocatorItem>() == 20);
    assert!(MAX_ITEMS == 203);
};

#[cfg(target_pointer_width = "32")]
const _: () = {
    assert!(size_of::<LocatorHeader>() == 16);
    assert!(size_of::<LocatorItem>() == 16);
    assert!(MAX_ITEMS == 255);
};

// The atomics below rely on these fields being 4-byte (lock, u32 item
// fields) or pointer (next locator) aligned in a page-aligned locator, for
// every item index.
const _: () = {
    assert!(offset_of!(LocatorHeader, next_locator) % size_of::<usize>() == 0);
    assert!(offset_of!(LocatorHeader, lock) % 4 == 0);
    assert!(size_of::<LocatorHeader>().is_multiple_of(4));
    assert!(size_of::<LocatorItem>().is_multiple_of(4));
    assert!(offset_of!(LocatorItem, size) % 4 == 0);
    assert!(offset_of!(LocatorItem, position) % 4 == 0);
    assert!(offset_of!(LocatorItem, taken) % 4 == 0);
    assert!(size_of::<LocatorHeader>() + MAX_ITEMS * size_of::<LocatorItem>() <= LOCATOR_SIZE);
};

/// Most bytes one ready-made buffer gets: when the first locator's mapping
/// is longer than a locator (64 KiB on Windows), the bytes after the first
/// [`LOCATOR_SIZE`] are registered as buffers of at most this size.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) const READY_MADE_BUFFER_SIZE: usize = 16384;

/// The `(offset, len)` of each ready-made buffer in a first locator mapping
/// of `mapping_len` bytes, in item order; none if the mapping is one
/// locator long. Offsets are from the start of the mapping.
///
/// Only Windows creates such a mapping: on Linux the rendezvous file is one
/// 4 KiB page, mapped without execute rights.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn ready_made_buffers(mapping_len: usize) -> impl Iterator<Item = (usize, usize)> {
    let spare = mapping_len.saturating_sub(LOCATOR_SIZE);
    (0..spare.div_ceil(READY_MADE_BUFFER_SIZE).min(MAX_ITEMS)).map(move |index| {
        let offset = index * READY_MADE_BUFFER_SIZE;
        (
            LOCATOR_SIZE + offset,
            (spare - offset).min(READY_MADE_BUFFER_SIZE),
        )
    })
}

/// The first bytes of a new Unix rendezvous file of `file_len` bytes that
/// will be mapped at `address`: the header's *this address*; the rest of
/// the file is zeros.
///
/// With `chained_headers` (macOS on Apple Silicon, where a page is 16 KiB)
/// the bytes after the first locator are laid out as further locators of
/// [`LOCATOR_SIZE`] bytes each, every one with its own address and chained
/// to the next through *next locator*, as `FORMAT.md` prescribes there: W^X
/// forbids executable buffers in the writable page that holds the header,
/// so the spare bytes hold headers instead. Elsewhere a longer file leaves
/// them unused. Written as native-endian words (all supported targets are
/// little-endian, as `FORMAT.md` requires).
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) fn rendezvous_file_start(
    address: usize,
    file_len: usize,
    chained_headers: bool,
) -> Vec<u8> {
    let width = size_of::<usize>();
    let locators = if chained_headers {
        (file_len / LOCATOR_SIZE).max(1)
    } else {
        1
    };
    let mut bytes = vec![0u8; (locators - 1) * LOCATOR_SIZE + 2 * width];
    for index in 0..locators {
        let at = index * LOCATOR_SIZE;
        let this = address.wrapping_add(at);
        let next = if index + 1 < locators {
            this.wrapping_add(LOCATOR_SIZE)
        } else {
            0
        };
        bytes[at..at + width].copy_from_slice(&this.to_ne_bytes());
        bytes[at + width..at + 2 * width].copy_from_slice(&next.to_ne_bytes());
    }
    bytes
}

/// Whether the spare bytes of a rendezvous file are chained locator
/// headers on this target (see [`rendezvous_file_start`]).
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) const CHAINED_HEADERS: bool = cfg!(all(target_os = "macos", target_arch = "aarch64"));

/// Where a process-local probe may briefly write while holding the header
/// lock, to prove that two addresses are views of the same locator (the
/// Windows rendezvous, and the Linux one without `/proc`): on
/// 64-bit targets the 12 bytes after the last item, which no field uses;
/// on 32-bit targets, where items fill the page, the reserved header bytes.
/// Both are zero outside the probe.
#[cfg(target_pointer_width = "64")]
pub(crate) const PROBE_OFFSET: usize =
    size_of::<LocatorHeader>() + MAX_ITEMS * size_of::<LocatorItem>();
#[cfg(not(target_pointer_width = "64"))]
pub(crate) const PROBE_OFFSET: usize = offset_of!(LocatorHeader, reserved);

const _: () = {
    assert!(PROBE_OFFSET.is_multiple_of(2) && PROBE_OFFSET + 2 <= LOCATOR_SIZE);
};

/// A locator page that lives for the rest of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocatorRef(NonNull<u8>);

// SAFETY: a `LocatorRef` is an address of shared memory that is only accessed
// through atomics or under the protocol's locks; it can be used from any
// thread.
unsafe impl Send for LocatorRef {}
// SAFETY: as above.
unsafe impl Sync for LocatorRef {}

impl LocatorRef {
    /// # Safety
    ///
    /// `address` must be non-null, aligned to `LOCATOR_SIZE` or at least to
    /// 8 bytes, point to `LOCATOR_SIZE` readable and writable bytes that stay
    /// mapped for the rest of the process, and hold a locator (or be about to
    /// be initialised with [`LocatorRef::initialise`] before any other use).
    pub(crate) unsafe fn from_address(address: usize) -> Option<LocatorRef> {
        if !address.is_multiple_of(size_of::<usize>()) {
            return None;
        }
        NonNull::new(address as *mut u8).map(LocatorRef)
    }

    pub(crate) fn address(self) -> usize {
        self.0.as_ptr() as usize
    }

    fn atomic_u32(self, offset: usize) -> &'static AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= LOCATOR_SIZE);
        // SAFETY: the page is mapped for the rest of the process
        // (`from_address`), the offset is inside it and 4-byte aligned
        // (const assertions above), and all access to these bytes is atomic.
        unsafe { &*(self.0.as_ptr().add(offset) as *const AtomicU32) }
    }

    fn atomic_usize(self, offset: usize) -> &'static AtomicUsize {
        debug_assert!(offset.is_multiple_of(size_of::<usize>()));
        // SAFETY: as in `atomic_u32`, with pointer alignment.
        unsafe { &*(self.0.as_ptr().add(offset) as *const AtomicUsize) }
    }

    fn atomic_u8(self, offset: usize) -> &'static AtomicU8 {
        // SAFETY: as in `atomic_u32`; a byte is always aligned.
        unsafe { &*(self.0.as_ptr().add(offset) as *const AtomicU8) }
    }

    /// Writes a fresh header (no items, no next locator, lock free) that
    /// names `this_address`, with plain stores.
    ///
    /// # Safety
    ///
    /// No other thread or library may access the page yet.
    pub(crate) unsafe fn initialise(self, this_address: usize) {
        // SAFETY: the page is ours alone (caller) and `LOCATOR_SIZE` bytes
        // long; zeroing it clears every item and reserved byte.
        unsafe { std::ptr::write_bytes(self.0.as_ptr(), 0, LOCATOR_SIZE) };
        self.this_address().store(this_address, Ordering::Relaxed);
    }

    /// Writes a fresh header for the first locator of a process, mapped
    /// `mapping_len` bytes long at `this_address`: the bytes after the
    /// first [`LOCATOR_SIZE`] become ready-made buffers (free, position 0),
    /// as `FORMAT.md` requires. *This address* is stored last, with Release,
    /// so an instance that reads it with Acquire sees the finished header.
    ///
    /// # Safety
    ///
    /// As [`LocatorRef::initialise`]; in addition `mapping_len` bytes from
    /// `this_address` must be mapped read/write for the rest of the process.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) unsafe fn initialise_first(self, this_address: usize, mapping_len: usize) {
        // SAFETY: forwarded to the caller; *this address* is written below.
        unsafe { self.initialise(0) };
        let mut count = 0;
        for (offset, len) in ready_made_buffers(mapping_len) {
            // SAFETY: the page is not published yet (caller), and
            // `ready_made_buffers` yields at most MAX_ITEMS items.
            unsafe {
                self.item(count)
                    .write_new(this_address + offset, len as u32, 0)
            };
            // Free, unlike a newly registered item, which its creator holds.
            self.item(count).taken().store(0, Ordering::Relaxed);
            count += 1;
        }
        self.raw_item_count().store(count as u8, Ordering::Relaxed);
        // Release: publishes the items and count above with the address.
        self.this_address().store(this_address, Ordering::Release);
    }

    /// The probe word at [`PROBE_OFFSET`].
    pub(crate) fn probe(self) -> &'static AtomicU16 {
        // SAFETY: inside the page (const assertion above), 2-byte aligned in
        // a page-aligned locator, and only ever accessed atomically.
        unsafe { &*(self.0.as_ptr().add(PROBE_OFFSET) as *const AtomicU16) }
    }

    /// The "this address" field.
    pub(crate) fn this_address(self) -> &'static AtomicUsize {
        self.atomic_usize(offset_of!(LocatorHeader, this_address))
    }

    /// The "next locator" field.
    pub(crate) fn next_locator(self) -> &'static AtomicUsize {
        self.atomic_usize(offset_of!(LocatorHeader, next_locator))
    }

    /// The header lock.
    pub(crate) fn lock(self) -> &'static AtomicU32 {
        self.atomic_u32(offset_of!(LocatorHeader, lock))
    }

    /// The raw item count; may exceed [`MAX_ITEMS`] if another library
    /// wrote garbage, so use [`LocatorRef::item_count`] for indexing.
    pub(crate) fn raw_item_count(self) -> &'static AtomicU8 {
        self.atomic_u8(offset_of!(LocatorHeader, item_count))
    }

    /// Items published so far, clamped to the capacity. Acquire pairs with
    /// the Release increment in registration, so every field of the counted
    /// items is visible.
    #[inline]
    pub(crate) fn item_count(self) -> usize {
        usize::from(self.raw_item_count().load(Ordering::Acquire)).min(MAX_ITEMS)
    }

    /// Item `index` (which must be below [`MAX_ITEMS`]).
    #[inline]
    pub(crate) fn item(self, index: usize) -> ItemRef {
        assert!(index < MAX_ITEMS, "item index out of range");
        // SAFETY: `index < MAX_ITEMS` keeps the item inside the page.
        ItemRef(unsafe {
            NonNull::new_unchecked(
                self.0
                    .as_ptr()
                    .add(size_of::<LocatorHeader>() + index * size_of::<LocatorItem>()),
            )
        })
    }
}

/// One item inside a live locator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ItemRef(NonNull<u8>);

// SAFETY: see `LocatorRef`.
unsafe impl Send for ItemRef {}
// SAFETY: see `LocatorRef`.
unsafe impl Sync for ItemRef {}

impl ItemRef {
    pub(crate) fn address(self) -> usize {
        self.0.as_ptr() as usize
    }

    /// # Safety
    ///
    /// `address` must have come from [`ItemRef::address`] of an item of a
    /// locator that is still mapped (locators never are unmapped).
    pub(crate) unsafe fn from_address(address: usize) -> Option<ItemRef> {
        NonNull::new(address as *mut u8).map(ItemRef)
    }

    /// As [`ItemRef::from_address`], for an address known to be non-null.
    ///
    /// # Safety
    ///
    /// As [`ItemRef::from_address`], and `address` is not 0.
    #[inline]
    pub(crate) unsafe fn from_address_unchecked(address: usize) -> ItemRef {
        debug_assert!(address != 0);
        // SAFETY: non-null (caller).
        ItemRef(unsafe { NonNull::new_unchecked(address as *mut u8) })
    }

    fn atomic_u32(self, offset: usize) -> &'static AtomicU32 {
        // SAFETY: the item lies inside a live locator page; `offset` is one
        // of the 4-byte-aligned u32 fields (const assertions above), and
        // those bytes are only accessed atomically.
        unsafe { &*(self.0.as_ptr().add(offset) as *const AtomicU32) }
    }

    /// The base address. Written once before the item is published and
    /// never changed, so a plain unaligned read after the Acquire load of
    /// the item count (or of `taken`) cannot race.
    #[inline]
    pub(crate) fn base_address(self) -> usize {
        // SAFETY: in bounds of a live locator; `read_unaligned` because the
        // 20-byte stride leaves the field 4-byte aligned only.
        unsafe {
            std::ptr::read_unaligned(
                self.0.as_ptr().add(offset_of!(LocatorItem, base_address)) as *const usize
            )
        }
    }

    /// The buffer size; fixed once published.
    #[inline]
    pub(crate) fn size(self) -> &'static AtomicU32 {
        self.atomic_u32(offset_of!(LocatorItem, size))
    }

    /// Bytes used; only grows.
    #[inline]
    pub(crate) fn position(self) -> &'static AtomicU32 {
        self.atomic_u32(offset_of!(LocatorItem, position))
    }

    /// 0 free, 1 taken.
    #[inline]
    pub(crate) fn taken(self) -> &'static AtomicU32 {
        self.atomic_u32(offset_of!(LocatorItem, taken))
    }

    /// Fills an unpublished item: already taken by the caller, position 0.
    ///
    /// # Safety
    ///
    /// The caller holds the header lock of the item's locator and the item
    /// index is not yet counted, so no one else reads or writes the item.
    pub(crate) unsafe fn write_new(self, base_address: usize, size: u32, position: u32) {
        // SAFETY: in bounds of a live locator, unpublished (caller), and
        // written unaligned for the same reason as `base_address`.
        unsafe {
            std::ptr::write_unaligned(
                self.0.as_ptr().add(offset_of!(LocatorItem, base_address)) as *mut usize,
                base_address,
            )
        };
        // Relaxed: publication is the Release store of the item count.
        self.size().store(size, Ordering::Relaxed);
        self.position().store(position, Ordering::Relaxed);
        self.taken().store(1, Ordering::Relaxed);
    }

    /// Copies `bytes` into the buffer at `address`.
    ///
    /// # Safety
    ///
    /// `[address, address + bytes.len())` lies inside this item's buffer
    /// after its position, and the caller has taken the item.
    pub(crate) unsafe fn write_bytes(self, address: usize, bytes: &[u8]) {
        // SAFETY: the range is inside a read/write mapping that lives for the
        // process (caller), no one else writes it while the item is taken,
        // and a byte slice cannot overlap memory the caller holds exclusively
        // unless they aliased it themselves through a raw pointer.
        unsafe { std::ptr::copy(bytes.as_ptr(), address as *mut u8, bytes.len()) };
    }

    /// Copies `value` into the buffer at `address` (unaligned).
    ///
    /// # Safety
    ///
    /// As for [`ItemRef::write_bytes`], with `size_of::<T>()` bytes.
    pub(crate) unsafe fn write_value<T: Copy>(self, address: usize, value: &T) {
        // SAFETY: as in `write_bytes`; a typed unaligned write copies padding
        // without reading it as bytes.
        unsafe { std::ptr::write_unaligned(address as *mut T, *value) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn header_fields_sit_at_the_specified_offsets() {
        assert_eq!(offset_of!(LocatorHeader, this_address), 0);
        assert_eq!(offset_of!(LocatorHeader, next_locator), 8);
        assert_eq!(offset_of!(LocatorHeader, lock), 16);
        assert_eq!(offset_of!(LocatorHeader, flags), 20);
        assert_eq!(offset_of!(LocatorHeader, item_count), 21);
        assert_eq!(offset_of!(LocatorHeader, reserved), 22);
        assert_eq!(size_of::<LocatorHeader>(), 24);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn item_fields_sit_at_the_specified_offsets() {
        assert_eq!(offset_of!(LocatorItem, base_address), 0);
        assert_eq!(offset_of!(LocatorItem, size), 8);
        assert_eq!(offset_of!(LocatorItem, position), 12);
        assert_eq!(offset_of!(LocatorItem, taken), 16);
        assert_eq!(size_of::<LocatorItem>(), 20);
        assert_eq!(MAX_ITEMS, 203);
    }

    #[test]
    fn accessors_write_the_documented_bytes() {
        let mut page = vec![0u64; LOCATOR_SIZE / 8];
        let address = page.as_mut_ptr() as usize;
        // SAFETY: the vector is LOCATOR_SIZE bytes, 8-aligned, outlives the
        // test body and is accessed only through the locator here.
        let locator = unsafe { LocatorRef::from_address(address) }.unwrap();
        // SAFETY: nothing else sees the page.
        // Distinct bytes in every position of a word of this width (the
        // cast keeps the low half on 32-bit).
        let this_address = 0x1122_3344_5566_7788_u64 as usize;
        let base_address = 0x0102_0304_0506_0708_u64 as usize;
        let width = size_of::<usize>();
        unsafe { locator.initialise(this_address) };
        locator.next_locator().store(0x99aa, Ordering::Relaxed);
        locator.lock().store(1, Ordering::Relaxed);
        locator.raw_item_count().store(2, Ordering::Relaxed);
        let item = locator.item(1);
        // SAFETY: the item is not published to anyone else.
        unsafe { item.write_new(base_address, 0x1000, 0x20) };
        // SAFETY: reading back the page through its own pointer.
        let bytes = unsafe { std::slice::from_raw_parts(address as *const u8, LOCATOR_SIZE) };
        // FORMAT.md's offsets for both widths: pointers of `width` bytes,
        // then the 32-bit fields.
        assert_eq!(&bytes[0..width], &this_address.to_le_bytes());
        assert_eq!(&bytes[width..2 * width], &0x99aausize.to_le_bytes());
        assert_eq!(&bytes[2 * width..2 * width + 4], &1u32.to_le_bytes());
        assert_eq!(bytes[2 * width + 5], 2);
        let item_offset = size_of::<LocatorHeader>() + size_of::<LocatorItem>();
        assert_eq!(item_offset, 2 * width + 8 + width + 12);
        let item_bytes = &bytes[item_offset..];
        assert_eq!(&item_bytes[..width], &base_address.to_le_bytes());
        assert_eq!(&item_bytes[width..width + 4], &0x1000u32.to_le_bytes());
        assert_eq!(&item_bytes[width + 4..width + 8], &0x20u32.to_le_bytes());
        assert_eq!(&item_bytes[width + 8..width + 12], &1u32.to_le_bytes());
        assert_eq!(item.base_address(), base_address);
        drop(page);
    }

    #[test]
    fn a_windows_sized_first_mapping_gets_the_specified_ready_made_buffers() {
        let buffers: Vec<_> = ready_made_buffers(65536).collect();
        assert_eq!(
            buffers,
            [
                (4096, 16384),
                (20480, 16384),
                (36864, 16384),
                (53248, 12288)
            ]
        );
        assert_eq!(ready_made_buffers(4096).count(), 0);
        assert_eq!(ready_made_buffers(0).count(), 0);
        assert_eq!(
            ready_made_buffers(4096 + 1).collect::<Vec<_>>(),
            [(4096, 1)]
        );
        // Never more items than a locator holds, however long the mapping.
        assert_eq!(ready_made_buffers(usize::MAX).count(), MAX_ITEMS);
    }

    #[test]
    fn a_first_locator_registers_its_ready_made_buffers_free() {
        let mut page = vec![0u64; LOCATOR_SIZE / 8];
        let address = page.as_mut_ptr() as usize;
        // SAFETY: as in the tests above; the ready-made buffers are only
        // registered, never written.
        let locator = unsafe { LocatorRef::from_address(address) }.unwrap();
        // SAFETY: nothing else sees the page.
        unsafe { locator.initialise_first(0x10_0000, 65536) };
        assert_eq!(locator.this_address().load(Ordering::Relaxed), 0x10_0000);
        assert_eq!(locator.item_count(), 4);
        for (index, (offset, len)) in ready_made_buffers(65536).enumerate() {
            let item = locator.item(index);
            assert_eq!(item.base_address(), 0x10_0000 + offset);
            assert_eq!(item.size().load(Ordering::Relaxed) as usize, len);
            assert_eq!(item.position().load(Ordering::Relaxed), 0);
            assert_eq!(item.taken().load(Ordering::Relaxed), 0);
        }
        assert_eq!(locator.probe().load(Ordering::Relaxed), 0);
        drop(page);
    }

    #[test]
    fn the_probe_word_changes_no_field_of_a_full_locator() {
        let mut page = vec![0u64; LOCATOR_SIZE / 8];
        let address = page.as_mut_ptr() as usize;
        // SAFETY: as in the tests above.
        let locator = unsafe { LocatorRef::from_address(address) }.unwrap();
        // SAFETY: nothing else sees the page.
        unsafe { locator.initialise(address) };
        locator.next_locator().store(usize::MAX, Ordering::Relaxed);
        locator
            .raw_item_count()
            .store(MAX_ITEMS as u8, Ordering::Relaxed);
        for index in 0..MAX_ITEMS {
            // SAFETY: the items are not published to anyone else.
            unsafe {
                locator
                    .item(index)
                    .write_new(usize::MAX - index, u32::MAX, 7)
            };
        }
        // SAFETY: reading the page through its own pointer.
        let before =
            unsafe { std::slice::from_raw_parts(address as *const u8, LOCATOR_SIZE) }.to_vec();
        locator.probe().store(0xffff, Ordering::Relaxed);
        // SAFETY: as above.
        let after = unsafe { std::slice::from_raw_parts(address as *const u8, LOCATOR_SIZE) };
        let changed: Vec<usize> = (0..LOCATOR_SIZE)
            .filter(|&offset| before[offset] != after[offset])
            .collect();
        assert_eq!(changed, [PROBE_OFFSET, PROBE_OFFSET + 1]);
        #[cfg(target_pointer_width = "64")]
        assert!(PROBE_OFFSET >= size_of::<LocatorHeader>() + MAX_ITEMS * size_of::<LocatorItem>());
        drop(page);
    }

    #[test]
    fn a_garbage_item_count_is_clamped() {
        let mut page = vec![0u64; LOCATOR_SIZE / 8];
        // SAFETY: as in the test above.
        let locator = unsafe { LocatorRef::from_address(page.as_mut_ptr() as usize) }.unwrap();
        locator.raw_item_count().store(255, Ordering::Relaxed);
        assert_eq!(locator.item_count(), MAX_ITEMS);
        drop(page);
    }

    #[test]
    fn a_rendezvous_file_starts_with_its_address_and_may_chain_headers() {
        let width = size_of::<usize>();
        let word = |bytes: &[u8], at: usize| {
            usize::from_ne_bytes(bytes[at..at + width].try_into().unwrap())
        };
        let plain = rendezvous_file_start(0x7000_0000, 4096, false);
        assert_eq!(plain.len(), 2 * width);
        assert_eq!(word(&plain, 0), 0x7000_0000);
        assert_eq!(word(&plain, width), 0, "no next locator");
        // A 16 KiB page on Apple Silicon: four locators, chained.
        let start = 0xffff_0000;
        let chained = rendezvous_file_start(start, 16384, true);
        for index in 0..4 {
            let at = index * LOCATOR_SIZE;
            assert_eq!(word(&chained, at), start + at, "this address");
            let next = if index < 3 {
                start + at + LOCATOR_SIZE
            } else {
                0
            };
            assert_eq!(word(&chained, at + width), next, "next locator");
        }
        assert_eq!(chained.len(), 3 * LOCATOR_SIZE + 2 * width);
        // Everything else, up to the file's length, is zeros (the write
        // pads it); the written part holds nothing but the two words.
        for index in 0..4 {
            let at = index * LOCATOR_SIZE + 2 * width;
            let end = (at - 2 * width + LOCATOR_SIZE).min(chained.len());
            assert!(chained[at..end].iter().all(|&byte| byte == 0));
        }
        // Chaining a one-locator file is the plain layout.
        assert_eq!(rendezvous_file_start(0x5000, 4096, true), plain_at(0x5000));
    }

    fn plain_at(address: usize) -> Vec<u8> {
        rendezvous_file_start(address, 4096, false)
    }
}
