//! The one error type of the crate.
//!
//! Every failure says what was asked (the address range and the size, or for
//! an append the free range of the buffer and the byte count) and why it
//! failed, so a caller inside a game process can log one line and know what
//! happened without a debugger.
//!
//! With the `no-format` feature the message is the fixed text of the kind
//! (and the name of a failed system call) instead: the numbers stay in the
//! accessors, and no formatting code for them is built into the program.

use std::fmt;

/// Why a request was refused before any system call was made.
///
/// ```
/// use memory_buffers::{BufferSearchSettings, Buffers, InvalidRequest};
/// let error = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 0)).unwrap_err();
/// assert_eq!(error.invalid_request(), Some(InvalidRequest::ZeroSize));
/// # #[cfg(not(feature = "no-format"))]
/// assert_eq!(error.to_string(), "invalid request: size is zero (range 0x0..=0x7fffffff, size 0x0)");
/// # #[cfg(feature = "no-format")]
/// # assert_eq!(error.to_string(), "invalid request: size is zero");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// The size was zero.
    ZeroSize,
    /// The size cannot be rounded up to the allocation granularity without
    /// overflowing, or does not fit the 32-bit size field of a shared buffer.
    SizeTooLarge,
    /// `min_address` was greater than `max_address`.
    MinAboveMax,
    /// The range `[min_address, max_address]` holds fewer bytes than the size.
    RangeSmallerThanSize,
    /// The whole range lies above the highest user-space address.
    RangeAboveUserSpace,
    /// The alignment was zero or not a power of two.
    AlignmentNotPowerOfTwo,
    /// The alignment was larger than the allocation granularity.
    AlignmentAboveGranularity,
    /// A null pointer was given where an address was needed.
    NullPointer,
}

impl fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidRequest::ZeroSize => "size is zero",
            InvalidRequest::SizeTooLarge => "size is too large",
            InvalidRequest::MinAboveMax => "min_address is above max_address",
            InvalidRequest::RangeSmallerThanSize => "the range is smaller than the size",
            InvalidRequest::RangeAboveUserSpace => "the range lies above user space",
            InvalidRequest::AlignmentNotPowerOfTwo => "alignment is not a power of two",
            InvalidRequest::AlignmentAboveGranularity => {
                "alignment is above the allocation granularity"
            }
            InvalidRequest::NullPointer => "a pointer is null",
        })
    }
}

/// Why an operation failed.
///
/// ```
/// use memory_buffers::{BufferSearchSettings, Buffers, ErrorKind};
/// let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 16))?;
/// let too_many = vec![0; buffer.bytes_left() + 1];
/// match buffer.append_bytes(&too_many) {
///     Err(error) if error.kind() == ErrorKind::DoesNotFit => {
///         // Nothing was written: get another buffer for the bytes.
///     }
///     other => panic!("unexpected: {other:?}"),
/// }
/// # Ok::<(), memory_buffers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request was malformed; nothing was attempted.
    InvalidRequest(InvalidRequest),
    /// No free address range of the size exists inside `[min, max]`.
    NoSpaceInRange,
    /// The kernel refused a read/write/execute mapping (for example an
    /// SELinux `execmem` policy); memory that could not run code was not
    /// handed out.
    ExecutableMemoryRefused,
    /// An append did not fit in the buffer's free bytes; nothing was written.
    DoesNotFit,
    /// An append would have ended past the `max_address` of the request
    /// that produced the buffer guard; nothing was written.
    OutsideRequestedRange,
    /// The memory is executable and not writable (a write-then-execute
    /// allocation after [`make_executable`](crate::PrivateAllocation::make_executable));
    /// nothing was written.
    NotWritable,
    /// The range to overwrite is not inside the written part of any
    /// registered buffer.
    OutsideBuffers,
    /// Part of the range to patch is not mapped; nothing was written.
    NotMapped,
    /// The buffer was taken before `fork()`; in the child it belongs to the
    /// parent's locator and can no longer be written or released.
    ProcessForked,
    /// A system call failed with this `errno`.
    Os {
        /// The system call that failed.
        call: &'static str,
        /// The `errno` it returned.
        errno: i32,
    },
    /// Another process could not be worked on (see [`TargetProcess`](crate::TargetProcess)):
    /// it is gone, or the system refused access, and why. Only with the
    /// `external-processes` feature (on by default).
    #[cfg(feature = "external-processes")]
    TargetProcess(TargetProcessError),
    /// This operating system is not supported.
    Unsupported,
}

/// An error with the request it belongs to.
///
/// For allocations and buffer requests, `min_address`, `max_address` and
/// `size` are what the caller asked for. For appends they are the free range
/// of the buffer and the number of bytes to append; for overwrites, the
/// target range and its length.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    min_address: usize,
    max_address: usize,
    size: usize,
    blocks_tried: u32,
}

/// A failure inside the crate before the request it belongs to is
/// attached: its kind, and how many blocks placement tried to map (all
/// refused) on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) kind: ErrorKind,
    pub(crate) blocks_tried: u32,
}

impl From<ErrorKind> for Failure {
    fn from(kind: ErrorKind) -> Self {
        Failure {
            kind,
            blocks_tried: 0,
        }
    }
}

impl Error {
    // Not `#[cold]` or `#[inline(never)]` under `size-opt`: a call costs
    // more bytes than the few stores it replaces (measured in
    // BENCHMARKS.md, "Size of the C library").
    pub(crate) const fn new(
        kind: ErrorKind,
        min_address: usize,
        max_address: usize,
        size: usize,
    ) -> Self {
        Error {
            kind,
            min_address,
            max_address,
            size,
            blocks_tried: 0,
        }
    }

    /// The error for a request that failed with `failure`.
    pub(crate) const fn from_failure(
        failure: Failure,
        min_address: usize,
        max_address: usize,
        size: usize,
    ) -> Self {
        let mut error = Error::new(failure.kind, min_address, max_address, size);
        error.blocks_tried = failure.blocks_tried;
        error
    }

    /// Why the operation failed.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers, ErrorKind, InvalidRequest};
    /// // min_address above max_address: refused before any system call.
    /// let error = Buffers::get_buffer(&BufferSearchSettings::new(0x2000, 0x1000, 16)).unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::InvalidRequest(InvalidRequest::MinAboveMax));
    /// ```
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The lowest address of the request.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// // min_address above max_address: refused before any system call.
    /// let error = Buffers::get_buffer(&BufferSearchSettings::new(0x2000, 0x1000, 16)).unwrap_err();
    /// assert_eq!(error.min_address(), 0x2000);
    /// ```
    pub const fn min_address(&self) -> usize {
        self.min_address
    }

    /// The highest address of the request.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// // min_address above max_address: refused before any system call.
    /// let error = Buffers::get_buffer(&BufferSearchSettings::new(0x2000, 0x1000, 16)).unwrap_err();
    /// assert_eq!(error.max_address(), 0x1000);
    /// ```
    pub const fn max_address(&self) -> usize {
        self.max_address
    }

    /// The size of the request in bytes.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// // min_address above max_address: refused before any system call.
    /// let error = Buffers::get_buffer(&BufferSearchSettings::new(0x2000, 0x1000, 16)).unwrap_err();
    /// assert_eq!(error.size(), 16);
    /// ```
    pub const fn size(&self) -> usize {
        self.size
    }

    /// How many blocks placement tried to map before the request failed,
    /// every one refused by the system although its map showed them free
    /// (or taken by another thread meanwhile); 0 when it tried none.
    ///
    /// Some hosts refuse ranges they report as free (Wine answers
    /// `STATUS_CONFLICTING_ADDRESSES` for parts of its own reservations): a
    /// request walks past any number of such blocks, up to a bound, and
    /// this says how far it got.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// // min_address above max_address: refused before any system call.
    /// let error = Buffers::get_buffer(&BufferSearchSettings::new(0x2000, 0x1000, 16)).unwrap_err();
    /// assert_eq!(error.blocks_tried(), 0);
    /// ```
    pub const fn blocks_tried(&self) -> u32 {
        self.blocks_tried
    }

    /// The reason the request was invalid, if it was.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers, InvalidRequest};
    /// // min_address above max_address: refused before any system call.
    /// let error = Buffers::get_buffer(&BufferSearchSettings::new(0x2000, 0x1000, 16)).unwrap_err();
    /// assert_eq!(error.invalid_request(), Some(InvalidRequest::MinAboveMax));
    /// ```
    pub const fn invalid_request(&self) -> Option<InvalidRequest> {
        match self.kind {
            ErrorKind::InvalidRequest(reason) => Some(reason),
            _ => None,
        }
    }

    /// The `errno` of a failed system call, if that was the cause.
    ///
    /// ```
    /// use memory_buffers::{BufferSearchSettings, Buffers};
    /// // min_address above max_address: refused before any system call.
    /// let error = Buffers::get_buffer(&BufferSearchSettings::new(0x2000, 0x1000, 16)).unwrap_err();
    /// // Not a system call's failure.
    /// assert_eq!(error.errno(), None);
    /// ```
    pub const fn errno(&self) -> Option<i32> {
        match self.kind {
            ErrorKind::Os { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

/// What went wrong, without the request: the text an [`Error`]'s message
/// starts with. The C interface's status messages are these texts too.
///
/// ```
/// use memory_buffers::{ErrorKind, InvalidRequest};
/// assert_eq!(ErrorKind::DoesNotFit.to_string(), "the bytes do not fit in the buffer");
/// assert_eq!(
///     ErrorKind::InvalidRequest(InvalidRequest::ZeroSize).to_string(),
///     "invalid request: size is zero"
/// );
/// ```
impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Fixed texts go out with `write_str`; only the helpers below
        // format numbers, and `no-format` empties them.
        match *self {
            ErrorKind::InvalidRequest(reason) => {
                f.write_str("invalid request: ")?;
                fmt::Display::fmt(&reason, f)
            }
            ErrorKind::NoSpaceInRange => f.write_str("no free address space in range"),
            ErrorKind::ExecutableMemoryRefused => {
                f.write_str("the kernel refused a read/write/execute mapping")
            }
            ErrorKind::DoesNotFit => f.write_str("the bytes do not fit in the buffer"),
            ErrorKind::OutsideRequestedRange => {
                f.write_str("the bytes would end past the range the buffer was requested for")
            }
            ErrorKind::NotWritable => {
                f.write_str("the memory is executable now; make it writable first")
            }
            ErrorKind::OutsideBuffers => {
                f.write_str("the range is not inside the written part of a buffer")
            }
            ErrorKind::NotMapped => f.write_str("part of the range is not mapped"),
            ErrorKind::ProcessForked => {
                f.write_str("the buffer was taken before fork() and belongs to the parent")
            }
            ErrorKind::Os { call, errno } => {
                f.write_str(call)?;
                f.write_str(" failed")?;
                write_os_error(f, errno)
            }
            #[cfg(feature = "external-processes")]
            ErrorKind::TargetProcess(reason) => {
                f.write_str("target process: ")?;
                fmt::Display::fmt(&reason, f)
            }
            ErrorKind::Unsupported => f.write_str("this operating system is not supported"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)?;
        if self.kind == ErrorKind::NoSpaceInRange {
            write_blocks_tried(f, self.blocks_tried)?;
        }
        write_request(f, self)
    }
}

/// `: ` and the system's text for `errno` (its `strerror` and number).
#[cfg(not(feature = "no-format"))]
fn write_os_error(f: &mut fmt::Formatter<'_>, errno: i32) -> fmt::Result {
    write!(f, ": {}", std::io::Error::from_raw_os_error(errno))
}

/// Nothing: the errno is in [`Error::errno`].
#[cfg(feature = "no-format")]
fn write_os_error(_: &mut fmt::Formatter<'_>, _: i32) -> fmt::Result {
    Ok(())
}

/// `; N blocks tried, all refused`, when placement tried any.
#[cfg(not(feature = "no-format"))]
fn write_blocks_tried(f: &mut fmt::Formatter<'_>, blocks_tried: u32) -> fmt::Result {
    match blocks_tried {
        0 => Ok(()),
        1 => f.write_str("; 1 block tried, refused"),
        _ => write!(f, "; {blocks_tried} blocks tried, all refused"),
    }
}

/// Nothing: the count is in [`Error::blocks_tried`].
#[cfg(feature = "no-format")]
fn write_blocks_tried(_: &mut fmt::Formatter<'_>, _: u32) -> fmt::Result {
    Ok(())
}

/// The request the error belongs to, in hex.
#[cfg(not(feature = "no-format"))]
fn write_request(f: &mut fmt::Formatter<'_>, error: &Error) -> fmt::Result {
    write!(
        f,
        " (range {:#x}..={:#x}, size {:#x})",
        error.min_address, error.max_address, error.size
    )
}

/// Nothing: the request is in the accessors.
#[cfg(feature = "no-format")]
fn write_request(_: &mut fmt::Formatter<'_>, _: &Error) -> fmt::Result {
    Ok(())
}

/// Addresses and sizes in hex, as in [`Display`](fmt::Display): this is what
/// `fn main() -> Result<(), Error>` prints.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("min_address", &format_args!("{:#x}", self.min_address))
            .field("max_address", &format_args!("{:#x}", self.max_address))
            .field("size", &format_args!("{:#x}", self.size))
            .field("blocks_tried", &self.blocks_tried)
            .finish()
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        let kind = match error.kind {
            ErrorKind::InvalidRequest(_) => std::io::ErrorKind::InvalidInput,
            ErrorKind::Os { errno, .. } => std::io::Error::from_raw_os_error(errno).kind(),
            ErrorKind::ExecutableMemoryRefused => std::io::ErrorKind::PermissionDenied,
            ErrorKind::Unsupported => std::io::ErrorKind::Unsupported,
            #[cfg(feature = "external-processes")]
            ErrorKind::TargetProcess(reason) => reason.io_error_kind(),
            ErrorKind::NoSpaceInRange => std::io::ErrorKind::OutOfMemory,
            ErrorKind::NotWritable => std::io::ErrorKind::PermissionDenied,
            ErrorKind::NotMapped => std::io::ErrorKind::InvalidInput,
            ErrorKind::DoesNotFit
            | ErrorKind::OutsideRequestedRange
            | ErrorKind::OutsideBuffers
            | ErrorKind::ProcessForked => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}

/// Why the shared locator could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrivateLocatorReason {
    /// A directory on the rendezvous path could not be opened or created
    /// (not writable, a path component is a file or a symlink...).
    DirectoryUnavailable {
        /// The `errno` of the failing call.
        errno: i32,
    },
    /// A rendezvous directory belongs to another user, or others may write
    /// to it without the sticky bit.
    DirectoryNotTrusted,
    /// The rendezvous file for this process belongs to another user.
    FileNotTrusted,
    /// The rendezvous file could not be created, sized or mapped.
    FileUnavailable {
        /// The `errno` of the failing call.
        errno: i32,
    },
    /// Other instances kept replacing the rendezvous file.
    FileContended,
    /// The rendezvous file for this process id is not this process's, but
    /// another live process holds it: one with the same id in another PID
    /// namespace sharing `/tmp` (containers, sandboxes), or the parent of a
    /// forked child whose file was linked under the child's id.
    FileInUse,
    /// This operating system gives the buffers libraries of a process no
    /// shared locator: Android, where the original library keeps a private
    /// one too, and systems without a backend. Nothing was tried.
    Unsupported,
    /// Windows: the named section could not be created, opened or mapped.
    SectionUnavailable {
        /// The Win32 error code of the failing call.
        errno: i32,
    },
    /// Windows: a section with this process's name exists but is not one
    /// locator-granule long (another process made it).
    SectionWrongSize {
        /// Its length in bytes, as mapped.
        len: usize,
    },
    /// Windows: a section with this process's name exists, but its *this
    /// address* could not be proven to be a live view of it in this
    /// process (a garbage header, an address elsewhere, or a header lock
    /// that stayed held).
    SectionNotProven,
}

/// Why another process could not be worked on; the reason of
/// [`ErrorKind::TargetProcess`].
#[cfg(feature = "external-processes")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetProcessError {
    /// No process has this id, or it exited (possibly during the
    /// operation).
    NotRunning,
    /// The id is this process's own: use
    /// [`Buffers::allocate_private_memory`](crate::Buffers::allocate_private_memory).
    ThisProcess,
    /// The process belongs to another user, and this one may not trace it
    /// (Linux: it lacks `CAP_SYS_PTRACE`).
    OtherUser,
    /// Linux: Yama's `kernel.yama.ptrace_scope` (this value) forbids the
    /// attach: 1 allows only descendants (or a process the target named
    /// with `PR_SET_PTRACER`), 2 only callers with `CAP_SYS_PTRACE`, 3
    /// nobody.
    PtraceScope(u8),
    /// Linux: another tracer (a debugger, or another [`TargetProcess`](crate::TargetProcess) of
    /// this process working at the same moment) is attached; a thread can
    /// have only one.
    AlreadyTraced,
    /// The system refused access for another reason (Linux: the process is
    /// not dumpable, or a security module or seccomp filter said no;
    /// Windows: `ERROR_ACCESS_DENIED`, for example a protected process or
    /// one of another user without `SeDebugPrivilege`).
    AccessDenied,
    /// Linux: the target's thread did not stop within a few seconds (it is
    /// in an uninterruptible sleep, or stopped by a debugger's means).
    DidNotStop,
    /// Linux: no `syscall` instruction was found in the target's readable
    /// code (its vDSO, C library and other executable mappings).
    NoSyscallInstruction,
    /// Linux: the thread runs code this library cannot make calls from (a
    /// 64-bit process, for a 32-bit build of the library; a process of
    /// another architecture, or whose code segment disagrees with its
    /// executable).
    OtherArchitecture,
}

#[cfg(feature = "external-processes")]
impl TargetProcessError {
    pub(crate) fn io_error_kind(self) -> std::io::ErrorKind {
        use std::io::ErrorKind as Io;
        match self {
            TargetProcessError::NotRunning => Io::NotFound,
            TargetProcessError::ThisProcess => Io::InvalidInput,
            TargetProcessError::OtherUser
            | TargetProcessError::PtraceScope(_)
            | TargetProcessError::AlreadyTraced
            | TargetProcessError::AccessDenied => Io::PermissionDenied,
            TargetProcessError::DidNotStop => Io::TimedOut,
            TargetProcessError::NoSyscallInstruction | TargetProcessError::OtherArchitecture => {
                Io::Unsupported
            }
        }
    }
}

#[cfg(feature = "external-processes")]
impl fmt::Display for TargetProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetProcessError::NotRunning => f.write_str("no such process, or it exited"),
            TargetProcessError::ThisProcess => {
                f.write_str("the process is this one (use Buffers::allocate_private_memory)")
            }
            TargetProcessError::OtherUser => f.write_str(
                "the process belongs to another user (tracing it needs CAP_SYS_PTRACE or root)",
            ),
            TargetProcessError::PtraceScope(scope) => write!(
                f,
                "ptrace is restricted by Yama (kernel.yama.ptrace_scope = {scope}: {})",
                match scope {
                    1 => "only descendants may be traced; run the target as a child, or have it call prctl(PR_SET_PTRACER)",
                    2 => "only a caller with CAP_SYS_PTRACE may trace",
                    _ => "no process may be traced",
                }
            ),
            TargetProcessError::AlreadyTraced => {
                f.write_str("the process is already traced (a debugger is attached)")
            }
            TargetProcessError::AccessDenied => f.write_str(
                "the system denied access (not dumpable, a security module, or a protected process)",
            ),
            TargetProcessError::DidNotStop => {
                f.write_str("its thread did not stop (an uninterruptible sleep?)")
            }
            TargetProcessError::NoSyscallInstruction => {
                f.write_str("no syscall instruction found in its code")
            }
            TargetProcessError::OtherArchitecture => {
                f.write_str("it runs code this build cannot make calls from (another width or architecture)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os_error() -> Error {
        Error::new(
            ErrorKind::Os {
                call: "mmap",
                errno: 12,
            },
            0x1000,
            0x2fff,
            0x2000,
        )
    }

    #[cfg(not(feature = "no-format"))]
    #[test]
    fn a_message_names_the_call_the_errno_and_the_request() {
        let text = os_error().to_string();
        let errno_text = std::io::Error::from_raw_os_error(12).to_string();
        assert_eq!(
            text,
            format!("mmap failed: {errno_text} (range 0x1000..=0x2fff, size 0x2000)")
        );
    }

    #[cfg(not(feature = "no-format"))]
    #[test]
    fn a_request_that_met_only_refusals_says_how_many_blocks_it_tried() {
        let failure = Failure {
            kind: ErrorKind::NoSpaceInRange,
            blocks_tried: 1000,
        };
        let error = Error::from_failure(failure, 0x1000, 0x2fff, 0x1000);
        assert_eq!(error.blocks_tried(), 1000);
        assert_eq!(
            error.to_string(),
            "no free address space in range; 1000 blocks tried, all refused \
             (range 0x1000..=0x2fff, size 0x1000)"
        );
        let none = Error::new(ErrorKind::NoSpaceInRange, 0x1000, 0x2fff, 0x1000);
        assert_eq!(
            none.to_string(),
            "no free address space in range (range 0x1000..=0x2fff, size 0x1000)"
        );
    }

    #[cfg(feature = "no-format")]
    #[test]
    fn without_formatting_a_message_is_the_fixed_text_and_the_numbers_stay() {
        let error = os_error();
        assert_eq!(error.to_string(), "mmap failed");
        assert_eq!(
            (error.errno(), error.min_address(), error.size()),
            (Some(12), 0x1000, 0x2000)
        );
        let invalid = Error::new(
            ErrorKind::InvalidRequest(InvalidRequest::MinAboveMax),
            0x2000,
            0x1000,
            16,
        );
        assert_eq!(
            invalid.to_string(),
            "invalid request: min_address is above max_address"
        );
    }
}
