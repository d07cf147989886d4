//! Writing code: the bytes of the jumps a hook needs, writing them over
//! code outside the buffers, and the cache arithmetic that makes written
//! code visible to instruction fetch.
//!
//! - `x86`: encoders for `jmp rel32` and absolute jumps; public, pure.
//! - `patch`: which pages of a patched range need which protection, and
//!   the write between making them writable and restoring them.
//! - `cache_geometry`: the line arithmetic of AArch64 cache maintenance,
//!   pure and tested on every host. The instructions themselves are inline
//!   assembly and `unsafe`, so they stay in the OS layer (`os::unix`), one
//!   function per architecture, chosen once.

// Cache-line arithmetic for AArch64 code writes; pure, tested everywhere.
#[cfg_attr(
    not(all(target_arch = "aarch64", unix, not(target_vendor = "apple"))),
    allow(dead_code)
)]
pub(crate) mod cache_geometry;
pub(crate) mod patch;
pub mod x86;
