//! The original reloaded-memory-buffers 4.1.0 alone, called as its README
//! shows (see `../harness.rs`).

#[path = "../../harness.rs"]
mod harness;

use reloaded_memory_buffers::buffers::Buffers;
use reloaded_memory_buffers::structs::params::BufferSearchSettings;
use std::hint::black_box;

/// The original's own highest address (`get_sys_info().max_address`, which
/// it does not export). On Unix: 4 GiB less one byte for 32-bit programs,
/// and 2^47 less one for 64-bit ones.
#[cfg(all(not(windows), target_pointer_width = "32"))]
fn highest() -> usize {
    0xffff_ffff
}

#[cfg(all(not(windows), target_pointer_width = "64"))]
fn highest() -> usize {
    0x7fff_ffff_ffff
}

/// On Windows, what `GetSystemInfo` reports, as the original reads it.
#[cfg(windows)]
fn highest() -> usize {
    use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
    // SAFETY: `GetSystemInfo` fills the structure it is given, and an
    // all-zero `SYSTEM_INFO` is a valid value of it.
    unsafe {
        let mut info: SYSTEM_INFO = std::mem::zeroed();
        GetSystemInfo(&mut info);
        info.lpMaximumApplicationAddress as usize
    }
}

fn main() {
    let highest = highest();
    harness::run(|| {
        let settings = BufferSearchSettings {
            min_address: 0,
            max_address: highest,
            size: 64,
        };
        let item = Buffers::get_buffer(black_box(&settings)).expect("get_buffer");
        drop(black_box(item));
    });
}
