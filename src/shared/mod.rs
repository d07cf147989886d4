//! Shared buffers: the per-process registry every buffers library in the
//! process uses, and the guard that lends one buffer at a time.
//!
//! - `layout`: the locator's binary layout (`FORMAT.md`), the contract with
//!   the other libraries; raw, validated accessors over shared memory.
//! - `locator`: the take/release protocol over that layout, and the local
//!   accelerators of the hot path.
//! - `rendezvous`: how the libraries of one process find the same locator,
//!   one file per system behind one contract.
//! - `locked_buffer` and `append_limit`: the one-word guard callers hold,
//!   and where its appends must stop.
//! - `generation`: the current state's fork marker, the only thing a guard
//!   asks of the process state, kept apart so that the guard does not
//!   depend on the state (which depends on the locator, which makes
//!   guards).
//! - `process`: the per-process state, replaced in a forked child.

pub(crate) mod append_limit;
pub(crate) mod generation;
pub(crate) mod layout;
pub(crate) mod locator;
pub(crate) mod locked_buffer;
pub(crate) mod process;
pub(crate) mod rendezvous;
