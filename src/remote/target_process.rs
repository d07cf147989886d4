//! Private allocations inside another process.
//!
//! Injectors and external tools (a mod loader preparing a game, a tool
//! placing a trampoline before the target runs) need memory near an address
//! of *another* process. The placement is the same as for this process (the
//! same settings, candidates nearest the target first, the
//! same errors); what differs is where the map comes from and how a block
//! is claimed:
//!
//! - **Linux:** the map is `/proc/<pid>/maps`; a block is claimed by making
//!   the target itself call `mmap(MAP_FIXED_NOREPLACE)` through ptrace (see
//!   `injection.rs` for how, and why its interrupted calls still restart).
//!   Bytes move with `process_vm_writev`/`process_vm_readv`.
//! - **Windows:** a `VirtualQueryEx` walk, `VirtualAllocEx`/`VirtualFreeEx`,
//!   `WriteProcessMemory`/`ReadProcessMemory`.
//!
//! The cached view of the target's address space lives in the
//! [`TargetProcess`], shared with its allocations, which give their pages
//! back through it when dropped.

use crate::error::{Error, ErrorKind, TargetProcessError};
use crate::os::{self, Protection, RemoteProcess};
use crate::settings::BufferAllocatorSettings;
use crate::space::address::{ValidRequest, validate_request};
use crate::space::address_space::{self, AddressSpace, ClaimableSpace};
use crate::space::placement::PlacementRequest;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};

/// Another process, opened to allocate memory in it and to read and write
/// its bytes.
///
/// Cloning is cheap and shares the process, its cached view of the address
/// space, and the lock that lets one operation at a time stop its thread.
///
/// # Permissions
///
/// - **Linux:** the same as a debugger's: the same user (and a process that
///   is dumpable), or `CAP_SYS_PTRACE`; with Yama's
///   `kernel.yama.ptrace_scope` at 1 (Ubuntu's default) the target must
///   also descend from this process, or have named it with
///   `prctl(PR_SET_PTRACER)`. Refusals say which rule applied
///   ([`TargetProcessError`]).
/// - **Windows:** `OpenProcess` with `PROCESS_QUERY_INFORMATION`,
///   `PROCESS_VM_OPERATION`, `PROCESS_VM_READ` and `PROCESS_VM_WRITE`.
#[derive(Clone)]
pub struct TargetProcess {
    shared: Arc<Shared>,
}

struct Shared {
    id: u32,
    /// The highest address (inclusive) the process can map: its own, which
    /// differs from this process's for a 32-bit target on 64-bit Windows.
    highest_address: usize,
    state: Mutex<State>,
}

/// What one operation at a time may use.
struct State {
    process: RemoteProcess,
    address_space: AddressSpace,
}

impl fmt::Debug for TargetProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetProcess")
            .field("id", &self.shared.id)
            .finish()
    }
}

impl TargetProcess {
    /// Opens the process with id `process_id`.
    ///
    /// On Linux nothing is attached yet: this checks that the process
    /// exists and that its map can be read. Its thread is stopped only for
    /// the moment of each allocation and release.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TargetProcess`] with [`TargetProcessError::NotRunning`]
    /// for an id of no process (0 included),
    /// [`TargetProcessError::ThisProcess`] for this process's own id, and
    /// the reason of a refusal ([`TargetProcessError::OtherUser`]...);
    /// [`ErrorKind::Unsupported`] on systems without a backend.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use memory_buffers::TargetProcess;
    /// let game = TargetProcess::open(4242)?;
    /// assert_eq!(game.id(), 4242);
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn open(process_id: u32) -> Result<TargetProcess, Error> {
        let fail = |kind| Error::new(kind, 0, 0, 0);
        if process_id == os::process_id() {
            return Err(fail(ErrorKind::TargetProcess(
                TargetProcessError::ThisProcess,
            )));
        }
        let process = RemoteProcess::open(process_id).map_err(fail)?;
        Ok(TargetProcess {
            shared: Arc::new(Shared {
                id: process_id,
                highest_address: process.highest_user_address(),
                state: Mutex::new(State {
                    process,
                    address_space: AddressSpace::new(),
                }),
            }),
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// Maps read/write/execute pages inside `[min_address, max_address]`
    /// of the target process, as near `settings.target` as its address
    /// space allows (without one, in the smallest free hole that holds
    /// them),
    /// owned by the returned value and unmapped when it is dropped
    /// (unless [leaked](RemoteAllocation::leak)).
    ///
    /// The size is rounded up to the allocation granularity of *this*
    /// system (the page size on Linux, 64 KiB on Windows), which is the
    /// target's too.
    ///
    /// The range is cut at the *target's* highest address, which on
    /// Windows may differ from this process's: a 32-bit target of a 64-bit
    /// caller has 4 GiB less 64 KiB if its image is large-address-aware,
    /// 2 GiB less 64 KiB if not (read from the target when it is opened).
    ///
    /// # Errors
    ///
    /// As for [`Buffers::allocate_private_memory`](crate::Buffers::allocate_private_memory)
    /// (with [`InvalidRequest::RangeAboveUserSpace`](crate::InvalidRequest::RangeAboveUserSpace)
    /// for a range wholly above the target's highest address), and
    /// [`ErrorKind::TargetProcess`] when the process exited or refused
    /// (see [`TargetProcessError`]).
    ///
    /// With
    /// [`write_then_execute`](BufferAllocatorSettings::write_then_execute)
    /// the pages are read/write until
    /// [`make_executable`](RemoteAllocation::make_executable), then
    /// read/execute, as for this process.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use memory_buffers::{BufferAllocatorSettings, TargetProcess};
    ///
    /// let game = TargetProcess::open(4242)?;
    /// let hooked_function = 0x0040_1000;
    /// let settings = BufferAllocatorSettings::from_proximity(0x7fff_0000, hooked_function, 4096);
    /// let trampoline = game.allocate_private_memory(&settings)?;
    /// trampoline.write(0, &[0xc3])?;
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn allocate_private_memory(
        &self,
        settings: &BufferAllocatorSettings,
    ) -> Result<RemoteAllocation, Error> {
        // Checked against the target's top, not this process's (which
        // `settings.validate` uses): a range above 2 GiB is fine for a
        // large-address-aware 32-bit target of a caller without the flag,
        // and out of reach of a 32-bit target without it.
        let highest_address = self.shared.highest_address;
        let request = validate_request(
            settings.min_address,
            settings.max_address,
            settings.size,
            os::allocation_granularity(),
            highest_address,
        )
        .map(|request| ValidRequest {
            target: settings.target,
            ..request
        })
        .map_err(|reason| {
            Error::new(
                ErrorKind::InvalidRequest(reason),
                settings.min_address,
                settings.max_address,
                settings.size,
            )
        })?;
        let fail = |kind: ErrorKind| Error::new(kind, request.min, request.max, request.size);
        if request.max - request.min < request.rounded_size - 1 {
            return Err(fail(ErrorKind::NoSpaceInRange));
        }
        let placement = PlacementRequest {
            min: request.min,
            max: request.max,
            block_len: request.rounded_size,
            range_len: request.rounded_size,
            granularity: os::allocation_granularity(),
            lowest_address: os::lowest_mappable_address(),
            highest_address,
            target: request.target,
        };
        let protection = if settings.write_then_execute {
            Protection::ReadWrite
        } else {
            Protection::ReadWriteExecute
        };
        let mut state = self.state();
        let State {
            process,
            address_space,
        } = &mut *state;
        let base_address = address_space
            .map_nearest_in(
                &mut Claim {
                    process,
                    protection,
                },
                placement,
                settings.retry_count,
            )
            .map_err(|failure| {
                Error::from_failure(failure, request.min, request.max, request.size)
            })?;
        let inside = base_address >= request.min
            && base_address
                .checked_add(request.rounded_size - 1)
                .is_some_and(|last| last <= request.max);
        if !inside {
            // Placement chose the address inside the range; should the
            // system have put the block elsewhere after all, it is given
            // back rather than handed out.
            let _ = process.unmap(base_address, request.rounded_size);
            address_space.forget(base_address, request.rounded_size);
            return Err(fail(ErrorKind::NoSpaceInRange));
        }
        Ok(RemoteAllocation {
            process: Arc::clone(&self.shared),
            base_address,
            size: request.rounded_size,
            owned: true,
            write_then_execute: settings.write_then_execute,
            executable: false,
        })
    }

    /// Writes `bytes` into the target at `address`.
    ///
    /// This cannot break this process's memory safety, but it can break the
    /// target: it writes wherever it is told, as a debugger would.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Os`] when part of the range is not mapped writable
    /// (`EFAULT` on Linux), [`ErrorKind::TargetProcess`] when the process
    /// exited or refused.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use memory_buffers::TargetProcess;
    /// let game = TargetProcess::open(4242)?;
    /// game.write_memory(0x0040_1000, &[0x90, 0x90])?;
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn write_memory(&self, address: usize, bytes: &[u8]) -> Result<(), Error> {
        self.state()
            .process
            .write(address, bytes)
            .map_err(|kind| Error::new(kind, address, address, bytes.len()))
    }

    /// Reads `out.len()` bytes of the target at `address` into `out`.
    ///
    /// # Errors
    ///
    /// As for [`TargetProcess::write_memory`], for unreadable memory.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use memory_buffers::TargetProcess;
    /// let game = TargetProcess::open(4242)?;
    /// let mut header = [0u8; 4];
    /// game.read_memory(0x0040_0000, &mut header)?;
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn read_memory(&self, address: usize, out: &mut [u8]) -> Result<(), Error> {
        self.state()
            .process
            .read(address, out)
            .map_err(|kind| Error::new(kind, address, address, out.len()))
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock left no half-made change behind
        // that matters: the cached view may only be stale, which placement
        // tolerates.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Another process's address space, claimed with these rights.
struct Claim<'a> {
    process: &'a mut RemoteProcess,
    protection: Protection,
}

impl ClaimableSpace for Claim<'_> {
    /// The base address; the [`RemoteAllocation`] made from it owns it.
    type Mapping = usize;

    fn read_maps(
        &mut self,
        buffer: &mut Vec<u8>,
        visit: impl FnMut(&crate::space::maps::MapsEntry) -> ControlFlow<()>,
    ) -> Result<(), os::Errno> {
        self.process.read_maps(buffer, visit)
    }

    fn map_exactly(&mut self, start: usize, len: usize) -> Result<Option<usize>, ErrorKind> {
        match self
            .process
            .map_fixed_noreplace(start, len, self.protection)?
        {
            Ok(true) => Ok(Some(start)),
            Ok(false) => Ok(None),
            Err(errno) => address_space::claim_failure(os::REMOTE_MAP_CALL, errno),
        }
    }

    fn occupied_run(&mut self, _: usize, _: usize, _: usize) -> Option<(usize, usize)> {
        None
    }
}

/// Read/write/execute pages mapped inside another process, unmapped there
/// when dropped unless leaked.
///
/// Obtained from [`TargetProcess::allocate_private_memory`]. It keeps the
/// process open.
#[must_use = "the pages are unmapped in the target when the allocation is dropped"]
pub struct RemoteAllocation {
    process: Arc<Shared>,
    /// Start of the mapping in the target; aligned to the granularity.
    base_address: usize,
    /// Length of the mapping; a non-zero multiple of the granularity.
    size: usize,
    /// Whether dropping unmaps the pages (false once leaked).
    owned: bool,
    /// Mapped read/write, to become read/execute (never both).
    write_then_execute: bool,
    /// A write-then-execute allocation made read/execute.
    executable: bool,
}

impl RemoteAllocation {
    /// Address of the first byte, in the target.
    pub fn base_address(&self) -> usize {
        self.base_address
    }

    /// Length in bytes (the requested size rounded up to the granularity).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The id of the process the pages are in.
    pub fn process_id(&self) -> u32 {
        self.process.id
    }

    /// The range `[offset, offset + len)` of the allocation as addresses in
    /// the target, or [`ErrorKind::DoesNotFit`] if it reaches past the end.
    fn range(&self, offset: usize, len: usize) -> Result<usize, Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(self.base_address + offset),
            _ => Err(Error::new(
                ErrorKind::DoesNotFit,
                self.base_address,
                self.base_address + (self.size - 1),
                len,
            )),
        }
    }

    /// Writes `bytes` at `offset` bytes into the allocation.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::DoesNotFit`] (nothing written) if the bytes reach past
    /// the end; [`ErrorKind::NotWritable`] while a write-then-execute
    /// allocation is executable; [`ErrorKind::TargetProcess`] if the
    /// process exited.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use memory_buffers::{BufferAllocatorSettings, TargetProcess};
    /// let game = TargetProcess::open(4242)?;
    /// let pages = game.allocate_private_memory(&BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096))?;
    /// pages.write(16, b"hello")?;
    /// let mut back = [0u8; 5];
    /// pages.read(16, &mut back)?;
    /// assert_eq!(&back, b"hello");
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        let address = self.range(offset, bytes.len())?;
        if self.executable {
            return Err(Error::new(
                ErrorKind::NotWritable,
                address,
                address,
                bytes.len(),
            ));
        }
        self.process
            .state()
            .process
            .write(address, bytes)
            .map_err(|kind| Error::new(kind, address, address, bytes.len()))
    }

    /// Reads `out.len()` bytes at `offset` bytes into the allocation.
    ///
    /// # Errors
    ///
    /// As for [`RemoteAllocation::write`] (reading is allowed in every
    /// state).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use memory_buffers::{BufferAllocatorSettings, TargetProcess};
    /// let game = TargetProcess::open(4242)?;
    /// let table = game.allocate_private_memory(&BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096))?;
    /// let mut counter = [0u8; 8];
    /// table.read(0, &mut counter)?; // what the game wrote there
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        let address = self.range(offset, out.len())?;
        self.process
            .state()
            .process
            .read(address, out)
            .map_err(|kind| Error::new(kind, address, address, out.len()))
    }

    /// Makes the pages executable: read/execute for a write-then-execute
    /// allocation (no longer writable), nothing to do for a
    /// read/write/execute one. x86-64 needs no instruction-cache flush
    /// after writing code.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ExecutableMemoryRefused`] if a policy of the target
    /// forbids it, [`ErrorKind::TargetProcess`] if the process exited,
    /// [`ErrorKind::Os`] for other refusals.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use memory_buffers::{BufferAllocatorSettings, TargetProcess};
    /// let game = TargetProcess::open(4242)?;
    /// let mut settings = BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096);
    /// settings.write_then_execute = true;
    /// let mut code = game.allocate_private_memory(&settings)?;
    /// code.write(0, &[0xc3])?;
    /// code.make_executable()?; // read/execute from now on
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn make_executable(&mut self) -> Result<(), Error> {
        if self.write_then_execute && !self.executable {
            self.set(Protection::ReadExecute)?;
            self.executable = true;
        }
        Ok(())
    }

    /// Makes a write-then-execute allocation read/write again (no longer
    /// executable); does nothing for a read/write/execute one.
    ///
    /// # Errors
    ///
    /// As for [`RemoteAllocation::make_executable`].
    pub fn make_writable(&mut self) -> Result<(), Error> {
        if self.executable {
            self.set(Protection::ReadWrite)?;
            self.executable = false;
        }
        Ok(())
    }

    /// Whether the pages can be written now.
    pub fn is_writable(&self) -> bool {
        !self.executable
    }

    fn set(&self, protection: Protection) -> Result<(), Error> {
        let result = self
            .process
            .state()
            .process
            .protect(self.base_address, self.size, protection);
        let kind = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(errno))
                if os::is_execute_refusal(errno) && protection == Protection::ReadExecute =>
            {
                ErrorKind::ExecutableMemoryRefused
            }
            Ok(Err(errno)) => ErrorKind::Os {
                call: os::REMOTE_PROTECT_CALL,
                errno,
            },
            Err(kind) => kind,
        };
        Err(Error::new(
            kind,
            self.base_address,
            self.base_address + (self.size - 1),
            self.size,
        ))
    }

    /// Gives up ownership without unmapping: the pages stay mapped in the
    /// target for its life. Returns the base address.
    ///
    /// ```no_run
    /// use memory_buffers::{BufferAllocatorSettings, TargetProcess};
    /// let game = TargetProcess::open(4242)?;
    /// let hook = game.allocate_private_memory(&BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096))?;
    /// let kept_at = hook.leak(); // still there after this tool exits
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    #[must_use = "the address is the only way left to the pages"]
    pub fn leak(mut self) -> usize {
        self.owned = false;
        self.base_address
    }

    /// Unmaps the pages now, reporting what dropping would ignore.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TargetProcess`] if the process exited (its memory is
    /// gone with it) or refused; [`ErrorKind::Os`] if the target's `munmap`
    /// failed.
    ///
    /// ```no_run
    /// use memory_buffers::{BufferAllocatorSettings, TargetProcess};
    /// let game = TargetProcess::open(4242)?;
    /// let pages = game.allocate_private_memory(&BufferAllocatorSettings::new(0, 0x7fff_ffff, 4096))?;
    /// pages.free()?;
    /// # Ok::<(), memory_buffers::Error>(())
    /// ```
    pub fn free(mut self) -> Result<(), Error> {
        self.owned = false;
        self.unmap()
    }

    fn unmap(&self) -> Result<(), Error> {
        let mut state = self.process.state();
        let result = state.process.unmap(self.base_address, self.size);
        // Forgotten either way: if the target refused, the cached view is
        // corrected by the next refused candidate.
        state.address_space.forget(self.base_address, self.size);
        result.map_err(|kind| {
            Error::new(
                kind,
                self.base_address,
                self.base_address + (self.size - 1),
                self.size,
            )
        })
    }
}

impl fmt::Debug for RemoteAllocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteAllocation")
            .field("process_id", &self.process.id)
            .field("base_address", &format_args!("{:#x}", self.base_address))
            .field("size", &self.size)
            .finish()
    }
}

impl Drop for RemoteAllocation {
    fn drop(&mut self) {
        if self.owned {
            // Ignored: a target that exited took its pages with it, and a
            // destructor has nobody to report to. `free` reports it.
            let _ = self.unmap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_between_threads() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<TargetProcess>();
        send_and_sync::<RemoteAllocation>();
    }

    #[test]
    fn reasons_read_as_sentences_and_map_to_io_kinds() {
        let error = Error::new(
            ErrorKind::TargetProcess(TargetProcessError::PtraceScope(1)),
            0,
            0,
            0,
        );
        assert!(
            error.to_string().contains("kernel.yama.ptrace_scope = 1"),
            "{error}"
        );
        assert_eq!(
            std::io::Error::from(error).kind(),
            std::io::ErrorKind::PermissionDenied
        );
        assert_eq!(
            TargetProcessError::NotRunning.io_error_kind(),
            std::io::ErrorKind::NotFound
        );
    }
}
