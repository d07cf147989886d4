//! The rendezvous of systems without a backend: there is none, and every
//! copy of the library keeps a private locator.

use super::Meeting;
use crate::error::PrivateLocatorReason;

/// Nothing to meet through: the locator is private, without a call made.
pub(crate) fn meet(_pid: u32) -> Result<Meeting, PrivateLocatorReason> {
    Err(PrivateLocatorReason::Unsupported)
}

/// Nothing is ever owed.
pub(crate) fn pay_owed_sweep() {}
