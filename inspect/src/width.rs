//! The pointer width of the inspected process, free of system calls: which
//! locator layout it writes (`FORMAT.md`, section 2), how each system tells
//! it, and how high its address space reaches.
//!
//! A 64-bit inspector reads 32-bit processes too (a 32-bit game under a
//! 64-bit system is the common case), so the layout of the other width
//! cannot come from the library, which is built for one width only: both
//! are written out here from `FORMAT.md`, and the one of the inspector's
//! own width is checked against the library's at compile time, so neither
//! can drift from what the library writes.

use memory_buffers::internals::layout as library;

/// A pointer width, and with it a locator layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Width {
    Bits32,
    Bits64,
}

impl Width {
    /// The inspector's own width.
    pub(crate) const NATIVE: Width = if cfg!(target_pointer_width = "64") {
        Width::Bits64
    } else {
        Width::Bits32
    };

    pub(crate) const fn bits(self) -> u32 {
        match self {
            Width::Bits32 => 32,
            Width::Bits64 => 64,
        }
    }

    /// The locator layout a process of this width writes.
    pub(crate) const fn layout(self) -> &'static Layout {
        match self {
            Width::Bits32 => &LAYOUT_32,
            Width::Bits64 => &LAYOUT_64,
        }
    }

    /// Whether this inspector can read a process of this width: the
    /// process's addresses must fit in our `usize` for `process_vm_readv`
    /// or `ReadProcessMemory` to reach them.
    pub(crate) const fn is_readable_here(self) -> bool {
        self.bits() <= usize::BITS
    }
}

/// Byte offsets and sizes of a locator's fields for one pointer width.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Size of a pointer field.
    pub(crate) pointer: usize,
    pub(crate) header_size: usize,
    pub(crate) item_size: usize,
    /// Items one locator holds: `(LOCATOR_SIZE - header_size) / item_size`.
    pub(crate) max_items: usize,
    pub(crate) this_address: usize,
    pub(crate) next_locator: usize,
    pub(crate) lock: usize,
    pub(crate) flags: usize,
    pub(crate) item_count: usize,
    /// Offsets within an item.
    pub(crate) item_base_address: usize,
    pub(crate) item_size_field: usize,
    pub(crate) item_position: usize,
    pub(crate) item_taken: usize,
}

const fn capacity(header_size: usize, item_size: usize) -> usize {
    (library::LOCATOR_SIZE - header_size) / item_size
}

/// `FORMAT.md`, 64-bit columns: a 24-byte header, 20-byte items.
const LAYOUT_64: Layout = Layout {
    pointer: 8,
    header_size: 24,
    item_size: 20,
    max_items: capacity(24, 20),
    this_address: 0,
    next_locator: 8,
    lock: 16,
    flags: 20,
    item_count: 21,
    item_base_address: 0,
    item_size_field: 8,
    item_position: 12,
    item_taken: 16,
};

/// `FORMAT.md`, 32-bit columns: a 16-byte header, 16-byte items.
const LAYOUT_32: Layout = Layout {
    pointer: 4,
    header_size: 16,
    item_size: 16,
    max_items: capacity(16, 16),
    this_address: 0,
    next_locator: 4,
    lock: 8,
    flags: 12,
    item_count: 13,
    item_base_address: 0,
    item_size_field: 4,
    item_position: 8,
    item_taken: 12,
};

// The table of the inspector's own width is the library's layout, field by
// field: a library whose structs changed stops this crate from building.
const _: () = {
    let ours = Width::NATIVE.layout();
    assert!(ours.pointer == size_of::<usize>());
    assert!(ours.header_size == library::HEADER_SIZE);
    assert!(ours.item_size == library::ITEM_SIZE);
    assert!(ours.max_items == library::MAX_ITEMS);
    assert!(ours.this_address == library::THIS_ADDRESS);
    assert!(ours.next_locator == library::NEXT_LOCATOR);
    assert!(ours.lock == library::LOCK);
    assert!(ours.flags == library::FLAGS);
    assert!(ours.item_count == library::ITEM_COUNT);
    assert!(ours.item_base_address == library::ITEM_BASE_ADDRESS);
    assert!(ours.item_size_field == library::ITEM_SIZE_FIELD);
    assert!(ours.item_position == library::ITEM_POSITION);
    assert!(ours.item_taken == library::ITEM_TAKEN);
};

/// The width of an ELF program from the start of its file: `EI_CLASS`, the
/// byte after the 4-byte magic, is 1 for 32-bit and 2 for 64-bit objects.
/// `None` if the bytes are not an ELF header.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn from_elf_header(header: &[u8]) -> Option<Width> {
    match header {
        [0x7f, b'E', b'L', b'F', 1, ..] => Some(Width::Bits32),
        [0x7f, b'E', b'L', b'F', 2, ..] => Some(Width::Bits64),
        _ => None,
    }
}

/// `ADDR_LIMIT_3GB` of `<linux/personality.h>` (`setarch --3gb`).
const ADDR_LIMIT_3GB: u32 = 0x0800_0000;

/// A process's personality from the text of `/proc/<pid>/personality`
/// (eight hexadecimal digits and a newline).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_personality(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim(), 16).ok()
}

/// The highest address (inclusive) of a 32-bit Linux process: under a
/// 64-bit kernel the compat `TASK_SIZE`, 4 GiB less one page, or 3 GiB with
/// the `ADDR_LIMIT_3GB` personality; under a 32-bit kernel the user part
/// of the default 3 GiB split. The library computes the same in that
/// process (`highest_user_address`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn highest_address_of_32_bit_linux_process(
    kernel_is_64_bit: bool,
    personality: u32,
) -> usize {
    if kernel_is_64_bit && personality & ADDR_LIMIT_3GB == 0 {
        0xffff_dfff
    } else {
        0xbfff_ffff
    }
}

/// The width of a Windows process from `IsWow64Process` of the inspector
/// and of the process. A 64-bit inspector sees a 32-bit process as WOW64;
/// a 32-bit inspector under WOW64 is on a 64-bit system, where a process
/// that is not WOW64 is 64-bit; on a 32-bit system every process is 32-bit.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn from_wow64(
    inspector: Width,
    inspector_is_wow64: bool,
    process_is_wow64: bool,
) -> Width {
    match inspector {
        Width::Bits64 if process_is_wow64 => Width::Bits32,
        Width::Bits64 => Width::Bits64,
        Width::Bits32 if inspector_is_wow64 && !process_is_wow64 => Width::Bits64,
        Width::Bits32 => Width::Bits32,
    }
}

/// `IMAGE_FILE_LARGE_ADDRESS_AWARE` in a PE file header's characteristics.
const LARGE_ADDRESS_AWARE: u16 = 0x0020;

/// Whether a Windows program (the first bytes of its `.exe` file) is
/// large-address-aware: `MZ`, the offset of the `PE\0\0` signature at
/// 0x3C, then the file header, whose characteristics (a u16) follow the
/// signature by 22 bytes. `None` if the bytes are not such a header.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn pe_is_large_address_aware(image: &[u8]) -> Option<bool> {
    if image.get(..2)? != b"MZ" {
        return None;
    }
    let offset = u32::from_le_bytes(image.get(0x3c..0x40)?.try_into().ok()?);
    let signature = usize::try_from(offset).ok()?;
    if image.get(signature..signature.checked_add(4)?)? != b"PE\0\0" {
        return None;
    }
    let at = signature.checked_add(22)?;
    let characteristics = u16::from_le_bytes(image.get(at..at.checked_add(2)?)?.try_into().ok()?);
    Some(characteristics & LARGE_ADDRESS_AWARE != 0)
}

/// The highest address (inclusive) of a 32-bit Windows process, as its
/// `GetSystemInfo` reports it (and the library uses): 2 GiB less 64 KiB
/// unless its image is large-address-aware; 4 GiB less 64 KiB if it is,
/// under a 64-bit system. Under a 32-bit system a large-address-aware
/// process gets what the system gives such processes (3 GiB with `/3GB`),
/// which is what this inspector, linked large-address-aware as Rust links
/// every 32-bit Windows program, sees as its own top: `inspector_highest`.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn highest_address_of_32_bit_windows_process(
    large_address_aware: bool,
    system_is_64_bit: bool,
    inspector_highest: usize,
) -> usize {
    match (large_address_aware, system_is_64_bit) {
        (false, _) => 0x7ffe_ffff,
        (true, true) => 0xfffe_ffff,
        (true, false) => inspector_highest.max(0x7ffe_ffff),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layouts_are_the_specified_ones() {
        // FORMAT.md, section 2, written out again: a typo in either table
        // above fails here, whichever width this test runs on.
        let expected_64 = Layout {
            pointer: 8,
            header_size: 24,
            item_size: 20,
            max_items: 203,
            this_address: 0,
            next_locator: 8,
            lock: 16,
            flags: 20,
            item_count: 21,
            item_base_address: 0,
            item_size_field: 8,
            item_position: 12,
            item_taken: 16,
        };
        let expected_32 = Layout {
            pointer: 4,
            header_size: 16,
            item_size: 16,
            max_items: 255,
            this_address: 0,
            next_locator: 4,
            lock: 8,
            flags: 12,
            item_count: 13,
            item_base_address: 0,
            item_size_field: 4,
            item_position: 8,
            item_taken: 12,
        };
        assert_eq!(Width::Bits64.layout(), &expected_64);
        assert_eq!(Width::Bits32.layout(), &expected_32);
        // The last item ends inside the locator: 12 spare bytes on 64-bit,
        // none on 32-bit.
        for (width, spare) in [(Width::Bits64, 12), (Width::Bits32, 0)] {
            let layout = width.layout();
            let end = layout.header_size + layout.max_items * layout.item_size;
            assert_eq!(library::LOCATOR_SIZE - end, spare, "{width:?}");
        }
    }

    #[test]
    fn the_native_width_is_the_libraries() {
        assert_eq!(Width::NATIVE.bits(), usize::BITS);
        assert_eq!(Width::NATIVE.layout().max_items, library::MAX_ITEMS);
        assert!(Width::Bits32.is_readable_here());
        assert_eq!(Width::Bits64.is_readable_here(), usize::BITS == 64);
    }

    #[test]
    fn elf_headers_name_their_class() {
        // The first bytes of real programs: `/bin/true` of x86-64 and
        // i386 Debian.
        let elf64 = [
            0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0x3e, 0,
        ];
        let elf32 = [
            0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 3, 0,
        ];
        assert_eq!(from_elf_header(&elf64), Some(Width::Bits64));
        assert_eq!(from_elf_header(&elf32), Some(Width::Bits32));
        assert_eq!(from_elf_header(&elf32[..5]), Some(Width::Bits32));
        for bad in [
            &elf32[..4],
            &[][..],
            b"#!/bin/sh\n",
            &[0x7f, b'E', b'L', b'F', 0, 1],
            &[0x7f, b'E', b'L', b'F', 3, 1],
            &[0x7f, b'E', b'L', b'G', 1, 1],
        ] {
            assert_eq!(from_elf_header(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn personalities_parse_and_the_3gb_limit_lowers_the_top() {
        assert_eq!(parse_personality("00000000\n"), Some(0));
        assert_eq!(parse_personality("08000000\n"), Some(ADDR_LIMIT_3GB));
        assert_eq!(parse_personality("0800000x\n"), None);
        assert_eq!(parse_personality(""), None);
        assert_eq!(
            highest_address_of_32_bit_linux_process(true, 0),
            0xffff_dfff
        );
        // `PER_LINUX32` (8) alone does not limit the space.
        assert_eq!(
            highest_address_of_32_bit_linux_process(true, 8),
            0xffff_dfff
        );
        assert_eq!(
            highest_address_of_32_bit_linux_process(true, ADDR_LIMIT_3GB | 8),
            0xbfff_ffff
        );
        assert_eq!(
            highest_address_of_32_bit_linux_process(false, 0),
            0xbfff_ffff
        );
        // A 32-bit top ends a page: one more byte is the start of a page.
        for top in [0xffff_dfff_usize, 0xbfff_ffff] {
            assert_eq!((top as u64 + 1) % 4096, 0, "{top:#x}");
        }
    }

    #[test]
    fn wow64_tells_the_width_from_either_inspector() {
        use Width::{Bits32, Bits64};
        // (inspector, inspector is WOW64, process is WOW64) -> process.
        for (inspector, ours, theirs, expected) in [
            (Bits64, false, true, Bits32),
            (Bits64, false, false, Bits64),
            (Bits32, true, true, Bits32),
            (Bits32, true, false, Bits64),
            (Bits32, false, false, Bits32),
        ] {
            assert_eq!(
                from_wow64(inspector, ours, theirs),
                expected,
                "{inspector:?} {ours} {theirs}"
            );
        }
    }

    /// The first bytes of a PE image: DOS header, `e_lfanew` at 0x3C, the
    /// signature and the file header (i386 machine, characteristics).
    fn pe_image(signature_at: usize, characteristics: u16) -> Vec<u8> {
        let mut image = vec![0u8; signature_at + 24];
        image[..2].copy_from_slice(b"MZ");
        image[0x3c..0x40].copy_from_slice(&(signature_at as u32).to_le_bytes());
        image[signature_at..signature_at + 4].copy_from_slice(b"PE\0\0");
        image[signature_at + 4..signature_at + 6].copy_from_slice(&0x014cu16.to_le_bytes());
        image[signature_at + 22..signature_at + 24].copy_from_slice(&characteristics.to_le_bytes());
        image
    }

    #[test]
    fn pe_headers_say_whether_they_are_large_address_aware() {
        // 0x0102: executable, 32-bit machine; 0x0122 adds the flag.
        assert_eq!(
            pe_is_large_address_aware(&pe_image(0x80, 0x0122)),
            Some(true)
        );
        assert_eq!(
            pe_is_large_address_aware(&pe_image(0x80, 0x0102)),
            Some(false)
        );
        assert_eq!(
            pe_is_large_address_aware(&pe_image(0xf8, 0x0020)),
            Some(true)
        );
        let cut = pe_image(0x80, 0x0122);
        assert_eq!(pe_is_large_address_aware(&cut[..0x80 + 23]), None);
        let mut no_signature = pe_image(0x80, 0x0122);
        no_signature[0x81] = b'X';
        assert_eq!(pe_is_large_address_aware(&no_signature), None);
        let mut no_magic = pe_image(0x80, 0x0122);
        no_magic[0] = b'Z';
        assert_eq!(pe_is_large_address_aware(&no_magic), None);
        // A signature offset beyond the bytes, or near the end of the
        // address space, is refused without overflowing.
        let mut far = pe_image(0x80, 0x0122);
        far[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pe_is_large_address_aware(&far), None);
        assert_eq!(pe_is_large_address_aware(b"MZ"), None);
    }

    #[test]
    fn a_32_bit_windows_process_reaches_2_or_4_gib() {
        assert_eq!(
            highest_address_of_32_bit_windows_process(false, true, usize::MAX),
            0x7ffe_ffff
        );
        assert_eq!(
            highest_address_of_32_bit_windows_process(true, true, 0x7ffe_ffff),
            0xfffe_ffff
        );
        assert_eq!(
            highest_address_of_32_bit_windows_process(true, false, 0xbffe_ffff),
            0xbffe_ffff
        );
        assert_eq!(
            highest_address_of_32_bit_windows_process(true, false, 0x7ffe_ffff),
            0x7ffe_ffff
        );
        assert_eq!(
            highest_address_of_32_bit_windows_process(false, false, 0xbffe_ffff),
            0x7ffe_ffff
        );
    }
}
