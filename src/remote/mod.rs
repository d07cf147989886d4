//! Other processes: private allocations in another process's address
//! space (feature `external-processes`).
//!
//! - `target_process`: the public `TargetProcess` and `RemoteAllocation`,
//!   placement over the target's map with the same rules as for this
//!   process.
//! - `injection`: the pure half of making a Linux (or Android) process call
//!   `mmap`: system call requests, register images, refusal diagnosis.
//!
//! What each system does to reach another process (ptrace and
//! `process_vm_readv`, `VirtualAllocEx`) is `unsafe` and lives in the OS
//! layer, one file per system (`os/remote/`), behind one contract.

// The pure half of making another Linux (or Android) process call mmap;
// only x86 (64- and 32-bit) has an injector, elsewhere it is compiled and
// tested but unused. The stub for unsupported systems has no injector at all.
#[cfg(all(linux_like, not(memory_buffers_unsupported)))]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "x86")),
    allow(dead_code)
)]
pub(crate) mod injection;
pub(crate) mod target_process;
