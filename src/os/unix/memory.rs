//! Mappings of this process: mapping and unmapping anonymous memory,
//! changing and reading back protections, and making written code visible
//! to instruction fetch. Everything here works on address ranges, which is
//! why it is apart from the file-system calls the rendezvous needs.

#[cfg(not(linux_like))]
use super::zero_or_errno;
use super::{Errno, last_errno};
use crate::os::fault::{self, FaultPoint};
#[cfg(any(linux_like, target_os = "freebsd"))]
use crate::os::{ForkMarker, process_id};
use crate::os::{OwnedMapping, Protection};
use crate::space::maps::Access;

pub(crate) fn query_granularity() -> usize {
    // SAFETY: `sysconf` has no preconditions; it returns -1 on error.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    match usize::try_from(size) {
        Ok(size) if size.is_power_of_two() => size,
        _ => 4096,
    }
}

/// The `PROT_*` bits of `protection`.
pub(in crate::os) fn protection_bits(protection: Protection) -> libc::c_int {
    match protection {
        Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        Protection::ReadExecute => libc::PROT_READ | libc::PROT_EXEC,
        Protection::ReadWriteExecute => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
    }
}

/// A mapping's protection exactly as the system states it (`PROT_*` bits),
/// so that it can be put back as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageProtection(libc::c_int);

impl PageProtection {
    /// The same rights plus write.
    pub(crate) fn with_write(self) -> PageProtection {
        PageProtection(self.0 | libc::PROT_WRITE)
    }
}

/// The unit in which protections change: the page.
pub(crate) fn page_size() -> usize {
    crate::os::allocation_granularity()
}

/// The name of the call that changes protections, for error messages.
pub(crate) const PROTECT_CALL: &str = "mprotect";

impl PageProtection {
    /// The `PROT_*` bits of the rights a list of mappings shows; the
    /// facade's `visit_protections` reads them from the backend's list,
    /// since no Unix has a system call that reports a page's protection.
    pub(in crate::os) fn of_access(access: Access) -> PageProtection {
        PageProtection(
            if access.read { libc::PROT_READ } else { 0 }
                | if access.write { libc::PROT_WRITE } else { 0 }
                | if access.execute { libc::PROT_EXEC } else { 0 },
        )
    }
}

/// Sets the protection of the pages of `[address, address + len)`.
/// `address` must be page-aligned.
pub(crate) fn set_page_protection(
    address: usize,
    len: usize,
    protection: PageProtection,
) -> Result<(), Errno> {
    fault::check(FaultPoint::Protect)?;
    // SAFETY: `mprotect` changes only access rights; the callers pass pages
    // they are about to write (made writable) or restore to the exact
    // rights read from the map, or pages of an allocation they own.
    let result = unsafe { libc::mprotect(address as *mut libc::c_void, len, protection.0) };
    if result == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Sets the protection of pages this library mapped.
pub(crate) fn protect(address: usize, len: usize, protection: Protection) -> Result<(), Errno> {
    set_page_protection(address, len, PageProtection(protection_bits(protection)))
}

/// Whether an `errno` from `mmap` means the execute right was refused by
/// policy (SELinux `execmem`, PaX `MPROTECT`, a hardened runtime without
/// the JIT entitlement), not that memory ran out.
pub(crate) fn is_execute_refusal(errno: Errno) -> bool {
    errno == libc::EACCES || errno == libc::EPERM
}

/// Unmaps `[address, address + len)`.
///
/// # Safety
///
/// The range was mapped by this library, and nothing uses it any more.
pub(crate) unsafe fn unmap(address: usize, len: usize) {
    // SAFETY: the caller's contract. `munmap` of a range we mapped fails
    // only for invalid arguments, which these are not; it runs from a
    // destructor, which must not panic, so the result is ignored.
    unsafe { libc::munmap(address as *mut libc::c_void, len) };
}

/// `mmap` of `len` bytes of private anonymous memory with `protection`,
/// `hint` as the address (0 for none) and `flags` added to
/// `MAP_PRIVATE | MAP_ANONYMOUS`. Returns the address the kernel chose.
///
/// # Safety
///
/// `flags` must not contain `MAP_FIXED` without a flag that forbids
/// replacing existing mappings (`MAP_FIXED_NOREPLACE`, `MAP_EXCL`).
pub(in crate::os) unsafe fn map_anonymous(
    hint: usize,
    len: usize,
    protection: Protection,
    flags: libc::c_int,
) -> Result<usize, Errno> {
    fault::check(FaultPoint::MapMemory)?;
    // SAFETY: without a replacing `MAP_FIXED` (the caller's contract) the
    // kernel only ever uses free address space; existing mappings are
    // untouched.
    let result = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            len,
            protection_bits(protection),
            libc::MAP_PRIVATE | libc::MAP_ANON | flags,
            -1,
            0,
        )
    };
    if result == libc::MAP_FAILED {
        Err(last_errno())
    } else {
        Ok(result as usize)
    }
}

/// Maps `len` bytes of private anonymous memory wherever the kernel likes
/// (macOS has its own, for `MAP_JIT`).
#[cfg(any(linux_like, target_os = "freebsd"))]
pub(crate) fn map_anywhere(len: usize, protection: Protection) -> Result<OwnedMapping, Errno> {
    // SAFETY: no hint and no `MAP_FIXED`: the kernel chooses a free range.
    let address = unsafe { map_anonymous(0, len, protection, 0)? };
    Ok(OwnedMapping::new(address, len, unmap))
}

/// Runs `write` while `[address, address + len)` is writable. Linux and
/// FreeBSD do not enforce W^X on the read/write/execute buffers this
/// library maps, so this only calls `write` (macOS on Apple Silicon has
/// its own).
#[cfg(any(linux_like, target_os = "freebsd"))]
pub(crate) fn with_code_writable<R>(_address: usize, _len: usize, write: impl FnOnce() -> R) -> R {
    write()
}

/// A [`ForkMarker`] in a fresh private page that
/// `zero_in_child` (given the page's address and length) arranges for a
/// forked child to inherit zeroed, so checking it is a load or two. Where
/// that fails or no page can be had, the marker is on the heap and records
/// the process id, which is then compared.
#[cfg(any(linux_like, target_os = "freebsd"))]
pub(in crate::os) fn fork_marker_in_wiped_page(
    zero_in_child: impl FnOnce(usize, usize) -> bool,
) -> &'static ForkMarker {
    let granularity = crate::os::allocation_granularity();
    if std::mem::size_of::<ForkMarker>() <= granularity {
        // SAFETY: no hint and no `MAP_FIXED`: the kernel chooses a free range.
        if let Ok(address) = unsafe { map_anonymous(0, granularity, Protection::ReadWrite, 0) } {
            let page = OwnedMapping::new(address, granularity, unmap);
            if zero_in_child(address, granularity) {
                let page = page.leak();
                // SAFETY: the page is mapped read/write for the rest of the
                // process, page-aligned (so aligned for the marker), larger
                // than the marker, and all zero: a valid marker of generation
                // 0 and process id 0 ("wiped in a child"), which is what a
                // forked child sees again.
                return unsafe { &*(page as *const ForkMarker) };
            }
        }
    }
    Box::leak(Box::new(ForkMarker::unwiped(process_id())))
}

/// Makes freshly written code in `[address, address + len)` visible to
/// instruction fetch.
///
/// - x86 and x86-64: nothing to do; their instruction caches are coherent
///   with data writes (the CPU snoops stores into fetched lines).
/// - AArch64 (but Apple's): the Arm sequence, with the line sizes read from
///   `CTR_EL0`: `DC CVAU` (clean each data-cache line to the point of
///   unification, so that instruction fetch can see the bytes), `DSB ISH`,
///   `IC IVAU` (invalidate each instruction-cache line, on every core of
///   the inner shareable domain), `DSB ISH`, `ISB` (drop instructions this
///   core already fetched). `CTR_EL0.IDC` and `.DIC` say when a CPU needs
///   no cleaning or no invalidation. Without this, a core may run the
///   stale bytes that its instruction cache still holds for the address.
/// - Apple AArch64: `sys_icache_invalidate`, which Apple documents for code
///   written to `MAP_JIT` memory.
/// - Other architectures: the compiler runtime's `__clear_cache`.
///
/// The caller guarantees that the whole range is mapped: cache
/// maintenance of an unmapped address faults on AArch64.
pub(crate) fn flush_instruction_cache(address: usize, len: usize) {
    if len == 0 {
        return;
    }
    let lines = maintain_caches(address, len);
    fault::record_flush(address, len, lines);
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
fn maintain_caches(_address: usize, _len: usize) -> usize {
    0
}

/// The Arm sequence (see [`flush_instruction_cache`]), inline assembly
/// for one architecture in a file of its own.
#[cfg(all(target_arch = "aarch64", not(target_vendor = "apple")))]
#[path = "icache/aarch64.rs"]
mod icache;
#[cfg(all(target_arch = "aarch64", not(target_vendor = "apple")))]
use icache::maintain_caches;

#[cfg(all(target_arch = "aarch64", target_vendor = "apple"))]
fn maintain_caches(address: usize, len: usize) -> usize {
    unsafe extern "C" {
        /// `<libkern/OSCacheControl.h>`.
        fn sys_icache_invalidate(start: *mut libc::c_void, len: libc::size_t);
    }
    // SAFETY: cache maintenance over a range the caller guarantees mapped;
    // the bytes are neither read nor written.
    unsafe { sys_icache_invalidate(address as *mut libc::c_void, len) };
    len.div_ceil(64)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
fn maintain_caches(address: usize, len: usize) -> usize {
    unsafe extern "C" {
        fn __clear_cache(start: *mut libc::c_char, end: *mut libc::c_char);
    }
    // SAFETY: `__clear_cache` only performs cache maintenance over the
    // range; it does not read or write the bytes.
    unsafe {
        __clear_cache(
            address as *mut libc::c_char,
            address.saturating_add(len) as *mut libc::c_char,
        )
    };
    len.div_ceil(64)
}

/// Whether every page of `[address, address + len)` is mapped, asked with
/// `msync(MS_ASYNC)`, which does nothing to the pages but fails with
/// `ENOMEM` when part of the range is unmapped. Needs no `/proc` and no
/// buffer, whatever the length. `address` must be page-aligned.
pub(crate) fn is_mapped(address: usize, len: usize) -> Result<bool, Errno> {
    // SAFETY: `MS_ASYNC` without `MS_INVALIDATE` only checks the range
    // (and schedules nothing on modern kernels); no memory is touched.
    let result = unsafe { libc::msync(address as *mut libc::c_void, len, libc::MS_ASYNC) };
    if result == 0 {
        return Ok(true);
    }
    match last_errno() {
        libc::ENOMEM => Ok(false),
        errno => Err(errno),
    }
}

/// Keeps `mapping` out of children made by `fork` (`minherit` with
/// `INHERIT_NONE`): in a child the address is simply unmapped. Used for
/// the shared locator this process publishes, so that no child can ever
/// take its parent's locator for its own.
#[cfg(not(linux_like))]
pub(crate) fn exclude_from_fork(mapping: &OwnedMapping) -> Result<(), Errno> {
    /// `INHERIT_NONE` (FreeBSD) and `VM_INHERIT_NONE` (macOS) are both 2.
    const INHERIT_NONE: libc::c_int = 2;
    // SAFETY: changes only what a future child inherits of a mapping we
    // own, not this process's memory.
    zero_or_errno(unsafe {
        libc::minherit(
            mapping.address() as *mut libc::c_void,
            mapping.len(),
            INHERIT_NONE,
        )
    })
}
