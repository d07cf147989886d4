//! `memory-buffers inspect <pid> [--near ADDRESS] [--json]`: shows the
//! shared buffers of another process's memory-buffers locator, and the free
//! ranges near an address where a new one could go.
//!
//! When a hook fails with "no space in range", this shows why: which
//! buffers the process holds, how full each is, which are held, and what
//! room is left near the target. See the crate README for the JSON schema,
//! exit codes and the permissions it needs.
//!
//! The inspector only reads: the locator is found through the rendezvous
//! file (Linux) or named section (Windows) and validated as the library
//! validates it, then copied out of the process with `process_vm_readv` /
//! `ReadProcessMemory` and decoded from the copy (`decode`) with the layout
//! of the process's pointer width (`width`): a 64-bit inspector reads
//! 32-bit processes too. Its system calls live in `os/`, one file per
//! operating system; everything else is pure and unit-tested.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod args;
mod decode;
mod failure;
mod free_ranges;
mod os;
#[cfg(target_os = "linux")]
mod rendezvous;
mod report;
mod width;

use args::{Command, Options};
use decode::ChainError;
use failure::Failure;
use free_ranges::Query;
use report::Report;
use std::io::Write;
use std::process::ExitCode;

/// Free ranges listed at most.
const RANGES_SHOWN: usize = 16;

fn inspect(options: &Options) -> Result<Report, Failure> {
    let pid = options.pid;
    let process = os::Process::open(pid)?;
    let found = process.find_locator()?;
    let space = process.space(found.width);
    let chain = decode::read_chain(found.address, found.width, space.highest, |address, out| {
        process.read(address, out)
    })
    .map_err(|error| match error {
        ChainError::Read { address, error } => {
            let what = if address == found.address {
                "the locator"
            } else {
                "the next locator"
            };
            error.into_failure(pid, what, address)
        }
        ChainError::Layout { address, error } => Failure::InvalidLocator {
            pid,
            why: format!("the locator at {address:#x}: {error}"),
        },
        ChainError::Cycle { address } => Failure::InvalidLocator {
            pid,
            why: format!("the chain of locators loops back to {address:#x}"),
        },
        ChainError::TooLong => Failure::InvalidLocator {
            pid,
            why: format!(
                "the chain of locators is longer than {} (corrupt?)",
                decode::MAX_CHAIN
            ),
        },
    })?;
    let placement = match options.near {
        Some(near) => {
            let mapped = process.mapped_ranges(space)?;
            let size = options.size.unwrap_or(space.granularity);
            let query = Query {
                near,
                reach: options.reach,
                size,
            };
            let placement = free_ranges::free_ranges_near(&mapped, query, space, RANGES_SHOWN)
                .map_err(|why| Failure::Usage(format!("--near/--reach/--size: {}", why.0)))?;
            Some((placement, options.reach, size))
        }
        None => None,
    };
    Ok(Report {
        pid,
        width: found.width,
        rendezvous: found.rendezvous,
        chain,
        near: options.near,
        granularity: space.granularity,
        placement,
    })
}

/// Writes to standard output, ignoring a closed pipe (`| head`).
fn print(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn fail(failure: &Failure, pid: Option<u32>, json: bool) -> ExitCode {
    if json {
        print(&format!("{}\n", report::render_json_failure(pid, failure)));
    }
    let mut message = format!("memory-buffers inspect: {failure}\n");
    if matches!(failure, Failure::Usage(_)) {
        message.push_str("(see memory-buffers --help)\n");
    }
    let _ = std::io::stderr().lock().write_all(message.as_bytes());
    ExitCode::from(u8::try_from(failure.exit_code()).unwrap_or(1))
}

fn main() -> ExitCode {
    let arguments: Vec<_> = std::env::args_os().skip(1).collect();
    let json = args::wants_json(&arguments);
    match args::parse(&arguments) {
        Ok(Command::Help) => {
            print(&format!("{}\n", args::USAGE));
            ExitCode::SUCCESS
        }
        Ok(Command::Inspect(options)) => match inspect(&options) {
            Ok(report) if options.json => {
                print(&format!("{}\n", report::render_json(&report)));
                ExitCode::SUCCESS
            }
            Ok(report) => {
                print(&report::render_text(&report));
                ExitCode::SUCCESS
            }
            Err(failure) => fail(&failure, Some(options.pid), options.json),
        },
        Err(failure) => fail(&failure, None, json),
    }
}
