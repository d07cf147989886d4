//! A parser for `/proc/self/maps`, free of system calls.
//!
//! A large game has tens of thousands of mappings, so the file is read in
//! chunks into one reusable buffer and parsed in place: no allocation per
//! line, and a line longer than the buffer only makes the buffer grow once.
//!
//! What is read is capped all the same: `/proc/self/maps` can be anything a
//! bind mount puts there (`/dev/zero` never ends and has no newline), and
//! the library must give up with an error rather than grow a buffer until
//! the host process aborts. Real lines are at most a few KiB (a path is at
//! most 4096 bytes) and a real map a few tens of MiB.

use std::io;
use std::ops::ControlFlow;

/// One line of `/proc/self/maps`, without the path.
///
/// `pub` (in a crate-private module) only so that `internals` can re-export
/// it for the fuzz targets and the inspector instead of copying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapsEntry {
    /// First address of the mapping.
    pub start: usize,
    /// One past the last address of the mapping.
    pub end: usize,
    /// Offset into the mapped file.
    pub offset: u64,
    /// Major number of the file's device.
    pub dev_major: u32,
    /// Minor number of the file's device.
    pub dev_minor: u32,
    /// The file's inode, 0 for anonymous memory.
    pub inode: u64,
    /// Read, write and execute rights (the `rwx` of the permissions field).
    pub access: Access,
    /// Whether this is the main thread's stack (`[stack]`), which the
    /// kernel grows down into the free space below it on demand.
    pub grows_down: bool,
}

impl MapsEntry {
    /// An entry for `[start, end)` that no file backs, with `access`: what
    /// a system without maps lines (Windows' `VirtualQuery`, a region walk)
    /// knows of a mapping.
    pub(crate) const fn unnamed(start: usize, end: usize, access: Access) -> MapsEntry {
        MapsEntry {
            start,
            end,
            offset: 0,
            dev_major: 0,
            dev_minor: 0,
            inode: 0,
            access,
            grows_down: false,
        }
    }
}

/// Access rights of a mapping, as its maps line shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// `r`: the pages may be read.
    pub read: bool,
    /// `w`: the pages may be written.
    pub write: bool,
    /// `x`: the pages may be executed.
    pub execute: bool,
}

impl Access {
    /// Parses the first three characters of a permissions field (`r-xp`).
    fn parse(permissions: &[u8]) -> Option<Access> {
        let flag = |byte: u8, set: u8| match byte {
            b'-' => Some(false),
            _ if byte == set => Some(true),
            _ => None,
        };
        Some(Access {
            read: flag(*permissions.first()?, b'r')?,
            write: flag(*permissions.get(1)?, b'w')?,
            execute: flag(*permissions.get(2)?, b'x')?,
        })
    }
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
    let (inode, path) = match split_field(rest, b' ') {
        Some((inode, path)) => (inode, path.trim_ascii_start()),
        None => (rest, &b""[..]),
    };
    let (dev_major, dev_minor) = split_field(device, b':')?;
    if permissions.len() != 4 {
        return None;
    }
    let access = Access::parse(permissions)?;
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
        access,
        grows_down: path == b"[stack]",
    })
}

/// Size of the first read buffer: one page, about forty lines, the whole
/// map of a small process. Zero-filling a 64 KiB buffer up front used to
/// cost the first `get_buffer` 16 page faults and a third of its resident
/// memory for a 3 KiB map.
const INITIAL_BUFFER: usize = 4 * 1024;

/// While reads keep filling the whole buffer (a large map), it doubles up
/// to this size, so that tens of thousands of lines take few system calls.
const BULK_BUFFER: usize = 64 * 1024;

/// The read buffer never grows beyond this: a longer line is not a line of
/// a real maps file.
pub(crate) const MAX_LINE: usize = 1024 * 1024;

/// Reading stops with an error after this many bytes: a million mappings
/// (far above the default `vm.max_map_count` of 65530) take about 100 MiB.
pub(crate) const MAX_TOTAL: u64 = 256 * 1024 * 1024;

/// Grows `buffer` to `len` bytes without aborting when memory is short.
fn grow(buffer: &mut Vec<u8>, len: usize) -> io::Result<()> {
    buffer
        .try_reserve_exact(len.saturating_sub(buffer.len()))
        .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    buffer.resize(len, 0);
    Ok(())
}

/// Reads maps text through `read` (which behaves like `io::Read::read`) and
/// calls `visit` for every well-formed line until it breaks or the text ends.
///
/// `buffer` is reused between calls to avoid allocating; it grows when a
/// single line is longer than it, and, up to [`BULK_BUFFER`], while reads
/// keep filling it.
///
/// # Errors
///
/// The error of `read`; `InvalidData` for a line longer than [`MAX_LINE`]
/// or text longer than [`MAX_TOTAL`]; `OutOfMemory` when the buffer cannot
/// grow.
pub(crate) fn for_each_entry(
    read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    buffer: &mut Vec<u8>,
    visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> io::Result<()> {
    for_each_entry_within(read, buffer, visit, MAX_TOTAL)
}

/// [`for_each_entry`] with a cap of `max_total` bytes instead of
/// [`MAX_TOTAL`].
fn for_each_entry_within(
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    buffer: &mut Vec<u8>,
    mut visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
    max_total: u64,
) -> io::Result<()> {
    if buffer.len() < INITIAL_BUFFER {
        grow(buffer, INITIAL_BUFFER)?;
    }
    // `filled` bytes at the front of `buffer` hold an incomplete line.
    let mut filled = 0;
    let mut total: u64 = 0;
    loop {
        if filled == buffer.len() {
            if buffer.len() >= MAX_LINE {
                return Err(io::Error::from(io::ErrorKind::InvalidData));
            }
            grow(buffer, (buffer.len() * 2).min(MAX_LINE))?;
        }
        let room = buffer.len() - filled;
        let count = match read(&mut buffer[filled..]) {
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        total = total.saturating_add(count as u64);
        if total > max_total {
            return Err(io::Error::from(io::ErrorKind::InvalidData));
        }
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
        if count == room && buffer.len() < BULK_BUFFER {
            // More text follows: fewer, larger reads. Best effort; the
            // buffer as it is still works when memory is short.
            let _ = grow(buffer, (buffer.len() * 2).min(BULK_BUFFER));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[cfg(target_pointer_width = "64")]
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

    /// A 32-bit process's map: its last page ends at 4 GiB exactly, where
    /// `end + 1` of an inclusive bound would wrap.
    const SAMPLE_32_BIT: &str = "\
56555000-56556000 r-xp 00001000 08:01 1234                       /usr/bin/game32
f7c00000-f7e20000 r--p 00000000 08:01 555                        /usr/lib/i386-linux-gnu/libc.so.6
fffdd000-ffffe000 rw-p 00000000 00:00 0                          [stack]
ffffe000-fffff000 r-xp 00000000 00:00 0                          [vdso]
fffff000-100000000 ---p 00000000 00:00 0                         [beyond]
";

    #[test]
    fn parses_a_32_bit_process_map_up_to_the_top() {
        let entries = collect(SAMPLE_32_BIT.as_bytes(), 5);
        let ranges: Vec<_> = entries
            .iter()
            .map(|entry| (entry.start, entry.end))
            .collect();
        #[cfg(target_pointer_width = "32")]
        let beyond: Vec<(usize, usize)> = Vec::new(); // 2^32 is no address here
        #[cfg(target_pointer_width = "64")]
        let beyond = vec![(0xffff_f000, 0x1_0000_0000)];
        let mut expected = vec![
            (0x5655_5000, 0x5655_6000),
            (0xf7c0_0000, 0xf7e2_0000),
            (0xfffd_d000, 0xffff_e000),
            (0xffff_e000, 0xffff_f000),
        ];
        expected.extend(beyond);
        assert_eq!(ranges, expected);
        assert_eq!(entries[0].offset, 0x1000);
        assert_eq!(entries[1].inode, 555);
        assert!(entries[3].access.execute && !entries[3].access.write);
        // Only the main thread's stack grows down.
        let growing: Vec<bool> = entries.iter().map(|entry| entry.grows_down).collect();
        assert_eq!(&growing[..4], [false, false, true, false]);
    }

    #[test]
    fn only_a_path_of_exactly_stack_grows_down() {
        let line = |path: &str| format!("10000-20000 rw-p 00000000 00:00 0 {path}");
        for (path, grows) in [
            ("                 [stack]", true),
            ("[stack]", true),
            ("[stack:1234]", false),
            ("/tmp/[stack]", false),
            ("[heap]", false),
            ("", false),
        ] {
            let entry = parse_maps_line(line(path).as_bytes()).unwrap();
            assert_eq!(entry.grows_down, grows, "{path:?}");
        }
    }

    /// Addresses above 4 GiB (a 64-bit process's map) fit only in a 64-bit
    /// `usize`; the 32-bit twin is the test above.
    #[cfg(target_pointer_width = "64")]
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
                inode: 1234,
                access: Access {
                    read: true,
                    write: false,
                    execute: false
                },
                grows_down: false,
            }
        );
        assert_eq!(entries[3].start, 0xffff_ffff_ff60_0000);
        let rights =
            |entry: &MapsEntry| (entry.access.read, entry.access.write, entry.access.execute);
        assert_eq!(rights(&entries[1]), (true, true, true));
        assert_eq!(rights(&entries[3]), (false, false, true));
        assert_eq!(
            (entries[4].dev_major, entries[4].dev_minor, entries[4].inode),
            (0, 0x1a, 98765)
        );
    }

    /// An Android process's map (39-bit addresses, as many arm64 kernels
    /// give): named anonymous mappings (`[anon:...]`, with spaces and
    /// colons) and a `dm` device are read like any other line.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn parses_an_android_map_with_named_anonymous_mappings() {
        const SAMPLE_ANDROID: &str = "\
5c4e2f5000-5c4e2f7000 r--p 00000000 fe:0f 1871                           /system/bin/app_process64
7b2a800000-7b2ac00000 rw-p 00000000 00:00 0                              [anon:scudo:primary]
7b3e9d1000-7b3e9d2000 ---p 00000000 00:00 0                              [anon:dalvik-main space (region space)]
7fe6c3e000-7fe6c5f000 rw-p 00000000 00:00 0                              [stack]
";
        let entries = collect(SAMPLE_ANDROID.as_bytes(), 7);
        let ranges: Vec<_> = entries
            .iter()
            .map(|entry| (entry.start, entry.end))
            .collect();
        assert_eq!(
            ranges,
            vec![
                (0x5c_4e2f_5000, 0x5c_4e2f_7000),
                (0x7b_2a80_0000, 0x7b_2ac0_0000),
                (0x7b_3e9d_1000, 0x7b_3e9d_2000),
                (0x7f_e6c3_e000, 0x7f_e6c5_f000),
            ]
        );
        assert_eq!(
            (entries[0].dev_major, entries[0].dev_minor, entries[0].inode),
            (0xfe, 0x0f, 1871)
        );
        assert_eq!(entries[2].access, Access::default());
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
            "1000-2000 wr-p 0 00:00 0",
            "1000-2000 rwq- 0 00:00 0",
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
    fn a_small_map_is_read_into_one_page_and_a_large_one_in_larger_reads() {
        let line = "1000-2000 rw-p 00000000 00:00 0\n";
        let small = line.repeat(10);
        let mut buffer = Vec::new();
        let mut remaining = small.as_bytes();
        for_each_entry(
            |out| {
                let count = out.len().min(remaining.len());
                out[..count].copy_from_slice(&remaining[..count]);
                remaining = &remaining[count..];
                Ok(count)
            },
            &mut buffer,
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
        assert_eq!(buffer.len(), INITIAL_BUFFER);
        let large = line.repeat(20_000);
        let mut remaining = large.as_bytes();
        let (mut reads, mut entries) = (0, 0);
        for_each_entry(
            |out| {
                reads += 1;
                let count = out.len().min(remaining.len());
                out[..count].copy_from_slice(&remaining[..count]);
                remaining = &remaining[count..];
                Ok(count)
            },
            &mut buffer,
            |_| {
                entries += 1;
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(entries, 20_000);
        assert_eq!(buffer.len(), BULK_BUFFER);
        assert!(reads < 2 * large.len() / BULK_BUFFER + 8, "{reads} reads");
    }

    #[test]
    fn visiting_stops_when_asked() {
        let mut remaining = SAMPLE_32_BIT.as_bytes();
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

    /// A bind-mounted `/dev/zero` in place of the maps
    /// file made the buffer double until the process aborted.
    #[test]
    fn an_endless_line_is_an_error_not_an_ever_growing_buffer() {
        let mut buffer = Vec::new();
        let mut read = 0usize;
        let result = for_each_entry(
            |out| {
                out.fill(0);
                read += out.len();
                Ok(out.len())
            },
            &mut buffer,
            |_| ControlFlow::Continue(()),
        );
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(buffer.len() <= MAX_LINE);
        assert!(read <= MAX_LINE);
    }

    #[test]
    fn endless_well_formed_lines_stop_at_the_total_cap() {
        const LINE: &[u8] = b"1000-2000 rw-p 00000000 00:00 0\n";
        let mut offset = 0usize;
        let mut read: u64 = 0;
        let mut entries: u64 = 0;
        const CAP: u64 = 4 << 20;
        let result = for_each_entry_within(
            |out| {
                for byte in out.iter_mut() {
                    *byte = LINE[offset % LINE.len()];
                    offset += 1;
                }
                read += out.len() as u64;
                Ok(out.len())
            },
            &mut Vec::new(),
            |_| {
                entries += 1;
                ControlFlow::Continue(())
            },
            CAP,
        );
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(read <= CAP + MAX_LINE as u64);
        assert!(entries > 0);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..300) {
            let _ = collect(&bytes, chunk);
        }

        #[test]
        fn valid_lines_round_trip(
            lines in proptest::collection::vec(
                (0usize..usize::MAX / 4, 1usize..1 << 30, any::<u32>(), 0u32..256, 0u32..1 << 20, any::<u64>(), "[ -~]{0,40}"),
                0..50,
            ),
            chunk in 1usize..500,
        ) {
            let mut text = String::new();
            let mut expected = Vec::new();
            for (start, length, offset, major, minor, inode, path) in lines {
                let entry = MapsEntry { start, end: start + length, offset: u64::from(offset), dev_major: major, dev_minor: minor, inode, access: Access { read: true, write: true, execute: false }, grows_down: false };
                text.push_str(&format!("{:x}-{:x} rw-p {:08x} {:02x}:{:02x} {} {}\n", entry.start, entry.end, entry.offset, major, minor, inode, path));
                expected.push(entry);
            }
            prop_assert_eq!(collect(text.as_bytes(), chunk), expected);
        }
    }
}
