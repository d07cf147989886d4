//! The inspector's system calls: one file per operating system, each
//! defining the same `Process` type with the same methods.
//!
//! - `Process::open(pid)`: check that the process exists and can be looked at;
//! - `find_locator()`: find and validate its locator's address through the
//!   rendezvous file (Linux) or named section (Windows), and learn its
//!   pointer width (a 64-bit inspector reads 32-bit processes too);
//! - `read(address, out)`: copy bytes out of it, never dereferencing its
//!   addresses here;
//! - `space(width)`: its granularity and user-space bounds, which its
//!   width decides;
//! - `mapped_ranges(space)`: what is mapped in it, for the free ranges.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::Process;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::Process;

#[cfg(not(any(target_os = "linux", windows)))]
mod unsupported;
#[cfg(not(any(target_os = "linux", windows)))]
pub(crate) use unsupported::Process;

use crate::width::Width;

/// Where the locator was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FoundLocator {
    /// The head of the chain, in the process.
    pub(crate) address: usize,
    /// The rendezvous file's path or the section's name.
    pub(crate) rendezvous: String,
    /// The process's pointer width, which its locators' layout follows.
    /// Never wider than the inspector's (that is refused).
    pub(crate) width: Width,
}
