//! Child-process tests of the rendezvous: each scenario runs in a fresh
//! process (so the locator is created anew) with its own private `/tmp`
//! (a tmpfs in a new mount namespace), prepares what it is about (a stale
//! file, a symlink, another user's file...), then asks for a buffer.
//!
//! This is a `harness = false` test: run without arguments it spawns itself
//! once per scenario and reports; with `MEMORY_BUFFERS_SCENARIO` set it is
//! the child. Mount namespaces and `chown` need root (CI runs as root);
//! without root the scenarios are reported as skipped, by name.

use memory_buffers::{BufferSearchSettings, Buffers, ErrorKind, LocatorKind, PrivateLocatorReason};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::PathBuf;
use std::process::Command;

const NOBODY: u32 = 65534;
const DIRECTORY: &str = "/tmp/.reloaded/memory.buffers";

use crate::support::{Outcome, Scenario, check};

fn own_file() -> PathBuf {
    PathBuf::from(format!(
        "{DIRECTORY}/Reloaded.Memory.Buffers.MemoryBuffer, PID {}",
        std::process::id()
    ))
}

fn file_for(pid: u32) -> PathBuf {
    PathBuf::from(format!(
        "{DIRECTORY}/Reloaded.Memory.Buffers.MemoryBuffer, PID {pid}"
    ))
}

/// Bytes in a pointer of the locator header: 8 on 64-bit, 4 on 32-bit
/// (FORMAT.md gives both layouts).
const POINTER: usize = std::mem::size_of::<usize>();

fn locator_file_with_this_address(this_address: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; 4096];
    bytes[..POINTER].copy_from_slice(&this_address.to_le_bytes());
    bytes
}

fn this_address_in_file() -> Result<usize, String> {
    let bytes = fs::read(own_file()).map_err(|error| format!("read rendezvous file: {error}"))?;
    check!(
        bytes.len() == 4096,
        "rendezvous file is {} bytes",
        bytes.len()
    );
    Ok(usize::from_le_bytes(bytes[..POINTER].try_into().unwrap()))
}

fn call(name: &str, result: libc::c_int) -> Outcome {
    if result == 0 {
        Ok(())
    } else {
        Err(format!("{name}: {}", std::io::Error::last_os_error()))
    }
}

fn mount_tmpfs(path: &str, flags: libc::c_ulong) -> Outcome {
    mount_tmpfs_with(path, flags, None)
}

/// Mounts a tmpfs at `path` with the mount options `options` (`size=4k`...).
fn mount_tmpfs_with(path: &str, flags: libc::c_ulong, options: Option<&str>) -> Outcome {
    let (source, target, kind) = (
        CString::new("tmpfs").unwrap(),
        CString::new(path).unwrap(),
        CString::new("tmpfs").unwrap(),
    );
    let options = options.map(|options| CString::new(options).unwrap());
    // SAFETY: valid NUL-terminated strings; the data argument is a
    // NUL-terminated option string or null.
    call("mount tmpfs", unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            kind.as_ptr(),
            flags,
            options
                .as_ref()
                .map_or(std::ptr::null(), |options| options.as_ptr().cast()),
        )
    })
}

/// Gives this process a private, empty `/tmp`.
fn isolate_tmp() -> Outcome {
    // SAFETY: unshare has no memory-safety preconditions.
    call("unshare(CLONE_NEWNS)", unsafe {
        libc::unshare(libc::CLONE_NEWNS)
    })?;
    let root = CString::new("/").unwrap();
    // SAFETY: valid string; makes mounts below `/` private to this namespace
    // so nothing leaks to the host.
    call("make / private", unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })?;
    mount_tmpfs("/tmp", 0)
}

fn chown(path: &std::path::Path, user: u32) -> Outcome {
    let path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path; lchown does not follow symlinks.
    call("lchown", unsafe { libc::lchown(path.as_ptr(), user, user) })
}

/// Gets a buffer, appends to it and checks the bytes.
fn buffer_works() -> Outcome {
    let mut buffer = Buffers::get_buffer(&BufferSearchSettings::default())
        .map_err(|error| format!("get_buffer: {error}"))?;
    let address = buffer
        .append_bytes(b"works")
        .map_err(|error| format!("append: {error}"))?;
    // SAFETY: the bytes were just appended to a buffer that is never unmapped.
    let written = unsafe { std::slice::from_raw_parts(address as *const u8, 5) };
    check!(written == b"works", "appended bytes differ");
    Ok(())
}

fn expect_shared_and_published() -> Outcome {
    buffer_works()?;
    let kind = Buffers::locator_kind().map_err(|error| error.to_string())?;
    check!(
        kind == LocatorKind::Shared,
        "expected a shared locator, got {kind:?}"
    );
    let locator = Buffers::locator_address().map_err(|error| error.to_string())?;
    let published = this_address_in_file()?;
    check!(
        published == locator,
        "file names {published:#x}, locator is {locator:#x}"
    );
    let metadata = fs::symlink_metadata(own_file()).map_err(|error| error.to_string())?;
    check!(
        metadata.file_type().is_file(),
        "rendezvous entry is not a regular file"
    );
    check!(
        metadata.permissions().mode() & 0o777 == 0o600,
        "mode {:o}",
        metadata.permissions().mode()
    );
    Ok(())
}

fn expect_private(matches: impl Fn(PrivateLocatorReason) -> bool) -> Outcome {
    buffer_works()?;
    match Buffers::locator_kind().map_err(|error| error.to_string())? {
        LocatorKind::Private(reason) if matches(reason) => Ok(()),
        other => Err(format!("unexpected locator kind {other:?}")),
    }
}

fn stale_file(this_address: usize) -> Outcome {
    fs::create_dir_all(DIRECTORY).map_err(|error| error.to_string())?;
    fs::write(own_file(), locator_file_with_this_address(this_address))
        .map_err(|error| error.to_string())?;
    expect_shared_and_published()?;
    check!(
        Buffers::locator_address().unwrap() != this_address,
        "the stale address was trusted"
    );
    Ok(())
}

fn fresh() -> Outcome {
    expect_shared_and_published()?;
    let bytes = fs::read(own_file()).unwrap();
    let header = &bytes[POINTER..];
    check!(
        header[..POINTER].iter().all(|&byte| byte == 0),
        "next locator is set"
    );
    let header = &header[POINTER..];
    check!(header[..4] == [0; 4], "header lock is held");
    check!(header[4] & 7 == 0, "version is not 0");
    check!(header[5] >= 1, "no item counted after a get_buffer");
    let metadata = fs::metadata(own_file()).unwrap();
    // SAFETY: geteuid cannot fail.
    check!(
        metadata.uid() == unsafe { libc::geteuid() },
        "file not owned by us"
    );
    Ok(())
}

/// A fresh private read/write page at a kernel-chosen address, owned by
/// the caller (who unmaps it, or leaves it for the process).
fn fresh_page() -> Result<*mut libc::c_void, String> {
    // SAFETY: no address and no `MAP_FIXED`: the kernel picks free pages,
    // so nothing mapped is affected.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    check!(page != libc::MAP_FAILED, "mmap of a fresh page failed");
    Ok(page)
}

fn stale_unrelated_memory() -> Outcome {
    let page = fresh_page()?;
    // SAFETY: the page is 4096 writable bytes owned by this function.
    unsafe { page.cast::<u8>().write_bytes(0x5a, 4096) };
    stale_file(page as usize)?;
    // SAFETY: as above; reading it back.
    let bytes = unsafe { std::slice::from_raw_parts(page.cast::<u8>(), 4096) };
    check!(
        bytes.iter().all(|&byte| byte == 0x5a),
        "unrelated memory was written"
    );
    Ok(())
}

fn empty_file() -> Outcome {
    fs::create_dir_all(DIRECTORY).unwrap();
    fs::File::create(own_file()).unwrap();
    expect_shared_and_published()
}

fn symlink_in_place_of_the_file() -> Outcome {
    fs::create_dir_all(DIRECTORY).unwrap();
    fs::write("/tmp/victim", b"victim").unwrap();
    symlink("/tmp/victim", own_file()).unwrap();
    expect_shared_and_published()?;
    check!(
        fs::read("/tmp/victim").unwrap() == b"victim",
        "the symlink target was modified"
    );
    Ok(())
}

/// An address nothing is mapped at in these test processes: high in a
/// 64-bit space, below the executable and libraries in a 32-bit one.
const UNMAPPED_ADDRESS: usize = if usize::BITS == 64 {
    0x1000_0000_0000_u64 as usize
} else {
    0x0f00_0000
};

fn file_of_another_user() -> Outcome {
    fs::create_dir_all(DIRECTORY).unwrap();
    let planted = locator_file_with_this_address(UNMAPPED_ADDRESS + 0x4141_0000);
    fs::write(own_file(), &planted).unwrap();
    chown(&own_file(), NOBODY)?;
    expect_private(|reason| reason == PrivateLocatorReason::FileNotTrusted)?;
    check!(
        fs::read(own_file()).unwrap() == planted,
        "another user's file was modified"
    );
    Ok(())
}

fn directory_not_writable() -> Outcome {
    fs::create_dir_all(DIRECTORY).unwrap();
    mount_tmpfs(DIRECTORY, libc::MS_RDONLY)?;
    expect_private(
        |reason| matches!(reason, PrivateLocatorReason::FileUnavailable { errno } | PrivateLocatorReason::DirectoryUnavailable { errno } if errno == libc::EROFS),
    )
}

/// The rendezvous directory is a tmpfs of one page, and
/// that page is used. The file's blocks must be refused with `ENOSPC` before
/// anything is written through its mapping (which would be `SIGBUS`).
fn full_file_system() -> Outcome {
    fs::create_dir_all(DIRECTORY).unwrap();
    mount_tmpfs_with(DIRECTORY, 0, Some("size=4k"))?;
    let mut filler = Vec::new();
    filler.resize(4096, 0x5a);
    fs::write(format!("{DIRECTORY}/filler"), &filler)
        .map_err(|error| format!("filling the tmpfs: {error}"))?;
    check!(
        fs::write(format!("{DIRECTORY}/more"), b"x").is_err(),
        "the tmpfs is not full"
    );
    let _ = fs::remove_file(format!("{DIRECTORY}/more"));
    expect_private(|reason| {
        reason
            == PrivateLocatorReason::FileUnavailable {
                errno: libc::ENOSPC,
            }
    })?;
    let names: Vec<_> = fs::read_dir(DIRECTORY)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    check!(
        names == ["filler"],
        "files left in the full directory: {names:?}"
    );
    Ok(())
}

/// The process's virtual size, from `/proc/self/status`.
fn virtual_size() -> Result<u64, String> {
    let status = fs::read_to_string("/proc/self/status").map_err(|error| error.to_string())?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmSize:"))
        .ok_or("no VmSize line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|number| number.parse().ok())
        .ok_or("unreadable VmSize")?;
    Ok(kib * 1024)
}

/// `RLIMIT_AS` leaves 512 KiB of headroom, enough for
/// the locator and a buffer but not for the 640 KiB index that the first
/// `get_buffer` used to allocate (and abort on). Any outcome but an abort is
/// acceptable; with this headroom it is a working buffer.
fn tight_address_space_limit() -> Outcome {
    // Anything lazily made on first use (the standard library's) first.
    let warm: Vec<u8> = Vec::with_capacity(4096);
    drop(warm);
    let limit = virtual_size()? + 512 * 1024;
    // `rlim_t` is 32 bits in a 32-bit process.
    let limit = libc::rlim_t::try_from(limit).map_err(|_| "VmSize beyond rlim_t")?;
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: a valid `rlimit`; lowering a limit needs no privilege.
    call("setrlimit(RLIMIT_AS)", unsafe {
        libc::setrlimit(libc::RLIMIT_AS, &rlimit)
    })?;
    buffer_works()
}

/// `/proc/self/maps` is `/dev/zero` (a bind mount), which
/// never ends and has no newline. Reading it used to grow a buffer until the
/// process aborted; now the read fails and placement probes instead.
fn endless_proc_maps() -> Outcome {
    let maps = format!("/proc/{}/maps", std::process::id());
    let (source, target) = (
        CString::new("/dev/zero").unwrap(),
        CString::new(maps).unwrap(),
    );
    // SAFETY: valid NUL-terminated strings; a bind mount in this process's
    // own mount namespace (see `isolate_tmp`).
    call("bind /dev/zero over maps", unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    })?;
    // 4 GiB, or no limit where `rlim_t` is 32 bits (a 32-bit process has
    // no more than 4 GiB anyway).
    let limit = libc::rlim_t::try_from(4u64 << 30).unwrap_or(libc::RLIM_INFINITY);
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: as in `tight_address_space_limit`. The limit keeps the old
    // behaviour from eating the machine's memory before it aborts.
    call("setrlimit(RLIMIT_AS)", unsafe {
        libc::setrlimit(libc::RLIMIT_AS, &rlimit)
    })?;
    buffer_works()?;
    let mut near_code = Buffers::get_buffer(&BufferSearchSettings::from_proximity(
        0x7fff_0000,
        endless_proc_maps as *const () as usize,
        64,
    ))
    .map_err(|error| format!("get_buffer near code: {error}"))?;
    near_code
        .append_bytes(b"near")
        .map_err(|error| error.to_string())?;
    Ok(())
}

/// Runs `work` in a forked child as `user` (real and effective user and
/// group ids) with `umask`; `Err` with the child's message if it fails.
fn as_user(user: u32, umask: libc::mode_t, work: fn() -> Outcome) -> Outcome {
    let (read_end, write_end) = {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        call("pipe", unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        (fds[0], fds[1])
    };
    // SAFETY: this process is single-threaded (a harness = false test).
    let pid = unsafe { libc::fork() };
    check!(pid >= 0, "fork failed");
    if pid == 0 {
        let outcome = (|| {
            // SAFETY: plain system calls on our own credentials.
            unsafe {
                libc::umask(umask);
                call("setgroups", libc::setgroups(0, std::ptr::null()))?;
                call("setgid", libc::setgid(user))?;
                call("setuid", libc::setuid(user))?;
            }
            work()
        })();
        let message = outcome.err().unwrap_or_default();
        // SAFETY: writing our own buffer to our own pipe, then leaving the
        // child without running the parent's destructors.
        unsafe {
            libc::write(write_end, message.as_ptr().cast(), message.len());
            libc::_exit(i32::from(!message.is_empty()));
        }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(write_end) };
    let mut message = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        // SAFETY: reading into a local buffer from our pipe.
        let count = unsafe { libc::read(read_end, chunk.as_mut_ptr().cast(), chunk.len()) };
        if count <= 0 {
            break;
        }
        message.extend_from_slice(&chunk[..count as usize]);
    }
    // SAFETY: closing our read end and reaping our child.
    let mut status = 0;
    unsafe {
        libc::close(read_end);
        libc::waitpid(pid, &mut status, 0);
    }
    check!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "as user {user}: {} ({status})",
        String::from_utf8_lossy(&message)
    );
    Ok(())
}

fn mode_of(path: &str) -> Result<u32, String> {
    Ok(fs::symlink_metadata(path)
        .map_err(|error| format!("{path}: {error}"))?
        .permissions()
        .mode()
        & 0o7777)
}

fn directories_are_shared_sticky() -> Outcome {
    for path in ["/tmp/.reloaded", DIRECTORY] {
        let mode = mode_of(path)?;
        check!(mode == 0o1777, "{path} has mode {mode:o}, not 1777");
    }
    Ok(())
}

/// Root (with a strict umask) uses the library first;
/// then `nobody` must still share: the directories are 01777.
fn second_user_after_root() -> Outcome {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o077) };
    expect_shared_and_published()?;
    directories_are_shared_sticky()?;
    as_user(NOBODY, 0o022, expect_shared_and_published)
}

/// An ordinary user creates the directories, then
/// `nobody` shares too.
fn second_user_after_another_user() -> Outcome {
    as_user(4242, 0o022, || {
        expect_shared_and_published()?;
        directories_are_shared_sticky()
    })?;
    as_user(NOBODY, 0o077, expect_shared_and_published)
}

/// An older version left `0755` directories of root: root's next use opens
/// them up, and `nobody` then shares.
fn directories_left_0755_are_opened_up_by_their_owner() -> Outcome {
    fs::create_dir_all(DIRECTORY).unwrap();
    for path in ["/tmp/.reloaded", DIRECTORY] {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    expect_shared_and_published()?;
    directories_are_shared_sticky()?;
    as_user(NOBODY, 0o022, expect_shared_and_published)
}

/// Under a umask of 0277 the file came out read-only
/// (0400), so a second library in the process could not open it and took
/// it over. Its mode is set explicitly now (`expect_shared_and_published`
/// checks 0600).
fn strict_umask() -> Outcome {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o277) };
    expect_shared_and_published()?;
    directories_are_shared_sticky()
}

fn reloaded_is_a_regular_file() -> Outcome {
    fs::write("/tmp/.reloaded", b"not a directory").unwrap();
    expect_private(|reason| {
        reason
            == PrivateLocatorReason::DirectoryUnavailable {
                errno: libc::ENOTDIR,
            }
    })
}

fn directory_of_another_user() -> Outcome {
    fs::create_dir_all(DIRECTORY).unwrap();
    chown(std::path::Path::new(DIRECTORY), NOBODY)?;
    expect_private(|reason| reason == PrivateLocatorReason::DirectoryNotTrusted)
}

fn stale_files_of_dead_processes_are_removed() -> Outcome {
    fs::create_dir_all(DIRECTORY).unwrap();
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let ours = file_for(dead);
    fs::write(&ours, locator_file_with_this_address(0x1000)).unwrap();
    let temporary = PathBuf::from(format!("{}.tmp7", ours.display()));
    fs::write(&temporary, b"").unwrap();
    let theirs = file_for(dead + 1_000_000);
    fs::write(&theirs, b"").unwrap();
    chown(&theirs, NOBODY)?;
    let alive = file_for(1);
    fs::write(&alive, b"").unwrap();
    // Same user, dead pid, but not a name the library
    // makes: never deleted.
    let kept = PathBuf::from(format!("{}.keep", ours.display()));
    fs::write(&kept, b"keep me").unwrap();
    let spaced = PathBuf::from(format!("{} notes", ours.display()));
    fs::write(&spaced, b"keep me too").unwrap();
    expect_shared_and_published()?;
    check!(kept.exists(), "a .keep file of ours was removed");
    check!(
        spaced.exists(),
        "a file that only starts like ours was removed"
    );
    check!(!ours.exists(), "a stale file of ours was kept");
    check!(
        !temporary.exists(),
        "a stale temporary file of ours was kept"
    );
    check!(theirs.exists(), "another user's file was removed");
    check!(alive.exists(), "a live process's file was removed");
    Ok(())
}

/// The sweep is not paid by the first request of a process, but
/// it still happens: on the next request, or at exit for a process that
/// makes only one.
fn the_sweep_runs_on_the_next_request_or_at_exit() -> Outcome {
    fs::create_dir_all(DIRECTORY).unwrap();
    let dead_file = || -> PathBuf {
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let path = file_for(dead);
        fs::write(&path, b"").unwrap();
        path
    };
    let left_by_one_request = dead_file();
    // SAFETY: this process is single-threaded (a harness = false test), so
    // the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    check!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match buffer_works() {
            // Still there: the first request left the sweep for later.
            Ok(()) if left_by_one_request.exists() => 0,
            Ok(()) => 2,
            Err(_) => 1,
        };
        // SAFETY: `exit` runs the handlers registered with `atexit`, as a
        // return from `main` would.
        unsafe { libc::exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked, with a valid out pointer.
    call(
        "waitpid",
        unsafe { libc::waitpid(pid, &mut status, 0) }.min(0),
    )?;
    check!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child: one request failed or swept at once ({status:#x})"
    );
    check!(
        !left_by_one_request.exists(),
        "a process that made one request never swept"
    );
    let left_by_two_requests = dead_file();
    buffer_works()?;
    buffer_works()?;
    check!(
        !left_by_two_requests.exists(),
        "the second request did not sweep"
    );
    Ok(())
}

fn fork_gives_the_child_its_own_locator() -> Outcome {
    let settings = BufferSearchSettings::default();
    let mut held = Buffers::get_buffer(&settings).map_err(|error| error.to_string())?;
    held.append_bytes(b"parent").unwrap();
    let parent_locator = Buffers::locator_address().unwrap();
    // SAFETY: the locator page is mapped for the life of the process.
    let before = unsafe { std::slice::from_raw_parts(parent_locator as *const u8, 4096) }.to_vec();
    // SAFETY: this process is single-threaded (a harness = false test), so
    // the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    check!(pid >= 0, "fork failed");
    if pid == 0 {
        let child = || -> Outcome {
            let error = held.append_bytes(b"child").unwrap_err();
            check!(
                error.kind() == ErrorKind::ProcessForked,
                "inherited guard appended: {error}"
            );
            // The parent's locator page is not mapped in the child: the
            // inherited guard must not read it.
            check!(
                (
                    held.base_address(),
                    held.size(),
                    held.position(),
                    held.bytes_left()
                ) == (0, 0, 0, 0),
                "inherited guard read its item: {held:?}"
            );
            drop(held);
            // A range no inherited buffer covers forces a registration.
            let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 64))
                .map_err(|error| error.to_string())?;
            buffer.append_bytes(b"child").unwrap();
            let child_locator = Buffers::locator_address().unwrap();
            // The parent's mapping is gone in the child unless the system
            // refused to leave it out, so the child's own may take its
            // place: then it must be a mapping of the child's own file.
            check!(
                child_locator != parent_locator
                    || inode_mapped_at(child_locator)? == own_file_inode()?,
                "the child uses the parent's locator"
            );
            expect_shared_and_published()
        };
        let status = match child() {
            Ok(()) => 0,
            Err(message) => {
                eprintln!("child: {message}");
                1
            }
        };
        // SAFETY: `_exit` ends the forked child without running the parent's
        // atexit handlers or destructors twice.
        unsafe { libc::_exit(status) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    check!(
        unsafe { libc::waitpid(pid, &mut status, 0) } == pid,
        "waitpid failed"
    );
    check!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed with status {status}"
    );
    // SAFETY: as above.
    let after = unsafe { std::slice::from_raw_parts(parent_locator as *const u8, 4096) };
    check!(
        after == before.as_slice(),
        "the child changed the parent's locator"
    );
    held.append_bytes(b"still ours")
        .map_err(|error| error.to_string())?;
    let other = Buffers::get_buffer(&settings).unwrap();
    check!(
        other.base_address() != held.base_address(),
        "the child released the parent's buffer"
    );
    Ok(())
}

/// The inode of the file mapped at `address`, as `/proc/self/maps` shows
/// it (0 for anonymous memory).
fn inode_mapped_at(address: usize) -> Result<u64, String> {
    let maps = fs::read_to_string("/proc/self/maps").map_err(|error| error.to_string())?;
    maps.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            let inode = fields.nth(3)?.parse().ok()?;
            (start <= address && address < end).then_some(inode)
        })
        .ok_or_else(|| format!("nothing is mapped at {address:#x}"))
}

fn own_file_inode() -> Result<u64, String> {
    fs::metadata(own_file())
        .map(|metadata| metadata.ino())
        .map_err(|error| error.to_string())
}

/// A same-user hard link of the parent's file, placed
/// under the child's id, let a forked child adopt the parent's locator
/// through the mapping it inherited; the child then registered pages that
/// exist only in its own memory, and the parent crashed on its next append.
fn forked_child_and_a_hard_link_of_the_parents_file() -> Outcome {
    let settings = BufferSearchSettings::default();
    let mut held = Buffers::get_buffer(&settings).map_err(|error| error.to_string())?;
    held.append_bytes(b"parent").unwrap();
    drop(held);
    let parent_locator = Buffers::locator_address().unwrap();
    // SAFETY: single-threaded (harness = false), so the child may run
    // arbitrary code.
    let pid = unsafe { libc::fork() };
    check!(pid >= 0, "fork failed");
    if pid == 0 {
        let child = || -> Outcome {
            fs::hard_link(file_for(parent_pid()), own_file())
                .map_err(|error| format!("hard link: {error}"))?;
            // A range no inherited buffer covers forces a registration.
            let mut buffer = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 64))
                .map_err(|error| error.to_string())?;
            buffer.append_bytes(b"child").unwrap();
            let child_locator = Buffers::locator_address().unwrap();
            check!(
                child_locator != parent_locator,
                "the child adopted the parent's locator"
            );
            Ok(())
        };
        let status = match child() {
            Ok(()) => 0,
            Err(message) => {
                eprintln!("child: {message}");
                1
            }
        };
        // SAFETY: ends the forked child without running destructors twice.
        unsafe { libc::_exit(status) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    check!(
        unsafe { libc::waitpid(pid, &mut status, 0) } == pid,
        "waitpid failed"
    );
    check!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed with status {status}"
    );
    // Every buffer the parent's locator lists must be the parent's own: a
    // request for the child's range appends without crashing.
    let mut again = Buffers::get_buffer(&BufferSearchSettings::new(0, 0x7fff_ffff, 64))
        .map_err(|error| error.to_string())?;
    again
        .append_bytes(b"parent again")
        .map_err(|error| error.to_string())?;
    expect_shared_and_published()
}

/// Which `madvise` calls a seccomp filter refuses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Every one (a sandbox that allows no advice).
    Every,
    /// Only `MADV_WIPEONFORK` (a kernel older than 4.14 answers `EINVAL`).
    WipeOnForkOnly,
}

/// Installs a seccomp filter on this process that makes the refused
/// `madvise` calls fail with `EINVAL`, before the library is first used,
/// and proves it works: a `MADV_DONTFORK` (and a `MADV_WIPEONFORK`) on a
/// page of ours fails, or succeeds, as the filter says.
fn refuse_madvise(refused: Refused) -> Outcome {
    // Classic BPF over `struct seccomp_data`: the call number at offset 0,
    // the low half of the third argument (the advice) at offset 32.
    const LOAD_WORD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JUMP_IF_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    const ERRNO: u32 = 0x0005_0000; // SECCOMP_RET_ERRNO
    let statement = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k, jt, jf| libc::sock_filter {
        code: JUMP_IF_EQUAL,
        jt,
        jf,
        k,
    };
    let refuse = statement(RETURN, ERRNO | libc::EINVAL as u32);
    let allow = statement(RETURN, ALLOW);
    let madvise = libc::SYS_madvise as u32;
    let mut program = match refused {
        Refused::Every => vec![statement(LOAD_WORD, 0), jump(madvise, 0, 1), refuse, allow],
        Refused::WipeOnForkOnly => vec![
            statement(LOAD_WORD, 0),
            jump(madvise, 0, 3),
            statement(LOAD_WORD, 32),
            jump(libc::MADV_WIPEONFORK as u32, 0, 1),
            refuse,
            allow,
        ],
    };
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl with the documented arguments; the filter program is
    // valid, and the kernel copies it before the call returns.
    unsafe {
        call(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        )?;
        call(
            "prctl(PR_SET_SECCOMP)",
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &filter as *const libc::sock_fprog as libc::c_ulong,
                0,
                0,
            ),
        )?;
    }
    let page = fresh_page()?;
    // SAFETY: advice on our own page, which is then unmapped.
    let (dont_fork, wipe_on_fork) = unsafe {
        let results = (
            libc::madvise(page, 4096, libc::MADV_DONTFORK),
            libc::madvise(page, 4096, libc::MADV_WIPEONFORK),
        );
        libc::munmap(page, 4096);
        results
    };
    check!(wipe_on_fork == -1, "MADV_WIPEONFORK was not refused");
    check!(
        (dont_fork == -1) == (refused == Refused::Every),
        "MADV_DONTFORK returned {dont_fork} under the filter"
    );
    Ok(())
}

/// With every `madvise` refused, the locator is still shared, and a forked
/// child, which then inherits its parent's locator mapping and a fork
/// marker that was not wiped, keeps off both: the process-id check.
fn madvise_refused_still_shares_and_forks_apart() -> Outcome {
    refuse_madvise(Refused::Every)?;
    expect_shared_and_published()?;
    fork_gives_the_child_its_own_locator()
}

/// The same, with a hard link of the parent's file under the child's id:
/// the inherited mapping is a live mapping of that file in the child, and
/// must still not pass for the child's own locator.
fn madvise_refused_and_a_hard_link_of_the_parents_file() -> Outcome {
    refuse_madvise(Refused::Every)?;
    expect_shared_and_published()?;
    forked_child_and_a_hard_link_of_the_parents_file()
}

/// A kernel older than 4.14 refuses only `MADV_WIPEONFORK`: shared, and a
/// forked child still gets its own locator.
fn wipe_on_fork_refused_still_shares_and_forks_apart() -> Outcome {
    refuse_madvise(Refused::WipeOnForkOnly)?;
    expect_shared_and_published()?;
    fork_gives_the_child_its_own_locator()
}

/// Runs `work` as process 1 of a new PID namespace (a grandchild of this
/// process, sharing its mount namespace and so its `/tmp`), with `stdin`
/// as its standard input; returns the forked child's pid to wait for.
fn in_new_pid_namespace(stdin: libc::c_int, work: fn() -> Outcome) -> Result<libc::pid_t, String> {
    // SAFETY: single-threaded (harness = false).
    let child = unsafe { libc::fork() };
    check!(child >= 0, "fork failed");
    if child > 0 {
        return Ok(child);
    }
    let code = (|| -> Result<i32, String> {
        // SAFETY: plain system calls; the new namespace applies to children.
        call("unshare(CLONE_NEWPID)", unsafe {
            libc::unshare(libc::CLONE_NEWPID)
        })?;
        // SAFETY: single-threaded, as above.
        let grandchild = unsafe { libc::fork() };
        check!(grandchild >= 0, "fork failed");
        if grandchild == 0 {
            // SAFETY: replacing our standard input with the given pipe.
            unsafe { libc::dup2(stdin, 0) };
            let code = match work() {
                Ok(()) if std::process::id() == 1 => 0,
                Ok(()) => {
                    eprintln!("not process 1 of a new namespace");
                    1
                }
                Err(message) => {
                    eprintln!("pid 1 of a new namespace: {message}");
                    1
                }
            };
            // SAFETY: leaves without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(grandchild, &mut status, 0) };
        Ok(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            1
        })
    })()
    .unwrap_or_else(|message| {
        eprintln!("{message}");
        1
    });
    // SAFETY: as above.
    unsafe { libc::_exit(code) };
}

fn exited_cleanly(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// Two processes that are both process 1, in two
/// PID namespaces sharing one `/tmp`. The first creates `…PID 1`; the
/// second must see a live file it cannot own and take a private locator,
/// not take the file over; the first still finds its own file afterwards.
fn same_pid_in_two_pid_namespaces() -> Outcome {
    let mut first_pipe = [0; 2];
    let mut ready_pipe = [0; 2];
    // SAFETY: room for two descriptors each.
    call("pipe", unsafe { libc::pipe(first_pipe.as_mut_ptr()) })?;
    call("pipe", unsafe { libc::pipe(ready_pipe.as_mut_ptr()) })?;
    static READY: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
    READY.store(ready_pipe[1], std::sync::atomic::Ordering::Relaxed);
    let first = in_new_pid_namespace(first_pipe[0], || {
        expect_shared_and_published()?;
        // Tell the scenario we are set up, then wait until it says go.
        let fd = READY.load(std::sync::atomic::Ordering::Relaxed);
        // SAFETY: writing one byte to our pipe; reading one from stdin.
        unsafe {
            libc::write(fd, b"r".as_ptr().cast(), 1);
            let mut byte = 0u8;
            libc::read(0, (&raw mut byte).cast(), 1);
        }
        expect_shared_and_published()
    })?;
    let mut byte = 0u8;
    // SAFETY: reading one byte from our pipe (0 at end of file).
    let got = unsafe { libc::read(ready_pipe[0], (&raw mut byte).cast(), 1) };
    check!(got == 1, "the first process did not get ready");
    let second = in_new_pid_namespace(0, || {
        expect_private(|reason| reason == PrivateLocatorReason::FileInUse)
    })?;
    let second_ok = exited_cleanly(second);
    // SAFETY: releasing the first process.
    unsafe { libc::write(first_pipe[1], b"g".as_ptr().cast(), 1) };
    let first_ok = exited_cleanly(first);
    check!(
        second_ok,
        "the second process 1 did not get a private locator"
    );
    check!(first_ok, "the first process 1 lost its file");
    Ok(())
}

fn parent_pid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
}

const SCENARIOS: &[Scenario] = &[
    ("fresh_process_creates_and_publishes_the_locator", fresh),
    ("stale_file_with_an_unmapped_address_is_taken_over", || {
        stale_file(UNMAPPED_ADDRESS)
    }),
    ("stale_file_with_a_zero_address_is_taken_over", || {
        stale_file(0)
    }),
    (
        "stale_file_naming_unrelated_memory_is_taken_over",
        stale_unrelated_memory,
    ),
    ("empty_file_is_taken_over", empty_file),
    (
        "symlink_in_place_of_the_file_is_replaced_not_followed",
        symlink_in_place_of_the_file,
    ),
    (
        "file_of_another_user_falls_back_to_private",
        file_of_another_user,
    ),
    (
        "directory_not_writable_falls_back_to_private",
        directory_not_writable,
    ),
    (
        "full_file_system_falls_back_to_private_without_sigbus",
        full_file_system,
    ),
    (
        "tight_address_space_limit_gives_a_buffer_not_an_abort",
        tight_address_space_limit,
    ),
    (
        "endless_proc_maps_is_an_error_not_an_abort",
        endless_proc_maps,
    ),
    (
        "second_user_shares_after_root_created_the_directories",
        second_user_after_root,
    ),
    (
        "second_user_shares_after_another_user_created_the_directories",
        second_user_after_another_user,
    ),
    (
        "directories_left_0755_are_opened_up_by_their_owner",
        directories_left_0755_are_opened_up_by_their_owner,
    ),
    (
        "umask_0277_still_gives_a_0600_file_and_1777_directories",
        strict_umask,
    ),
    (
        "reloaded_being_a_regular_file_falls_back_to_private",
        reloaded_is_a_regular_file,
    ),
    (
        "directory_of_another_user_falls_back_to_private",
        directory_of_another_user,
    ),
    (
        "stale_files_of_dead_processes_are_removed",
        stale_files_of_dead_processes_are_removed,
    ),
    (
        "the_sweep_runs_on_the_next_request_or_at_exit",
        the_sweep_runs_on_the_next_request_or_at_exit,
    ),
    (
        "forked_child_gets_its_own_locator",
        fork_gives_the_child_its_own_locator,
    ),
    (
        "same_pid_in_two_pid_namespaces_does_not_take_over_the_live_file",
        same_pid_in_two_pid_namespaces,
    ),
    (
        "forked_child_never_adopts_the_parents_locator_through_a_hard_link",
        forked_child_and_a_hard_link_of_the_parents_file,
    ),
    (
        "every_madvise_refused_still_shares_and_a_forked_child_keeps_off",
        madvise_refused_still_shares_and_forks_apart,
    ),
    (
        "every_madvise_refused_and_a_hard_link_of_the_parents_file",
        madvise_refused_and_a_hard_link_of_the_parents_file,
    ),
    (
        "only_wipe_on_fork_refused_still_shares_and_a_forked_child_keeps_off",
        wipe_on_fork_refused_still_shares_and_forks_apart,
    ),
];

/// Scenarios that refuse `madvise` with a seccomp filter.
const REFUSES_MADVISE: &[&str] = &[
    "every_madvise_refused_still_shares_and_a_forked_child_keeps_off",
    "every_madvise_refused_and_a_hard_link_of_the_parents_file",
    "only_wipe_on_fork_refused_still_shares_and_a_forked_child_keeps_off",
];

/// Scenarios that also run without root: they need no mount namespace, and
/// without one they use the real `/tmp` with their own process id.
const WITHOUT_ROOT: &[&str] = &["tight_address_space_limit_gives_a_buffer_not_an_abort"];

/// Scenarios that lower `RLIMIT_AS`.
const LIMITS_ADDRESS_SPACE: &[&str] = &[
    "tight_address_space_limit_gives_a_buffer_not_an_abort",
    "endless_proc_maps_is_an_error_not_an_abort",
];

/// Scenarios in which a child is forked after its parent used the library:
/// the child must notice, through the page the kernel wipes in a child
/// (`MADV_WIPEONFORK`) and the locator it does not inherit
/// (`MADV_DONTFORK`).
const FORKS_AFTER_USE: &[&str] = &[
    "second_user_shares_after_root_created_the_directories",
    "directories_left_0755_are_opened_up_by_their_owner",
    "forked_child_gets_its_own_locator",
    "forked_child_never_adopts_the_parents_locator_through_a_hard_link",
];

/// Scenarios that bind-mount something over `/proc/<pid>/maps`.
const REPLACES_PROC_MAPS: &[&str] = &["endless_proc_maps_is_an_error_not_an_abort"];

/// Whether this process runs under an emulator (`.ci/qemu-aarch64-runner`
/// names it).
fn under_an_emulator() -> bool {
    std::env::var_os(crate::support::RUNNER_VARIABLE).is_some()
}

/// Whether the kernel (or what stands in for it) accepts `MADV_WIPEONFORK`
/// but does not wipe the page in a forked child: QEMU user mode answers 0
/// to advice it does not implement. Tested, not assumed: a page holding 1
/// is advised, and a forked child reports what it sees there.
fn fork_advice_is_ignored() -> bool {
    let page = fresh_page().expect("a probe page");
    // SAFETY: the page is ours and writable.
    unsafe { page.cast::<u8>().write(1) };
    // SAFETY: advice on our own page.
    let advised = unsafe { libc::madvise(page, 4096, libc::MADV_WIPEONFORK) } == 0;
    // SAFETY: the parent is single-threaded here (a harness = false test);
    // the child only reads the page and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: reading our own page, then leaving without destructors.
        unsafe { libc::_exit(i32::from(page.cast::<u8>().read())) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child, and unmapping our page.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::munmap(page, 4096);
    }
    advised && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0
}

/// Whether `.ci/sanitizers` runs this binary (it sets these variables).
fn under_a_sanitizer() -> bool {
    ["ASAN_OPTIONS", "TSAN_OPTIONS", "MSAN_OPTIONS"]
        .iter()
        .any(|variable| std::env::var_os(variable).is_some())
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run_child(name: &str) -> ! {
    let outcome = match SCENARIOS.iter().find(|(scenario, _)| *scenario == name) {
        None => Err(format!("unknown scenario {name}")),
        Some((_, run)) if !is_root() && WITHOUT_ROOT.contains(&name) => run(),
        Some((_, run)) => isolate_tmp().and_then(|()| run()),
    };
    match outcome {
        Ok(()) => std::process::exit(0),
        Err(message) => {
            eprintln!("{name}: {message}");
            std::process::exit(1)
        }
    }
}

pub fn main() {
    if let Some(name) = crate::support::scenario_of_this_child() {
        run_child(&name);
    }
    let is_root = is_root();
    let fork_advice_ignored = fork_advice_is_ignored();
    crate::support::run_in_children(
        "scenarios",
        SCENARIOS.iter().map(|(name, _)| *name),
        |name| {
            if LIMITS_ADDRESS_SPACE.contains(&name) && under_a_sanitizer() {
                Some(
                    "a sanitizer reserves terabytes of address space; RLIMIT_AS cannot be tested \
                 under it",
                )
            } else if !is_root && !WITHOUT_ROOT.contains(&name) {
                Some("needs root for mount namespaces and chown")
            } else if FORKS_AFTER_USE.contains(&name) && fork_advice_ignored {
                Some(
                    "MADV_WIPEONFORK and MADV_DONTFORK are accepted but ignored here (QEMU user \
                     mode answers 0 to madvise without doing it), so a forked child inherits \
                     its parent's state unchanged and cannot tell it is a child",
                )
            } else if REFUSES_MADVISE.contains(&name) && under_an_emulator() {
                Some(
                    "QEMU user mode does not run the guest's seccomp filters (its prctl \
                     refuses PR_SET_SECCOMP)",
                )
            } else if REPLACES_PROC_MAPS.contains(&name) && under_an_emulator() {
                Some(
                    "QEMU user mode builds the guest's /proc/self/maps from the host's, which \
                     this scenario replaces with /dev/zero: the emulator itself then reads \
                     forever",
                )
            } else {
                None
            }
        },
    );
}
