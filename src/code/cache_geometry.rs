//! The arithmetic of AArch64 cache maintenance, free of system calls and
//! instructions so it is tested on every host.
//!
//! After code is written through the data side, an AArch64 core may still
//! fetch the old bytes from its instruction cache, which is not coherent
//! with data stores (Arm Architecture Reference Manual, "Concurrent
//! modification and execution of instructions"). The fix is `DC CVAU` on
//! every data-cache line of the range, `DSB ISH`, `IC IVAU` on every
//! instruction-cache line, `DSB ISH`, `ISB`. Line sizes differ between
//! CPUs (and between the cores of one big.LITTLE system, which is why the
//! architecture reports the *smallest*), so they come from `CTR_EL0`.

/// What `CTR_EL0` says about the caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CacheGeometry {
    /// Smallest data-cache line in the system, in bytes (`DminLine`).
    pub(crate) data_line: usize,
    /// Smallest instruction-cache line, in bytes (`IminLine`).
    pub(crate) instruction_line: usize,
    /// `IDC`: cleaning to the point of unification is not needed for
    /// instruction-to-data coherence.
    pub(crate) data_clean_not_needed: bool,
    /// `DIC`: invalidating the instruction cache is not needed.
    pub(crate) instruction_invalidate_not_needed: bool,
}

impl CacheGeometry {
    /// Decodes `CTR_EL0`: `IminLine` in bits 3:0 and `DminLine` in bits
    /// 19:16, each the log2 of the line size in 4-byte words; `IDC` is bit
    /// 28 and `DIC` bit 29.
    pub(crate) fn from_ctr_el0(ctr: u64) -> CacheGeometry {
        let words = |log2: u64| 4usize << log2;
        CacheGeometry {
            data_line: words((ctr >> 16) & 0xf),
            instruction_line: words(ctr & 0xf),
            data_clean_not_needed: ctr >> 28 & 1 == 1,
            instruction_invalidate_not_needed: ctr >> 29 & 1 == 1,
        }
    }
}

/// The start of every `line`-byte cache line that holds a byte of
/// `[start, end)`. `line` must be a power of two (as decoded above);
/// nothing is yielded for an empty range.
pub(crate) fn line_starts(start: usize, end: usize, line: usize) -> impl Iterator<Item = usize> {
    let first = start & !(line.max(1) - 1);
    let count = if end > start {
        (end - first).div_ceil(line.max(1))
    } else {
        0
    };
    (0..count).map(move |index| first + index * line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_sizes_and_coherence_bits_are_decoded_from_ctr_el0() {
        // Cortex-A53 / A72: 64-byte lines, both operations needed.
        let a53 = CacheGeometry::from_ctr_el0(0x8444_c004);
        assert_eq!(a53.data_line, 64);
        assert_eq!(a53.instruction_line, 64);
        assert!(!a53.data_clean_not_needed && !a53.instruction_invalidate_not_needed);
        // Neoverse N1: IDC and DIC set, so neither is needed.
        let n1 = CacheGeometry::from_ctr_el0(0xb444_c004);
        assert!(n1.data_clean_not_needed && n1.instruction_invalidate_not_needed);
        // A part with 32-byte instruction lines and 128-byte data lines.
        let mixed = CacheGeometry::from_ctr_el0(0x8005_0003);
        assert_eq!(mixed.instruction_line, 32);
        assert_eq!(mixed.data_line, 128);
    }

    #[test]
    fn every_line_touching_the_range_is_visited_once() {
        let lines: Vec<usize> = line_starts(0x1038, 0x1041, 64).collect();
        assert_eq!(lines, [0x1000, 0x1040]);
        assert_eq!(
            line_starts(0x1040, 0x1080, 64).collect::<Vec<_>>(),
            [0x1040]
        );
        assert_eq!(line_starts(0x1040, 0x1040, 64).count(), 0);
        assert_eq!(line_starts(0x2000, 0x1000, 64).count(), 0);
        // Brute force: each byte of the range lies in exactly one line.
        for (start, len, line) in [(5, 300, 32), (64, 1, 64), (1000, 4096, 128)] {
            let starts: Vec<usize> = line_starts(start, start + len, line).collect();
            for byte in start..start + len {
                let holding = starts.iter().filter(|&&s| s <= byte && byte < s + line);
                assert_eq!(holding.count(), 1, "byte {byte:#x}, line {line}");
            }
            assert!(starts.iter().all(|&s| s % line == 0 && s < start + len));
        }
    }
}
