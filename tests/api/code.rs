//! Writing, running and rewriting machine code in shared buffers, on
//! x86-64, 32-bit x86 and AArch64 (where the suite runs under QEMU in CI). Every test
//! calls the code it wrote.
//!
//! On AArch64 a write of code must be followed by an instruction-cache
//! flush, which the library does (`src/fault_tests.rs` shows it flushes
//! exactly the written range). QEMU cannot show a missing flush: it
//! notices writes to translated code by itself and retranslates, so these
//! tests would pass there without it; on hardware the old bytes could run.

#![cfg(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64"))]

use memory_buffers::{BufferSearchSettings, Buffers, ErrorKind, LockedBuffer};

/// How far a buffer may be from the function its trampoline reaches:
/// `jmp rel32` reaches ±2 GiB, AArch64's `b` ±128 MiB.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
const NEAR: usize = 0x7fff_0000;
#[cfg(target_arch = "aarch64")]
const NEAR: usize = 120 << 20;

/// `mov eax, value; ret`
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
fn return_constant(value: u32) -> Vec<u8> {
    let bytes = value.to_le_bytes();
    vec![0xb8, bytes[0], bytes[1], bytes[2], bytes[3], 0xc3]
}

/// `lea eax, [rdi + rsi]; ret`: the first two integer arguments of the
/// System V convention, which `extern "sysv64"` selects on Windows too.
#[cfg(target_arch = "x86_64")]
const ADD_ARGUMENTS: &[u8] = &[0x8d, 0x04, 0x37, 0xc3];

/// `mov eax, [esp + 4]; add eax, [esp + 8]; ret`: cdecl, the C convention
/// of 32-bit x86 on Linux and Windows alike, passes both on the stack.
#[cfg(target_arch = "x86")]
const ADD_ARGUMENTS: &[u8] = &[0x8b, 0x44, 0x24, 0x04, 0x03, 0x44, 0x24, 0x08, 0xc3];

/// AArch64 instructions, little-endian, as the architecture encodes them.
#[cfg(target_arch = "aarch64")]
mod a64 {
    /// `ret`
    pub const RET: u32 = 0xd65f_03c0;
    /// `movz w0, #imm16`
    pub fn movz_w0(imm16: u16) -> u32 {
        0x5280_0000 | u32::from(imm16) << 5
    }
    /// `movk w0, #imm16, lsl #16`
    pub fn movk_w0_high(imm16: u16) -> u32 {
        0x72a0_0000 | u32::from(imm16) << 5
    }
    /// `add w0, w0, w1`
    pub const ADD_W0_W0_W1: u32 = 0x0b01_0000;
    /// `b` from `from` to `to`: a signed 26-bit count of instructions.
    pub fn b(from: usize, to: usize) -> u32 {
        let offset = to as i64 - from as i64;
        assert_eq!(offset % 4, 0);
        let words = offset / 4;
        assert!((-(1 << 25)..1 << 25).contains(&words), "within ±128 MiB");
        0x1400_0000 | (words as u32 & 0x03ff_ffff)
    }
    pub fn bytes(instructions: &[u32]) -> Vec<u8> {
        instructions.iter().flat_map(|i| i.to_le_bytes()).collect()
    }
}

/// `movz w0, #low; movk w0, #high, lsl #16; ret`
#[cfg(target_arch = "aarch64")]
fn return_constant(value: u32) -> Vec<u8> {
    a64::bytes(&[
        a64::movz_w0(value as u16),
        a64::movk_w0_high((value >> 16) as u16),
        a64::RET,
    ])
}

/// `add w0, w0, w1; ret`
#[cfg(target_arch = "aarch64")]
fn add_arguments() -> Vec<u8> {
    a64::bytes(&[a64::ADD_W0_W0_W1, a64::RET])
}
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
fn add_arguments() -> Vec<u8> {
    ADD_ARGUMENTS.to_vec()
}

/// The C calling convention for two integers, on each architecture.
#[cfg(target_arch = "x86_64")]
type AddFunction = extern "sysv64" fn(i32, i32) -> i32;
#[cfg(target_arch = "x86")]
type AddFunction = extern "cdecl" fn(i32, i32) -> i32;
#[cfg(target_arch = "aarch64")]
type AddFunction = extern "C" fn(i32, i32) -> i32;

/// A buffer within reach of `target`, its position aligned for
/// instructions (AArch64 instructions are 4-byte aligned).
fn buffer_near(target: usize, size: usize) -> LockedBuffer {
    let settings = BufferSearchSettings::from_proximity(NEAR, target, size);
    Buffers::get_buffer_aligned(&settings, 4).unwrap()
}

/// # Safety
///
/// `address` must hold a complete function with this signature.
unsafe fn call_returning_u32(address: usize) -> u32 {
    // SAFETY: the caller guarantees the code at `address`.
    let function: extern "C" fn() -> u32 = unsafe { std::mem::transmute(address) };
    function()
}

extern "C" fn hook_target() -> u32 {
    0xfeed
}

extern "C" fn other_target() -> u32 {
    0xbeef
}

#[test]
fn written_code_runs() {
    let mut buffer = buffer_near(hook_target as *const () as usize, 32);
    let constant = buffer.append_code(&return_constant(42)).unwrap();
    let add = buffer.append_code(&add_arguments()).unwrap();
    drop(buffer);
    // SAFETY: both functions were written above and buffers stay mapped.
    unsafe {
        assert_eq!(call_returning_u32(constant), 42);
        let add: AddFunction = std::mem::transmute(add);
        assert_eq!(add(40, 2), 42);
        assert_eq!(add(-7, 3), -4);
    }
}

#[test]
fn overwritten_code_returns_the_new_result() {
    let mut buffer = buffer_near(hook_target as *const () as usize, 16);
    let function = buffer.append_code(&return_constant(1)).unwrap();
    drop(buffer);
    // SAFETY: written above.
    assert_eq!(unsafe { call_returning_u32(function) }, 1);
    let replacement = return_constant(2);
    // SAFETY: no other thread runs or rewrites this function.
    unsafe { Buffers::overwrite_allocated_code(function, &replacement) }.unwrap();
    // SAFETY: a complete function was written over the old one.
    assert_eq!(unsafe { call_returning_u32(function) }, 2);

    let third = return_constant(3);
    let mut called_with = None;
    // SAFETY: as above; the callback writes only the target range.
    unsafe {
        Buffers::overwrite_allocated_code_ex(function, third.len(), |target, size| {
            called_with = Some((target as usize, size));
            std::ptr::copy_nonoverlapping(third.as_ptr(), target, size);
        })
    }
    .unwrap();
    assert_eq!(called_with, Some((function, third.len())));
    // SAFETY: as above.
    assert_eq!(unsafe { call_returning_u32(function) }, 3);
}

#[test]
fn overwriting_outside_the_buffers_is_refused() {
    let mut not_a_buffer = return_constant(7);
    let len = not_a_buffer.len();
    let replacement = return_constant(8);
    // SAFETY: the call must refuse; if it did not, it would only write the
    // local array.
    let error = unsafe {
        Buffers::overwrite_allocated_code(not_a_buffer.as_mut_ptr() as usize, &replacement)
    }
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutsideBuffers);
    assert_eq!(not_a_buffer, return_constant(7));

    // Past the written part of a real buffer is refused too. The buffer is
    // held meanwhile: released, another test's thread could append after
    // `written` and make the range valid (and the overwrite would then land
    // in that thread's code).
    let mut buffer = buffer_near(hook_target as *const () as usize, 16);
    let written = buffer.append_code(&return_constant(9)).unwrap();
    let beyond = buffer.next_address();
    // SAFETY: refused before any write.
    let error =
        unsafe { Buffers::overwrite_allocated_code(written + 1, &replacement[..len]) }.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutsideBuffers);
    // SAFETY: as above.
    let error =
        unsafe { Buffers::overwrite_allocated_code(beyond, &replacement[..1]) }.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutsideBuffers);
    // SAFETY: as above.
    let error = unsafe { Buffers::overwrite_allocated_code(0, &replacement[..1]) }.unwrap_err();
    assert!(error.invalid_request().is_some());
    drop(buffer);
}

/// A jump from `at` to `destination`: `jmp rel32` (x86-64) or `b`
/// (AArch64).
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
fn jump(at: usize, destination: usize) -> Vec<u8> {
    let after_jump = at as i64 + 5;
    let displacement =
        i32::try_from(destination as i64 - after_jump).expect("destination within ±2 GiB");
    let mut jump = vec![0xe9, 0, 0, 0, 0];
    jump[1..].copy_from_slice(&displacement.to_le_bytes());
    jump
}
#[cfg(target_arch = "aarch64")]
fn jump(at: usize, destination: usize) -> Vec<u8> {
    a64::bytes(&[a64::b(at, destination)])
}

/// Writes a jump to `destination` into `buffer`; returns its address.
fn append_jump(buffer: &mut LockedBuffer, destination: usize) -> usize {
    let code = jump(buffer.next_address(), destination);
    buffer.append_code(&code).unwrap()
}

#[test]
fn a_trampoline_reaches_a_rust_function() {
    let target = hook_target as *const () as usize;
    let mut buffer = buffer_near(target, 8);
    let trampoline = append_jump(&mut buffer, target);
    drop(buffer);
    assert!(trampoline.abs_diff(target) < NEAR);
    // SAFETY: the trampoline jumps to `hook_target`, which has this signature.
    assert_eq!(unsafe { call_returning_u32(trampoline) }, 0xfeed);
}

/// A hook re-pointed: the trampoline's jump is rewritten in place with
/// `overwrite_allocated_code` to reach another function, and the next call
/// goes there.
#[test]
fn a_re_pointed_trampoline_reaches_the_new_function() {
    let first = hook_target as *const () as usize;
    let second = other_target as *const () as usize;
    let mut buffer = buffer_near(first, 8);
    let trampoline = append_jump(&mut buffer, first);
    drop(buffer);
    // SAFETY: jumps to `hook_target`.
    assert_eq!(unsafe { call_returning_u32(trampoline) }, 0xfeed);
    for (destination, expected) in [(second, 0xbeef), (first, 0xfeed), (second, 0xbeef)] {
        let code = jump(trampoline, destination);
        // SAFETY: no other thread runs or rewrites this trampoline. The
        // jump is one instruction, complete before and after.
        unsafe { Buffers::overwrite_allocated_code(trampoline, &code) }.unwrap();
        // SAFETY: jumps to a function with this signature.
        assert_eq!(unsafe { call_returning_u32(trampoline) }, expected);
    }
}

#[test]
fn code_written_concurrently_into_different_buffers_runs() {
    std::thread::scope(|scope| {
        for thread in 0..4u32 {
            scope.spawn(move || {
                for iteration in 0..500u32 {
                    let value = thread << 16 | iteration;
                    let code = return_constant(value);
                    // Room for the code as this architecture encodes it (6
                    // bytes on x86-64, 12 on AArch64).
                    let mut buffer = buffer_near(hook_target as *const () as usize, code.len());
                    let function = buffer.append_code(&code).unwrap();
                    // Run it while still holding the buffer, and after.
                    // SAFETY: a complete function was just written.
                    assert_eq!(unsafe { call_returning_u32(function) }, value);
                    drop(buffer);
                    // SAFETY: as above; appended bytes never change.
                    assert_eq!(unsafe { call_returning_u32(function) }, value);
                }
            });
        }
    });
}
