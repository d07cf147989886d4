//! Writing, running and rewriting machine code in shared buffers (x86-64).

#![cfg(target_arch = "x86_64")]

use memory_buffers::{BufferSearchSettings, Buffers, ErrorKind, LockedBuffer};

const NEAR: usize = 0x7fff_0000;

/// `mov eax, value; ret`
fn return_constant(value: u32) -> [u8; 6] {
    let bytes = value.to_le_bytes();
    [0xb8, bytes[0], bytes[1], bytes[2], bytes[3], 0xc3]
}

/// `lea eax, [rdi + rsi]; ret`: the first two integer arguments of the System
/// V convention, which `extern "sysv64"` selects on Windows too.
const ADD_ARGUMENTS: [u8; 4] = [0x8d, 0x04, 0x37, 0xc3];

fn buffer_near(target: usize, size: usize) -> LockedBuffer {
    Buffers::get_buffer(&BufferSearchSettings::from_proximity(NEAR, target, size)).unwrap()
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

#[test]
fn written_code_runs() {
    let mut buffer = buffer_near(hook_target as *const () as usize, 32);
    let constant = buffer.append_code(&return_constant(42)).unwrap();
    let add = buffer.append_code(&ADD_ARGUMENTS).unwrap();
    drop(buffer);
    // SAFETY: both functions were written above and buffers stay mapped.
    unsafe {
        assert_eq!(call_returning_u32(constant), 42);
        let add: extern "sysv64" fn(i32, i32) -> i32 = std::mem::transmute(add);
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
    let replacement = return_constant(8);
    // SAFETY: the call must refuse; if it did not, it would only write the
    // local array.
    let error = unsafe {
        Buffers::overwrite_allocated_code(not_a_buffer.as_mut_ptr() as usize, &replacement)
    }
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutsideBuffers);
    assert_eq!(not_a_buffer, return_constant(7));

    // Past the written part of a real buffer is refused too.
    let mut buffer = buffer_near(hook_target as *const () as usize, 16);
    let written = buffer.append_code(&return_constant(9)).unwrap();
    let beyond = buffer.next_address();
    drop(buffer);
    // SAFETY: refused before any write.
    let error =
        unsafe { Buffers::overwrite_allocated_code(written + 1, &replacement[..6]) }.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutsideBuffers);
    // SAFETY: as above.
    let error =
        unsafe { Buffers::overwrite_allocated_code(beyond, &replacement[..1]) }.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutsideBuffers);
    // SAFETY: as above.
    let error = unsafe { Buffers::overwrite_allocated_code(0, &replacement[..1]) }.unwrap_err();
    assert!(error.invalid_request().is_some());
}

/// Writes `jmp rel32` to `destination` into `buffer`; returns its address.
fn append_jump(buffer: &mut LockedBuffer, destination: usize) -> usize {
    let after_jump = buffer.next_address() as i64 + 5;
    let displacement =
        i32::try_from(destination as i64 - after_jump).expect("destination within ±2 GiB");
    let mut jump = [0xe9, 0, 0, 0, 0];
    jump[1..].copy_from_slice(&displacement.to_le_bytes());
    buffer.append_code(&jump).unwrap()
}

#[test]
fn a_jmp_rel32_trampoline_reaches_a_rust_function() {
    let target = hook_target as *const () as usize;
    let mut buffer = buffer_near(target, 5);
    let trampoline = append_jump(&mut buffer, target);
    drop(buffer);
    assert!(trampoline.abs_diff(target) < NEAR);
    // SAFETY: the trampoline jumps to `hook_target`, which has this signature.
    assert_eq!(unsafe { call_returning_u32(trampoline) }, 0xfeed);
}

#[test]
fn code_written_concurrently_into_different_buffers_runs() {
    std::thread::scope(|scope| {
        for thread in 0..4u32 {
            scope.spawn(move || {
                for iteration in 0..500u32 {
                    let value = thread << 16 | iteration;
                    let mut buffer = buffer_near(hook_target as *const () as usize, 6);
                    let function = buffer.append_code(&return_constant(value)).unwrap();
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
