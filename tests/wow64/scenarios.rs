//! Allocations in a 32-bit (WoW64) process, made from this process: the
//! target is `tests/wow64/target.c`, built with and without
//! `--large-address-aware`, and what it sees of its own memory is what is
//! checked.
//!
//! The library takes the highest address of a 32-bit target from the
//! target's image (4 GiB less 64 KiB if large-address-aware, 2 GiB less
//! 64 KiB if not), never from this process or from where an allocation
//! landed: Wine 8 grants addresses above 2 GiB even to a program without
//! the flag, so only the library's own limit keeps such a program's
//! pointers below 2 GiB there.
//!
//! The test runs under Wine as a Windows program and cannot run the
//! compiler: the programs are built beforehand (`.ci/windows`), and their
//! paths given in [`LAA_VARIABLE`] and [`NO_LAA_VARIABLE`]. Without them
//! the scenarios are skipped, saying so.

use crate::support::{Outcome, check};
use crate::{Target, hex};
use memory_buffers::{BufferAllocatorSettings, ErrorKind, InvalidRequest, TargetProcess};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

/// The path (as Windows names it) of the target built with
/// `-Wl,--large-address-aware`.
pub const LAA_VARIABLE: &str = "MEMORY_BUFFERS_WOW64_TARGET_LAA";
/// The path of the target built without it.
pub const NO_LAA_VARIABLE: &str = "MEMORY_BUFFERS_WOW64_TARGET_NO_LAA";

/// The highest address a large-address-aware 32-bit program may map on
/// 64-bit Windows.
const TOP_OF_4_GIB: usize = 0xFFFE_FFFF;
/// The highest address of a 32-bit program without the flag.
const TOP_OF_2_GIB: usize = 0x7FFE_FFFF;
const TWO_GIB: usize = 0x8000_0000;
/// 6 GiB from a 64-bit caller; the highest address a 32-bit one can name.
const PAST_4_GIB: usize = if usize::BITS > 32 {
    (6u64 << 30) as usize
} else {
    usize::MAX
};

/// Why the scenario `name` of this module cannot run here, if it cannot
/// (`None` for names that are not this module's).
pub fn why_skipped(name: &str) -> Option<&'static str> {
    let unset = |variable| std::env::var_os(variable).is_none_or(|path| path.is_empty());
    if name == "a_32_bit_target_without_large_address_awareness_stays_below_2_gib" {
        unset(NO_LAA_VARIABLE).then_some(
            "MEMORY_BUFFERS_WOW64_TARGET_NO_LAA is not set: .ci/windows builds the 32-bit target \
             from tests/wow64/target.c with i686-w64-mingw32-gcc",
        )
    } else if name.contains("32_bit_target") {
        unset(LAA_VARIABLE).then_some(
            "MEMORY_BUFFERS_WOW64_TARGET_LAA is not set: .ci/windows builds the 32-bit target \
             from tests/wow64/target.c with i686-w64-mingw32-gcc -Wl,--large-address-aware",
        )
    } else {
        None
    }
}

/// What the target says first.
struct Ready {
    /// The highest address it may map, as its own `GetSystemInfo` says.
    top: usize,
}

/// Starts the program named by `variable` and waits for its first line.
fn start(variable: &str) -> Result<(Target, Ready), String> {
    let path = std::env::var(variable).map_err(|_| format!("{variable} is not set"))?;
    let mut child = Command::new(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("start {path} ({variable}): {error}"))?;
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
    let mut target = Target {
        stdin: child.stdin.take(),
        child,
        lines,
    };
    let line = match target.line() {
        Ok(line) => line,
        Err(problem) => {
            std::thread::sleep(Duration::from_millis(100));
            // A 32-bit program that cannot load ends at once: with
            // 0xc0000135 in a Wine prefix made before wine32 was installed.
            return Err(match target.child.try_wait() {
                Ok(Some(status)) => format!(
                    "{path} ended with {status} before saying anything (0xc0000135: the Wine \
                     prefix has no 32-bit support)"
                ),
                _ => format!("{path}: {problem}"),
            });
        }
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let (Some(&"ready"), Some(pid), Some(top)) = (words.first(), words.get(2), words.get(3)) else {
        return Err(format!("{path} said {line:?}"));
    };
    check!(
        pid.parse::<u32>().ok() == Some(target.id()),
        "{path} says its id is {pid}, the test started {}",
        target.id()
    );
    let top = usize::from_str_radix(top, 16).map_err(|e| format!("{line:?}: {e}"))?;
    Ok((target, Ready { top }))
}

fn settings(min: usize, max: usize) -> BufferAllocatorSettings {
    BufferAllocatorSettings::new(min, max, 4096)
}

/// Bytes that differ from one call to the next.
fn pattern(seed: u8) -> Vec<u8> {
    (0..32u8).map(|i| i.wrapping_mul(41) ^ seed).collect()
}

/// Writes into `allocation` and has the target read the bytes itself.
fn written_and_seen(
    child: &mut Target,
    allocation: &memory_buffers::RemoteAllocation,
    seed: u8,
) -> Outcome {
    let base = allocation.base_address();
    check!(
        child.ask(&format!("mapped {base:x}"))? == "yes",
        "the target does not see {base:#x} mapped"
    );
    let bytes = pattern(seed);
    allocation.write(16, &bytes).map_err(|e| e.to_string())?;
    let seen = child.ask(&format!("read {:x} {}", base + 16, bytes.len()))?;
    check!(
        seen == hex(&bytes),
        "the target read {seen} at {:#x}, not {}",
        base + 16,
        hex(&bytes)
    );
    let mut back = vec![0u8; bytes.len()];
    allocation.read(16, &mut back).map_err(|e| e.to_string())?;
    check!(back == bytes, "read back {}", hex(&back));
    Ok(())
}

/// The first and last byte of `allocation`, checked to lie in
/// `[min, max]`.
fn placed_in(
    allocation: &memory_buffers::RemoteAllocation,
    min: usize,
    max: usize,
) -> Result<usize, String> {
    let base = allocation.base_address();
    let last = base + (allocation.size() - 1);
    check!(
        base >= min && last <= max && allocation.size() >= 4096,
        "{allocation:?} is not inside [{min:#x}, {max:#x}]"
    );
    Ok(base)
}

/// Frees `allocation` and checks that the target sees the pages gone.
fn freed(child: &mut Target, allocation: memory_buffers::RemoteAllocation) -> Outcome {
    let base = allocation.base_address();
    allocation.free().map_err(|e| e.to_string())?;
    check!(
        child.ask(&format!("mapped {base:x}"))? == "no",
        "{base:#x} is still reserved in the target after free"
    );
    Ok(())
}

fn refused_as_above_user_space(process: &TargetProcess, min: usize, max: usize) -> Outcome {
    match process.allocate_private_memory(&settings(min, max)) {
        Ok(allocation) => Err(format!(
            "[{min:#x}, {max:#x}] lies above the target's space, yet gave {allocation:?}"
        )),
        Err(error) => {
            check!(
                error.invalid_request() == Some(InvalidRequest::RangeAboveUserSpace),
                "[{min:#x}, {max:#x}]: {error}"
            );
            Ok(())
        }
    }
}

pub fn a_large_address_aware_32_bit_target_gets_memory_above_2_gib() -> Outcome {
    let (mut child, ready) = start(LAA_VARIABLE)?;
    check!(
        ready.top >= TWO_GIB,
        "the target may map only up to {:#x}: was it linked with --large-address-aware?",
        ready.top
    );
    let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;

    let high = process
        .allocate_private_memory(&settings(TWO_GIB, TOP_OF_4_GIB))
        .map_err(|e| e.to_string())?;
    placed_in(&high, TWO_GIB, TOP_OF_4_GIB)?;
    written_and_seen(&mut child, &high, 0x11)?;

    // Reaching past the target's top (and past 4 GiB, from a 64-bit
    // caller), the range is cut there.
    let straddling = process
        .allocate_private_memory(&settings(TWO_GIB, PAST_4_GIB))
        .map_err(|e| e.to_string())?;
    placed_in(&straddling, TWO_GIB, TOP_OF_4_GIB)?;
    written_and_seen(&mut child, &straddling, 0x22)?;

    // This process's whole range, as the default settings ask for it.
    let anywhere = process
        .allocate_private_memory(&BufferAllocatorSettings::default())
        .map_err(|e| e.to_string())?;
    placed_in(&anywhere, 0, TOP_OF_4_GIB)?;
    written_and_seen(&mut child, &anywhere, 0x33)?;

    #[cfg(target_pointer_width = "64")]
    refused_as_above_user_space(&process, 0x1_0000_0000, 0x1_FFFF_FFFF)?;
    refused_as_above_user_space(&process, TOP_OF_4_GIB + 1, 0xFFFF_FFFF)?;

    for allocation in [high, straddling, anywhere] {
        freed(&mut child, allocation)?;
    }
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}

pub fn a_32_bit_target_without_large_address_awareness_stays_below_2_gib() -> Outcome {
    let (mut child, ready) = start(NO_LAA_VARIABLE)?;
    check!(
        ready.top < TWO_GIB,
        "the target may map up to {:#x}: was it linked with --large-address-aware?",
        ready.top
    );
    let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;

    refused_as_above_user_space(&process, TWO_GIB, TOP_OF_4_GIB)?;

    let low = process
        .allocate_private_memory(&settings(0, 0x7FFF_FFFF))
        .map_err(|e| e.to_string())?;
    placed_in(&low, 0, TOP_OF_2_GIB)?;
    written_and_seen(&mut child, &low, 0x44)?;

    // Reaching past 2 GiB, where Wine would grant pages, the range is cut
    // at the target's top. (Wine reserves most of the space between 512 MiB
    // and 2 GiB of a 32-bit process for itself: the free space is lower.)
    let straddling = process
        .allocate_private_memory(&settings(0x0100_0000, 0xFFFF_FFFF))
        .map_err(|e| e.to_string())?;
    placed_in(&straddling, 0x0100_0000, TOP_OF_2_GIB)?;
    written_and_seen(&mut child, &straddling, 0x55)?;

    let anywhere = process
        .allocate_private_memory(&BufferAllocatorSettings::default())
        .map_err(|e| e.to_string())?;
    placed_in(&anywhere, 0, TOP_OF_2_GIB)?;
    written_and_seen(&mut child, &anywhere, 0x66)?;

    for allocation in [low, straddling, anywhere] {
        freed(&mut child, allocation)?;
    }
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}

/// A write-then-execute allocation above 2 GiB of a 32-bit target holds
/// code that the target runs once it is executable.
pub fn write_then_execute_pages_run_in_a_32_bit_target() -> Outcome {
    let (mut child, _) = start(LAA_VARIABLE)?;
    let process = TargetProcess::open(child.id()).map_err(|e| e.to_string())?;
    let mut wanted = settings(TWO_GIB, TOP_OF_4_GIB);
    wanted.write_then_execute = true;
    let mut code = process
        .allocate_private_memory(&wanted)
        .map_err(|e| e.to_string())?;
    let base = placed_in(&code, TWO_GIB, TOP_OF_4_GIB)?;
    let rights = |child: &mut Target| child.ask(&format!("rights {base:x}"));
    check!(
        rights(&mut child)? == "rw-",
        "at first: {}",
        rights(&mut child)?
    );
    // mov eax, 42; ret
    let forty_two = [0xb8, 42, 0, 0, 0, 0xc3];
    code.write(0, &forty_two).map_err(|e| e.to_string())?;
    check!(
        child.ask(&format!("call {base:x}"))? == "not executable",
        "the target could run read/write pages"
    );
    code.make_executable().map_err(|e| e.to_string())?;
    check!(
        rights(&mut child)? == "r-x",
        "executable: {}",
        rights(&mut child)?
    );
    check!(
        child.ask(&format!("call {base:x}"))? == "42",
        "the target's call did not return 42"
    );
    let refused = code.write(0, &[0x90]).unwrap_err();
    check!(refused.kind() == ErrorKind::NotWritable, "{refused}");
    code.make_writable().map_err(|e| e.to_string())?;
    check!(
        rights(&mut child)? == "rw-",
        "writable again: {}",
        rights(&mut child)?
    );
    freed(&mut child, code)?;
    let status = child.finish()?;
    check!(status.success(), "the target ended with {status}");
    Ok(())
}
