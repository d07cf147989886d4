//! The checked-in C header is exactly what cbindgen generates from the
//! current source, with the version macros written from Cargo's version.

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A decimal component of Cargo's version.
fn component(text: &str) -> u32 {
    text.parse().expect("version components are decimal")
}

/// The header's version macros, from this package's version in
/// `Cargo.toml`; the library's `memory_buffers_version()` and
/// `memory_buffers_version_number()` return the same values, which
/// `tests/c/abi_test.c` checks.
fn version_macros() -> String {
    let (major, minor, patch) = (
        component(env!("CARGO_PKG_VERSION_MAJOR")),
        component(env!("CARGO_PKG_VERSION_MINOR")),
        component(env!("CARGO_PKG_VERSION_PATCH")),
    );
    let number = major * 1_000_000 + minor * 1_000 + patch;
    let version = env!("CARGO_PKG_VERSION");
    format!(
        "\n\
         // The version of this header, from the library's Cargo.toml. Compare\n\
         // with memory_buffers_version() and memory_buffers_version_number(),\n\
         // which give the version of the library loaded at run time.\n\
         #define MEMORY_BUFFERS_VERSION_MAJOR {major}\n\
         #define MEMORY_BUFFERS_VERSION_MINOR {minor}\n\
         #define MEMORY_BUFFERS_VERSION_PATCH {patch}\n\
         // MAJOR * 1000000 + MINOR * 1000 + PATCH\n\
         #define MEMORY_BUFFERS_VERSION_NUMBER {number}\n\
         #define MEMORY_BUFFERS_VERSION \"{version}\""
    )
}

fn generate() -> String {
    let mut config = cbindgen::Config::from_file(crate_dir().join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    assert!(
        config.after_includes.is_none(),
        "cbindgen.toml must leave `after_includes` to this test (the version macros)"
    );
    config.after_includes = Some(version_macros());
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

#[test]
fn the_header_defines_cargos_version() {
    let header = generate();
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split(['.', '-', '+']);
    for name in ["MAJOR", "MINOR", "PATCH"] {
        let part = parts.next().expect("a version has three components");
        assert!(
            header.contains(&format!("#define MEMORY_BUFFERS_VERSION_{name} {part}\n")),
            "MEMORY_BUFFERS_VERSION_{name} is not {part}"
        );
    }
    assert!(header.contains(&format!("#define MEMORY_BUFFERS_VERSION \"{version}\"\n")));
    let number = memory_buffers_c::memory_buffers_version_number();
    assert!(header.contains(&format!("#define MEMORY_BUFFERS_VERSION_NUMBER {number}\n")));
}
