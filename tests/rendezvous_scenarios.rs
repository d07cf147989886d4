//! Child-process tests of the rendezvous: each scenario runs in a fresh
//! process, so the locator is created anew, prepares what it is about (a
//! stale file, another user's file, a hostile pre-created section...), then
//! asks for a buffer. The rendezvous differs by system (a file in `/tmp` on
//! Linux, a named section on Windows), and so do the scenarios.
//!
//! This is a `harness = false` test: run without arguments it spawns itself
//! once per scenario and reports; with `MEMORY_BUFFERS_SCENARIO` set it is
//! the child.

mod support;

#[cfg(target_os = "linux")]
#[path = "rendezvous_scenarios/linux.rs"]
mod linux;

#[cfg(windows)]
#[path = "rendezvous_scenarios/windows.rs"]
mod windows;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(windows)]
    windows::main();
    #[cfg(not(any(target_os = "linux", windows)))]
    println!("rendezvous scenarios: none for this system (no shared locator)");
}
