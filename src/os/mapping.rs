//! What a backend hands back for memory it mapped, the same type on every
//! system.
//!
//! Each backend used to spell out its own access rights and its own owned
//! mapping (Windows had a second one for views of a named section); they
//! differed only in the call that gives the pages back. Here the rights
//! are defined once, each backend converts them to its own bits, and an
//! owned mapping carries the call that releases it.

/// Access rights of a mapping, as the library asks for them. Each backend
/// turns them into its system's bits (`PROT_*`, `PAGE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the rights, spelled out
pub(crate) enum Protection {
    ReadWrite,
    ReadExecute,
    ReadWriteExecute,
}

/// Gives `len` bytes mapped at an address back to the system.
///
/// # Safety
///
/// The range was mapped by the call this function undoes, and nothing uses
/// it any more.
pub(crate) type Release = unsafe fn(address: usize, len: usize);

/// Memory this library mapped (reserved and committed, on Windows; a view
/// of a named section), given back to the system when dropped unless
/// leaked. Only the backends make one, for memory they just mapped for it
/// alone.
#[derive(Debug)]
pub(crate) struct OwnedMapping {
    address: usize,
    len: usize,
    /// Undoes the call that mapped the range (`munmap`, `VirtualFree`,
    /// `UnmapViewOfFile`).
    release: Release,
}

impl OwnedMapping {
    /// Takes ownership of `len` bytes the backend has just mapped at
    /// `address` and that nothing else refers to; `release` gives them back.
    pub(super) fn new(address: usize, len: usize, release: Release) -> OwnedMapping {
        OwnedMapping {
            address,
            len,
            release,
        }
    }

    pub(crate) fn address(&self) -> usize {
        self.address
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keeps the pages mapped for the rest of the process.
    pub(crate) fn leak(self) -> usize {
        let address = self.address;
        std::mem::forget(self);
        address
    }
}

impl Drop for OwnedMapping {
    fn drop(&mut self) {
        // SAFETY: `new` took the mapping over for this value alone, with the
        // call that undoes its mapping; the value is being dropped, so
        // nothing can reach the pages any more. The release never panics.
        unsafe { (self.release)(self.address, self.len) };
    }
}

/// The outcome of asking for memory at an exact address.
#[derive(Debug)]
pub(crate) enum FixedMapping {
    /// The pages are mapped at the requested address.
    Mapped(OwnedMapping),
    /// The system placed them elsewhere (a Linux older than 4.17 treats
    /// `MAP_FIXED_NOREPLACE` as a hint; Windows rounds an unaligned address
    /// down); they have been given back.
    Elsewhere,
}
