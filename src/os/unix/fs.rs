//! The file-system calls only the rendezvous uses: file status, directories
//! opened without following symlinks and the entries named relative to
//! them, locks, and the rendezvous file written and mapped. Kept apart from
//! the memory calls, which every request needs.

use super::memory::unmap;
use super::time::{monotonic_now, sleep_until};
use super::{Errno, last_errno, retry_interrupted, zero_or_errno};
use crate::os::OwnedMapping;
use crate::os::fault::{self, FaultPoint};
use std::ffi::CString;
#[cfg(not(linux_like))]
use std::ffi::{CStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
#[cfg(not(linux_like))]
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

// What `fstat` fills: on Linux (and Android) the large-file `stat64`, whose
// inode and size are 64 bits on every width (the plain `fstat` of a 32-bit
// program fails with `EOVERFLOW` for a file whose inode number needs more
// than 32 bits); the BSDs' and macOS's `stat` has 64-bit fields already.
#[cfg(not(linux_like))]
use libc::{fstat, fstatat, stat as FileStat};
#[cfg(linux_like)]
use libc::{fstat64 as fstat, fstatat64 as fstatat, stat64 as FileStat};

/// What `fstat` says about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStatus {
    pub(crate) kind: FileKind,
    pub(crate) owner: u32,
    pub(crate) mode: u32,
    pub(crate) size: u64,
    pub(crate) dev_major: u32,
    pub(crate) dev_minor: u32,
    pub(crate) inode: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Regular,
    Directory,
    Symlink,
    Other,
}

/// The sticky bit of a mode (`S_ISVTX`, whose type differs between
/// systems).
const STICKY: u32 = 0o1000;

/// The major and minor numbers of a device, split the way the system's
/// list of mappings splits the device of a mapped file, so the two
/// compare. Like the `stat` type above, how a `dev_t` is encoded is a
/// property of the C library and kernel, not of a backend's calls.
#[cfg(linux_like)]
fn device_numbers(device: libc::dev_t) -> (u32, u32) {
    // bionic's `major` and `minor` return an `int`, glibc's and musl's an
    // `unsigned int`; the numbers are masked bit fields, never negative.
    #[cfg(target_os = "android")]
    {
        (libc::major(device) as u32, libc::minor(device) as u32)
    }
    #[cfg(not(target_os = "android"))]
    {
        (libc::major(device), libc::minor(device))
    }
}

/// A Darwin `dev_t` (major in the top 8 bits, minor in the low 24).
#[cfg(target_os = "macos")]
fn device_numbers(device: libc::dev_t) -> (u32, u32) {
    let device = device as u32;
    (device >> 24, device & 0x00ff_ffff)
}

/// A FreeBSD `dev_t`, split as `KERN_PROC_VMMAP` records are parsed.
#[cfg(target_os = "freebsd")]
fn device_numbers(device: libc::dev_t) -> (u32, u32) {
    crate::space::kinfo_vmmap::split_device(device)
}

impl FileStatus {
    fn from_stat(stat: &FileStat) -> FileStatus {
        let kind = match stat.st_mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        };
        let (dev_major, dev_minor) = device_numbers(stat.st_dev);
        FileStatus {
            kind,
            owner: stat.st_uid,
            // `mode_t` is 16 bits on macOS, 32 elsewhere.
            #[allow(clippy::useless_conversion)]
            mode: u32::from(stat.st_mode),
            size: u64::try_from(stat.st_size).unwrap_or(0),
            dev_major,
            dev_minor,
            // `ino_t` is 64 bits wherever `FileStat` is used.
            #[allow(clippy::useless_conversion)]
            inode: u64::from(stat.st_ino),
        }
    }

    /// Whether users other than the owner may create or delete entries
    /// without the sticky bit stopping them from removing ours.
    pub(crate) fn is_writable_by_others_without_sticky(&self) -> bool {
        self.mode & 0o022 != 0 && self.mode & STICKY == 0
    }

    /// Whether this is a directory every user may create entries in, with
    /// the sticky bit (like `/tmp`): only an entry's owner (or the
    /// directory's) can remove or rename it.
    pub(crate) fn is_shared_sticky(&self) -> bool {
        self.mode & 0o7777 == 0o1777
    }
}

fn status_of_fd(fd: libc::c_int) -> Result<FileStatus, Errno> {
    let mut stat = std::mem::MaybeUninit::<FileStat>::uninit();
    // SAFETY: `stat` points to writable memory of the type `fstat` fills.
    if unsafe { fstat(fd, stat.as_mut_ptr()) } != 0 {
        return Err(last_errno());
    }
    // SAFETY: `fstat` succeeded, so it initialised `stat`.
    Ok(FileStatus::from_stat(unsafe { stat.assume_init_ref() }))
}

/// Status of an open file.
pub(crate) fn file_status(file: &File) -> Result<FileStatus, Errno> {
    status_of_fd(file.as_raw_fd())
}

/// A directory opened without following symlinks; entries are named
/// relative to it, so nobody can swap a path component under us.
pub(crate) struct Directory {
    pub(in crate::os) fd: OwnedFd,
}

/// `mode` as the system's `mode_t` (16 bits on macOS, which no mode this
/// library uses exceeds).
#[allow(clippy::unnecessary_cast)]
pub(in crate::os) fn mode_bits(mode: u32) -> libc::mode_t {
    mode as libc::mode_t
}

pub(in crate::os) fn c_name(name: &str) -> Result<CString, Errno> {
    CString::new(name).map_err(|_| libc::EINVAL)
}

impl Directory {
    /// Opens (creating it if missing, with exactly `mode` whatever the
    /// umask) the directory `name` inside `parent`, or the absolute path
    /// `name` when `parent` is `None`. Refuses symlinks.
    pub(crate) fn open_or_create(
        parent: Option<&Directory>,
        name: &str,
        mode: u32,
    ) -> Result<Directory, Errno> {
        fault::check(FaultPoint::OpenRendezvous)?;
        let name = c_name(name)?;
        let parent_fd = parent.map_or(libc::AT_FDCWD, |parent| parent.fd.as_raw_fd());
        let open = || {
            // SAFETY: `name` is a valid NUL-terminated string and `parent_fd`
            // an open directory or `AT_FDCWD`; `O_NOFOLLOW` refuses a
            // symlink in place of the directory and `O_DIRECTORY` anything
            // that is not one.
            let fd = retry_interrupted(|| unsafe {
                libc::openat(
                    parent_fd,
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            });
            if fd < 0 {
                Err(last_errno())
            } else {
                // SAFETY: `openat` returned a new descriptor nothing else owns.
                Ok(Directory {
                    fd: unsafe { OwnedFd::from_raw_fd(fd) },
                })
            }
        };
        // The directory exists in every process but the first: open first,
        // create only when it is missing.
        match open() {
            Err(libc::ENOENT) => {}
            other => return other,
        }
        // SAFETY: as above.
        if unsafe { libc::mkdirat(parent_fd, name.as_ptr(), mode_bits(mode)) } != 0 {
            let errno = last_errno();
            if errno != libc::EEXIST {
                return Err(errno);
            }
            // Someone else created it: its mode is theirs to have chosen.
            return open();
        }
        let directory = open()?;
        // The umask took bits away from `mode` (0755 from 01777 with the
        // usual 022): set it exactly, or other users cannot share.
        directory.set_mode(mode)?;
        Ok(directory)
    }

    /// Sets the permission bits (and sticky bit) of this directory.
    pub(crate) fn set_mode(&self, mode: u32) -> Result<(), Errno> {
        // SAFETY: `fchmod` on a descriptor we own.
        zero_or_errno(unsafe { libc::fchmod(self.fd.as_raw_fd(), mode_bits(mode)) })
    }

    pub(crate) fn status(&self) -> Result<FileStatus, Errno> {
        status_of_fd(self.fd.as_raw_fd())
    }

    /// Status of the entry `name`, without following a symlink.
    pub(crate) fn entry_status(&self, name: &str) -> Result<FileStatus, Errno> {
        let name = c_name(name)?;
        let mut stat = std::mem::MaybeUninit::<FileStat>::uninit();
        // SAFETY: valid directory fd, NUL-terminated name, writable `stat`
        // of the type `fstatat` fills.
        let result = unsafe {
            fstatat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                stat.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if result != 0 {
            return Err(last_errno());
        }
        // SAFETY: `fstatat` succeeded, so it initialised `stat`.
        Ok(FileStatus::from_stat(unsafe { stat.assume_init_ref() }))
    }

    pub(in crate::os) fn open_at(&self, name: &str, flags: libc::c_int) -> Result<File, Errno> {
        fault::check(FaultPoint::OpenRendezvous)?;
        let name = c_name(name)?;
        // SAFETY: valid directory fd and NUL-terminated name; the mode is
        // only used with `O_CREAT`.
        let fd = retry_interrupted(|| unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        });
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: `openat` returned a new descriptor that nothing else owns.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Opens the existing regular file `name` read/write; a symlink fails
    /// with `ELOOP`.
    pub(crate) fn open_existing(&self, name: &str) -> Result<File, Errno> {
        fault::check(FaultPoint::OpenRendezvousFile)?;
        self.open_at(name, 0)
    }

    /// Creates `name` read/write for the owner only; fails with `EEXIST` if
    /// anything (even a dangling symlink) has that name.
    pub(crate) fn create_new(&self, name: &str) -> Result<File, Errno> {
        self.open_at(name, libc::O_CREAT | libc::O_EXCL)
    }

    /// Takes an exclusive `flock` on this directory, waiting at most
    /// `patience`. Returns `None` if the lock is not had by then (another
    /// user may hold it forever: callers go on without it) or if the
    /// file system does not support it.
    pub(crate) fn lock_exclusive(&self, patience: Duration) -> Option<DirectoryLock<'_>> {
        // Monotonic deadlines throughout: every wait is bounded even under
        // a storm of signals (see `sleep_until`).
        let deadline = monotonic_now().saturating_add(patience);
        loop {
            // SAFETY: `flock` on a directory descriptor we own.
            if unsafe { libc::flock(self.fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Some(DirectoryLock { directory: self });
            }
            let errno = last_errno();
            let now = monotonic_now();
            if errno != libc::EWOULDBLOCK && errno != libc::EINTR || now >= deadline {
                return None;
            }
            sleep_until(now.saturating_add(Duration::from_millis(1)).min(deadline));
        }
    }

    /// Gives the file `from` the additional name `to`; fails with `EEXIST`
    /// if `to` exists, so publishing a file this way is exclusive.
    pub(crate) fn link(&self, from: &str, to: &str) -> Result<(), Errno> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid directory fd and NUL-terminated names; flags 0 does
        // not follow a symlink at `from`.
        zero_or_errno(unsafe { libc::linkat(fd, from.as_ptr(), fd, to.as_ptr(), 0) })
    }

    /// Renames `from` to `to`, replacing `to` atomically.
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), Errno> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid directory fd and NUL-terminated names.
        zero_or_errno(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) })
    }

    /// Removes the entry `name` (not a directory).
    pub(crate) fn remove(&self, name: &str) -> Result<(), Errno> {
        let name = c_name(name)?;
        // SAFETY: valid directory fd and NUL-terminated name.
        zero_or_errno(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) })
    }
}

/// What Linux does with calls of its own (`openat2`, `O_TMPFILE`,
/// `getdents64`), the other systems do the portable way, or not at all.
#[cfg(not(linux_like))]
impl Directory {
    /// Not available: callers walk the path one component at a time.
    pub(crate) fn open_without_symlinks(_path: &str) -> Result<Directory, Errno> {
        Err(libc::ENOSYS)
    }

    /// Not available (no `O_TMPFILE`): callers use a temporary name.
    pub(crate) fn create_unnamed(&self) -> Result<File, Errno> {
        Err(libc::EOPNOTSUPP)
    }

    /// Never called, since [`Directory::create_unnamed`] always fails.
    pub(crate) fn link_unnamed(&self, _file: &File, _to: &str) -> Result<(), Errno> {
        Err(libc::EOPNOTSUPP)
    }

    /// Names of the entries, without `.` and `..`, read with `readdir`
    /// through a duplicate of this descriptor.
    pub(crate) fn entry_names(&self) -> Result<Vec<OsString>, Errno> {
        // SAFETY: duplicating a descriptor we own.
        let fd = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: `fd` is a new descriptor owned here; on success the
        // stream takes it over and `closedir` closes it.
        let stream = unsafe { libc::fdopendir(fd) };
        if stream.is_null() {
            let errno = last_errno();
            // SAFETY: `fdopendir` failed, so `fd` is still ours to close.
            unsafe { libc::close(fd) };
            return Err(errno);
        }
        // SAFETY: an open stream; the duplicate shares its offset with
        // `self.fd`, which an earlier listing may have moved.
        unsafe { libc::rewinddir(stream) };
        let mut names = Vec::new();
        loop {
            // SAFETY: an open stream, used by this thread only.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                break;
            }
            // SAFETY: `readdir` returned a valid entry whose name is
            // NUL-terminated and lives until the next call on the stream.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        // SAFETY: closes the stream and its descriptor, once.
        unsafe { libc::closedir(stream) };
        Ok(names)
    }
}

/// An exclusive `flock` on a [`Directory`], released on drop.
pub(crate) struct DirectoryLock<'a> {
    directory: &'a Directory,
}

impl Drop for DirectoryLock<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we own; failure leaves the lock to
        // be released when the descriptor closes, moments later.
        unsafe { libc::flock(self.directory.fd.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Sets the permission bits of `file` exactly (`fchmod`), whatever the
/// umask took away when it was created.
pub(crate) fn set_file_mode(file: &File, mode: u32) -> Result<(), Errno> {
    // SAFETY: `fchmod` on a descriptor we own.
    zero_or_errno(unsafe { libc::fchmod(file.as_raw_fd(), mode_bits(mode)) })
}

/// Takes a shared `flock` on the whole of `file`. A `flock` belongs to the
/// open file description, and BSD kernels drop it when its last
/// descriptor closes (a mapping does not keep it), so the holder keeps the
/// descriptor open for the life of the process ([`keep_liveness_lock`]).
/// Other processes test it with [`is_locked_elsewhere`].
#[cfg(not(linux_like))]
pub(crate) fn hold_liveness_lock(file: &File) -> Result<(), Errno> {
    // SAFETY: `flock` on a descriptor we own.
    let result = retry_interrupted(|| unsafe {
        libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB)
    });
    zero_or_errno(result)
}

/// Releases the lock taken with [`hold_liveness_lock`] on this open file.
#[cfg(not(linux_like))]
pub(crate) fn release_liveness_lock(file: &File) -> Result<(), Errno> {
    // SAFETY: `flock` on a descriptor we own.
    zero_or_errno(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) })
}

/// Keeps the liveness lock on `file` for the rest of the process: the
/// descriptor stays open, since closing it would drop the lock.
#[cfg(not(linux_like))]
pub(crate) fn keep_liveness_lock(file: File) {
    std::mem::forget(file);
}

/// Whether an open file description other than `file`'s holds a lock on
/// it: an exclusive `flock` that cannot be had says so. `file` must be a
/// fresh open of the file, holding no lock itself.
#[cfg(not(linux_like))]
pub(crate) fn is_locked_elsewhere(file: &File) -> Result<bool, Errno> {
    // SAFETY: `flock` on a descriptor we own.
    let result = retry_interrupted(|| unsafe {
        libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB)
    });
    if result == 0 {
        // SAFETY: as above; drops the lock just taken.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return Ok(false);
    }
    match last_errno() {
        libc::EWOULDBLOCK => Ok(true),
        errno => Err(errno),
    }
}

/// Writes the first `len` bytes of a new, unpublished `file`: `start`,
/// then zeros (`pwrite`). The write sets the length and gets the blocks
/// from the file system, so a full file system answers `ENOSPC` here
/// instead of `SIGBUS` at the first write through a shared mapping, and it
/// leaves the page in the page cache, where a mapping finds it without a
/// write fault. One `pwritev` for a 4 KiB file, where `ftruncate`,
/// `posix_fallocate` and the first store through the mapping cost three
/// times as much.
pub(crate) fn write_new_file(file: &File, start: &[u8], len: usize) -> Result<(), Errno> {
    fault::check(FaultPoint::ResizeRendezvous)?;
    fault::check(FaultPoint::AllocateRendezvous)?;
    /// Zeros to write from. Never written, so its page is the kernel's
    /// shared zero page: writing from it costs no memory, where a zeroed
    /// buffer on the stack cost the first `get_buffer` a page.
    static ZEROS: [AtomicU64; 512] = [const { AtomicU64::new(0) }; 512];
    let zeros_len = std::mem::size_of_val(&ZEROS);
    let zeros = ZEROS.as_ptr().cast::<libc::c_void>().cast_mut();
    let mut offset = 0;
    while offset < len {
        let head = start.get(offset..).unwrap_or_default();
        let tail = (len - offset - head.len().min(len - offset)).min(zeros_len);
        let parts = [
            libc::iovec {
                iov_base: head.as_ptr().cast::<libc::c_void>().cast_mut(),
                iov_len: head.len().min(len - offset),
            },
            libc::iovec {
                iov_base: zeros,
                iov_len: tail,
            },
        ];
        let offset_arg = libc::off_t::try_from(offset).map_err(|_| libc::EFBIG)?;
        // SAFETY: both vectors describe readable memory of their length:
        // part of `start`, and part of `ZEROS`, which nothing ever writes
        // (the kernel only reads it).
        let written = unsafe { libc::pwritev(file.as_raw_fd(), parts.as_ptr(), 2, offset_arg) };
        match usize::try_from(written) {
            Ok(0) => return Err(libc::EIO),
            Ok(written) => offset += written,
            Err(_) if last_errno() == libc::EINTR => {}
            Err(_) => return Err(last_errno()),
        }
    }
    Ok(())
}

/// Maps the first `len` bytes of `file` shared and read/write.
pub(crate) fn map_file_shared(file: &File, len: usize) -> Result<OwnedMapping, Errno> {
    fault::check(FaultPoint::MapRendezvous)?;
    // SAFETY: a new shared mapping at a kernel-chosen address; the fd is
    // open for reading and writing.
    let result = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if result == libc::MAP_FAILED {
        Err(last_errno())
    } else {
        Ok(OwnedMapping::new(result as usize, len, unmap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::process_id;

    #[test]
    fn a_new_file_is_written_with_its_start_then_zeros() {
        let path = std::env::temp_dir().join(format!("memory-buffers-new-file-{}", process_id()));
        let _ = std::fs::remove_file(&path);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        write_new_file(&file, &[1, 2, 3], 10_000).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(bytes.len(), 10_000);
        assert_eq!(bytes[..3], [1, 2, 3]);
        assert!(bytes[3..].iter().all(|&byte| byte == 0));
    }

    #[test]
    fn a_directory_lists_its_entries() {
        let path = std::env::temp_dir().join(format!("memory-buffers-listing-{}", process_id()));
        std::fs::create_dir_all(&path).unwrap();
        let expected: Vec<String> = (0..200).map(|i| format!("entry number {i:04}")).collect();
        for name in &expected {
            std::fs::write(path.join(name), b"").unwrap();
        }
        let directory = Directory::open_or_create(None, path.to_str().unwrap(), 0o700).unwrap();
        for _ in 0..2 {
            let mut names: Vec<String> = directory
                .entry_names()
                .unwrap()
                .into_iter()
                .map(|name| name.into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(names, expected);
        }
        std::fs::remove_dir_all(&path).unwrap();
    }
}
