//! Tests that cannot run here say so, and say why.
//!
//! A test that finds something missing (root, an emulator feature, a
//! compiler, a usable `/tmp`) calls [`skip`] or [`skip_named`] with what is
//! missing and returns. The line goes straight to the standard error
//! stream, past libtest's capture (which only takes the `print!` family of
//! macros), so a plain `cargo test` shows it even though the test is then
//! reported as `ok`. Each binary counts its skips, and the first skip
//! registers an `atexit` handler that prints the count when the process
//! exits, after libtest's summary.
//!
//! Included by every test binary that can skip (by `#[path]` from the other
//! crates of the workspace), so that all skips read alike: `<test>:
//! skipped: <reason>`, then `<binary>: <n> skipped` at the end.

#![allow(dead_code, unsafe_code)]

use std::io::Write;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Skips counted so far in this process.
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// Registers [`print_count`] with `atexit`, once.
static COUNT_AT_EXIT: Once = Once::new();

/// Says that the running test is skipped, and why: the test is named by
/// its thread, which libtest names after it. Call it, then return.
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    skip_named(thread.name().unwrap_or("a test"), reason);
}

/// Says that the test `test` is skipped, and why (runners of their own,
/// whose tests do not run on named threads).
pub fn skip_named(test: &str, reason: &str) {
    // One `write_all` of the whole line, so that lines of tests running
    // at once do not interleave.
    let line = format!("{test}: skipped: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    // Relaxed: the count is read at exit, after every test thread has
    // finished (libtest joins them), and nothing else depends on it.
    SKIPPED.fetch_add(1, Ordering::Relaxed);
    COUNT_AT_EXIT.call_once(|| {
        // SAFETY: `print_count` takes no arguments, never unwinds (it
        // ignores every error) and uses only the standard error stream,
        // which stays usable while the process exits.
        let registered = unsafe { libc::atexit(print_count) };
        if registered != 0 {
            let _ =
                std::io::stderr().write_all(b"(the count of skips cannot be printed at exit)\n");
        }
    });
}

/// How many tests this process has skipped so far.
pub fn count() -> usize {
    SKIPPED.load(Ordering::Relaxed)
}

/// The name of this test binary: its file name without cargo's `-<hash>`
/// (and without `.exe`).
fn binary_name() -> String {
    let path = std::env::current_exe().unwrap_or_default();
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_owned()
        }
        _ => stem,
    }
}

/// Prints how many tests this process skipped; run by `exit`, after
/// libtest has printed its summary (or a runner of our own its own).
extern "C" fn print_count() {
    let count = count();
    let line = format!(
        "{}: {count} skipped (each said why in a `skipped:` line)\n",
        binary_name()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}
