//! A parser for `/proc/self/maps`, free of system calls.
//!
//! A large game has tens of thousands of mappings, so the file is read in
//! chunks into one reusable buffer and parsed in place: no allocation per
//! line, no limit on the file's size, and a line longer than the buffer only
//! makes the buffer grow once.

use std::io;
use std::ops::ControlFlow;

/// One line of `/proc/self/maps`, without the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MapsEntry {
    /// First address of the mapping.
    pub(crate) start: usize,
    /// One past the last address of the mapping.
    pub(crate) end: usize,
    /// Offset into the mapped file.
    pub(crate) offset: u64,
    /// Major number of the file's device.
    pub(crate) dev_major: u32,
    /// Minor number of the file's device.
    pub(crate) dev_minor: u32,
    /// The file's inode, 0 for anonymous memory.
    pub(crate) inode: u64,
}

fn split_field(line: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = line.iter().position(|&byte| byte == separator)?;
    Some((&line[..at], &line[at + 1..]))
}

fn parse_number(digits: &[u8], radix: u32) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 + 4 {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in digits {
        let digit = (digit as char).to_digit(radix)?;
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit))?;
    }
    Some(value)
}

/// Parses one line (without its newline). Returns `None` for anything that is
/// not a well-formed maps line, including an empty or reversed range.
pub(crate) fn parse_maps_line(line: &[u8]) -> Option<MapsEntry> {
    let (start, rest) = split_field(line, b'-')?;
    let (end, rest) = split_field(rest, b' ')?;
    let (permissions, rest) = split_field(rest, b' ')?;
    let (offset, rest) = split_field(rest, b' ')?;
    let (device, rest) = split_field(rest, b' ')?;
    let inode = match split_field(rest, b' ') {
        Some((inode, _path)) => inode,
        None => rest,
    };
    let (dev_major, dev_minor) = split_field(device, b':')?;
    if permissions.len() != 4 {
        return None;
    }
    let start = usize::try_from(parse_number(start, 16)?).ok()?;
    let end = usize::try_from(parse_number(end, 16)?).ok()?;
    if start >= end {
        return None;
    }
    Some(MapsEntry {
        start,
        end,
        offset: parse_number(offset, 16)?,
        dev_major: u32::try_from(parse_number(dev_major, 16)?).ok()?,
        dev_minor: u32::try_from(parse_number(dev_minor, 16)?).ok()?,
        inode: parse_number(inode, 10)?,
    })
}

/// Size of the first read buffer; big enough for about a thousand lines.
const INITIAL_BUFFER: usize = 64 * 1024;

/// Reads maps text through `read` (which behaves like `io::Read::read`) and
/// calls `visit` for every well-formed line until it breaks or the text ends.
///
/// `buffer` is reused between calls to avoid allocating; it grows only when a
/// single line is longer than it.
pub(crate) fn for_each_entry(
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    buffer: &mut Vec<u8>,
    mut visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> io::Result<()> {
    if buffer.len() < INITIAL_BUFFER {
        buffer.resize(INITIAL_BUFFER, 0);
    }
    // `filled` bytes at the front of `buffer` hold an incomplete line.
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            let grown = buffer.len() * 2;
            buffer.resize(grown, 0);
        }
        let count = match read(&mut buffer[filled..]) {
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if count == 0 {
            if filled > 0
                && let Some(entry) = parse_maps_line(&buffer[..filled])
            {
                let _ = visit(&entry);
            }
            return Ok(());
        }
        let end = filled + count;
        let mut line_start = 0;
        while let Some(length) = buffer[line_start..end]
            .iter()
            .position(|&byte| byte == b'\n')
        {
            if let Some(entry) = parse_maps_line(&buffer[line_start..line_start + length])
                && visit(&entry).is_break()
            {
                return Ok(());
            }
            line_start += length + 1;
        }
        buffer.copy_within(line_start..end, 0);
        filled = end - line_start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 1234                       /usr/bin/game
7f1c2e600000-7f1c2e800000 rwxp 00000000 00:00 0 
7ffd1c1f0000-7ffd1c212000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
7f00000000-7f00001000 rw-s 00000000 00:1a 98765 /tmp/.reloaded/memory.buffers/Reloaded.Memory.Buffers.MemoryBuffer, PID 1";

    fn collect(text: &[u8], chunk: usize) -> Vec<MapsEntry> {
        let mut remaining = text;
        let mut entries = Vec::new();
        let mut buffer = Vec::new();
        for_each_entry(
            |out| {
                let count = chunk.min(out.len()).min(remaining.len());
                out[..count].copy_from_slice(&remaining[..count]);
                remaining = &remaining[count..];
                Ok(count)
            },
            &mut buffer,
            |entry| {
                entries.push(*entry);
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        entries
    }

    #[test]
    fn parses_every_field_of_literal_lines() {
        let entries = collect(SAMPLE.as_bytes(), 7);
        assert_eq!(entries.len(), 5);
        assert_eq!(
            entries[0],
            MapsEntry {
                start: 0x55d0_c0a0_0000,
                end: 0x55d0_c0a2_1000,
                offset: 0,
                dev_major: 8,
                dev_minor: 1,
                inode: 1234
            }
        );
        assert_eq!(entries[3].start, 0xffff_ffff_ff60_0000);
        assert_eq!(
            (entries[4].dev_major, entries[4].dev_minor, entries[4].inode),
            (0, 0x1a, 98765)
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        for line in [
            "",
            "garbage",
            "1000-0500 rw-p 0 00:00 0",
            "1000-1000 rw-p 0 00:00 0",
            "1000-2000 rw-p 0 0000 0",
            "1000-2000 rwp 0 00:00 0",
            "1000-2000 rw-p 0 00:00 x",
            "10000000000000000000-2000 rw-p 0 00:00 0",
        ] {
            assert_eq!(parse_maps_line(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn a_line_longer_than_the_buffer_grows_it_once() {
        let long_path = "x".repeat(INITIAL_BUFFER * 3);
        let text = format!("1000-2000 rw-p 0 00:00 0 {long_path}\n3000-4000 rw-p 0 00:00 0\n");
        let entries = collect(text.as_bytes(), usize::MAX);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].start, 0x3000);
    }

    #[test]
    fn visiting_stops_when_asked() {
        let mut remaining = SAMPLE.as_bytes();
        let mut seen = 0;
        for_each_entry(
            |out| {
                let count = out.len().min(remaining.len());
                out[..count].copy_from_slice(&remaining[..count]);
                remaining = &remaining[count..];
                Ok(count)
            },
            &mut Vec::new(),
            |_| {
                seen += 1;
                ControlFlow::Break(())
            },
        )
        .unwrap();
        assert_eq!(seen, 1);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..300) {
            let _ = collect(&bytes, chunk);
        }

        #[test]
        fn valid_lines_round_trip(
            lines in proptest::collection::vec(
                (0usize..1 << 46, 1usize..1 << 30, any::<u32>(), 0u32..256, 0u32..1 << 20, any::<u64>(), "[ -~]{0,40}"),
                0..50,
            ),
            chunk in 1usize..500,
        ) {
            let mut text = String::new();
            let mut expected = Vec::new();
            for (start, length, offset, major, minor, inode, path) in lines {
                let entry = MapsEntry { start, end: start + length, offset: u64::from(offset), dev_major: major, dev_minor: minor, inode };
                text.push_str(&format!("{:x}-{:x} rw-p {:08x} {:02x}:{:02x} {} {}\n", entry.start, entry.end, entry.offset, major, minor, inode, path));
                expected.push(entry);
            }
            prop_assert_eq!(collect(text.as_bytes(), chunk), expected);
        }
    }
}
