//! A parser for FreeBSD's list of a process's mappings, free of system
//! calls so that it is tested on every host.
//!
//! FreeBSD has no `/proc` by default; `sysctl` `{CTL_KERN, KERN_PROC,
//! KERN_PROC_VMMAP, pid}` returns the mappings instead, as packed
//! `struct kinfo_vmentry` records (`<sys/user.h>`). Each record starts with
//! its own length, `kve_structsize`: the kernel cuts the 1024-byte path
//! after its NUL and rounds up to 8 bytes, so records are walked by that
//! length, never by `size_of::<kinfo_vmentry>()`. The layout is that of
//! FreeBSD 12 and later, the same on 32- and 64-bit systems (every 64-bit
//! field is naturally aligned).

use crate::space::maps::{Access, MapsEntry};
use std::ops::ControlFlow;

/// Offsets of the fields read, in bytes from the start of a record.
mod offset {
    pub(super) const STRUCT_SIZE: usize = 0;
    pub(super) const TYPE: usize = 4;
    pub(super) const START: usize = 8;
    pub(super) const END: usize = 16;
    pub(super) const OFFSET: usize = 24;
    pub(super) const VN_FILEID: usize = 32;
    pub(super) const PROTECTION: usize = 56;
    pub(super) const VN_FSID: usize = 88;
    /// `kve_path`, the last field; every record reaches at least here.
    pub(super) const PATH: usize = 136;
}

/// `KVME_TYPE_VNODE`: a mapping of a file.
const KVME_TYPE_VNODE: i32 = 2;

/// `KVME_PROT_READ`, `KVME_PROT_WRITE`, `KVME_PROT_EXEC`.
const KVME_PROT_READ: u32 = 1;
const KVME_PROT_WRITE: u32 = 2;
const KVME_PROT_EXEC: u32 = 4;

/// A record shorter than its fixed fields, or longer than what is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// A FreeBSD `dev_t` (64 bits) as the two halves [`MapsEntry`] keeps; the
/// file status of the rendezvous file is split the same way.
pub(crate) fn split_device(device: u64) -> (u32, u32) {
    ((device >> 32) as u32, device as u32)
}

fn read_u32(record: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&record[at..at + 4]);
    u32::from_ne_bytes(bytes)
}

fn read_u64(record: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&record[at..at + 8]);
    u64::from_ne_bytes(bytes)
}

/// Calls `visit` with each mapping in `bytes` (what the sysctl wrote), in
/// order, until it breaks. File mappings carry their file's inode
/// (`kve_vn_fileid`), device (`kve_vn_fsid`, which is what `stat` reports
/// as `st_dev`) and offset; anonymous ones have inode and device 0. Records
/// with an empty or reversed range are skipped.
///
/// # Errors
///
/// [`Malformed`] for a record whose length is shorter than its fixed
/// fields or longer than the bytes left; the records before it have been
/// visited.
pub(crate) fn for_each_entry(
    bytes: &[u8],
    mut visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> Result<(), Malformed> {
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < offset::PATH {
            return Err(Malformed);
        }
        let size = read_u32(rest, offset::STRUCT_SIZE) as usize;
        if size < offset::PATH || size > rest.len() {
            return Err(Malformed);
        }
        let (record, next) = rest.split_at(size);
        rest = next;
        let start = usize::try_from(read_u64(record, offset::START));
        let end = usize::try_from(read_u64(record, offset::END));
        let (Ok(start), Ok(end)) = (start, end) else {
            continue;
        };
        if start >= end {
            continue;
        }
        let is_file = read_u32(record, offset::TYPE) as i32 == KVME_TYPE_VNODE;
        let (dev_major, dev_minor) = if is_file {
            split_device(read_u64(record, offset::VN_FSID))
        } else {
            (0, 0)
        };
        let protection = read_u32(record, offset::PROTECTION);
        let entry = MapsEntry {
            start,
            end,
            access: Access {
                read: protection & KVME_PROT_READ != 0,
                write: protection & KVME_PROT_WRITE != 0,
                execute: protection & KVME_PROT_EXEC != 0,
            },
            offset: read_u64(record, offset::OFFSET),
            dev_major,
            dev_minor,
            inode: if is_file {
                read_u64(record, offset::VN_FILEID)
            } else {
                0
            },
            grows_down: false,
        };
        if visit(&entry).is_break() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One record as the kernel packs it: the fixed fields, the path with
    /// its NUL, rounded up to 8 bytes.
    fn record(kind: i32, start: u64, end: u64, inode: u64, fsid: u64, path: &str) -> Vec<u8> {
        record_with(
            kind,
            start,
            end,
            inode,
            fsid,
            path,
            KVME_PROT_READ | KVME_PROT_EXEC,
        )
    }

    fn record_with(
        kind: i32,
        start: u64,
        end: u64,
        inode: u64,
        fsid: u64,
        path: &str,
        protection: u32,
    ) -> Vec<u8> {
        let size = (offset::PATH + path.len() + 1).next_multiple_of(8);
        let mut bytes = vec![0u8; size];
        bytes[offset::STRUCT_SIZE..][..4].copy_from_slice(&(size as u32).to_ne_bytes());
        bytes[offset::TYPE..][..4].copy_from_slice(&kind.to_ne_bytes());
        bytes[offset::START..][..8].copy_from_slice(&start.to_ne_bytes());
        bytes[offset::END..][..8].copy_from_slice(&end.to_ne_bytes());
        bytes[offset::OFFSET..][..8].copy_from_slice(&0x2000u64.to_ne_bytes());
        bytes[offset::VN_FILEID..][..8].copy_from_slice(&inode.to_ne_bytes());
        bytes[offset::VN_FSID..][..8].copy_from_slice(&fsid.to_ne_bytes());
        bytes[offset::PROTECTION..][..4].copy_from_slice(&protection.to_ne_bytes());
        bytes[offset::PATH..][..path.len()].copy_from_slice(path.as_bytes());
        bytes
    }

    fn parse(bytes: &[u8]) -> (Vec<MapsEntry>, Result<(), Malformed>) {
        let mut entries = Vec::new();
        let result = for_each_entry(bytes, |entry| {
            entries.push(*entry);
            ControlFlow::Continue(())
        });
        (entries, result)
    }

    /// The first records of `procstat -v` of a small program: its text
    /// (a file), its data, and an anonymous mapping.
    fn small_process() -> Vec<u8> {
        let mut bytes = record(
            2,
            0x20_0000,
            0x20_1000,
            0x1f4a,
            0x6b00_ff00_0000_0071,
            "/bin/cat",
        );
        bytes.extend(record_with(
            1,
            0x20_1000,
            0x20_3000,
            0,
            0,
            "",
            KVME_PROT_READ | KVME_PROT_WRITE,
        ));
        bytes.extend(record(
            2,
            0x8000_0000,
            0x8000_1000,
            77,
            0x71,
            "/tmp/.reloaded/memory.buffers/Reloaded.Memory.Buffers.MemoryBuffer, PID 7",
        ));
        bytes
    }

    #[test]
    fn records_are_walked_by_their_own_length() {
        let (entries, result) = parse(&small_process());
        assert_eq!(result, Ok(()));
        assert_eq!(entries.len(), 3);
        assert_eq!((entries[0].start, entries[0].end), (0x20_0000, 0x20_1000));
        assert_eq!(entries[0].inode, 0x1f4a);
        assert_eq!(
            (entries[0].dev_major, entries[0].dev_minor),
            (0x6b00_ff00, 0x71)
        );
        assert_eq!(entries[0].offset, 0x2000);
        assert_eq!((entries[1].start, entries[1].end), (0x20_1000, 0x20_3000));
        assert_eq!(
            (entries[1].inode, entries[1].dev_minor),
            (0, 0),
            "anonymous"
        );
        assert_eq!(entries[2].inode, 77);
        assert_eq!(split_device(0x71), (0, 0x71));
    }

    #[test]
    fn a_break_stops_the_walk() {
        let mut seen = 0;
        let result = for_each_entry(&small_process(), |_| {
            seen += 1;
            ControlFlow::Break(())
        });
        assert_eq!((seen, result), (1, Ok(())));
    }

    #[test]
    fn malformed_records_end_the_walk_with_an_error() {
        let good = small_process();
        let first_len = record(2, 0x20_0000, 0x20_1000, 0x1f4a, 0, "/bin/cat").len();
        // Cut in the middle of the second record.
        let (entries, result) = parse(&good[..first_len + 40]);
        assert_eq!((entries.len(), result), (1, Err(Malformed)));
        // A length that runs past the end, and one shorter than the fields.
        for size in [u32::MAX, 100, 0] {
            let mut bad = good.clone();
            bad[first_len..first_len + 4].copy_from_slice(&size.to_ne_bytes());
            let (entries, result) = parse(&bad);
            assert_eq!((entries.len(), result), (1, Err(Malformed)), "size {size}");
        }
        assert_eq!(parse(&[]), (Vec::new(), Ok(())));
    }

    #[test]
    fn empty_and_reversed_ranges_are_skipped() {
        let mut bytes = record(1, 0x5000, 0x5000, 0, 0, "");
        bytes.extend(record(1, 0x9000, 0x5000, 0, 0, ""));
        bytes.extend(record(1, 0x9000, 0xa000, 0, 0, ""));
        let (entries, result) = parse(&bytes);
        assert_eq!(result, Ok(()));
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].start, entries[0].end), (0x9000, 0xa000));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = parse(&bytes);
        }
    }
}
