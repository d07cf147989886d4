//! The checked-in C header is exactly what cbindgen generates from the
//! current source.

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate() -> String {
    let config = cbindgen::Config::from_file(crate_dir().join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir().join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses the crate");
    let mut header = Vec::new();
    bindings.write(&mut header);
    String::from_utf8(header).expect("the header is UTF-8")
}

#[test]
fn checked_in_header_matches_the_generated_one() {
    let generated = generate();
    let path = crate_dir().join("../include/memory_buffers.h");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let fresh = Path::new(env!("CARGO_TARGET_TMPDIR")).join("memory_buffers.h");
        std::fs::write(&fresh, &generated).expect("the fresh header can be written");
        panic!(
            "{} is out of date; review the generated header and copy it over:\n  cp {} {}",
            path.display(),
            fresh.display(),
            path.display()
        );
    }
}
