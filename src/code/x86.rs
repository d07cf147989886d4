//! Encoders for the x86-64 jumps a hook needs.
//!
//! A hook overwrites a function's first bytes with a 5-byte `jmp rel32` to a
//! trampoline within ±2 GiB (a shared buffer placed with
//! [`BufferSearchSettings::within_rel32_reach`](crate::BufferSearchSettings::within_rel32_reach)),
//! and the trampoline jumps on to the hook anywhere in the address space
//! with an absolute jump. These functions only build bytes; they are plain
//! arithmetic and available on every architecture (an assembler on one
//! machine may emit code for another).
//!
//! ```
//! use memory_buffers::x86;
//!
//! // `jmp` at 0x1000 to 0x2000: E9 and the displacement from 0x1005.
//! assert_eq!(x86::jmp_rel32(0x1000, 0x2000), Some([0xe9, 0xfb, 0x0f, 0x00, 0x00]));
//! // Too far for rel32:
//! assert_eq!(x86::jmp_rel32(0x1000, 0x9000_0000), None);
//! ```

/// Length of [`jmp_rel32`]'s encoding.
pub const JMP_REL32_LEN: usize = 5;

/// Length of [`jmp_abs_indirect`]'s encoding.
pub const JMP_ABS_INDIRECT_LEN: usize = 14;

/// Length of [`jmp_abs_register`]'s encoding for `rax` to `rdi`.
pub const JMP_ABS_REGISTER_LEN: usize = 12;

/// A 64-bit general-purpose register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Register {
    Rax = 0,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

/// The displacement a `rel32` operand needs for an instruction whose next
/// instruction starts at `next` to reach `target`, if it fits in 32 bits.
///
/// ```
/// use memory_buffers::x86::rel32;
/// assert_eq!(rel32(0x1005, 0x1000), Some(-5));
/// assert_eq!(rel32(0, 0x8000_0000), None);
/// ```
pub fn rel32(next: usize, target: usize) -> Option<i32> {
    let displacement = (target as i64).wrapping_sub(next as i64);
    // Addresses are at most 2^64; the difference of two within 2^63 of each
    // other is exact in i64, and anything farther does not fit anyway.
    if (target >= next) != (displacement >= 0) {
        return None;
    }
    i32::try_from(displacement).ok()
}

/// `jmp rel32` placed at `at`, jumping to `target`: `E9` and the
/// displacement from `at + 5`. `None` if `target` is out of reach.
///
/// ```
/// use memory_buffers::x86::jmp_rel32;
/// assert_eq!(jmp_rel32(0x1000, 0x1000), Some([0xe9, 0xfb, 0xff, 0xff, 0xff]));
/// ```
pub fn jmp_rel32(at: usize, target: usize) -> Option<[u8; JMP_REL32_LEN]> {
    let displacement = rel32(at.checked_add(JMP_REL32_LEN)?, target)?;
    let [a, b, c, d] = displacement.to_le_bytes();
    Some([0xe9, a, b, c, d])
}

/// `jmp [rip+0]` followed by the 8-byte absolute `target`: reaches any
/// address and changes no register. The target is at byte 6 of the
/// encoding; place the jump so that it is 8-byte aligned, and an aligned
/// 8-byte store re-points the jump atomically.
///
/// ```
/// use memory_buffers::x86::jmp_abs_indirect;
/// let bytes = jmp_abs_indirect(0x1122_3344);
/// assert_eq!(bytes[..6], [0xff, 0x25, 0, 0, 0, 0]);
/// assert_eq!(bytes[6..], 0x1122_3344u64.to_le_bytes());
/// ```
pub fn jmp_abs_indirect(target: usize) -> [u8; JMP_ABS_INDIRECT_LEN] {
    let mut bytes = [0; JMP_ABS_INDIRECT_LEN];
    bytes[..6].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
    bytes[6..].copy_from_slice(&(target as u64).to_le_bytes());
    bytes
}

/// `mov register, target` then `jmp register`: reaches any address and
/// overwrites `register` (choose a scratch register such as `rax` or
/// `r11`). 12 bytes for `rax` to `rdi`, 13 for `r8` to `r15`.
///
/// ```
/// use memory_buffers::x86::{Register, jmp_abs_register};
/// let bytes = jmp_abs_register(Register::Rax, 0x10);
/// assert_eq!(bytes, [0x48, 0xb8, 0x10, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xe0]);
/// let bytes = jmp_abs_register(Register::R11, 0x10);
/// assert_eq!(bytes, [0x49, 0xbb, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x41, 0xff, 0xe3]);
/// ```
pub fn jmp_abs_register(register: Register, target: usize) -> Vec<u8> {
    let number = register as u8;
    let low = number & 7;
    let extended = number >= 8;
    let mut bytes = Vec::with_capacity(JMP_ABS_REGISTER_LEN + 1);
    // REX.W (and REX.B for r8-r15), then B8+r: mov r64, imm64.
    bytes.push(if extended { 0x49 } else { 0x48 });
    bytes.push(0xb8 + low);
    bytes.extend_from_slice(&(target as u64).to_le_bytes());
    // FF /4 with a register operand: jmp r64.
    if extended {
        bytes.push(0x41);
    }
    bytes.extend_from_slice(&[0xff, 0xe0 + low]);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel32_reaches_exactly_the_signed_32_bit_range() {
        // Room for the whole reach both ways on 64-bit; on 32-bit, reach
        // below 0 and above the top wraps, checked apart below.
        #[cfg(target_pointer_width = "64")]
        {
            let next = 0x1_0000_0000;
            assert_eq!(rel32(next, next + i32::MAX as usize), Some(i32::MAX));
            assert_eq!(rel32(next, next + i32::MAX as usize + 1), None);
            assert_eq!(rel32(next, next - (1 << 31)), Some(i32::MIN));
            assert_eq!(rel32(next, next - (1 << 31) - 1), None);
        }
        let next = 0x8000_0000usize;
        assert_eq!(rel32(next, next + (i32::MAX as usize)), Some(i32::MAX));
        assert_eq!(rel32(next, 0), Some(i32::MIN));
        assert_eq!(rel32(0x7fff_ffff, 0xffff_ffff), None);
        assert_eq!(rel32(0xffff_ffff, 0x7fff_ffff), Some(i32::MIN));
        assert_eq!(rel32(0xffff_ffff, 0x7fff_fffe), None);
        assert_eq!(rel32(0, usize::MAX), None);
        assert_eq!(rel32(usize::MAX, 0), None);
        assert_eq!(rel32(usize::MAX, usize::MAX - 3), Some(-3));
    }

    #[test]
    fn jmp_rel32_measures_from_the_next_instruction() {
        assert_eq!(jmp_rel32(0x1000, 0x1005), Some([0xe9, 0, 0, 0, 0]));
        let far = 0x1005 + i32::MAX as usize;
        assert_eq!(jmp_rel32(0x1000, far), Some([0xe9, 0xff, 0xff, 0xff, 0x7f]));
        assert_eq!(jmp_rel32(0x1000, far + 1), None);
        assert_eq!(jmp_rel32(usize::MAX - 2, 0), None);
    }

    #[test]
    fn register_jumps_encode_every_register() {
        for number in 0..16u8 {
            let register = [
                Register::Rax,
                Register::Rcx,
                Register::Rdx,
                Register::Rbx,
                Register::Rsp,
                Register::Rbp,
                Register::Rsi,
                Register::Rdi,
                Register::R8,
                Register::R9,
                Register::R10,
                Register::R11,
                Register::R12,
                Register::R13,
                Register::R14,
                Register::R15,
            ][number as usize];
            let target = 0x0102_0304_0506_0708_u64 as usize;
            let bytes = jmp_abs_register(register, target);
            let extended = number >= 8;
            assert_eq!(bytes.len(), if extended { 13 } else { 12 });
            assert_eq!(bytes[1], 0xb8 + (number & 7));
            assert_eq!(bytes[2..10], (target as u64).to_le_bytes());
            assert_eq!(*bytes.last().unwrap(), 0xe0 + (number & 7));
        }
    }
}
