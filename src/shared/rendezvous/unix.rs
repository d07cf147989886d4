//! Finding the process's shared locator, or creating it (Linux, macOS,
//! FreeBSD: the same file and protocol on each, as the original has it).
//!
//! Every buffers library in a process opens the file `FORMAT.md` names for the
//! process id and uses the locator address stored in it, so they all share
//! one registry. The file lives in world-writable `/tmp`, where it may have
//! been left by a crashed process with the same id or planted by another
//! user, so nothing in it is trusted until checked:
//!
//! - directories are opened one component at a time without following
//!   symlinks, and must belong to this user (or root) and not be writable by
//!   others unless sticky;
//! - the file must be a regular file owned by this user, 4096 bytes long,
//!   and its *this address* must be a live mapping of that very file (same
//!   device, inode and offset 0) in this process: checked in
//!   `/proc/self/maps`, or without `/proc` by seeing a check value written
//!   through our own view appear at that address (see
//!   `same_page_without_proc`). A file that cannot be checked is never
//!   replaced: the library uses a private locator instead.
//!
//! A new locator is written to a uniquely named file created with
//! `O_CREAT | O_EXCL`, initialised, and only then published under the
//! rendezvous name with `link()`, which fails if the name exists: two
//! instances starting together cannot both publish, and nobody ever sees a
//! half-initialised file. A file for this process id that fails the checks
//! but is ours (a dead process's leftover) is replaced atomically with
//! `rename()`. Anything else falls back to a private locator.
//!
//! A process id alone does not say whose a file is: a process in another
//! PID namespace sharing `/tmp` can have the same id, or look dead to
//! `kill`. So the creator holds a shared lock on its
//! file for as long as its locator is mapped (see [`LivenessLock`]). A file
//! whose lock is held is never removed by cleanup, and never taken over:
//! whoever finds it and cannot validate it uses a private locator
//! ([`PrivateLocatorReason::FileInUse`]).
//!
//! What differs between the Unix systems stays in their backends: Linux
//! has `openat2`, `O_TMPFILE`, `/proc/self/maps`, open-file-description
//! locks (which a mapping keeps) and `MADV_DONTFORK`; macOS and FreeBSD
//! walk the path one component at a time, publish through a temporary name,
//! hold a `flock` through a descriptor kept open, and keep the mapping out
//! of children with `minherit`. The file's layout and the checks are the
//! same everywhere.

#![allow(unsafe_code)]

use super::Meeting;
use crate::error::PrivateLocatorReason;
use crate::os::{self, Directory, FileKind, FileStatus};
use crate::shared::layout::{self, LOCATOR_SIZE, LocatorRef, PROBE_OFFSET};
use crate::space::maps::MapsEntry;
use std::fs::File;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

/// Directory components below the base directory (`/tmp` in production).
pub(crate) const DIRECTORY_COMPONENTS: [&str; 2] = [".reloaded", "memory.buffers"];

/// Prefix of every rendezvous file name; the process id follows.
const FILE_PREFIX: &str = "Reloaded.Memory.Buffers.MemoryBuffer, PID ";

/// Mode of the rendezvous file: read/write for its owner only (every
/// instance in the process opens it read/write).
const FILE_MODE: u32 = 0o600;

/// Times a file that looks half-written (another library may be creating
/// it the old way, without `link()`) is re-checked before it is replaced.
const IN_PROGRESS_CHECKS: u32 = 3;

/// Length of the rendezvous file: the allocation granularity, as `FORMAT.md`
/// states (4096 bytes with 4 KiB pages). With larger pages the bytes after
/// the locator are left unused on Linux and FreeBSD, and are chained
/// locator headers on macOS AArch64 (see [`layout::rendezvous_file_start`]).
fn file_len() -> usize {
    LOCATOR_SIZE.max(os::allocation_granularity())
}

/// How long a takeover waits for another instance's takeover to finish. A
/// lock held longer (by another user, say) is ignored rather than waited on.
const TAKEOVER_PATIENCE: Duration = Duration::from_millis(250);

/// The rendezvous file name for a process.
pub(crate) fn file_name(pid: u32) -> String {
    format!("{FILE_PREFIX}{pid}")
}

/// The process id a rendezvous file name (`…PID <pid>`) or one of this
/// library's temporary names (`…PID <pid>.tmp<n>`) belongs to; `None` for
/// any other name, even one that merely starts like them (`…PID 123.keep`):
/// cleanup deletes only names it could have made itself.
fn pid_of_file_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(FILE_PREFIX)?;
    let (digits, suffix) = match rest.split_once('.') {
        Some((digits, suffix)) => (digits, Some(suffix)),
        None => (rest, None),
    };
    let pid: u32 = canonical_number(digits)?;
    match suffix {
        None => Some(pid),
        Some(suffix) => {
            canonical_number::<u32>(suffix.strip_prefix("tmp")?)?;
            Some(pid)
        }
    }
}

/// `text` as a number, if it is exactly how `format!` writes one (ASCII
/// digits, no sign, no leading zero).
fn canonical_number<T: std::str::FromStr + std::fmt::Display>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let number: T = text.parse().ok()?;
    (number.to_string() == text).then_some(number)
}

/// How the locator was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rendezvous {
    /// Another instance created it; this is its address.
    Found(LocatorRef),
    /// This call created (or took over) the file.
    Created(LocatorRef),
}

/// The shared lock this process holds on the rendezvous file it published
/// (see [`os::hold_liveness_lock`]). While it is held, other processes know
/// the file's owner is alive, whatever PID namespace they see it from:
/// stale-file cleanup leaves it alone, and a process with the same id
/// elsewhere does not take it over.
///
/// The lock belongs to the open file that the locator's mapping was made
/// from, and the mapping keeps that open file alive: the lock lasts exactly
/// as long as the mapping, which is the life of the process (the kernel
/// drops both at exit or `exec`, even after a crash; a forked child gets
/// neither, see [`os::exclude_from_fork`]). Dropping this value releases
/// the lock (tests use that to play a creator that died).
#[derive(Debug)]
pub(crate) struct LivenessLock(Option<File>);

impl LivenessLock {
    /// Keeps the lock for the life of the process: on Linux the mapping
    /// holds it and the descriptor closes; elsewhere the descriptor stays
    /// open (see [`os::keep_liveness_lock`]).
    fn keep_for_life(mut self) {
        if let Some(file) = self.0.take() {
            os::keep_liveness_lock(file);
        }
    }
}

impl Drop for LivenessLock {
    fn drop(&mut self) {
        if let Some(file) = self.0.take() {
            // Best effort; the descriptor closes right after.
            let _ = os::release_liveness_lock(&file);
        }
    }
}

/// The directory below which the Unix rendezvous directories live: `/tmp`,
/// as `FORMAT.md` says. On macOS `/tmp` is a symlink to `/private/tmp`,
/// which the symlink-refusing walk would not follow: the same directory is
/// named by its real path there.
pub(crate) const RENDEZVOUS_BASE: &str = if cfg!(target_os = "macos") {
    "/private/tmp"
} else {
    "/tmp"
};

/// Whether the buffers libraries of a process meet through the rendezvous
/// file on this system. Not on Android, where every copy gets a private
/// locator ([`PrivateLocatorReason::Unsupported`]) without a call being
/// made: an app has no `/tmp` (the root file system is read-only, and
/// SELinux keeps apps out of each other's directories), and the original
/// library, which maps its file read/write/execute, is refused that shared
/// mapping there and keeps a locator of its own, so there is no one to
/// meet. Trying would only cost system calls, and log SELinux denials,
/// before ending with a private locator all the same. Buffers do not need
/// the file: they are private anonymous mappings, as on Linux.
const RENDEZVOUS_FILE_SHARED: bool = !cfg!(target_os = "android");

/// Finds or publishes the shared locator of process `pid` through the
/// rendezvous file below [`RENDEZVOUS_BASE`]; the sweep a publication
/// owes is kept for [`pay_owed_sweep`].
pub(crate) fn meet(pid: u32) -> Result<Meeting, PrivateLocatorReason> {
    if !RENDEZVOUS_FILE_SHARED {
        return Err(PrivateLocatorReason::Unsupported);
    }
    let (found, owed) = find_or_create_owing_sweep(RENDEZVOUS_BASE, pid)?;
    let owes_sweep = owed.map(owe_sweep).is_some();
    let (Rendezvous::Found(head) | Rendezvous::Created(head)) = found;
    Ok(Meeting {
        head,
        unusable: 0..0,
        owes_sweep,
    })
}

/// Finds or creates the shared locator of process `pid` below `base`
/// (normally `/tmp`). A file this call publishes stays locked for the life
/// of the process. The sweep for stale files of dead processes is left
/// to the caller when this call published a file: removing them costs
/// from tens of microseconds to a millisecond per file (`unlink` on ext4
/// frees blocks and waits on the journal), which the first `get_buffer`
/// of a process should not pay. The caller must run it (see
/// [`owe_sweep`]).
pub(crate) fn find_or_create_owing_sweep(
    base: &str,
    pid: u32,
) -> Result<(Rendezvous, Option<StaleSweep>), PrivateLocatorReason> {
    let (rendezvous, lock, sweep) = find_or_create_inner(base, pid)?;
    if let Some(lock) = lock {
        lock.keep_for_life();
    }
    Ok((rendezvous, sweep))
}

/// The removal of other processes' stale files that a process which
/// published a rendezvous file owes the directory.
pub(crate) struct StaleSweep {
    directory: Directory,
    own_pid: u32,
    user: u32,
}

impl StaleSweep {
    /// Removes the stale files now.
    pub(crate) fn run(self) {
        remove_stale_files(&self.directory, self.own_pid, self.user);
    }
}

/// The sweep this process owes, if it published a rendezvous file and has
/// not swept yet.
static OWED_SWEEP: Mutex<Option<StaleSweep>> = Mutex::new(None);

/// Keeps `sweep` to be run by [`pay_owed_sweep`], which the locator calls
/// on a later request, or at the latest when the process exits (or this
/// library is unloaded). A process killed before either leaves the stale
/// files to the next process that publishes one.
pub(crate) fn owe_sweep(sweep: StaleSweep) {
    static AT_EXIT: Once = Once::new();
    *OWED_SWEEP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sweep);
    AT_EXIT.call_once(|| {
        if !os::run_at_exit(pay_owed_sweep_at_exit) {
            // Nothing would run it: sweep now.
            pay_owed_sweep();
        }
    });
}

/// Runs the owed sweep, if any; returns at once if another thread is
/// running it.
pub(crate) fn pay_owed_sweep() {
    let sweep = match OWED_SWEEP.try_lock() {
        Ok(mut owed) => owed.take(),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take(),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    if let Some(sweep) = sweep {
        sweep.run();
    }
}

extern "C" fn pay_owed_sweep_at_exit() {
    // Never unwind into the C library's exit path.
    let _ = std::panic::catch_unwind(pay_owed_sweep);
}

/// [`find_or_create_owing_sweep`], handing back the lock of a file this call published
/// (none where the file system has no such locks) instead of keeping it:
/// tests drop it to play a creator that has died. Sweeps stale files at
/// once. For the tests on real files (`unix_tests`) and the fault tests.
#[cfg(all(test, not(target_os = "android")))]
pub(crate) fn find_or_create_holding(
    base: &str,
    pid: u32,
) -> Result<(Rendezvous, Option<LivenessLock>), PrivateLocatorReason> {
    let (rendezvous, lock, sweep) = find_or_create_inner(base, pid)?;
    if let Some(sweep) = sweep {
        sweep.run();
    }
    Ok((rendezvous, lock))
}

/// The rendezvous, the lock of a file this call published, and, when it
/// published one, the sweep it owes.
#[allow(clippy::type_complexity)]
fn find_or_create_inner(
    base: &str,
    pid: u32,
) -> Result<(Rendezvous, Option<LivenessLock>, Option<StaleSweep>), PrivateLocatorReason> {
    let user = os::effective_user_id();
    let directory = open_directories(base, user)?;
    let name = file_name(pid);
    // Held from the first stale sighting to the end of the call.
    let mut turn = None;
    for _ in 0..8 {
        let publish = match inspect_existing(&directory, &name, user)? {
            Existing::Valid(locator) => return Ok((Rendezvous::Found(locator), None, None)),
            Existing::Missing => Publish::Exclusive,
            Existing::Stale if turn.is_none() => {
                // Replacing is not exclusive the way `link` is: two instances
                // that both judged the file stale would each rename their own
                // over it. Take turns, and look again once it is our turn.
                turn = Some(directory.lock_exclusive(TAKEOVER_PATIENCE));
                continue;
            }
            Existing::Stale => Publish::Replace,
        };
        if let Some((locator, lock)) = publish_new(&directory, &name, pid, publish)? {
            drop(turn);
            let sweep = StaleSweep {
                directory,
                own_pid: pid,
                user,
            };
            return Ok((Rendezvous::Created(locator), lock, Some(sweep)));
        }
        // Another instance published first: look at theirs.
    }
    Err(PrivateLocatorReason::FileContended)
}

/// Mode of the directories the library creates: every user's processes
/// rendezvous there (each in files of their own), so, like `/tmp`, anyone
/// may create entries and only an entry's owner may remove them.
const DIRECTORY_MODE: u32 = 0o1777;

fn open_directories(base: &str, user: u32) -> Result<Directory, PrivateLocatorReason> {
    let unavailable = |errno| PrivateLocatorReason::DirectoryUnavailable { errno };
    // The first component in one call where it exists and the kernel has
    // `openat2`; otherwise (missing, a symlink on the way, an old kernel)
    // the walk below opens the base and goes one component at a time,
    // creating what is missing and reporting errors as it always did.
    let mut first =
        Directory::open_without_symlinks(&format!("{base}/{}", DIRECTORY_COMPONENTS[0])).ok();
    let mut parent = match first {
        Some(_) => None,
        None => Some(Directory::open_or_create(None, base, DIRECTORY_MODE).map_err(unavailable)?),
    };
    for component in DIRECTORY_COMPONENTS {
        let directory = match first.take() {
            Some(directory) => directory,
            None => Directory::open_or_create(parent.as_ref(), component, DIRECTORY_MODE)
                .map_err(unavailable)?,
        };
        let mut status = directory.status().map_err(unavailable)?;
        if status.owner == user
            && !status.is_shared_sticky()
            && !status.is_writable_by_others_without_sticky()
        {
            // Ours, but made by an older version (0755) or under a umask:
            // open it to other users, or they all get private locators.
            // Best effort: a read-only file system keeps the old mode. (A
            // directory others could already write to without the sticky
            // bit is not repaired but refused below: they may have
            // tampered with it.)
            if directory.set_mode(DIRECTORY_MODE).is_ok() {
                status = directory.status().map_err(unavailable)?;
            }
        }
        if !directory_is_trusted(&status, user) {
            return Err(PrivateLocatorReason::DirectoryNotTrusted);
        }
        parent = Some(directory);
    }
    parent.ok_or(PrivateLocatorReason::DirectoryUnavailable {
        errno: libc::ENOENT,
    })
}

/// Whether a directory on the rendezvous path may hold `user`'s files.
///
/// Root's, the user's, or another user's shared sticky directory: in all
/// three nobody else can remove or replace the user's files (the owner of a
/// shared directory could delete them, but not forge them: files are
/// checked to be the user's). A directory others may write to without the
/// sticky bit is never trusted.
pub(crate) fn directory_is_trusted(status: &FileStatus, user: u32) -> bool {
    let trusted_owner = status.owner == user || status.owner == 0 || status.is_shared_sticky();
    trusted_owner && !status.is_writable_by_others_without_sticky()
}

/// Whether `entry`, the line of a process's maps that contains
/// `this_address`, is that process's live mapping of the rendezvous file
/// `file` describes: starting at `this_address`, at offset 0, at least one
/// locator long, of the same device and inode.
pub(crate) fn is_locator_mapping(
    entry: &MapsEntry,
    this_address: usize,
    file: &FileStatus,
) -> bool {
    this_address.is_multiple_of(LOCATOR_SIZE)
        && entry.start == this_address
        && entry.end - entry.start >= LOCATOR_SIZE
        && entry.offset == 0
        && entry.inode == file.inode
        && entry.dev_major == file.dev_major
        && entry.dev_minor == file.dev_minor
}

enum Existing {
    Missing,
    Valid(LocatorRef),
    /// Ours, but not a live locator of this process: replace it.
    Stale,
}

fn inspect_existing(
    directory: &Directory,
    name: &str,
    user: u32,
) -> Result<Existing, PrivateLocatorReason> {
    // The zeroed file looked at last: judged below if it stays zeroed.
    let mut examined = None;
    for check in 0..IN_PROGRESS_CHECKS {
        let file = match directory.open_existing(name) {
            Ok(file) => file,
            Err(errno) if errno == libc::ENOENT => return Ok(Existing::Missing),
            // A symlink (`ELOOP`), directory or other non-file: replace it
            // if it is ours, otherwise leave it alone. A regular file of
            // ours that cannot be opened (read-only after a umask of 0277,
            // no descriptor left) may be a live locator: it cannot be
            // validated, so it is never taken over.
            Err(errno) => {
                return match directory.entry_status(name) {
                    Ok(status) if status.owner != user => Err(PrivateLocatorReason::FileNotTrusted),
                    Ok(status) if status.kind == FileKind::Regular => {
                        Err(PrivateLocatorReason::FileUnavailable { errno })
                    }
                    Ok(_) => Ok(Existing::Stale),
                    Err(libc::ENOENT) => Ok(Existing::Missing),
                    Err(_) => Err(PrivateLocatorReason::FileUnavailable { errno }),
                };
            }
        };
        let status = os::file_status(&file)
            .map_err(|errno| PrivateLocatorReason::FileUnavailable { errno })?;
        if status.owner != user {
            return Err(PrivateLocatorReason::FileNotTrusted);
        }
        if status.kind != FileKind::Regular {
            return stale_unless_locked(&file);
        }
        let this_address = if status.size == file_len() as u64 {
            // Reading a sparse file through a mapping can fault too on a
            // full tmpfs: make sure its blocks exist first.
            os::allocate_existing_file(&file, file_len() as u64)
                .map_err(|errno| PrivateLocatorReason::FileUnavailable { errno })?;
            read_this_address(&file)?
        } else {
            0
        };
        if this_address != 0 {
            return match live_locator(&file, this_address, &status) {
                Liveness::Live(locator) => Ok(Existing::Valid(locator)),
                Liveness::Dead => stale_unless_locked(&file),
                // Possibly live: replacing it could split the process in
                // two registries. Use a private one instead.
                Liveness::Unknown(errno) => Err(PrivateLocatorReason::FileUnavailable { errno }),
            };
        }
        // Empty, short or zeroed: possibly being written right now by a
        // library that creates the file in place. Give it a moment.
        if check + 1 < IN_PROGRESS_CHECKS {
            // A monotonic, signal-proof sleep: `std::thread::sleep` never
            // ends under a signal every 50 µs.
            os::sleep(Duration::from_millis(1));
        }
        examined = Some(file);
    }
    // Judge the file that stayed zeroed, not whatever has the name now: an
    // instance that replaced it meanwhile holds the lock of its new, live
    // file until its call returns, and reopening by name made that look
    // like another process's file in use (`FileInUse`: a private locator).
    // A stale verdict makes the caller look again, under the takeover
    // lock, and find the new file valid.
    match examined {
        Some(file) => stale_unless_locked(&file),
        None => Ok(Existing::Stale),
    }
}

/// A file that is not this process's live locator is stale, unless another
/// process holds its liveness lock: then it is someone's live file (a
/// process with the same id in another PID namespace, or the parent of a
/// forked child, through a hard link), and replacing it would break them.
/// Files without the lock (older libraries, file systems without such
/// locks) are judged as before.
fn stale_unless_locked(file: &File) -> Result<Existing, PrivateLocatorReason> {
    match os::is_locked_elsewhere(file) {
        Ok(true) => Err(PrivateLocatorReason::FileInUse),
        Ok(false) | Err(_) => Ok(Existing::Stale),
    }
}

/// Reads the *this address* field through a temporary view of the file.
fn read_this_address(file: &File) -> Result<usize, PrivateLocatorReason> {
    let view = os::map_file_shared(file, file_len())
        .map_err(|errno| PrivateLocatorReason::FileUnavailable { errno })?;
    // SAFETY: `view` is a fresh, page-aligned mapping of LOCATOR_SIZE bytes
    // that is unmapped below, after the last use of the reference.
    let this_address = unsafe { LocatorRef::from_address(view.address()) }.map_or(0, |locator| {
        // Relaxed: the value is not trusted; it is checked against the
        // process's mappings before any use.
        locator.this_address().load(Ordering::Relaxed)
    });
    // The view is unmapped here; `this_address` is a copy.
    drop(view);
    Ok(this_address)
}

/// Locators that this process or one it was forked from published, and
/// whose mappings forked children inherit because the system refused to
/// keep them out of children (`MADV_DONTFORK`, `minherit`; a seccomp
/// sandbox may refuse every `madvise`).
///
/// In a child such a mapping is still there, a live mapping of its
/// parent's file, so the maps check alone would take the parent's locator
/// for the child's own if a file under the child's id led to it (a hard
/// link of the parent's file). The record, in process memory that a child
/// inherits with the mapping, says whose it is. The process-id check of the
/// fork marker keeps the child off the parent's state and held buffers.
mod inherited {
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

    /// Generations of forked processes that may each publish a locator
    /// their children inherit; a process beyond them gets a private
    /// locator rather than one its children could mistake.
    const RECORDS: usize = 64;

    static ADDRESSES: [AtomicUsize; RECORDS] = [const { AtomicUsize::new(0) }; RECORDS];
    static CREATORS: [AtomicU32; RECORDS] = [const { AtomicU32::new(0) }; RECORDS];
    static COUNT: AtomicUsize = AtomicUsize::new(0);

    /// Records that the locator mapped at `address`, published by process
    /// `pid`, is inherited by forked children; false when the records are
    /// full.
    pub(super) fn remember(address: usize, pid: u32) -> bool {
        let index = COUNT.fetch_add(1, Ordering::Relaxed);
        let (Some(slot), Some(creator)) = (ADDRESSES.get(index), CREATORS.get(index)) else {
            return false;
        };
        creator.store(pid, Ordering::Relaxed);
        // Release: a reader that sees the address sees its creator.
        slot.store(address, Ordering::Release);
        true
    }

    /// Whether `address` is a locator that a process other than `pid` (an
    /// ancestor) published and this process inherited.
    pub(super) fn is_an_ancestors(address: usize, pid: u32) -> bool {
        let count = COUNT.load(Ordering::Relaxed).min(RECORDS);
        ADDRESSES[..count]
            .iter()
            .zip(&CREATORS[..count])
            .any(|(slot, creator)| {
                // Acquire: pairs with the Release store in `remember`.
                slot.load(Ordering::Acquire) == address && creator.load(Ordering::Relaxed) != pid
            })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn an_inherited_locator_is_its_creators_not_a_childs() {
            let address = 0x7e00_0000_usize;
            assert!(!is_an_ancestors(address, 200));
            assert!(remember(address, 100));
            assert!(!is_an_ancestors(address, 100), "the creator's own");
            assert!(is_an_ancestors(address, 200), "a child's inheritance");
            assert!(!is_an_ancestors(address + 0x1000, 200));
        }
    }
}

/// Whether a file's *this address* is its live locator in this process.
enum Liveness {
    /// A live shared mapping of the file, at offset 0: use it.
    Live(LocatorRef),
    /// Proven not to be: the file is a leftover (or forged).
    Dead,
    /// Could not be told (no `/proc` and no `process_vm_readv`); the errno
    /// of the last check tried.
    Unknown(os::Errno),
}

/// Checks that `this_address` starts a live shared mapping, at offset 0, of
/// the file described by `status`: in the system's list of file mappings
/// (`/proc/self/maps`, FreeBSD's `KERN_PROC_VMMAP`), or, when there is
/// none (no `/proc`; macOS, whose region walk does not name files), by
/// [`same_page_without_proc`].
fn live_locator(file: &File, this_address: usize, status: &FileStatus) -> Liveness {
    if !this_address.is_multiple_of(LOCATOR_SIZE)
        || inherited::is_an_ancestors(this_address, os::process_id())
    {
        return Liveness::Dead;
    }
    let mut found = false;
    let mut buffer = Vec::new();
    let read = os::read_file_mappings(&mut buffer, |entry| {
        if entry.start <= this_address && this_address < entry.end {
            found = is_locator_mapping(entry, this_address, status);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if read.is_err() {
        return same_page_without_proc(file, this_address);
    }
    // SAFETY: the address is the start of a live mapping of the rendezvous
    // file, which its creator keeps for the life of the process, and at
    // least LOCATOR_SIZE bytes long and page-aligned.
    match found
        .then(|| unsafe { LocatorRef::from_address(this_address) })
        .flatten()
    {
        Some(locator) => Liveness::Live(locator),
        None => Liveness::Dead,
    }
}

/// Header lock attempts before giving up on checking without `/proc`.
const HEADER_LOCK_ATTEMPTS: u32 = 1000;

/// Checks, without `/proc`, that `this_address` shows the same page as a
/// fresh view of `file`.
///
/// Nothing is ever written at `this_address`: it is only read, with
/// `process_vm_readv`, which reports an unmapped address as `EFAULT`
/// instead of faulting. Through our own view of the file we take the header
/// lock (so, by the protocol, nobody else changes the header), write a check
/// value into the probe word ([`PROBE_OFFSET`], which no field uses), and
/// read the header and the probe word at `this_address`: if they show the
/// lock held, the check value and its own address, it is the same page. The
/// probe word goes back to 0 and the lock is released before returning. An unreadable address, or one showing
/// other bytes, is proven not to be the live locator.
fn same_page_without_proc(file: &File, this_address: usize) -> Liveness {
    let header = |out: &mut [u8; 32]| os::read_own_memory(this_address, out);
    let mut seen = [0u8; 32];
    match header(&mut seen) {
        Ok(()) => {}
        Err(libc::EFAULT) => return Liveness::Dead,
        Err(errno) => return Liveness::Unknown(errno),
    }
    let view = match os::map_file_shared(file, file_len()) {
        Ok(view) => view,
        Err(errno) => return Liveness::Unknown(errno),
    };
    // SAFETY: `view` is a fresh, page-aligned mapping of at least
    // LOCATOR_SIZE bytes that outlives every use of `ours` below.
    let Some(ours) = (unsafe { LocatorRef::from_address(view.address()) }) else {
        return Liveness::Unknown(libc::EINVAL);
    };
    // Acquire, as in `lock_header`; bounded, since the holder may be a
    // process that died holding it in a leftover file.
    let mut locked = false;
    for attempt in 0..HEADER_LOCK_ATTEMPTS {
        if ours
            .lock()
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            locked = true;
            break;
        }
        if attempt > 16 {
            std::thread::yield_now();
        }
    }
    if !locked {
        return Liveness::Unknown(libc::EBUSY);
    }
    // Any non-zero value that the page at `this_address` would not show by
    // chance: the low bits of our view's address (distinct per view).
    let check = 0xa500 | ((view.address() >> 12) as u16 & 0xff) | 1;
    let mut probe_seen = [0u8; 2];
    // Relaxed: the stores and the reads below are ordered by the system
    // calls in between; nobody else reads the probe word.
    ours.probe().store(check, Ordering::Relaxed);
    let read = header(&mut seen)
        .and_then(|()| os::read_own_memory(this_address + PROBE_OFFSET, &mut probe_seen));
    ours.probe().store(0, Ordering::Relaxed);
    // Release, as in `unlock_header`.
    ours.lock().store(0, Ordering::Release);
    drop(view);
    let width = std::mem::size_of::<usize>();
    let lock_at = 2 * width;
    let same = read.is_ok()
        && seen[..width] == this_address.to_ne_bytes()
        && seen[lock_at..lock_at + 4] == 1u32.to_ne_bytes()
        && probe_seen == check.to_le_bytes();
    match read {
        // SAFETY: the address shows the live page of the rendezvous file
        // (the check value written through our view appeared there), which
        // its creator keeps mapped for the life of the process; it is
        // page-aligned (checked by the caller).
        Ok(()) if same => unsafe { LocatorRef::from_address(this_address) }
            .map_or(Liveness::Unknown(libc::EINVAL), Liveness::Live),
        Ok(()) | Err(libc::EFAULT) => Liveness::Dead,
        Err(errno) => Liveness::Unknown(errno),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// Publish only if the name is free.
    Exclusive,
    /// Replace whatever has the name.
    Replace,
}

/// A locator file being prepared, not yet visible under the rendezvous name.
enum Draft {
    /// Created with `O_TMPFILE`: no name until published.
    Unnamed(File),
    /// Created under a unique temporary name (file systems without
    /// `O_TMPFILE`, and replacing a stale file, which needs `rename`).
    Named(String, File),
}

impl Draft {
    fn file(&self) -> &File {
        match self {
            Draft::Unnamed(file) | Draft::Named(_, file) => file,
        }
    }

    /// Removes the temporary name, if any.
    fn discard(self, directory: &Directory) {
        drop(self.remove_name(directory));
    }

    /// Removes the temporary name, if any, and returns the open file.
    fn remove_name(self, directory: &Directory) -> File {
        match self {
            Draft::Unnamed(file) => file,
            Draft::Named(temporary, file) => {
                let _ = directory.remove(&temporary);
                file
            }
        }
    }

    /// The open file; its temporary name, if any, has been renamed away.
    fn into_file(self) -> File {
        match self {
            Draft::Unnamed(file) | Draft::Named(_, file) => file,
        }
    }
}

/// Whether an `errno` from the unnamed-file path means "not available here"
/// rather than a real failure.
fn unnamed_unsupported(errno: os::Errno) -> bool {
    matches!(
        errno,
        libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT
    )
}

fn create_named_draft(directory: &Directory, pid: u32) -> Result<Draft, os::Errno> {
    /// Distinguishes temporary files of concurrent attempts in one process.
    static ATTEMPT: AtomicU32 = AtomicU32::new(0);
    loop {
        // Relaxed: the counter only has to hand out distinct numbers.
        let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
        let temporary = format!("{FILE_PREFIX}{pid}.tmp{attempt}");
        match directory.create_new(&temporary) {
            Ok(file) => return Ok(Draft::Named(temporary, file)),
            Err(libc::EEXIST) if attempt < 1 << 20 => continue,
            Err(errno) => return Err(errno),
        }
    }
}

/// Creates, initialises and publishes a new locator file, with its
/// liveness lock if the file system has such locks. Returns `None` when an
/// exclusive publish lost to another instance.
#[allow(clippy::type_complexity)]
fn publish_new(
    directory: &Directory,
    name: &str,
    pid: u32,
    publish: Publish,
) -> Result<Option<(LocatorRef, Option<LivenessLock>)>, PrivateLocatorReason> {
    let unavailable = |errno| PrivateLocatorReason::FileUnavailable { errno };
    // An unnamed file needs no temporary name and no unlink afterwards, but
    // can only be linked to a free name, not renamed over a stale file.
    let mut use_unnamed = publish == Publish::Exclusive;
    loop {
        let draft = if use_unnamed {
            match directory.create_unnamed() {
                Ok(file) => Draft::Unnamed(file),
                Err(errno) if unnamed_unsupported(errno) => {
                    use_unnamed = false;
                    continue;
                }
                Err(errno) => return Err(unavailable(errno)),
            }
        } else {
            create_named_draft(directory, pid).map_err(unavailable)?
        };
        // The mode exactly: a umask of 0277 would leave the file read-only,
        // and another library in this process could not open it to share.
        // The blocks are allocated before anything is written through the
        // mapping: on a full file system that would raise `SIGBUS`.
        // Locked from the start, so that cleanup by a process that cannot
        // see ours (another PID namespace) leaves even the temporary alone.
        let locked = os::hold_liveness_lock(draft.file()).is_ok();
        // Mapped while still empty (nothing touches the view until the
        // file is written below), so that the first write can already hold
        // the view's address.
        let mapped = os::set_file_mode(draft.file(), FILE_MODE)
            .and_then(|()| os::map_file_shared(draft.file(), file_len()));
        let mapping = match mapped {
            Ok(mapping) => mapping,
            Err(errno) => {
                draft.discard(directory);
                return Err(unavailable(errno));
            }
        };
        // A forked child must never use this locator as its own (it would
        // register pages that exist only in the child): with the mapping
        // left out of children, the address is dead there, whatever file
        // sits under the child's id (a hard link of ours, say). Where the
        // system refuses that (a sandbox that refuses `madvise`), children
        // inherit the mapping, and the address is remembered as this
        // process's, which no child then takes for its own.
        let address = mapping.address();
        if let Err(errno) = os::exclude_from_fork(&mapping)
            && !inherited::remember(address, os::process_id())
        {
            drop(mapping);
            draft.discard(directory);
            return Err(unavailable(errno));
        }
        // SAFETY: a fresh shared mapping of at least LOCATOR_SIZE bytes,
        // page-aligned, kept for the life of the process once published.
        let Some(locator) = (unsafe { LocatorRef::from_address(address) }) else {
            draft.discard(directory);
            return Err(unavailable(libc::EINVAL));
        };
        // The initial locator is written through the file, not the view:
        // all zeros but *this address* (as `LocatorRef::initialise` would
        // leave it), and on Apple Silicon the chained headers after it.
        // See `os::write_new_file` for why.
        let start = layout::rendezvous_file_start(address, file_len(), layout::CHAINED_HEADERS);
        if let Err(errno) = os::write_new_file(draft.file(), &start, file_len()) {
            drop(mapping);
            draft.discard(directory);
            return Err(unavailable(errno));
        }
        // The view shows the page just written (same file, same page cache).
        debug_assert_eq!(locator.this_address().load(Ordering::Relaxed), address);
        let published = match (&draft, publish) {
            (Draft::Unnamed(file), _) => directory.link_unnamed(file, name),
            (Draft::Named(temporary, _), Publish::Exclusive) => directory.link(temporary, name),
            (Draft::Named(temporary, _), Publish::Replace) => directory.rename(temporary, name),
        };
        let renamed = matches!((&draft, publish), (Draft::Named(..), Publish::Replace));
        match published {
            Ok(()) => {
                let file = if renamed {
                    draft.into_file()
                } else {
                    draft.remove_name(directory)
                };
                mapping.leak();
                return Ok(Some((locator, locked.then_some(LivenessLock(Some(file))))));
            }
            Err(errno) => {
                // Nobody else learned this mapping's address: unmap it.
                drop(mapping);
                let unnamed = matches!(draft, Draft::Unnamed(_));
                draft.discard(directory);
                if errno == libc::EEXIST {
                    return Ok(None);
                }
                if unnamed && unnamed_unsupported(errno) {
                    // No `/proc` to link through: use a temporary name.
                    use_unnamed = false;
                    continue;
                }
                return Err(unavailable(errno));
            }
        }
    }
}

/// Removes rendezvous files (and temporaries) of processes that no longer
/// exist, if this user owns them. Best effort: failures are ignored.
///
/// A process in another PID namespace sharing `/tmp` looks dead here
/// (`kill` answers `ESRCH`), so a file whose liveness lock is held is never
/// removed, whatever its name says; only files without it (left by older
/// libraries) fall back to asking `kill`.
fn remove_stale_files(directory: &Directory, own_pid: u32, user: u32) {
    let Ok(names) = directory.entry_names() else {
        return;
    };
    for name in names {
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = pid_of_file_name(name) else {
            continue;
        };
        // A live process's file stays, whatever else is true: one `kill`
        // instead of the five calls below.
        if pid == own_pid || os::process_is_alive(pid) {
            continue;
        }
        // Only our own entries are candidates, and only regular files are
        // opened to test the lock (opening someone else's device node or
        // FIFO could have effects of its own).
        let Ok(status) = directory.entry_status(name) else {
            continue;
        };
        if status.owner != user || status.kind == FileKind::Directory {
            continue;
        }
        let locked = status.kind == FileKind::Regular
            && directory
                .open_existing(name)
                .is_ok_and(|file| os::is_locked_elsewhere(&file).unwrap_or(false));
        if locked {
            continue;
        }
        let _ = directory.remove(name);
    }
}

/// The rendezvous on real files, on every Unix system whose rendezvous is
/// a file; `fault_tests` borrows its temporary base directories.
#[cfg(all(test, not(target_os = "android")))]
#[path = "unix_tests.rs"]
pub(crate) mod unix_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_specification_and_parse_back() {
        assert_eq!(
            file_name(1234),
            "Reloaded.Memory.Buffers.MemoryBuffer, PID 1234"
        );
        assert_eq!(pid_of_file_name(&file_name(77)), Some(77));
        assert_eq!(
            pid_of_file_name("Reloaded.Memory.Buffers.MemoryBuffer, PID 77.tmp3"),
            Some(77)
        );
        assert_eq!(pid_of_file_name("other"), None);
    }

    fn status(owner: u32, mode: u32) -> FileStatus {
        FileStatus {
            kind: FileKind::Directory,
            owner,
            mode,
            size: 0,
            dev_major: 0,
            dev_minor: 0x2d,
            inode: 77,
        }
    }

    #[test]
    fn directories_are_trusted_when_nobody_else_can_replace_files_in_them() {
        assert!(directory_is_trusted(&status(1000, 0o755), 1000));
        assert!(directory_is_trusted(&status(0, 0o1777), 1000));
        assert!(directory_is_trusted(&status(4242, 0o1777), 1000));
        assert!(!directory_is_trusted(&status(4242, 0o755), 1000));
        assert!(!directory_is_trusted(&status(1000, 0o777), 1000));
        assert!(!directory_is_trusted(&status(0, 0o775), 1000));
    }

    #[test]
    fn only_the_files_own_mapping_at_its_address_is_a_locator() {
        let file = status(1000, 0o600);
        let entry = MapsEntry {
            start: 0x7000_0000,
            end: 0x7000_1000,
            offset: 0,
            dev_major: 0,
            dev_minor: 0x2d,
            inode: 77,
            access: Default::default(),
            grows_down: false,
        };
        assert!(is_locator_mapping(&entry, 0x7000_0000, &file));
        assert!(!is_locator_mapping(&entry, 0x7000_0008, &file));
        for other in [
            MapsEntry { inode: 78, ..entry },
            MapsEntry {
                dev_minor: 0x2e,
                ..entry
            },
            MapsEntry {
                offset: 0x1000,
                ..entry
            },
            MapsEntry {
                end: 0x7000_0800,
                ..entry
            },
        ] {
            assert!(!is_locator_mapping(&other, 0x7000_0000, &file), "{other:?}");
        }
    }

    /// Cleanup deleted same-user files that merely
    /// started with the prefix.
    #[test]
    fn only_exact_rendezvous_and_temporary_names_belong_to_a_process() {
        for name in [
            "Reloaded.Memory.Buffers.MemoryBuffer, PID 123.keep",
            "Reloaded.Memory.Buffers.MemoryBuffer, PID 123 backup",
            "Reloaded.Memory.Buffers.MemoryBuffer, PID 123.tmp",
            "Reloaded.Memory.Buffers.MemoryBuffer, PID 123.tmp4.old",
            "Reloaded.Memory.Buffers.MemoryBuffer, PID 123.tmpx",
            "Reloaded.Memory.Buffers.MemoryBuffer, PID 0123",
            "Reloaded.Memory.Buffers.MemoryBuffer, PID +123",
            "Reloaded.Memory.Buffers.MemoryBuffer, PID 123~",
            "Reloaded.Memory.Buffers.MemoryBuffer, PID 99999999999",
            "Reloaded.Memory.Buffers.MemoryBuffer, PID ",
        ] {
            assert_eq!(pid_of_file_name(name), None, "{name}");
        }
        assert_eq!(
            pid_of_file_name("Reloaded.Memory.Buffers.MemoryBuffer, PID 123.tmp0"),
            Some(123)
        );
        assert_eq!(
            pid_of_file_name("Reloaded.Memory.Buffers.MemoryBuffer, PID 0"),
            Some(0)
        );
        assert_eq!(
            pid_of_file_name("Reloaded.Memory.Buffers.MemoryBuffer, PID x"),
            None
        );
    }
}
