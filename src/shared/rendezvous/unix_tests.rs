//! The Unix rendezvous on real files, with no fault injected: found
//! again, taken over when stale or planted, refused when untrusted, shared
//! by instances that race. They need no fault injection, so they run on
//! every Unix system whose rendezvous is a file (not Android, which keeps
//! a private locator and has no `/tmp`), unlike `fault_tests`, which is
//! Linux only; `fault_tests` borrows [`TempBase`] and the race from here.
//!
//! Each test works in a fresh base directory under `/tmp` with a made-up
//! process id, never in the real `/tmp/.reloaded`.

#![allow(unsafe_code)]

use super::{Rendezvous, file_name, find_or_create_holding};
use crate::error::PrivateLocatorReason;
use crate::os::{self, OwnedMapping, Protection};
use crate::shared::layout::{LOCATOR_SIZE, LocatorRef};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

const PAGE: usize = 4096;

/// A private read/write page filled with a pattern: a live mapping of
/// this process that is not of any rendezvous file. Unmapped on drop.
struct Decoy(OwnedMapping);

impl Decoy {
    fn new(pattern: u8) -> Decoy {
        let mapping = os::map_anywhere(PAGE, Protection::ReadWrite).expect("a page can be mapped");
        // SAFETY: the mapping was just created for this value, is `PAGE`
        // bytes long and writable.
        unsafe { std::ptr::write_bytes(mapping.address() as *mut u8, pattern, PAGE) };
        Decoy(mapping)
    }

    fn address(&self) -> usize {
        self.0.address()
    }

    fn holds(&self, pattern: u8) -> bool {
        // SAFETY: the mapping lives as long as `self` and is readable.
        let bytes = unsafe { std::slice::from_raw_parts(self.address() as *const u8, PAGE) };
        bytes.iter().all(|&byte| byte == pattern)
    }
}

/// The address of a page that was mapped and is no longer: not a mapping
/// of any rendezvous file, whatever a parallel test maps there later.
fn unmapped_page() -> usize {
    Decoy::new(0).address()
}

/// A fresh base directory under `/tmp` and a made-up process id for one
/// rendezvous test; the directory tree is removed on drop.
pub(crate) struct TempBase {
    pub(crate) path: PathBuf,
    pub(crate) pid: u32,
}

impl TempBase {
    pub(crate) fn new() -> TempBase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // Relaxed: only distinct numbers are needed.
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let path = PathBuf::from(format!(
            "/tmp/memory-buffers-rendezvous-tests-{}-{serial}-{nanos}",
            std::process::id()
        ));
        // Above `i32::MAX`, so never a live process: stale-file cleanup
        // treats files of other fake ids in the same directory as dead.
        let pid = 3_000_000_000 + serial;
        TempBase { path, pid }
    }

    pub(crate) fn base(&self) -> &str {
        self.path.to_str().expect("the path is ASCII")
    }

    pub(crate) fn directory(&self) -> PathBuf {
        self.path.join(".reloaded").join("memory.buffers")
    }

    pub(crate) fn file(&self) -> PathBuf {
        self.directory().join(file_name(self.pid))
    }

    pub(crate) fn create_directories(&self) {
        std::fs::create_dir_all(self.directory()).expect("the directories can be created");
    }

    pub(crate) fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.directory())
            .map(|entries| {
                entries
                    .map(|entry| {
                        entry
                            .expect("readable entry")
                            .file_name()
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Mappings of any file below this base, where the system lists
    /// mappings with their paths (`/proc/self/maps`); `None` where it does
    /// not (macOS, a FreeBSD without linprocfs).
    pub(crate) fn mappings(&self) -> Option<usize> {
        let text = std::fs::read_to_string("/proc/self/maps").ok()?;
        Some(
            text.lines()
                .filter(|line| line.contains(self.base()))
                .count(),
        )
    }

    /// Checks that `expected` files below this base are mapped, where the
    /// system can tell (see [`mappings`](Self::mappings)).
    fn assert_mappings(&self, expected: usize, why: &str) {
        if let Some(count) = self.mappings() {
            assert_eq!(count, expected, "{why}");
        }
    }

    /// Finds or creates the locator, as a creator that dies at once as far
    /// as the liveness lock goes (the lock is dropped; the mapping stays),
    /// so that tests can turn the file stale by changing it.
    pub(crate) fn find_or_create(&self) -> Result<Rendezvous, PrivateLocatorReason> {
        find_or_create_holding(self.base(), self.pid).map(|(found, _lock)| found)
    }

    pub(crate) fn create(&self) -> LocatorRef {
        match self.find_or_create() {
            Ok(Rendezvous::Created(locator)) => locator,
            other => panic!("expected a new locator, got {other:?}"),
        }
    }

    /// The *this address* field as stored in the file.
    pub(crate) fn stored_address(&self) -> usize {
        let bytes = std::fs::read(self.file()).expect("the rendezvous file is readable");
        assert_eq!(bytes.len(), LOCATOR_SIZE);
        usize::from_le_bytes(
            bytes[..size_of::<usize>()]
                .try_into()
                .expect("pointer-sized"),
        )
    }
}

impl Drop for TempBase {
    fn drop(&mut self) {
        // Best effort: a leftover directory under /tmp is harmless.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs `find_or_create` on `threads` threads released together and
/// returns every outcome.
pub(crate) fn race_find_or_create(
    base: &TempBase,
    threads: usize,
) -> Vec<Result<Rendezvous, PrivateLocatorReason>> {
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    base.find_or_create()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("no panic"))
            .collect()
    })
}

pub(crate) fn locator_of(outcome: &Result<Rendezvous, PrivateLocatorReason>) -> LocatorRef {
    match outcome {
        Ok(Rendezvous::Found(locator) | Rendezvous::Created(locator)) => *locator,
        Err(reason) => panic!("no shared locator: {reason:?}"),
    }
}

#[test]
fn a_created_rendezvous_is_found_again_at_the_same_address() {
    let base = TempBase::new();
    let created = base.create();
    assert_eq!(created.address() % LOCATOR_SIZE, 0);
    assert_eq!(
        created.this_address().load(Ordering::Relaxed),
        created.address()
    );
    assert_eq!(created.item_count(), 0);
    assert_eq!(created.lock().load(Ordering::Relaxed), 0);
    assert_eq!(base.stored_address(), created.address());
    assert_eq!(
        base.entries(),
        vec![file_name(base.pid)],
        "no temporary is left"
    );
    base.assert_mappings(1, "one view of the file");
    for _ in 0..3 {
        assert_eq!(base.find_or_create(), Ok(Rendezvous::Found(created)));
    }
    base.assert_mappings(1, "the views used to read the file were unmapped");
}

#[test]
fn a_rendezvous_with_a_zeroed_address_is_taken_over() {
    let base = TempBase::new();
    let first = base.create();
    first.this_address().store(0, Ordering::Relaxed);
    let second = base.create();
    assert_ne!(second, first);
    assert_eq!(base.stored_address(), second.address());
    assert_eq!(base.find_or_create(), Ok(Rendezvous::Found(second)));
    assert_eq!(base.entries(), vec![file_name(base.pid)]);
}

#[test]
fn a_rendezvous_pointing_at_another_mapping_is_taken_over() {
    let base = TempBase::new();
    let first = base.create();
    // A live, page-aligned, writable mapping of this process, but not of
    // the rendezvous file: using it as a locator would corrupt it.
    let decoy = Decoy::new(0xee);
    first
        .this_address()
        .store(decoy.address(), Ordering::Relaxed);
    let second = base.create();
    assert_ne!(second.address(), decoy.address());
    assert!(decoy.holds(0xee), "the decoy was not written");
    assert_eq!(base.find_or_create(), Ok(Rendezvous::Found(second)));
}

/// A process in another PID namespace sharing `/tmp`
/// looks dead here (`kill` says `ESRCH`; the fake ids are above
/// `i32::MAX`), and cleanup used to delete its live file. A file whose
/// liveness lock is held is kept; one without it is judged as before.
#[test]
fn cleanup_keeps_files_whose_owner_holds_the_liveness_lock() {
    let base = TempBase::new();
    let elsewhere = base.pid + 1_000_000;
    let (found, lock) = find_or_create_holding(base.base(), elsewhere).expect("the other process");
    assert!(matches!(found, Rendezvous::Created(_)));
    let lock = lock.expect("the file system of /tmp takes the liveness lock");
    let gone = base.pid + 2_000_000;
    let (_, dead_lock) = find_or_create_holding(base.base(), gone).expect("a process that dies");
    drop(dead_lock);
    let legacy = base.directory().join(file_name(base.pid + 3_000_000));
    std::fs::write(&legacy, [0u8; LOCATOR_SIZE]).expect("a file without a lock");
    base.create();
    let entries = base.entries();
    assert!(
        entries.contains(&file_name(elsewhere)),
        "the locked file was removed: {entries:?}"
    );
    assert!(!entries.contains(&file_name(gone)), "{entries:?}");
    assert!(
        !legacy.exists(),
        "a file without a lock is judged by kill: {entries:?}"
    );
    drop(lock);
}

/// Two processes with one id in two PID namespaces that
/// share `/tmp`. The later one sees a file whose address is not its own
/// mapping (played here by pointing it at unmapped memory) but whose lock
/// is held: someone else's live file. It takes a private locator and leaves
/// the file alone instead of taking it over.
#[test]
fn a_live_file_of_another_process_with_the_same_id_is_left_alone() {
    let base = TempBase::new();
    let (found, lock) = find_or_create_holding(base.base(), base.pid).expect("the first process");
    let Rendezvous::Created(theirs) = found else {
        panic!("expected a new locator, got {found:?}");
    };
    let lock = lock.expect("the file system of /tmp takes the liveness lock");
    // As the second process sees it: not a mapping of its own.
    let unmapped = unmapped_page();
    theirs.this_address().store(unmapped, Ordering::Relaxed);
    assert_eq!(base.find_or_create(), Err(PrivateLocatorReason::FileInUse));
    assert_eq!(base.stored_address(), unmapped, "the file was kept");
    // Once the owner is gone, the file is stale and taken over.
    drop(lock);
    let ours = base.create();
    assert_eq!(base.stored_address(), ours.address());
}

#[test]
fn a_rendezvous_pointing_at_another_processes_locator_is_taken_over() {
    // Two rendezvous files, both live mappings in this process: the second
    // file naming the first file's locator must not be trusted, because the
    // address is not a mapping of the second file.
    let one = TempBase::new();
    let two = TempBase::new();
    let first = one.create();
    let second = two.create();
    second
        .this_address()
        .store(first.address(), Ordering::Relaxed);
    let replaced = two.create();
    assert_ne!(replaced, first);
    assert_ne!(replaced, second);
    assert_eq!(one.find_or_create(), Ok(Rendezvous::Found(first)));
    assert_eq!(two.find_or_create(), Ok(Rendezvous::Found(replaced)));
}

#[test]
fn an_empty_or_short_rendezvous_file_is_taken_over() {
    for length in [0, 24, LOCATOR_SIZE - 1] {
        let base = TempBase::new();
        base.create_directories();
        std::fs::write(base.file(), vec![0x41u8; length]).expect("the file can be written");
        let created = base.create();
        assert_eq!(base.stored_address(), created.address());
        base.assert_mappings(1, "only the new locator's view");
    }
}

#[test]
fn a_planted_symlink_is_replaced_without_touching_its_target() {
    let base = TempBase::new();
    base.create_directories();
    let victim = base.path.join("victim");
    std::fs::write(&victim, b"precious").expect("the victim can be written");
    std::os::unix::fs::symlink(&victim, base.file()).expect("the symlink can be planted");
    let created = base.create();
    assert_eq!(
        std::fs::read(&victim).expect("the victim is readable"),
        b"precious"
    );
    let metadata = std::fs::symlink_metadata(base.file()).expect("the rendezvous exists");
    assert!(
        metadata.file_type().is_file(),
        "the symlink was replaced by a regular file"
    );
    assert_eq!(base.stored_address(), created.address());
}

#[test]
fn a_world_writable_rendezvous_directory_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let base = TempBase::new();
    base.create_directories();
    std::fs::set_permissions(base.directory(), std::fs::Permissions::from_mode(0o777))
        .expect("the mode can be changed");
    assert_eq!(
        base.find_or_create(),
        Err(PrivateLocatorReason::DirectoryNotTrusted)
    );
    assert_eq!(base.entries(), Vec::<String>::new());
    // With the sticky bit others can no longer remove our file: trusted.
    std::fs::set_permissions(base.directory(), std::fs::Permissions::from_mode(0o1777))
        .expect("the mode can be changed");
    base.create();
}

/// Taking over a stale file replaces it with `rename()`, which is not
/// conditional: without turns (a `flock` on the directory), two instances
/// that both judged the file stale would each publish their own locator and
/// the process would end up with two registries.
#[test]
fn instances_taking_over_a_stale_file_together_share_one_locator() {
    for _ in 0..20 {
        let base = TempBase::new();
        base.create().this_address().store(0, Ordering::Relaxed);
        let outcomes = race_find_or_create(&base, 4);
        let first = locator_of(&outcomes[0]);
        assert!(
            outcomes.iter().all(|outcome| locator_of(outcome) == first),
            "instances ended up with different locators: {outcomes:?}"
        );
    }
}
