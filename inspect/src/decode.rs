//! Decoding copies of another process's locators, free of system calls.
//!
//! The inspector never dereferences the other process's addresses: it copies
//! each 4096-byte locator out of the process and decodes the copy here. The
//! offsets come from the library (`memory_buffers::internals::layout`), so
//! they are the ones the library writes. Everything read is checked the way
//! the library would need it to hold before trusting it (`FORMAT.md`): the
//! version, the item count against the capacity, the lock and taken flags,
//! each item's position against its size, and the chain's links; a locator
//! that breaks any of these is reported as garbage, not shown half-decoded.

use memory_buffers::internals::layout::{
    FLAGS, HEADER_SIZE, ITEM_BASE_ADDRESS, ITEM_COUNT, ITEM_POSITION, ITEM_SIZE, ITEM_SIZE_FIELD,
    ITEM_TAKEN, LOCATOR_SIZE, LOCK, MAX_ITEMS, NEXT_LOCATOR, THIS_ADDRESS, VERSION_MASK,
};
use std::collections::HashSet;
use std::fmt;

const POINTER: usize = size_of::<usize>();

/// Most locators a chain is followed through: 65536 locators hold over 13
/// million buffers, far beyond any real process, and a corrupt chain that
/// never ends must not keep the inspector reading.
pub(crate) const MAX_CHAIN: usize = 1 << 16;

/// One registered buffer, as read.
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

    /// Where the next append would go.
    pub(crate) fn next_free(&self) -> usize {
        self.base + self.used as usize
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
    WrongThisAddress { found: usize },
    /// The flags name a version other than 0.
    UnknownVersion(u8),
    /// The lock is neither 0 nor 1.
    BadLock(u32),
    /// More items than a locator holds.
    TooManyItems(u8),
    /// The next locator's address is not pointer-aligned, or is itself.
    BadNext(usize),
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
            LayoutError::TooManyItems(count) => write!(
                f,
                "its item count is {count}, but a locator holds at most {MAX_ITEMS}"
            ),
            LayoutError::BadNext(next) => write!(
                f,
                "its next-locator field {next:#x} is not the address of another locator"
            ),
            LayoutError::BadItem { index, why } => write!(f, "item {index}: {why}"),
        }
    }
}

fn read_usize(bytes: &[u8], offset: usize) -> usize {
    let mut word = [0; POINTER];
    word.copy_from_slice(&bytes[offset..offset + POINTER]);
    usize::from_le_bytes(word)
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

/// Decodes the locator copied from `address` in another process. The head
/// of the chain (`is_head`) must name itself in *this address*; locators
/// further down the chain are checked for everything else (the library
/// writes their own address there, other implementations may not).
///
/// `highest_address` is the highest user-space address (inclusive): no
/// buffer may reach beyond it.
pub(crate) fn decode_locator(
    address: usize,
    bytes: &[u8],
    is_head: bool,
    highest_address: usize,
) -> Result<Locator, LayoutError> {
    if bytes.len() != LOCATOR_SIZE {
        return Err(LayoutError::WrongLength(bytes.len()));
    }
    let this_address = read_usize(bytes, THIS_ADDRESS);
    if is_head && this_address != address {
        return Err(LayoutError::WrongThisAddress {
            found: this_address,
        });
    }
    let flags = bytes[FLAGS];
    if flags & VERSION_MASK != 0 {
        return Err(LayoutError::UnknownVersion(flags));
    }
    let lock = read_u32(bytes, LOCK);
    if lock > 1 {
        return Err(LayoutError::BadLock(lock));
    }
    let count = bytes[ITEM_COUNT];
    if usize::from(count) > MAX_ITEMS {
        return Err(LayoutError::TooManyItems(count));
    }
    let next = read_usize(bytes, NEXT_LOCATOR);
    if next != 0 && (!next.is_multiple_of(POINTER) || next == address) {
        return Err(LayoutError::BadNext(next));
    }
    let mut buffers = Vec::with_capacity(usize::from(count));
    for index in 0..usize::from(count) {
        let at = HEADER_SIZE + index * ITEM_SIZE;
        let base = read_usize(bytes, at + ITEM_BASE_ADDRESS);
        let size = read_u32(bytes, at + ITEM_SIZE_FIELD);
        let used = read_u32(bytes, at + ITEM_POSITION);
        let taken = read_u32(bytes, at + ITEM_TAKEN);
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
        if size > 0
            && base
                .checked_add(size as usize - 1)
                .is_none_or(|last| last > highest_address)
        {
            return Err(bad(format!(
                "a {size}-byte buffer at {base:#x} reaches beyond user space"
            )));
        }
        buffers.push(Buffer {
            base,
            size,
            used,
            held: taken == 1,
        });
    }
    Ok(Locator {
        address,
        next: (next != 0).then_some(next),
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

/// Reads and decodes the chain starting at `head`, copying each locator
/// with `read(address, out)`.
pub(crate) fn read_chain<E>(
    head: usize,
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
        let locator = decode_locator(address, &bytes, chain.is_empty(), highest_address)
            .map_err(|error| ChainError::Layout { address, error })?;
        next = locator.next;
        chain.push(locator);
    }
    Ok(chain)
}

#[cfg(all(test, target_pointer_width = "64"))]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    const HIGHEST: usize = (1 << 47) - 4096 - 1;

    /// Builds locator bytes the way the library lays them out (`FORMAT.md`,
    /// 64-bit): written here with literal offsets, so that a library whose
    /// offsets drifted would fail these tests.
    pub(crate) fn locator_bytes(
        this: usize,
        next: usize,
        lock: u32,
        items: &[(usize, u32, u32, u32)],
    ) -> Vec<u8> {
        let mut bytes = vec![0u8; 4096];
        bytes[0..8].copy_from_slice(&(this as u64).to_le_bytes());
        bytes[8..16].copy_from_slice(&(next as u64).to_le_bytes());
        bytes[16..20].copy_from_slice(&lock.to_le_bytes());
        bytes[21] = items.len() as u8;
        for (index, &(base, size, position, taken)) in items.iter().enumerate() {
            let at = 24 + 20 * index;
            bytes[at..at + 8].copy_from_slice(&(base as u64).to_le_bytes());
            bytes[at + 8..at + 12].copy_from_slice(&size.to_le_bytes());
            bytes[at + 12..at + 16].copy_from_slice(&position.to_le_bytes());
            bytes[at + 16..at + 20].copy_from_slice(&taken.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn a_locator_decodes_to_its_items_in_slot_order() {
        let bytes = locator_bytes(
            0x7000_0000,
            0,
            0,
            &[(0x1000_0000, 4096, 100, 0), (0x2000_1234, 8192, 8192, 1)],
        );
        let locator = decode_locator(0x7000_0000, &bytes, true, HIGHEST).unwrap();
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
            ]
        );
        assert_eq!(locator.buffers[0].free(), 3996);
        assert_eq!(locator.buffers[0].next_free(), 0x1000_0064);
        assert_eq!(locator.buffers[1].free(), 0);
    }

    #[test]
    fn a_full_locator_decodes_every_item() {
        let items: Vec<_> = (0..MAX_ITEMS)
            .map(|index| (0x1000_0000 + index * 0x1000, 4096, index as u32, 0))
            .collect();
        let bytes = locator_bytes(0x5000, 0x9000, 1, &items);
        let locator = decode_locator(0x5000, &bytes, true, HIGHEST).unwrap();
        assert_eq!(locator.buffers.len(), 203);
        assert_eq!(locator.buffers[202].base, 0x1000_0000 + 202 * 0x1000);
        assert_eq!(locator.buffers[202].used, 202);
        assert_eq!(locator.next, Some(0x9000));
        assert!(locator.lock_held);
    }

    #[test]
    fn the_library_offsets_are_the_specified_ones() {
        assert_eq!(
            (HEADER_SIZE, ITEM_SIZE, MAX_ITEMS, LOCATOR_SIZE),
            (24, 20, 203, 4096)
        );
        assert_eq!(
            (THIS_ADDRESS, NEXT_LOCATOR, LOCK, FLAGS, ITEM_COUNT),
            (0, 8, 16, 20, 21)
        );
        assert_eq!(
            (
                ITEM_BASE_ADDRESS,
                ITEM_SIZE_FIELD,
                ITEM_POSITION,
                ITEM_TAKEN
            ),
            (0, 8, 12, 16)
        );
    }

    #[test]
    fn garbage_headers_are_refused_with_the_reason() {
        let good = locator_bytes(0x5000, 0, 0, &[(0x1000_0000, 4096, 0, 0)]);
        assert_eq!(
            decode_locator(0x6000, &good, true, HIGHEST),
            Err(LayoutError::WrongThisAddress { found: 0x5000 })
        );
        // Further down the chain *this address* is not required.
        assert!(decode_locator(0x6000, &good, false, HIGHEST).is_ok());
        assert_eq!(
            decode_locator(0x5000, &good[..100], true, HIGHEST),
            Err(LayoutError::WrongLength(100))
        );
        let mut bytes = good.clone();
        bytes[20] = 0x02;
        assert_eq!(
            decode_locator(0x5000, &bytes, true, HIGHEST),
            Err(LayoutError::UnknownVersion(2))
        );
        let mut bytes = good.clone();
        bytes[16] = 7;
        assert_eq!(
            decode_locator(0x5000, &bytes, true, HIGHEST),
            Err(LayoutError::BadLock(7))
        );
        let mut bytes = good.clone();
        bytes[21] = 204;
        assert_eq!(
            decode_locator(0x5000, &bytes, true, HIGHEST),
            Err(LayoutError::TooManyItems(204))
        );
        let mut bytes = good.clone();
        bytes[8] = 3;
        assert_eq!(
            decode_locator(0x5000, &bytes, true, HIGHEST),
            Err(LayoutError::BadNext(3))
        );
        let looping = locator_bytes(0x5000, 0x5000, 0, &[]);
        assert_eq!(
            decode_locator(0x5000, &looping, true, HIGHEST),
            Err(LayoutError::BadNext(0x5000))
        );
    }

    #[test]
    fn garbage_items_are_refused_with_the_reason() {
        for (item, reason) in [
            ((0, 4096, 0, 0), "base address is 0"),
            ((0x1000, 4096, 0, 2), "taken flag is 2"),
            (
                (0x1000, 4096, 4097, 0),
                "4097 bytes used of a 4096-byte buffer",
            ),
            ((HIGHEST - 10, 4096, 0, 0), "reaches beyond user space"),
            ((usize::MAX - 10, 4096, 0, 0), "reaches beyond user space"),
        ] {
            let bytes = locator_bytes(0x5000, 0, 0, &[(0x9000, 16, 0, 0), item]);
            match decode_locator(0x5000, &bytes, true, HIGHEST) {
                Err(LayoutError::BadItem { index: 1, why }) => {
                    assert!(why.contains(reason), "{why:?} lacks {reason:?}")
                }
                other => panic!("{item:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_the_decoder() {
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
                bytes[..8].copy_from_slice(&0x5000u64.to_le_bytes());
                bytes[16..24].fill(0);
                bytes[21] = (round % 204) as u8;
            }
            if decode_locator(0x5000, &bytes, true, HIGHEST).is_ok() {
                accepted += 1;
            }
        }
        // Random items fail the checks; only empty locators pass.
        assert!(accepted < 20, "{accepted} random locators accepted");
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
        let memory = memory(&[
            (
                0x5000,
                locator_bytes(0x5000, 0x9000, 0, &[(0x1_0000, 4096, 1, 1)]),
            ),
            (
                0x9000,
                locator_bytes(0x9000, 0, 0, &[(0x2_0000, 4096, 2, 0)]),
            ),
        ]);
        let chain = read_chain(0x5000, HIGHEST, reader(&memory)).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].next, Some(0x9000));
        assert_eq!(chain[1].address, 0x9000);
        assert_eq!(chain[1].buffers[0].used, 2);
    }

    #[test]
    fn a_broken_chain_says_where_it_breaks() {
        let dangling = memory(&[(0x5000, locator_bytes(0x5000, 0x9000, 0, &[]))]);
        assert!(matches!(
            read_chain(0x5000, HIGHEST, reader(&dangling)),
            Err(ChainError::Read {
                address: 0x9000,
                error: "unmapped"
            })
        ));
        let cycle = memory(&[
            (0x5000, locator_bytes(0x5000, 0x9000, 0, &[])),
            (0x9000, locator_bytes(0x9000, 0x5000, 0, &[])),
        ]);
        assert!(matches!(
            read_chain(0x5000, HIGHEST, reader(&cycle)),
            Err(ChainError::Cycle { address: 0x5000 })
        ));
        let garbage = memory(&[
            (0x5000, locator_bytes(0x5000, 0x9000, 0, &[])),
            (0x9000, vec![0xff; 4096]),
        ]);
        assert!(matches!(
            read_chain(0x5000, HIGHEST, reader(&garbage)),
            Err(ChainError::Layout {
                address: 0x9000,
                ..
            })
        ));
    }
}
