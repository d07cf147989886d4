//! Fault-injection tests (see `os::fault`).
