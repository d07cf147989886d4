//! Writing over code outside the buffers: the first bytes of a function
//! being hooked.
//!
//! Code pages are normally read/execute. To write a jump over a function's
//! first bytes, the pages are made writable, written, then given back the
//! *exact* protection each part had before (read from the system, not
//! assumed), and the instruction cache is flushed. Which pages need which
//! protection is pure arithmetic, kept here apart from the system calls.
//!
//! The one copy of the caller's bytes over the code is the only unsafe code
//! here, made under the caller's contract once the pages are writable.

#![allow(unsafe_code)]

use crate::error::{Error, ErrorKind};
use crate::os;
use std::sync::Mutex;

/// Serialises patches made through this copy of the library: two patches
/// of one page at once would each save the other's temporary "writable"
/// protection as the one to restore.
static PATCHING: Mutex<()> = Mutex::new(());

/// The parts of `[start, end)` each mapping covers, from mappings that
/// overlap it in address order, or `None` if part of the range is unmapped.
pub(crate) fn cover<P: Copy>(
    start: usize,
    end: usize,
    mappings: &[(usize, usize, P)],
) -> Option<Vec<(usize, usize, P)>> {
    let mut parts = Vec::new();
    let mut at = start;
    for &(from, to, protection) in mappings {
        if to <= at {
            continue;
        }
        if from > at || at >= end {
            break;
        }
        let part_end = to.min(end);
        parts.push((at, part_end, protection));
        at = part_end;
    }
    (at >= end && start < end).then_some(parts)
}

/// See [`crate::Buffers::patch_code`].
pub(crate) unsafe fn patch_code(address: usize, bytes: &[u8]) -> Result<(), Error> {
    let fail = |kind| {
        Error::new(
            kind,
            address,
            address.saturating_add(bytes.len().saturating_sub(1)),
            bytes.len(),
        )
    };
    if address == 0 {
        return Err(fail(ErrorKind::InvalidRequest(
            crate::InvalidRequest::NullPointer,
        )));
    }
    if bytes.is_empty() {
        return Err(fail(ErrorKind::InvalidRequest(
            crate::InvalidRequest::ZeroSize,
        )));
    }
    let page = os::page_size();
    let Some(end) = address.checked_add(bytes.len()) else {
        return Err(fail(ErrorKind::InvalidRequest(
            crate::InvalidRequest::RangeAboveUserSpace,
        )));
    };
    let first_page = address & !(page - 1);
    let Some(last_page_end) = end.checked_add(page - 1).map(|end| end & !(page - 1)) else {
        return Err(fail(ErrorKind::InvalidRequest(
            crate::InvalidRequest::RangeAboveUserSpace,
        )));
    };
    let os_error = |errno| {
        fail(ErrorKind::Os {
            call: os::PROTECT_CALL,
            errno,
        })
    };
    // A panic cannot happen while the lock is held (no user code runs), so
    // a poisoned lock only means another thread's patch failed: go on.
    let _patching = PATCHING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut mappings = Vec::new();
    os::visit_protections(first_page, last_page_end, |from, to, protection| {
        mappings.push((from, to, protection))
    })
    .map_err(os_error)?;
    let Some(parts) = cover(first_page, last_page_end, &mappings) else {
        return Err(fail(ErrorKind::NotMapped));
    };
    // Make every part writable; on failure put back the parts already done.
    for (done, &(from, to, protection)) in parts.iter().enumerate() {
        if let Err(errno) = os::set_page_protection(from, to - from, protection.with_write()) {
            for &(from, to, protection) in &parts[..done] {
                let _ = os::set_page_protection(from, to - from, protection);
            }
            return Err(os_error(errno));
        }
    }
    // SAFETY: the caller guarantees that `[address, address + len)` may be
    // overwritten (no thread runs it mid-write, nothing else relies on the
    // old bytes), and the pages were made writable just above. `copy`
    // allows `bytes` to overlap the target.
    unsafe {
        std::ptr::copy(bytes.as_ptr(), address as *mut u8, bytes.len());
    }
    let mut restore_error = None;
    for &(from, to, protection) in &parts {
        if let Err(errno) = os::set_page_protection(from, to - from, protection) {
            restore_error.get_or_insert(errno);
        }
    }
    os::flush_instruction_cache(address, bytes.len());
    match restore_error {
        None => Ok(()),
        Some(errno) => Err(os_error(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::cover;

    #[test]
    fn one_mapping_covers_the_whole_range() {
        assert_eq!(
            cover(0x2000, 0x3000, &[(0x1000, 0x5000, 'x')]),
            Some(vec![(0x2000, 0x3000, 'x')])
        );
    }

    #[test]
    fn adjacent_mappings_split_the_range_with_their_own_protections() {
        let mappings = [
            (0x1000, 0x3000, 'x'),
            (0x3000, 0x4000, 'r'),
            (0x4000, 0x9000, 'w'),
        ];
        assert_eq!(
            cover(0x2000, 0x5000, &mappings),
            Some(vec![
                (0x2000, 0x3000, 'x'),
                (0x3000, 0x4000, 'r'),
                (0x4000, 0x5000, 'w')
            ])
        );
    }

    #[test]
    fn a_gap_anywhere_means_no_cover() {
        assert_eq!(
            cover(
                0x2000,
                0x5000,
                &[(0x1000, 0x3000, 'x'), (0x4000, 0x9000, 'w')]
            ),
            None
        );
        assert_eq!(cover(0x2000, 0x5000, &[(0x3000, 0x9000, 'w')]), None);
        assert_eq!(cover(0x2000, 0x5000, &[(0x1000, 0x4000, 'w')]), None);
        assert_eq!(cover::<char>(0x2000, 0x5000, &[]), None);
        assert_eq!(cover(0x2000, 0x2000, &[(0x1000, 0x4000, 'w')]), None);
    }

    #[test]
    fn mappings_before_the_range_are_skipped() {
        let mappings = [
            (0x0, 0x1000, 'a'),
            (0x1000, 0x2000, 'b'),
            (0x2000, 0x3000, 'c'),
        ];
        assert_eq!(
            cover(0x2000, 0x3000, &mappings),
            Some(vec![(0x2000, 0x3000, 'c')])
        );
    }
}
