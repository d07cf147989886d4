//! Instruction-cache maintenance on AArch64 (but Apple's, which has a
//! library call for it): the Arm sequence in inline assembly, the one
//! piece of `unix` that is written for a single architecture.
//!
//! # References
//!
//! Arm Architecture Reference Manual, "Cache maintenance instructions"
//! (`DC CVAU`, `IC IVAU`) and the `CTR_EL0` register.

use crate::code::cache_geometry::{CacheGeometry, line_starts};
use std::arch::asm;

/// Cleans and invalidates the cache lines of `[address, address + len)`
/// (see [`flush_instruction_cache`](super::flush_instruction_cache));
/// returns how many lines it maintained.
pub(super) fn maintain_caches(address: usize, len: usize) -> usize {
    let ctr: u64;
    // SAFETY: reading `CTR_EL0` has no side effects; Linux and FreeBSD let
    // user space read it (directly, or by trapping and emulating the read).
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let geometry = CacheGeometry::from_ctr_el0(ctr);
    let end = address.saturating_add(len);
    let mut lines = 0;
    if !geometry.data_clean_not_needed {
        for line in line_starts(address, end, geometry.data_line) {
            // SAFETY: cleaning a data-cache line of mapped memory (the
            // caller's guarantee) writes dirty bytes back and changes no
            // value a program can observe.
            unsafe { asm!("dc cvau, {}", in(reg) line, options(nostack, preserves_flags)) };
            lines += 1;
        }
    }
    // SAFETY: a barrier; it only orders the cleaning before what follows.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    if !geometry.instruction_invalidate_not_needed {
        for line in line_starts(address, end, geometry.instruction_line) {
            // SAFETY: invalidating instruction-cache lines of mapped memory
            // only makes later fetches read memory again.
            unsafe { asm!("ic ivau, {}", in(reg) line, options(nostack, preserves_flags)) };
            lines += 1;
        }
        // SAFETY: a barrier, as above.
        unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    }
    // SAFETY: discards instructions this core fetched before the barrier.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
    lines
}
