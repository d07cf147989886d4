//! memory-buffers alone, called as its README shows (see `../harness.rs`).

#[path = "../../harness.rs"]
mod harness;

use memory_buffers::{BufferSearchSettings, Buffers, highest_user_address};
use std::hint::black_box;

fn main() {
    let highest = highest_user_address();
    harness::run(|| {
        let settings = BufferSearchSettings::new(0, highest, 64);
        let buffer = Buffers::get_buffer(black_box(&settings)).expect("get_buffer");
        drop(black_box(buffer));
    });
}
