//! The public API, one module per subject, in one test binary (as bumpalo
//! gathers its tests): shared buffers, code written and run in them, code
//! patched outside them, and the hook example end to end.
//!
//! Only tests that may share their process with any other test are here.
//! Those that may not have binaries of their own: `private_allocation`
//! reads the address map and punches holes, so it must not see other
//! tests' mappings come and go; `never_replaced` leaves the library's view
//! of the address space stale on purpose; `large_address` is run by name
//! by `.ci/windows`, built with and without `--large-address-aware`;
//! `target_process`, `rendezvous_scenarios` and `soak` run children or
//! hold the machine.

#[path = "../support/mod.rs"]
mod support;

mod code;
mod hook_example;
mod patching;
mod shared_buffers;
