//! Another process's memory on systems without a backend: every call fails
//! with [`ErrorKind::Unsupported`], so the crate still compiles.

use super::{Errno, Protection};
use crate::error::ErrorKind;
use crate::space::maps::MapsEntry;
use std::ops::ControlFlow;

/// The call that maps memory in a target, as error messages name it.
pub(crate) const REMOTE_MAP_CALL: &str = "mmap";

/// The call that changes the rights of memory in a target.
pub(crate) const REMOTE_PROTECT_CALL: &str = "mprotect";

/// Another process, by id; never opened here.
#[derive(Debug)]
pub(crate) struct RemoteProcess;

impl RemoteProcess {
    pub(crate) fn open(_process_id: u32) -> Result<RemoteProcess, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    /// This process's: no target is ever opened here.
    pub(crate) fn highest_user_address(&self) -> usize {
        super::highest_user_address()
    }

    pub(crate) fn read_maps(
        &mut self,
        _buffer: &mut Vec<u8>,
        _visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
    ) -> Result<(), Errno> {
        Err(super::UNSUPPORTED)
    }

    pub(crate) fn map_fixed_noreplace(
        &mut self,
        _address: usize,
        _len: usize,
        _protection: Protection,
    ) -> Result<Result<bool, Errno>, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    pub(crate) fn protect(
        &mut self,
        _address: usize,
        _len: usize,
        _protection: Protection,
    ) -> Result<Result<(), Errno>, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    pub(crate) fn unmap(&mut self, _address: usize, _len: usize) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    pub(crate) fn write(&self, _address: usize, _bytes: &[u8]) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    pub(crate) fn read(&self, _address: usize, _out: &mut [u8]) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
}
