//! Allocate memory between a minimum and a maximum address.
//!
//! Hooking libraries need their trampolines within ±2 GiB of the function
//! they hook, so that a 5-byte `jmp rel32` reaches them; assemblers and JITs
//! often need memory in the first 2 GiB. This crate provides both:
//!
//! - **Private allocations** ([`Buffers::allocate_private_memory`]): pages
//!   inside `[min, max]`, as close to the target as the address space allows,
//!   unmapped on drop.
//! - **Shared buffers** ([`Buffers::get_buffer`]): permanent
//!   read/write/execute buffers registered in a per-process *locator* that
//!   every buffers library in the process (this crate, other copies of it,
//!   the C# original) finds and shares. A [`LockedBuffer`] gives exclusive
//!   use until dropped; appended bytes never move.
//!
//! ```
//! use memory_buffers::{BufferSearchSettings, Buffers};
//!
//! fn hooked() {}
//! let target = hooked as *const () as usize;
//! let settings = BufferSearchSettings::from_proximity(0x7fff_0000, target, 64);
//! let mut buffer = Buffers::get_buffer(&settings)?;
//! let trampoline = buffer.append_code(&[0xcc; 16])?;
//! assert!(trampoline.abs_diff(target) < 0x7fff_0000);
//! # Ok::<(), memory_buffers::Error>(())
//! ```
//!
//! # The shared format
//!
//! The rendezvous, the locator's binary layout, its locks and the rules
//! every implementation follows are a contract with the other buffers
//! libraries in the process. It is written down in the format contract,
//! `FORMAT.md` at the root of the repository and of the package.
//!
//! # Platforms
//!
//! - Linux x86-64: tested.
//! - Linux AArch64: tested under QEMU user mode (never on Arm hardware);
//!   the instruction cache is flushed after every code write.
//! - Windows x86-64: tested under Wine.
//! - macOS (Intel and Apple Silicon, with `MAP_JIT` and
//!   `pthread_jit_write_protect_np` around code writes) and FreeBSD:
//!   compiled in CI, never run.
//! - Android (AArch64, x86-64): the Linux backend, compiled in CI, never
//!   run; the locator is always private there, as the original's is.
//!
//! On Unix the shared locator is found through a file in
//! `/tmp/.reloaded/memory.buffers`, on Windows through the named section
//! `/Reloaded.Memory.Buffers.MemoryBuffer, PID <pid>`, both as the original
//! library does it. Android has no such place, and each copy of the
//! library keeps its own locator ([`PrivateLocatorReason::Unsupported`]).
//! Other systems compile, and every call returns
//! [`ErrorKind::Unsupported`].

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// The stub backend leaves the parsing and placement code unused.
#![cfg_attr(memory_buffers_unsupported, allow(dead_code))]

// The front: what callers name. Each public item is defined in one of
// these and re-exported below, at the crate root.

/// The entry points (`Buffers`): get a shared buffer, allocate private
/// memory, patch code.
mod buffers;
/// The one error type and the reasons it carries, as values; every other
/// module reports through it, so it depends on none of them.
mod error;
/// What a request asks for (`BufferSearchSettings`,
/// `BufferAllocatorSettings`), validated before any system call.
mod settings;

// What the front is built from, in the order a request meets it.

/// Writing code: encoders (`x86`), patching, instruction-cache arithmetic.
mod code;
/// The only place that talks to the operating system: one backend per
/// system, chosen once, behind one private contract.
mod os;
/// Private pages (`PrivateAllocation`), mapped for one caller and unmapped
/// on drop.
mod private;
/// Other processes (`TargetProcess`), with the `external-processes`
/// feature.
#[cfg(feature = "external-processes")]
mod remote;
/// Shared buffers: the locator, its rendezvous, the guard, and the
/// per-process state.
mod shared;
/// Free space near an address: the address map, placement, and the loop
/// that claims the nearest block.
mod space;

// Linux only, not Android: they drive the rendezvous file, which Android
// never uses, and they run on this machine's kernel.
#[cfg(all(test, target_os = "linux"))]
mod fault_tests;

/// The top of user space that the pure tests assume: an x86-64 Linux
/// process's where `usize` holds it, a large-address-aware 32-bit Windows
/// process's (all but the last 64 KiB of 4 GiB) on 32-bit targets.
#[cfg(test)]
const TEST_TOP: usize = if usize::BITS == 64 {
    0x7fff_ffff_efff_u64 as usize
} else {
    0xfffe_ffff
};
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;

pub use buffers::Buffers;
pub use code::x86;
#[cfg(feature = "external-processes")]
pub use error::TargetProcessError;
pub use error::{Error, ErrorKind, InvalidRequest, PrivateLocatorReason};
pub use private::PrivateAllocation;
#[cfg(feature = "external-processes")]
pub use remote::target_process::{RemoteAllocation, TargetProcess};
pub use settings::{
    BufferAllocatorSettings, BufferSearchSettings, DEFAULT_RETRY_COUNT, allocation_granularity,
    highest_user_address,
};
pub use shared::locator::LocatorKind;
pub use shared::locked_buffer::LockedBuffer;

/// The README's examples, compiled and run as doctests. One of them opens
/// another process, so they need the whole API.
#[cfg(all(doctest, feature = "external-processes"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
