//! Allocations inside another process, tested against child processes this
//! test starts: the child sees the mapping appear and reads back the bytes
//! written into it itself, its own work (a busy loop, a blocking `read`, a
//! `nanosleep`) finishes with the right result while its thread is stopped
//! and made to call `mmap`, a child that exits gives an error and no hang,
//! and refusals say why. On x86 Linux the same is shown for a 32-bit child
//! that is a C program built for the test (`mod i386`): from an x86-64
//! caller, and from an i686 one.
//!
//! This is a `harness = false` test, run as three kinds of process: without
//! `MEMORY_BUFFERS_SCENARIO` it runs each scenario in a child of its own (so
//! one may drop its user id); a scenario child starts the targets, which are
//! this executable again with `MEMORY_BUFFERS_SCENARIO=target:<role>`.

mod support;
#[cfg(windows)]
#[path = "wow64/scenarios.rs"]
mod wow64;

use memory_buffers::{BufferAllocatorSettings, ErrorKind, TargetProcess, TargetProcessError};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};
use support::{Outcome, Scenario, check};

const GIB: usize = 1 << 30;

const SCENARIOS: &[Scenario] = &[
    (
        "the_target_sees_the_mapping_and_reads_the_bytes_itself",
        the_target_sees_the_mapping_and_reads_the_bytes_itself,
    ),
    (
        "a_busy_target_computes_the_right_result",
        a_busy_target_computes_the_right_result,
    ),
    (
        "a_sleeping_target_sleeps_on_uninterrupted",
        a_sleeping_target_sleeps_on_uninterrupted,
    ),
    (
        "a_target_that_exits_gives_an_error_not_a_hang",
        a_target_that_exits_gives_an_error_not_a_hang,
    ),
    ("bad_process_ids_are_refused", bad_process_ids_are_refused),
    (
        "write_then_execute_pages_change_rights_in_the_target",
        write_then_execute_pages_change_rights_in_the_target,
    ),
    #[cfg(windows)]
    (
        "a_large_address_aware_32_bit_target_gets_memory_above_2_gib",
        wow64::a_large_address_aware_32_bit_target_gets_memory_above_2_gib,
    ),
    #[cfg(windows)]
    (
        "a_32_bit_target_without_large_address_awareness_stays_below_2_gib",
        wow64::a_32_bit_target_without_large_address_awareness_stays_below_2_gib,
    ),
    #[cfg(windows)]
    (
        "write_then_execute_pages_run_in_a_32_bit_target",
        wow64::write_then_execute_pages_run_in_a_32_bit_target,
    ),
    #[cfg(target_os = "linux")]
    (
        "another_users_process_is_refused_with_the_reason",
        another_users_process_is_refused_with_the_reason,
    ),
    #[cfg(target_os = "linux")]
    (
        "a_target_under_a_debugger_is_refused_with_the_reason",
        a_target_under_a_debugger_is_refused_with_the_reason,
    ),
    #[cfg(target_os = "linux")]
    (
        "a_stopped_target_stays_stopped",
        a_stopped_target_stays_stopped,
    ),
    #[cfg(target_os = "linux")]
    (
        "signals_arriving_during_the_calls_are_all_delivered",
        signals_arriving_during_the_calls_are_all_delivered,
    ),
    #[cfg(target_os = "linux")]
    (
        "a_target_whose_main_thread_exited_is_served_by_another",
        a_target_whose_main_thread_exited_is_served_by_another,
    ),
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]
    (
        "a_32_bit_target_gets_memory_below_and_above_2_gib",
        i386::a_32_bit_target_gets_memory_below_and_above_2_gib,
    ),
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]
    (
        "a_32_bit_target_runs_write_then_execute_code",
        i386::a_32_bit_target_runs_write_then_execute_code,
    ),
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]
    (
        "a_32_bit_target_that_exits_gives_an_error_not_a_hang",
        i386::a_32_bit_target_that_exits_gives_an_error_not_a_hang,
    ),
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]
    (
        "a_32_bit_target_with_the_3gb_personality_stays_below_3_gib",
        i386::a_32_bit_target_with_the_3gb_personality_stays_below_3_gib,
    ),
    #[cfg(all(target_os = "linux", target_arch = "x86"))]
    (
        "a_64_bit_target_of_a_32_bit_caller_is_refused",
        i386::a_64_bit_target_of_a_32_bit_caller_is_refused,
    ),
];

fn main() {
    if let Some(name) = support::scenario_of_this_child() {
        if let Some(role) = name.strip_prefix("target:") {
            targets::run(role);
        }
        support::run_child(SCENARIOS, &name);
    }
    support::run_in_children(
        "target process",
        SCENARIOS.iter().map(|(name, _)| *name),
        |name| {
            // The 32-bit targets are programs built beforehand, or none.
            #[cfg(windows)]
            if let Some(reason) = wow64::why_skipped(name) {
                return Some(reason);
            }
            // The 32-bit Linux target is built by the scenario, if it can be.
            #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]
            if let Some(reason) = i386::why_skipped(name) {
                return Some(reason);
            }
            if name == "bad_process_ids_are_refused" {
                None
            } else if let Some(reason) = ptrace_forbidden() {
                Some(reason)
            } else if let Some(reason) = ptrace_unimplemented() {
                Some(reason)
            } else if let Some(reason) = no_injector() {
                Some(reason)
            } else {
                (name == "another_users_process_is_refused_with_the_reason" && !is_root())
                    .then_some("needs root, to drop to another user")
            }
        },
    );
}

/// Why this machine lets no test trace its children, if it does not:
/// Yama's `ptrace_scope` at 3, or at 2 without root.
fn ptrace_forbidden() -> Option<&'static str> {
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok()?;
    match scope.trim() {
        "3" => Some("kernel.yama.ptrace_scope is 3: no process may trace"),
        "2" if !is_root() => Some("kernel.yama.ptrace_scope is 2: tracing needs root"),
        _ => None,
    }
}

/// Why tracing cannot work here at all, if it cannot: QEMU user mode does
/// not implement `ptrace` for its guests (it answers `ENOSYS`), and a target
/// would be an emulator process anyway. Tested, not assumed: attaching to a
/// process id that cannot exist fails with `ESRCH` on a kernel.
fn ptrace_unimplemented() -> Option<&'static str> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: attaching to a process that does not exist changes
        // nothing; only the error is looked at.
        let result = unsafe {
            libc::ptrace(
                libc::PTRACE_ATTACH,
                libc::pid_t::MAX,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
        let errno = std::io::Error::last_os_error().raw_os_error();
        if result == -1 && errno == Some(libc::ENOSYS) {
            return Some("ptrace is not implemented here (QEMU user mode answers ENOSYS)");
        }
    }
    None
}

/// Why this build cannot make a Linux target call `mmap`, if it cannot:
/// the injector drives x86 registers (`syscall` for x86-64, `int 0x80`
/// for 32-bit x86), so a build for another architecture answers
/// `Unsupported` to every allocation; reading and writing bytes still work
/// there.
fn no_injector() -> Option<&'static str> {
    (cfg!(target_os = "linux") && !cfg!(any(target_arch = "x86_64", target_arch = "x86")))
        .then_some("allocating in another Linux process needs the x86 injector (x86-64 or i686)")
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: `geteuid` has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// A target child, talked to over its standard input and output.
struct Target {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Target {
    fn spawn(role: &str) -> Result<Target, String> {
        // Under the emulator that runs this test, if any (see `support`).
        // Under AddressSanitizer, its leak check at exit attaches to the
        // exiting target with ptrace (the test then sees a tracer, not an
        // exit) and reports what a `pthread_exit`ed main thread leaves:
        // the targets run without it. Without a sanitizer the variable is
        // ignored.
        let sanitizer_options = match std::env::var("ASAN_OPTIONS") {
            Ok(options) if !options.is_empty() => format!("{options}:detect_leaks=0"),
            _ => "detect_leaks=0".to_string(),
        };
        let mut child = support::command_for(&std::env::current_exe().map_err(|e| e.to_string())?)
            .env(support::SCENARIO_VARIABLE, format!("target:{role}"))
            .env("ASAN_OPTIONS", sanitizer_options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("spawn the target: {error}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Target {
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    fn id(&self) -> u32 {
        self.child.id()
    }

    /// The target's next line of output.
    fn line(&self) -> Result<String, String> {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the target said nothing for 30 s (or ended)".to_string())
    }

    /// The address the target reports when it is ready.
    fn ready(&self) -> Result<usize, String> {
        let line = self.line()?;
        let address = line
            .strip_prefix("ready ")
            .ok_or_else(|| format!("the target said {line:?}"))?;
        usize::from_str_radix(address, 16).map_err(|e| e.to_string())
    }

    fn ask(&mut self, command: &str) -> Result<String, String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{command}").map_err(|error| format!("write to the target: {error}"))?;
        self.line()
    }

    /// Closes the target's input and waits for it to exit.
    fn finish(mut self) -> Result<std::process::ExitStatus, String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => return Err("the target did not exit".into()),
                Err(error) => return Err(format!("wait for the target: {error}")),
            }
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn near(address: usize) -> BufferAllocatorSettings {
    BufferAllocatorSettings::from_proximity(GIB, address, 4096)
}

fn the_target_sees_the_mapping_and_reads_the_bytes_itself() -> Outcome {
    let mut child = Target::spawn("echo")?;
    let function = child.ready()?;
    let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
    check!(process.id() == child.id(), "id {}", process.id());

    let started = Instant::now();
    let allocation = process
        .allocate_private_memory(&near(function))
        .map_err(|e| e.to_string())?;
    eprintln!(
        "first allocation (reads the map, finds a syscall instruction): {:?}",
        started.elapsed()
    );
    let base = allocation.base_address();
    check!(
        base.abs_diff(function) < 64 << 20 && allocation.size() >= 4096,
        "{allocation:?} is not near {function:#x}"
    );
    check!(
        child.ask(&format!("mapped {base:x}"))? == "yes",
        "the target does not see {base:#x} mapped"
    );
    #[cfg(target_os = "linux")]
    {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id()))
            .map_err(|e| e.to_string())?;
        let line = format!("{base:x}-{:x} rwxp", base + allocation.size());
        check!(
            maps.contains(&line),
            "no {line:?} in the target's maps:\n{maps}"
        );
    }

    let bytes: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    allocation.write(8, &bytes).map_err(|e| e.to_string())?;
    let seen = child.ask(&format!("read {:x} {}", base + 8, bytes.len()))?;
    check!(
        seen == hex(&bytes),
        "the target read {seen}, not {}",
        hex(&bytes)
    );
    let mut back = vec![0u8; bytes.len()];
    allocation.read(8, &mut back).map_err(|e| e.to_string())?;
    check!(back == bytes, "read back {}", hex(&back));
    let mut word = [0u8; 4];
    process
        .read_memory(base + 8, &mut word)
        .map_err(|e| e.to_string())?;
    check!(word == bytes[..4], "read_memory gave {}", hex(&word));
    let past_end = allocation
        .write(allocation.size() - 1, &[1, 2])
        .unwrap_err();
    check!(past_end.kind() == ErrorKind::DoesNotFit, "{past_end}");

    // The target is blocked in read() all along: its thread is stopped and
    // made to call mmap and munmap many times, and still answers.
    let started = Instant::now();
    let rounds = 50;
    for _ in 0..rounds {
        let extra = process
            .allocate_private_memory(&near(function))
            .map_err(|e| e.to_string())?;
        drop(extra);
    }
    eprintln!(
        "allocation and release: {:?} per pair",
        started.elapsed() / rounds
    );
    check!(
        child.ask(&format!("read {:x} 4", base + 8))? == hex(&bytes[..4]),
        "the target's read() did not resume as it should"
    );

    drop(allocation);
    check!(
        child.ask(&format!("mapped {base:x}"))? == "no",
        "{base:#x} is still mapped after the drop"
    );
    let kept = process
        .allocate_private_memory(&near(function))
        .map_err(|e| e.to_string())?
        .leak();
    check!(
        child.ask(&format!("mapped {kept:x}"))? == "yes",
        "the leaked pages are gone"
    );
    let freed = process
        .allocate_private_memory(&near(function))
        .map_err(|e| e.to_string())?;
    let freed_base = freed.base_address();
    freed.free().map_err(|e| e.to_string())?;
    check!(
        child.ask(&format!("mapped {freed_base:x}"))? == "no",
        "free left the pages"
    );
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}

/// What the busy target computes: a xorshift sequence kept in registers.
fn busy_result(rounds: u64) -> u64 {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut sum = 0u64;
    for i in 0..rounds {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        sum = sum.wrapping_add(state ^ i);
    }
    sum
}

const BUSY_ROUNDS: u64 = 100_000_000;

/// Allocates and frees in `child` until it says something; the line.
fn keep_allocating_until_it_reports(
    child: &Target,
    near_address: usize,
) -> Result<(String, u32), String> {
    let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
    let mut injections = 0;
    loop {
        if let Ok(line) = child.lines.try_recv() {
            return Ok((line, injections));
        }
        match process.allocate_private_memory(&near(near_address)) {
            Ok(allocation) => drop(allocation),
            // It may have reported and exited since the look above.
            Err(error)
                if error.kind() == ErrorKind::TargetProcess(TargetProcessError::NotRunning) =>
            {
                return Ok((child.line()?, injections));
            }
            Err(error) => return Err(error.to_string()),
        }
        injections += 2;
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn a_busy_target_computes_the_right_result() -> Outcome {
    let child = Target::spawn("busy")?;
    let function = child.ready()?;
    let (line, injections) = keep_allocating_until_it_reports(&child, function)?;
    let expected = format!("result {}", busy_result(BUSY_ROUNDS));
    check!(
        line == expected,
        "the target said {line:?}, not {expected:?}"
    );
    check!(
        injections >= 4,
        "only {injections} calls made during the loop"
    );
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}

fn a_sleeping_target_sleeps_on_uninterrupted() -> Outcome {
    let child = Target::spawn("sleep")?;
    let function = child.ready()?;
    let (line, injections) = keep_allocating_until_it_reports(&child, function)?;
    check!(line == "slept 100 times", "the target said {line:?}");
    check!(
        injections >= 4,
        "only {injections} calls made during the sleeps"
    );
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}

fn a_target_that_exits_gives_an_error_not_a_hang() -> Outcome {
    let child = Target::spawn("exit-soon")?;
    let function = child.ready()?;
    let pid = child.id();
    let process = TargetProcess::open(pid).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let error = loop {
        check!(
            started.elapsed() < Duration::from_secs(20),
            "still allocating after 20 s"
        );
        match process.allocate_private_memory(&near(function)) {
            Ok(allocation) => drop(allocation),
            Err(error) => break error,
        }
    };
    check!(
        error.kind() == ErrorKind::TargetProcess(TargetProcessError::NotRunning),
        "{error}"
    );
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    let reopened = TargetProcess::open(pid).unwrap_err();
    check!(
        reopened.kind() == ErrorKind::TargetProcess(TargetProcessError::NotRunning),
        "{reopened}"
    );
    Ok(())
}

/// A write-then-execute allocation is read/write in the target, then
/// read/execute (writes refused here, the rights seen by the target
/// itself), then read/write again.
fn write_then_execute_pages_change_rights_in_the_target() -> Outcome {
    let mut child = Target::spawn("echo")?;
    let function = child.ready()?;
    let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
    let mut settings = near(function);
    settings.write_then_execute = true;
    let mut code = process
        .allocate_private_memory(&settings)
        .map_err(|e| e.to_string())?;
    let base = code.base_address();
    let rights = |child: &mut Target| child.ask(&format!("rights {base:x}"));
    check!(
        rights(&mut child)? == "rw-",
        "at first: {}",
        rights(&mut child)?
    );
    code.write(0, &[0xc3]).map_err(|e| e.to_string())?;
    code.make_executable().map_err(|e| e.to_string())?;
    check!(
        rights(&mut child)? == "r-x",
        "executable: {}",
        rights(&mut child)?
    );
    check!(!code.is_writable(), "still writable");
    let refused = code.write(0, &[0x90]).unwrap_err();
    check!(refused.kind() == ErrorKind::NotWritable, "{refused}");
    check!(
        child.ask(&format!("read {base:x} 1"))? == "c3",
        "the code changed"
    );
    code.make_writable().map_err(|e| e.to_string())?;
    check!(
        rights(&mut child)? == "rw-",
        "writable again: {}",
        rights(&mut child)?
    );
    code.write(0, &[0x90]).map_err(|e| e.to_string())?;
    let plain = process
        .allocate_private_memory(&near(function))
        .map_err(|e| e.to_string())?;
    let plain_base = plain.base_address();
    check!(
        child.ask(&format!("rights {plain_base:x}"))? == "rwx",
        "a plain allocation is not read/write/execute"
    );
    drop((code, plain));
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}

fn bad_process_ids_are_refused() -> Outcome {
    for (id, reason) in [
        (0, TargetProcessError::NotRunning),
        (u32::MAX, TargetProcessError::NotRunning),
        (std::process::id(), TargetProcessError::ThisProcess),
    ] {
        let error = TargetProcess::open(id).unwrap_err();
        check!(
            error.kind() == ErrorKind::TargetProcess(reason),
            "open({id}): {error}"
        );
    }
    Ok(())
}

/// Root opens a child; then this process becomes `nobody`, which may not
/// trace root's processes: both a new open and an allocation through the
/// old handle say so.
#[cfg(target_os = "linux")]
fn another_users_process_is_refused_with_the_reason() -> Outcome {
    const NOBODY: u32 = 65534;
    let mut child = Target::spawn("echo")?;
    let function = child.ready()?;
    let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
    // SAFETY: plain system calls; the group first, while still root.
    let dropped = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(NOBODY) == 0
            && libc::setuid(NOBODY) == 0
    };
    check!(
        dropped,
        "could not become nobody: {}",
        std::io::Error::last_os_error()
    );
    let refused = ErrorKind::TargetProcess(TargetProcessError::OtherUser);
    let error = process
        .allocate_private_memory(&near(function))
        .unwrap_err();
    check!(error.kind() == refused, "allocate: {error}");
    let error = TargetProcess::open(child.id()).unwrap_err();
    check!(error.kind() == refused, "open: {error}");
    check!(
        error.to_string().contains("another user"),
        "the message does not say why: {error}"
    );
    check!(
        child.ask("mapped 0")? == "no",
        "the target stopped answering"
    );
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}

/// This process attaches to the child as a debugger would; an allocation
/// (which attaches from a thread of its own) is refused as "already
/// traced".
#[cfg(target_os = "linux")]
fn a_target_under_a_debugger_is_refused_with_the_reason() -> Outcome {
    let mut child = Target::spawn("echo")?;
    let function = child.ready()?;
    let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
    let pid = child.id() as libc::pid_t;
    // SAFETY: PTRACE_SEIZE with no options only attaches; the thread keeps
    // running. It is detached when this thread exits.
    let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) };
    check!(
        seized == 0,
        "PTRACE_SEIZE: {}",
        std::io::Error::last_os_error()
    );
    let error = process
        .allocate_private_memory(&near(function))
        .unwrap_err();
    check!(
        error.kind() == ErrorKind::TargetProcess(TargetProcessError::AlreadyTraced),
        "{error}"
    );
    check!(
        child.ask("mapped 0")? == "no",
        "the target stopped answering"
    );
    Ok(())
}

/// The state letter of `/proc/<pid>/status` (`S`, `T`...).
#[cfg(target_os = "linux")]
fn state_of(pid: u32) -> Result<String, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let line = status
        .lines()
        .find(|line| line.starts_with("State:"))
        .ok_or("no State")?;
    Ok(line["State:".len()..].trim().chars().take(1).collect())
}

/// A target stopped by `SIGSTOP` (job control) is made to map and unmap,
/// and is stopped again afterwards, until `SIGCONT`.
#[cfg(target_os = "linux")]
fn a_stopped_target_stays_stopped() -> Outcome {
    let mut child = Target::spawn("echo")?;
    let function = child.ready()?;
    let pid = child.id();
    let process = TargetProcess::open(pid).map_err(|e| e.to_string())?;
    // SAFETY: signals our own child.
    check!(
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) } == 0,
        "SIGSTOP"
    );
    let started = Instant::now();
    while state_of(pid)? != "T" {
        check!(
            started.elapsed() < Duration::from_secs(10),
            "the target did not stop"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let allocation = process
        .allocate_private_memory(&near(function))
        .map_err(|e| e.to_string())?;
    let base = allocation.base_address();
    allocation.write(0, b"stopped").map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(20));
    check!(
        state_of(pid)? == "T",
        "the target runs again: {}",
        state_of(pid)?
    );
    // SAFETY: signals our own child.
    check!(
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) } == 0,
        "SIGCONT"
    );
    check!(
        child.ask(&format!("read {base:x} 7"))? == hex(b"stopped"),
        "the target does not see the bytes"
    );
    drop(allocation);
    check!(
        child.ask(&format!("mapped {base:x}"))? == "no",
        "still mapped"
    );
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}

/// The target takes a `SIGALRM` every 200 µs (a handler with
/// `SA_RESTART` counts them) while it is made to map and unmap hundreds of
/// times, and this process sends it real-time signals all along, which
/// queue rather than merge: signals that arrive while its thread is held
/// are delivered afterwards, every one of the real-time signals is handled
/// exactly once, none is turned into a crash (a leaked single-step
/// `SIGTRAP` would kill it), and its `read` carries on.
#[cfg(target_os = "linux")]
fn signals_arriving_during_the_calls_are_all_delivered() -> Outcome {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut child = Target::spawn("signals")?;
    let function = child.ready()?;
    let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
    // `<timer signals> <real-time signals>` handled so far.
    let counts = |child: &mut Target| -> Result<(u64, u64), String> {
        let answer = child.ask("count")?;
        let parse = |word: Option<&str>| {
            word.and_then(|word| word.parse::<u64>().ok())
                .ok_or_else(|| format!("the target counted {answer:?}"))
        };
        let mut words = answer.split_whitespace();
        Ok((parse(words.next())?, parse(words.next())?))
    };
    let (alarms_before, queued_before) = counts(&mut child)?;
    check!(
        queued_before == 0,
        "{queued_before} real-time signals before any was sent"
    );
    let pid = child.id() as libc::pid_t;
    let stop = AtomicBool::new(false);
    let (rounds, sent) = std::thread::scope(|scope| {
        // Real-time signals sent while the calls go on, paced so that the
        // target's queue (RLIMIT_SIGPENDING) never fills.
        let sender = scope.spawn(|| {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) && sent < 2000 {
                // SAFETY: signals our own child, which handles the signal.
                if unsafe { libc::kill(pid, libc::SIGRTMIN()) } == 0 {
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(300));
            }
            sent
        });
        let rounds = allocate_and_check_200_times(&process, &mut child, function);
        stop.store(true, Ordering::Relaxed);
        (rounds, sender.join().expect("the sender thread panicked"))
    });
    let last = rounds?;
    // Every signal sent is pending or handled by now; the target handles
    // pending ones before it answers the next command.
    let (alarms_after, queued_after) = counts(&mut child)?;
    // Timer signals that arrive while one is pending merge into one, so on
    // a loaded machine far fewer than one per 200 us are handled; what
    // matters is that they keep being handled while the calls go on.
    check!(
        alarms_after > alarms_before,
        "no timer signal handled during the calls ({alarms_before} before, {alarms_after} after)"
    );
    check!(sent > 0, "no real-time signal could be sent");
    check!(
        queued_after == sent,
        "{sent} real-time signals sent, {queued_after} handled"
    );
    check!(
        child.ask(&format!("mapped {last:x}"))? == "no",
        "the last allocation is still mapped"
    );
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}

/// Makes the target map, write and unmap 200 times, having it read the
/// bytes back every 50 rounds; the address of the last allocation.
#[cfg(target_os = "linux")]
fn allocate_and_check_200_times(
    process: &TargetProcess,
    child: &mut Target,
    function: usize,
) -> Result<usize, String> {
    let mut last = 0;
    for round in 0..200u32 {
        let allocation = process
            .allocate_private_memory(&near(function))
            .map_err(|e| format!("round {round}: {e}"))?;
        allocation
            .write(0, &round.to_le_bytes())
            .map_err(|e| e.to_string())?;
        last = allocation.base_address();
        if round % 50 == 49 {
            let seen = child.ask(&format!("read {last:x} 4"))?;
            check!(
                seen == hex(&round.to_le_bytes()),
                "round {round}: the target read {seen}"
            );
        }
    }
    Ok(last)
}

/// The target's main thread called `pthread_exit` (it is a zombie while
/// the others run): another thread is made to make the calls.
#[cfg(target_os = "linux")]
fn a_target_whose_main_thread_exited_is_served_by_another() -> Outcome {
    let mut child = Target::spawn("main-exits")?;
    let function = child.ready()?;
    let pid = child.id();
    let started = Instant::now();
    while state_of(pid)? != "Z" {
        check!(
            started.elapsed() < Duration::from_secs(10),
            "the main thread did not exit"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let process = TargetProcess::open(pid).map_err(|e| e.to_string())?;
    let allocation = process
        .allocate_private_memory(&near(function))
        .map_err(|e| e.to_string())?;
    let base = allocation.base_address();
    allocation.write(0, b"thread").map_err(|e| e.to_string())?;
    check!(
        child.ask(&format!("read {base:x} 6"))? == hex(b"thread"),
        "the target does not see the bytes"
    );
    drop(allocation);
    check!(
        child.ask(&format!("mapped {base:x}"))? == "no",
        "still mapped"
    );
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}

/// The target roles: each prints `ready <address of one of its functions>`
/// first.
mod targets {
    use std::io::Write;

    pub fn run(role: &str) -> ! {
        let function = run as *const () as usize;
        println!("ready {function:x}");
        let code = match role {
            "echo" => echo(),
            "busy" => {
                println!(
                    "result {}",
                    super::busy_result(std::hint::black_box(super::BUSY_ROUNDS))
                );
                0
            }
            "sleep" => sleep(),
            #[cfg(target_os = "linux")]
            "main-exits" => {
                std::thread::spawn(|| {
                    let code = echo();
                    let _ = std::io::stdout().flush();
                    std::process::exit(code)
                });
                // The raw `exit` system call ends only the calling thread,
                // without unwinding (`pthread_exit` would unwind into the
                // runtime's catch and abort). The process lives on in the
                // thread spawned above, which exits it.
                loop {
                    // SAFETY: ends this thread; nothing of it is used after.
                    unsafe { libc::syscall(libc::SYS_exit, 0) };
                }
            }
            #[cfg(target_os = "linux")]
            "signals" => {
                count_alarms_every_200_us();
                echo()
            }
            "exit-soon" => {
                std::thread::sleep(std::time::Duration::from_millis(200));
                0
            }
            _ => 2,
        };
        let _ = std::io::stdout().flush();
        std::process::exit(code)
    }

    /// Answers commands on standard input: `mapped <address>` (yes/no) and
    /// `read <address> <len>` (the bytes in hex, read by this process).
    /// Ends at end of input; exits with 3 if a `read` was interrupted,
    /// which a correctly restored thread never sees.
    fn echo() -> i32 {
        loop {
            let line = match read_line() {
                Ok(Some(line)) => line,
                Ok(None) => return 0,
                Err(problem) => {
                    println!("{problem}");
                    return 3;
                }
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            let number = |at: usize, radix| {
                words
                    .get(at)
                    .and_then(|word| usize::from_str_radix(word, radix).ok())
                    .unwrap_or(0)
            };
            match words.first() {
                Some(&"mapped") => {
                    let address = number(1, 16);
                    let mapped = address != 0 && super::support::is_mapped(address, address + 1);
                    println!("{}", if mapped { "yes" } else { "no" });
                }
                #[cfg(target_os = "linux")]
                Some(&"count") => {
                    let load = |count: &std::sync::atomic::AtomicU64| {
                        count.load(std::sync::atomic::Ordering::Relaxed)
                    };
                    println!("{} {}", load(&ALARMS), load(&QUEUED));
                }
                Some(&"rights") => println!("{}", rights_of(number(1, 16))),
                Some(&"read") => {
                    let (address, len) = (number(1, 16), number(2, 10));
                    // SAFETY: the test asks only for bytes it has just
                    // checked are mapped and written.
                    let bytes = unsafe { std::slice::from_raw_parts(address as *const u8, len) };
                    println!("{}", super::hex(bytes));
                }
                _ => println!("unknown command"),
            }
        }
    }

    /// The rights of the page at `address` as `rwx` letters, as this
    /// process's own map shows them.
    #[cfg(target_os = "linux")]
    fn rights_of(address: usize) -> String {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(permissions)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((start, end)) = range.split_once('-') else {
                continue;
            };
            let start = usize::from_str_radix(start, 16).unwrap_or(usize::MAX);
            let end = usize::from_str_radix(end, 16).unwrap_or(0);
            if (start..end).contains(&address) {
                return permissions[..3].to_string();
            }
        }
        "unmapped".into()
    }

    #[cfg(windows)]
    fn rights_of(address: usize) -> String {
        use windows_sys::Win32::System::Memory::{
            MEM_COMMIT, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_READWRITE,
        };
        let region = super::support::windows::query(address);
        if region.State != MEM_COMMIT {
            return "unmapped".into();
        }
        match region.Protect {
            PAGE_READWRITE => "rw-",
            PAGE_EXECUTE_READ => "r-x",
            PAGE_EXECUTE_READWRITE => "rwx",
            _ => "other",
        }
        .into()
    }

    /// `SIGALRM`s handled so far.
    #[cfg(target_os = "linux")]
    static ALARMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// Real-time signals (`SIGRTMIN`) handled so far.
    #[cfg(target_os = "linux")]
    static QUEUED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    #[cfg(target_os = "linux")]
    extern "C" fn count_alarm(_: libc::c_int) {
        ALARMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    #[cfg(target_os = "linux")]
    extern "C" fn count_queued(_: libc::c_int) {
        QUEUED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A `SIGALRM` every 200 µs, counted by a handler installed with
    /// `SA_RESTART` (so `read` restarts after it), and a counting handler
    /// for the `SIGRTMIN`s the test sends.
    #[cfg(target_os = "linux")]
    fn count_alarms_every_200_us() {
        // SAFETY: an all-zero `sigaction` is valid; the handler only does
        // an atomic add, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = count_alarm as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut());
            action.sa_sigaction = count_queued as *const () as usize;
            libc::sigaction(libc::SIGRTMIN(), &action, std::ptr::null_mut());
            let every = libc::timeval {
                tv_sec: 0,
                tv_usec: 200,
            };
            let timer = libc::itimerval {
                it_interval: every,
                it_value: every,
            };
            libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut());
        }
    }

    /// One line of standard input, read with the raw `read` system call so
    /// that an interruption (`EINTR`) is seen, not retried.
    #[cfg(unix)]
    fn read_line() -> Result<Option<String>, String> {
        let mut line = Vec::new();
        loop {
            let mut byte = 0u8;
            // SAFETY: reads one byte into `byte`.
            let read = unsafe { libc::read(0, (&mut byte as *mut u8).cast(), 1) };
            match read {
                1 if byte == b'\n' => return Ok(Some(String::from_utf8_lossy(&line).into())),
                1 => line.push(byte),
                0 => return Ok(None),
                _ => return Err(format!("read failed: {}", std::io::Error::last_os_error())),
            }
        }
    }

    #[cfg(not(unix))]
    fn read_line() -> Result<Option<String>, String> {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(line.trim_end().to_string())),
            Err(error) => Err(format!("read failed: {error}")),
        }
    }

    /// Sleeps 100 times 10 ms with the raw `nanosleep`, failing if one
    /// returns early (`EINTR`): a stopped and restored thread must not.
    fn sleep() -> i32 {
        for _ in 0..100 {
            #[cfg(unix)]
            {
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 10_000_000,
                };
                // SAFETY: `pause` is a valid timespec; no remainder wanted.
                if unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) } != 0 {
                    println!("nanosleep failed: {}", std::io::Error::last_os_error());
                    return 3;
                }
            }
            #[cfg(not(unix))]
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        println!("slept 100 times");
        0
    }
}

/// Allocations in a 32-bit (i386) process made from this one (x86-64, or
/// i686): the target is [`TARGET_SOURCE`], built with `i686-linux-gnu-gcc`
/// when a scenario starts, and what it sees of its own memory is what is
/// checked.
/// The library learns the target's width from its executable and makes it
/// call through `int 0x80`, with the highest address its own (4 GiB less a
/// page, or 3 GiB with `ADDR_LIMIT_3GB`), not this process's.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]
mod i386 {
    use crate::support::{Outcome, check};
    use crate::{Target, hex};
    use memory_buffers::{BufferAllocatorSettings, ErrorKind, TargetProcess, TargetProcessError};
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::channel;
    use std::time::{Duration, Instant};

    /// The cross compiler (Debian's `gcc-i686-linux-gnu`).
    const COMPILER: &str = "i686-linux-gnu-gcc";
    /// The dynamic loader a 32-bit program starts with (`libc6:i386`).
    const LOADER: &str = "/lib/ld-linux.so.2";
    /// The top of a 32-bit process's space under a 64-bit kernel.
    const TOP_OF_4_GIB: usize = 0xFFFF_DFFF;
    /// The top with the `ADDR_LIMIT_3GB` personality.
    const TOP_OF_3_GIB: usize = 0xBFFF_FFFF;
    const TWO_GIB: usize = 0x8000_0000;

    /// The target. It prints `ready <address of main> <process id>`, then
    /// answers one line per command read from standard input (with the raw
    /// `read`, so that an interrupted one is seen, and then exits with 3)
    /// until its end:
    ///
    /// - `mapped <address>`: `yes` or `no`, from its own `/proc/self/maps`;
    /// - `rights <address>`: `rwx` letters, or `unmapped`;
    /// - `read <address> <len>`: the bytes in hex, or `unreadable`;
    /// - `call <address>`: calls the code there as `int (*)(void)` and
    ///   prints the result, or `not executable`.
    ///
    /// With the argument `exit-soon` it exits 200 ms after `ready`.
    /// Addresses are hexadecimal; each is looked up in the map before it is
    /// touched, so a wrong one is an answer, not a crash.
    const TARGET_SOURCE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The rights of the mapping holding `address`, or "unmapped". */
static void rights_of(unsigned long address, char out[16]) {
    char line[512];
    unsigned long start, end;
    char permissions[8];
    FILE *maps = fopen("/proc/self/maps", "r");
    strcpy(out, "unmapped");
    if (maps == NULL) {
        return;
    }
    while (fgets(line, sizeof line, maps) != NULL) {
        if (sscanf(line, "%lx-%lx %7s", &start, &end, permissions) == 3 &&
            address >= start && address < end) {
            memcpy(out, permissions, 3);
            out[3] = '\0';
            break;
        }
    }
    fclose(maps);
}

/* One line of input: 1, 0 at its end, -1 if `read` failed. */
static int read_line(char *line, size_t size) {
    size_t len = 0;
    for (;;) {
        char byte;
        ssize_t got = read(0, &byte, 1);
        if (got < 0) {
            return -1;
        }
        if (got == 0 || byte == '\n') {
            line[len] = '\0';
            return got == 0 && len == 0 ? 0 : 1;
        }
        if (len + 1 < size) {
            line[len++] = byte;
        }
    }
}

int main(int argc, char **argv) {
    char line[256];
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("ready %lx %ld\n", (unsigned long)(uintptr_t)&main, (long)getpid());
    if (argc > 1 && strcmp(argv[1], "exit-soon") == 0) {
        usleep(200000);
        return 0;
    }
    for (;;) {
        char command[16], rights[16], last[16];
        unsigned long address = 0, len = 0, i;
        int got = read_line(line, sizeof line);
        if (got == 0) {
            return 0;
        }
        if (got < 0) {
            printf("read failed: %s\n", strerror(errno));
            return 3;
        }
        if (sscanf(line, "%15s %lx %lu", command, &address, &len) < 2) {
            puts("unknown command");
            continue;
        }
        rights_of(address, rights);
        if (strcmp(command, "mapped") == 0) {
            puts(strcmp(rights, "unmapped") != 0 ? "yes" : "no");
        } else if (strcmp(command, "rights") == 0) {
            puts(rights);
        } else if (strcmp(command, "read") == 0) {
            if (len == 0 || len > 4096 || address + len < address) {
                puts("unreadable");
                continue;
            }
            rights_of(address + len - 1, last);
            if (rights[0] != 'r' || last[0] != 'r') {
                puts("unreadable");
                continue;
            }
            for (i = 0; i < len; i++) {
                printf("%02x", ((const unsigned char *)address)[i]);
            }
            putchar('\n');
        } else if (strcmp(command, "call") == 0) {
            if (rights[0] != 'r' || rights[2] != 'x') {
                puts("not executable");
                continue;
            }
            printf("%d\n", ((int (*)(void))address)());
        } else {
            puts("unknown command");
        }
    }
}
"#;

    /// Why the scenario `name` cannot run here, if it cannot (`None` for
    /// names that are not this module's): the target needs the compiler
    /// and the 32-bit loader, and the personality scenario `setarch`.
    pub fn why_skipped(name: &str) -> Option<&'static str> {
        if name.starts_with("a_64_bit_target") {
            return (!is_64_bit_x86_program(SIXTY_FOUR_BIT_PROGRAM))
                .then_some("/bin/cat is not an x86-64 program here: no 64-bit target to refuse");
        }
        if !name.starts_with("a_32_bit_target") {
            return None;
        }
        let runs = |program: &str, argument: &str| {
            Command::new(program)
                .arg(argument)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        };
        if !runs(COMPILER, "--version") {
            return Some(
                "i686-linux-gnu-gcc is not installed: gcc-i686-linux-gnu builds the 32-bit target",
            );
        }
        if !Path::new(LOADER).exists() {
            return Some(
                "no 32-bit loader /lib/ld-linux.so.2 to start the target: libc6:i386 has it",
            );
        }
        if name.contains("3gb") && !runs("setarch", "--version") {
            return Some("setarch (util-linux) is not installed");
        }
        None
    }

    /// The target, built for this scenario: removed when dropped.
    struct Program {
        directory: PathBuf,
        path: PathBuf,
    }

    impl Program {
        fn build() -> Result<Program, String> {
            let directory = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("i386-target-{}", std::process::id()));
            std::fs::create_dir_all(&directory).map_err(|e| e.to_string())?;
            let source = directory.join("target.c");
            std::fs::write(&source, TARGET_SOURCE).map_err(|e| e.to_string())?;
            let path = directory.join("target");
            let program = Program { directory, path };
            let output = Command::new(COMPILER)
                .args(["-std=gnu11", "-O1", "-Wall", "-Werror", "-o"])
                .arg(&program.path)
                .arg(&source)
                .output()
                .map_err(|error| format!("run {COMPILER}: {error}"))?;
            check!(
                output.status.success(),
                "{COMPILER} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(program)
        }

        /// Starts the target (under `setarch --3gb` if `limit_3gb`): the
        /// target and the address of its `main`, once it is ready.
        fn start(
            &self,
            argument: Option<&str>,
            limit_3gb: bool,
        ) -> Result<(Target, usize), String> {
            let mut command = if limit_3gb {
                // setarch sets the personality and executes the program in
                // its own process.
                let mut command = Command::new("setarch");
                command.args(["i686", "--3gb"]).arg(&self.path);
                command
            } else {
                Command::new(&self.path)
            };
            command.args(argument);
            let child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|error| format!("start the 32-bit target: {error}"))?;
            let target = talk_to(child)?;
            let line = target.line()?;
            let words: Vec<&str> = line.split_whitespace().collect();
            let (Some(&"ready"), Some(main), Some(pid)) =
                (words.first(), words.get(1), words.get(2))
            else {
                return Err(format!("the target said {line:?}"));
            };
            let main = usize::from_str_radix(main, 16).map_err(|e| e.to_string())?;
            check!(
                pid.parse::<u32>() == Ok(target.id()),
                "the target says it is {pid}, not {}",
                target.id()
            );
            // The point of the scenarios: the process really is a 32-bit
            // one (ELF class 1), with its code below 4 GiB.
            let exe = std::fs::read(format!("/proc/{}/exe", target.id()))
                .map_err(|e| format!("read the target's executable: {e}"))?;
            check!(
                exe.get(..5) == Some(&b"\x7fELF\x01"[..]) && u32::try_from(main).is_ok(),
                "the target is not a 32-bit program (main at {main:#x})"
            );
            Ok((target, main))
        }
    }

    /// A target talked to over the standard input and output of `child`.
    fn talk_to(mut child: Child) -> Result<Target, String> {
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Target {
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    impl Drop for Program {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.directory);
        }
    }

    /// The rights of the mapping starting at `base` in the target's map as
    /// this process reads it (`None` if no mapping starts there).
    fn rights_in_maps(pid: u32, base: usize) -> Result<Option<String>, String> {
        let maps =
            std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| e.to_string())?;
        // Addresses are padded to eight digits: compared as numbers.
        let starts_at_base = |line: &&str| {
            line.split_once('-')
                .and_then(|(start, _)| usize::from_str_radix(start, 16).ok())
                == Some(base)
        };
        Ok(maps
            .lines()
            .find(starts_at_base)
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|permissions| permissions.get(..3))
            .map(str::to_string))
    }

    /// Allocates two pages within `[min, max]` in the target, checks the
    /// target sees them where they are said to be, writes bytes (across
    /// the pages) it reads back itself, and frees them: they leave its
    /// map. Their first and last addresses.
    fn round_trip_within(
        child: &mut Target,
        process: &TargetProcess,
        min: usize,
        max: usize,
    ) -> Result<(usize, usize), String> {
        let allocation = process
            .allocate_private_memory(&BufferAllocatorSettings::new(min, max, 8192))
            .map_err(|e| format!("[{min:#x}, {max:#x}]: {e}"))?;
        let base = allocation.base_address();
        let last = base + (allocation.size() - 1);
        check!(
            base >= min && last <= max && allocation.size() >= 8192,
            "{allocation:?} is not inside [{min:#x}, {max:#x}]"
        );
        check!(
            rights_in_maps(child.id(), base)?.as_deref() == Some("rwx"),
            "no rwx mapping at {base:#x} in the target's maps"
        );
        check!(
            child.ask(&format!("mapped {last:x}"))? == "yes",
            "the target does not see {last:#x} mapped"
        );
        let bytes: Vec<u8> = (0..48u8).map(|i| i.wrapping_mul(53) ^ 0xa7).collect();
        allocation
            .write(4096 - 16, &bytes)
            .map_err(|e| e.to_string())?;
        let seen = child.ask(&format!("read {:x} {}", base + 4096 - 16, bytes.len()))?;
        check!(
            seen == hex(&bytes),
            "the target read {seen}, not {}",
            hex(&bytes)
        );
        let mut back = vec![0u8; bytes.len()];
        allocation
            .read(4096 - 16, &mut back)
            .map_err(|e| e.to_string())?;
        check!(back == bytes, "read back {}", hex(&back));
        allocation.free().map_err(|e| e.to_string())?;
        check!(
            rights_in_maps(child.id(), base)?.is_none(),
            "{base:#x} is still in the target's maps after free"
        );
        check!(
            child.ask(&format!("mapped {base:x}"))? == "no",
            "the target still sees {base:#x} mapped"
        );
        Ok((base, last))
    }

    /// What a request entirely above the target's top gives: no memory,
    /// and no mapping made there (which `int 0x80` would have cut to 32
    /// bits, or the target's kernel refused).
    fn refused_above(process: &TargetProcess, min: usize, max: usize) -> Outcome {
        let refused = process
            .allocate_private_memory(&BufferAllocatorSettings::new(min, max, 4096))
            .map(|allocation| allocation.base_address());
        // Out of the target's space: none of it is free (the cached view
        // shows it taken), or, where the request is checked against the
        // target's top, no user space at all.
        let expected = |kind: ErrorKind| {
            kind == ErrorKind::NoSpaceInRange
                || kind
                    == ErrorKind::InvalidRequest(
                        memory_buffers::InvalidRequest::RangeAboveUserSpace,
                    )
        };
        match refused {
            Ok(base) => Err(format!("[{min:#x}, {max:#x}] gave {base:#x}")),
            Err(error) if expected(error.kind()) => Ok(()),
            Err(error) => Err(format!("[{min:#x}, {max:#x}]: {error}")),
        }
    }

    pub fn a_32_bit_target_gets_memory_below_and_above_2_gib() -> Outcome {
        let program = Program::build()?;
        let (mut child, main) = program.start(None, false)?;
        let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
        round_trip_within(&mut child, &process, 0x1000_0000, 0x7fff_ffff)?;
        let (high, _) = round_trip_within(&mut child, &process, TWO_GIB, TOP_OF_4_GIB)?;
        check!(high >= TWO_GIB, "{high:#x}");
        // Near its code, as a trampoline would be.
        let near = process
            .allocate_private_memory(&BufferAllocatorSettings::from_proximity(
                64 << 20,
                main,
                4096,
            ))
            .map_err(|e| e.to_string())?;
        check!(
            near.base_address().abs_diff(main) < 64 << 20,
            "{near:?} is not near {main:#x}"
        );
        // The target is blocked in `read` all along: stopped and made to
        // call mmap2 and munmap many times, its `read` carries on.
        for round in 0..50 {
            let extra = process
                .allocate_private_memory(&BufferAllocatorSettings::new(TWO_GIB, TOP_OF_4_GIB, 4096))
                .map_err(|e| format!("round {round}: {e}"))?;
            drop(extra);
        }
        check!(
            child.ask(&format!("mapped {:x}", near.base_address()))? == "yes",
            "the target's read() did not resume as it should"
        );
        refused_above(&process, TOP_OF_4_GIB + 1, usize::MAX)?;
        drop(near);
        let status = child.finish()?;
        check!(status.success(), "the target ended with {status}");
        Ok(())
    }

    /// `mov eax, 42` and `ret`: 32-bit code that returns 42.
    const RETURN_42: [u8; 6] = [0xb8, 42, 0, 0, 0, 0xc3];

    pub fn a_32_bit_target_runs_write_then_execute_code() -> Outcome {
        let program = Program::build()?;
        let (mut child, _) = program.start(None, false)?;
        let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
        let mut settings = BufferAllocatorSettings::new(TWO_GIB, TOP_OF_4_GIB, 4096);
        settings.write_then_execute = true;
        let mut code = process
            .allocate_private_memory(&settings)
            .map_err(|e| e.to_string())?;
        let base = code.base_address();
        let rights = |child: &mut Target| child.ask(&format!("rights {base:x}"));
        check!(
            rights(&mut child)? == "rw-",
            "at first: {}",
            rights(&mut child)?
        );
        check!(
            child.ask(&format!("call {base:x}"))? == "not executable",
            "runnable before make_executable"
        );
        code.write(0, &RETURN_42).map_err(|e| e.to_string())?;
        code.make_executable().map_err(|e| e.to_string())?;
        check!(
            rights(&mut child)? == "r-x",
            "executable: {}",
            rights(&mut child)?
        );
        check!(
            rights_in_maps(child.id(), base)?.as_deref() == Some("r-x"),
            "the target's maps do not show r-x at {base:#x}"
        );
        check!(
            child.ask(&format!("call {base:x}"))? == "42",
            "the code did not run in the target"
        );
        let refused = code.write(0, &[0x90]).unwrap_err();
        check!(refused.kind() == ErrorKind::NotWritable, "{refused}");
        code.make_writable().map_err(|e| e.to_string())?;
        check!(
            rights(&mut child)? == "rw-",
            "writable again: {}",
            rights(&mut child)?
        );
        drop(code);
        check!(
            child.ask(&format!("mapped {base:x}"))? == "no",
            "still mapped after the drop"
        );
        let status = child.finish()?;
        check!(status.success(), "the target ended with {status}");
        Ok(())
    }

    pub fn a_32_bit_target_that_exits_gives_an_error_not_a_hang() -> Outcome {
        let program = Program::build()?;
        let (child, _) = program.start(Some("exit-soon"), false)?;
        let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut made = 0u32;
        let error = loop {
            check!(
                started.elapsed() < Duration::from_secs(20),
                "still allocating after 20 s"
            );
            match process.allocate_private_memory(&BufferAllocatorSettings::new(
                TWO_GIB,
                TOP_OF_4_GIB,
                4096,
            )) {
                Ok(allocation) => {
                    made += 1;
                    drop(allocation)
                }
                Err(error) => break error,
            }
        };
        check!(
            error.kind() == ErrorKind::TargetProcess(TargetProcessError::NotRunning),
            "after {made} allocations: {error}"
        );
        check!(made > 0, "no allocation made before the exit");
        let status = child.finish()?;
        check!(status.success(), "the target ended with {status}");
        Ok(())
    }

    /// Under `setarch --3gb` the target has 3 GiB: memory above 2 GiB
    /// stays below 3 GiB, and a range above 3 GiB gives none.
    pub fn a_32_bit_target_with_the_3gb_personality_stays_below_3_gib() -> Outcome {
        let program = Program::build()?;
        let (mut child, _) = program.start(None, true)?;
        let personality = std::fs::read_to_string(format!("/proc/{}/personality", child.id()))
            .map_err(|e| e.to_string())?;
        check!(
            u32::from_str_radix(personality.trim(), 16).is_ok_and(|bits| bits & 0x0800_0000 != 0),
            "setarch --3gb gave the personality {personality:?}"
        );
        let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
        let (base, last) = round_trip_within(&mut child, &process, TWO_GIB, TOP_OF_4_GIB)?;
        check!(
            last <= TOP_OF_3_GIB,
            "{base:#x}..={last:#x} reaches above 3 GiB"
        );
        refused_above(&process, TOP_OF_3_GIB + 1, TOP_OF_4_GIB)?;
        let status = child.finish()?;
        check!(status.success(), "the target ended with {status}");
        Ok(())
    }

    /// A 64-bit program that echoes its input.
    const SIXTY_FOUR_BIT_PROGRAM: &str = "/bin/cat";

    /// Whether the file at `path` is a 64-bit x86 ELF program (class 2,
    /// machine 62).
    fn is_64_bit_x86_program(path: &str) -> bool {
        let mut header = [0u8; 20];
        std::fs::File::open(path)
            .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut header))
            .is_ok()
            && header[..5] == *b"\x7fELF\x02"
            && header[18..20] == 62u16.to_le_bytes()
    }

    /// A 32-bit caller cannot set a 64-bit thread's registers: a 64-bit
    /// target is refused as another architecture, and carries on
    /// untouched.
    #[cfg(target_arch = "x86")]
    pub fn a_64_bit_target_of_a_32_bit_caller_is_refused() -> Outcome {
        let child = Command::new(SIXTY_FOUR_BIT_PROGRAM)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("start {SIXTY_FOUR_BIT_PROGRAM}: {error}"))?;
        let mut child = talk_to(child)?;
        check!(child.ask("before")? == "before", "the target does not echo");
        let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
        for write_then_execute in [false, true] {
            let mut settings = BufferAllocatorSettings::new(0x1000_0000, 0x7fff_ffff, 4096);
            settings.write_then_execute = write_then_execute;
            let error = process.allocate_private_memory(&settings).unwrap_err();
            check!(
                error.kind() == ErrorKind::TargetProcess(TargetProcessError::OtherArchitecture),
                "{error}"
            );
        }
        check!(child.ask("after")? == "after", "the target stopped echoing");
        let status = child.finish()?;
        check!(status.success(), "the target ended with {status}");
        Ok(())
    }
}
