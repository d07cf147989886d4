//! Fuzzes the `/proc/self/maps` parser.
//!
//! Properties:
//! - arbitrary bytes, read in arbitrary chunk sizes, never panic, and the
//!   streaming reader finds exactly the entries that parsing each line on
//!   its own finds (chunking and buffer growth change nothing);
//! - every entry it accepts has `start < end` and survives a round trip
//!   through the kernel's line format;
//! - well-formed lines built from the input (any path text) parse back to
//!   the entries they were built from, and exactly those whose path is
//!   `[stack]` (after the kernel's padding) grow down.

#![no_main]

use libfuzzer_sys::fuzz_target;
use memory_buffers::internals::{Access, MapsEntry, for_each_entry, parse_maps_line};
use std::ops::ControlFlow;

/// Streams `text` through `for_each_entry`, `chunk` bytes per read.
fn stream(text: &[u8], chunk: usize) -> Vec<MapsEntry> {
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
    .expect("reading from a slice cannot fail");
    entries
}

/// The line the kernel would print for `entry`, with `path`.
fn format_line(entry: &MapsEntry, path: &str) -> String {
    let flag = |set: bool, letter: char| if set { letter } else { '-' };
    let access = entry.access;
    format!(
        "{:x}-{:x} {}{}{}p {:08x} {:02x}:{:02x} {} {}",
        entry.start,
        entry.end,
        flag(access.read, 'r'),
        flag(access.write, 'w'),
        flag(access.execute, 'x'),
        entry.offset,
        entry.dev_major,
        entry.dev_minor,
        entry.inode,
        path
    )
}

/// Reads fixed-size integers off the front of the input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*head))
    }

    fn u8(&mut self) -> Option<u8> {
        let (&head, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(head)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, text)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(control);

    // Arbitrary text: streaming equals line-by-line parsing.
    let streamed = stream(text, chunk);
    let by_line: Vec<MapsEntry> = text
        .split(|&byte| byte == b'\n')
        .filter_map(parse_maps_line)
        .collect();
    assert_eq!(streamed, by_line);
    for entry in &streamed {
        assert!(entry.start < entry.end);
        // The main thread's stack is known by its path alone.
        let path = if entry.grows_down { "[stack]" } else { "" };
        assert_eq!(
            parse_maps_line(format_line(entry, path).as_bytes()),
            Some(*entry)
        );
    }

    // Well-formed lines built from the same bytes round-trip.
    let mut input = Input(text);
    let mut expected = Vec::new();
    let mut lines = String::new();
    while let (Some(start), Some(length), Some(offset), Some(device), Some(inode), Some(path_len)) = (
        input.u64(),
        input.u64(),
        input.u64(),
        input.u64(),
        input.u64(),
        input.u8(),
    ) {
        let start = start as usize;
        let Some(end) = start.checked_add(1 + (length as usize) % (usize::MAX - start).max(1))
        else {
            continue;
        };
        if end <= start {
            continue;
        }
        let mut entry = MapsEntry {
            start,
            end,
            offset,
            dev_major: (device >> 32) as u32,
            dev_minor: device as u32,
            inode,
            // Three bits of the inode pick the rights, so every mix occurs.
            access: Access {
                read: inode & 1 != 0,
                write: inode & 2 != 0,
                execute: inode & 4 != 0,
            },
            grows_down: false,
        };
        // Paths may contain spaces and any printable text, never a newline.
        let path: String = (0..path_len % 48)
            .filter_map(|_| input.u8())
            .map(|byte| char::from(b' ' + byte % 95))
            .collect();
        // Some lines are the main thread's stack, after the kernel's
        // padding: only that exact path grows down.
        let path = if path_len % 5 == 0 {
            format!("{}[stack]", " ".repeat(usize::from(path_len % 20)))
        } else {
            path
        };
        entry.grows_down = path.trim_start_matches(' ') == "[stack]";
        lines.push_str(&format_line(&entry, &path));
        lines.push('\n');
        expected.push(entry);
    }
    assert_eq!(stream(lines.as_bytes(), chunk), expected);
});
