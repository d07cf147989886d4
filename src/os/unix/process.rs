//! Questions about processes: who this one runs as, whether another still
//! exists, and what runs when this one exits.

use super::last_errno;

pub(crate) fn effective_user_id() -> u32 {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether a process with this id exists (it may belong to another user).
pub(crate) fn process_is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || last_errno() != libc::ESRCH
}

/// Registers `function` to run when the process exits normally (`exit`,
/// a return from `main`), or when this library is unloaded, whichever
/// comes first. `false` if it could not be registered.
///
/// glibc's `atexit` is a static stub that registers with this shared
/// object's own handle, so `dlclose` runs the function before the code is
/// unmapped; musl never unloads libraries.
pub(crate) fn run_at_exit(function: extern "C" fn()) -> bool {
    // SAFETY: `function` is a plain function with no preconditions, and
    // it stays mapped as long as the registration can run it (above).
    unsafe { libc::atexit(function) == 0 }
}
