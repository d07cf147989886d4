//! C ABI for `memory-buffers` (placeholder, being written).
