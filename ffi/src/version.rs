//! The library's version, from Cargo's: as a string and as one number.
//!
//! The header's `MEMORY_BUFFERS_VERSION*` macros are written from the same
//! Cargo version by the header check (`tests/header.rs`), so a program can
//! compare the header it was compiled with against the library it runs
//! with (`tests/c/abi_test.c` does).

use std::ffi::{CStr, c_char};

/// `CARGO_PKG_VERSION` with its terminating NUL.
const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => panic!("CARGO_PKG_VERSION holds a NUL byte"),
    };

/// A decimal component of Cargo's version (`CARGO_PKG_VERSION_MAJOR` and
/// so on), parsed at compile time.
const fn component(text: &str) -> u32 {
    let digits = text.as_bytes();
    assert!(!digits.is_empty(), "an empty version component");
    let mut value: u32 = 0;
    let mut index = 0;
    while index < digits.len() {
        let digit = digits[index];
        assert!(
            digit.is_ascii_digit(),
            "a version component that is not decimal"
        );
        value = value * 10 + (digit - b'0') as u32;
        index += 1;
    }
    assert!(value < 1000, "a version component above 999");
    value
}

/// `MAJOR * 1_000_000 + MINOR * 1_000 + PATCH`, as in the header's
/// `MEMORY_BUFFERS_VERSION_NUMBER`.
const VERSION_NUMBER: u32 = component(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
    + component(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
    + component(env!("CARGO_PKG_VERSION_PATCH"));

/// Returns the version of the loaded library as a static, NUL-terminated
/// string, `"MAJOR.MINOR.PATCH"` (with a pre-release suffix if it has
/// one), equal to the header's `MEMORY_BUFFERS_VERSION` when the header and
/// the library come from the same release.
///
/// Never returns `NULL`; the string lives as long as the library is loaded
/// and must not be freed.
#[unsafe(no_mangle)]
pub extern "C" fn memory_buffers_version() -> *const c_char {
    VERSION.as_ptr()
}

/// Returns the version of the loaded library as one number,
/// `MAJOR * 1000000 + MINOR * 1000 + PATCH`, equal to the header's
/// `MEMORY_BUFFERS_VERSION_NUMBER` when the header and the library come
/// from the same release; compare the two to require at least the version
/// a program was built against.
#[unsafe(no_mangle)]
pub extern "C" fn memory_buffers_version_number() -> u32 {
    VERSION_NUMBER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_string_is_cargos() {
        // SAFETY: the function returns a static NUL-terminated string.
        let version = unsafe { CStr::from_ptr(memory_buffers_version()) };
        assert_eq!(version.to_str(), Ok(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn the_version_number_is_cargos_components() {
        let parse = |text: &str| text.parse::<u32>().expect("a decimal component");
        let expected = parse(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
            + parse(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
            + parse(env!("CARGO_PKG_VERSION_PATCH"));
        assert_eq!(memory_buffers_version_number(), expected);
    }

    #[test]
    fn components_parse_as_decimal() {
        assert_eq!(component("0"), 0);
        assert_eq!(component("17"), 17);
        assert_eq!(component("999"), 999);
    }
}
