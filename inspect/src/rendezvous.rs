//! The checks that decide whether a rendezvous file names a live locator of
//! the inspected process (Linux), free of system calls.
//!
//! They are the library's own rules (`src/shared/rendezvous/unix.rs`, and the
//! hazards of `FORMAT.md`), applied from outside: the directories must belong
//! to the process's user or root, or be shared and sticky, and not be
//! writable by others otherwise; the file must be a regular file of the
//! process's user, one page long; its *this address* must be
//! locator-aligned and start a live mapping, at offset 0, of that very file
//! (same device and inode) in the process's `/proc/<pid>/maps`. The
//! directory and mapping rules are decided by the library's own functions
//! (`internals::rendezvous_directory_is_trusted`, `is_rendezvous_mapping`);
//! this module only adds the reason a check failed.

#![cfg(target_os = "linux")]

use memory_buffers::internals::layout::LOCATOR_SIZE;
use memory_buffers::internals::{self, MapsEntry};

/// The device and inode of the rendezvous file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    pub(crate) dev_major: u32,
    pub(crate) dev_minor: u32,
    pub(crate) inode: u64,
}

/// Splits a Linux `dev_t` into major and minor numbers (glibc's encoding,
/// which the kernel's `stat` follows).
pub(crate) fn split_device(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// The effective user id in the text of `/proc/<pid>/status`.
pub(crate) fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line["Uid:".len()..].split_whitespace().nth(1)?.parse().ok()
}

/// Whether a directory on the rendezvous path may hold the process's file:
/// the library's rule for its own directories.
pub(crate) fn check_directory(mode: u32, owner: u32, user: u32) -> Result<(), String> {
    if internals::rendezvous_directory_is_trusted(owner, mode, user) {
        return Ok(());
    }
    if owner != user && owner != 0 && mode & 0o7777 != 0o1777 {
        return Err(format!(
            "it belongs to user {owner}, not to the process's user {user} or root, \
             and is not shared with the sticky bit (mode {:o})",
            mode & 0o7777
        ));
    }
    Err(format!(
        "others may write to it without the sticky bit (mode {:o})",
        mode & 0o7777
    ))
}

/// Whether the rendezvous file (as `stat` describes it) may be the
/// process's: a regular file of its user, `expected_len` bytes long.
pub(crate) fn check_file(
    is_regular: bool,
    owner: u32,
    len: u64,
    user: u32,
    expected_len: u64,
) -> Result<(), String> {
    if !is_regular {
        return Err("it is not a regular file".into());
    }
    if owner != user {
        return Err(format!(
            "it belongs to user {owner}, not to the process's user {user}"
        ));
    }
    if len != expected_len {
        return Err(format!("it is {len} bytes long, not {expected_len}"));
    }
    Ok(())
}

/// Whether `this_address` starts a live mapping of `file` at offset 0, at
/// least one locator long, among the process's `entries`.
pub(crate) fn check_live_mapping(
    entries: &[MapsEntry],
    this_address: usize,
    file: FileIdentity,
) -> Result<(), String> {
    if this_address == 0 {
        return Err("its \"this address\" is 0 (never initialised)".into());
    }
    if !this_address.is_multiple_of(LOCATOR_SIZE) {
        return Err(format!(
            "its \"this address\" {this_address:#x} is not aligned to {LOCATOR_SIZE} bytes"
        ));
    }
    let Some(entry) = entries
        .iter()
        .find(|entry| entry.start <= this_address && this_address < entry.end)
    else {
        return Err(format!(
            "its \"this address\" {this_address:#x} is not mapped in the process \
             (a file left by an earlier process with the same id?)"
        ));
    };
    if internals::is_rendezvous_mapping(
        entry,
        this_address,
        file.dev_major,
        file.dev_minor,
        file.inode,
    ) {
        return Ok(());
    }
    if entry.end - entry.start < LOCATOR_SIZE && entry.start == this_address {
        return Err(format!(
            "the mapping at {this_address:#x} is shorter than a locator"
        ));
    }
    Err(format!(
        "its \"this address\" {this_address:#x} is not the start of the process's \
         mapping of the rendezvous file (a file left by an earlier process with \
         the same id, or forged?)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use memory_buffers::internals::parse_maps_line;

    const FILE: FileIdentity = FileIdentity {
        dev_major: 0,
        dev_minor: 0x2d,
        inode: 131_842,
    };

    fn entries(lines: &[&str]) -> Vec<MapsEntry> {
        lines
            .iter()
            .map(|line| parse_maps_line(line.as_bytes()).unwrap())
            .collect()
    }

    /// One process's `/proc/<pid>/maps` lines and the addresses the checks
    /// are tried on.
    struct Maps {
        lines: &'static [&'static str],
        /// Where the rendezvous file is mapped.
        locator: usize,
        /// The anonymous page after it.
        after: usize,
        /// The start of the program's first mapping.
        program: usize,
    }

    /// Lines as a real `/proc/<pid>/maps` shows them (recorded from a
    /// child of the integration test, paths shortened).
    #[cfg(target_pointer_width = "64")]
    const MAPS_64: Maps = Maps {
        lines: &[
            "55d0c9a00000-55d0c9a2a000 r--p 00000000 00:2d 2884 /work/target/debug/child",
            "7f3b2c3fe000-7f3b2c3ff000 rw-s 00000000 00:2d 131842 /tmp/.reloaded/memory.buffers/Reloaded.Memory.Buffers.MemoryBuffer, PID 4242",
            "7f3b2c3ff000-7f3b2c400000 rw-p 00000000 00:00 0",
        ],
        locator: 0x7f3b_2c3f_e000,
        after: 0x7f3b_2c3f_f000,
        program: 0x55d0_c9a0_0000,
    };

    /// The same for a 32-bit child under a 64-bit kernel: eight digits.
    const MAPS_32: Maps = Maps {
        lines: &[
            "56555000-5657f000 r--p 00000000 00:2d 2884 /work/target/i686-unknown-linux-gnu/debug/child",
            "f7f2e000-f7f2f000 rw-s 00000000 00:2d 131842 /tmp/.reloaded/memory.buffers/Reloaded.Memory.Buffers.MemoryBuffer, PID 4242",
            "f7f2f000-f7f30000 rw-p 00000000 00:00 0",
        ],
        locator: 0xf7f2_e000,
        after: 0xf7f2_f000,
        program: 0x5655_5000,
    };

    /// Every process this inspector can read: a 64-bit one reads both.
    fn all_maps() -> Vec<Maps> {
        #[cfg(target_pointer_width = "64")]
        return vec![MAPS_64, MAPS_32];
        #[cfg(target_pointer_width = "32")]
        return vec![MAPS_32];
    }

    #[test]
    fn the_live_mapping_of_the_file_is_accepted() {
        for maps in all_maps() {
            assert_eq!(
                check_live_mapping(&entries(maps.lines), maps.locator, FILE),
                Ok(()),
                "{:#x}",
                maps.locator
            );
        }
    }

    #[test]
    fn addresses_that_are_not_the_files_mapping_are_refused() {
        for maps in all_maps() {
            let entries = entries(maps.lines);
            for (address, reason) in [
                (0, "never initialised"),
                (maps.locator + 8, "not aligned"),
                (0x1000, "not mapped"),
                (maps.after, "not the start of"),
                (maps.program, "not the start of"),
            ] {
                let why = check_live_mapping(&entries, address, FILE).unwrap_err();
                assert!(why.contains(reason), "{address:#x}: {why}");
            }
            let other_file = FileIdentity { inode: 1, ..FILE };
            assert!(check_live_mapping(&entries, maps.locator, other_file).is_err());
            let other_device = FileIdentity {
                dev_minor: 0x2e,
                ..FILE
            };
            assert!(check_live_mapping(&entries, maps.locator, other_device).is_err());
            // The file's page at an offset: the same line, offset 0x1000.
            let line = maps.lines[1].replacen(" 00000000 ", " 00001000 ", 1);
            let offset = vec![parse_maps_line(line.as_bytes()).unwrap()];
            assert!(check_live_mapping(&offset, maps.locator, FILE).is_err());
        }
    }

    #[test]
    fn devices_split_as_glibc_does() {
        assert_eq!(split_device(0x2d), (0, 0x2d));
        assert_eq!(split_device(0x0803), (8, 3));
        let dev = (0x345 << 8) | (0x12000 << 32) | 0x78 | (0x600 << 12);
        assert_eq!(split_device(dev), (0x12345, 0x678));
    }

    #[test]
    fn the_effective_uid_is_the_second_field() {
        let status = "Name:\tchild\nUmask:\t0022\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\n";
        assert_eq!(effective_uid(status), Some(1001));
        assert_eq!(effective_uid("Name:\tx\n"), None);
        assert_eq!(effective_uid("Uid:\tx\ty\n"), None);
    }

    #[test]
    fn directories_follow_the_librarys_trust_rule() {
        assert_eq!(check_directory(0o1777, 0, 1000), Ok(()));
        assert_eq!(check_directory(0o1777, 4242, 1000), Ok(()));
        assert_eq!(check_directory(0o755, 1000, 1000), Ok(()));
        assert!(check_directory(0o755, 4242, 1000).is_err());
        assert!(
            check_directory(0o777, 0, 1000)
                .unwrap_err()
                .contains("sticky")
        );
    }

    #[test]
    fn files_must_be_the_processs_own_page() {
        assert_eq!(check_file(true, 1000, 4096, 1000, 4096), Ok(()));
        assert!(check_file(false, 1000, 4096, 1000, 4096).is_err());
        assert!(check_file(true, 0, 4096, 1000, 4096).is_err());
        assert!(check_file(true, 1000, 8192, 1000, 4096).is_err());
    }
}
