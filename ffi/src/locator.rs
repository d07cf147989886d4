//! Which locator (the process-wide registry of shared buffers) is in use.

use crate::status::*;
use crate::writable;
use memory_buffers::{Buffers, LocatorKind, PrivateLocatorReason};

/// Why the shared locator could not be used, as an integer so that values a
/// newer library adds are never undefined behaviour. Compare with the
/// `MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_*` constants.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryBuffersPrivateLocatorReason(pub i32);

/// The shared locator is in use.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_NONE: MemoryBuffersPrivateLocatorReason =
    MemoryBuffersPrivateLocatorReason(0);
/// A directory on the rendezvous path could not be opened or created;
/// `os_error` holds the `errno`.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_DIRECTORY_UNAVAILABLE:
    MemoryBuffersPrivateLocatorReason = MemoryBuffersPrivateLocatorReason(1);
/// A rendezvous directory belongs to another user, or others may write
/// to it without the sticky bit.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_DIRECTORY_NOT_TRUSTED:
    MemoryBuffersPrivateLocatorReason = MemoryBuffersPrivateLocatorReason(2);
/// The rendezvous file for this process belongs to another user.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_FILE_NOT_TRUSTED:
    MemoryBuffersPrivateLocatorReason = MemoryBuffersPrivateLocatorReason(3);
/// The rendezvous file could not be created, sized or mapped;
/// `os_error` holds the `errno`.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_FILE_UNAVAILABLE:
    MemoryBuffersPrivateLocatorReason = MemoryBuffersPrivateLocatorReason(4);
/// Other instances kept replacing the rendezvous file.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_FILE_CONTENDED: MemoryBuffersPrivateLocatorReason =
    MemoryBuffersPrivateLocatorReason(5);
/// Shared locators are not implemented on this operating system.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_UNSUPPORTED: MemoryBuffersPrivateLocatorReason =
    MemoryBuffersPrivateLocatorReason(6);
/// A reason this version of the C interface has no code for.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_OTHER: MemoryBuffersPrivateLocatorReason =
    MemoryBuffersPrivateLocatorReason(7);
/// The rendezvous file for this process id is held by another live process
/// (the same id in another PID namespace, or a forked child's parent).
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_FILE_IN_USE: MemoryBuffersPrivateLocatorReason =
    MemoryBuffersPrivateLocatorReason(8);
/// Windows: the named section could not be created, opened or mapped;
/// `os_error` holds the Win32 error code.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_SECTION_UNAVAILABLE:
    MemoryBuffersPrivateLocatorReason = MemoryBuffersPrivateLocatorReason(9);
/// Windows: a section with this process's name exists with the wrong size.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_SECTION_WRONG_SIZE:
    MemoryBuffersPrivateLocatorReason = MemoryBuffersPrivateLocatorReason(10);
/// Windows: a section with this process's name exists, but its *this
/// address* could not be proven to be a live view of it in this process.
pub const MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_SECTION_NOT_PROVEN:
    MemoryBuffersPrivateLocatorReason = MemoryBuffersPrivateLocatorReason(11);

/// Which locator this copy of the library uses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBuffersLocatorKind {
    /// `true` for the process-wide locator shared with every other buffers
    /// library in the process; `false` for a locator private to this copy
    /// (buffers still work, but others do not see them).
    pub shared: bool,
    /// Why the locator is private; [`MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_NONE`]
    /// when `shared` is `true`.
    pub private_reason: MemoryBuffersPrivateLocatorReason,
    /// The `errno` behind `private_reason`, or 0.
    pub os_error: i32,
}

impl From<LocatorKind> for MemoryBuffersLocatorKind {
    fn from(kind: LocatorKind) -> Self {
        let private = |private_reason, os_error| MemoryBuffersLocatorKind {
            shared: false,
            private_reason,
            os_error,
        };
        match kind {
            LocatorKind::Shared => MemoryBuffersLocatorKind {
                shared: true,
                private_reason: MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_NONE,
                os_error: 0,
            },
            LocatorKind::Private(reason) => match reason {
                PrivateLocatorReason::DirectoryUnavailable { errno } => private(
                    MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_DIRECTORY_UNAVAILABLE,
                    errno,
                ),
                PrivateLocatorReason::DirectoryNotTrusted => private(
                    MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_DIRECTORY_NOT_TRUSTED,
                    0,
                ),
                PrivateLocatorReason::FileNotTrusted => {
                    private(MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_FILE_NOT_TRUSTED, 0)
                }
                PrivateLocatorReason::FileUnavailable { errno } => private(
                    MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_FILE_UNAVAILABLE,
                    errno,
                ),
                PrivateLocatorReason::FileContended => {
                    private(MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_FILE_CONTENDED, 0)
                }
                PrivateLocatorReason::FileInUse => {
                    private(MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_FILE_IN_USE, 0)
                }
                PrivateLocatorReason::Unsupported => {
                    private(MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_UNSUPPORTED, 0)
                }
                PrivateLocatorReason::SectionUnavailable { errno } => private(
                    MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_SECTION_UNAVAILABLE,
                    errno,
                ),
                PrivateLocatorReason::SectionWrongSize { .. } => {
                    private(MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_SECTION_WRONG_SIZE, 0)
                }
                PrivateLocatorReason::SectionNotProven => {
                    private(MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_SECTION_NOT_PROVEN, 0)
                }
                _ => private(MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_OTHER, 0),
            },
            _ => private(MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_OTHER, 0),
        }
    }
}

/// Writes which locator this copy of the library uses to `*kind`, finding or
/// creating the locator if no buffer was requested yet.
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `kind` is `NULL`;
/// [`MEMORY_BUFFERS_STATUS_OS_ERROR`] if not even a private locator page
/// could be mapped.
///
/// # Safety
///
/// `kind` must be `NULL` or valid for writing one, suitably aligned,
/// `MemoryBuffersLocatorKind`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_locator_kind(
    kind: *mut MemoryBuffersLocatorKind,
) -> MemoryBuffersStatus {
    run("memory_buffers_locator_kind", || {
        let out = writable(kind, "`kind` is NULL")?;
        let value = Buffers::locator_kind()?.into();
        // SAFETY: `out` is non-null and valid for an aligned write (contract).
        unsafe { out.write(value) };
        Ok(())
    })
}

/// Writes the address of this process's first locator (the one other
/// buffers libraries in the process find through the rendezvous file) to
/// `*address`, finding or creating the locator if needed.
///
/// # Errors
///
/// As for [`memory_buffers_locator_kind`].
///
/// # Safety
///
/// `address` must be `NULL` or valid for writing one aligned `uintptr_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_locator_address(
    address: *mut usize,
) -> MemoryBuffersStatus {
    run("memory_buffers_locator_address", || {
        let out = writable(address, "`address` is NULL")?;
        let value = Buffers::locator_address()?;
        // SAFETY: `out` is non-null and valid for an aligned write (contract).
        unsafe { out.write(value) };
        Ok(())
    })
}
