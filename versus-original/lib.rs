//! No library: this crate holds `tests/shared_locator.rs`, which runs
//! `memory-buffers` next to the original Reloaded.Memory.Buffers crate in one
//! process, and `benches/side_by_side.rs`, which measures both on the same
//! workloads in the same run.
