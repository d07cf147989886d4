//! What can go wrong, as one message and one exit code each.

use std::fmt;
use std::io;

/// Why an inspection failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command line is wrong.
    Usage(String),
    /// No process has this id.
    NoSuchProcess { pid: u32 },
    /// The process has exited but not been waited for (a zombie).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Exited { pid: u32 },
    /// The system refused to show us something of the process.
    PermissionDenied { pid: u32, what: String },
    /// The process has no shared locator to show.
    NoLocator { pid: u32, why: String },
    /// What claims to be the process's locator fails validation.
    InvalidLocator { pid: u32, why: String },
    /// This operating system has no inspector backend.
    #[cfg_attr(any(target_os = "linux", windows), allow(dead_code))]
    Unsupported,
    /// The process is 64-bit and this inspector 32-bit: its addresses do
    /// not fit in ours, so no system call of ours can read its memory.
    #[cfg_attr(
        any(target_pointer_width = "64", not(any(target_os = "linux", windows))),
        allow(dead_code)
    )]
    WiderProcess { pid: u32 },
    /// Any other system error.
    Os { what: String, error: io::Error },
}

impl Failure {
    /// The process exit code (documented in the README).
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Failure::Os { .. } => 1,
            Failure::Usage(_) => 2,
            Failure::NoSuchProcess { .. } | Failure::Exited { .. } => 3,
            Failure::PermissionDenied { .. } => 4,
            Failure::NoLocator { .. } => 5,
            Failure::InvalidLocator { .. } => 6,
            Failure::Unsupported | Failure::WiderProcess { .. } => 7,
        }
    }

    /// The stable name of the failure in `--json` output.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Failure::Os { .. } => "os_error",
            Failure::Usage(_) => "usage",
            Failure::NoSuchProcess { .. } | Failure::Exited { .. } => "no_such_process",
            Failure::PermissionDenied { .. } => "permission_denied",
            Failure::NoLocator { .. } => "no_locator",
            Failure::InvalidLocator { .. } => "invalid_locator",
            Failure::Unsupported | Failure::WiderProcess { .. } => "unsupported",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) => write!(f, "{message}"),
            Failure::NoSuchProcess { pid } => write!(f, "no process with id {pid}"),
            Failure::Exited { pid } => write!(
                f,
                "process {pid} has exited (a zombie until its parent waits for it)"
            ),
            Failure::PermissionDenied { pid, what } => write!(
                f,
                "not allowed to {what} of process {pid}: run the inspector as the \
                 process's user{}",
                if cfg!(windows) {
                    ", with PROCESS_VM_READ and PROCESS_QUERY_INFORMATION access to it"
                } else {
                    " (and, with Yama's ptrace_scope above 0, as its parent or with \
                     CAP_SYS_PTRACE), or as root"
                }
            ),
            Failure::NoLocator { pid, why } => {
                write!(f, "process {pid} has no shared locator: {why}")
            }
            Failure::InvalidLocator { pid, why } => {
                write!(f, "process {pid}'s locator fails validation: {why}")
            }
            Failure::Unsupported => write!(
                f,
                "the inspector supports Linux and Windows only on this build"
            ),
            Failure::WiderProcess { pid } => write!(
                f,
                "process {pid} is a 64-bit process, and this inspector is a {}-bit \
                 program, which cannot address its memory: run a 64-bit build of the \
                 inspector (it reads 32-bit and 64-bit processes)",
                usize::BITS
            ),
            Failure::Os { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

/// How reading another process's memory failed.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// Part of the range is not mapped.
    Unmapped,
    /// The system refused.
    Denied,
    /// The process has exited.
    Gone,
    /// Anything else.
    Other(io::Error),
}

impl ReadFailure {
    /// The failure of reading `what` at `address` in process `pid`.
    pub(crate) fn into_failure(self, pid: u32, what: &str, address: usize) -> Failure {
        match self {
            ReadFailure::Unmapped => Failure::InvalidLocator {
                pid,
                why: format!("{what} at {address:#x} is not readable memory of the process"),
            },
            ReadFailure::Denied => Failure::PermissionDenied {
                pid,
                what: "read the memory".into(),
            },
            ReadFailure::Gone => Failure::NoSuchProcess { pid },
            ReadFailure::Other(error) => Failure::Os {
                what: format!("reading {what} at {address:#x} in process {pid}"),
                error,
            },
        }
    }
}
