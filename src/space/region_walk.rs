//! Turning a "which region is at or above this address" query (macOS's
//! `mach_vm_region`) into the list of mapped ranges that placement uses,
//! free of system calls so that it is tested on every host.
//!
//! `mach_vm_region` answers one region at a time, and the next query starts
//! where the last region ended. The walk joins regions that touch and have
//! the same rights into one range (placement needs only what is taken;
//! code patching needs each range's rights), and stops on an answer that
//! does not move forward, so a misbehaving answer cannot make it loop
//! forever.

use crate::space::maps::{Access, MapsEntry};
use std::ops::ControlFlow;

/// Regions a walk looks at before giving up: far above what a process
/// has (macOS limits a task to about a million map entries).
const MAX_REGIONS: usize = 1 << 22;

/// Calls `visit` with each run of touching regions with the same rights
/// from `lowest` up, in address order, until it breaks.
/// `next_region(address)` returns the first region that contains or
/// follows `address` as `(start, len, rights)`, or `None` when there is
/// none above.
///
/// # Errors
///
/// The first error of `next_region`; the runs before it have been visited.
pub(crate) fn for_each_mapped_run<E>(
    lowest: usize,
    mut next_region: impl FnMut(usize) -> Result<Option<(usize, usize, Access)>, E>,
    mut visit: impl FnMut(&MapsEntry) -> ControlFlow<()>,
) -> Result<(), E> {
    let entry =
        |(start, end, access): (usize, usize, Access)| MapsEntry::unnamed(start, end, access);
    let mut address = lowest;
    let mut run: Option<(usize, usize, Access)> = None;
    for _ in 0..MAX_REGIONS {
        let Some((start, len, access)) = next_region(address)? else {
            break;
        };
        let end = start.saturating_add(len);
        // An answer below the query, or empty, does not move forward.
        if end <= address || len == 0 {
            break;
        }
        let start = start.max(address);
        run = match run {
            Some((run_start, run_end, run_access)) if run_end == start && run_access == access => {
                Some((run_start, end, access))
            }
            Some(finished) => {
                if visit(&entry(finished)).is_break() {
                    return Ok(());
                }
                Some((start, end, access))
            }
            None => Some((start, end, access)),
        };
        if end == usize::MAX {
            break;
        }
        address = end;
    }
    if let Some(finished) = run {
        let _ = visit(&entry(finished));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake address space: `next_region` over a sorted table.
    fn table(
        regions: &[(usize, usize)],
    ) -> impl FnMut(usize) -> Result<Option<(usize, usize)>, ()> + '_ {
        move |address| {
            Ok(regions
                .iter()
                .copied()
                .find(|&(start, len)| start + len > address))
        }
    }

    /// Regions without rights (all the same), for the tests about ranges.
    fn same_rights(
        mut next_region: impl FnMut(usize) -> Result<Option<(usize, usize)>, ()>,
    ) -> impl FnMut(usize) -> Result<Option<(usize, usize, Access)>, ()> {
        move |address| Ok(next_region(address)?.map(|(start, len)| (start, len, Access::default())))
    }

    fn walk(
        lowest: usize,
        next_region: impl FnMut(usize) -> Result<Option<(usize, usize)>, ()>,
    ) -> (Vec<(usize, usize)>, Result<(), ()>) {
        let mut runs = Vec::new();
        let result = for_each_mapped_run(lowest, same_rights(next_region), |entry| {
            runs.push((entry.start, entry.end));
            ControlFlow::Continue(())
        });
        (runs, result)
    }

    /// A macOS process's layout (`__PAGEZERO` is 4 GiB): macOS runs 64-bit
    /// processes only, so this needs a 64-bit `usize`; the merging itself
    /// is checked on every width by the tests below.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn touching_regions_become_one_run() {
        // __PAGEZERO, text and data back to back, a gap, a heap region,
        // then a stack region.
        let regions = [
            (0, 0x1_0000_0000),
            (0x1_0000_0000, 0x4000),
            (0x1_0000_4000, 0x8000),
            (0x1_2000_0000, 0x10_0000),
            (0x7ff7_b000_0000, 0x80_0000),
        ];
        let (runs, result) = walk(0, table(&regions));
        assert_eq!(result, Ok(()));
        assert_eq!(
            runs,
            [
                (0, 0x1_0000_c000),
                (0x1_2000_0000, 0x1_2010_0000),
                (0x7ff7_b000_0000, 0x7ff7_b080_0000)
            ]
        );
    }

    #[test]
    fn a_walk_starting_inside_a_region_starts_there() {
        let regions = [(0x1000, 0x3000), (0x8000, 0x1000)];
        let (runs, _) = walk(0x2000, table(&regions));
        assert_eq!(runs, [(0x2000, 0x4000), (0x8000, 0x9000)]);
    }

    #[test]
    fn an_answer_that_does_not_move_forward_ends_the_walk() {
        let mut calls = 0;
        let stuck = |_address: usize| {
            calls += 1;
            Ok(Some((0x1000, 0x1000)))
        };
        let (runs, result) = walk(0x1000, stuck);
        assert_eq!(result, Ok(()));
        assert_eq!(runs, [(0x1000, 0x2000)]);
        assert_eq!(calls, 2);
        let (runs, _) = runs_of_empty();
        assert!(runs.is_empty());
    }

    fn runs_of_empty() -> (Vec<(usize, usize)>, Result<(), ()>) {
        walk(0, |_| Ok(Some((0x5000, 0))))
    }

    #[test]
    fn a_region_reaching_the_top_ends_the_walk() {
        let regions = [(usize::MAX - 0xfff, 0xfff)];
        let mut calls = 0;
        let (runs, _) = walk(0, |address| {
            calls += 1;
            table(&regions)(address)
        });
        assert_eq!(runs, [(usize::MAX - 0xfff, usize::MAX)]);
        assert_eq!(calls, 1);
    }

    #[test]
    fn errors_and_breaks_stop_the_walk() {
        let mut calls = 0;
        let failing = |address: usize| {
            calls += 1;
            if address >= 0x3000 {
                Err(())
            } else {
                Ok(Some((address, 0x1000)))
            }
        };
        let mut seen = Vec::new();
        let result = for_each_mapped_run(0x1000, same_rights(failing), |entry| {
            seen.push(entry.start);
            ControlFlow::Continue(())
        });
        assert_eq!(result, Err(()));
        assert!(seen.is_empty(), "the open run is not reported on an error");
        let regions = [(0x1000, 0x1000), (0x3000, 0x1000), (0x5000, 0x1000)];
        let mut seen = 0;
        let result = for_each_mapped_run(0, same_rights(table(&regions)), |_| {
            seen += 1;
            ControlFlow::Break(())
        });
        assert_eq!((seen, result), (1, Ok(())));
    }

    #[test]
    fn touching_regions_with_other_rights_stay_apart() {
        let text = Access {
            read: true,
            write: false,
            execute: true,
        };
        let data = Access {
            read: true,
            write: true,
            execute: false,
        };
        let regions = [
            (0x1000, 0x1000, text),
            (0x2000, 0x1000, data),
            (0x3000, 0x1000, data),
        ];
        let mut runs = Vec::new();
        let result = for_each_mapped_run(
            0,
            |address| -> Result<_, ()> {
                Ok(regions
                    .iter()
                    .copied()
                    .find(|&(start, len, _)| start + len > address))
            },
            |entry| {
                runs.push((entry.start, entry.end, entry.access));
                ControlFlow::Continue(())
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(runs, [(0x1000, 0x2000, text), (0x2000, 0x4000, data)]);
    }
}
