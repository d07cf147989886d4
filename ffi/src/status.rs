//! Errors as values: the status code every export returns, the static text
//! for each code, and the calling thread's last error with its details.
//!
//! Every export runs its body through [`run`], which catches panics (none may
//! unwind into C), turns failures into a [`MemoryBuffersStatus`] and records
//! the details of the failure for [`memory_buffers_last_error`] and
//! [`memory_buffers_last_error_message`].

use crate::size_t;
#[cfg(feature = "external-processes")]
use memory_buffers::TargetProcessError;
use memory_buffers::{Error, ErrorKind, InvalidRequest};
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};

/// What a call returns: [`MEMORY_BUFFERS_STATUS_OK`] (zero) on success,
/// another of the named constants on failure.
///
/// An integer rather than a C `enum`, so that a value this header does not
/// name (from a newer library) is still a valid value, never undefined
/// behaviour. Compare with the `MEMORY_BUFFERS_STATUS_*` constants.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryBuffersStatus(pub i32);

/// The call succeeded and wrote its results.
pub const MEMORY_BUFFERS_STATUS_OK: MemoryBuffersStatus = MemoryBuffersStatus(0);
/// A pointer argument that must not be `NULL` was `NULL`.
pub const MEMORY_BUFFERS_STATUS_NULL_POINTER: MemoryBuffersStatus = MemoryBuffersStatus(1);
/// A handle is not one this copy of the library handed out, or it was
/// already released.
pub const MEMORY_BUFFERS_STATUS_INVALID_HANDLE: MemoryBuffersStatus = MemoryBuffersStatus(2);
/// A handle is being used by another call right now (from another
/// thread); nothing was done.
pub const MEMORY_BUFFERS_STATUS_HANDLE_BUSY: MemoryBuffersStatus = MemoryBuffersStatus(3);
/// The requested size was zero.
pub const MEMORY_BUFFERS_STATUS_ZERO_SIZE: MemoryBuffersStatus = MemoryBuffersStatus(4);
/// The size overflows when rounded up to the allocation granularity, or
/// does not fit a shared buffer's 32-bit size field.
pub const MEMORY_BUFFERS_STATUS_SIZE_TOO_LARGE: MemoryBuffersStatus = MemoryBuffersStatus(5);
/// `min_address` was greater than `max_address`.
pub const MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX: MemoryBuffersStatus = MemoryBuffersStatus(6);
/// The range `[min_address, max_address]` holds fewer bytes than the size.
pub const MEMORY_BUFFERS_STATUS_RANGE_SMALLER_THAN_SIZE: MemoryBuffersStatus =
    MemoryBuffersStatus(7);
/// The whole range lies above the highest user-space address.
pub const MEMORY_BUFFERS_STATUS_RANGE_ABOVE_USER_SPACE: MemoryBuffersStatus =
    MemoryBuffersStatus(8);
/// The alignment was zero or not a power of two.
pub const MEMORY_BUFFERS_STATUS_ALIGNMENT_NOT_POWER_OF_TWO: MemoryBuffersStatus =
    MemoryBuffersStatus(9);
/// The alignment was larger than the allocation granularity.
pub const MEMORY_BUFFERS_STATUS_ALIGNMENT_ABOVE_GRANULARITY: MemoryBuffersStatus =
    MemoryBuffersStatus(10);
/// An argument was invalid for a reason this version of the C interface
/// has no code for; the last error message says which.
pub const MEMORY_BUFFERS_STATUS_INVALID_ARGUMENT: MemoryBuffersStatus = MemoryBuffersStatus(11);
/// No free address range of the size exists inside `[min, max]`.
pub const MEMORY_BUFFERS_STATUS_NO_SPACE_IN_RANGE: MemoryBuffersStatus = MemoryBuffersStatus(12);
/// The kernel refused a read/write/execute mapping.
pub const MEMORY_BUFFERS_STATUS_EXECUTABLE_MEMORY_REFUSED: MemoryBuffersStatus =
    MemoryBuffersStatus(13);
/// The bytes do not fit in the buffer's free space; nothing was written.
pub const MEMORY_BUFFERS_STATUS_DOES_NOT_FIT: MemoryBuffersStatus = MemoryBuffersStatus(14);
/// The range to overwrite is not inside the written part of a buffer.
pub const MEMORY_BUFFERS_STATUS_OUTSIDE_BUFFERS: MemoryBuffersStatus = MemoryBuffersStatus(15);
/// The buffer was taken before `fork()` and belongs to the parent.
pub const MEMORY_BUFFERS_STATUS_PROCESS_FORKED: MemoryBuffersStatus = MemoryBuffersStatus(16);
/// A system call failed; the last error holds its `errno`.
pub const MEMORY_BUFFERS_STATUS_OS_ERROR: MemoryBuffersStatus = MemoryBuffersStatus(17);
/// This operating system is not supported.
pub const MEMORY_BUFFERS_STATUS_UNSUPPORTED: MemoryBuffersStatus = MemoryBuffersStatus(18);
/// A caller-supplied text buffer was too small; the text was truncated.
pub const MEMORY_BUFFERS_STATUS_BUFFER_TOO_SMALL: MemoryBuffersStatus = MemoryBuffersStatus(19);
/// The library panicked (a bug); the call was abandoned.
pub const MEMORY_BUFFERS_STATUS_PANIC: MemoryBuffersStatus = MemoryBuffersStatus(20);
/// The library failed in a way this version of the C interface has no
/// code for; the last error message says how.
pub const MEMORY_BUFFERS_STATUS_UNKNOWN_ERROR: MemoryBuffersStatus = MemoryBuffersStatus(21);
/// An append would end past the `max_address` the buffer was requested
/// with; nothing was written.
pub const MEMORY_BUFFERS_STATUS_OUTSIDE_REQUESTED_RANGE: MemoryBuffersStatus =
    MemoryBuffersStatus(22);
/// The memory is executable and not writable now; nothing was written.
pub const MEMORY_BUFFERS_STATUS_NOT_WRITABLE: MemoryBuffersStatus = MemoryBuffersStatus(23);
/// Part of the range to patch is not mapped; nothing was written.
pub const MEMORY_BUFFERS_STATUS_NOT_MAPPED: MemoryBuffersStatus = MemoryBuffersStatus(24);
/// The target process does not exist, or exited (possibly during the
/// call).
pub const MEMORY_BUFFERS_STATUS_PROCESS_NOT_RUNNING: MemoryBuffersStatus = MemoryBuffersStatus(25);
/// The system refused access to the target process; the last error message
/// says why (another user, Yama's `ptrace_scope`, a debugger already
/// attached, a protected process).
pub const MEMORY_BUFFERS_STATUS_PROCESS_ACCESS_DENIED: MemoryBuffersStatus =
    MemoryBuffersStatus(26);
/// The target process could not be made to map memory (Linux: its thread
/// did not stop, it has no `syscall` instruction, or it runs 32-bit code);
/// the last error message says which.
pub const MEMORY_BUFFERS_STATUS_PROCESS_NOT_INJECTABLE: MemoryBuffersStatus =
    MemoryBuffersStatus(27);

/// One named status: its text, and the library's error it stands for when
/// it stands for exactly one.
struct Named {
    status: MemoryBuffersStatus,
    /// The library's error that becomes this status; `None` for the
    /// interface's own statuses and for those that stand for several of the
    /// library's errors (mapped in `From<ErrorKind>` below).
    kind: Option<ErrorKind>,
    /// The text; `None` where it is the library's own text for `kind`.
    text: Option<&'static CStr>,
}

/// A status of the C interface itself, with its text.
const fn own(status: MemoryBuffersStatus, text: &'static CStr) -> Named {
    Named {
        status,
        kind: None,
        text: Some(text),
    }
}

/// The status of one of the library's errors, with the library's own text
/// for it (`ErrorKind`'s `Display`).
const fn kind(status: MemoryBuffersStatus, kind: ErrorKind) -> Named {
    Named {
        status,
        kind: Some(kind),
        text: None,
    }
}

/// The status of one of the library's invalid requests.
const fn invalid(status: MemoryBuffersStatus, reason: InvalidRequest) -> Named {
    kind(status, ErrorKind::InvalidRequest(reason))
}

/// Every named status once, with its text and the library's error it
/// stands for. The constants above are written out one by one because
/// cbindgen reads them from the source, without expanding macros.
const NAMED: [Named; 28] = [
    own(MEMORY_BUFFERS_STATUS_OK, c"success"),
    kind(
        MEMORY_BUFFERS_STATUS_NULL_POINTER,
        ErrorKind::InvalidRequest(InvalidRequest::NullPointer),
    ),
    own(
        MEMORY_BUFFERS_STATUS_INVALID_HANDLE,
        c"the handle is not live (never handed out by this library copy, or already released)",
    ),
    own(
        MEMORY_BUFFERS_STATUS_HANDLE_BUSY,
        c"the handle is in use by another call",
    ),
    invalid(MEMORY_BUFFERS_STATUS_ZERO_SIZE, InvalidRequest::ZeroSize),
    invalid(
        MEMORY_BUFFERS_STATUS_SIZE_TOO_LARGE,
        InvalidRequest::SizeTooLarge,
    ),
    invalid(
        MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX,
        InvalidRequest::MinAboveMax,
    ),
    invalid(
        MEMORY_BUFFERS_STATUS_RANGE_SMALLER_THAN_SIZE,
        InvalidRequest::RangeSmallerThanSize,
    ),
    invalid(
        MEMORY_BUFFERS_STATUS_RANGE_ABOVE_USER_SPACE,
        InvalidRequest::RangeAboveUserSpace,
    ),
    invalid(
        MEMORY_BUFFERS_STATUS_ALIGNMENT_NOT_POWER_OF_TWO,
        InvalidRequest::AlignmentNotPowerOfTwo,
    ),
    invalid(
        MEMORY_BUFFERS_STATUS_ALIGNMENT_ABOVE_GRANULARITY,
        InvalidRequest::AlignmentAboveGranularity,
    ),
    own(MEMORY_BUFFERS_STATUS_INVALID_ARGUMENT, c"invalid argument"),
    kind(
        MEMORY_BUFFERS_STATUS_NO_SPACE_IN_RANGE,
        ErrorKind::NoSpaceInRange,
    ),
    kind(
        MEMORY_BUFFERS_STATUS_EXECUTABLE_MEMORY_REFUSED,
        ErrorKind::ExecutableMemoryRefused,
    ),
    kind(MEMORY_BUFFERS_STATUS_DOES_NOT_FIT, ErrorKind::DoesNotFit),
    kind(
        MEMORY_BUFFERS_STATUS_OUTSIDE_BUFFERS,
        ErrorKind::OutsideBuffers,
    ),
    kind(
        MEMORY_BUFFERS_STATUS_PROCESS_FORKED,
        ErrorKind::ProcessForked,
    ),
    own(MEMORY_BUFFERS_STATUS_OS_ERROR, c"a system call failed"),
    kind(MEMORY_BUFFERS_STATUS_UNSUPPORTED, ErrorKind::Unsupported),
    own(
        MEMORY_BUFFERS_STATUS_BUFFER_TOO_SMALL,
        c"the text buffer is too small",
    ),
    own(MEMORY_BUFFERS_STATUS_PANIC, PANICKED),
    own(
        MEMORY_BUFFERS_STATUS_UNKNOWN_ERROR,
        c"unknown library error",
    ),
    kind(
        MEMORY_BUFFERS_STATUS_OUTSIDE_REQUESTED_RANGE,
        ErrorKind::OutsideRequestedRange,
    ),
    kind(MEMORY_BUFFERS_STATUS_NOT_WRITABLE, ErrorKind::NotWritable),
    kind(MEMORY_BUFFERS_STATUS_NOT_MAPPED, ErrorKind::NotMapped),
    own(
        MEMORY_BUFFERS_STATUS_PROCESS_NOT_RUNNING,
        c"the target process does not exist or exited",
    ),
    own(
        MEMORY_BUFFERS_STATUS_PROCESS_ACCESS_DENIED,
        c"access to the target process was denied",
    ),
    own(
        MEMORY_BUFFERS_STATUS_PROCESS_NOT_INJECTABLE,
        c"the target process could not be made to map memory",
    ),
];

/// The text of [`MEMORY_BUFFERS_STATUS_PANIC`], also given when looking a
/// text up panics.
const PANICKED: &CStr = c"the library panicked (a bug)";

/// The texts made from the library's, one slot per entry of [`NAMED`]:
/// made on first use, never freed (they are handed out as static C
/// strings), published with a compare-and-swap rather than a lock so that
/// a child forked while another thread made one never waits for it.
static LIBRARY_TEXTS: [AtomicPtr<c_char>; NAMED.len()] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; NAMED.len()];

/// The library's text for `kind`, with which its `Error` messages start.
fn library_text(kind: Option<ErrorKind>) -> Option<CString> {
    CString::new(kind?.to_string()).ok()
}

impl MemoryBuffersStatus {
    /// The static description of this status.
    pub fn message(self) -> &'static CStr {
        let Some(index) = NAMED.iter().position(|named| named.status == self) else {
            return c"unknown status code";
        };
        let named = &NAMED[index];
        if let Some(text) = named.text {
            return text;
        }
        let slot = &LIBRARY_TEXTS[index];
        // Acquire: the bytes of a text another thread published.
        let published = slot.load(Ordering::Acquire);
        if !published.is_null() {
            // SAFETY: a non-null slot holds a `CString::into_raw` pointer
            // that is never freed or changed again.
            return unsafe { CStr::from_ptr(published) };
        }
        let Some(made) = library_text(named.kind) else {
            return c"unknown status code";
        };
        let made = made.into_raw();
        // AcqRel: publishes this text's bytes if it wins; Acquire on
        // failure sees the bytes of the one that won.
        let text = match slot.compare_exchange(
            std::ptr::null_mut(),
            made,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => made,
            Err(winner) => {
                // SAFETY: `made` came from `into_raw` just above and was
                // never published; the same text is kept in the slot.
                drop(unsafe { CString::from_raw(made) });
                winner
            }
        };
        // SAFETY: `text` is the slot's text, from `into_raw`, never freed.
        unsafe { CStr::from_ptr(text) }
    }
}

impl From<ErrorKind> for MemoryBuffersStatus {
    fn from(kind: ErrorKind) -> Self {
        if let Some(named) = NAMED.iter().find(|named| named.kind == Some(kind)) {
            return named.status;
        }
        // The library's errors that have no status of their own.
        match kind {
            ErrorKind::InvalidRequest(_) => MEMORY_BUFFERS_STATUS_INVALID_ARGUMENT,
            ErrorKind::Os { .. } => MEMORY_BUFFERS_STATUS_OS_ERROR,
            #[cfg(feature = "external-processes")]
            ErrorKind::TargetProcess(reason) => match reason {
                TargetProcessError::NotRunning => MEMORY_BUFFERS_STATUS_PROCESS_NOT_RUNNING,
                TargetProcessError::ThisProcess => MEMORY_BUFFERS_STATUS_INVALID_ARGUMENT,
                TargetProcessError::DidNotStop
                | TargetProcessError::NoSyscallInstruction
                | TargetProcessError::OtherArchitecture => {
                    MEMORY_BUFFERS_STATUS_PROCESS_NOT_INJECTABLE
                }
                _ => MEMORY_BUFFERS_STATUS_PROCESS_ACCESS_DENIED,
            },
            _ => MEMORY_BUFFERS_STATUS_UNKNOWN_ERROR,
        }
    }
}

impl From<InvalidRequest> for MemoryBuffersStatus {
    fn from(reason: InvalidRequest) -> Self {
        ErrorKind::InvalidRequest(reason).into()
    }
}

/// Details of the calling thread's most recent failure.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBuffersErrorInfo {
    /// The status the failing call returned; [`MEMORY_BUFFERS_STATUS_OK`] if
    /// no call on this thread has failed yet.
    pub status: MemoryBuffersStatus,
    /// The `errno` of the failed system call for
    /// [`MEMORY_BUFFERS_STATUS_OS_ERROR`]; 0 otherwise.
    pub os_error: i32,
    /// The lowest address of the request (for appends: of the buffer's free
    /// range; for overwrites: of the target range); 0 if not applicable.
    pub min_address: usize,
    /// The highest address of the request, as for `min_address`.
    pub max_address: usize,
    /// The size of the request in bytes; 0 if not applicable.
    pub size: size_t,
}

impl MemoryBuffersErrorInfo {
    const NONE: MemoryBuffersErrorInfo = MemoryBuffersErrorInfo {
        status: MEMORY_BUFFERS_STATUS_OK,
        os_error: 0,
        min_address: 0,
        max_address: 0,
        size: 0,
    };
}

/// Why a call failed, before it is turned into a status code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The Rust library reported an error.
    Library(Error),
    /// The C interface refused the arguments; the text names the call and
    /// the argument.
    Interface {
        status: MemoryBuffersStatus,
        detail: &'static str,
    },
}

impl Failure {
    pub(crate) const fn new(status: MemoryBuffersStatus, detail: &'static str) -> Failure {
        Failure::Interface { status, detail }
    }

    fn status(&self) -> MemoryBuffersStatus {
        match self {
            Failure::Library(error) => error.kind().into(),
            Failure::Interface { status, .. } => *status,
        }
    }
}

/// The status a call returning `result` would report (tests).
#[cfg(test)]
pub(crate) fn status_of<T>(result: Result<T, Failure>) -> MemoryBuffersStatus {
    result
        .err()
        .map_or(MEMORY_BUFFERS_STATUS_OK, |failure| failure.status())
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Library(error)
    }
}

/// The calling thread's most recent failure.
struct LastError {
    info: MemoryBuffersErrorInfo,
    message: String,
}

thread_local! {
    // Where thread locals are not native (Android), clippy asks for the
    // `const` initialiser this already has.
    #[cfg_attr(
        target_os = "android",
        allow(clippy::missing_const_for_thread_local)
    )]
    static LAST_ERROR: RefCell<Option<LastError>> = const { RefCell::new(None) };
}

fn record(function: &str, info: MemoryBuffersErrorInfo, message: String) {
    // Joined by hand rather than with `format!`: the same text, without the
    // formatting code (what `no-format` leaves out of the library).
    let mut text = String::with_capacity(function.len() + 2 + message.len());
    text.push_str(function);
    text.push_str(": ");
    text.push_str(&message);
    let message = text;
    // `try_with`: during thread teardown the slot may be gone; losing the
    // detail then is better than panicking.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = Some(LastError { info, message });
        }
    });
}

// Failures are the rare path: with `size-opt` they are recorded by one
// out-of-line copy that callers branch to as unlikely, never by a copy
// inlined into an export.
#[cfg_attr(feature = "size-opt", cold, inline(never))]
fn record_failure(function: &str, failure: &Failure) -> MemoryBuffersStatus {
    let status = failure.status();
    let (info, message) = match failure {
        Failure::Library(error) => (
            MemoryBuffersErrorInfo {
                status,
                os_error: error.errno().unwrap_or(0),
                min_address: error.min_address(),
                max_address: error.max_address(),
                size: error.size(),
            },
            error.to_string(),
        ),
        Failure::Interface { detail, .. } => (
            MemoryBuffersErrorInfo {
                status,
                ..MemoryBuffersErrorInfo::NONE
            },
            (*detail).to_owned(),
        ),
    };
    record(function, info, message);
    status
}

/// Runs the body of the export `function`: catches any panic, converts a
/// failure into its status and records it as the thread's last error.
pub(crate) fn run(
    function: &str,
    body: impl FnOnce() -> Result<(), Failure>,
) -> MemoryBuffersStatus {
    // AssertUnwindSafe: after a panic the only state this crate observes is
    // the handle registry (whose lock-protected map is updated by operations
    // that cannot panic half-way) and the thread's last error, which is
    // overwritten below.
    //
    // A failure is handed out through `failed` rather than returned: the
    // closure then returns nothing, and the success path reads one small
    // value instead of a large `Result` just written through memory (a
    // wide load of narrower stores stalls; it was most of a call's cost).
    let mut failed: Option<Failure> = None;
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        if let Err(failure) = body() {
            failed = Some(failure);
        }
    }));
    match caught {
        Ok(()) => match &failed {
            None => MEMORY_BUFFERS_STATUS_OK,
            Some(failure) => record_failure(function, failure),
        },
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-text panic payload".to_owned());
            // Dropping a payload runs arbitrary `Drop` code that could itself
            // panic; keep that inside a catch as well.
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
            let info = MemoryBuffersErrorInfo {
                status: MEMORY_BUFFERS_STATUS_PANIC,
                ..MemoryBuffersErrorInfo::NONE
            };
            // Formatting allocates and could in theory panic (out of memory
            // aborts instead), so it too stays inside a catch.
            let _ =
                panic::catch_unwind(move || record(function, info, format!("panicked: {message}")));
            MEMORY_BUFFERS_STATUS_PANIC
        }
    }
}

/// Returns a static, NUL-terminated English description of `status`.
///
/// Never returns `NULL`; unknown codes get a generic text. The string lives
/// as long as the library is loaded and must not be freed.
///
/// # Safety
///
/// None: any value of `status` is accepted.
#[unsafe(no_mangle)]
pub extern "C" fn memory_buffers_status_message(status: MemoryBuffersStatus) -> *const c_char {
    // `message` is a plain match over constants and cannot panic, but no
    // panic may cross into C even in theory.
    panic::catch_unwind(|| status.message())
        .unwrap_or(PANICKED)
        .as_ptr()
}

/// Copies the details of the calling thread's most recent failure to
/// `*info`.
///
/// Failures are recorded per thread, by every call that returns a status
/// other than [`MEMORY_BUFFERS_STATUS_OK`], except this function and
/// [`memory_buffers_last_error_message`]. Successful calls do not clear it.
/// If no call on this thread has failed, `info->status` is
/// [`MEMORY_BUFFERS_STATUS_OK`] and the other fields are 0.
///
/// # Errors
///
/// [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `info` is `NULL`.
///
/// # Safety
///
/// `info` must be `NULL` or valid for writing one, suitably aligned,
/// `MemoryBuffersErrorInfo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_last_error(
    info: *mut MemoryBuffersErrorInfo,
) -> MemoryBuffersStatus {
    if info.is_null() {
        return MEMORY_BUFFERS_STATUS_NULL_POINTER;
    }
    let last = panic::catch_unwind(|| {
        LAST_ERROR
            .try_with(|slot| {
                slot.try_borrow()
                    .ok()
                    .and_then(|last| last.as_ref().map(|last| last.info))
            })
            .ok()
            .flatten()
            .unwrap_or(MemoryBuffersErrorInfo::NONE)
    });
    let Ok(last) = last else {
        return MEMORY_BUFFERS_STATUS_PANIC;
    };
    // SAFETY: `info` is non-null and, by the caller's contract, valid for an
    // aligned write of one `MemoryBuffersErrorInfo`.
    unsafe { info.write(last) };
    MEMORY_BUFFERS_STATUS_OK
}

/// Copies the message of the calling thread's most recent failure, as a
/// NUL-terminated string, into `buffer`.
///
/// The message names the failing function and what went wrong, including
/// the requested range and size (for example `memory_buffers_get_buffer: no
/// free address space in range (range 0x1000..=0x2fff, size 0x2000)`). If no
/// call on this thread has failed, the message is empty.
///
/// `*length`, when `length` is not `NULL`, receives the size of the whole
/// message including its terminating NUL, so a caller can pass a `NULL`
/// buffer with capacity 0 to learn the size first.
///
/// # Errors
///
/// - [`MEMORY_BUFFERS_STATUS_NULL_POINTER`] if `buffer` is `NULL` while
///   `capacity` is not 0.
/// - [`MEMORY_BUFFERS_STATUS_BUFFER_TOO_SMALL`] if the message and its NUL
///   do not fit in `capacity` bytes; the buffer (if `capacity` > 0) then
///   holds the truncated, NUL-terminated start of the message.
///
/// This function does not record its own failures as the last error.
///
/// # Safety
///
/// - `buffer` must be `NULL` (only with `capacity` 0) or valid for writing
///   `capacity` bytes.
/// - `length` must be `NULL` or valid for writing one aligned `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_buffers_last_error_message(
    buffer: *mut c_char,
    capacity: size_t,
    length: *mut size_t,
) -> MemoryBuffersStatus {
    if buffer.is_null() && capacity != 0 {
        return MEMORY_BUFFERS_STATUS_NULL_POINTER;
    }
    let message = panic::catch_unwind(|| {
        LAST_ERROR
            .try_with(|slot| {
                let last = slot.try_borrow().ok();
                last.as_ref()
                    .and_then(|last| last.as_ref())
                    .map(|last| last.message.clone())
            })
            .ok()
            .flatten()
            .unwrap_or_default()
    });
    let Ok(message) = message else {
        return MEMORY_BUFFERS_STATUS_PANIC;
    };
    let needed = message.len() + 1;
    let fits = needed <= capacity;
    if capacity > 0 {
        let copy = message.len().min(capacity - 1);
        // SAFETY: `buffer` is non-null (checked above, as `capacity > 0`)
        // and valid for writing `capacity` bytes by the caller's contract;
        // `copy + 1 <= capacity` bytes are written. The source is a `String`
        // owned here, so the ranges cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(message.as_ptr(), buffer.cast::<u8>(), copy);
            buffer.add(copy).write(0);
        }
    }
    if !length.is_null() {
        // SAFETY: non-null, and valid for one aligned write by the caller's
        // contract.
        unsafe { length.write(needed) };
    }
    if fits {
        MEMORY_BUFFERS_STATUS_OK
    } else {
        MEMORY_BUFFERS_STATUS_BUFFER_TOO_SMALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_status_has_its_own_message() {
        let named: Vec<_> = (0..=27).map(MemoryBuffersStatus).collect();
        let unknown = MemoryBuffersStatus(-1).message();
        for (index, status) in named.iter().enumerate() {
            assert_ne!(status.message(), unknown, "{status:?}");
            for other in &named[index + 1..] {
                assert_ne!(
                    status.message(),
                    other.message(),
                    "{status:?} and {other:?}"
                );
            }
        }
        assert_eq!(MemoryBuffersStatus(28).message(), unknown);
    }

    #[test]
    fn the_table_names_every_status_once_in_order() {
        for (index, named) in NAMED.iter().enumerate() {
            assert_eq!(named.status, MemoryBuffersStatus(index as i32));
        }
    }

    #[test]
    fn each_library_error_of_the_table_maps_to_its_status() {
        for named in &NAMED {
            if let Some(kind) = named.kind {
                assert_eq!(MemoryBuffersStatus::from(kind), named.status, "{kind:?}");
            }
        }
    }

    /// The texts taken from the library are the ones C programs have
    /// always been given, and begin the library's own messages.
    #[test]
    fn invalid_request_statuses_have_the_librarys_text() {
        let texts = [
            (MEMORY_BUFFERS_STATUS_ZERO_SIZE, "size is zero"),
            (MEMORY_BUFFERS_STATUS_SIZE_TOO_LARGE, "size is too large"),
            (
                MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX,
                "min_address is above max_address",
            ),
            (
                MEMORY_BUFFERS_STATUS_RANGE_SMALLER_THAN_SIZE,
                "the range is smaller than the size",
            ),
            (
                MEMORY_BUFFERS_STATUS_RANGE_ABOVE_USER_SPACE,
                "the range lies above user space",
            ),
            (
                MEMORY_BUFFERS_STATUS_ALIGNMENT_NOT_POWER_OF_TWO,
                "alignment is not a power of two",
            ),
            (
                MEMORY_BUFFERS_STATUS_ALIGNMENT_ABOVE_GRANULARITY,
                "alignment is above the allocation granularity",
            ),
        ];
        for (status, text) in texts {
            let message = status.message().to_str().unwrap();
            assert_eq!(message, format!("invalid request: {text}"));
            // The same pointer the second time: made once, kept.
            assert_eq!(status.message().as_ptr(), status.message().as_ptr());
        }
        // Every status that stands for one library error has that error's
        // own text, written once, in the library.
        for named in &NAMED {
            if let Some(kind) = named.kind {
                assert_eq!(named.status.message().to_str().unwrap(), kind.to_string());
            }
        }
        let settings = memory_buffers::BufferSearchSettings::new(0x2000, 0x1000, 16);
        let error = memory_buffers::Buffers::get_buffer(&settings).unwrap_err();
        let status = MemoryBuffersStatus::from(error.kind());
        let message = status.message().to_str().unwrap();
        assert!(
            error.to_string().starts_with(message),
            "{error} / {message}"
        );
    }

    #[test]
    fn invalid_requests_map_to_their_own_codes() {
        assert_eq!(
            MemoryBuffersStatus::from(InvalidRequest::ZeroSize),
            MEMORY_BUFFERS_STATUS_ZERO_SIZE
        );
        assert_eq!(
            MemoryBuffersStatus::from(InvalidRequest::MinAboveMax),
            MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX
        );
        assert_eq!(
            MemoryBuffersStatus::from(ErrorKind::Os {
                call: "mmap",
                errno: 12
            }),
            MEMORY_BUFFERS_STATUS_OS_ERROR
        );
        assert_eq!(
            MemoryBuffersStatus::from(ErrorKind::InvalidRequest(InvalidRequest::NullPointer)),
            MEMORY_BUFFERS_STATUS_NULL_POINTER
        );
    }

    #[test]
    #[cfg_attr(
        all(windows, target_pointer_width = "32"),
        ignore = "a panic cannot be caught in a 32-bit Windows program under Wine 8: it faults in the unwinder"
    )]
    fn a_panic_becomes_the_panic_status_with_its_message() {
        let status = run("panicking_function", || panic!("deliberate test panic"));
        assert_eq!(status, MEMORY_BUFFERS_STATUS_PANIC);
        let mut info = MemoryBuffersErrorInfo::NONE;
        // SAFETY: `info` is a live local.
        let status = unsafe { memory_buffers_last_error(&mut info) };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
        assert_eq!(info.status, MEMORY_BUFFERS_STATUS_PANIC);
        let mut text = [0 as c_char; 128];
        // SAFETY: `text` is a live local of the given length.
        let status = unsafe {
            memory_buffers_last_error_message(text.as_mut_ptr(), text.len(), std::ptr::null_mut())
        };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
        // SAFETY: the call above NUL-terminated `text`.
        let text = unsafe { CStr::from_ptr(text.as_ptr()) }.to_str().unwrap();
        assert_eq!(text, "panicking_function: panicked: deliberate test panic");
    }

    /// The calling thread's last error message, as Rust text.
    fn last_message() -> String {
        let mut text = [0 as c_char; 256];
        // SAFETY: `text` is a live local of the given length.
        let status = unsafe {
            memory_buffers_last_error_message(text.as_mut_ptr(), text.len(), std::ptr::null_mut())
        };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
        // SAFETY: the call above NUL-terminated `text`.
        let text = unsafe { CStr::from_ptr(text.as_ptr()) };
        text.to_str().unwrap().to_owned()
    }

    #[test]
    fn a_library_error_is_recorded_with_its_numbers() {
        let settings = memory_buffers::BufferSearchSettings::new(0x2000, 0x1000, 16);
        let error = memory_buffers::Buffers::get_buffer(&settings).unwrap_err();
        let status = run("some_function", || Err(error.into()));
        assert_eq!(status, MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX);
        let mut info = MemoryBuffersErrorInfo::NONE;
        // SAFETY: `info` is a live local.
        assert_eq!(
            unsafe { memory_buffers_last_error(&mut info) },
            MEMORY_BUFFERS_STATUS_OK
        );
        assert_eq!(
            (info.min_address, info.max_address, info.size),
            (0x2000, 0x1000, 16)
        );
        let expected = if cfg!(feature = "no-format") {
            "some_function: invalid request: min_address is above max_address"
        } else {
            "some_function: invalid request: min_address is above max_address (range 0x2000..=0x1000, size 0x10)"
        };
        assert_eq!(last_message(), expected);
    }

    #[test]
    fn a_short_message_buffer_gets_a_truncated_terminated_message() {
        let failure = Failure::new(MEMORY_BUFFERS_STATUS_NULL_POINTER, "`settings` is NULL");
        assert_eq!(
            run("some_function", || Err(failure)),
            MEMORY_BUFFERS_STATUS_NULL_POINTER
        );
        let full = "some_function: `settings` is NULL";
        let mut needed = 0;
        // SAFETY: a NULL buffer with capacity 0 is allowed; `needed` is live.
        let status =
            unsafe { memory_buffers_last_error_message(std::ptr::null_mut(), 0, &mut needed) };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_BUFFER_TOO_SMALL);
        assert_eq!(needed, full.len() + 1);
        let mut text = [0x7f as c_char; 8];
        // SAFETY: `text` is a live local of the given length.
        let status = unsafe {
            memory_buffers_last_error_message(text.as_mut_ptr(), text.len(), &mut needed)
        };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_BUFFER_TOO_SMALL);
        // SAFETY: the call above NUL-terminated `text`.
        let truncated = unsafe { CStr::from_ptr(text.as_ptr()) };
        assert_eq!(truncated.to_bytes(), &full.as_bytes()[..7]);
        // SAFETY: as above.
        let status =
            unsafe { memory_buffers_last_error_message(std::ptr::null_mut(), 5, &mut needed) };
        assert_eq!(status, MEMORY_BUFFERS_STATUS_NULL_POINTER);
    }

    #[test]
    fn a_thread_without_failures_reports_no_error() {
        std::thread::spawn(|| {
            let mut info = MemoryBuffersErrorInfo {
                status: MEMORY_BUFFERS_STATUS_PANIC,
                ..MemoryBuffersErrorInfo::NONE
            };
            // SAFETY: `info` is a live local.
            let status = unsafe { memory_buffers_last_error(&mut info) };
            assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
            assert_eq!(info, MemoryBuffersErrorInfo::NONE);
            let mut text = [0x7f as c_char; 4];
            let mut needed = 0;
            // SAFETY: `text` and `needed` are live locals.
            let status = unsafe {
                memory_buffers_last_error_message(text.as_mut_ptr(), text.len(), &mut needed)
            };
            assert_eq!(status, MEMORY_BUFFERS_STATUS_OK);
            assert_eq!((text[0], needed), (0, 1));
        })
        .join()
        .unwrap();
    }
}
