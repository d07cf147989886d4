//! Where the buffers libraries of one process meet: the rendezvous that
//! leads each of them to the same locator.
//!
//! The place differs by system (a file below `/tmp` on Unix, a named
//! section on Windows, nothing elsewhere), the contract does not: each
//! backend file defines the same two functions, and this module chooses the
//! file once.
//!
//! - `meet(pid)` finds the shared locator of process `pid`, or creates and
//!   publishes it, and says what of it must not be used; or says why the
//!   process must keep a private one.
//! - `pay_owed_sweep()` runs, if this process owes it, the clean-up that
//!   publishing a rendezvous left to a later request (stale files of dead
//!   processes, on Unix; nothing elsewhere).
//!
//! The header and item layout, and the take/release protocol, are the
//! locator's (`shared::layout`, `shared::locator`), the same everywhere.

use crate::shared::layout::LocatorRef;
use std::ops::Range;

// `memory_buffers_unsupported` builds the stub on any system, so CI checks
// that it still compiles.
#[cfg_attr(
    all(
        any(linux_like, target_os = "macos", target_os = "freebsd"),
        not(memory_buffers_unsupported)
    ),
    path = "unix.rs"
)]
#[cfg_attr(all(windows, not(memory_buffers_unsupported)), path = "windows.rs")]
#[cfg_attr(
    any(
        not(any(linux_like, target_os = "macos", target_os = "freebsd", windows)),
        memory_buffers_unsupported
    ),
    path = "unsupported.rs"
)]
pub(crate) mod backend;

pub(crate) use backend::{meet, pay_owed_sweep};

/// The shared locator a process found or published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Meeting {
    /// The first locator of the chain.
    pub(crate) head: LocatorRef,
    /// Base addresses of buffers this library must never hand out
    /// (ready-made buffers another library mapped without execute rights);
    /// empty when every buffer is usable.
    pub(crate) unusable: Range<usize>,
    /// Whether this call published the rendezvous and left a sweep owed,
    /// to be paid by [`pay_owed_sweep`] on a later request.
    pub(crate) owes_sweep: bool,
}
