//! A real inline hook on x86-64, the way hooking libraries build one:
//!
//! 1. a trampoline in a shared buffer within `rel32` reach of the function,
//!    holding an absolute jump (`jmp [rip+0]`) to the hook, wherever the
//!    hook is;
//! 2. a 5-byte `jmp rel32` written over the function's first bytes
//!    (`Buffers::patch_code`: the code page is made writable, written, and
//!    given back its exact protection);
//! 3. the hook re-pointed later by rewriting the trampoline's 8-byte target
//!    with one aligned store (`Buffers::overwrite_allocated_code_ex`);
//! 4. the function's original bytes put back.
//!
//! `cargo run --release --example hook` prints the function's result before,
//! with the hook, re-pointed, and after unhooking. The test
//! `tests/hook_example.rs` runs the same code and checks the results.

#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub mod inline_hook {
    use memory_buffers::{BufferSearchSettings, Buffers, Error, x86};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The function to hook. `black_box` keeps its body longer than the
    /// 5-byte jump and stops the compiler from folding calls to it.
    #[inline(never)]
    pub extern "C" fn original(x: i32) -> i32 {
        let doubled = std::hint::black_box(x) * 2;
        std::hint::black_box(doubled) + 1
    }

    /// The first hook.
    pub extern "C" fn times_hundred(x: i32) -> i32 {
        x * 100
    }

    /// The hook it is re-pointed to.
    pub extern "C" fn negated(x: i32) -> i32 {
        -x
    }

    /// Calls `function` so that the compiler cannot see which one it is.
    pub fn call(function: extern "C" fn(i32) -> i32, x: i32) -> i32 {
        std::hint::black_box(function)(x)
    }

    /// An installed hook.
    pub struct Hook {
        target: usize,
        saved: [u8; x86::JMP_REL32_LEN],
        /// The trampoline's 8-byte jump target, 8-byte aligned.
        target_slot: usize,
    }

    /// Trampoline layout: a 2-byte `nop`, then `jmp [rip+0]` whose 8-byte
    /// target lands at offset 8, aligned since the trampoline is.
    const NOP2: [u8; 2] = [0x66, 0x90];

    impl Hook {
        /// Sends every call of `target` to `hook`.
        ///
        /// # Safety
        ///
        /// `target` is a function at least 5 bytes long whose first 5 bytes
        /// no thread executes during the call and no jump lands inside.
        pub unsafe fn install(target: usize, hook: usize) -> Result<Hook, Error> {
            let after_jump = target + x86::JMP_REL32_LEN;
            let size = NOP2.len() + x86::JMP_ABS_INDIRECT_LEN;
            let settings = BufferSearchSettings::within_rel32_reach(after_jump, size);
            let mut buffer = Buffers::get_buffer_aligned(&settings, 8)?;
            let trampoline = buffer.append_code(&NOP2)?;
            buffer.append_code(&x86::jmp_abs_indirect(hook))?;
            drop(buffer);
            let jump = x86::jmp_rel32(target, trampoline).expect("in reach: within_rel32_reach");
            let mut saved = [0; x86::JMP_REL32_LEN];
            // SAFETY: the caller's contract: `target` has 5 readable bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(target as *const u8, saved.as_mut_ptr(), saved.len())
            };
            // SAFETY: the caller's contract.
            unsafe { Buffers::patch_code(target, &jump)? };
            Ok(Hook {
                target,
                saved,
                target_slot: trampoline + 8,
            })
        }

        /// Sends calls to `hook` instead, with one atomic store: a thread
        /// calling the function meanwhile goes to the old hook or the new
        /// one, never anywhere else.
        pub fn repoint(&self, hook: usize) -> Result<(), Error> {
            // SAFETY: the slot is 8 written, 8-byte aligned bytes of a
            // buffer; the write is one aligned atomic store, so a thread
            // running the trampoline reads the old or the new target.
            unsafe {
                Buffers::overwrite_allocated_code_ex(self.target_slot, 8, |slot, _| {
                    (*slot.cast::<AtomicU64>()).store(hook as u64, Ordering::Release)
                })
            }
        }

        /// Puts the function's first bytes back.
        ///
        /// # Safety
        ///
        /// No thread executes the first 5 bytes of the target meanwhile.
        pub unsafe fn uninstall(self) -> Result<(), Error> {
            // SAFETY: the caller's contract; the bytes are the target's own.
            unsafe { Buffers::patch_code(self.target, &self.saved) }
        }
    }

    /// Runs the whole example; returns the four results for 5.
    pub fn run() -> Result<[i32; 4], Error> {
        let target = original as extern "C" fn(i32) -> i32 as usize;
        let before = call(original, 5);
        // SAFETY: `original` is longer than 5 bytes, no other thread runs
        // it, and no jump inside it lands in its first 5 bytes (it has no
        // loop).
        let hook =
            unsafe { Hook::install(target, times_hundred as extern "C" fn(i32) -> i32 as usize)? };
        let hooked = call(original, 5);
        hook.repoint(negated as extern "C" fn(i32) -> i32 as usize)?;
        let repointed = call(original, 5);
        // SAFETY: as for `install`.
        unsafe { hook.uninstall()? };
        let after = call(original, 5);
        Ok([before, hooked, repointed, after])
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(dead_code)]
fn main() -> Result<(), memory_buffers::Error> {
    let [before, hooked, repointed, after] = inline_hook::run()?;
    println!("original(5)   = {before}");
    println!("hooked(5)     = {hooked}   (jmp rel32 -> trampoline -> times_hundred)");
    println!("re-pointed(5) = {repointed}    (the trampoline now jumps to negated)");
    println!("unhooked(5)   = {after}");
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(dead_code)]
fn main() {
    println!("this example writes x86-64 jumps; it runs on x86-64 only");
}
