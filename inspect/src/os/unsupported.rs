//! Systems without an inspector backend: every call fails clearly.

use super::FoundLocator;
use crate::failure::{Failure, ReadFailure};
use crate::free_ranges::Space;
use crate::width::Width;

/// A process on a system the inspector does not support.
pub(crate) struct Process;

impl Process {
    pub(crate) fn open(_pid: u32) -> Result<Process, Failure> {
        Err(Failure::Unsupported)
    }

    pub(crate) fn find_locator(&self) -> Result<FoundLocator, Failure> {
        Err(Failure::Unsupported)
    }

    pub(crate) fn read(&self, _address: usize, _out: &mut [u8]) -> Result<(), ReadFailure> {
        Err(ReadFailure::Other(std::io::ErrorKind::Unsupported.into()))
    }

    pub(crate) fn mapped_ranges(&self, _space: Space) -> Result<Vec<(usize, usize)>, Failure> {
        Err(Failure::Unsupported)
    }

    pub(crate) fn space(&self, _width: Width) -> Space {
        Space {
            granularity: 4096,
            lowest: 0,
            highest: memory_buffers::highest_user_address(),
        }
    }
}
