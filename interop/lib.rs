//! No library: this crate only holds `tests/original.rs`, which runs
//! `memory-buffers` next to the original Reloaded.Memory.Buffers crate.
