//! Allocations inside another process, tested against child processes this
//! test starts: the child sees the mapping appear and reads back the bytes
//! written into it itself, its own work (a busy loop, a blocking `read`, a
//! `nanosleep`) finishes with the right result while its thread is stopped
//! and made to call `mmap`, a child that exits gives an error and no hang,
//! and refusals say why.
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
/// the injector drives x86-64 registers and `syscall`, so a build for
/// another architecture (32-bit x86 included) answers `Unsupported` to
/// every allocation; reading and writing bytes still work there.
fn no_injector() -> Option<&'static str> {
    (cfg!(target_os = "linux") && !cfg!(target_arch = "x86_64"))
        .then_some("allocating in another Linux process needs the x86-64 injector")
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
/// times: signals that arrive while its thread is held are delivered
/// afterwards, none is turned into a crash (a leaked single-step `SIGTRAP`
/// would kill it), and its `read` carries on.
#[cfg(target_os = "linux")]
fn signals_arriving_during_the_calls_are_all_delivered() -> Outcome {
    let mut child = Target::spawn("signals")?;
    let function = child.ready()?;
    let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
    let count = |child: &mut Target| -> Result<u64, String> {
        child
            .ask("count")?
            .parse::<u64>()
            .map_err(|e| e.to_string())
    };
    let before = count(&mut child)?;
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
    let after = count(&mut child)?;
    // Timer signals that arrive while one is pending merge into one, so on
    // a loaded machine far fewer than one per 200 us are handled; what
    // matters is that they keep being handled while the calls go on.
    check!(
        after > before,
        "no signal handled during the calls ({before} before, {after} after)"
    );
    check!(
        child.ask(&format!("mapped {last:x}"))? == "no",
        "the last allocation is still mapped"
    );
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
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
                    println!("{}", ALARMS.load(std::sync::atomic::Ordering::Relaxed));
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

    #[cfg(target_os = "linux")]
    extern "C" fn count_alarm(_: libc::c_int) {
        ALARMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A `SIGALRM` every 200 µs, counted by a handler installed with
    /// `SA_RESTART` (so `read` restarts after it).
    #[cfg(target_os = "linux")]
    fn count_alarms_every_200_us() {
        // SAFETY: an all-zero `sigaction` is valid; the handler only does
        // an atomic add, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = count_alarm as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut());
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
