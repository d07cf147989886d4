//! What this process knows about its own address space, and the loop that
//! claims pages nearest to a target.
//!
//! Reading `/proc/self/maps` costs time proportional to the number of
//! mappings (tens of thousands in a large game), so it is read once and then
//! kept up to date: our own mappings and unmappings are recorded, and
//! anything else that changed is discovered by `MAP_FIXED_NOREPLACE`, which
//! refuses to map over an occupied range. Stale knowledge can therefore only
//! cost a refused system call, never a clobbered mapping. The map is re-read
//! only when the cached view has no candidate left (or keeps being wrong),
//! at most `retry_count` times per request.

use crate::error::{ErrorKind, Failure};
use crate::os::{self, FixedMapping, OwnedMapping, Protection};
use crate::space::placement::{Candidates, PlacementRequest};
use crate::space::range_set::MappedRanges;
use std::ops::ControlFlow;
use std::sync::{Mutex, MutexGuard};

/// Refused candidates in a row after which the map is re-read: the cached
/// view is evidently out of date near the target.
const MISSES_BEFORE_REFRESH: u32 = 32;

/// Exact mappings one request may try, refused or not, in all. A host
/// that refuses blocks its map shows as free (Wine answers
/// `STATUS_CONFLICTING_ADDRESSES` for some) can refuse any number of them
/// near a target; the request walks past them to the next block the
/// system grants, and this bounds what that costs: a refused `mmap` takes
/// a microsecond or two, `VirtualAlloc` under Wine some tens.
pub(crate) const MAX_CLAIM_ATTEMPTS: u32 = 1 << 14;

/// How long a block the system refused, although the map showed it free,
/// stays out of the candidates. Such a block is either a phantom, which
/// stays refused (Wine's own reservations), or was taken by another
/// thread, which the next read of the map shows anyway: remembering it
/// costs nothing, and forgetting it after a while lets a block that became
/// free for real be tried again.
const REFUSAL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Bytes below the main thread's stack (`[stack]` in `/proc/self/maps`)
/// that are kept out of placement: the kernel grows that stack down into
/// free memory on demand, up to its limit (8 MiB by default) and a guard
/// gap (1 MiB) above the next mapping. A block placed right below the
/// stack would leave it no room, and the host would crash on its next
/// deep call.
const STACK_GROWTH_ROOM: usize = 9 << 20;

/// Re-reads of the map one request may make, whatever its `retry_count`:
/// a C caller's uninitialised field (or `u32::MAX`) must not keep the host
/// busy for days. A request costs at most this many reads of the map and
/// [`MAX_CLAIM_ATTEMPTS`] exact mappings.
pub(crate) const MAX_REFRESHES: u32 = 64;

/// The cached view of the address space.
pub(crate) struct AddressSpace {
    /// Ranges believed mapped. May be stale in both directions; see the
    /// module docs for why that is safe.
    mapped: MappedRanges,
    /// Whether `mapped` was ever filled from `/proc/self/maps`.
    loaded: bool,
    /// Blocks the system refused to map although the view showed them
    /// free, added back to every fresh view until [`REFUSAL_LIFETIME`]
    /// after the first of them (then all are tried again).
    refused: MappedRanges,
    /// When `refused` got its first block.
    refused_since: Option<std::time::Instant>,
    /// Reused read buffer for `/proc/self/maps`.
    read_buffer: Vec<u8>,
    /// Reads of the map so far, successful or not (tests only).
    #[cfg(test)]
    reads: u32,
}

impl AddressSpace {
    pub(crate) const fn new() -> Self {
        AddressSpace {
            mapped: MappedRanges::new(),
            loaded: false,
            refused: MappedRanges::new(),
            refused_since: None,
            read_buffer: Vec::new(),
            #[cfg(test)]
            reads: 0,
        }
    }

    /// Replaces the cached view with a fresh read of `space`'s map
    /// (`/proc/self/maps` for this process).
    fn refresh<S: ClaimableSpace>(&mut self, space: &mut S) -> Result<(), os::Errno> {
        self.refresh_explaining(space, &[]).map(drop)
    }

    /// [`refresh`](Self::refresh), telling whether the fresh map shows a
    /// mapping in any of `blocks` (refused since the last read): whether
    /// the view was out of date there, or the system refused blocks it
    /// reports free.
    fn refresh_explaining<S: ClaimableSpace>(
        &mut self,
        space: &mut S,
        blocks: &[(usize, usize)],
    ) -> Result<bool, os::Errno> {
        #[cfg(test)]
        {
            self.reads += 1;
        }
        let mut ranges = Vec::new();
        let mut out_of_memory = ranges.try_reserve(self.mapped.len() + 64).is_err();
        space.read_maps(&mut self.read_buffer, |entry| {
            // Fallible: the host's allocator may be at its limit.
            if ranges.try_reserve(1).is_err() {
                out_of_memory = true;
                return ControlFlow::Break(());
            }
            let start = if entry.grows_down {
                entry.start.saturating_sub(STACK_GROWTH_ROOM)
            } else {
                entry.start
            };
            ranges.push((start, entry.end));
            ControlFlow::Continue(())
        })?;
        if out_of_memory {
            return Err(os::OUT_OF_MEMORY);
        }
        if self
            .refused_since
            .is_some_and(|since| since.elapsed() >= REFUSAL_LIFETIME)
        {
            self.refused = MappedRanges::new();
            self.refused_since = None;
        }
        self.mapped = MappedRanges::from_ranges(ranges);
        let explained = blocks
            .iter()
            .any(|&(start, end)| !self.mapped.is_free(start, end));
        for (start, end) in self.refused.iter() {
            self.mapped.insert(start, end);
        }
        self.loaded = true;
        Ok(explained)
    }

    /// Records a block the system refused, so that no later view offers it
    /// again for a while.
    fn remember_refusal(&mut self, start: usize, end: usize) {
        self.mapped.insert(start, end);
        self.refused.insert(start, end);
        self.refused_since
            .get_or_insert_with(std::time::Instant::now);
    }

    /// Number of disjoint mapped ranges in the cached view.
    #[cfg(test)]
    pub(crate) fn known_ranges(&self) -> usize {
        self.mapped.len()
    }

    /// Reads of the map so far (the Linux fault tests only).
    #[cfg(all(test, target_os = "linux"))]
    pub(crate) fn reads(&self) -> u32 {
        self.reads
    }

    /// Maps `request.block_len` read/write/execute bytes at the first free
    /// candidate (nearest to the request's target, or in the smallest hole
    /// that holds the block without one) and returns the address.
    ///
    /// The map is re-read at most `retry_count` times (and never more than
    /// [`MAX_REFRESHES`]), and not at all once a fresh picture shows no
    /// candidate: re-reading cannot make room that the kernel says is not
    /// there.
    pub(crate) fn map_nearest(
        &mut self,
        request: PlacementRequest,
        retry_count: u32,
    ) -> Result<OwnedMapping, Failure> {
        self.map_nearest_with(request, retry_count, Protection::ReadWriteExecute)
    }

    /// Like [`map_nearest`](Self::map_nearest), with the given access
    /// rights.
    pub(crate) fn map_nearest_with(
        &mut self,
        request: PlacementRequest,
        retry_count: u32,
        protection: Protection,
    ) -> Result<OwnedMapping, Failure> {
        self.map_nearest_in(&mut ThisProcess { protection }, request, retry_count)
    }

    /// [`AddressSpace::map_nearest`] in the address space of `space`, of
    /// which this is the cached view: this process, or another one.
    pub(crate) fn map_nearest_in<S: ClaimableSpace>(
        &mut self,
        space: &mut S,
        request: PlacementRequest,
        retry_count: u32,
    ) -> Result<S::Mapping, Failure> {
        // Whether the cached view was just read and no candidate has been
        // refused since: then "no candidate" is the kernel's answer.
        let mut fresh = false;
        if !self.loaded {
            // Without `/proc` the cached view stays empty and placement
            // degrades to probing with `MAP_FIXED_NOREPLACE`, which is slower
            // but still never maps over anything.
            let _ = self.refresh(space);
            fresh = true;
        }
        let retry_count = retry_count.min(MAX_REFRESHES);
        let mut refreshes = 0;
        let mut attempts = 0u32;
        // The first blocks refused since the last read of the map: enough
        // to tell whether the next read explains them, in a fixed array
        // however many are refused.
        let mut refused = [(0, 0); MISSES_BEFORE_REFRESH as usize];
        let mut refused_count = 0;
        // Whether a fresh read showed nothing where blocks were refused:
        // the system refuses blocks it reports free, and reading the map
        // again would not change that; candidates are then tried on past
        // them, up to the attempt limit.
        let mut phantoms = false;
        let no_space = |blocks_tried| Failure {
            kind: ErrorKind::NoSpaceInRange,
            blocks_tried,
        };
        loop {
            let mut misses = 0;
            while phantoms || misses < MISSES_BEFORE_REFRESH {
                if attempts >= MAX_CLAIM_ATTEMPTS {
                    return Err(no_space(attempts));
                }
                let Some(start) = Candidates::new(&self.mapped, request).next() else {
                    if fresh {
                        // Re-reading would show the same picture (or, with
                        // no `/proc`, probing has ruled out every candidate
                        // already).
                        return Err(no_space(attempts));
                    }
                    break;
                };
                attempts += 1;
                let end = start + request.block_len;
                if let Some(mapping) = space.map_exactly(start, request.block_len)? {
                    self.mapped.insert(start, end);
                    return Ok(mapping);
                }
                // Something we did not know about occupies (part of) the
                // block, or the system refuses it anyway: remember it so
                // the next candidate skips past it. Without `/proc`, learn
                // the whole occupied run instead, so that the next
                // candidate lies beyond it, however long.
                let run = (!self.loaded)
                    .then(|| space.occupied_run(start, end, request.granularity))
                    .flatten();
                match run {
                    Some((run_start, run_end)) => self.mapped.insert(run_start, run_end),
                    None => {
                        self.remember_refusal(start, end);
                        if let Some(slot) = refused.get_mut(refused_count) {
                            *slot = (start, end);
                            refused_count += 1;
                        }
                    }
                }
                // Learning whole runs cannot go on forever (there are only
                // so many mappings); stepping block by block could.
                if run.is_none() {
                    misses += 1;
                }
                fresh = false;
            }
            if refreshes >= retry_count {
                return Err(no_space(attempts));
            }
            refreshes += 1;
            let explained = self.refresh_explaining(space, &refused[..refused_count]);
            phantoms = matches!(explained, Ok(false)) && refused_count > 0;
            refused_count = 0;
            fresh = true;
        }
    }

    /// Unmaps a mapping made by [`AddressSpace::map_nearest`] and records
    /// that its range is free again.
    pub(crate) fn unmap(&mut self, mapping: OwnedMapping) {
        let (start, len) = (mapping.address(), mapping.len());
        drop(mapping);
        self.forget(start, len);
    }

    /// Records that `[start, start + len)` is free again: a mapping of
    /// another process's space was given back.
    pub(crate) fn forget(&mut self, start: usize, len: usize) {
        self.mapped.remove(start, start.saturating_add(len));
    }
}

/// An address space that [`AddressSpace`] can read the map of and claim
/// blocks in: this process ([`ThisProcess`]), or another process
/// (`remote/target_process.rs`). The claiming loop is the same for both; only
/// these calls differ.
pub(crate) trait ClaimableSpace {
    /// A claimed block, given back when dropped unless leaked.
    type Mapping;

    /// Calls `visit` for each mapping of the space until it breaks.
    fn read_maps(
        &mut self,
        buffer: &mut Vec<u8>,
        visit: impl FnMut(&crate::space::maps::MapsEntry) -> ControlFlow<()>,
    ) -> Result<(), os::Errno>;

    /// Maps `len` read/write/execute bytes at exactly `start`, never over
    /// an existing mapping. `Ok(None)` when something is in the way (or the
    /// system placed the pages elsewhere and they were given back).
    fn map_exactly(&mut self, start: usize, len: usize)
    -> Result<Option<Self::Mapping>, ErrorKind>;

    /// The run of mapped pages overlapping `[start, end)`, found without a
    /// map; `None` where that cannot be asked.
    fn occupied_run(
        &mut self,
        start: usize,
        end: usize,
        granularity: usize,
    ) -> Option<(usize, usize)>;
}

/// The address space of this process, claimed with these access rights.
pub(crate) struct ThisProcess {
    pub(crate) protection: Protection,
}

impl ClaimableSpace for ThisProcess {
    type Mapping = OwnedMapping;

    fn read_maps(
        &mut self,
        buffer: &mut Vec<u8>,
        visit: impl FnMut(&crate::space::maps::MapsEntry) -> ControlFlow<()>,
    ) -> Result<(), os::Errno> {
        os::read_maps(buffer, visit)
    }

    fn map_exactly(&mut self, start: usize, len: usize) -> Result<Option<OwnedMapping>, ErrorKind> {
        match os::map_fixed_noreplace(start, len, self.protection) {
            Ok(FixedMapping::Mapped(mapping)) => Ok(Some(mapping)),
            Ok(FixedMapping::Elsewhere) => Ok(None),
            Err(errno) => claim_failure(os::MAP_CALL, errno),
        }
    }

    fn occupied_run(
        &mut self,
        start: usize,
        end: usize,
        granularity: usize,
    ) -> Option<(usize, usize)> {
        occupied_run(start, end, granularity)
    }
}

/// What a refused exact mapping means: something in the way (`Ok(None)`:
/// try the next candidate), a policy against executable memory, or
/// another failure of `call`.
pub(crate) fn claim_failure<M>(
    call: &'static str,
    errno: os::Errno,
) -> Result<Option<M>, ErrorKind> {
    if os::is_occupied(errno) {
        Ok(None)
    } else if os::is_execute_refusal(errno) {
        Err(ErrorKind::ExecutableMemoryRefused)
    } else {
        Err(os::error_kind(call, errno))
    }
}

/// The run of contiguously mapped pages that overlaps `[start, end)`,
/// found without `/proc` by asking the kernel whether ranges are mapped
/// ([`os::is_mapped`]) with steps that double, then halve: `O(log n)` calls
/// for a run of `n` pages. `None` if the kernel cannot be asked (then the
/// caller falls back to the block alone) or nothing in the block is mapped
/// (any more).
///
/// Probing without `/proc` used to step over one block per refused
/// candidate, and gave up after a few dozen blocks on each side; skipping
/// whole runs finds a free block anywhere in the range, and the number of
/// refused candidates is bounded by the number of mapped runs in it.
fn occupied_run(start: usize, end: usize, granularity: usize) -> Option<(usize, usize)> {
    let page = os::allocation_granularity().min(granularity).max(1);
    // One past the last address a range may reach: a length that reaches
    // further could wrap inside the kernel's page rounding.
    let limit = os::highest_user_address().saturating_add(1);
    let fits = |address: usize, len: usize| address.checked_add(len).is_some_and(|e| e <= limit);
    let mapped = |address: usize, len: usize| os::is_mapped(address, len);
    let mut first = None;
    let mut probe = start;
    while probe < end {
        if mapped(probe, page).ok()? {
            first = Some(probe);
            break;
        }
        probe = probe.checked_add(page)?;
    }
    let first = first?;
    // Forward: the first unmapped page after `first`.
    let mut run_end = first;
    let mut step = page;
    while fits(run_end, step) && mapped(run_end, step).ok()? {
        run_end += step;
        step = step.saturating_mul(2);
    }
    while step > page {
        step /= 2;
        if fits(run_end, step) && mapped(run_end, step).ok()? {
            run_end += step;
        }
    }
    // Backward: the first page of the run.
    let mut run_start = first;
    let mut step = page;
    while run_start >= step && mapped(run_start - step, step).ok()? {
        run_start -= step;
        step = step.saturating_mul(2);
    }
    while step > page {
        step /= 2;
        if run_start >= step && mapped(run_start - step, step).ok()? {
            run_start -= step;
        }
    }
    Some((run_start, run_end.max(first + page)))
}

/// The process's [`AddressSpace`], shared by its threads behind a lock.
pub(crate) struct SharedAddressSpace(Mutex<AddressSpace>);

impl SharedAddressSpace {
    pub(crate) fn new() -> SharedAddressSpace {
        SharedAddressSpace(Mutex::new(AddressSpace::new()))
    }

    /// The cached view. A panic while it was held cannot leave it
    /// inconsistent in a way that matters (it is only a hint), so poisoning
    /// is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, AddressSpace> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::fault::{self, FaultPoint};

    /// Errors that mean "no execute right", and one that means "no memory".
    #[cfg(unix)]
    const EXECUTE_REFUSALS: [i32; 2] = [libc::EACCES, libc::EPERM];
    #[cfg(unix)]
    const OUT_OF_MEMORY: i32 = libc::ENOMEM;
    /// `ERROR_DYNAMIC_CODE_BLOCKED`; `ERROR_NOT_ENOUGH_MEMORY`.
    #[cfg(windows)]
    const EXECUTE_REFUSALS: [i32; 1] = [1655];
    #[cfg(windows)]
    const OUT_OF_MEMORY: i32 = 8;

    fn request() -> PlacementRequest {
        PlacementRequest {
            min: 0,
            max: os::highest_user_address(),
            block_len: os::allocation_granularity(),
            range_len: os::allocation_granularity(),
            granularity: os::allocation_granularity(),
            lowest_address: os::lowest_mappable_address(),
            highest_address: os::highest_user_address(),
            target: None,
        }
    }

    #[test]
    fn a_refused_execute_right_is_reported_as_such() {
        let mut space = AddressSpace::new();
        for errno in EXECUTE_REFUSALS {
            let _refused = fault::fail_with(&[FaultPoint::MapMemory], errno);
            assert_eq!(
                space.map_nearest(request(), 1).unwrap_err().kind,
                ErrorKind::ExecutableMemoryRefused
            );
        }
        let _failing = fault::fail_with(&[FaultPoint::MapMemory], OUT_OF_MEMORY);
        assert_eq!(
            space.map_nearest(request(), 1).unwrap_err().kind,
            ErrorKind::Os {
                call: os::MAP_CALL,
                errno: OUT_OF_MEMORY
            }
        );
    }

    /// A target in the middle of the largest free gap between 256 MiB and
    /// the top of user space, with `reach` bytes free on both sides.
    #[cfg(any(target_os = "linux", windows))]
    fn target_with_free_room(reach: usize) -> usize {
        let mut mapped = Vec::new();
        os::read_maps(&mut Vec::new(), |entry| {
            mapped.push((entry.start, entry.end));
            ControlFlow::Continue(())
        })
        .unwrap();
        let mapped = MappedRanges::from_ranges(mapped);
        let (mut best, mut at) = (0, 0x1000_0000);
        let top = os::highest_user_address();
        while at < top {
            let end = mapped
                .iter()
                .map(|(start, _)| start)
                .find(|&start| start > at)
                .unwrap_or(top)
                .min(top);
            if end - at > best && mapped.is_free(at, end) {
                best = end - at;
                let middle = at + (end - at) / 2;
                if best > 2 * reach + 2 * os::allocation_granularity() {
                    return middle & !(os::allocation_granularity() - 1);
                }
            }
            at = mapped
                .last_overlapping(end, end + 1)
                .map_or(end + 1, |(_, stop)| stop);
        }
        panic!("no free gap of {:#x} bytes", 2 * reach)
    }

    /// The system refuses the 1,000 granules nearest the target although
    /// its map shows them free (Wine does that to some ranges): requests
    /// walk past them, keep them out across re-reads of the map, and get
    /// memory right beyond them.
    #[cfg(any(target_os = "linux", windows))]
    #[test]
    fn a_thousand_refused_granules_nearest_the_target_are_walked_past() {
        use crate::{BufferAllocatorSettings, BufferSearchSettings, Buffers};
        let granule = os::allocation_granularity();
        let reach = 600 * granule;
        let target = target_with_free_room(reach);
        let (refused_start, refused_end) = (target - 500 * granule, target + 500 * granule);
        let _refused = fault::refuse_exact_mappings(refused_start, refused_end);
        let outside = |address: usize| address + granule <= refused_start || address >= refused_end;

        let calls_before = fault::exact_mappings();
        let allocation = Buffers::allocate_private_memory(
            &BufferAllocatorSettings::from_proximity(reach, target, granule),
        )
        .unwrap();
        // One exact mapping per refused granule and one that succeeds: the
        // 1,000 nearest are refused, whichever side each is on.
        let calls = fault::exact_mappings() - calls_before;
        assert!((1000..=1001).contains(&calls), "{calls} exact mappings");
        let base = allocation.base_address();
        assert!(outside(base), "{base:#x} in the refused range");
        assert!(
            base.abs_diff(target) <= 501 * granule,
            "{base:#x} is not just past"
        );

        // The refusals are remembered: the next request tries no refused
        // granule again.
        let calls_before = fault::exact_mappings();
        let mut buffer =
            Buffers::get_buffer(&BufferSearchSettings::from_proximity(reach, target, 64)).unwrap();
        let calls = fault::exact_mappings() - calls_before;
        assert!(calls <= 2, "{calls} exact mappings for the buffer");
        let at = buffer.append_bytes(b"past the refusals").unwrap();
        assert!(
            outside(buffer.base_address()),
            "{at:#x} in the refused range"
        );
        assert!(
            at.abs_diff(target) <= 502 * granule,
            "{at:#x} is not just past"
        );

        // Refusals are remembered across re-reads: a plain walk of the same
        // space, with a fresh read forced, offers none of them again.
        let mut space = AddressSpace::new();
        let mut aimed = request();
        aimed.min = target - reach;
        aimed.max = target + reach;
        aimed.target = Some(target);
        let first = space.map_nearest(aimed, 3).unwrap();
        assert!(outside(first.address()));
        space
            .refresh(&mut ThisProcess {
                protection: Protection::ReadWrite,
            })
            .unwrap();
        assert!(
            !space.mapped.is_free(target, target + granule),
            "the refusal was forgotten"
        );
        space.unmap(first);
    }

    /// A request that meets nothing but refusals ends after a bounded
    /// number of attempts, with `NoSpaceInRange`.
    #[cfg(any(target_os = "linux", windows))]
    #[test]
    fn refusals_everywhere_end_after_a_bounded_number_of_attempts() {
        let granule = os::allocation_granularity();
        let _everywhere = fault::refuse_exact_mappings(0, usize::MAX);
        let mut space = AddressSpace::new();
        let mut wide = request();
        wide.target = Some(target_with_free_room(granule));
        let started = std::time::Instant::now();
        let failure = space.map_nearest(wide, 3).unwrap_err();
        assert_eq!(failure.kind, ErrorKind::NoSpaceInRange);
        // Every attempt is counted: all of them up to the bound, or, in a
        // 32-bit space with fewer free granules than that, every one.
        assert!(
            (1..=MAX_CLAIM_ATTEMPTS).contains(&failure.blocks_tried),
            "{} blocks tried",
            failure.blocks_tried
        );
        assert!(space.refused.len() >= 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    /// The room the main thread's stack grows into is never offered: a
    /// request aimed right below the stack lands below that room.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_room_below_the_main_stack_is_kept_free() {
        let mut stack = None;
        os::read_maps(&mut Vec::new(), |entry| {
            if entry.grows_down {
                stack = Some(entry.start);
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        let Some(stack) = stack else {
            // Past the harness's capture, so that the skip is seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "the_room_below_the_main_stack_is_kept_free: skipped: this process's map shows \
                 no [stack]"
            );
            return;
        };
        let mut space = AddressSpace::new();
        space
            .refresh(&mut ThisProcess {
                protection: Protection::ReadWrite,
            })
            .unwrap();
        assert!(!space.mapped.is_free(stack - STACK_GROWTH_ROOM, stack));
        let granule = os::allocation_granularity();
        let mut aimed = request();
        aimed.min = stack.saturating_sub(1 << 30);
        aimed.max = stack - 1;
        aimed.target = Some(stack - granule);
        if let Ok(mapping) = space.map_nearest(aimed, 1) {
            assert!(
                mapping.address() + mapping.len() <= stack - STACK_GROWTH_ROOM,
                "{:#x} is in the stack's room",
                mapping.address()
            );
        }
    }

    #[test]
    fn without_proc_placement_degrades_to_probing() {
        let mut space = AddressSpace::new();
        let _unreadable = fault::fail(&[FaultPoint::ReadMaps]);
        let mapping = space.map_nearest(request(), 1).unwrap();
        assert!(!space.loaded);
        space.unmap(mapping);
    }

    #[test]
    fn mappings_are_recorded_and_forgotten() {
        let mut space = AddressSpace::new();
        let mapping = space.map_nearest(request(), 1).unwrap();
        let start = mapping.address();
        assert!(!space.mapped.is_free(start, start + 1));
        space.unmap(mapping);
        assert!(
            space
                .mapped
                .is_free(start, start + os::allocation_granularity())
        );
        assert!(space.known_ranges() > 0);
    }
}
