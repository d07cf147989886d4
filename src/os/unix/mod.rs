//! What the Unix backends (Linux, which Android uses too, macOS, FreeBSD)
//! share: POSIX calls that behave the same on all three. Each backend file
//! re-exports what it uses from here and adds what its kernel does
//! differently (how a fixed address is claimed without replacing anything,
//! where the list of mappings comes from, which locks outlive a
//! descriptor). Nothing here calls back into a backend.
//!
//! One file per subsystem, so that a reader of the memory calls every
//! request makes does not wade through the file-system code only the
//! rendezvous needs: `memory.rs` (mappings, protections, the instruction
//! cache, with the AArch64 assembly in `icache/aarch64.rs`), `fs.rs`,
//! `time.rs`, `process.rs`; this file holds the `errno` helpers they all
//! use.
//!
//! # References
//!
//! POSIX `mmap`, `munmap`, `msync`, `openat`, `mkdirat`, `fstatat`,
//! `linkat`, `renameat`, `unlinkat`, `flock`, `pwritev`.

use std::io;

mod fs;
mod memory;
mod process;
mod time;

pub(crate) use fs::*;
pub(crate) use memory::*;
pub(crate) use process::*;
pub(crate) use time::*;

/// An `errno` value.
pub(crate) type Errno = i32;

/// The error number for an invalid argument.
pub(crate) const INVALID_ARGUMENT: Errno = libc::EINVAL;

/// The error number for "not enough memory".
pub(crate) const OUT_OF_MEMORY: Errno = libc::ENOMEM;

/// `Ok` for a system call that returned 0, the `errno` otherwise.
pub(super) fn zero_or_errno(result: libc::c_int) -> Result<(), Errno> {
    if result == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Calls `call` (a system call returning -1 with `errno` on failure) again
/// while it fails with `EINTR`: a signal storm must not turn into errors.
pub(super) fn retry_interrupted(mut call: impl FnMut() -> libc::c_int) -> libc::c_int {
    loop {
        let result = call();
        if result != -1 || last_errno() != libc::EINTR {
            return result;
        }
    }
}

pub(super) fn last_errno() -> Errno {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}
