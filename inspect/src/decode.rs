//! Decoding copies of another process's locators, free of system calls.
//!
//! The inspector never dereferences the other process's addresses: it copies
//! each 4096-byte locator out of the process and decodes the copy here, with
//! the layout of the process's pointer width (`width::Layout`: the library's
//! own offsets for the inspector's width, `FORMAT.md`'s for the other), so a
//! 64-bit inspector decodes a 32-bit process's locators too. Everything read
//! is checked the way the library would need it to hold before trusting it
//! (`FORMAT.md`): the version, the item count against the capacity, the
//! lock and taken flags, each item's position against its size, and the
//! chain's links; a locator that breaks any of these is reported as garbage,
//! not shown half-decoded. Pointers are read as `u64` whatever their width,
//! and one that does not fit in this inspector's `usize` cannot name memory
//! it could read: it is garbage too.

use crate::width::{Layout, Width};
use memory_buffers::internals::layout::{LOCATOR_SIZE, VERSION_MASK};
use std::collections::HashSet;
use std::fmt;

/// Most locators a chain is followed through: 65536 locators hold over 13
/// million buffers, far beyond any real process, and a corrupt chain that
/// never ends must not keep the inspector reading.
pub(crate) const MAX_CHAIN: usize = 1 << 16;

/// One registered buffer, as read.
///
/// The decoder guarantees `used <= size` and that `base + size`, one past
/// its last byte, is a `u64` (it is `2^32` for a buffer that ends at the
/// top of a 32-bit space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Buffer {
    /// First address of the buffer.
    pub(crate) base: usize,
    /// Size in bytes.
    pub(crate) size: u32,
    /// Bytes used (at most `size`).
    pub(crate) used: u32,
    /// Whether a caller has exclusive use of it.
    pub(crate) held: bool,
}

impl Buffer {
    /// Bytes still free.
    pub(crate) fn free(&self) -> u32 {
        self.size - self.used
    }

    /// Where the next append would go: one past the last byte once the
    /// buffer is full, which need not be an address of the process (nor
    /// fit in a 32-bit `usize`).
    pub(crate) fn next_free(&self) -> u64 {
        self.base as u64 + u64::from(self.used)
    }
}

/// One locator of the chain, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Locator {
    /// Where the locator lives in the other process.
    pub(crate) address: usize,
    /// The next locator, if any.
    pub(crate) next: Option<usize>,
    /// Whether the header lock was held when read.
    pub(crate) lock_held: bool,
    /// The items in use, in slot order.
    pub(crate) buffers: Vec<Buffer>,
}

/// Why a locator's bytes are not a locator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LayoutError {
    /// Not one locator long.
    WrongLength(usize),
    /// The head's *this address* is not where it was found.
    WrongThisAddress { found: u64 },
    /// The flags name a version other than 0.
    UnknownVersion(u8),
    /// The lock is neither 0 nor 1.
    BadLock(u32),
    /// More items than a locator of this width holds.
    TooManyItems { count: u8, capacity: usize },
    /// The next locator's address is not pointer-aligned, is itself, or
    /// is beyond what this inspector can address.
    BadNext(u64),
    /// An item's fields cannot describe a buffer.
    BadItem { index: usize, why: String },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::WrongLength(len) => {
                write!(f, "{len} bytes read, a locator is {LOCATOR_SIZE}")
            }
            LayoutError::WrongThisAddress { found } => write!(
                f,
                "its header's \"this address\" field is {found:#x}, not its own address"
            ),
            LayoutError::UnknownVersion(flags) => write!(
                f,
                "its flags {flags:#04x} name version {}, only version 0 exists",
                flags & VERSION_MASK
            ),
            LayoutError::BadLock(lock) => {
                write!(
                    f,
                    "its header lock is {lock}, neither 0 (free) nor 1 (held)"
                )
            }
            LayoutError::TooManyItems { count, capacity } => write!(
                f,
                "its item count is {count}, but a locator holds at most {capacity}"
            ),
            LayoutError::BadNext(next) => write!(
                f,
                "its next-locator field {next:#x} is not the address of another locator"
            ),
            LayoutError::BadItem { index, why } => write!(f, "item {index}: {why}"),
        }
    }
}

/// A pointer field of `layout`'s width, little-endian, widened to `u64`.
/// `offset` lies inside the locator, whose length was checked.
fn read_pointer(bytes: &[u8], offset: usize, layout: &Layout) -> u64 {
    let mut word = [0; 8];
    word[..layout.pointer].copy_from_slice(&bytes[offset..offset + layout.pointer]);
    u64::from_le_bytes(word)
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

/// Decodes the locator copied from `address` in a process of pointer width
/// `width`. The head of the chain (`is_head`) must name itself in *this
/// address*; locators further down the chain are checked for everything
/// else (the library writes their own address there, other
/// implementations may not).
///
/// `highest_address` is the process's highest user-space address
/// (inclusive): no buffer may reach beyond it.
pub(crate) fn decode_locator(
    address: usize,
    bytes: &[u8],
    width: Width,
    is_head: bool,
    highest_address: usize,
) -> Result<Locator, LayoutError> {
    let layout = width.layout();
    if bytes.len() != LOCATOR_SIZE {
        return Err(LayoutError::WrongLength(bytes.len()));
    }
    let this_address = read_pointer(bytes, layout.this_address, layout);
    if is_head && this_address != address as u64 {
        return Err(LayoutError::WrongThisAddress {
            found: this_address,
        });
    }
    let flags = bytes[layout.flags];
    if flags & VERSION_MASK != 0 {
        return Err(LayoutError::UnknownVersion(flags));
    }
    let lock = read_u32(bytes, layout.lock);
    if lock > 1 {
        return Err(LayoutError::BadLock(lock));
    }
    // Never above 255, so a 32-bit locator cannot fail this one.
    let count = bytes[layout.item_count];
    if usize::from(count) > layout.max_items {
        return Err(LayoutError::TooManyItems {
            count,
            capacity: layout.max_items,
        });
    }
    let next_field = read_pointer(bytes, layout.next_locator, layout);
    let next = match usize::try_from(next_field) {
        Ok(0) => None,
        Ok(next) if next.is_multiple_of(layout.pointer) && next != address => Some(next),
        _ => return Err(LayoutError::BadNext(next_field)),
    };
    let highest = highest_address as u64;
    let mut buffers = Vec::with_capacity(usize::from(count));
    for index in 0..usize::from(count) {
        let at = layout.header_size + index * layout.item_size;
        let base = read_pointer(bytes, at + layout.item_base_address, layout);
        let size = read_u32(bytes, at + layout.item_size_field);
        let used = read_u32(bytes, at + layout.item_position);
        let taken = read_u32(bytes, at + layout.item_taken);
        let bad = |why: String| LayoutError::BadItem { index, why };
        if base == 0 {
            return Err(bad("its base address is 0".into()));
        }
        if taken > 1 {
            return Err(bad(format!(
                "its taken flag is {taken}, neither 0 (free) nor 1 (held)"
            )));
        }
        if used > size {
            return Err(bad(format!(
                "{used} bytes used of a {size}-byte buffer at {base:#x}"
            )));
        }
        // Its last byte (its first, if empty) must be in user space, and
        // one past its end a `u64`; in 64-bit arithmetic, so that a 32-bit
        // buffer that runs past 4 GiB does not wrap to a low address.
        let last = base.checked_add(u64::from(size.saturating_sub(1)));
        let fits =
            base.checked_add(u64::from(size)).is_some() && last.is_some_and(|last| last <= highest);
        let Some(base) = usize::try_from(base).ok().filter(|_| fits) else {
            return Err(bad(format!(
                "a {size}-byte buffer at {base:#x} reaches beyond user space"
            )));
        };
        buffers.push(Buffer {
            base,
            size,
            used,
            held: taken == 1,
        });
    }
    Ok(Locator {
        address,
        next,
        lock_held: lock == 1,
        buffers,
    })
}

/// Why the chain could not be read.
#[derive(Debug)]
pub(crate) enum ChainError<E> {
    /// Reading a locator's bytes failed.
    Read { address: usize, error: E },
    /// A locator's bytes are garbage.
    Layout { address: usize, error: LayoutError },
    /// The chain comes back to a locator already read.
    Cycle { address: usize },
    /// The chain is longer than [`MAX_CHAIN`].
    TooLong,
}

/// Reads and decodes the chain starting at `head` in a process of pointer
/// width `width`, copying each locator with `read(address, out)`.
pub(crate) fn read_chain<E>(
    head: usize,
    width: Width,
    highest_address: usize,
    mut read: impl FnMut(usize, &mut [u8]) -> Result<(), E>,
) -> Result<Vec<Locator>, ChainError<E>> {
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut bytes = vec![0u8; LOCATOR_SIZE];
    let mut next = Some(head);
    while let Some(address) = next {
        if chain.len() >= MAX_CHAIN {
            return Err(ChainError::TooLong);
        }
        if !seen.insert(address) {
            return Err(ChainError::Cycle { address });
        }
        read(address, &mut bytes).map_err(|error| ChainError::Read { address, error })?;
        let locator = decode_locator(address, &bytes, width, chain.is_empty(), highest_address)
            .map_err(|error| ChainError::Layout { address, error })?;
        next = locator.next;
        chain.push(locator);
    }
    Ok(chain)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Both layouts, decoded on either width of inspector.
    pub(crate) const WIDTHS: [Width; 2] = [Width::Bits32, Width::Bits64];

    /// The top of user space of a process of `width`, as far as this
    /// inspector can address it: a 32-bit process under a 64-bit kernel,
    /// or a 47-bit x86-64 one (a 32-bit inspector reaches 4 GiB only).
    pub(crate) fn highest(width: Width) -> usize {
        match width {
            Width::Bits32 => 0xffff_dfff,
            Width::Bits64 => usize::try_from((1u64 << 47) - 4096 - 1).unwrap_or(0xffff_dfff),
        }
    }

    /// Builds locator bytes the way the library lays them out (`FORMAT.md`)
    /// for `width`: written here from the format's rule (pointers, then the
    /// lock, flags and count; items of a pointer and three u32), not from
    /// the inspector's layout tables, so that a table that drifted would
    /// fail these tests.
    pub(crate) fn locator_bytes(
        width: Width,
        this: u64,
        next: u64,
        lock: u32,
        items: &[(u64, u32, u32, u32)],
    ) -> Vec<u8> {
        let (pointer, header, item) = match width {
            Width::Bits64 => (8, 24, 20),
            Width::Bits32 => (4, 16, 16),
        };
        let put = |bytes: &mut [u8], at: usize, value: u64| {
            assert!(pointer == 8 || value <= u64::from(u32::MAX), "{value:#x}");
            bytes[at..at + pointer].copy_from_slice(&value.to_le_bytes()[..pointer]);
        };
        let mut bytes = vec![0u8; 4096];
        put(&mut bytes, 0, this);
        put(&mut bytes, pointer, next);
        bytes[2 * pointer..2 * pointer + 4].copy_from_slice(&lock.to_le_bytes());
        bytes[2 * pointer + 5] = items.len() as u8;
        for (index, &(base, size, position, taken)) in items.iter().enumerate() {
            let at = header + item * index;
            put(&mut bytes, at, base);
            bytes[at + pointer..at + pointer + 4].copy_from_slice(&size.to_le_bytes());
            bytes[at + pointer + 4..at + pointer + 8].copy_from_slice(&position.to_le_bytes());
            bytes[at + pointer + 8..at + pointer + 12].copy_from_slice(&taken.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn a_locator_decodes_to_its_items_in_slot_order() {
        for width in WIDTHS {
            let bytes = locator_bytes(
                width,
                0x7000_0000,
                0,
                0,
                &[(0x1000_0000, 4096, 100, 0), (0x2000_1234, 8192, 8192, 1)],
            );
            let locator = decode_locator(0x7000_0000, &bytes, width, true, highest(width)).unwrap();
            assert_eq!(locator.address, 0x7000_0000);
            assert_eq!(locator.next, None);
            assert!(!locator.lock_held);
            assert_eq!(
                locator.buffers,
                [
                    Buffer {
                        base: 0x1000_0000,
                        size: 4096,
                        used: 100,
                        held: false
                    },
                    Buffer {
                        base: 0x2000_1234,
                        size: 8192,
                        used: 8192,
                        held: true
                    }
                ],
                "{width:?}"
            );
            assert_eq!(locator.buffers[0].free(), 3996);
            assert_eq!(locator.buffers[0].next_free(), 0x1000_0064);
            assert_eq!(locator.buffers[1].free(), 0);
            assert_eq!(locator.buffers[1].next_free(), 0x2000_3234);
        }
    }

    #[test]
    fn a_full_locator_decodes_every_item() {
        for (width, capacity) in [(Width::Bits64, 203), (Width::Bits32, 255)] {
            let items: Vec<_> = (0..capacity)
                .map(|index| (0x1000_0000 + index * 0x1000, 4096, index as u32, 0))
                .collect();
            let bytes = locator_bytes(width, 0x5000, 0x9000, 1, &items);
            let locator = decode_locator(0x5000, &bytes, width, true, highest(width)).unwrap();
            let last = capacity as usize - 1;
            assert_eq!(locator.buffers.len(), capacity as usize, "{width:?}");
            assert_eq!(locator.buffers[last].base, 0x1000_0000 + last * 0x1000);
            assert_eq!(locator.buffers[last].used, last as u32);
            assert_eq!(locator.next, Some(0x9000));
            assert!(locator.lock_held);
        }
    }

    #[test]
    fn literal_bytes_decode_in_their_own_layout_only() {
        // A header and one item as a process of each width writes them,
        // byte by byte (`FORMAT.md`, section 2).
        let mut bytes_32 = vec![0u8; 4096];
        bytes_32[..32].copy_from_slice(&[
            0x00, 0x30, 0x5e, 0xf7, // this address 0xf75e3000
            0x00, 0x00, 0x00, 0x00, // next locator: none
            0x01, 0x00, 0x00, 0x00, // lock: held
            0x00, 0x01, 0x00, 0x00, // flags, item count 1, reserved
            0x00, 0x00, 0x00, 0x10, // item 0: base 0x10000000
            0x00, 0x10, 0x00, 0x00, // size 4096
            0x64, 0x00, 0x00, 0x00, // position 100
            0x01, 0x00, 0x00, 0x00, // taken
        ]);
        let mut bytes_64 = vec![0u8; 4096];
        bytes_64[..44].copy_from_slice(&[
            0x00, 0x30, 0x5e, 0xf7, 0x00, 0x00, 0x00, 0x00, // this address 0xf75e3000
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // next locator: none
            0x01, 0x00, 0x00, 0x00, // lock: held
            0x00, 0x01, 0x00, 0x00, // flags, item count 1, reserved
            0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, // item 0: base 0x10000000
            0x00, 0x10, 0x00, 0x00, // size 4096
            0x64, 0x00, 0x00, 0x00, // position 100
            0x01, 0x00, 0x00, 0x00, // taken
        ]);
        let expected = Locator {
            address: 0xf75e_3000,
            next: None,
            lock_held: true,
            buffers: vec![Buffer {
                base: 0x1000_0000,
                size: 4096,
                used: 100,
                held: true,
            }],
        };
        for (width, bytes) in [(Width::Bits32, &bytes_32), (Width::Bits64, &bytes_64)] {
            assert_eq!(
                decode_locator(0xf75e_3000, bytes, width, true, 0xffff_dfff),
                Ok(expected.clone()),
                "{width:?}"
            );
            assert_eq!(
                locator_bytes(width, 0xf75e_3000, 0, 1, &[(0x1000_0000, 4096, 100, 1)]),
                *bytes,
                "{width:?}"
            );
        }
        // Read with the other width's layout, neither shows its item: the
        // 32-bit item's base lands in the 64-bit lock, and the zero high
        // halves of the 64-bit pointers read as an empty, free 32-bit
        // header. Only the process's own width decodes its locator.
        assert_eq!(
            decode_locator(0xf75e_3000, &bytes_32, Width::Bits64, true, 0xffff_dfff),
            Err(LayoutError::BadLock(0x1000_0000))
        );
        assert_eq!(
            decode_locator(0xf75e_3000, &bytes_64, Width::Bits32, true, 0xffff_dfff)
                .map(|locator| (locator.next, locator.lock_held, locator.buffers.len())),
            Ok((None, false, 0)),
            "zeros decode as an empty locator, never as the 64-bit item"
        );
    }

    /// `(flags, lock, item count, next locator)` offsets of `width`.
    fn header_offsets(width: Width) -> (usize, usize, usize, usize) {
        match width {
            Width::Bits64 => (20, 16, 21, 8),
            Width::Bits32 => (12, 8, 13, 4),
        }
    }

    #[test]
    fn garbage_headers_are_refused_with_the_reason() {
        for width in WIDTHS {
            let top = highest(width);
            let (flags, lock, _, next) = header_offsets(width);
            let good = locator_bytes(width, 0x5000, 0, 0, &[(0x1000_0000, 4096, 0, 0)]);
            assert_eq!(
                decode_locator(0x6000, &good, width, true, top),
                Err(LayoutError::WrongThisAddress { found: 0x5000 })
            );
            // Further down the chain *this address* is not required.
            assert!(decode_locator(0x6000, &good, width, false, top).is_ok());
            assert_eq!(
                decode_locator(0x5000, &good[..100], width, true, top),
                Err(LayoutError::WrongLength(100))
            );
            let mut bytes = good.clone();
            bytes[flags] = 0x02;
            assert_eq!(
                decode_locator(0x5000, &bytes, width, true, top),
                Err(LayoutError::UnknownVersion(2))
            );
            // Reserved flag bits are not the version.
            bytes[flags] = 0x08;
            assert!(decode_locator(0x5000, &bytes, width, true, top).is_ok());
            let mut bytes = good.clone();
            bytes[lock] = 7;
            assert_eq!(
                decode_locator(0x5000, &bytes, width, true, top),
                Err(LayoutError::BadLock(7))
            );
            let mut bytes = good.clone();
            bytes[next] = 3;
            assert_eq!(
                decode_locator(0x5000, &bytes, width, true, top),
                Err(LayoutError::BadNext(3))
            );
            let looping = locator_bytes(width, 0x5000, 0x5000, 0, &[]);
            assert_eq!(
                decode_locator(0x5000, &looping, width, true, top),
                Err(LayoutError::BadNext(0x5000))
            );
            // Aligned to the width's pointer, not more: 0x5004 is a 32-bit
            // pointer's alignment but not a 64-bit one's.
            let unaligned = locator_bytes(width, 0x5000, 0x9004, 0, &[]);
            let decoded = decode_locator(0x5000, &unaligned, width, true, top);
            match width {
                Width::Bits32 => assert_eq!(decoded.map(|locator| locator.next), Ok(Some(0x9004))),
                Width::Bits64 => assert_eq!(decoded, Err(LayoutError::BadNext(0x9004))),
            }
        }
    }

    #[test]
    fn item_counts_are_checked_against_the_capacity_of_the_width() {
        let (_, _, count, _) = header_offsets(Width::Bits64);
        let mut bytes = locator_bytes(Width::Bits64, 0x5000, 0, 0, &[]);
        bytes[count] = 204;
        assert_eq!(
            decode_locator(0x5000, &bytes, Width::Bits64, true, highest(Width::Bits64)),
            Err(LayoutError::TooManyItems {
                count: 204,
                capacity: 203
            })
        );
        // 32-bit locators hold 255 items, as many as a u8 counts: the same
        // count is in range there, and the zero item 203 is what fails.
        let items: Vec<_> = (0..203)
            .map(|index| (0x1000_0000 + index * 0x1000, 4096, 0, 0))
            .collect();
        let mut bytes = locator_bytes(Width::Bits32, 0x5000, 0, 0, &items);
        let (_, _, count, _) = header_offsets(Width::Bits32);
        for too_many in [204, 255] {
            bytes[count] = too_many;
            match decode_locator(0x5000, &bytes, Width::Bits32, true, highest(Width::Bits32)) {
                Err(LayoutError::BadItem { index: 203, why }) => {
                    assert!(why.contains("base address is 0"), "{why}")
                }
                other => panic!("{too_many} items: {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_items_are_refused_with_the_reason() {
        for width in WIDTHS {
            let top = highest(width) as u64;
            let most = match width {
                Width::Bits64 => u64::MAX,
                Width::Bits32 => u64::from(u32::MAX),
            };
            for (item, reason) in [
                ((0, 4096, 0, 0), "base address is 0"),
                ((0x1000, 4096, 0, 2), "taken flag is 2"),
                (
                    (0x1000, 4096, 4097, 0),
                    "4097 bytes used of a 4096-byte buffer",
                ),
                ((top - 10, 4096, 0, 0), "reaches beyond user space"),
                // Past the end of the pointer's range: wraps in the
                // process's own arithmetic.
                ((most - 10, 4096, 0, 0), "reaches beyond user space"),
                ((top + 1, 0, 0, 0), "reaches beyond user space"),
            ] {
                let bytes = locator_bytes(width, 0x5000, 0, 0, &[(0x9000, 16, 0, 0), item]);
                match decode_locator(0x5000, &bytes, width, true, top as usize) {
                    Err(LayoutError::BadItem { index: 1, why }) => {
                        assert!(why.contains(reason), "{width:?}: {why:?} lacks {reason:?}")
                    }
                    other => panic!("{width:?}: {item:?} gave {other:?}"),
                }
            }
            // The last page of user space is a buffer's to have.
            let last_page = top + 1 - 4096;
            let bytes = locator_bytes(width, 0x5000, 0, 0, &[(last_page, 4096, 4096, 0)]);
            let locator = decode_locator(0x5000, &bytes, width, true, top as usize).unwrap();
            assert_eq!(locator.buffers[0].next_free(), top + 1, "{width:?}");
        }
    }

    #[test]
    fn a_buffer_may_end_at_the_very_top_of_a_32_bit_space() {
        // A space up to 0xFFFF_FFFF, where one past a full buffer's last
        // byte is 2^32: on a 32-bit inspector, `usize::MAX + 1`.
        for width in WIDTHS {
            let bytes = locator_bytes(
                width,
                0x5000,
                0,
                0,
                &[(0xffff_f000, 4096, 4096, 1), (0xffff_e000, 4096, 10, 0)],
            );
            let locator = decode_locator(0x5000, &bytes, width, true, 0xffff_ffff).unwrap();
            assert_eq!(locator.buffers[0].next_free(), 0x1_0000_0000, "{width:?}");
            assert_eq!(locator.buffers[0].free(), 0);
            assert_eq!(locator.buffers[1].next_free(), 0xffff_e00a);
            // A byte more wraps to 0 in 32 bits: refused, not wrapped.
            let bytes = locator_bytes(width, 0x5000, 0, 0, &[(0xffff_f000, 4097, 0, 0)]);
            assert!(
                matches!(
                    decode_locator(0x5000, &bytes, width, true, 0xffff_ffff),
                    Err(LayoutError::BadItem { index: 0, .. })
                ),
                "{width:?}"
            );
            // Under a 64-bit kernel a 32-bit process stops a page lower.
            let bytes = locator_bytes(width, 0x5000, 0, 0, &[(0xffff_f000, 4096, 0, 0)]);
            assert!(decode_locator(0x5000, &bytes, width, true, 0xffff_dfff).is_err());
        }
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_64_bit_locator_holds_47_bit_addresses() {
        let top = highest(Width::Bits64);
        let bytes = locator_bytes(
            Width::Bits64,
            0x7f3b_2c3f_e000,
            0x7f3b_2c40_0000,
            0,
            &[
                (0x7fff_ffff_e000, 4096, 4096, 0),
                (0x5555_0000_0000, 8192, 1, 1),
            ],
        );
        let locator = decode_locator(0x7f3b_2c3f_e000, &bytes, Width::Bits64, true, top).unwrap();
        assert_eq!(locator.next, Some(0x7f3b_2c40_0000));
        assert_eq!(locator.buffers[0].base, 0x7fff_ffff_e000);
        assert_eq!(locator.buffers[0].next_free(), 0x7fff_ffff_f000);
        assert_eq!(locator.buffers[1].next_free(), 0x5555_0000_0001);
        // One page beyond the top of the 47-bit space.
        let bytes = locator_bytes(
            Width::Bits64,
            0x5000,
            0,
            0,
            &[(0x7fff_ffff_f000, 4096, 0, 0)],
        );
        assert!(decode_locator(0x5000, &bytes, Width::Bits64, true, top).is_err());
    }

    #[test]
    fn pointers_this_inspector_cannot_address_are_refused() {
        // A 64-bit layout names memory above 4 GiB: a 64-bit inspector can
        // read it, a 32-bit one cannot, and must say so, not truncate.
        let bytes = locator_bytes(
            Width::Bits64,
            0x5000,
            0x1_0000_0000,
            0,
            &[(0x1_0000_0000, 4096, 0, 0)],
        );
        let decoded = decode_locator(0x5000, &bytes, Width::Bits64, true, usize::MAX);
        if usize::BITS == 64 {
            let locator = decoded.unwrap();
            assert_eq!(locator.next.map(|next| next as u64), Some(0x1_0000_0000));
            assert_eq!(locator.buffers[0].next_free(), 0x1_0000_0000);
        } else {
            assert_eq!(decoded, Err(LayoutError::BadNext(0x1_0000_0000)));
            let bytes = locator_bytes(Width::Bits64, 0x5000, 0, 0, &[(0x1_0000_0000, 4096, 0, 0)]);
            assert!(matches!(
                decode_locator(0x5000, &bytes, Width::Bits64, true, usize::MAX),
                Err(LayoutError::BadItem { index: 0, .. })
            ));
        }
        // *This address* is compared in 64 bits: 0x1_0000_5000 is not
        // 0x5000 even where only the low half fits.
        let bytes = locator_bytes(Width::Bits64, 0x1_0000_5000, 0, 0, &[]);
        assert_eq!(
            decode_locator(0x5000, &bytes, Width::Bits64, true, usize::MAX),
            Err(LayoutError::WrongThisAddress {
                found: 0x1_0000_5000
            })
        );
    }

    #[test]
    fn random_bytes_never_panic_the_decoder() {
        for width in WIDTHS {
            let (flags, lock, count, _) = header_offsets(width);
            let pointer = width.layout().pointer;
            // A simple generator: the decoder must return, whatever the bytes.
            let mut state = 0x1234_5678_9abc_def0u64;
            let mut accepted = 0;
            for round in 0..2000 {
                let mut bytes = vec![0u8; 4096];
                for byte in &mut bytes {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *byte = state as u8;
                }
                // Make some headers plausible so the item checks run too.
                if round % 2 == 0 {
                    bytes[..pointer].copy_from_slice(&0x5000u64.to_le_bytes()[..pointer]);
                    bytes[pointer..lock + 4].fill(0);
                    bytes[flags] = 0;
                    bytes[count] = (round % 256) as u8;
                }
                if decode_locator(0x5000, &bytes, width, true, highest(width)).is_ok() {
                    accepted += 1;
                }
            }
            // Random items fail the checks; only empty locators pass.
            assert!(
                accepted < 20,
                "{width:?}: {accepted} random locators accepted"
            );
        }
    }

    fn memory(pages: &[(usize, Vec<u8>)]) -> HashMap<usize, Vec<u8>> {
        pages.iter().cloned().collect()
    }

    fn reader(
        memory: &HashMap<usize, Vec<u8>>,
    ) -> impl FnMut(usize, &mut [u8]) -> Result<(), &'static str> + '_ {
        |address, out| match memory.get(&address) {
            Some(page) => {
                out.copy_from_slice(page);
                Ok(())
            }
            None => Err("unmapped"),
        }
    }

    #[test]
    fn a_chain_is_followed_to_its_end() {
        for width in WIDTHS {
            let memory = memory(&[
                (
                    0x5000,
                    locator_bytes(width, 0x5000, 0x9000, 0, &[(0x1_0000, 4096, 1, 1)]),
                ),
                (
                    0x9000,
                    locator_bytes(width, 0x9000, 0, 0, &[(0x2_0000, 4096, 2, 0)]),
                ),
            ]);
            let chain = read_chain(0x5000, width, highest(width), reader(&memory)).unwrap();
            assert_eq!(chain.len(), 2);
            assert_eq!(chain[0].next, Some(0x9000));
            assert_eq!(chain[1].address, 0x9000);
            assert_eq!(chain[1].buffers[0].used, 2);
        }
    }

    #[test]
    fn a_broken_chain_says_where_it_breaks() {
        for width in WIDTHS {
            let top = highest(width);
            let dangling = memory(&[(0x5000, locator_bytes(width, 0x5000, 0x9000, 0, &[]))]);
            assert!(matches!(
                read_chain(0x5000, width, top, reader(&dangling)),
                Err(ChainError::Read {
                    address: 0x9000,
                    error: "unmapped"
                })
            ));
            let cycle = memory(&[
                (0x5000, locator_bytes(width, 0x5000, 0x9000, 0, &[])),
                (0x9000, locator_bytes(width, 0x9000, 0x5000, 0, &[])),
            ]);
            assert!(matches!(
                read_chain(0x5000, width, top, reader(&cycle)),
                Err(ChainError::Cycle { address: 0x5000 })
            ));
            let garbage = memory(&[
                (0x5000, locator_bytes(width, 0x5000, 0x9000, 0, &[])),
                (0x9000, vec![0xff; 4096]),
            ]);
            assert!(matches!(
                read_chain(0x5000, width, top, reader(&garbage)),
                Err(ChainError::Layout {
                    address: 0x9000,
                    ..
                })
            ));
        }
    }
}
