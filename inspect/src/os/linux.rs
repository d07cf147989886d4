//! Linux: the rendezvous file, `/proc/<pid>/maps` and `process_vm_readv`.
//!
//! The process's pointer width is the ELF class of its program
//! (`/proc/<pid>/exe`): a 32-bit process has a 32-bit locator layout and a
//! space of at most 4 GiB, which a 64-bit inspector reads like any other.
//!
//! Nothing of the other process is mapped or dereferenced here: its locator
//! is copied out with `process_vm_readv`, which the kernel checks against
//! the process's mappings and our ptrace rights (`PTRACE_MODE_ATTACH`: the
//! same user, and under Yama `ptrace_scope` 1 an ancestor or
//! `CAP_SYS_PTRACE`). The rendezvous file is only read with `read`, never
//! mapped, and opened without following symlinks and without blocking (a
//! FIFO planted under the name must not hang the inspector).

#![allow(unsafe_code)]

use super::FoundLocator;
use crate::failure::{Failure, ReadFailure};
use crate::free_ranges::Space;
use crate::rendezvous::{self, FileIdentity};
use crate::width::{self, Width};
use memory_buffers::internals::layout::LOCATOR_SIZE;
use memory_buffers::internals::{self, MapsEntry};
use std::cell::OnceCell;
use std::fs::{self, File};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A process being inspected.
pub(crate) struct Process {
    pid: u32,
    /// Its effective user id: the owner its rendezvous file must have.
    user: u32,
    /// Its maps, once read: the locator is validated and the free ranges
    /// found on the same picture, and a large map is read only once.
    maps: OnceCell<Vec<MapsEntry>>,
}

fn os_failure(what: String, error: io::Error) -> Failure {
    Failure::Os { what, error }
}

impl Process {
    pub(crate) fn open(pid: u32) -> Result<Process, Failure> {
        let status = match fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(status) => status,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(Failure::NoSuchProcess { pid });
            }
            Err(error) => return Err(os_failure(format!("reading /proc/{pid}/status"), error)),
        };
        // A thread id also has a /proc entry: only the process itself has
        // a rendezvous file.
        let tgid = status
            .lines()
            .find_map(|line| line.strip_prefix("Tgid:"))
            .and_then(|tgid| tgid.trim().parse::<u32>().ok());
        if tgid.is_some_and(|tgid| tgid != pid) {
            return Err(Failure::NoSuchProcess { pid });
        }
        // A zombie has no memory left to show (and no maps).
        let state = status
            .lines()
            .find_map(|line| line.strip_prefix("State:"))
            .map(str::trim_start);
        if state.is_some_and(|state| state.starts_with('Z') || state.starts_with('X')) {
            return Err(Failure::Exited { pid });
        }
        let user = rendezvous::effective_uid(&status).ok_or_else(|| Failure::Os {
            what: format!("reading /proc/{pid}/status"),
            error: io::Error::new(io::ErrorKind::InvalidData, "no Uid line"),
        })?;
        Ok(Process {
            pid,
            user,
            maps: OnceCell::new(),
        })
    }

    pub(crate) fn find_locator(&self) -> Result<FoundLocator, Failure> {
        let pid = self.pid;
        let path = internals::rendezvous_path(pid);
        let shown = path.display().to_string();
        let invalid = |why: String| Failure::InvalidLocator {
            pid,
            why: format!("the rendezvous file {shown:?}: {why}"),
        };
        let status = match fs::symlink_metadata(&path) {
            Ok(status) => status,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(Failure::NoLocator {
                    pid,
                    why: format!(
                        "there is no rendezvous file {shown:?} (the process has not asked \
                         for a shared buffer, uses a private locator, or runs in another \
                         /tmp)"
                    ),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                return Err(Failure::PermissionDenied {
                    pid,
                    what: format!("look up the rendezvous file {shown:?}"),
                });
            }
            Err(error) => return Err(os_failure(format!("looking up {shown:?}"), error)),
        };
        self.check_directories(&path)?;
        let expected_len = LOCATOR_SIZE.max(page_size()) as u64;
        rendezvous::check_file(
            status.file_type().is_file(),
            status.uid(),
            status.len(),
            self.user,
            expected_len,
        )
        .map_err(invalid)?;
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
        {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                return Err(Failure::PermissionDenied {
                    pid,
                    what: format!("read the rendezvous file {shown:?}"),
                });
            }
            Err(error) => return Err(os_failure(format!("opening {shown:?}"), error)),
        };
        // The file opened must be the one checked above, not a replacement.
        let opened = file
            .metadata()
            .map_err(|error| os_failure(format!("checking {shown:?}"), error))?;
        if opened.ino() != status.ino() || opened.dev() != status.dev() {
            return Err(invalid("it was replaced while being checked".into()));
        }
        // Asked only now, after the file was opened: another user's
        // process is refused for its rendezvous file (mode 0600), which
        // says why better than its unreadable program would.
        let width = self.width()?;
        if !width.is_readable_here() {
            return Err(Failure::WiderProcess { pid });
        }
        let this_address = read_this_address(&file, width)
            .map_err(|error| os_failure(format!("reading {shown:?}"), error))?;
        let (dev_major, dev_minor) = rendezvous::split_device(opened.dev());
        let identity = FileIdentity {
            dev_major,
            dev_minor,
            inode: opened.ino(),
        };
        let entries = self.maps_entries()?;
        rendezvous::check_live_mapping(entries, this_address, identity).map_err(invalid)?;
        Ok(FoundLocator {
            address: this_address,
            rendezvous: shown,
            width,
        })
    }

    /// The process's pointer width: the class of its program's ELF header.
    fn width(&self) -> Result<Width, Failure> {
        let pid = self.pid;
        let path = format!("/proc/{pid}/exe");
        let mut header = Vec::with_capacity(16);
        let read = File::open(&path).and_then(|file| file.take(16).read_to_end(&mut header));
        match read {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                return Err(Failure::PermissionDenied {
                    pid,
                    what: format!("read its program ({path}) to learn its pointer width"),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(Failure::NoSuchProcess { pid });
            }
            Err(error) => return Err(os_failure(format!("reading {path}"), error)),
        }
        width::from_elf_header(&header).ok_or_else(|| Failure::Os {
            what: format!("reading {path}"),
            error: io::Error::new(
                io::ErrorKind::InvalidData,
                "not an ELF program of 32 or 64 bits: its pointer width is unknown",
            ),
        })
    }

    /// The directories of the rendezvous path, as the library trusts them.
    fn check_directories(&self, file: &Path) -> Result<(), Failure> {
        let components = file.ancestors().skip(1).take(2).collect::<Vec<_>>();
        for directory in components.into_iter().rev() {
            let status = fs::symlink_metadata(directory).map_err(|error| {
                os_failure(format!("looking up {}", directory.display()), error)
            })?;
            let result = if status.file_type().is_dir() {
                rendezvous::check_directory(status.mode(), status.uid(), self.user)
            } else {
                Err("it is not a directory".into())
            };
            result.map_err(|why| Failure::InvalidLocator {
                pid: self.pid,
                why: format!("the directory {}: {why}", directory.display()),
            })?;
        }
        Ok(())
    }

    /// Every well-formed line of `/proc/<pid>/maps`, parsed by the
    /// library's parser; read once.
    fn maps_entries(&self) -> Result<&[MapsEntry], Failure> {
        if let Some(entries) = self.maps.get() {
            return Ok(entries);
        }
        let entries = self.read_maps()?;
        Ok(self.maps.get_or_init(|| entries))
    }

    fn read_maps(&self) -> Result<Vec<MapsEntry>, Failure> {
        let pid = self.pid;
        let path = PathBuf::from(format!("/proc/{pid}/maps"));
        let denied = || Failure::PermissionDenied {
            pid,
            what: format!("read the memory map ({})", path.display()),
        };
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => return Err(denied()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(Failure::NoSuchProcess { pid });
            }
            Err(error) => return Err(os_failure(format!("opening {}", path.display()), error)),
        };
        let mut entries = Vec::new();
        let mut buffer = Vec::new();
        let read = internals::for_each_entry(
            |out| file.read(out),
            &mut buffer,
            |entry| {
                entries.push(*entry);
                ControlFlow::Continue(())
            },
        );
        match read {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => return Err(denied()),
            Err(error) => return Err(os_failure(format!("reading {}", path.display()), error)),
        }
        // An unreadable map reads as empty for a process we may not trace
        // on some kernels, and a live process always has mappings.
        if entries.is_empty() {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return Err(Failure::NoSuchProcess { pid });
            }
            return Err(denied());
        }
        Ok(entries)
    }

    pub(crate) fn read(&self, address: usize, out: &mut [u8]) -> Result<(), ReadFailure> {
        let local = libc::iovec {
            iov_base: out.as_mut_ptr().cast(),
            iov_len: out.len(),
        };
        let remote = libc::iovec {
            iov_base: address as *mut libc::c_void,
            iov_len: out.len(),
        };
        let pid = libc::pid_t::try_from(self.pid).map_err(|_| ReadFailure::Gone)?;
        // SAFETY: `local` describes `out`, which is writable for its whole
        // length and outlives the call; the remote range is only an address
        // in the other process, which the kernel checks (it is never
        // dereferenced here).
        let read = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        if read < 0 {
            let error = io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::EFAULT) => ReadFailure::Unmapped,
                Some(libc::EPERM | libc::EACCES) => ReadFailure::Denied,
                Some(libc::ESRCH) => ReadFailure::Gone,
                _ => ReadFailure::Other(error),
            });
        }
        if read as usize != out.len() {
            // A short read: the range runs into unmapped memory.
            return Err(ReadFailure::Unmapped);
        }
        Ok(())
    }

    /// What `/proc/<pid>/maps` lists (it ends where the process's space
    /// does: `_space` is for the Windows signature).
    pub(crate) fn mapped_ranges(&self, _space: Space) -> Result<Vec<(usize, usize)>, Failure> {
        Ok(self
            .maps_entries()?
            .iter()
            .map(|entry| (entry.start, entry.end))
            .collect())
    }

    /// Its space, as the library in it sees its own: the page size and
    /// `vm.mmap_min_addr` are the machine's, the top depends on its width.
    pub(crate) fn space(&self, width: Width) -> Space {
        let highest = match width {
            // Only a 64-bit inspector gets here with a 64-bit process, and
            // both have the kernel's one 64-bit top.
            Width::Bits64 => memory_buffers::highest_user_address(),
            // Its own, whatever ours: its personality may differ.
            Width::Bits32 => self.highest_of_32_bit_process(),
        };
        Space {
            granularity: page_size(),
            lowest: internals::lowest_mappable_address(),
            highest,
        }
    }

    /// The top of the space of a 32-bit process: 4 GiB less a page under
    /// a 64-bit kernel, 3 GiB under a 32-bit one or with `setarch --3gb`.
    /// Its personality needs the rights that its maps need; should it be
    /// unreadable, the default personality (no limit) is assumed.
    fn highest_of_32_bit_process(&self) -> usize {
        let personality = fs::read_to_string(format!("/proc/{}/personality", self.pid))
            .ok()
            .and_then(|text| width::parse_personality(&text))
            .unwrap_or(0);
        width::highest_address_of_32_bit_linux_process(kernel_is_64_bit(), personality)
    }
}

/// Whether the kernel is 64-bit: under a 64-bit inspector it must be; a
/// 32-bit one asks `uname` for the kernel's machine, as the library does.
fn kernel_is_64_bit() -> bool {
    if cfg!(target_pointer_width = "64") {
        return true;
    }
    // SAFETY: an all-zero `utsname` (arrays of `c_char`) is a valid value.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is writable memory of the type `uname` fills.
    if unsafe { libc::uname(&mut name) } != 0 {
        return false;
    }
    let machine: Vec<u8> = name
        .machine
        .iter()
        .take_while(|&&byte| byte != 0)
        // `c_char` is `i8` on x86 and `u8` on AArch64: the same byte either way.
        .map(|&byte| u8::from_ne_bytes(byte.to_ne_bytes()))
        .collect();
    matches!(machine.as_slice(), b"x86_64" | b"aarch64")
}

/// The page size: the granularity of the process's mappings (the same for
/// every process of the machine).
fn page_size() -> usize {
    memory_buffers::allocation_granularity()
}

/// The *this address* field of a process of `width` (no wider than ours),
/// read through the file (never mapped).
fn read_this_address(file: &File, width: Width) -> io::Result<usize> {
    let layout = width.layout();
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word[..layout.pointer], layout.this_address as u64)?;
    usize::try_from(u64::from_le_bytes(word))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "an address wider than ours"))
}
