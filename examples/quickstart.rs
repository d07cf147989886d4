//! The main job of this library: put a hook trampoline within ±2 GiB of a
//! function, so a 5-byte `jmp rel32` can reach it, and call through it.
//!
//! Run with `cargo run --release --example quickstart`.

use memory_buffers::{BufferAllocatorSettings, BufferSearchSettings, Buffers, LockedBuffer};

/// The function being "hooked".
extern "C" fn answer() -> u32 {
    42
}

/// Appends `jmp rel32` to `destination`; returns the jump's address.
fn append_jump(
    buffer: &mut LockedBuffer,
    destination: usize,
) -> Result<usize, Box<dyn std::error::Error>> {
    let after_jump = buffer.next_address() as i64 + 5;
    let displacement = i32::try_from(destination as i64 - after_jump)?;
    let mut jump = [0xe9, 0, 0, 0, 0];
    jump[1..].copy_from_slice(&displacement.to_le_bytes());
    Ok(buffer.append_code(&jump)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = answer as *const () as usize;
    // Leave room for the 5-byte jump itself inside the ±2 GiB reach.
    let reach = 0x7fff_0000;

    let mut buffer = Buffers::get_buffer(&BufferSearchSettings::from_proximity(reach, target, 5))?;
    let trampoline = append_jump(&mut buffer, target)?;
    drop(buffer);
    println!(
        "locator:     {:?} at {:#x}",
        Buffers::locator_kind()?,
        Buffers::locator_address()?
    );
    println!("target:      {target:#x} (fn answer)");
    println!(
        "trampoline:  {trampoline:#x}, {} bytes from the target",
        trampoline.abs_diff(target)
    );

    // `jmp rel32` is the same instruction in 32-bit x86 code.
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        // SAFETY: the trampoline is a complete `jmp` to `answer`, which has
        // exactly this signature; buffers are never unmapped.
        let through_trampoline: extern "C" fn() -> u32 = unsafe { std::mem::transmute(trampoline) };
        println!("called through the trampoline: {}", through_trampoline());
    }

    let private = Buffers::allocate_private_memory(&BufferAllocatorSettings::from_proximity(
        reach, target, 4096,
    ))?;
    println!(
        "private:     {:#x} ({} bytes), {} bytes from the target",
        private.base_address(),
        private.size(),
        private.base_address().abs_diff(target)
    );
    Ok(())
}
