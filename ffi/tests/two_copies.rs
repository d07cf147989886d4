//! Two copies of the shared library, under two file names, loaded into one
//! process with `dlopen` (`LoadLibrary` on Windows), share one locator and therefore one set of
//! buffers. The test binary itself links the Rust library as well, a third
//! instance that must agree with both.
//!
//! This file holds a single test on purpose: no other test of this binary
//! may take buffers while it reasons about which buffer goes to whom.

#![cfg(any(target_os = "linux", windows))]

mod common;
#[path = "../../tests/support/skip.rs"]
mod skip;

use libloading::Library;
use memory_buffers::{BufferSearchSettings, Buffers, ErrorKind, LocatorKind, PrivateLocatorReason};
use memory_buffers_c::{
    MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_NONE, MEMORY_BUFFERS_STATUS_INVALID_HANDLE,
    MEMORY_BUFFERS_STATUS_NO_SPACE_IN_RANGE, MEMORY_BUFFERS_STATUS_OK, MemoryBuffersLocatorKind,
    MemoryBuffersLockedBuffer, MemoryBuffersSearchSettings, MemoryBuffersStatus, size_t,
};
use std::path::{Path, PathBuf};
use std::ptr::null_mut;

type Handle = *mut MemoryBuffersLockedBuffer;

/// The functions of one loaded copy, as plain function pointers.
struct LoadedCopy {
    name: &'static str,
    locator_kind: unsafe extern "C" fn(*mut MemoryBuffersLocatorKind) -> MemoryBuffersStatus,
    locator_address: unsafe extern "C" fn(*mut usize) -> MemoryBuffersStatus,
    search_settings_from_proximity: unsafe extern "C" fn(
        size_t,
        usize,
        size_t,
        *mut MemoryBuffersSearchSettings,
    ) -> MemoryBuffersStatus,
    get_buffer: unsafe extern "C" fn(
        *const MemoryBuffersSearchSettings,
        *mut Handle,
    ) -> MemoryBuffersStatus,
    base_address:
        unsafe extern "C" fn(*const MemoryBuffersLockedBuffer, *mut usize) -> MemoryBuffersStatus,
    size:
        unsafe extern "C" fn(*const MemoryBuffersLockedBuffer, *mut size_t) -> MemoryBuffersStatus,
    position:
        unsafe extern "C" fn(*const MemoryBuffersLockedBuffer, *mut size_t) -> MemoryBuffersStatus,
    append_bytes:
        unsafe extern "C" fn(Handle, *const u8, size_t, *mut usize) -> MemoryBuffersStatus,
    release_buffer: unsafe extern "C" fn(*mut Handle) -> MemoryBuffersStatus,
}

/// Looks up `name` in `library` as a function pointer of type `F`.
///
/// # Safety
///
/// `F` must be the exact type of the exported function.
unsafe fn function<F: Copy>(library: &Library, name: &str) -> F {
    // SAFETY: the caller guarantees the type; the symbol is copied out as a
    // plain function pointer, valid while the library stays loaded, which
    // is forever (see `LoadedCopy::load`).
    unsafe {
        *library
            .get::<F>(name.as_bytes())
            .unwrap_or_else(|error| panic!("{name}: {error}"))
    }
}

impl LoadedCopy {
    fn load(path: &Path, name: &'static str) -> LoadedCopy {
        // SAFETY: the file is a copy of this crate's cdylib, whose
        // initialisers only set up Rust's runtime.
        let library = unsafe { Library::new(path) }
            .unwrap_or_else(|error| panic!("dlopen {path:?}: {error}"));
        // Never unloaded: function pointers copied out below, and buffers
        // owned by its handles, stay valid for the rest of the process.
        let library: &'static Library = Box::leak(Box::new(library));
        // SAFETY: each type is the signature of the function of that name in
        // `memory_buffers_c`, written out again here.
        unsafe {
            LoadedCopy {
                name,
                locator_kind: function(library, "memory_buffers_locator_kind"),
                locator_address: function(library, "memory_buffers_locator_address"),
                search_settings_from_proximity: function(
                    library,
                    "memory_buffers_search_settings_from_proximity",
                ),
                get_buffer: function(library, "memory_buffers_get_buffer"),
                base_address: function(library, "memory_buffers_buffer_base_address"),
                size: function(library, "memory_buffers_buffer_size"),
                position: function(library, "memory_buffers_buffer_position"),
                append_bytes: function(library, "memory_buffers_buffer_append_bytes"),
                release_buffer: function(library, "memory_buffers_release_buffer"),
            }
        }
    }

    fn expect_ok(&self, status: MemoryBuffersStatus, what: &str) {
        assert_eq!(
            status, MEMORY_BUFFERS_STATUS_OK,
            "copy {}: {what}",
            self.name
        );
    }

    fn locator(&self) -> (MemoryBuffersLocatorKind, usize) {
        let mut kind = MemoryBuffersLocatorKind {
            shared: false,
            private_reason: memory_buffers_c::MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_OTHER,
            os_error: -1,
        };
        let mut address = 0;
        // SAFETY: both outputs are live locals.
        unsafe {
            self.expect_ok((self.locator_kind)(&mut kind), "locator_kind");
            self.expect_ok((self.locator_address)(&mut address), "locator_address");
        }
        (kind, address)
    }

    fn near(&self, target: usize, size: usize) -> MemoryBuffersSearchSettings {
        let mut settings = MemoryBuffersSearchSettings {
            min_address: 0,
            max_address: 0,
            size: 0,
            target: 0,
        };
        // SAFETY: the output is a live local.
        let status = unsafe {
            (self.search_settings_from_proximity)(0x7fff_0000, target, size, &mut settings)
        };
        self.expect_ok(status, "search_settings_from_proximity");
        settings
    }

    fn try_get(
        &self,
        settings: &MemoryBuffersSearchSettings,
    ) -> Result<Handle, MemoryBuffersStatus> {
        let mut handle = null_mut();
        // SAFETY: both arguments are live locals.
        match unsafe { (self.get_buffer)(settings, &mut handle) } {
            MEMORY_BUFFERS_STATUS_OK => Ok(handle),
            status => {
                assert!(
                    handle.is_null(),
                    "copy {}: failed get left a handle",
                    self.name
                );
                Err(status)
            }
        }
    }

    fn get(&self, settings: &MemoryBuffersSearchSettings) -> Handle {
        self.try_get(settings).unwrap_or_else(|status| {
            panic!("copy {}: get_buffer failed with {status:?}", self.name)
        })
    }

    /// Base address, size and position of a buffer.
    fn state(&self, handle: Handle) -> (usize, usize, usize) {
        let (mut base, mut size, mut position) = (0, 0, 0);
        // SAFETY: the outputs are live locals; the handle is only looked up.
        unsafe {
            self.expect_ok((self.base_address)(handle, &mut base), "base_address");
            self.expect_ok((self.size)(handle, &mut size), "size");
            self.expect_ok((self.position)(handle, &mut position), "position");
        }
        (base, size, position)
    }

    fn append(&self, handle: Handle, bytes: &[u8]) -> usize {
        let mut address = 0;
        // SAFETY: `bytes` is a live slice of the given length; the output is
        // a live local.
        let status =
            unsafe { (self.append_bytes)(handle, bytes.as_ptr(), bytes.len(), &mut address) };
        self.expect_ok(status, "append_bytes");
        address
    }

    fn release(&self, mut handle: Handle) {
        // SAFETY: `handle` is a live local variable.
        self.expect_ok(
            unsafe { (self.release_buffer)(&mut handle) },
            "release_buffer",
        );
        assert!(handle.is_null());
    }
}

/// Reads `len` bytes at `address`, which lies in a permanent buffer.
fn bytes_at(address: usize, len: usize) -> Vec<u8> {
    // SAFETY: the callers pass ranges that were appended to shared buffers,
    // which stay mapped and readable for the life of the process.
    unsafe { std::slice::from_raw_parts(address as *const u8, len) }.to_vec()
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the built library to `into` as `stem` with this system's prefix
/// and suffix (`libstem.so`, `stem.dll`).
fn copy_library(into: &Path, stem: &str) -> PathBuf {
    let file_name = format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let target = into.join(file_name);
    std::fs::copy(common::built_shared_library(), &target).expect("the library can be copied");
    target
}

/// Whether this process got the shared locator. Where an earlier run (of
/// another user, or of an older version) left directories this user cannot
/// use, the library rightly falls back to a private locator; the test then
/// says so (`skip`) and is skipped rather than failed. Any other private
/// reason fails.
fn shared_or_skipped() -> bool {
    match Buffers::locator_kind().unwrap() {
        LocatorKind::Shared => true,
        LocatorKind::Private(
            reason @ (PrivateLocatorReason::DirectoryNotTrusted
            | PrivateLocatorReason::DirectoryUnavailable { .. }
            | PrivateLocatorReason::FileUnavailable {
                errno: libc::EACCES | libc::EPERM | libc::EROFS,
            }),
        ) => {
            skip::skip(&format!(
                "/tmp/.reloaded/memory.buffers is not usable by this user ({reason:?}), so \
                 the locator is private; remove the directory or run as its owner"
            ));
            false
        }
        other => panic!("unexpected locator kind {other:?}"),
    }
}

fn placement_target() {}

#[test]
fn two_loaded_copies_share_the_locator_and_its_buffers() {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "memory-buffers-c-two-copies-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir.0).expect("the temporary directory can be created");
    let a = LoadedCopy::load(&copy_library(&dir.0, "memory_buffers_copy_a"), "A");
    let b = LoadedCopy::load(&copy_library(&dir.0, "memory_buffers_copy_b"), "B");

    // Two instances, not one library loaded twice under two names.
    assert_ne!(a.get_buffer as usize, b.get_buffer as usize);

    // The second copy (and the Rust library linked into this test) find the
    // locator the first created.
    let (kind_a, locator_a) = a.locator();
    let (kind_b, locator_b) = b.locator();
    if !shared_or_skipped() {
        return;
    }
    let shared = MemoryBuffersLocatorKind {
        shared: true,
        private_reason: MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_NONE,
        os_error: 0,
    };
    assert_eq!(kind_a, shared);
    assert_eq!(kind_b, shared);
    assert_ne!(locator_a, 0);
    assert_eq!(locator_a, locator_b);
    assert_eq!(Buffers::locator_kind().unwrap(), LocatorKind::Shared);
    assert_eq!(Buffers::locator_address().unwrap(), locator_a);

    // A buffer held through A is not handed out through B (or the Rust
    // library): the same request gets another buffer, and a request only
    // A's buffer could satisfy finds no space.
    let settings = a.near(placement_target as *const () as usize, 64);
    let held_by_a = a.get(&settings);
    let (base, size, start) = a.state(held_by_a);
    let held_by_b = b.get(&settings);
    assert_ne!(b.state(held_by_b).0, base);
    let only_a = MemoryBuffersSearchSettings {
        min_address: base,
        max_address: base + size - 1,
        size: 16,
        target: 0,
    };
    assert_eq!(
        b.try_get(&only_a),
        Err(MEMORY_BUFFERS_STATUS_NO_SPACE_IN_RANGE)
    );
    let rust_error = Buffers::get_buffer(&BufferSearchSettings::new(
        only_a.min_address,
        only_a.max_address,
        only_a.size,
    ))
    .unwrap_err();
    assert_eq!(rust_error.kind(), ErrorKind::NoSpaceInRange);

    // Handles belong to the copy that made them.
    let mut foreign = held_by_a;
    // SAFETY: `foreign` is a live local variable; B only looks the value up.
    let status = unsafe { (b.release_buffer)(&mut foreign) };
    assert_eq!(status, MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    assert_eq!(foreign, held_by_a);
    b.release(held_by_b);

    // Bytes appended through A are kept when B gets the buffer next: B
    // continues after them and never overwrites them.
    let from_a: Vec<u8> = (1..=32).collect();
    let at_a = a.append(held_by_a, &from_a);
    assert_eq!(at_a, base + start);
    a.release(held_by_a);

    let held_by_b = b.get(&only_a);
    let (base_b, _, position_b) = b.state(held_by_b);
    assert_eq!(base_b, base);
    assert_eq!(position_b, start + from_a.len());
    let from_b = [0xee_u8; 24];
    let at_b = b.append(held_by_b, &from_b);
    assert_eq!(at_b, at_a + from_a.len());
    assert_eq!(bytes_at(at_a, from_a.len()), from_a);
    assert_eq!(bytes_at(at_b, from_b.len()), from_b);
    b.release(held_by_b);

    // Back through A and through the Rust library: both see both appends.
    let again = a.get(&only_a);
    assert_eq!(a.state(again), (base, size, position_b + from_b.len()));
    a.release(again);
    let rust_settings =
        BufferSearchSettings::new(only_a.min_address, only_a.max_address, only_a.size);
    let mut in_rust = Buffers::get_buffer(&rust_settings).unwrap();
    assert_eq!(in_rust.position(), position_b + from_b.len());
    let at_rust = in_rust.append_bytes(b"rust").unwrap();
    assert_eq!(at_rust, at_b + from_b.len());
    drop(in_rust);
    assert_eq!(bytes_at(at_a, from_a.len()), from_a);
    assert_eq!(bytes_at(at_b, from_b.len()), from_b);
}
